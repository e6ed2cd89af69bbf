//! The use cases, over the domain, the store and the audit log; no protobuf type
//! reaches the store from here, and no `tonic::Status` is built here.

pub(crate) mod admin;
pub(crate) mod alerts;
pub(crate) mod assessments;
pub(crate) mod audit_reads;
pub(crate) mod broker;
pub(crate) mod checkpoints;
pub(crate) mod consents;
pub(crate) mod error;
pub(crate) mod facts;
pub(crate) mod leases;
pub(crate) mod maintenance;
pub(crate) mod records;
pub(crate) mod registry;
pub(crate) mod relationships;
pub(crate) mod reporting;
pub(crate) mod reviews;
pub(crate) mod safeguarding;
pub(crate) mod sharing;
pub(crate) mod streams;
pub(crate) mod subscriptions;
#[cfg(test)]
pub(crate) mod test_support;
