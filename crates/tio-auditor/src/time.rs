//! Times as people read them: in the local time zone, to the second.

/// Formats a time given in microseconds since the Unix epoch in the local time zone,
/// to the second; a time out of range prints as such, never as a crash.
pub fn local_time(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map_or_else(
        |_| format!("(time {micros})"),
        |time| time.to_zoned(jiff::tz::TimeZone::system()).strftime("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// The local time zone's name and offset now, as `GMT, UTC+00:00`.
pub fn local_zone_name() -> String {
    jiff::Zoned::now().strftime("%Z, UTC%:z").to_string()
}

/// Microseconds since the Unix epoch of a protobuf timestamp, saturating: a time out of
/// range becomes a wrong time, never a crash.
pub fn timestamp_micros(time: &prost_types::Timestamp) -> i64 {
    time.seconds.saturating_mul(1_000_000).saturating_add(i64::from(time.nanos / 1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_out_of_range_print_as_such() {
        assert_eq!(local_time(i64::MAX), format!("(time {})", i64::MAX));
        assert_eq!(local_time(0).len(), "1970-01-01 00:00:00".len());
        let far = prost_types::Timestamp { seconds: i64::MAX, nanos: 999_999_999 };
        assert_eq!(timestamp_micros(&far), i64::MAX);
    }
}
