//! The guard API for the MPP's own flows. Once Alipay+ has cancelled a paymentRequestId the MPP's
//! `pay` must refuse it and its `inquiryPayment` must report `F`/`ORDER_IS_CLOSED`, even if the
//! payment had succeeded: ask [`Guard::is_cancelled`] first. The internal HTTP API exposes the
//! same question for MPPs that do not embed the library.

use crate::domain::CancellationState;
use crate::store::{CancellationRecord, Store};

/// Answers "did Alipay+ cancel this paymentRequestId?" from the database, the one place an
/// accepted cancellation lives. Cheap to clone (it holds the pool).
#[derive(Debug, Clone)]
pub struct Guard {
    store: Store,
}

impl Guard {
    /// A guard over the service's database (the MPP's pool works: same tables).
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// True when Alipay+ cancelled this id and the cancellation was accepted (whatever is left
    /// of its refund). A refused cancellation (`rejected`) does not close the payment.
    pub async fn is_cancelled(&self, payment_request_id: &str) -> Result<bool, sqlx::Error> {
        Ok(self
            .cancellation(payment_request_id)
            .await?
            .and_then(|c| c.state.parse::<CancellationState>().ok())
            .is_some_and(CancellationState::is_accepted))
    }

    /// The whole record: state, refund, attempts and last error.
    pub async fn cancellation(
        &self,
        payment_request_id: &str,
    ) -> Result<Option<CancellationRecord>, sqlx::Error> {
        self.store.cancellation(payment_request_id).await
    }
}
