//! `mpp-cancel reconcile --clearing-file` through the binary (issue 18): an Alipay+ clearing
//! file that still lists a payment we cancelled would have it settled and refunded, so every id
//! we cancelled (S) or refused (F) is listed with our state and refund, and a cancelled one (or
//! an unreadable line, which might hide one) makes the command fail. Files are written here.

mod common;

use common::{ACQUIRER_ID, PSP_ID, ServiceProcess, fresh_database, run_cli};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "mppc-clearing-{}.csv",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn env(db_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("APP_ENV", "local".into()),
        ("DATABASE_URL", db_url.into()),
        ("MPP_CANCEL__WALLET__KIND", "demo".into()),
        ("MPP_CANCEL__WALLET__ALLOW_DEMO", "true".into()),
        ("RUST_LOG", "warn".into()),
    ]
}

/// A database where `cancelled-1` was cancelled (S, refunded by the engine) and `refused-1`
/// refused (F PROCESS_FAIL: already refunded by the wallet), through the real service.
async fn answered_database() -> String {
    let (db_url, pool) = fresh_database().await;
    sqlx::query(
        "INSERT INTO demo_payments (payment_request_id, payment_id, status, amount_value, currency, refunded_value, created_at)
         VALUES ('cancelled-1', 'demo-c1', 'SUCCESS', 1200, 'JPY', 0, now()),
                ('refused-1', 'demo-r1', 'SUCCESS', 500, 'JPY', 500, now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut service_env = env(&db_url);
    service_env.push((
        "MPP_CANCEL__INTERNAL__TOKEN",
        format!("reconcile-{}", uuid::Uuid::new_v4().simple()),
    ));
    let service = ServiceProcess::start(&db_url, &service_env);
    service.wait_until_up().await;
    let http = reqwest::Client::new();
    for (id, code) in [("cancelled-1", "SUCCESS"), ("refused-1", "PROCESS_FAIL")] {
        let answer: serde_json::Value = http
            .post(service.cancel_url())
            .header("Content-Type", "application/json")
            .body(
                serde_json::json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": id})
                    .to_string(),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["result"]["resultCode"], code, "{answer}");
    }
    for _ in 0..200 {
        let state: String = sqlx::query_scalar(
            "SELECT state FROM cancellations WHERE payment_request_id = 'cancelled-1'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if state == "refunded" {
            return db_url;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cancelled-1 was not refunded: {}", service.log_text());
}

#[tokio::test]
async fn a_clean_clearing_file_passes_and_one_with_a_cancelled_id_fails() {
    let db_url = answered_database().await;
    let env = env(&db_url);

    let clean = TempFile::new(
        "Clearing file 20261120\n\
         participantId,paymentRequestId,amount,currency\n\
         p1,never-cancelled-1,100,JPY\n\
         p1,never-cancelled-2,200,JPY\n\
         TOTAL,2,300,JPY\n\
         <END>\n",
    );
    let (ok, stdout, stderr) = run_cli(&["reconcile", "--clearing-file", clean.path()], &env);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 1, "only the header: {stdout}");
    assert!(
        stderr.contains("2 records, 0 cancelled by us (S), 0 refused by us (F), 0 malformed"),
        "{stderr}"
    );

    let dirty = TempFile::new(
        "participantId|amount|Payment_Request_Id\n\
         p1|1200|cancelled-1\n\
         p1|500|refused-1\n\
         p1|100|never-cancelled-1\n\
         <END>\n",
    );
    let (ok, stdout, stderr) = run_cli(
        &[
            "reconcile",
            "--clearing-file",
            dirty.path(),
            "--id-column",
            "Payment_Request_Id",
        ],
        &env,
    );
    assert!(!ok, "a cancelled id in the clearing file fails: {stdout}");
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        rows,
        vec![
            "line,paymentRequestId,resultStatus,resultCode,state,refundStatus,refundValue,refundCurrency,voidStatus",
            "2,cancelled-1,S,SUCCESS,refunded,succeeded,1200,JPY,",
            "3,refused-1,F,PROCESS_FAIL,rejected,,,,",
        ]
    );
    assert!(
        stderr.contains("1 payment(s) we cancelled appear in the clearing file"),
        "{stderr}"
    );

    // Only refused ids: listed, and not a failure (a refused cancel is settled as usual).
    let refused_only = TempFile::new("paymentRequestId\nrefused-1\n");
    let (ok, stdout, stderr) =
        run_cli(&["reconcile", "--clearing-file", refused_only.path()], &env);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\n2,refused-1,F,PROCESS_FAIL"), "{stdout}");
}

#[tokio::test]
async fn malformed_lines_are_reported_with_their_numbers_and_fail_the_run() {
    let (db_url, _pool) = fresh_database().await;
    let env = env(&db_url);
    let file = TempFile::new(
        "participantId,paymentRequestId,amount\n\
         p1,ok-1,100\n\
         p1,short\n\
         p1,\"unterminated,100\n\
         p1,,100\n\
         <END>\n\
         p1,after-end,100\n",
    );
    let (ok, stdout, stderr) = run_cli(&["reconcile", "--clearing-file", file.path()], &env);
    assert!(!ok, "{stdout}");
    for expected in [
        "line 3: 2 fields where the header has 3",
        "line 4: an unterminated quote",
        "line 5: an empty paymentRequestId",
        "line 7: content after the <END> line",
        "4 line(s) of the clearing file could not be read",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }

    let headless = TempFile::new("a,b,c\n1,2,3\n");
    let (ok, _, stderr) = run_cli(&["reconcile", "--clearing-file", headless.path()], &env);
    assert!(!ok);
    assert!(
        stderr.contains("no header line names the id column"),
        "{stderr}"
    );
}

/// Runs `mpp-cancel ARGS` and samples its peak resident set (VmHWM, a high-water mark) until it
/// exits: (success, stdout, stderr, peak KiB).
fn run_measured(args: &[&str], env: &[(&str, String)]) -> (bool, String, String, u64) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mpp-cancel"));
    command
        .args(["--config-dir", "/nonexistent"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let sampler = std::thread::spawn(move || {
        let mut peak = 0u64;
        // Bounded: 20 minutes at most.
        for _ in 0..240_000 {
            let Ok(status) = std::fs::read_to_string(&status_file) else {
                break;
            };
            if let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
            if status.contains("State:\tZ") {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let out = child.wait_with_output().unwrap();
    let peak = sampler.join().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        peak,
    )
}

#[tokio::test]
async fn a_million_line_file_is_streamed_in_bounded_memory() {
    let db_url = answered_database().await;
    let env = env(&db_url);

    let small = TempFile::new("participantId,paymentRequestId,amount\np1,cancelled-1,1200\n");
    let (ok, _, stderr, small_peak) =
        run_measured(&["reconcile", "--clearing-file", small.path()], &env);
    assert!(!ok, "{stderr}");

    const LINES: usize = 1_000_000;
    let big = TempFile::new("");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&big.0).unwrap());
        writeln!(out, "participantId,paymentRequestId,amount,currency,remark").unwrap();
        for n in 0..LINES {
            if n == LINES - 10 {
                writeln!(out, "p1,cancelled-1,1200,JPY,the one").unwrap();
            } else {
                writeln!(out, "p1,clearing-{n:012},{n},JPY,settled as usual").unwrap();
            }
        }
        writeln!(out, "TOTAL,{LINES},0,JPY,").unwrap();
        writeln!(out, "<END>").unwrap();
    }
    let size = std::fs::metadata(&big.0).unwrap().len();
    let started = std::time::Instant::now();
    let (ok, stdout, stderr, big_peak) =
        run_measured(&["reconcile", "--clearing-file", big.path()], &env);
    let elapsed = started.elapsed();
    assert!(!ok, "the cancelled id near the end is found: {stderr}");
    assert!(
        stdout.contains(&format!(
            "{},cancelled-1,S,SUCCESS,refunded",
            LINES - 10 + 2
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("{} records, 1 cancelled by us (S)", LINES)),
        "{stderr}"
    );
    eprintln!(
        "reconcile: {LINES} lines ({} MB) in {:.1} s, peak RSS {} KiB (a 2-line file: {} KiB)",
        size / 1_000_000,
        elapsed.as_secs_f64(),
        big_peak,
        small_peak
    );
    assert!(small_peak > 0 && big_peak > 0, "the peak was measured");
    assert!(
        big_peak < small_peak + 16 * 1024,
        "streamed: {big_peak} KiB for a {size}-byte file against {small_peak} KiB for 2 lines"
    );
}
