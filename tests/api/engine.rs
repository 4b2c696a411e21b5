//! The refund engine keeps every accepted cancellation's promise: the user's money back, exactly
//! once, through wallet errors, timeouts, pending answers, crashes and concurrent engines.

use crate::support::app::{TestApp, spawn_app_with};
use crate::support::wallet::RefundScript;
use crate::support::{TestOptions, at};
use mpp_cancel::domain::{Clock, PaymentStatus, SystemClock};
use mpp_cancel::engine::{EngineConfig, RefundEngine};
use mpp_cancel::store::Store;
use std::sync::Arc;
use std::time::Duration;

async fn app_with_engine() -> TestApp {
    spawn_app_with(TestOptions {
        engine: true,
        ..Default::default()
    })
    .await
}

/// Waits until the cancellation reaches `state` (the engine runs in the background).
pub async fn wait_for_state(app: &TestApp, id: &str, state: &str) {
    for _ in 0..300 {
        if app.db.state_of(id).await.as_deref() == Some(state) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{id} did not reach {state}; it is {:?}, audit: {:?}",
        app.db.state_of(id).await,
        app.db.store().audit_trail(id).await
    );
}

async fn paid_and_cancelled(app: &TestApp, id: &str, amount: i64) {
    app.wallet
        .add(id, PaymentStatus::Success, amount, "JPY", app.clock_now());
    assert_eq!(app.cancel(id).await.code(), "SUCCESS");
}

#[tokio::test]
async fn a_success_payment_is_refunded_once_for_the_full_amount() {
    let app = app_with_engine().await;
    paid_and_cancelled(&app, "plain", 4321).await;

    wait_for_state(&app, "plain", "refunded").await;

    let calls = app.wallet.refund_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].amount.minor_units, 4321);
    assert_eq!(calls[0].payment_id, "wallet-plain");
    let refunded = app.wallet.refunded_amounts();
    assert_eq!(refunded.values().copied().collect::<Vec<_>>(), vec![4321]);
    let (status, reference): (String, Option<String>) = sqlx::query_as(
        "SELECT status, wallet_reference FROM refunds WHERE payment_request_id = 'plain'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(status, "succeeded");
    assert_eq!(reference, Some(format!("ref-{}", calls[0].refund_id)));
}

#[tokio::test]
async fn failing_then_timing_out_wallet_refunds_once_with_one_refund_id() {
    let app = app_with_engine().await; // wallet call timeout 500 ms
    app.wallet.script_refunds([
        RefundScript::Error,
        RefundScript::Error,
        RefundScript::Slow(Duration::from_millis(800)),
        RefundScript::Slow(Duration::from_millis(800)),
    ]);
    paid_and_cancelled(&app, "flaky-wallet", 1000).await;

    wait_for_state(&app, "flaky-wallet", "refunded").await;

    let calls = app.wallet.refund_calls();
    assert_eq!(calls.len(), 5, "two errors, two timeouts, one success");
    assert!(
        calls.iter().all(|c| c.refund_id == calls[0].refund_id),
        "one refund id"
    );
    // The timed-out calls moved the money at the wallet; the dedupe kept it to once.
    assert_eq!(app.wallet.refunded_amounts().len(), 1);
    let attempts: i32 = sqlx::query_scalar(
        "SELECT attempts FROM cancellations WHERE payment_request_id = 'flaky-wallet'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(attempts, 5);
    let trail = app.db.store().audit_trail("flaky-wallet").await.unwrap();
    let wallet_calls: Vec<_> = trail.iter().filter(|e| e.0 == "wallet_call").collect();
    assert_eq!(wallet_calls.len(), 5, "every wallet call audited");
    assert!(
        wallet_calls[2].3["calls"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not answer"))
    );
    assert!(wallet_calls[4].3["calls"][0]["durationMs"].is_number());
}

#[tokio::test]
async fn pending_then_succeeded_is_refunded() {
    let app = app_with_engine().await;
    app.wallet
        .script_refunds([RefundScript::Pending, RefundScript::Pending]);
    paid_and_cancelled(&app, "pending", 700).await;

    wait_for_state(&app, "pending", "refunded").await;

    assert_eq!(app.wallet.refund_calls().len(), 3);
    assert_eq!(app.wallet.refunded_amounts().len(), 1);
}

#[tokio::test]
async fn a_refused_refund_goes_to_manual_review_and_a_requeue_refunds_it() {
    let app = app_with_engine().await;
    app.wallet.script_refunds([RefundScript::Failed]);
    paid_and_cancelled(&app, "refused", 700).await;

    wait_for_state(&app, "refused", "manual_review").await;
    let record = app
        .db
        .store()
        .cancellation("refused")
        .await
        .unwrap()
        .unwrap();
    assert!(record.last_error.unwrap().contains("scripted refusal"));
    assert!(app.wallet.refunded_amounts().is_empty());

    let requeued = app.db.store().requeue("refused", "test").await.unwrap();
    assert_eq!(requeued.map(|s| s.as_str()), Some("refund_pending"));
    wait_for_state(&app, "refused", "refunded").await;
    assert_eq!(app.wallet.refunded_amounts().len(), 1);
    let calls = app.wallet.refund_calls();
    assert_eq!(
        calls[0].refund_id, calls[1].refund_id,
        "the requeue keeps the refund id"
    );
}

#[tokio::test]
async fn an_amount_mismatch_goes_to_manual_review() {
    let app = app_with_engine().await;
    app.wallet
        .script_refunds([RefundScript::SucceededWith(699)]);
    paid_and_cancelled(&app, "mismatch", 700).await;

    wait_for_state(&app, "mismatch", "manual_review").await;

    let record = app
        .db
        .store()
        .cancellation("mismatch")
        .await
        .unwrap()
        .unwrap();
    assert!(record.last_error.unwrap().contains("699 JPY"));
    // The money moved (another amount): recorded as moved, never as failed (issue 18).
    assert_eq!(record.refund_status.as_deref(), Some("succeeded"));
    assert_eq!(record.refunded_value, Some(699));
}

#[tokio::test]
async fn exhausted_attempts_go_to_manual_review() {
    let app = spawn_app_with(TestOptions {
        engine: true,
        configure: |s| s.refunds.max_attempts = 3,
        ..Default::default()
    })
    .await;
    app.wallet.script_refunds([RefundScript::Error; 3]);
    paid_and_cancelled(&app, "exhausted", 700).await;

    wait_for_state(&app, "exhausted", "manual_review").await;

    assert_eq!(app.wallet.refund_calls().len(), 3);
    let record = app
        .db
        .store()
        .cancellation("exhausted")
        .await
        .unwrap()
        .unwrap();
    assert!(
        record
            .last_error
            .unwrap()
            .contains("gave up after 3 attempts")
    );
}

#[tokio::test]
async fn a_processing_payment_that_closes_has_nothing_to_refund() {
    let app = app_with_engine().await;
    app.wallet.add(
        "closing",
        PaymentStatus::Processing,
        500,
        "JPY",
        app.clock_now(),
    );
    assert_eq!(app.cancel("closing").await.code(), "SUCCESS");

    wait_for_state(&app, "closing", "nothing_to_refund").await;

    assert!(app.wallet.refund_calls().is_empty());
}

/// The engine is started by hand after the wallet's view changed, so the order is certain.
/// An engine over `app`'s database and wallet on the system clock, with fast retries.
pub fn engine_for(app: &TestApp) -> RefundEngine {
    let mut settings = app.settings.clone();
    settings.refunds.workers = 1;
    settings.refunds.backoff_base_ms = 10;
    RefundEngine::new(
        app.db.store(),
        app.wallet.clone(),
        Arc::new(SystemClock),
        EngineConfig::from_settings(&settings),
        Arc::new(tokio::sync::Notify::new()),
    )
}

#[tokio::test]
async fn a_processing_payment_that_succeeds_after_the_cancel_is_refunded() {
    let app = crate::support::spawn_app().await; // engine off
    app.wallet.add(
        "late-success",
        PaymentStatus::Processing,
        880,
        "JPY",
        app.clock_now(),
    );
    assert_eq!(app.cancel("late-success").await.code(), "SUCCESS");
    app.wallet
        .set_status("late-success", PaymentStatus::Success);

    let engine = engine_for(&app);
    engine.drain().await.unwrap();

    assert_eq!(
        app.db.state_of("late-success").await.as_deref(),
        Some("refunded")
    );
    let calls = app.wallet.refund_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].amount.minor_units, 880);
}

#[tokio::test]
async fn an_unknown_payment_that_appears_as_success_is_refunded() {
    let app = crate::support::spawn_app().await;
    assert_eq!(app.cancel("ghost").await.code(), "SUCCESS");
    app.wallet
        .add("ghost", PaymentStatus::Success, 990, "JPY", app.clock_now());

    engine_for(&app).drain().await.unwrap();

    assert_eq!(app.db.state_of("ghost").await.as_deref(), Some("refunded"));
    let record = app.db.store().cancellation("ghost").await.unwrap().unwrap();
    assert_eq!(
        (record.amount_value, record.currency.as_deref()),
        (Some(990), Some("JPY"))
    );
    assert_eq!(
        app.wallet
            .refunded_amounts()
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![990]
    );
}

#[tokio::test]
async fn a_worker_that_dies_holding_a_claim_is_taken_over_after_the_lease() {
    let app = crate::support::spawn_app().await;
    paid_and_cancelled(&app, "orphan", 1234).await;
    // A worker claims the row, calls the wallet (the money moves), and dies before recording.
    let now = SystemClock.now();
    let claimed = app
        .db
        .store()
        .claim_due(now, Duration::from_millis(300), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let order = claimed[0].refund.clone().unwrap();
    mpp_cancel::wallet::Wallet::refund(&*app.wallet, &order)
        .await
        .unwrap();

    let engine = engine_for(&app);
    assert_eq!(engine.run_once().await.unwrap(), 0, "the lease still holds");
    tokio::time::sleep(Duration::from_millis(400)).await;
    engine.drain().await.unwrap();

    assert_eq!(app.db.state_of("orphan").await.as_deref(), Some("refunded"));
    let calls = app.wallet.refund_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].refund_id, calls[1].refund_id);
    assert_eq!(
        app.wallet.refunded_amounts().len(),
        1,
        "the money moved once"
    );
    // The dead worker's late outcome cannot overwrite the new owner's.
    let late = app
        .db
        .store()
        .complete(SystemClock.now(), &[])
        .await
        .unwrap();
    assert!(late.is_empty());
}

#[tokio::test]
async fn two_engines_on_a_thousand_cancellations_refund_each_exactly_once() {
    let app = crate::support::spawn_app().await;
    let service = mpp_cancel::app::cancel_service(
        &app.settings,
        &mpp_cancel::app::Components {
            store: app.db.store(),
            wallet: app.wallet.clone(),
            clock: app.clock.clone(),
        },
    )
    .unwrap();
    for i in 0..1000 {
        let id = format!("bulk-{i:04}");
        app.wallet.add(
            &id,
            PaymentStatus::Success,
            100 + i,
            "JPY",
            at("2026-11-20T10:00:00+08:00"),
        );
        let request = mpp_cancel::protocol::CancelPaymentRequest {
            acquirer_id: crate::support::app::ACQUIRER_ID.into(),
            psp_id: crate::support::app::PSP_ID.into(),
            payment_request_id: id,
        };
        assert_eq!(service.cancel(&request).await.code.as_str(), "SUCCESS");
    }
    // Two engines, each with its own pool, as two processes would have.
    let other_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(5)
        .connect_with(app.db.options.clone())
        .await
        .unwrap();
    let first = engine_for(&app);
    let second = RefundEngine::new(
        Store::new(other_pool),
        app.wallet.clone(),
        Arc::new(SystemClock),
        EngineConfig::from_settings(&app.settings),
        Arc::new(tokio::sync::Notify::new()),
    );

    let (a, b) = tokio::join!(first.drain(), second.drain());

    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a + b, 1000, "every cancellation worked on once");
    assert!(a > 0 && b > 0, "both engines took a share ({a}, {b})");
    assert_eq!(
        app.wallet.refund_calls().len(),
        1000,
        "no refund sent twice"
    );
    let refunded = app.wallet.refunded_amounts();
    assert_eq!(refunded.len(), 1000);
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM cancellations WHERE state = 'refunded'")
            .await,
        1000
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM cancellations WHERE next_attempt_at IS NOT NULL")
            .await,
        0,
        "none left behind"
    );
}

#[tokio::test]
async fn an_inconsistent_row_goes_to_manual_review_without_blocking_its_batch() {
    let app = crate::support::spawn_app().await;
    paid_and_cancelled(&app, "good", 100).await;
    paid_and_cancelled(&app, "bad", 100).await;
    // Something outside the service broke the stored refund (a currency no one knows).
    sqlx::query("UPDATE refunds SET currency = 'XXX' WHERE payment_request_id = 'bad'")
        .execute(&app.db.pool)
        .await
        .unwrap();

    engine_for(&app).drain().await.unwrap();

    assert_eq!(app.db.state_of("good").await.as_deref(), Some("refunded"));
    assert_eq!(
        app.db.state_of("bad").await.as_deref(),
        Some("manual_review")
    );
    let record = app.db.store().cancellation("bad").await.unwrap().unwrap();
    assert!(record.last_error.unwrap().contains("XXX"));
    assert_eq!(
        app.wallet.refund_calls().len(),
        1,
        "nothing sent for the broken row"
    );
}
