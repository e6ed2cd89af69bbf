//! A field at fault in a request, named so that a client can find it.

use std::fmt;

/// One field at fault and why, as the broker reports it in a `google.rpc.BadRequest`.
///
/// The reason never contains the offending value: values may be personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// A dotted path within the request, e.g. `child.nhs_number`.
    pub field: String,
    /// Why the value was refused, lowercase, without a trailing period.
    pub reason: String,
}

impl FieldViolation {
    /// Returns a violation of `field` for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldViolation { field: field.into(), reason: reason.into() }
    }

    /// Returns the same violation with `prefix.` put before the field path, for a
    /// value parsed inside a larger message.
    #[must_use]
    pub fn within(self, prefix: &str) -> Self {
        FieldViolation { field: format!("{prefix}.{}", self.field), reason: self.reason }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}
