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

    /// Moves the clock on by `by` (saturating at the ends of time rather than panicking).
    pub fn advance(&self, by: chrono::Duration) {
        let now = self.now();
        self.set(
            now.checked_add_signed(by)
                .unwrap_or(if by < chrono::Duration::zero() {
                    DateTime::<Utc>::MIN_UTC
                } else {
                    DateTime::<Utc>::MAX_UTC
                }),
        );
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let (at, since) = *self
            .at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.running {
            chrono::Duration::from_std(since.elapsed())
                .ok()
                .and_then(|elapsed| at.checked_add_signed(elapsed))
                .unwrap_or(at)
        } else {
            at
        }
    }
}

/// Another clock moved by a fixed offset: what an instance whose clock is wrong by `offset`
/// shows. The binary uses it only in builds with the `testing` feature (see
/// `MPP_CANCEL_TESTING_CLOCK_OFFSET_MS` in the README), so tests can stand an instance off the
/// database's clock.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock<C> {
    pub inner: C,
    pub offset: chrono::Duration,
}

impl<C: Clock> Clock for OffsetClock<C> {
    fn now(&self) -> DateTime<Utc> {
        let now = self.inner.now();
        now.checked_add_signed(self.offset).unwrap_or(now)
    }
}

/// How far this instance's clock is from the database's, from one `SELECT clock_timestamp()`:
/// the instance's time read just `before` and just `after` the round trip, and the database's
/// answer. The database read its clock somewhere inside the round trip, so the offset is taken
/// against the midpoint and is uncertain by half the round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockOffset {
    /// The database's time minus ours (positive: our clock is behind).
    pub offset: chrono::Duration,
    /// Half the round trip: the measurement's uncertainty.
    pub uncertainty: chrono::Duration,
}

impl ClockOffset {
    pub fn measure(before: DateTime<Utc>, database: DateTime<Utc>, after: DateTime<Utc>) -> Self {
        let round_trip = after
            .signed_duration_since(before)
            .max(chrono::Duration::zero());
        let half = round_trip / 2;
        let midpoint = before.checked_add_signed(half).unwrap_or(before);
        Self {
            offset: database.signed_duration_since(midpoint),
            uncertainty: half,
        }
    }

    /// The reason this instance must not judge windows, when its clock is surely more than
    /// `max` off the database's (beyond the measurement's uncertainty).
    pub fn refusal(&self, max: chrono::Duration) -> Option<String> {
        let surely_off = self.offset.abs() - self.uncertainty;
        (surely_off > max).then(|| {
            format!(
                "this instance's clock is {} ms {} the database's (at most {} ms allowed: \
                 server.max_clock_skew_ms); fix its time synchronisation (NTP)",
                self.offset.num_milliseconds().abs(),
                if self.offset > chrono::Duration::zero() {
                    "behind"
                } else {
                    "ahead of"
                },
                max.num_milliseconds()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn the_offset_is_taken_against_the_midpoint_of_the_round_trip() {
        let m = ClockOffset::measure(at(0), at(50), at(100));
        assert_eq!(m.offset, chrono::Duration::zero());
        assert_eq!(m.uncertainty, chrono::Duration::milliseconds(50));
        let behind = ClockOffset::measure(at(0), at(5050), at(100));
        assert_eq!(behind.offset, chrono::Duration::milliseconds(5000));
        let ahead = ClockOffset::measure(at(0), at(-4950), at(100));
        assert_eq!(ahead.offset, chrono::Duration::milliseconds(-5000));
    }

    #[test]
    fn only_a_skew_surely_beyond_the_limit_is_refused() {
        let max = chrono::Duration::milliseconds(1000);
        assert_eq!(
            ClockOffset::measure(at(0), at(1000), at(0)).refusal(max),
            None
        );
        let off = ClockOffset::measure(at(0), at(1001), at(0))
            .refusal(max)
            .unwrap();
        assert!(
            off.contains("1001 ms behind") && off.contains("1000 ms"),
            "{off}"
        );
        let ahead = ClockOffset::measure(at(0), at(-2000), at(0))
            .refusal(max)
            .unwrap();
        assert!(ahead.contains("ahead of"), "{ahead}");
        // 1.2 s off, but the round trip took 600 ms: it may be within 1 s.
        assert_eq!(
            ClockOffset::measure(at(0), at(1500), at(600)).refusal(max),
            None
        );
    }

    #[test]
    fn an_offset_clock_never_panics_at_the_ends_of_time() {
        let far = OffsetClock {
            inner: SystemClock,
            offset: chrono::Duration::MAX,
        };
        let _ = far.now();
        let clock = ManualClock::new(DateTime::<Utc>::MAX_UTC);
        clock.advance(chrono::Duration::MAX);
        assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
    }
}
