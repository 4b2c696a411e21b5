//! Shared test support: a database per test, a scriptable wallet, the app on port 0.

pub mod app;
pub mod db;
pub mod db_proxy;
pub mod keys;
pub mod wallet;

pub use app::{TestOptions, spawn_app};

use chrono::{DateTime, Utc};

/// Parses an RFC 3339 instant; test data is always well-formed.
pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad test instant {s:?}: {e}"))
        .with_timezone(&Utc)
}
