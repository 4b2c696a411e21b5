//! An instance whose clock is off the database's by more than `server.max_clock_skew_ms` judges
//! windows by a wrong arrival time: it is not ready (`/readyz` 503, with the reason) and answers
//! cancels `U` (issue 18 point 11). Through the binary, its clock moved by the testing build's
//! `MPP_CANCEL_TESTING_CLOCK_OFFSET_MS`.
#![cfg(feature = "testing")]

mod common;

use common::{ACQUIRER_ID, PSP_ID, ServiceProcess, fresh_database};
use std::time::Duration;

fn env(offset_ms: i64) -> Vec<(&'static str, String)> {
    vec![
        ("APP_ENV", "local".into()),
        ("MPP_CANCEL__WALLET__KIND", "demo".into()),
        ("MPP_CANCEL__WALLET__ALLOW_DEMO", "true".into()),
        (
            "MPP_CANCEL__INTERNAL__TOKEN",
            format!("skew-test-{}", uuid::Uuid::new_v4().simple()),
        ),
        ("MPP_CANCEL_TESTING_CLOCK_OFFSET_MS", offset_ms.to_string()),
    ]
}

/// `/readyz` once it answers something other than "database unreachable" (the service is still
/// starting): (status, reason).
async fn readiness(service: &ServiceProcess) -> (u16, String) {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http
            .get(format!("{}/readyz", service.internal))
            .send()
            .await
        {
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            let reason = body["reason"].as_str().unwrap_or("").to_owned();
            if status == 200 || !reason.contains("unreachable") {
                return (status, reason);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service did not answer /readyz: {}", service.log_text());
}

async fn cancel(service: &ServiceProcess, id: &str) -> serde_json::Value {
    let response = reqwest::Client::new()
        .post(service.cancel_url())
        .header("Content-Type", "application/json; charset=UTF-8")
        .body(
            serde_json::json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": id})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

#[tokio::test]
async fn an_instance_whose_clock_is_off_the_databases_is_not_ready_and_answers_u() {
    let (db_url, pool) = fresh_database().await;
    let skewed = ServiceProcess::start(&db_url, &env(5_000));
    let (status, reason) = readiness(&skewed).await;
    assert_eq!(status, 503);
    assert!(
        reason.contains("clock") && reason.contains("ahead of") && reason.contains("1000 ms"),
        "{reason}"
    );
    let answer = cancel(&skewed, "skewed-1").await;
    assert_eq!(answer["result"]["resultStatus"], "U", "{answer}");
    assert_eq!(answer["result"]["resultCode"], "UNKNOWN_EXCEPTION");
    let stored: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM cancellations) + (SELECT count(*) FROM cancel_arrivals)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored, 0,
        "nothing is decided or remembered by a skewed clock"
    );
    assert!(
        skewed.log_text().contains("TESTING BUILD"),
        "the offset is announced"
    );

    // Within the limit (and behind rather than ahead): ready, and cancels are decided.
    let close = ServiceProcess::start(&db_url, &env(-300));
    assert_eq!(readiness(&close).await, (200, String::new()));
    let answer = cancel(&close, "close-1").await;
    assert_eq!(answer["result"]["resultCode"], "SUCCESS", "{answer}");
}

#[tokio::test]
async fn the_limit_is_configurable_and_checked_at_start() {
    let (db_url, _pool) = fresh_database().await;
    let mut lenient = env(5_000);
    lenient.push(("MPP_CANCEL__SERVER__MAX_CLOCK_SKEW_MS", "10000".into()));
    let service = ServiceProcess::start(&db_url, &lenient);
    assert_eq!(readiness(&service).await, (200, String::new()));

    let mut zero = env(0);
    zero.push(("MPP_CANCEL__SERVER__MAX_CLOCK_SKEW_MS", "0".into()));
    let mut refused = ServiceProcess::start(&db_url, &zero);
    let status = tokio::task::spawn_blocking(move || {
        let status = refused.child.wait().unwrap();
        (status, refused.log_text())
    })
    .await
    .unwrap();
    assert!(!status.0.success(), "a zero limit is refused at start");
    assert!(
        status.1.contains("server.max_clock_skew_ms"),
        "{}",
        status.1
    );
}
