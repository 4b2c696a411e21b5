//! A wallet kept in PostgreSQL (`demo_payments`, `demo_refunds`), for trying the service locally
//! with `mpp-cancel demo pay`. It behaves like a well-mannered ledger: refunds dedupe on
//! `refund_id`, voids on `void_id`, closing a PROCESSING payment fails it, and a refund is refused
//! (FAILED) unless the payment is SUCCESS, not refunded yet and owes at least the amount ordered,
//! as a real ledger would refuse it. An AUTHORIZED payment
//! (a card authorization) is released by `void` (status VOIDED, reported as FAILED by lookups: it
//! took no money) or captured by `mpp-cancel demo capture` (status SUCCESS), so a void that comes
//! after the capture answers ALREADY_CAPTURED.

use super::{
    CloseOutcome, RefundOrder, RefundOutcome, VoidOrder, VoidOutcome, Wallet, WalletError,
};
use crate::domain::{Currency, Money, Payment, PaymentStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone)]
pub struct DemoWallet {
    pool: PgPool,
}

/// A payment to create in the demo ledger.
#[derive(Debug, Clone)]
pub struct NewDemoPayment {
    pub payment_request_id: String,
    pub status: PaymentStatus,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    pub refunded_minor_units: i64,
}

fn unavailable(e: sqlx::Error) -> WalletError {
    WalletError::Unavailable(format!("demo wallet database: {e}"))
}

impl DemoWallet {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates (or replaces) a demo payment; returns the wallet's paymentId for it.
    pub async fn create_payment(&self, new: &NewDemoPayment) -> Result<String, sqlx::Error> {
        let payment_id = format!("demo-{}", uuid::Uuid::new_v4().simple());
        sqlx::query!(
            r#"INSERT INTO demo_payments
                 (payment_request_id, payment_id, status, amount_value, currency, refunded_value, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (payment_request_id) DO UPDATE
                 SET status = EXCLUDED.status, amount_value = EXCLUDED.amount_value,
                     currency = EXCLUDED.currency, refunded_value = EXCLUDED.refunded_value,
                     created_at = EXCLUDED.created_at
               RETURNING payment_id"#,
            new.payment_request_id,
            payment_id,
            new.status.as_str(),
            new.amount.minor_units,
            new.amount.currency.code(),
            new.refunded_minor_units,
            new.created_at,
        )
        .fetch_one(&self.pool)
        .await
        .map(|row| row.payment_id)
    }

    /// Captures an authorization: the held funds become a charge (status SUCCESS). Returns
    /// false when the payment is not AUTHORIZED (unknown, already captured, released, ...).
    pub async fn capture(&self, payment_request_id: &str) -> Result<bool, sqlx::Error> {
        let captured = sqlx::query!(
            "UPDATE demo_payments SET status = 'SUCCESS' WHERE payment_request_id = $1 AND status = 'AUTHORIZED'",
            payment_request_id
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(captured == 1)
    }

    /// The voids the demo ledger has performed for a payment (their void ids).
    pub async fn voids_of(&self, payment_request_id: &str) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
        sqlx::query_scalar!(
            "SELECT void_id FROM demo_voids WHERE payment_request_id = $1 ORDER BY created_at",
            payment_request_id
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The refunds the demo ledger has performed for a payment, as (refund_id, amount).
    pub async fn refunds_of(
        &self,
        payment_request_id: &str,
    ) -> Result<Vec<(uuid::Uuid, i64)>, sqlx::Error> {
        let rows = sqlx::query!(
            "SELECT refund_id, amount_value FROM demo_refunds WHERE payment_request_id = $1 ORDER BY created_at",
            payment_request_id
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.refund_id, r.amount_value))
            .collect())
    }
}

#[async_trait]
impl Wallet for DemoWallet {
    async fn payment(&self, payment_request_id: &str) -> Result<Option<Payment>, WalletError> {
        let row = sqlx::query!(
            r#"SELECT payment_request_id, payment_id, status, amount_value, currency,
                      refunded_value, created_at
                 FROM demo_payments WHERE payment_request_id = $1"#,
            payment_request_id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let bad = |what: String| WalletError::BadAnswer(format!("demo payment {what}"));
        let currency = Currency::parse(&row.currency).map_err(|e| bad(e.to_string()))?;
        Ok(Some(Payment {
            payment_request_id: row.payment_request_id,
            payment_id: row.payment_id,
            // A released authorization took no money: to a lookup it is a failed payment.
            status: match row.status.as_str() {
                "VOIDED" => PaymentStatus::Failed,
                other => PaymentStatus::parse(other)
                    .ok_or_else(|| bad(format!("status {:?}", row.status)))?,
            },
            amount: Money::new(row.amount_value, currency).map_err(|e| bad(e.to_string()))?,
            created_at: row.created_at,
            refunded_minor_units: row.refunded_value,
        }))
    }

    async fn close(&self, payment_request_id: &str) -> Result<CloseOutcome, WalletError> {
        // Closing fails a payment still in flight; a finished one reports how it ended.
        let row = sqlx::query!(
            r#"WITH closed AS (
                 UPDATE demo_payments SET status = 'FAILED'
                  WHERE payment_request_id = $1 AND status = 'PROCESSING'
                  RETURNING payment_request_id)
               SELECT (SELECT count(*) FROM closed) AS "closed!",
                      (SELECT status FROM demo_payments WHERE payment_request_id = $1) AS status"#,
            payment_request_id
        )
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(match (row.closed, row.status.as_deref()) {
            (1.., _) => CloseOutcome::Closed,
            (_, Some("SUCCESS")) => CloseOutcome::AlreadySucceeded,
            (_, Some("AUTHORIZED")) => CloseOutcome::AlreadyAuthorized,
            (_, Some(_)) => CloseOutcome::AlreadyFailed,
            // Never seen: nothing can arrive any more (the pay flow consults the guard).
            (_, None) => CloseOutcome::Closed,
        })
    }

    async fn refund(&self, order: &RefundOrder) -> Result<RefundOutcome, WalletError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // The payment's row lock serializes refunds (and captures) of one payment.
        let payment = sqlx::query!(
            r#"SELECT status, amount_value, currency, refunded_value
                 FROM demo_payments WHERE payment_request_id = $1 FOR UPDATE"#,
            order.payment_request_id
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let seen = sqlx::query_scalar!(
            "SELECT amount_value FROM demo_refunds WHERE refund_id = $1",
            order.refund_id
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let succeeded = |value: i64| RefundOutcome::Succeeded {
            amount: Money::new(value, order.amount.currency).ok(),
            reference: Some(order.refund_id.to_string()),
        };
        let refused = |reason: String| RefundOutcome::Failed { reason };
        let outcome = match (seen, payment) {
            // A repeat of a refund already performed: the same answer, no second effect.
            (Some(value), _) => succeeded(value),
            (None, None) => refused("no such payment".into()),
            (None, Some(p)) if p.status != "SUCCESS" => {
                refused(format!("the payment is {}, nothing was charged", p.status))
            }
            (None, Some(p)) if p.refunded_value > 0 => refused(format!(
                "the payment was already refunded ({})",
                p.refunded_value
            )),
            (None, Some(p))
                if p.currency != order.amount.currency.code()
                    || order.amount.minor_units > p.amount_value =>
            {
                refused(format!(
                    "the refund ({}) is more than the payment ({} {})",
                    order.amount, p.amount_value, p.currency
                ))
            }
            (None, Some(_)) => {
                sqlx::query!(
                    r#"INSERT INTO demo_refunds (refund_id, payment_request_id, amount_value, currency)
                       VALUES ($1, $2, $3, $4)"#,
                    order.refund_id,
                    order.payment_request_id,
                    order.amount.minor_units,
                    order.amount.currency.code(),
                )
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                sqlx::query!(
                    "UPDATE demo_payments SET refunded_value = refunded_value + $2 WHERE payment_request_id = $1",
                    order.payment_request_id,
                    order.amount.minor_units,
                )
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                succeeded(order.amount.minor_units)
            }
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(outcome)
    }

    async fn void(&self, order: &VoidOrder) -> Result<VoidOutcome, WalletError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // The payment's row lock serializes voids and captures of one authorization.
        let status = sqlx::query_scalar!(
            "SELECT status FROM demo_payments WHERE payment_request_id = $1 FOR UPDATE",
            order.payment_request_id
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let seen = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM demo_voids WHERE void_id = $1"#,
            order.void_id
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        let outcome = match status.as_deref() {
            // A repeat of a void already performed: the same answer, no second effect.
            _ if seen > 0 => VoidOutcome::Voided {
                reference: Some(order.void_id.to_string()),
            },
            Some("AUTHORIZED") => {
                sqlx::query!(
                    "UPDATE demo_payments SET status = 'VOIDED' WHERE payment_request_id = $1",
                    order.payment_request_id
                )
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                sqlx::query!(
                    "INSERT INTO demo_voids (void_id, payment_request_id) VALUES ($1, $2)",
                    order.void_id,
                    order.payment_request_id
                )
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                VoidOutcome::Voided {
                    reference: Some(order.void_id.to_string()),
                }
            }
            Some("SUCCESS") => VoidOutcome::AlreadyCaptured,
            Some("VOIDED") => VoidOutcome::Failed {
                reason: "the authorization was already released by another void".into(),
            },
            Some(other) => VoidOutcome::Failed {
                reason: format!("the payment is {other}, not an authorization"),
            },
            None => VoidOutcome::Failed {
                reason: "no such payment".into(),
            },
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(outcome)
    }
}
