//! The configuration fails closed, through the real binary (DESIGN.md, "Operator surface"): a
//! box that forgets a setting, or keeps a try-out one, refuses to start with one line naming the
//! key, before it connects anywhere. Secrets come from files and never reach the output.

mod common;

use common::{ServiceProcess, fresh_database, run_cli_in};
use mpp_cancel::protocol::keys::GeneratedKeyPair;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Nothing listens there: a configuration that got past the checks would fail on the database
/// instead, with a message that names none of the keys.
const NO_DATABASE: &str = "postgres://nobody@127.0.0.1:1/nothing";
const REPO_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("mppc-fc-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn write(&self, name: &str, content: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Alipay+'s public key and ours, made once per test binary (given inline: no files to remove).
fn keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let alipay = GeneratedKeyPair::generate_rsa_2048().unwrap();
        let mpp = GeneratedKeyPair::generate_rsa_2048().unwrap();
        (alipay.public_base64(), mpp.private_base64())
    })
}

/// A production configuration that passes every start check (an HTTP wallet nobody runs).
fn production() -> Vec<(&'static str, String)> {
    vec![
        ("APP_ENV", "production".into()),
        ("DATABASE_URL", NO_DATABASE.into()),
        ("MPP_CANCEL__ALIPAYPLUS__PSP_ID", "2188000000000042".into()),
        (
            "MPP_CANCEL__ALIPAYPLUS__CLIENT_ID",
            "CLIENT_OF_THIS_MPP".into(),
        ),
        ("MPP_CANCEL__ALIPAYPLUS__PUBLIC_KEYS__1", keys().0.clone()),
        ("MPP_CANCEL__ALIPAYPLUS__PRIVATE_KEY", keys().1.clone()),
        ("MPP_CANCEL__WALLET__KIND", "http".into()),
        (
            "MPP_CANCEL__WALLET__BASE_URL",
            "http://127.0.0.1:9/ledger".into(),
        ),
    ]
}

/// `env` with `changes` applied: a later value for a key wins, and "" removes the key (for
/// `DATABASE_URL`, which the test may inherit, "" is kept: the binary reads it as unset).
fn with(
    env: Vec<(&'static str, String)>,
    changes: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = env;
    for (key, value) in changes {
        env.retain(|(k, _)| k != key);
        if !value.is_empty() || *key == "DATABASE_URL" {
            env.push((key, (*value).to_owned()));
        }
    }
    env
}

/// Runs `mpp-cancel ARGS` with the config dir and env; (success, stdout + stderr).
fn run(config_dir: &str, args: &[&str], env: &[(&'static str, String)]) -> (bool, String) {
    let (ok, stdout, stderr) = run_cli_in(config_dir, args, env);
    (ok, format!("{stdout}{stderr}"))
}

/// `serve` refuses `env`: non-zero, one line naming `key` (and what to do), before connecting.
fn assert_serve_refuses(config_dir: &str, env: &[(&'static str, String)], key: &str) -> String {
    let (ok, output) = run(config_dir, &["serve"], env);
    assert!(!ok, "serve started: {output}");
    let line = output
        .lines()
        .find(|l| l.contains("configuration refused"))
        .unwrap_or_else(|| panic!("no refusal line, expected {key}: {output}"));
    assert!(line.contains(key), "expected {key}: {output}");
    assert_eq!(
        output.matches(&format!("{key}: ")).count(),
        1,
        "said once: {output}"
    );
    assert!(
        !output.contains("applying migrations"),
        "refused before connecting: {output}"
    );
    assert!(
        !output.contains(&keys().1[..40]),
        "no key material: {output}"
    );
    output
}

#[test]
fn a_passing_production_configuration_checks_out_without_connecting() {
    let (ok, output) = run("/nonexistent", &["check-config"], &production());
    assert!(ok, "{output}");
    assert!(
        output.contains("configuration ok: production rules"),
        "{output}"
    );
    assert!(
        !output.contains(&keys().1[..40]),
        "no key material: {output}"
    );
}

#[test]
fn app_env_unset_with_the_repository_config_is_production_and_refuses_the_try_out() {
    // The bare-metal install of the issue: the repository's config/, APP_ENV forgotten, the
    // operator's settings in the environment. local.toml must not load.
    let env = with(production(), &[("APP_ENV", "")]);
    let (ok, output) = run(REPO_CONFIG, &["check-config"], &env);
    assert!(ok, "{output}");
    assert!(output.contains("production rules"), "{output}");
    // What local.toml would have brought is refused without APP_ENV=local, each by name.
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("MPP_CANCEL__ALIPAYPLUS__VERIFY_SIGNATURES", "false")],
            "alipayplus.verify_signatures",
        ),
        (
            &[(
                "MPP_CANCEL__INTERNAL__TOKEN",
                "local-only-internal-token-not-a-secret",
            )],
            "internal.token",
        ),
        (&[("MPP_CANCEL__WALLET__KIND", "")], "wallet.kind"),
        (&[("MPP_CANCEL__WALLET__KIND", "demo")], "wallet.kind"),
    ];
    for (changes, key) in cases {
        let output = assert_serve_refuses(REPO_CONFIG, &with(env.clone(), changes), key);
        assert!(!output.contains("local-only-internal-token"), "{output}");
    }
    // The repository's files alone, nothing in the environment: refused too.
    assert_serve_refuses(
        REPO_CONFIG,
        &[("DATABASE_URL", NO_DATABASE.into())],
        "alipayplus.psp_id",
    );
}

#[test]
fn a_copy_of_local_toml_deployed_as_production_is_refused() {
    let dir = TempDir::new();
    let local = std::fs::read_to_string(Path::new(REPO_CONFIG).join("local.toml")).unwrap();
    dir.write("production.toml", &local);
    let output = assert_serve_refuses(dir.path(), &production(), "internal.token");
    assert!(
        output.contains("APP_ENV=local"),
        "says what to do: {output}"
    );
    let fresh = [(
        "MPP_CANCEL__INTERNAL__TOKEN",
        "f3a9c1e07b5d42869e1f0a2b3c4d5e6f7a8b9c0d",
    )];
    let output = assert_serve_refuses(
        dir.path(),
        &with(production(), &fresh),
        "alipayplus.verify_signatures",
    );
    assert!(
        output.contains("APP_ENV=local"),
        "says what to do: {output}"
    );
    assert!(!output.contains("f3a9c1e07b5d"), "{output}");
}

#[test]
fn the_demo_wallet_outside_local_needs_allow_demo() {
    let env = with(production(), &[("MPP_CANCEL__WALLET__KIND", "demo")]);
    let output = assert_serve_refuses("/nonexistent", &env, "wallet.kind");
    assert!(output.contains("wallet.allow_demo"), "{output}");
    let env = with(env, &[("MPP_CANCEL__WALLET__ALLOW_DEMO", "true")]);
    let (ok, output) = run("/nonexistent", &["check-config"], &env);
    assert!(ok, "{output}");
    assert!(output.contains("wallet demo"), "{output}");
}

#[test]
fn sample_ids_and_published_tokens_are_refused_outside_local() {
    for (key, changes) in [
        (
            "alipayplus.psp_id",
            [("MPP_CANCEL__ALIPAYPLUS__PSP_ID", "1022172000000000001")],
        ),
        (
            "alipayplus.psp_id",
            [("MPP_CANCEL__ALIPAYPLUS__PSP_ID", "YOUR_PSP_ID")],
        ),
        (
            "alipayplus.psp_id",
            [("MPP_CANCEL__ALIPAYPLUS__PSP_ID", "")],
        ),
        (
            "alipayplus.client_id",
            [("MPP_CANCEL__ALIPAYPLUS__CLIENT_ID", "SANDBOX_CLIENT")],
        ),
        (
            "alipayplus.client_id",
            [("MPP_CANCEL__ALIPAYPLUS__CLIENT_ID", "")],
        ),
        (
            "internal.token",
            [(
                "MPP_CANCEL__INTERNAL__TOKEN",
                "change-me-to-a-random-token-of-32-characters-or-more",
            )],
        ),
        (
            "wallet.token",
            [("MPP_CANCEL__WALLET__TOKEN", "bearer-token-for-the-wallet")],
        ),
    ] {
        let output = assert_serve_refuses("/nonexistent", &with(production(), &changes), key);
        assert!(
            !output.contains("change-me-to"),
            "a token is never printed: {output}"
        );
    }
    // With APP_ENV=local the samples are the defaults and the published tokens work.
    let local = with(
        production(),
        &[
            ("APP_ENV", "local"),
            ("MPP_CANCEL__ALIPAYPLUS__PSP_ID", ""),
            ("MPP_CANCEL__ALIPAYPLUS__CLIENT_ID", ""),
            (
                "MPP_CANCEL__INTERNAL__TOKEN",
                "local-only-internal-token-not-a-secret",
            ),
        ],
    );
    let (ok, output) = run(REPO_CONFIG, &["check-config"], &local);
    assert!(ok, "{output}");
    assert!(output.contains("local (APP_ENV=local) rules"), "{output}");
}

#[test]
fn signatures_off_is_refused_on_a_public_listener_even_locally() {
    let local = with(
        production(),
        &[
            ("APP_ENV", "local"),
            ("MPP_CANCEL__ALIPAYPLUS__VERIFY_SIGNATURES", "false"),
        ],
    );
    let (ok, output) = run("/nonexistent", &["check-config"], &local);
    assert!(ok, "loopback: {output}");
    assert!(output.contains("signatures NOT verified"), "{output}");
    let open = with(local, &[("MPP_CANCEL__SERVER__LISTEN", "0.0.0.0:8080")]);
    let output = assert_serve_refuses("/nonexistent", &open, "alipayplus.verify_signatures");
    assert!(output.contains("0.0.0.0:8080"), "{output}");
}

#[test]
fn every_number_is_range_checked_at_start() {
    for (var, value, key) in [
        (
            "MPP_CANCEL__SERVER__MAX_BODY_BYTES",
            "0",
            "server.max_body_bytes",
        ),
        (
            "MPP_CANCEL__SERVER__BODY_TIMEOUT_MS",
            "0",
            "server.body_timeout_ms",
        ),
        (
            "MPP_CANCEL__DATABASE__MAX_CONNECTIONS",
            "0",
            "database.max_connections",
        ),
        (
            "MPP_CANCEL__DATABASE__ACQUIRE_TIMEOUT_MS",
            "0",
            "database.acquire_timeout_ms",
        ),
        (
            "MPP_CANCEL__ALIPAYPLUS__MAX_CLOCK_SKEW_SECONDS",
            "9223372036854775807",
            "alipayplus.max_clock_skew_seconds",
        ),
        (
            "MPP_CANCEL__CANCEL__LOOKUP_TIMEOUT_MS",
            "0",
            "cancel.lookup_timeout_ms",
        ),
        (
            "MPP_CANCEL__CANCEL__LOOKUP_TIMEOUT_MS",
            "90000",
            "cancel.lookup_timeout_ms",
        ),
        (
            "MPP_CANCEL__REFUNDS__LEASE_SECONDS",
            "0",
            "refunds.lease_seconds",
        ),
        (
            "MPP_CANCEL__REFUNDS__LEASE_SECONDS",
            "18446744073709551615",
            "refunds.lease_seconds",
        ),
        ("MPP_CANCEL__REFUNDS__BATCH_SIZE", "0", "refunds.batch_size"),
        (
            "MPP_CANCEL__REFUNDS__BACKOFF_BASE_MS",
            "0",
            "refunds.backoff_base_ms",
        ),
        (
            "MPP_CANCEL__REFUNDS__BACKOFF_MAX_MS",
            "18446744073709551615",
            "refunds.backoff_max_ms",
        ),
        (
            "MPP_CANCEL__REFUNDS__POLL_INTERVAL_MS",
            "0",
            "refunds.poll_interval_ms",
        ),
        (
            "MPP_CANCEL__REFUNDS__MAX_ATTEMPTS",
            "0",
            "refunds.max_attempts",
        ),
        ("MPP_CANCEL__WALLET__TIMEOUT_MS", "0", "wallet.timeout_ms"),
        (
            "MPP_CANCEL__WALLET__TIMEOUT_MS",
            "61000",
            "wallet.timeout_ms",
        ),
    ] {
        let env = with(production(), &[(var, value)]);
        let output = assert_serve_refuses("/nonexistent", &env, key);
        assert!(
            output.contains("set it between") || output.contains("lease"),
            "says what to do: {output}"
        );
    }
}

#[test]
fn secrets_from_files_are_read_and_never_printed() {
    let dir = TempDir::new();
    let token = "file-token-never-printed-0123456789abcdef";
    let token_file = dir.write("internal_token", &format!("{token}\n"));
    let wallet_file = dir.write("wallet_token", "wallet-file-token-never-printed\r\n");
    let env = with(
        production(),
        &[
            ("MPP_CANCEL__INTERNAL__TOKEN_FILE", &token_file),
            ("MPP_CANCEL__WALLET__TOKEN_FILE", &wallet_file),
        ],
    );
    let (ok, output) = run("/nonexistent", &["check-config"], &env);
    assert!(ok, "{output}");
    assert!(!output.contains("never-printed"), "{output}");

    // A file and the inline value: refused, naming both, printing neither.
    let both = with(env.clone(), &[("MPP_CANCEL__INTERNAL__TOKEN", token)]);
    let output = assert_serve_refuses("/nonexistent", &both, "internal.token_file");
    assert!(
        output.contains("internal.token and internal.token_file"),
        "{output}"
    );
    assert!(!output.contains("never-printed"), "{output}");
    let both = with(
        env.clone(),
        &[
            ("DATABASE_URL_FILE", &token_file),
            ("DATABASE_URL", NO_DATABASE),
        ],
    );
    assert_serve_refuses("/nonexistent", &both, "DATABASE_URL_FILE");

    // An unreadable file: refused, naming the key and the path.
    let missing = dir.0.join("missing").display().to_string();
    for var in [
        "MPP_CANCEL__INTERNAL__TOKEN_FILE",
        "MPP_CANCEL__WALLET__TOKEN_FILE",
        "MPP_CANCEL__DATABASE__URL_FILE",
        "DATABASE_URL_FILE",
    ] {
        let env = with(production(), &[(var, &missing), ("DATABASE_URL", "")]);
        let key = match var {
            "DATABASE_URL_FILE" => "DATABASE_URL_FILE".to_owned(),
            _ => var
                .trim_start_matches("MPP_CANCEL__")
                .replacen("__", ".", 1)
                .to_lowercase(),
        };
        let output = assert_serve_refuses("/nonexistent", &env, &key);
        assert!(output.contains(&missing), "names the path: {output}");
    }
}

#[tokio::test]
async fn the_database_url_from_a_file_serves() {
    let (db_url, _pool) = fresh_database().await;
    let dir = TempDir::new();
    let url_file = dir.write("database_url", &format!("{db_url}\n"));
    let service = ServiceProcess::start(
        &db_url,
        &[
            ("DATABASE_URL", String::new()),
            ("DATABASE_URL_FILE", url_file),
            ("RUST_LOG", "info".into()),
        ],
    );
    service.wait_until_up().await;
    let log = service.log_text();
    assert!(log.contains("serving cancelPayment"), "{log}");
    assert!(!log.contains(&db_url), "the URL is never logged: {log}");
}
