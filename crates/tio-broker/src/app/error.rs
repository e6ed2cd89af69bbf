//! What a use case can fail with: [`ServiceError`], which the gRPC adapters turn into a
//! `tonic::Status` in one place (`grpc::status::into_status`). Messages are lowercase,
//! name fields and reasons, and never contain personal data.

use tio_audit_log::AuditError;
use tio_core::FieldViolation;
use tio_store::StoreError;

use crate::app::registry::AuthError;

/// What a NOT_FOUND or ALREADY_EXISTS answer is about (`google.rpc.ResourceInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    /// The contract's message for the resource, e.g. `tio.v1.Subscription`.
    pub(crate) kind: &'static str,
    /// The resource's name or id as the caller gave it; never personal data.
    pub(crate) name: String,
    /// The stable reason code, e.g. `SUBSCRIPTION_NOT_FOUND`.
    pub(crate) reason: &'static str,
    /// The message, in plain words.
    pub(crate) message: String,
}

/// A state that refused a call (`google.rpc.PreconditionFailure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Precondition {
    /// The stable reason code, also the violation's type, e.g. `STREAM_ALREADY_OPEN`.
    pub(crate) reason: &'static str,
    /// What the condition is about, e.g. `subscription/main`; never personal data.
    pub(crate) subject: String,
    /// The message, in plain words.
    pub(crate) message: String,
}

/// Everything a service call can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    // ---- CLIENT ERRORS ----
    /// The caller could not be authenticated.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// One or more fields are invalid.
    #[error("invalid request: {}", summarise(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The caller may not do this; the refusal has been audited.
    #[error("{message}")]
    PermissionDenied {
        /// The stable reason code, e.g. `NOT_PERMITTED_FOR_CATEGORY`.
        reason: String,
        /// The message, in plain words.
        message: String,
    },
    /// What the request names does not exist.
    #[error("{}", .0.message)]
    NotFound(Resource),
    /// What the request would create exists already.
    #[error("{}", .0.message)]
    AlreadyExists(Resource),
    /// The request is valid but the state it acts on does not allow it.
    #[error("{}", .0.message)]
    FailedPrecondition(Precondition),

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

impl ServiceError {
    /// Returns a refusal with a stable reason code (upper-cased if given as an audit
    /// log's lowercase code).
    pub(crate) fn denied(reason: &str, message: impl Into<String>) -> Self {
        ServiceError::PermissionDenied { reason: reason.to_ascii_uppercase(), message: message.into() }
    }

    /// Returns a NOT_FOUND about `kind` named `name`.
    pub(crate) fn not_found(
        kind: &'static str,
        reason: &'static str,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ServiceError::NotFound(Resource { kind, name: name.into(), reason, message: message.into() })
    }

    /// Returns an ALREADY_EXISTS about `kind` named `name`.
    pub(crate) fn already_exists(
        kind: &'static str,
        reason: &'static str,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ServiceError::AlreadyExists(Resource { kind, name: name.into(), reason, message: message.into() })
    }

    /// Returns a FAILED_PRECONDITION: `reason` about `subject`.
    pub(crate) fn failed_precondition(
        reason: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ServiceError::FailedPrecondition(Precondition { reason, subject: subject.into(), message: message.into() })
    }
}

fn summarise(violations: &[FieldViolation]) -> String {
    violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
