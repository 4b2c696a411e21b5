//! A payment as the wallet reports it: the facts a cancellation is decided on.

use super::money::Money;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// The money moved from the user to the merchant.
    Success,
    /// Funds held on the user's card or account, not captured (a card authorization): a
    /// cancellation releases the hold (`void`) instead of refunding.
    Authorized,
    Failed,
    Processing,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Authorized => "AUTHORIZED",
            Self::Failed => "FAILED",
            Self::Processing => "PROCESSING",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SUCCESS" => Some(Self::Success),
            "AUTHORIZED" => Some(Self::Authorized),
            "FAILED" => Some(Self::Failed),
            "PROCESSING" => Some(Self::Processing),
            _ => None,
        }
    }
}

/// One payment at the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Alipay+'s id of the payment request (the cancellation's idempotency key).
    pub payment_request_id: String,
    /// The wallet's own id for the payment.
    pub payment_id: String,
    pub status: PaymentStatus,
    /// The full amount: what a cancellation gives back.
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    /// What the wallet has already refunded of it, in the same currency (zero for none).
    pub refunded_minor_units: i64,
}
