//! What the operator console's overview reads, each fast whatever the table's size: no
//! full-table count. Every state is counted up to a cap through `cancellations_by_state` (a
//! bounded index range scan per state); a state with more rows than the cap is shown with the
//! planner's estimate instead (its most-common-value frequency times the table's live size).
//! The oldest due row is the first entry of `cancellations_due`; the refunds and releases done
//! recently are counted from the partial indexes of migrations 20261208200002/3.

use super::Store;
use crate::domain::CancellationState;
use chrono::{DateTime, Utc};

/// How many rows of one state are counted exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateCount {
    pub state: CancellationState,
    /// The exact count, or `cap` when there are at least that many.
    pub counted: i64,
    /// `counted` reached the cap: the real number is `counted` or more.
    pub capped: bool,
}

/// Refunds and releases (voids) the wallet confirmed since two instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReversalsDone {
    pub refunds_last_hour: i64,
    pub refunds_last_day: i64,
    pub voids_last_hour: i64,
    pub voids_last_day: i64,
}

impl Store {
    /// Every state counted up to `cap`, in [`CancellationState::ALL`]'s order: one statement,
    /// one bounded index range scan per state.
    pub async fn state_counts(&self, cap: i64) -> Result<Vec<StateCount>, sqlx::Error> {
        let states: Vec<String> = CancellationState::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        let rows = sqlx::query!(
            r#"SELECT s.state AS "state!",
                      (SELECT count(*) FROM (SELECT 1 FROM cancellations c
                                              WHERE c.state = s.state LIMIT $2) capped) AS "counted!"
                 FROM unnest($1::text[]) WITH ORDINALITY AS s(state, n)
                ORDER BY s.n"#,
            &states,
            cap,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(StateCount {
                    state: r.state.parse().ok()?,
                    counted: r.counted,
                    capped: r.counted >= cap,
                })
            })
            .collect())
    }

    /// The planner's estimate of each state's rows (from the last ANALYZE's most common values,
    /// scaled to the table's current size); empty before the table was ever analyzed.
    pub async fn state_estimates(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"SELECT v.state AS "state!",
                      (v.freq * CASE WHEN c.relpages > 0
                                     THEN c.reltuples / c.relpages
                                          * (pg_relation_size(c.oid)
                                             / current_setting('block_size')::int8)
                                     ELSE greatest(c.reltuples, 0) END)::int8 AS "estimate!"
                 FROM pg_class c
                 JOIN pg_stats s ON s.schemaname = current_schema()
                                AND s.tablename = 'cancellations' AND s.attname = 'state'
                 CROSS JOIN LATERAL unnest(s.most_common_vals::text::text[], s.most_common_freqs)
                            AS v(state, freq)
                WHERE c.oid = 'cancellations'::regclass"#,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.state, r.estimate)).collect())
    }

    /// When the longest-waiting due row became due, if one is due at `now` (the first entry of
    /// the `cancellations_due` index).
    pub async fn oldest_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        sqlx::query_scalar!(
            r#"SELECT min(next_attempt_at) FROM cancellations
                WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= $1"#,
            now,
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Refunds the wallet answered `SUCCEEDED` and voids it answered `VOIDED`, completed in the
    /// last hour and the last day before `now`.
    pub async fn reversals_done(&self, now: DateTime<Utc>) -> Result<ReversalsDone, sqlx::Error> {
        let row = sqlx::query!(
            r#"SELECT
                 (SELECT count(*) FROM refunds WHERE status = 'succeeded'
                     AND completed_at > $1::timestamptz - interval '1 hour' AND completed_at <= $1) AS "refunds_hour!",
                 (SELECT count(*) FROM refunds WHERE status = 'succeeded'
                     AND completed_at > $1::timestamptz - interval '1 day' AND completed_at <= $1) AS "refunds_day!",
                 (SELECT count(*) FROM voids WHERE status = 'voided'
                     AND completed_at > $1::timestamptz - interval '1 hour' AND completed_at <= $1) AS "voids_hour!",
                 (SELECT count(*) FROM voids WHERE status = 'voided'
                     AND completed_at > $1::timestamptz - interval '1 day' AND completed_at <= $1) AS "voids_day!""#,
            now,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(ReversalsDone {
            refunds_last_hour: row.refunds_hour,
            refunds_last_day: row.refunds_day,
            voids_last_hour: row.voids_hour,
            voids_last_day: row.voids_day,
        })
    }
}
