//! Refund engine throughput: 10,000 due refunds drained against an instant in-process wallet,
//! next to pgbench's TPC-B figure on the same PostgreSQL in the same run.
//!
//!     scripts/bench-engine            (starts the private PostgreSQL when DATABASE_URL is unset)
//!
//! Environment: BENCH_REFUNDS (10000), BENCH_WORKERS (4), BENCH_BATCH (64),
//! BENCH_PGBENCH_CLIENTS (8), BENCH_PGBENCH_SECONDS (15).

use async_trait::async_trait;
use mpp_cancel::config::Settings;
use mpp_cancel::domain::{Payment, SystemClock};
use mpp_cancel::engine::{EngineConfig, RefundEngine};
use mpp_cancel::store::{MIGRATOR, Store};
use mpp_cancel::wallet::{
    CloseOutcome, RefundOrder, RefundOutcome, VoidOrder, VoidOutcome, Wallet, WalletError,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A wallet that answers at once: the benchmark measures the engine and the database.
struct InstantWallet;

#[async_trait]
impl Wallet for InstantWallet {
    async fn payment(&self, _: &str) -> Result<Option<Payment>, WalletError> {
        Ok(None)
    }
    async fn close(&self, _: &str) -> Result<CloseOutcome, WalletError> {
        Ok(CloseOutcome::Closed)
    }
    async fn refund(&self, order: &RefundOrder) -> Result<RefundOutcome, WalletError> {
        Ok(RefundOutcome::Succeeded {
            amount: Some(order.amount),
            reference: None,
        })
    }
    async fn void(&self, _: &VoidOrder) -> Result<VoidOutcome, WalletError> {
        Ok(VoidOutcome::Voided { reference: None })
    }
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not set: run scripts/bench-engine"))?;
    let refunds: i64 = env_or("BENCH_REFUNDS", 10_000);
    let workers: usize = env_or("BENCH_WORKERS", 4);
    let batch: i64 = env_or("BENCH_BATCH", 64);
    let clients: u32 = env_or("BENCH_PGBENCH_CLIENTS", 8);
    let seconds: u32 = env_or("BENCH_PGBENCH_SECONDS", 15);

    let server = PgConnectOptions::from_str(&url)?.disable_statement_logging();
    let mut admin = sqlx::PgConnection::connect_with(&server).await?;
    for db in ["mppc_bench_engine", "mppc_bench_pgbench"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
            .execute(&mut admin)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut admin)
            .await?;
    }
    let options = server.clone().database("mppc_bench_engine");
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(workers).unwrap_or(4) + 2)
        .connect_with(options)
        .await?;
    MIGRATOR.run(&pool).await?;
    seed(&pool, refunds).await?;

    let mut settings = Settings::local_defaults();
    settings.refunds.workers = workers;
    settings.refunds.batch_size = batch;
    settings.refunds.poll_interval_ms = 5;
    let engine = Arc::new(RefundEngine::new(
        Store::new(pool.clone()),
        Arc::new(InstantWallet),
        Arc::new(SystemClock),
        EngineConfig::from_settings(&settings),
        Arc::new(tokio::sync::Notify::new()),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let running = tokio::spawn(engine.run(stopped));
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cancellations WHERE next_attempt_at IS NOT NULL",
        )
        .fetch_one(&pool)
        .await?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    running.await?;
    let refunded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cancellations WHERE state = 'refunded'")
            .fetch_one(&pool)
            .await?;
    anyhow::ensure!(refunded == refunds, "only {refunded} of {refunds} refunded");
    let engine_rate = refunds as f64 / elapsed.as_secs_f64();

    let tps = pgbench_tpcb(&server, clients, seconds)?;
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| refunds drained | {refunds} in {:.2} s ({workers} workers, batch {batch}) |",
        elapsed.as_secs_f64()
    );
    println!("| engine refunds/s | {engine_rate:.0} |");
    println!("| pgbench TPC-B tps ({clients} clients, {seconds} s) | {tps:.0} |");
    println!("| ratio engine / TPC-B | {:.2} |", engine_rate / tps);
    Ok(())
}

/// 10,000 cancellations of SUCCESS payments, each owing its refund, all due now.
async fn seed(pool: &sqlx::PgPool, n: i64) -> anyhow::Result<()> {
    sqlx::query(
        r#"INSERT INTO cancellations
             (payment_request_id, acquirer_id, psp_id, state, result_code, result_status,
              response_body, payment_id, payment_status, amount_value, currency,
              payment_created_at, settlement_date, requested_at, updated_at, next_attempt_at)
           SELECT 'bench-' || i, 'acq', 'psp', 'refund_pending', 'SUCCESS', 'S', '\x7b7d',
                  'pay-' || i, 'SUCCESS', 100 + i, 'JPY', now(), current_date, now(), now(), now()
             FROM generate_series(1, $1) AS i"#,
    )
    .bind(n)
    .execute(pool)
    .await?;
    sqlx::query(
        r#"INSERT INTO refunds (payment_request_id, payment_id, amount_value, currency, created_at)
           SELECT payment_request_id, payment_id, amount_value, currency, now()
             FROM cancellations"#,
    )
    .execute(pool)
    .await?;
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    Ok(())
}

/// pgbench's built-in TPC-B at scale 10 on the same server, in its own database.
fn pgbench_tpcb(server: &PgConnectOptions, clients: u32, seconds: u32) -> anyhow::Result<f64> {
    let mut base = vec![
        "-U".to_owned(),
        server.get_username().to_owned(),
        "-p".to_owned(),
        server.get_port().to_string(),
        "-h".to_owned(),
        match server.get_socket() {
            Some(dir) => dir.display().to_string(),
            None => server.get_host().to_owned(),
        },
    ];
    let init = Command::new("pgbench")
        .args(&base)
        .args(["-i", "-q", "-s", "10", "mppc_bench_pgbench"])
        .output()?;
    anyhow::ensure!(
        init.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    base.extend([
        "-c".to_owned(),
        clients.to_string(),
        "-j".to_owned(),
        "2".to_owned(),
        "-T".to_owned(),
        seconds.to_string(),
        "mppc_bench_pgbench".to_owned(),
    ]);
    let run = Command::new("pgbench").args(&base).output()?;
    let out = String::from_utf8_lossy(&run.stdout);
    anyhow::ensure!(
        run.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench output:\n{out}"))
}
