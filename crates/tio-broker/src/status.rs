//! The one place that turns the broker's errors into `tonic::Status`.
//!
//! Every adapter and interceptor returns a [`ServiceError`] and calls [`into_status`];
//! nobody else builds a `Status`. Messages are lowercase, name fields and reasons, and
//! never contain personal data.

use tio_core::FieldViolation;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use tio_store::{StorageErrorKind, StoreError};

use tio_audit::log::AuditError;

use crate::auth::AuthError;

/// Everything a service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    // ---- CLIENT ERRORS ----
    /// The caller could not be authenticated.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// One or more fields are invalid.
    #[error("invalid request: {}", summarise(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The caller may not do this; the refusal has been audited.
    #[error("{0}")]
    PermissionDenied(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// What the request would create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the state it acts on does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),

    /// The store refused or failed the operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),

    // ---- INTERNAL ERRORS ----
    /// Something failed inside the broker; details go to the log, not the client.
    #[error("internal error")]
    Internal(String),
}

impl From<tio_store::StorageError> for ServiceError {
    fn from(err: tio_store::StorageError) -> Self {
        ServiceError::Store(StoreError::Storage(err))
    }
}

fn summarise(violations: &[FieldViolation]) -> String {
    violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Converts a service error to the status sent to the client.
pub fn into_status(error: impl Into<ServiceError>) -> tonic::Status {
    let error = match error.into() {
        // A store failure inside the audit log is reported like any store failure.
        ServiceError::Audit(AuditError::Store(store)) => ServiceError::Store(store),
        other => other,
    };
    match &error {
        ServiceError::Unauthenticated(_) => tonic::Status::new(Code::Unauthenticated, error.to_string()),
        ServiceError::InvalidArgument(violations) => {
            let mut details = ErrorDetails::new();
            for violation in violations {
                details.add_bad_request_violation(violation.field.clone(), violation.reason.clone());
            }
            tonic::Status::with_error_details(Code::InvalidArgument, error.to_string(), details)
        }
        ServiceError::PermissionDenied(reason) => tonic::Status::new(Code::PermissionDenied, reason.clone()),
        ServiceError::NotFound(what) => tonic::Status::new(Code::NotFound, what.clone()),
        ServiceError::AlreadyExists(what) => tonic::Status::new(Code::AlreadyExists, what.clone()),
        ServiceError::FailedPrecondition(what) => tonic::Status::new(Code::FailedPrecondition, what.clone()),
        ServiceError::Internal(detail) => internal(detail),
        ServiceError::Audit(audit) => internal(&audit.to_string()),
        ServiceError::Store(store) => match store {
            StoreError::InvalidInput(violation) => into_status(ServiceError::InvalidArgument(vec![violation.clone()])),
            StoreError::IdempotencyMismatch => tonic::Status::new(Code::AlreadyExists, store.to_string()),
            StoreError::Conflict { .. } => tonic::Status::new(Code::Aborted, "a concurrent change came first; retry"),
            StoreError::Storage(storage) if storage.kind == StorageErrorKind::NoSpace => {
                tracing::error!(error = %storage, "store is out of space");
                tonic::Status::new(Code::ResourceExhausted, "the broker's store is out of space; nothing was written")
            }
            StoreError::Storage(storage) if storage.kind == StorageErrorKind::Closed => {
                tonic::Status::new(Code::Unavailable, "the broker is shutting down")
            }
            StoreError::Storage(_) | StoreError::Corrupt(_) | StoreError::Key(_) => internal(&store.to_string()),
        },
    }
}

/// Logs an internal failure once, here, and hides its detail from the client.
fn internal(detail: &str) -> tonic::Status {
    tracing::error!(error.detail = %detail, "internal error");
    tonic::Status::new(Code::Internal, "internal error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_arguments_carry_bad_request_details() {
        let status = into_status(ServiceError::InvalidArgument(vec![FieldViolation::new(
            "child.nhs_number",
            "fails the check",
        )]));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid request: child.nhs_number: fails the check");
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        assert_eq!(bad_request.field_violations[0].field, "child.nhs_number");
        assert_eq!(bad_request.field_violations[0].description, "fails the check");
    }

    #[test]
    fn authentication_failures_are_unauthenticated() {
        let status = into_status(AuthError::NoCertificate);
        assert_eq!((status.code(), status.message()), (Code::Unauthenticated, "no client certificate"));
    }

    #[test]
    fn store_errors_map_to_their_codes() {
        use tio_store::StorageError;
        let cases = [
            (StoreError::InvalidInput(FieldViolation::new("value", "too big")), Code::InvalidArgument),
            (StoreError::IdempotencyMismatch, Code::AlreadyExists),
            (StoreError::Storage(StorageError::new(StorageErrorKind::NoSpace, "disk full")), Code::ResourceExhausted),
            (StoreError::Storage(StorageError::new(StorageErrorKind::Closed, "closing")), Code::Unavailable),
            (StoreError::Storage(StorageError::new(StorageErrorKind::Io, "i/o")), Code::Internal),
            (StoreError::Corrupt("bad record".into()), Code::Internal),
        ];
        for (error, code) in cases {
            let status = into_status(error);
            assert_eq!(status.code(), code, "{status:?}");
            assert!(
                !status.message().contains("bad record") && !status.message().contains("i/o"),
                "internal detail leaked"
            );
        }
        let status = into_status(StoreError::InvalidInput(FieldViolation::new("value", "too big")));
        assert_eq!(status.get_error_details().bad_request().unwrap().field_violations[0].field, "value");
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let status = into_status(ServiceError::Internal("disk on fire at /var/lib/tio".into()));
        assert_eq!((status.code(), status.message()), (Code::Internal, "internal error"));
    }
}
