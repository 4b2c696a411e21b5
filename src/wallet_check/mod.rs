//! `mpp-cancel wallet-check`: exercises a live HTTP wallet against the contract of DESIGN.md
//! ("HTTP wallet adapter contract") and reports one row per rule, PASS, FAIL or SKIP, with the
//! calls and answers that decided it. Exactly-once refunds hold only if the wallet keeps its half
//! (dedupe on `refundId`/`voidId` also under concurrent repeats, 404 with the code only for ids it
//! never saw, CLOSED for a closed unknown id, the amount with SUCCEEDED); nothing in the MPP's own
//! tests shows a wallet that pays twice, this does.
//!
//! Safe against a staging wallet: money moves only on the payments the operator names
//! (`--payment`), and [`Plan::describe`] says so before the first call. Every other call uses a
//! fresh id (`wallet-check-<uuid>`) no payment has.
//!
//! [`rules`] judges (pure), [`client`] talks HTTP and records, [`run`] orders the calls.

pub mod client;
pub mod rules;

use client::WalletClient;
use rules::{Amount, PaymentFacts};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::Duration;

/// What to check and how.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub base_url: String,
    pub token: Option<String>,
    /// Payments the check may refund (SUCCESS, nothing refunded) or void (AUTHORIZED).
    pub payments: Vec<String>,
    /// The adapter's `wallet.timeout_ms`: every answer must come within it.
    pub timeout: Duration,
    /// How many identical refund (and void) calls are sent at once.
    pub concurrency: usize,
}

/// One rule of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    LookupShape,
    UnknownIsNotFound,
    WrongPathIsNotUnknown,
    CloseUnknown,
    CloseAuthorized,
    RefundDedupeConcurrent,
    RefundDedupeSequential,
    RefundSucceededAmount,
    VoidDedupeConcurrent,
    VoidDedupeSequential,
    AnswersInTime,
}

impl Rule {
    /// The name printed in the table, stable for scripts.
    pub fn id(self) -> &'static str {
        match self {
            Self::LookupShape => "lookup-shape",
            Self::UnknownIsNotFound => "unknown-is-404",
            Self::WrongPathIsNotUnknown => "wrong-path-is-not-unknown",
            Self::CloseUnknown => "close-unknown",
            Self::CloseAuthorized => "close-authorized",
            Self::RefundDedupeConcurrent => "refund-dedupe-concurrent",
            Self::RefundDedupeSequential => "refund-dedupe-sequential",
            Self::RefundSucceededAmount => "refund-succeeded-amount",
            Self::VoidDedupeConcurrent => "void-dedupe-concurrent",
            Self::VoidDedupeSequential => "void-dedupe-sequential",
            Self::AnswersInTime => "answers-in-time",
        }
    }
}

/// A rule's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// Not checked, and why (usually: no payment of the kind it needs was given).
    Skip(String),
}

impl Verdict {
    pub fn is_fail(&self) -> bool {
        matches!(self, Self::Fail(_))
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail(_) => "FAIL",
            Self::Skip(_) => "SKIP",
        }
    }
}

/// What came back for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Http {
        status: u16,
        body: String,
    },
    TimedOut,
    /// No HTTP answer (connection refused, broken body...).
    Failed(String),
}

/// One call and its answer: the evidence a verdict rests on.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: &'static str,
    /// Relative to the base URL, e.g. `/payments/p1/close`.
    pub path: String,
    pub request_body: Option<Value>,
    pub answer: Answer,
    pub elapsed: Duration,
}

impl Exchange {
    /// One line: request, answer, time. Bodies are cut short.
    pub fn summary(&self) -> String {
        let request = match &self.request_body {
            Some(body) => format!("{} {} {}", self.method, self.path, cut(&body.to_string())),
            None => format!("{} {}", self.method, self.path),
        };
        let answer = match &self.answer {
            Answer::Http { status, body } => format!("{status} {}", cut(body)),
            Answer::TimedOut => "no answer (timeout)".into(),
            Answer::Failed(why) => format!("no answer ({why})"),
        };
        format!("{request} -> {answer} ({} ms)", self.elapsed.as_millis())
    }
}

fn cut(text: &str) -> String {
    const MAX: usize = 160;
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(MAX) {
        None => flat,
        Some((end, _)) => format!("{}…", &flat[..end]),
    }
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct RuleResult {
    pub rule: Rule,
    pub verdict: Verdict,
    pub evidence: Vec<Exchange>,
}

/// Every rule's result, in a fixed order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub results: Vec<RuleResult>,
}

impl Report {
    pub fn failed(&self) -> Vec<Rule> {
        self.results
            .iter()
            .filter(|r| r.verdict.is_fail())
            .map(|r| r.rule)
            .collect()
    }

    pub fn verdict(&self, rule: Rule) -> Option<&Verdict> {
        self.results
            .iter()
            .find(|r| r.rule == rule)
            .map(|r| &r.verdict)
    }

    /// The table: a row per rule, then the evidence under it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<28} {:<6} DETAIL", "RULE", "RESULT");
        for result in &self.results {
            let detail = match &result.verdict {
                Verdict::Pass => String::new(),
                Verdict::Fail(why) | Verdict::Skip(why) => why.clone(),
            };
            let _ = writeln!(
                out,
                "{:<28} {:<6} {detail}",
                result.rule.id(),
                result.verdict.label()
            );
            for exchange in result.evidence.iter().take(6) {
                let _ = writeln!(out, "    {}", exchange.summary());
            }
            if result.evidence.len() > 6 {
                let _ = writeln!(out, "    … {} more", result.evidence.len() - 6);
            }
        }
        let failed = self.failed().len();
        let skipped = self
            .results
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Skip(_)))
            .count();
        let _ = writeln!(
            out,
            "{} passed, {failed} failed, {skipped} skipped",
            self.results.len() - failed - skipped
        );
        out
    }
}

/// What the check will do to money, said before the first call.
#[derive(Debug, Clone)]
pub struct Plan {
    pub base_url: String,
    pub payments: Vec<String>,
}

impl Plan {
    pub fn describe(&self) -> String {
        if self.payments.is_empty() {
            return format!(
                "wallet-check against {}: no --payment given, so NO money moves. Refund and void \
                 rules are skipped; calls use fresh ids wallet-check-<uuid> that no payment has \
                 (closing one leaves it closed at the wallet).\n",
                self.base_url
            );
        }
        format!(
            "wallet-check against {}: money moves ONLY on these payments: {}.\n\
             The first SUCCESS one with nothing refunded is refunded in full (one refundId, sent \
             concurrently and repeated); the first AUTHORIZED one is closed (which must leave it \
             held) and voided (one voidId, likewise). \
             No other payment is touched; other calls use fresh ids wallet-check-<uuid>.\n",
            self.base_url,
            self.payments.join(", ")
        )
    }
}

/// How many times a refund or void still PENDING is asked again before giving up.
const SETTLE_REPEATS: usize = 5;
const SETTLE_PAUSE: Duration = Duration::from_millis(200);

/// Runs every rule against the wallet.
pub async fn run(config: &CheckConfig) -> anyhow::Result<Report> {
    let client = WalletClient::new(&config.base_url, config.token.as_deref(), config.timeout)?;
    let mut results = Vec::new();
    let mut all = Vec::new();
    let mut record = |results: &mut Vec<RuleResult>, rule, verdict, evidence: Vec<Exchange>| {
        all.extend(evidence.iter().cloned());
        results.push(RuleResult {
            rule,
            verdict,
            evidence,
        });
    };

    // Lookups of the named payments: shape, and what each can be used for.
    let mut lookups = Vec::new();
    let mut facts: Vec<(String, PaymentFacts)> = Vec::new();
    let mut shape = Verdict::Pass;
    for id in &config.payments {
        let exchange = client.get(&client::payment_path(id, "")).await;
        match rules::payment_lookup(id, &exchange) {
            Ok(f) => facts.push((id.clone(), f)),
            Err(why) if !shape.is_fail() => shape = Verdict::Fail(format!("{id}: {why}")),
            Err(_) => {}
        }
        lookups.push(exchange);
    }
    if config.payments.is_empty() {
        shape = Verdict::Skip("no --payment given".into());
    }
    record(&mut results, Rule::LookupShape, shape, lookups);

    let unknown = format!("wallet-check-{}", uuid::Uuid::new_v4().simple());
    let exchange = client.get(&client::payment_path(&unknown, "")).await;
    record(
        &mut results,
        Rule::UnknownIsNotFound,
        rules::unknown_payment(&exchange),
        vec![exchange],
    );

    let exchange = client
        .get(&format!(
            "/wallet-check-no-such-route{}",
            client::payment_path(&unknown, "")
        ))
        .await;
    record(
        &mut results,
        Rule::WrongPathIsNotUnknown,
        rules::wrong_path(&exchange),
        vec![exchange],
    );

    let closed = format!("wallet-check-{}", uuid::Uuid::new_v4().simple());
    let close_path = client::payment_path(&closed, "/close");
    let first = client.post(&close_path, None).await;
    let repeat = client.post(&close_path, None).await;
    let after = client.get(&client::payment_path(&closed, "")).await;
    record(
        &mut results,
        Rule::CloseUnknown,
        rules::close_unknown(&first, &repeat, &after),
        vec![first, repeat, after],
    );

    let refundable = facts
        .iter()
        .find(|(_, f)| f.status == "SUCCESS" && f.refunded_minor_units == 0);
    match refundable {
        Some((id, f)) => {
            for row in refund_rules(&client, config.concurrency, id, f).await {
                record(&mut results, row.rule, row.verdict, row.evidence);
            }
        }
        None => {
            let why = "needs a --payment whose lookup is SUCCESS with nothing refunded";
            for rule in [
                Rule::RefundDedupeConcurrent,
                Rule::RefundDedupeSequential,
                Rule::RefundSucceededAmount,
            ] {
                record(&mut results, rule, Verdict::Skip(why.into()), Vec::new());
            }
        }
    }

    match facts.iter().find(|(_, f)| f.status == "AUTHORIZED") {
        Some((id, f)) => {
            // Before the void: closing a held payment reports it, and leaves it held.
            let close = client.post(&client::payment_path(id, "/close"), None).await;
            let after = client.get(&client::payment_path(id, "")).await;
            record(
                &mut results,
                Rule::CloseAuthorized,
                rules::close_authorized(id, &close, &after),
                vec![close, after],
            );
            for row in void_rules(&client, config.concurrency, id, f).await {
                record(&mut results, row.rule, row.verdict, row.evidence);
            }
        }
        None => {
            let why = "needs a --payment whose lookup is AUTHORIZED";
            for rule in [
                Rule::CloseAuthorized,
                Rule::VoidDedupeConcurrent,
                Rule::VoidDedupeSequential,
            ] {
                record(&mut results, rule, Verdict::Skip(why.into()), Vec::new());
            }
        }
    }

    let timeout_ms = u64::try_from(config.timeout.as_millis()).unwrap_or(u64::MAX);
    let timing = rules::in_time(&all, timeout_ms);
    let slowest = all.iter().max_by_key(|e| e.elapsed).cloned();
    results.push(RuleResult {
        rule: Rule::AnswersInTime,
        verdict: timing,
        evidence: slowest.into_iter().collect(),
    });
    Ok(Report { results })
}

fn money_json(amount: Amount) -> Value {
    json!({"value": amount.minor_units.to_string(), "currency": amount.currency.code()})
}

/// The refunded amount a lookup shows now, or why it cannot be read.
async fn refunded_now(client: &WalletClient, id: &str) -> (Result<i64, String>, Exchange) {
    let exchange = client.get(&client::payment_path(id, "")).await;
    let refunded = rules::payment_lookup(id, &exchange).map(|f| f.refunded_minor_units);
    (refunded, exchange)
}

/// Concurrent burst with one fresh `refundId`, then sequential repeats until the answer is
/// final. The burst comes first because only a fresh id can race: repeats of an id the wallet
/// has already recorded prove nothing about concurrent dedupe.
async fn refund_rules(
    client: &WalletClient,
    concurrency: usize,
    id: &str,
    payment: &PaymentFacts,
) -> Vec<RuleResult> {
    let body = json!({
        "refundId": uuid::Uuid::new_v4().hyphenated().to_string(),
        "paymentRequestId": id,
        "paymentId": payment.payment_id,
        "amount": money_json(payment.amount),
        "reason": "ALIPAY_PLUS_CANCEL",
    });
    let burst = client
        .post_concurrently("/refunds", &body, concurrency.max(2))
        .await;
    let (after_burst, lookup_burst) = refunded_now(client, id).await;
    // Two sequential repeats: with the burst's outcome unknown, two answers after it can
    // still disagree with each other.
    let mut repeats = vec![
        client.post("/refunds", Some(&body)).await,
        client.post("/refunds", Some(&body)).await,
    ];
    for _ in 0..SETTLE_REPEATS {
        let pending = rules::refund_answer(repeats.last().expect("one repeat"))
            .is_ok_and(|a| a.status == "PENDING");
        if !pending {
            break;
        }
        tokio::time::sleep(SETTLE_PAUSE).await;
        repeats.push(client.post("/refunds", Some(&body)).await);
    }
    let (after_repeats, lookup_repeats) = refunded_now(client, id).await;
    let before = payment.refunded_minor_units;

    let mut concurrent_evidence = burst.clone();
    concurrent_evidence.push(lookup_burst);
    let concurrent = match &after_burst {
        Ok(after) => rules::refund_dedupe(&burst, payment.amount, 0, after - before),
        Err(why) => Verdict::Fail(format!("the lookup after the burst: {why}")),
    };
    let mut sequential_evidence = repeats.clone();
    sequential_evidence.push(lookup_repeats);
    let sequential = match (&after_burst, &after_repeats) {
        (Ok(burst_after), Ok(repeat_after)) => {
            let mut answers = burst.clone();
            answers.extend(repeats.iter().cloned());
            match rules::refund_dedupe(
                &answers,
                payment.amount,
                burst_after - before,
                repeat_after - burst_after,
            ) {
                // Disagreement inside the burst is the concurrent rule's finding.
                Verdict::Fail(_) if concurrent.is_fail() => rules::refund_dedupe(
                    &repeats,
                    payment.amount,
                    burst_after - before,
                    repeat_after - burst_after,
                ),
                verdict => verdict,
            }
        }
        (_, Err(why)) | (Err(why), _) => Verdict::Fail(format!("a lookup: {why}")),
    };
    let mut all = burst.clone();
    all.extend(repeats.iter().cloned());
    let amounts = rules::refund_amounts(&all, payment.amount);
    vec![
        RuleResult {
            rule: Rule::RefundDedupeConcurrent,
            verdict: concurrent,
            evidence: concurrent_evidence,
        },
        RuleResult {
            rule: Rule::RefundDedupeSequential,
            verdict: sequential,
            evidence: sequential_evidence,
        },
        RuleResult {
            rule: Rule::RefundSucceededAmount,
            verdict: amounts,
            evidence: all,
        },
    ]
}

/// The same for a void of an AUTHORIZED payment, judged by the answers alone.
async fn void_rules(
    client: &WalletClient,
    concurrency: usize,
    id: &str,
    payment: &PaymentFacts,
) -> Vec<RuleResult> {
    let body = json!({
        "voidId": uuid::Uuid::new_v4().hyphenated().to_string(),
        "paymentRequestId": id,
        "paymentId": payment.payment_id,
        "amount": money_json(payment.amount),
        "reason": "ALIPAY_PLUS_CANCEL",
    });
    let path = client::payment_path(id, "/void");
    let burst = client
        .post_concurrently(&path, &body, concurrency.max(2))
        .await;
    let mut repeats = vec![
        client.post(&path, Some(&body)).await,
        client.post(&path, Some(&body)).await,
    ];
    for _ in 0..SETTLE_REPEATS {
        let pending = rules::void_answer(repeats.last().expect("one repeat"))
            .is_ok_and(|a| a.status == "PENDING");
        if !pending {
            break;
        }
        tokio::time::sleep(SETTLE_PAUSE).await;
        repeats.push(client.post(&path, Some(&body)).await);
    }
    let concurrent = rules::void_dedupe(&burst);
    let mut answers = burst.clone();
    answers.extend(repeats.iter().cloned());
    let sequential = match rules::void_dedupe(&answers) {
        Verdict::Fail(_) if concurrent.is_fail() => rules::void_dedupe(&repeats),
        verdict => verdict,
    };
    vec![
        RuleResult {
            rule: Rule::VoidDedupeConcurrent,
            verdict: concurrent,
            evidence: burst,
        },
        RuleResult {
            rule: Rule::VoidDedupeSequential,
            verdict: sequential,
            evidence: repeats,
        },
    ]
}
