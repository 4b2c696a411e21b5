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
    /// What the wallet says it refunded, when it says the money moved (whatever the amount):
    /// recorded with the refund, which is then final.
    pub refunded: Option<Money>,
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
            refunded: None,
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
    use CancellationState::{ManualReview, RefundPending};
    match answer {
        // The money moved, whatever the amount: the refund is recorded as succeeded with what
        // the wallet says it gave back (never ordered again); another amount than owed is for a
        // person to settle.
        Ok(RefundOutcome::Succeeded { amount, .. }) => {
            refund_recorded(owed, amount.unwrap_or(owed))
        }
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

/// A refund the wallet confirmed (`refunded` moved, `owed` was ordered): `refunded` when the
/// amounts agree, manual review when they differ; in both cases the refund is `succeeded` and
/// final. Also how a requeued or re-claimed row whose refund already succeeded is finished,
/// without a wallet call.
pub fn refund_recorded(owed: Money, refunded: Money) -> Step {
    use CancellationState::{ManualReview, Refunded};
    if refunded != owed {
        return Step {
            to: ManualReview,
            error: Some(format!(
                "the wallet refunded {refunded}, the cancellation owes {owed}"
            )),
            outcome: "amount_mismatch",
            refunded: Some(refunded),
            ..RowStatus::Refund("succeeded").step()
        };
    }
    Step {
        refunded: Some(refunded),
        ..done(Refunded, RowStatus::Refund("succeeded"), "succeeded")
    }
}

/// A claimed `void_pending` row whose void the wallet already confirmed: finished without a
/// wallet call.
pub fn void_recorded() -> Step {
    done(
        CancellationState::Voided,
        RowStatus::Void("voided"),
        "already_voided",
    )
}

/// What the lookup after a void answered `ALREADY_CAPTURED` means: the refund of what the user
/// was charged (the captured amount minus what was refunded of it already), or why a person must
/// look. The void's own word (`captured`) is kept whatever the lookup says.
pub fn after_capture_lookup(
    policy: &RetryPolicy,
    attempt: i32,
    jitter: f64,
    order: &crate::wallet::VoidOrder,
    answer: Result<Option<Payment>, WalletError>,
) -> (Step, Option<Money>) {
    use CancellationState::{RefundPending, VoidPending};
    let captured = RowStatus::Void("captured");
    let refuse = |why: String| {
        (
            Step {
                error: Some(format!(
                    "the void answered ALREADY_CAPTURED, but {why}; nothing was refunded"
                )),
                outcome: "inconsistent_wallet",
                ..captured.step()
            },
            None,
        )
    };
    let p = match answer {
        Err(e) => {
            let step = policy.again(
                VoidPending,
                attempt,
                jitter,
                "error",
                Some(e.to_string()),
                captured,
            );
            return (step, None);
        }
        Ok(None) => return refuse("the lookup cannot find the payment".into()),
        Ok(Some(p)) => p,
    };
    if p.payment_request_id != order.payment_request_id {
        return refuse("the lookup answered about another paymentRequestId".into());
    }
    if p.status != PaymentStatus::Success {
        return refuse(format!("the lookup says {}", p.status.as_str()));
    }
    if p.payment_id != order.payment_id {
        return refuse(format!(
            "the lookup reports payment {}, the hold was {}",
            untrusted::text(&p.payment_id),
            untrusted::text(&order.payment_id)
        ));
    }
    if p.amount.currency != order.amount.currency {
        return refuse(format!(
            "the capture is in {}, the authorization in {}",
            p.amount.currency, order.amount.currency
        ));
    }
    if p.amount.minor_units > order.amount.minor_units {
        return refuse(format!(
            "the capture ({}) is above the authorization ({})",
            p.amount, order.amount
        ));
    }
    let owed = p.amount.minor_units - p.refunded_minor_units;
    let Ok(owed) = Money::new(owed, p.amount.currency) else {
        return refuse(format!(
            "the merchant already refunded {} of the {} captured",
            p.refunded_minor_units, p.amount
        ));
    };
    let step = Step {
        to: RefundPending,
        retry_in: Some(Duration::ZERO),
        outcome: "already_captured",
        ..captured.step()
    };
    (step, Some(owed))
}

/// After a `void` call for a `void_pending` cancellation. `AlreadyCaptured` leads to
/// `refund_pending`, due at once: the hold became a charge; the caller must look the payment up
/// ([`after_capture_lookup`]) to refund what the user was actually charged.
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

/// Whether a close that found `closed` and a lookup that says `looked_up` can both be true of
/// one payment, one of them answering from before the other's news: the lookup still in flight
/// (PROCESSING) or still holding an authorization the close saw captured (AUTHORIZED after
/// ALREADY_SUCCEEDED), or the close still seeing an authorization the lookup saw captured
/// (SUCCESS after ALREADY_AUTHORIZED). Payments only move forward (PROCESSING, then AUTHORIZED,
/// then SUCCESS), so those are retried; anything else (FAILED beside a success or a hold) is a
/// contradiction for a person.
fn lagging(closed: PaymentStatus, looked_up: PaymentStatus) -> bool {
    use PaymentStatus::{Authorized, Processing, Success};
    matches!(
        (closed, looked_up),
        (Success | Authorized, Processing) | (Success, Authorized) | (Authorized, Success)
    )
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
        let said = format!(
            "the wallet's close said the payment is {}, its lookup says {}",
            expected.as_str(),
            p.status.as_str()
        );
        return match lagging(expected, p.status) {
            true => Retry(format!("{said}: one of them is behind; asking again")),
            false => Refuse(said),
        };
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
        // The lookup is behind the close: asked again, not a person's problem.
        for behind in [PaymentStatus::Processing, PaymentStatus::Authorized] {
            let p = Payment {
                status: behind,
                ..ok()
            };
            assert!(matches!(check(None, Some(p)), FoundAfterClose::Retry(_)));
        }
        let refused = [
            Payment {
                payment_request_id: "q".into(),
                ..ok()
            },
            Payment {
                status: PaymentStatus::Failed,
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
        assert_eq!(
            (step.refund_status, step.refunded),
            (Some("succeeded"), Some(jpy(99))),
            "the money moved: recorded as moved, with what moved"
        );
        assert!(step.error.unwrap().contains("99 JPY"));
    }

    #[test]
    fn a_refund_already_confirmed_is_finished_from_what_was_recorded() {
        let same = refund_recorded(jpy(100), jpy(100));
        assert_eq!((same.to, same.retry_in), (Refunded, None));
        let other = refund_recorded(jpy(100), jpy(60));
        assert_eq!(
            (other.to, other.refund_status),
            (ManualReview, Some("succeeded"))
        );
        assert_eq!(void_recorded().to, Voided);
    }

    fn hold(amount: i64) -> crate::wallet::VoidOrder {
        crate::wallet::VoidOrder {
            void_id: uuid::Uuid::nil(),
            payment_request_id: "p".into(),
            payment_id: "w-1".into(),
            amount: jpy(amount),
        }
    }

    #[test]
    fn a_captured_hold_refunds_what_was_charged_and_nothing_when_inconsistent() {
        let order = hold(10_000);
        let charged = |amount: i64, refunded: i64| Payment {
            amount: jpy(amount),
            refunded_minor_units: refunded,
            ..succeeded("p", "2026-11-20T10:00:00+08:00")
        };
        let lookup = |p: Option<Payment>| after_capture_lookup(&POLICY, 1, 0.5, &order, Ok(p));
        // A partial capture; a capture the merchant partly refunded already.
        for (p, owed) in [(charged(6000, 0), 6000), (charged(6000, 1500), 4500)] {
            let (step, refund) = lookup(Some(p));
            assert_eq!(
                (step.to, step.void_status, refund),
                (RefundPending, Some("captured"), Some(jpy(owed)))
            );
        }
        let (full, refund) = lookup(Some(charged(10_000, 0)));
        assert_eq!((full.to, refund), (RefundPending, Some(jpy(10_000))));
        let usd = Payment {
            amount: Money::new(6000, Currency::parse("USD").unwrap()).unwrap(),
            ..charged(6000, 0)
        };
        let inconsistent = [
            None,
            Some(charged(10_001, 0)),
            Some(charged(6000, 6000)),
            Some(usd),
            Some(Payment {
                status: PaymentStatus::Authorized,
                ..charged(6000, 0)
            }),
            Some(Payment {
                payment_id: "w-2".into(),
                ..charged(6000, 0)
            }),
        ];
        for p in inconsistent {
            let (step, refund) = lookup(p.clone());
            assert_eq!(
                (step.to, step.void_status, refund),
                (ManualReview, Some("captured"), None),
                "{p:?}"
            );
        }
        let (error, refund) =
            after_capture_lookup(&POLICY, 1, 0.5, &order, Err(WalletError::Timeout(1)));
        assert_eq!(
            (error.to, error.void_status, refund),
            (VoidPending, Some("captured"), None),
            "asked again later, without voiding again"
        );
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
        // The close said authorized, the lookup says captured (or the reverse): one of them is
        // behind, so both are asked again; a failure beside either is a contradiction.
        assert!(matches!(
            found_after_close(
                "p",
                PaymentStatus::Authorized,
                None,
                Some(succeeded("p", "2026-11-20T10:00:00+08:00")),
                &window
            ),
            FoundAfterClose::Retry(_)
        ));
        assert!(matches!(
            found_after_close(
                "p",
                PaymentStatus::Success,
                None,
                Some(authorized.clone()),
                &window
            ),
            FoundAfterClose::Retry(_)
        ));
        let failed = Payment {
            status: PaymentStatus::Failed,
            ..authorized
        };
        for expected in [PaymentStatus::Authorized, PaymentStatus::Success] {
            assert!(matches!(
                found_after_close("p", expected, None, Some(failed.clone()), &window),
                FoundAfterClose::Refuse(_)
            ));
        }
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
