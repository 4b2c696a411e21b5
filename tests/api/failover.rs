//! The database node behind `database.url` changing under the service, as in a failover
//! (DESIGN.md, "Beyond one machine"; the full drill with replication is tests/ha_drill.rs): the
//! old node's connections are dropped before a request uses them, a node that only takes reads
//! is refused (cancels answer U, nothing stored, `/readyz` says why), and the service recovers
//! by itself once writes are possible again.

use crate::support::app::{TestApp, spawn_app};
use mpp_cancel::domain::PaymentStatus;
use std::time::Duration;

/// Ends every session of the test database but the caller's: what the service's connections see
/// when the node behind its address restarts or is replaced.
async fn end_service_sessions(app: &TestApp) {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
}

/// `ALTER DATABASE` on the test's own database: sessions started afterwards are read-only, like
/// connections that land on a standby or a fenced old primary. (The test's own connections may
/// be read-only by then too, hence the explicit read-write transaction.)
async fn set_read_only(app: &TestApp, on: bool) {
    let sql = if on {
        "BEGIN READ WRITE; DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on', current_database()); END $$; COMMIT"
    } else {
        "BEGIN READ WRITE; DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET default_transaction_read_only', current_database()); END $$; COMMIT"
    };
    sqlx::raw_sql(sql).execute(&app.db.pool).await.unwrap();
}

async fn readiness(app: &TestApp) -> (u16, String) {
    let reply = app
        .http
        .get(format!("{}/readyz", app.internal_address))
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let body: serde_json::Value = reply.json().await.unwrap();
    (status, body["reason"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn connections_to_a_node_that_went_away_are_dropped_before_use() {
    let app = spawn_app().await;
    for i in 0..4 {
        let id = format!("before-{i}");
        app.wallet
            .add(&id, PaymentStatus::Success, 100, "JPY", app.clock_now());
        assert_eq!(app.cancel(&id).await.code(), "SUCCESS");
    }
    end_service_sessions(&app).await;
    // Idle long enough for the pool to check a connection before handing it out.
    tokio::time::sleep(Duration::from_millis(700)).await;

    app.wallet
        .add("after", PaymentStatus::Success, 100, "JPY", app.clock_now());
    let first = app.cancel("after").await;
    assert_eq!(
        first.code(),
        "SUCCESS",
        "the first cancel after the node went away gets a live connection, not a U"
    );
}

#[tokio::test]
async fn a_read_only_node_gets_u_and_readiness_says_why_then_the_service_recovers() {
    let app = spawn_app().await;
    app.wallet.add(
        "warm-up",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );
    assert_eq!(app.cancel("warm-up").await.code(), "SUCCESS");
    app.wallet.add(
        "on-standby",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );

    set_read_only(&app, true).await;
    end_service_sessions(&app).await;
    tokio::time::sleep(Duration::from_millis(700)).await;

    let during = app.cancel("on-standby").await;
    assert_eq!(
        (during.status_letter(), during.code()),
        ("U".into(), "UNKNOWN_EXCEPTION".into())
    );
    assert_eq!(app.db.state_of("on-standby").await, None, "nothing stored");
    let (status, reason) = readiness(&app).await;
    assert_eq!(status, 503);
    assert!(reason.contains("read-only"), "readiness reason: {reason:?}");

    set_read_only(&app, false).await;
    let mut answer = app.cancel("on-standby").await;
    for _ in 0..20 {
        if answer.code() == "SUCCESS" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = app.cancel("on-standby").await;
    }
    assert_eq!(answer.code(), "SUCCESS", "recovered without a restart");
    assert_eq!(readiness(&app).await.0, 200);
}
