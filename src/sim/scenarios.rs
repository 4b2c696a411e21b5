//! The seeds' flows as sequences the kit plays at the MPP (`mpp-cancel sim scenario NAME`).
//!
//! Seed 000, cancels after a success (at the MPP all four are a cancel for a SUCCESS payment,
//! reached by a different road):
//! - `acqp-cancel-before-success`: the ACQP cancelled at Alipay+ while the MPP was still
//!   PROCESSING; the MPP's success arrives after, Alipay+ cancels;
//! - `timeout-close-before-success`: Alipay+ closed the payment after its 1-minute expiry; the
//!   success came later; Alipay+'s first cancel gets no answer and is retried;
//! - `duplicate-through-another-mpp`: another MPP won the race; Alipay+ cancels this one, its
//!   requests arriving twice at once;
//! - `failure-then-success`: the MPP first failed the payment, then succeeded it.
//!
//! Seed 002, `acqp-cancel-t1`: the ACQP cancels at Alipay+ before 00:15 UTC+8 of T+1; Alipay+
//! passes it on; the MPP accepts until 00:30 and Alipay+ retries on U (or no answer) until S.
//!
//! Each ends with `S`, replays byte for byte, and the money back once (`refunded`, one refund
//! of the full amount), checked through the internal API and the demo ledger when available.
//! Payments are made "from a code": a fresh 19-digit Alipay+ code, routed by seed 003's rules.

use chrono::Utc;
use futures_util::future::join_all;

use super::checks::{Kit, describe, utc8, utc8_midnight};
use super::codes::{AcqpIntegration, Route, route};
use super::internal::check_settled;
use super::payments::{TestPayment, TestStatus};
use super::report::Row;

/// The scenario names, in the order they run.
pub const NAMES: [&str; 5] = [
    "acqp-cancel-before-success",
    "timeout-close-before-success",
    "duplicate-through-another-mpp",
    "failure-then-success",
    "acqp-cancel-t1",
];

/// Every scenario, one row each (SKIP when the kit cannot create payments).
pub async fn run_all(kit: &Kit) -> Vec<Row> {
    let mut rows = Vec::new();
    for name in NAMES {
        rows.push(run(kit, name).await.expect("a known name"));
    }
    rows
}

/// One scenario by name; `None` for an unknown name.
pub async fn run(kit: &Kit, name: &str) -> Option<Row> {
    let check = format!("scenario-{name}");
    let now = Utc::now();
    let minutes = |m: i64| now - chrono::Duration::minutes(m);
    let result = match name {
        "acqp-cancel-before-success" => {
            play(
                kit,
                &check,
                minutes(1),
                &[TestStatus::Processing, TestStatus::Success],
                Arrival::Once,
            )
            .await
        }
        "timeout-close-before-success" => {
            play(
                kit,
                &check,
                minutes(2),
                &[TestStatus::Processing, TestStatus::Success],
                Arrival::AfterNoAnswer,
            )
            .await
        }
        "duplicate-through-another-mpp" => {
            play(
                kit,
                &check,
                minutes(1),
                &[TestStatus::Success],
                Arrival::Twins,
            )
            .await
        }
        "failure-then-success" => {
            play(
                kit,
                &check,
                minutes(1),
                &[TestStatus::Failed, TestStatus::Success],
                Arrival::Once,
            )
            .await
        }
        "acqp-cancel-t1" => {
            // The real edge when it is between 00:00 and 00:30 UTC+8 (a payment of T made at
            // 23:50, the ACQP's cancel before 00:15 of T+1); otherwise a payment made at the
            // start of today, whose window is as open as the ACQP's.
            let today = utc8_midnight(now);
            let created = if now - today < chrono::Duration::minutes(29) {
                today - chrono::Duration::minutes(10)
            } else {
                today + chrono::Duration::seconds(1)
            };
            play(kit, &check, created, &[TestStatus::Success], Arrival::Once)
                .await
                .map(|row| Row {
                    evidence: format!(
                        "payment created {} UTC+8: {}",
                        created.with_timezone(&utc8()).format("%Y-%m-%d %H:%M:%S"),
                        row.evidence
                    ),
                    ..row
                })
        }
        _ => return None,
    };
    Some(result.unwrap_or_else(|row| row))
}

/// How Alipay+'s cancel reaches the MPP.
#[derive(Clone, Copy)]
enum Arrival {
    /// Once (retried on U).
    Once,
    /// The first request's answer is lost; Alipay+ retries.
    AfterNoAnswer,
    /// Two requests at the same moment.
    Twins,
}

/// Makes the payment pass through `statuses` (the last is what the MPP holds when the cancel
/// arrives), cancels it as `arrival` says, and checks the end. `Err` carries a SKIP or FAIL row.
async fn play(
    kit: &Kit,
    check: &str,
    created_at: chrono::DateTime<Utc>,
    statuses: &[TestStatus],
    arrival: Arrival,
) -> Result<Row, Row> {
    let mut payment: TestPayment = kit.payment(statuses[0], created_at);
    let routed = route(&payment.payment_code, &AcqpIntegration::default());
    if routed != Route::AlipayPlus {
        return Err(Row::fail(
            check,
            format!("kit: code {} routes to {routed:?}", payment.payment_code),
        ));
    }
    let mut story = vec![format!("code {} routed to Alipay+", payment.payment_code)];
    for status in statuses {
        payment.status = *status;
        kit.create(check, &payment).await?;
        story.push(status.as_str().to_string());
    }
    let id = payment.payment_request_id.clone();
    let probe = kit.alipay.cancel(&id);
    match arrival {
        Arrival::Once => {}
        Arrival::AfterNoAnswer => {
            if kit
                .alipay
                .send_and_hang_up(&probe)
                .await
                .map_err(|e| Row::fail(check, format!("{e:#}")))?
            {
                story.push("cancel sent, answer lost".into());
            }
        }
        Arrival::Twins => {
            let twins = join_all((0..2).map(|_| kit.alipay.send(check, &probe))).await;
            let bodies: Vec<_> = twins.iter().flatten().map(|o| o.raw_body.clone()).collect();
            if bodies.len() == 2 && bodies[0] != bodies[1] {
                return Err(Row::fail(
                    check,
                    format!("{id}: the twins got different answers"),
                ));
            }
            story.push(format!(
                "twin cancels: {}",
                twins
                    .iter()
                    .flatten()
                    .map(describe)
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        }
    }
    let (last, attempts) = kit.until_final(check, &probe).await;
    let last = last.ok_or_else(|| {
        Row::fail(
            check,
            format!("{id}: never S or F: {}", attempts.join("; ")),
        )
    })?;
    story.push(format!("cancel: {}", attempts.join(", then ")));
    if last.result_status() != Some("S") {
        return Err(Row::fail(check, format!("{id}: {}", story.join(" -> "))));
    }
    let replay = kit
        .alipay
        .send(check, &probe)
        .await
        .map_err(|e| Row::fail(check, format!("{id}: replay: {e:#}")))?;
    if replay.raw_body != last.raw_body {
        return Err(Row::fail(
            check,
            format!("{id}: the replay differs: {}", describe(&replay)),
        ));
    }
    let settled = check_settled(
        kit.internal.as_ref(),
        &kit.payments,
        &id,
        TestStatus::Success.settled_state(),
        payment.amount.minor_units,
        kit.settle_timeout,
    )
    .await
    .map_err(|problem| Row::fail(check, format!("{id}: {} -> {problem}", story.join(" -> "))))?;
    Ok(Row::pass(
        check,
        format!(
            "{id}: {} -> replay identical -> {settled}",
            story.join(" -> ")
        ),
    ))
}
