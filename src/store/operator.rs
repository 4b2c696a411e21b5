//! The operator's levers on stored cancellations: listing a state page by page, and putting
//! `manual_review` rows back to work, one id or in bulk after an outage.
//!
//! Listing is keyset-paginated over `(requested_at, payment_request_id)`, the columns of the
//! `cancellations_by_state` index after `state`: both never change once a row exists, so a row
//! that stays in the state while an operator pages is seen exactly once, and every page is one
//! index range scan however deep it is (no OFFSET).
//!
//! A bulk requeue works in chunks of [`REQUEUE_CHUNK`] rows, each chunk one statement (one
//! transaction) that moves the rows, resets their refunds and voids and writes one audit event per row.
//! Chunks rather than one transaction: a requeue of a large outage then never holds thousands of
//! row locks (which replays and the engine would queue behind) nor one long write transaction;
//! a failure midway leaves every finished chunk complete and audited, and running the command
//! again picks up the rest (it only ever selects rows still in `manual_review`).

use super::{CancellationRecord, Store};
use crate::domain::CancellationState;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// Rows moved per transaction by a bulk requeue.
pub const REQUEUE_CHUNK: i64 = 500;

/// The most ids a dry run lists (the count is always exact).
pub const DRY_RUN_IDS: i64 = 100;

/// Where a listing page starts: after this row. Opaque to clients (base64url), checked on the way
/// back in, since it comes from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub requested_at: DateTime<Utc>,
    pub payment_request_id: String,
}

impl ListCursor {
    pub fn encode(&self) -> String {
        let raw = format!(
            "{}\n{}",
            self.requested_at.timestamp_micros(),
            self.payment_request_id
        );
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The cursor `encode` made, or None for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        // A real cursor is a 64-character id plus a timestamp; refuse anything much larger
        // before decoding it.
        if text.len() > 512 {
            return None;
        }
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
        let (micros, id) = raw.split_once('\n')?;
        if id.is_empty() || id.chars().any(char::is_control) {
            return None;
        }
        Some(Self {
            requested_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            payment_request_id: id.to_owned(),
        })
    }

    fn of(record: &CancellationRecord) -> Self {
        Self {
            requested_at: record.requested_at,
            payment_request_id: record.payment_request_id.clone(),
        }
    }
}

/// One page of a listing by state.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub cancellations: Vec<CancellationRecord>,
    /// Where the next page starts; None on the last page.
    pub next: Option<ListCursor>,
}

/// Which rows a bulk requeue takes: `manual_review` rows that went there at or after `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequeueSelection {
    pub since: Option<DateTime<Utc>>,
}

impl RequeueSelection {
    /// Only `manual_review` rows can be requeued: every other state either still has its work
    /// queued or is final by design.
    pub fn new(
        state: CancellationState,
        since: Option<DateTime<Utc>>,
    ) -> Result<Self, RequeueRefused> {
        match state {
            CancellationState::ManualReview => Ok(Self { since }),
            other => Err(RequeueRefused(other)),
        }
    }
}

/// A bulk requeue asked for another state than `manual_review`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("only manual_review cancellations can be requeued, not {0}")]
pub struct RequeueRefused(pub CancellationState);

/// What a bulk requeue did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRequeued {
    pub count: u64,
    /// Dry run: the first [`DRY_RUN_IDS`] ids, oldest first. Empty for a real run.
    pub sample: Vec<String>,
}

impl Store {
    /// Puts a `manual_review` cancellation back to work with fresh attempts, due at once on the
    /// database's clock (never the instance's or the operator's host's). Returns the state
    /// it went back to, or None if it was not in manual review.
    ///
    /// Money that moved is never ordered again: a row whose refund the wallet confirmed is
    /// finished as `refunded` (or stays in `manual_review`, returned as such, when the wallet
    /// refunded another amount than owed: that is for a person to settle), one whose void it
    /// confirmed as `voided`, without a wallet call; a void the wallet answered `captured` goes
    /// back to `void_pending` and is not voided again (the engine looks up what was charged).
    pub async fn requeue(
        &self,
        payment_request_id: &str,
        by: &str,
    ) -> Result<Option<CancellationState>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let state = sqlx::query_scalar!(
            r#"WITH target AS (
                 SELECT c.payment_request_id,
                        CASE WHEN r.status = 'succeeded'
                             THEN CASE WHEN coalesce(r.refunded_value, r.amount_value) = r.amount_value
                                        AND coalesce(r.refunded_currency, r.currency) = r.currency
                                       THEN 'refunded' ELSE 'manual_review' END
                             WHEN r.payment_request_id IS NOT NULL THEN 'refund_pending'
                             WHEN v.status = 'voided' THEN 'voided'
                             WHEN v.payment_request_id IS NOT NULL THEN 'void_pending'
                             ELSE 'awaiting_outcome' END AS state
                   FROM cancellations c
                   LEFT JOIN refunds r ON r.payment_request_id = c.payment_request_id
                   LEFT JOIN voids v ON v.payment_request_id = c.payment_request_id
                  WHERE c.payment_request_id = $1 AND c.state = 'manual_review'
                    FOR UPDATE OF c)
               UPDATE cancellations c
                  SET state = t.state,
                      attempts = CASE WHEN t.state = 'manual_review' THEN c.attempts ELSE 0 END,
                      close_attempts = CASE WHEN t.state = 'manual_review' THEN c.close_attempts ELSE 0 END,
                      next_attempt_at = CASE WHEN t.state IN ('refund_pending', 'void_pending', 'awaiting_outcome')
                                             THEN now() END,
                      last_error = CASE WHEN t.state = 'manual_review' THEN c.last_error END,
                      nudged_at = NULL, lease_expires_at = NULL, lease_token = NULL, updated_at = now()
                 FROM target t
                WHERE c.payment_request_id = t.payment_request_id
            RETURNING c.state AS "state!""#,
            payment_request_id,
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
            r#"UPDATE voids SET status = 'queued', completed_at = NULL
                WHERE payment_request_id = $1 AND status IN ('pending', 'failed')"#,
            payment_request_id,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"INSERT INTO audit_events (payment_request_id, occurred_at, event, from_state, to_state, detail)
               VALUES ($1, now(), 'requeued', 'manual_review', $2,
                       jsonb_build_object('by', $3::text, 'walletCall',
                                          $2 IN ('refund_pending', 'void_pending', 'awaiting_outcome')))"#,
            payment_request_id,
            state,
            by,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(state.parse().ok())
    }

    /// Every `manual_review` row `selection` names (that went there by the time the call
    /// started, on the database's clock) back to work, as [`Store::requeue`] does for one, in
    /// chunks of [`REQUEUE_CHUNK`]. With `dry_run` nothing changes: the count and the first ids
    /// are returned.
    pub async fn requeue_bulk(
        &self,
        selection: RequeueSelection,
        by: &str,
        dry_run: bool,
    ) -> Result<BulkRequeued, sqlx::Error> {
        let since = selection.since.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        // One instant for every chunk, read from the database, never from the operator's host.
        let now: DateTime<Utc> = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
            .fetch_one(&self.pool)
            .await?;
        if dry_run {
            let rows = sqlx::query!(
                r#"SELECT c.payment_request_id, count(*) OVER () AS "total!"
                     FROM cancellations c
                     LEFT JOIN refunds r ON r.payment_request_id = c.payment_request_id
                    WHERE c.state = 'manual_review' AND c.updated_at >= $1 AND c.updated_at <= $2
                      AND NOT coalesce(r.status = 'succeeded'
                               AND (coalesce(r.refunded_value, r.amount_value) <> r.amount_value
                                    OR coalesce(r.refunded_currency, r.currency) <> r.currency), false)
                    ORDER BY c.updated_at, c.payment_request_id
                    LIMIT $3"#,
                since,
                now,
                DRY_RUN_IDS,
            )
            .fetch_all(&self.pool)
            .await?;
            return Ok(BulkRequeued {
                count: rows.first().map_or(0, |r| r.total.unsigned_abs()),
                sample: rows.into_iter().map(|r| r.payment_request_id).collect(),
            });
        }
        let mut count = 0u64;
        loop {
            // `updated_at <= now`: a row that goes to manual_review again while this runs (the
            // wallet still failing) is not taken round again, so the loop ends.
            let moved = sqlx::query_scalar!(
                r#"WITH picked AS (
                     -- A refund that succeeded for another amount stays for a person: not picked,
                     -- so it is neither counted nor taken round again.
                     SELECT c.payment_request_id,
                            CASE WHEN r.status = 'succeeded' THEN 'refunded'
                                 WHEN r.payment_request_id IS NOT NULL THEN 'refund_pending'
                                 WHEN v.status = 'voided' THEN 'voided'
                                 WHEN v.payment_request_id IS NOT NULL THEN 'void_pending'
                                 ELSE 'awaiting_outcome' END AS target
                       FROM cancellations c
                       LEFT JOIN refunds r ON r.payment_request_id = c.payment_request_id
                       LEFT JOIN voids v ON v.payment_request_id = c.payment_request_id
                      WHERE c.state = 'manual_review' AND c.updated_at >= $1 AND c.updated_at <= $2
                        AND NOT coalesce(r.status = 'succeeded'
                                 AND (coalesce(r.refunded_value, r.amount_value) <> r.amount_value
                                      OR coalesce(r.refunded_currency, r.currency) <> r.currency), false)
                      ORDER BY c.updated_at, c.payment_request_id
                      LIMIT $3
                      FOR UPDATE OF c),
                   requeued AS (
                     UPDATE cancellations c
                        SET state = picked.target,
                            attempts = 0, close_attempts = 0,
                            next_attempt_at = CASE WHEN picked.target IN ('refund_pending', 'void_pending', 'awaiting_outcome')
                                                   THEN $2::timestamptz END,
                            last_error = NULL, nudged_at = NULL,
                            lease_expires_at = NULL, lease_token = NULL, updated_at = $2
                       FROM picked
                      WHERE c.payment_request_id = picked.payment_request_id
                        AND c.state = 'manual_review'
                     RETURNING c.payment_request_id, c.state),
                   refunds_reset AS (
                     UPDATE refunds r SET status = 'queued', completed_at = NULL
                       FROM requeued
                      WHERE r.payment_request_id = requeued.payment_request_id
                        AND r.status <> 'succeeded'),
                   voids_reset AS (
                     UPDATE voids v SET status = 'queued', completed_at = NULL
                       FROM requeued
                      WHERE v.payment_request_id = requeued.payment_request_id
                        AND v.status IN ('pending', 'failed')),
                   audit AS (
                     INSERT INTO audit_events (payment_request_id, occurred_at, event, from_state, to_state, detail)
                     SELECT payment_request_id, now(), 'requeued', 'manual_review', state,
                            jsonb_build_object('by', $4::text, 'bulk', true)
                       FROM requeued)
                   SELECT count(*) AS "moved!" FROM requeued"#,
                since,
                now,
                REQUEUE_CHUNK,
                by,
            )
            .fetch_one(&self.pool)
            .await?;
            count += moved.unsigned_abs();
            if moved < REQUEUE_CHUNK {
                return Ok(BulkRequeued {
                    count,
                    sample: Vec::new(),
                });
            }
        }
    }

    /// One page of the cancellations in a state, oldest request first, starting after `after`.
    /// One index range scan on `cancellations_by_state`, whatever the page.
    pub async fn in_state(
        &self,
        state: CancellationState,
        after: Option<&ListCursor>,
        limit: i64,
    ) -> Result<ListPage, sqlx::Error> {
        self.in_state_between(state, RequestedBetween::default(), after, limit)
            .await
    }

    /// [`Store::in_state`] for the rows requested in `between` only (the console's time range):
    /// the same single index range scan, bounded on `requested_at` as well.
    pub async fn in_state_between(
        &self,
        state: CancellationState,
        between: RequestedBetween,
        after: Option<&ListCursor>,
        limit: i64,
    ) -> Result<ListPage, sqlx::Error> {
        // The first page starts just before the range (before 1970 without one: no row is
        // there), so every page is the same index condition (an OR with "no cursor" would turn
        // it into a filter). The range's start is the keyset's start too while no cursor is past
        // it: PostgreSQL starts the index scan at the row comparison, so a looser one would scan
        // (and filter out) every row before `from`.
        let (from, before) = between.bounds();
        let (after_at, after_id) = match after {
            Some(c) if c.requested_at >= from => (c.requested_at, c.payment_request_id.as_str()),
            _ => (from - chrono::Duration::microseconds(1), ""),
        };
        let mut cancellations = sqlx::query_as!(
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
                WHERE c.state = $1 AND (c.requested_at, c.payment_request_id) > ($2, $3)
                  AND c.requested_at >= $5 AND c.requested_at < $6
                ORDER BY c.requested_at, c.payment_request_id
                LIMIT $4"#,
            state.as_str(),
            after_at,
            after_id,
            limit + 1,
            from,
            before,
        )
        .fetch_all(&self.pool)
        .await?;
        // One row more than asked says whether another page exists.
        let more = cancellations.len() as i64 > limit;
        cancellations.truncate(usize::try_from(limit).unwrap_or(0));
        let next = more
            .then(|| cancellations.last().map(ListCursor::of))
            .flatten();
        Ok(ListPage {
            cancellations,
            next,
        })
    }

    /// The cancellations whose paymentRequestId or paymentId is exactly `id` (in `state` when
    /// given, requested in `between`), oldest first, at most `limit`: two index lookups (the
    /// primary key and `cancellations_payment_id`).
    pub async fn find(
        &self,
        id: &str,
        state: Option<CancellationState>,
        between: RequestedBetween,
        limit: i64,
    ) -> Result<Vec<CancellationRecord>, sqlx::Error> {
        let (from, before) = between.bounds();
        sqlx::query_as!(
            CancellationRecord,
            r#"SELECT c.payment_request_id AS "payment_request_id!", c.acquirer_id AS "acquirer_id!",
                      c.psp_id AS "psp_id!", c.state AS "state!", c.result_code AS "result_code!",
                      c.result_status AS "result_status!", c.payment_id, c.payment_status,
                      c.amount_value, c.currency, c.payment_created_at,
                      c.settlement_date AS "settlement_date!", c.requested_at AS "requested_at!",
                      c.updated_at AS "updated_at!", c.attempts AS "attempts!",
                      c.close_attempts AS "close_attempts!", c.next_attempt_at, c.last_error,
                      r.refund_id AS "refund_id?", r.status AS "refund_status?",
                      r.amount_value AS "refund_value?",
                      CASE WHEN r.status = 'succeeded' THEN coalesce(r.refunded_value, r.amount_value) END
                        AS "refunded_value?",
                      CASE WHEN r.status = 'succeeded' THEN coalesce(r.refunded_currency, r.currency) END
                        AS "refunded_currency?",
                      v.void_id AS "void_id?", v.status AS "void_status?"
                 FROM (SELECT * FROM cancellations WHERE payment_request_id = $1
                       UNION
                       SELECT * FROM cancellations WHERE payment_id = $1) c
                 LEFT JOIN refunds r ON r.payment_request_id = c.payment_request_id
                 LEFT JOIN voids v ON v.payment_request_id = c.payment_request_id
                WHERE ($2::text IS NULL OR c.state = $2)
                  AND c.requested_at >= $3 AND c.requested_at < $4
                ORDER BY c.requested_at, c.payment_request_id
                LIMIT $5"#,
            id,
            state.map(CancellationState::as_str),
            from,
            before,
            limit,
        )
        .fetch_all(&self.pool)
        .await
    }
}

/// A range of request times, `[from, before)`; either end open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestedBetween {
    pub from: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
}

impl RequestedBetween {
    /// Both ends as instants: an open end is one no cancellation can pass.
    fn bounds(self) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            self.from.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            // 9999-12-31T23:59:59Z: inside PostgreSQL's range, after every cancellation.
            self.before
                .unwrap_or(DateTime::from_timestamp(253_402_300_799, 0).unwrap_or_default()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let cursor = ListCursor {
            requested_at: "2026-11-20T04:00:00.123456Z".parse().unwrap(),
            payment_request_id: "id with\u{e9} spaces/and:colons".to_owned(),
        };
        assert_eq!(ListCursor::decode(&cursor.encode()), Some(cursor));
        for junk in [
            "",
            "!!!",
            "bm90IGEgY3Vyc29y",                 // "not a cursor"
            &URL_SAFE_NO_PAD.encode("12\n"),    // no id
            &URL_SAFE_NO_PAD.encode("x\nid"),   // no time
            &URL_SAFE_NO_PAD.encode("1\nid\0"), // a control character
            &"A".repeat(600),
        ] {
            assert_eq!(ListCursor::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn only_manual_review_is_requeued_in_bulk() {
        assert!(RequeueSelection::new(CancellationState::ManualReview, None).is_ok());
        for state in CancellationState::ALL {
            if state != CancellationState::ManualReview {
                assert_eq!(
                    RequeueSelection::new(state, None),
                    Err(RequeueRefused(state))
                );
            }
        }
    }
}
