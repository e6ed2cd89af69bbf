//! The Unique Pupil Number: a secondary identifier, blind-indexed, never a routing key.

use std::fmt;

/// The alphabet of check letters and of a temporary UPN's final letter, indexed by value.
const CHECK_LETTERS: &[u8; 23] = b"ABCDEFGHJKLMNPQRTUVWXYZ";

/// A validated Unique Pupil Number: a check letter, the local-authority code (3
/// digits), the school's DfE number (4 digits), the year of allocation (2 digits) and a
/// serial of 3 characters, the last of which is a letter in a temporary UPN.
///
/// `Display` and `Debug` mask all but the last three characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Upn([u8; 13]);

/// Why a string is not a valid UPN. The message never repeats the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpnError {
    /// Not 13 characters of the UPN pattern.
    #[error("must be 13 characters: a check letter, 11 digits, then a digit or letter")]
    Format,
    /// The check letter does not match.
    #[error("has the wrong check letter")]
    CheckLetter,
}

impl Upn {
    /// Parses a UPN, upper case only, and verifies its check letter.
    pub fn parse(input: &str) -> Result<Upn, UpnError> {
        let bytes: [u8; 13] = input.as_bytes().try_into().map_err(|_| UpnError::Format)?;
        if !CHECK_LETTERS.contains(&bytes[0]) || !bytes[1..12].iter().all(u8::is_ascii_digit) {
            return Err(UpnError::Format);
        }
        if !(bytes[12].is_ascii_digit() || CHECK_LETTERS.contains(&bytes[12])) {
            return Err(UpnError::Format);
        }
        if check_letter(&bytes[1..]) != bytes[0] {
            return Err(UpnError::CheckLetter);
        }
        Ok(Upn(bytes))
    }

    /// Returns whether this is a temporary UPN (ending in a letter).
    pub fn is_temporary(&self) -> bool {
        self.0[12].is_ascii_uppercase()
    }

    /// Returns the 13 characters, for blind indexing. Never log them.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits were accepted by `parse`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Computes the check letter over characters 2 to 13, weighted by their position.
fn check_letter(rest: &[u8]) -> u8 {
    debug_assert_eq!(rest.len(), 12);
    let sum: usize = rest.iter().zip(2..).map(|(&byte, position)| character_value(byte) * position).sum();
    CHECK_LETTERS[sum % 23]
}

/// A digit is its value; a temporary UPN's final letter takes its index among the
/// check letters.
fn character_value(byte: u8) -> usize {
    if byte.is_ascii_digit() {
        usize::from(byte - b'0')
    } else {
        CHECK_LETTERS.iter().position(|&letter| letter == byte).unwrap_or(0)
    }
}

impl fmt::Display for Upn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "**********{}", &self.as_str()[10..])
    }
}

impl fmt::Debug for Upn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Upn({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_published_example() {
        let upn = Upn::parse("B801200005001").unwrap();
        assert!(!upn.is_temporary());
        assert_eq!(upn.to_string(), "**********001");
    }

    #[test]
    fn refuses_a_wrong_check_letter() {
        assert_eq!(Upn::parse("C801200005001"), Err(UpnError::CheckLetter));
    }

    #[test]
    fn refuses_malformed_input() {
        for input in
            ["", "B80120000500", "B8012000050011", "b801200005001", "I801200005001", "B80120000500I", "B8012000X5001"]
        {
            assert_eq!(Upn::parse(input), Err(UpnError::Format), "input {input:?}");
        }
    }

    #[test]
    fn accepts_a_temporary_upn_with_its_check_letter() {
        let rest = b"80120000500A";
        let letter = char::from(check_letter(rest));
        let upn = Upn::parse(&format!("{letter}80120000500A")).unwrap();
        assert!(upn.is_temporary());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(input in "\\PC{0,20}") {
            let _ = Upn::parse(&input);
        }

        #[test]
        fn every_computed_check_letter_is_accepted(rest in "[0-9]{11}[0-9ABCDEFGHJKLMNPQRTUVWXYZ]") {
            let letter = char::from(check_letter(rest.as_bytes()));
            let upn = format!("{letter}{rest}");
            prop_assert!(Upn::parse(&upn).is_ok());
        }
    }
}
