//! The MPP's ledger, as this service sees it: the [`Wallet`] trait and the adapters shipped with
//! it. An MPP with Rust implements the trait; one without deploys the binary with the HTTP
//! adapter. Every operation must be idempotent on the wallet's side: the engine retries.

pub mod demo;
pub mod http;

use crate::domain::{Money, Payment};
use async_trait::async_trait;
use std::sync::Arc;

pub use demo::DemoWallet;
pub use http::{HttpWallet, HttpWalletConfig};

/// What closing an in-flight payment found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The payment was stopped before taking money.
    Closed,
    /// It had already succeeded: the money must be refunded.
    AlreadySucceeded,
    /// It had already been authorized (funds held, not captured): the hold must be released.
    AlreadyAuthorized,
    /// It had already failed: nothing to give back.
    AlreadyFailed,
    /// The wallet cannot tell yet; ask again later.
    Pending,
}

/// One refund, identified by `refund_id`: the same id on every attempt for one cancellation, so
/// the wallet can dedupe retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOrder {
    pub refund_id: uuid::Uuid,
    pub payment_request_id: String,
    pub payment_id: String,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The money is back with the user. `amount` is what the wallet says it refunded.
    Succeeded {
        amount: Option<Money>,
        reference: Option<String>,
    },
    /// Accepted, not finished: ask again later with the same order.
    Pending,
    /// The wallet will never perform this refund; a person must look.
    Failed { reason: String },
}

/// The release of one authorization hold, identified by `void_id`: the same id on every attempt
/// for one cancellation, so the wallet can dedupe retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoidOrder {
    pub void_id: uuid::Uuid,
    pub payment_request_id: String,
    pub payment_id: String,
    /// The amount held: the whole authorization is released.
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoidOutcome {
    /// The hold is released; the user's funds are free again.
    Voided { reference: Option<String> },
    /// Accepted, not finished: ask again later with the same order.
    Pending,
    /// The wallet will never release this hold; a person must look.
    Failed { reason: String },
    /// The hold became a charge meanwhile: the money moved, so the full amount is refunded
    /// instead.
    AlreadyCaptured,
}

/// A fault talking to the wallet. Always retried (the operation is idempotent).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalletError {
    #[error("the wallet did not answer within {0} ms")]
    Timeout(u64),
    #[error("the wallet is unavailable: {0}")]
    Unavailable(String),
    #[error("the wallet answered outside its contract: {0}")]
    BadAnswer(String),
}

/// The MPP's ledger.
#[async_trait]
pub trait Wallet: Send + Sync + 'static {
    /// The payment Alipay+ knows as `payment_request_id`, or `None` if the wallet never saw it.
    async fn payment(&self, payment_request_id: &str) -> Result<Option<Payment>, WalletError>;

    /// Stops a payment that is still in flight, or reports how it ended.
    async fn close(&self, payment_request_id: &str) -> Result<CloseOutcome, WalletError>;

    /// Gives the order's amount back to the user, once per `refund_id`.
    async fn refund(&self, order: &RefundOrder) -> Result<RefundOutcome, WalletError>;

    /// Releases the authorization hold of an `AUTHORIZED` payment, once per `void_id`. A hold
    /// that was captured meanwhile answers [`VoidOutcome::AlreadyCaptured`] (and is then
    /// refunded through [`Wallet::refund`]).
    async fn void(&self, order: &VoidOrder) -> Result<VoidOutcome, WalletError>;
}

#[async_trait]
impl<W: Wallet + ?Sized> Wallet for Arc<W> {
    async fn payment(&self, payment_request_id: &str) -> Result<Option<Payment>, WalletError> {
        (**self).payment(payment_request_id).await
    }
    async fn close(&self, payment_request_id: &str) -> Result<CloseOutcome, WalletError> {
        (**self).close(payment_request_id).await
    }
    async fn refund(&self, order: &RefundOrder) -> Result<RefundOutcome, WalletError> {
        (**self).refund(order).await
    }
    async fn void(&self, order: &VoidOrder) -> Result<VoidOutcome, WalletError> {
        (**self).void(order).await
    }
}
