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

#[test]
fn keys_generate_never_overwrites_a_key() {
    let dir = std::env::temp_dir().join(format!("mppc-keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private_key.pem");
    std::fs::write(&private, "the key in use").unwrap();
    let (ok, _, stderr) = run_cli(
        &["keys", "generate", "--out-dir", dir.to_str().unwrap()],
        &[],
    );
    let kept = std::fs::read_to_string(&private).unwrap();
    let public_written = dir.join("public_key.pem").exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "refused");
    assert!(stderr.contains("never overwrites"), "{stderr}");
    assert_eq!(kept, "the key in use");
    assert!(!public_written, "nothing written");
}

/// A one-shot HTTP server on loopback answering `response` (head and body) to one request.
fn answer_once(response: String) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/aps/api/v1/payments/cancelPayment",
        listener.local_addr().unwrap()
    );
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        // The head, then the body of the Content-Length it announces.
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&request).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        let _ = stream.write_all(response.as_bytes());
    });
    (url, server)
}

#[test]
fn sim_cancel_with_a_public_key_fails_on_an_unsigned_or_wrongly_signed_answer() {
    use mpp_cancel::protocol::keys::GeneratedKeyPair;
    let dir = std::env::temp_dir().join(format!("mppc-sim-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let alipay = GeneratedKeyPair::generate_rsa_2048().unwrap();
    let mpp = GeneratedKeyPair::generate_rsa_2048().unwrap();
    let alipay_private = dir.join("alipay.pem");
    let mpp_public = dir.join("mpp.pub.pem");
    std::fs::write(&alipay_private, alipay.private_pem()).unwrap();
    std::fs::write(&mpp_public, mpp.public_pem()).unwrap();
    let body = r#"{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"ok"}}"#;
    let unsigned = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let wrongly_signed = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Client-Id: SANDBOX_CLIENT\r\nResponse-Time: 2026-12-08T00:00:00+08:00\r\n\
         Signature: algorithm=RSA256,keyVersion=1,signature=AAAA\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut outcomes = Vec::new();
    for (response, with_key) in [
        (unsigned.clone(), true),
        (wrongly_signed, true),
        (unsigned, false),
    ] {
        let (url, server) = answer_once(response);
        let mut args = vec![
            "sim".to_owned(),
            "cancel".into(),
            "--payment-request-id".into(),
            "pr-sim".into(),
            "--url".into(),
            url,
            "--alipay-private-key".into(),
            alipay_private.display().to_string(),
        ];
        if with_key {
            args.push("--mpp-public-key".into());
            args.push(mpp_public.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, stderr) = run_cli(&args, &[]);
        server.join().unwrap();
        outcomes.push((ok, stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, stderr) = &outcomes[0];
    assert!(!ok, "unsigned with a key: a failure: {stderr}");
    assert!(stderr.contains("no Signature header"), "{stderr}");
    let (ok, stderr) = &outcomes[1];
    assert!(!ok, "wrongly signed: a failure: {stderr}");
    assert!(stderr.contains("does NOT verify"), "{stderr}");
    let (ok, stderr) = &outcomes[2];
    assert!(ok, "no key given: not checked, said so: {stderr}");
    assert!(stderr.contains("not checked"), "{stderr}");
}

#[tokio::test]
async fn an_untrusted_id_cannot_forge_fields_or_lines_in_the_text_log() {
    let (db_url, _pool) = fresh_database().await;
    let service = ServiceProcess::start(&db_url, &[("RUST_LOG", "info".into())]);
    service.wait_until_up().await;
    let forged = "forged-1 result_code=FORGED replayed=true";
    let answer: serde_json::Value = reqwest::Client::new()
        .post(service.cancel_url())
        .json(&serde_json::json!({
            "acquirerId": common::ACQUIRER_ID,
            "pspId": common::PSP_ID,
            "paymentRequestId": forged,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        answer["result"]["resultStatus"].is_string(),
        "answered: {answer}"
    );
    let mut line = None;
    for _ in 0..100 {
        line = service
            .log_text()
            .lines()
            .find(|l| l.contains("cancelPayment answered"))
            .map(str::to_owned);
        if line.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let line = line.expect("the answer is logged");
    let quoted = r#"payment_request_id="forged-1 result_code=FORGED replayed=true""#;
    assert!(line.contains(quoted), "{line}");
    assert!(
        !line.replace(quoted, "").contains("FORGED"),
        "no field outside the quoted value: {line}"
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
