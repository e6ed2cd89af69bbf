//! The Tell It Once broker's encrypted durable store.
//!
//! It runs over a `tio-kv` engine (re-exported here as [`engine`]): an
//! [`engine::Engine`] stores bytes in a closed set of keyspaces and applies batches
//! atomically, and [`GroupCommit`] gathers concurrent batches into one durable sync.
//!
//! The store never sees a raw NHS number in a key and never writes a personal value in
//! plain text: keys are keyed blind indexes and values are sealed under per-child data
//! keys. It knows nothing of gRPC.

#![warn(missing_docs)]

pub mod agencies;
mod amendments;
mod assessments;
pub mod audit_records;
pub mod backup;
mod category_keys;
pub mod child_records;
mod consents;
pub mod cursors;
mod follow;

pub mod keys;
mod numbered;
mod objections;
mod options;
mod previous;
pub mod relationships;
mod retention;
mod safeguarding;
pub mod secret_file;
mod store;
mod transitions;
mod update_record;
pub use update_record::{AmendKind, Amends};
mod versioned;

pub use amendments::{BirthDate, NewAmendment};
pub use follow::{AppendedUpdate, UpdateFollower};
pub use options::{EngineKind, IndexEngine, StoreOptions};
pub use retention::{ChildPages, CurrentValue, RetentionFacts};
pub use store::{
    Appended, CheckReport, Child, ChildIndex, ChildRef, Extra, ForeignChange, NewUpdate, Problems, SealedRecord, Store,
    StoreError, StoredUpdate, UpdateContent, UpdateId,
};
/// The engines, re-exported so that the store's users name one crate; the store is the
/// only crate that depends on `tio-kv`.
pub use tio_kv::engine;
/// How to reach the database of the PostgreSQL engine (`store.postgres`), and over what TLS.
pub use tio_kv::engine::postgres::{Hold as PostgresHold, PostgresOptions, PostgresTls};
pub use tio_kv::{
    Batch, CommitError, CommitObserver, CommitStats, Condition, Engine, GroupCommit, GroupFollower, Keyspace, Op,
    Position, StorageError, StorageErrorKind,
};
