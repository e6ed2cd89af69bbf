//! The one place that turns the broker's errors into `tonic::Status`.
//!
//! Every adapter and interceptor returns a [`ServiceError`] and calls [`into_status`];
//! nobody else builds a `Status`. Messages are lowercase, name fields and reasons, and
//! never contain personal data.
//!
//! Every status a client can act on carries `google.rpc` details (`common.proto` lists
//! them): `BadRequest` for bad fields, `ResourceInfo` for what was not found or exists
//! already, `PreconditionFailure` for the state that refused a call, and an `ErrorInfo`
//! with a stable reason code in the domain [`ERROR_DOMAIN`] on each of those and on
//! every refusal, so that a client can branch on a code rather than on a message.

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use tio_store::{StorageErrorKind, StoreError};

use tio_audit_log::AuditError;

use crate::app::error::{Resource, ServiceError};
use crate::app::registry::AuthError;

/// The `ErrorInfo` domain of every reason code the broker sends.
pub(crate) const ERROR_DOMAIN: &str = "tio.v1";

/// Converts a service error to the status sent to the client.
pub(crate) fn into_status(error: impl Into<ServiceError>) -> tonic::Status {
    let error = match error.into() {
        // A store failure inside the audit log is reported like any store failure.
        ServiceError::Audit(AuditError::Store(store)) => ServiceError::Store(store),
        other => other,
    };
    match &error {
        // A suspended agency's certificate is valid and its identity known: it is not
        // unauthenticated but not permitted, on a new call and an open stream alike.
        ServiceError::Unauthenticated(auth @ AuthError::Suspended(_)) => with_reason(
            Code::PermissionDenied,
            error.to_string(),
            &auth.code().to_ascii_uppercase(),
            ErrorDetails::new(),
        ),
        ServiceError::Unauthenticated(auth) => with_reason(
            Code::Unauthenticated,
            error.to_string(),
            &auth.code().to_ascii_uppercase(),
            ErrorDetails::new(),
        ),
        ServiceError::InvalidArgument(violations) => {
            let mut details = ErrorDetails::new();
            for violation in violations {
                details.add_bad_request_violation(violation.field.clone(), violation.reason.clone());
            }
            tonic::Status::with_error_details(Code::InvalidArgument, error.to_string(), details)
        }
        ServiceError::PermissionDenied { reason, message } => {
            with_reason(Code::PermissionDenied, message.clone(), reason, ErrorDetails::new())
        }
        ServiceError::NotFound(resource) => resource_status(Code::NotFound, resource),
        ServiceError::AlreadyExists(resource) => resource_status(Code::AlreadyExists, resource),
        ServiceError::FailedPrecondition(condition) => {
            let mut details = ErrorDetails::new();
            details.add_precondition_failure_violation(
                condition.reason,
                condition.subject.clone(),
                condition.message.clone(),
            );
            with_reason(Code::FailedPrecondition, condition.message.clone(), condition.reason, details)
        }
        ServiceError::Internal(detail) => internal(detail),
        ServiceError::Audit(audit) => internal(&audit.to_string()),
        ServiceError::Store(store) => match store {
            StoreError::InvalidInput(violation) => into_status(ServiceError::InvalidArgument(vec![violation.clone()])),
            StoreError::IdempotencyMismatch => {
                let mut details = ErrorDetails::new();
                details.set_resource_info("tio.v1.PublishRequest", "idempotency_key", "", store.to_string());
                with_reason(Code::AlreadyExists, store.to_string(), "IDEMPOTENCY_KEY_REUSED", details)
            }
            StoreError::Conflict { .. } => with_reason(
                Code::Aborted,
                "a concurrent change came first; retry".to_owned(),
                "CONCURRENT_CHANGE",
                ErrorDetails::new(),
            ),
            StoreError::Storage(storage) if storage.kind == StorageErrorKind::NoSpace => {
                tracing::error!(error = %storage, "store is out of space");
                with_reason(
                    Code::ResourceExhausted,
                    "the broker's store is out of space; nothing was written".to_owned(),
                    "STORE_FULL",
                    ErrorDetails::new(),
                )
            }
            StoreError::Storage(storage) if storage.kind == StorageErrorKind::Closed => with_reason(
                Code::Unavailable,
                "the broker is shutting down".to_owned(),
                "SHUTTING_DOWN",
                ErrorDetails::new(),
            ),
            StoreError::Storage(storage) if storage.kind == StorageErrorKind::Unavailable => {
                tracing::warn!(error = %storage, "the store's database does not answer");
                with_reason(
                    Code::Unavailable,
                    "the broker's database does not answer (it may be failing over): try again; a write retried \
                     with the same idempotency key is stored once"
                        .to_owned(),
                    "STORE_UNAVAILABLE",
                    ErrorDetails::new(),
                )
            }
            StoreError::Storage(_) | StoreError::Corrupt(_) | StoreError::Key(_) => internal(&store.to_string()),
        },
    }
}

/// Returns a status carrying `details` and an `ErrorInfo` with `reason`.
fn with_reason(code: Code, message: String, reason: &str, mut details: ErrorDetails) -> tonic::Status {
    details.set_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
    tonic::Status::with_error_details(code, message, details)
}

fn resource_status(code: Code, resource: &Resource) -> tonic::Status {
    let mut details = ErrorDetails::new();
    details.set_resource_info(resource.kind, resource.name.clone(), "", resource.message.clone());
    with_reason(code, resource.message.clone(), resource.reason, details)
}

/// Logs an internal failure once, here, and hides its detail from the client.
fn internal(detail: &str) -> tonic::Status {
    tracing::error!(error.detail = %detail, "internal error");
    tonic::Status::new(Code::Internal, "internal error")
}

#[cfg(test)]
mod tests {
    use tio_core::FieldViolation;

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
            (StoreError::Storage(StorageError::new(StorageErrorKind::Unavailable, "i/o")), Code::Unavailable),
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

    /// Issue 12: only INVALID_ARGUMENT carried details.
    #[test]
    fn refusals_carry_a_reason_and_what_they_are_about() {
        let status = into_status(ServiceError::denied("not_permitted_for_category", "may not publish"));
        assert_eq!(status.code(), Code::PermissionDenied);
        let info = status.get_details_error_info().unwrap();
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("NOT_PERMITTED_FOR_CATEGORY", ERROR_DOMAIN));

        let status = into_status(ServiceError::not_found(
            "tio.v1.Subscription",
            "SUBSCRIPTION_NOT_FOUND",
            "main",
            "no subscription `main`",
        ));
        assert_eq!(status.code(), Code::NotFound);
        let resource = status.get_details_resource_info().unwrap();
        assert_eq!((resource.resource_type.as_str(), resource.resource_name.as_str()), ("tio.v1.Subscription", "main"));
        assert_eq!(status.get_details_error_info().unwrap().reason, "SUBSCRIPTION_NOT_FOUND");

        let status =
            into_status(ServiceError::failed_precondition("STREAM_ALREADY_OPEN", "subscription/main", "already open"));
        let failure = status.get_details_precondition_failure().unwrap();
        assert_eq!(failure.violations[0].r#type, "STREAM_ALREADY_OPEN");
        assert_eq!(failure.violations[0].subject, "subscription/main");

        let status = into_status(StoreError::IdempotencyMismatch);
        assert_eq!(status.get_details_error_info().unwrap().reason, "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(status.get_details_resource_info().unwrap().resource_name, "idempotency_key");
    }

    /// Issue 12: suspension was PERMISSION_DENIED on a stream and UNAUTHENTICATED on a
    /// new call; it is PERMISSION_DENIED everywhere.
    #[test]
    fn a_suspended_agency_is_denied_and_an_unknown_one_unauthenticated() {
        let status = into_status(AuthError::Suspended("school".into()));
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.get_details_error_info().unwrap().reason, "AGENCY_SUSPENDED");
        let status = into_status(AuthError::Revoked("ab".into()));
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.get_details_error_info().unwrap().reason, "CERTIFICATE_REVOKED");
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let status = into_status(ServiceError::Internal("disk on fire at /var/lib/tio".into()));
        assert_eq!((status.code(), status.message()), (Code::Internal, "internal error"));
    }
}
