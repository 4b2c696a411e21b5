//! The cancellable period at its edges: T is the UTC+8 day, the window closes at 00:30:00.000
//! UTC+8 on T+1, to the millisecond.

use crate::support::{at, spawn_app};
use mpp_cancel::domain::PaymentStatus;

/// (payment created at, last accepted instant, first refused instant)
const EDGES: [(&str, &str, &str); 3] = [
    (
        "2026-11-20T00:00:00.000+08:00",
        "2026-11-21T00:29:59.999+08:00",
        "2026-11-21T00:30:00.000+08:00",
    ),
    (
        "2026-11-20T23:59:59.999+08:00",
        "2026-11-21T00:29:59.999+08:00",
        "2026-11-21T00:30:00.000+08:00",
    ),
    // 16:00 UTC on the 20th is already the 21st in UTC+8: T is the 21st.
    (
        "2026-11-20T16:00:00.000Z",
        "2026-11-22T00:29:59.999+08:00",
        "2026-11-22T00:30:00.000+08:00",
    ),
];

#[tokio::test]
async fn accepted_at_the_last_millisecond_refused_at_the_cutoff() {
    let app = spawn_app().await;
    for (i, (created, last_ok, first_refused)) in EDGES.into_iter().enumerate() {
        let accepted_id = format!("edge-{i}-in");
        let refused_id = format!("edge-{i}-out");
        app.wallet.add(
            &accepted_id,
            PaymentStatus::Success,
            100,
            "JPY",
            at(created),
        );
        app.wallet
            .add(&refused_id, PaymentStatus::Success, 100, "JPY", at(created));

        app.clock.set(at(last_ok));
        let accepted = app.cancel(&accepted_id).await;
        app.clock.set(at(first_refused));
        let refused = app.cancel(&refused_id).await;

        assert_eq!(
            accepted.code(),
            "SUCCESS",
            "created {created}, cancelled {last_ok}"
        );
        assert_eq!(
            refused.code(),
            "CANCEL_WINDOW_EXCEED",
            "created {created}, cancelled {first_refused}"
        );
        assert_eq!(
            app.db.state_of(&refused_id).await.as_deref(),
            Some("rejected")
        );
    }
    assert_eq!(app.db.count("SELECT count(*) FROM refunds").await, 3);
}

#[tokio::test]
async fn the_settlement_day_is_t_in_utc8() {
    let app = spawn_app().await;
    app.clock.set(at("2026-11-21T10:00:00+08:00"));
    app.wallet.add(
        "t-utc8",
        PaymentStatus::Success,
        100,
        "JPY",
        at("2026-11-20T16:00:00Z"),
    );

    app.cancel("t-utc8").await;

    let day: chrono::NaiveDate = sqlx::query_scalar(
        "SELECT settlement_date FROM cancellations WHERE payment_request_id = 't-utc8'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(day.to_string(), "2026-11-21");
}

#[tokio::test]
async fn the_zone_and_cutoff_are_configuration() {
    let app = crate::support::app::spawn_app_with(crate::support::TestOptions {
        configure: |s| {
            s.cancel.timezone = "UTC".into();
            s.cancel.cutoff = "00:15".into();
        },
        ..Default::default()
    })
    .await;
    app.wallet.add(
        "utc-zone",
        PaymentStatus::Success,
        100,
        "JPY",
        at("2026-11-20T23:00:00Z"),
    );
    app.wallet.add(
        "utc-zone-2",
        PaymentStatus::Success,
        100,
        "JPY",
        at("2026-11-20T23:00:00Z"),
    );

    app.clock.set(at("2026-11-21T00:14:59.999Z"));
    assert_eq!(app.cancel("utc-zone").await.code(), "SUCCESS");
    app.clock.set(at("2026-11-21T00:15:00Z"));
    assert_eq!(
        app.cancel("utc-zone-2").await.code(),
        "CANCEL_WINDOW_EXCEED"
    );
}
