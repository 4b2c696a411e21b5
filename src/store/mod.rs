//! PostgreSQL: the only place state lives. Each function is one short statement or transaction,
//! keyed by one paymentRequestId, so the tables can be distributed by that key.

mod cancellations;
mod clock;
mod history;
mod operator;
mod overview;
mod reconcile;
mod work;

pub use cancellations::{
    CancellationRecord, NewCancellation, Prior, QueuedReversal, Recorded, StoredAnswer,
};

pub use history::{AuditEvent, Reversal};
pub use operator::{
    BulkRequeued, DRY_RUN_IDS, ListCursor, ListPage, REQUEUE_CHUNK, RequestedBetween,
    RequeueRefused, RequeueSelection,
};
pub use overview::{ReversalsDone, StateCount};
pub use reconcile::ReconcileHit;
pub use work::{
    ClaimedWork, FoundPayment, KnownPayment, MAX_DELAY, Nudged, QueueDepth, ReportLine, WorkError,
    WorkOutcome,
};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The database, shared by the API, the engine and the guard.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    node: Arc<NodeWatch>,
}

/// A pooled connection idle at least this long is checked (one round trip) before it is used:
/// after a failover it may be dead or on a node that is now read-only. Busy connections are not
/// checked, so the hot path keeps its single round trip per decision.
const IDLE_CHECK_AFTER: Duration = Duration::from_millis(500);

/// How long a refused (read-only) node is remembered as the reason the database is unavailable.
const REFUSAL_MEMORY: Duration = Duration::from_secs(10);

/// What the pool knows about the node behind `database.url` (DESIGN.md, "Beyond one machine").
///
/// Through a failover the address stays the same and the node behind it changes. Every new
/// connection says which node it reached (the postmaster's start time); when that changes, every
/// connection opened before is dropped at its next checkout, without a round trip, instead of
/// failing one request each. A node that is read-only (a standby, or a demoted old primary) is
/// refused at connect time and remembered, so readiness can say why the database is unavailable
/// and cancels answer U (never S, never a stored F) until a writable primary answers.
#[derive(Debug, Default)]
struct NodeWatch {
    state: Mutex<NodeState>,
}

#[derive(Debug, Default)]
struct NodeState {
    /// The writable node the newest connection reached.
    node: Option<String>,
    /// Connections opened before this instant belong to a node that is gone.
    fenced_at: Option<Instant>,
    /// The last time a node was refused, and why.
    refused: Option<(Instant, String)>,
}

/// Why a node was refused as the primary.
#[derive(Debug, thiserror::Error)]
#[error("database is read-only ({0}): waiting for a writable primary")]
pub struct ReadOnlyNode(&'static str);

impl NodeWatch {
    /// A connection opened `age` ago may be used (it was not opened before the last fence).
    fn admits(&self, age: Duration) -> bool {
        let state = self.state.lock().expect("node watch lock");
        match state.fenced_at {
            Some(fenced_at) => Instant::now()
                .checked_sub(age)
                .is_some_and(|opened| opened >= fenced_at),
            None => true,
        }
    }

    /// A new connection reached a writable `node`; a different node than before fences the older
    /// connections.
    fn reached(&self, node: String) {
        let mut state = self.state.lock().expect("node watch lock");
        state.refused = None;
        if state.node.as_ref().is_some_and(|known| *known != node) {
            tracing::warn!(node = %node, "database node changed (failover): dropping older connections");
            state.fenced_at = Some(Instant::now());
        }
        state.node = Some(node);
    }

    /// A node refused as read-only: older connections are suspect too.
    fn refused(&self, why: &ReadOnlyNode) {
        let mut state = self.state.lock().expect("node watch lock");
        let now = Instant::now();
        state.fenced_at = Some(now);
        state.refused = Some((now, why.to_string()));
    }

    fn refusal(&self) -> Option<String> {
        let state = self.state.lock().expect("node watch lock");
        state
            .refused
            .as_ref()
            .filter(|(at, _)| at.elapsed() < REFUSAL_MEMORY)
            .map(|(_, why)| why.clone())
    }
}

/// Whether the node behind `conn` takes writes; a writable node is named by its postmaster's
/// start time, which differs between the old primary and the promoted standby.
async fn writable_node(
    conn: &mut PgConnection,
) -> Result<Result<String, ReadOnlyNode>, sqlx::Error> {
    // `transaction_read_only` is what libpq's target_session_attrs=read-write checks: on for a
    // standby and for a node fenced with default_transaction_read_only.
    let row = sqlx::query(
        "SELECT pg_is_in_recovery() AS in_recovery, \
                current_setting('transaction_read_only') = 'on' AS read_only, \
                pg_postmaster_start_time()::text AS node",
    )
    .fetch_one(&mut *conn)
    .await?;
    let in_recovery: bool = row.try_get("in_recovery")?;
    let read_only: bool = row.try_get("read_only")?;
    Ok(if in_recovery {
        Err(ReadOnlyNode("a standby in recovery"))
    } else if read_only {
        Err(ReadOnlyNode("transactions are read-only"))
    } else {
        Ok(row.try_get("node")?)
    })
}

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            node: Arc::default(),
        }
    }

    /// Opens a pool. Connections are made lazily, so a service can start while the database
    /// is still coming up and answer `U` until it is there.
    pub fn connect_lazy(
        options: PgConnectOptions,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Self {
        // No ping before each checkout: it costs a round trip per query. Only connections idle
        // for a while are checked (see NodeWatch); a busy one that died with the server fails
        // its query instead, that request answers U (Alipay+ retries) and sqlx's release ping
        // closes it.
        let node = Arc::new(NodeWatch::default());
        let (on_connect, on_acquire) = (node.clone(), node.clone());
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                let node = on_connect.clone();
                Box::pin(async move {
                    match writable_node(conn).await? {
                        Ok(name) => {
                            node.reached(name);
                            Ok(())
                        }
                        Err(read_only) => {
                            node.refused(&read_only);
                            Err(sqlx::Error::Configuration(Box::new(read_only)))
                        }
                    }
                })
            })
            .before_acquire(move |conn, meta| {
                let node = on_acquire.clone();
                Box::pin(async move {
                    if !node.admits(meta.age) {
                        return Ok(false);
                    }
                    if meta.idle_for < IDLE_CHECK_AFTER {
                        return Ok(true);
                    }
                    match writable_node(conn).await? {
                        Ok(name) => {
                            node.reached(name);
                            Ok(true)
                        }
                        Err(read_only) => {
                            node.refused(&read_only);
                            Ok(false)
                        }
                    }
                })
            })
            .connect_lazy_with(options);
        Self { pool, node }
    }

    /// Why the database cannot take writes, if a node was recently refused as read-only (a
    /// standby, a demoted primary): for `/readyz`. `None` says nothing about reachability.
    pub fn read_only_reason(&self) -> Option<String> {
        self.node.refusal()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_node_fences_the_connections_opened_before_it() {
        let watch = NodeWatch::default();
        watch.reached("node-a".into());
        assert!(watch.admits(Duration::from_secs(5)), "same node: no fence");
        watch.reached("node-a".into());
        assert!(watch.admits(Duration::from_secs(5)));

        std::thread::sleep(Duration::from_millis(5));
        watch.reached("node-b".into());
        assert!(
            !watch.admits(Duration::from_secs(5)),
            "opened before the failover"
        );
        std::thread::sleep(Duration::from_millis(5));
        assert!(watch.admits(Duration::ZERO), "opened after it");
    }

    #[test]
    fn a_read_only_node_is_remembered_as_the_reason_until_a_writable_one_answers() {
        let watch = NodeWatch::default();
        assert_eq!(watch.refusal(), None);
        watch.refused(&ReadOnlyNode("a standby in recovery"));
        let reason = watch.refusal().expect("a reason");
        assert!(reason.contains("read-only"), "{reason}");
        assert!(!watch.admits(Duration::from_secs(1)));
        watch.reached("node-b".into());
        assert_eq!(watch.refusal(), None);
    }
}
