//! A point in time passed into the core; the core never reads a clock itself.

/// Microseconds since the Unix epoch, UTC.
///
/// The broker reads the clock once per request and passes the value in, so that every
/// decision within a request sees one `now`, and tests can inject any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Returns the timestamp `micros` microseconds after the Unix epoch.
    pub const fn from_unix_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Returns the timestamp `seconds` seconds after the Unix epoch.
    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Timestamp(seconds.saturating_mul(1_000_000))
    }

    /// Returns microseconds since the Unix epoch.
    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// Returns the timestamp `seconds` later (or earlier, if negative), saturating.
    #[must_use]
    pub const fn plus_seconds(self, seconds: i64) -> Self {
        Timestamp(self.0.saturating_add(seconds.saturating_mul(1_000_000)))
    }

    /// Returns the calendar date in the UK at this time (GMT, or BST from 01:00 UTC on
    /// the last Sunday in March to 01:00 UTC on the last Sunday in October): the day
    /// birthdays and statutory deadlines count in. The rule is written out rather than
    /// read from a time-zone database, which the core may not read; `None` outside the
    /// calendar's range.
    pub fn uk_date(self) -> Option<jiff::civil::Date> {
        static UK: std::sync::OnceLock<Option<jiff::tz::TimeZone>> = std::sync::OnceLock::new();
        let zone = UK.get_or_init(|| jiff::tz::TimeZone::posix("GMT0BST,M3.5.0/1,M10.5.0").ok()).as_ref()?;
        let instant = jiff::Timestamp::from_microsecond(self.0).ok()?;
        Some(instant.to_zoned(zone.clone()).date())
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    fn at(text: &str) -> Timestamp {
        let instant: jiff::Timestamp = text.parse().unwrap();
        Timestamp::from_unix_micros(instant.as_microsecond())
    }

    #[test]
    fn uk_dates_follow_gmt_and_bst() {
        let cases = [
            // Winter: GMT.
            ("2026-12-31T23:30:00Z", date(2026, 12, 31)),
            ("2027-01-01T00:00:00Z", date(2027, 1, 1)),
            // BST starts at 01:00 UTC on the last Sunday in March (29 March 2026).
            ("2026-03-28T23:30:00Z", date(2026, 3, 28)),
            ("2026-03-29T23:30:00Z", date(2026, 3, 30)),
            // Summer: an hour ahead, so half past eleven UTC is the next day.
            ("2026-06-30T23:30:00Z", date(2026, 7, 1)),
            ("2026-06-30T22:59:59Z", date(2026, 6, 30)),
            // BST ends at 01:00 UTC on the last Sunday in October (25 October 2026).
            ("2026-10-24T23:30:00Z", date(2026, 10, 25)),
            ("2026-10-25T23:30:00Z", date(2026, 10, 25)),
        ];
        for (text, expected) in cases {
            assert_eq!(at(text).uk_date(), Some(expected), "{text}");
        }
    }
}
