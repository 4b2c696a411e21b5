//! The defects a code audit found on the money path (issue 9), each shown by the test that
//! failed before its fix: a payment's true settlement day, untrusted wallet values, leases that
//! outlive the wallet work, the arrival time, the lookup after close, panicking wallets, attempt
//! counters, and nudges.

use crate::engine::wait_for_state;
use crate::support::app::{INTERNAL_TOKEN, TestApp, spawn_app_with};
use crate::support::wallet::RefundScript;
use crate::support::{TestOptions, at};
use mpp_cancel::domain::{CancellationState, Clock, PaymentStatus, SystemClock};
use mpp_cancel::engine::{EngineConfig, RefundEngine};
use mpp_cancel::store::{Nudged, Store, WorkOutcome};
use mpp_cancel::wallet::CloseOutcome;
use std::sync::Arc;
use std::time::Duration;

fn engine(app: &TestApp, store: Store) -> RefundEngine {
    let mut settings = app.settings.clone();
    settings.refunds.workers = 1;
    settings.refunds.backoff_base_ms = 10;
    RefundEngine::new(
        store,
        app.wallet.clone(),
        Arc::new(SystemClock),
        EngineConfig::from_settings(&settings),
        Arc::new(tokio::sync::Notify::new()),
    )
}

async fn app_at(now: &str) -> TestApp {
    spawn_app_with(TestOptions {
        now: at(now),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_payment_unknown_at_decision_is_reported_under_its_true_settlement_day() {
    // Cancelled at 00:00:05 UTC+8 while the wallet did not know the payment yet; it was made
    // at 23:59:50 the day before.
    let app = app_at("2026-11-21T00:00:05+08:00").await;
    assert_eq!(app.cancel("midnight").await.code(), "SUCCESS");
    app.wallet.add(
        "midnight",
        PaymentStatus::Success,
        700,
        "JPY",
        at("2026-11-20T23:59:50+08:00"),
    );

    engine(&app, app.db.store()).drain().await.unwrap();

    assert_eq!(
        app.db.state_of("midnight").await.as_deref(),
        Some("refunded")
    );
    let record = app
        .db
        .store()
        .cancellation("midnight")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.settlement_date.to_string(), "2026-11-20");
    assert_eq!(
        record.payment_created_at,
        Some(at("2026-11-20T23:59:50+08:00"))
    );
    assert_eq!(record.payment_status.as_deref(), Some("SUCCESS"));
    let day = |d: &str| d.parse().unwrap();
    let listed = app
        .db
        .store()
        .settlement_report(day("2026-11-20"), &Default::default())
        .await
        .unwrap();
    assert_eq!(
        listed.len(),
        1,
        "listed under T, where clearing must exclude it"
    );
    assert!(
        app.db
            .store()
            .settlement_report(day("2026-11-21"), &Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_junk_wallet_reference_sends_only_its_row_to_manual_review() {
    let app = app_at("2026-11-20T12:00:00+08:00").await;
    for id in ["junk", "fine"] {
        app.wallet
            .add(id, PaymentStatus::Success, 100, "JPY", app.clock_now());
        assert_eq!(app.cancel(id).await.code(), "SUCCESS");
    }
    // The first refund call (one of the two rows) answers with a NUL in its reference.
    app.wallet
        .script_refunds([RefundScript::SucceededWithReference("ref\u{0}with-nul")]);

    engine(&app, app.db.store()).drain().await.unwrap();

    let calls = app.wallet.refund_calls();
    let junk = calls[0].payment_request_id.clone();
    let fine = if junk == "junk" { "fine" } else { "junk" };
    assert_eq!(app.db.state_of(fine).await.as_deref(), Some("refunded"));
    assert_eq!(
        app.db.state_of(&junk).await.as_deref(),
        Some("manual_review")
    );
    let record = app.db.store().cancellation(&junk).await.unwrap().unwrap();
    assert!(record.last_error.unwrap().contains("control characters"));
    assert_eq!(
        app.wallet.refunded_amounts().len(),
        2,
        "both were paid once"
    );
}

#[tokio::test]
async fn two_engines_never_call_the_wallet_for_one_refund_at_once_even_past_the_configured_lease() {
    let app = spawn_app_with(TestOptions {
        configure: |s| s.wallet.timeout_ms = 5000,
        ..Default::default()
    })
    .await;
    // The start checks refuse a lease shorter than wallet.timeout_ms; an engine built from
    // settings that skipped them still stretches its lease over its wallet calls.
    let mut short_lease = app.settings.clone();
    short_lease.refunds.lease_seconds = 1;
    let engine = |app: &TestApp, store: Store| {
        let mut settings = short_lease.clone();
        settings.refunds.workers = 1;
        settings.refunds.backoff_base_ms = 10;
        RefundEngine::new(
            store,
            app.wallet.clone(),
            Arc::new(SystemClock),
            EngineConfig::from_settings(&settings),
            Arc::new(tokio::sync::Notify::new()),
        )
    };
    app.wallet
        .add("slow", PaymentStatus::Success, 100, "JPY", app.clock_now());
    assert_eq!(app.cancel("slow").await.code(), "SUCCESS");
    // Longer than the configured lease of one second.
    app.wallet
        .script_refunds([RefundScript::Slow(Duration::from_millis(2500))]);
    let other_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(app.db.options.clone())
        .await
        .unwrap();
    let first = engine(&app, app.db.store());
    let second = engine(&app, Store::new(other_pool));

    let racing = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        second.run_once().await.unwrap()
    };
    let (a, b) = tokio::join!(first.run_once(), racing);

    assert_eq!(
        (a.unwrap(), b),
        (1, 0),
        "the second engine found the row leased"
    );
    assert_eq!(
        app.wallet
            .max_concurrent_per_refund_id
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(app.db.state_of("slow").await.as_deref(), Some("refunded"));
}

#[tokio::test]
async fn a_cancel_answered_u_before_the_cutoff_is_accepted_when_retried_after_it() {
    let app = app_at("2026-11-21T00:29:59+08:00").await;
    app.wallet.add(
        "in-time",
        PaymentStatus::Success,
        100,
        "JPY",
        at("2026-11-20T10:00:00+08:00"),
    );
    app.wallet.fail_next_lookups(1);
    assert_eq!(app.cancel("in-time").await.code(), "UNKNOWN_EXCEPTION");

    app.clock.set(at("2026-11-21T00:45:00+08:00"));
    assert_eq!(app.cancel("in-time").await.code(), "SUCCESS");
    assert_eq!(
        app.db.state_of("in-time").await.as_deref(),
        Some("refund_pending")
    );

    // An id first seen after the cut-off is still refused.
    app.wallet.add(
        "too-late",
        PaymentStatus::Success,
        100,
        "JPY",
        at("2026-11-20T10:00:00+08:00"),
    );
    assert_eq!(app.cancel("too-late").await.code(), "CANCEL_WINDOW_EXCEED");
}

#[tokio::test]
async fn a_slow_lookup_across_the_cutoff_is_judged_by_the_arrival() {
    let app = app_at("2026-11-21T00:29:59.900+08:00").await;
    app.wallet.add(
        "slow-lookup",
        PaymentStatus::Success,
        100,
        "JPY",
        at("2026-11-20T10:00:00+08:00"),
    );
    app.wallet.delay_lookups(Duration::from_millis(400));
    let clock = app.clock.clone();
    let tick = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        clock.set(at("2026-11-21T00:30:00.300+08:00"));
    });

    assert_eq!(app.cancel("slow-lookup").await.code(), "SUCCESS");
    tick.await.unwrap();
}

#[tokio::test]
async fn the_lookup_after_close_must_agree_with_the_recorded_payment() {
    let app = app_at("2026-11-20T12:00:00+08:00").await;
    app.wallet.add(
        "changed",
        PaymentStatus::Processing,
        500,
        "JPY",
        app.clock_now(),
    );
    assert_eq!(app.cancel("changed").await.code(), "SUCCESS");
    // The wallet now claims a success for another amount.
    app.wallet.add(
        "changed",
        PaymentStatus::Success,
        900,
        "JPY",
        app.clock_now(),
    );

    engine(&app, app.db.store()).drain().await.unwrap();

    assert_eq!(
        app.db.state_of("changed").await.as_deref(),
        Some("manual_review")
    );
    assert!(
        app.wallet.refund_calls().is_empty(),
        "no refund on a contradiction"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM refunds WHERE payment_request_id = 'changed'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_panicking_wallet_costs_only_its_own_row() {
    let app = app_at("2026-11-20T12:00:00+08:00").await;
    for id in ["a", "b"] {
        app.wallet
            .add(id, PaymentStatus::Success, 100, "JPY", app.clock_now());
        assert_eq!(app.cancel(id).await.code(), "SUCCESS");
    }
    app.wallet.script_refunds([RefundScript::Panic]);

    let engine = engine(&app, app.db.store());
    engine.run_once().await.unwrap();

    let calls = app.wallet.refund_calls();
    let panicked = calls[0].payment_request_id.clone();
    let other = if panicked == "a" { "b" } else { "a" };
    assert_eq!(app.db.state_of(other).await.as_deref(), Some("refunded"));
    let record = app
        .db
        .store()
        .cancellation(&panicked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.state, "refund_pending",
        "retried like a wallet error"
    );
    assert!(record.last_error.unwrap().contains("panicked"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    engine.drain().await.unwrap();
    assert_eq!(
        app.db.state_of(&panicked).await.as_deref(),
        Some("refunded")
    );
}

#[tokio::test]
async fn close_attempts_do_not_use_up_the_refund_attempts() {
    let app = spawn_app_with(TestOptions {
        engine: true,
        configure: |s| s.refunds.max_attempts = 3,
        ..Default::default()
    })
    .await;
    app.wallet.add(
        "long-close",
        PaymentStatus::Success,
        300,
        "JPY",
        app.clock_now(),
    );
    app.wallet.add(
        "long-close",
        PaymentStatus::Processing,
        300,
        "JPY",
        app.clock_now(),
    );
    // Two PENDING closes, then the payment turns out to have succeeded; two refund errors.
    app.wallet.script_closes([
        CloseOutcome::Pending,
        CloseOutcome::Pending,
        CloseOutcome::AlreadySucceeded,
    ]);
    app.wallet
        .script_refunds([RefundScript::Error, RefundScript::Error]);
    app.wallet
        .set_status("long-close", PaymentStatus::Processing);
    assert_eq!(app.cancel("long-close").await.code(), "SUCCESS");
    app.wallet.set_status("long-close", PaymentStatus::Success);

    wait_for_state(&app, "long-close", "refunded").await;
    assert_eq!(app.wallet.refund_calls().len(), 3);
}

#[tokio::test]
async fn a_nudge_reopens_nothing_to_refund_when_the_payment_succeeds_late() {
    let app = app_at("2026-11-20T12:00:00+08:00").await;
    app.wallet
        .add("late", PaymentStatus::Failed, 640, "JPY", app.clock_now());
    assert_eq!(app.cancel("late").await.code(), "SUCCESS");
    assert_eq!(
        app.db.state_of("late").await.as_deref(),
        Some("nothing_to_refund")
    );
    app.wallet.set_status("late", PaymentStatus::Success);

    let answer: serde_json::Value = app
        .http
        .post(format!(
            "{}/v1/cancellations/late/nudge",
            app.internal_address
        ))
        .bearer_auth(INTERNAL_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["action"], "reopened", "{answer}");

    engine(&app, app.db.store()).drain().await.unwrap();
    assert_eq!(app.db.state_of("late").await.as_deref(), Some("refunded"));
    let calls = app.wallet.refund_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].amount.minor_units, 640);
}

#[tokio::test]
async fn a_nudge_while_a_worker_holds_the_row_is_not_lost() {
    let app = app_at("2026-11-20T12:00:00+08:00").await;
    app.wallet.add(
        "held",
        PaymentStatus::Processing,
        100,
        "JPY",
        app.clock_now(),
    );
    assert_eq!(app.cancel("held").await.code(), "SUCCESS");
    let store = app.db.store();
    let now = SystemClock.now();
    let claimed = store
        .claim_due(now, Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    assert_eq!(
        store.nudge("held", now).await.unwrap(),
        Nudged::AfterCurrentAttempt
    );
    // The worker records "ask again in an hour".
    let outcome = WorkOutcome {
        payment_request_id: "held".into(),
        lease_token: claimed[0].lease_token,
        from: CancellationState::AwaitingOutcome,
        to: CancellationState::AwaitingOutcome,
        retry_in: Some(Duration::from_secs(3600)),
        last_error: None,
        refund_status: None,
        void_status: None,
        wallet_reference: None,
        found: None,
        detail: serde_json::json!({}),
        refunded: None,
        refund_after_capture: None,
    };
    assert_eq!(
        store.complete(SystemClock.now(), &[outcome]).await.unwrap(),
        vec!["held"]
    );
    // Due times are on the database's clock: due by the time the outcome was written, not in
    // an hour.
    let record = store.cancellation("held").await.unwrap().unwrap();
    assert!(
        record.next_attempt_at.unwrap() <= SystemClock.now() + chrono::Duration::seconds(1),
        "the nudge made it due at once"
    );
}

#[tokio::test]
async fn a_row_whose_outcome_the_database_refuses_is_set_aside_alone() {
    let app = app_at("2026-11-20T12:00:00+08:00").await;
    for id in ["poison", "healthy"] {
        app.wallet
            .add(id, PaymentStatus::Success, 100, "JPY", app.clock_now());
        assert_eq!(app.cancel(id).await.code(), "SUCCESS");
    }
    // Something the engine cannot foresee makes the database refuse one row's outcome.
    sqlx::query(
        "ALTER TABLE cancellations ADD CONSTRAINT refuse_poison
           CHECK (payment_request_id <> 'poison' OR state <> 'refunded')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();

    engine(&app, app.db.store()).drain().await.unwrap();

    assert_eq!(
        app.db.state_of("healthy").await.as_deref(),
        Some("refunded")
    );
    let poison = app
        .db
        .store()
        .cancellation("poison")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(poison.state, "manual_review");
    assert!(poison.last_error.unwrap().contains("could not be recorded"));
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM cancellations WHERE next_attempt_at IS NOT NULL")
            .await,
        0,
        "nothing left blocked"
    );
}
