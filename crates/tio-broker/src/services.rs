//! The `tio.v1` service adapters.
//!
//! Each is a thin adapter: it takes the [`crate::auth::Caller`] from the request,
//! converts the request, calls the broker and maps the error with
//! [`crate::status::into_status`]. Methods whose behaviour belongs to a later release
//! keep the generated default and answer UNIMPLEMENTED.

use tio_proto::v1;

/// `tio.v1.RecordService`.
#[derive(Debug, Clone, Copy)]
pub struct Records;

#[tonic::async_trait]
impl v1::record_service_server::RecordService for Records {}

/// `tio.v1.ConsentService`.
#[derive(Debug, Clone, Copy)]
pub struct Consents;

#[tonic::async_trait]
impl v1::consent_service_server::ConsentService for Consents {}

/// `tio.v1.CareRelationshipService`.
#[derive(Debug, Clone, Copy)]
pub struct CareRelationships;

#[tonic::async_trait]
impl v1::care_relationship_service_server::CareRelationshipService for CareRelationships {}

/// `tio.v1.SubscriptionService`.
#[derive(Debug, Clone, Copy)]
pub struct Subscriptions;

#[tonic::async_trait]
impl v1::subscription_service_server::SubscriptionService for Subscriptions {}

/// `tio.v1.AuditService`.
#[derive(Debug, Clone, Copy)]
pub struct Audit;

#[tonic::async_trait]
impl v1::audit_service_server::AuditService for Audit {}

/// `tio.v1.AdminService`.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

#[tonic::async_trait]
impl v1::admin_service_server::AdminService for Admin {}
