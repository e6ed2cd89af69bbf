//! The Tell It Once broker's encrypted durable store.
//!
//! An [`engine::Engine`] stores bytes in a closed set of keyspaces and applies batches
//! atomically; [`GroupCommit`] gathers concurrent batches into one durable sync. sled
//! is the production engine, [`engine::memory::MemoryEngine`] the test one, and one
//! conformance suite runs against both.
//!
//! The store never sees a raw NHS number in a key and never writes a personal value in
//! plain text: keys are keyed blind indexes and values are sealed under per-child data
//! keys. It knows nothing of gRPC.

#![warn(missing_docs)]

pub mod backup;
pub mod engine;
mod group_commit;
pub mod keys;
pub mod record;
pub mod secret_file;
mod store;

pub use engine::{Batch, CommitError, Condition, Engine, Keyspace, Op, Position, StorageError, StorageErrorKind};
pub use group_commit::{CommitObserver, CommitStats, GroupCommit};
pub use store::{
    Appended, CheckReport, ChildIndex, Extra, NewUpdate, Problems, SealedRecord, Store, StoreError, StoredUpdate,
    UpdateContent, UpdateId,
};
