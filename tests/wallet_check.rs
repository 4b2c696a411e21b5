//! `wallet-check` against wallet servers: one that keeps the whole contract (every rule PASSes)
//! and one per broken rule (that rule FAILs, by name).

mod wallet_server;

use mpp_cancel::wallet_check::{CheckConfig, Report, Rule, Verdict, run};
use std::time::Duration;
use wallet_server::{Fault, WalletServer};

const PAID: &str = "wc-paid-1";
const HELD: &str = "wc-held-1";

async fn check(fault: Fault, timeout: Duration) -> (Report, WalletServer) {
    let wallet = WalletServer::start(fault).await;
    wallet.add(PAID, "SUCCESS", 1000, "JPY");
    wallet.add(HELD, "AUTHORIZED", 500, "USD");
    let report = run(&CheckConfig {
        base_url: wallet.url.clone(),
        token: Some("wallet-token".into()),
        payments: vec![PAID.into(), HELD.into()],
        timeout,
        concurrency: 8,
    })
    .await
    .unwrap();
    (report, wallet)
}

fn failed(report: &Report) -> Vec<&'static str> {
    report.failed().iter().map(|r| r.id()).collect()
}

#[tokio::test]
async fn a_wallet_that_keeps_the_contract_passes_every_rule() {
    let (report, wallet) = check(Fault::None, Duration::from_secs(2)).await;
    let table = report.render();
    for result in &report.results {
        assert_eq!(result.verdict, Verdict::Pass, "{table}");
    }
    assert_eq!(report.results.len(), 11, "{table}");
    // The hold was closed (and left held) before it was released.
    assert!(
        table.contains("POST /payments/wc-held-1/close -> 200"),
        "{table}"
    );
    // The money moved once, and only on the payment named for refunds.
    assert_eq!(wallet.payment(PAID).unwrap().refunded, 1000);
    assert!(
        wallet
            .seen()
            .iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer wallet-token"))
    );
    assert!(table.contains("refund-dedupe-concurrent"), "{table}");
    assert!(
        table.contains("POST /refunds"),
        "evidence is printed: {table}"
    );
}

#[tokio::test]
async fn each_broken_rule_fails_by_name() {
    let cases = [
        (
            Fault::NoRefundDedupe,
            vec!["refund-dedupe-concurrent", "refund-dedupe-sequential"],
        ),
        (Fault::RacyRefundDedupe, vec!["refund-dedupe-concurrent"]),
        (
            Fault::NotFoundWithoutCode,
            vec!["unknown-is-404", "close-unknown"],
        ),
        (
            Fault::WrongPathLooksUnknown,
            vec!["wrong-path-is-not-unknown"],
        ),
        (Fault::CloseUnknownNotClosed, vec!["close-unknown"]),
        (
            Fault::SucceededRepeatWithoutAmount,
            vec!["refund-succeeded-amount"],
        ),
        (
            Fault::NoVoidDedupe,
            vec!["void-dedupe-concurrent", "void-dedupe-sequential"],
        ),
        (Fault::CloseAuthorizedAsSucceeded, vec!["close-authorized"]),
    ];
    for (fault, expected) in cases {
        let (report, _wallet) = check(fault, Duration::from_secs(2)).await;
        assert_eq!(failed(&report), expected, "{fault:?}:\n{}", report.render());
    }
}

#[tokio::test]
async fn a_slow_wallet_fails_the_timing_rule() {
    let (report, _wallet) = check(
        Fault::Slow(Duration::from_millis(300)),
        Duration::from_millis(100),
    )
    .await;
    assert!(
        failed(&report).contains(&"answers-in-time"),
        "{}",
        report.render()
    );
}

#[tokio::test]
async fn without_payments_money_rules_are_skipped_and_nothing_is_refunded() {
    let wallet = WalletServer::start(Fault::None).await;
    wallet.add(PAID, "SUCCESS", 1000, "JPY");
    let report = run(&CheckConfig {
        base_url: wallet.url.clone(),
        token: None,
        payments: vec![],
        timeout: Duration::from_secs(2),
        concurrency: 4,
    })
    .await
    .unwrap();
    for rule in [
        Rule::LookupShape,
        Rule::CloseAuthorized,
        Rule::RefundDedupeConcurrent,
        Rule::RefundDedupeSequential,
        Rule::RefundSucceededAmount,
        Rule::VoidDedupeConcurrent,
        Rule::VoidDedupeSequential,
    ] {
        assert!(
            matches!(report.verdict(rule), Some(Verdict::Skip(_))),
            "{rule:?}: {}",
            report.render()
        );
    }
    assert_eq!(
        report.verdict(Rule::UnknownIsNotFound),
        Some(&Verdict::Pass)
    );
    assert!(wallet.seen().iter().all(|s| s.path != "/refunds"));
    assert_eq!(wallet.payment(PAID).unwrap().refunded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_says_what_it_will_touch_and_exits_non_zero_on_a_failure() {
    let wallet = WalletServer::start(Fault::CloseUnknownNotClosed).await;
    wallet.add(PAID, "SUCCESS", 1000, "JPY");
    let base_url = wallet.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mpp-cancel"))
            .args(["--config-dir", "/nonexistent", "wallet-check", "--base-url"])
            .arg(&base_url)
            .args(["--payment", PAID, "--timeout-ms", "2000"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("wallet-check against")
            && stdout.contains("ONLY on these payments: wc-paid-1"),
        "{stdout}"
    );
    assert!(stdout.contains("close-unknown"), "{stdout}");
    assert!(stderr.contains("close-unknown"), "{stderr}");
    // It refunded the named payment, once.
    assert_eq!(wallet.payment(PAID).unwrap().refunded, 1000);
}
