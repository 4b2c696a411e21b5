//! What one wallet call means for a cancellation: pure, from (state, attempt, wallet answer) to
//! the next state. The engine's I/O lives in `mod.rs`; every rule about money is here.

use crate::domain::{Backoff, CancellationState, Money};
use crate::wallet::{CloseOutcome, RefundOutcome, WalletError};
use std::time::Duration;

/// The state a step leads to, and what to record with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub to: CancellationState,
    /// When to look again (set exactly when `to` still has money work).
    pub retry_in: Option<Duration>,
    /// The refund row's new status, when there is one to update.
    pub refund_status: Option<&'static str>,
    /// Why the last attempt did not finish, for operators.
    pub error: Option<String>,
    /// The wallet's outcome in one word, for the audit log.
    pub outcome: &'static str,
}

/// Retry limits and pacing.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: i32,
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// Try again later, unless the attempts are used up.
    fn again(
        &self,
        from: CancellationState,
        attempt: i32,
        jitter: f64,
        outcome: &'static str,
        error: Option<String>,
        refund_status: Option<&'static str>,
    ) -> Step {
        if attempt >= self.max_attempts {
            return Step {
                to: CancellationState::ManualReview,
                retry_in: None,
                refund_status,
                error: Some(format!(
                    "gave up after {attempt} attempts: {}",
                    error.as_deref().unwrap_or(outcome)
                )),
                outcome,
            };
        }
        Step {
            to: from,
            retry_in: Some(self.backoff.delay(attempt, jitter)),
            refund_status,
            error,
            outcome,
        }
    }
}

fn done(to: CancellationState, refund_status: Option<&'static str>, outcome: &'static str) -> Step {
    Step {
        to,
        retry_in: None,
        refund_status,
        error: None,
        outcome,
    }
}

/// After a `refund` call for a `refund_pending` cancellation owed `owed`.
pub fn after_refund(
    policy: &RetryPolicy,
    attempt: i32,
    jitter: f64,
    owed: Money,
    answer: Result<RefundOutcome, WalletError>,
) -> Step {
    use CancellationState::{ManualReview, RefundPending, Refunded};
    match answer {
        Ok(RefundOutcome::Succeeded { amount, .. }) => match amount {
            Some(paid) if paid != owed => Step {
                to: ManualReview,
                retry_in: None,
                refund_status: Some("failed"),
                error: Some(format!(
                    "the wallet refunded {paid}, the cancellation owes {owed}"
                )),
                outcome: "amount_mismatch",
            },
            _ => done(Refunded, Some("succeeded"), "succeeded"),
        },
        Ok(RefundOutcome::Pending) => policy.again(
            RefundPending,
            attempt,
            jitter,
            "pending",
            None,
            Some("pending"),
        ),
        Ok(RefundOutcome::Failed { reason }) => Step {
            to: ManualReview,
            retry_in: None,
            refund_status: Some("failed"),
            error: Some(format!("the wallet refused the refund: {reason}")),
            outcome: "failed",
        },
        Err(e) => policy.again(
            RefundPending,
            attempt,
            jitter,
            "error",
            Some(e.to_string()),
            None,
        ),
    }
}

/// After a `close` call for an `awaiting_outcome` cancellation. `AlreadySucceeded` leads to
/// `refund_pending`: the caller must have the payment's amount to queue the refund.
pub fn after_close(
    policy: &RetryPolicy,
    attempt: i32,
    jitter: f64,
    answer: Result<CloseOutcome, WalletError>,
) -> Step {
    use CancellationState::{AwaitingOutcome, NothingToRefund, RefundPending};
    match answer {
        Ok(CloseOutcome::Closed) => done(NothingToRefund, None, "closed"),
        Ok(CloseOutcome::AlreadyFailed) => done(NothingToRefund, None, "already_failed"),
        Ok(CloseOutcome::AlreadySucceeded) => Step {
            to: RefundPending,
            retry_in: Some(Duration::ZERO),
            refund_status: None,
            error: None,
            outcome: "already_succeeded",
        },
        Ok(CloseOutcome::Pending) => {
            policy.again(AwaitingOutcome, attempt, jitter, "pending", None, None)
        }
        Err(e) => policy.again(
            AwaitingOutcome,
            attempt,
            jitter,
            "error",
            Some(e.to_string()),
            None,
        ),
    }
}

/// A close that found a success, but the payment could not be read to queue its refund.
pub fn lookup_failed(policy: &RetryPolicy, attempt: i32, jitter: f64, error: String) -> Step {
    policy.again(
        CancellationState::AwaitingOutcome,
        attempt,
        jitter,
        "error",
        Some(error),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;
    use CancellationState::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        backoff: Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        },
    };

    fn jpy(v: i64) -> Money {
        Money::new(v, Currency::parse("JPY").unwrap()).unwrap()
    }

    fn refund(answer: Result<RefundOutcome, WalletError>, attempt: i32) -> Step {
        after_refund(&POLICY, attempt, 0.5, jpy(100), answer)
    }

    #[test]
    fn a_refund_success_for_the_full_amount_is_terminal() {
        for amount in [Some(jpy(100)), None] {
            let step = refund(
                Ok(RefundOutcome::Succeeded {
                    amount,
                    reference: None,
                }),
                1,
            );
            assert_eq!((step.to, step.retry_in), (Refunded, None));
            assert_eq!(step.refund_status, Some("succeeded"));
        }
    }

    #[test]
    fn another_amount_goes_to_manual_review() {
        let step = refund(
            Ok(RefundOutcome::Succeeded {
                amount: Some(jpy(99)),
                reference: None,
            }),
            1,
        );
        assert_eq!(step.to, ManualReview);
        assert!(step.error.unwrap().contains("99 JPY"));
    }

    #[test]
    fn errors_and_pending_retry_until_the_attempts_are_used_up() {
        let error = || Err(WalletError::Timeout(100));
        let first = refund(error(), 1);
        assert_eq!(
            (first.to, first.retry_in),
            (RefundPending, Some(Duration::from_secs(1)))
        );
        assert_eq!(refund(error(), 2).retry_in, Some(Duration::from_secs(2)));
        let last = refund(error(), 3);
        assert_eq!((last.to, last.retry_in), (ManualReview, None));
        let pending = refund(Ok(RefundOutcome::Pending), 1);
        assert_eq!(
            (pending.to, pending.refund_status),
            (RefundPending, Some("pending"))
        );
        assert_eq!(refund(Ok(RefundOutcome::Pending), 3).to, ManualReview);
    }

    #[test]
    fn a_permanent_failure_goes_to_manual_review_at_once() {
        let step = refund(
            Ok(RefundOutcome::Failed {
                reason: "account closed".into(),
            }),
            1,
        );
        assert_eq!(
            (step.to, step.refund_status),
            (ManualReview, Some("failed"))
        );
    }

    #[test]
    fn closing_decides_whether_money_is_owed() {
        let close = |answer| after_close(&POLICY, 1, 0.5, answer);
        assert_eq!(close(Ok(CloseOutcome::Closed)).to, NothingToRefund);
        assert_eq!(close(Ok(CloseOutcome::AlreadyFailed)).to, NothingToRefund);
        let succeeded = close(Ok(CloseOutcome::AlreadySucceeded));
        assert_eq!(
            (succeeded.to, succeeded.retry_in),
            (RefundPending, Some(Duration::ZERO))
        );
        assert_eq!(close(Ok(CloseOutcome::Pending)).to, AwaitingOutcome);
        assert_eq!(
            close(Err(WalletError::Unavailable("down".into()))).to,
            AwaitingOutcome
        );
        assert_eq!(
            after_close(&POLICY, 3, 0.5, Ok(CloseOutcome::Pending)).to,
            ManualReview
        );
    }

    #[test]
    fn work_is_scheduled_exactly_when_the_state_has_work() {
        let answers: Vec<Step> = vec![
            refund(Ok(RefundOutcome::Pending), 1),
            refund(Ok(RefundOutcome::Pending), 3),
            refund(Err(WalletError::Timeout(1)), 1),
            refund(
                Ok(RefundOutcome::Succeeded {
                    amount: None,
                    reference: None,
                }),
                1,
            ),
            after_close(&POLICY, 1, 0.5, Ok(CloseOutcome::AlreadySucceeded)),
            after_close(&POLICY, 1, 0.5, Ok(CloseOutcome::Closed)),
            lookup_failed(&POLICY, 1, 0.5, "x".into()),
        ];
        for step in answers {
            assert_eq!(
                step.retry_in.is_some(),
                step.to.has_money_work(),
                "{step:?}"
            );
        }
    }
}
