//! Logging. `RUST_LOG` filters (default `info`); `MPP_CANCEL_LOG_FORMAT=json` writes one JSON
//! object per line for log shippers, anything else readable text.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let json = std::env::var("MPP_CANCEL_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, embedding) is not an error worth failing over.
    let _ = if json {
        builder.json().try_init()
    } else {
        // Values quoted where untrusted input could otherwise forge fields or lines.
        builder.fmt_fields(crate::log_fields::SafeFields).try_init()
    };
}
