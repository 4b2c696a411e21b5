//! The contract's rules as plain judgments over recorded exchanges: no I/O, so every verdict
//! can be tested in microseconds against hand-made answers. [`super::run`] gathers the
//! exchanges; this file says what a correct wallet must have answered.

use super::{Answer, Exchange, Verdict};
use crate::domain::{Currency, money::parse_minor_units};
use serde_json::{Map, Value};

/// The code a wallet answers, with 404, for a paymentRequestId it never saw.
pub const NOT_FOUND_CODE: &str = "PAYMENT_NOT_FOUND";

/// The most characters an id or reference from the wallet may have (what the service stores).
const MAX_ID_CHARS: usize = 64;

/// An amount as the wallet wrote it, already checked: minor units and an ISO 4217 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    pub minor_units: i64,
    pub currency: Currency,
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.minor_units, self.currency)
    }
}

/// What a well-formed payment lookup says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFacts {
    pub payment_id: String,
    pub status: String,
    pub amount: Amount,
    /// Zero when `refundedAmount` is absent or null.
    pub refunded_minor_units: i64,
}

/// What a well-formed refund or void answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyAnswer {
    pub status: String,
    pub amount: Option<Amount>,
    pub reference: Option<String>,
}

fn http(exchange: &Exchange) -> Result<(u16, &str), String> {
    match &exchange.answer {
        Answer::Http { status, body } => Ok((*status, body.as_str())),
        Answer::TimedOut => Err("no answer within the timeout".into()),
        Answer::Failed(why) => Err(format!("no answer: {why}")),
    }
}

fn object(body: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the body is JSON but not an object".into()),
        Err(e) => Err(format!("the body is not JSON: {e}")),
    }
}

/// A 200 answer's JSON object, or why there is none.
fn ok_object(exchange: &Exchange) -> Result<Map<String, Value>, String> {
    let (status, body) = http(exchange)?;
    if status != 200 {
        return Err(format!("expected HTTP 200, got {status}"));
    }
    object(body)
}

/// A string field, checked like any untrusted id: 1..=64 characters, no control characters.
fn id_field(map: &Map<String, Value>, name: &str) -> Result<String, String> {
    match map.get(name) {
        Some(Value::String(s)) => checked_text(name, s),
        Some(other) => Err(format!("{name} must be a string, got {other}")),
        None => Err(format!("{name} is missing")),
    }
}

fn checked_text(name: &str, s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().count() > MAX_ID_CHARS {
        return Err(format!("{name} must have 1 to {MAX_ID_CHARS} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{name} holds control characters"));
    }
    Ok(s.to_owned())
}

fn optional_text(map: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => checked_text(name, s).map(Some),
        Some(other) => Err(format!("{name} must be a string, got {other}")),
    }
}

/// `{"value": "<digits>", "currency": "<ISO 4217>"}`; `None` when absent or null.
fn amount_field(map: &Map<String, Value>, name: &str) -> Result<Option<Amount>, String> {
    let inner = match map.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(inner)) => inner,
        Some(other) => return Err(format!("{name} must be an object, got {other}")),
    };
    let value = match inner.get("value") {
        Some(Value::String(v)) => v,
        Some(other) => {
            return Err(format!(
                "{name}.value must be a string of minor units, got {other}"
            ));
        }
        None => return Err(format!("{name}.value is missing")),
    };
    let minor_units = parse_minor_units(value).map_err(|e| format!("{name}.value: {e}"))?;
    let currency = match inner.get("currency") {
        Some(Value::String(c)) => {
            Currency::parse(c).map_err(|e| format!("{name}.currency: {e}"))?
        }
        Some(other) => return Err(format!("{name}.currency must be a string, got {other}")),
        None => return Err(format!("{name}.currency is missing")),
    };
    Ok(Some(Amount {
        minor_units,
        currency,
    }))
}

/// Rule `lookup-shape`: the answer to `GET /payments/{id}` for a payment the wallet has.
pub fn payment_lookup(requested_id: &str, exchange: &Exchange) -> Result<PaymentFacts, String> {
    let map = ok_object(exchange)?;
    let id = id_field(&map, "paymentRequestId")?;
    if id != requested_id {
        return Err(format!(
            "paymentRequestId is {id:?}, the request asked for {requested_id:?}"
        ));
    }
    let payment_id = id_field(&map, "paymentId")?;
    let status = match map.get("status") {
        Some(Value::String(s))
            if matches!(
                s.as_str(),
                "SUCCESS" | "AUTHORIZED" | "FAILED" | "PROCESSING"
            ) =>
        {
            s.clone()
        }
        other => {
            return Err(format!(
                "status must be SUCCESS, AUTHORIZED, FAILED or PROCESSING, got {}",
                other.map_or("nothing".into(), Value::to_string)
            ));
        }
    };
    let amount = amount_field(&map, "amount")?.ok_or("amount is missing")?;
    if amount.minor_units <= 0 {
        return Err("amount.value must be greater than zero".into());
    }
    match map.get("createdAt") {
        Some(Value::String(s)) => {
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("createdAt {s:?} is not RFC 3339: {e}"))?;
        }
        Some(other) => return Err(format!("createdAt must be a string, got {other}")),
        None => return Err("createdAt is missing".into()),
    }
    // More refunded than paid is not a shape error: it is what a double refund looks like, and
    // the dedupe rules need to read it to say so.
    let refunded_minor_units = match amount_field(&map, "refundedAmount")? {
        None => 0,
        Some(refunded) if refunded.currency != amount.currency => {
            return Err(format!(
                "refundedAmount is in {}, the payment in {}",
                refunded.currency, amount.currency
            ));
        }
        Some(refunded) => refunded.minor_units,
    };
    Ok(PaymentFacts {
        payment_id,
        status,
        amount,
        refunded_minor_units,
    })
}

/// True when the answer is the contract's "never saw it": 404 with `{"code":"PAYMENT_NOT_FOUND"}`.
fn is_not_found(exchange: &Exchange) -> bool {
    matches!(http(exchange), Ok((404, body))
        if object(body).is_ok_and(|m| m.get("code").and_then(Value::as_str) == Some(NOT_FOUND_CODE)))
}

/// Rule `unknown-is-404`: an id the wallet never saw answers 404 with the code.
pub fn unknown_payment(exchange: &Exchange) -> Verdict {
    match http(exchange) {
        Err(why) => Verdict::Fail(why),
        Ok(_) if is_not_found(exchange) => Verdict::Pass,
        Ok((404, _)) => Verdict::Fail(format!(
            "404 without {{\"code\":\"{NOT_FOUND_CODE}\"}}: the adapter must treat it as a \
             misrouted call (a wrong base_url), so no payment would ever be seen as unknown"
        )),
        Ok((status, _)) => Verdict::Fail(format!(
            "expected 404 {{\"code\":\"{NOT_FOUND_CODE}\"}}, got HTTP {status}"
        )),
    }
}

/// Rule `wrong-path-is-not-unknown`: a path outside the contract (what a wrong `base_url`
/// reaches) must not answer like an unknown payment, or a misrouted adapter would take every
/// payment for unknown and answer every cancel `S`.
pub fn wrong_path(exchange: &Exchange) -> Verdict {
    match http(exchange) {
        Err(why) => Verdict::Fail(why),
        Ok(_) if is_not_found(exchange) => Verdict::Fail(format!(
            "a path outside the contract answered 404 {{\"code\":\"{NOT_FOUND_CODE}\"}}: \
             keep that code to GET /payments/{{id}}"
        )),
        Ok((200, _)) => Verdict::Fail("a path outside the contract answered 200".into()),
        Ok(_) => Verdict::Pass,
    }
}

fn close_status(exchange: &Exchange) -> Result<String, String> {
    let map = ok_object(exchange)?;
    match map.get("status") {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(format!(
            "status must be a string, got {}",
            other.map_or("nothing".into(), Value::to_string)
        )),
    }
}

/// Rule `close-unknown`: closing an id the wallet never saw answers CLOSED, again CLOSED on a
/// repeat, and a lookup afterwards does not show a live payment (404 with the code, or FAILED).
pub fn close_unknown(first: &Exchange, repeat: &Exchange, lookup_after: &Exchange) -> Verdict {
    for (which, exchange) in [("the close", first), ("the repeated close", repeat)] {
        match close_status(exchange) {
            Ok(status) if status == "CLOSED" => {}
            Ok(status) => {
                return Verdict::Fail(format!(
                    "{which} of an unknown id answered {status:?}, the contract says CLOSED"
                ));
            }
            Err(why) => return Verdict::Fail(format!("{which}: {why}")),
        }
    }
    if is_not_found(lookup_after) {
        return Verdict::Pass;
    }
    match ok_object(lookup_after).map(|m| m.get("status").cloned()) {
        Ok(Some(Value::String(s))) if s == "FAILED" => Verdict::Pass,
        Ok(status) => Verdict::Fail(format!(
            "after the close, the lookup shows status {}: the id must stay closed",
            status.map_or("nothing".into(), |s| s.to_string())
        )),
        Err(why) => Verdict::Fail(format!("the lookup after the close: {why}")),
    }
}

/// Rule `close-authorized`: closing an AUTHORIZED payment answers ALREADY_AUTHORIZED (the
/// engine then releases the hold through `void`) and leaves it AUTHORIZED. Any other answer
/// sends the engine the wrong way: ALREADY_SUCCEEDED toward a refund of money never captured,
/// CLOSED or ALREADY_FAILED toward `nothing_to_refund` with the hold still on the user's card.
pub fn close_authorized(id: &str, close: &Exchange, lookup_after: &Exchange) -> Verdict {
    match close_status(close) {
        Ok(status) if status == "ALREADY_AUTHORIZED" => {}
        Ok(status) => {
            return Verdict::Fail(format!(
                "closing the AUTHORIZED payment {id} answered {status:?}, the contract says \
                 ALREADY_AUTHORIZED"
            ));
        }
        Err(why) => return Verdict::Fail(format!("the close of {id}: {why}")),
    }
    match payment_lookup(id, lookup_after) {
        Ok(facts) if facts.status == "AUTHORIZED" => Verdict::Pass,
        Ok(facts) => Verdict::Fail(format!(
            "after the close, the lookup of {id} shows {}: closing must leave a hold as it is",
            facts.status
        )),
        Err(why) => Verdict::Fail(format!("the lookup after the close: {why}")),
    }
}

const REFUND_STATUSES: &[&str] = &["SUCCEEDED", "PENDING", "FAILED"];
const VOID_STATUSES: &[&str] = &["VOIDED", "PENDING", "FAILED", "ALREADY_CAPTURED"];

fn money_answer(exchange: &Exchange, statuses: &[&str]) -> Result<MoneyAnswer, String> {
    let map = ok_object(exchange)?;
    let status = match map.get("status") {
        Some(Value::String(s)) if statuses.contains(&s.as_str()) => s.clone(),
        other => {
            return Err(format!(
                "status must be one of {}, got {}",
                statuses.join(", "),
                other.map_or("nothing".into(), Value::to_string)
            ));
        }
    };
    Ok(MoneyAnswer {
        status,
        amount: amount_field(&map, "amount")?,
        reference: optional_text(&map, "reference")?,
    })
}

/// The answer to `POST /refunds`.
pub fn refund_answer(exchange: &Exchange) -> Result<MoneyAnswer, String> {
    money_answer(exchange, REFUND_STATUSES)
}

/// The answer to `POST /payments/{id}/void`.
pub fn void_answer(exchange: &Exchange) -> Result<MoneyAnswer, String> {
    money_answer(exchange, VOID_STATUSES)
}

/// Answers to one id agree: no two final statuses differ (PENDING may precede a final one), and
/// every reference given is the same. Different references for one id mean the wallet acted
/// twice.
pub fn consistent(answers: &[MoneyAnswer]) -> Result<(), String> {
    let finals: Vec<&str> = answers
        .iter()
        .map(|a| a.status.as_str())
        .filter(|s| *s != "PENDING")
        .collect();
    if let Some(first) = finals.first()
        && let Some(other) = finals.iter().find(|s| *s != first)
    {
        return Err(format!(
            "answers for one id differ: {first} and {other} (the wallet acted more than once)"
        ));
    }
    let references: Vec<&str> = answers
        .iter()
        .filter_map(|a| a.reference.as_deref())
        .collect();
    if let Some(first) = references.first()
        && let Some(other) = references.iter().find(|r| *r != first)
    {
        return Err(format!(
            "answers for one id carry different references {first:?} and {other:?} (the wallet \
             acted more than once)"
        ));
    }
    Ok(())
}

fn parsed(
    exchanges: &[Exchange],
    read: fn(&Exchange) -> Result<MoneyAnswer, String>,
) -> Result<Vec<MoneyAnswer>, String> {
    exchanges
        .iter()
        .enumerate()
        .map(|(i, e)| read(e).map_err(|why| format!("answer {}: {why}", i + 1)))
        .collect()
}

/// Rules `refund-dedupe-concurrent` and `refund-dedupe-sequential`: the answers to one
/// `refundId` agree, and the money moved once. `already_moved` is how much `refundedAmount` had
/// grown for this `refundId` before these calls (zero for the first burst); `moved` is how much
/// it grew during them, both read from payment lookups.
pub fn refund_dedupe(
    exchanges: &[Exchange],
    amount: Amount,
    already_moved: i64,
    moved: i64,
) -> Verdict {
    let answers = match parsed(exchanges, refund_answer) {
        Ok(answers) => answers,
        Err(why) => return Verdict::Fail(why),
    };
    if answers.iter().all(|a| a.status == "FAILED") {
        return Verdict::Skip("the wallet refused the refund (FAILED): nothing to compare".into());
    }
    if let Err(why) = consistent(&answers) {
        return Verdict::Fail(why);
    }
    let succeeded = answers.iter().any(|a| a.status == "SUCCEEDED");
    if already_moved >= amount.minor_units {
        // A repeat of a refund already made must move nothing more.
        return match moved {
            0 => Verdict::Pass,
            m => Verdict::Fail(format!(
                "refundedAmount grew by {m} on a repeat of a refund already made"
            )),
        };
    }
    let total = already_moved + moved;
    if total > amount.minor_units {
        return Verdict::Fail(format!(
            "refundedAmount grew by {total} for one refundId of {amount}: the money moved more \
             than once"
        ));
    }
    if succeeded && total != amount.minor_units {
        return Verdict::Fail(format!(
            "the wallet answered SUCCEEDED but refundedAmount grew by {total}, not {amount}"
        ));
    }
    Verdict::Pass
}

/// Rule `refund-succeeded-amount`: every SUCCEEDED answer, first or repeat, says what was
/// refunded, and it is the order's amount.
pub fn refund_amounts(exchanges: &[Exchange], amount: Amount) -> Verdict {
    let answers = match parsed(exchanges, refund_answer) {
        Ok(answers) => answers,
        Err(why) => return Verdict::Fail(why),
    };
    let mut seen = 0;
    for (i, answer) in answers.iter().enumerate() {
        if answer.status != "SUCCEEDED" {
            continue;
        }
        seen += 1;
        match answer.amount {
            None => {
                return Verdict::Fail(format!(
                    "answer {} is SUCCEEDED without amount (required, also on a repeat)",
                    i + 1
                ));
            }
            Some(a) if a != amount => {
                return Verdict::Fail(format!(
                    "answer {} is SUCCEEDED with amount {a}, the order was {amount}",
                    i + 1
                ));
            }
            Some(_) => {}
        }
    }
    match seen {
        0 => Verdict::Skip("no answer said SUCCEEDED".into()),
        _ => Verdict::Pass,
    }
}

/// Rules `void-dedupe-concurrent` and `void-dedupe-sequential`: the answers to one `voidId`
/// agree. A released hold leaves no balance to read back, so the wallet's own reference is the
/// evidence that it acted once.
pub fn void_dedupe(exchanges: &[Exchange]) -> Verdict {
    match parsed(exchanges, void_answer) {
        Err(why) => Verdict::Fail(why),
        Ok(answers) if answers.iter().all(|a| a.status == "FAILED") => {
            Verdict::Skip("the wallet refused the void (FAILED): nothing to compare".into())
        }
        Ok(answers) => match consistent(&answers) {
            Ok(()) => Verdict::Pass,
            Err(why) => Verdict::Fail(why),
        },
    }
}

/// Rule `answers-in-time`: every call answered within the timeout.
pub fn in_time(exchanges: &[Exchange], timeout_ms: u64) -> Verdict {
    let late: Vec<String> = exchanges
        .iter()
        .filter(|e| matches!(e.answer, Answer::TimedOut))
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    match late.as_slice() {
        [] if exchanges.is_empty() => Verdict::Skip("no call was made".into()),
        [] => Verdict::Pass,
        _ => Verdict::Fail(format!(
            "{} call(s) took longer than {timeout_ms} ms: {}",
            late.len(),
            late.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn answer(status: u16, body: Value) -> Exchange {
        Exchange {
            method: "GET",
            path: "/x".into(),
            request_body: None,
            answer: Answer::Http {
                status,
                body: body.to_string(),
            },
            elapsed: Duration::from_millis(1),
        }
    }

    fn jpy(minor_units: i64) -> Amount {
        Amount {
            minor_units,
            currency: Currency::parse("JPY").unwrap(),
        }
    }

    fn payment() -> Value {
        json!({"paymentRequestId": "p1", "paymentId": "w1", "status": "SUCCESS",
               "amount": {"value": "100", "currency": "JPY"},
               "createdAt": "2026-11-20T12:00:00+08:00"})
    }

    #[test]
    fn a_payment_lookup_is_read_and_its_types_checked() {
        let facts = payment_lookup("p1", &answer(200, payment())).unwrap();
        assert_eq!((facts.status.as_str(), facts.amount), ("SUCCESS", jpy(100)));
        assert_eq!(facts.refunded_minor_units, 0);
        let broken = [
            ("paymentRequestId", json!("p2")),
            ("paymentId", json!(7)),
            ("status", json!("DONE")),
            ("amount", json!({"value": 100, "currency": "JPY"})),
            ("amount", json!({"value": "1.00", "currency": "JPY"})),
            ("amount", json!({"value": "100", "currency": "YEN"})),
            ("createdAt", json!("yesterday")),
            ("refundedAmount", json!({"value": "1", "currency": "USD"})),
        ];
        for (field, value) in broken {
            let mut body = payment();
            body[field] = value.clone();
            assert!(
                payment_lookup("p1", &answer(200, body)).is_err(),
                "{field} = {value}"
            );
        }
        assert!(payment_lookup("p1", &answer(500, payment())).is_err());
    }

    #[test]
    fn only_404_with_the_code_is_unknown() {
        assert_eq!(
            unknown_payment(&answer(404, json!({"code": NOT_FOUND_CODE}))),
            Verdict::Pass
        );
        assert!(unknown_payment(&answer(404, json!({"error": "nope"}))).is_fail());
        assert!(unknown_payment(&answer(200, payment())).is_fail());
        assert!(wrong_path(&answer(404, json!({"code": NOT_FOUND_CODE}))).is_fail());
        assert_eq!(wrong_path(&answer(404, json!("Not Found"))), Verdict::Pass);
    }

    #[test]
    fn a_closed_unknown_id_stays_closed() {
        let closed = answer(200, json!({"status": "CLOSED"}));
        let gone = answer(404, json!({"code": NOT_FOUND_CODE}));
        assert_eq!(close_unknown(&closed, &closed, &gone), Verdict::Pass);
        let pending = answer(200, json!({"status": "PENDING"}));
        assert!(close_unknown(&pending, &closed, &gone).is_fail());
        assert!(close_unknown(&closed, &pending, &gone).is_fail());
        let mut live = payment();
        live["status"] = json!("PROCESSING");
        assert!(close_unknown(&closed, &closed, &answer(200, live)).is_fail());
    }

    #[test]
    fn closing_a_hold_reports_it_and_leaves_it_held() {
        let mut held = payment();
        held["status"] = json!("AUTHORIZED");
        let held = answer(200, held);
        let reported = answer(200, json!({"status": "ALREADY_AUTHORIZED"}));
        assert_eq!(close_authorized("p1", &reported, &held), Verdict::Pass);
        for wrong in ["ALREADY_SUCCEEDED", "CLOSED", "ALREADY_FAILED", "PENDING"] {
            let verdict = close_authorized("p1", &answer(200, json!({"status": wrong})), &held);
            assert!(verdict.is_fail(), "{wrong}");
        }
        assert!(close_authorized("p1", &answer(500, json!({})), &held).is_fail());
        let mut released = payment();
        released["status"] = json!("FAILED");
        assert!(close_authorized("p1", &reported, &answer(200, released)).is_fail());
    }

    fn refund(status: &str, reference: &str, amount: Option<&str>) -> Exchange {
        let mut body = json!({"status": status, "reference": reference});
        if let Some(value) = amount {
            body["amount"] = json!({"value": value, "currency": "JPY"});
        }
        answer(200, body)
    }

    #[test]
    fn dedupe_is_judged_by_agreement_and_by_the_money_that_moved() {
        let once = vec![refund("SUCCEEDED", "r1", Some("100")); 3];
        assert_eq!(refund_dedupe(&once, jpy(100), 0, 100), Verdict::Pass);
        // The same answers, but the ledger shows the money moved twice.
        assert!(refund_dedupe(&once, jpy(100), 0, 200).is_fail());
        // SUCCEEDED but nothing moved: the answer is not true.
        assert!(refund_dedupe(&once, jpy(100), 0, 0).is_fail());
        // A new reference per call: the wallet refunded per call.
        let twice = [
            refund("SUCCEEDED", "r1", Some("100")),
            refund("SUCCEEDED", "r2", Some("100")),
        ];
        assert!(refund_dedupe(&twice, jpy(100), 0, 100).is_fail());
        let refused_repeat = [
            refund("SUCCEEDED", "r1", Some("100")),
            refund("FAILED", "r1", None),
        ];
        assert!(refund_dedupe(&refused_repeat, jpy(100), 0, 100).is_fail());
        // A repeat after the money moved must move nothing, even after a burst that moved it
        // twice (that burst is the concurrent rule's failure, not this one's).
        let repeat = [refund("SUCCEEDED", "r1", Some("100"))];
        assert_eq!(refund_dedupe(&repeat, jpy(100), 100, 0), Verdict::Pass);
        assert_eq!(refund_dedupe(&repeat, jpy(100), 200, 0), Verdict::Pass);
        assert!(refund_dedupe(&repeat, jpy(100), 100, 100).is_fail());
        let pending = [
            refund("PENDING", "r1", None),
            refund("SUCCEEDED", "r1", Some("100")),
        ];
        assert_eq!(refund_dedupe(&pending, jpy(100), 0, 100), Verdict::Pass);
        assert_eq!(
            refund_dedupe(&[refund("PENDING", "r1", None)], jpy(100), 0, 0),
            Verdict::Pass
        );
    }

    #[test]
    fn succeeded_carries_the_amount_also_on_a_repeat() {
        let good = [
            refund("SUCCEEDED", "r1", Some("100")),
            refund("SUCCEEDED", "r1", Some("100")),
        ];
        assert_eq!(refund_amounts(&good, jpy(100)), Verdict::Pass);
        let bare_repeat = [
            refund("SUCCEEDED", "r1", Some("100")),
            refund("SUCCEEDED", "r1", None),
        ];
        assert!(refund_amounts(&bare_repeat, jpy(100)).is_fail());
        assert!(refund_amounts(&[refund("SUCCEEDED", "r1", Some("99"))], jpy(100)).is_fail());
    }

    #[test]
    fn void_answers_must_agree() {
        let void = |status: &str, reference: &str| {
            answer(200, json!({"status": status, "reference": reference}))
        };
        assert_eq!(
            void_dedupe(&[void("VOIDED", "v1"), void("VOIDED", "v1")]),
            Verdict::Pass
        );
        assert!(void_dedupe(&[void("VOIDED", "v1"), void("VOIDED", "v2")]).is_fail());
        assert!(void_dedupe(&[void("VOIDED", "v1"), void("FAILED", "v1")]).is_fail());
        assert!(void_dedupe(&[void("CANCELLED", "v1")]).is_fail());
    }

    #[test]
    fn a_timed_out_call_fails_the_timing_rule() {
        let mut late = answer(200, json!({}));
        late.answer = Answer::TimedOut;
        assert_eq!(in_time(&[answer(200, json!({}))], 10), Verdict::Pass);
        assert!(in_time(&[answer(200, json!({})), late], 10).is_fail());
    }
}
