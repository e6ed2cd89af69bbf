//! The index stores beside the group log: where the logged engine's keyspaces live once
//! their groups are durable in the log. They are derived state: written by the applier
//! thread off the commit path, never synced on it, and always rebuildable from the log,
//! so each keeps, in the same atomic write as the entries, the log position it holds
//! everything up to ([`IndexStore::applied_through`]).
//!
//! fjall is the default; sled is supported; the memory store is for tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use super::super::{Entries, Entry, Keyspace, StorageError, StorageErrorKind};

/// One change to an index: a put, or a removal (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexWrite {
    pub(crate) space: Keyspace,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<Vec<u8>>,
}

/// Keyspaces in key order, written in atomic batches that carry the log mark.
pub(crate) trait IndexStore: Send + Sync {
    /// Reads one key.
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Up to `limit` entries with `start <= key < end`, in key order.
    fn scan(&self, space: Keyspace, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Entries, StorageError>;
    /// The entry with the greatest key below `below` (no bound: the greatest of all).
    fn last_below(&self, space: Keyspace, below: Option<&[u8]>) -> Result<Option<Entry>, StorageError>;
    /// Applies `writes` in order and records `applied_through`, all or nothing.
    fn apply(&self, writes: &[IndexWrite], applied_through: u64) -> Result<(), StorageError>;
    /// The log position everything before which is applied (0 for a new store).
    fn applied_through(&self) -> Result<u64, StorageError>;
    /// Writes what is buffered to disk, so that opening replays less of the log.
    fn persist(&self) -> Result<(), StorageError>;
    /// Bytes on disk.
    fn size_on_disk(&self) -> u64;
    /// Closes and opens the store again, as after a restart: the way out of an I/O
    /// error that the store keeps (fjall and sled both refuse every write after one).
    /// What it had not written out is lost; [`IndexStore::applied_through`] says how
    /// far it now holds.
    fn reopen(&self) -> Result<(), StorageError>;
}

/// Where the mark lives: a keyspace of the index store's own.
const MARK_SPACE: &str = "applied";
const MARK_KEY: &[u8] = b"through";

fn decode_mark(value: Option<&[u8]>) -> Result<u64, StorageError> {
    match value {
        None => Ok(0),
        Some(bytes) => bytes
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| StorageError::new(StorageErrorKind::Corrupt, "the index store's log mark is damaged")),
    }
}

fn upper(end: Option<&[u8]>) -> Bound<Vec<u8>> {
    end.map_or(Bound::Unbounded, |end| Bound::Excluded(end.to_vec()))
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => stack.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// fjall: an LSM tree, one keyspace per engine keyspace, batches across keyspaces
/// atomic through its journal.
pub(crate) struct FjallIndex {
    open: std::sync::RwLock<Option<FjallOpen>>,
    dir: std::path::PathBuf,
    cache_bytes: u64,
}

struct FjallOpen {
    db: fjall::Database,
    spaces: Vec<fjall::Keyspace>,
    mark: fjall::Keyspace,
}

fn closed() -> StorageError {
    StorageError::new(StorageErrorKind::Io, "the index store is being reopened")
}

fn fjall_error(context: &str) -> impl Fn(fjall::Error) -> StorageError + '_ {
    move |err| match err {
        fjall::Error::Io(io) => StorageError::from_io(context, &io),
        other => StorageError::new(StorageErrorKind::Corrupt, format!("{context}: {other}")),
    }
}

impl FjallIndex {
    /// Opens (or creates) the index store in `dir`.
    pub(crate) fn open(dir: &Path, cache_bytes: u64) -> Result<FjallIndex, StorageError> {
        let open = FjallIndex::open_db(dir, cache_bytes)?;
        Ok(FjallIndex { open: std::sync::RwLock::new(Some(open)), dir: dir.to_owned(), cache_bytes })
    }

    fn open_db(dir: &Path, cache_bytes: u64) -> Result<FjallOpen, StorageError> {
        let db = fjall::Database::builder(dir)
            .cache_size(cache_bytes)
            // The group log is the durable record: fjall's journal only bounds what it
            // replays at open.
            .max_journaling_size(64 << 20)
            .open()
            .map_err(fjall_error("cannot open the fjall index store"))?;
        let spaces = Keyspace::ALL
            .iter()
            .map(|space| db.keyspace(space.name(), fjall::KeyspaceCreateOptions::default))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fjall_error("cannot open a fjall keyspace"))?;
        let mark = db
            .keyspace(MARK_SPACE, fjall::KeyspaceCreateOptions::default)
            .map_err(fjall_error("cannot open a fjall keyspace"))?;
        Ok(FjallOpen { db, spaces, mark })
    }

    fn with<T>(&self, read: impl FnOnce(&FjallOpen) -> Result<T, StorageError>) -> Result<T, StorageError> {
        let open = self.open.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        read(open.as_ref().ok_or_else(closed)?)
    }

    fn entry(guard: fjall::Guard) -> Result<Entry, StorageError> {
        let (key, value) = guard.into_inner().map_err(fjall_error("cannot read the fjall index store"))?;
        Ok((key.to_vec(), value.to_vec()))
    }
}

impl IndexStore for FjallIndex {
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.with(|open| {
            let value =
                open.spaces[space.index()].get(key).map_err(fjall_error("cannot read the fjall index store"))?;
            Ok(value.map(|value| value.to_vec()))
        })
    }

    fn scan(&self, space: Keyspace, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Entries, StorageError> {
        self.with(|open| {
            open.spaces[space.index()]
                .range((Bound::Included(start.to_vec()), upper(end)))
                .take(limit)
                .map(FjallIndex::entry)
                .collect()
        })
    }

    fn last_below(&self, space: Keyspace, below: Option<&[u8]>) -> Result<Option<Entry>, StorageError> {
        self.with(|open| {
            let range = (Bound::Unbounded, upper(below));
            open.spaces[space.index()].range::<Vec<u8>, _>(range).next_back().map(FjallIndex::entry).transpose()
        })
    }

    fn apply(&self, writes: &[IndexWrite], applied_through: u64) -> Result<(), StorageError> {
        self.with(|open| {
            let mut batch = open.db.batch();
            for write in writes {
                let space = &open.spaces[write.space.index()];
                match &write.value {
                    Some(value) => batch.insert(space, write.key.as_slice(), value.as_slice()),
                    None => batch.remove(space, write.key.as_slice()),
                }
            }
            batch.insert(&open.mark, MARK_KEY, &applied_through.to_be_bytes()[..]);
            batch.commit().map_err(fjall_error("cannot write the fjall index store"))
        })
    }

    fn applied_through(&self) -> Result<u64, StorageError> {
        self.with(|open| {
            let value = open.mark.get(MARK_KEY).map_err(fjall_error("cannot read the fjall index store"))?;
            decode_mark(value.as_deref())
        })
    }

    fn persist(&self) -> Result<(), StorageError> {
        self.with(|open| {
            open.db.persist(fjall::PersistMode::SyncData).map_err(fjall_error("cannot persist the fjall index store"))
        })
    }

    fn size_on_disk(&self) -> u64 {
        dir_size(&self.dir)
    }

    fn reopen(&self) -> Result<(), StorageError> {
        let mut open = self.open.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Closed before it is opened again: fjall holds its directory while open.
        open.take();
        *open = Some(FjallIndex::open_db(&self.dir, self.cache_bytes)?);
        Ok(())
    }
}

/// sled: one tree per engine keyspace; a batch is one transaction across them.
pub(crate) struct SledIndex {
    open: std::sync::RwLock<Option<SledOpen>>,
    dir: std::path::PathBuf,
    cache_bytes: u64,
}

struct SledOpen {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    mark: sled::Tree,
}

fn sled_error(context: &str) -> impl Fn(sled::Error) -> StorageError + '_ {
    move |err| match err {
        sled::Error::Io(io) => StorageError::from_io(context, &io),
        other => StorageError::new(StorageErrorKind::Corrupt, format!("{context}: {other}")),
    }
}

impl SledIndex {
    /// Opens (or creates) the index store in `dir`.
    pub(crate) fn open(dir: &Path, cache_bytes: u64) -> Result<SledIndex, StorageError> {
        let open = SledIndex::open_db(dir, cache_bytes)?;
        Ok(SledIndex { open: std::sync::RwLock::new(Some(open)), dir: dir.to_owned(), cache_bytes })
    }

    fn open_db(dir: &Path, cache_bytes: u64) -> Result<SledOpen, StorageError> {
        let config = sled::Config::new().path(dir).cache_capacity(cache_bytes);
        let db = crate::engine::sled::open_waiting_for_lock(&config)
            .map_err(sled_error("cannot open the sled index store"))?;
        let trees = Keyspace::ALL
            .iter()
            .map(|space| db.open_tree(space.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(sled_error("cannot open a sled tree"))?;
        let mark = db.open_tree(MARK_SPACE).map_err(sled_error("cannot open a sled tree"))?;
        Ok(SledOpen { db, trees, mark })
    }

    fn with<T>(&self, read: impl FnOnce(&SledOpen) -> Result<T, StorageError>) -> Result<T, StorageError> {
        let open = self.open.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        read(open.as_ref().ok_or_else(closed)?)
    }
}

fn sled_entry(item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Entry, StorageError> {
    let (key, value) = item.map_err(sled_error("cannot read the sled index store"))?;
    Ok((key.to_vec(), value.to_vec()))
}

impl IndexStore for SledIndex {
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.with(|open| {
            let value = open.trees[space.index()].get(key).map_err(sled_error("cannot read the sled index store"))?;
            Ok(value.map(|value| value.to_vec()))
        })
    }

    fn scan(&self, space: Keyspace, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Entries, StorageError> {
        self.with(|open| {
            open.trees[space.index()]
                .range((Bound::Included(start.to_vec()), upper(end)))
                .take(limit)
                .map(sled_entry)
                .collect()
        })
    }

    fn last_below(&self, space: Keyspace, below: Option<&[u8]>) -> Result<Option<Entry>, StorageError> {
        self.with(|open| {
            let range: (Bound<Vec<u8>>, Bound<Vec<u8>>) = (Bound::Unbounded, upper(below));
            open.trees[space.index()].range(range).next_back().map(sled_entry).transpose()
        })
    }

    fn apply(&self, writes: &[IndexWrite], applied_through: u64) -> Result<(), StorageError> {
        // One sled batch per tree, then the mark. sled applies each batch atomically but
        // not several together; a crash between them leaves trees ahead of the mark,
        // which replaying the log from the mark puts right (the writes are replayed in
        // order, so each key ends as the log says).
        self.with(|open| {
            let mut batches: BTreeMap<usize, sled::Batch> = BTreeMap::new();
            for write in writes {
                let batch = batches.entry(write.space.index()).or_default();
                match &write.value {
                    Some(value) => batch.insert(write.key.as_slice(), value.as_slice()),
                    None => batch.remove(write.key.as_slice()),
                }
            }
            for (tree, batch) in batches {
                open.trees[tree].apply_batch(batch).map_err(sled_error("cannot write the sled index store"))?;
            }
            open.mark
                .insert(MARK_KEY, &applied_through.to_be_bytes())
                .map_err(sled_error("cannot write the sled index store"))?;
            Ok(())
        })
    }

    fn applied_through(&self) -> Result<u64, StorageError> {
        self.with(|open| {
            let value = open.mark.get(MARK_KEY).map_err(sled_error("cannot read the sled index store"))?;
            decode_mark(value.as_deref())
        })
    }

    fn persist(&self) -> Result<(), StorageError> {
        self.with(|open| open.db.flush().map(|_| ()).map_err(sled_error("cannot flush the sled index store")))
    }

    fn size_on_disk(&self) -> u64 {
        self.with(|open| Ok(open.db.size_on_disk().unwrap_or(0))).unwrap_or(0)
    }

    fn reopen(&self) -> Result<(), StorageError> {
        let mut open = self.open.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.take();
        *open = Some(SledIndex::open_db(&self.dir, self.cache_bytes)?);
        Ok(())
    }
}

/// Keyspaces in memory, for tests (it forgets everything when dropped, as an index
/// store lost with its disk would, and the engine rebuilds it from the log).
#[derive(Default)]
pub(crate) struct MemoryIndex {
    state: Mutex<MemoryState>,
}

/// Every entry by keyspace and key, and the mark.
type MemoryState = (BTreeMap<(Keyspace, Vec<u8>), Vec<u8>>, u64);

impl MemoryIndex {
    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl IndexStore for MemoryIndex {
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.state().0.get(&(space, key.to_vec())).cloned())
    }

    fn scan(&self, space: Keyspace, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Entries, StorageError> {
        let end = end.map_or(Bound::Unbounded, |end| Bound::Excluded((space, end.to_vec())));
        let state = self.state();
        Ok(state
            .0
            .range((Bound::Included((space, start.to_vec())), end))
            .take_while(|((found, _), _)| *found == space)
            .take(limit)
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect())
    }

    fn last_below(&self, space: Keyspace, below: Option<&[u8]>) -> Result<Option<Entry>, StorageError> {
        let end = below.map_or(Bound::Unbounded, |below| Bound::Excluded((space, below.to_vec())));
        let state = self.state();
        Ok(state
            .0
            .range((Bound::Included((space, Vec::new())), end))
            .rev()
            .find(|((found, _), _)| *found == space)
            .map(|((_, key), value)| (key.clone(), value.clone())))
    }

    fn apply(&self, writes: &[IndexWrite], applied_through: u64) -> Result<(), StorageError> {
        let mut state = self.state();
        for write in writes {
            match &write.value {
                Some(value) => state.0.insert((write.space, write.key.clone()), value.clone()),
                None => state.0.remove(&(write.space, write.key.clone())),
            };
        }
        state.1 = applied_through;
        Ok(())
    }

    fn applied_through(&self) -> Result<u64, StorageError> {
        Ok(self.state().1)
    }

    fn persist(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        0
    }

    fn reopen(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
