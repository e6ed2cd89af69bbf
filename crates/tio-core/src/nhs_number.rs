//! The NHS number: the child's routing key, parsed once and never shown in full by
//! accident.

// Range constants are grouped 3-3-4, the way NHS numbers are written and published.
#![allow(clippy::inconsistent_digit_grouping)]

use std::fmt;

/// A validated NHS number.
///
/// `Display` and `Debug` show it masked (`*** *** 5919`) so that it cannot leak into a
/// log line or an error by accident; [`NhsNumber::reveal`] gives the `3 3 4` form for
/// the few places entitled to it, and [`NhsNumber::digits`] the ten digits for keyed
/// blind indexing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NhsNumber([u8; 10]);

/// Why a string is not an acceptable NHS number. The message never repeats the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    /// Nothing was given.
    #[error("is required")]
    Empty,
    /// Not ten digits in the `3 3 4` pattern (with spaces, hyphens or nothing between).
    #[error("must be ten digits, optionally written 3-3-4 with spaces or hyphens")]
    Format,
    /// The modulus-11 check digit does not match.
    #[error("fails the modulus-11 check digit")]
    CheckDigit,
    /// All ten digits are the same, which the check digit alone would let through.
    #[error("is a repeated digit, never issued")]
    Repdigit,
    /// A number from the reserved `999` test range, on a server not in development mode.
    #[error("is in the 999 test range, accepted only in development mode")]
    TestRange,
    /// A number outside every accepted issuing range.
    #[error("is outside the accepted NHS number ranges")]
    OutOfRange,
}

/// An inclusive range of ten-digit NHS numbers, compared as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NhsNumberRange {
    /// The lowest number in the range.
    pub first: u64,
    /// The highest number in the range.
    pub last: u64,
}

impl NhsNumberRange {
    /// The range reserved for tests and demonstrations: `999 000 0000`..=`999 999 9999`.
    pub const TEST: NhsNumberRange = NhsNumberRange { first: 999_000_0000, last: 999_999_9999 };

    /// Returns whether `number` lies in the range.
    pub fn contains(&self, number: u64) -> bool {
        (self.first..=self.last).contains(&number)
    }
}

/// Which NHS numbers a server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NhsNumberPolicy {
    /// Accepted issuing ranges.
    pub ranges: Vec<NhsNumberRange>,
    /// Whether the `999` test range is also accepted (development mode only).
    pub allow_test_range: bool,
}

impl NhsNumberPolicy {
    /// The ranges issued in England, Wales and the Isle of Man: `400 000 000`-`499 999 999`
    /// and `600 000 000`-`799 999 999` (the first nine digits). Numbers England issued
    /// from the `3xx` range overlap Scotland's CHI and Northern Ireland's H&C numbers,
    /// so a deployment that needs them names its sub-range in configuration.
    pub const DEFAULT_RANGES: [NhsNumberRange; 2] = [
        NhsNumberRange { first: 400_000_000_0, last: 499_999_999_9 },
        NhsNumberRange { first: 600_000_000_0, last: 799_999_999_9 },
    ];

    /// Returns the production policy: the default ranges, no test numbers.
    pub fn production() -> Self {
        NhsNumberPolicy { ranges: Self::DEFAULT_RANGES.to_vec(), allow_test_range: false }
    }

    /// Returns the development policy: the default ranges and the test range.
    pub fn development() -> Self {
        NhsNumberPolicy { ranges: Self::DEFAULT_RANGES.to_vec(), allow_test_range: true }
    }
}

impl Default for NhsNumberPolicy {
    fn default() -> Self {
        Self::production()
    }
}

impl NhsNumber {
    /// Parses `9434765919`, `943 476 5919` or `943-476-5919` and applies `policy`.
    pub fn parse(input: &str, policy: &NhsNumberPolicy) -> Result<NhsNumber, NhsNumberError> {
        let number = Self::parse_checked(input)?;
        let value = number.as_u64();
        if NhsNumberRange::TEST.contains(value) {
            return if policy.allow_test_range { Ok(number) } else { Err(NhsNumberError::TestRange) };
        }
        if policy.ranges.iter().any(|range| range.contains(value)) {
            Ok(number)
        } else {
            Err(NhsNumberError::OutOfRange)
        }
    }

    /// Parses the format and checks the check digit and repdigits, without any range
    /// policy. For stored values already accepted once, and for tests of the format.
    pub fn parse_checked(input: &str) -> Result<NhsNumber, NhsNumberError> {
        if input.is_empty() {
            return Err(NhsNumberError::Empty);
        }
        let digits = Self::parse_format(input).ok_or(NhsNumberError::Format)?;
        if digits.iter().all(|&digit| digit == digits[0]) {
            return Err(NhsNumberError::Repdigit);
        }
        if check_digit(&digits[..9]) != Some(digits[9]) {
            return Err(NhsNumberError::CheckDigit);
        }
        Ok(NhsNumber(digits))
    }

    /// Accepts exactly ten digits, or the 3-3-4 groups separated by one space each or
    /// one hyphen each (not mixed).
    fn parse_format(input: &str) -> Option<[u8; 10]> {
        let bytes = input.as_bytes();
        let compact: Vec<u8> = match bytes.len() {
            10 => bytes.to_vec(),
            12 => {
                let separator = bytes[3];
                if !(separator == b' ' || separator == b'-') || bytes[7] != separator {
                    return None;
                }
                bytes.iter().enumerate().filter(|(index, _)| *index != 3 && *index != 7).map(|(_, b)| *b).collect()
            }
            _ => return None,
        };
        let mut digits = [0u8; 10];
        for (slot, byte) in digits.iter_mut().zip(&compact) {
            if !byte.is_ascii_digit() {
                return None;
            }
            *slot = byte - b'0';
        }
        Some(digits)
    }

    /// Returns the ten digits, for keyed blind indexing and sealing. Never log them.
    pub fn digits(&self) -> String {
        self.0.iter().map(|digit| char::from(b'0' + digit)).collect()
    }

    /// Returns the number as an integer.
    pub fn as_u64(&self) -> u64 {
        self.0.iter().fold(0u64, |acc, &digit| acc * 10 + u64::from(digit))
    }

    /// Returns whether this is a number from the reserved test range.
    pub fn is_test_number(&self) -> bool {
        NhsNumberRange::TEST.contains(self.as_u64())
    }

    /// Returns a value that displays the number in full, in the usual `3 3 4` form,
    /// for people entitled to see it (a recipient, a subject-access report).
    pub fn reveal(&self) -> RevealedNhsNumber<'_> {
        RevealedNhsNumber(self)
    }

    /// Returns the last four digits, the part shown in the masked form.
    fn last_four(&self) -> String {
        self.0[6..].iter().map(|digit| char::from(b'0' + digit)).collect()
    }
}

/// Computes the modulus-11 check digit of the first nine digits; `None` when the
/// remainder makes the number invalid (a check value of 10).
fn check_digit(first_nine: &[u8]) -> Option<u8> {
    debug_assert_eq!(first_nine.len(), 9);
    let sum: u32 = first_nine.iter().zip((2..=10).rev()).map(|(&digit, weight)| u32::from(digit) * weight).sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        value => u8::try_from(value).ok(),
    }
}

/// The NHS number shown in full, `943 476 5919`, obtained only by [`NhsNumber::reveal`].
pub struct RevealedNhsNumber<'a>(&'a NhsNumber);

impl fmt::Display for RevealedNhsNumber<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.digits();
        write!(f, "{} {} {}", &digits[..3], &digits[3..6], &digits[6..])
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "*** *** {}", self.last_four())
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NhsNumber(*** *** {})", self.last_four())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Accepts the public example's 9xx prefix, so that its formats can be tested.
    fn permissive() -> NhsNumberPolicy {
        NhsNumberPolicy { ranges: vec![NhsNumberRange { first: 0, last: 9_999_999_999 }], allow_test_range: true }
    }

    fn check(input: &str, policy: &NhsNumberPolicy, expected: Result<&str, NhsNumberError>) {
        let actual = NhsNumber::parse(input, policy).map(|number| number.digits());
        assert_eq!(actual, expected.map(str::to_owned), "input {input:?}");
    }

    #[test]
    fn parses_the_three_written_forms() {
        for input in ["9434765919", "943 476 5919", "943-476-5919"] {
            check(input, &permissive(), Ok("9434765919"));
        }
    }

    #[test]
    fn refuses_malformed_input() {
        for input in [
            "943 4765919",
            "943-476 5919",
            "943  476 5919",
            " 9434765919",
            "9434765919 ",
            "943476591",
            "94347659190",
            "94347659l9",
            "９４３４７６５９１９",
            "943_476_5919",
        ] {
            check(input, &permissive(), Err(NhsNumberError::Format));
        }
        check("", &permissive(), Err(NhsNumberError::Empty));
    }

    #[test]
    fn refuses_the_public_invalid_example() {
        check("987 654 4321", &permissive(), Err(NhsNumberError::CheckDigit));
    }

    #[test]
    fn refuses_a_check_value_of_ten() {
        let prefix = (0..1000u32)
            .map(|n| format!("999{n:06}"))
            .find(|nine| check_digit(&nine.bytes().map(|b| b - b'0').collect::<Vec<_>>()).is_none())
            .expect("some prefix has no valid check digit");
        for last in 0..=9 {
            check(&format!("{prefix}{last}"), &permissive(), Err(NhsNumberError::CheckDigit));
        }
    }

    #[test]
    fn refuses_every_repdigit_even_where_the_checksum_passes() {
        for digit in 0..=9 {
            let input: String = std::iter::repeat_n(char::from(b'0' + digit), 10).collect();
            check(&input, &permissive(), Err(NhsNumberError::Repdigit));
        }
    }

    #[test]
    fn test_range_only_in_development() {
        check("999 007 9196", &NhsNumberPolicy::development(), Ok("9990079196"));
        check("999 007 9196", &NhsNumberPolicy::production(), Err(NhsNumberError::TestRange));
    }

    #[test]
    fn numbers_outside_the_default_ranges_are_refused() {
        // The public example is valid by checksum but lies in no issuing range we accept.
        check("943 476 5919", &NhsNumberPolicy::production(), Err(NhsNumberError::OutOfRange));
    }

    #[test]
    fn display_and_debug_are_masked() {
        let number = NhsNumber::parse("9990079196", &NhsNumberPolicy::development()).unwrap();
        assert_eq!(number.to_string(), "*** *** 9196");
        assert_eq!(format!("{number:?}"), "NhsNumber(*** *** 9196)");
        assert_eq!(number.reveal().to_string(), "999 007 9196");
        assert!(number.is_test_number());
    }

    /// Builds a valid number from a nine-digit prefix, if one exists.
    fn with_check_digit(prefix: u64) -> Option<String> {
        let nine = format!("{prefix:09}");
        let digits: Vec<u8> = nine.bytes().map(|b| b - b'0').collect();
        check_digit(&digits).map(|check| format!("{nine}{check}"))
    }

    proptest! {
        #[test]
        fn parsing_never_panics(input in "\\PC{0,24}") {
            let _ = NhsNumber::parse(&input, &NhsNumberPolicy::production());
            let _ = NhsNumber::parse(&input, &permissive());
        }

        #[test]
        fn parsing_never_panics_on_digit_like_strings(input in "[0-9 -]{0,14}") {
            let _ = NhsNumber::parse(&input, &permissive());
        }

        #[test]
        fn numbers_in_the_default_ranges_are_accepted_in_every_form(
            prefix in prop_oneof![400_000_000u64..=499_999_999, 600_000_000u64..=799_999_999]
        ) {
            if let Some(number) = with_check_digit(prefix) {
                let repdigit = number.bytes().all(|b| b == number.as_bytes()[0]);
                prop_assume!(!repdigit);
                let spaced = format!("{} {} {}", &number[..3], &number[3..6], &number[6..]);
                let hyphenated = spaced.replace(' ', "-");
                for form in [&number, &spaced, &hyphenated] {
                    let parsed = NhsNumber::parse(form, &NhsNumberPolicy::production());
                    prop_assert_eq!(parsed.map(|n| n.digits()), Ok(number.clone()));
                }
            }
        }

        #[test]
        fn changing_one_digit_breaks_the_check(prefix in 400_000_000u64..=499_999_999, index in 0usize..10, delta in 1u8..=9) {
            if let Some(number) = with_check_digit(prefix) {
                let mut bytes = number.into_bytes();
                bytes[index] = b'0' + (bytes[index] - b'0' + delta) % 10;
                let altered = String::from_utf8(bytes).unwrap();
                prop_assert!(NhsNumber::parse(&altered, &NhsNumberPolicy::production()).is_err());
            }
        }

        #[test]
        fn masked_display_never_shows_the_first_six_digits(prefix in 999_000_000u64..=999_999_999) {
            if let Some(number) = with_check_digit(prefix) {
                let parsed = NhsNumber::parse(&number, &NhsNumberPolicy::development()).unwrap();
                prop_assert!(!parsed.to_string().contains(&number[..6]));
                let debug = format!("{parsed:?}");
                prop_assert!(!debug.contains(&number[..6]));
            }
        }
    }
}
