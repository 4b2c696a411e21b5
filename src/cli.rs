//! The `mpp-cancel` command line (DESIGN.md, "Operator surface").

use crate::app::{self, Application, Components};
use crate::config::Settings;
use crate::domain::{CancellationState, Money, PaymentStatus};
use crate::guard::Guard;
use crate::protocol::keys::{GeneratedKeyPair, parse_private_key, parse_public_key};
use crate::sim::{SimRequest, send_cancel};
use crate::store::RequeueSelection;
use crate::wallet::demo::{DemoWallet, NewDemoPayment};
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "mpp-cancel",
    version,
    about = "Alipay+ cancelPayment for wallets (MPPs)"
)]
pub struct Cli {
    /// Directory holding default.toml and {APP_ENV}.toml.
    #[arg(
        long,
        global = true,
        env = "MPP_CANCEL_CONFIG_DIR",
        default_value = "config"
    )]
    pub config_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process: size does not matter
pub enum Command {
    /// Serve cancelPayment (migrations are applied first).
    Serve,
    /// Run every start check of `serve` (configuration, secret files, keys, URLs) without
    /// connecting anywhere; exit 0 and print a secret-free summary when it passes.
    CheckConfig,
    /// Apply database migrations and exit.
    Migrate,
    /// Show what is stored for a paymentRequestId (state, refund, attempts), as JSON.
    Show { payment_request_id: String },
    /// Put cancellations in manual_review back to work, with fresh attempts: one by id, or all
    /// of a state (`--state manual_review`, optionally `--since`) after an outage.
    Requeue {
        /// The one cancellation to requeue.
        #[arg(required_unless_present = "state", conflicts_with = "state")]
        payment_request_id: Option<String>,
        /// Requeue every cancellation in this state (only manual_review can be requeued).
        #[arg(long)]
        state: Option<String>,
        /// With --state: only rows that went to that state at or after this time (RFC 3339).
        #[arg(long, requires = "state")]
        since: Option<DateTime<Utc>>,
        /// With --state: count (and list the first ids) without changing anything.
        #[arg(long, requires = "state")]
        dry_run: bool,
    },
    /// List a settlement day's cancellations (T in cancel.timezone) for the clearing job.
    Report {
        /// The settlement day, YYYY-MM-DD.
        #[arg(long)]
        date: chrono::NaiveDate,
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
    },
    /// Cross-check an Alipay+ clearing file: list every paymentRequestId in it that we
    /// cancelled (S) or refused (F), with our state and refund, as CSV on stdout; malformed
    /// lines on stderr with their numbers. Exits non-zero when a cancelled id is in the file
    /// (it would be settled and refunded: paid twice) or a line could not be read.
    Reconcile {
        /// The clearing file (CSV; summary lines and an `<END>` line tolerated). `-`: stdin.
        #[arg(long)]
        clearing_file: PathBuf,
        /// The header of the column holding Alipay+'s paymentRequestId.
        #[arg(long, default_value = "paymentRequestId")]
        id_column: String,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Play Alipay+: send signed requests and verify the signed answers.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Exercise a live HTTP wallet against the contract (lookups, 404 semantics, close of an
    /// unknown id, refund and void dedupe under concurrent repeats, amounts, timeouts). Prints a
    /// PASS/FAIL/SKIP table; exits non-zero on any FAIL. Money moves only on --payment ids.
    WalletCheck {
        /// The wallet's base URL (default: wallet.base_url).
        #[arg(long)]
        base_url: Option<String>,
        /// Bearer token (default: wallet.token).
        #[arg(long, env = "MPP_CANCEL_WALLET_CHECK_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A test payment the check may refund (SUCCESS) or void (AUTHORIZED); repeatable.
        #[arg(long = "payment")]
        payments: Vec<String>,
        /// Every answer must come within this (default: wallet.timeout_ms).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Identical refund/void calls sent at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(2..=256))]
        concurrency: u16,
    },
    /// The demo wallet kept in PostgreSQL, for trying the service locally.
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
    /// Probe a running service's internal listener: GET /healthz (or /readyz with --ready);
    /// exit 0 on 200, 1 otherwise. For the image's HEALTHCHECK and exec probes. Reads no
    /// configuration file and needs no secret: the address is --url, else internal.listen from
    /// MPP_CANCEL__INTERNAL__LISTEN, else the default 127.0.0.1:8081.
    Health {
        /// Probe /readyz (a writable database, migrations applied, workers alive) instead of
        /// /healthz (the process answers).
        #[arg(long)]
        ready: bool,
        /// The internal listener's base URL, e.g. http://127.0.0.1:8081.
        #[arg(long, env = "MPP_CANCEL_HEALTH_URL")]
        url: Option<String>,
        /// Give up after this long.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Create (or replace) a demo payment.
    Pay {
        /// Alipay+'s id for the payment (default: a new random id).
        #[arg(long)]
        payment_request_id: Option<String>,
        /// SUCCESS, AUTHORIZED (a card authorization: funds held), FAILED or PROCESSING.
        #[arg(long, default_value = "SUCCESS", value_parser = parse_status)]
        status: PaymentStatus,
        /// Amount in minor units (USD 1.00 = 100).
        #[arg(long, default_value = "1000")]
        amount: String,
        /// ISO 4217 code.
        #[arg(long, default_value = "JPY")]
        currency: String,
        /// Creation time, RFC 3339 (default: now).
        #[arg(long)]
        created_at: Option<DateTime<Utc>>,
        /// Amount already refunded, in minor units.
        #[arg(long, default_value_t = 0)]
        refunded: i64,
    },
    /// Capture a demo authorization: the held funds become a charge (AUTHORIZED -> SUCCESS). A
    /// cancel's void that comes later is answered ALREADY_CAPTURED, and the engine refunds.
    Capture {
        /// Alipay+'s id for the payment.
        #[arg(long)]
        payment_request_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate an RSA-2048 key pair: the private key (PKCS#8) for alipayplus.private_key_file,
    /// the public key (X.509 SubjectPublicKeyInfo, base64 DER) to upload to Alipay+'s portal.
    Generate {
        /// Directory to write private_key.pem and public_key.pem into (created if missing).
        #[arg(long)]
        out_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Send one signed cancelPayment, as Alipay+ would, and verify the response's signature.
    Cancel {
        #[arg(long)]
        payment_request_id: String,
        #[command(flatten)]
        alipay: AlipayArgs,
    },
    /// Run the conformance checks against an MPP's cancelPayment endpoint: one PASS/FAIL/SKIP
    /// row per rule, exit status 1 on any FAIL.
    Conformance {
        #[command(flatten)]
        kit: KitArgs,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Play one of the seeds' flows (seed 000's four cancels after a success, seed 002's ACQP
    /// cancel): acqp-cancel-before-success, timeout-close-before-success,
    /// duplicate-through-another-mpp, failure-then-success, acqp-cancel-t1.
    Scenario {
        #[arg(value_parser = crate::sim::scenarios::NAMES)]
        name: String,
        #[command(flatten)]
        kit: KitArgs,
    },
}

/// Playing Alipay+ against an MPP's cancelPayment endpoint: where, and with which keys. Shared by
/// `sim cancel` and the conformance kit.
#[derive(Debug, clap::Args)]
pub struct AlipayArgs {
    /// The full cancelPayment URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080/aps/api/v1/payments/cancelPayment"
    )]
    url: String,
    #[arg(long, default_value = "1022188000000000001")]
    acquirer_id: String,
    /// Default: alipayplus.psp_id.
    #[arg(long)]
    psp_id: Option<String>,
    /// Default: alipayplus.client_id.
    #[arg(long)]
    client_id: Option<String>,
    /// The private key playing Alipay+'s (PKCS#8 PEM or base64 DER file).
    #[arg(long)]
    alipay_private_key: PathBuf,
    #[arg(long, default_value = "1")]
    key_version: String,
    /// The MPP's public key, to verify every answer (file, PEM or base64 DER).
    #[arg(long)]
    mpp_public_key: Option<PathBuf>,
}

impl AlipayArgs {
    /// The endpoint and keys, read and checked; the ids not given default to the settings'.
    fn into_target(self, settings: &Settings) -> anyhow::Result<crate::sim::client::Target> {
        let read_key = |path: &PathBuf| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        Ok(crate::sim::client::Target {
            url: reqwest::Url::parse(&self.url).with_context(|| format!("--url {:?}", self.url))?,
            client_id: self
                .client_id
                .unwrap_or_else(|| settings.alipayplus.client_id.clone()),
            acquirer_id: self.acquirer_id,
            psp_id: self
                .psp_id
                .unwrap_or_else(|| settings.alipayplus.psp_id.clone()),
            alipay_private_key: parse_private_key(&read_key(&self.alipay_private_key)?)?,
            key_version: self.key_version,
            mpp_public_key: self
                .mpp_public_key
                .map(|path| read_key(&path).and_then(|k| Ok(parse_public_key(&k)?)))
                .transpose()?,
        })
    }
}

/// What the conformance kit needs: the endpoint, the keys, and optionally a way to create
/// payments and to read the outcome back.
#[derive(Debug, clap::Args)]
pub struct KitArgs {
    #[command(flatten)]
    alipay: AlipayArgs,
    /// The MPP's internal API, to check where each cancellation ended (needs --token).
    #[arg(long, requires = "token")]
    internal_url: Option<String>,
    /// The internal API's bearer token.
    #[arg(long, env = "MPPC_INTERNAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Create test payments in our demo wallet (the service's database, DATABASE_URL).
    #[arg(long, conflicts_with_all = ["create_payment_cmd", "create_payment_url"])]
    demo_wallet: bool,
    /// A shell command that creates (or replaces) a test payment: $1 paymentRequestId,
    /// $2 status, $3 amount value, $4 currency, $5 createdAt, $6 refunded value, $7 payment
    /// code (also in MPPC_* environment variables).
    #[arg(long, conflicts_with = "create_payment_url")]
    create_payment_cmd: Option<String>,
    /// A URL that creates (or replaces) a test payment from a JSON POST.
    #[arg(long)]
    create_payment_url: Option<String>,
}

impl KitArgs {
    fn into_kit(self, settings: &Settings) -> anyhow::Result<crate::sim::checks::Kit> {
        use crate::sim::client::AlipayClient;
        use crate::sim::internal::InternalApi;
        use crate::sim::payments::PaymentMaker;
        let target = self.alipay.into_target(settings)?;
        let payments = if self.demo_wallet {
            PaymentMaker::Demo(DemoWallet::new(app::connect(settings)?.pool().clone()))
        } else if let Some(cmd) = self.create_payment_cmd {
            PaymentMaker::Command(cmd)
        } else if let Some(url) = self.create_payment_url {
            PaymentMaker::Url(
                reqwest::Url::parse(&url)
                    .with_context(|| format!("--create-payment-url {url:?}"))?,
            )
        } else {
            PaymentMaker::None
        };
        let internal = match (self.internal_url, self.token) {
            (Some(url), Some(token)) => Some(InternalApi::new(&url, &token)?),
            _ => None,
        };
        Ok(crate::sim::checks::Kit::new(
            AlipayClient::new(target)?,
            payments,
            internal,
        ))
    }
}

fn parse_status(s: &str) -> Result<PaymentStatus, String> {
    PaymentStatus::parse(&s.to_ascii_uppercase())
        .ok_or_else(|| format!("{s:?} is not SUCCESS, AUTHORIZED, FAILED or PROCESSING"))
}

/// Prints a line to stdout. A closed pipe (`mpp-cancel report | head`) is not an error worth a
/// panic: output simply stops.
macro_rules! say {
    () => { say_raw("\n") };
    ($($arg:tt)*) => { say_raw(&format!("{}\n", format_args!($($arg)*))) };
}

fn say_raw(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mpp-cancel: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpp-cancel: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// `serve` (and `check-config`, which answers whether `serve` would start) runs every start
    /// check. The other commands are tools over the database or a peer that borrow a few
    /// settings; they read the same layers and secret files without the service's checks.
    fn starts_the_service(&self) -> bool {
        matches!(self, Command::Serve | Command::CheckConfig)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // A probe must not depend on the whole configuration (nor read secrets every few seconds).
    if let Command::Health {
        ready,
        url,
        timeout_ms,
    } = &cli.command
    {
        return health(*ready, url.as_deref(), *timeout_ms).await;
    }
    if let Command::Keys {
        command: KeysCommand::Generate { out_dir },
    } = &cli.command
    {
        return generate_keys(out_dir);
    }
    let settings = match cli.command.starts_the_service() {
        true => Settings::load(&cli.config_dir)?,
        false => Settings::read(&cli.config_dir)?,
    };
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::CheckConfig => check_config(&settings),
        Command::Migrate => {
            let store = app::connect(&settings)?;
            store.migrate().await.context("applying migrations")?;
            say!("migrations applied");
            Ok(())
        }
        Command::Show { payment_request_id } => {
            let guard = Guard::new(app::connect(&settings)?);
            match guard.cancellation(&payment_request_id).await? {
                Some(record) => {
                    say!("{}", serde_json::to_string_pretty(&record)?);
                    Ok(())
                }
                None => anyhow::bail!("no cancellation for {payment_request_id:?}"),
            }
        }
        Command::Requeue {
            payment_request_id: None,
            state: Some(state),
            since,
            dry_run,
        } => {
            let state: CancellationState = state.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let selection = RequeueSelection::new(state, since)?;
            let store = app::connect(&settings)?;
            let done = store.requeue_bulk(selection, "cli", dry_run).await?;
            if dry_run {
                say!("{} cancellations in {state} would be requeued", done.count);
                for id in &done.sample {
                    say!("{id}");
                }
                if done.count > done.sample.len() as u64 {
                    say!("... (the first {} shown)", done.sample.len());
                }
            } else {
                say!("requeued {} cancellations from {state}", done.count);
            }
            Ok(())
        }
        Command::Requeue {
            payment_request_id, ..
        } => {
            let payment_request_id =
                payment_request_id.context("a paymentRequestId or --state is required")?;
            let store = app::connect(&settings)?;
            match store.requeue(&payment_request_id, "cli").await? {
                Some(state) => {
                    say!("{payment_request_id}: requeued as {state}");
                    Ok(())
                }
                None => anyhow::bail!("{payment_request_id:?} is not in manual_review"),
            }
        }
        Command::Report { date, format } => {
            let store = app::connect(&settings)?;
            let format: crate::report::Format =
                format.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let lines = store
                .settlement_report(date, &settings.cancel_window()?)
                .await?;
            say_raw(&crate::report::render(&lines, format));
            Ok(())
        }
        Command::Reconcile {
            clearing_file,
            id_column,
        } => {
            let store = app::connect(&settings)?;
            let input: Box<dyn std::io::BufRead> = if clearing_file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                let file = std::fs::File::open(&clearing_file).with_context(|| {
                    format!("cannot open the clearing file {}", clearing_file.display())
                })?;
                Box::new(std::io::BufReader::with_capacity(64 * 1024, file))
            };
            let stdout = std::io::stdout().lock();
            let summary = crate::reconcile::reconcile(
                &store,
                input,
                &id_column,
                std::io::BufWriter::new(stdout),
                std::io::stderr(),
            )
            .await?;
            eprintln!(
                "reconcile: {} lines, {} records, {} cancelled by us (S), {} refused by us (F), {} malformed",
                summary.lines,
                summary.records,
                summary.cancelled,
                summary.refused,
                summary.malformed
            );
            anyhow::ensure!(
                summary.cancelled == 0,
                "{} payment(s) we cancelled appear in the clearing file: they must not be settled \
                 (they are refunded or being refunded to the user)",
                summary.cancelled
            );
            anyhow::ensure!(
                summary.malformed == 0,
                "{} line(s) of the clearing file could not be read: a cancelled id may hide there",
                summary.malformed
            );
            Ok(())
        }
        Command::Keys { .. } => unreachable!("keys generate runs before the settings load"),
        Command::Sim {
            command:
                SimCommand::Cancel {
                    payment_request_id,
                    alipay,
                },
        } => {
            let target = alipay.into_target(&settings)?;
            let request = SimRequest {
                url: target.url.to_string(),
                client_id: target.client_id,
                acquirer_id: target.acquirer_id,
                psp_id: target.psp_id,
                payment_request_id,
                alipay_private_key: target.alipay_private_key,
                key_version: target.key_version,
                mpp_public_key: target.mpp_public_key,
            };
            let key_given = request.mpp_public_key.is_some();
            let outcome = send_cancel(&request).await?;
            say!("{}", String::from_utf8_lossy(&outcome.raw_body));
            let problem = outcome.signature_problem.as_deref();
            match outcome.signature_verified {
                Some(true) => eprintln!("response signature: verified"),
                // With a key to check against, an unsigned answer is as bad as a wrong one.
                _ if key_given => anyhow::bail!(
                    "response signature does NOT verify: {}",
                    problem.unwrap_or("bad signature")
                ),
                _ => eprintln!(
                    "response signature: not checked ({})",
                    problem.unwrap_or("no --mpp-public-key")
                ),
            }
            Ok(())
        }
        Command::Sim {
            command: SimCommand::Conformance { kit, format },
        } => {
            let report = kit.into_kit(&settings)?.run().await;
            match format.as_str() {
                "json" => say!("{}", report.json()),
                _ => say_raw(&report.table()),
            }
            anyhow::ensure!(!report.failed(), "conformance: at least one check FAILED");
            Ok(())
        }
        Command::Sim {
            command: SimCommand::Scenario { name, kit },
        } => {
            let kit = kit.into_kit(&settings)?;
            let row = crate::sim::scenarios::run(&kit, &name)
                .await
                .with_context(|| format!("no scenario {name:?}"))?;
            let report = crate::sim::report::Report { rows: vec![row] };
            say_raw(&report.table());
            anyhow::ensure!(!report.failed(), "scenario {name}: FAILED");
            Ok(())
        }
        Command::WalletCheck {
            base_url,
            token,
            payments,
            timeout_ms,
            concurrency,
        } => {
            let config = crate::wallet_check::CheckConfig {
                base_url: base_url
                    .or(settings.wallet.base_url.clone())
                    .context("--base-url (or wallet.base_url) is required")?,
                token: token.or(settings
                    .wallet
                    .token
                    .as_ref()
                    .map(|t| t.expose().to_owned())),
                payments,
                timeout: std::time::Duration::from_millis(
                    timeout_ms.unwrap_or(settings.wallet.timeout_ms),
                ),
                concurrency: usize::from(concurrency),
            };
            let plan = crate::wallet_check::Plan {
                base_url: config.base_url.clone(),
                payments: config.payments.clone(),
            };
            say_raw(&plan.describe());
            let report = crate::wallet_check::run(&config).await?;
            say_raw(&report.render());
            let failed = report.failed();
            anyhow::ensure!(
                failed.is_empty(),
                "the wallet breaks the contract: {}",
                failed.iter().map(|r| r.id()).collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
        Command::Health { .. } => unreachable!("answered before the configuration is loaded"),
        Command::Demo {
            command:
                DemoCommand::Pay {
                    payment_request_id,
                    status,
                    amount,
                    currency,
                    created_at,
                    refunded,
                },
        } => {
            let store = app::connect(&settings)?;
            store.migrate().await.context("applying migrations")?;
            let amount = Money::parse(&amount, &currency)?;
            anyhow::ensure!(
                (0..=amount.minor_units).contains(&refunded),
                "--refunded must be between 0 and the amount"
            );
            let new = NewDemoPayment {
                payment_request_id: payment_request_id
                    .unwrap_or_else(|| format!("demo{}", Utc::now().format("%Y%m%d%H%M%S%3f"))),
                status,
                amount,
                created_at: created_at.unwrap_or_else(Utc::now),
                refunded_minor_units: refunded,
            };
            let payment_id = DemoWallet::new(store.pool().clone())
                .create_payment(&new)
                .await?;
            say!(
                "{}",
                serde_json::json!({
                    "paymentRequestId": new.payment_request_id,
                    "paymentId": payment_id,
                    "status": new.status.as_str(),
                    "amount": {"value": new.amount.minor_units.to_string(), "currency": new.amount.currency.code()},
                    "createdAt": new.created_at.to_rfc3339(),
                })
            );
            Ok(())
        }
        Command::Demo {
            command: DemoCommand::Capture { payment_request_id },
        } => {
            let store = app::connect(&settings)?;
            store.migrate().await.context("applying migrations")?;
            let captured = DemoWallet::new(store.pool().clone())
                .capture(&payment_request_id)
                .await?;
            anyhow::ensure!(
                captured,
                "{payment_request_id:?} is not an AUTHORIZED demo payment (unknown, already captured or released)"
            );
            say!(
                "{}",
                serde_json::json!({"paymentRequestId": payment_request_id, "status": "SUCCESS"})
            );
            Ok(())
        }
    }
}

/// `check-config`: what `serve` checks before it connects anywhere, and a summary free of
/// secrets.
fn check_config(settings: &Settings) -> anyhow::Result<()> {
    // A lazy pool and the wallet client: nothing connects until used.
    let components = Components::from_settings(settings)?;
    crate::http::security::MessageSecurity::from_settings(settings, components.clock.clone())?;
    app::cancel_service(settings, &components)?;
    say!(
        "configuration ok: {} rules, cancelPayment on {}{}, internal API on {}, wallet {}, \
         signatures {}",
        match settings.env.is_local() {
            true => "local (APP_ENV=local)",
            false => "production",
        },
        settings.server.listen,
        settings.cancel_path(),
        settings.internal.listen,
        match settings.wallet.kind {
            Some(crate::config::WalletKind::Http) => "http",
            Some(crate::config::WalletKind::Demo) => "demo",
            None => "none",
        },
        match settings.alipayplus.verify_signatures {
            true => "verified",
            false => "NOT verified",
        },
    );
    Ok(())
}

fn generate_keys(out_dir: &std::path::Path) -> anyhow::Result<()> {
    let private_path = out_dir.join("private_key.pem");
    let public_path = out_dir.join("public_key.pem");
    for path in [&private_path, &public_path] {
        anyhow::ensure!(
            !path.exists(),
            "{} exists: keys generate never overwrites a key (move it away first)",
            path.display()
        );
    }
    let pair = GeneratedKeyPair::generate_rsa_2048()?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    write_new(&private_path, pair.private_pem().as_bytes(), 0o600)?;
    write_new(&public_path, pair.public_pem().as_bytes(), 0o644)?;
    say!("private key (keep secret): {}", private_path.display());
    say!("public key: {}", public_path.display());
    say!();
    say!("Upload this public key to Alipay+ (base64 X.509 SubjectPublicKeyInfo):");
    say!("{}", pair.public_base64());
    say!();
    say!("Configure:");
    say!("  [alipayplus]");
    say!("  private_key_file = \"{}\"", private_path.display());
    Ok(())
}

/// Creates `path` with `mode` (before the umask); an existing file is an error, never replaced.
fn write_new(path: &std::path::Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .with_context(|| format!("writing {}", path.display()))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    if !settings.alipayplus.verify_signatures {
        tracing::warn!(
            "alipayplus.verify_signatures = false: ANYONE who can reach {} can cancel payments. \
             Only for a local demo.",
            settings.server.listen
        );
    }
    let components = Components::from_settings(&settings)?;
    components
        .store
        .migrate()
        .await
        .context("applying migrations (is the database reachable?)")?;
    let application = Application::build(&settings, &components)?;
    let stopper = application.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: finishing in-flight requests and the refund engine's batch");
        stopper.stop().await;
    });
    tracing::info!(
        listen = %settings.server.listen,
        internal = %settings.internal.listen,
        path = %settings.cancel_path(),
        wallet = ?settings.wallet.kind,
        env = ?settings.env,
        "serving cancelPayment"
    );
    application.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

/// `health`: one GET on the internal listener, Ok only for a 200.
async fn health(ready: bool, url: Option<&str>, timeout_ms: u64) -> anyhow::Result<()> {
    let base = match url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let listen = std::env::var("MPP_CANCEL__INTERNAL__LISTEN")
                .unwrap_or_else(|_| "127.0.0.1:8081".to_owned());
            format!("http://{}", probe_address(&listen))
        }
    };
    let url = format!("{base}{}", if ready { "/readyz" } else { "/healthz" });
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(timeout_ms))
        .no_proxy()
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url}: no answer"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{url}: {status} {}", body.trim());
    say!("{url}: {status} {}", body.trim());
    Ok(())
}

/// Where to reach a listener bound to `listen` from the same host: a wildcard address is
/// reached through loopback.
fn probe_address(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => listen.to_owned(),
    }
}

/// SIGTERM (orchestrators) or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod health_tests {
    use super::probe_address;

    #[test]
    fn a_wildcard_listener_is_probed_through_loopback() {
        assert_eq!(probe_address("0.0.0.0:8081"), "127.0.0.1:8081");
        assert_eq!(probe_address("[::]:9000"), "[::1]:9000");
        assert_eq!(probe_address("10.1.2.3:8081"), "10.1.2.3:8081");
        assert_eq!(probe_address("127.0.0.1:8081"), "127.0.0.1:8081");
    }
}
