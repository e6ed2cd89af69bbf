//! What the records of the previous format have in common. Before the store owned its
//! records, the broker stored agencies, consents and care relationships as the
//! contract's own protobuf messages; each record module reads those through a frozen
//! prost mirror of its message, with these shared parts. The enum numbers are the
//! contract's of that time: do not change them.

use crate::update_record::category_from_code;

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub(crate) struct Timestamp {
    #[prost(int64, tag = "1")]
    pub(crate) seconds: i64,
    #[prost(int32, tag = "2")]
    pub(crate) nanos: i32,
}

/// Returns a timestamp in microseconds since the Unix epoch, if there is one.
pub(crate) fn micros(time: Option<Timestamp>) -> Option<i64> {
    time.map(|at| at.seconds.saturating_mul(1_000_000).saturating_add(i64::from(at.nanos / 1_000)))
}

/// Returns the name of a contract enum value numbered from 1 in `names`' order (0, the
/// unspecified value, and unknown numbers have none).
pub(crate) fn name_of(names: &[&str], number: i32) -> Option<String> {
    let index = usize::try_from(number).ok()?.checked_sub(1)?;
    names.get(index).map(|name| (*name).to_owned())
}

/// Returns the names of contract categories (numbered as the store's category codes).
pub(crate) fn category_names(numbers: &[i32]) -> Option<Vec<String>> {
    numbers
        .iter()
        .map(|number| u8::try_from(*number).ok().and_then(category_from_code).map(|c| c.as_str().to_owned()))
        .collect()
}

/// Returns the names of contract sectors.
pub(crate) fn sector_names(numbers: &[i32]) -> Option<Vec<String>> {
    numbers.iter().map(|number| name_of(&SECTORS, *number)).collect()
}

/// The contract's sectors, from 1.
pub(crate) const SECTORS: [&str; 3] = ["health", "education", "social_care"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_numbers_map_from_one_and_refuse_the_rest() {
        assert_eq!(name_of(&SECTORS, 1).as_deref(), Some("health"));
        assert_eq!(name_of(&SECTORS, 3).as_deref(), Some("social_care"));
        for bad in [0, 4, -1, i32::MAX] {
            assert_eq!(name_of(&SECTORS, bad), None);
        }
        assert_eq!(category_names(&[4, 5]), Some(vec!["send_support".to_owned(), "education_placement".to_owned()]));
        assert_eq!(category_names(&[0]), None);
        assert_eq!(micros(Some(Timestamp { seconds: 2, nanos: 5_000 })), Some(2_000_005));
    }
}
