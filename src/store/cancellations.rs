//! The `cancellations` table: the idempotency record, its stored answer and the queued work.

use super::Store;
use crate::domain::{CancellationState, Money};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;

/// A decided cancellation, about to be made durable.
#[derive(Debug, Clone)]
pub struct NewCancellation<'a> {
    pub payment_request_id: &'a str,
    pub acquirer_id: &'a str,
    pub psp_id: &'a str,
    pub state: CancellationState,
    pub result_code: &'static str,
    pub result_status: &'static str,
    pub response_body: &'a [u8],
    pub payment_id: Option<&'a str>,
    pub payment_status: Option<&'static str>,
    pub amount: Option<Money>,
    pub payment_created_at: Option<DateTime<Utc>>,
    pub settlement_date: NaiveDate,
    pub now: DateTime<Utc>,
    /// What the cancellation owes, queued in the same transaction: a refund in
    /// `refund_pending`, the release of an authorization hold (a void) in `void_pending`.
    pub reversal: Option<QueuedReversal<'a>>,
    /// Why the cancellation went straight to `manual_review`, when it did (a value from the
    /// wallet that cannot be stored).
    pub last_error: Option<&'a str>,
}

/// The full amount of a payment, to refund or (an authorization) to release.
#[derive(Debug, Clone)]
pub struct QueuedReversal<'a> {
    pub payment_id: &'a str,
    pub amount: Money,
}

impl NewCancellation<'_> {
    /// The refund to queue: the reversal of a `refund_pending` decision.
    fn refund(&self) -> Option<&QueuedReversal<'_>> {
        self.reversal
            .as_ref()
            .filter(|_| self.state == CancellationState::RefundPending)
    }

    /// The void to queue: the reversal of a `void_pending` decision.
    fn void(&self) -> Option<&QueuedReversal<'_>> {
        self.reversal
            .as_ref()
            .filter(|_| self.state == CancellationState::VoidPending)
    }
}

/// The answer stored for a paymentRequestId, with what it was given for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub acquirer_id: String,
    pub psp_id: String,
    pub result_code: String,
    pub state: String,
    pub response_body: Vec<u8>,
}

/// What [`Store::prior`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    /// The stored answer, when the id was decided.
    pub answer: Option<StoredAnswer>,
    /// The first arrival of an attempt answered `U`, when there was one.
    pub first_arrival: Option<DateTime<Utc>>,
}

/// What [`Store::record`] did.
#[derive(Debug)]
pub enum Recorded {
    /// This call's decision is now durable (and its work queued).
    Inserted,
    /// Another request for the same id got there first; this is its answer.
    Existing(StoredAnswer),
}

/// A cancellation as the guard API and operators see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CancellationRecord {
    pub payment_request_id: String,
    pub acquirer_id: String,
    pub psp_id: String,
    pub state: String,
    pub result_code: String,
    pub result_status: String,
    pub payment_id: Option<String>,
    pub payment_status: Option<String>,
    pub amount_value: Option<i64>,
    pub currency: Option<String>,
    pub payment_created_at: Option<DateTime<Utc>>,
    pub settlement_date: NaiveDate,
    pub requested_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Refund (or void) attempts.
    pub attempts: i32,
    /// Close attempts (asking the wallet to stop a payment in flight), counted apart.
    pub close_attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub refund_id: Option<uuid::Uuid>,
    pub refund_status: Option<String>,
    /// What the refund orders, in minor units of `currency`: the payment's amount, or what the
    /// user was charged when a hold was captured (the captured amount minus what was refunded).
    pub refund_value: Option<i64>,
    /// What the wallet said it refunded (with `refundStatus` succeeded, whatever the amount).
    pub refunded_value: Option<i64>,
    pub refunded_currency: Option<String>,
    /// The release of an authorization hold, for a cancelled AUTHORIZED payment.
    pub void_id: Option<uuid::Uuid>,
    pub void_status: Option<String>,
}

impl Store {
    /// The stored answer for an id, if it was ever answered.
    pub async fn stored_answer(
        &self,
        payment_request_id: &str,
    ) -> Result<Option<StoredAnswer>, sqlx::Error> {
        sqlx::query_as!(
            StoredAnswer,
            r#"SELECT acquirer_id, psp_id, result_code, state, response_body
                 FROM cancellations WHERE payment_request_id = $1"#,
            payment_request_id
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// What is known of an id before it is decided: its stored answer, if it was ever answered,
    /// and otherwise the first arrival of an earlier attempt that could not be decided. One
    /// round trip, so the replay path stays as cheap as before.
    pub async fn prior(&self, payment_request_id: &str) -> Result<Prior, sqlx::Error> {
        let row = sqlx::query!(
            r#"SELECT c.acquirer_id AS "acquirer_id?", c.psp_id AS "psp_id?",
                      c.result_code AS "result_code?", c.state AS "state?",
                      c.response_body AS "response_body?",
                      a.first_arrived_at AS "first_arrived_at?"
                 FROM (SELECT $1::text AS id) k
                 LEFT JOIN cancellations c ON c.payment_request_id = k.id
                 LEFT JOIN cancel_arrivals a ON a.payment_request_id = k.id"#,
            payment_request_id
        )
        .fetch_one(&self.pool)
        .await?;
        let answer = match (
            row.acquirer_id,
            row.psp_id,
            row.result_code,
            row.state,
            row.response_body,
        ) {
            (Some(acquirer_id), Some(psp_id), Some(result_code), Some(state), Some(body)) => {
                Some(StoredAnswer {
                    acquirer_id,
                    psp_id,
                    result_code,
                    state,
                    response_body: body,
                })
            }
            _ => None,
        };
        Ok(Prior {
            answer,
            first_arrival: row.first_arrived_at,
        })
    }

    /// Remembers that a request for an undecided id arrived at `at` (the earliest such arrival
    /// wins). Called when the answer is `U`, so Alipay+'s retry is judged by this arrival.
    pub async fn note_arrival(
        &self,
        payment_request_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            r#"INSERT INTO cancel_arrivals (payment_request_id, first_arrived_at) VALUES ($1, $2)
               ON CONFLICT (payment_request_id) DO UPDATE
                 SET first_arrived_at = least(cancel_arrivals.first_arrived_at, EXCLUDED.first_arrived_at)"#,
            payment_request_id,
            at,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes a decision durable in one statement (one transaction, one round trip): the
    /// cancellation row, the refund or void it owes (at most one per id: primary keys) and the audit
    /// event. If a concurrent request for the same id committed first, the insert waits for it
    /// and this returns its answer instead.
    pub async fn record(&self, new: &NewCancellation<'_>) -> Result<Recorded, sqlx::Error> {
        // Due at once, on the database's clock: `now` is the instance's arrival time, which
        // judges the window but never schedules work.
        let due_now = new.state.has_money_work();
        let detail = json!({
            "resultCode": new.result_code,
            "paymentStatus": new.payment_status,
            "refund": new.refund().map(|r| r.amount.to_string()),
            "void": new.void().map(|r| r.amount.to_string()),
            "error": new.last_error,
        });
        let inserted = sqlx::query_scalar!(
            r#"WITH refunded_by AS (
                 -- One paymentId is refunded at most once: a second paymentRequestId mapping to
                 -- a paymentId already refunded (or owed a refund) is accepted, and its refund
                 -- left to a person (a unique key catches two such decisions at once).
                 SELECT min(payment_request_id) AS other FROM refunds
                  WHERE payment_id = $16 AND payment_request_id <> $1),
               decided AS (
                 INSERT INTO cancellations
                   (payment_request_id, acquirer_id, psp_id, state, result_code, result_status,
                    response_body, payment_id, payment_status, amount_value, currency,
                    payment_created_at, settlement_date, requested_at, updated_at, next_attempt_at,
                    last_error)
                 SELECT $1, $2, $3,
                        CASE WHEN b.other IS NULL THEN $4 ELSE 'manual_review' END,
                        $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14,
                        CASE WHEN b.other IS NULL AND $15::bool THEN now() END,
                        CASE WHEN b.other IS NOT NULL
                             THEN 'paymentId ' || $16 || ' is already refunded for paymentRequestId '
                                  || b.other || '; this cancellation was accepted and is not refunded again'
                             ELSE $23
                        END
                   FROM refunded_by b
                 ON CONFLICT (payment_request_id) DO NOTHING
                 RETURNING payment_request_id, state, last_error),
               refund AS (
                 INSERT INTO refunds (payment_request_id, payment_id, amount_value, currency, created_at)
                 SELECT payment_request_id, $16, $17, $18, $14 FROM decided
                  WHERE $16::text IS NOT NULL AND decided.state = 'refund_pending'),
               void AS (
                 INSERT INTO voids (payment_request_id, payment_id, amount_value, currency, created_at)
                 SELECT payment_request_id, $20, $21, $22, $14 FROM decided
                  WHERE $20::text IS NOT NULL),
               audit AS (
                 INSERT INTO audit_events (payment_request_id, occurred_at, event, to_state, detail)
                 SELECT payment_request_id, $14, 'cancel_decided', state,
                        $19::text::jsonb || CASE WHEN last_error IS NULL THEN '{}'::jsonb
                                                 ELSE jsonb_build_object('error', last_error) END
                   FROM decided)
               SELECT count(*) AS "inserted!" FROM decided"#,
            new.payment_request_id,
            new.acquirer_id,
            new.psp_id,
            new.state.as_str(),
            new.result_code,
            new.result_status,
            new.response_body,
            new.payment_id,
            new.payment_status,
            new.amount.map(|a| a.minor_units),
            new.amount.map(|a| a.currency.code()),
            new.payment_created_at,
            new.settlement_date,
            new.now,
            due_now,
            new.refund().map(|r| r.payment_id),
            new.refund().map(|r| r.amount.minor_units),
            new.refund().map(|r| r.amount.currency.code()),
            detail.to_string(),
            new.void().map(|r| r.payment_id),
            new.void().map(|r| r.amount.minor_units),
            new.void().map(|r| r.amount.currency.code()),
            new.last_error,
        )
        .fetch_one(&self.pool)
        .await?;
        if inserted == 1 {
            return Ok(Recorded::Inserted);
        }
        // The row cannot vanish (rows are never deleted), so a conflict means it is there.
        self.stored_answer(new.payment_request_id)
            .await?
            .map(Recorded::Existing)
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// The cancellation of an id with its refund, if Alipay+ ever cancelled it.
    pub async fn cancellation(
        &self,
        payment_request_id: &str,
    ) -> Result<Option<CancellationRecord>, sqlx::Error> {
        sqlx::query_as!(
            CancellationRecord,
            r#"SELECT c.payment_request_id, c.acquirer_id, c.psp_id, c.state, c.result_code,
                      c.result_status, c.payment_id, c.payment_status, c.amount_value, c.currency,
                      c.payment_created_at, c.settlement_date, c.requested_at, c.updated_at,
                      c.attempts, c.close_attempts, c.next_attempt_at, c.last_error,
                      r.refund_id AS "refund_id?", r.status AS "refund_status?",
                      r.amount_value AS "refund_value?",
                      CASE WHEN r.status = 'succeeded' THEN coalesce(r.refunded_value, r.amount_value) END
                        AS "refunded_value?",
                      CASE WHEN r.status = 'succeeded' THEN coalesce(r.refunded_currency, r.currency) END
                        AS "refunded_currency?",
                      v.void_id AS "void_id?", v.status AS "void_status?"
                 FROM cancellations c
                 LEFT JOIN refunds r ON r.payment_request_id = c.payment_request_id
                 LEFT JOIN voids v ON v.payment_request_id = c.payment_request_id
                WHERE c.payment_request_id = $1"#,
            payment_request_id
        )
        .fetch_optional(&self.pool)
        .await
    }
}
