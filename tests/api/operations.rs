//! What the on-call engineer relies on: metrics that move, readiness that tells the truth, load
//! shedding that answers at once.

use crate::support::app::{CANCEL_PATH, TestApp, cancel_body, spawn_app_with};
use crate::support::{TestOptions, spawn_app};
use futures_util::future::join_all;
use mpp_cancel::domain::PaymentStatus;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// A connection that has sent a cancel's head (`headers`, which should announce the full
/// Content-Length) and `partial_body`, then stalls: what a slow-body flood looks like.
pub(crate) async fn stalled_request(
    app: &TestApp,
    headers: &[(&str, String)],
    partial_body: &[u8],
) -> TcpStream {
    let host = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.unwrap();
    let mut head = format!("POST {CANCEL_PATH} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(partial_body).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

/// Reads one HTTP/1.1 response: (status, body, headers).
pub(crate) async fn read_response(
    stream: &mut TcpStream,
) -> (u16, Vec<u8>, reqwest::header::HeaderMap) {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed without an answer");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            value.trim().parse().unwrap(),
        );
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Content-Length");
    let start = head_end + 4;
    while buffer.len() < start + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the body was cut short");
        buffer.extend_from_slice(&chunk[..n]);
    }
    (status, buffer[start..start + length].to_vec(), headers)
}

#[tokio::test]
async fn slow_bodies_hold_no_in_flight_place_and_are_dropped_after_the_body_timeout() {
    let app = spawn_app_with(TestOptions {
        configure: |s| {
            s.server.max_in_flight = 2;
            s.server.body_timeout_ms = 1500;
        },
        ..Default::default()
    })
    .await;
    app.wallet.add(
        "honest",
        PaymentStatus::Success,
        100,
        "JPY",
        app.clock_now(),
    );
    let body = cancel_body("slow-body");
    let headers = [
        ("Content-Type", "application/json".to_owned()),
        ("Content-Length", body.len().to_string()),
    ];
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..8 {
        slow.push(stalled_request(&app, &headers, &body.as_bytes()[..10]).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // their handlers wait for the bodies

    let honest = app.cancel("honest").await;
    assert_eq!(
        honest.code(),
        "SUCCESS",
        "eight trickling bodies must not take the two places in flight"
    );

    for stream in &mut slow {
        let (status, answer, _) =
            tokio::time::timeout(Duration::from_secs(5), read_response(stream))
                .await
                .expect("a slow body is answered after the body timeout, not held forever");
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(status, 200);
        assert_eq!(answer["result"]["resultStatus"], "U", "{answer}");
        assert_eq!(
            answer["result"]["resultCode"], "UNKNOWN_EXCEPTION",
            "{answer}"
        );
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4),
        "answered after ~body_timeout_ms: {waited:?}"
    );
    assert_eq!(app.db.state_of("slow-body").await, None, "nothing stored");
}

#[tokio::test]
async fn a_body_cut_short_by_the_transport_is_answered_u_not_a_final_f() {
    let app = spawn_app().await;
    let body = cancel_body("cut-short");
    let headers = [
        ("Content-Type", "application/json".to_owned()),
        ("Content-Length", body.len().to_string()),
    ];
    let mut stream = stalled_request(&app, &headers, &body.as_bytes()[..10]).await;
    // The client's side of the connection ends mid-body (its write half closes).
    stream.shutdown().await.unwrap();
    let (status, answer, _) =
        tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream))
            .await
            .expect("answered at once, not after the body timeout");
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, 200);
    assert_eq!(answer["result"]["resultStatus"], "U", "{answer}");
    assert_eq!(
        answer["result"]["resultCode"], "UNKNOWN_EXCEPTION",
        "{answer}"
    );
    assert_eq!(app.db.state_of("cut-short").await, None, "nothing stored");
}
