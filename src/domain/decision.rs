//! The decision for a fresh cancellation (DESIGN.md, "Whatever the payment's status").

use super::money::Money;
use super::payment::{Payment, PaymentStatus};
use super::state::CancellationState;
use super::window::CancellationWindow;
use chrono::{DateTime, Utc};

/// Why a cancellation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// `now` is past the cancellable period of the payment.
    WindowClosed,
    /// The wallet has already refunded (part of) the payment: a cancel would reverse it twice.
    AlreadyRefunded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer `S`; `state` says what money work remains. `reversal` is the amount to give back
    /// (a refund, in `refund_pending`) or to release (a void, in `void_pending`), queued with it.
    Accept {
        state: CancellationState,
        reversal: Option<Money>,
    },
    /// Answer `F`; stored as `rejected`.
    Reject(Rejection),
}

impl Decision {
    pub fn state(&self) -> CancellationState {
        match self {
            Decision::Accept { state, .. } => *state,
            Decision::Reject(_) => CancellationState::Rejected,
        }
    }
}

/// Decides a cancellation from what the wallet knows of the payment (`None`: never seen).
pub fn decide(
    payment: Option<&Payment>,
    window: &CancellationWindow,
    now: DateTime<Utc>,
) -> Decision {
    let Some(payment) = payment else {
        // No T for an unknown payment: it is judged on the day of the request, so it is inside
        // the window. A `pay` with this id may still be in flight: wait for its outcome.
        return Decision::Accept {
            state: CancellationState::AwaitingOutcome,
            reversal: None,
        };
    };
    if !window.is_open(payment.created_at, now) {
        return Decision::Reject(Rejection::WindowClosed);
    }
    if payment.refunded_minor_units > 0 {
        return Decision::Reject(Rejection::AlreadyRefunded);
    }
    match payment.status {
        PaymentStatus::Success => Decision::Accept {
            state: CancellationState::RefundPending,
            reversal: Some(payment.amount),
        },
        PaymentStatus::Authorized => Decision::Accept {
            state: CancellationState::VoidPending,
            reversal: Some(payment.amount),
        },
        PaymentStatus::Failed => Decision::Accept {
            state: CancellationState::NothingToRefund,
            reversal: None,
        },
        PaymentStatus::Processing => Decision::Accept {
            state: CancellationState::AwaitingOutcome,
            reversal: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Currency;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn payment(status: PaymentStatus, refunded: i64) -> Payment {
        Payment {
            payment_request_id: "pr-1".into(),
            payment_id: "p-1".into(),
            status,
            amount: Money::new(1000, Currency::parse("JPY").unwrap()).unwrap(),
            created_at: utc("2026-11-20T10:00:00+08:00"),
            refunded_minor_units: refunded,
        }
    }

    const INSIDE: &str = "2026-11-21T00:29:59.999+08:00";
    const AFTER: &str = "2026-11-21T00:30:00+08:00";

    #[test]
    fn every_status_is_accepted_inside_the_window() {
        let w = CancellationWindow::default();
        let now = utc(INSIDE);
        let success = payment(PaymentStatus::Success, 0);
        assert_eq!(
            decide(Some(&success), &w, now),
            Decision::Accept {
                state: CancellationState::RefundPending,
                reversal: Some(success.amount)
            }
        );
        let authorized = payment(PaymentStatus::Authorized, 0);
        assert_eq!(
            decide(Some(&authorized), &w, now),
            Decision::Accept {
                state: CancellationState::VoidPending,
                reversal: Some(authorized.amount)
            }
        );
        assert_eq!(
            decide(Some(&payment(PaymentStatus::Failed, 0)), &w, now).state(),
            CancellationState::NothingToRefund
        );
        assert_eq!(
            decide(Some(&payment(PaymentStatus::Processing, 0)), &w, now).state(),
            CancellationState::AwaitingOutcome
        );
        assert_eq!(
            decide(None, &w, now),
            Decision::Accept {
                state: CancellationState::AwaitingOutcome,
                reversal: None
            }
        );
    }

    #[test]
    fn the_window_is_checked_before_anything_else() {
        let w = CancellationWindow::default();
        for status in [
            PaymentStatus::Success,
            PaymentStatus::Authorized,
            PaymentStatus::Failed,
            PaymentStatus::Processing,
        ] {
            assert_eq!(
                decide(Some(&payment(status, 0)), &w, utc(AFTER)),
                Decision::Reject(Rejection::WindowClosed)
            );
        }
        assert_eq!(
            decide(Some(&payment(PaymentStatus::Success, 1)), &w, utc(AFTER)),
            Decision::Reject(Rejection::WindowClosed)
        );
    }

    #[test]
    fn a_refunded_payment_cannot_be_cancelled() {
        let w = CancellationWindow::default();
        for refunded in [1, 1000] {
            assert_eq!(
                decide(
                    Some(&payment(PaymentStatus::Success, refunded)),
                    &w,
                    utc(INSIDE)
                ),
                Decision::Reject(Rejection::AlreadyRefunded)
            );
        }
    }
}
