//! What the reconciliation of a clearing file asks: which of these ids did we cancel or refuse.

use super::Store;

/// A paymentRequestId of a clearing file that we answered, with our state and its refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileHit {
    pub payment_request_id: String,
    /// `S`: we cancelled it (it must not be settled); `F`: we refused the cancel.
    pub result_status: String,
    pub result_code: String,
    pub state: String,
    pub refund_status: Option<String>,
    pub refund_value: Option<i64>,
    pub refund_currency: Option<String>,
    pub void_status: Option<String>,
}

impl Store {
    /// The stored answers among `ids` (one primary-key probe each, one round trip).
    pub async fn reconcile_lookup(&self, ids: &[String]) -> Result<Vec<ReconcileHit>, sqlx::Error> {
        sqlx::query_as!(
            ReconcileHit,
            r#"SELECT c.payment_request_id AS "payment_request_id!", c.result_status AS "result_status!",
                      c.result_code AS "result_code!", c.state AS "state!",
                      r.status AS "refund_status?", r.amount_value AS "refund_value?",
                      r.currency AS "refund_currency?", v.status AS "void_status?"
                 FROM cancellations c
                 LEFT JOIN refunds r ON r.payment_request_id = c.payment_request_id
                 LEFT JOIN voids v ON v.payment_request_id = c.payment_request_id
                WHERE c.payment_request_id = ANY($1)"#,
            ids,
        )
        .fetch_all(&self.pool)
        .await
    }
}
