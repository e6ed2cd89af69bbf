//! Runs a broker of its own and drives it as its clients would, over mutual TLS: the
//! demo story ([`demo::run`], `tio demo`) and the benchmarks ([`bench::run`], `tio
//! bench`).
//!
//! It is a client of the broker and nothing more: it talks to the server through
//! `tio-client` and the contract, and starts its own server as a `tio serve --dev` child
//! process, so what it shows and measures is what an integrator's system would see.

// The demo tells its story and the benchmarks print their table: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod bench;
pub mod demo;
mod own_server;

use std::path::PathBuf;

pub use own_server::OwnServer;

/// Why the demo or a benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Options that cannot work; the message names the option.
    #[error("{0}")]
    Usage(String),
    /// A connection to the broker could not be made.
    #[error("cannot connect as {name}: {source}")]
    Connect {
        /// The certificate's name (`hospital`, `auditor`).
        name: String,
        /// Why.
        source: tio_client::ClientError,
    },
    /// The broker refused a call or could not be reached.
    #[error(transparent)]
    Client(#[from] tio_client::ClientError),
    /// The auditor's export or verification could not be done.
    #[error(transparent)]
    Auditor(#[from] tio_auditor::AuditorError),
    /// The development server did not start.
    #[error("the development server did not start: {0}")]
    ServerStart(String),
    /// A file, directory or process could not be made or used.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done, naming the file where there is one.
        action: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The broker answered, but not as it should have: the story did not check out, or
    /// a benchmark's set-up was refused.
    #[error("{0}")]
    Unexpected(String),
    /// A benchmark scenario failed.
    #[error("scenario {scenario}: {source}")]
    Scenario {
        /// The scenario.
        scenario: String,
        /// Why.
        source: Box<HarnessError>,
    },
}

impl From<tonic::Status> for HarnessError {
    fn from(status: tonic::Status) -> HarnessError {
        HarnessError::Client(status.into())
    }
}

impl From<tokio::task::JoinError> for HarnessError {
    fn from(err: tokio::task::JoinError) -> HarnessError {
        HarnessError::Unexpected(format!("a worker task failed: {err}"))
    }
}

impl<T> From<tokio::sync::mpsc::error::SendError<T>> for HarnessError {
    fn from(_: tokio::sync::mpsc::error::SendError<T>) -> HarnessError {
        HarnessError::Unexpected("the stream to the broker closed".into())
    }
}

impl HarnessError {
    /// An I/O failure while doing `action`.
    fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
        let action = action.into();
        move |source| HarnessError::Io { action, source }
    }
}

/// The result of the demo and the benchmarks.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Stops with [`HarnessError::Unexpected`] and a formatted message.
macro_rules! unexpected {
    ($($message:tt)*) => {
        return Err($crate::HarnessError::Unexpected(format!($($message)*)))
    };
}

/// Stops with [`HarnessError::Unexpected`] unless `condition` holds.
macro_rules! check {
    ($condition:expr, $($message:tt)*) => {
        if !$condition {
            $crate::unexpected!($($message)*);
        }
    };
}

pub(crate) use {check, unexpected};

/// Where a server to drive is: its URL and the development certificates to reach it
/// with (a server started with `tio serve --dev` keeps them in `DATA_DIR/dev-pki`).
#[derive(Debug, Clone)]
pub struct RunningServer {
    /// The server's URL, `https://localhost:PORT`.
    pub url: String,
    /// Its development certificate directory.
    pub dev_pki: PathBuf,
}

/// Builds the multi-threaded runtime the demo and the benchmarks run their calls on.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(HarnessError::io("start a runtime"))
}
