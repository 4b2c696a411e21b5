//! The operator's first day, through the binary: generate keys, serve with signatures on, cancel
//! as Alipay+ with `sim cancel` (response signature verified), then the settlement report and
//! the logs, which must never hold a key or a token.

mod common;

use common::{ServiceProcess, fresh_database, run_cli};

#[tokio::test]
async fn keys_generate_then_a_signed_cancel_through_the_simulator() {
    let dir = std::env::temp_dir().join(format!("mppc-keys-{}", uuid::Uuid::new_v4().simple()));
    let (alipay_dir, mpp_dir) = (dir.join("alipay"), dir.join("mpp"));
    for out in [&alipay_dir, &mpp_dir] {
        let (ok, stdout, stderr) = run_cli(
            &["keys", "generate", "--out-dir", out.to_str().unwrap()],
            &[],
        );
        assert!(ok, "{stderr}");
        assert!(stdout.contains("Upload this public key"), "{stdout}");
    }
    let alipay_public = std::fs::read_to_string(alipay_dir.join("public_key.pem")).unwrap();
    let mpp_private_path = mpp_dir.join("private_key.pem");
    let mpp_private = std::fs::read_to_string(&mpp_private_path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&mpp_private_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable by its owner only"
        );
    }

    let (db_url, pool) = fresh_database().await;
    sqlx::query(
        "INSERT INTO demo_payments (payment_request_id, payment_id, status, amount_value, currency, created_at)
         VALUES ('sim-1', 'demo-sim-1', 'SUCCESS', 1200, 'JPY', now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    let internal_token = "internal-token-do-not-log-0123456789";
    let wallet_token = "wallet-token-do-not-log";
    let service = ServiceProcess::start(
        &db_url,
        &[
            ("MPP_CANCEL__ALIPAYPLUS__VERIFY_SIGNATURES", "true".into()),
            ("MPP_CANCEL__ALIPAYPLUS__CLIENT_ID", "SIM_CLIENT".into()),
            (
                "MPP_CANCEL__ALIPAYPLUS__PUBLIC_KEYS__1",
                alipay_public.clone(),
            ),
            (
                "MPP_CANCEL__ALIPAYPLUS__PRIVATE_KEY_FILE",
                mpp_private_path.display().to_string(),
            ),
            ("MPP_CANCEL__INTERNAL__TOKEN", internal_token.into()),
            ("MPP_CANCEL__WALLET__TOKEN", wallet_token.into()),
            ("RUST_LOG", "debug".into()),
        ],
    );
    service.wait_until_up().await;

    let sim = |id: &str| {
        run_cli(
            &[
                "sim",
                "cancel",
                "--url",
                &service.cancel_url(),
                "--payment-request-id",
                id,
                "--client-id",
                "SIM_CLIENT",
                "--alipay-private-key",
                alipay_dir.join("private_key.pem").to_str().unwrap(),
                "--mpp-public-key",
                mpp_dir.join("public_key.pem").to_str().unwrap(),
            ],
            &[],
        )
    };
    let (ok, stdout, stderr) = sim("sim-1");
    assert!(ok, "{stderr}");
    assert!(stdout.contains(r#""resultCode":"SUCCESS""#), "{stdout}");
    assert!(stderr.contains("response signature: verified"), "{stderr}");

    // Signed with the MPP's key instead of Alipay+'s: refused, and still a verified answer.
    let (ok, stdout, stderr) = run_cli(
        &[
            "sim",
            "cancel",
            "--url",
            &service.cancel_url(),
            "--payment-request-id",
            "sim-2",
            "--client-id",
            "SIM_CLIENT",
            "--alipay-private-key",
            mpp_private_path.to_str().unwrap(),
            "--mpp-public-key",
            mpp_dir.join("public_key.pem").to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("INVALID_SIGNATURE"), "{stdout}");

    // Wait for the refund, then read the report through the CLI.
    for _ in 0..100 {
        let state: String = sqlx::query_scalar(
            "SELECT state FROM cancellations WHERE payment_request_id = 'sim-1'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if state == "refunded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Etc::GMTMinus8)
        .date_naive()
        .to_string();
    let (ok, report, stderr) = run_cli(
        &["report", "--date", &today, "--format", "csv"],
        &[("DATABASE_URL", db_url.clone())],
    );
    assert!(ok, "{stderr}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("sim-1,demo-sim-1,") && l.contains(",refunded,")),
        "{report}"
    );

    // No secret in the logs, even at debug level.
    let log = service.log_text();
    assert!(log.contains("sim-1"), "the log has the cancellation: {log}");
    let private_body: String = mpp_private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for secret in [internal_token, wallet_token, &private_body[..40]] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn signatures_off_is_announced_loudly() {
    let (db_url, _pool) = fresh_database().await;
    let service = ServiceProcess::start(&db_url, &[]);
    service.wait_until_up().await;
    assert!(
        service.log_text().contains("verify_signatures = false"),
        "{}",
        service.log_text()
    );
}

#[test]
fn a_short_internal_token_refuses_to_start_with_a_clear_message() {
    let (ok, _, stderr) = run_cli(
        &["serve"],
        &[
            // Nothing listens there: were the token accepted, serve would fail on the database.
            (
                "DATABASE_URL",
                "postgres://nobody@127.0.0.1:1/nothing".into(),
            ),
            ("MPP_CANCEL__INTERNAL__TOKEN", "change-me".into()),
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("internal.token") && stderr.contains("at least 32"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("change-me"),
        "the token is not printed: {stderr}"
    );
}

/// Inserts a manual_review cancellation that went there `minutes_ago`.
async fn in_manual_review(pool: &sqlx::PgPool, id: &str, minutes_ago: i32) {
    sqlx::query(
        "INSERT INTO cancellations (payment_request_id, acquirer_id, psp_id, state, result_code,
                                    result_status, response_body, settlement_date, requested_at,
                                    updated_at, last_error)
         VALUES ($1, 'a', 'p', 'manual_review', 'SUCCESS', 'S', convert_to('{}', 'UTF8'),
                 current_date, now() - interval '1 day',
                 now() - make_interval(mins => $2), 'wallet down')",
    )
    .bind(id)
    .bind(minutes_ago)
    .execute(pool)
    .await
    .unwrap();
}

async fn state_of(pool: &sqlx::PgPool, id: &str) -> String {
    sqlx::query_scalar("SELECT state FROM cancellations WHERE payment_request_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn requeue_in_bulk_by_state_and_time_with_a_dry_run() {
    let (db_url, pool) = fresh_database().await;
    in_manual_review(&pool, "outage-a", 30).await;
    in_manual_review(&pool, "outage-b", 20).await;
    in_manual_review(&pool, "long-ago", 600).await;
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let env = [("DATABASE_URL", db_url.clone())];

    let (ok, stdout, stderr) = run_cli(
        &[
            "requeue",
            "--state",
            "manual_review",
            "--since",
            &since,
            "--dry-run",
        ],
        &env,
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("2 cancellations in manual_review would be requeued"),
        "{stdout}"
    );
    assert!(
        stdout.contains("outage-a\noutage-b\n"),
        "the ids, oldest first: {stdout}"
    );
    assert_eq!(
        state_of(&pool, "outage-a").await,
        "manual_review",
        "dry: nothing changed"
    );

    let (ok, stdout, stderr) = run_cli(
        &["requeue", "--state", "manual_review", "--since", &since],
        &env,
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("requeued 2 cancellations"), "{stdout}");
    for id in ["outage-a", "outage-b"] {
        assert_eq!(state_of(&pool, id).await, "awaiting_outcome");
    }
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE event = 'requeued' AND detail->>'by' = 'cli'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 2, "one audit event per requeued row");
    assert_eq!(state_of(&pool, "long-ago").await, "manual_review");

    // One id still works, and only other states are refused.
    let (ok, stdout, stderr) = run_cli(&["requeue", "long-ago"], &env);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("long-ago: requeued as awaiting_outcome"),
        "{stdout}"
    );
    let (ok, _, stderr) = run_cli(&["requeue", "--state", "refunded"], &env);
    assert!(!ok);
    assert!(stderr.contains("only manual_review"), "{stderr}");
    let (ok, _, _) = run_cli(&["requeue"], &env);
    assert!(!ok, "an id or --state is required");
}

/// The captured-meanwhile path by hand, as the README shows it: a demo authorization is
/// cancelled while the engine is off, captured with `demo capture`, and the engine, once started,
/// finds the void answered ALREADY_CAPTURED and refunds the full amount, once.
#[tokio::test]
async fn a_demo_authorization_captured_after_the_cancel_is_refunded_once() {
    let (db_url, pool) = fresh_database().await;
    let env = [("DATABASE_URL", db_url.clone())];
    let (ok, stdout, stderr) = run_cli(
        &[
            "demo",
            "pay",
            "--payment-request-id",
            "auth-1",
            "--status",
            "AUTHORIZED",
            "--amount",
            "4200",
        ],
        &env,
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"status\":\"AUTHORIZED\""), "{stdout}");

    let cancel = |service: &ServiceProcess| {
        let url = service.cancel_url();
        async move {
            let body = serde_json::json!({
                "acquirerId": common::ACQUIRER_ID, "pspId": common::PSP_ID,
                "paymentRequestId": "auth-1"
            });
            reqwest::Client::new()
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let engine_off =
        ServiceProcess::start(&db_url, &[("MPP_CANCEL__REFUNDS__WORKERS", "0".into())]);
    engine_off.wait_until_up().await;
    let answer = cancel(&engine_off).await;
    assert!(answer.contains("\"resultStatus\":\"S\""), "{answer}");
    drop(engine_off);

    let (ok, _, stderr) = run_cli(&["demo", "capture", "--payment-request-id", "auth-1"], &env);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run_cli(&["demo", "capture", "--payment-request-id", "auth-1"], &env);
    assert!(!ok, "a second capture is refused");
    assert!(
        stderr.contains("not an AUTHORIZED demo payment"),
        "{stderr}"
    );

    let service = ServiceProcess::start(&db_url, &[]);
    service.wait_until_up().await;
    let mut state = String::new();
    for _ in 0..200 {
        state = sqlx::query_scalar(
            "SELECT state FROM cancellations WHERE payment_request_id = 'auth-1'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if state == "refunded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(state, "refunded");
    let refunded: Vec<i64> = sqlx::query_scalar(
        "SELECT amount_value FROM demo_refunds WHERE payment_request_id = 'auth-1'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(refunded, [4200], "one refund of the full amount");
    let released: i64 = sqlx::query_scalar("SELECT count(*) FROM demo_voids")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(released, 0, "a captured hold is not released");
    assert_eq!(
        cancel(&service).await,
        answer,
        "the replay is byte-identical"
    );
}

/// `show` counts close attempts apart from refund attempts (issue 18): a demo payment in flight,
/// cancelled, is closed by the engine (nothing to refund) with one close attempt and no refund
/// attempt.
#[tokio::test]
async fn show_counts_close_attempts_apart_from_refund_attempts() {
    let (db_url, pool) = fresh_database().await;
    let env = [("DATABASE_URL", db_url.clone())];
    let (ok, _, stderr) = run_cli(
        &[
            "demo",
            "pay",
            "--payment-request-id",
            "inflight-1",
            "--status",
            "PROCESSING",
            "--amount",
            "900",
        ],
        &env,
    );
    assert!(ok, "{stderr}");
    let service = ServiceProcess::start(&db_url, &[]);
    service.wait_until_up().await;
    let body = serde_json::json!({
        "acquirerId": common::ACQUIRER_ID, "pspId": common::PSP_ID,
        "paymentRequestId": "inflight-1"
    });
    let answer = reqwest::Client::new()
        .post(service.cancel_url())
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains("\"resultStatus\":\"S\""), "{answer}");
    let mut state = String::new();
    for _ in 0..200 {
        state = state_of(&pool, "inflight-1").await;
        if state == "nothing_to_refund" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(state, "nothing_to_refund");

    let (ok, stdout, stderr) = run_cli(&["show", "inflight-1"], &env);
    assert!(ok, "{stderr}");
    let record: serde_json::Value = serde_json::from_str(&stdout).expect("show prints JSON");
    assert_eq!(record["closeAttempts"], 1, "{record}");
    assert_eq!(record["attempts"], 0, "{record}");
    assert_eq!(record["refundedValue"], serde_json::Value::Null, "{record}");
}
