//! The real binary as a process: killed with SIGKILL in the middle of a burst of cancels, then
//! restarted. No `S` is ever sent without its record, every accepted cancellation's refund (or,
//! for a card authorization, the release of its hold) happens exactly once (demo wallet, real
//! PostgreSQL), and the answers replay byte for byte. SIGTERM stops it cleanly (exit 0) with
//! the same guarantees.

mod common;

use common::{PSP_ID, ServiceProcess, fresh_database};
use futures_util::StreamExt;
use futures_util::stream;
use sqlx::PgPool;
use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const PAYMENTS: usize = 300;
const AUTHORIZATIONS: usize = 200;

fn start(db_url: &str) -> ServiceProcess {
    ServiceProcess::start(db_url, &[])
}

/// Creates `count` demo payments `{prefix}-1..` in `status`; returns their ids.
async fn seed_payments(pool: &PgPool, prefix: &str, status: &str, count: usize) -> Vec<String> {
    sqlx::query(
        r#"INSERT INTO demo_payments (payment_request_id, payment_id, status, amount_value, currency, created_at)
           SELECT $1 || '-' || i, 'demo-' || $1 || '-' || i, $2, 1000 + i, 'JPY', now()
             FROM generate_series(1, $3) AS i"#,
    )
    .bind(prefix)
    .bind(status)
    .bind(count as i64)
    .execute(pool)
    .await
    .unwrap();
    (1..=count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Sends a cancel for each id, 16 at a time; `None` where no answer came (the process died).
async fn burst(
    http: &reqwest::Client,
    service_url: &str,
    ids: &[String],
) -> HashMap<String, Option<Vec<u8>>> {
    burst_counting(http, service_url, ids, &AtomicUsize::new(0)).await
}

/// [`burst`], counting in `answered` the answers received so far.
async fn burst_counting(
    http: &reqwest::Client,
    service_url: &str,
    ids: &[String],
    answered: &AtomicUsize,
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
            if bytes.is_some() {
                answered.fetch_add(1, Ordering::SeqCst);
            }
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

/// Waits until no cancellation has work left.
async fn wait_until_drained(pool: &PgPool) {
    for _ in 0..400 {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cancellations WHERE next_attempt_at IS NOT NULL",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count_in_state(pool: &PgPool, state: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM cancellations WHERE state = $1")
        .bind(state)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until no cancellation has work left, then checks every payment was refunded once.
async fn assert_each_refunded_exactly_once(pool: &PgPool) {
    wait_until_drained(pool).await;
    let refunded = count_in_state(pool, "refunded").await;
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

/// Waits until no cancellation has work left, then checks every authorization's hold was
/// released exactly once, under the void id its cancellation stored, and nothing refunded.
async fn assert_each_voided_exactly_once(pool: &PgPool) {
    wait_until_drained(pool).await;
    let voided = count_in_state(pool, "voided").await;
    assert_eq!(voided, AUTHORIZATIONS as i64, "every cancellation voided");
    let wrong: Vec<String> = sqlx::query_scalar(
        r#"SELECT p.payment_request_id FROM demo_payments p
            WHERE p.status <> 'VOIDED' OR p.refunded_value <> 0
               OR (SELECT count(*) FROM demo_voids d
                    WHERE d.payment_request_id = p.payment_request_id) <> 1
               OR NOT EXISTS (SELECT 1 FROM demo_voids d JOIN voids v USING (void_id)
                               WHERE d.payment_request_id = p.payment_request_id
                                 AND v.payment_request_id = p.payment_request_id
                                 AND v.status = 'voided')
            ORDER BY 1"#,
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        wrong.is_empty(),
        "each hold released exactly once, under its stored void id: {} wrong, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let refunds: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM demo_refunds) + (SELECT count(*) FROM refunds)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(refunds, 0, "nothing refunded for an authorization");
}

/// Answers a burst has received when the kill comes: some `S` are out, most are not.
const KILL_AFTER_ANSWERS: usize = 20;

/// Starts the service, SIGKILLs it once a burst of cancels for `ids` has had
/// [`KILL_AFTER_ANSWERS`] answers, checks no `S` came without its record, restarts it and lets Alipay+ retry (and replay) every id: each
/// must end `S`, byte for byte the same as any `S` sent before the kill. Returns the restarted
/// service, still running, to finish the money work.
async fn kill_mid_burst_then_retry(db_url: &str, pool: &PgPool, ids: &[String]) -> ServiceProcess {
    let http = reqwest::Client::new();
    let mut service = start(db_url);
    service.wait_until_up().await;

    let url = service.public.clone();
    let answered = AtomicUsize::new(0);
    let (answers, ()) = tokio::join!(burst_counting(&http, &url, ids, &answered), async {
        for _ in 0..6000 {
            if answered.load(Ordering::SeqCst) >= KILL_AFTER_ANSWERS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        service.child.kill().expect("SIGKILL");
    });
    service.child.wait().unwrap();
    let answered_before = assert_no_success_without_record(pool, &answers).await;
    assert!(
        0 < answered_before && answered_before < ids.len(),
        "the kill landed mid-burst ({answered_before} of {} answered S)",
        ids.len()
    );

    // Alipay+ retries everything it has no final answer for (and replays the rest).
    let restarted = start(db_url);
    restarted.wait_until_up().await;
    let retried = burst(&http, &restarted.public, ids).await;
    for (id, body) in &retried {
        let body = body.as_ref().expect("the restarted service answers");
        assert_eq!(result_code(body), "SUCCESS", "{id}");
        if let Some(Some(first)) = answers.get(id)
            && result_code(first) == "SUCCESS"
        {
            assert_eq!(first, body, "{id}: the replay is byte for byte");
        }
    }
    restarted
}

#[tokio::test]
async fn killed_mid_burst_loses_nothing_and_pays_nothing_twice() {
    let (db_url, pool) = fresh_database().await;
    let ids = seed_payments(&pool, "kill", "SUCCESS", PAYMENTS).await;
    let _restarted = kill_mid_burst_then_retry(&db_url, &pool, &ids).await;
    assert_each_refunded_exactly_once(&pool).await;
}

#[tokio::test]
async fn killed_mid_burst_releases_each_authorization_once_and_refunds_nothing() {
    let (db_url, pool) = fresh_database().await;
    let ids = seed_payments(&pool, "kill-auth", "AUTHORIZED", AUTHORIZATIONS).await;
    let _restarted = kill_mid_burst_then_retry(&db_url, &pool, &ids).await;
    assert_each_voided_exactly_once(&pool).await;
}

#[tokio::test]
async fn sigterm_mid_burst_exits_cleanly_and_keeps_every_promise() {
    let (db_url, pool) = fresh_database().await;
    let ids = seed_payments(&pool, "kill", "SUCCESS", PAYMENTS).await;
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
