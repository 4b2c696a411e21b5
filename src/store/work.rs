//! The refund engine's queue, kept in the `cancellations` rows themselves (River-shaped): a
//! short transaction claims due rows with `FOR UPDATE SKIP LOCKED` and a lease; the outcomes of
//! a batch are written back in one statement, and only by the claim that still holds the lease.

use super::Store;
use crate::domain::{CancellationState, Currency, Money};
use crate::wallet::RefundOrder;
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
    /// What is inconsistent about the stored row, if anything: the engine sends such a row to
    /// manual review instead of failing the whole batch it was claimed with.
    pub problem: Option<String>,
}

/// What a worker learnt about one claimed cancellation.
#[derive(Debug, Clone)]
pub struct WorkOutcome {
    pub payment_request_id: String,
    pub lease_token: Uuid,
    pub from: CancellationState,
    pub to: CancellationState,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// New status of the existing refund row, if it changed.
    pub refund_status: Option<&'static str>,
    pub wallet_reference: Option<String>,
    /// The refund to queue now (a payment found to have succeeded after all).
    pub new_refund: Option<(String, Money)>,
    /// The audit event's detail: the wallet calls made, their outcomes and durations.
    pub detail: serde_json::Value,
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
    pub settlement_date: NaiveDate,
    pub cancelled_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("stored cancellation {0} is inconsistent: {1}")]
    Corrupt(String, String),
}

impl Store {
    /// Claims up to `limit` due cancellations for `lease` and counts the attempt.
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ClaimedWork>, WorkError> {
        let rows = sqlx::query!(
            r#"WITH due AS (
                 SELECT payment_request_id FROM cancellations
                  WHERE next_attempt_at <= $1
                    AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
                  ORDER BY next_attempt_at
                  LIMIT $3
                  FOR UPDATE SKIP LOCKED)
               UPDATE cancellations c
                  SET attempts = c.attempts + 1, lease_expires_at = $2,
                      lease_token = gen_random_uuid(), updated_at = $1
                 FROM due LEFT JOIN refunds r ON r.payment_request_id = due.payment_request_id
                WHERE c.payment_request_id = due.payment_request_id
            RETURNING c.payment_request_id, c.state, c.attempts, c.lease_token AS "lease_token!",
                      r.refund_id AS "refund_id?", r.payment_id AS "refund_payment_id?",
                      r.amount_value AS "refund_amount?", r.currency AS "refund_currency?""#,
            now,
            lease_until,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let corrupt = |why: String| WorkError::Corrupt(row.payment_request_id.clone(), why);
                let state: CancellationState =
                    row.state.parse().map_err(|e| corrupt(format!("{e}")))?;
                let mut problem = None;
                let refund = match (
                    row.refund_id,
                    row.refund_payment_id,
                    row.refund_amount,
                    row.refund_currency,
                ) {
                    (Some(refund_id), Some(payment_id), Some(value), Some(currency)) => {
                        match Currency::parse(&currency).and_then(|c| Money::new(value, c)) {
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
                if state == CancellationState::RefundPending && refund.is_none() {
                    problem.get_or_insert_with(|| "refund_pending without a refund".into());
                }
                Ok(ClaimedWork {
                    payment_request_id: row.payment_request_id.clone(),
                    state,
                    attempt: row.attempts,
                    lease_token: row.lease_token,
                    refund,
                    problem,
                })
            })
            .collect()
    }

    /// Records the outcomes of a batch in one statement. Outcomes whose lease was lost (it
    /// expired and another worker claimed the row) are dropped; their ids are not returned.
    pub async fn complete(
        &self,
        now: DateTime<Utc>,
        outcomes: &[WorkOutcome],
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut ids = Vec::with_capacity(outcomes.len());
        let mut tokens = Vec::with_capacity(outcomes.len());
        let mut from = Vec::with_capacity(outcomes.len());
        let mut to = Vec::with_capacity(outcomes.len());
        let mut next_at = Vec::with_capacity(outcomes.len());
        let mut errors = Vec::with_capacity(outcomes.len());
        let mut refund_status = Vec::with_capacity(outcomes.len());
        let mut references = Vec::with_capacity(outcomes.len());
        let mut new_payment_ids = Vec::with_capacity(outcomes.len());
        let mut new_amounts = Vec::with_capacity(outcomes.len());
        let mut new_currencies = Vec::with_capacity(outcomes.len());
        let mut details = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            ids.push(o.payment_request_id.clone());
            tokens.push(o.lease_token);
            from.push(o.from.as_str().to_owned());
            to.push(o.to.as_str().to_owned());
            next_at.push(o.next_attempt_at);
            errors.push(o.last_error.clone());
            refund_status.push(o.refund_status.map(str::to_owned));
            references.push(o.wallet_reference.clone());
            new_payment_ids.push(o.new_refund.as_ref().map(|(p, _)| p.clone()));
            new_amounts.push(o.new_refund.as_ref().map(|(_, m)| m.minor_units));
            new_currencies.push(
                o.new_refund
                    .as_ref()
                    .map(|(_, m)| m.currency.code().to_owned()),
            );
            details.push(o.detail.to_string());
        }
        let done = sqlx::query_scalar!(
            r#"WITH u AS (
                 SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::text[],
                                      $5::timestamptz[], $6::text[], $7::text[], $8::text[],
                                      $9::text[], $10::int8[], $11::text[], $12::text[])
                   AS u(id, token, from_state, to_state, next_at, last_error, refund_status,
                        reference, new_payment_id, new_amount, new_currency, detail)),
               done AS (
                 UPDATE cancellations c
                    SET state = u.to_state, next_attempt_at = u.next_at, last_error = u.last_error,
                        lease_expires_at = NULL, lease_token = NULL, updated_at = $13,
                        payment_id = coalesce(c.payment_id, u.new_payment_id),
                        amount_value = coalesce(c.amount_value, u.new_amount),
                        currency = coalesce(c.currency, u.new_currency)
                   FROM u
                  WHERE c.payment_request_id = u.id AND c.lease_token = u.token
                 RETURNING c.payment_request_id),
               refund_update AS (
                 UPDATE refunds r
                    SET status = u.refund_status,
                        wallet_reference = coalesce(u.reference, r.wallet_reference),
                        completed_at = CASE WHEN u.refund_status IN ('succeeded', 'failed')
                                            THEN $13 ELSE r.completed_at END
                   FROM u JOIN done ON done.payment_request_id = u.id
                  WHERE r.payment_request_id = u.id AND u.refund_status IS NOT NULL),
               refund_insert AS (
                 INSERT INTO refunds (payment_request_id, payment_id, amount_value, currency, created_at)
                 SELECT u.id, u.new_payment_id, u.new_amount, u.new_currency, $13
                   FROM u JOIN done ON done.payment_request_id = u.id
                  WHERE u.new_payment_id IS NOT NULL
                 ON CONFLICT (payment_request_id) DO NOTHING),
               audit AS (
                 INSERT INTO audit_events (payment_request_id, occurred_at, event, from_state, to_state, detail)
                 SELECT u.id, $13, 'wallet_call', u.from_state, u.to_state, u.detail::jsonb
                   FROM u JOIN done ON done.payment_request_id = u.id)
               SELECT payment_request_id AS "payment_request_id!" FROM done"#,
            &ids,
            &tokens,
            &from,
            &to,
            &next_at as &[Option<DateTime<Utc>>],
            &errors as &[Option<String>],
            &refund_status as &[Option<String>],
            &references as &[Option<String>],
            &new_payment_ids as &[Option<String>],
            &new_amounts as &[Option<i64>],
            &new_currencies as &[Option<String>],
            &details,
            now,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(done)
    }

    /// Makes a cancellation with money work due now (the MPP saw its payment change).
    /// Returns false when there is no work left for it.
    pub async fn nudge(
        &self,
        payment_request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query!(
            r#"UPDATE cancellations SET next_attempt_at = $2
                WHERE payment_request_id = $1 AND next_attempt_at IS NOT NULL"#,
            payment_request_id,
            now,
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Puts a `manual_review` cancellation back to work with fresh attempts. Returns the state
    /// it went back to, or None if it was not in manual review.
    pub async fn requeue(
        &self,
        payment_request_id: &str,
        now: DateTime<Utc>,
        by: &str,
    ) -> Result<Option<CancellationState>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let state = sqlx::query_scalar!(
            r#"UPDATE cancellations c
                  SET state = CASE WHEN EXISTS (SELECT 1 FROM refunds r
                                                 WHERE r.payment_request_id = c.payment_request_id)
                                   THEN 'refund_pending' ELSE 'awaiting_outcome' END,
                      attempts = 0, next_attempt_at = $2, last_error = NULL,
                      lease_expires_at = NULL, lease_token = NULL, updated_at = $2
                WHERE payment_request_id = $1 AND state = 'manual_review'
            RETURNING state"#,
            payment_request_id,
            now,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(state) = state else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query!(
            r#"UPDATE refunds SET status = 'queued', completed_at = NULL
                WHERE payment_request_id = $1 AND status <> 'succeeded'"#,
            payment_request_id,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"INSERT INTO audit_events (payment_request_id, occurred_at, event, from_state, to_state, detail)
               VALUES ($1, $2, 'requeued', 'manual_review', $3, jsonb_build_object('by', $4::text))"#,
            payment_request_id,
            now,
            state,
            by,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(state.parse().ok())
    }

    /// Cancellations in a state, oldest change first.
    pub async fn in_state(
        &self,
        state: CancellationState,
        limit: i64,
    ) -> Result<Vec<super::CancellationRecord>, sqlx::Error> {
        sqlx::query_as!(
            super::CancellationRecord,
            r#"SELECT c.payment_request_id, c.acquirer_id, c.psp_id, c.state, c.result_code,
                      c.result_status, c.payment_id, c.payment_status, c.amount_value, c.currency,
                      c.payment_created_at, c.settlement_date, c.requested_at, c.updated_at,
                      c.attempts, c.next_attempt_at, c.last_error,
                      r.refund_id AS "refund_id?", r.status AS "refund_status?"
                 FROM cancellations c
                 LEFT JOIN refunds r ON r.payment_request_id = c.payment_request_id
                WHERE c.state = $1
                ORDER BY c.updated_at
                LIMIT $2"#,
            state.as_str(),
            limit,
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The accepted cancellations of a settlement day (T): what clearing must exclude.
    pub async fn settlement_report(&self, day: NaiveDate) -> Result<Vec<ReportLine>, sqlx::Error> {
        sqlx::query_as!(
            ReportLine,
            r#"SELECT payment_request_id, payment_id, acquirer_id, amount_value, currency, state,
                      settlement_date, requested_at AS cancelled_at
                 FROM cancellations
                WHERE settlement_date = $1 AND state <> 'rejected'
                ORDER BY requested_at, payment_request_id"#,
            day,
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The audit trail of one cancellation, oldest first: (event, from, to, detail).
    pub async fn audit_trail(
        &self,
        payment_request_id: &str,
    ) -> Result<Vec<(String, Option<String>, Option<String>, serde_json::Value)>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"SELECT event, from_state, to_state, detail::text AS "detail!"
                 FROM audit_events WHERE payment_request_id = $1 ORDER BY id"#,
            payment_request_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let detail = serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null);
                (r.event, r.from_state, r.to_state, detail)
            })
            .collect())
    }
}

/// The refund engine's backlog, for metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueDepth {
    pub due: i64,
    pub oldest_due_age_seconds: f64,
    pub manual_review: i64,
}

impl Store {
    pub async fn queue_depth(&self, now: DateTime<Utc>) -> Result<QueueDepth, sqlx::Error> {
        let row = sqlx::query!(
            r#"SELECT count(*) FILTER (WHERE next_attempt_at <= $1) AS "due!",
                      coalesce(extract(epoch FROM $1 - min(next_attempt_at)
                                FILTER (WHERE next_attempt_at <= $1))::float8, 0) AS "oldest!",
                      count(*) FILTER (WHERE state = 'manual_review') AS "manual_review!"
                 FROM cancellations
                WHERE next_attempt_at IS NOT NULL OR state = 'manual_review'"#,
            now
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueDepth {
            due: row.due,
            oldest_due_age_seconds: row.oldest,
            manual_review: row.manual_review,
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
