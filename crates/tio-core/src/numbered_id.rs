//! The ids the contract gives numbered records of a child (`o-1`, `s-2`, `ehc-3`): a
//! prefix, then a number from 1 without leading zeros.

/// Parses `text` as `prefix` and a number from 1; `None` if it is not one.
pub(crate) fn parse_numbered_id(text: &str, prefix: &str) -> Option<u32> {
    text.strip_prefix(prefix)
        .filter(|digits| !digits.is_empty() && !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_prefix_and_a_number_from_one_parse() {
        assert_eq!(parse_numbered_id("ehc-12", "ehc-"), Some(12));
        for bad in ["ehc-0", "ehc-01", "ehc-", "ehc-1a", "ehc--1", "o-1", "ehc-99999999999", " ehc-1"] {
            assert_eq!(parse_numbered_id(bad, "ehc-"), None, "{bad}");
        }
    }
}
