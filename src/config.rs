//! Configuration: `config/default.toml`, then `config/{APP_ENV}.toml` (`local` by default), then
//! environment variables `MPP_CANCEL__{SECTION}__{KEY}`; `DATABASE_URL` wins over `database.url`.
//! Every key has a default here, so the binary also runs with no files at all.

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
}

#[derive(Debug, Clone, Deserialize)]
pub struct InternalSettings {
    pub listen: String,
    /// Bearer token for every `/v1` route of the internal API, reads included; unset or empty:
    /// `/v1` is refused. At least [`MIN_INTERNAL_TOKEN_CHARS`] characters.
    pub token: Option<Secret>,
    /// The operator console's read-only sign-in (`/console`): sees everything, changes nothing.
    /// Optional; unset or empty: no read-only sign-in. At least [`MIN_INTERNAL_TOKEN_CHARS`]
    /// characters, and never the same as `token`.
    #[serde(default)]
    pub read_token: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: Option<Secret>,
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before answering `U`.
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AlipayPlusSettings {
    /// Our MPP id: any other pspId gets ACCESS_DENIED.
    pub psp_id: String,
    /// The Client-Id Alipay+ uses.
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

#[derive(Debug, Clone, Deserialize)]
pub struct WalletSettings {
    pub kind: WalletKind,
    pub base_url: Option<String>,
    pub token: Option<Secret>,
    pub timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error(transparent)]
    Window(#[from] WindowConfigError),
    #[error("server.base_path {0:?} must start with '/' and not end with '/'")]
    BasePath(String),
    #[error(
        "internal.token is {0} characters long: it must be at least {MIN_INTERNAL_TOKEN_CHARS} \
         (e.g. `openssl rand -hex 32`), or unset to refuse the internal API's /v1 routes"
    )]
    InternalTokenTooShort(usize),
    #[error("server.body_timeout_ms must be greater than zero")]
    BodyTimeout,
    #[error(
        "internal.read_token is {0} characters long: it must be at least \
         {MIN_INTERNAL_TOKEN_CHARS} (e.g. `openssl rand -hex 32`), or unset"
    )]
    ReadTokenTooShort(usize),
    #[error("internal.read_token must differ from internal.token (a read-only sign-in would act)")]
    ReadTokenIsOperatorToken,
}

/// The shortest internal token accepted: a guessable token on the internal API would let anyone
/// on that network read cancellations and requeue refunds.
pub const MIN_INTERNAL_TOKEN_CHARS: usize = 32;

impl Settings {
    /// Loads the layered configuration from `dir` (usually `config/`).
    pub fn load(dir: &Path) -> Result<Self, SettingsError> {
        let app_env = std::env::var("APP_ENV").unwrap_or_else(|_| "local".to_owned());
        let builder = defaults(config::Config::builder())?
            .add_source(config::File::from(dir.join("default.toml")).required(false))
            .add_source(config::File::from(dir.join(format!("{app_env}.toml"))).required(false))
            .add_source(
                config::Environment::with_prefix("MPP_CANCEL")
                    .prefix_separator("__")
                    .separator("__"),
            );
        let builder = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => builder.set_override("database.url", url)?,
            _ => builder,
        };
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// The defaults alone (plus `DATABASE_URL`): what tests and library users start from.
    pub fn defaults() -> Self {
        defaults(config::Config::builder())
            .and_then(|b| b.build())
            .and_then(|c| c.try_deserialize())
            .expect("the built-in defaults deserialize")
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        self.cancel_window()?;
        let base = &self.server.base_path;
        if !base.is_empty() && (!base.starts_with('/') || base.ends_with('/')) {
            return Err(SettingsError::BasePath(base.clone()));
        }
        if let Some(token) = self.internal_token() {
            let chars = token.expose().chars().count();
            if chars < MIN_INTERNAL_TOKEN_CHARS {
                return Err(SettingsError::InternalTokenTooShort(chars));
            }
        }
        if self.server.body_timeout_ms == 0 {
            return Err(SettingsError::BodyTimeout);
        }
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

    /// The read-only console token is as long as the operator's and never equal to it.
    fn check_read_token(&self) -> Result<(), SettingsError> {
        let Some(read) = self.read_token() else {
            return Ok(());
        };
        let chars = read.expose().chars().count();
        if chars < MIN_INTERNAL_TOKEN_CHARS {
            return Err(SettingsError::ReadTokenTooShort(chars));
        }
        if self.internal_token() == Some(read) {
            return Err(SettingsError::ReadTokenIsOperatorToken);
        }
        Ok(())
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

type Builder = config::ConfigBuilder<config::builder::DefaultState>;

fn defaults(b: Builder) -> Result<Builder, config::ConfigError> {
    b.set_default("server.listen", "127.0.0.1:8080")?
        .set_default("server.base_path", "/aps/api")?
        .set_default("server.max_body_bytes", 8192)?
        .set_default("server.body_timeout_ms", 5000)?
        .set_default("server.max_in_flight", 1024)?
        .set_default("server.workers", 0)?
        .set_default("internal.listen", "127.0.0.1:8081")?
        .set_default("database.max_connections", 20)?
        .set_default("database.acquire_timeout_ms", 2000)?
        .set_default("alipayplus.psp_id", "1022172000000000001")?
        .set_default("alipayplus.client_id", "SANDBOX_CLIENT")?
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
        .set_default("wallet.kind", "demo")?
        .set_default("wallet.timeout_ms", 5000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let s = Settings::defaults();
        assert_eq!(s.server.listen, "127.0.0.1:8080");
        assert_eq!(s.cancel_path(), "/aps/api/v1/payments/cancelPayment");
        assert_eq!(s.internal.listen, "127.0.0.1:8081");
        assert!(s.alipayplus.verify_signatures);
        assert_eq!(s.wallet.kind, WalletKind::Demo);
        assert_eq!(s.cancel_window().unwrap(), CancellationWindow::default());
    }

    #[test]
    fn an_empty_internal_token_is_no_token_and_a_short_one_is_refused() {
        let mut s = Settings::defaults();
        assert!(s.validate().is_ok(), "no token: fine, /v1 is refused");
        s.internal.token = Some(Secret::new(""));
        assert!(s.validate().is_ok());
        assert_eq!(s.internal_token(), None);
        s.internal.token = Some(Secret::new("change-me"));
        let error = s.validate().unwrap_err();
        assert!(matches!(error, SettingsError::InternalTokenTooShort(9)));
        assert!(error.to_string().contains("at least 32"), "{error}");
        assert!(!error.to_string().contains("change-me"), "{error}");
        s.internal.token = Some(Secret::new("x".repeat(32)));
        assert!(s.validate().is_ok());
        assert!(s.internal_token().is_some());
    }

    #[test]
    fn a_read_token_is_long_and_not_the_operator_token() {
        let mut s = Settings::defaults();
        s.internal.read_token = Some(Secret::new(""));
        assert!(s.validate().is_ok());
        assert_eq!(s.read_token(), None);
        s.internal.read_token = Some(Secret::new("short-read"));
        let error = s.validate().unwrap_err();
        assert!(
            matches!(error, SettingsError::ReadTokenTooShort(10)),
            "{error}"
        );
        assert!(!error.to_string().contains("short-read"), "{error}");
        s.internal.token = Some(Secret::new("o".repeat(32)));
        s.internal.read_token = Some(Secret::new("o".repeat(32)));
        assert!(matches!(
            s.validate().unwrap_err(),
            SettingsError::ReadTokenIsOperatorToken
        ));
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
