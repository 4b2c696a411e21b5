//! The refund engine's queue, kept in the `cancellations` rows themselves (River-shaped): a
//! short transaction claims due rows with `FOR UPDATE SKIP LOCKED` and a lease; the outcomes of
//! a batch are written back in one statement, and only by the claim that still holds the lease.

use super::Store;
use crate::domain::{CancellationState, Currency, Money};
use crate::wallet::{RefundOrder, VoidOrder};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// A cancellation a worker holds the lease on.
#[derive(Debug, Clone)]
pub struct ClaimedWork {
    pub payment_request_id: String,
    pub state: CancellationState,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    pub lease_token: Uuid,
    /// The refund owed (refund_pending rows).
    pub refund: Option<RefundOrder>,
    /// The authorization hold to release (void_pending rows).
    pub void: Option<VoidOrder>,
    /// The payment as recorded when the cancel was decided (None: unknown then): a later
    /// answer of the wallet's about it must agree.
    pub known_payment: Option<KnownPayment>,
    /// What is inconsistent about the stored row, if anything: the engine sends such a row to
    /// manual review instead of failing the whole batch it was claimed with. A row whose state
    /// this build cannot read is claimed as `manual_review` with the reason here.
    pub problem: Option<String>,
    /// T, when it was learnt from the wallet (the payment's creation time is stored): it is
    /// kept, and a later lookup that says otherwise is a contradiction.
    pub learnt_day: Option<NaiveDate>,
    /// The earliest arrival the cancel was judged by: a payment unknown then and found later
    /// has its window judged again, by its true T, against this.
    pub first_arrival: DateTime<Utc>,
    /// What the wallet already confirmed it refunded for this row's refund (a `succeeded`
    /// refund): the row is finished without ordering it again.
    pub refunded: Option<Money>,
    /// The void row's status (`voided`: finished without a wallet call; `captured`: the refund
    /// of what was charged is looked up without voiding again).
    pub void_status: Option<String>,
}

/// The payment's facts stored with a cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPayment {
    pub payment_id: String,
    pub amount: Money,
}

/// The payment as the wallet finally reported it (a payment unknown or in flight at decision
/// time that turned out to have succeeded, or to be an authorization): the stored facts and the
/// settlement day T are corrected from it, so the report lists it under its true day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPayment {
    pub payment_id: String,
    pub status: &'static str,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    pub settlement_date: NaiveDate,
}

/// What a worker learnt about one claimed cancellation.
#[derive(Debug, Clone)]
pub struct WorkOutcome {
    pub payment_request_id: String,
    pub lease_token: Uuid,
    pub from: CancellationState,
    pub to: CancellationState,
    /// When the next attempt is due, counted from the moment the outcome is written, on the
    /// database's clock (None: no further attempt). Never an instant computed on an instance.
    pub retry_in: Option<std::time::Duration>,
    pub last_error: Option<String>,
    /// New status of the existing refund row, if it changed.
    pub refund_status: Option<&'static str>,
    /// New status of the existing void row, if it changed. `captured` with `to` refund_pending
    /// queues the refund of the void's full amount.
    pub void_status: Option<&'static str>,
    /// The wallet's reference for the refund or the void whose status this outcome sets.
    pub wallet_reference: Option<String>,
    /// The payment found to have succeeded (or been authorized) after all: its refund (or
    /// void) is queued now, when `to` is refund_pending (or void_pending), and the stored facts
    /// are corrected from it.
    pub found: Option<FoundPayment>,
    /// The audit event's detail: the wallet calls made, their outcomes and durations.
    pub detail: serde_json::Value,
    /// What the wallet says it refunded, with a refund status `succeeded` (whatever the
    /// amount): recorded with the refund.
    pub refunded: Option<Money>,
    /// With a void `captured` and `to` refund_pending: the refund to queue, what the user was
    /// actually charged (captured minus already refunded).
    pub refund_after_capture: Option<Money>,
}

/// What a nudge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nudged {
    /// The work is due now.
    DueNow,
    /// A worker holds the row: its next attempt is due as soon as that worker records the
    /// attempt it is making.
    AfterCurrentAttempt,
    /// A `nothing_to_refund` cancellation reopened: the wallet is asked about it again.
    Reopened,
    /// Nothing to do in this state (terminal, or `manual_review`: requeue it instead).
    NothingToDo(CancellationState),
    /// No cancellation has this id.
    NotFound,
}

impl Nudged {
    /// One word for answers and the audit trail.
    pub fn action(self) -> &'static str {
        match self {
            Self::DueNow => "due_now",
            Self::AfterCurrentAttempt => "after_current_attempt",
            Self::Reopened => "reopened",
            Self::NothingToDo(_) => "nothing_to_do",
            Self::NotFound => "not_found",
        }
    }
}

/// One line of the settlement-day report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportLine {
    pub payment_request_id: String,
    pub payment_id: Option<String>,
    pub acquirer_id: String,
    pub amount_value: Option<i64>,
    pub currency: Option<String>,
    pub state: String,
    /// The day this line is listed under: T, or for a provisional line one of the days it may
    /// belong to.
    pub settlement_date: NaiveDate,
    pub cancelled_at: DateTime<Utc>,
    /// The payment's T is not known yet (it was unknown to the wallet when the cancel was
    /// decided, and no later lookup has found it): the line is listed under every day it may
    /// belong to ([`crate::domain::CancellationWindow::possible_days`]), never silently absent.
    pub provisional: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("stored cancellation {0} is inconsistent: {1}")]
    Corrupt(String, String),
}

impl Store {
    /// Claims up to `limit` due cancellations and counts the attempt (close attempts apart
    /// from refund attempts). Due times and the lease run on the database's clock, never an
    /// instance's own: a row is due when `next_attempt_at <= now()`, and the lease ends `lease`
    /// after the claim, as the database tells time. `now` (the instance's) only stamps
    /// `updated_at`.
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedWork>, WorkError> {
        let rows = sqlx::query!(
            r#"WITH due AS (
                 SELECT payment_request_id FROM cancellations
                  WHERE next_attempt_at <= now()
                    AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())
                  ORDER BY next_attempt_at
                  LIMIT $3
                  FOR UPDATE SKIP LOCKED)
               UPDATE cancellations c
                  SET attempts = c.attempts + (c.state <> 'awaiting_outcome')::int,
                      close_attempts = c.close_attempts + (c.state = 'awaiting_outcome')::int,
                      lease_expires_at = clock_timestamp() + make_interval(secs => $2),
                      lease_token = gen_random_uuid(), nudged_at = NULL, updated_at = $1
                 FROM due LEFT JOIN refunds r ON r.payment_request_id = due.payment_request_id
                          LEFT JOIN voids v ON v.payment_request_id = due.payment_request_id
                WHERE c.payment_request_id = due.payment_request_id
            RETURNING c.payment_request_id, c.state, c.attempts, c.close_attempts,
                      c.lease_token AS "lease_token!",
                      c.payment_id AS "known_payment_id?", c.amount_value AS "known_amount?",
                      c.currency AS "known_currency?",
                      r.refund_id AS "refund_id?", r.payment_id AS "refund_payment_id?",
                      r.amount_value AS "refund_amount?", r.currency AS "refund_currency?",
                      v.void_id AS "void_id?", v.payment_id AS "void_payment_id?",
                      v.amount_value AS "void_amount?", v.currency AS "void_currency?",
                      v.status AS "void_status?", r.status AS "refund_status?",
                      coalesce(r.refunded_value, r.amount_value) AS "refunded_value?",
                      coalesce(r.refunded_currency, r.currency) AS "refunded_currency?",
                      c.settlement_date, c.payment_created_at IS NOT NULL AS "day_learnt!",
                      c.requested_at"#,
            now,
            interval_seconds(lease),
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let mut problem = None;
                // A state this build cannot read (a newer version's, a hand edit) sets this one
                // row aside, never its batch.
                let state: CancellationState = row.state.parse().unwrap_or_else(|e| {
                    problem = Some(format!(
                        "unreadable state {:?}: {e}",
                        crate::domain::untrusted::text(&row.state)
                    ));
                    CancellationState::ManualReview
                });
                let money = |value: i64, currency: &str| {
                    Currency::parse(currency).and_then(|c| Money::new(value, c))
                };
                let refund = match (
                    row.refund_id,
                    row.refund_payment_id,
                    row.refund_amount,
                    row.refund_currency,
                ) {
                    (Some(refund_id), Some(payment_id), Some(value), Some(currency)) => {
                        match money(value, &currency) {
                            Ok(amount) => Some(RefundOrder {
                                refund_id,
                                payment_request_id: row.payment_request_id.clone(),
                                payment_id,
                                amount,
                            }),
                            Err(e) => {
                                problem = Some(format!("stored refund amount: {e}"));
                                None
                            }
                        }
                    }
                    _ => None,
                };
                let known_payment =
                    match (row.known_payment_id, row.known_amount, row.known_currency) {
                        (Some(payment_id), Some(value), Some(currency)) => {
                            match money(value, &currency) {
                                Ok(amount) => Some(KnownPayment { payment_id, amount }),
                                Err(e) => {
                                    problem.get_or_insert_with(|| {
                                        format!("stored payment amount: {e}")
                                    });
                                    None
                                }
                            }
                        }
                        _ => None,
                    };
                let void = match (
                    row.void_id,
                    row.void_payment_id,
                    row.void_amount,
                    row.void_currency,
                ) {
                    (Some(void_id), Some(payment_id), Some(value), Some(currency)) => {
                        match money(value, &currency) {
                            Ok(amount) => Some(VoidOrder {
                                void_id,
                                payment_request_id: row.payment_request_id.clone(),
                                payment_id,
                                amount,
                            }),
                            Err(e) => {
                                problem.get_or_insert_with(|| format!("stored void amount: {e}"));
                                None
                            }
                        }
                    }
                    _ => None,
                };
                if state == CancellationState::RefundPending && refund.is_none() {
                    problem.get_or_insert_with(|| "refund_pending without a refund".into());
                }
                if state == CancellationState::VoidPending {
                    if void.is_none() {
                        problem.get_or_insert_with(|| "void_pending without a void".into());
                    } else if refund.is_some() {
                        problem.get_or_insert_with(|| {
                            "void_pending for a hold already captured and refunded".into()
                        });
                    }
                }
                let refunded = match (
                    row.refund_status.as_deref(),
                    row.refunded_value,
                    row.refunded_currency,
                ) {
                    (Some("succeeded"), Some(value), Some(currency)) => {
                        match money(value, &currency) {
                            Ok(amount) => Some(amount),
                            Err(e) => {
                                problem
                                    .get_or_insert_with(|| format!("stored refunded amount: {e}"));
                                None
                            }
                        }
                    }
                    _ => None,
                };
                let attempt = match state {
                    CancellationState::AwaitingOutcome => row.close_attempts,
                    _ => row.attempts,
                };
                Ok(ClaimedWork {
                    payment_request_id: row.payment_request_id.clone(),
                    state,
                    attempt,
                    lease_token: row.lease_token,
                    refund,
                    void,
                    known_payment,
                    problem,
                    learnt_day: row.day_learnt.then_some(row.settlement_date),
                    first_arrival: row.requested_at,
                    refunded,
                    void_status: row.void_status,
                })
            })
            .collect()
    }

    /// Extends the leases of the claims still held (by their tokens) to `lease` from now, on
    /// the database's clock (`ids` and `tokens` of the same claims). Returns the tokens still
    /// held: a missing one was lost.
    pub async fn renew_leases(
        &self,
        ids: &[String],
        tokens: &[Uuid],
        lease: std::time::Duration,
    ) -> Result<Vec<Uuid>, sqlx::Error> {
        sqlx::query_scalar!(
            r#"UPDATE cancellations
                  SET lease_expires_at = clock_timestamp() + make_interval(secs => $3)
                WHERE payment_request_id = ANY($1) AND lease_token = ANY($2)
            RETURNING lease_token AS "lease_token!""#,
            ids,
            tokens,
            interval_seconds(lease),
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Records the outcomes of a batch in one statement. Outcomes whose lease was lost (it
    /// expired and another worker claimed the row) are dropped; their ids are not returned.
    /// A nudge that arrived while the row was leased makes its next attempt due at once.
    pub async fn complete(
        &self,
        now: DateTime<Utc>,
        outcomes: &[WorkOutcome],
    ) -> Result<Vec<String>, sqlx::Error> {
        let n = outcomes.len();
        let mut ids = Vec::with_capacity(n);
        let mut tokens = Vec::with_capacity(n);
        let mut from = Vec::with_capacity(n);
        let mut to = Vec::with_capacity(n);
        let mut retry_in = Vec::with_capacity(n);
        let mut errors = Vec::with_capacity(n);
        let mut refund_status = Vec::with_capacity(n);
        let mut void_status = Vec::with_capacity(n);
        let mut references = Vec::with_capacity(n);
        let mut found_payment_ids = Vec::with_capacity(n);
        let mut found_amounts = Vec::with_capacity(n);
        let mut found_currencies = Vec::with_capacity(n);
        let mut found_statuses = Vec::with_capacity(n);
        let mut found_created = Vec::with_capacity(n);
        let mut found_days = Vec::with_capacity(n);
        let mut details = Vec::with_capacity(n);
        let mut refunded_values = Vec::with_capacity(n);
        let mut refunded_currencies = Vec::with_capacity(n);
        let mut after_capture_values = Vec::with_capacity(n);
        let mut after_capture_currencies = Vec::with_capacity(n);
        for o in outcomes {
            refunded_values.push(o.refunded.map(|m| m.minor_units));
            refunded_currencies.push(o.refunded.map(|m| m.currency.code().to_owned()));
            after_capture_values.push(o.refund_after_capture.map(|m| m.minor_units));
            after_capture_currencies
                .push(o.refund_after_capture.map(|m| m.currency.code().to_owned()));
            ids.push(o.payment_request_id.clone());
            tokens.push(o.lease_token);
            from.push(o.from.as_str().to_owned());
            to.push(o.to.as_str().to_owned());
            retry_in.push(o.retry_in.map(interval_seconds));
            errors.push(o.last_error.clone());
            refund_status.push(o.refund_status.map(str::to_owned));
            void_status.push(o.void_status.map(str::to_owned));
            references.push(o.wallet_reference.clone());
            let found = o.found.as_ref();
            found_payment_ids.push(found.map(|f| f.payment_id.clone()));
            found_amounts.push(found.map(|f| f.amount.minor_units));
            found_currencies.push(found.map(|f| f.amount.currency.code().to_owned()));
            found_statuses.push(found.map(|f| f.status.to_owned()));
            found_created.push(found.map(|f| f.created_at));
            found_days.push(found.map(|f| f.settlement_date));
            details.push(o.detail.to_string());
        }
        let done = sqlx::query_scalar!(
            r#"WITH u AS (
                 SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::text[],
                                      $5::float8[], $6::text[], $7::text[], $8::text[],
                                      $9::text[], $10::int8[], $11::text[], $12::text[],
                                      $13::timestamptz[], $14::date[], $15::text[], $17::text[],
                                      $18::int8[], $19::text[], $20::int8[], $21::text[])
                   AS u(id, token, from_state, to_state, retry_in, last_error, refund_status,
                        reference, found_payment_id, found_amount, found_currency, found_status,
                        found_created_at, found_day, detail, void_status, refunded_value,
                        refunded_currency, after_capture_value, after_capture_currency)),
               done AS (
                 UPDATE cancellations c
                    -- A nudge that waited while the row was leased is honoured whatever the
                    -- attempt found: a close that ends nothing_to_refund reopens the row, as the
                    -- same nudge a moment later would. Due times on the database's clock.
                    SET state = CASE WHEN c.nudged_at IS NOT NULL AND u.to_state = 'nothing_to_refund'
                                     THEN 'awaiting_outcome' ELSE u.to_state END,
                        next_attempt_at = CASE WHEN c.nudged_at IS NOT NULL AND u.to_state = 'nothing_to_refund'
                                               THEN now()
                                               WHEN c.nudged_at IS NOT NULL AND u.retry_in IS NOT NULL
                                               THEN now()
                                               ELSE now() + make_interval(secs => u.retry_in) END,
                        close_attempts = CASE WHEN c.nudged_at IS NOT NULL AND u.to_state = 'nothing_to_refund'
                                              THEN 0 ELSE c.close_attempts END,
                        last_error = u.last_error, nudged_at = NULL,
                        -- A captured hold is refunded afresh: the void's attempts are not the
                        -- refund's.
                        attempts = CASE WHEN u.from_state = 'void_pending' AND u.to_state = 'refund_pending'
                                        THEN 0 ELSE c.attempts END,
                        -- The database's clock: a bulk requeue selects manual_review rows by
                        -- it, and must not miss those an instance with a clock ahead wrote.
                        lease_expires_at = NULL, lease_token = NULL, updated_at = now(),
                        payment_id = coalesce(u.found_payment_id, c.payment_id),
                        amount_value = coalesce(u.found_amount, c.amount_value),
                        currency = coalesce(u.found_currency, c.currency),
                        -- A captured hold is a charge: the record says SUCCESS beside its refund.
                        payment_status = CASE WHEN u.void_status = 'captured' AND u.to_state = 'refund_pending'
                                              THEN 'SUCCESS' ELSE coalesce(u.found_status, c.payment_status) END,
                        -- A T learnt from the wallet is kept (DESIGN.md, "Settlement").
                        payment_created_at = coalesce(c.payment_created_at, u.found_created_at),
                        settlement_date = CASE WHEN c.payment_created_at IS NULL
                                               THEN coalesce(u.found_day, c.settlement_date)
                                               ELSE c.settlement_date END
                   FROM u
                  WHERE c.payment_request_id = u.id AND c.lease_token = u.token
                 RETURNING c.payment_request_id, c.state),
               refund_update AS (
                 UPDATE refunds r
                    SET status = u.refund_status,
                        -- What moved, once: a refund already succeeded keeps what it recorded.
                        refunded_value = CASE WHEN r.status = 'succeeded' THEN r.refunded_value
                                              ELSE u.refunded_value END,
                        refunded_currency = CASE WHEN r.status = 'succeeded' THEN r.refunded_currency
                                                 ELSE u.refunded_currency END,
                        wallet_reference = coalesce(u.reference, r.wallet_reference),
                        completed_at = CASE WHEN u.refund_status IN ('succeeded', 'failed')
                                            THEN $16 ELSE r.completed_at END
                   FROM u JOIN done ON done.payment_request_id = u.id
                  WHERE r.payment_request_id = u.id AND u.refund_status IS NOT NULL),
               void_update AS (
                 UPDATE voids v
                    SET status = u.void_status,
                        wallet_reference = coalesce(u.reference, v.wallet_reference),
                        completed_at = CASE WHEN u.void_status IN ('voided', 'failed', 'captured')
                                            THEN $16 ELSE v.completed_at END
                   FROM u JOIN done ON done.payment_request_id = u.id
                  WHERE v.payment_request_id = u.id AND u.void_status IS NOT NULL),
               refund_insert AS (
                 INSERT INTO refunds (payment_request_id, payment_id, amount_value, currency, created_at)
                 SELECT u.id, u.found_payment_id, u.found_amount, u.found_currency, $16
                   FROM u JOIN done ON done.payment_request_id = u.id
                  WHERE u.found_payment_id IS NOT NULL AND u.to_state = 'refund_pending'
                 UNION ALL
                 -- The hold was captured: the refund of what the user was charged (the lookup's
                 -- captured amount minus what was refunded of it already).
                 SELECT v.payment_request_id, v.payment_id, u.after_capture_value,
                        u.after_capture_currency, $16
                   FROM u JOIN done ON done.payment_request_id = u.id
                   JOIN voids v ON v.payment_request_id = u.id
                  WHERE u.void_status = 'captured' AND u.to_state = 'refund_pending'
                    AND u.after_capture_value IS NOT NULL
                 ON CONFLICT (payment_request_id) DO NOTHING),
               void_insert AS (
                 INSERT INTO voids (payment_request_id, payment_id, amount_value, currency, created_at)
                 SELECT u.id, u.found_payment_id, u.found_amount, u.found_currency, $16
                   FROM u JOIN done ON done.payment_request_id = u.id
                  WHERE u.found_payment_id IS NOT NULL AND u.to_state = 'void_pending'
                 ON CONFLICT (payment_request_id) DO NOTHING),
               audit AS (
                 INSERT INTO audit_events (payment_request_id, occurred_at, event, from_state, to_state, detail)
                 SELECT u.id, $16, 'wallet_call', u.from_state, done.state,
                        u.detail::jsonb || CASE WHEN done.state <> u.to_state
                                                THEN jsonb_build_object('reopenedByNudge', true)
                                                ELSE '{}'::jsonb END
                   FROM u JOIN done ON done.payment_request_id = u.id)
               SELECT payment_request_id AS "payment_request_id!" FROM done"#,
            &ids,
            &tokens,
            &from,
            &to,
            &retry_in as &[Option<f64>],
            &errors as &[Option<String>],
            &refund_status as &[Option<String>],
            &references as &[Option<String>],
            &found_payment_ids as &[Option<String>],
            &found_amounts as &[Option<i64>],
            &found_currencies as &[Option<String>],
            &found_statuses as &[Option<String>],
            &found_created as &[Option<DateTime<Utc>>],
            &found_days as &[Option<NaiveDate>],
            &details,
            now,
            &void_status as &[Option<String>],
            &refunded_values as &[Option<i64>],
            &refunded_currencies as &[Option<String>],
            &after_capture_values as &[Option<i64>],
            &after_capture_currencies as &[Option<String>],
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(done)
    }

    /// The last resort for one claimed row whose outcome could not be written: it goes to
    /// `manual_review` with the reason, alone, so the rest of its batch is not held back.
    /// Nothing else the wallet said is written (it may be what the database refused), except,
    /// with `keep_moved`, that money moved: a refund the wallet confirmed is recorded
    /// `succeeded` with what it refunded, a void `voided` (or `captured`), so the row is never
    /// ordered again. Without `keep_moved` (when even that was refused) only the row moves.
    pub async fn set_aside(
        &self,
        now: DateTime<Utc>,
        outcome: &WorkOutcome,
        reason: &str,
        keep_moved: bool,
    ) -> Result<bool, sqlx::Error> {
        let refund_final = outcome
            .refund_status
            .filter(|s| keep_moved && *s == "succeeded");
        let refunded = outcome.refunded.filter(|_| refund_final.is_some());
        let void_final = outcome
            .void_status
            .filter(|s| keep_moved && matches!(*s, "voided" | "captured"));
        let updated = sqlx::query!(
            r#"WITH done AS (
                 UPDATE cancellations
                    SET state = 'manual_review', next_attempt_at = NULL, last_error = $4,
                        lease_expires_at = NULL, lease_token = NULL, nudged_at = NULL,
                        updated_at = now()
                  WHERE payment_request_id = $2 AND lease_token = $3
                 RETURNING payment_request_id),
               refund_moved AS (
                 UPDATE refunds r
                    SET status = 'succeeded', completed_at = $1,
                        refunded_value = coalesce($7, r.amount_value),
                        refunded_currency = coalesce($8, r.currency)
                   FROM done
                  WHERE r.payment_request_id = done.payment_request_id AND $6::text IS NOT NULL
                    AND r.status <> 'succeeded'),
               void_moved AS (
                 UPDATE voids v SET status = $9, completed_at = $1
                   FROM done
                  WHERE v.payment_request_id = done.payment_request_id AND $9::text IS NOT NULL
                    AND v.status NOT IN ('voided', 'captured'))
               INSERT INTO audit_events (payment_request_id, occurred_at, event, from_state, to_state, detail)
               SELECT payment_request_id, $1, 'set_aside', $5, 'manual_review',
                      jsonb_build_object('reason', $4::text, 'refundStatus', $6::text,
                                         'voidStatus', $9::text)
                 FROM done"#,
            now,
            outcome.payment_request_id,
            outcome.lease_token,
            reason,
            outcome.from.as_str(),
            refund_final,
            refunded.map(|m| m.minor_units),
            refunded.map(|m| m.currency.code()),
            void_final,
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// The MPP saw this payment change (a late success, say): work on it now. A row with
    /// money work becomes due at once (if a worker holds it, the nudge is kept and honoured when
    /// that worker records its outcome); a `nothing_to_refund` row is reopened, since a payment
    /// that failed or was closed may still report a late success, and the engine asks the
    /// wallet to close it again (a real success is then refunded, anything else ends as before).
    pub async fn nudge(
        &self,
        payment_request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Nudged, sqlx::Error> {
        self.nudge_by(payment_request_id, now, "internal-api").await
    }

    /// [`Store::nudge`], its audit event naming who asked (`by`: the console's role, say).
    pub async fn nudge_by(
        &self,
        payment_request_id: &str,
        now: DateTime<Utc>,
        by: &str,
    ) -> Result<Nudged, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query!(
            r#"SELECT state, next_attempt_at IS NOT NULL AS "has_work!",
                      coalesce(lease_expires_at > clock_timestamp(), false) AS "leased!"
                 FROM cancellations WHERE payment_request_id = $1 FOR UPDATE"#,
            payment_request_id,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Nudged::NotFound);
        };
        let state: CancellationState = row
            .state
            .parse()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let nudged = match (state, row.has_work, row.leased) {
            (CancellationState::NothingToRefund, _, _) => Nudged::Reopened,
            (_, true, true) => Nudged::AfterCurrentAttempt,
            (_, true, false) => Nudged::DueNow,
            (state, false, _) => return Ok(Nudged::NothingToDo(state)),
        };
        sqlx::query!(
            r#"UPDATE cancellations
                  SET state = CASE WHEN state = 'nothing_to_refund' THEN 'awaiting_outcome' ELSE state END,
                      close_attempts = CASE WHEN state = 'nothing_to_refund' THEN 0 ELSE close_attempts END,
                      next_attempt_at = now(), nudged_at = $2, updated_at = $2
                WHERE payment_request_id = $1"#,
            payment_request_id,
            now,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"INSERT INTO audit_events (payment_request_id, occurred_at, event, from_state, to_state, detail)
               VALUES ($1, $2, 'nudged', $3, $4, jsonb_build_object('action', $5::text, 'by', $6::text))"#,
            payment_request_id,
            now,
            state.as_str(),
            match nudged {
                Nudged::Reopened => CancellationState::AwaitingOutcome.as_str(),
                _ => state.as_str(),
            },
            nudged.action(),
            by,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(nudged)
    }

    /// The accepted cancellations of a settlement day (T): what clearing must exclude. Those
    /// of day T, and, marked provisional, those whose T is not known yet and may be T: their
    /// cancel first arrived on T+1 before the cut-off (`window` says when that is), so the
    /// payment may have been created on T (see [`crate::domain::CancellationWindow::possible_days`]).
    pub async fn settlement_report(
        &self,
        day: NaiveDate,
        window: &crate::domain::CancellationWindow,
    ) -> Result<Vec<ReportLine>, sqlx::Error> {
        let next_day = day.succ_opt().unwrap_or(day);
        let closes = window.closes_on(day);
        sqlx::query_as!(
            ReportLine,
            r#"SELECT payment_request_id, payment_id, acquirer_id, amount_value, currency, state,
                      $1::date AS "settlement_date!", requested_at AS cancelled_at,
                      payment_created_at IS NULL AS "provisional!"
                 FROM cancellations
                WHERE settlement_date = ANY(ARRAY[$1::date, $2::date]) AND state <> 'rejected'
                  AND (settlement_date = $1
                       OR (payment_created_at IS NULL AND requested_at < $3))
                ORDER BY requested_at, payment_request_id"#,
            day,
            next_day,
            closes,
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The audit trail of one cancellation, oldest first: (event, from, to, detail).
    pub async fn audit_trail(
        &self,
        payment_request_id: &str,
    ) -> Result<Vec<(String, Option<String>, Option<String>, serde_json::Value)>, sqlx::Error> {
        Ok(self
            .audit_events(payment_request_id)
            .await?
            .into_iter()
            .map(|e| (e.event, e.from_state, e.to_state, e.detail))
            .collect())
    }
}

/// The refund engine's backlog, for metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueDepth {
    pub due: i64,
    pub oldest_due_age_seconds: f64,
    pub manual_review: i64,
    /// Since the arrival (`requested_at`) of the oldest cancellation with money work still
    /// pending (due now or later), in seconds; 0 when there is none.
    pub oldest_open_age_seconds: f64,
    /// Every state that is not final, with its number of cancellations (zeros included).
    pub open_by_state: [(CancellationState, i64); 4],
}

impl Store {
    /// The backlog, due times read on the database's clock (the one they are written on).
    pub async fn queue_depth(&self) -> Result<QueueDepth, sqlx::Error> {
        let row = sqlx::query!(
            r#"SELECT count(*) FILTER (WHERE next_attempt_at <= now()) AS "due!",
                      coalesce(extract(epoch FROM now() - min(next_attempt_at)
                                FILTER (WHERE next_attempt_at <= now()))::float8, 0) AS "oldest!",
                      count(*) FILTER (WHERE state = 'manual_review') AS "manual_review!",
                      count(*) FILTER (WHERE state = 'refund_pending') AS "refund_pending!",
                      count(*) FILTER (WHERE state = 'void_pending') AS "void_pending!",
                      count(*) FILTER (WHERE state = 'awaiting_outcome') AS "awaiting_outcome!",
                      coalesce(extract(epoch FROM now() - min(requested_at)
                                FILTER (WHERE next_attempt_at IS NOT NULL))::float8, 0)
                          AS "oldest_open!"
                 FROM cancellations
                WHERE next_attempt_at IS NOT NULL OR state = 'manual_review'"#,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueDepth {
            due: row.due,
            oldest_due_age_seconds: row.oldest,
            manual_review: row.manual_review,
            oldest_open_age_seconds: row.oldest_open,
            open_by_state: [
                (CancellationState::RefundPending, row.refund_pending),
                (CancellationState::VoidPending, row.void_pending),
                (CancellationState::AwaitingOutcome, row.awaiting_outcome),
                (CancellationState::ManualReview, row.manual_review),
            ],
        })
    }

    /// Whether every migration this build knows is applied (readiness).
    pub async fn migrations_current(&self) -> Result<bool, sqlx::Error> {
        let applied: Vec<i64> = sqlx::query_scalar!(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version"
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(super::MIGRATOR
            .iter()
            .all(|m| applied.binary_search(&m.version).is_ok()))
    }
}

/// The longest delay written into a PostgreSQL interval: far beyond any backoff or lease worth
/// configuring, far within what an interval (and `timestamptz` arithmetic) holds, so no delay
/// from a setting or a library user's [`crate::engine::EngineConfig`] can overflow there.
pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

/// `delay` in seconds for `make_interval(secs => ...)`, capped at [`MAX_DELAY`].
fn interval_seconds(delay: std::time::Duration) -> f64 {
    delay.min(MAX_DELAY).as_secs_f64()
}
