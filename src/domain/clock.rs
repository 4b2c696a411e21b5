//! Where "now" comes from. The cancellable period ends at an exact millisecond, so tests must be
//! able to stand on it; chrono's clock cannot be paused, hence this seam.

use chrono::{DateTime, Utc};
use std::sync::Mutex;
use std::time::Instant;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that tests set: frozen (it only moves when told to), or running at real speed from a
/// chosen instant (for the refund engine, whose backoff must elapse).
#[derive(Debug)]
pub struct ManualClock {
    /// The time shown at the instant (or always, when frozen).
    at: Mutex<(DateTime<Utc>, Instant)>,
    running: bool,
}

impl ManualClock {
    /// A frozen clock showing `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            at: Mutex::new((at, Instant::now())),
            running: false,
        }
    }

    /// A clock showing `at` now and moving on in real time.
    pub fn running_from(at: DateTime<Utc>) -> Self {
        Self {
            running: true,
            ..Self::new(at)
        }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self
            .at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = (at, Instant::now());
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.set(self.now() + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let (at, since) = *self
            .at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.running {
            at + chrono::Duration::from_std(since.elapsed()).unwrap_or(chrono::Duration::zero())
        } else {
            at
        }
    }
}
