//! Support for the tests that run the real `mpp-cancel` binary as a process.
#![allow(dead_code)] // each test binary uses its own part

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

pub const PSP_ID: &str = "1022172000000000001";
pub const ACQUIRER_ID: &str = "1022188000000000001";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A migrated database of its own on the test server: its URL and a pool.
pub async fn fresh_database() -> (String, PgPool) {
    let url = std::env::var("DATABASE_URL").expect("run through scripts/test");
    let name = format!("mppc_test_{}", uuid::Uuid::new_v4().simple());
    let server = PgConnectOptions::from_str(&url)
        .unwrap()
        .disable_statement_logging();
    let mut admin = sqlx::PgConnection::connect_with(&server).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&mut admin)
        .await
        .unwrap();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let base = &path[..path.rfind('/').expect("a URL with a path")];
    let db_url = match query {
        "" => format!("{base}/{name}"),
        q => format!("{base}/{name}?{q}"),
    };
    let pool = PgPool::connect_with(server.database(&name)).await.unwrap();
    mpp_cancel::store::MIGRATOR.run(&pool).await.unwrap();
    (db_url, pool)
}

/// What every process test runs with unless its `env` says otherwise: the local try-out rules
/// (loopback listeners only), the demo wallet, the sample ids, and timeouts within the short
/// lease the tests use. A test of production behaviour passes `APP_ENV=production` and what
/// production needs (see `tests/fail_closed.rs`).
pub fn local_env() -> Vec<(&'static str, String)> {
    [
        ("APP_ENV", "local"),
        ("MPP_CANCEL__WALLET__KIND", "demo"),
        ("MPP_CANCEL__ALIPAYPLUS__PSP_ID", PSP_ID),
        ("MPP_CANCEL__ALIPAYPLUS__CLIENT_ID", "SANDBOX_CLIENT"),
    ]
    .into_iter()
    .map(|(key, value)| (key, value.to_owned()))
    .collect()
}

/// `mpp-cancel serve` on free ports, configured by the built-in defaults, [`local_env`] and
/// `env` (which wins).
pub struct ServiceProcess {
    pub child: Child,
    pub public: String,
    pub internal: String,
    /// Where the process's log (stderr) goes.
    pub log: std::path::PathBuf,
}

impl ServiceProcess {
    pub fn start(db_url: &str, env: &[(&str, String)]) -> Self {
        let (public_port, internal_port) = (free_port(), free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_mpp-cancel"));
        command
            .arg("serve")
            .arg("--config-dir")
            .arg("/nonexistent")
            .env("DATABASE_URL", db_url)
            .env(
                "MPP_CANCEL__SERVER__LISTEN",
                format!("127.0.0.1:{public_port}"),
            )
            .env(
                "MPP_CANCEL__INTERNAL__LISTEN",
                format!("127.0.0.1:{internal_port}"),
            )
            .env("MPP_CANCEL__ALIPAYPLUS__VERIFY_SIGNATURES", "false")
            .env("MPP_CANCEL__REFUNDS__WORKERS", "2")
            .env("MPP_CANCEL__REFUNDS__POLL_INTERVAL_MS", "50")
            .env("MPP_CANCEL__REFUNDS__LEASE_SECONDS", "2")
            // No timeout longer than the lease.
            .env("MPP_CANCEL__WALLET__TIMEOUT_MS", "2000")
            .env("MPP_CANCEL__CANCEL__LOOKUP_TIMEOUT_MS", "2000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        for (key, value) in local_env().iter().chain(env) {
            command.env(key, value);
        }
        let log = std::env::temp_dir().join(format!("mppc-{}.log", uuid::Uuid::new_v4().simple()));
        command.stderr(std::fs::File::create(&log).expect("a log file"));
        Self {
            log,
            child: command.spawn().expect("the binary starts"),
            public: format!("http://127.0.0.1:{public_port}"),
            internal: format!("http://127.0.0.1:{internal_port}"),
        }
    }

    pub async fn wait_until_up(&self) {
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{}/readyz", self.internal)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service did not come up");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn cancel_url(&self) -> String {
        format!("{}/aps/api/v1/payments/cancelPayment", self.public)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Runs `mpp-cancel ARGS` to completion with [`local_env`] and `env` (which wins): (success,
/// stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    run_cli_in(
        "/nonexistent",
        args,
        &[local_env().as_slice(), env].concat(),
    )
}

/// Runs `mpp-cancel --config-dir CONFIG_DIR ARGS` with exactly `env` added to the test's own
/// environment (minus `APP_ENV` and every `MPP_CANCEL__*`, so nothing leaks in; an empty
/// `DATABASE_URL` counts as unset).
pub fn run_cli_in(
    config_dir: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mpp-cancel"));
    command.args(["--config-dir", config_dir]).args(args);
    for (key, _) in std::env::vars() {
        if key == "APP_ENV" || key.starts_with("MPP_CANCEL__") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
