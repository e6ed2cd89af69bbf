//! The Tell It Once broker's gRPC server.
//!
//! It terminates mutual TLS (TLS 1.3, client certificate required), identifies each
//! caller from its certificate's `urn:tio:` identity, mounts the `tio.v1` services with
//! standard health and reflection, and drains on shutdown. It loads configuration,
//! sets up logs and traces, and makes development certificates.
//!
//! It is the only crate that knows both the protobuf world (`tio-proto`) and the
//! domain (`tio-core`), and the only one that builds a `tonic::Status`
//! ([`status::into_status`]). Policy lives in `tio-core`, never here.

#![warn(missing_docs)]

pub mod admin;
pub mod audit_reads;
pub mod auth;
pub mod broker;
pub mod checkpoints;
pub mod child_records;
pub mod config;
pub mod consents;
pub mod convert;
pub mod dev;
pub mod maintenance;
pub mod metrics;
pub mod paging;
pub mod pki;
pub mod records;
pub mod relationships;
pub mod request;
pub mod server;
pub mod services;
pub mod status;
pub mod storage;
pub mod subscriptions;
pub mod telemetry;
pub mod tls;
pub mod transport_status;
pub mod value_limits;

pub use config::Config;
pub use server::{ServeError, check, prepare_dev, serve};
