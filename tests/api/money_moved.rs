//! The money path, round 3 (issue 18): money that moved is recorded as moved and never ordered
//! again, a captured hold is refunded for what the user was charged, a nudge is never lost, a
//! close and a lookup that are only out of step are asked again, one unreadable row is set aside
//! alone, and one paymentId is refunded at most once. Each test failed before its fix.

use crate::authorization::{app_without_engine, authorized_and_cancelled, drain_fully, engine};
use crate::support::app::TestApp;
use crate::support::wallet::RefundScript;
use mpp_cancel::domain::{CancellationState, Clock, Payment, PaymentStatus, SystemClock};
use mpp_cancel::store::{Nudged, RequeueSelection, WorkOutcome};
use mpp_cancel::wallet::CloseOutcome;
use std::time::Duration;

async fn paid_and_cancelled(app: &TestApp, id: &str, amount: i64) {
    app.wallet
        .add(id, PaymentStatus::Success, amount, "JPY", app.clock_now());
    assert_eq!(app.cancel(id).await.code(), "SUCCESS");
}

/// (refund status, amount ordered, amount the wallet said it refunded).
async fn refund_row(app: &TestApp, id: &str) -> (String, i64, Option<i64>) {
    sqlx::query_as(
        "SELECT status, amount_value, refunded_value FROM refunds WHERE payment_request_id = $1",
    )
    .bind(id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

async fn requeue(app: &TestApp, id: &str) -> Option<CancellationState> {
    app.db.store().requeue(id, "test").await.unwrap()
}

// ---- 1. A nudge is never lost -----------------------------------------------------------------

#[tokio::test]
async fn a_nudge_during_a_close_that_ends_nothing_to_refund_reopens_the_row() {
    let app = app_without_engine().await;
    app.wallet.add(
        "late",
        PaymentStatus::Processing,
        700,
        "JPY",
        app.clock_now(),
    );
    assert_eq!(app.cancel("late").await.code(), "SUCCESS");
    let store = app.db.store();
    let now = SystemClock.now();
    let claimed = store
        .claim_due(now, Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // The worker's close is answered CLOSED; meanwhile the payment succeeds late and the MPP
    // nudges.
    app.wallet.set_status("late", PaymentStatus::Success);
    assert_eq!(
        store.nudge("late", now).await.unwrap(),
        Nudged::AfterCurrentAttempt
    );
    let outcome = WorkOutcome {
        payment_request_id: "late".into(),
        lease_token: claimed[0].lease_token,
        from: CancellationState::AwaitingOutcome,
        to: CancellationState::NothingToRefund,
        retry_in: None,
        last_error: None,
        refund_status: None,
        void_status: None,
        wallet_reference: None,
        found: None,
        detail: serde_json::json!({"outcome": "closed"}),
        refunded: None,
        refund_after_capture: None,
    };
    assert_eq!(
        store.complete(SystemClock.now(), &[outcome]).await.unwrap(),
        vec!["late"]
    );
    assert_eq!(
        app.db.state_of("late").await.as_deref(),
        Some("awaiting_outcome"),
        "the waiting nudge reopened the row"
    );

    drain_fully(&app).await;
    assert_eq!(app.db.state_of("late").await.as_deref(), Some("refunded"));
    let calls = app.wallet.refund_calls();
    assert_eq!(
        (calls.len(), calls[0].amount.minor_units),
        (1, 700),
        "the late success refunded once, in full"
    );
}

// ---- 2. A captured hold refunds what was charged ---------------------------------------------

/// The merchant captured `captured` of the authorization and refunded `refunded` of it.
fn capture(app: &TestApp, id: &str, captured: i64, refunded: i64) {
    let payment = Payment {
        payment_request_id: id.into(),
        payment_id: format!("wallet-{id}"),
        status: PaymentStatus::Success,
        amount: mpp_cancel::domain::Money::new(
            captured,
            mpp_cancel::domain::Currency::parse("JPY").unwrap(),
        )
        .unwrap(),
        created_at: app.clock_now(),
        refunded_minor_units: refunded,
    };
    app.wallet.put(payment);
}

#[tokio::test]
async fn a_partial_capture_is_refunded_for_what_was_charged_not_the_authorization() {
    let app = app_without_engine().await;
    authorized_and_cancelled(&app, "partial", 10_000).await;
    authorized_and_cancelled(&app, "partly-refunded", 10_000).await;
    capture(&app, "partial", 6000, 0);
    capture(&app, "partly-refunded", 6000, 1500);

    drain_fully(&app).await;

    for (id, owed) in [("partial", 6000), ("partly-refunded", 4500)] {
        assert_eq!(app.db.state_of(id).await.as_deref(), Some("refunded"));
        let record = app.db.store().cancellation(id).await.unwrap().unwrap();
        assert_eq!(record.void_status.as_deref(), Some("captured"));
        assert_eq!(
            record.payment_status.as_deref(),
            Some("SUCCESS"),
            "not AUTHORIZED next to a refund"
        );
        assert_eq!(record.refund_value, Some(owed));
        assert_eq!(record.refunded_value, Some(owed));
        let calls: Vec<i64> = app
            .wallet
            .refund_calls()
            .iter()
            .filter(|o| o.payment_request_id == id)
            .map(|o| o.amount.minor_units)
            .collect();
        assert_eq!(calls, [owed], "{id}");
    }
}

#[tokio::test]
async fn a_capture_the_lookup_cannot_confirm_refunds_nothing() {
    let app = app_without_engine().await;
    authorized_and_cancelled(&app, "above", 10_000).await;
    capture(&app, "above", 12_000, 0);

    drain_fully(&app).await;

    let record = app.db.store().cancellation("above").await.unwrap().unwrap();
    assert_eq!(record.state, "manual_review");
    assert!(
        record
            .last_error
            .as_deref()
            .unwrap()
            .contains("above the authorization"),
        "{:?}",
        record.last_error
    );
    assert_eq!(record.void_status.as_deref(), Some("captured"));
    assert!(app.wallet.refund_calls().is_empty(), "nothing refunded");

    // Once the wallet's record is right, a requeue refunds the charge without voiding again.
    capture(&app, "above", 8000, 0);
    let voids = app.wallet.void_calls().len();
    assert_eq!(
        requeue(&app, "above").await,
        Some(CancellationState::VoidPending)
    );
    drain_fully(&app).await;
    assert_eq!(app.db.state_of("above").await.as_deref(), Some("refunded"));
    assert_eq!(app.wallet.void_calls().len(), voids, "no second void");
    let calls = app.wallet.refund_calls();
    assert_eq!((calls.len(), calls[0].amount.minor_units), (1, 8000));
}

// ---- 3. Money that moved is recorded as moved, and never ordered again -------------------------

#[tokio::test]
async fn a_refund_of_another_amount_is_recorded_as_moved_and_never_ordered_again() {
    let app = app_without_engine().await;
    paid_and_cancelled(&app, "short", 100).await;
    app.wallet.script_refunds([RefundScript::SucceededWith(60)]);

    drain_fully(&app).await;

    assert_eq!(
        app.db.state_of("short").await.as_deref(),
        Some("manual_review")
    );
    assert_eq!(
        refund_row(&app, "short").await,
        ("succeeded".into(), 100, Some(60))
    );
    // A requeue cannot make the wallet order it again: it stays for a person.
    assert_eq!(
        requeue(&app, "short").await,
        Some(CancellationState::ManualReview)
    );
    let bulk = app
        .db
        .store()
        .requeue_bulk(
            RequeueSelection::new(CancellationState::ManualReview, None).unwrap(),
            "test",
            false,
        )
        .await
        .unwrap();
    assert_eq!(bulk.count, 0, "not taken by a bulk requeue either");
    drain_fully(&app).await;
    assert_eq!(app.wallet.refund_calls().len(), 1, "ordered once");
    let record = app.db.store().cancellation("short").await.unwrap().unwrap();
    assert_eq!(
        (record.refunded_value, record.refunded_currency.as_deref()),
        (Some(60), Some("JPY"))
    );
}

#[tokio::test]
async fn a_confirmed_refund_requeued_is_finished_without_a_wallet_call() {
    let app = app_without_engine().await;
    paid_and_cancelled(&app, "junk", 250).await;
    app.wallet
        .script_refunds([RefundScript::SucceededWithReference("junk\u{0}ref")]);
    drain_fully(&app).await;
    assert_eq!(
        app.db.state_of("junk").await.as_deref(),
        Some("manual_review")
    );
    assert_eq!(
        refund_row(&app, "junk").await,
        ("succeeded".into(), 250, Some(250))
    );

    assert_eq!(
        requeue(&app, "junk").await,
        Some(CancellationState::Refunded)
    );
    drain_fully(&app).await;
    assert_eq!(app.db.state_of("junk").await.as_deref(), Some("refunded"));
    assert_eq!(
        app.wallet.refund_calls().len(),
        1,
        "the refund is not ordered again, whether or not the wallet kept its key"
    );
}

#[tokio::test]
async fn a_confirmed_void_requeued_is_finished_without_a_wallet_call() {
    let app = app_without_engine().await;
    app.wallet
        .script_voids([crate::support::wallet::VoidScript::VoidedWithReference(
            "void\u{0}ref",
        )]);
    authorized_and_cancelled(&app, "released", 600).await;
    drain_fully(&app).await;
    assert_eq!(
        app.db.state_of("released").await.as_deref(),
        Some("manual_review")
    );
    assert_eq!(
        requeue(&app, "released").await,
        Some(CancellationState::Voided)
    );
    drain_fully(&app).await;
    assert_eq!(
        app.wallet.void_calls().len(),
        1,
        "voided once, ordered once"
    );
}

#[tokio::test]
async fn a_row_set_aside_keeps_the_refund_the_wallet_confirmed() {
    let app = app_without_engine().await;
    paid_and_cancelled(&app, "poison", 300).await;
    sqlx::query(
        "ALTER TABLE cancellations ADD CONSTRAINT refuse_poison
           CHECK (payment_request_id <> 'poison' OR state <> 'refunded')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();

    drain_fully(&app).await;

    let record = app
        .db
        .store()
        .cancellation("poison")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, "manual_review");
    assert_eq!(
        refund_row(&app, "poison").await,
        ("succeeded".into(), 300, Some(300)),
        "set aside, and the money that moved recorded as moved"
    );
    sqlx::query("ALTER TABLE cancellations DROP CONSTRAINT refuse_poison")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        requeue(&app, "poison").await,
        Some(CancellationState::Refunded)
    );
    drain_fully(&app).await;
    assert_eq!(app.wallet.refund_calls().len(), 1);
}

#[tokio::test]
async fn the_database_refuses_to_take_a_refund_success_back() {
    let app = app_without_engine().await;
    paid_and_cancelled(&app, "done", 100).await;
    drain_fully(&app).await;
    assert_eq!(app.db.state_of("done").await.as_deref(), Some("refunded"));
    for sql in [
        "UPDATE refunds SET status = 'queued' WHERE payment_request_id = 'done'",
        "UPDATE refunds SET status = 'failed' WHERE payment_request_id = 'done'",
        "UPDATE refunds SET refunded_value = 1 WHERE payment_request_id = 'done'",
        "UPDATE refunds SET amount_value = 1 WHERE payment_request_id = 'done'",
        "DELETE FROM refunds WHERE payment_request_id = 'done'",
    ] {
        let refused = sqlx::query(sql).execute(&app.db.pool).await;
        assert!(refused.is_err(), "{sql} was allowed");
    }
    assert_eq!(
        refund_row(&app, "done").await,
        ("succeeded".into(), 100, Some(100))
    );
}

// ---- 7. A close and a lookup out of step are asked again --------------------------------------

#[tokio::test]
async fn a_lookup_behind_the_close_is_asked_again_not_sent_to_manual_review() {
    let app = app_without_engine().await;
    app.wallet.add(
        "lagging",
        PaymentStatus::Processing,
        900,
        "JPY",
        app.clock_now(),
    );
    assert_eq!(app.cancel("lagging").await.code(), "SUCCESS");
    // The close sees the success; the lookup still reads the payment as PROCESSING.
    app.wallet.script_closes([CloseOutcome::AlreadySucceeded]);
    engine(&app).run_once().await.unwrap();
    assert_eq!(
        app.db.state_of("lagging").await.as_deref(),
        Some("awaiting_outcome"),
        "asked again, not handed to a person"
    );
    // The read catches up.
    app.wallet.set_status("lagging", PaymentStatus::Success);
    drain_fully(&app).await;
    assert_eq!(
        app.db.state_of("lagging").await.as_deref(),
        Some("refunded")
    );
    assert_eq!(app.wallet.refund_calls().len(), 1);
}

#[tokio::test]
async fn a_close_behind_the_lookup_is_asked_again_and_the_capture_refunded() {
    let app = app_without_engine().await;
    app.wallet.add(
        "captured-late",
        PaymentStatus::Processing,
        800,
        "JPY",
        app.clock_now(),
    );
    assert_eq!(app.cancel("captured-late").await.code(), "SUCCESS");
    // The close still sees an authorization; the lookup already sees it captured.
    app.wallet.script_closes([CloseOutcome::AlreadyAuthorized]);
    app.wallet
        .set_status("captured-late", PaymentStatus::Success);
    drain_fully(&app).await;
    assert_eq!(
        app.db.state_of("captured-late").await.as_deref(),
        Some("refunded")
    );
    assert!(app.wallet.void_calls().is_empty());
    assert_eq!(app.wallet.refund_calls().len(), 1);
}

#[tokio::test]
async fn a_close_and_a_lookup_that_contradict_each_other_go_to_manual_review() {
    let app = app_without_engine().await;
    app.wallet
        .add("liar", PaymentStatus::Failed, 800, "JPY", app.clock_now());
    // Decided as FAILED (nothing to refund), then nudged: the close says it succeeded, the
    // lookup still says FAILED. Payments never go from FAILED to SUCCESS: a person looks.
    assert_eq!(app.cancel("liar").await.code(), "SUCCESS");
    app.db.store().nudge("liar", app.clock_now()).await.unwrap();
    app.wallet.script_closes([CloseOutcome::AlreadySucceeded]);
    drain_fully(&app).await;
    assert_eq!(
        app.db.state_of("liar").await.as_deref(),
        Some("manual_review")
    );
    assert!(app.wallet.refund_calls().is_empty());
}

// ---- 10. One unreadable row is set aside alone ------------------------------------------------

#[tokio::test]
async fn a_row_in_a_state_this_build_cannot_read_is_set_aside_alone() {
    let app = app_without_engine().await;
    paid_and_cancelled(&app, "healthy", 100).await;
    paid_and_cancelled(&app, "from-the-future", 100).await;
    // A newer version's state (a rolling upgrade), which this build does not know.
    for sql in [
        "ALTER TABLE cancellations DROP CONSTRAINT cancellations_state_check",
        "ALTER TABLE cancellations DROP CONSTRAINT due_only_with_work",
        "UPDATE cancellations SET state = 'refund_pending_v2' WHERE payment_request_id = 'from-the-future'",
    ] {
        sqlx::query(sql).execute(&app.db.pool).await.unwrap();
    }

    engine(&app).drain().await.unwrap();

    assert_eq!(
        app.db.state_of("healthy").await.as_deref(),
        Some("refunded")
    );
    let record = app
        .db
        .store()
        .cancellation("from-the-future")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, "manual_review");
    assert!(
        record
            .last_error
            .as_deref()
            .unwrap()
            .contains("refund_pending_v2"),
        "{:?}",
        record.last_error
    );
    let calls = app.wallet.refund_calls();
    assert_eq!(calls.len(), 1, "nothing sent for the unreadable row");
    assert_eq!(calls[0].payment_request_id, "healthy");
}

// ---- 12. One refund per paymentId -------------------------------------------------------------

#[tokio::test]
async fn a_second_payment_request_id_for_one_payment_id_is_not_refunded_again() {
    let app = app_without_engine().await;
    let first = app
        .wallet
        .add("first", PaymentStatus::Success, 500, "JPY", app.clock_now());
    // The wallet maps another paymentRequestId to the same payment.
    app.wallet.put(Payment {
        payment_request_id: "second".into(),
        ..first.clone()
    });
    assert_eq!(app.cancel("first").await.code(), "SUCCESS");
    assert_eq!(app.cancel("second").await.code(), "SUCCESS");
    assert_eq!(
        app.cancel("second").await.code(),
        "SUCCESS",
        "the same answer on a replay"
    );

    drain_fully(&app).await;

    assert_eq!(app.db.state_of("first").await.as_deref(), Some("refunded"));
    let second = app
        .db
        .store()
        .cancellation("second")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.state, "manual_review");
    let why = second.last_error.unwrap();
    assert!(
        why.contains(&first.payment_id) && why.contains("first"),
        "{why}"
    );
    assert_eq!(second.refund_id, None);
    assert_eq!(
        app.wallet.refund_calls().len(),
        1,
        "one refund per paymentId"
    );
    // Requeued, it is closed and looked up again, never refunded a second time.
    requeue(&app, "second").await;
    drain_fully(&app).await;
    assert_eq!(app.wallet.refund_calls().len(), 1);
    assert_eq!(
        app.db.state_of("second").await.as_deref(),
        Some("manual_review")
    );
    // The database itself refuses a second refund row for the paymentId.
    let refused = sqlx::query(
        "INSERT INTO refunds (payment_request_id, payment_id, amount_value, currency, created_at)
         VALUES ('second', $1, 500, 'JPY', now())",
    )
    .bind(&first.payment_id)
    .execute(&app.db.pool)
    .await;
    assert!(refused.is_err());
}
