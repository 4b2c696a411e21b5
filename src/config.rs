//! Configuration: `config/default.toml`, then `config/{APP_ENV}.toml` (`production` when
//! `APP_ENV` is unset), then environment variables `MPP_CANCEL__{SECTION}__{KEY}`; `DATABASE_URL`
//! wins over `database.url`. Secrets may come from files (`database.url_file`,
//! `DATABASE_URL_FILE`, `internal.token_file`, `wallet.token_file`).
//!
//! It fails closed (DESIGN.md, "Operator surface"): what a production box must choose has no
//! default (`wallet.kind`, `alipayplus.psp_id`, `alipayplus.client_id`), and [`Settings::validate`]
//! refuses what would move money wrongly or open a door, with one line naming the key and what to
//! do ([`Refusal`]). The try-out relaxations (signatures off on a loopback listener, the demo
//! wallet, sample ids, published tokens) apply only with `APP_ENV=local`, set explicitly.

use crate::domain::{CancellationWindow, WindowConfigError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A value that must never reach a log line: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Local try-out or production: from `APP_ENV` only, never from a file or a
    /// `MPP_CANCEL__*` variable (so a file cannot relax the checks it is checked by).
    #[serde(skip)]
    pub env: AppEnv,
    pub server: ServerSettings,
    pub internal: InternalSettings,
    pub database: DatabaseSettings,
    pub alipayplus: AlipayPlusSettings,
    pub cancel: CancelSettings,
    pub refunds: RefundSettings,
    pub wallet: WalletSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Public listener, the one Alipay+ calls.
    pub listen: String,
    /// cancelPayment is served at `{base_path}/v1/payments/cancelPayment`.
    pub base_path: String,
    /// Larger request bodies are refused with PARAM_ILLEGAL before being read in full.
    pub max_body_bytes: usize,
    /// How long a request's body may take to arrive once its head is in. A body still incomplete
    /// then is dropped (answer U/UNKNOWN_EXCEPTION: a transport fault, Alipay+ retries); a body
    /// that has not fully arrived never holds one of the `max_in_flight` places.
    pub body_timeout_ms: u64,
    /// Past this many cancels in flight, answer U/REQUEST_TRAFFIC_EXCEED_LIMIT at once (0: off).
    pub max_in_flight: usize,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// How far this instance's clock may be from the database's (it judges the cancellable
    /// period by its own arrival time): beyond it the instance is not ready and answers cancels
    /// U. At least 1.
    pub max_clock_skew_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InternalSettings {
    pub listen: String,
    /// Bearer token for every `/v1` route of the internal API, reads included; unset or empty:
    /// `/v1` is refused. At least [`MIN_INTERNAL_TOKEN_CHARS`] characters.
    pub token: Option<Secret>,
    /// A file holding `token` (read once at start by [`Settings::load`]).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The operator console's read-only sign-in (`/console`): sees everything, changes nothing.
    /// Optional; unset or empty: no read-only sign-in. At least [`MIN_INTERNAL_TOKEN_CHARS`]
    /// characters, and never the same as `token`.
    #[serde(default)]
    pub read_token: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: Option<Secret>,
    /// A file holding `url` (read once at start by [`Settings::load`]); `DATABASE_URL_FILE`
    /// wins over it as `DATABASE_URL` wins over `url`.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before answering `U`.
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AlipayPlusSettings {
    /// Our MPP id: any other pspId gets ACCESS_DENIED. No default outside `APP_ENV=local`
    /// (empty = unset, refused).
    #[serde(default)]
    pub psp_id: String,
    /// The Client-Id Alipay+ uses. No default outside `APP_ENV=local` (empty = unset, refused).
    #[serde(default)]
    pub client_id: String,
    pub verify_signatures: bool,
    /// keyVersion -> Alipay+'s public key (base64 X.509 SubjectPublicKeyInfo DER, or PEM).
    #[serde(default)]
    pub public_keys: BTreeMap<String, String>,
    /// Our private key (PKCS#8, base64 DER or PEM) used to sign responses.
    pub private_key_file: Option<PathBuf>,
    pub private_key: Option<Secret>,
    /// The keyVersion we sign with.
    pub key_version: String,
    /// Refuse requests whose Request-Time is further than this from now (0: no check, the
    /// default: Alipay+ documents no limit and retries may come much later).
    pub max_clock_skew_seconds: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CancelSettings {
    /// IANA zone T is counted in (`Etc/GMT-8` is UTC+8).
    pub timezone: String,
    /// The time on T+1 after which a payment cannot be cancelled, `HH:MM`.
    pub cutoff: String,
    /// How long a cancel waits for the wallet's payment lookup before answering `U`.
    pub lookup_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RefundSettings {
    pub workers: usize,
    /// Cancellations claimed per transaction and completed per statement.
    pub batch_size: i64,
    /// After a partial batch, how long a worker lets work gather before claiming again.
    pub batch_delay_ms: u64,
    /// Delay after the first failed attempt; doubles per attempt up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub poll_interval_ms: u64,
    pub max_attempts: i32,
    pub lease_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalletKind {
    Demo,
    Http,
}

impl std::str::FromStr for WalletKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "demo" => Ok(Self::Demo),
            "http" => Ok(Self::Http),
            other => Err(format!("{other:?} is not \"http\" or \"demo\"")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct WalletSettings {
    /// No default: `http` (the MPP's ledger) or `demo` must be chosen (empty = unset).
    #[serde(default, deserialize_with = "empty_is_unset")]
    pub kind: Option<WalletKind>,
    /// `demo` outside `APP_ENV=local` (benchmarks, drills) only with this set.
    #[serde(default)]
    pub allow_demo: bool,
    pub base_url: Option<String>,
    pub token: Option<Secret>,
    /// A file holding `token` (read once at start by [`Settings::load`]).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    pub timeout_ms: u64,
}

/// Which rules apply: the local try-out or production. Only `APP_ENV=local`, set explicitly,
/// is [`AppEnv::Local`]; unset, empty or any other name (`production`, `staging`) is
/// [`AppEnv::Production`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppEnv {
    Local,
    #[default]
    Production,
}

impl AppEnv {
    pub fn is_local(self) -> bool {
        self == AppEnv::Local
    }
}

/// `APP_ENV`'s value, or `production` when unset or empty: names `config/{APP_ENV}.toml`.
fn app_env_name() -> Result<String, Refusal> {
    let name = match std::env::var("APP_ENV") {
        Ok(name) if !name.is_empty() => name,
        _ => return Ok("production".to_owned()),
    };
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Refusal::new(
            "APP_ENV",
            format!("{name:?} is not a plain name"),
            "use letters, digits, '-' or '_' (it names config/{APP_ENV}.toml), e.g. production",
        ));
    }
    Ok(name)
}

/// A configuration the service refuses to start with: the key, what is wrong with it, and what
/// to do. Printed as one line; never holds a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}: {fix}")]
pub struct Refusal {
    /// The key as written in a file (`section.key`), or the environment variable's name.
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl Refusal {
    pub fn new(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// Why no [`Settings`]: each is one line that says it all (no source chained under it, so an
/// error chain printed with `{:#}` does not repeat it).
/// An empty value (`MPP_CANCEL__WALLET__KIND=`) is no value.
fn empty_is_unset<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(config::ConfigError),
    #[error("configuration refused: {0}")]
    Window(WindowConfigError),
    #[error("configuration refused: {0}")]
    Refused(Refusal),
}

impl From<config::ConfigError> for SettingsError {
    fn from(e: config::ConfigError) -> Self {
        Self::Load(e)
    }
}

impl From<WindowConfigError> for SettingsError {
    fn from(e: WindowConfigError) -> Self {
        Self::Window(e)
    }
}

impl From<Refusal> for SettingsError {
    fn from(e: Refusal) -> Self {
        Self::Refused(e)
    }
}

/// The largest `server.max_clock_skew_ms` accepted: what a time difference can hold without
/// overflow (a value this large disables the check in all but name; tests with frozen clocks
/// use it).
pub const MAX_CLOCK_SKEW_MS: u64 = i64::MAX as u64 / 1_000_000;

/// The shortest internal token accepted: a guessable token on the internal API would let anyone
/// on that network read cancellations and requeue refunds.
pub const MIN_INTERNAL_TOKEN_CHARS: usize = 32;

/// Every token printed somewhere in this project (config files, the compose file, README):
/// refused outside `APP_ENV=local`, since anyone can read them. A test keeps this list in step
/// with the files.
pub const PUBLISHED_TOKENS: &[&str] = &[
    "local-only-internal-token-not-a-secret",
    "change-me-to-a-random-token-of-32-characters-or-more",
    "0123456789abcdef0123456789abcdef-replace-me",
    "bearer-token-for-the-wallet",
];

/// The sample pspId and Client-Id of the try-out (built-in defaults with `APP_ENV=local`).
pub const LOCAL_SAMPLE_PSP_ID: &str = "1022172000000000001";
pub const LOCAL_SAMPLE_CLIENT_ID: &str = "SANDBOX_CLIENT";

/// Sample and placeholder ids printed in this project: refused outside `APP_ENV=local`, where a
/// box configured with them would answer every real cancel with a final F.
pub const PUBLISHED_SAMPLE_IDS: &[&str] = &[
    LOCAL_SAMPLE_PSP_ID,
    LOCAL_SAMPLE_CLIENT_ID,
    "YOUR_PSP_ID",
    "YOUR_ALIPAY_PLUS_CLIENT_ID",
];

/// Upper bounds of the range checks: far beyond any sensible value, well inside what
/// PostgreSQL intervals, `Duration` and `Instant` arithmetic can hold.
pub mod limits {
    /// A real cancelPayment body is ~150 bytes.
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    /// Timeouts on one request or one call.
    pub const MAX_CALL_TIMEOUT_MS: u64 = 600_000;
    /// A day: a lease is how long a crashed worker's rows wait for another worker.
    pub const MAX_LEASE_SECONDS: u64 = 86_400;
    /// A week between two attempts.
    pub const MAX_BACKOFF_MS: u64 = 7 * 86_400 * 1000;
    /// An hour between two looks for due work.
    pub const MAX_POLL_INTERVAL_MS: u64 = 3_600_000;
    pub const MAX_WORKERS: usize = 1024;
    pub const MAX_BATCH_SIZE: i64 = 10_000;
    pub const MAX_ATTEMPTS: i32 = 100_000;
    pub const MAX_CONNECTIONS: u32 = 10_000;
    pub const MAX_IN_FLIGHT: usize = 10_000_000;
    /// A year.
    pub const MAX_CLOCK_SKEW_SECONDS: i64 = 365 * 86_400;
}

impl Settings {
    /// Loads the layered configuration from `dir` (usually `config/`), reads the secret files
    /// and runs every start check ([`Settings::validate`]).
    pub fn load(dir: &Path) -> Result<Self, SettingsError> {
        let settings = Self::read(dir)?;
        settings.validate()?;
        Ok(settings)
    }

    /// As [`Settings::load`] without the start checks: for the commands other than `serve`
    /// (database tools, `sim`, `wallet-check`) that only borrow a few settings.
    pub fn read(dir: &Path) -> Result<Self, SettingsError> {
        let app_env = app_env_name()?;
        let env = match app_env.as_str() {
            "local" => AppEnv::Local,
            _ => AppEnv::Production,
        };
        let builder = defaults(config::Config::builder(), env)?
            .add_source(config::File::from(dir.join("default.toml")).required(false))
            .add_source(config::File::from(dir.join(format!("{app_env}.toml"))).required(false))
            .add_source(
                config::Environment::with_prefix("MPP_CANCEL")
                    .prefix_separator("__")
                    .separator("__"),
            );
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.env = env;
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        settings.read_secret_files(from_env("DATABASE_URL"), from_env("DATABASE_URL_FILE"))?;
        Ok(settings)
    }

    /// Production defaults: what a library user starts from before filling in what production
    /// needs (`alipayplus.psp_id`, `client_id`, keys, `wallet.kind`); [`Settings::validate`]
    /// refuses them as they are. `DATABASE_URL` is not read.
    pub fn defaults() -> Self {
        Self::defaults_for(AppEnv::Production)
    }

    /// The built-in defaults of the local try-out (`APP_ENV=local`): the sample pspId and
    /// Client-Id, signatures still on, no wallet chosen. What tests start from.
    pub fn local_defaults() -> Self {
        Self::defaults_for(AppEnv::Local)
    }

    fn defaults_for(env: AppEnv) -> Self {
        let mut settings: Self = defaults(config::Config::builder(), env)
            .and_then(|b| b.build())
            .and_then(|c| c.try_deserialize())
            .expect("the built-in defaults deserialize");
        settings.env = env;
        settings
    }

    /// Reads `database.url_file` (or `DATABASE_URL_FILE`), `internal.token_file` and
    /// `wallet.token_file` into the values they hold, once. `database_url` and
    /// `database_url_file` are `DATABASE_URL` and `DATABASE_URL_FILE`, which win over the keys.
    /// A file and an inline value for one secret is refused, as is an unreadable or empty file.
    pub fn read_secret_files(
        &mut self,
        database_url: Option<String>,
        database_url_file: Option<String>,
    ) -> Result<(), Refusal> {
        let db = &mut self.database;
        match (database_url, database_url_file) {
            (Some(_), Some(_)) => {
                return Err(both_set("DATABASE_URL", "DATABASE_URL_FILE"));
            }
            (Some(url), None) => {
                db.url = Some(Secret::new(url));
                db.url_file = None;
            }
            (None, Some(path)) => {
                db.url = Some(read_secret_file("DATABASE_URL_FILE", Path::new(&path))?);
                db.url_file = None;
            }
            (None, None) => {
                resolve_secret(&mut db.url, &mut db.url_file, "database.url")?;
            }
        }
        let internal = &mut self.internal;
        resolve_secret(
            &mut internal.token,
            &mut internal.token_file,
            "internal.token",
        )?;
        let wallet = &mut self.wallet;
        resolve_secret(&mut wallet.token, &mut wallet.token_file, "wallet.token")?;
        Ok(())
    }

    /// Every start check, the binary's: [`Settings::validate_service`], then how the wallet is
    /// built from `wallet.*`.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.validate_service()?;
        check_wallet(self)?;
        Ok(())
    }

    /// The start checks of everything but the choice of wallet, for a service built over
    /// components the caller brings (its own [`crate::wallet::Wallet`]): what
    /// [`crate::app::Application::build`] and [`crate::embed::Embedded::new`] run.
    pub fn validate_service(&self) -> Result<(), SettingsError> {
        self.cancel_window()?;
        check_secret_files_read(self)?;
        check_server(&self.server)?;
        check_internal(self.env, &self.internal)?;
        check_database(&self.database)?;
        check_alipayplus(self.env, &self.server, &self.alipayplus)?;
        check_refunds(&self.refunds, &self.wallet)?;
        check_cancel(&self.cancel, &self.refunds)?;
        in_range(
            "server.max_clock_skew_ms",
            self.server.max_clock_skew_ms,
            1..=MAX_CLOCK_SKEW_MS,
            "milliseconds (default 1000)",
        )?;
        self.check_read_token()?;
        Ok(())
    }

    /// `internal.read_token`, empty counting as unset (as for `internal.token`).
    pub fn read_token(&self) -> Option<&Secret> {
        self.internal
            .read_token
            .as_ref()
            .filter(|t| !t.expose().is_empty())
    }

    /// The read-only console token is as long as the operator's, never equal to it, and never
    /// one published in the project outside local.
    fn check_read_token(&self) -> Result<(), Refusal> {
        let Some(read) = self.read_token() else {
            return Ok(());
        };
        let chars = read.expose().chars().count();
        if chars < MIN_INTERNAL_TOKEN_CHARS {
            return Err(Refusal::new(
                "internal.read_token",
                format!(
                    "is {chars} characters long: it must be at least {MIN_INTERNAL_TOKEN_CHARS}"
                ),
                "generate one (`openssl rand -hex 32`), or leave it unset",
            ));
        }
        if self.internal_token() == Some(read) {
            return Err(Refusal::new(
                "internal.read_token",
                "is the same as internal.token (a read-only sign-in would act)",
                "give the read-only sign-in a token of its own",
            ));
        }
        refuse_published_token(self.env, "internal.read_token", read)
    }

    /// `internal.token`, where an empty value (e.g. `MPP_CANCEL__INTERNAL__TOKEN=`) counts as
    /// unset: an empty token would be matched by an empty Authorization header.
    pub fn internal_token(&self) -> Option<&Secret> {
        self.internal
            .token
            .as_ref()
            .filter(|t| !t.expose().is_empty())
    }

    pub fn cancel_window(&self) -> Result<CancellationWindow, WindowConfigError> {
        CancellationWindow::parse(&self.cancel.timezone, &self.cancel.cutoff)
    }

    /// The path Alipay+ posts cancelPayment to.
    pub fn cancel_path(&self) -> String {
        format!("{}/v1/payments/cancelPayment", self.server.base_path)
    }
}

fn both_set(inline: &str, file: &str) -> Refusal {
    Refusal::new(
        file,
        format!("both {inline} and {file} are set"),
        "set only one of them (the file, to keep the secret out of the environment)",
    )
}

/// `value` from `file` when only the file is given; both given is refused.
fn resolve_secret(
    value: &mut Option<Secret>,
    file: &mut Option<PathBuf>,
    key: &str,
) -> Result<(), Refusal> {
    let Some(path) = file.take() else {
        return Ok(());
    };
    let file_key = format!("{key}_file");
    if value.is_some() {
        return Err(both_set(key, &file_key));
    }
    *value = Some(read_secret_file(&file_key, &path)?);
    Ok(())
}

/// A secret file's content, trailing newline (`\n` or `\r\n`) trimmed.
fn read_secret_file(key: &str, path: &Path) -> Result<Secret, Refusal> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Refusal::new(
            key,
            format!("cannot read {}: {e}", path.display()),
            "make the file readable by the service's user, or unset the key",
        )
    })?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(Refusal::new(
            key,
            format!("{} is empty", path.display()),
            "write the secret into the file, or unset the key",
        ));
    }
    Ok(Secret::new(trimmed))
}

/// Settings built by hand must not name a secret file that nothing read.
fn check_secret_files_read(s: &Settings) -> Result<(), Refusal> {
    let files = [
        ("database.url_file", &s.database.url_file),
        ("internal.token_file", &s.internal.token_file),
        ("wallet.token_file", &s.wallet.token_file),
    ];
    match files.into_iter().find(|(_, file)| file.is_some()) {
        Some((key, _)) => Err(Refusal::new(
            key,
            "is set but was not read",
            "call Settings::read_secret_files before validating (Settings::load does)",
        )),
        None => Ok(()),
    }
}

/// `value` within `range`, or a refusal naming `key` and the range.
fn in_range<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    what: &str,
) -> Result<(), Refusal> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(Refusal::new(
        key,
        format!("{value} is out of range"),
        format!(
            "set it between {} and {} ({what})",
            range.start(),
            range.end()
        ),
    ))
}

fn check_server(server: &ServerSettings) -> Result<(), Refusal> {
    let base = &server.base_path;
    if !base.is_empty() && (!base.starts_with('/') || base.ends_with('/')) {
        return Err(Refusal::new(
            "server.base_path",
            format!("{base:?} must start with '/' and not end with '/'"),
            "e.g. \"/aps/api\", or \"\" for no prefix",
        ));
    }
    in_range(
        "server.max_body_bytes",
        server.max_body_bytes,
        1..=limits::MAX_BODY_BYTES,
        "bytes; a real cancelPayment is ~150",
    )?;
    in_range(
        "server.body_timeout_ms",
        server.body_timeout_ms,
        1..=limits::MAX_CALL_TIMEOUT_MS,
        "milliseconds",
    )?;
    in_range(
        "server.max_in_flight",
        server.max_in_flight,
        0..=limits::MAX_IN_FLIGHT,
        "0 turns shedding off",
    )?;
    in_range(
        "server.workers",
        server.workers,
        0..=limits::MAX_WORKERS,
        "0 = one per core",
    )
}

fn check_internal(env: AppEnv, internal: &InternalSettings) -> Result<(), Refusal> {
    let Some(token) = internal.token.as_ref().filter(|t| !t.expose().is_empty()) else {
        return Ok(());
    };
    let chars = token.expose().chars().count();
    if chars < MIN_INTERNAL_TOKEN_CHARS {
        return Err(Refusal::new(
            "internal.token",
            format!("is {chars} characters long"),
            format!(
                "it must be at least {MIN_INTERNAL_TOKEN_CHARS} (e.g. `openssl rand -hex 32`), \
                 or unset to refuse the internal API's /v1 routes"
            ),
        ));
    }
    refuse_published_token(env, "internal.token", token)
}

fn refuse_published_token(env: AppEnv, key: &str, token: &Secret) -> Result<(), Refusal> {
    if env.is_local() || !PUBLISHED_TOKENS.contains(&token.expose()) {
        return Ok(());
    }
    Err(Refusal::new(
        key,
        "is a token published in this project's files (anyone can read it)",
        "generate one (`openssl rand -hex 32`); published tokens work with APP_ENV=local only",
    ))
}

fn check_database(database: &DatabaseSettings) -> Result<(), Refusal> {
    in_range(
        "database.max_connections",
        database.max_connections,
        1..=limits::MAX_CONNECTIONS,
        "connections in this process's pool",
    )?;
    in_range(
        "database.acquire_timeout_ms",
        database.acquire_timeout_ms,
        1..=limits::MAX_CALL_TIMEOUT_MS,
        "milliseconds",
    )
}

/// Whether `listen` (`host:port`) binds a loopback address only.
fn is_loopback_listener(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    listen
        .rsplit_once(':')
        .is_some_and(|(host, port)| host == "localhost" && port.parse::<u16>().is_ok())
}

fn check_alipayplus(
    env: AppEnv,
    server: &ServerSettings,
    a: &AlipayPlusSettings,
) -> Result<(), Refusal> {
    if !a.verify_signatures {
        if !env.is_local() {
            return Err(Refusal::new(
                "alipayplus.verify_signatures",
                "is false outside APP_ENV=local (anyone who reaches the port could cancel payments)",
                "set it to true with alipayplus.public_keys and alipayplus.private_key_file \
                 (false is for APP_ENV=local on a loopback server.listen only)",
            ));
        }
        if !is_loopback_listener(&server.listen) {
            return Err(Refusal::new(
                "alipayplus.verify_signatures",
                format!(
                    "is false while server.listen = {:?} is not a loopback address",
                    server.listen
                ),
                "set server.listen to 127.0.0.1:PORT for the try-out, or verify signatures",
            ));
        }
    }
    for (key, value, what) in [
        (
            "alipayplus.psp_id",
            &a.psp_id,
            "the pspId Alipay+ assigned to this MPP",
        ),
        (
            "alipayplus.client_id",
            &a.client_id,
            "the Client-Id Alipay+ sends to this MPP",
        ),
    ] {
        if value.is_empty() {
            return Err(Refusal::new(key, "is not set", format!("set it to {what}")));
        }
        if !env.is_local() && PUBLISHED_SAMPLE_IDS.contains(&value.as_str()) {
            return Err(Refusal::new(
                key,
                format!("{value:?} is a sample value published in this project"),
                format!("set it to {what} (samples work with APP_ENV=local only)"),
            ));
        }
    }
    in_range(
        "alipayplus.max_clock_skew_seconds",
        a.max_clock_skew_seconds,
        0..=limits::MAX_CLOCK_SKEW_SECONDS,
        "seconds; 0 turns the check off",
    )
}

fn check_cancel(cancel: &CancelSettings, refunds: &RefundSettings) -> Result<(), Refusal> {
    in_range(
        "cancel.lookup_timeout_ms",
        cancel.lookup_timeout_ms,
        1..=limits::MAX_CALL_TIMEOUT_MS,
        "milliseconds",
    )?;
    not_longer_than_the_lease(
        "cancel.lookup_timeout_ms",
        cancel.lookup_timeout_ms,
        refunds,
    )
}

/// A timeout no longer than `refunds.lease_seconds`.
fn not_longer_than_the_lease(key: &str, ms: u64, refunds: &RefundSettings) -> Result<(), Refusal> {
    let lease_ms = refunds.lease_seconds.saturating_mul(1000);
    if ms <= lease_ms {
        return Ok(());
    }
    Err(Refusal::new(
        key,
        format!(
            "{ms} ms is longer than refunds.lease_seconds ({} s)",
            refunds.lease_seconds
        ),
        "shorten it or lengthen refunds.lease_seconds",
    ))
}

fn check_refunds(r: &RefundSettings, wallet: &WalletSettings) -> Result<(), Refusal> {
    in_range(
        "refunds.lease_seconds",
        r.lease_seconds,
        1..=limits::MAX_LEASE_SECONDS,
        "seconds",
    )?;
    in_range(
        "refunds.workers",
        r.workers,
        0..=limits::MAX_WORKERS,
        "0 runs no refund engine in this process",
    )?;
    in_range(
        "refunds.batch_size",
        r.batch_size,
        1..=limits::MAX_BATCH_SIZE,
        "rows per claim",
    )?;
    in_range(
        "refunds.batch_delay_ms",
        r.batch_delay_ms,
        0..=limits::MAX_CALL_TIMEOUT_MS,
        "milliseconds",
    )?;
    in_range(
        "refunds.backoff_max_ms",
        r.backoff_max_ms,
        1..=limits::MAX_BACKOFF_MS,
        "milliseconds",
    )?;
    in_range(
        "refunds.backoff_base_ms",
        r.backoff_base_ms,
        1..=r.backoff_max_ms,
        "milliseconds, at most refunds.backoff_max_ms",
    )?;
    in_range(
        "refunds.poll_interval_ms",
        r.poll_interval_ms,
        1..=limits::MAX_POLL_INTERVAL_MS,
        "milliseconds",
    )?;
    in_range(
        "refunds.max_attempts",
        r.max_attempts,
        1..=limits::MAX_ATTEMPTS,
        "attempts before manual_review",
    )?;
    // The engine's call timeout, whatever wallet it calls.
    in_range(
        "wallet.timeout_ms",
        wallet.timeout_ms,
        1..=limits::MAX_CALL_TIMEOUT_MS,
        "milliseconds",
    )?;
    not_longer_than_the_lease("wallet.timeout_ms", wallet.timeout_ms, r)
}

/// How the binary builds its wallet from `wallet.*`.
fn check_wallet(s: &Settings) -> Result<(), Refusal> {
    let wallet = &s.wallet;
    match wallet.kind {
        None => Err(Refusal::new(
            "wallet.kind",
            "is not set",
            "set it to \"http\" (the MPP's ledger at wallet.base_url) or \"demo\" (a try-out \
             wallet kept in this database)",
        )),
        Some(WalletKind::Demo) if !s.env.is_local() && !wallet.allow_demo => Err(Refusal::new(
            "wallet.kind",
            "is \"demo\" outside APP_ENV=local (no real money would be refunded)",
            "set it to \"http\" with wallet.base_url, or wallet.allow_demo = true for a \
             benchmark or drill",
        )),
        Some(WalletKind::Http) if wallet.base_url.as_deref().unwrap_or("").is_empty() => {
            Err(Refusal::new(
                "wallet.base_url",
                "is not set while wallet.kind = \"http\"",
                "set it to the MPP ledger's adapter URL",
            ))
        }
        Some(_) => match &wallet.token {
            Some(token) => refuse_published_token(s.env, "wallet.token", token),
            None => Ok(()),
        },
    }
}

type Builder = config::ConfigBuilder<config::builder::DefaultState>;

/// The built-in defaults. `wallet.kind` has none; the sample ids only with `APP_ENV=local`.
fn defaults(b: Builder, env: AppEnv) -> Result<Builder, config::ConfigError> {
    let b = b
        .set_default("server.listen", "127.0.0.1:8080")?
        .set_default("server.base_path", "/aps/api")?
        .set_default("server.max_body_bytes", 8192)?
        .set_default("server.body_timeout_ms", 5000)?
        .set_default("server.max_in_flight", 1024)?
        .set_default("server.workers", 0)?
        .set_default("server.max_clock_skew_ms", 1000)?
        .set_default("internal.listen", "127.0.0.1:8081")?
        .set_default("database.max_connections", 20)?
        .set_default("database.acquire_timeout_ms", 2000)?
        .set_default("alipayplus.verify_signatures", true)?
        .set_default("alipayplus.key_version", "1")?
        .set_default("alipayplus.max_clock_skew_seconds", 0)?
        .set_default("cancel.timezone", "Etc/GMT-8")?
        .set_default("cancel.cutoff", "00:30")?
        .set_default("cancel.lookup_timeout_ms", 3000)?
        .set_default("refunds.workers", 4)?
        .set_default("refunds.batch_size", 32)?
        .set_default("refunds.batch_delay_ms", 50)?
        .set_default("refunds.backoff_base_ms", 1000)?
        .set_default("refunds.backoff_max_ms", 300_000)?
        .set_default("refunds.poll_interval_ms", 500)?
        .set_default("refunds.max_attempts", 20)?
        .set_default("refunds.lease_seconds", 60)?
        .set_default("wallet.timeout_ms", 5000)?;
    match env {
        AppEnv::Local => b
            .set_default("alipayplus.psp_id", LOCAL_SAMPLE_PSP_ID)?
            .set_default("alipayplus.client_id", LOCAL_SAMPLE_CLIENT_ID),
        AppEnv::Production => Ok(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Local defaults with the demo wallet: a configuration that passes every check.
    fn local() -> Settings {
        let mut s = Settings::local_defaults();
        s.wallet.kind = Some(WalletKind::Demo);
        s
    }

    /// Production settings that pass every check.
    fn production() -> Settings {
        let mut s = Settings::defaults();
        s.alipayplus.psp_id = "2188000000000042".into();
        s.alipayplus.client_id = "CLIENT_OF_THIS_MPP".into();
        s.wallet.kind = Some(WalletKind::Http);
        s.wallet.base_url = Some("https://ledger.internal".into());
        s
    }

    fn refused_key(s: &Settings) -> String {
        match s.validate() {
            Err(SettingsError::Refused(r)) => r.key,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_design() {
        let s = Settings::defaults();
        assert_eq!(s.env, AppEnv::Production);
        assert_eq!(s.server.listen, "127.0.0.1:8080");
        assert_eq!(s.cancel_path(), "/aps/api/v1/payments/cancelPayment");
        assert_eq!(s.internal.listen, "127.0.0.1:8081");
        assert!(s.alipayplus.verify_signatures);
        assert_eq!(s.wallet.kind, None, "wallet.kind has no default");
        assert_eq!(s.alipayplus.psp_id, "", "no sample pspId outside local");
        assert_eq!(s.alipayplus.client_id, "");
        assert_eq!(s.cancel_window().unwrap(), CancellationWindow::default());
        let l = Settings::local_defaults();
        assert_eq!(l.env, AppEnv::Local);
        assert_eq!(l.alipayplus.psp_id, LOCAL_SAMPLE_PSP_ID);
        assert_eq!(l.alipayplus.client_id, LOCAL_SAMPLE_CLIENT_ID);
        assert_eq!(l.wallet.kind, None);
        local().validate().unwrap();
        production().validate().unwrap();
    }

    #[test]
    fn production_defaults_are_refused_until_filled_in() {
        let mut s = Settings::defaults();
        assert_eq!(refused_key(&s), "alipayplus.psp_id");
        s.alipayplus.psp_id = "2188000000000042".into();
        assert_eq!(refused_key(&s), "alipayplus.client_id");
        s.alipayplus.client_id = "CLIENT_OF_THIS_MPP".into();
        assert_eq!(refused_key(&s), "wallet.kind");
        s.validate_service().unwrap();
        let message = s.validate().unwrap_err().to_string();
        assert!(
            message.contains("\"http\"") && message.contains("\"demo\""),
            "{message}"
        );
        assert!(!message.contains('\n'), "one line: {message}");
    }

    #[test]
    fn an_empty_internal_token_is_no_token_and_a_short_one_is_refused() {
        let mut s = local();
        assert!(s.validate().is_ok(), "no token: fine, /v1 is refused");
        s.internal.token = Some(Secret::new(""));
        assert!(s.validate().is_ok());
        assert_eq!(s.internal_token(), None);
        s.internal.token = Some(Secret::new("change-me"));
        let error = s.validate().unwrap_err();
        assert_eq!(refused_key(&s), "internal.token");
        assert!(error.to_string().contains("at least 32"), "{error}");
        assert!(!error.to_string().contains("change-me"), "{error}");
        s.internal.token = Some(Secret::new("x".repeat(32)));
        assert!(s.validate().is_ok());
        assert!(s.internal_token().is_some());
    }

    #[test]
    fn published_tokens_work_in_local_only() {
        for token in PUBLISHED_TOKENS.iter().filter(|t| t.len() >= 32) {
            let mut s = local();
            s.internal.token = Some(Secret::new(*token));
            s.validate().unwrap();
            let mut s = production();
            s.internal.token = Some(Secret::new(*token));
            assert_eq!(refused_key(&s), "internal.token");
            assert!(!s.validate().unwrap_err().to_string().contains(token));
        }
        let mut s = production();
        s.wallet.token = Some(Secret::new("bearer-token-for-the-wallet"));
        assert_eq!(refused_key(&s), "wallet.token");
        s.wallet.token = Some(Secret::new("a-token-only-this-ledger-knows"));
        s.validate().unwrap();
    }

    /// Every token written in the project's configuration, compose file and README is in
    /// [`PUBLISHED_TOKENS`]: a new example cannot become a working production token.
    #[test]
    fn the_published_token_list_covers_the_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("README.md"), root.join("deploy/compose.yaml")];
        for entry in std::fs::read_dir(root.join("config")).unwrap() {
            files.push(entry.unwrap().path());
        }
        let mut found = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines() {
                for marker in ["token = \"", "Bearer ", "TOKEN: "] {
                    let Some((_, rest)) = line.split_once(marker) else {
                        continue;
                    };
                    let value: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && !"\"'`".contains(*c))
                        .collect();
                    // Variables and placeholders ({wallet.token}, $X, ${X:?...}) are not tokens.
                    if value.len() >= 8 && !value.starts_with(['$', '{', '<']) {
                        found.push((file.display().to_string(), value));
                    }
                }
            }
        }
        assert!(
            found.len() >= 3,
            "the scan finds the known examples: {found:?}"
        );
        for (file, token) in found {
            assert!(
                PUBLISHED_TOKENS.contains(&token.as_str()),
                "{file} publishes {token:?}: add it to PUBLISHED_TOKENS"
            );
        }
    }

    #[test]
    fn signatures_off_only_in_local_on_a_loopback_listener() {
        let mut s = local();
        s.alipayplus.verify_signatures = false;
        for listen in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "127.0.0.1:0",
        ] {
            s.server.listen = listen.into();
            s.validate().unwrap();
        }
        for listen in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.0.0.5:8080",
            "example.com:8080",
        ] {
            s.server.listen = listen.into();
            assert_eq!(refused_key(&s), "alipayplus.verify_signatures", "{listen}");
        }
        let mut p = production();
        p.alipayplus.verify_signatures = false;
        assert_eq!(refused_key(&p), "alipayplus.verify_signatures");
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("APP_ENV=local")
        );
    }

    #[test]
    fn the_demo_wallet_outside_local_needs_allow_demo() {
        let mut s = production();
        s.wallet.kind = Some(WalletKind::Demo);
        assert_eq!(refused_key(&s), "wallet.kind");
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("wallet.allow_demo")
        );
        s.wallet.allow_demo = true;
        s.validate().unwrap();
        let mut s = production();
        s.wallet.base_url = None;
        assert_eq!(refused_key(&s), "wallet.base_url");
    }

    #[test]
    fn sample_ids_work_in_local_only() {
        for id in PUBLISHED_SAMPLE_IDS {
            let mut s = production();
            s.alipayplus.psp_id = (*id).into();
            assert_eq!(refused_key(&s), "alipayplus.psp_id");
            let mut s = production();
            s.alipayplus.client_id = (*id).into();
            assert_eq!(refused_key(&s), "alipayplus.client_id");
            let mut s = local();
            s.alipayplus.client_id = (*id).into();
            s.validate().unwrap();
        }
        let mut s = local();
        s.alipayplus.psp_id = String::new();
        assert_eq!(
            refused_key(&s),
            "alipayplus.psp_id",
            "unset is refused even locally"
        );
    }

    #[test]
    fn every_number_is_range_checked() {
        type Change = fn(&mut Settings);
        let cases: &[(&str, Change)] = &[
            ("server.max_body_bytes", |s| s.server.max_body_bytes = 0),
            ("server.max_body_bytes", |s| {
                s.server.max_body_bytes = usize::MAX
            }),
            ("server.body_timeout_ms", |s| s.server.body_timeout_ms = 0),
            ("server.body_timeout_ms", |s| {
                s.server.body_timeout_ms = u64::MAX
            }),
            ("server.max_in_flight", |s| {
                s.server.max_in_flight = usize::MAX
            }),
            ("server.workers", |s| s.server.workers = 1_000_000),
            ("database.max_connections", |s| {
                s.database.max_connections = 0
            }),
            ("database.acquire_timeout_ms", |s| {
                s.database.acquire_timeout_ms = 0
            }),
            ("database.acquire_timeout_ms", |s| {
                s.database.acquire_timeout_ms = u64::MAX
            }),
            ("alipayplus.max_clock_skew_seconds", |s| {
                s.alipayplus.max_clock_skew_seconds = -1
            }),
            ("alipayplus.max_clock_skew_seconds", |s| {
                s.alipayplus.max_clock_skew_seconds = i64::MAX
            }),
            ("cancel.lookup_timeout_ms", |s| {
                s.cancel.lookup_timeout_ms = 0
            }),
            ("cancel.lookup_timeout_ms", |s| {
                s.cancel.lookup_timeout_ms = 61_000
            }),
            ("refunds.lease_seconds", |s| s.refunds.lease_seconds = 0),
            ("refunds.lease_seconds", |s| {
                s.refunds.lease_seconds = u64::MAX
            }),
            ("refunds.workers", |s| s.refunds.workers = usize::MAX),
            ("refunds.batch_size", |s| s.refunds.batch_size = 0),
            ("refunds.batch_size", |s| s.refunds.batch_size = -5),
            ("refunds.batch_delay_ms", |s| {
                s.refunds.batch_delay_ms = u64::MAX
            }),
            ("refunds.backoff_base_ms", |s| s.refunds.backoff_base_ms = 0),
            ("refunds.backoff_base_ms", |s| {
                s.refunds.backoff_base_ms = 400_000
            }),
            ("refunds.backoff_max_ms", |s| {
                s.refunds.backoff_max_ms = u64::MAX
            }),
            ("refunds.backoff_max_ms", |s| s.refunds.backoff_max_ms = 0),
            ("refunds.poll_interval_ms", |s| {
                s.refunds.poll_interval_ms = 0
            }),
            ("refunds.max_attempts", |s| s.refunds.max_attempts = 0),
            ("refunds.max_attempts", |s| s.refunds.max_attempts = -1),
            ("wallet.timeout_ms", |s| s.wallet.timeout_ms = 0),
            ("wallet.timeout_ms", |s| s.wallet.timeout_ms = 61_000),
        ];
        for (key, change) in cases {
            let mut s = local();
            change(&mut s);
            assert_eq!(refused_key(&s), *key);
            let message = s.validate().unwrap_err().to_string();
            assert!(
                message.contains("set it between") || message.contains("lease"),
                "{message}"
            );
        }
        // A timeout is no longer than the lease, whatever the mode.
        let mut s = production();
        s.refunds.lease_seconds = 2;
        s.wallet.timeout_ms = 2000;
        s.cancel.lookup_timeout_ms = 2000;
        s.validate().unwrap();
        s.wallet.timeout_ms = 2001;
        assert_eq!(refused_key(&s), "wallet.timeout_ms");
    }

    #[test]
    fn a_bad_base_path_names_the_key() {
        let mut s = local();
        s.server.base_path = "aps/".into();
        assert_eq!(refused_key(&s), "server.base_path");
    }

    /// A file removed when dropped.
    struct TempFile(PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn secret_file(content: &str) -> (TempFile, PathBuf) {
        let name = format!("mppc-secret-{}", uuid::Uuid::new_v4().simple());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, content).unwrap();
        (TempFile(path.clone()), path)
    }

    #[test]
    fn secrets_come_from_files_trimmed_of_one_trailing_newline() {
        let (_d1, token) = secret_file("t0ken-from-a-file-of-32-characters-at-least\n");
        let (_d2, url) = secret_file("postgres://u:pw@db/x\r\n");
        let (_d3, wallet) = secret_file(" spaced wallet token ");
        let mut s = local();
        s.internal.token_file = Some(token);
        s.database.url_file = Some(url);
        s.wallet.token_file = Some(wallet);
        s.read_secret_files(None, None).unwrap();
        assert_eq!(
            s.internal_token().unwrap().expose(),
            "t0ken-from-a-file-of-32-characters-at-least"
        );
        assert_eq!(
            s.database.url.as_ref().unwrap().expose(),
            "postgres://u:pw@db/x"
        );
        assert_eq!(
            s.wallet.token.as_ref().unwrap().expose(),
            " spaced wallet token "
        );
        s.validate().unwrap();
        assert!(
            !format!("{s:?}").contains("t0ken-from-a-file"),
            "never printed"
        );
    }

    #[test]
    fn a_secret_set_twice_or_unreadable_is_refused() {
        let (_dir, path) = secret_file("postgres://u:hunter2@db/x\n");
        let mut s = local();
        s.internal.token = Some(Secret::new("x".repeat(40)));
        s.internal.token_file = Some(path.clone());
        let refusal = s.read_secret_files(None, None).unwrap_err();
        assert_eq!(refusal.key, "internal.token_file");
        assert!(
            refusal
                .problem
                .contains("internal.token and internal.token_file")
        );

        let mut s = local();
        s.database.url_file = Some(path.clone());
        s.database.url = Some(Secret::new("postgres://inline"));
        assert_eq!(
            s.read_secret_files(None, None).unwrap_err().key,
            "database.url_file"
        );

        let mut s = local();
        let file = Some(path.display().to_string());
        let refusal = s
            .read_secret_files(Some("postgres://env".into()), file.clone())
            .unwrap_err();
        assert!(
            refusal
                .problem
                .contains("DATABASE_URL and DATABASE_URL_FILE")
        );
        s.read_secret_files(None, file).unwrap();
        assert_eq!(
            s.database.url.as_ref().unwrap().expose(),
            "postgres://u:hunter2@db/x"
        );

        let mut s = local();
        s.wallet.token_file = Some("/nonexistent/wallet-token".into());
        let refusal = s.read_secret_files(None, None).unwrap_err();
        assert_eq!(refusal.key, "wallet.token_file");
        assert!(
            refusal.problem.contains("/nonexistent/wallet-token"),
            "{refusal}"
        );

        let (_empty_dir, empty) = secret_file("\n");
        let mut s = local();
        s.wallet.token_file = Some(empty);
        assert!(
            s.read_secret_files(None, None)
                .unwrap_err()
                .problem
                .contains("empty")
        );

        let mut s = local();
        s.wallet.token_file = Some(path);
        assert_eq!(
            refused_key(&s),
            "wallet.token_file",
            "validate refuses an unread file"
        );
    }

    #[test]
    fn the_clock_skew_limit_is_checked() {
        let mut s = local();
        assert_eq!(s.server.max_clock_skew_ms, 1000);
        for bad in [0, MAX_CLOCK_SKEW_MS + 1, u64::MAX] {
            s.server.max_clock_skew_ms = bad;
            let error = s.validate().unwrap_err();
            assert!(
                error.to_string().contains("server.max_clock_skew_ms"),
                "{error}"
            );
        }
        s.server.max_clock_skew_ms = MAX_CLOCK_SKEW_MS;
        assert!(s.validate().is_ok());
        assert!(
            chrono::Duration::from_std(std::time::Duration::from_millis(MAX_CLOCK_SKEW_MS)).is_ok()
        );
    }

    #[test]
    fn a_read_token_is_long_and_not_the_operator_token() {
        let mut s = local();
        s.internal.read_token = Some(Secret::new(""));
        assert!(s.validate().is_ok());
        assert_eq!(s.read_token(), None);
        s.internal.read_token = Some(Secret::new("short-read"));
        let error = s.validate().unwrap_err();
        assert!(error.to_string().contains("internal.read_token"), "{error}");
        assert!(!error.to_string().contains("short-read"), "{error}");
        s.internal.token = Some(Secret::new("o".repeat(32)));
        s.internal.read_token = Some(Secret::new("o".repeat(32)));
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("same as internal.token")
        );
        s.internal.read_token = Some(Secret::new("r".repeat(32)));
        assert!(s.validate().is_ok());
        assert!(s.read_token().is_some());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }
}
