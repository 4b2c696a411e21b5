//! Prometheus metrics, served on the internal listener at `/metrics` (OpenMetrics text, via the
//! Prometheus project's own `prometheus-client`). Counters and histograms are updated as things
//! happen; the queue gauges are read from the database at scrape time, so every instance reports
//! the same, true depth.

use crate::store::{QueueDepth, Store};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result_code: &'static str,
    result_status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
    to_state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    call: &'static str,
}

/// Every metric of one service instance.
pub struct Metrics {
    registry: Registry,
    requests: Family<ResultLabels, Counter>,
    request_seconds: Histogram,
    engine_steps: Family<OutcomeLabels, Counter>,
    wallet_call_seconds: Family<CallLabels, Histogram>,
    wallet_call_errors: Family<CallLabels, Counter>,
    due_work: Gauge,
    oldest_due_age_seconds: Gauge<f64, AtomicU64>,
    manual_review: Gauge,
    open_by_state: Family<StateLabels, Gauge>,
    oldest_open_age_seconds: Gauge<f64, AtomicU64>,
    worker_restarts: Counter,
    ready: Gauge,
    /// Answers given and those of them `U`, since start (the console's U rate; not exported:
    /// `requests` already carries them by code).
    answers_total: Counter,
    answers_unknown: Counter,
}

/// The wallet operations the refund engine times (the `call` label).
const WALLET_CALLS: [&str; 4] = ["payment", "close", "refund", "void"];

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 8.0, 15.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mpp_cancel");
        let requests = Family::<ResultLabels, Counter>::default();
        registry.register(
            "requests",
            "cancelPayment answers by result code and status",
            requests.clone(),
        );
        let request_seconds = Histogram::new(latency_buckets());
        registry.register(
            "request_duration_seconds",
            "Time to answer a request on the public listener",
            request_seconds.clone(),
        );
        let engine_steps = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "refund_engine_steps",
            "Refund engine steps by wallet outcome and resulting state",
            engine_steps.clone(),
        );
        let wallet_call_seconds = Family::<CallLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "wallet_call_duration_seconds",
            "Wallet call latency by operation",
            wallet_call_seconds.clone(),
        );
        let wallet_call_errors = Family::<CallLabels, Counter>::default();
        // Served at 0 from the start, so an error ratio reads 0 before the first error (and the
        // dashboard and alerts find the series).
        for call in WALLET_CALLS {
            let _ = wallet_call_errors.get_or_create(&CallLabels { call });
        }
        registry.register(
            "wallet_call_errors",
            "Wallet calls that failed (error or timeout) by operation",
            wallet_call_errors.clone(),
        );
        let due_work = Gauge::default();
        registry.register(
            "due_work",
            "Cancellations whose money work is due now",
            due_work.clone(),
        );
        let oldest_due_age_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_due_age_seconds",
            "How long the oldest due cancellation has been waiting",
            oldest_due_age_seconds.clone(),
        );
        let manual_review = Gauge::default();
        registry.register(
            "manual_review",
            "Cancellations waiting for a person (manual_review)",
            manual_review.clone(),
        );
        let open_by_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "open_cancellations",
            "Cancellations not yet in a final state, by state (refund_pending, void_pending, \
             awaiting_outcome, manual_review)",
            open_by_state.clone(),
        );
        let oldest_open_age_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_open_age_seconds",
            "How long ago the oldest cancellation whose money work is still pending \
             (refund_pending, void_pending, awaiting_outcome) was received",
            oldest_open_age_seconds.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when this instance is ready (what /readyz answers at scrape time), 0 when not",
            ready.clone(),
        );
        let worker_restarts = Counter::default();
        registry.register(
            "refund_worker_restarts",
            "Refund workers that died (a panic) and were restarted",
            worker_restarts.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            engine_steps,
            wallet_call_seconds,
            wallet_call_errors,
            due_work,
            oldest_due_age_seconds,
            manual_review,
            open_by_state,
            oldest_open_age_seconds,
            worker_restarts,
            ready,
            answers_total: Counter::default(),
            answers_unknown: Counter::default(),
        }
    }

    /// Refund workers restarted since this instance started.
    pub fn worker_restarts(&self) -> u64 {
        self.worker_restarts.get()
    }

    /// (answers given, of which `U`) since this instance started.
    pub fn answers(&self) -> (u64, u64) {
        (self.answers_total.get(), self.answers_unknown.get())
    }

    /// Whether this instance is ready, as `/readyz` decided just before a scrape.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// A refund worker died and is being restarted.
    pub fn observe_worker_restart(&self) {
        self.worker_restarts.inc();
    }

    pub fn observe_answer(&self, code: crate::protocol::ResultCode, elapsed: Duration) {
        self.requests
            .get_or_create(&ResultLabels {
                result_code: code.as_str(),
                result_status: code.status().as_str(),
            })
            .inc();
        self.request_seconds.observe(elapsed.as_secs_f64());
        self.answers_total.inc();
        if code.status() == crate::protocol::ResultStatus::U {
            self.answers_unknown.inc();
        }
    }

    pub fn observe_step(&self, outcome: &'static str, to_state: crate::domain::CancellationState) {
        self.engine_steps
            .get_or_create(&OutcomeLabels {
                outcome,
                to_state: to_state.as_str(),
            })
            .inc();
    }

    pub fn observe_wallet_call(&self, call: &'static str, ok: bool, elapsed: Duration) {
        let labels = CallLabels { call };
        self.wallet_call_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.wallet_call_errors.get_or_create(&labels).inc();
        }
    }

    /// The exposition text, with the queue gauges read fresh from the database (left at their
    /// last values if it is unreachable).
    pub async fn render(&self, store: &Store) -> String {
        match store.queue_depth().await {
            Ok(QueueDepth {
                due,
                oldest_due_age_seconds,
                manual_review,
                open_by_state,
                oldest_open_age_seconds,
            }) => {
                self.due_work.set(due);
                self.oldest_due_age_seconds.set(oldest_due_age_seconds);
                self.manual_review.set(manual_review);
                self.oldest_open_age_seconds.set(oldest_open_age_seconds);
                for (state, count) in open_by_state {
                    self.open_by_state
                        .get_or_create(&StateLabels {
                            state: state.as_str(),
                        })
                        .set(count);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: queue depth unavailable"),
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        out
    }
}
