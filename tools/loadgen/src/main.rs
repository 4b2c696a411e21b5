//! `loadgen`: plays Alipay+ against a running mpp-cancel, for the benchmark (`scripts/bench`).
//!
//! Signed `cancelPayment` requests at a fixed concurrency for a fixed time, each connection
//! kept alive and carrying one request at a time (closed loop). Every request is built and
//! signed before the timed window, so the generator spends no RSA work while it measures and
//! competes as little as possible with the service for the CPU. Every response's result is
//! checked (fresh and replayed cancels: `SUCCESS`, byte for byte the stored answer; a request
//! with a corrupted signature: `INVALID_SIGNATURE`), and the response signature is verified on
//! every Nth response. Latency goes into an HDR histogram.
//!
//! With `--service-pid` and `--postgres-pid` (Linux) it also samples the service's RSS every
//! 100 ms and measures, over the timed window, the CPU time of the service, of PostgreSQL (the
//! postmaster and all its processes), of itself and of the whole machine.
//!
//! Output: one JSON object on stdout (flat: numbers, strings and nulls, for the script) and
//! lines for people on stderr.
//!
//! ```sh
//! loadgen --url http://127.0.0.1:8080/aps/api/v1/payments/cancelPayment \
//!   --mode fresh --id-prefix bench- --id-start 1 --id-count 50000 \
//!   --concurrency 16 --duration-secs 20 \
//!   --alipay-private-key alipay.pem --mpp-public-key mpp.pub.pem --verify-sample 100
//! ```
//!
//! Two HTTP clients: `hyper` (default), hyper 1's HTTP/1.1 connection API, one kept-alive
//! connection per worker with its headers built before the window, so the generator costs the
//! machine little and parses HTTP with a maintained parser; `reqwest`, the well-known client
//! with its pool, as a cross-check.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;

use mpp_cancel::protocol::keys::{PrivateKey, PublicKey, load_private_key, load_public_key};
use mpp_cancel::protocol::signature::{format_signature_header, signed_content};
use mpp_cancel::protocol::{ResultCode, result_body};
use mpp_cancel::sim::{alipay_request_time, cancel_body, check_response_signature};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Each request cancels a payment not cancelled before (one id per request, never reused).
    Fresh,
    /// Requests for ids already answered, cycled for the whole window.
    Replay,
    /// Fresh cancels and replays mixed (--replay-percent), each id used once.
    Mix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClientKind {
    /// hyper's HTTP/1.1 connection, kept alive, one per worker.
    Hyper,
    /// reqwest with a connection pool.
    Reqwest,
}

/// Where paymentRequestIds come from: a file (one per line) or `{prefix}{n}` for n in a range.
#[derive(Debug, Clone, clap::Args)]
struct IdArgs {
    /// File with one paymentRequestId per line (wins over the prefix/range).
    #[arg(long)]
    ids_file: Option<PathBuf>,
    /// Ids are `{prefix}{n}` for n in id-start .. id-start + id-count.
    #[arg(long, default_value = "bench-")]
    id_prefix: String,
    #[arg(long, default_value_t = 1)]
    id_start: u64,
    #[arg(long, default_value_t = 0)]
    id_count: u64,
}

/// The replay ids of the mix.
#[derive(Debug, Clone, clap::Args)]
struct ReplayIdArgs {
    /// Mix only: file with one already-answered paymentRequestId per line.
    #[arg(long)]
    replay_ids_file: Option<PathBuf>,
    /// Mix only: replay ids are `{prefix}{n}` (same rules as --id-prefix).
    #[arg(long, default_value = "bench-")]
    replay_id_prefix: String,
    #[arg(long, default_value_t = 1)]
    replay_id_start: u64,
    #[arg(long, default_value_t = 0)]
    replay_id_count: u64,
}

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Plays Alipay+: signed cancelPayment requests at a fixed concurrency for a fixed time"
)]
struct Args {
    /// The MPP's cancelPayment URL (http only); its path is what gets signed.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080/aps/api/v1/payments/cancelPayment"
    )]
    url: String,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Length of the timed window, in seconds.
    #[arg(long, default_value_t = 20.0)]
    duration_secs: f64,
    #[arg(long, value_enum, default_value = "fresh")]
    mode: Mode,
    #[command(flatten)]
    ids: IdArgs,
    #[command(flatten)]
    replay_ids: ReplayIdArgs,
    /// Mix: share of requests that are replays, in percent.
    #[arg(long, default_value_t = 10.0)]
    replay_percent: f64,
    /// Share of requests whose signature is corrupted (expect INVALID_SIGNATURE), in percent.
    #[arg(long, default_value_t = 0.0)]
    bad_signature_percent: f64,
    /// At most this many requests are prepared (default: one per id; replays cycle through
    /// theirs).
    #[arg(long)]
    requests: Option<usize>,
    /// The Client-Id Alipay+ sends (the service's alipayplus.client_id).
    #[arg(long, default_value = "SANDBOX_CLIENT")]
    client_id: String,
    #[arg(long, default_value = "1022188000000000001")]
    acquirer_id: String,
    /// The service's alipayplus.psp_id.
    #[arg(long, default_value = "1022172000000000001")]
    psp_id: String,
    /// Alipay+'s private key (PKCS#8 PEM or base64 DER); its public half is configured in the
    /// service under --key-version.
    #[arg(long)]
    alipay_private_key: PathBuf,
    #[arg(long, default_value = "1")]
    key_version: String,
    /// The MPP's public key, to verify response signatures (needed by --verify-sample).
    #[arg(long)]
    mpp_public_key: Option<PathBuf>,
    /// Verify the response signature on every Nth response (0: never).
    #[arg(long, default_value_t = 100)]
    verify_sample: u64,
    #[arg(long, value_enum, default_value = "hyper")]
    client: ClientKind,
    /// Runtime threads of the generator (1: one thread drives every connection).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Threads signing the requests before the window (default: all cores).
    #[arg(long)]
    sign_threads: Option<usize>,
    /// How long to wait for the service to answer before the run starts.
    #[arg(long, default_value_t = 60.0)]
    wait_secs: f64,
    /// A name for this run, copied into the JSON line.
    #[arg(long, default_value = "")]
    label: String,
    /// Seed of the request mix (which request is a replay or carries a bad signature).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The service's process (Linux): its CPU time over the window and its peak RSS (VmRSS
    /// sampled every 100 ms) are reported.
    #[arg(long)]
    service_pid: Option<u32>,
    /// PostgreSQL's postmaster (Linux): the CPU time of the server and all its processes over
    /// the window is reported.
    #[arg(long)]
    postgres_pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fresh,
    Replay,
}

/// One request, signed and ready to go.
struct Prepared {
    kind: Kind,
    /// The signature is corrupted: the answer must be INVALID_SIGNATURE.
    bad_signature: bool,
    request_time: String,
    signature: String,
    body: bytes::Bytes,
    /// The request's headers, ready to go (hyper client only).
    headers: hyper::HeaderMap,
}

/// What the generator learnt from one response.
struct Reply {
    status: u16,
    body: Vec<u8>,
    client_id: Option<String>,
    response_time: Option<String>,
    signature: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.duration_secs > 0.0, "--duration-secs must be positive");
    let url = reqwest::Url::parse(&args.url).with_context(|| format!("--url {:?}", args.url))?;
    anyhow::ensure!(url.scheme() == "http", "only http:// URLs are supported");
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let host = url.host_str().context("--url has no host")?.to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };

    let alipay_key = load_private_key(None, Some(&args.alipay_private_key))
        .with_context(|| format!("--alipay-private-key {}", args.alipay_private_key.display()))?
        .context("--alipay-private-key is empty")?;
    let mpp_key = match &args.mpp_public_key {
        Some(p) => Some(
            load_public_key(&format!("file:{}", p.display()))
                .with_context(|| format!("--mpp-public-key {}", p.display()))?,
        ),
        None => None,
    };
    if args.verify_sample > 0 && mpp_key.is_none() {
        eprintln!("loadgen: no --mpp-public-key: response signatures are not verified");
    }

    // The plan: which id, which kind, which signature is bad. Decided before anything is sent.
    let plan = plan(&args)?;
    anyhow::ensure!(!plan.is_empty(), "no requests to send: give ids");
    let cyclic = args.mode == Mode::Replay;

    let prepare_started = Instant::now();
    let sign_threads = args.sign_threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let ctx = SignContext {
        key: &alipay_key,
        key_version: &args.key_version,
        client_id: &args.client_id,
        acquirer_id: &args.acquirer_id,
        psp_id: &args.psp_id,
        path: &path,
        host_header: &host_header,
        hyper: args.client == ClientKind::Hyper,
    };
    let prepared = prepare(&ctx, &plan, sign_threads)?;
    let prepare_secs = prepare_started.elapsed().as_secs_f64();
    eprintln!(
        "loadgen: {} requests signed in {prepare_secs:.1} s on {sign_threads} threads",
        prepared.len()
    );

    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .with_context(|| format!("resolving {host}:{port}"))?
        .next()
        .with_context(|| format!("{host}:{port} resolves to nothing"))?;

    let shared = Arc::new(Shared {
        prepared,
        cyclic,
        next: AtomicUsize::new(0),
        exhausted: AtomicBool::new(false),
        responses: AtomicU64::new(0),
        verify_sample: args.verify_sample,
        mpp_key,
        path,
        success_body: result_body(ResultCode::Success, ResultCode::Success.default_message()),
    });

    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let outcome = runtime.block_on(run(&args, addr, host_header, shared.clone()))?;
    report(&args, &shared, &outcome, prepare_secs);
    Ok(())
}

/// (kind, id, bad signature) for every request, in sending order.
fn plan(args: &Args) -> anyhow::Result<Vec<(Kind, String, bool)>> {
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let bad = args.bad_signature_percent / 100.0;
    let mut out = Vec::new();
    match args.mode {
        Mode::Fresh | Mode::Replay => {
            let kind = if args.mode == Mode::Fresh {
                Kind::Fresh
            } else {
                Kind::Replay
            };
            let ids = load_ids(
                args.ids.ids_file.as_deref(),
                &args.ids.id_prefix,
                args.ids.id_start,
                args.ids.id_count,
            )?;
            let cap = args.requests.unwrap_or(ids.len());
            for id in ids.into_iter().take(cap) {
                out.push((kind, id, rng.f64() < bad));
            }
        }
        Mode::Mix => {
            let fresh = load_ids(
                args.ids.ids_file.as_deref(),
                &args.ids.id_prefix,
                args.ids.id_start,
                args.ids.id_count,
            )?;
            let replays = load_ids(
                args.replay_ids.replay_ids_file.as_deref(),
                &args.replay_ids.replay_id_prefix,
                args.replay_ids.replay_id_start,
                args.replay_ids.replay_id_count,
            )?;
            let replay_share = args.replay_percent / 100.0;
            anyhow::ensure!(
                replay_share == 0.0 || !replays.is_empty(),
                "--mode mix with --replay-percent > 0 needs replay ids"
            );
            anyhow::ensure!(replay_share < 1.0, "--replay-percent must be below 100");
            let cap = args.requests.unwrap_or(usize::MAX);
            let mut fresh = fresh.into_iter();
            let mut replay_at = 0usize;
            while out.len() < cap {
                if rng.f64() < replay_share {
                    let id = replays[replay_at % replays.len()].clone();
                    replay_at += 1;
                    out.push((Kind::Replay, id, rng.f64() < bad));
                } else {
                    let Some(id) = fresh.next() else { break };
                    out.push((Kind::Fresh, id, rng.f64() < bad));
                }
            }
        }
    }
    Ok(out)
}

fn load_ids(
    file: Option<&Path>,
    prefix: &str,
    start: u64,
    count: u64,
) -> anyhow::Result<Vec<String>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading ids from {}", file.display()))?;
        return Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect());
    }
    Ok((start..start.saturating_add(count))
        .map(|n| format!("{prefix}{n}"))
        .collect())
}

struct SignContext<'a> {
    key: &'a PrivateKey,
    key_version: &'a str,
    client_id: &'a str,
    acquirer_id: &'a str,
    psp_id: &'a str,
    path: &'a str,
    host_header: &'a str,
    hyper: bool,
}

/// Builds and signs every request, on `threads` threads.
fn prepare(
    ctx: &SignContext<'_>,
    plan: &[(Kind, String, bool)],
    threads: usize,
) -> anyhow::Result<Vec<Prepared>> {
    let chunk = plan.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(kind, id, bad)| prepare_one(ctx, *kind, id, *bad))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(plan.len());
        for handle in handles {
            let part = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a signing thread panicked"))??;
            all.extend(part);
        }
        Ok(all)
    })
}

fn prepare_one(ctx: &SignContext<'_>, kind: Kind, id: &str, bad: bool) -> anyhow::Result<Prepared> {
    let body = cancel_body(ctx.acquirer_id, ctx.psp_id, id);
    let request_time = alipay_request_time(Utc::now());
    let content = signed_content("POST", ctx.path, ctx.client_id, &request_time, &body);
    let mut signature = ctx
        .key
        .sign_pkcs1_sha256(&content)
        .context("signing a request")?;
    if bad {
        // A well-formed header whose signature does not verify: one bit flipped.
        signature[17] ^= 0x01;
    }
    let signature = format_signature_header(ctx.key_version, &signature);
    let headers = if ctx.hyper {
        let mut headers = hyper::HeaderMap::with_capacity(6);
        for (name, value) in [
            ("host", ctx.host_header),
            ("content-type", "application/json; charset=UTF-8"),
            ("client-id", ctx.client_id),
            ("request-time", request_time.as_str()),
            ("signature", signature.as_str()),
        ] {
            headers.insert(
                hyper::header::HeaderName::from_static(name),
                hyper::header::HeaderValue::from_str(value)
                    .with_context(|| format!("header {name}: {value:?}"))?,
            );
        }
        headers
    } else {
        hyper::HeaderMap::new()
    };
    Ok(Prepared {
        kind,
        bad_signature: bad,
        request_time,
        signature,
        body: body.into(),
        headers,
    })
}

/// What every connection task shares.
struct Shared {
    prepared: Vec<Prepared>,
    /// Replays: start again from the first request when the last one has been sent.
    cyclic: bool,
    next: AtomicUsize,
    /// A non-cyclic run used up its requests before the window ended.
    exhausted: AtomicBool,
    responses: AtomicU64,
    verify_sample: u64,
    mpp_key: Option<PublicKey>,
    path: String,
    /// The exact body of a SUCCESS answer: what a fresh cancel gets and every replay repeats.
    success_body: Vec<u8>,
}

impl Shared {
    fn take(&self) -> Option<&Prepared> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.prepared.get(i) {
            Some(p) => Some(p),
            None if self.cyclic => self.prepared.get(i % self.prepared.len()),
            None => {
                self.exhausted.store(true, Ordering::Relaxed);
                None
            }
        }
    }
}

/// Per-connection tallies, merged at the end.
struct Tally {
    latency_us: Histogram<u64>,
    responses: u64,
    ok: u64,
    fresh: u64,
    replay: u64,
    bad_signature: u64,
    err_transport: u64,
    err_http_status: u64,
    err_result_code: u64,
    err_body_mismatch: u64,
    err_signature: u64,
    signatures_checked: u64,
    codes: BTreeMap<String, u64>,
    first_error: Option<String>,
    finished: Option<Instant>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            responses: 0,
            ok: 0,
            fresh: 0,
            replay: 0,
            bad_signature: 0,
            err_transport: 0,
            err_http_status: 0,
            err_result_code: 0,
            err_body_mismatch: 0,
            err_signature: 0,
            signatures_checked: 0,
            codes: BTreeMap::new(),
            first_error: None,
            finished: None,
        })
    }

    fn errors(&self) -> u64 {
        self.err_transport
            + self.err_http_status
            + self.err_result_code
            + self.err_body_mismatch
            + self.err_signature
    }

    fn note(&mut self, error: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(error());
        }
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latency_us.add(&other.latency_us)?;
        self.responses += other.responses;
        self.ok += other.ok;
        self.fresh += other.fresh;
        self.replay += other.replay;
        self.bad_signature += other.bad_signature;
        self.err_transport += other.err_transport;
        self.err_http_status += other.err_http_status;
        self.err_result_code += other.err_result_code;
        self.err_body_mismatch += other.err_body_mismatch;
        self.err_signature += other.err_signature;
        self.signatures_checked += other.signatures_checked;
        for (code, n) in other.codes {
            *self.codes.entry(code).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.finished = self.finished.max(other.finished);
        Ok(())
    }

    /// Checks one answer against what the request must get.
    fn check(&mut self, shared: &Shared, request: &Prepared, reply: &Reply) {
        self.responses += 1;
        match (request.bad_signature, request.kind) {
            (true, _) => self.bad_signature += 1,
            (false, Kind::Fresh) => self.fresh += 1,
            (false, Kind::Replay) => self.replay += 1,
        }
        let n = shared.responses.fetch_add(1, Ordering::Relaxed) + 1;
        if shared.verify_sample > 0
            && n.is_multiple_of(shared.verify_sample)
            && let Some(key) = &shared.mpp_key
        {
            self.signatures_checked += 1;
            let (verified, problem) = check_response_signature(
                Some(key),
                &shared.path,
                reply.client_id.as_deref(),
                reply.response_time.as_deref(),
                reply.signature.as_deref(),
                &reply.body,
            );
            if verified != Some(true) {
                self.err_signature += 1;
                self.note(|| {
                    format!(
                        "response signature: {}",
                        problem.unwrap_or_else(|| "not verified".into())
                    )
                });
            }
        }
        if reply.status != 200 {
            self.err_http_status += 1;
            self.note(|| format!("HTTP status {}", reply.status));
            return;
        }
        let code = if reply.body == shared.success_body {
            "SUCCESS".to_string()
        } else {
            result_code_of(&reply.body)
        };
        let expected = if request.bad_signature {
            ResultCode::InvalidSignature.as_str()
        } else {
            ResultCode::Success.as_str()
        };
        if code != expected {
            self.err_result_code += 1;
            self.note(|| {
                format!(
                    "expected {expected}, got {}",
                    String::from_utf8_lossy(&reply.body)
                )
            });
        } else if !request.bad_signature && reply.body != shared.success_body {
            // SUCCESS, but not the bytes stored with the first answer.
            self.err_body_mismatch += 1;
            self.note(|| {
                format!(
                    "SUCCESS body differs from the stored answer: {}",
                    String::from_utf8_lossy(&reply.body)
                )
            });
        } else {
            self.ok += 1;
        }
        match self.codes.get_mut(code.as_str()) {
            Some(n) => *n += 1,
            None => {
                self.codes.insert(code, 1);
            }
        }
    }
}

fn result_code_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/result/resultCode")
                .and_then(|c| c.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "NOT_A_RESULT".to_string())
}

/// One connection's way of sending.
enum Conn {
    Hyper(HyperConn),
    Reqwest(reqwest::Client, String),
}

impl Conn {
    async fn send(&mut self, request: &Prepared, client_id: &str) -> anyhow::Result<Reply> {
        match self {
            Conn::Hyper(conn) => {
                conn.send(
                    hyper::Method::POST,
                    request.headers.clone(),
                    request.body.clone(),
                )
                .await
            }
            Conn::Reqwest(client, url) => {
                let response = client
                    .post(url.as_str())
                    .header("Content-Type", "application/json; charset=UTF-8")
                    .header("Client-Id", client_id)
                    .header("Request-Time", request.request_time.as_str())
                    .header("Signature", request.signature.as_str())
                    .body(request.body.clone())
                    .send()
                    .await?;
                reqwest_reply(response).await
            }
        }
    }

    /// A GET on the endpoint (METHOD_NOT_SUPPORTED; nothing is stored): opens the connection
    /// before the window and tells whether the service is up.
    async fn warm_up(&mut self, host_header: &str) -> anyhow::Result<()> {
        let reply = match self {
            Conn::Hyper(conn) => {
                let mut headers = hyper::HeaderMap::new();
                headers.insert(
                    hyper::header::HOST,
                    hyper::header::HeaderValue::from_str(host_header)?,
                );
                conn.send(hyper::Method::GET, headers, bytes::Bytes::new())
                    .await?
            }
            Conn::Reqwest(client, url) => {
                reqwest_reply(client.get(url.as_str()).send().await?).await?
            }
        };
        anyhow::ensure!(
            reply.status == 200,
            "warm-up GET answered HTTP {}",
            reply.status
        );
        Ok(())
    }
}

async fn reqwest_reply(response: reqwest::Response) -> anyhow::Result<Reply> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let status = response.status().as_u16();
    let client_id = header("client-id");
    let response_time = header("response-time");
    let signature = header("signature");
    let body = response.bytes().await?.to_vec();
    Ok(Reply {
        status,
        body,
        client_id,
        response_time,
        signature,
    })
}

/// One HTTP/1.1 connection driven by hyper (`hyper::client::conn::http1`), kept alive, one
/// request at a time, reconnected after an error or when the server closes it.
struct HyperConn {
    addr: SocketAddr,
    path: hyper::Uri,
    sender: Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>>,
}

impl HyperConn {
    fn new(addr: SocketAddr, path: &str) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            path: path.parse().with_context(|| format!("path {path:?}"))?,
            sender: None,
        })
    }

    async fn send(
        &mut self,
        method: hyper::Method,
        headers: hyper::HeaderMap,
        body: bytes::Bytes,
    ) -> anyhow::Result<Reply> {
        let result = self.exchange(method, headers, body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        method: hyper::Method,
        headers: hyper::HeaderMap,
        body: bytes::Bytes,
    ) -> anyhow::Result<Reply> {
        use http_body_util::BodyExt as _;
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .context("HTTP/1.1 handshake")?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let Some(sender) = self.sender.as_mut() else {
            bail!("no connection");
        };
        sender
            .ready()
            .await
            .context("the connection is not ready")?;
        let mut request = hyper::Request::new(http_body_util::Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = headers;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let reply = Reply {
            status: parts.status.as_u16(),
            client_id: header("client-id"),
            response_time: header("response-time"),
            signature: header("signature"),
            body: body.collect().await?.to_bytes().to_vec(),
        };
        Ok(reply)
    }
}

struct Outcome {
    tally: Tally,
    elapsed: Duration,
    cpu: CpuUse,
    rss_peak_kb: Option<u64>,
}

async fn run(
    args: &Args,
    addr: SocketAddr,
    host_header: String,
    shared: Arc<Shared>,
) -> anyhow::Result<Outcome> {
    let reqwest_client = match args.client {
        ClientKind::Reqwest => Some(
            reqwest::Client::builder()
                .pool_max_idle_per_host(args.concurrency)
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(30))
                .build()?,
        ),
        ClientKind::Hyper => None,
    };
    let new_conn = || -> anyhow::Result<Conn> {
        Ok(match &reqwest_client {
            Some(client) => Conn::Reqwest(client.clone(), args.url.clone()),
            None => Conn::Hyper(HyperConn::new(addr, &shared.path)?),
        })
    };

    // Wait until the service answers, then open every connection before the window.
    let wait_until = Instant::now() + Duration::from_secs_f64(args.wait_secs);
    let mut probe = new_conn()?;
    loop {
        match probe.warm_up(&host_header).await {
            Ok(()) => break,
            Err(e) if Instant::now() >= wait_until => {
                return Err(e.context(format!("the service at {} does not answer", args.url)));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let mut conns = Vec::with_capacity(args.concurrency);
    let mut warm = Vec::new();
    for _ in 0..args.concurrency {
        let mut conn = new_conn()?;
        let host_header = host_header.clone();
        warm.push(tokio::spawn(async move {
            conn.warm_up(&host_header).await.map(|()| conn)
        }));
    }
    for w in warm {
        conns.push(w.await??);
    }

    let (start_tx, start_rx) = tokio::sync::watch::channel::<Option<(Instant, Instant)>>(None);
    let mut tasks = Vec::with_capacity(args.concurrency);
    for mut conn in conns {
        let shared = shared.clone();
        let mut start_rx = start_rx.clone();
        let client_id = args.client_id.clone();
        let mut tally = Tally::new()?;
        tasks.push(tokio::spawn(async move {
            let (_, deadline) = start_rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|v| *v)
                .unwrap_or_else(|| (Instant::now(), Instant::now()));
            while Instant::now() < deadline {
                let Some(request) = shared.take() else { break };
                let sent = Instant::now();
                let result = conn.send(request, &client_id).await;
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally.latency_us.saturating_record(micros.max(1));
                match result {
                    Ok(reply) => tally.check(&shared, request, &reply),
                    Err(e) => {
                        tally.responses += 1;
                        tally.err_transport += 1;
                        tally.note(|| format!("transport: {e:#}"));
                    }
                }
            }
            tally.finished = Some(Instant::now());
            tally
        }));
    }
    let rss = args.service_pid.map(RssSampler::start);
    let cpu_before = CpuSnapshot::take(args.service_pid, args.postgres_pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration_secs);
    start_tx.send_replace(Some((started, deadline)));
    let mut total = Tally::new()?;
    for task in tasks {
        total.merge(task.await?)?;
    }
    let cpu_after = CpuSnapshot::take(args.service_pid, args.postgres_pid);
    let elapsed = total
        .finished
        .map_or(Duration::ZERO, |f| f.saturating_duration_since(started));
    Ok(Outcome {
        tally: total,
        elapsed,
        cpu: cpu_after.since(&cpu_before),
        rss_peak_kb: rss.and_then(RssSampler::stop),
    })
}

/// Linux's USER_HZ: the unit of the CPU times in /proc (100 on every mainstream architecture).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU times (in ticks) at one instant, read from /proc; `None` where unavailable.
#[derive(Debug, Default, Clone, Copy)]
struct CpuSnapshot {
    loadgen: Option<u64>,
    service: Option<u64>,
    postgres: Option<u64>,
    /// Machine-wide: (busy, total) ticks summed over all cores.
    machine: Option<(u64, u64)>,
}

/// CPU seconds spent over the window.
#[derive(Debug, Default, Clone, Copy)]
struct CpuUse {
    loadgen: Option<f64>,
    service: Option<f64>,
    postgres: Option<f64>,
    /// Busy CPU seconds of the whole machine, and the window's length times the core count.
    machine_busy: Option<f64>,
    machine_total: Option<f64>,
}

impl CpuSnapshot {
    fn take(service: Option<u32>, postgres: Option<u32>) -> Self {
        Self {
            loadgen: proc_stat(std::process::id()).map(|s| s.utime + s.stime),
            service: service.and_then(proc_stat).map(|s| s.utime + s.stime),
            postgres: postgres.and_then(postgres_ticks),
            machine: machine_ticks(),
        }
    }

    fn since(&self, before: &Self) -> CpuUse {
        let secs = |after: Option<u64>, before: Option<u64>| {
            Some(after?.saturating_sub(before?) as f64 / TICKS_PER_SECOND)
        };
        let machine = self.machine.zip(before.machine);
        CpuUse {
            loadgen: secs(self.loadgen, before.loadgen),
            service: secs(self.service, before.service),
            postgres: secs(self.postgres, before.postgres),
            machine_busy: machine
                .map(|((b1, _), (b0, _))| b1.saturating_sub(b0) as f64 / TICKS_PER_SECOND),
            machine_total: machine
                .map(|((_, t1), (_, t0))| t1.saturating_sub(t0) as f64 / TICKS_PER_SECOND),
        }
    }
}

/// The fields of /proc/PID/stat this tool needs.
struct ProcStat {
    ppid: u32,
    utime: u64,
    stime: u64,
    /// CPU time of children that exited and were waited for.
    cutime: u64,
    cstime: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count fields after it.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat {
        ppid: u32::try_from(num(1)?).ok()?,
        utime: num(11)?,
        stime: num(12)?,
        cutime: num(13)?,
        cstime: num(14)?,
    })
}

/// The postmaster and every process it started, including the ones that already exited
/// (their time is in the postmaster's cutime/cstime).
fn postgres_ticks(postmaster: u32) -> Option<u64> {
    let main = proc_stat(postmaster)?;
    let mut total = main.utime + main.stime + main.cutime + main.cstime;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(child) = proc_stat(pid).filter(|s| s.ppid == postmaster) {
            total += child.utime + child.stime;
        }
    }
    Some(total)
}

/// (busy, total) ticks of the machine, from the first line of /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let v: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

/// The service's peak VmRSS over the window, sampled every 100 ms on a thread of its own.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Option<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = None;
            loop {
                if let Some(kb) = vm_rss_kb(pid) {
                    peak = Some(peak.map_or(kb, |p: u64| p.max(kb)));
                }
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self { stop, handle }
    }

    fn stop(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().ok().flatten()
    }
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Microseconds as milliseconds.
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn report(args: &Args, shared: &Shared, outcome: &Outcome, prepare_secs: f64) {
    let t = &outcome.tally;
    let secs = outcome.elapsed.as_secs_f64();
    let throughput = if secs > 0.0 {
        t.responses as f64 / secs
    } else {
        0.0
    };
    let h = &t.latency_us;
    let codes = t
        .codes
        .iter()
        .map(|(c, n)| format!("{c}:{n}"))
        .collect::<Vec<_>>()
        .join(" ");
    let exhausted = shared.exhausted.load(Ordering::Relaxed);
    let mode = match args.mode {
        Mode::Fresh => "fresh",
        Mode::Replay => "replay",
        Mode::Mix => "mix",
    };
    let client = match args.client {
        ClientKind::Hyper => "hyper",
        ClientKind::Reqwest => "reqwest",
    };
    let per_request = |secs: Option<f64>| {
        secs.filter(|_| t.responses > 0)
            .map(|s| (s * 1e6 / t.responses as f64).round())
    };
    let cpu = &outcome.cpu;
    let cpu_other = match (cpu.machine_busy, cpu.service, cpu.postgres, cpu.loadgen) {
        (Some(m), Some(s), Some(p), Some(l)) => Some((m - s - p - l).max(0.0)),
        _ => None,
    };
    let machine_busy_pct = cpu
        .machine_busy
        .zip(cpu.machine_total)
        .filter(|(_, total)| *total > 0.0)
        .map(|(busy, total)| (busy / total * 1000.0).round() / 10.0);
    let rss_peak_mb = outcome
        .rss_peak_kb
        .map(|kb| (kb as f64 / 1024.0 * 10.0).round() / 10.0);
    let line = serde_json::json!({
        "label": args.label,
        "mode": mode,
        "client": client,
        "concurrency": args.concurrency,
        "duration_s": (secs * 1000.0).round() / 1000.0,
        "requests": t.responses,
        "ok": t.ok,
        "throughput_rps": (throughput * 10.0).round() / 10.0,
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "mean_ms": (h.mean()).round() / 1000.0,
        "errors": t.errors(),
        "err_transport": t.err_transport,
        "err_http_status": t.err_http_status,
        "err_result_code": t.err_result_code,
        "err_body_mismatch": t.err_body_mismatch,
        "err_signature": t.err_signature,
        "signatures_checked": t.signatures_checked,
        "fresh": t.fresh,
        "replay": t.replay,
        "bad_signature": t.bad_signature,
        "prepared": shared.prepared.len(),
        "prepare_s": (prepare_secs * 10.0).round() / 10.0,
        "exhausted": exhausted,
        "codes": codes,
        "rss_peak_mb": rss_peak_mb,
        "cpu_service_us_per_req": per_request(cpu.service),
        "cpu_postgres_us_per_req": per_request(cpu.postgres),
        "cpu_loadgen_us_per_req": per_request(cpu.loadgen),
        "cpu_other_us_per_req": per_request(cpu_other),
        "machine_busy_pct": machine_busy_pct,
        "first_error": t.first_error.clone().unwrap_or_default(),
    });
    println!("{line}");
    eprintln!(
        "loadgen {label}{mode} c={c}: {throughput:.1} req/s ({n} in {secs:.2} s), latency ms p50 {p50} p90 {p90} p99 {p99} max {max}; \
         errors {errors} (transport {tr}, status {st}, result {rc}, body {bm}, signature {sg} of {sc} checked); codes {codes}{ex}",
        label = if args.label.is_empty() {
            String::new()
        } else {
            format!("[{}] ", args.label)
        },
        c = args.concurrency,
        n = t.responses,
        p50 = ms(h.value_at_quantile(0.50)),
        p90 = ms(h.value_at_quantile(0.90)),
        p99 = ms(h.value_at_quantile(0.99)),
        max = ms(h.max()),
        errors = t.errors(),
        tr = t.err_transport,
        st = t.err_http_status,
        rc = t.err_result_code,
        bm = t.err_body_mismatch,
        sg = t.err_signature,
        sc = t.signatures_checked,
        ex = if exhausted {
            "; RAN OUT OF REQUESTS before the window ended"
        } else {
            ""
        },
    );
    let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    eprintln!(
        "loadgen {label}CPU per request (µs): service {}, postgres {}, loadgen {}, other {}; machine busy {}%; service peak RSS {} MB",
        show(per_request(cpu.service)),
        show(per_request(cpu.postgres)),
        show(per_request(cpu.loadgen)),
        show(per_request(cpu_other)),
        machine_busy_pct.map_or("-".to_string(), |v| v.to_string()),
        rss_peak_mb.map_or("-".to_string(), |v| v.to_string()),
        label = if args.label.is_empty() {
            String::new()
        } else {
            format!("[{}] ", args.label)
        },
    );
    if let Some(e) = &t.first_error {
        eprintln!("loadgen: first error: {e}");
    }
}
