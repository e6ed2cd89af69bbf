//! The narrow storage interface every engine implements.
//!
//! An engine stores bytes in a closed set of keyspaces, applies a [`Batch`] atomically
//! (all of it or none of it, with optional preconditions), assigns each appended log
//! record an opaque, ordered [`Position`], and makes everything applied so far durable
//! on [`Engine::sync`]. It knows nothing of children, categories or encryption: the
//! store above it only ever hands it blind indexes and ciphertext.
//!
//! [`logged::LoggedEngine`] (the group log with an index store beside it) is the
//! engine for one machine, [`postgres::PostgresEngine`] the one for several broker
//! nodes on a PostgreSQL cluster, [`sled::SledEngine`] that of earlier releases, and
//! [`memory::MemoryEngine`] the fast one for tests. Every engine passes
//! [`conformance::run_all`]; nothing here assumes a counter, a file or a flush.

pub mod conformance;
pub mod logged;
pub mod memory;
pub mod postgres;
pub mod sled;
mod slots;

use std::fmt;

/// The keyspaces the store uses. Closed, so that an engine can map each to a table or
/// tree once, and so that a ciphertext's associated data can name where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Keyspace {
    /// Engine bookkeeping (log counters, format version).
    Meta,
    /// The log of stored updates, keyed by position.
    Updates,
    /// Child index and position: the updates of one child, in order.
    UpdatesByChild,
    /// Child index and category: the position of the latest value (the profile).
    Latest,
    /// Publisher and hashed idempotency key: the original position and content hash.
    Idempotency,
    /// Child index: the child's data key, wrapped by a key-encryption key; child index
    /// and a category code: that category's key state, its key sealed under the child's.
    /// Small values an engine keeps where it can overwrite them.
    ChildKeys,
    /// Child index: the child's NHS number, sealed under its data key (for deliveries,
    /// which name the child to a recipient entitled to it); child index and
    /// `/date_of_birth`: the date of birth as last published, sealed likewise.
    Children,
    /// Consent revisions.
    Consents,
    /// Care relationships.
    Relationships,
    /// The agency registry.
    Agencies,
    /// Subscription cursors.
    Cursors,
    /// The audit log, keyed by position (used by the audit log).
    Audit,
    /// The audit log's Merkle tree: complete subtree hashes, the frontier, checkpoints.
    AuditTree,
    /// Objection revisions (last, as keyspaces added later are: stored records name a
    /// keyspace by its place in [`Keyspace::ALL`]).
    Objections,
    /// Safeguarding share revisions.
    Safeguarding,
    /// An amended update's position: the position of the correction or retraction
    /// that amended it.
    Amendments,
    /// Child index, an update's position and an agency: the update was disclosed to
    /// the agency (delivered, or shown in a profile read), so its amendments are owed
    /// to it.
    Disclosures,
    /// EHC needs assessment revisions.
    Assessments,
    /// Transition record revisions (14 to 25).
    Transitions,
}

impl Keyspace {
    /// Every keyspace, in a fixed order engines may rely on.
    pub const ALL: [Keyspace; 19] = [
        Keyspace::Meta,
        Keyspace::Updates,
        Keyspace::UpdatesByChild,
        Keyspace::Latest,
        Keyspace::Idempotency,
        Keyspace::ChildKeys,
        Keyspace::Children,
        Keyspace::Consents,
        Keyspace::Relationships,
        Keyspace::Agencies,
        Keyspace::Cursors,
        Keyspace::Audit,
        Keyspace::AuditTree,
        Keyspace::Objections,
        Keyspace::Safeguarding,
        Keyspace::Amendments,
        Keyspace::Disclosures,
        Keyspace::Assessments,
        Keyspace::Transitions,
    ];

    /// Returns the stable name (a table or tree name, and part of associated data).
    /// Do not change: stored ciphertexts are bound to these names.
    pub const fn name(self) -> &'static str {
        match self {
            Keyspace::Meta => "meta",
            Keyspace::Updates => "updates",
            Keyspace::UpdatesByChild => "updates_by_child",
            Keyspace::Latest => "latest",
            Keyspace::Idempotency => "idempotency",
            Keyspace::ChildKeys => "child_keys",
            Keyspace::Children => "children",
            Keyspace::Consents => "consents",
            Keyspace::Relationships => "relationships",
            Keyspace::Agencies => "agencies",
            Keyspace::Cursors => "cursors",
            Keyspace::Audit => "audit",
            Keyspace::AuditTree => "audit_tree",
            Keyspace::Objections => "objections",
            Keyspace::Safeguarding => "safeguarding",
            Keyspace::Amendments => "amendments",
            Keyspace::Disclosures => "disclosures",
            Keyspace::Assessments => "assessments",
            Keyspace::Transitions => "transitions",
        }
    }

    /// Returns the keyspace's index in [`Keyspace::ALL`].
    pub fn index(self) -> usize {
        Keyspace::ALL.iter().position(|space| *space == self).unwrap_or_default()
    }

    /// Returns whether records are appended with engine-assigned positions.
    pub const fn is_log(self) -> bool {
        matches!(self, Keyspace::Updates | Keyspace::Audit)
    }
}

/// A place in a log's order: opaque bytes, compared lexicographically. Clients and the
/// store only hand positions back; they never do arithmetic on them.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(Vec<u8>);

impl Position {
    /// Wraps bytes produced by an engine (or handed back by a client).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Position(bytes)
    }

    /// Returns the bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position(")?;
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        write!(f, ")")
    }
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// Where.
        space: Keyspace,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Removes `key`.
    Delete {
        /// Where.
        space: Keyspace,
        /// The key.
        key: Vec<u8>,
    },
    /// Appends `value` to a log keyspace at a position the engine assigns.
    Append {
        /// A log keyspace.
        space: Keyspace,
        /// The record.
        value: Vec<u8>,
    },
    /// Sets `prefix ++ position` to `value`, where position is that of the batch's
    /// `append`-th append (counting from 0).
    PutAtPosition {
        /// Where.
        space: Keyspace,
        /// The key before the position.
        prefix: Vec<u8>,
        /// Which append's position.
        append: usize,
        /// The value.
        value: Vec<u8>,
    },
    /// Sets `key` to `prefix ++ position`, where position is that of the batch's
    /// `append`-th append.
    PutPosition {
        /// Where.
        space: Keyspace,
        /// The key.
        key: Vec<u8>,
        /// Bytes before the position in the value.
        prefix: Vec<u8>,
        /// Which append's position.
        append: usize,
    },
}

/// A precondition checked inside the batch's atomic step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Condition {
    /// `key` must not exist.
    Absent {
        /// Where.
        space: Keyspace,
        /// The key.
        key: Vec<u8>,
    },
    /// `key` must hold exactly `value`.
    Equals {
        /// Where.
        space: Keyspace,
        /// The key.
        key: Vec<u8>,
        /// The expected value.
        value: Vec<u8>,
    },
}

/// Changes applied all together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Checked first; if any fails, nothing is applied.
    pub conditions: Vec<Condition>,
    /// Applied in order.
    pub ops: Vec<Op>,
}

impl Batch {
    /// Returns an empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds a precondition.
    pub fn require(&mut self, condition: Condition) -> &mut Self {
        self.conditions.push(condition);
        self
    }

    /// Adds an operation.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Returns the number of appends, which is the length of [`Applied::positions`].
    pub fn append_count(&self) -> usize {
        self.ops.iter().filter(|op| matches!(op, Op::Append { .. })).count()
    }

    /// Returns how many bytes of keys and values the batch carries.
    pub fn payload_bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, .. } => key.len() + value.len(),
                Op::Delete { key, .. } => key.len(),
                Op::PutPosition { key, prefix, .. } => key.len() + prefix.len(),
                Op::Append { value, .. } => value.len(),
                Op::PutAtPosition { prefix, value, .. } => prefix.len() + value.len(),
            })
            .sum()
    }
}

/// What an applied batch produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The positions of the batch's appends, in order.
    pub positions: Vec<Position>,
}

/// How a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A precondition did not hold; nothing was applied.
    #[error("precondition {index} of the batch did not hold")]
    Conflict {
        /// Which condition.
        index: usize,
    },
    /// The batch is malformed (an append in a non-log keyspace, a bad append index).
    #[error("invalid batch: {0}")]
    Invalid(String),
    /// The engine failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What kind of storage failure happened; callers match on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The disk is full; nothing was acknowledged. Writes succeed again once space returns.
    NoSpace,
    /// Stored data failed an integrity check (a checksum, an authentication tag).
    Corrupt,
    /// The store was written in a format this release does not read: intact, but to be
    /// moved with a backup and a restore, not repaired.
    Format,
    /// Any other I/O failure.
    Io,
    /// The store is shutting down.
    Closed,
    /// The store's database does not answer (a connection refused, lost or timed out, a
    /// server shutting down or failing over, a standby that takes no writes). The write
    /// was not acknowledged; if its outcome could not be settled it may be stored, so a
    /// caller tries it again under the same idempotency key once the database answers.
    Unavailable,
}

/// A storage failure. Its message never contains stored values or identifiers.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage {kind:?}: {message}")]
pub struct StorageError {
    /// What kind of failure.
    pub kind: StorageErrorKind,
    /// A description without personal data.
    pub message: String,
}

impl StorageError {
    /// Returns an error of `kind`.
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> Self {
        StorageError { kind, message: message.into() }
    }

    /// Classifies an I/O error: out of space, or other.
    pub fn from_io(context: &str, err: &std::io::Error) -> Self {
        let kind = if err.kind() == std::io::ErrorKind::StorageFull || err.raw_os_error() == Some(28) {
            StorageErrorKind::NoSpace
        } else {
            StorageErrorKind::Io
        };
        StorageError::new(kind, format!("{context}: {err}"))
    }
}

/// The keyspaces a commit wrote, as a set: what a node tells the other nodes on its
/// database that it changed, so that each re-reads only what may have moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Touched(u32);

impl Touched {
    /// Every keyspace: said when commits may have been missed (a lost connection).
    pub const EVERYTHING: Touched = Touched(u32::MAX);

    /// Returns the keyspaces `batch` writes.
    pub fn by(batch: &Batch) -> Touched {
        let mut touched = Touched::default();
        for op in &batch.ops {
            let (Op::Put { space, .. }
            | Op::Delete { space, .. }
            | Op::Append { space, .. }
            | Op::PutAtPosition { space, .. }
            | Op::PutPosition { space, .. }) = op;
            touched = touched.with(*space);
        }
        touched
    }

    /// Returns the set with `space` added.
    pub fn with(self, space: Keyspace) -> Touched {
        Touched(self.0 | 1 << space.index())
    }

    /// Returns the union of both sets.
    pub fn union(self, other: Touched) -> Touched {
        Touched(self.0 | other.0)
    }

    /// Whether `space` is in the set.
    pub fn contains(self, space: Keyspace) -> bool {
        self.0 & 1 << space.index() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set as bits, one per keyspace by its place in [`Keyspace::ALL`] (for a
    /// message between nodes).
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The set of `bits`, as [`Touched::bits`] made them.
    pub fn from_bits(bits: u32) -> Touched {
        Touched(bits)
    }
}

/// Told that another process committed to a shared database, with what it touched.
/// Called on the engine's own threads: it must return quickly and never block.
pub type ForeignCommits = std::sync::Arc<dyn Fn(Touched) + Send + Sync>;

/// One read of several made together ([`Engine::read_many`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// [`Engine::get`].
    Get {
        /// Where.
        space: Keyspace,
        /// The key.
        key: Vec<u8>,
    },
    /// [`Engine::scan`].
    Scan {
        /// Where.
        space: Keyspace,
        /// The first key.
        start: Vec<u8>,
        /// The key after the last (`None`: the end of the keyspace).
        end: Option<Vec<u8>>,
        /// The most entries.
        limit: usize,
    },
}

/// What one [`Read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A get's value, if the key is set.
    Value(Option<Vec<u8>>),
    /// A scan's entries.
    Entries(Entries),
}

/// Key-value pairs in key order, as a scan returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A storage engine. Reads see every applied batch; [`Engine::sync`] makes every batch
/// applied before it durable. Callers commit through [`crate::GroupCommit`], which
/// applies a group of batches and syncs once for all of them.
pub trait Engine: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Reads up to `limit` entries with `start <= key < end` (no `end`: to the end of the
    /// keyspace), in key order: exactly `limit` while the range holds that many, so a
    /// shorter result is the end of the range (callers page on it).
    fn scan(&self, space: Keyspace, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Entries, StorageError>;

    /// Returns the entry with the greatest key in `space` (for a log, the latest
    /// record), if any.
    fn last(&self, space: Keyspace) -> Result<Option<Entry>, StorageError>;

    /// Makes several reads at once, each as [`Engine::get`] or [`Engine::scan`] would,
    /// and returns what each found, in order. An engine across a network sends them
    /// together (one round trip, not one each); the reads are not one snapshot, as
    /// separate reads are not.
    fn read_many(&self, reads: &[Read]) -> Result<Vec<Found>, StorageError> {
        reads
            .iter()
            .map(|read| match read {
                Read::Get { space, key } => self.get(*space, key).map(Found::Value),
                Read::Scan { space, start, end, limit } => {
                    self.scan(*space, start, end.as_deref(), *limit).map(Found::Entries)
                }
            })
            .collect()
    }

    /// Applies `batch` atomically: checks its conditions, assigns positions to its
    /// appends (later than every position assigned before), and applies its operations.
    /// Not durable until [`Engine::sync`].
    fn apply(&self, batch: &Batch) -> Result<Applied, CommitError>;

    /// Applies several batches in order, each atomically and on its own terms (a batch
    /// whose precondition fails applies nothing and does not affect the others). An
    /// engine may apply the group in one step when that is cheaper; results come back in
    /// batch order.
    fn apply_group(&self, batches: &[&Batch]) -> Vec<Result<Applied, CommitError>> {
        batches.iter().map(|batch| self.apply(batch)).collect()
    }

    /// Makes every batch applied so far durable.
    fn sync(&self) -> Result<(), StorageError>;

    /// Checks that the engine can reach its data now (a database across a network
    /// answers), for health checks; quick, and an error says why not.
    fn reachable(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Returns the bytes the engine occupies on disk (0 for memory).
    fn size_on_disk(&self) -> Result<u64, StorageError>;

    /// Checks the engine's own files through and through (checksums of every frame, a
    /// missing file) and describes the damage found, for `tio store check`: damage that
    /// reading the records back would not show, or would show only as a failed read;
    /// an engine with derived indexes also compares them with what they derive from.
    /// Changes nothing. Meant for a stopped store.
    fn check_files(&self) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    /// Whether other processes may write the same data (broker nodes sharing one
    /// database): then nothing read may be kept on the strength of this process's own
    /// commits alone (a cached key, a registry held in memory).
    fn shared(&self) -> bool {
        false
    }

    /// Calls `wake` after another process commits to a shared database, with what its
    /// commit touched, and with [`Touched::EVERYTHING`] when such news may have been
    /// missed (a lost connection). Best effort: the news can come late or not at all,
    /// so whoever watches also reads again now and then. An engine nobody else writes
    /// never calls it.
    fn watch_foreign_commits(&self, wake: ForeignCommits) {
        let _ = wake;
    }

    /// Describes the holes in log `space` that this engine can tell are damage (a dense
    /// counter that skips), for `tio store check`. Positions are opaque above the
    /// engine, so only the engine can say whether a gap is missing data; an engine
    /// whose positions have gaps by design, or that cannot lose a record, reports none.
    fn log_holes(&self, space: Keyspace) -> Result<Vec<String>, StorageError> {
        let _ = space;
        Ok(Vec::new())
    }
}

/// Returns the smallest key strictly greater than every key starting with `prefix`,
/// for a prefix scan's exclusive end; `None` if there is none (all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Returns the smallest key strictly greater than `key`.
pub fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// The largest `child_keys` value (a wrapped data key is 77 bytes, a category key's
/// state 78): an engine may keep these apart, in fixed places it can overwrite.
pub const MAX_CHILD_KEY_BYTES: usize = 126;

/// Checks the shape of a batch before an engine applies it, so that every engine
/// refuses the same mistakes.
pub fn validate_batch(batch: &Batch) -> Result<(), CommitError> {
    let appends = batch.append_count();
    for condition in &batch.conditions {
        let (Condition::Absent { space, .. } | Condition::Equals { space, .. }) = condition;
        if space.is_log() {
            return Err(CommitError::Invalid(format!("condition on log keyspace {}", space.name())));
        }
    }
    for op in &batch.ops {
        match op {
            Op::Append { space, .. } if !space.is_log() => {
                return Err(CommitError::Invalid(format!("append to non-log keyspace {}", space.name())));
            }
            Op::Put { space, .. }
            | Op::Delete { space, .. }
            | Op::PutPosition { space, .. }
            | Op::PutAtPosition { space, .. }
                if space.is_log() =>
            {
                return Err(CommitError::Invalid(format!("direct write to log keyspace {}", space.name())));
            }
            Op::Put { space: Keyspace::ChildKeys, value, .. } if value.len() > MAX_CHILD_KEY_BYTES => {
                return Err(CommitError::Invalid(format!(
                    "a child_keys value of {} bytes is over {MAX_CHILD_KEY_BYTES}",
                    value.len()
                )));
            }
            Op::PutAtPosition { append, .. } | Op::PutPosition { append, .. } if *append >= appends => {
                return Err(CommitError::Invalid(format!("append index {append} out of {appends}")));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(key_after(b"a"), b"a\0".to_vec());
    }

    #[test]
    fn touched_names_the_keyspaces_a_batch_writes() {
        let mut batch = Batch::new();
        batch.require(Condition::Absent { space: Keyspace::Consents, key: b"c".to_vec() });
        batch.push(Op::Put { space: Keyspace::Agencies, key: b"a".to_vec(), value: Vec::new() });
        batch.push(Op::Append { space: Keyspace::Audit, value: Vec::new() });
        let touched = Touched::by(&batch);
        assert!(touched.contains(Keyspace::Agencies) && touched.contains(Keyspace::Audit));
        assert!(!touched.contains(Keyspace::Consents), "a condition reads, it does not write");
        assert_eq!(Touched::from_bits(touched.bits()), touched);
        assert!(Touched::default().is_empty());
        assert!(Keyspace::ALL.iter().all(|space| Touched::EVERYTHING.contains(*space)));
        assert_eq!(touched.union(Touched::default().with(Keyspace::Meta)).bits(), touched.bits() | 1);
    }

    #[test]
    fn keyspace_names_are_distinct_and_indexes_match() {
        let names: std::collections::HashSet<_> = Keyspace::ALL.iter().map(|space| space.name()).collect();
        assert_eq!(names.len(), Keyspace::ALL.len());
        for (index, space) in Keyspace::ALL.iter().enumerate() {
            assert_eq!(space.index(), index);
        }
    }
}
