//! Durations at their limits (issue 18 point 9): no delay added to a time can panic, and a
//! panicking wallet whose retry is computed with such a delay does not kill the worker.

use crate::support::app::spawn_app;
use crate::support::wallet::RefundScript;
use mpp_cancel::domain::{Backoff, PaymentStatus, SystemClock};
use mpp_cancel::engine::step::RetryPolicy;
use mpp_cancel::engine::{EngineConfig, RefundEngine};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn the_largest_backoff_neither_panics_nor_kills_the_worker() {
    let app = spawn_app().await;
    for id in ["panics", "errs"] {
        app.wallet
            .add(id, PaymentStatus::Success, 100, "JPY", app.clock_now());
        assert_eq!(app.cancel(id).await.code(), "SUCCESS");
    }
    // A library user's configuration, not checked by any settings file.
    let config = EngineConfig {
        workers: 1,
        batch_size: 1,
        poll_interval: Duration::from_millis(10),
        batch_delay: Duration::ZERO,
        lease: Duration::MAX,
        call_timeout: Duration::from_secs(2),
        policy: RetryPolicy {
            max_attempts: 5,
            backoff: Backoff {
                base: Duration::MAX,
                max: Duration::MAX,
            },
        },
        window: Default::default(),
    };
    let engine = RefundEngine::new(
        app.db.store(),
        app.wallet.clone(),
        Arc::new(SystemClock),
        config,
        Arc::new(tokio::sync::Notify::new()),
    );
    // The wallet panics, then errs: each retry is due after Duration::MAX.
    app.wallet
        .script_refunds([RefundScript::Panic, RefundScript::Error]);
    assert_eq!(engine.run_once().await.unwrap(), 1);
    assert_eq!(engine.run_once().await.unwrap(), 1);
    assert_eq!(engine.run_once().await.unwrap(), 0, "both wait");

    let far: Vec<(String, bool, String)> = sqlx::query_as(
        "SELECT payment_request_id, next_attempt_at > now() + interval '50 years',
                coalesce(last_error, '')
           FROM cancellations ORDER BY payment_request_id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(far.len(), 2);
    for (id, due_far_away, error) in far {
        assert!(
            due_far_away,
            "{id}: the retry is due far away, capped, not overflowed"
        );
        assert!(!error.is_empty(), "{id}: the attempt is recorded");
    }
    assert_eq!(
        app.db.state_of("panics").await.as_deref(),
        Some("refund_pending")
    );
}
