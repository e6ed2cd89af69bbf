//! What runs a node: configuration, TLS, telemetry, metrics, development certificates,
//! opening the store, and [`node::Node`].

pub(crate) mod cluster;
pub mod config;
pub(crate) mod dev;
pub(crate) mod metrics;
pub mod node;

pub mod pki;
pub mod retention;
pub mod storage;
pub mod telemetry;
pub mod tls;

/// The time now by the system clock, as the server reads it for its decisions.
pub fn now() -> tio_core::Timestamp {
    use crate::app::broker::Clock as _;
    crate::app::broker::SystemClock.now()
}
