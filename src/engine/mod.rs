//! The refund engine: drives every accepted cancellation that still has money work to a terminal
//! state (`refunded`, `voided`, `nothing_to_refund`, or `manual_review` for a person).
//!
//! A worker claims a batch of due rows in one short transaction (lease + attempt count), calls
//! the wallet for each outside any transaction, and writes the batch's outcomes in one
//! statement. A worker that dies leaves its lease to expire; another picks the rows up and calls
//! the wallet again with the same refund (or void) id, which the wallet dedupes: at-least-once delivery,
//! exactly-once effect. The pure rules are in [`step`].

pub mod step;

use crate::config::Settings;
use crate::domain::PaymentStatus;
use crate::domain::{Backoff, CancellationState, CancellationWindow, Clock, untrusted};
use crate::metrics::Metrics;
use crate::store::{ClaimedWork, FoundPayment, Store, WorkError, WorkOutcome};
use crate::wallet::{RefundOutcome, VoidOutcome, Wallet, WalletError};
use futures_util::FutureExt;
use futures_util::future::join_all;
use serde_json::json;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use step::{FoundAfterClose, RetryPolicy, Step};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

/// Wallet calls one worker has in flight at most.
const WALLET_CALLS_PER_WORKER: usize = 8;

/// Wallet calls one step may make in a row (close, then the lookup of a payment that
/// succeeded after all): a lease must cover them with room to spare.
const CALLS_PER_STEP: u32 = 2;

/// Room left on a lease, beyond the calls themselves, for recording the outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// How the engine paces itself.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub workers: usize,
    /// Rows claimed per transaction (and completed per statement).
    pub batch_size: i64,
    pub poll_interval: Duration,
    /// After a partial batch, how long to let work gather before the next claim.
    pub batch_delay: Duration,
    /// How long a claim holds its rows, on the database's clock. Renewed every third of it
    /// while the batch is worked.
    pub lease: Duration,
    /// Upper bound on one wallet call, whatever the wallet implementation does.
    pub call_timeout: Duration,
    pub policy: RetryPolicy,
    /// To give a payment found after the decision its true settlement day.
    pub window: CancellationWindow,
}

impl EngineConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        let r = &settings.refunds;
        let call_timeout = Duration::from_millis(settings.wallet.timeout_ms.max(1));
        Self {
            workers: r.workers.max(1),
            batch_size: r.batch_size.max(1),
            poll_interval: Duration::from_millis(r.poll_interval_ms.max(1)),
            batch_delay: Duration::from_millis(r.batch_delay_ms),
            lease: Self::lease_covering(Duration::from_secs(r.lease_seconds.max(1)), call_timeout),
            call_timeout,
            policy: RetryPolicy {
                max_attempts: r.max_attempts.max(1),
                backoff: Backoff {
                    base: Duration::from_millis(r.backoff_base_ms.max(1)),
                    max: Duration::from_millis(r.backoff_max_ms.max(1)),
                },
            },
            // Application::build refuses an invalid window before any engine exists.
            window: settings.cancel_window().unwrap_or_default(),
        }
    }

    /// The lease actually used: at least long enough that, renewed every third of it, a step's
    /// wallet calls always start with enough lease left to finish under it.
    pub fn lease_covering(configured: Duration, call_timeout: Duration) -> Duration {
        let step = call_timeout
            .saturating_mul(CALLS_PER_STEP)
            .saturating_add(LEASE_MARGIN);
        let needed = step.saturating_add(step / 2);
        configured.max(needed)
    }

    /// The lease a step needs left before it makes its wallet calls.
    fn step_budget(&self) -> Duration {
        self.call_timeout
            .saturating_mul(CALLS_PER_STEP)
            .saturating_add(LEASE_MARGIN)
    }
}

/// Whether the engine keeps its workers alive, for readiness: a worker that dies (a panic) is
/// restarted, but one that keeps dying makes the instance not ready.
#[derive(Debug, Default)]
pub struct EngineHealth {
    deaths: std::sync::Mutex<Vec<Instant>>,
    total_deaths: std::sync::atomic::AtomicU64,
}

impl EngineHealth {
    /// Deaths within [`Self::WINDOW`] that make the engine unhealthy.
    pub const MAX_RECENT_DEATHS: usize = 3;
    pub const WINDOW: Duration = Duration::from_secs(60);

    fn record_death(&self) {
        self.total_deaths
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut deaths = self.deaths.lock().unwrap_or_else(|e| e.into_inner());
        deaths.retain(|at| at.elapsed() < Self::WINDOW);
        deaths.push(Instant::now());
    }

    /// Worker deaths since the start.
    pub fn total_deaths(&self) -> u64 {
        self.total_deaths.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// False when workers died [`Self::MAX_RECENT_DEATHS`] times or more within the last
    /// [`Self::WINDOW`].
    pub fn is_healthy(&self) -> bool {
        let deaths = self.deaths.lock().unwrap_or_else(|e| e.into_inner());
        deaths
            .iter()
            .filter(|at| at.elapsed() < Self::WINDOW)
            .count()
            < Self::MAX_RECENT_DEATHS
    }
}

pub struct RefundEngine {
    store: Store,
    wallet: Arc<dyn Wallet>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    health: Arc<EngineHealth>,
}

/// What the worker holding a batch knows of its leases: when they run out at the earliest (on
/// this instance's monotonic clock, measured from before the database set them, so never later
/// than the database's own expiry), and which claims were lost.
struct Leases {
    until: std::sync::Mutex<Instant>,
    lost: std::sync::Mutex<HashSet<Uuid>>,
}

impl Leases {
    fn new(until: Instant) -> Self {
        Self {
            until: std::sync::Mutex::new(until),
            lost: std::sync::Mutex::new(HashSet::new()),
        }
    }

    /// Whether the claim still holds for at least `needed`.
    fn holds(&self, token: Uuid, needed: Duration) -> bool {
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        let lost = self
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&token);
        !lost && until.saturating_duration_since(Instant::now()) >= needed
    }
}

impl RefundEngine {
    /// `wake` is signalled when new work is committed in this process (see
    /// [`CancelService::work_ready`](crate::cancel::CancelService::work_ready)).
    pub fn new(
        store: Store,
        wallet: Arc<dyn Wallet>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            wallet,
            clock,
            config,
            wake,
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(EngineHealth::default()),
        }
    }

    /// Reports steps and wallet calls to `metrics` (the service's registry).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Whether the workers stay alive (for `/readyz`).
    pub fn health(&self) -> Arc<EngineHealth> {
        self.health.clone()
    }

    /// Runs `config.workers` workers until `shutdown` turns true. Each worker finishes the batch
    /// it holds (bounded by the wallet call timeout) before returning. A worker that dies is
    /// restarted, and the death counted and logged.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let health = self.health.clone();
        let metrics = self.metrics.clone();
        let workers: Vec<_> = (0..self.config.workers)
            .map(|n| {
                let engine = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(supervise(
                    format!("refund worker {n}"),
                    shutdown.clone(),
                    move || engine.clone().worker(shutdown.clone()),
                    {
                        let health = health.clone();
                        let metrics = metrics.clone();
                        move || {
                            health.record_death();
                            metrics.observe_worker_restart();
                        }
                    },
                ))
            })
            .collect();
        for worker in workers {
            let _ = worker.await;
        }
        tracing::info!("refund engine stopped");
    }

    async fn worker(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let claimed = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "refund engine: claiming or recording failed");
                    0
                }
            };
            if claimed >= self.config.batch_size as usize {
                continue; // a full batch: more is likely waiting
            }
            if claimed > 0 {
                // A partial batch: let a little more work gather, so claims and completions
                // carry many rows each instead of one (a refund is then a fraction of a commit).
                tokio::select! {
                    _ = tokio::time::sleep(self.config.batch_delay) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Claims one batch of due work, performs it and records the outcomes. Returns how many
    /// cancellations were worked on (0: nothing was due).
    ///
    /// The batch's leases are renewed while it is worked, and no wallet call starts for a row
    /// unless its lease holds long enough for the call to end under it: two instances never
    /// call the wallet for one cancellation at the same time.
    pub async fn run_once(&self) -> Result<usize, WorkError> {
        let now = self.clock.now();
        // The database caps a lease at MAX_DELAY; this instance counts it the same way.
        let lease = self.config.lease.min(crate::store::MAX_DELAY);
        let claim_sent = Instant::now();
        let claimed = self
            .store
            .claim_due(now, lease, self.config.batch_size)
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        // A lease too long to count from here (a library user's EngineConfig) holds for no
        // time at all: no wallet call starts under it, nothing panics.
        let leases = Leases::new(claim_sent.checked_add(lease).unwrap_or(claim_sent));
        let work = async {
            // The wallet calls of a batch run concurrently, a few at a time, so one engine
            // never takes all the pool's connections (the demo wallet uses the same database)
            // or floods the wallet.
            let mut outcomes = Vec::with_capacity(claimed.len());
            for group in claimed.chunks(WALLET_CALLS_PER_WORKER) {
                let done = join_all(group.iter().map(|item| self.work_on_guarded(item, &leases)));
                outcomes.extend(done.await.into_iter().flatten());
            }
            outcomes
        };
        let outcomes = tokio::select! {
            outcomes = work => outcomes,
            never = self.renew(&claimed, &leases) => match never {},
        };
        self.record(&outcomes).await?;
        Ok(claimed.len())
    }

    /// Renews the batch's leases every third of a lease, for as long as it is polled.
    async fn renew(&self, claimed: &[ClaimedWork], leases: &Leases) -> std::convert::Infallible {
        let ids: Vec<String> = claimed
            .iter()
            .map(|c| c.payment_request_id.clone())
            .collect();
        let tokens: Vec<Uuid> = claimed.iter().map(|c| c.lease_token).collect();
        let lease = self.config.lease.min(crate::store::MAX_DELAY);
        loop {
            tokio::time::sleep(lease / 3).await;
            let sent = Instant::now();
            match self.store.renew_leases(&ids, &tokens, lease).await {
                Ok(held) => {
                    *leases.until.lock().unwrap_or_else(|e| e.into_inner()) =
                        sent.checked_add(lease).unwrap_or(sent);
                    let held: HashSet<Uuid> = held.into_iter().collect();
                    leases
                        .lost
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(tokens.iter().filter(|t| !held.contains(t)));
                }
                // The old deadline stands: rows whose lease runs short get no new wallet call.
                Err(e) => tracing::warn!(error = %e, "refund engine: renewing leases failed"),
            }
        }
    }

    /// Writes a batch's outcomes: in one statement, or, if the database refuses that, row by
    /// row, so one row whose outcome cannot be written goes to manual review alone and the
    /// rest of the batch completes.
    async fn record(&self, outcomes: &[WorkOutcome]) -> Result<(), WorkError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let recorded = match self.store.complete(now, outcomes).await {
            Ok(recorded) => recorded,
            Err(e) if !is_about_the_data(&e) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "refund engine: a batch's outcomes were refused; recording them one by one");
                let mut recorded = Vec::with_capacity(outcomes.len());
                for outcome in outcomes {
                    match self
                        .store
                        .complete(now, std::slice::from_ref(outcome))
                        .await
                    {
                        Ok(done) => recorded.extend(done),
                        Err(e) if !is_about_the_data(&e) => return Err(e.into()),
                        Err(e) => {
                            let reason = untrusted::text(&format!(
                                "the outcome of the wallet call could not be recorded: {e}"
                            ));
                            tracing::error!(payment_request_id = %outcome.payment_request_id, %reason, "set aside for manual review");
                            // Money that moved is kept as moved; only if even that is refused
                            // does the row go aside without it.
                            let set_aside =
                                match self.store.set_aside(now, outcome, &reason, true).await {
                                    Err(e) if is_about_the_data(&e) => {
                                        self.store.set_aside(now, outcome, &reason, false).await
                                    }
                                    other => other,
                                };
                            if set_aside? {
                                recorded.push(outcome.payment_request_id.clone());
                            }
                        }
                    }
                }
                recorded
            }
        };
        if recorded.len() < outcomes.len() {
            for lost in outcomes
                .iter()
                .filter(|o| !recorded.contains(&o.payment_request_id))
            {
                tracing::warn!(
                    payment_request_id = %lost.payment_request_id,
                    "lease lost before the outcome was recorded; another worker will redo it"
                );
            }
        }
        Ok(())
    }

    /// Runs batches until nothing is due. For tests, benchmarks and one-shot tools.
    pub async fn drain(&self) -> Result<usize, WorkError> {
        let mut total = 0;
        loop {
            match self.run_once().await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// One row's step, unless its lease runs short (then nothing is done: the row is taken up
    /// again once the lease has expired). A panic in the wallet implementation is this row's
    /// error, not the worker's death.
    async fn work_on_guarded(&self, item: &ClaimedWork, leases: &Leases) -> Option<WorkOutcome> {
        if !leases.holds(item.lease_token, self.config.step_budget()) {
            tracing::warn!(
                payment_request_id = %item.payment_request_id,
                "lease too short to call the wallet; left for the next claim"
            );
            return None;
        }
        match std::panic::AssertUnwindSafe(self.work_on(item))
            .catch_unwind()
            .await
        {
            Ok(outcome) => Some(outcome),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(payment_request_id = %item.payment_request_id, panic = %what, "the step panicked");
                // The handler runs outside the first catch: if building the retry panicked too,
                // the row is left to its lease (taken up again once it expires), never the
                // worker's death.
                let after_panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let step = retry_after_error(
                        &self.config.policy,
                        item,
                        format!("the wallet call panicked: {}", untrusted::text(&what)),
                    );
                    self.outcome(item, step, Vec::new(), None, None)
                }));
                match after_panic {
                    Ok(outcome) => Some(outcome),
                    Err(_) => {
                        tracing::error!(payment_request_id = %item.payment_request_id, "recording the panic panicked too; left for the next claim");
                        None
                    }
                }
            }
        }
    }

    async fn work_on(&self, item: &ClaimedWork) -> WorkOutcome {
        let mut calls = Vec::new();
        let jitter = fastrand::f64();
        let policy = &self.config.policy;
        let mut found = None;
        let mut reference = None;
        let mut refund_after_capture = None;
        let step = match (item.state, &item.refund, &item.void) {
            _ if item.problem.is_some() => {
                step::manual_review("inconsistent", item.problem.clone().unwrap_or_default())
            }
            // Only a claim that never recorded its outcome (the worker died, or the lease was
            // lost, every time) can count past the limit: stop calling the wallet for it.
            _ if item.attempt > policy.max_attempts => step::manual_review(
                "attempts_exhausted",
                format!(
                    "{} claims without a recorded outcome (workers died or lost their lease)",
                    item.attempt
                ),
            ),
            // The wallet already confirmed this refund: finished without ordering it again.
            (CancellationState::RefundPending, Some(order), _) if item.refunded.is_some() => {
                step::refund_recorded(order.amount, item.refunded.unwrap_or(order.amount))
            }
            (CancellationState::RefundPending, Some(order), _) => {
                let answer = self
                    .call(
                        &item.payment_request_id,
                        &mut calls,
                        "refund",
                        self.wallet.refund(order),
                    )
                    .await;
                let answered = match &answer {
                    Ok(RefundOutcome::Succeeded { reference, .. }) => reference.clone(),
                    _ => None,
                };
                let mut step =
                    step::after_refund(policy, item.attempt, jitter, order.amount, answer);
                reference = keep_reference(&mut step, "refund", answered.as_deref());
                step
            }
            (CancellationState::VoidPending, _, Some(_))
                if item.void_status.as_deref() == Some("voided") =>
            {
                step::void_recorded()
            }
            (CancellationState::VoidPending, _, Some(order)) => {
                let captured = if item.void_status.as_deref() == Some("captured") {
                    // The wallet already said the hold was captured: no void again, only the
                    // lookup of what the user was charged.
                    None
                } else {
                    let answer = self
                        .call(
                            &item.payment_request_id,
                            &mut calls,
                            "void",
                            self.wallet.void(order),
                        )
                        .await;
                    let answered = match &answer {
                        Ok(VoidOutcome::Voided { reference }) => reference.clone(),
                        _ => None,
                    };
                    let mut step = step::after_void(policy, item.attempt, jitter, answer);
                    reference = keep_reference(&mut step, "void", answered.as_deref());
                    Some(step)
                };
                match captured {
                    Some(step) if step.void_status != Some("captured") => step,
                    _ => {
                        // Captured: refund what the user was charged, as the wallet now reports
                        // it, never the whole authorization unseen.
                        let id = &item.payment_request_id;
                        let answer = self
                            .call(id, &mut calls, "payment", self.wallet.payment(id))
                            .await;
                        let (step, owed) =
                            step::after_capture_lookup(policy, item.attempt, jitter, order, answer);
                        refund_after_capture = owed;
                        step
                    }
                }
            }
            (CancellationState::AwaitingOutcome, _, _) => {
                let id = &item.payment_request_id;
                let answer = self
                    .call(id, &mut calls, "close", self.wallet.close(id))
                    .await;
                let step = step::after_close(policy, item.attempt, jitter, answer);
                let expected = match step.to {
                    CancellationState::RefundPending => Some(PaymentStatus::Success),
                    CancellationState::VoidPending => Some(PaymentStatus::Authorized),
                    _ => None,
                };
                if let Some(expected) = expected {
                    // It succeeded (or was authorized) after all: check what the wallet now says
                    // of the payment before queueing the refund (or void) of its full amount.
                    match self
                        .call(id, &mut calls, "payment", self.wallet.payment(id))
                        .await
                    {
                        Ok(answer) => match step::found_after_close(
                            id,
                            expected,
                            item.known_payment.as_ref(),
                            answer,
                            &self.config.window,
                        ) {
                            FoundAfterClose::Found(payment) => {
                                match step::settlement_refusal(
                                    &payment,
                                    item.learnt_day,
                                    item.first_arrival,
                                    &self.config.window,
                                ) {
                                    None => {
                                        found = Some(payment);
                                        step
                                    }
                                    Some(why) => {
                                        // Its facts are kept when they are new (T learnt now),
                                        // so a requeue by a person reverses it as found.
                                        if item.learnt_day.is_none() {
                                            found = Some(payment);
                                        }
                                        step::manual_review("settlement_day", why)
                                    }
                                }
                            }
                            FoundAfterClose::Retry(why) => {
                                step::lookup_failed(policy, item.attempt, jitter, why)
                            }
                            FoundAfterClose::Refuse(why) => {
                                step::manual_review("inconsistent_wallet", why)
                            }
                        },
                        Err(e) => step::lookup_failed(policy, item.attempt, jitter, e.to_string()),
                    }
                } else {
                    step
                }
            }
            (state, _, _) => step::manual_review(
                "inconsistent",
                format!("claimed in state {state} without work to do"),
            ),
        };
        let mut outcome = self.outcome(item, step, calls, found, reference);
        if let Some(owed) = refund_after_capture {
            outcome.detail["refundAfterCapture"] = json!(owed.to_string());
        }
        outcome.refund_after_capture = refund_after_capture;
        outcome
    }

    /// The outcome to record for a step; every text in it made fit to store.
    fn outcome(
        &self,
        item: &ClaimedWork,
        step: Step,
        calls: Vec<serde_json::Value>,
        found: Option<FoundPayment>,
        wallet_reference: Option<String>,
    ) -> WorkOutcome {
        self.metrics.observe_step(step.outcome, step.to);
        let error = step.error.as_deref().map(untrusted::text);
        tracing::debug!(
            payment_request_id = %item.payment_request_id,
            attempt = item.attempt,
            from = %item.state,
            to = %step.to,
            outcome = step.outcome,
            error = error.as_deref(),
            "refund engine step"
        );
        WorkOutcome {
            payment_request_id: item.payment_request_id.clone(),
            lease_token: item.lease_token,
            from: item.state,
            to: step.to,
            // Counted on the database's clock when the outcome is written (no instant is
            // computed here, so no delay can overflow one).
            retry_in: step.retry_in,
            last_error: error.clone(),
            refund_status: step.refund_status,
            void_status: step.void_status,
            wallet_reference,
            refunded: step.refunded,
            refund_after_capture: None,
            detail: json!({
                "attempt": item.attempt,
                "outcome": step.outcome,
                "error": error,
                "refundId": item.refund.as_ref().map(|r| r.refund_id),
                "refunded": step.refunded.map(|m| m.to_string()),
                "voidId": item.void.as_ref().map(|v| v.void_id),
                "corrected": found.as_ref().map(|f| json!({
                    "paymentId": f.payment_id,
                    "amount": f.amount.to_string(),
                    "createdAt": f.created_at,
                    "settlementDate": f.settlement_date,
                })),
                "calls": calls,
            }),
            found,
        }
    }

    /// One wallet call, bounded by the call timeout, noted for the audit log.
    async fn call<T: std::fmt::Debug>(
        &self,
        payment_request_id: &str,
        calls: &mut Vec<serde_json::Value>,
        name: &'static str,
        call: impl Future<Output = Result<T, WalletError>>,
    ) -> Result<T, WalletError> {
        let started = Instant::now();
        let timeout_ms = u64::try_from(self.config.call_timeout.as_millis()).unwrap_or(u64::MAX);
        let result = tokio::time::timeout(self.config.call_timeout, call)
            .await
            .unwrap_or(Err(WalletError::Timeout(timeout_ms)));
        let elapsed = started.elapsed();
        self.metrics
            .observe_wallet_call(name, result.is_ok(), elapsed);
        let duration_ms = elapsed.as_secs_f64() * 1e3;
        match &result {
            Ok(answer) => tracing::info!(
                payment_request_id,
                call = name,
                answer = ?answer,
                duration_ms,
                "wallet call"
            ),
            Err(e) => tracing::warn!(
                payment_request_id,
                call = name,
                error = %e,
                duration_ms,
                "wallet call failed"
            ),
        }
        // Debug formatting escapes control characters; the text is capped all the same.
        calls.push(match &result {
            Ok(answer) => {
                json!({"call": name, "answer": untrusted::text(&format!("{answer:?}")), "durationMs": duration_ms})
            }
            Err(e) => json!({"call": name, "error": untrusted::text(&e.to_string()), "durationMs": duration_ms}),
        });
        result
    }
}

/// The wallet's reference for the refund or void (`operation`) a step completed, if it can be
/// stored. One that cannot (control characters, too long) sends a step that succeeded to manual
/// review instead: the money moved, or the hold was released, but what the wallet said about it
/// cannot be kept.
fn keep_reference(step: &mut Step, operation: &str, reference: Option<&str>) -> Option<String> {
    match untrusted::identifier(&format!("{operation} reference"), reference?) {
        Ok(reference) => Some(reference.to_owned()),
        Err(why) => {
            if matches!(
                step.to,
                CancellationState::Refunded | CancellationState::Voided
            ) {
                step.to = CancellationState::ManualReview;
                step.error = Some(format!("the {operation} succeeded, but {why}"));
                step.outcome = "bad_reference";
            }
            None
        }
    }
}

/// The step after a failure that is nobody's answer (a panic): retried like a wallet error.
fn retry_after_error(policy: &RetryPolicy, item: &ClaimedWork, error: String) -> Step {
    step::retry_error(policy, item.state, item.attempt, fastrand::f64(), error)
}

/// Whether a database error is about the values written rather than the database's condition:
/// only then does retrying row by row help, and only then may a row be set aside. SQLSTATE
/// classes 22 (data exception: bad text, NUL), 23 (integrity constraint) and 54 (program limit);
/// a failover, a read-only node, a deadlock or a lost connection is transient, and the batch is
/// simply retried once its leases expire.
fn is_about_the_data(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Encode(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            ["22", "23", "54"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        _ => false,
    }
}

/// Runs the task `make` builds until `shutdown` turns true, building and starting it again
/// whenever it dies (a panic), after a short pause; `on_death` counts each death.
pub async fn supervise<F, Fut>(
    name: String,
    shutdown: watch::Receiver<bool>,
    make: F,
    on_death: impl Fn(),
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(make()).await {
            Ok(()) => return,
            Err(e) => {
                on_death();
                tracing::error!(task = %name, error = %e, "a refund worker died; restarting it");
            }
        }
        if *shutdown.borrow() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_worker_that_dies_is_restarted_and_counted() {
        let starts = Arc::new(AtomicUsize::new(0));
        let deaths = Arc::new(AtomicUsize::new(0));
        let (_stop, shutdown) = watch::channel(false);
        let health = EngineHealth::default();
        supervise(
            "test worker".into(),
            shutdown,
            {
                let starts = starts.clone();
                move || {
                    let n = starts.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n < 3 {
                            panic!("worker death {n}");
                        }
                    }
                }
            },
            || {
                deaths.fetch_add(1, Ordering::SeqCst);
                health.record_death();
            },
        )
        .await;
        assert_eq!(
            starts.load(Ordering::SeqCst),
            4,
            "restarted after each death"
        );
        assert_eq!(deaths.load(Ordering::SeqCst), 3);
        assert_eq!(health.total_deaths(), 3);
        assert!(!health.is_healthy(), "three deaths in a minute: not ready");
    }

    #[test]
    fn the_lease_covers_a_step_renewed_every_third() {
        let lease = EngineConfig::lease_covering(Duration::from_secs(1), Duration::from_secs(5));
        assert!(lease * 2 / 3 >= Duration::from_secs(5) * CALLS_PER_STEP + LEASE_MARGIN);
        assert_eq!(
            EngineConfig::lease_covering(Duration::from_secs(60), Duration::from_secs(5)),
            Duration::from_secs(60)
        );
    }
}
