//! One `cancelPayment`, from a parsed request to the exact bytes of its answer (DESIGN.md, "One
//! cancel, end to end", steps 2 to 5). Transport-free: the HTTP layer and library users call it
//! alike. A fault before the commit answers `U` and stores nothing, so Alipay+'s retry is
//! processed afresh; `S` is only returned after the commit that guarantees the refund.

use crate::clock_skew::ClockSkewCheck;
use crate::domain::{CancellationWindow, Clock, Decision, Payment, Rejection, decide, untrusted};
use crate::protocol::{CancelPaymentRequest, ResultCode, result_body};
use crate::store::{NewCancellation, Prior, QueuedReversal, Recorded, Store, StoredAnswer};
use crate::wallet::{Wallet, WalletError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The answer to one request: the code, for logs and metrics, and the exact body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: ResultCode,
    pub body: Vec<u8>,
    /// True when the body is a stored answer sent again.
    pub replayed: bool,
}

impl Answer {
    pub fn fresh(code: ResultCode, message: &str) -> Self {
        Self {
            code,
            body: result_body(code, message),
            replayed: false,
        }
    }

    fn unknown() -> Self {
        Self::fresh(
            ResultCode::UnknownException,
            ResultCode::UnknownException.default_message(),
        )
    }
}

/// Decides and records cancellations.
pub struct CancelService {
    store: Store,
    wallet: Arc<dyn Wallet>,
    clock: Arc<dyn Clock>,
    window: CancellationWindow,
    psp_id: String,
    lookup_timeout: Duration,
    work_ready: Arc<Notify>,
    /// Whether this instance's clock may judge windows (None: not checked; see
    /// [`CancelService::with_clock_check`]).
    clock_check: Option<Arc<ClockSkewCheck>>,
}

impl CancelService {
    pub fn new(
        store: Store,
        wallet: Arc<dyn Wallet>,
        clock: Arc<dyn Clock>,
        window: CancellationWindow,
        psp_id: String,
        lookup_timeout: Duration,
    ) -> Self {
        Self {
            store,
            wallet,
            clock,
            window,
            psp_id,
            lookup_timeout,
            work_ready: Arc::new(Notify::new()),
            clock_check: None,
        }
    }

    /// Answers every cancel `U` while `check` says this instance's clock is too far from the
    /// database's (it would judge windows by a wrong arrival time). [`crate::app::cancel_service`]
    /// (the binary and the embedding) always sets it, from `server.max_clock_skew_ms`.
    pub fn with_clock_check(mut self, check: Arc<ClockSkewCheck>) -> Self {
        self.clock_check = Some(check);
        self
    }

    /// The clock check this service answers by, for readiness.
    pub fn clock_check(&self) -> Option<Arc<ClockSkewCheck>> {
        self.clock_check.clone()
    }

    /// Signalled whenever a cancellation with money work is committed by this instance, so a
    /// refund engine in the same process can start at once instead of at its next poll.
    pub fn work_ready(&self) -> Arc<Notify> {
        self.work_ready.clone()
    }

    pub async fn cancel(&self, request: &CancelPaymentRequest) -> Answer {
        let started = Instant::now();
        let answer = self.answer(request).await;
        tracing::info!(
            payment_request_id = %request.payment_request_id,
            result_code = answer.code.as_str(),
            replayed = answer.replayed,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "cancelPayment answered"
        );
        answer
    }

    async fn answer(&self, request: &CancelPaymentRequest) -> Answer {
        // The arrival: the window is judged by when Alipay+ asked, never by when a slow wallet or
        // database let us decide.
        let arrived = self.clock.now();
        // An arrival read on a clock far off the database's cannot judge the window: nothing is
        // decided or remembered by it (the cached comparison costs no round trip).
        if let Some(check) = &self.clock_check
            && let Err(why) = check.verdict().await
        {
            tracing::error!(payment_request_id = %request.payment_request_id, reason = %why, "cancel answered U: clock skew");
            return Answer::fresh(
                ResultCode::UnknownException,
                "this instance's clock is not in step with the database's; retry later",
            );
        }
        if request.psp_id != self.psp_id {
            return Answer::fresh(ResultCode::AccessDenied, "pspId does not name this MPP");
        }
        let id = request.payment_request_id.as_str();
        let first_arrival = match self.store.prior(id).await {
            Ok(Prior {
                answer: Some(stored),
                ..
            }) => return replay(request, stored),
            Ok(Prior { first_arrival, .. }) => first_arrival,
            Err(e) => {
                tracing::error!(payment_request_id = id, error = %e, "reading the stored answer failed");
                return Answer::unknown();
            }
        };
        // An earlier attempt that arrived in time but was answered U keeps this id in time.
        let now = first_arrival.map_or(arrived, |first| first.min(arrived));
        let payment = match self.look_up(id).await {
            Ok(payment) => payment,
            Err(e) => {
                tracing::error!(payment_request_id = id, error = %e, "payment lookup failed");
                self.note_undecided(id, now).await;
                return Answer::unknown();
            }
        };
        // A value from the wallet that cannot be stored (a paymentId with a NUL, say) must not
        // make this id U forever: the cancel is decided on the facts that can be trusted, and an
        // accepted one goes to a person (manual_review, no money work queued) with the reason.
        // The wallet's paymentId is then not stored.
        let problem = payment.as_ref().and_then(untrusted::payment_problem);
        let mut decision = decide(payment.as_ref(), &self.window, now);
        if let (Some(why), Decision::Accept { .. }) = (&problem, &decision) {
            tracing::error!(payment_request_id = id, reason = %why, "the wallet's payment cannot be stored: accepted for manual review");
            decision = Decision::Accept {
                state: crate::domain::CancellationState::ManualReview,
                reversal: None,
            };
        }
        let stored_payment_id = payment
            .as_ref()
            .filter(|_| problem.is_none())
            .map(|p| p.payment_id.as_str());
        let code = match decision {
            Decision::Accept { .. } => ResultCode::Success,
            Decision::Reject(Rejection::WindowClosed) => ResultCode::CancelWindowExceed,
            Decision::Reject(Rejection::AlreadyRefunded) => ResultCode::ProcessFail,
        };
        let body = result_body(code, code.default_message());
        let state = decision.state();
        let reversal = match (&decision, &payment) {
            (
                Decision::Accept {
                    reversal: Some(amount),
                    ..
                },
                Some(p),
            ) => Some(QueuedReversal {
                payment_id: &p.payment_id,
                amount: *amount,
            }),
            _ => None,
        };
        let new = NewCancellation {
            payment_request_id: id,
            acquirer_id: &request.acquirer_id,
            psp_id: &request.psp_id,
            state,
            result_code: code.as_str(),
            result_status: code.status().as_str(),
            response_body: &body,
            payment_id: stored_payment_id,
            payment_status: payment.as_ref().map(|p| p.status.as_str()),
            amount: payment.as_ref().map(|p| p.amount),
            payment_created_at: payment.as_ref().map(|p| p.created_at),
            settlement_date: self
                .window
                .settlement_day(payment.as_ref().map_or(now, |p| p.created_at)),
            now,
            reversal,
            last_error: problem.as_deref(),
        };
        match self.store.record(&new).await {
            Ok(Recorded::Inserted) => {
                tracing::debug!(payment_request_id = id, state = %state, "cancellation recorded");
                if state.has_money_work() {
                    self.work_ready.notify_one();
                }
                Answer {
                    code,
                    body,
                    replayed: false,
                }
            }
            Ok(Recorded::Existing(stored)) => replay(request, stored),
            Err(e) => {
                tracing::error!(payment_request_id = id, error = %e, "recording the cancellation failed");
                self.note_undecided(id, now).await;
                Answer::unknown()
            }
        }
    }

    /// Records the arrival of a verified cancel that was shed under load (answered
    /// `U`/REQUEST_TRAFFIC_EXCEED_LIMIT before it was decided), so its retry is judged by it.
    /// Nothing is recorded for another MPP's pspId, or while this instance's clock is off the
    /// database's (its arrival could not be trusted).
    pub async fn note_shed_arrival(&self, request: &CancelPaymentRequest) {
        let arrived = self.clock.now();
        if request.psp_id != self.psp_id {
            return;
        }
        if let Some(check) = &self.clock_check
            && check.verdict().await.is_err()
        {
            return;
        }
        self.note_undecided(&request.payment_request_id, arrived)
            .await;
    }

    /// Remembers the arrival of a request answered `U`, when the database lets us: its retries
    /// are then judged by this arrival. Best effort: if the database is down, nothing can be
    /// remembered and the retry is judged by its own arrival.
    async fn note_undecided(&self, id: &str, arrived: chrono::DateTime<chrono::Utc>) {
        if let Err(e) = self.store.note_arrival(id, arrived).await {
            tracing::warn!(payment_request_id = id, error = %e, "could not remember the arrival of an undecided cancel");
        }
    }

    async fn look_up(&self, id: &str) -> Result<Option<Payment>, WalletError> {
        let timeout_ms = u64::try_from(self.lookup_timeout.as_millis()).unwrap_or(u64::MAX);
        let payment = tokio::time::timeout(self.lookup_timeout, self.wallet.payment(id))
            .await
            .map_err(|_| WalletError::Timeout(timeout_ms))??;
        match payment {
            Some(p) if p.payment_request_id != id => Err(WalletError::BadAnswer(format!(
                "asked for payment {id:?}, got {:?}",
                p.payment_request_id
            ))),
            other => Ok(other),
        }
    }
}

/// The stored answer, provided the request is the same one that was answered.
fn replay(request: &CancelPaymentRequest, stored: StoredAnswer) -> Answer {
    if stored.acquirer_id != request.acquirer_id || stored.psp_id != request.psp_id {
        return Answer::fresh(
            ResultCode::ParamIllegal,
            "acquirerId or pspId differs from the original request for this paymentRequestId",
        );
    }
    Answer {
        code: ResultCode::parse(&stored.result_code).unwrap_or(ResultCode::Success),
        body: stored.response_body,
        replayed: true,
    }
}
