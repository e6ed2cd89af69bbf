//! The production engine: sled, one tree per keyspace, one transaction per group of
//! batches, and a real `fdatasync` after sled's flush.
//!
//! A log keyspace stores each group's appends as one run (see [`runs`]), because every
//! sled write costs several microseconds whatever its size. The `child_keys` keyspace
//! keeps its values in slots outside sled, overwritten in place (see [`slots`]), because
//! sled keeps replaced values in its files and erasure must leave no wrapped key behind.
//!
//! sled 0.34's flush uses `sync_file_range` on Linux, which survives a process kill but
//! not necessarily a power cut; [`SledEngine::sync`] therefore also calls `sync_data`
//! on the database file, so that an acknowledged commit is on the disk.
//!
//! sled also keeps its first I/O error: after the disk fills, every later operation
//! fails until the database is opened again. The engine does that itself: after a
//! failed write or read it reopens sled at the next commit or read, once the filesystem
//! has room again (and never between a group's apply and its sync), so that a server
//! recovers when space is freed, without a restart.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use sha2::{Digest, Sha256};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

mod runs;

use super::slots;
pub use super::slots::SLOTS_FILE;

use super::memory::counter_position;
use super::{
    Applied, Batch, CommitError, Condition, Engine, Entries, Keyspace, Op, Position, StorageError, StorageErrorKind,
    validate_batch,
};

/// The store format this release writes, recorded on first open.
/// Do not change without a migration: it marks every file under the data directory.
pub const STORE_FORMAT: &[u8] = b"tio-store/2";

/// The format before logs were stored in runs; this release cannot read it.
const OLDER_FORMAT: &[u8] = b"tio-store/1";

/// Meta key of the store format marker.
const FORMAT_KEY: &[u8] = b"format";

/// The file beside sled's that names the store's format too. sled writes a snapshot
/// file as it opens a database, so a store of another format is recognised from this
/// file (or, for a `tio-store/1` store, from its absence) before sled touches anything.
pub const FORMAT_FILE: &str = "format";

pub(crate) fn older_format() -> StorageError {
    StorageError::new(
        StorageErrorKind::Format,
        "the store was written in format tio-store/1, which this release does not read: take a \
         backup with the release that wrote it (`tio store backup`) and restore it with this one \
         (`tio store restore`)",
    )
}

fn unknown_format() -> StorageError {
    StorageError::new(
        StorageErrorKind::Format,
        "the store was written in a format this release does not know (by a newer release?)",
    )
}

/// Refuses a store of another format from its format file alone; a new directory
/// passes. Changes nothing.
fn check_format_file(dir: &Path) -> Result<(), StorageError> {
    match std::fs::read(dir.join(FORMAT_FILE)) {
        Ok(content) if content.trim_ascii_end() == STORE_FORMAT => Ok(()),
        Ok(content) if content.trim_ascii_end() == OLDER_FORMAT => Err(older_format()),
        Ok(content) if content.trim_ascii_end() == super::logged::LOGGED_FORMAT => Err(StorageError::new(
            StorageErrorKind::Format,
            "the store is in format tio-store/3 (the group log): open it with store.engine = \"log\"",
        )),
        Ok(_) => Err(unknown_format()),
        // tio-store/1 wrote no format file.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && dir.join("db").exists() => Err(older_format()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StorageError::from_io("cannot read the store's format file", &err)),
    }
}

/// Writes the format file naming `format` in a store that has none yet (a new one),
/// durably. Shared by the engines.
pub(crate) fn write_format_file(dir: &Path, format: &[u8]) -> Result<(), StorageError> {
    let path = dir.join(FORMAT_FILE);
    if path.exists() {
        return Ok(());
    }
    let failed = |err: std::io::Error| StorageError::from_io("cannot write the store's format file", &err);
    let mut content = format.to_vec();
    content.push(b'\n');
    std::fs::write(&path, content).map_err(failed)?;
    File::open(&path).and_then(|file| file.sync_all()).map_err(failed)?;
    File::open(dir).and_then(|dir| dir.sync_all()).map_err(failed)
}

/// sled writes a page larger than a quarter segment to a separate blob file that its
/// flush does not cover; 8 MiB segments keep every page we write (values are at most
/// 64 KiB) inside the database file that [`SledEngine::sync`] syncs.
const SEGMENT_SIZE: usize = 8 * 1024 * 1024;

/// How many times an open waits 20 ms for sled's file lock to be released: up to 10 s.
/// sled's background threads let go of the lock moments after a close, but on a busy
/// two-core machine "moments" has been more than the 2 s this once allowed.
const LOCK_ATTEMPTS: u32 = 500;

/// Free bytes the filesystem must have before a failed engine reopens sled: enough for
/// a few of its segments, so that the reopened database does not fail at once again.
const REOPEN_FREE_BYTES: u64 = 4 * SEGMENT_SIZE as u64;

/// An open sled database and what is opened with it.
struct Open {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    data_file: File,
    /// The values of `child_keys`; the tree holds slot numbers.
    slots: Mutex<slots::Slots>,
}

impl Open {
    fn slots(&self) -> Result<std::sync::MutexGuard<'_, slots::Slots>, StorageError> {
        self.slots.lock().map_err(|_| poisoned())
    }

    /// Returns the value a `child_keys` tree entry names.
    fn child_key_value(&self, slots: &slots::Slots, named: &[u8]) -> Result<Vec<u8>, StorageError> {
        let slot = slots::decode_slot(named)?;
        slots.read(slot)?.ok_or_else(|| {
            StorageError::new(StorageErrorKind::Corrupt, format!("a child key entry names slot {slot}, which is empty"))
        })
    }
}

/// A sled database under one directory.
pub struct SledEngine {
    /// The open database: `None` only while it is being reopened after a failure (or
    /// when that reopening failed; the next commit or read tries again).
    open: RwLock<Option<Open>>,
    /// Set when a write, sync or read failed: sled must be reopened before it serves
    /// again.
    failed: AtomicBool,
    /// Set from a group's apply until its sync returns: a reopen then would drop applied
    /// writes that the sync is about to acknowledge, so none happens meanwhile.
    unsynced: AtomicBool,
    cache_bytes: u64,
    /// The next position of each log keyspace, in [`Keyspace::ALL`] order (unused for
    /// others). Held in memory and recovered at open from each log's last key: batches
    /// are atomic, so the last key present is the last append committed. The lock also
    /// serialises `apply_group`, so positions follow commit order.
    next_positions: Mutex<[u64; Keyspace::ALL.len()]>,
    /// The log ends made durable by the last sync, kept outside sled's log (see
    /// [`LOG_END_FILE`]).
    log_end_file: Mutex<File>,
    dir: PathBuf,
}

/// The file holding the log ends made durable by the last sync.
///
/// sled's recovery treats a damaged log message as the torn end of its log and
/// silently drops everything after it: a store damaged in the middle reopens
/// consistent but shorter. This mark, written after every sync, lets [`SledEngine::open`]
/// see that more was acknowledged than was recovered, and refuse to start. It is not
/// synced itself (that would cost a second sync per group): after a power cut it may lag,
/// which weakens the check but never makes it fail a healthy store.
pub const LOG_END_FILE: &str = "log-end";

impl std::fmt::Debug for SledEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledEngine").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Maps a sled error to a storage error without leaking stored bytes.
fn storage_error(context: &str, err: &sled::Error) -> StorageError {
    match err {
        sled::Error::Io(io) => StorageError::from_io(context, io),
        sled::Error::Corruption { .. } => StorageError::new(StorageErrorKind::Corrupt, format!("{context}: {err}")),
        _ => StorageError::new(StorageErrorKind::Io, format!("{context}: {err}")),
    }
}

/// The page cache a store gets unless configured otherwise.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

impl SledEngine {
    /// Opens (or creates) the database in `dir`. Refuses a directory written by another
    /// format, and reports a database that fails sled's integrity checks as corrupt,
    /// never repairing or deleting anything.
    pub fn open(dir: &Path) -> Result<SledEngine, StorageError> {
        SledEngine::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Like [`SledEngine::open`], with sled's page cache bounded to about `cache_bytes`
    /// (sled's own default, 1 GiB, lets a busy server's memory grow for a long while).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<SledEngine, StorageError> {
        std::fs::create_dir_all(dir).map_err(|err| StorageError::from_io("cannot create store directory", &err))?;
        check_format_file(dir)?;
        let (open, next_positions) = open_sled(dir, cache_bytes)?;
        write_format_file(dir, STORE_FORMAT)?;
        let log_end_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(LOG_END_FILE))
            .map_err(|err| StorageError::from_io("cannot open log-end file", &err))?;
        let engine = SledEngine {
            open: RwLock::new(Some(open)),
            failed: AtomicBool::new(false),
            unsynced: AtomicBool::new(false),
            cache_bytes,
            next_positions: Mutex::new(next_positions),
            log_end_file: Mutex::new(log_end_file),
            dir: dir.to_owned(),
        };
        engine.sync()?;
        Ok(engine)
    }

    /// Runs `read` on the open database; if it fails after a failed write (sled then
    /// refuses every operation with its first error), reopens sled if the filesystem has
    /// room again and runs `read` once more. Never called with `next_positions` held.
    fn read_open<T>(&self, read: impl Fn(&Open) -> Result<T, StorageError>) -> Result<T, StorageError> {
        match self.with_open(&read) {
            // sled's background flusher may have met the error first: a read is then the
            // first to see it, and must count as the failure that calls for a reopen.
            Err(err) if matches!(err.kind, StorageErrorKind::NoSpace | StorageErrorKind::Io) => {
                self.failed.store(true, Ordering::SeqCst);
                let mut next_positions = self.next_positions.lock().map_err(|_| poisoned())?;
                // Another caller may have reopened it meanwhile.
                if self.failed.load(Ordering::SeqCst) && self.reopen(&mut next_positions).is_err() {
                    return Err(err);
                }
                drop(next_positions);
                self.with_open(read)
            }
            other => other,
        }
    }

    /// Runs `read` on the open database.
    fn with_open<T>(&self, read: impl FnOnce(&Open) -> Result<T, StorageError>) -> Result<T, StorageError> {
        let guard = self.open.read().map_err(|_| poisoned())?;
        match guard.as_ref() {
            Some(open) => read(open),
            None => Err(StorageError::new(
                StorageErrorKind::Io,
                "the store is unavailable: it failed to reopen after a write failure",
            )),
        }
    }

    /// Reopens sled after a failed write, if the filesystem has room again (otherwise
    /// fails with `NoSpace`, leaving the old database open: sled may refuse its reads too,
    /// with the same error, until then). The positions are
    /// recovered again from what sled recovers: a failed group may or may not be there.
    fn reopen(&self, next_positions: &mut [u64; Keyspace::ALL.len()]) -> Result<(), StorageError> {
        if self.unsynced.load(Ordering::SeqCst) {
            return Err(StorageError::new(StorageErrorKind::Io, "the store is finishing a commit; try again"));
        }
        let free = rustix::fs::statvfs(&self.dir)
            .map(|stats| stats.f_bavail.saturating_mul(stats.f_frsize))
            .map_err(|err| StorageError::from_io("cannot measure free space", &err.into()))?;
        if free < REOPEN_FREE_BYTES {
            return Err(StorageError::new(
                StorageErrorKind::NoSpace,
                format!("the store's filesystem has {free} bytes free; writes resume once it has {REOPEN_FREE_BYTES}"),
            ));
        }
        let mut guard = self.open.write().map_err(|_| poisoned())?;
        // sled holds a lock on its files until every handle is dropped.
        drop(guard.take());
        let (open, positions) = open_sled(&self.dir, self.cache_bytes)?;
        *guard = Some(open);
        *next_positions = positions;
        self.failed.store(false, Ordering::SeqCst);
        tracing::warn!("the store was reopened after a write failure and accepts writes again");
        Ok(())
    }

    /// Writes entries exactly as given, log keyspaces included, for restoring a backup
    /// into a new store. Not part of [`Engine`]: normal writes go through batches.
    /// A log's entries must come in position order (a backup's do) and are stored in
    /// runs of consecutive positions. The format marker is the engine's own and is not
    /// imported: a restored store is in this release's format.
    pub fn import(&self, space: Keyspace, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        if space.is_log() {
            let mut positioned = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                positioned.push((runs::position(key)?, value.as_slice()));
            }
            if positioned.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
                return Err(StorageError::new(
                    StorageErrorKind::Corrupt,
                    format!("the {} entries to import are not in position order", space.name()),
                ));
            }
            // Consecutive positions share runs; a gap starts a new one.
            for consecutive in positioned.chunk_by(|a, b| a.0 + 1 == b.0) {
                let records: Vec<&[u8]> = consecutive.iter().map(|(_, value)| *value).collect();
                let mut first = consecutive[0].0;
                for run in runs::split(&records) {
                    batch.insert(&first.to_be_bytes(), runs::encode(&run));
                    first += run.len() as u64;
                }
            }
        } else if space == Keyspace::ChildKeys {
            self.with_open(|open| {
                let mut slots = open.slots()?;
                for (key, value) in entries {
                    batch.insert(key.as_slice(), &slots::encode_slot(slots.write_new(value)?));
                }
                slots.sync()
            })?;
        } else {
            for (key, value) in entries {
                if space == Keyspace::Meta && key.as_slice() == FORMAT_KEY {
                    continue;
                }
                batch.insert(key.as_slice(), value.as_slice());
            }
        }
        self.with_open(|open| {
            open.trees[space.index()].apply_batch(batch).map_err(|err| storage_error("cannot import", &err))
        })?;
        if space.is_log()
            && let Some((last, _)) = entries.last()
        {
            let last = runs::position(last)?;
            let mut next = self.next_positions.lock().map_err(|_| poisoned())?;
            next[space.index()] = next[space.index()].max(last + 1);
        }
        Ok(())
    }

    /// Returns the directory the database lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the tree of a keyspace that is not a log. For tests (feature `test-support`), which use it
    /// to damage records.
    #[cfg(any(test, feature = "test-support"))]
    pub fn tree(&self, space: Keyspace) -> sled::Tree {
        assert!(!space.is_log(), "a log is stored in runs: damage it with replace_log_record");
        assert!(space != Keyspace::ChildKeys, "child keys live in slots: damage them with replace_child_key");
        self.with_open(|open| Ok(open.trees[space.index()].clone())).expect("the store is open")
    }

    /// Sets a `child_keys` value directly, in a new slot, bypassing every check.
    /// For tests (feature `test-support`), which use it to damage data keys.
    #[cfg(any(test, feature = "test-support"))]
    pub fn replace_child_key(&self, key: &[u8], value: &[u8]) {
        self.with_open(|open| {
            let mut slots = open.slots()?;
            let slot = slots.write_new(value)?;
            slots.sync()?;
            open.trees[Keyspace::ChildKeys.index()].insert(key, &slots::encode_slot(slot)).expect("writable");
            Ok(())
        })
        .expect("the store is open");
    }

    /// Replaces the log record at `position` with `value`, or removes it (only a record
    /// alone in its run, so that a gap appears). For tests (feature `test-support`), which use it
    /// to damage records.
    #[cfg(any(test, feature = "test-support"))]
    pub fn replace_log_record(&self, space: Keyspace, position: u64, value: Option<&[u8]>) {
        let tree = self.with_open(|open| Ok(open.trees[space.index()].clone())).expect("the store is open");
        let (key, run) = tree.range(..=position.to_be_bytes()).next_back().expect("a run").expect("readable");
        let mut records: Vec<Vec<u8>> =
            runs::decode(&key, &run).expect("a whole run").into_iter().map(|(_, record)| record.to_vec()).collect();
        let first = runs::position(&key).expect("a position");
        let index = usize::try_from(position - first).expect("small");
        match value {
            Some(value) => {
                records[index] = value.to_vec();
                let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
                tree.insert(key, runs::encode(&slices)).expect("writable");
            }
            None => {
                assert_eq!(records.len(), 1, "only a record alone in its run can be removed");
                tree.remove(key).expect("writable");
            }
        }
    }
}

/// Returns the log record at `key` (a position) from the run that holds it.
fn log_get(tree: &sled::Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
    let Ok(position) = runs::position(key) else { return Ok(None) };
    let Some((run_key, run)) =
        tree.range(..=key).next_back().transpose().map_err(|err| storage_error("cannot read", &err))?
    else {
        return Ok(None);
    };
    let first = runs::position(&run_key)?;
    let records = runs::decode(&run_key, &run)?;
    let index = usize::try_from(position - first).unwrap_or(usize::MAX);
    Ok(records.get(index).map(|(_, record)| record.to_vec()))
}

/// Returns up to `limit` log records with `start <= position < end`, reading runs from
/// the one that holds `start`.
fn log_scan(tree: &sled::Tree, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Entries, StorageError> {
    let read_error = |err: sled::Error| storage_error("cannot scan", &err);
    let from = match tree.range(..=start).next_back().transpose().map_err(read_error)? {
        Some((run_key, _)) => run_key.to_vec(),
        None => start.to_vec(),
    };
    let mut entries = Vec::new();
    for run in tree.range(from..) {
        let (run_key, run) = run.map_err(read_error)?;
        if end.is_some_and(|end| run_key.as_ref() >= end) {
            break;
        }
        for (position, record) in runs::decode(&run_key, &run)? {
            let key = position.to_be_bytes();
            if key.as_slice() < start {
                continue;
            }
            if entries.len() >= limit || end.is_some_and(|end| key.as_slice() >= end) {
                return Ok(entries);
            }
            entries.push((key.to_vec(), record.to_vec()));
        }
    }
    Ok(entries)
}

/// Returns the last log record, with its position.
fn last_record(tree: &sled::Tree) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
    let Some((run_key, run)) = tree.last().map_err(|err| storage_error("cannot read the log end", &err))? else {
        return Ok(None);
    };
    Ok(runs::decode(&run_key, &run)?.pop().map(|(position, record)| (position, record.to_vec())))
}

fn poisoned() -> StorageError {
    StorageError::new(StorageErrorKind::Io, "engine lock poisoned")
}

/// Opens sled with `config`. sled's background threads may hold the file lock for a
/// moment after the last handle of a database is dropped, so an open right after a
/// close (a reopen after a failure, a test, a restore) waits for it briefly. Another
/// process holding it fails after the wait, as it should.
pub(crate) fn open_waiting_for_lock(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let mut attempts = 0;
    loop {
        match config.open() {
            // sled 0.34.7 (pinned) reports it only in the message of an `Other` error.
            Err(sled::Error::Io(err))
                if err.to_string().starts_with("could not acquire lock") && attempts < LOCK_ATTEMPTS =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            opened => return opened,
        }
    }
}

/// Opens sled in `dir`, checks its format and log ends, and returns it with the next
/// position of each log.
fn open_sled(dir: &Path, cache_bytes: u64) -> Result<(Open, [u64; Keyspace::ALL.len()]), StorageError> {
    let config = sled::Config::new().path(dir).segment_size(SEGMENT_SIZE).cache_capacity(cache_bytes);
    let db = open_waiting_for_lock(&config).map_err(|err| storage_error("cannot open store", &err))?;
    let trees = Keyspace::ALL
        .iter()
        .map(|space| db.open_tree(space.name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| storage_error("cannot open keyspace", &err))?;
    let meta = &trees[Keyspace::Meta.index()];
    match meta.get(FORMAT_KEY).map_err(|err| storage_error("cannot read format", &err))? {
        Some(format) if format.as_ref() == STORE_FORMAT => {}
        Some(format) if format.as_ref() == OLDER_FORMAT => return Err(older_format()),
        Some(_) => return Err(unknown_format()),
        None => {
            meta.insert(FORMAT_KEY, STORE_FORMAT).map_err(|err| storage_error("cannot write format", &err))?;
        }
    }
    let data_file =
        File::open(dir.join("db")).map_err(|err| StorageError::from_io("cannot open database file", &err))?;
    let mut next_positions = [0u64; Keyspace::ALL.len()];
    for space in Keyspace::ALL.into_iter().filter(|space| space.is_log()) {
        if let Some((position, _)) = last_record(&trees[space.index()])? {
            next_positions[space.index()] = position + 1;
        }
    }
    check_log_end(dir, &next_positions)?;
    let mut named = std::collections::BTreeSet::new();
    for entry in trees[Keyspace::ChildKeys.index()].iter() {
        let (_, value) = entry.map_err(|err| storage_error("cannot read the child keys", &err))?;
        named.insert(slots::decode_slot(&value)?);
    }
    let slots = Mutex::new(slots::Slots::open(dir, &named)?);
    Ok((Open { db, trees, data_file, slots }, next_positions))
}

/// Encodes the log ends with a checksum, padded to a fixed length so that a rewrite in
/// place never leaves a longer old tail. Do not change: it is read back at open.
fn encode_log_end(next_positions: &[u64; Keyspace::ALL.len()]) -> String {
    let body = format!(
        "tio-log-end 1 {} {}",
        next_positions[Keyspace::Updates.index()],
        next_positions[Keyspace::Audit.index()]
    );
    format!("{:<80}\n", format!("{body} {}", log_end_digest(&body)))
}

fn log_end_digest(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..8])
}

/// Refuses to open a store whose logs recovered shorter than the last sync made them.
fn check_log_end(dir: &Path, recovered: &[u64; Keyspace::ALL.len()]) -> Result<(), StorageError> {
    let Ok(text) = std::fs::read_to_string(dir.join(LOG_END_FILE)) else {
        return Ok(()); // A new store, or one that never synced.
    };
    if text.trim().is_empty() {
        return Ok(()); // Created, never written: the store never synced.
    }
    let damaged = || StorageError::new(StorageErrorKind::Corrupt, "the log-end file is damaged");
    let fields: Vec<&str> = text.split_whitespace().collect();
    let ["tio-log-end", "1", updates, audit, digest] = fields.as_slice() else { return Err(damaged()) };
    if *digest != log_end_digest(&format!("tio-log-end 1 {updates} {audit}")) {
        return Err(damaged());
    }
    let (Ok(updates), Ok(audit)) = (updates.parse::<u64>(), audit.parse::<u64>()) else { return Err(damaged()) };
    for (space, acknowledged) in [(Keyspace::Updates, updates), (Keyspace::Audit, audit)] {
        let found = recovered[space.index()];
        if found < acknowledged {
            return Err(StorageError::new(
                StorageErrorKind::Corrupt,
                format!(
                    "the {} log recovered {found} records but {acknowledged} were acknowledged: the data file is damaged",
                    space.name()
                ),
            ));
        }
    }
    Ok(())
}

/// A group transaction aborts only on a damaged `child_keys` entry or slot: a batch
/// whose precondition fails is skipped inside it.
type Abort = ConflictableTransactionError<StorageError>;

/// What one batch's `child_keys` writes use inside a group's transaction.
struct ChildKeyWrites<'s> {
    /// The slots (read only: a transaction may run again, so it changes nothing outside).
    slots: &'s slots::Slots,
    /// The slots already written for this batch's puts, in order.
    new: &'s [u64],
    /// Slots whose entries this attempt replaced or removed.
    released: Vec<u64>,
}

/// Applies one batch inside a group's transaction: `Ok(Err(index))` when its condition
/// `index` fails (nothing of it applied), `Ok(Ok(positions))` when applied.
/// Appends are collected in `appended` (per keyspace, in [`Keyspace::ALL`] order) and
/// written as runs once the whole group is through.
fn apply_in_transaction<'a>(
    views: &[TransactionalTree],
    batch: &'a Batch,
    next_positions: &mut [u64; Keyspace::ALL.len()],
    appended: &mut [Vec<&'a [u8]>],
    child_keys: &mut ChildKeyWrites<'_>,
) -> Result<Result<Vec<Position>, usize>, Abort> {
    let view = |space: Keyspace| &views[space.index()];
    let slot_of = |named: &[u8]| slots::decode_slot(named).map_err(ConflictableTransactionError::Abort);
    for (index, condition) in batch.conditions.iter().enumerate() {
        let holds = match condition {
            Condition::Absent { space, key } => view(*space).get(key)?.is_none(),
            Condition::Equals { space: Keyspace::ChildKeys, key, value } => match view(Keyspace::ChildKeys).get(key)? {
                Some(named) => {
                    let found = child_keys.slots.read(slot_of(&named)?).map_err(ConflictableTransactionError::Abort)?;
                    found.as_deref() == Some(value.as_slice())
                }
                None => false,
            },
            Condition::Equals { space, key, value } => {
                view(*space).get(key)?.is_some_and(|found| found.as_ref() == value.as_slice())
            }
        };
        if !holds {
            return Ok(Err(index));
        }
    }
    let mut positions = Vec::with_capacity(batch.append_count());
    let mut new_slots = child_keys.new.iter();
    for op in &batch.ops {
        match op {
            Op::Put { space: Keyspace::ChildKeys, key, .. } => {
                let slot = new_slots.next().copied().ok_or_else(|| {
                    ConflictableTransactionError::Abort(StorageError::new(
                        StorageErrorKind::Io,
                        "a child key has no slot",
                    ))
                })?;
                if let Some(old) = view(Keyspace::ChildKeys).insert(key.as_slice(), &slots::encode_slot(slot))? {
                    child_keys.released.push(slot_of(&old)?);
                }
            }
            Op::Delete { space: Keyspace::ChildKeys, key } => {
                if let Some(old) = view(Keyspace::ChildKeys).remove(key.as_slice())? {
                    child_keys.released.push(slot_of(&old)?);
                }
            }
            Op::Put { space, key, value } => {
                view(*space).insert(key.as_slice(), value.as_slice())?;
            }
            Op::Delete { space, key } => {
                view(*space).remove(key.as_slice())?;
            }
            Op::Append { space, value } => {
                let position = counter_position(next_positions[space.index()]);
                next_positions[space.index()] += 1;
                appended[space.index()].push(value.as_slice());
                positions.push(position);
            }
            Op::PutAtPosition { space, prefix, append, value } => {
                let mut key = prefix.clone();
                key.extend_from_slice(positions[*append].as_bytes());
                view(*space).insert(key, value.as_slice())?;
            }
            Op::PutPosition { space, key, prefix, append } => {
                let mut value = prefix.clone();
                value.extend_from_slice(positions[*append].as_bytes());
                view(*space).insert(key.as_slice(), value)?;
            }
        }
    }
    Ok(Ok(positions))
}

/// Turns a group's outcomes into results (every batch has one by now).
fn finish(outcomes: Vec<Option<Result<Applied, CommitError>>>) -> Vec<Result<Applied, CommitError>> {
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| Err(CommitError::Invalid("batch skipped".to_owned()))))
        .collect()
}

impl Engine for SledEngine {
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.read_open(|open| {
            let tree = &open.trees[space.index()];
            if space.is_log() {
                return log_get(tree, key);
            }
            let value = tree.get(key).map_err(|err| storage_error("cannot read", &err))?;
            match value {
                Some(named) if space == Keyspace::ChildKeys => Ok(Some(open.child_key_value(&*open.slots()?, &named)?)),
                other => Ok(other.map(|value| value.to_vec())),
            }
        })
    }

    fn scan(&self, space: Keyspace, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Entries, StorageError> {
        self.read_open(|open| {
            let tree = &open.trees[space.index()];
            if space.is_log() {
                return log_scan(tree, start, end, limit);
            }
            let iter = match end {
                Some(end) => tree.range(start..end),
                None => tree.range(start..),
            };
            let slots = if space == Keyspace::ChildKeys { Some(open.slots()?) } else { None };
            iter.take(limit)
                .map(|entry| {
                    let (key, value) = entry.map_err(|err| storage_error("cannot scan", &err))?;
                    let value = match &slots {
                        Some(slots) => open.child_key_value(slots, &value)?,
                        None => value.to_vec(),
                    };
                    Ok((key.to_vec(), value))
                })
                .collect()
        })
    }

    fn last(&self, space: Keyspace) -> Result<Option<crate::engine::Entry>, StorageError> {
        self.read_open(|open| {
            let tree = &open.trees[space.index()];
            if space.is_log() {
                return Ok(last_record(tree)?.map(|(position, record)| (position.to_be_bytes().to_vec(), record)));
            }
            let last = tree.last().map_err(|err| storage_error("cannot read the last entry", &err))?;
            match last {
                Some((key, named)) if space == Keyspace::ChildKeys => {
                    Ok(Some((key.to_vec(), open.child_key_value(&*open.slots()?, &named)?)))
                }
                other => Ok(other.map(|(key, value)| (key.to_vec(), value.to_vec()))),
            }
        })
    }

    fn apply(&self, batch: &Batch) -> Result<Applied, CommitError> {
        self.apply_group(&[batch]).pop().unwrap_or_else(|| Err(CommitError::Invalid("empty group".to_owned())))
    }

    /// Applies the whole group in one sled transaction: one transaction per batch costs
    /// far more than the sync it shares. Each batch's preconditions are checked against
    /// the state the earlier batches of the group left, and a batch that fails them is
    /// skipped, exactly as if it had been applied alone.
    fn apply_group(&self, batches: &[&Batch]) -> Vec<Result<Applied, CommitError>> {
        let mut outcomes: Vec<Option<Result<Applied, CommitError>>> =
            batches.iter().map(|batch| validate_batch(batch).err().map(Err)).collect();
        let valid: Vec<usize> = (0..batches.len()).filter(|index| outcomes[*index].is_none()).collect();
        let fail = |outcomes: &mut Vec<Option<Result<Applied, CommitError>>>, error: StorageError| {
            for index in &valid {
                outcomes[*index] = Some(Err(CommitError::Storage(error.clone())));
            }
        };
        let mut next_positions = match self.next_positions.lock() {
            Ok(guard) => guard,
            Err(_) => {
                let error = StorageError::new(StorageErrorKind::Io, "position counter lock poisoned");
                return batches.iter().map(|_| Err(CommitError::Storage(error.clone()))).collect();
            }
        };
        if self.failed.load(Ordering::SeqCst)
            && let Err(error) = self.reopen(&mut next_positions)
        {
            fail(&mut outcomes, error);
            return finish(outcomes);
        }
        let result = self.with_open(|open| {
            let mut slots = open.slots()?;
            // A new child key value goes to a fresh slot, durable before any commit names
            // it; the transaction then only points the child's entry at it.
            let mut new_slots: Vec<Vec<u64>> = Vec::with_capacity(valid.len());
            let mut written = Vec::new();
            for index in &valid {
                let mut batch_slots = Vec::new();
                for op in &batches[*index].ops {
                    if let Op::Put { space: Keyspace::ChildKeys, value, .. } = op {
                        match slots.write_new(value) {
                            Ok(slot) => batch_slots.push(slot),
                            Err(err) => {
                                slots.release(written.iter().chain(&batch_slots).copied());
                                return Err(err);
                            }
                        }
                    }
                }
                written.extend_from_slice(&batch_slots);
                new_slots.push(batch_slots);
            }
            if !written.is_empty()
                && let Err(err) = slots.sync()
            {
                slots.release(written);
                return Err(err);
            }
            let outcome = open.trees.as_slice().transaction(|views: &Vec<TransactionalTree>| {
                // The closure may run again after a conflict: it starts from scratch each time.
                let mut next = *next_positions;
                let mut appended: Vec<Vec<&[u8]>> = vec![Vec::new(); Keyspace::ALL.len()];
                let mut applied: Vec<Result<Vec<Position>, usize>> = Vec::with_capacity(valid.len());
                let mut released = Vec::new();
                for (index, batch_slots) in valid.iter().zip(&new_slots) {
                    let mut child_keys = ChildKeyWrites { slots: &slots, new: batch_slots, released: Vec::new() };
                    let outcome =
                        apply_in_transaction(views, batches[*index], &mut next, &mut appended, &mut child_keys)?;
                    if outcome.is_ok() {
                        released.extend(child_keys.released);
                    }
                    applied.push(outcome);
                }
                for space in Keyspace::ALL.into_iter().filter(|space| space.is_log()) {
                    let mut first = next_positions[space.index()];
                    for run in runs::split(&appended[space.index()]) {
                        views[space.index()].insert(&first.to_be_bytes(), runs::encode(&run))?;
                        first += run.len() as u64;
                    }
                }
                Ok((applied, next, released))
            });
            // Slots nothing will name (a skipped batch's, a failed group's) and slots let
            // go of are zeroed by the sync that makes this group durable.
            match &outcome {
                Ok((applied, _, released)) => {
                    for (outcome, batch_slots) in applied.iter().zip(&new_slots) {
                        if outcome.is_err() {
                            slots.release(batch_slots.iter().copied());
                        }
                    }
                    slots.release(released.iter().copied());
                }
                Err(_) => slots.release(written),
            }
            Ok(outcome)
        });
        match result {
            Err(error) => fail(&mut outcomes, error),
            Ok(Ok((applied, next, _))) => {
                *next_positions = next;
                if applied.iter().any(Result::is_ok) {
                    // Cleared by the sync the group commit now owes these writes.
                    self.unsynced.store(true, Ordering::SeqCst);
                }
                for (index, outcome) in valid.iter().zip(applied) {
                    outcomes[*index] = Some(match outcome {
                        Ok(positions) => Ok(Applied { positions }),
                        Err(condition) => Err(CommitError::Conflict { index: condition }),
                    });
                }
            }
            Ok(Err(TransactionError::Abort(error))) => fail(&mut outcomes, error),
            Ok(Err(TransactionError::Storage(err))) => {
                self.failed.store(true, Ordering::SeqCst);
                fail(&mut outcomes, storage_error("cannot apply batch", &err));
            }
        }
        finish(outcomes)
    }

    fn sync(&self) -> Result<(), StorageError> {
        // What this sync will cover: everything applied before the flush starts.
        let covered = *self.next_positions.lock().map_err(|_| poisoned())?;
        let synced = self.with_open(|open| {
            // Slots let go of by commits applied before this flush: zeroed once those
            // commits are durable, never before (a crash would then lose a live key).
            let released = open.slots()?.take_released();
            let durable = open.db.flush().map_err(|err| storage_error("cannot flush store", &err)).and_then(|_| {
                open.data_file.sync_data().map_err(|err| StorageError::from_io("cannot sync database file", &err))
            });
            let mut slots = open.slots()?;
            match durable {
                Ok(()) if released.is_empty() => Ok(()),
                Ok(()) => slots.zero(&released),
                Err(err) => {
                    slots.release(released);
                    Err(err)
                }
            }
        });
        if synced.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        self.unsynced.store(false, Ordering::SeqCst);
        synced?;
        let mark = self.log_end_file.lock().map_err(|_| poisoned())?;
        mark.write_all_at(encode_log_end(&covered).as_bytes(), 0)
            .map_err(|err| StorageError::from_io("cannot write log-end file", &err))
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.read_open(|open| {
            let slots = std::fs::metadata(self.dir.join(SLOTS_FILE)).map_or(0, |metadata| metadata.len());
            Ok(open.db.size_on_disk().map_err(|err| storage_error("cannot measure store", &err))? + slots)
        })
    }

    /// This engine's positions count densely from 0, so a skipped count is a record
    /// lost from the middle of the log.
    fn log_holes(&self, space: Keyspace) -> Result<Vec<String>, StorageError> {
        let mut holes = Vec::new();
        let mut expected = 0u64;
        let mut start = Vec::new();
        loop {
            let page = self.scan(space, &start, None, 4096)?;
            let Some((last, _)) = page.last() else { break };
            start = crate::engine::key_after(last);
            for (position, _) in &page {
                match runs::position(position) {
                    Ok(counter) if counter == expected => {}
                    Ok(counter) => holes.push(format!("{} positions jump from {expected} to {counter}", space.name())),
                    Err(_) => {
                        holes.push(format!("a {} record is stored under a key that is not a position", space.name()))
                    }
                }
                expected = runs::position(position).map_or(expected + 1, |counter| counter + 1);
            }
        }
        Ok(holes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Op, key_after};

    #[test]
    fn passes_the_conformance_suite() {
        let dirs = std::sync::Mutex::new(Vec::new());
        super::super::conformance::run_all(&|| {
            let dir = tempfile::tempdir().unwrap();
            let engine = SledEngine::open(dir.path()).unwrap();
            dirs.lock().unwrap().push(dir);
            engine
        });
    }

    #[test]
    fn synced_batches_survive_reopening_with_their_positions() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let engine = SledEngine::open(dir.path()).unwrap();
            let mut batch = Batch::new();
            batch.push(Op::Append { space: Keyspace::Updates, value: b"one".to_vec() });
            batch.push(Op::Put { space: Keyspace::Agencies, key: b"gp".to_vec(), value: b"v".to_vec() });
            let applied = engine.apply(&batch).unwrap();
            engine.sync().unwrap();
            applied.positions[0].clone()
        };
        let engine = SledEngine::open(dir.path()).unwrap();
        assert_eq!(engine.get(Keyspace::Agencies, b"gp").unwrap(), Some(b"v".to_vec()));
        let mut batch = Batch::new();
        batch.push(Op::Append { space: Keyspace::Updates, value: b"two".to_vec() });
        let second = engine.apply(&batch).unwrap().positions[0].clone();
        assert!(second > first, "positions keep increasing across a restart");
        let after_first = engine.scan(Keyspace::Updates, &key_after(first.as_bytes()), None, 10).unwrap();
        assert_eq!(after_first, vec![(second.as_bytes().to_vec(), b"two".to_vec())]);
    }

    #[test]
    fn a_failed_engine_reopens_only_between_a_sync_and_the_next_apply() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(dir.path()).unwrap();
        let append = |value: &[u8]| {
            let mut batch = Batch::new();
            batch.push(Op::Append { space: Keyspace::Updates, value: value.to_vec() });
            engine.apply(&batch).unwrap().positions[0].clone()
        };
        let first = append(b"synced");
        engine.sync().unwrap();
        let second = append(b"applied, sync pending");
        // As after a write failure seen by a reader while the commit thread is between
        // its apply and its sync: reopening now would drop `second` under that sync.
        engine.failed.store(true, Ordering::SeqCst);
        let mut next = *engine.next_positions.lock().unwrap();
        assert!(engine.reopen(&mut next).is_err(), "no reopen between an apply and its sync");
        engine.sync().unwrap();
        engine.reopen(&mut next).unwrap();
        assert!(!engine.failed.load(Ordering::SeqCst));
        assert_eq!(next, *engine.next_positions.lock().unwrap(), "positions recovered from the reopened store");
        let entries = engine.scan(Keyspace::Updates, &[], None, 10).unwrap();
        assert_eq!(
            entries,
            vec![
                (first.as_bytes().to_vec(), b"synced".to_vec()),
                (second.as_bytes().to_vec(), b"applied, sync pending".to_vec())
            ]
        );
        let third = append(b"after the reopen");
        assert!(third > second, "positions go on after a reopen");
    }

    #[test]
    fn a_damaged_run_is_reported_as_corruption_by_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(dir.path()).unwrap();
        let mut batch = Batch::new();
        batch.push(Op::Append { space: Keyspace::Audit, value: b"entry".to_vec() });
        engine.apply(&batch).unwrap();
        engine.sync().unwrap();
        let tree = engine.with_open(|open| Ok(open.trees[Keyspace::Audit.index()].clone())).unwrap();
        tree.insert(0u64.to_be_bytes(), &[0, 0, 0, 1, 0, 0, 0, 9, b'x'][..]).unwrap();
        let corrupt = |result: Result<(), StorageError>| {
            let err = result.unwrap_err();
            assert_eq!(err.kind, StorageErrorKind::Corrupt);
            assert!(err.message.contains("log run at position 0"), "{}", err.message);
        };
        corrupt(engine.get(Keyspace::Audit, &0u64.to_be_bytes()).map(drop));
        corrupt(engine.scan(Keyspace::Audit, &[], None, 10).map(drop));
        corrupt(engine.last(Keyspace::Audit).map(drop));
        assert!(!engine.failed.load(Ordering::SeqCst), "damage is not a write failure: no reopen");
    }

    #[test]
    fn the_largest_runs_stay_in_the_data_file_that_sync_covers() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(dir.path()).unwrap();
        // Groups of the largest values the store accepts, enough for sled to split and
        // consolidate the log's nodes many times over.
        for group in 0..40u8 {
            let batches: Vec<Batch> = (0..8u8)
                .map(|index| {
                    let mut batch = Batch::new();
                    batch.push(Op::Append { space: Keyspace::Updates, value: vec![group ^ index; 64 * 1024 + 200] });
                    batch
                })
                .collect();
            let refs: Vec<&Batch> = batches.iter().collect();
            for result in engine.apply_group(&refs) {
                result.unwrap();
            }
            engine.sync().unwrap();
        }
        let blobs = std::fs::read_dir(dir.path().join("blobs")).map(Iterator::count).unwrap_or(0);
        assert_eq!(blobs, 0, "sled wrote blob files, which the engine's sync does not cover");
        assert_eq!(engine.scan(Keyspace::Updates, &[], None, 1000).unwrap().len(), 320);
    }

    #[test]
    fn a_store_of_the_older_format_is_refused_with_the_way_forward() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = SledEngine::open(dir.path()).unwrap();
            engine.tree(Keyspace::Meta).insert(FORMAT_KEY, OLDER_FORMAT).unwrap();
            engine.sync().unwrap();
        }
        let err = SledEngine::open(dir.path()).unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Format, "from the marker inside sled");
        // A tio-store/1 store has no format file: refused before sled opens it.
        std::fs::remove_file(dir.path().join(FORMAT_FILE)).unwrap();
        let files = |dir: &Path| {
            let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name()).collect();
            names.sort();
            names
        };
        let before = files(dir.path());
        let err = SledEngine::open(dir.path()).unwrap_err();
        assert_eq!(files(dir.path()), before, "sled never opened it, so wrote no snapshot");
        assert_eq!(err.kind, StorageErrorKind::Format);
        assert!(err.message.contains("tio store restore"), "{}", err.message);
    }

    #[test]
    fn an_imported_log_keeps_its_positions_and_gaps_and_the_format_marker_stays_ours() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(dir.path()).unwrap();
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            [3u64, 4, 5, 9, 10].iter().map(|n| (n.to_be_bytes().to_vec(), vec![*n as u8; 40_000])).collect();
        engine.import(Keyspace::Updates, &entries).unwrap();
        engine.import(Keyspace::Meta, &[(FORMAT_KEY.to_vec(), OLDER_FORMAT.to_vec())]).unwrap();
        assert_eq!(engine.scan(Keyspace::Updates, &[], None, 100).unwrap(), entries);
        assert_eq!(engine.get(Keyspace::Updates, &7u64.to_be_bytes()).unwrap(), None, "the gap stays a gap");
        let mut batch = Batch::new();
        batch.push(Op::Append { space: Keyspace::Updates, value: b"next".to_vec() });
        assert_eq!(engine.apply(&batch).unwrap().positions[0].as_bytes(), 11u64.to_be_bytes());
        engine.sync().unwrap();
        let unordered = [entries[1].clone(), entries[0].clone()];
        assert_eq!(engine.import(Keyspace::Audit, &unordered).unwrap_err().kind, StorageErrorKind::Corrupt);
        drop(engine);
        SledEngine::open(dir.path()).expect("still this release's format");
    }

    #[test]
    fn a_foreign_format_marker_is_refused_without_changing_anything() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = SledEngine::open(dir.path()).unwrap();
            engine.tree(Keyspace::Meta).insert(FORMAT_KEY, b"something-else".as_slice()).unwrap();
            engine.sync().unwrap();
        }
        let err = SledEngine::open(dir.path()).unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Format);
    }
}
