//! The storage engines under the Tell It Once store: the narrow [`Engine`] interface
//! (keyspaces, point reads, ordered scans, atomic batches with preconditions, append-only
//! logs with opaque ordered positions, and a sync), the conformance suite every engine
//! passes, the in-memory and sled engines, and [`GroupCommit`], which applies a group
//! of batches and syncs once for all of them before any is acknowledged.
//!
//! This crate knows bytes, keyspaces and positions, never records: it does no
//! encryption, holds no key, and knows nothing of children, updates or audit entries
//! (that is `tio-store`, its only user above it).

#![warn(missing_docs)]

pub mod engine;
mod group_commit;
pub mod group_log;

pub use engine::{
    Batch, CommitError, Condition, Engine, ForeignCommits, Found, Keyspace, Op, Position, Read, StorageError,
    StorageErrorKind, Touched,
};
pub use group_commit::{CommitObserver, CommitStats, GroupCommit, GroupFollower};
