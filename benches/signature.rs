//! Cost of authentication per cancelPayment request: verifying Alipay+'s signature and signing
//! our response (RSA-2048, PKCS#1 v1.5, SHA-256), next to `openssl speed rsa2048` on the same
//! machine. Target: our signing within 1.5x of openssl's time per signature.
//!
//! `cargo bench --bench signature` (release). `BENCH_ITERS` sets the iterations (default 2000),
//! `BENCH_OPENSSL_SECONDS` openssl's seconds per test (default 3).

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use mpp_cancel::protocol::keys::GeneratedKeyPair;
use mpp_cancel::protocol::signature::{RequestVerifier, ResponseSigner};

const PATH: &str = "/aps/api/v1/payments/cancelPayment";
const CLIENT_ID: &str = "SANDBOX_5Y3A2N2YEB3002022";
const TIME: &str = "2026-11-21T18:05:07.123+08:00";
const REQUEST: &[u8] =
    br#"{"acquirerId":"acq-1","pspId":"1022188000000000001","paymentRequestId":"pr-bench-000001"}"#;
const RESPONSE: &[u8] =
    br#"{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}"#;
const BATCHES: usize = 5;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `op` `iters` times in [`BATCHES`] batches; returns (mean, best batch) microseconds/op.
fn time_per_op(iters: usize, mut op: impl FnMut()) -> (f64, f64) {
    for _ in 0..iters.div_ceil(20) {
        op(); // warm-up: caches, branch predictors, lazy init
    }
    let per_batch = iters.div_ceil(BATCHES).max(1);
    let mut total = 0.0;
    let mut best = f64::INFINITY;
    for _ in 0..BATCHES {
        let start = Instant::now();
        for _ in 0..per_batch {
            op();
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / per_batch as f64;
        total += us;
        best = best.min(us);
    }
    (total / BATCHES as f64, best)
}

/// openssl's RSA-2048 (sign/s, verify/s), read from its human-readable table by column name
/// (the columns vary between openssl versions).
fn openssl_rsa2048(seconds: usize) -> Result<(f64, f64), String> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "rsa2048"])
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = stdout
        .lines()
        .find(|l| l.contains("sign/s"))
        .ok_or("no sign/s column in openssl's output")?
        .split_whitespace()
        .collect();
    let row: Vec<&str> = stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("rsa 2048 bits"))
        .ok_or("no 'rsa 2048 bits' row in openssl's output")?
        .split_whitespace()
        .collect();
    let column = |name: &str| -> Result<f64, String> {
        let i = header
            .iter()
            .position(|h| *h == name)
            .ok_or(format!("no {name} column"))?;
        row.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or(format!("unreadable {name} value"))
    };
    Ok((column("sign/s")?, column("verify/s")?))
}

fn main() {
    let iters = env_usize("BENCH_ITERS", 2000);
    let pair = GeneratedKeyPair::generate_rsa_2048().expect("RSA key generation");
    let alipay = ResponseSigner::new(pair.private_key().expect("private key"), "1".into());
    let verifier = RequestVerifier::new(CLIENT_ID, [("1".into(), pair.public_key().expect("pk"))]);
    let mpp = ResponseSigner::new(pair.private_key().expect("private key"), "1".into());
    let request_signature = alipay.sign_request("POST", PATH, CLIENT_ID, TIME, REQUEST);

    let verify = || {
        verifier
            .verify(
                "POST",
                black_box(PATH),
                Some(CLIENT_ID.as_bytes()),
                Some(TIME.as_bytes()),
                Some(request_signature.as_bytes()),
                black_box(REQUEST),
            )
            .expect("valid signature");
    };
    let sign = || {
        black_box(mpp.sign(
            "POST",
            black_box(PATH),
            CLIENT_ID,
            TIME,
            black_box(RESPONSE),
        ));
    };

    println!(
        "RSA-2048 PKCS#1 v1.5 SHA-256, {iters} iterations, {BATCHES} batches (µs/op: mean, best batch)"
    );
    let (verify_mean, verify_best) = time_per_op(iters, verify);
    println!("  verify request (parse header + RSA verify) {verify_mean:9.1} {verify_best:9.1}");
    let (sign_mean, sign_best) = time_per_op(iters, sign);
    println!("  sign response (RSA sign + header)         {sign_mean:9.1} {sign_best:9.1}");
    let (both_mean, both_best) = time_per_op(iters, || {
        verify();
        sign();
    });
    println!("  verify + sign, per request                {both_mean:9.1} {both_best:9.1}");
    println!(
        "  => {:.0} requests/s on one core for authentication",
        1e6 / both_mean
    );

    let seconds = env_usize("BENCH_OPENSSL_SECONDS", 3);
    match openssl_rsa2048(seconds) {
        Ok((sign_per_s, verify_per_s)) => {
            let openssl_sign_us = 1e6 / sign_per_s;
            let openssl_verify_us = 1e6 / verify_per_s;
            let ratio = sign_mean / openssl_sign_us;
            println!("openssl speed -seconds {seconds} rsa2048 (same machine):");
            println!("  openssl sign   {openssl_sign_us:9.1} µs   ours {sign_mean:9.1} µs");
            println!("  openssl verify {openssl_verify_us:9.1} µs   ours {verify_mean:9.1} µs");
            println!(
                "  sign ratio ours/openssl = {ratio:.2} (target <= 1.5): {}",
                if ratio <= 1.5 {
                    "within target"
                } else {
                    "OVER TARGET"
                }
            );
        }
        Err(e) => println!("openssl comparison skipped: {e}"),
    }
}
