//! What the on-call engineer relies on: metrics that move, readiness that tells the truth, load
//! shedding that answers at once.

use crate::support::app::{CANCEL_PATH, TestApp, spawn_app_with};
use crate::support::{TestOptions, spawn_app};
use futures_util::future::join_all;
use mpp_cancel::domain::PaymentStatus;
use std::time::Duration;

async fn scrape(app: &TestApp) -> String {
    app.http
        .get(format!("{}/metrics", app.internal_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample line starting with `series` (name and labels, exactly).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn counters_and_gauges_follow_the_requests() {
    let app = spawn_app().await; // engine off: the queued work stays due
    app.wallet
        .add("m-1", PaymentStatus::Success, 100, "JPY", app.clock_now());
    app.wallet.add(
        "m-2",
        PaymentStatus::Processing,
        100,
        "JPY",
        app.clock_now(),
    );
    let before = scrape(&app).await;
    assert_eq!(
        sample(
            &before,
            r#"mpp_cancel_requests_total{result_code="SUCCESS",result_status="S"}"#
        ),
        0.0
    );

    app.cancel("m-1").await;
    app.cancel("m-1").await; // a replay counts as an answer too
    app.cancel("m-2").await;
    app.post_json(CANCEL_PATH, "{").await;
    app.post_json("/aps/api/nowhere", "{}").await;
    app.wallet.fail_next_lookups(1);
    app.cancel("m-3").await;

    let after = scrape(&app).await;
    assert_eq!(
        sample(
            &after,
            r#"mpp_cancel_requests_total{result_code="SUCCESS",result_status="S"}"#
        ),
        3.0
    );
    assert_eq!(
        sample(
            &after,
            r#"mpp_cancel_requests_total{result_code="PARAM_ILLEGAL",result_status="F"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            r#"mpp_cancel_requests_total{result_code="INVALID_API",result_status="F"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            r#"mpp_cancel_requests_total{result_code="UNKNOWN_EXCEPTION",result_status="U"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "mpp_cancel_request_duration_seconds_count"),
        6.0
    );
    assert_eq!(
        sample(&after, "mpp_cancel_due_work"),
        2.0,
        "m-1 to refund, m-2 to close"
    );
    assert!(sample(&after, "mpp_cancel_oldest_due_age_seconds") >= 0.0);
    assert_eq!(sample(&after, "mpp_cancel_manual_review"), 0.0);
}

#[tokio::test]
async fn engine_steps_and_wallet_calls_are_counted() {
    let app = spawn_app_with(TestOptions {
        engine: true,
        ..Default::default()
    })
    .await;
    app.wallet
        .script_refunds([crate::support::wallet::RefundScript::Error]);
    app.wallet
        .add("e-1", PaymentStatus::Success, 100, "JPY", app.clock_now());
    app.cancel("e-1").await;
    crate::engine::wait_for_state(&app, "e-1", "refunded").await;

    let metrics = scrape(&app).await;
    assert_eq!(
        sample(
            &metrics,
            r#"mpp_cancel_refund_engine_steps_total{outcome="error",to_state="refund_pending"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"mpp_cancel_refund_engine_steps_total{outcome="succeeded",to_state="refunded"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"mpp_cancel_wallet_call_duration_seconds_count{call="refund"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"mpp_cancel_wallet_call_errors_total{call="refund"}"#
        ),
        1.0
    );
    assert_eq!(sample(&metrics, "mpp_cancel_due_work"), 0.0);
}

#[tokio::test]
async fn readiness_follows_the_database() {
    let app = spawn_app_with(TestOptions {
        behind_proxy: true,
        ..Default::default()
    })
    .await;
    let proxy = app.proxy.clone().unwrap();
    let ready = || async {
        app.http
            .get(format!("{}/readyz", app.internal_address))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 200);

    proxy.stop();
    assert_eq!(ready().await, 503);
    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.internal_address))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the process itself is still up"
    );

    proxy.start_again();
    let mut status = 0;
    for _ in 0..50 {
        status = ready().await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn past_the_in_flight_limit_the_answer_is_traffic_exceed_at_once() {
    let app = spawn_app_with(TestOptions {
        configure: |s| s.server.max_in_flight = 2,
        ..Default::default()
    })
    .await;
    app.wallet.delay_lookups(Duration::from_millis(500));
    let ids: Vec<String> = (0..12).map(|i| format!("burst-{i}")).collect();

    let replies = join_all(ids.iter().map(|id| app.cancel(id))).await;

    let shed: Vec<&String> = ids
        .iter()
        .zip(&replies)
        .filter(|(_, r)| r.code() == "REQUEST_TRAFFIC_EXCEED_LIMIT")
        .map(|(id, _)| id)
        .collect();
    let accepted = replies.iter().filter(|r| r.code() == "SUCCESS").count();
    assert!((1..=2).contains(&accepted), "{accepted} accepted");
    assert_eq!(shed.len() + accepted, 12);
    assert!(replies.iter().all(|r| r.status == 200));
    for id in shed {
        assert_eq!(
            app.db.state_of(id).await,
            None,
            "{id}: shed, nothing stored"
        );
    }
    let retry = app.cancel("burst-11").await;
    assert_eq!(
        retry.code(),
        "SUCCESS",
        "after the burst the retry goes through"
    );
}
