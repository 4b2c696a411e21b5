//! When to try again: exponential backoff with jitter, capped (River's shape, smaller numbers:
//! a user is waiting for the money).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failed attempt.
    pub base: Duration,
    /// No delay is ever longer than this.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `attempt` (1-based) failed. `jitter` in [0, 1) spreads retries of many
    /// rows over ±20% so they do not hit the wallet in waves.
    pub fn delay(&self, attempt: i32, jitter: f64) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let raw = self.base.saturating_mul(2u32.saturating_pow(exponent));
        let capped = raw.min(self.max);
        let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
        // Not `mul_f64`: it panics when the product overflows (a cap near Duration::MAX).
        Duration::try_from_secs_f64(capped.as_secs_f64() * factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(300),
    };

    #[test]
    fn doubles_then_caps() {
        let mid = |attempt| B.delay(attempt, 0.5);
        assert_eq!(mid(1), Duration::from_secs(1));
        assert_eq!(mid(2), Duration::from_secs(2));
        assert_eq!(mid(5), Duration::from_secs(16));
        assert_eq!(mid(30), Duration::from_secs(300));
        assert_eq!(mid(i32::MAX), Duration::from_secs(300));
        assert_eq!(mid(0), Duration::from_secs(1));
    }

    #[test]
    fn the_largest_delays_do_not_panic() {
        let huge = Backoff {
            base: Duration::MAX,
            max: Duration::MAX,
        };
        for attempt in [1, 2, 31, i32::MAX] {
            for jitter in [0.0, 0.5, 0.999] {
                assert!(huge.delay(attempt, jitter) <= Duration::MAX);
            }
        }
        assert_eq!(huge.delay(1, 0.999), Duration::MAX);
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_under_the_cap() {
        assert_eq!(B.delay(3, 0.0), Duration::from_millis(3200));
        assert!(B.delay(3, 0.999) < Duration::from_millis(4800));
        assert_eq!(B.delay(40, 0.999), Duration::from_secs(300));
    }
}
