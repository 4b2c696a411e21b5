//! The failover drill (issue 11; DESIGN.md, "Beyond one machine"), with real PostgreSQL
//! replication on this machine.
//!
//! A primary and a streaming-replication standby (`pg_basebackup`; synchronous through
//! `synchronous_standby_names` + `synchronous_commit = on`, or asynchronous for the variant that
//! shows why not), a TCP forwarder in front (the one address the service sees, like HAProxy or a
//! managed endpoint: moving it closes the old sessions), the real `mpp-cancel` binary with the
//! demo wallet, and a burst of signed cancels retried as Alipay+ does (the same body until `S` or
//! `F`). The primary's processes are killed with SIGKILL mid-burst, the standby is promoted, the
//! forwarder is moved, and the burst goes on until every id has a final answer. Then, on the new
//! primary: every `S` has its cancellation (byte for byte), every refund happened exactly once at
//! the demo ledger, and the same service process is still serving.
//!
//! The suite runs the synchronous and the read-only variants with a small burst when the
//! PostgreSQL server binaries are installed. `scripts/ha-drill` runs [`drill_from_environment`]
//! with a bigger burst, or the asynchronous variant, and prints the report.

mod common;

use common::{ACQUIRER_ID, ServiceProcess};

/// The drill runs under the production rules: real-looking ids, not the samples.
const DRILL_PSP_ID: &str = "2188000000000077";
const DRILL_CLIENT_ID: &str = "HA_DRILL_CLIENT";
use futures_util::StreamExt;
use mpp_cancel::protocol::keys::GeneratedKeyPair;
use mpp_cancel::sim::{SimRequest, send_cancel_with};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::{Notify, watch};

/// How the standby replicates, and where the endpoint points before promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Synchronous standby: kill, promote, move the endpoint. Nothing may be lost.
    Sync,
    /// Asynchronous standby: the same, but S answers may be lost; counted, not failed on.
    Async,
    /// Synchronous standby; the endpoint moves to the standby before it is promoted: only U
    /// while it is read-only, then recovery after promotion.
    ReadOnly,
}

impl Variant {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "sync" => Some(Self::Sync),
            "async" => Some(Self::Async),
            "read-only" => Some(Self::ReadOnly),
            _ => None,
        }
    }

    fn synchronous(self) -> bool {
        self != Self::Async
    }
}

#[derive(Debug, Clone, Copy)]
struct DrillConfig {
    variant: Variant,
    payments: usize,
    /// Cancels in flight at once.
    concurrency: usize,
    /// The primary dies once this many ids have a final answer.
    kill_after: usize,
    /// Read-only variant: how long the endpoint stays on the unpromoted standby.
    read_only_hold: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_to_a_synchronous_standby_loses_no_promise() {
    let Some(report) = run_if_postgres(DrillConfig {
        variant: Variant::Sync,
        payments: 120,
        concurrency: 12,
        kill_after: 40,
        read_only_hold: Duration::ZERO,
    })
    .await
    else {
        return;
    };
    assert_eq!(report.violations, Vec::<String>::new());
    assert_eq!(report.lost_promises, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoint_on_the_standby_answers_only_u_until_promotion() {
    let Some(report) = run_if_postgres(DrillConfig {
        variant: Variant::ReadOnly,
        payments: 120,
        concurrency: 12,
        kill_after: 40,
        read_only_hold: Duration::from_secs(3),
    })
    .await
    else {
        return;
    };
    assert_eq!(report.violations, Vec::<String>::new());
    assert!(
        report.read_only_answers > 0,
        "requests reached the service while the endpoint was on the standby"
    );
}

/// `scripts/ha-drill`: HA_DRILL_VARIANT (sync | async | read-only), HA_DRILL_PAYMENTS,
/// HA_DRILL_CONCURRENCY. Fails on any violation; the async variant's lost promises are reported,
/// not failed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run by scripts/ha-drill"]
async fn drill_from_environment() {
    let variant = std::env::var("HA_DRILL_VARIANT").unwrap_or_else(|_| "sync".into());
    let variant = Variant::parse(&variant)
        .unwrap_or_else(|| panic!("HA_DRILL_VARIANT {variant:?}: sync, async or read-only"));
    let number = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .map(|v| {
                v.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| panic!("{name}={v:?} is not a positive number"))
            })
            .unwrap_or(default)
    };
    let payments = number("HA_DRILL_PAYMENTS", 1000);
    let concurrency = number("HA_DRILL_CONCURRENCY", 32);
    let report = run_if_postgres(DrillConfig {
        variant,
        payments,
        concurrency,
        kill_after: payments / 3,
        read_only_hold: Duration::from_secs(5),
    })
    .await
    .expect("the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) are needed");
    assert_eq!(report.violations, Vec::<String>::new());
}

/// What a drill found.
#[derive(Debug)]
struct DrillReport {
    violations: Vec<String>,
    lost_promises: usize,
    read_only_answers: usize,
}

async fn run_if_postgres(config: DrillConfig) -> Option<DrillReport> {
    let Some(bindir) = postgres_bindir() else {
        eprintln!("ha drill skipped: no PostgreSQL server binaries on this machine");
        return None;
    };
    Some(run(config, bindir).await)
}

/// One answer as the simulated Alipay+ saw it.
#[derive(Debug, Clone)]
struct Exchange {
    id: String,
    sent: Instant,
    received: Instant,
    /// `S`, `F`, `U`, or `-` when no answer came (connection refused, timeout).
    status: String,
    body: Vec<u8>,
    signature_ok: bool,
}

async fn run(config: DrillConfig, bindir: PathBuf) -> DrillReport {
    let started = Instant::now();
    let site = Site::new(bindir);
    let primary = site.primary(config.variant.synchronous());
    let standby = site.standby(&primary);
    standby
        .wait_replicating(&primary, config.variant.synchronous())
        .await;

    // The schema and the demo payments, on the primary (replicated like everything else).
    let mut db = connect(&primary.sock, "postgres").await;
    sqlx::query("CREATE DATABASE mpp_cancel")
        .execute(&mut db)
        .await
        .unwrap();
    let mut db = connect(&primary.sock, "mpp_cancel").await;
    mpp_cancel::store::MIGRATOR.run(&mut db).await.unwrap();
    sqlx::query(
        r#"INSERT INTO demo_payments (payment_request_id, payment_id, status, amount_value, currency, created_at)
           SELECT 'ha-' || i, 'demo-ha-' || i, 'SUCCESS', 1000 + i, 'JPY', now()
             FROM generate_series(1, $1) AS i"#,
    )
    .bind(config.payments as i64)
    .execute(&mut db)
    .await
    .unwrap();
    drop(db);
    let ids: Vec<String> = (1..=config.payments).map(|i| format!("ha-{i}")).collect();

    let endpoint = Forwarder::start(primary.sock.clone()).await;
    let alipay = GeneratedKeyPair::generate_rsa_2048().unwrap();
    let mpp = GeneratedKeyPair::generate_rsa_2048().unwrap();
    let service = ServiceProcess::start(
        &format!("postgres://postgres@{}/mpp_cancel", endpoint.addr),
        &[
            // Production rules, the demo wallet allowed explicitly (a drill moves no real money).
            ("APP_ENV", "production".into()),
            ("MPP_CANCEL__WALLET__ALLOW_DEMO", "true".into()),
            ("MPP_CANCEL__ALIPAYPLUS__PSP_ID", DRILL_PSP_ID.into()),
            ("MPP_CANCEL__ALIPAYPLUS__CLIENT_ID", DRILL_CLIENT_ID.into()),
            ("MPP_CANCEL__ALIPAYPLUS__VERIFY_SIGNATURES", "true".into()),
            (
                "MPP_CANCEL__ALIPAYPLUS__PUBLIC_KEYS__1",
                alipay.public_base64(),
            ),
            ("MPP_CANCEL__ALIPAYPLUS__PRIVATE_KEY", mpp.private_base64()),
            ("MPP_CANCEL__ALIPAYPLUS__KEY_VERSION", "1".into()),
            ("MPP_CANCEL__DATABASE__MAX_CONNECTIONS", "10".into()),
        ],
    );
    wait_until_up(&service).await;
    println!(
        "ha drill ({:?}): primary + {} standby up, service up, {:.1}s",
        config.variant,
        if config.variant.synchronous() {
            "synchronous"
        } else {
            "asynchronous"
        },
        started.elapsed().as_secs_f64()
    );

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(8)) // Alipay+'s wait for an answer
        .build()
        .unwrap();
    let template = SimRequest {
        url: service.cancel_url(),
        client_id: DRILL_CLIENT_ID.into(),
        acquirer_id: ACQUIRER_ID.into(),
        psp_id: DRILL_PSP_ID.into(),
        payment_request_id: String::new(),
        alipay_private_key: alipay.private_key().unwrap(),
        key_version: "1".into(),
        mpp_public_key: Some(mpp.public_key().unwrap()),
    };
    let log: Arc<Mutex<Vec<Exchange>>> = Arc::default();
    let finals = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Notify::new());
    let give_up = Instant::now() + Duration::from_secs(120);

    let burst = futures_util::stream::iter(ids.clone())
        .map(|id| {
            let (http, log, finals, progress) =
                (http.clone(), log.clone(), finals.clone(), progress.clone());
            let request = SimRequest {
                payment_request_id: id,
                ..template.clone()
            };
            async move {
                settle(&http, &request, &log, give_up).await;
                finals.fetch_add(1, Ordering::SeqCst);
                progress.notify_waiters();
            }
        })
        .buffer_unordered(config.concurrency)
        .collect::<Vec<()>>();

    let failover = async {
        while finals.load(Ordering::SeqCst) < config.kill_after {
            let _ = tokio::time::timeout(Duration::from_millis(20), progress.notified()).await;
        }
        let killed_at = Instant::now();
        tokio::task::block_in_place(|| primary.kill_9());
        let mut moved_to_standby = None;
        let mut readiness = Vec::new();
        if config.variant == Variant::ReadOnly {
            endpoint.point_at(standby.sock.clone());
            moved_to_standby = Some(Instant::now());
            tokio::time::sleep(config.read_only_hold / 2).await;
            readiness.push(("standby", ready_reason(&http, &service).await));
            tokio::time::sleep(config.read_only_hold / 2).await;
        } else {
            readiness.push(("no primary", ready_reason(&http, &service).await));
        }
        let promoting = Instant::now();
        // Blocking (pg_ctl waits for the promotion): keep the burst and the endpoint running.
        tokio::task::block_in_place(|| site.promote(&standby));
        let promoted = Instant::now();
        if config.variant != Variant::ReadOnly {
            endpoint.point_at(standby.sock.clone());
        }
        Timeline {
            killed_at,
            moved_to_standby,
            promoting,
            promoted,
            readiness,
        }
    };
    let (_, timeline) = tokio::join!(burst, failover);
    let answered_at = Instant::now();
    let exchanges = std::mem::take(&mut *log.lock().unwrap());

    let mut violations = Vec::new();
    let mut violation = |v: String| {
        println!("VIOLATION: {v}");
        violations.push(v);
    };
    let mut read_only_answers = 0;

    // Answers before and after the kill.
    let tally = |filter: &dyn Fn(&Exchange) -> bool| -> String {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for e in exchanges.iter().filter(|e| filter(e)) {
            *counts.entry(e.status.as_str()).or_default() += 1;
        }
        ["S", "F", "U", "-"]
            .iter()
            .map(|s| format!("{s}={}", counts.get(s).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "answers before the kill: {}",
        tally(&|e| e.received < timeline.killed_at)
    );
    println!(
        "answers after the kill:  {}  (\"-\": no answer, e.g. the service's 8 s budget)",
        tally(&|e| e.received >= timeline.killed_at)
    );
    for (phase, reason) in &timeline.readiness {
        println!("/readyz with {phase}: {reason}");
    }
    if let Some(moved) = timeline.moved_to_standby {
        let on_standby: Vec<&Exchange> = exchanges
            .iter()
            .filter(|e| e.sent >= moved && e.received < timeline.promoting)
            .collect();
        read_only_answers = on_standby.len();
        println!(
            "answers while the endpoint was on the standby: {}",
            tally(&|e| e.sent >= moved && e.received < timeline.promoting)
        );
        for e in on_standby.iter().filter(|e| e.status != "U") {
            violation(format!(
                "{}: {} while the endpoint was on the read-only standby",
                e.id, e.status
            ));
        }
        if !timeline
            .readiness
            .iter()
            .any(|(_, reason)| reason.contains("read-only"))
        {
            violation("/readyz did not say the database is read-only".into());
        }
    }
    for e in exchanges
        .iter()
        .filter(|e| e.status != "-" && !e.signature_ok)
    {
        violation(format!("{}: answer without a valid signature", e.id));
    }

    let mut final_answer: HashMap<&str, &Exchange> = HashMap::new();
    for e in exchanges
        .iter()
        .filter(|e| e.status == "S" || e.status == "F")
    {
        final_answer.entry(e.id.as_str()).or_insert(e);
    }
    for id in &ids {
        match final_answer.get(id.as_str()) {
            None => violation(format!("{id}: no final answer")),
            Some(e) if e.status == "F" => {
                violation(format!("{id}: F for a payment inside its window"))
            }
            Some(_) => {}
        }
    }

    // The promises, on the new primary.
    let mut db = connect(&standby.sock, "mpp_cancel").await;
    let stored: HashMap<String, (String, Vec<u8>)> =
        sqlx::query_as::<_, (String, String, Vec<u8>)>(
            "SELECT payment_request_id, result_status, response_body FROM cancellations",
        )
        .fetch_all(&mut db)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, status, body)| (id, (status, body)))
        .collect();
    let mut lost = Vec::new();
    for e in final_answer.values().filter(|e| e.status == "S") {
        match stored.get(&e.id) {
            Some((status, body)) if status == "S" && *body == e.body => {}
            Some((status, _)) => violation(format!(
                "{}: answered S, stored {status} with another body",
                e.id
            )),
            None => lost.push(e.id.clone()),
        }
    }
    for (id, (status, _)) in &stored {
        if status == "F" {
            violation(format!("{id}: a stored F"));
        }
    }
    lost.sort();
    println!(
        "S answers lost (answered S, no cancellation on the new primary): {}{}",
        lost.len(),
        if lost.is_empty() {
            String::new()
        } else {
            format!(" {lost:?}")
        }
    );
    if !lost.is_empty() && config.variant.synchronous() {
        violation(format!(
            "{} S answers lost with a synchronous standby",
            lost.len()
        ));
    }

    // The refund engine resumed on the new primary: wait for it, then count refunds per payment.
    let drained = wait_for_engine(&mut db, Duration::from_secs(60)).await;
    if !drained {
        violation("the refund engine did not finish its work on the new primary".into());
    }
    let per_payment: Vec<(String, i64, i64, i64, Option<String>)> = sqlx::query_as(
        r#"SELECT p.payment_request_id, p.amount_value, p.refunded_value,
                  (SELECT count(*) FROM demo_refunds r WHERE r.payment_request_id = p.payment_request_id),
                  c.state
             FROM demo_payments p LEFT JOIN cancellations c USING (payment_request_id)"#,
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut histogram: HashMap<i64, usize> = HashMap::new();
    for (id, amount, refunded, refunds, state) in &per_payment {
        *histogram.entry(*refunds).or_default() += 1;
        let promised = final_answer
            .get(id.as_str())
            .is_some_and(|e| e.status == "S");
        let lost_promise = lost.contains(id);
        match (promised && !lost_promise, *refunds) {
            (true, 1) if refunded == amount && state.as_deref() == Some("refunded") => {}
            (true, n) => violation(format!(
                "{id}: S answered, {n} refunds, {refunded} of {amount} refunded, state {state:?}"
            )),
            (false, 0) => {}
            (false, n) => violation(format!("{id}: {n} refunds without a kept promise")),
        }
    }
    let mut histogram: Vec<_> = histogram.into_iter().collect();
    histogram.sort();
    println!(
        "refunds per payment at the demo ledger on the new primary: {}",
        histogram
            .iter()
            .map(|(refunds, payments)| format!("{refunds} refund(s): {payments} payments"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let first_s = exchanges
        .iter()
        .filter(|e| e.status == "S" && e.received >= timeline.promoting)
        .map(|e| e.received)
        .min();
    match first_s {
        Some(at) => println!(
            "recovery: promotion took {:.2}s, promotion -> first S {:.2}s",
            timeline
                .promoted
                .duration_since(timeline.promoting)
                .as_secs_f64(),
            at.duration_since(timeline.promoting).as_secs_f64()
        ),
        None => violation("no S after the promotion".into()),
    }
    let mut service = service;
    match service.child.try_wait() {
        Ok(None) => println!("the service process served throughout (no restart)"),
        other => violation(format!("the service process exited: {other:?}")),
    }
    println!(
        "drill done in {:.1}s (burst settled {:.1}s after the kill); violations: {}",
        started.elapsed().as_secs_f64(),
        answered_at.duration_since(timeline.killed_at).as_secs_f64(),
        violations.len()
    );
    if !violations.is_empty() {
        println!("service log:\n{}", service.log_text());
    }
    DrillReport {
        violations,
        lost_promises: lost.len(),
        read_only_answers,
    }
}

struct Timeline {
    killed_at: Instant,
    moved_to_standby: Option<Instant>,
    promoting: Instant,
    promoted: Instant,
    readiness: Vec<(&'static str, String)>,
}

/// Sends one id's cancel until it has a final answer, as Alipay+ does: the same body again after
/// a `U` or no answer.
async fn settle(
    http: &reqwest::Client,
    request: &SimRequest,
    log: &Mutex<Vec<Exchange>>,
    give_up: Instant,
) {
    loop {
        let sent = Instant::now();
        let outcome = send_cancel_with(http, request).await;
        let received = Instant::now();
        let exchange = match &outcome {
            Ok(o) => Exchange {
                id: request.payment_request_id.clone(),
                sent,
                received,
                status: o.result_status().unwrap_or("?").to_owned(),
                body: o.raw_body.clone(),
                signature_ok: o.signature_verified == Some(true),
            },
            Err(_) => Exchange {
                id: request.payment_request_id.clone(),
                sent,
                received,
                status: "-".into(),
                body: Vec::new(),
                signature_ok: false,
            },
        };
        let done = exchange.status == "S" || exchange.status == "F";
        log.lock().unwrap().push(exchange);
        if done || Instant::now() > give_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_until_up(service: &ServiceProcess) {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http
            .get(format!("{}/readyz", service.internal))
            .send()
            .await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service did not come up:\n{}", service.log_text());
}

async fn ready_reason(http: &reqwest::Client, service: &ServiceProcess) -> String {
    match http
        .get(format!("{}/readyz", service.internal))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            format!("{status} {}", body["reason"].as_str().unwrap_or("(ready)"))
        }
        Err(e) => format!("no answer: {e}"),
    }
}

/// True once no cancellation has work left.
async fn wait_for_engine(db: &mut PgConnection, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cancellations WHERE next_attempt_at IS NOT NULL",
        )
        .fetch_one(&mut *db)
        .await
        .unwrap();
        if left == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn connect(sock: &Path, database: &str) -> PgConnection {
    let options = PgConnectOptions::new()
        .socket(sock)
        .username("postgres")
        .database(database)
        .disable_statement_logging();
    PgConnection::connect_with(&options).await.unwrap()
}

/// The endpoint the service connects to: TCP in, the current node's unix socket out. Moving it
/// closes every session to the old node, as HAProxy's `on-marked-down shutdown-sessions` does.
struct Forwarder {
    addr: std::net::SocketAddr,
    target: watch::Sender<PathBuf>,
}

impl Forwarder {
    async fn start(target: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (target, _) = watch::channel(target);
        let sessions = target.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut moved = sessions.subscribe();
                let node = moved.borrow_and_update().clone();
                tokio::spawn(async move {
                    let Ok(mut upstream) = UnixStream::connect(node.join(".s.PGSQL.5432")).await
                    else {
                        return; // the node is down: the client sees its connection closed
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = moved.changed() => {}
                    }
                });
            }
        });
        Self { addr, target }
    }

    fn point_at(&self, node: PathBuf) {
        self.target.send_replace(node);
    }
}

/// A scratch directory holding both clusters; removed (clusters stopped) on drop.
struct Site {
    dir: PathBuf,
    bindir: PathBuf,
    /// As root, the clusters run as `postgres` (PostgreSQL refuses root).
    as_postgres: bool,
    nodes: Mutex<Vec<PathBuf>>,
}

struct Node {
    data: PathBuf,
    sock: PathBuf,
    name: &'static str,
}

impl Site {
    fn new(bindir: PathBuf) -> Self {
        // Short: a unix socket path must fit in ~107 bytes.
        let dir = PathBuf::from(format!(
            "/tmp/mppc-ha-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = is_root();
        if as_postgres {
            must(Command::new("chown").arg("postgres").arg(&dir));
        }
        Self {
            dir,
            bindir,
            as_postgres,
            nodes: Mutex::default(),
        }
    }

    /// `program` of the PostgreSQL binaries, run as the clusters' owner.
    fn pg(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.current_dir("/");
        command
    }

    fn node(&self, name: &'static str) -> Node {
        let node = Node {
            data: self.dir.join(format!("{name}-data")),
            sock: self.dir.join(format!("{name}-sock")),
            name,
        };
        for d in [&node.data, &node.sock] {
            std::fs::create_dir_all(d).unwrap();
            if self.as_postgres {
                must(Command::new("chown").arg("postgres").arg(d));
            }
        }
        must(Command::new("chmod").arg("700").arg(&node.data));
        self.nodes.lock().unwrap().push(node.data.clone());
        node
    }

    fn start(&self, node: &Node, settings: &str) {
        let log = self.dir.join(format!("{}.log", node.name));
        let ok = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(&node.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-k {} {settings}", node.sock.display()))
            .arg("start")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "{} did not start: {}",
            node.name,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn primary(&self, synchronous: bool) -> Node {
        let node = self.node("primary");
        must(self.pg("initdb").arg("-D").arg(&node.data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]));
        append(
            &node.data.join("postgresql.conf"),
            "listen_addresses = ''\nmax_connections = 100\nshared_buffers = 32MB\n",
        );
        // Only the primary waits for the standby; the settings are not copied to the standby,
        // which would otherwise wait forever for a standby of its own after promotion.
        self.start(
            &node,
            if synchronous {
                "-c synchronous_standby_names=standby -c synchronous_commit=on"
            } else {
                "-c synchronous_commit=on"
            },
        );
        node
    }

    /// `pg_ctl promote`: returns once the standby takes writes.
    fn promote(&self, node: &Node) {
        must(
            self.pg("pg_ctl")
                .arg("-D")
                .arg(&node.data)
                .args(["-w", "-t", "60", "promote"]),
        );
    }

    fn standby(&self, primary: &Node) -> Node {
        let node = self.node("standby");
        must(
            self.pg("pg_basebackup")
                .arg("-D")
                .arg(&node.data)
                .arg("-h")
                .arg(&primary.sock)
                .args(["-U", "postgres", "-X", "stream", "--no-sync"]),
        );
        append(
            &node.data.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host={} user=postgres application_name=standby'\n",
                primary.sock.display()
            ),
        );
        append(&node.data.join("standby.signal"), "");
        self.start(&node, "");
        node
    }
}

impl Node {
    /// Waits until the primary streams to the standby (and counts it as synchronous).
    async fn wait_replicating(&self, primary: &Node, synchronous: bool) {
        let mut db = connect(&primary.sock, "postgres").await;
        let wanted = if synchronous { "sync" } else { "async" };
        for _ in 0..300 {
            let state: Option<String> = sqlx::query_scalar(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'",
            )
            .fetch_optional(&mut db)
            .await
            .unwrap();
            if state.as_deref() == Some(wanted) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the standby did not become a {wanted} standby");
    }

    /// The machine dies: SIGKILL to the postmaster and every child of it at once, so no backend
    /// finishes a commit or sends WAL after the kill.
    fn kill_9(&self) {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap();
        let postmaster: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let mut pids = vec![postmaster];
        pids.extend(children_of(postmaster));
        let status = Command::new("kill")
            .arg("-9")
            .args(pids.iter().map(u32::to_string))
            .status()
            .unwrap();
        assert!(status.success(), "kill -9 {pids:?}");
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        for data in self.nodes.lock().unwrap().iter() {
            if data.join("postmaster.pid").exists() {
                let _ = self
                    .pg("pg_ctl")
                    .arg("-D")
                    .arg(data)
                    .args(["-m", "immediate", "-w", "stop"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The processes whose parent is `parent` (from /proc).
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    // Files written as root in the owner's directory must stay readable by the owner.
    if is_root() {
        must(Command::new("chown").arg("postgres").arg(path));
    }
}

fn must(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The directory of initdb, pg_ctl and pg_basebackup, as scripts/with-pg finds it.
fn postgres_bindir() -> Option<PathBuf> {
    let usable = |d: &Path| {
        ["initdb", "pg_ctl", "pg_basebackup"]
            .iter()
            .all(|p| d.join(p).is_file())
    };
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && usable(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| usable(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| usable(d))
}
