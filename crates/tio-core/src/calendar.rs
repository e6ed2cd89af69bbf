//! Calendar dates and the range of times the contract accepts.
//!
//! A date of birth of 30 February, or a review in month 13, would be stored, shown in
//! profiles and audited as if it were a date; every `Date` and `Timestamp` in a request
//! is checked here first.

use crate::{FieldViolation, Timestamp};

/// The earliest year a `Date` may name (`common.proto`).
pub const MIN_YEAR: i32 = 1900;

/// The latest year a `Date` may name (`common.proto`).
pub const MAX_YEAR: i32 = 2200;

/// The earliest time a `Timestamp` may name: 0001-01-01T00:00:00Z, the bound of
/// `google.protobuf.Timestamp`.
pub const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;

/// The latest time a `Timestamp` may name: 9999-12-31T23:59:59Z, the bound of
/// `google.protobuf.Timestamp`.
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// Returns whether `year` is a leap year in the Gregorian calendar.
pub const fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Returns the number of days in `month` (1..=12) of `year`, or `None` for no month.
pub const fn days_in_month(year: i32, month: i32) -> Option<i32> {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => Some(31),
        4 | 6 | 9 | 11 => Some(30),
        2 if is_leap_year(year) => Some(29),
        2 => Some(28),
        _ => None,
    }
}

/// Checks a calendar date: a year from [`MIN_YEAR`] to [`MAX_YEAR`], a month from 1
/// to 12, and a day that month has. A violation names `field` and the part at fault.
pub fn check_date(field: &str, year: i32, month: i32, day: i32) -> Result<(), FieldViolation> {
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        return Err(FieldViolation::new(
            format!("{field}.year"),
            format!("must be {MIN_YEAR} to {MAX_YEAR}, got {year}"),
        ));
    }
    let Some(days) = days_in_month(year, month) else {
        return Err(FieldViolation::new(format!("{field}.month"), format!("must be 1 to 12, got {month}")));
    };
    if !(1..=days).contains(&day) {
        return Err(FieldViolation::new(
            format!("{field}.day"),
            format!("must be 1 to {days} for {year}-{month:02}, got {day}"),
        ));
    }
    Ok(())
}

/// Returns the time a `Timestamp`'s `seconds` and `nanos` name, to the microsecond,
/// after checking both: seconds within the range `google.protobuf.Timestamp` allows,
/// nanos from 0 to 999,999,999.
pub fn timestamp(field: &str, seconds: i64, nanos: i32) -> Result<Timestamp, FieldViolation> {
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(FieldViolation::new(format!("{field}.nanos"), "must be 0 to 999,999,999"));
    }
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds) {
        return Err(FieldViolation::new(
            format!("{field}.seconds"),
            "must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ));
    }
    // Within those bounds the product fits an i64 with room to spare.
    Ok(Timestamp::from_unix_micros(seconds * 1_000_000 + i64::from(nanos / 1_000)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn dates_are_checked_against_the_calendar() {
        type Case = ((i32, i32, i32), Option<&'static str>);
        let cases: &[Case] = &[
            ((2026, 1, 31), None),
            ((2024, 2, 29), None),
            ((2000, 2, 29), None),
            ((1900, 1, 1), None),
            ((2200, 12, 31), None),
            ((2025, 2, 29), Some("d.day")),
            ((1900, 2, 29), Some("d.day")),
            ((2026, 2, 30), Some("d.day")),
            ((2026, 4, 31), Some("d.day")),
            ((2026, 1, 32), Some("d.day")),
            ((2026, 1, 0), Some("d.day")),
            ((2026, 13, 1), Some("d.month")),
            ((2026, 0, 1), Some("d.month")),
            ((1899, 12, 31), Some("d.year")),
            ((2201, 1, 1), Some("d.year")),
            ((0, 0, 0), Some("d.year")),
        ];
        for &((year, month, day), field) in cases {
            let result = check_date("d", year, month, day);
            assert_eq!(result.as_ref().err().map(|v| v.field.as_str()), field, "{year}-{month}-{day}");
        }
        let violation = check_date("dob", 2026, 2, 30).unwrap_err();
        assert_eq!(violation.reason, "must be 1 to 28 for 2026-02, got 30");
    }

    #[test]
    fn timestamps_keep_to_the_protobuf_range() {
        assert_eq!(timestamp("t", 0, 1_500), Ok(Timestamp::from_unix_micros(1)));
        assert!(timestamp("t", MAX_TIMESTAMP_SECONDS, 999_999_999).is_ok());
        assert_eq!(timestamp("t", MAX_TIMESTAMP_SECONDS + 1, 0).unwrap_err().field, "t.seconds");
        assert_eq!(timestamp("t", MIN_TIMESTAMP_SECONDS - 1, 0).unwrap_err().field, "t.seconds");
        assert_eq!(timestamp("t", i64::MAX, 0).unwrap_err().field, "t.seconds");
        assert_eq!(timestamp("t", 0, -1).unwrap_err().field, "t.nanos");
        assert_eq!(timestamp("t", 0, 1_000_000_000).unwrap_err().field, "t.nanos");
    }

    proptest! {
        /// Exactly the days a month has are accepted, in every year of the range.
        #[test]
        fn a_date_is_valid_exactly_when_its_month_has_the_day(year in 1900i32..=2200, month in 1i32..=12, day in -1i32..=33) {
            let days = days_in_month(year, month).unwrap();
            prop_assert_eq!(check_date("d", year, month, day).is_ok(), (1..=days).contains(&day));
        }
    }
}
