//! Values a library wallet returns on the cancel's own lookup are untrusted (issue 18 point 8):
//! one that cannot be stored never makes an id `U` forever. An accepted cancel goes to a person
//! (manual_review, the reason recorded, no money work queued, the bad value not stored); a refused
//! one is stored as usual.

use crate::support::app::{TestApp, spawn_app_with};
use crate::support::{TestOptions, at};
use mpp_cancel::domain::PaymentStatus;

async fn app() -> TestApp {
    spawn_app_with(TestOptions {
        now: at("2026-11-20T12:00:00+08:00"),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_payment_id_with_a_nul_goes_to_manual_review_with_a_final_answer() {
    let app = app().await;
    let mut nul = app.wallet.add(
        "nul-id",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );
    nul.payment_id = "pay\0ment".into();
    app.wallet.put(nul);

    let first = app.cancel("nul-id").await;
    assert_eq!(first.code(), "SUCCESS", "decided, not U forever");
    assert_eq!(app.cancel("nul-id").await, first, "replayed byte for byte");
    let record = app
        .db
        .store()
        .cancellation("nul-id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, "manual_review");
    assert_eq!(record.payment_id, None, "the bad value is not stored");
    assert_eq!(record.next_attempt_at, None, "no money work queued");
    assert_eq!(record.refund_id, None);
    let why = record.last_error.unwrap();
    assert!(why.contains("paymentId holds control characters"), "{why}");
    assert!(!why.contains('\0'));
    let trail = app.db.store().audit_trail("nul-id").await.unwrap();
    assert_eq!(trail[0].0, "cancel_decided");
    assert_eq!(trail[0].2.as_deref(), Some("manual_review"));
}

#[tokio::test]
async fn other_unusable_values_are_judged_the_same_way() {
    let app = app().await;
    let mut long = app.wallet.add(
        "long-id",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );
    long.payment_id = "x".repeat(500);
    app.wallet.put(long);
    let mut negative = app.wallet.add(
        "negative-refund",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );
    negative.refunded_minor_units = -5;
    app.wallet.put(negative);
    // Outside its window, a payment is refused whatever its paymentId: stored as usual.
    let mut late = app.wallet.add(
        "late-bad-id",
        PaymentStatus::Success,
        100,
        "JPY",
        at("2026-11-18T12:00:00+08:00"),
    );
    late.payment_id = "bad\u{7}id".into();
    app.wallet.put(late);

    assert_eq!(app.cancel("long-id").await.code(), "SUCCESS");
    assert_eq!(app.cancel("negative-refund").await.code(), "SUCCESS");
    assert_eq!(
        app.cancel("late-bad-id").await.code(),
        "CANCEL_WINDOW_EXCEED"
    );
    for (id, state) in [
        ("long-id", "manual_review"),
        ("negative-refund", "manual_review"),
        ("late-bad-id", "rejected"),
    ] {
        assert_eq!(app.db.state_of(id).await.as_deref(), Some(state), "{id}");
    }
    assert_eq!(
        app.db.count("SELECT count(*) FROM refunds").await,
        0,
        "nothing is refunded on a value that cannot be trusted"
    );
}
