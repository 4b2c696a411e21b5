//! PostgreSQL: the only place state lives. Each function is one short statement or transaction,
//! keyed by one paymentRequestId, so the tables can be distributed by that key.

mod cancellations;
mod work;

pub use cancellations::{
    CancellationRecord, NewCancellation, Prior, QueuedRefund, Recorded, StoredAnswer,
};

pub use work::{
    ClaimedWork, FoundPayment, KnownPayment, Nudged, QueueDepth, ReportLine, WorkError, WorkOutcome,
};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::time::Duration;

/// The database, shared by the API, the engine and the guard.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Opens a pool. Connections are made lazily, so a service can start while the database
    /// is still coming up and answer `U` until it is there.
    pub fn connect_lazy(
        options: PgConnectOptions,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Self {
        // No ping before each checkout: it costs a round trip per query. A connection that died
        // with the server fails its query instead, that request answers U (Alipay+ retries) and
        // the pool replaces the connection.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations (idempotent, safe to run from several instances at once:
    /// sqlx takes an advisory lock).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }
}
