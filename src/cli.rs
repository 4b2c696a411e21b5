//! The `mpp-cancel` command line (DESIGN.md, "Operator surface").

use crate::app::{self, Application, Components};
use crate::config::Settings;
use crate::domain::{Money, PaymentStatus};
use crate::guard::Guard;
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
pub enum Command {
    /// Serve cancelPayment (migrations are applied first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Show what is stored for a paymentRequestId (state, refund, attempts), as JSON.
    Show { payment_request_id: String },
    /// Put a cancellation in manual_review back to work, with fresh attempts.
    Requeue { payment_request_id: String },
    /// List a settlement day's cancellations (T in cancel.timezone) for the clearing job.
    Report {
        /// The settlement day, YYYY-MM-DD.
        #[arg(long)]
        date: chrono::NaiveDate,
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
    },
    /// The demo wallet kept in PostgreSQL, for trying the service locally.
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Create (or replace) a demo payment.
    Pay {
        /// Alipay+'s id for the payment (default: a new random id).
        #[arg(long)]
        payment_request_id: Option<String>,
        /// SUCCESS, FAILED or PROCESSING.
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
}

fn parse_status(s: &str) -> Result<PaymentStatus, String> {
    PaymentStatus::parse(&s.to_ascii_uppercase())
        .ok_or_else(|| format!("{s:?} is not SUCCESS, FAILED or PROCESSING"))
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

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.config_dir)?;
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let store = app::connect(&settings)?;
            store.migrate().await.context("applying migrations")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Show { payment_request_id } => {
            let guard = Guard::new(app::connect(&settings)?);
            match guard.cancellation(&payment_request_id).await? {
                Some(record) => {
                    println!("{}", serde_json::to_string_pretty(&record)?);
                    Ok(())
                }
                None => anyhow::bail!("no cancellation for {payment_request_id:?}"),
            }
        }
        Command::Requeue { payment_request_id } => {
            let store = app::connect(&settings)?;
            match store
                .requeue(&payment_request_id, Utc::now(), "cli")
                .await?
            {
                Some(state) => {
                    println!("{payment_request_id}: requeued as {state}");
                    Ok(())
                }
                None => anyhow::bail!("{payment_request_id:?} is not in manual_review"),
            }
        }
        Command::Report { date, format } => {
            let store = app::connect(&settings)?;
            let format: crate::report::Format =
                format.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let lines = store.settlement_report(date).await?;
            print!("{}", crate::report::render(&lines, format));
            Ok(())
        }
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
            println!(
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
    }
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
        "serving cancelPayment"
    );
    application.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
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
