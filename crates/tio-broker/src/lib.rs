//! The Tell It Once broker: a node that serves the `tio.v1` contract over mutual TLS.
//!
//! Three rooms, each with one kind of work:
//! - [`app`]: the use cases (publish, profile, consent, relationships, subscriptions,
//!   the registry, audit reads, maintenance) over the domain (`tio-core`), the store and
//!   the audit log. It decides nothing itself: policy lives in `tio-core`.
//! - [`grpc`]: the adapters from the contract (`tio-proto`) to the use cases: the
//!   services, the conversions, caller authentication, page tokens, and the one place
//!   that turns an error into a `tonic::Status` ([`grpc::status::into_status`]).
//! - [`runtime`]: configuration, TLS, telemetry, metrics, development certificates,
//!   opening the store, and [`Node`], which starts everything and stops it in order.
//!
//! It is the only crate that knows both the protobuf world and the domain.

#![warn(missing_docs)]

mod app;
mod grpc;
pub mod runtime;

pub use grpc::auth::fingerprint;
pub use grpc::server::ServeError;
pub use runtime::config::{self, Config};
pub use runtime::node::{Node, NodeError};
pub use runtime::{pki, telemetry, tls};
