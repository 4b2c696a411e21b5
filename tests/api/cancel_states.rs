//! Each row of DESIGN.md's state table: the answer, the state stored, the work queued.

use crate::support::{at, spawn_app};
use mpp_cancel::domain::{Payment, PaymentStatus};
use mpp_cancel::guard::Guard;

const INSIDE: &str = "2026-11-20T12:00:00+08:00";

#[tokio::test]
async fn success_payment_is_accepted_and_its_full_amount_queued() {
    let app = spawn_app().await;
    app.wallet.add(
        "pay-success",
        PaymentStatus::Success,
        12345,
        "USD",
        at(INSIDE),
    );

    let reply = app.cancel("pay-success").await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        serde_json::json!({"result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "Success"}})
    );
    assert_eq!(
        app.db.state_of("pay-success").await.as_deref(),
        Some("refund_pending")
    );
    let (amount, currency, payment_id): (i64, String, String) = sqlx::query_as(
        "SELECT amount_value, currency, payment_id FROM refunds WHERE payment_request_id = 'pay-success'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((amount, currency.as_str()), (12345, "USD"));
    assert_eq!(payment_id, "wallet-pay-success");
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM cancellations WHERE next_attempt_at IS NOT NULL")
            .await,
        1,
        "the refund is due for the engine"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM audit_events WHERE event = 'cancel_decided' AND to_state = 'refund_pending'")
            .await,
        1
    );
}

#[tokio::test]
async fn failed_payment_is_accepted_with_nothing_to_refund() {
    let app = spawn_app().await;
    app.wallet
        .add("pay-failed", PaymentStatus::Failed, 500, "JPY", at(INSIDE));

    let reply = app.cancel("pay-failed").await;

    assert_eq!((reply.status, reply.code()), (200, "SUCCESS".into()));
    assert_eq!(
        app.db.state_of("pay-failed").await.as_deref(),
        Some("nothing_to_refund")
    );
    assert_eq!(app.db.count("SELECT count(*) FROM refunds").await, 0);
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM cancellations WHERE next_attempt_at IS NOT NULL")
            .await,
        0,
        "a terminal state leaves no work"
    );
}

#[tokio::test]
async fn processing_payment_is_accepted_and_awaits_its_outcome() {
    let app = spawn_app().await;
    app.wallet.add(
        "pay-processing",
        PaymentStatus::Processing,
        500,
        "JPY",
        at(INSIDE),
    );

    let reply = app.cancel("pay-processing").await;

    assert_eq!(reply.code(), "SUCCESS");
    assert_eq!(
        app.db.state_of("pay-processing").await.as_deref(),
        Some("awaiting_outcome")
    );
    assert_eq!(app.db.count("SELECT count(*) FROM refunds").await, 0);
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM cancellations WHERE next_attempt_at IS NOT NULL")
            .await,
        1,
        "closing the payment is queued"
    );
}

#[tokio::test]
async fn unknown_payment_is_accepted_and_tombstoned_on_the_request_day() {
    let app = spawn_app().await;

    let reply = app.cancel("never-seen").await;

    assert_eq!(reply.code(), "SUCCESS");
    assert_eq!(
        app.db.state_of("never-seen").await.as_deref(),
        Some("awaiting_outcome")
    );
    let day: chrono::NaiveDate = sqlx::query_scalar(
        "SELECT settlement_date FROM cancellations WHERE payment_request_id = 'never-seen'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(day.to_string(), "2026-11-20");
    let guard = Guard::new(app.db.store());
    assert!(
        guard.is_cancelled("never-seen").await.unwrap(),
        "a late pay must be refused"
    );
}

#[tokio::test]
async fn closed_window_is_refused_and_stored() {
    let app = spawn_app().await;
    app.wallet.add(
        "pay-old",
        PaymentStatus::Success,
        500,
        "JPY",
        at("2026-11-19T12:00:00+08:00"),
    );

    let reply = app.cancel("pay-old").await;

    assert_eq!(
        (reply.status, reply.code()),
        (200, "CANCEL_WINDOW_EXCEED".into())
    );
    assert_eq!(reply.status_letter(), "F");
    assert_eq!(
        app.db.state_of("pay-old").await.as_deref(),
        Some("rejected")
    );
    assert_eq!(app.db.count("SELECT count(*) FROM refunds").await, 0);
    let guard = Guard::new(app.db.store());
    assert!(
        !guard.is_cancelled("pay-old").await.unwrap(),
        "a refused cancel closes nothing"
    );
}

#[tokio::test]
async fn refunded_payment_is_refused_with_process_fail() {
    let app = spawn_app().await;
    for (id, refunded) in [("pay-part-refunded", 1), ("pay-refunded", 500)] {
        let mut payment: Payment =
            app.wallet
                .add(id, PaymentStatus::Success, 500, "JPY", at(INSIDE));
        payment.refunded_minor_units = refunded;
        app.wallet.put(payment);

        let reply = app.cancel(id).await;

        assert_eq!(reply.code(), "PROCESS_FAIL", "{id}");
        assert_eq!(reply.status_letter(), "F");
        assert_eq!(app.db.state_of(id).await.as_deref(), Some("rejected"));
    }
    assert_eq!(app.db.count("SELECT count(*) FROM refunds").await, 0);
}

#[tokio::test]
async fn guard_reports_accepted_cancellations_only() {
    let app = spawn_app().await;
    app.wallet
        .add("guarded", PaymentStatus::Success, 100, "HKD", at(INSIDE));
    let guard = Guard::new(app.db.store());
    assert!(!guard.is_cancelled("guarded").await.unwrap());

    app.cancel("guarded").await;

    assert!(guard.is_cancelled("guarded").await.unwrap());
    let record = guard.cancellation("guarded").await.unwrap().unwrap();
    assert_eq!(record.state, "refund_pending");
    assert_eq!(record.amount_value, Some(100));
    assert!(record.refund_id.is_some());
}
