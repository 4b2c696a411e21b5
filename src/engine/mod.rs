//! The refund engine: drives every accepted cancellation that still has money work to a terminal
//! state (`refunded`, `nothing_to_refund`, or `manual_review` for a person).
//!
//! A worker claims a batch of due rows in one short transaction (lease + attempt count), calls
//! the wallet for each outside any transaction, and writes the batch's outcomes in one
//! statement. A worker that dies leaves its lease to expire; another picks the rows up and calls
//! the wallet again with the same refund id, which the wallet dedupes: at-least-once delivery,
//! exactly-once effect. The pure rules are in [`step`].

pub mod step;

use crate::config::Settings;
use crate::domain::{Backoff, CancellationState, Clock};
use crate::metrics::Metrics;
use crate::store::{ClaimedWork, Store, WorkError, WorkOutcome};
use crate::wallet::{RefundOutcome, Wallet, WalletError};
use futures_util::future::join_all;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use step::{RetryPolicy, Step};
use tokio::sync::{Notify, watch};

/// Wallet calls one worker has in flight at most.
const WALLET_CALLS_PER_WORKER: usize = 8;

/// How the engine paces itself.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub workers: usize,
    /// Rows claimed per transaction (and completed per statement).
    pub batch_size: i64,
    pub poll_interval: Duration,
    /// After a partial batch, how long to let work gather before the next claim.
    pub batch_delay: Duration,
    pub lease: Duration,
    /// Upper bound on one wallet call, whatever the wallet implementation does.
    pub call_timeout: Duration,
    pub policy: RetryPolicy,
}

impl EngineConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        let r = &settings.refunds;
        Self {
            workers: r.workers.max(1),
            batch_size: r.batch_size.max(1),
            poll_interval: Duration::from_millis(r.poll_interval_ms.max(1)),
            batch_delay: Duration::from_millis(r.batch_delay_ms),
            lease: Duration::from_secs(r.lease_seconds.max(1)),
            call_timeout: Duration::from_millis(settings.wallet.timeout_ms.max(1)),
            policy: RetryPolicy {
                max_attempts: r.max_attempts.max(1),
                backoff: Backoff {
                    base: Duration::from_millis(r.backoff_base_ms.max(1)),
                    max: Duration::from_millis(r.backoff_max_ms.max(1)),
                },
            },
        }
    }
}

pub struct RefundEngine {
    store: Store,
    wallet: Arc<dyn Wallet>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
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
        }
    }

    /// Reports steps and wallet calls to `metrics` (the service's registry).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs `config.workers` workers until `shutdown` turns true. Each worker finishes the batch
    /// it holds (bounded by the wallet call timeout) before returning.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let workers: Vec<_> = (0..self.config.workers)
            .map(|_| tokio::spawn(self.clone().worker(shutdown.clone())))
            .collect();
        for worker in workers {
            if let Err(e) = worker.await {
                tracing::error!(error = %e, "a refund worker crashed");
            }
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
    pub async fn run_once(&self) -> Result<usize, WorkError> {
        let now = self.clock.now();
        let lease_until = now + self.config.lease;
        let claimed = self
            .store
            .claim_due(now, lease_until, self.config.batch_size)
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        // The wallet calls of a batch run concurrently, a few at a time, so one engine never
        // takes all the pool's connections (the demo wallet uses the same database) or floods
        // the wallet.
        let mut outcomes = Vec::with_capacity(claimed.len());
        for group in claimed.chunks(WALLET_CALLS_PER_WORKER) {
            outcomes.extend(join_all(group.iter().map(|item| self.work_on(item))).await);
        }
        let recorded = self.store.complete(self.clock.now(), &outcomes).await?;
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
        Ok(claimed.len())
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

    async fn work_on(&self, item: &ClaimedWork) -> WorkOutcome {
        let mut calls = Vec::new();
        let jitter = fastrand::f64();
        let policy = &self.config.policy;
        let mut new_refund = None;
        let mut reference = None;
        let step = match (item.state, &item.refund) {
            _ if item.problem.is_some() => Step {
                to: CancellationState::ManualReview,
                retry_in: None,
                refund_status: None,
                error: item.problem.clone(),
                outcome: "inconsistent",
            },
            (CancellationState::RefundPending, Some(order)) => {
                let answer = self
                    .call(
                        &item.payment_request_id,
                        &mut calls,
                        "refund",
                        self.wallet.refund(order),
                    )
                    .await;
                if let Ok(RefundOutcome::Succeeded { reference: r, .. }) = &answer {
                    reference = r.clone();
                }
                step::after_refund(policy, item.attempt, jitter, order.amount, answer)
            }
            (CancellationState::AwaitingOutcome, _) => {
                let id = &item.payment_request_id;
                let answer = self
                    .call(
                        &item.payment_request_id,
                        &mut calls,
                        "close",
                        self.wallet.close(id),
                    )
                    .await;
                let step = step::after_close(policy, item.attempt, jitter, answer);
                if step.to == CancellationState::RefundPending {
                    // It succeeded after all: queue the refund of the full amount it took.
                    match self
                        .call(
                            &item.payment_request_id,
                            &mut calls,
                            "payment",
                            self.wallet.payment(id),
                        )
                        .await
                    {
                        Ok(Some(p)) if p.refunded_minor_units > 0 => Step {
                            to: CancellationState::ManualReview,
                            retry_in: None,
                            refund_status: None,
                            error: Some(format!(
                                "the payment succeeded after the cancel, but the wallet already refunded {} of it",
                                p.refunded_minor_units
                            )),
                            outcome: "already_refunded",
                        },
                        Ok(Some(p)) => {
                            new_refund = Some((p.payment_id, p.amount));
                            step
                        }
                        Ok(None) => step::lookup_failed(
                            policy,
                            item.attempt,
                            jitter,
                            "the wallet says the payment succeeded but cannot find it".into(),
                        ),
                        Err(e) => step::lookup_failed(policy, item.attempt, jitter, e.to_string()),
                    }
                } else {
                    step
                }
            }
            (state, _) => Step {
                to: CancellationState::ManualReview,
                retry_in: None,
                refund_status: None,
                error: Some(format!("claimed in state {state} without work to do")),
                outcome: "inconsistent",
            },
        };
        let now = self.clock.now();
        self.metrics.observe_step(step.outcome, step.to);
        tracing::debug!(
            payment_request_id = %item.payment_request_id,
            attempt = item.attempt,
            from = %item.state,
            to = %step.to,
            outcome = step.outcome,
            error = step.error.as_deref(),
            "refund engine step"
        );
        WorkOutcome {
            payment_request_id: item.payment_request_id.clone(),
            lease_token: item.lease_token,
            from: item.state,
            to: step.to,
            next_attempt_at: step
                .retry_in
                .map(|d| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)),
            last_error: step.error.clone(),
            refund_status: step.refund_status,
            wallet_reference: reference,
            detail: json!({
                "attempt": item.attempt,
                "outcome": step.outcome,
                "error": step.error,
                "refundId": item.refund.as_ref().map(|r| r.refund_id),
                "calls": calls,
            }),
            new_refund,
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
        calls.push(match &result {
            Ok(answer) => {
                json!({"call": name, "answer": format!("{answer:?}"), "durationMs": duration_ms})
            }
            Err(e) => json!({"call": name, "error": e.to_string(), "durationMs": duration_ms}),
        });
        result
    }
}
