//! The money simulation: seeded, reproducible histories of many cancellations with faults
//! injected at random, checked against the money invariants once the faults stop and the
//! engine drains.
//!
//! A history: payments of every kind (SUCCESS, FAILED, PROCESSING that closes or succeeds later,
//! unknown, unknown that appears later, already refunded, created near the cut-off, outside the
//! window; card authorizations: AUTHORIZED, AUTHORIZED that the merchant captures at a random
//! moment (before the cancel, or just before a void reaches the wallet), AUTHORIZED outside the
//! window, PROCESSING or unknown that is authorized later), Alipay+ traffic (fresh cancels,
//! concurrent twins, replays, retries after U until S or F, bad inputs), two service instances (one
//! reaching the database through a proxy that is cut at random) and refund engines that are killed
//! (their futures dropped at any await, as kill -9 would) and restarted, against a wallet double
//! that errs, times out, answers PENDING, reports late successes, loses the answer after the money
//! moved or the hold was released, sends junk references and is slower than a lease.
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
use mpp_cancel::domain::{Currency, ManualClock, Money, Payment, PaymentStatus};
use mpp_cancel::engine::{EngineConfig, RefundEngine};
use mpp_cancel::protocol::CancelPaymentRequest;
use mpp_cancel::store::Store;
use mpp_cancel::wallet::{
    CloseOutcome, RefundOrder, RefundOutcome, VoidOrder, VoidOutcome, Wallet, WalletError,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

const KINDS: [Kind; 14] = [
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
];

/// The ledger of the wallet double, the truth the invariants are checked against.
#[derive(Default)]
struct Ledger {
    payments: HashMap<String, Payment>,
    /// Ids closed while unknown: a later `pay` with them is refused (the guard).
    closed_unknown: HashSet<String>,
    /// refund_id -> (paymentRequestId, amount): money moved, once per refund id.
    refunds: HashMap<uuid::Uuid, (String, i64)>,
    /// void_id -> paymentRequestId: holds released, once per void id.
    voids: HashMap<uuid::Uuid, String>,
    /// paymentRequestId -> every void id a void call named for it (one, or none, is right).
    void_ids_sent: HashMap<String, HashSet<uuid::Uuid>>,
    /// Ids that were AUTHORIZED at some moment: a release (or, once captured, a refund) is owed
    /// when their cancel is accepted.
    authorized: HashSet<String>,
    /// Authorizations the merchant captured: the hold became a charge.
    captured: HashSet<String>,
    /// Authorizations the merchant may capture at any moment, also just before a void lands.
    capturable: HashSet<String>,
    /// Ids whose refund or void answer carried a junk reference: the one cause of manual review
    /// this wallet provokes.
    junk_references: HashSet<String>,
    in_flight: HashMap<uuid::Uuid, usize>,
    max_in_flight: usize,
}

/// A wallet that keeps a correct ledger but misbehaves at random on the way.
struct ChaosWallet {
    ledger: Mutex<Ledger>,
    rng: Mutex<fastrand::Rng>,
    faults_on: std::sync::atomic::AtomicBool,
    faults: AtomicU64,
    /// Longer than the engine's call timeout: a timeout.
    slow: Duration,
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
    /// right one.
    fn answer_after_effect(
        &self,
        payment_request_id: &str,
        junk: &str,
        reference: String,
    ) -> Result<String, WalletError> {
        if self.roll(0.05) {
            return Err(WalletError::Timeout(1));
        }
        if self.roll(0.03) {
            self.ledger
                .lock()
                .unwrap()
                .junk_references
                .insert(payment_request_id.to_owned());
            return Ok(junk.to_owned());
        }
        Ok(reference)
    }

    fn pay_later(&self, payment: Payment) {
        let mut ledger = self.ledger.lock().unwrap();
        let id = payment.payment_request_id.clone();
        if !ledger.closed_unknown.contains(&id) && !ledger.payments.contains_key(&id) {
            if payment.status == PaymentStatus::Authorized {
                ledger.authorized.insert(id.clone());
            }
            ledger.payments.insert(id, payment);
        }
    }

    fn authorize_later(&self, id: &str) {
        let mut ledger = self.ledger.lock().unwrap();
        if let Some(p) = ledger.payments.get_mut(id)
            && p.status == PaymentStatus::Processing
        {
            p.status = PaymentStatus::Authorized;
            ledger.authorized.insert(id.to_owned());
        }
    }

    fn succeed_later(&self, id: &str) {
        if let Some(p) = self.ledger.lock().unwrap().payments.get_mut(id)
            && p.status == PaymentStatus::Processing
        {
            p.status = PaymentStatus::Success;
        }
    }
}

impl Ledger {
    /// The merchant captures an authorization still held; a released one cannot be captured.
    fn capture(&mut self, id: &str) {
        if let Some(p) = self.payments.get_mut(id)
            && p.status == PaymentStatus::Authorized
        {
            p.status = PaymentStatus::Success;
            self.captured.insert(id.to_owned());
        }
    }
}

#[async_trait]
impl Wallet for ChaosWallet {
    async fn payment(&self, id: &str) -> Result<Option<Payment>, WalletError> {
        self.misbehave().await?;
        Ok(self.ledger.lock().unwrap().payments.get(id).cloned())
    }

    async fn close(&self, id: &str) -> Result<CloseOutcome, WalletError> {
        self.misbehave().await?;
        if self.roll(0.1) {
            return Ok(CloseOutcome::Pending);
        }
        let mut ledger = self.ledger.lock().unwrap();
        Ok(match ledger.payments.get_mut(id) {
            None => {
                ledger.closed_unknown.insert(id.to_owned());
                CloseOutcome::Closed
            }
            Some(p) => match p.status {
                PaymentStatus::Processing => {
                    p.status = PaymentStatus::Failed;
                    CloseOutcome::Closed
                }
                PaymentStatus::Success => CloseOutcome::AlreadySucceeded,
                PaymentStatus::Authorized => CloseOutcome::AlreadyAuthorized,
                PaymentStatus::Failed => CloseOutcome::AlreadyFailed,
            },
        })
    }

    async fn void(&self, order: &VoidOrder) -> Result<VoidOutcome, WalletError> {
        let _in_flight = InFlight::enter(self, order.void_id);
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
        let mut ledger = self.ledger.lock().unwrap();
        if capture_first && ledger.capturable.contains(&order.payment_request_id) {
            ledger.capture(&order.payment_request_id);
        }
        if !ledger.voids.contains_key(&order.void_id) {
            match ledger
                .payments
                .get_mut(&order.payment_request_id)
                .map(|p| (p.status, p))
            {
                Some((PaymentStatus::Authorized, p)) => {
                    // Released: the hold took no money.
                    p.status = PaymentStatus::Failed;
                    ledger
                        .voids
                        .insert(order.void_id, order.payment_request_id.clone());
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
            "junk\u{7f}void",
            format!("void-{}", order.void_id),
        )?;
        Ok(VoidOutcome::Voided {
            reference: Some(reference),
        })
    }

    async fn refund(&self, order: &RefundOrder) -> Result<RefundOutcome, WalletError> {
        let _in_flight = InFlight::enter(self, order.refund_id);
        async {
            self.misbehave().await?;
            if self.roll(0.08) {
                return Ok(RefundOutcome::Pending);
            }
            let mut ledger = self.ledger.lock().unwrap();
            ledger
                .refunds
                .entry(order.refund_id)
                .or_insert((order.payment_request_id.clone(), order.amount.minor_units));
            if let Some(p) = ledger.payments.get_mut(&order.payment_request_id) {
                p.refunded_minor_units = order.amount.minor_units;
            }
            drop(ledger);
            // The money moved; the answer may still be lost or junk.
            let reference = self.answer_after_effect(
                &order.payment_request_id,
                "junk\u{0}reference",
                format!("ref-{}", order.refund_id),
            )?;
            Ok(RefundOutcome::Succeeded {
                amount: Some(order.amount),
                reference: Some(reference),
            })
        }
        .await
    }
}

/// A refund or void call in flight for one id; counted down also when the call is dropped
/// half-way (an engine killed mid-call).
struct InFlight<'a>(&'a ChaosWallet, uuid::Uuid);

impl<'a> InFlight<'a> {
    fn enter(wallet: &'a ChaosWallet, id: uuid::Uuid) -> Self {
        let mut ledger = wallet.ledger.lock().unwrap();
        let n = ledger.in_flight.entry(id).or_insert(0);
        *n += 1;
        let n = *n;
        ledger.max_in_flight = ledger.max_in_flight.max(n);
        Self(wallet, id)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut ledger = self.0.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = ledger.in_flight.get_mut(&self.1) {
            *n -= 1;
        }
    }
}

/// What one history did, for the summary line.
#[derive(Debug, Default)]
pub struct HistoryStats {
    pub requests: u64,
    pub faults: u64,
    pub engine_kills: u64,
    pub db_cuts: u64,
    pub coverage: Coverage,
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

/// Runs one history and checks the invariants; the error names the first broken one.
pub async fn run_history(seed: u64, payments: usize) -> Result<HistoryStats, String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let db = Arc::new(TestDb::new().await);
    let proxy = Arc::new(DbProxy::start(&db.options).await);
    let settings = settings();
    // 00:10 UTC+8 on 21 November: payments of the 20th are inside the window, of the 19th not.
    let clock = Arc::new(ManualClock::running_from(at("2026-11-21T00:10:00+08:00")));
    let wallet = Arc::new(ChaosWallet {
        ledger: Mutex::new(Ledger::default()),
        rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x5eed)),
        faults_on: true.into(),
        faults: AtomicU64::new(0),
        slow: Duration::from_millis(1200),
    });
    let store_direct = Store::new(db.pool.clone());
    let store_proxied =
        Store::connect_lazy(proxy.options(&db.options), 5, Duration::from_millis(500));
    let components = |store: Store| Components {
        store,
        wallet: wallet.clone(),
        clock: clock.clone(),
    };
    let instances: Vec<Arc<CancelService>> = [store_direct.clone(), store_proxied.clone()]
        .into_iter()
        .map(|store| Arc::new(cancel_service(&settings, &components(store)).unwrap()))
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
                }
            }
            Kind::ProcessingCloses
            | Kind::ProcessingSucceedsLater
            | Kind::ProcessingAuthorizesLater => {
                ledger
                    .payments
                    .insert(id.clone(), payment(PaymentStatus::Processing, 0));
            }
            Kind::AlreadyRefunded => {
                ledger
                    .payments
                    .insert(id.clone(), payment(PaymentStatus::Success, 10));
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
    let new_engine = |store: Store| {
        Arc::new(RefundEngine::new(
            store,
            wallet.clone(),
            clock.clone(),
            engine_config,
            Arc::new(tokio::sync::Notify::new()),
        ))
    };
    let (stop_engines, engines_stopped) = tokio::sync::watch::channel(false);
    let mut engines: Vec<tokio::task::JoinHandle<()>> = (0..2)
        .map(|i| {
            let store = if i == 0 {
                store_direct.clone()
            } else {
                store_proxied.clone()
            };
            tokio::spawn(new_engine(store).run(engines_stopped.clone()))
        })
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

    // Meanwhile: late successes, late payments, database cuts, engines killed and restarted.
    let mut stats = HistoryStats::default();
    let ids: Vec<String> = kinds.keys().cloned().collect();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(rng.u64(20..120))).await;
        for _ in 0..(payments / 10).max(1) {
            let id = &ids[rng.usize(..ids.len())];
            match kinds[id] {
                (Kind::ProcessingSucceedsLater, _) => wallet.succeed_later(id),
                (Kind::UnknownAppearsLater | Kind::UnknownAuthorizedLater, ref p) => {
                    wallet.pay_later(p.clone())
                }
                (Kind::ProcessingAuthorizesLater, _) => wallet.authorize_later(id),
                // Before the cancel arrives, or while the engine works on it.
                (Kind::AuthorizedCaptured, _) => wallet.ledger.lock().unwrap().capture(id),
                _ => {}
            }
        }
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
                let store = if i == 0 {
                    store_direct.clone()
                } else {
                    store_proxied.clone()
                };
                engines[i] = tokio::spawn(new_engine(store).run(engines_stopped.clone()));
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
    let mut drained = false;
    for _ in 0..300 {
        let due: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cancellations WHERE next_attempt_at IS NOT NULL",
        )
        .fetch_one(&db.pool)
        .await
        .map_err(|e| e.to_string())?;
        if due == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_engines.send(true);
    for e in engines {
        e.abort();
    }
    stats.requests = requests.load(Ordering::Relaxed);
    stats.faults = wallet.faults.load(Ordering::Relaxed);
    if !drained {
        return Err("rows still due 15 s after the faults stopped".into());
    }
    let answers = answers.lock().unwrap().clone();
    stats.coverage = check_invariants(&db, &wallet, &kinds, &answers).await?;
    Ok(stats)
}

/// What a history's authorizations came to, for the summary line: proof that every path ran.
#[derive(Debug, Default, Clone, Copy)]
pub struct Coverage {
    pub voided: u64,
    /// Holds captured before the cancel was decided: refunded with no void at all.
    pub captured_before_cancel: u64,
    /// Voids answered ALREADY_CAPTURED: refunded from the void row.
    pub captured_during_void: u64,
    pub manual_reviews: u64,
}

/// The wallet's truth, copied once the history is over.
struct LedgerView {
    max_in_flight: usize,
    refunds_of: HashMap<String, Vec<i64>>,
    released_of: HashMap<String, Vec<uuid::Uuid>>,
    void_ids_sent: HashMap<String, HashSet<uuid::Uuid>>,
    status: HashMap<String, PaymentStatus>,
    authorized: HashSet<String>,
    captured: HashSet<String>,
    junk_references: HashSet<String>,
}

impl LedgerView {
    fn of(wallet: &ChaosWallet) -> Self {
        let ledger = wallet.ledger.lock().unwrap();
        let mut refunds_of: HashMap<String, Vec<i64>> = HashMap::new();
        for (pid, amount) in ledger.refunds.values() {
            refunds_of.entry(pid.clone()).or_default().push(*amount);
        }
        let mut released_of: HashMap<String, Vec<uuid::Uuid>> = HashMap::new();
        for (void_id, pid) in &ledger.voids {
            released_of.entry(pid.clone()).or_default().push(*void_id);
        }
        Self {
            max_in_flight: ledger.max_in_flight,
            refunds_of,
            released_of,
            void_ids_sent: ledger.void_ids_sent.clone(),
            status: ledger
                .payments
                .values()
                .map(|p| (p.payment_request_id.clone(), p.status))
                .collect(),
            authorized: ledger.authorized.clone(),
            captured: ledger.captured.clone(),
            junk_references: ledger.junk_references.clone(),
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
        // manual_review is terminal and allowed, but only for a cause this wallet provoked.
        if record.state == "manual_review" {
            coverage.manual_reviews += 1;
            if record.last_error.is_none() {
                return Err(format!("{id}: manual_review without a reason"));
            }
            if !ledger.junk_references.contains(id) {
                return Err(format!(
                    "{id} ({kind:?}): manual_review with nothing injected to cause it: {}",
                    record.last_error.as_deref().unwrap_or_default()
                ));
            }
        }
        let moved = ledger.refunds_of.get(id).cloned().unwrap_or_default();
        if moved.len() > 1 {
            return Err(format!("{id}: refunded {} times", moved.len()));
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
        let expect_refund = match kind {
            Kind::Success | Kind::NearCutoff => true,
            Kind::WindowClosed | Kind::AlreadyRefunded | Kind::AuthorizedWindowClosed => {
                if accepted {
                    return Err(format!("{id} ({kind:?}): accepted"));
                }
                false
            }
            Kind::Failed | Kind::Unknown | Kind::ProcessingCloses => false,
            // Refunded exactly when the wallet really holds a success for it.
            Kind::ProcessingSucceedsLater | Kind::UnknownAppearsLater => {
                ledger.status.get(id) == Some(&PaymentStatus::Success)
            }
            // A hold the merchant captured is a charge: refunded, once, in full.
            Kind::AuthorizedCaptured => captured,
            Kind::Authorized | Kind::ProcessingAuthorizesLater | Kind::UnknownAuthorizedLater => {
                if captured {
                    return Err(format!("{id} ({kind:?}): captured, never meant to be"));
                }
                false
            }
        };
        let expect_void = accepted && authorized && !captured;
        if expect_refund {
            if moved != [payment.amount.minor_units] && record.state != "manual_review" {
                return Err(format!(
                    "{id} ({kind:?}): state {}, refunded {moved:?}, owed {}",
                    record.state, payment.amount.minor_units
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
                if !trail.iter().any(|(_, _, to, d)| {
                    to.as_deref() == Some("refunded") && d["outcome"] == "succeeded"
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
            if !trail
                .iter()
                .any(|(_, _, to, d)| to.as_deref() == Some("voided") && d["outcome"] == "voided")
            {
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
    let mut failed = Vec::new();
    let mut total = HistoryStats::default();
    for seed in first..first + histories {
        match run_history(seed, payments).await {
            Ok(stats) => {
                total.requests += stats.requests;
                total.faults += stats.faults;
                total.engine_kills += stats.engine_kills;
                total.db_cuts += stats.db_cuts;
                let (t, c) = (&mut total.coverage, stats.coverage);
                t.voided += c.voided;
                t.captured_before_cancel += c.captured_before_cancel;
                t.captured_during_void += c.captured_during_void;
                t.manual_reviews += c.manual_reviews;
            }
            Err(why) => {
                println!("chaos: FAILED seed {seed}: {why}");
                failed.push(seed);
            }
        }
    }
    let c = total.coverage;
    println!(
        "chaos: {} passed, {} failed ({} requests, {} wallet faults, {} engine kills, {} database cuts; \
         {} holds released, {} captured before the cancel and {} during the void refunded, \
         {} manual reviews)",
        histories as usize - failed.len(),
        failed.len(),
        total.requests,
        total.faults,
        total.engine_kills,
        total.db_cuts,
        c.voided,
        c.captured_before_cancel,
        c.captured_during_void,
        c.manual_reviews
    );
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
