//! The life of a cancellation after its answer was sent, as a state machine.
//!
//! ```text
//!   awaiting_outcome --closed/failed--> nothing_to_refund
//!         |
//!         +--succeeded after all--> refund_pending --refund succeeded--> refunded
//!         |                               ^   |
//!         |                               |   +--attempts exhausted / permanent failure--> manual_review
//!         |                        captured meanwhile
//!         |                               |
//!         +--authorized after all--> void_pending --hold released--> voided
//!                                         |
//!                                         +--attempts exhausted / void refused--> manual_review
//!   rejected (window closed, already refunded): the answer was F, nothing to do
//! ```

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancellationState {
    /// Accepted; the full amount must be refunded.
    RefundPending,
    /// Accepted while the payment was in flight or unknown: the wallet must close it first.
    AwaitingOutcome,
    /// Accepted for a card authorization: the hold must be released (`void`), nothing refunded.
    VoidPending,
    /// Accepted; the authorization hold is released. Terminal.
    Voided,
    /// Accepted; the payment never took money. Terminal.
    NothingToRefund,
    /// Accepted; the full amount is back with the user. Terminal.
    Refunded,
    /// Refused (window closed or already refunded). Terminal.
    Rejected,
    /// The engine gave up; a person must look. Terminal until requeued.
    ManualReview,
}

impl CancellationState {
    pub const ALL: [CancellationState; 8] = [
        Self::RefundPending,
        Self::AwaitingOutcome,
        Self::VoidPending,
        Self::Voided,
        Self::NothingToRefund,
        Self::Refunded,
        Self::Rejected,
        Self::ManualReview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefundPending => "refund_pending",
            Self::AwaitingOutcome => "awaiting_outcome",
            Self::VoidPending => "void_pending",
            Self::Voided => "voided",
            Self::NothingToRefund => "nothing_to_refund",
            Self::Refunded => "refunded",
            Self::Rejected => "rejected",
            Self::ManualReview => "manual_review",
        }
    }

    /// Whether the refund engine still has work to do for this state.
    pub fn has_money_work(self) -> bool {
        match self {
            Self::RefundPending | Self::AwaitingOutcome | Self::VoidPending => true,
            Self::NothingToRefund
            | Self::Refunded
            | Self::Voided
            | Self::Rejected
            | Self::ManualReview => false,
        }
    }

    /// Whether the cancellation was accepted (answered `S`). The MPP's own `pay` and
    /// `inquiryPayment` must treat the payment as closed in every accepted state.
    pub fn is_accepted(self) -> bool {
        match self {
            Self::Rejected => false,
            Self::RefundPending
            | Self::AwaitingOutcome
            | Self::VoidPending
            | Self::Voided
            | Self::NothingToRefund
            | Self::Refunded
            | Self::ManualReview => true,
        }
    }
}

impl fmt::Display for CancellationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown cancellation state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for CancellationState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in CancellationState::ALL {
            assert_eq!(state.as_str().parse::<CancellationState>().unwrap(), state);
        }
        assert!("cancelled".parse::<CancellationState>().is_err());
    }

    #[test]
    fn only_pending_states_have_work() {
        let with_work: Vec<_> = CancellationState::ALL
            .into_iter()
            .filter(|s| s.has_money_work())
            .collect();
        assert_eq!(
            with_work,
            [
                CancellationState::RefundPending,
                CancellationState::AwaitingOutcome,
                CancellationState::VoidPending,
            ]
        );
        assert!(!CancellationState::Rejected.is_accepted());
        for state in CancellationState::ALL {
            assert_eq!(
                state.is_accepted(),
                state != CancellationState::Rejected,
                "{state}"
            );
        }
    }
}
