//! Documented size limits, in one place.
//!
//! The contract (`proto/tio/v1/common.proto`) states these numbers; the broker enforces
//! them when it converts a request, and the server's transport limit is
//! [`DEFAULT_MAX_MESSAGE_BYTES`] unless configured otherwise.

/// Default largest gRPC message, request or response, in bytes (4 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Largest encoded category value, in bytes (64 KiB).
pub const MAX_CATEGORY_VALUE_BYTES: usize = 64 * 1024;

/// Longest short string (an identifier, a code, a name), in bytes of UTF-8.
pub const MAX_SHORT_STRING_BYTES: usize = 256;

/// Longest free-text string, in bytes of UTF-8.
pub const MAX_FREE_TEXT_BYTES: usize = 4 * 1024;

/// Most items in a list field, unless the field says otherwise.
pub const MAX_LIST_ITEMS: usize = 64;

/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// Longest professional id (`x-tio-professional` metadata), in bytes.
pub const MAX_PROFESSIONAL_ID_BYTES: usize = 128;

/// Longest agency, admin or auditor id, in bytes.
pub const MAX_AGENCY_ID_BYTES: usize = 64;

/// Checks that `value` is at most `max` bytes, naming `field` if not.
pub fn check_len(field: &str, value: &str, max: usize) -> Result<(), crate::FieldViolation> {
    if value.len() > max {
        return Err(crate::FieldViolation::new(field, format!("must be at most {max} bytes, got {}", value.len())));
    }
    Ok(())
}

/// Checks an identifier or reference a client chose (an idempotency key, a source
/// reference): at most `max` bytes, and no white space or control character at either
/// end, so that what is stored and matched is exactly what was meant (`" key-1"` and
/// `"key-1"` would otherwise be two keys).
pub fn check_identifier(field: &str, value: &str, max: usize) -> Result<(), crate::FieldViolation> {
    check_len(field, value, max)?;
    let padded = |c: Option<char>| c.is_some_and(|c| c.is_whitespace() || c.is_control());
    if padded(value.chars().next()) || padded(value.chars().next_back()) {
        return Err(crate::FieldViolation::new(field, "must not begin or end with white space"));
    }
    Ok(())
}

/// Checks that `items` has at most `max` entries, naming `field` if not.
pub fn check_items<T>(field: &str, items: &[T], max: usize) -> Result<(), crate::FieldViolation> {
    if items.len() > max {
        return Err(crate::FieldViolation::new(field, format!("must have at most {max} items, got {}", items.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_carry_no_padding() {
        assert!(check_identifier("k", "key-1", 8).is_ok());
        assert!(check_identifier("k", "", 8).is_ok());
        assert!(check_identifier("k", "a b", 8).is_ok());
        for padded in [" key", "key ", "\tkey", "key\n", "\u{a0}key"] {
            assert_eq!(check_identifier("k", padded, 8).unwrap_err().reason, "must not begin or end with white space");
        }
        assert!(check_identifier("k", "123456789", 8).is_err());
    }

    #[test]
    fn check_len_names_the_field_and_sizes() {
        assert_eq!(check_len("purpose", "abc", 3), Ok(()));
        let err = check_len("purpose", "abcd", 3).unwrap_err();
        assert_eq!(err.field, "purpose");
        assert_eq!(err.reason, "must be at most 3 bytes, got 4");
    }

    #[test]
    fn check_items_names_the_field_and_counts() {
        assert_eq!(check_items("categories", &[1, 2], 2), Ok(()));
        let err = check_items("categories", &[1, 2, 3], 2).unwrap_err();
        assert_eq!(err.to_string(), "categories: must have at most 2 items, got 3");
    }
}
