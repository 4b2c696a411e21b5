//! Due times, leases and requeues run on the database's clock (issue 18 point 11): an instance
//! whose clock is a day ahead schedules nothing a day late, and a correct instance's engine
//! picks up at once what the other decided, requeued or retried.

use crate::support::TestOptions;
use crate::support::app::{INTERNAL_TOKEN, TestApp, spawn_app_with};
use crate::support::wallet::RefundScript;
use mpp_cancel::domain::{Clock, ManualClock, PaymentStatus, SystemClock};
use mpp_cancel::engine::{EngineConfig, RefundEngine};
use std::sync::Arc;

fn engine(app: &TestApp, clock: Arc<dyn Clock>) -> RefundEngine {
    let mut settings = app.settings.clone();
    settings.refunds.workers = 1;
    settings.refunds.backoff_base_ms = 10;
    settings.refunds.backoff_max_ms = 10;
    RefundEngine::new(
        app.db.store(),
        app.wallet.clone(),
        clock,
        EngineConfig::from_settings(&settings),
        Arc::new(tokio::sync::Notify::new()),
    )
}

#[tokio::test]
async fn an_instance_a_day_ahead_schedules_work_on_the_databases_clock() {
    let ahead = SystemClock.now() + chrono::Duration::days(1);
    let app = spawn_app_with(TestOptions {
        now: ahead,
        ..Default::default()
    })
    .await;
    let on_time = engine(&app, Arc::new(SystemClock));

    // Decided by the instance ahead: due now, not tomorrow.
    app.wallet
        .add("decided-ahead", PaymentStatus::Success, 100, "JPY", ahead);
    assert_eq!(app.cancel("decided-ahead").await.code(), "SUCCESS");
    on_time.drain().await.unwrap();
    assert_eq!(
        app.db.state_of("decided-ahead").await.as_deref(),
        Some("refunded")
    );

    // Retried by an engine a day ahead: due after the backoff, on the database's clock.
    app.wallet
        .add("retried-ahead", PaymentStatus::Success, 200, "JPY", ahead);
    assert_eq!(app.cancel("retried-ahead").await.code(), "SUCCESS");
    app.wallet.script_refunds([RefundScript::Error]);
    let mut settings = app.settings.clone();
    settings.refunds.backoff_base_ms = 10;
    settings.refunds.backoff_max_ms = 10;
    let engine_ahead = RefundEngine::new(
        app.db.store(),
        app.wallet.clone(),
        Arc::new(ManualClock::running_from(ahead)),
        EngineConfig::from_settings(&settings),
        Arc::new(tokio::sync::Notify::new()),
    );
    assert_eq!(engine_ahead.run_once().await.unwrap(), 1);
    assert_eq!(
        app.db.state_of("retried-ahead").await.as_deref(),
        Some("refund_pending")
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    on_time.drain().await.unwrap();
    assert_eq!(
        app.db.state_of("retried-ahead").await.as_deref(),
        Some("refunded")
    );

    // Requeued through the instance ahead: due now.
    app.wallet
        .add("requeued-ahead", PaymentStatus::Success, 300, "JPY", ahead);
    assert_eq!(app.cancel("requeued-ahead").await.code(), "SUCCESS");
    app.wallet.script_refunds([RefundScript::Failed]);
    on_time.drain().await.unwrap();
    assert_eq!(
        app.db.state_of("requeued-ahead").await.as_deref(),
        Some("manual_review")
    );
    let requeued = app
        .http
        .post(format!(
            "{}/v1/cancellations/requeued-ahead/requeue",
            app.internal_address
        ))
        .bearer_auth(INTERNAL_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(requeued.status().as_u16(), 200);
    on_time.drain().await.unwrap();
    assert_eq!(
        app.db.state_of("requeued-ahead").await.as_deref(),
        Some("refunded")
    );
    // Sent to manual_review by the engine a day ahead, then requeued in bulk: the selection
    // (rows that went there before the requeue began) is on the database's clock too.
    app.wallet
        .add("bulk-ahead", PaymentStatus::Success, 400, "JPY", ahead);
    assert_eq!(app.cancel("bulk-ahead").await.code(), "SUCCESS");
    app.wallet.script_refunds([RefundScript::Failed]);
    engine_ahead.drain().await.unwrap();
    assert_eq!(
        app.db.state_of("bulk-ahead").await.as_deref(),
        Some("manual_review")
    );
    let bulk: serde_json::Value = app
        .http
        .post(format!("{}/v1/cancellations/requeue", app.internal_address))
        .bearer_auth(INTERNAL_TOKEN)
        .json(&serde_json::json!({"state": "manual_review"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["count"], 1, "{bulk}");
    on_time.drain().await.unwrap();
    assert_eq!(
        app.db.state_of("bulk-ahead").await.as_deref(),
        Some("refunded")
    );

    let stale: i64 = app
        .db
        .count("SELECT count(*) FROM cancellations WHERE updated_at > now() + interval '1 hour' AND next_attempt_at IS NOT NULL")
        .await;
    assert_eq!(stale, 0);
}
