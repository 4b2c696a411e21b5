//! The money simulation: seeded, reproducible histories of many cancellations with faults
//! injected at random, checked against the money invariants once the faults stop and the
//! engine drains.
//!
//! A history: payments of every kind (SUCCESS, FAILED, PROCESSING that closes or succeeds later,
//! PROCESSING that is closed and then reports a late success (with the MPP's nudge) right after
//! the close, unknown, unknown that appears later, already refunded, created near the cut-off,
//! outside the window; card authorizations: AUTHORIZED, AUTHORIZED that the merchant captures at
//! a random moment (before the cancel, or just before a void reaches the wallet), in full or in
//! part, and then partly refunds, AUTHORIZED outside the window, PROCESSING or unknown that is
//! authorized (and maybe captured) later), Alipay+ traffic (fresh cancels, concurrent twins,
//! replays, retries after U until S or F, bad inputs), two service instances whose clocks are
//! skewed (one reaching the database through a proxy that is cut at random), refund engines that
//! are killed (their futures dropped at any await, as kill -9 would) and restarted, an operator
//! who nudges (also rows a worker holds at that moment) and requeues `manual_review` rows at
//! random moments and once more after their cause is gone, against a wallet double that errs,
//! times out, answers PENDING, reports late successes, loses the answer after the money moved or
//! the hold was released, sends junk references, refunds another amount than ordered, is slower
//! than a lease, answers lookups from reads that lag its writes (a close answered, the lookup
//! still old), and forgets the idempotency keys of answers it delivered a while ago (so a
//! re-sent order would pay twice).
//!
//! `CHAOS_SEED` (first seed, default 1) and `CHAOS_HISTORIES` (default 3) choose the
//! histories; `scripts/chaos --seed S --histories N` runs them and prints one line per failure.

use crate::support::app::{ACQUIRER_ID, PSP_ID};
use crate::support::at;
use crate::support::db::TestDb;
use crate::support::db_proxy::DbProxy;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mpp_cancel::app::{Components, cancel_service};
use mpp_cancel::cancel::CancelService;
use mpp_cancel::config::Settings;
use mpp_cancel::domain::{
    CancellationState, Clock, Currency, ManualClock, Money, Payment, PaymentStatus,
};
use mpp_cancel::engine::{EngineConfig, RefundEngine};
use mpp_cancel::protocol::CancelPaymentRequest;
use mpp_cancel::store::{RequeueSelection, Store};
use mpp_cancel::wallet::{
    CloseOutcome, RefundOrder, RefundOutcome, VoidOrder, VoidOutcome, Wallet, WalletError,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Success,
    Failed,
    ProcessingCloses,
    ProcessingSucceedsLater,
    Unknown,
    UnknownAppearsLater,
    AlreadyRefunded,
    NearCutoff,
    WindowClosed,
    Authorized,
    AuthorizedCaptured,
    AuthorizedWindowClosed,
    ProcessingAuthorizesLater,
    UnknownAuthorizedLater,
    /// PROCESSING; the close stops it, and right after (while the worker still holds the row)
    /// the payment reports a late success and the MPP nudges.
    ClosedThenLateSuccess,
}

const KINDS: [Kind; 15] = [
    Kind::Success,
    Kind::Failed,
    Kind::ProcessingCloses,
    Kind::ProcessingSucceedsLater,
    Kind::Unknown,
    Kind::UnknownAppearsLater,
    Kind::AlreadyRefunded,
    Kind::NearCutoff,
    Kind::WindowClosed,
    Kind::Authorized,
    Kind::AuthorizedCaptured,
    Kind::AuthorizedWindowClosed,
    Kind::ProcessingAuthorizesLater,
    Kind::UnknownAuthorizedLater,
    Kind::ClosedThenLateSuccess,
];

/// Money that moved: one refund performed by the wallet.
#[derive(Debug, Clone)]
struct Move {
    refund_id: uuid::Uuid,
    payment_request_id: String,
    payment_id: String,
    amount: i64,
}

/// The ledger of the wallet double, the truth the invariants are checked against.
#[derive(Default)]
struct Ledger {
    payments: HashMap<String, Payment>,
    /// Ids closed while unknown: a later `pay` with them is refused (the guard).
    closed_unknown: HashSet<String>,
    /// PROCESSING payments that report a late success right after their (first) close.
    succeeds_after_close: HashSet<String>,
    /// Every refund performed, in order (twice for one refund id if its key was forgotten and
    /// the order came again).
    moves: Vec<Move>,
    /// The refund ids the wallet still dedupes on, with the amount it refunded for each.
    refund_keys: HashMap<uuid::Uuid, i64>,
    /// (void id, paymentRequestId) of every hold released.
    releases: Vec<(uuid::Uuid, String)>,
    /// The void ids the wallet still dedupes on.
    void_keys: HashSet<uuid::Uuid>,
    /// Keys whose success answer reached the engine, and when: the wallet forgets them a while
    /// later (its idempotency window is shorter than a row can wait for an operator).
    delivered: HashMap<uuid::Uuid, Instant>,
    forgotten_keys: u64,
    /// paymentRequestId -> every void id a void call named for it (one, or none, is right).
    void_ids_sent: HashMap<String, HashSet<uuid::Uuid>>,
    /// Ids that were AUTHORIZED at some moment: a release (or, once captured, a refund) is owed
    /// when their cancel is accepted.
    authorized: HashSet<String>,
    /// Authorizations the merchant captured: the hold became a charge.
    captured: HashSet<String>,
    /// Authorizations the merchant may capture at any moment, also just before a void lands.
    capturable: HashSet<String>,
    /// Those it may capture in part (and then partly refund): authorized from the start.
    partly_capturable: HashSet<String>,
    /// What the user was charged (a SUCCESS payment's amount, a capture's captured amount) and
    /// what the merchant refunded of it: a cancellation may refund at most the difference.
    charged: HashMap<String, i64>,
    merchant_refunded: HashMap<String, i64>,
    partial_captures: u64,
    /// Ids whose refund or void answer carried a junk reference.
    junk_references: HashSet<String>,
    /// Ids the wallet refunded another amount for than ordered.
    short_refunds: HashSet<String>,
    /// Reads that lag the writes: a lookup of the id answers this older view for a few more
    /// reads after a change.
    stale: HashMap<String, (Option<Payment>, u32)>,
    /// Ids a lookup was answered from an older view for.
    stale_served: HashSet<String>,
    lagged_reads: u64,
    /// Orders sent for a refund or void the database already recorded as confirmed.
    reordered: Vec<String>,
    /// paymentRequestIds a wallet call is in flight for right now (the operator nudges them).
    in_call: HashMap<String, usize>,
    in_flight: HashMap<uuid::Uuid, usize>,
    max_in_flight: usize,
}

/// How a merchant captures an authorization: the share captured and the share of the capture
/// it then refunds itself, in percent.
#[derive(Debug, Clone, Copy)]
struct CaptureShape {
    captured_pct: i64,
    refunded_pct: i64,
}

/// A wallet that keeps a correct ledger but misbehaves at random on the way.
struct ChaosWallet {
    ledger: Mutex<Ledger>,
    rng: Mutex<fastrand::Rng>,
    faults_on: std::sync::atomic::AtomicBool,
    faults: AtomicU64,
    /// Longer than the engine's call timeout: a timeout.
    slow: Duration,
    /// The database, read to check that no order is sent for a refund or void it records as
    /// confirmed, and written by the MPP's nudge after a late success.
    db: sqlx::PgPool,
    nudger: Store,
    /// The MPP's host clock (for its nudges).
    clock: Arc<ManualClock>,
    late_success_nudges: AtomicU64,
}

impl ChaosWallet {
    fn roll(&self, p: f64) -> bool {
        self.faults_on.load(Ordering::SeqCst) && self.rng.lock().unwrap().f64() < p && {
            self.faults.fetch_add(1, Ordering::Relaxed);
            true
        }
    }

    async fn misbehave(&self) -> Result<(), WalletError> {
        if self.roll(0.12) {
            return Err(WalletError::Unavailable("injected error".into()));
        }
        if self.roll(0.04) {
            tokio::time::sleep(self.slow).await;
        }
        Ok(())
    }

    /// After the money moved (or the hold was released): the answer is lost (a timeout), or
    /// carries a junk reference (noted, so manual review of that payment is expected), or the
    /// right one. An answer that reaches the engine is noted as delivered.
    fn answer_after_effect(
        &self,
        payment_request_id: &str,
        key: uuid::Uuid,
        junk: &str,
        reference: String,
    ) -> Result<String, WalletError> {
        if self.roll(0.05) {
            return Err(WalletError::Timeout(1));
        }
        let mut ledger = self.ledger.lock().unwrap();
        ledger.delivered.entry(key).or_insert_with(Instant::now);
        if self.roll(0.03) {
            ledger.junk_references.insert(payment_request_id.to_owned());
            return Ok(junk.to_owned());
        }
        Ok(reference)
    }

    /// The next lookups of `id` may still read `before` (a read replica behind the writes).
    fn lag(&self, ledger: &mut Ledger, id: &str, before: Option<Payment>) {
        if self.roll(0.5) {
            let reads = self.rng.lock().unwrap().u32(1..=3);
            ledger.stale.insert(id.to_owned(), (before, reads));
        }
    }

    fn capture_shape(&self) -> CaptureShape {
        let mut rng = self.rng.lock().unwrap();
        CaptureShape {
            captured_pct: if rng.f64() < 0.4 { 60 } else { 100 },
            refunded_pct: if rng.f64() < 0.3 { 10 } else { 0 },
        }
    }

    /// The merchant captures an authorization still held; a released one cannot be captured.
    /// An authorization that started as PROCESSING (its amount recorded at the decision) is
    /// captured in full: a capture of another amount would contradict the recorded payment, a
    /// case for a person by design (the lookup after a close must agree with it).
    fn capture(&self, id: &str) {
        let mut shape = self.capture_shape();
        if !self.ledger.lock().unwrap().partly_capturable.contains(id) {
            shape = CaptureShape {
                captured_pct: 100,
                refunded_pct: 0,
            };
        }
        let mut ledger = self.ledger.lock().unwrap();
        let before = ledger.payments.get(id).cloned();
        if ledger.capture(id, shape) {
            self.lag(&mut ledger, id, before);
        }
    }

    fn pay_later(&self, payment: Payment) -> bool {
        let mut ledger = self.ledger.lock().unwrap();
        let id = payment.payment_request_id.clone();
        if ledger.closed_unknown.contains(&id) || ledger.payments.contains_key(&id) {
            return false;
        }
        match payment.status {
            PaymentStatus::Authorized => {
                ledger.authorized.insert(id.clone());
            }
            _ => {
                ledger
                    .charged
                    .insert(id.clone(), payment.amount.minor_units);
            }
        }
        ledger.payments.insert(id.clone(), payment);
        self.lag(&mut ledger, &id, None);
        true
    }

    fn authorize_later(&self, id: &str) -> bool {
        let mut ledger = self.ledger.lock().unwrap();
        let before = ledger.payments.get(id).cloned();
        if let Some(p) = ledger.payments.get_mut(id)
            && p.status == PaymentStatus::Processing
        {
            p.status = PaymentStatus::Authorized;
            ledger.authorized.insert(id.to_owned());
            self.lag(&mut ledger, id, before);
            return true;
        }
        false
    }

    fn succeed_later(&self, id: &str) -> bool {
        let mut ledger = self.ledger.lock().unwrap();
        let before = ledger.payments.get(id).cloned();
        if let Some(p) = ledger.payments.get_mut(id)
            && p.status == PaymentStatus::Processing
        {
            p.status = PaymentStatus::Success;
            let amount = p.amount.minor_units;
            ledger.charged.insert(id.to_owned(), amount);
            self.lag(&mut ledger, id, before);
            return true;
        }
        false
    }

    /// The wallet forgets the keys of answers it delivered at least `age` ago.
    fn forget_keys_older_than(&self, age: Duration) -> u64 {
        let mut ledger = self.ledger.lock().unwrap();
        let old: Vec<uuid::Uuid> = ledger
            .delivered
            .iter()
            .filter(|(_, at)| at.elapsed() >= age)
            .map(|(k, _)| *k)
            .collect();
        let mut n = 0;
        for key in old {
            ledger.delivered.remove(&key);
            if ledger.refund_keys.remove(&key).is_some() || ledger.void_keys.remove(&key) {
                n += 1;
            }
        }
        ledger.forgotten_keys += n;
        n
    }

    /// Whether the database already records the refund (`table` refunds) or void as confirmed:
    /// then no order may be sent for it.
    async fn confirmed_in_database(&self, refund: bool, key: uuid::Uuid) -> bool {
        let sql = if refund {
            "SELECT count(*) FROM refunds WHERE refund_id = $1 AND status = 'succeeded'"
        } else {
            "SELECT count(*) FROM voids WHERE void_id = $1 AND status = 'voided'"
        };
        sqlx::query_scalar::<_, i64>(sql)
            .bind(key)
            .fetch_one(&self.db)
            .await
            .unwrap_or(0)
            > 0
    }
}

impl Ledger {
    /// The merchant captures an authorization still held (in full or in part, maybe refunding
    /// part of the charge at once); a released one cannot be captured. True if it was.
    fn capture(&mut self, id: &str, shape: CaptureShape) -> bool {
        let Some(p) = self.payments.get_mut(id) else {
            return false;
        };
        if p.status != PaymentStatus::Authorized {
            return false;
        }
        let captured = (p.amount.minor_units * shape.captured_pct / 100).max(1);
        let refunded = captured * shape.refunded_pct / 100;
        p.status = PaymentStatus::Success;
        p.amount = Money::new(captured, p.amount.currency).expect("positive");
        p.refunded_minor_units = refunded;
        self.captured.insert(id.to_owned());
        self.charged.insert(id.to_owned(), captured);
        self.merchant_refunded.insert(id.to_owned(), refunded);
        if shape.captured_pct < 100 {
            self.partial_captures += 1;
        }
        true
    }
}

/// A wallet call in flight for one paymentRequestId (and refund or void id); counted down also
/// when the call is dropped half-way (an engine killed mid-call).
struct InFlight<'a>(&'a ChaosWallet, String, Option<uuid::Uuid>);

impl<'a> InFlight<'a> {
    fn enter(wallet: &'a ChaosWallet, payment_request_id: &str, id: Option<uuid::Uuid>) -> Self {
        let mut ledger = wallet.ledger.lock().unwrap();
        *ledger
            .in_call
            .entry(payment_request_id.to_owned())
            .or_insert(0) += 1;
        if let Some(id) = id {
            let n = ledger.in_flight.entry(id).or_insert(0);
            *n += 1;
            let n = *n;
            ledger.max_in_flight = ledger.max_in_flight.max(n);
        }
        Self(wallet, payment_request_id.to_owned(), id)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut ledger = self.0.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = ledger.in_call.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                ledger.in_call.remove(&self.1);
            }
        }
        if let Some(id) = self.2
            && let Some(n) = ledger.in_flight.get_mut(&id)
        {
            *n -= 1;
        }
    }
}

#[async_trait]
impl Wallet for ChaosWallet {
    async fn payment(&self, id: &str) -> Result<Option<Payment>, WalletError> {
        self.misbehave().await?;
        let mut ledger = self.ledger.lock().unwrap();
        if self.faults_on.load(Ordering::SeqCst)
            && let Some((before, reads)) = ledger.stale.get_mut(id)
            && *reads > 0
        {
            *reads -= 1;
            let before = before.clone();
            ledger.stale_served.insert(id.to_owned());
            ledger.lagged_reads += 1;
            return Ok(before);
        }
        Ok(ledger.payments.get(id).cloned())
    }

    async fn close(&self, id: &str) -> Result<CloseOutcome, WalletError> {
        let _in_call = InFlight::enter(self, id, None);
        self.misbehave().await?;
        if self.roll(0.1) {
            return Ok(CloseOutcome::Pending);
        }
        let mut late_success = false;
        let outcome = {
            let mut ledger = self.ledger.lock().unwrap();
            // A close answering from a view behind a capture: still ALREADY_AUTHORIZED.
            let behind_a_capture = matches!(
                ledger.stale.get(id),
                Some((Some(before), _)) if before.status == PaymentStatus::Authorized
            ) && ledger.payments.get(id).map(|p| p.status)
                == Some(PaymentStatus::Success);
            if behind_a_capture && self.roll(0.5) {
                return Ok(CloseOutcome::AlreadyAuthorized);
            }
            let succeeds_late = ledger.succeeds_after_close.remove(id);
            match ledger.payments.get_mut(id) {
                None => {
                    ledger.closed_unknown.insert(id.to_owned());
                    CloseOutcome::Closed
                }
                Some(p) => match p.status {
                    PaymentStatus::Processing => {
                        if succeeds_late {
                            // Stopped, and right after it reports a late success after all.
                            p.status = PaymentStatus::Success;
                            let amount = p.amount.minor_units;
                            ledger.charged.insert(id.to_owned(), amount);
                            late_success = true;
                        } else {
                            p.status = PaymentStatus::Failed;
                        }
                        CloseOutcome::Closed
                    }
                    PaymentStatus::Success => CloseOutcome::AlreadySucceeded,
                    PaymentStatus::Authorized => CloseOutcome::AlreadyAuthorized,
                    PaymentStatus::Failed => CloseOutcome::AlreadyFailed,
                },
            }
        };
        if late_success {
            // The MPP sees the late success and nudges, while the worker still holds the row
            // (this call has not returned yet).
            self.late_success_nudges.fetch_add(1, Ordering::Relaxed);
            let _ = self.nudger.nudge(id, self.clock.now()).await;
        }
        Ok(outcome)
    }

    async fn void(&self, order: &VoidOrder) -> Result<VoidOutcome, WalletError> {
        let _in_flight = InFlight::enter(self, &order.payment_request_id, Some(order.void_id));
        if self.confirmed_in_database(false, order.void_id).await {
            self.ledger.lock().unwrap().reordered.push(format!(
                "void {} of {}",
                order.void_id, order.payment_request_id
            ));
        }
        self.ledger
            .lock()
            .unwrap()
            .void_ids_sent
            .entry(order.payment_request_id.clone())
            .or_default()
            .insert(order.void_id);
        self.misbehave().await?;
        if self.roll(0.08) {
            return Ok(VoidOutcome::Pending);
        }
        // The merchant's capture races the void (not a fault: it happens with the faults off).
        let capture_first = self.rng.lock().unwrap().f64() < 0.3;
        if capture_first
            && self
                .ledger
                .lock()
                .unwrap()
                .capturable
                .contains(&order.payment_request_id)
        {
            self.capture(&order.payment_request_id);
        }
        let mut ledger = self.ledger.lock().unwrap();
        if !ledger.void_keys.contains(&order.void_id) {
            match ledger
                .payments
                .get_mut(&order.payment_request_id)
                .map(|p| (p.status, p))
            {
                Some((PaymentStatus::Authorized, p)) => {
                    // Released: the hold took no money.
                    p.status = PaymentStatus::Failed;
                    ledger.void_keys.insert(order.void_id);
                    ledger
                        .releases
                        .push((order.void_id, order.payment_request_id.clone()));
                }
                Some((PaymentStatus::Success, _)) => return Ok(VoidOutcome::AlreadyCaptured),
                _ => {
                    return Ok(VoidOutcome::Failed {
                        reason: "not an authorization".into(),
                    });
                }
            }
        }
        drop(ledger);
        // The hold was released; the answer may still be lost or junk.
        let reference = self.answer_after_effect(
            &order.payment_request_id,
            order.void_id,
            "junk\u{7f}void",
            format!("void-{}", order.void_id),
        )?;
        Ok(VoidOutcome::Voided {
            reference: Some(reference),
        })
    }

    async fn refund(&self, order: &RefundOrder) -> Result<RefundOutcome, WalletError> {
        let _in_flight = InFlight::enter(self, &order.payment_request_id, Some(order.refund_id));
        if self.confirmed_in_database(true, order.refund_id).await {
            self.ledger.lock().unwrap().reordered.push(format!(
                "refund {} of {}",
                order.refund_id, order.payment_request_id
            ));
        }
        self.misbehave().await?;
        if self.roll(0.08) {
            return Ok(RefundOutcome::Pending);
        }
        // Another amount than ordered (a ledger's rounding, a partial refund): still money
        // that moved.
        let short = order.amount.minor_units > 1 && self.roll(0.02);
        let mut ledger = self.ledger.lock().unwrap();
        let amount = match ledger.refund_keys.get(&order.refund_id) {
            Some(amount) => *amount,
            None => {
                let amount = order.amount.minor_units - i64::from(short);
                if short {
                    ledger
                        .short_refunds
                        .insert(order.payment_request_id.clone());
                }
                ledger.refund_keys.insert(order.refund_id, amount);
                ledger.moves.push(Move {
                    refund_id: order.refund_id,
                    payment_request_id: order.payment_request_id.clone(),
                    payment_id: order.payment_id.clone(),
                    amount,
                });
                if let Some(p) = ledger.payments.get_mut(&order.payment_request_id) {
                    p.refunded_minor_units += amount;
                }
                amount
            }
        };
        drop(ledger);
        // The money moved; the answer may still be lost or junk.
        let reference = self.answer_after_effect(
            &order.payment_request_id,
            order.refund_id,
            "junk\u{0}reference",
            format!("ref-{}", order.refund_id),
        )?;
        Ok(RefundOutcome::Succeeded {
            amount: Some(Money::new(amount, order.amount.currency).expect("positive")),
            reference: Some(reference),
        })
    }
}

/// What one history did, for the summary line.
#[derive(Debug, Default)]
pub struct HistoryStats {
    pub requests: u64,
    pub faults: u64,
    pub engine_kills: u64,
    pub db_cuts: u64,
    /// Nudges and requeues by the operator (the MPP's own nudges after late successes apart).
    pub operator_actions: u64,
    pub late_success_nudges: u64,
    pub partial_captures: u64,
    pub forgotten_keys: u64,
    pub lagged_reads: u64,
    /// Refunds the wallet performed for another amount than ordered.
    pub short_refunds: u64,
    /// Instances, engines and the operator's host whose clocks were off.
    pub skewed_clocks: u64,
    pub coverage: Coverage,
}

impl HistoryStats {
    fn add(&mut self, other: &HistoryStats) {
        self.requests += other.requests;
        self.faults += other.faults;
        self.engine_kills += other.engine_kills;
        self.db_cuts += other.db_cuts;
        self.operator_actions += other.operator_actions;
        self.late_success_nudges += other.late_success_nudges;
        self.partial_captures += other.partial_captures;
        self.forgotten_keys += other.forgotten_keys;
        self.lagged_reads += other.lagged_reads;
        self.short_refunds += other.short_refunds;
        self.skewed_clocks += other.skewed_clocks;
        let (t, c) = (&mut self.coverage, other.coverage);
        t.voided += c.voided;
        t.captured_before_cancel += c.captured_before_cancel;
        t.captured_during_void += c.captured_during_void;
        t.manual_reviews += c.manual_reviews;
        t.finished_by_requeue += c.finished_by_requeue;
    }
}

fn settings() -> Settings {
    let mut s = Settings::local_defaults();
    s.alipayplus.verify_signatures = false;
    s.cancel.lookup_timeout_ms = 300;
    s.database.acquire_timeout_ms = 500;
    s.refunds.workers = 1;
    s.refunds.poll_interval_ms = 20;
    s.refunds.batch_size = 16;
    s.refunds.batch_delay_ms = 5;
    s.refunds.backoff_base_ms = 5;
    s.refunds.backoff_max_ms = 50;
    s.refunds.max_attempts = 1000;
    s.refunds.lease_seconds = 1;
    s.wallet.timeout_ms = 1500;
    // The histories' clock stands in November 2026, whatever the database's says.
    s.server.max_clock_skew_ms = mpp_cancel::config::MAX_CLOCK_SKEW_MS;
    s
}

fn money(v: i64) -> Money {
    Money::new(v, Currency::parse("JPY").unwrap()).unwrap()
}

/// A clock running from `start`, off by up to a second and a half either way (or not at all).
fn skewed_clock(rng: &mut fastrand::Rng, start: DateTime<Utc>, skewed: &mut u64) -> ManualClock {
    let skew_ms = if rng.f64() < 0.7 {
        *skewed += 1;
        rng.i64(-1500..=1500)
    } else {
        0
    };
    ManualClock::running_from(start + chrono::Duration::milliseconds(skew_ms))
}

/// Waits until nothing is due (the engines drain); false after 15 s.
async fn drained(db: &TestDb) -> Result<bool, String> {
    for _ in 0..300 {
        let due: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cancellations WHERE next_attempt_at IS NOT NULL",
        )
        .fetch_one(&db.pool)
        .await
        .map_err(|e| e.to_string())?;
        if due == 0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}

/// Runs one history and checks the invariants; the error names the first broken one.
pub async fn run_history(seed: u64, payments: usize) -> Result<HistoryStats, String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stats = HistoryStats::default();
    let db = Arc::new(TestDb::new().await);
    let proxy = Arc::new(DbProxy::start(&db.options).await);
    let settings = settings();
    // 00:10 UTC+8 on 21 November: payments of the 20th are inside the window, of the 19th not.
    let start = at("2026-11-21T00:10:00+08:00");
    // Every instance (with its engine) and the operator's host keep their own, skewed clock.
    let clocks: Vec<Arc<ManualClock>> = (0..2)
        .map(|_| Arc::new(skewed_clock(&mut rng, start, &mut stats.skewed_clocks)))
        .collect();
    let operator_clock = Arc::new(skewed_clock(&mut rng, start, &mut stats.skewed_clocks));
    let store_direct = Store::new(db.pool.clone());
    let wallet = Arc::new(ChaosWallet {
        ledger: Mutex::new(Ledger::default()),
        rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x5eed)),
        faults_on: true.into(),
        faults: AtomicU64::new(0),
        slow: Duration::from_millis(1200),
        db: db.pool.clone(),
        nudger: store_direct.clone(),
        clock: operator_clock.clone(),
        late_success_nudges: AtomicU64::new(0),
    });
    let store_proxied =
        Store::connect_lazy(proxy.options(&db.options), 5, Duration::from_millis(500));
    let stores = [store_direct.clone(), store_proxied.clone()];
    let instances: Vec<Arc<CancelService>> = (0..2)
        .map(|i| {
            let components = Components {
                store: stores[i].clone(),
                wallet: wallet.clone(),
                clock: clocks[i].clone(),
            };
            Arc::new(cancel_service(&settings, &components).unwrap())
        })
        .collect();

    // The payments.
    let mut kinds = HashMap::new();
    for n in 0..payments {
        let id = format!("chaos-{seed}-{n}");
        let kind = KINDS[rng.usize(..KINDS.len())];
        let created: DateTime<Utc> = match kind {
            Kind::NearCutoff => at("2026-11-20T23:59:50+08:00"),
            Kind::WindowClosed | Kind::AuthorizedWindowClosed => at("2026-11-19T12:00:00+08:00"),
            _ => at("2026-11-20T12:00:00+08:00"),
        };
        let payment = |status, refunded| Payment {
            payment_request_id: id.clone(),
            payment_id: format!("w-{id}"),
            status,
            amount: money(100 + n as i64),
            created_at: created,
            refunded_minor_units: refunded,
        };
        let mut ledger = wallet.ledger.lock().unwrap();
        match kind {
            Kind::Success | Kind::NearCutoff | Kind::WindowClosed => {
                ledger
                    .payments
                    .insert(id.clone(), payment(PaymentStatus::Success, 0));
                ledger.charged.insert(id.clone(), 100 + n as i64);
            }
            Kind::Failed => {
                ledger
                    .payments
                    .insert(id.clone(), payment(PaymentStatus::Failed, 0));
            }
            Kind::Authorized | Kind::AuthorizedCaptured | Kind::AuthorizedWindowClosed => {
                ledger
                    .payments
                    .insert(id.clone(), payment(PaymentStatus::Authorized, 0));
                ledger.authorized.insert(id.clone());
                if kind == Kind::AuthorizedCaptured {
                    ledger.capturable.insert(id.clone());
                    ledger.partly_capturable.insert(id.clone());
                }
            }
            Kind::ProcessingCloses
            | Kind::ProcessingSucceedsLater
            | Kind::ProcessingAuthorizesLater
            | Kind::ClosedThenLateSuccess => {
                ledger
                    .payments
                    .insert(id.clone(), payment(PaymentStatus::Processing, 0));
                if kind == Kind::ClosedThenLateSuccess {
                    ledger.succeeds_after_close.insert(id.clone());
                }
                // Some of the later authorizations are captured by the merchant too.
                if kind == Kind::ProcessingAuthorizesLater && rng.f64() < 0.4 {
                    ledger.capturable.insert(id.clone());
                }
            }
            Kind::AlreadyRefunded => {
                ledger
                    .payments
                    .insert(id.clone(), payment(PaymentStatus::Success, 10));
                ledger.charged.insert(id.clone(), 100 + n as i64);
                ledger.merchant_refunded.insert(id.clone(), 10);
            }
            Kind::Unknown | Kind::UnknownAppearsLater | Kind::UnknownAuthorizedLater => {}
        }
        drop(ledger);
        let full = match kind {
            Kind::UnknownAuthorizedLater => payment(PaymentStatus::Authorized, 0),
            _ => payment(PaymentStatus::Success, 0),
        };
        kinds.insert(id, (kind, full));
    }

    let engine_config = EngineConfig::from_settings(&settings);
    let new_engine = |i: usize| {
        Arc::new(RefundEngine::new(
            stores[i].clone(),
            wallet.clone(),
            clocks[i].clone(),
            engine_config,
            Arc::new(tokio::sync::Notify::new()),
        ))
    };
    let (stop_engines, engines_stopped) = tokio::sync::watch::channel(false);
    let mut engines: Vec<tokio::task::JoinHandle<()>> = (0..2)
        .map(|i| tokio::spawn(new_engine(i).run(engines_stopped.clone())))
        .collect();

    // Alipay+: every id cancelled (some twice at once, some replayed), retried after U until
    // S or F; bad inputs in between.
    let answers: Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>> = Arc::default();
    let requests = Arc::new(AtomicU64::new(0));
    let mut traffic = Vec::new();
    for (n, id) in kinds.keys().cloned().enumerate() {
        let copies = if rng.f64() < 0.2 { 3 } else { 1 };
        for copy in 0..copies {
            let instance = instances[(n + copy) % instances.len()].clone();
            let answers = answers.clone();
            let requests = requests.clone();
            let delay = Duration::from_millis(rng.u64(0..400));
            let replays = rng.usize(0..3);
            let id = id.clone();
            traffic.push(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let request = CancelPaymentRequest {
                    acquirer_id: ACQUIRER_ID.into(),
                    psp_id: PSP_ID.into(),
                    payment_request_id: id.clone(),
                };
                let mut finals = 0;
                for _ in 0..400 {
                    requests.fetch_add(1, Ordering::Relaxed);
                    let answer = instance.cancel(&request).await;
                    if answer.code.status().as_str() == "U" {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    answers
                        .lock()
                        .unwrap()
                        .entry(id.clone())
                        .or_default()
                        .push(answer.body);
                    finals += 1;
                    if finals > replays {
                        return;
                    }
                }
            }));
        }
    }
    // Bad inputs: never stored.
    for n in 0..5 {
        let bad = CancelPaymentRequest {
            acquirer_id: ACQUIRER_ID.into(),
            psp_id: "someone-else".into(),
            payment_request_id: format!("bad-{seed}-{n}"),
        };
        let answer = instances[0].cancel(&bad).await;
        if answer.code.as_str() != "ACCESS_DENIED" {
            return Err(format!("a foreign pspId got {}", answer.code.as_str()));
        }
    }

    // Meanwhile: late successes (each nudged by the MPP), late payments, captures, database
    // cuts, engines killed and restarted, the operator nudging and requeueing, the wallet
    // forgetting old keys.
    let ids: Vec<String> = kinds.keys().cloned().collect();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(rng.u64(20..120))).await;
        for _ in 0..(payments / 10).max(1) {
            let id = &ids[rng.usize(..ids.len())];
            let changed = match kinds[id] {
                (Kind::ProcessingSucceedsLater, _) => wallet.succeed_later(id),
                (Kind::UnknownAppearsLater | Kind::UnknownAuthorizedLater, ref p) => {
                    wallet.pay_later(p.clone())
                }
                (Kind::ProcessingAuthorizesLater, _) => wallet.authorize_later(id),
                // Before the cancel arrives, or while the engine works on it.
                (Kind::AuthorizedCaptured, _) => {
                    wallet.capture(id);
                    false
                }
                _ => false,
            };
            // The MPP nudges the engine when a payment's outcome changes (the guard API).
            if changed && rng.f64() < 0.7 {
                let _ = store_direct.nudge(id, operator_clock.now()).await;
            }
        }
        // A ProcessingAuthorizesLater hold the merchant may capture once authorized.
        for id in &ids {
            if kinds[id].0 == Kind::ProcessingAuthorizesLater
                && wallet.ledger.lock().unwrap().capturable.contains(id)
                && rng.f64() < 0.05
            {
                wallet.capture(id);
            }
        }
        operator_acts(
            &mut rng,
            &wallet,
            &store_direct,
            &operator_clock,
            &ids,
            &mut stats,
        )
        .await;
        // The wallet keeps a key longer than any lease (a re-claim after a lost outcome comes
        // within one), but not as long as a row can wait for a person.
        stats.forgotten_keys += wallet.forget_keys_older_than(Duration::from_secs(20));
        match rng.u8(0..4) {
            0 => {
                proxy.stop();
                stats.db_cuts += 1;
                tokio::time::sleep(Duration::from_millis(rng.u64(20..200))).await;
                proxy.start_again();
            }
            1 => {
                let i = rng.usize(..engines.len());
                engines[i].abort();
                stats.engine_kills += 1;
                engines[i] = tokio::spawn(new_engine(i).run(engines_stopped.clone()));
            }
            _ => {}
        }
    }
    for t in traffic {
        t.await
            .map_err(|e| format!("an Alipay+ client died: {e}"))?;
    }

    // The faults stop; the engines drain.
    wallet.faults_on.store(false, Ordering::SeqCst);
    proxy.start_again();
    let drained_first = drained(&db).await?;
    stats.requests = requests.load(Ordering::Relaxed);
    if !drained_first {
        let _ = stop_engines.send(true);
        return Err("rows still due 15 s after the faults stopped".into());
    }
    // Every row handed to a person so far is there for a cause the wallet provoked.
    check_manual_reviews(&db, &wallet).await?;

    // Later, the wallet has forgotten every key it answered; the operator requeues every row
    // in manual_review, their causes gone; the engines drain again.
    stats.forgotten_keys += wallet.forget_keys_older_than(Duration::ZERO);
    let waiting = store_direct
        .in_state(CancellationState::ManualReview, None, 10_000)
        .await
        .map_err(|e| e.to_string())?;
    for record in &waiting.cancellations {
        store_direct
            .requeue(&record.payment_request_id, "chaos")
            .await
            .map_err(|e| e.to_string())?;
        stats.operator_actions += 1;
    }
    let drained_again = drained(&db).await?;
    let _ = stop_engines.send(true);
    for e in engines {
        e.abort();
    }
    stats.faults = wallet.faults.load(Ordering::Relaxed);
    stats.late_success_nudges = wallet.late_success_nudges.load(Ordering::Relaxed);
    {
        let ledger = wallet.ledger.lock().unwrap();
        stats.partial_captures = ledger.partial_captures;
        stats.lagged_reads = ledger.lagged_reads;
        stats.short_refunds = ledger.short_refunds.len() as u64;
    }
    if !drained_again {
        return Err("rows still due 15 s after the operator's requeue".into());
    }
    let answers = answers.lock().unwrap().clone();
    stats.coverage = check_invariants(&db, &wallet, &kinds, &answers).await?;
    stats.coverage.finished_by_requeue = waiting.cancellations.len() as u64;
    Ok(stats)
}

/// The operator, at a random moment: nudges a few rows (those a wallet call is in flight for
/// right now, so a worker holds them, and any others), requeues some `manual_review` rows one
/// by one, and sometimes all of them in bulk. Its host clock is its own.
async fn operator_acts(
    rng: &mut fastrand::Rng,
    wallet: &ChaosWallet,
    store: &Store,
    clock: &ManualClock,
    ids: &[String],
    stats: &mut HistoryStats,
) {
    let held: Vec<String> = wallet
        .ledger
        .lock()
        .unwrap()
        .in_call
        .keys()
        .cloned()
        .collect();
    let mut nudged: Vec<String> = held.into_iter().take(2).collect();
    nudged.push(ids[rng.usize(..ids.len())].clone());
    for id in nudged {
        if store.nudge(&id, clock.now()).await.is_ok() {
            stats.operator_actions += 1;
        }
    }
    if rng.f64() < 0.4
        && let Ok(page) = store
            .in_state(CancellationState::ManualReview, None, 20)
            .await
    {
        for record in page.cancellations {
            if rng.f64() < 0.5
                && store
                    .requeue(&record.payment_request_id, "chaos operator")
                    .await
                    .is_ok()
            {
                stats.operator_actions += 1;
            }
        }
    }
    if rng.f64() < 0.1 {
        let selection = RequeueSelection::new(CancellationState::ManualReview, None)
            .expect("manual_review is requeueable");
        if store
            .requeue_bulk(selection, "chaos operator", false)
            .await
            .is_ok()
        {
            stats.operator_actions += 1;
        }
    }
}

/// Every `manual_review` row is there for a cause this wallet provoked, named in its reason:
/// a junk reference, a refund of another amount, or a lookup after a capture answered from a
/// lagging read. A close and a lookup merely out of step are never one.
async fn check_manual_reviews(db: &TestDb, wallet: &ChaosWallet) -> Result<(), String> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT payment_request_id, last_error FROM cancellations WHERE state = 'manual_review'",
    )
    .fetch_all(&db.pool)
    .await
    .map_err(|e| e.to_string())?;
    let ledger = wallet.ledger.lock().unwrap();
    for (id, why) in rows {
        let why = why.ok_or(format!("{id}: manual_review without a reason"))?;
        let provoked = (why.contains("succeeded, but") && ledger.junk_references.contains(&id))
            || (why.starts_with("the wallet refunded") && ledger.short_refunds.contains(&id))
            || (why.contains("ALREADY_CAPTURED, but the lookup says AUTHORIZED")
                && ledger.stale_served.contains(&id));
        if !provoked {
            return Err(format!(
                "{id}: manual_review with nothing injected to cause it: {why}"
            ));
        }
    }
    Ok(())
}

/// What a history's authorizations came to, for the summary line: proof that every path ran.
#[derive(Debug, Default, Clone, Copy)]
pub struct Coverage {
    pub voided: u64,
    /// Holds captured before the cancel was decided: refunded with no void at all.
    pub captured_before_cancel: u64,
    /// Voids answered ALREADY_CAPTURED: refunded from the void row.
    pub captured_during_void: u64,
    /// Rows left in manual_review at the end (a refund of another amount, for a person).
    pub manual_reviews: u64,
    /// Rows the operator requeued from manual_review once their cause was gone.
    pub finished_by_requeue: u64,
}

/// The wallet's truth, copied once the history is over.
struct LedgerView {
    max_in_flight: usize,
    moves_of: HashMap<String, Vec<i64>>,
    moves_by_payment_id: HashMap<String, usize>,
    released_of: HashMap<String, Vec<uuid::Uuid>>,
    void_ids_sent: HashMap<String, HashSet<uuid::Uuid>>,
    status: HashMap<String, PaymentStatus>,
    authorized: HashSet<String>,
    captured: HashSet<String>,
    charged: HashMap<String, i64>,
    merchant_refunded: HashMap<String, i64>,
    short_refunds: HashSet<String>,
    reordered: Vec<String>,
}

impl LedgerView {
    fn of(wallet: &ChaosWallet) -> Self {
        let ledger = wallet.ledger.lock().unwrap();
        let mut moves_of: HashMap<String, Vec<i64>> = HashMap::new();
        let mut moves_by_payment_id: HashMap<String, usize> = HashMap::new();
        for m in &ledger.moves {
            moves_of
                .entry(m.payment_request_id.clone())
                .or_default()
                .push(m.amount);
            *moves_by_payment_id.entry(m.payment_id.clone()).or_default() += 1;
            let _ = m.refund_id;
        }
        let mut released_of: HashMap<String, Vec<uuid::Uuid>> = HashMap::new();
        for (void_id, pid) in &ledger.releases {
            released_of.entry(pid.clone()).or_default().push(*void_id);
        }
        Self {
            max_in_flight: ledger.max_in_flight,
            moves_of,
            moves_by_payment_id,
            released_of,
            void_ids_sent: ledger.void_ids_sent.clone(),
            status: ledger
                .payments
                .values()
                .map(|p| (p.payment_request_id.clone(), p.status))
                .collect(),
            authorized: ledger.authorized.clone(),
            captured: ledger.captured.clone(),
            charged: ledger.charged.clone(),
            merchant_refunded: ledger.merchant_refunded.clone(),
            short_refunds: ledger.short_refunds.clone(),
            reordered: ledger.reordered.clone(),
        }
    }
}

async fn check_invariants(
    db: &TestDb,
    wallet: &ChaosWallet,
    kinds: &HashMap<String, (Kind, Payment)>,
    answers: &HashMap<String, Vec<Vec<u8>>>,
) -> Result<Coverage, String> {
    let store = db.store();
    let ledger = LedgerView::of(wallet);
    let mut coverage = Coverage::default();
    if ledger.max_in_flight > 1 {
        return Err(format!(
            "a refund or void id was in {} wallet calls at once",
            ledger.max_in_flight
        ));
    }
    // No order is ever sent for a refund or void the wallet already confirmed (as recorded).
    if let Some(again) = ledger.reordered.first() {
        return Err(format!(
            "{again} ordered again after the database recorded it as confirmed ({} such orders)",
            ledger.reordered.len()
        ));
    }
    // One refund per paymentId, whatever paymentRequestIds map to it.
    if let Some((payment_id, n)) = ledger.moves_by_payment_id.iter().find(|(_, n)| **n > 1) {
        return Err(format!("paymentId {payment_id} refunded {n} times"));
    }
    let window = mpp_cancel::domain::CancellationWindow::default();
    for (id, (kind, payment)) in kinds {
        let bodies = answers
            .get(id)
            .ok_or(format!("{id}: never got a final answer"))?;
        if bodies.iter().any(|b| b != &bodies[0]) {
            return Err(format!("{id}: answers differ"));
        }
        let accepted = bodies[0].windows(3).any(|w| w == b"\"S\"");
        let record = store
            .cancellation(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or(format!("{id}: answered without a durable record"))?;
        if (record.result_status == "S") != accepted {
            return Err(format!(
                "{id} ({kind:?}): the answer {} and the record ({}, {}) disagree",
                String::from_utf8_lossy(&bodies[0]),
                record.result_code,
                record.state
            ));
        }
        let moved = ledger.moves_of.get(id).cloned().unwrap_or_default();
        if moved.len() > 1 {
            return Err(format!("{id} ({kind:?}): refunded {} times", moved.len()));
        }
        // No refund exceeds what the user was charged (net of the merchant's own refunds).
        let charged = ledger.charged.get(id).copied().unwrap_or(0)
            - ledger.merchant_refunded.get(id).copied().unwrap_or(0);
        let total: i64 = moved.iter().sum();
        if total > charged {
            return Err(format!(
                "{id} ({kind:?}): refunded {total}, the user was charged {charged}"
            ));
        }
        // Money that moved is recorded as moved, with what moved.
        if let [amount] = moved[..]
            && (record.refund_status.as_deref() != Some("succeeded")
                || record.refunded_value != Some(amount))
        {
            return Err(format!(
                "{id} ({kind:?}): the wallet refunded {amount}, the record says {:?} {:?} (state {})",
                record.refund_status, record.refunded_value, record.state
            ));
        }
        // After the operator's last requeue, only a refund of another amount stays with a
        // person: every other cause is gone.
        if record.state == "manual_review" {
            coverage.manual_reviews += 1;
            let why = record.last_error.clone().unwrap_or_default();
            if !(ledger.short_refunds.contains(id) && why.starts_with("the wallet refunded")) {
                return Err(format!(
                    "{id} ({kind:?}): still in manual_review after its cause was gone: {why}"
                ));
            }
        }
        let released = ledger.released_of.get(id).cloned().unwrap_or_default();
        let sent = ledger.void_ids_sent.get(id).cloned().unwrap_or_default();
        if sent.len() > 1 {
            return Err(format!(
                "{id} ({kind:?}): void calls under {} void ids",
                sent.len()
            ));
        }
        if released.len() > 1 {
            return Err(format!("{id}: {} holds released", released.len()));
        }
        if !released.is_empty() && !moved.is_empty() {
            return Err(format!(
                "{id} ({kind:?}): its hold released and {moved:?} refunded"
            ));
        }
        if !released.is_empty() && record.void_status.as_deref() != Some("voided") {
            return Err(format!(
                "{id} ({kind:?}): its hold was released, the record says {:?}",
                record.void_status
            ));
        }
        // Only an accepted cancellation of an authorization may void, and only through the
        // void id it stored; never a SUCCESS, FAILED, rejected or never-seen payment.
        let authorized = ledger.authorized.contains(id);
        let may_void = accepted && authorized;
        if !sent.is_empty() && !may_void {
            return Err(format!(
                "{id} ({kind:?}): a void call for a payment {} (state {})",
                if authorized {
                    "whose cancel was refused"
                } else {
                    "never authorized"
                },
                record.state
            ));
        }
        if let Some(void_id) = sent.iter().next()
            && record.void_id != Some(*void_id)
        {
            return Err(format!(
                "{id}: voided under {void_id}, its record holds {:?}",
                record.void_id
            ));
        }
        // No accepted cancellation leaves a hold in place (a lost void).
        if accepted
            && ledger.status.get(id) == Some(&PaymentStatus::Authorized)
            && record.state != "manual_review"
        {
            return Err(format!(
                "{id} ({kind:?}): accepted, state {}, and its hold is still in place",
                record.state
            ));
        }
        let captured = ledger.captured.contains(id);
        let succeeded = ledger.status.get(id) == Some(&PaymentStatus::Success);
        let expect_refund = match kind {
            Kind::Success | Kind::NearCutoff => true,
            Kind::WindowClosed | Kind::AlreadyRefunded | Kind::AuthorizedWindowClosed => {
                if accepted {
                    return Err(format!("{id} ({kind:?}): accepted"));
                }
                false
            }
            Kind::Failed | Kind::Unknown | Kind::ProcessingCloses => false,
            // Refunded exactly when the wallet really holds a success for it (a nudge is never
            // lost: the late success right after a close is refunded too).
            Kind::ProcessingSucceedsLater
            | Kind::UnknownAppearsLater
            | Kind::ClosedThenLateSuccess => succeeded,
            // A hold the merchant captured is a charge: refunded, once, for what was charged
            // (unless the merchant had refunded part of it before the cancel: then refused).
            Kind::AuthorizedCaptured | Kind::ProcessingAuthorizesLater => accepted && captured,
            Kind::Authorized | Kind::UnknownAuthorizedLater => {
                if captured {
                    return Err(format!("{id} ({kind:?}): captured, never meant to be"));
                }
                false
            }
        };
        let expect_void = accepted && authorized && !captured;
        if expect_refund {
            let short = ledger.short_refunds.contains(id) && record.state == "manual_review";
            if moved != [charged] && !short {
                return Err(format!(
                    "{id} ({kind:?}): state {}, refunded {moved:?}, owed {charged}{}",
                    record.state,
                    if captured { " (a capture)" } else { "" }
                ));
            }
            if record.state == "refunded" && record.payment_status.as_deref() != Some("SUCCESS") {
                return Err(format!(
                    "{id} ({kind:?}): refunded, its payment recorded as {:?}",
                    record.payment_status
                ));
            }
            if !released.is_empty() {
                return Err(format!("{id} ({kind:?}): captured, yet its hold released"));
            }
            if record.settlement_date != window.settlement_day(payment.created_at) {
                return Err(format!(
                    "{id} ({kind:?}): listed under {}, paid on {}",
                    record.settlement_date,
                    window.settlement_day(payment.created_at)
                ));
            }
            let listed = store
                .settlement_report(record.settlement_date, &window)
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .filter(|l| &l.payment_request_id == id)
                .count();
            if listed != 1 {
                return Err(format!("{id}: listed {listed} times in its day's report"));
            }
            if record.state == "refunded" {
                let trail = store.audit_trail(id).await.map_err(|e| e.to_string())?;
                if !trail.iter().any(|(event, _, to, d)| {
                    to.as_deref() == Some("refunded")
                        && (d["outcome"] == "succeeded" || event == "requeued")
                }) {
                    return Err(format!("{id}: refunded without an audit event saying so"));
                }
            }
            if captured {
                match record.void_status.as_deref() {
                    None => coverage.captured_before_cancel += 1,
                    Some("captured") => coverage.captured_during_void += 1,
                    Some(other) => {
                        return Err(format!(
                            "{id}: captured and refunded, its void row says {other}"
                        ));
                    }
                }
            }
        } else if !moved.is_empty() {
            return Err(format!("{id} ({kind:?}): money moved ({moved:?})"));
        }
        if expect_void {
            if record.state != "manual_review" {
                if record.state != "voided" || released.len() != 1 {
                    return Err(format!(
                        "{id} ({kind:?}): state {}, {} holds released, owed one release",
                        record.state,
                        released.len()
                    ));
                }
                if record.void_status.as_deref() != Some("voided")
                    || record.void_id != Some(released[0])
                {
                    return Err(format!(
                        "{id}: voided, its void row is {:?} {:?}, the wallet released {}",
                        record.void_id, record.void_status, released[0]
                    ));
                }
                coverage.voided += 1;
            }
            if record.settlement_date != window.settlement_day(payment.created_at) {
                return Err(format!(
                    "{id} ({kind:?}): listed under {}, authorized on {}",
                    record.settlement_date,
                    window.settlement_day(payment.created_at)
                ));
            }
        } else if !released.is_empty() || record.state == "voided" {
            return Err(format!(
                "{id} ({kind:?}): state {}, holds released {released:?}, none owed",
                record.state
            ));
        }
        if record.state == "voided" {
            let trail = store.audit_trail(id).await.map_err(|e| e.to_string())?;
            if !trail.iter().any(|(event, _, to, d)| {
                to.as_deref() == Some("voided") && (d["outcome"] == "voided" || event == "requeued")
            }) {
                return Err(format!("{id}: voided without an audit event saying so"));
            }
        }
    }
    let stored_bad: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM cancellations WHERE payment_request_id LIKE 'bad-%'",
    )
    .fetch_one(&db.pool)
    .await
    .map_err(|e| e.to_string())?;
    if stored_bad != 0 {
        return Err("a refused request was stored".into());
    }
    Ok(coverage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_invariants_hold_over_random_fault_histories() {
    let first: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let histories: u64 = std::env::var("CHAOS_HISTORIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let payments: usize = std::env::var("CHAOS_PAYMENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut total = HistoryStats::default();
    for seed in first..first + histories {
        match run_history(seed, payments).await {
            Ok(stats) => total.add(&stats),
            Err(why) => {
                println!("chaos: FAILED seed {seed}: {why}");
                failed.push(seed);
            }
        }
    }
    let c = total.coverage;
    println!(
        "chaos: {} passed, {} failed in {:.0} s ({} requests, {} wallet faults, {} engine kills, \
         {} database cuts, {} operator actions, {} late-success nudges, {} lagged reads, \
         {} partial captures, {} refunds of another amount, {} forgotten keys, {} skewed \
         clocks; {} holds released, \
         {} captured before the cancel and {} during the void refunded, {} rows finished by a \
         requeue, {} manual reviews left)",
        histories as usize - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64(),
        total.requests,
        total.faults,
        total.engine_kills,
        total.db_cuts,
        total.operator_actions,
        total.late_success_nudges,
        total.lagged_reads,
        total.partial_captures,
        total.short_refunds,
        total.forgotten_keys,
        total.skewed_clocks,
        c.voided,
        c.captured_before_cancel,
        c.captured_during_void,
        c.finished_by_requeue,
        c.manual_reviews
    );
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
