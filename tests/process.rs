//! The real binary as a process: killed with SIGKILL in the middle of a burst of cancels, then
//! restarted. No `S` is ever sent without its record, every accepted cancellation's refund
//! happens exactly once (demo wallet, real PostgreSQL), and the answers replay byte for byte.
//! SIGTERM stops it cleanly (exit 0) with the same guarantees.

mod common;

use common::{PSP_ID, ServiceProcess, fresh_database};
use futures_util::StreamExt;
use futures_util::stream;
use sqlx::PgPool;
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

const PAYMENTS: usize = 300;

fn start(db_url: &str) -> ServiceProcess {
    ServiceProcess::start(db_url, &[])
}

async fn seed_payments(pool: &PgPool) -> Vec<String> {
    sqlx::query(
        r#"INSERT INTO demo_payments (payment_request_id, payment_id, status, amount_value, currency, created_at)
           SELECT 'kill-' || i, 'demo-kill-' || i, 'SUCCESS', 1000 + i, 'JPY', now()
             FROM generate_series(1, $1) AS i"#,
    )
    .bind(PAYMENTS as i64)
    .execute(pool)
    .await
    .unwrap();
    (1..=PAYMENTS).map(|i| format!("kill-{i}")).collect()
}

/// Sends a cancel for each id, 16 at a time; `None` where no answer came (the process died).
async fn burst(
    http: &reqwest::Client,
    service_url: &str,
    ids: &[String],
) -> HashMap<String, Option<Vec<u8>>> {
    stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let body = serde_json::json!({
                "acquirerId": "1022188000000000001", "pspId": PSP_ID, "paymentRequestId": id
            });
            let answer = http
                .post(format!("{service_url}/aps/api/v1/payments/cancelPayment"))
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            let bytes = match answer {
                Ok(r) => r.bytes().await.ok().map(|b| b.to_vec()),
                Err(_) => None,
            };
            (id, bytes)
        })
        .buffer_unordered(16)
        .collect()
        .await
}

fn result_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON result");
    v["result"]["resultCode"].as_str().unwrap().to_owned()
}

/// Every `S` answer has its accepted record; returns how many answers were `S`.
async fn assert_no_success_without_record(
    pool: &PgPool,
    answers: &HashMap<String, Option<Vec<u8>>>,
) -> usize {
    let mut successes = 0;
    for (id, body) in answers {
        let Some(body) = body else { continue };
        match result_code(body).as_str() {
            "SUCCESS" => {
                successes += 1;
                let stored: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT response_body FROM cancellations WHERE payment_request_id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await
                .unwrap();
                assert_eq!(
                    stored.as_deref(),
                    Some(body.as_slice()),
                    "{id}: S without its record"
                );
            }
            "UNKNOWN_EXCEPTION" => {}
            other => panic!("{id}: unexpected {other}"),
        }
    }
    successes
}

/// Waits until no cancellation has work left, then checks every payment was refunded once.
async fn assert_each_refunded_exactly_once(pool: &PgPool) {
    for _ in 0..400 {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cancellations WHERE next_attempt_at IS NOT NULL",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refunded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cancellations WHERE state = 'refunded'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(refunded, PAYMENTS as i64, "every cancellation refunded");
    let wrong: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM demo_payments p
            WHERE p.refunded_value <> p.amount_value
               OR (SELECT count(*) FROM demo_refunds r WHERE r.payment_request_id = p.payment_request_id) <> 1"#,
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        wrong, 0,
        "each payment refunded exactly once, for its full amount"
    );
}

#[tokio::test]
async fn killed_mid_burst_loses_nothing_and_pays_nothing_twice() {
    let (db_url, pool) = fresh_database().await;
    let ids = seed_payments(&pool).await;
    let http = reqwest::Client::new();
    let mut service = start(&db_url);
    service.wait_until_up().await;

    let url = service.public.clone();
    let (answers, ()) = tokio::join!(burst(&http, &url, &ids), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        service.child.kill().expect("SIGKILL");
    });
    service.child.wait().unwrap();
    let answered_before = assert_no_success_without_record(&pool, &answers).await;
    assert!(answered_before < PAYMENTS, "the kill landed mid-burst");

    // Alipay+ retries everything it has no final answer for (and replays the rest).
    let restarted = start(&db_url);
    restarted.wait_until_up().await;
    let retried = burst(&http, &restarted.public, &ids).await;
    for (id, body) in &retried {
        let body = body.as_ref().expect("the restarted service answers");
        assert_eq!(result_code(body), "SUCCESS", "{id}");
        if let Some(Some(first)) = answers.get(id)
            && result_code(first) == "SUCCESS"
        {
            assert_eq!(first, body, "{id}: the replay is byte for byte");
        }
    }
    assert_each_refunded_exactly_once(&pool).await;
}

#[tokio::test]
async fn sigterm_mid_burst_exits_cleanly_and_keeps_every_promise() {
    let (db_url, pool) = fresh_database().await;
    let ids = seed_payments(&pool).await;
    let http = reqwest::Client::new();
    let mut service = start(&db_url);
    service.wait_until_up().await;
    let pid = service.child.id().to_string();

    let url = service.public.clone();
    let (answers, ()) = tokio::join!(burst(&http, &url, &ids), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
    });
    let status = tokio::task::spawn_blocking(move || service.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_no_success_without_record(&pool, &answers).await;

    let restarted = start(&db_url);
    restarted.wait_until_up().await;
    let retried = burst(&http, &restarted.public, &ids).await;
    assert!(
        retried
            .values()
            .all(|b| b.as_deref().map(result_code).as_deref() == Some("SUCCESS"))
    );
    assert_each_refunded_exactly_once(&pool).await;
}
