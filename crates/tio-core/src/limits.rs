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
