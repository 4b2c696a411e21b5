//! The database going away: `U`/UNKNOWN_EXCEPTION, nothing stored, and the retry processed
//! afresh once it is back. The service reaches PostgreSQL through a proxy the test can cut.

use crate::support::TestOptions;
use crate::support::app::{Reply, TestApp, spawn_app_with};
use mpp_cancel::domain::PaymentStatus;
use std::time::Duration;

async fn app_behind_proxy() -> TestApp {
    spawn_app_with(TestOptions {
        behind_proxy: true,
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn database_down_answers_unknown_then_the_retry_succeeds() {
    let app = app_behind_proxy().await;
    let proxy = app.proxy.clone().expect("behind a proxy");
    app.wallet.add(
        "db-down",
        PaymentStatus::Success,
        4200,
        "USD",
        app.clock_now(),
    );
    assert_eq!(
        app.cancel("warm-up").await.code(),
        "SUCCESS",
        "the proxy works"
    );

    proxy.stop();
    let during = app.cancel("db-down").await;

    assert_eq!(
        (during.status, during.code()),
        (200, "UNKNOWN_EXCEPTION".into())
    );
    assert_eq!(during.status_letter(), "U");
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM cancellations WHERE payment_request_id = 'db-down'")
            .await,
        0
    );

    proxy.start_again();
    let after = retry_until_not_unknown(&app, "db-down").await;
    assert_eq!(after.code(), "SUCCESS");
    assert_eq!(
        app.db.state_of("db-down").await.as_deref(),
        Some("refund_pending")
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM refunds WHERE payment_request_id = 'db-down'")
            .await,
        1
    );
}

#[tokio::test]
async fn database_lost_between_lookup_and_commit_stores_nothing() {
    let app = app_behind_proxy().await;
    let proxy = app.proxy.clone().expect("behind a proxy");
    app.wallet.add(
        "mid-flight",
        PaymentStatus::Success,
        4200,
        "USD",
        app.clock_now(),
    );
    assert_eq!(app.cancel("warm-up").await.code(), "SUCCESS");
    app.wallet.delay_lookups(Duration::from_millis(400));

    let (reply, ()) = tokio::join!(app.cancel("mid-flight"), async {
        // The replay check has passed; the wallet lookup is running: cut the database now.
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.stop();
    });

    assert_eq!(reply.code(), "UNKNOWN_EXCEPTION");
    assert_eq!(app.db.count("SELECT count(*) FROM refunds").await, 0);
    assert_eq!(app.db.state_of("mid-flight").await, None);

    app.wallet.delay_lookups(Duration::ZERO);
    proxy.start_again();
    assert_eq!(
        retry_until_not_unknown(&app, "mid-flight").await.code(),
        "SUCCESS"
    );
    assert_eq!(app.db.count("SELECT count(*) FROM refunds").await, 1);
}

/// Alipay+ retries `U`; the pool may need a moment to reconnect.
async fn retry_until_not_unknown(app: &TestApp, id: &str) -> Reply {
    for _ in 0..50 {
        let reply = app.cancel(id).await;
        if reply.code() != "UNKNOWN_EXCEPTION" {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} still answers UNKNOWN_EXCEPTION after the database came back");
}
