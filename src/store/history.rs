//! A cancellation's history as an operator reads it: every audit event with its time, and the
//! refund or void it owes in full (status, the wallet's reference, when it was made and done).

use super::Store;
use chrono::{DateTime, Utc};

/// One audit event: a transition, a wallet call (with its calls' answers, errors and
/// durations in `detail`), or an operator's action (naming who took it in `detail.by`).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub event: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: serde_json::Value,
}

/// A refund or a void as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversal {
    /// `refund` or `void`.
    pub kind: &'static str,
    /// The id the wallet dedupes on (`refundId`, `voidId`).
    pub id: uuid::Uuid,
    pub payment_id: String,
    pub amount_value: i64,
    pub currency: String,
    pub status: String,
    pub wallet_reference: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Every audit event of one cancellation, oldest first.
    pub async fn audit_events(
        &self,
        payment_request_id: &str,
    ) -> Result<Vec<AuditEvent>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"SELECT id, occurred_at, event, from_state, to_state, detail::text AS "detail!"
                 FROM audit_events WHERE payment_request_id = $1 ORDER BY id"#,
            payment_request_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEvent {
                id: r.id,
                occurred_at: r.occurred_at,
                event: r.event,
                from_state: r.from_state,
                to_state: r.to_state,
                detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    /// The refund and the void of one cancellation (each at most one; both only when a hold was
    /// captured and refunded instead), refund first.
    pub async fn reversals(&self, payment_request_id: &str) -> Result<Vec<Reversal>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"SELECT 'refund' AS "kind!", refund_id AS "id!", payment_id AS "payment_id!",
                      amount_value AS "amount_value!", currency AS "currency!", status AS "status!",
                      wallet_reference, created_at AS "created_at!", completed_at
                 FROM refunds WHERE payment_request_id = $1
               UNION ALL
               SELECT 'void', void_id, payment_id, amount_value, currency, status,
                      wallet_reference, created_at, completed_at
                 FROM voids WHERE payment_request_id = $1"#,
            payment_request_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Reversal {
                kind: if r.kind == "refund" { "refund" } else { "void" },
                id: r.id,
                payment_id: r.payment_id,
                amount_value: r.amount_value,
                currency: r.currency,
                status: r.status,
                wallet_reference: r.wallet_reference,
                created_at: r.created_at,
                completed_at: r.completed_at,
            })
            .collect())
    }
}
