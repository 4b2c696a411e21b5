//! Whether this instance's clock may judge the cancellable period (DESIGN.md, "Refund engine"):
//! the window is judged by the instance's arrival time, so an instance whose clock is more than
//! `server.max_clock_skew_ms` off the database's is not ready and answers cancels `U`.
//!
//! The comparison is one `SELECT clock_timestamp()`, compensated for its round trip
//! ([`ClockOffset`]), made at most every [`REFRESH`] and cached: never once per cancel. It is
//! made when a cancel or a readiness probe finds the cached one older than that (one caller
//! measures; the others use the cached one meanwhile, or wait for the first one ever).

use crate::domain::{Clock, ClockOffset};
use crate::store::Store;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the offset is measured again, at most.
pub const REFRESH: Duration = Duration::from_secs(2);

/// A measurement older than this (the database unreachable meanwhile) no longer vouches for the
/// clock: cancels answer `U` until a new one succeeds.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// The cached comparison of this instance's clock with the database's.
pub struct ClockSkewCheck {
    store: Store,
    clock: Arc<dyn Clock>,
    max_skew: chrono::Duration,
    state: Mutex<Measured>,
    measuring: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Measured {
    /// The last successful measurement and when it was made.
    last: Option<(Instant, ClockOffset)>,
    /// When the last attempt was made, successful or not.
    attempted: Option<Instant>,
}

impl ClockSkewCheck {
    /// `max_skew` is `server.max_clock_skew_ms`.
    pub fn new(store: Store, clock: Arc<dyn Clock>, max_skew: Duration) -> Self {
        Self {
            store,
            clock,
            max_skew: chrono::Duration::from_std(max_skew).unwrap_or(chrono::Duration::MAX),
            state: Mutex::new(Measured::default()),
            measuring: tokio::sync::Mutex::new(()),
        }
    }

    /// `Ok` when this instance's clock may judge windows; otherwise why not (for `/readyz` and
    /// the log).
    pub async fn verdict(&self) -> Result<(), String> {
        if self.due() {
            match self.measuring.try_lock() {
                Ok(_measuring) => self.measure().await,
                // Someone else is measuring: use what is cached, unless nothing ever was.
                Err(_) if self.last().is_some() => {}
                Err(_) => {
                    let _measuring = self.measuring.lock().await;
                    if self.due() {
                        self.measure().await;
                    }
                }
            }
        }
        match self.last() {
            None => Err(
                "this instance's clock has not been compared with the database's yet \
                         (database unreachable?)"
                    .to_owned(),
            ),
            Some((at, _)) if at.elapsed() > STALE_AFTER => Err(format!(
                "this instance's clock has not been compared with the database's for {} s \
                 (database unreachable?)",
                at.elapsed().as_secs()
            )),
            Some((_, offset)) => offset.refusal(self.max_skew).map_or(Ok(()), Err),
        }
    }

    fn due(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.attempted.is_none_or(|at| at.elapsed() >= REFRESH)
    }

    fn last(&self) -> Option<(Instant, ClockOffset)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).last
    }

    async fn measure(&self) {
        let before = self.clock.now();
        let database = self.store.database_time().await;
        let after = self.clock.now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.attempted = Some(Instant::now());
        match database {
            Ok(database) => {
                let offset = ClockOffset::measure(before, database, after);
                if let Some(why) = offset.refusal(self.max_skew) {
                    tracing::error!(reason = %why, "clock skew: not ready, cancels answer U");
                }
                state.last = Some((Instant::now(), offset));
            }
            Err(e) => tracing::warn!(error = %e, "clock skew: cannot read the database's clock"),
        }
    }
}
