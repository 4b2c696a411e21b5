//! What one wallet call means for a cancellation: pure, from (state, attempt, wallet answer) to
//! the next state. The engine's I/O lives in `mod.rs`; every rule about money is here.

use crate::domain::{
    Backoff, CancellationState, CancellationWindow, Money, Payment, PaymentStatus, untrusted,
};
use crate::store::{FoundPayment, KnownPayment};
use crate::wallet::{CloseOutcome, RefundOutcome, VoidOutcome, WalletError};
use std::time::Duration;

/// The state a step leads to, and what to record with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub to: CancellationState,
    /// When to look again (set exactly when `to` still has money work).
    pub retry_in: Option<Duration>,
    /// The refund row's new status, when there is one to update.
    pub refund_status: Option<&'static str>,
    /// The void row's new status, when there is one to update.
    pub void_status: Option<&'static str>,
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
        status: RowStatus,
    ) -> Step {
        if attempt >= self.max_attempts {
            return Step {
                to: CancellationState::ManualReview,
                retry_in: None,
                error: Some(format!(
                    "gave up after {attempt} attempts: {}",
                    error.as_deref().unwrap_or(outcome)
                )),
                outcome,
                ..status.step()
            };
        }
        Step {
            to: from,
            retry_in: Some(self.backoff.delay(attempt, jitter)),
            error,
            outcome,
            ..status.step()
        }
    }
}

/// The new status of the refund or void row a step updates, if any.
#[derive(Debug, Clone, Copy)]
enum RowStatus {
    Unchanged,
    Refund(&'static str),
    Void(&'static str),
}

impl RowStatus {
    /// A step with only this status set (the rest to be filled in).
    fn step(self) -> Step {
        let (refund_status, void_status) = match self {
            Self::Unchanged => (None, None),
            Self::Refund(s) => (Some(s), None),
            Self::Void(s) => (None, Some(s)),
        };
        Step {
            to: CancellationState::ManualReview,
            retry_in: None,
            refund_status,
            void_status,
            error: None,
            outcome: "",
        }
    }
}

fn done(to: CancellationState, status: RowStatus, outcome: &'static str) -> Step {
    Step {
        to,
        outcome,
        ..status.step()
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
                error: Some(format!(
                    "the wallet refunded {paid}, the cancellation owes {owed}"
                )),
                outcome: "amount_mismatch",
                ..RowStatus::Refund("failed").step()
            },
            _ => done(Refunded, RowStatus::Refund("succeeded"), "succeeded"),
        },
        Ok(RefundOutcome::Pending) => policy.again(
            RefundPending,
            attempt,
            jitter,
            "pending",
            None,
            RowStatus::Refund("pending"),
        ),
        Ok(RefundOutcome::Failed { reason }) => Step {
            to: ManualReview,
            error: Some(format!("the wallet refused the refund: {reason}")),
            outcome: "failed",
            ..RowStatus::Refund("failed").step()
        },
        Err(e) => policy.again(
            RefundPending,
            attempt,
            jitter,
            "error",
            Some(e.to_string()),
            RowStatus::Unchanged,
        ),
    }
}

/// After a `void` call for a `void_pending` cancellation. `AlreadyCaptured` leads to
/// `refund_pending`, due at once: the hold became a charge, so the full amount the void was for
/// is refunded instead (the store queues that refund from the void row).
pub fn after_void(
    policy: &RetryPolicy,
    attempt: i32,
    jitter: f64,
    answer: Result<VoidOutcome, WalletError>,
) -> Step {
    use CancellationState::{ManualReview, RefundPending, VoidPending, Voided};
    match answer {
        Ok(VoidOutcome::Voided { .. }) => done(Voided, RowStatus::Void("voided"), "voided"),
        Ok(VoidOutcome::AlreadyCaptured) => Step {
            to: RefundPending,
            retry_in: Some(Duration::ZERO),
            outcome: "already_captured",
            ..RowStatus::Void("captured").step()
        },
        Ok(VoidOutcome::Pending) => policy.again(
            VoidPending,
            attempt,
            jitter,
            "pending",
            None,
            RowStatus::Void("pending"),
        ),
        Ok(VoidOutcome::Failed { reason }) => Step {
            to: ManualReview,
            error: Some(format!("the wallet refused the void: {reason}")),
            outcome: "failed",
            ..RowStatus::Void("failed").step()
        },
        Err(e) => policy.again(
            VoidPending,
            attempt,
            jitter,
            "error",
            Some(e.to_string()),
            RowStatus::Unchanged,
        ),
    }
}

/// After a `close` call for an `awaiting_outcome` cancellation. `AlreadySucceeded` leads to
/// `refund_pending` (`AlreadyAuthorized` to `void_pending`): the caller must look the payment up
/// to queue its refund (void) of the full amount.
pub fn after_close(
    policy: &RetryPolicy,
    attempt: i32,
    jitter: f64,
    answer: Result<CloseOutcome, WalletError>,
) -> Step {
    use CancellationState::{AwaitingOutcome, NothingToRefund, RefundPending, VoidPending};
    match answer {
        Ok(CloseOutcome::Closed) => done(NothingToRefund, RowStatus::Unchanged, "closed"),
        Ok(CloseOutcome::AlreadyFailed) => {
            done(NothingToRefund, RowStatus::Unchanged, "already_failed")
        }
        Ok(CloseOutcome::AlreadySucceeded) => Step {
            to: RefundPending,
            retry_in: Some(Duration::ZERO),
            outcome: "already_succeeded",
            ..RowStatus::Unchanged.step()
        },
        Ok(CloseOutcome::AlreadyAuthorized) => Step {
            to: VoidPending,
            retry_in: Some(Duration::ZERO),
            outcome: "already_authorized",
            ..RowStatus::Unchanged.step()
        },
        Ok(CloseOutcome::Pending) => policy.again(
            AwaitingOutcome,
            attempt,
            jitter,
            "pending",
            None,
            RowStatus::Unchanged,
        ),
        Err(e) => policy.again(
            AwaitingOutcome,
            attempt,
            jitter,
            "error",
            Some(e.to_string()),
            RowStatus::Unchanged,
        ),
    }
}

/// A close that found a success (or an authorization), but the payment could not be read to
/// queue its refund (or void).
pub fn lookup_failed(policy: &RetryPolicy, attempt: i32, jitter: f64, error: String) -> Step {
    policy.again(
        CancellationState::AwaitingOutcome,
        attempt,
        jitter,
        "error",
        Some(error),
        RowStatus::Unchanged,
    )
}

/// An attempt in `from` that failed without an answer: again later, in the same state.
pub fn retry_error(
    policy: &RetryPolicy,
    from: CancellationState,
    attempt: i32,
    jitter: f64,
    error: String,
) -> Step {
    policy.again(
        from,
        attempt,
        jitter,
        "error",
        Some(error),
        RowStatus::Unchanged,
    )
}

/// A step that hands the row to a person, at once.
pub fn manual_review(outcome: &'static str, error: String) -> Step {
    Step {
        to: CancellationState::ManualReview,
        error: Some(error),
        outcome,
        ..RowStatus::Unchanged.step()
    }
}

/// What the lookup after a close that found a success means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundAfterClose {
    /// The payment, checked: queue its refund and correct the stored facts from it.
    Found(FoundPayment),
    /// The wallet could not show it yet: ask again later.
    Retry(String),
    /// The wallet contradicts itself or the cancellation: a person must look; no refund.
    Refuse(String),
}

/// Checks the payment the wallet reports after its close answered "already succeeded" (the
/// lookup must say `expected` SUCCESS) or "already authorized" (AUTHORIZED), as the cancel path
/// checks its lookup: the same paymentRequestId, the status the close reported, nothing refunded
/// yet, a usable paymentId, and, when the payment was known at decision time, the same paymentId
/// and amount. The settlement day T is taken from the payment's own creation time.
pub fn found_after_close(
    payment_request_id: &str,
    expected: PaymentStatus,
    known: Option<&KnownPayment>,
    answer: Option<Payment>,
    window: &CancellationWindow,
) -> FoundAfterClose {
    use FoundAfterClose::{Found, Refuse, Retry};
    let Some(p) = answer else {
        return Retry(format!(
            "the wallet's close says the payment is {}, but its lookup cannot find it",
            expected.as_str()
        ));
    };
    if p.payment_request_id != payment_request_id {
        return Refuse("the wallet's lookup answered about another paymentRequestId".into());
    }
    if p.status != expected {
        return Refuse(format!(
            "the wallet's close said the payment is {}, its lookup says {}",
            expected.as_str(),
            p.status.as_str()
        ));
    }
    if p.refunded_minor_units > 0 {
        return Refuse(format!(
            "the payment succeeded after the cancel, but the wallet already refunded {} of it",
            p.refunded_minor_units
        ));
    }
    if let Err(why) = untrusted::identifier("paymentId", &p.payment_id) {
        return Refuse(why);
    }
    if let Some(known) = known
        && (known.payment_id != p.payment_id || known.amount != p.amount)
    {
        return Refuse(format!(
            "the wallet now reports payment {} for {}, the cancellation recorded {} for {}",
            untrusted::text(&p.payment_id),
            p.amount,
            untrusted::text(&known.payment_id),
            known.amount
        ));
    }
    Found(FoundPayment {
        status: p.status.as_str(),
        settlement_date: window.settlement_day(p.created_at),
        created_at: p.created_at,
        amount: p.amount,
        payment_id: p.payment_id,
    })
}

/// What the settlement rules say of a payment found after the decision (DESIGN.md,
/// "Settlement"): `None` when it may be reversed automatically, else why a person must decide
/// (the step goes to manual review, nothing is refunded or released).
/// - A T learnt from the wallet is kept: a lookup that puts the payment on another day is a
///   contradiction, not a correction (the report for T may already have been read).
/// - A payment unknown when the cancel was decided was judged on the arrival's day: its window
///   is judged again, by its true T, against the cancel's first arrival. If it had already
///   closed then, the cancel came too late for it.
pub fn settlement_refusal(
    found: &FoundPayment,
    learnt_day: Option<chrono::NaiveDate>,
    first_arrival: chrono::DateTime<chrono::Utc>,
    window: &CancellationWindow,
) -> Option<String> {
    match learnt_day {
        Some(day) if day != found.settlement_date => Some(format!(
            "the wallet now reports the payment created at {} (settlement day {}), but its \
             settlement day {day} was learnt from the wallet before and is kept",
            found.created_at.to_rfc3339(),
            found.settlement_date
        )),
        Some(_) => None,
        None if !window.is_open(found.created_at, first_arrival) => Some(format!(
            "the payment turned out to exist: created at {} (settlement day {}), its window \
             closed at {}, before the cancel first arrived at {}; not reversed automatically \
             (requeue to reverse it anyway)",
            found.created_at.to_rfc3339(),
            found.settlement_date,
            window.closes_at(found.created_at).to_rfc3339(),
            first_arrival.to_rfc3339()
        )),
        None => None,
    }
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

    fn succeeded(id: &str, created: &str) -> Payment {
        Payment {
            payment_request_id: id.into(),
            payment_id: "w-1".into(),
            status: PaymentStatus::Success,
            amount: jpy(500),
            created_at: chrono::DateTime::parse_from_rfc3339(created)
                .unwrap()
                .with_timezone(&chrono::Utc),
            refunded_minor_units: 0,
        }
    }

    #[test]
    fn a_payment_found_after_close_carries_its_own_settlement_day() {
        let window = CancellationWindow::default();
        let found = found_after_close(
            "p",
            PaymentStatus::Success,
            None,
            Some(succeeded("p", "2026-11-20T23:59:50+08:00")),
            &window,
        );
        let FoundAfterClose::Found(found) = found else {
            panic!("{found:?}")
        };
        assert_eq!(found.settlement_date.to_string(), "2026-11-20");
        assert_eq!((found.status, found.amount), ("SUCCESS", jpy(500)));
    }

    #[test]
    fn the_lookup_after_close_is_checked_like_the_cancel_path() {
        let window = CancellationWindow::default();
        let ok = || succeeded("p", "2026-11-20T10:00:00+08:00");
        let check = |known: Option<&KnownPayment>, p: Option<Payment>| {
            found_after_close("p", PaymentStatus::Success, known, p, &window)
        };
        assert!(matches!(check(None, None), FoundAfterClose::Retry(_)));
        let refused = [
            Payment {
                payment_request_id: "q".into(),
                ..ok()
            },
            Payment {
                status: PaymentStatus::Processing,
                ..ok()
            },
            Payment {
                refunded_minor_units: 1,
                ..ok()
            },
            Payment {
                payment_id: "w\u{0}".into(),
                ..ok()
            },
        ];
        for p in refused {
            assert!(
                matches!(check(None, Some(p.clone())), FoundAfterClose::Refuse(_)),
                "{p:?}"
            );
        }
        let known = KnownPayment {
            payment_id: "w-1".into(),
            amount: jpy(500),
        };
        assert!(matches!(
            check(Some(&known), Some(ok())),
            FoundAfterClose::Found(_)
        ));
        let other_amount = KnownPayment {
            amount: jpy(499),
            ..known.clone()
        };
        assert!(matches!(
            check(Some(&other_amount), Some(ok())),
            FoundAfterClose::Refuse(_)
        ));
        let other_id = KnownPayment {
            payment_id: "w-2".into(),
            ..known
        };
        assert!(matches!(
            check(Some(&other_id), Some(ok())),
            FoundAfterClose::Refuse(_)
        ));
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
    fn a_void_releases_the_hold_or_hands_over_to_the_refund() {
        let void = |answer, attempt| after_void(&POLICY, attempt, 0.5, answer);
        let released = void(Ok(VoidOutcome::Voided { reference: None }), 1);
        assert_eq!(
            (released.to, released.void_status, released.refund_status),
            (Voided, Some("voided"), None)
        );
        let captured = void(Ok(VoidOutcome::AlreadyCaptured), 1);
        assert_eq!(
            (captured.to, captured.retry_in, captured.void_status),
            (RefundPending, Some(Duration::ZERO), Some("captured")),
            "a captured hold is refunded at once"
        );
        let pending = void(Ok(VoidOutcome::Pending), 1);
        assert_eq!(
            (pending.to, pending.retry_in, pending.void_status),
            (VoidPending, Some(Duration::from_secs(1)), Some("pending"))
        );
        assert_eq!(void(Ok(VoidOutcome::Pending), 3).to, ManualReview);
        let error = void(Err(WalletError::Timeout(1)), 1);
        assert_eq!((error.to, error.void_status), (VoidPending, None));
        let refused = void(
            Ok(VoidOutcome::Failed {
                reason: "card network said no".into(),
            }),
            1,
        );
        assert_eq!(
            (refused.to, refused.void_status),
            (ManualReview, Some("failed"))
        );
        assert!(refused.error.unwrap().contains("card network said no"));
    }

    #[test]
    fn a_close_that_finds_an_authorization_leads_to_a_void_checked_by_lookup() {
        let step = after_close(&POLICY, 1, 0.5, Ok(CloseOutcome::AlreadyAuthorized));
        assert_eq!(
            (step.to, step.retry_in),
            (VoidPending, Some(Duration::ZERO))
        );
        let window = CancellationWindow::default();
        let authorized = Payment {
            status: PaymentStatus::Authorized,
            ..succeeded("p", "2026-11-20T10:00:00+08:00")
        };
        assert!(matches!(
            found_after_close(
                "p",
                PaymentStatus::Authorized,
                None,
                Some(authorized.clone()),
                &window
            ),
            FoundAfterClose::Found(FoundPayment {
                status: "AUTHORIZED",
                ..
            })
        ));
        // The close said authorized, the lookup says otherwise (or the reverse): no reversal.
        assert!(matches!(
            found_after_close(
                "p",
                PaymentStatus::Authorized,
                None,
                Some(succeeded("p", "2026-11-20T10:00:00+08:00")),
                &window
            ),
            FoundAfterClose::Refuse(_)
        ));
        assert!(matches!(
            found_after_close("p", PaymentStatus::Success, None, Some(authorized), &window),
            FoundAfterClose::Refuse(_)
        ));
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
            after_close(&POLICY, 1, 0.5, Ok(CloseOutcome::AlreadyAuthorized)),
            lookup_failed(&POLICY, 1, 0.5, "x".into()),
            after_void(&POLICY, 1, 0.5, Ok(VoidOutcome::Voided { reference: None })),
            after_void(&POLICY, 1, 0.5, Ok(VoidOutcome::AlreadyCaptured)),
            after_void(&POLICY, 1, 0.5, Ok(VoidOutcome::Pending)),
            after_void(&POLICY, 3, 0.5, Ok(VoidOutcome::Pending)),
            after_void(&POLICY, 1, 0.5, Err(WalletError::Timeout(1))),
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
