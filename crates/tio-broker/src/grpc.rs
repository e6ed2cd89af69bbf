//! The contract's adapters: each service converts its request, calls a use case and
//! maps the error with [`status::into_status`], the only place a `tonic::Status` is
//! built.

pub(crate) mod alerts;
pub(crate) mod assessments;
pub(crate) mod auth;
pub(crate) mod care;
pub(crate) mod convert;
pub(crate) mod paging;
pub(crate) mod records;
pub(crate) mod reporting;
pub(crate) mod request;
pub(crate) mod safeguarding;
pub(crate) mod server;
pub(crate) mod services;
pub(crate) mod status;
pub(crate) mod subscriptions;
pub(crate) mod transitions;
pub(crate) mod transport_status;
pub(crate) mod value_limits;
