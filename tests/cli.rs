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
    let internal_token = "internal-token-do-not-log";
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
