//! The cancellable period: from the payment's creation until the cut-off (00:30 by default) on
//! the day after T, where T is the payment's calendar day in the settlement zone (UTC+8).

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// When a payment can still be cancelled. Built from `cancel.timezone` and `cancel.cutoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancellationWindow {
    zone: Tz,
    cutoff: NaiveTime,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WindowConfigError {
    #[error("cancel.timezone {0:?} is not an IANA time zone (e.g. \"Etc/GMT-8\" for UTC+8)")]
    UnknownZone(String),
    #[error("cancel.cutoff {0:?} is not a time of day as HH:MM (e.g. \"00:30\")")]
    BadCutoff(String),
}

impl Default for CancellationWindow {
    /// Alipay+'s rule: 00:30 UTC+8 on T+1. (`Etc/GMT-8` is UTC+8: the POSIX sign is inverted.)
    fn default() -> Self {
        Self {
            zone: chrono_tz::Etc::GMTMinus8,
            cutoff: NaiveTime::from_hms_opt(0, 30, 0).expect("00:30 is a time"),
        }
    }
}

impl CancellationWindow {
    pub fn new(zone: Tz, cutoff: NaiveTime) -> Self {
        Self { zone, cutoff }
    }

    /// Reads the configuration values: an IANA zone name and `HH:MM` (or `HH:MM:SS`).
    pub fn parse(zone: &str, cutoff: &str) -> Result<Self, WindowConfigError> {
        let zone: Tz = zone
            .parse()
            .map_err(|_| WindowConfigError::UnknownZone(zone.to_owned()))?;
        let cutoff = NaiveTime::parse_from_str(cutoff, "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(cutoff, "%H:%M:%S"))
            .map_err(|_| WindowConfigError::BadCutoff(cutoff.to_owned()))?;
        Ok(Self { zone, cutoff })
    }

    /// T: the settlement day an instant belongs to.
    pub fn settlement_day(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.zone).date_naive()
    }

    /// The first instant at which a payment created at `created_at` can no longer be cancelled.
    pub fn closes_at(&self, created_at: DateTime<Utc>) -> DateTime<Utc> {
        self.closes_on(self.settlement_day(created_at))
            .unwrap_or(created_at)
    }

    /// The first instant at which a payment of settlement day `day` can no longer be cancelled
    /// (the cut-off on the next day). None for the last day chrono can name, which has no next
    /// day: [`Self::closes_at`] then treats the window as closed (fail closed), never a panic.
    pub fn closes_on(&self, day: NaiveDate) -> Option<DateTime<Utc>> {
        let next_day = day.succ_opt()?;
        let local = next_day.and_time(self.cutoff);
        Some(match self.zone.from_local_datetime(&local) {
            LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
            // The cut-off falls in a DST gap: the window closes when the clocks jump over it,
            // i.e. at the first valid local time after it (gaps are at most a few hours).
            LocalResult::None => (1..=240)
                .find_map(|minutes| {
                    self.zone
                        .from_local_datetime(&local.checked_add_signed(Duration::minutes(minutes))?)
                        .earliest()
                })
                .map(|at| at.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(&local)),
        })
    }

    /// The settlement days a cancellation whose payment's T is not known may belong to, from
    /// its first arrival: the payment was created before the cancel arrived, inside its window,
    /// so T is the arrival's day, or the day before when the cancel arrived before that day's
    /// cut-off. (A payment created after the cancel arrived is refused by the tombstone, so it
    /// is on no day.) The first arrival's day comes first.
    pub fn possible_days(&self, first_arrival: DateTime<Utc>) -> Vec<NaiveDate> {
        let day = self.settlement_day(first_arrival);
        let mut days = vec![day];
        if let Some(before) = day.pred_opt()
            && self
                .closes_on(before)
                .is_some_and(|closes| first_arrival < closes)
        {
            days.push(before);
        }
        days
    }

    /// Whether a payment created at `created_at` can still be cancelled at `now`.
    pub fn is_open(&self, created_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now < self.closes_at(created_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn closes_at_half_past_midnight_utc8_on_the_next_day() {
        let w = CancellationWindow::default();
        for created in [
            "2026-11-20T00:00:00+08:00",
            "2026-11-20T12:00:00+08:00",
            "2026-11-20T23:59:59.999+08:00",
        ] {
            assert_eq!(
                w.closes_at(utc(created)),
                utc("2026-11-21T00:30:00+08:00"),
                "{created}"
            );
        }
    }

    #[test]
    fn t_is_the_utc8_day_not_the_utc_day() {
        let w = CancellationWindow::default();
        // 16:00 UTC is already 00:00 the next day in UTC+8.
        let created = utc("2026-11-20T16:00:00Z");
        assert_eq!(
            w.settlement_day(created),
            NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
        );
        assert_eq!(w.closes_at(created), utc("2026-11-22T00:30:00+08:00"));
    }

    #[test]
    fn open_until_the_last_millisecond() {
        let w = CancellationWindow::default();
        let created = utc("2026-11-20T23:59:59.999+08:00");
        assert!(w.is_open(created, utc("2026-11-21T00:29:59.999+08:00")));
        assert!(!w.is_open(created, utc("2026-11-21T00:30:00.000+08:00")));
    }

    #[test]
    fn an_unknown_payment_may_belong_to_the_day_before_until_the_cutoff() {
        let w = CancellationWindow::default();
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        assert_eq!(
            w.possible_days(utc("2026-11-21T00:29:59.999+08:00")),
            vec![day(21), day(20)]
        );
        assert_eq!(
            w.possible_days(utc("2026-11-21T00:30:00+08:00")),
            vec![day(21)]
        );
        assert_eq!(
            w.possible_days(utc("2026-11-20T23:59:59+08:00")),
            vec![day(20)]
        );
        assert_eq!(w.closes_on(NaiveDate::MAX), None);
    }

    #[test]
    fn parses_configuration() {
        let w = CancellationWindow::parse("Asia/Manila", "00:15").unwrap();
        assert_eq!(
            w.closes_at(utc("2026-11-20T10:00:00+08:00")),
            utc("2026-11-21T00:15:00+08:00")
        );
        assert_eq!(
            CancellationWindow::parse("Mars/Olympus", "00:30"),
            Err(WindowConfigError::UnknownZone("Mars/Olympus".into()))
        );
        assert_eq!(
            CancellationWindow::parse("Etc/GMT-8", "25:00"),
            Err(WindowConfigError::BadCutoff("25:00".into()))
        );
    }

    #[test]
    fn a_cutoff_in_a_dst_gap_closes_when_the_clocks_jump() {
        // New York springs forward 02:00 -> 03:00 on 2026-03-08.
        let w = CancellationWindow::parse("America/New_York", "02:30").unwrap();
        let created = utc("2026-03-07T12:00:00-05:00");
        assert_eq!(w.closes_at(created), utc("2026-03-08T03:00:00-04:00"));
    }
}
