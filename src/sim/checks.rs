//! `mpp-cancel sim conformance`: Alipay+'s traffic against any MPP's cancelPayment endpoint,
//! one row per rule. Every check uses fresh paymentRequestIds (`mppc-{run}-{n}`), so the kit can
//! run against a live endpoint without touching real payments; the unknown ones it cancels stay
//! there as tombstones, as Alipay+'s would.

use std::time::Duration;

use chrono::{DateTime, Days, FixedOffset, NaiveTime, TimeZone, Utc};
use futures_util::future::join_all;

use super::client::{AlipayClient, Probe, Signing, SimOutcome};
use super::codes;
use super::internal::{InternalApi, check_settled};
use super::payments::{CreateError, PaymentMaker, TestPayment, TestStatus};
use super::report::{Report, Row};
use super::scenarios;
use crate::domain::{Currency, Money};

/// Everything a run needs.
pub struct Kit {
    pub alipay: AlipayClient,
    pub payments: PaymentMaker,
    pub internal: Option<InternalApi>,
    /// How long a cancellation may take to reach its settled state.
    pub settle_timeout: Duration,
    run: String,
    next: std::sync::atomic::AtomicU32,
    rng: std::sync::Mutex<fastrand::Rng>,
}

/// What Alipay+ does with U or no answer: the same body again, until S or F.
const MAX_ATTEMPTS: u32 = 8;

impl Kit {
    pub fn new(
        alipay: AlipayClient,
        payments: PaymentMaker,
        internal: Option<InternalApi>,
    ) -> Self {
        Self {
            alipay,
            payments,
            internal,
            settle_timeout: Duration::from_secs(30),
            run: format!(
                "{}{:04x}",
                Utc::now().format("%y%m%d%H%M%S"),
                fastrand::u16(..)
            ),
            next: std::sync::atomic::AtomicU32::new(0),
            rng: std::sync::Mutex::new(fastrand::Rng::new()),
        }
    }

    /// A paymentRequestId no earlier run used.
    pub fn fresh_id(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("mppc-{}-{n}", self.run)
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, fastrand::Rng> {
        self.rng.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A test payment of `status` created at `created_at`, from a fresh 19-digit Alipay+ code.
    pub fn payment(&self, status: TestStatus, created_at: DateTime<Utc>) -> TestPayment {
        let (amount, payment_code) = {
            let mut rng = self.rng();
            (rng.i64(100..100_000), codes::new_alipay_plus_19(&mut rng))
        };
        TestPayment {
            payment_request_id: self.fresh_id(),
            status,
            amount: Money::new(amount, Currency::parse("JPY").expect("JPY is ISO 4217"))
                .expect("a positive amount"),
            created_at,
            refunded_minor_units: 0,
            payment_code,
        }
    }

    /// Alipay+'s way: send, and on U or no answer send the same body again (with a growing
    /// pause) until S or F. Returns the final answer and the attempts' story.
    pub async fn until_final(
        &self,
        check: &str,
        probe: &Probe,
    ) -> (Option<SimOutcome>, Vec<String>) {
        let mut story = Vec::new();
        for attempt in 1..=MAX_ATTEMPTS {
            match self.alipay.send(check, probe).await {
                Ok(outcome) => match outcome.result_status() {
                    Some("S" | "F") if outcome.status == 200 => {
                        story.push(describe(&outcome));
                        return (Some(outcome), story);
                    }
                    _ => story.push(describe(&outcome)),
                },
                Err(e) => story.push(format!("no answer ({e:#})")),
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
        (None, story)
    }

    /// Creates a payment, turning a failure into the row to report.
    pub async fn create(&self, check: &str, payment: &TestPayment) -> Result<(), Row> {
        match self.payments.create(payment).await {
            Ok(()) => Ok(()),
            Err(CreateError::Unavailable(why)) => Err(Row::skip(check, why)),
            Err(e @ CreateError::Failed(_)) => Err(Row::fail(check, format!("kit: {e}"))),
        }
    }

    /// Sends a valid cancel until final and expects `code`; then the settled state; then the
    /// same cancel again, which must get the first answer byte for byte (the money work done
    /// since must not change what Alipay+ is told).
    async fn cancel_expecting(
        &self,
        check: &str,
        payment: &TestPayment,
        code: &str,
        settled: &str,
    ) -> Row {
        let id = &payment.payment_request_id;
        let probe = self.alipay.cancel(id);
        let (outcome, story) = self.until_final(check, &probe).await;
        let Some(outcome) = outcome else {
            return Row::fail(
                check,
                format!("{id}: no final answer: {}", story.join("; ")),
            );
        };
        if outcome.result_code() != Some(code) {
            return Row::fail(
                check,
                format!("{id}: expected {code}, got {}", describe(&outcome)),
            );
        }
        let evidence = match check_settled(
            self.internal.as_ref(),
            &self.payments,
            id,
            settled,
            payment.amount.minor_units,
            self.settle_timeout,
        )
        .await
        {
            Ok(evidence) => evidence,
            Err(problem) => {
                return Row::fail(check, format!("{id}: {}; {problem}", describe(&outcome)));
            }
        };
        match self.alipay.send(check, &probe).await {
            Ok(again) if again.raw_body == outcome.raw_body => Row::pass(
                check,
                format!(
                    "{id}: {}; {evidence}; replayed byte-identical",
                    describe(&outcome)
                ),
            ),
            Ok(again) => Row::fail(
                check,
                format!(
                    "{id}: {}; {evidence}; the replay got {:?}, the first answer was {:?}",
                    describe(&outcome),
                    text(&again),
                    text(&outcome)
                ),
            ),
            Err(e) => Row::fail(
                check,
                format!(
                    "{id}: {}; {evidence}; no answer to the replay: {e:#}",
                    describe(&outcome)
                ),
            ),
        }
    }

    /// Runs every check; scenarios too when the kit can create payments.
    pub async fn run(&self) -> Report {
        let mut rows = [
            self.unknown_payment_and_replay().await,
            self.concurrent_twins().await,
            self.retry_after_no_answer().await,
        ]
        .concat();
        rows.extend(self.bad_inputs().await);
        rows.extend(self.tampering().await);
        rows.extend(self.payment_states().await);
        rows.extend(self.window().await);
        rows.extend(scenarios::run_all(self).await);
        rows.extend(self.every_answer());
        Report { rows }
    }

    async fn unknown_payment_and_replay(&self) -> Vec<Row> {
        let id = self.fresh_id();
        let probe = self.alipay.cancel(&id);
        let (first, story) = self.until_final("unknown-payment-is-S", &probe).await;
        let Some(first) = first else {
            let why = format!("{id}: no final answer: {}", story.join("; "));
            return vec![
                Row::fail("unknown-payment-is-S", why),
                Row::skip("replay-byte-identical", "no first answer to replay"),
            ];
        };
        let unknown = if first.result_status() == Some("S") {
            Row::pass(
                "unknown-payment-is-S",
                format!("{id}: {}", describe(&first)),
            )
        } else {
            Row::fail(
                "unknown-payment-is-S",
                format!("{id}: {}", describe(&first)),
            )
        };
        let replay = match self.alipay.send("replay-byte-identical", &probe).await {
            Ok(again) if again.raw_body == first.raw_body => Row::pass(
                "replay-byte-identical",
                format!(
                    "{id}: a later request with a new Request-Time got the same {} bytes",
                    again.raw_body.len()
                ),
            ),
            Ok(again) => Row::fail(
                "replay-byte-identical",
                format!("{id}: first {:?}, replay {:?}", text(&first), text(&again)),
            ),
            Err(e) => Row::fail(
                "replay-byte-identical",
                format!("{id}: no answer to the replay: {e:#}"),
            ),
        };
        vec![unknown, replay]
    }

    async fn concurrent_twins(&self) -> Vec<Row> {
        const CHECK: &str = "concurrent-twins-one-answer";
        let id = self.fresh_id();
        let probe = self.alipay.cancel(&id);
        let answers = join_all((0..20).map(|_| self.alipay.send(CHECK, &probe))).await;
        let mut bodies: Vec<String> = Vec::new();
        for answer in &answers {
            match answer {
                Ok(o) => bodies.push(text(o)),
                Err(e) => {
                    return vec![Row::fail(
                        CHECK,
                        format!("{id}: a twin got no answer: {e:#}"),
                    )];
                }
            }
        }
        bodies.sort();
        bodies.dedup();
        let row = match bodies.as_slice() {
            [one] if one.contains(r#""resultStatus":"S""#) => Row::pass(
                CHECK,
                format!("{id}: 20 concurrent twins, one answer: {one}"),
            ),
            [one] => Row::fail(CHECK, format!("{id}: one answer but not S: {one}")),
            many => Row::fail(
                CHECK,
                format!(
                    "{id}: {} different answers: {}",
                    many.len(),
                    many.join(" | ")
                ),
            ),
        };
        vec![row]
    }

    async fn retry_after_no_answer(&self) -> Vec<Row> {
        const CHECK: &str = "retry-after-no-answer";
        let id = self.fresh_id();
        let probe = self.alipay.cancel(&id);
        match self.alipay.send_and_hang_up(&probe).await {
            Ok(true) => {}
            Ok(false) => return vec![Row::skip(CHECK, "hanging up is done over http:// only")],
            Err(e) => return vec![Row::fail(CHECK, format!("{id}: could not send: {e:#}"))],
        }
        let (last, story) = self.until_final(CHECK, &probe).await;
        let Some(last) = last else {
            return vec![Row::fail(
                CHECK,
                format!("{id}: never S or F: {}", story.join("; ")),
            )];
        };
        let again = self.alipay.send(CHECK, &probe).await;
        let row = match again {
            Ok(again) if again.raw_body == last.raw_body && last.result_status() == Some("S") => {
                Row::pass(
                    CHECK,
                    format!(
                        "{id}: hung up, then {}; the next retry repeats it",
                        story.join(", then ")
                    ),
                )
            }
            Ok(again) => Row::fail(
                CHECK,
                format!(
                    "{id}: after the hang-up: {}; then {}",
                    story.join(", "),
                    describe(&again)
                ),
            ),
            Err(e) => Row::fail(CHECK, format!("{id}: no answer to the last retry: {e:#}")),
        };
        vec![row]
    }

    async fn bad_inputs(&self) -> Vec<Row> {
        let t = &self.alipay.target;
        let body = |acquirer: serde_json::Value, psp: serde_json::Value, id: serde_json::Value| {
            let mut map = serde_json::Map::new();
            for (name, value) in [
                ("acquirerId", acquirer),
                ("pspId", psp),
                ("paymentRequestId", id),
            ] {
                if !value.is_null() {
                    map.insert(name.into(), value);
                }
            }
            serde_json::Value::Object(map).to_string().into_bytes()
        };
        let acq = || serde_json::Value::from(t.acquirer_id.as_str());
        let psp = || serde_json::Value::from(t.psp_id.as_str());
        let id = || serde_json::Value::from(self.fresh_id());
        let valid = |p: Probe| p;
        let mut cases: Vec<(&str, &str, Probe)> = vec![
            (
                "bad-input-json",
                "PARAM_ILLEGAL",
                self.alipay.probe(br#"{"acquirerId":"#.to_vec()),
            ),
            (
                "bad-input-missing-field",
                "PARAM_ILLEGAL",
                self.alipay
                    .probe(body(acq(), psp(), serde_json::Value::Null)),
            ),
            (
                "bad-input-empty-field",
                "PARAM_ILLEGAL",
                self.alipay.probe(body(acq(), psp(), "".into())),
            ),
            (
                "bad-input-65-characters",
                "PARAM_ILLEGAL",
                self.alipay.probe(body(acq(), psp(), "9".repeat(65).into())),
            ),
            (
                "bad-input-non-string",
                "PARAM_ILLEGAL",
                self.alipay.probe(body(acq(), psp(), 20261123.into())),
            ),
            (
                "bad-input-control-character",
                "PARAM_ILLEGAL",
                self.alipay.probe(body(
                    acq(),
                    psp(),
                    format!("mppc-\u{0}-{}", self.run).into(),
                )),
            ),
            (
                "bad-input-psp-not-ours",
                "ACCESS_DENIED",
                self.alipay
                    .probe(body(acq(), format!("NOT{}", t.psp_id).into(), id())),
            ),
        ];
        let mut unknown_client = valid(self.alipay.probe(body(acq(), psp(), id())));
        unknown_client.client_id = "MPPC_UNKNOWN_CLIENT".into();
        cases.push((
            "bad-input-unknown-client-id",
            "INVALID_CLIENT",
            unknown_client,
        ));
        let mut unsigned = self.alipay.probe(body(acq(), psp(), id()));
        unsigned.signing = Signing::Missing;
        cases.push(("bad-input-no-signature", "INVALID_SIGNATURE", unsigned));
        let mut unknown_key = self.alipay.probe(body(acq(), psp(), id()));
        unknown_key.key_version = "9999".into();
        cases.push((
            "bad-input-unknown-key-version",
            "KEY_NOT_FOUND",
            unknown_key,
        ));
        let mut get = self.alipay.probe(Vec::new());
        get.method = reqwest::Method::GET;
        get.content_type = None;
        cases.push(("bad-input-not-post", "METHOD_NOT_SUPPORTED", get));
        let mut text_plain = self.alipay.probe(body(acq(), psp(), id()));
        text_plain.content_type = Some("text/plain".into());
        cases.push((
            "bad-input-not-json",
            "MEDIA_TYPE_NOT_ACCEPTABLE",
            text_plain,
        ));
        let mut unknown_api = self.alipay.probe(body(acq(), psp(), id()));
        unknown_api.path = match unknown_api.path.rsplit_once('/') {
            Some((parent, _)) => format!("{parent}/mppcNoSuchApi"),
            None => "/mppcNoSuchApi".into(),
        };
        cases.push(("bad-input-unknown-api", "INVALID_API", unknown_api));

        let mut rows = Vec::new();
        for (check, code, probe) in cases {
            rows.push(self.expect_refusal(check, code, &probe).await);
        }
        rows
    }

    /// An answer that refuses: HTTP 200, `F` with `code`, signed.
    async fn expect_refusal(&self, check: &str, code: &str, probe: &Probe) -> Row {
        match self.alipay.send(check, probe).await {
            Err(e) => Row::fail(check, format!("no answer: {e:#}")),
            Ok(o) if o.status != 200 => {
                Row::fail(check, format!("HTTP {}: {}", o.status, text(&o)))
            }
            Ok(o) if o.result_status() != Some("F") || o.result_code() != Some(code) => {
                Row::fail(check, format!("expected F {code}, got {}", describe(&o)))
            }
            Ok(o) => match (o.signature_verified, &o.signature_problem) {
                (Some(true), _) => Row::pass(check, format!("{}, signed", describe(&o))),
                (None, _) if self.alipay.target.mpp_public_key.is_none() => Row::pass(
                    check,
                    format!(
                        "{} (signature not checked: no --mpp-public-key)",
                        describe(&o)
                    ),
                ),
                (_, problem) => Row::fail(
                    check,
                    format!(
                        "{} but {}",
                        describe(&o),
                        problem
                            .as_deref()
                            .unwrap_or("the signature does not verify")
                    ),
                ),
            },
        }
    }

    async fn tampering(&self) -> Vec<Row> {
        let mut corrupted = self.alipay.cancel(&self.fresh_id());
        corrupted.signing = Signing::Corrupted;
        let original = self.alipay.cancel(&self.fresh_id());
        let mut tampered = self.alipay.cancel(&self.fresh_id());
        tampered.signing = Signing::OverOtherBody(original.body.clone());
        vec![
            self.expect_refusal(
                "tampered-signature-refused",
                "INVALID_SIGNATURE",
                &corrupted,
            )
            .await,
            self.expect_refusal("tampered-body-refused", "INVALID_SIGNATURE", &tampered)
                .await,
        ]
    }

    async fn payment_states(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let minute_ago = Utc::now() - chrono::Duration::minutes(1);
        for status in TestStatus::ALL {
            let check = format!("payment-{}-is-S", status.as_str().to_ascii_lowercase());
            let payment = self.payment(status, minute_ago);
            if let Err(row) = self.create(&check, &payment).await {
                rows.push(row);
                continue;
            }
            rows.push(
                self.cancel_expecting(&check, &payment, "SUCCESS", status.settled_state())
                    .await,
            );
        }
        let check = "payment-refunded-is-process-fail";
        let mut refunded = self.payment(TestStatus::Success, minute_ago);
        refunded.refunded_minor_units = refunded.amount.minor_units;
        match self.create(check, &refunded).await {
            Err(row) => rows.push(row),
            Ok(()) => rows.push(
                self.cancel_expecting(check, &refunded, "PROCESS_FAIL", "rejected")
                    .await,
            ),
        }
        rows
    }

    /// Window checks on payments created relative to now (the MPP's clock cannot be moved).
    async fn window(&self) -> Vec<Row> {
        if !self.payments.can_create() {
            let why = "the kit cannot create payments: give --demo-wallet, --create-payment-cmd \
                       or --create-payment-url";
            return vec![Row::skip("window-checks", why)];
        }
        let now = Utc::now();
        let mut rows = Vec::new();
        let mut cases = Vec::new();
        // A payment whose day differs between UTC and UTC+8 so that the two give opposite
        // answers now: an MPP that takes T on the UTC day fails this one.
        match utc_trap(now) {
            Some(created) => cases.push(("window-utc8-day", created)),
            None => rows.push(Row::skip(
                "window-utc8-day",
                "within a minute of 00:30 or 16:30 UTC: run again a little later",
            )),
        }
        let today = utc8_midnight(now);
        cases.push(("window-first-instant-of-today-utc8", today));
        cases.push((
            "window-last-instant-of-yesterday-utc8",
            today - chrono::Duration::milliseconds(1),
        ));
        for (check, created) in cases {
            let closes = closes_at(created);
            if (closes - now).num_seconds().abs() < 20 {
                rows.push(Row::skip(
                    check,
                    format!("the cut-off {closes} is too close to now to judge"),
                ));
                continue;
            }
            let open = now < closes;
            let payment = self.payment(TestStatus::Success, created);
            if let Err(row) = self.create(check, &payment).await {
                rows.push(row);
                continue;
            }
            let mut row = if open {
                self.cancel_expecting(check, &payment, "SUCCESS", "refunded")
                    .await
            } else {
                self.cancel_expecting(check, &payment, "CANCEL_WINDOW_EXCEED", "rejected")
                    .await
            };
            row.evidence = format!(
                "created {} (T = {} UTC+8, {} UTC), window closes {}: {}",
                created.to_rfc3339(),
                created.with_timezone(&utc8()).date_naive(),
                created.date_naive(),
                closes.with_timezone(&utc8()).to_rfc3339(),
                row.evidence
            );
            rows.push(row);
        }
        rows
    }

    /// The rules every answer must meet, judged over all the answers of the run.
    fn every_answer(&self) -> Vec<Row> {
        let seen = self.alipay.seen();
        let bad_http = seen
            .iter()
            .find(|a| a.status != 200 || a.result_status.is_none());
        let http = match bad_http {
            None => Row::pass(
                "every-answer-http-200-with-result",
                format!("{} answers", seen.len()),
            ),
            Some(a) => Row::fail(
                "every-answer-http-200-with-result",
                format!(
                    "{}: HTTP {} result {:?}",
                    a.check, a.status, a.result_status
                ),
            ),
        };
        let signed = if self.alipay.target.mpp_public_key.is_none() {
            Row::skip("every-answer-signed", "no --mpp-public-key")
        } else {
            match seen.iter().find(|a| a.signature_verified != Some(true)) {
                None => Row::pass(
                    "every-answer-signed",
                    format!(
                        "{} answers verified over the request's method, path, Client-Id and Response-Time",
                        seen.len()
                    ),
                ),
                Some(a) => Row::fail(
                    "every-answer-signed",
                    format!(
                        "{} ({:?}): {}",
                        a.check,
                        a.result_code,
                        a.signature_problem.as_deref().unwrap_or("does not verify")
                    ),
                ),
            }
        };
        vec![http, signed]
    }
}

/// `HTTP 200 S SUCCESS` and the like.
pub fn describe(o: &SimOutcome) -> String {
    format!(
        "HTTP {} {} {}",
        o.status,
        o.result_status().unwrap_or("-"),
        o.result_code().unwrap_or("(no result)")
    )
}

fn text(o: &SimOutcome) -> String {
    String::from_utf8_lossy(&o.raw_body).into_owned()
}

/// Alipay+'s zone, fixed: the kit judges by the rule, not by the MPP's configuration.
pub fn utc8() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is an offset")
}

/// 00:00 UTC+8 of the UTC+8 day `now` is in.
pub fn utc8_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    let day = now.with_timezone(&utc8()).date_naive();
    utc8()
        .from_local_datetime(&day.and_time(NaiveTime::MIN))
        .single()
        .expect("fixed offset")
        .with_timezone(&Utc)
}

/// Alipay+'s rule: 00:30 UTC+8 of the day after T, T the UTC+8 day of creation.
pub fn closes_at(created: DateTime<Utc>) -> DateTime<Utc> {
    let t = created.with_timezone(&utc8()).date_naive();
    let cutoff = NaiveTime::from_hms_opt(0, 30, 0).expect("00:30");
    utc8()
        .from_local_datetime(&(t + Days::new(1)).and_time(cutoff))
        .single()
        .expect("fixed offset")
        .with_timezone(&Utc)
}

/// The same rule with T taken on the UTC day and the cut-off at 00:30 UTC: the mistake the
/// kit must catch.
fn closes_at_on_utc_day(created: DateTime<Utc>) -> DateTime<Utc> {
    let t = created.date_naive() + Days::new(1);
    Utc.from_utc_datetime(&t.and_hms_opt(0, 30, 0).expect("00:30"))
}

/// A creation time in the past for which the UTC+8 rule and the UTC-day mistake disagree now,
/// both far enough (a minute) from their cut-offs to be judged.
pub fn utc_trap(now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let second = chrono::Duration::seconds(1);
    let today = Utc.from_utc_datetime(&now.date_naive().and_time(NaiveTime::MIN));
    let mut candidates = Vec::new();
    for back in 0..3 {
        let day = today - chrono::Duration::days(back);
        let utc8_midnight = day - chrono::Duration::hours(8);
        for base in [day, utc8_midnight, day + chrono::Duration::hours(16)] {
            candidates.push(base - second);
            candidates.push(base + second);
        }
    }
    candidates.into_iter().find(|&created| {
        let (right, wrong) = (closes_at(created), closes_at_on_utc_day(created));
        created < now - chrono::Duration::seconds(10)
            && (now < right) != (now < wrong)
            && (right - now).num_seconds().abs() > 60
            && (wrong - now).num_seconds().abs() > 60
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_window_closes_at_0030_utc8_on_t_plus_1() {
        assert_eq!(
            closes_at(at("2026-11-23T23:59:59.999+08:00")),
            at("2026-11-24T00:30:00+08:00")
        );
        assert_eq!(
            closes_at(at("2026-11-23T00:00:00+08:00")),
            at("2026-11-24T00:30:00+08:00")
        );
        assert_eq!(
            utc8_midnight(at("2026-11-23T16:10:00Z")),
            at("2026-11-24T00:00:00+08:00")
        );
    }

    #[test]
    fn a_utc_trap_exists_at_every_minute_of_the_day() {
        let start = at("2026-11-23T00:00:30Z");
        for minute in 0..(24 * 60) {
            let now = start + chrono::Duration::minutes(minute);
            // Next to a cut-off (00:30 UTC, 16:30 UTC = 00:30 UTC+8) nothing can be judged.
            if [29, 30, 31, 16 * 60 + 29, 16 * 60 + 30, 16 * 60 + 31].contains(&minute) {
                continue;
            }
            let created = utc_trap(now).unwrap_or_else(|| panic!("no trap at {now}"));
            assert!(created < now);
            assert_ne!(
                now < closes_at(created),
                now < closes_at_on_utc_day(created),
                "{now}"
            );
        }
    }
}
