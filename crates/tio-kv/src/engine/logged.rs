//! The logged engine: the group log as the commit point, an index store beside it.
//!
//! [`Engine::apply`] checks a batch's conditions against what is applied, assigns its
//! appends positions (the group's sequence and the append's place in it: opaque
//! bytes, ordered), and keeps its changes in an in-memory overlay, so that reads see
//! them at once. [`Engine::sync`] writes every batch applied since the last sync as one
//! group-log frame and syncs it once (so the group commit's one sync is one
//! `fdatasync`); only then does a second thread, the applier, put the changes into the
//! index store (fjall by default, or sled) together with the log position they reach,
//! and drop them from the overlay. The index store is never synced on the commit path:
//! opening replays the log from its mark, and the index can always be rebuilt from the
//! log.
//!
//! Log keyspaces (updates, audit) keep their records in the log itself; the index maps
//! each position to where its record is. Child keys keep their wrapped keys in
//! overwritable slots ([`super::slots`]): the log and the index hold only slot numbers,
//! so an erasure leaves no wrapped key on disk.

mod compare;
mod index;
mod records;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use self::index::{FjallIndex, IndexStore, IndexWrite, MemoryIndex, SledIndex};
use self::records::Record;
use super::slots::{self, Slots};
use super::{
    Applied, Batch, CommitError, Condition, Engine, Entries, Entry, Keyspace, Op, Position, StorageError,
    StorageErrorKind, key_after, validate_batch,
};
use crate::group_log::fs::{DiskDir, LogDir};
use crate::group_log::{GroupLog, LogError, LogOptions, LogReader};

/// Which index store sits beside the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexKind {
    /// fjall, an LSM tree: the default (see the README for the figures).
    #[default]
    Fjall,
    /// sled.
    Sled,
}

impl IndexKind {
    /// The name used in configuration and in the index store's directory.
    pub const fn name(self) -> &'static str {
        match self {
            IndexKind::Fjall => "fjall",
            IndexKind::Sled => "sled",
        }
    }
}

/// The log's directory under the engine's.
pub const LOG_DIR: &str = "log";

/// Where the index store of `kind` lives in the engine's directory `dir`.
pub fn index_dir(dir: &Path, kind: IndexKind) -> PathBuf {
    dir.join(format!("index-{}", kind.name()))
}

/// The store format this engine writes: the group log, the index store and the slots.
/// Do not change without a migration.
pub const LOGGED_FORMAT: &[u8] = b"tio-store/3";

/// Checks (or, in an empty directory, writes) the format file that names the store's
/// format, before anything else touches the directory.
fn claim_format(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(super::sled::FORMAT_FILE);
    let failed = |err: std::io::Error| StorageError::from_io("cannot read or write the store's format file", &err);
    match std::fs::read(&path) {
        Ok(content) if content.trim_ascii_end() == LOGGED_FORMAT => Ok(()),
        Ok(content) if content.trim_ascii_end() == super::sled::STORE_FORMAT => Err(StorageError::new(
            StorageErrorKind::Format,
            "the store is in format tio-store/2 (the sled engine): move it to the group log with \
             `tio store migrate --data-dir DIR` while the server is stopped, or run it as it is with \
             store.engine = \"sled\"",
        )),
        Ok(_) => Err(StorageError::new(
            StorageErrorKind::Format,
            "the store was written in a format this release does not know (by a newer release?)",
        )),
        // tio-store/1 (sled, before format files) left sled's files and no format file.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && dir.join("db").exists() => {
            Err(super::sled::older_format())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let occupied = std::fs::read_dir(dir).map_err(failed)?.next().is_some();
            if occupied {
                return Err(StorageError::new(
                    StorageErrorKind::Format,
                    "the store directory holds files but no format file: it is not a store this release can open",
                ));
            }
            super::sled::write_format_file(dir, LOGGED_FORMAT)
        }
        Err(err) => Err(failed(err)),
    }
}

/// How the logged engine is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedOptions {
    /// The index store.
    pub index: IndexKind,
    /// About how much memory the index store's cache may use, in bytes.
    pub cache_bytes: u64,
    /// Bytes preallocated per log segment. A full disk shows when the next segment
    /// cannot be made, so a small disk wants small segments.
    pub segment_bytes: u64,
}

impl Default for LoggedOptions {
    fn default() -> Self {
        LoggedOptions {
            index: IndexKind::default(),
            cache_bytes: DEFAULT_INDEX_CACHE_BYTES,
            segment_bytes: crate::group_log::DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// The index store's default cache.
pub const DEFAULT_INDEX_CACHE_BYTES: u64 = 64 << 20;

/// Groups the applier may lag behind before a sync waits for it, so that the overlay
/// stays bounded when the index store is slower than the disk.
const MAX_BACKLOG: usize = 256;

/// How often the applier persists the index store, bounding what opening replays.
const PERSIST_EVERY: Duration = Duration::from_secs(2);

/// Groups replayed per index write while opening.
const REPLAY_CHUNK: usize = 4096;

/// A change not yet in the index store: the group it belongs to, and the value (the
/// record itself for a log keyspace, the slot number for a child key), or `None` for
/// a removal.
struct Pending {
    sequence: u64,
    value: Option<Vec<u8>>,
}

/// Changes not yet in the index store, in two layers: those of durable groups, which
/// the applier drains, and those of the group being gathered, which a failed sync
/// throws away (so that a write reported as failed never appears).
#[derive(Default)]
struct Overlay {
    durable: BTreeMap<(Keyspace, Vec<u8>), Pending>,
    gathering: BTreeMap<(Keyspace, Vec<u8>), Pending>,
}

impl Overlay {
    /// The change to `key`, if either layer has one: `Some(None)` for a removal.
    fn lookup(&self, space: Keyspace, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let key = (space, key.to_vec());
        self.gathering.get(&key).or_else(|| self.durable.get(&key)).map(|pending| pending.value.clone())
    }

    /// Both layers' changes to keys of `space` from `start` up to `end`, merged, in
    /// key order.
    fn range(&self, space: Keyspace, start: &[u8], end: Option<&[u8]>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let bounds = || {
            let upper = match end {
                Some(end) => Bound::Excluded((space, end.to_vec())),
                None => next_space_bound(space),
            };
            (Bound::Included((space, start.to_vec())), upper)
        };
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for layer in [&self.durable, &self.gathering] {
            for ((_, key), pending) in layer.range(bounds()) {
                merged.insert(key.clone(), pending.value.clone());
            }
        }
        merged.into_iter().collect()
    }

    /// The change with the greatest key of `space` below `below`, from either layer.
    fn last_below(&self, space: Keyspace, below: Option<&[u8]>) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        let upper = match below {
            Some(below) => Bound::Excluded((space, below.to_vec())),
            None => next_space_bound(space),
        };
        let last = |layer: &BTreeMap<(Keyspace, Vec<u8>), Pending>| {
            layer
                .range((Bound::Included((space, Vec::new())), upper.clone()))
                .next_back()
                .map(|((_, key), pending)| (key.clone(), pending.value.clone()))
        };
        match (last(&self.durable), last(&self.gathering)) {
            (Some(durable), Some(gathering)) if durable.0 > gathering.0 => Some(durable),
            (_, Some(gathering)) => Some(gathering),
            (durable, None) => durable,
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.durable.is_empty() && self.gathering.is_empty()
    }
}

/// A key, its value as stored, and whether that came from the overlay.
type Stored = (Vec<u8>, Vec<u8>, bool);

/// A durable group, for the applier.
struct Durable {
    sequence: u64,
    writes: Vec<IndexWrite>,
    end: u64,
}

/// The writer's state: the log and the group being gathered.
struct Writer {
    log: GroupLog,
    /// The gathered group's records and, one for one, their index writes (an append's
    /// value is filled in with its log position once written).
    records: Vec<Vec<u8>>,
    writes: Vec<IndexWrite>,
    /// Appends in the gathered group so far.
    appends: u32,
    /// Slots written for the gathered group, to sync before it (and zero, should it
    /// fail).
    slots_written: Vec<u64>,
    /// Slots the gathered group lets go of, zeroed once it is durable.
    released: Vec<u64>,
    /// Whether the last sync failed, to say so when writes succeed again.
    failing: bool,
}

struct Shared {
    index: Box<dyn IndexStore>,
    reader: LogReader,
    overlay: Mutex<Overlay>,
    writer: Mutex<Writer>,
    slots: Mutex<Slots>,
    queue: Mutex<Option<mpsc::Sender<Durable>>>,
    /// Groups sent to the applier and not yet applied, and a signal when it drops.
    backlog: Mutex<usize>,
    caught_up: Condvar,
    /// Why the applier's last write to the index store failed, until one succeeds.
    applier_failure: Mutex<Option<StorageError>>,
    /// Set when the engine closes: the applier stops retrying (what it has not applied
    /// is in the log, replayed at the next opening).
    closing: std::sync::atomic::AtomicBool,
    dir: Option<PathBuf>,
    /// The log's directory and layout, for a full check.
    log_dir: Arc<dyn LogDir>,
    log_options: LogOptions,
}

/// The group log with an index store beside it.
pub struct LoggedEngine {
    shared: Arc<Shared>,
    applier: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn poisoned() -> StorageError {
    StorageError::new(StorageErrorKind::Io, "the logged engine's lock was poisoned by a panic")
}

fn lock<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>, StorageError> {
    mutex.lock().map_err(|_| poisoned())
}

fn log_error(err: LogError) -> StorageError {
    match err {
        LogError::Io { action, source } => StorageError::from_io(&format!("group log: cannot {action}"), &source),
        damaged @ LogError::Damaged { .. } => StorageError::new(StorageErrorKind::Corrupt, damaged.to_string()),
        other => StorageError::new(StorageErrorKind::Io, other.to_string()),
    }
}

/// A position: the group's sequence and the append's place in it, big-endian.
fn append_position(sequence: u64, append: u32) -> Vec<u8> {
    let mut position = Vec::with_capacity(12);
    position.extend_from_slice(&sequence.to_be_bytes());
    position.extend_from_slice(&append.to_be_bytes());
    position
}

/// The index write a logged record makes, `at` being its place in the log.
fn index_write(record: &Record<'_>, at: u64) -> IndexWrite {
    match *record {
        Record::Put { space, key, value } => IndexWrite { space, key: key.to_vec(), value: Some(value.to_vec()) },
        Record::Delete { space, key } => IndexWrite { space, key: key.to_vec(), value: None },
        Record::Append { space, position, .. } => {
            IndexWrite { space, key: position.to_vec(), value: Some(at.to_be_bytes().to_vec()) }
        }
    }
}

impl LoggedEngine {
    /// Opens (or creates) the engine in `dir`: the log in `dir/log`, the index store in
    /// `dir/index-{kind}`, the child-key slots beside them. Replays what the index store
    /// lacks; cuts a torn tail (logged as a warning) and refuses damage.
    pub fn open(dir: &Path, kind: IndexKind) -> Result<LoggedEngine, StorageError> {
        LoggedEngine::open_with_options(dir, &LoggedOptions { index: kind, ..LoggedOptions::default() })
    }

    /// As [`LoggedEngine::open`], with every setting.
    pub fn open_with_options(dir: &Path, options: &LoggedOptions) -> Result<LoggedEngine, StorageError> {
        std::fs::create_dir_all(dir).map_err(|err| StorageError::from_io("cannot create the store directory", &err))?;
        claim_format(dir)?;
        let index_dir = index_dir(dir, options.index);
        let index: Box<dyn IndexStore> = match options.index {
            IndexKind::Fjall => Box::new(FjallIndex::open(&index_dir, options.cache_bytes)?),
            IndexKind::Sled => Box::new(SledIndex::open(&index_dir, options.cache_bytes)?),
        };
        let log_dir = DiskDir::open(dir.join(LOG_DIR))
            .map_err(|err| StorageError::from_io("cannot create the group log directory", &err))?;
        let log = LogOptions { segment_bytes: options.segment_bytes };
        LoggedEngine::open_with(Arc::new(log_dir), index, dir, log, Some(dir.to_owned()))
    }

    /// Opens over any log directory with an index store kept in memory (rebuilt from
    /// the log on every opening), for tests: the log may be a simulated disk.
    pub fn open_in_memory_index(
        log: Arc<dyn LogDir>,
        slots_dir: &Path,
        options: LogOptions,
    ) -> Result<LoggedEngine, StorageError> {
        LoggedEngine::open_with(log, Box::new(MemoryIndex::default()), slots_dir, options, None)
    }

    fn open_with(
        log_dir: Arc<dyn LogDir>,
        index: Box<dyn IndexStore>,
        slots_dir: &Path,
        options: LogOptions,
        dir: Option<PathBuf>,
    ) -> Result<LoggedEngine, StorageError> {
        let mark = index.applied_through()?;
        let mut replay: Vec<IndexWrite> = Vec::new();
        let mut replayed_groups = 0usize;
        let mut replay_failure = None;
        let (log, recovery) = GroupLog::open(log_dir.clone(), options, mark, |group| {
            if replay_failure.is_some() {
                return;
            }
            for (at, bytes) in &group.records {
                match Record::decode(bytes) {
                    Ok(record) => replay.push(index_write(&record, *at)),
                    Err(err) => {
                        replay_failure = Some(err);
                        return;
                    }
                }
            }
            replayed_groups += 1;
            if replayed_groups.is_multiple_of(REPLAY_CHUNK)
                && let Err(err) = index.apply(&std::mem::take(&mut replay), group.end)
            {
                replay_failure = Some(err);
            }
        })
        .map_err(log_error)?;
        if let Some(err) = replay_failure {
            return Err(err);
        }
        if mark > log.end() {
            return Err(StorageError::new(
                StorageErrorKind::Corrupt,
                "the index store is ahead of the group log: the log is not the one the index was built from",
            ));
        }
        if mark < log.end() {
            index.apply(&replay, log.end())?;
        }
        if let Some(cut) = &recovery.cut {
            tracing::warn!(
                segment = %cut.segment,
                offset = cut.offset,
                bytes = cut.bytes,
                "the group log's last group never reached the disk whole; its torn tail was cut (it was never acknowledged)"
            );
        }
        for name in &recovery.removed {
            tracing::warn!(file = %name, "removed a group-log segment a crash left half made");
        }
        let named = index
            .scan(Keyspace::ChildKeys, &[], None, usize::MAX)?
            .iter()
            .map(|(_, value)| slots::decode_slot(value))
            .collect::<Result<_, _>>()?;
        let slots = Slots::open(slots_dir, &named)?;
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared {
            reader: log.reader(),
            index,
            overlay: Mutex::new(Overlay::default()),
            writer: Mutex::new(Writer {
                log,
                records: Vec::new(),
                writes: Vec::new(),
                appends: 0,
                slots_written: Vec::new(),
                released: Vec::new(),
                failing: false,
            }),
            slots: Mutex::new(slots),
            queue: Mutex::new(Some(sender)),
            backlog: Mutex::new(0),
            caught_up: Condvar::new(),
            applier_failure: Mutex::new(None),
            closing: std::sync::atomic::AtomicBool::new(false),
            dir,
            log_dir,
            log_options: options,
        });
        let applier = {
            let shared = shared.clone();
            let applied = shared.reader.end();
            std::thread::Builder::new()
                .name("tio-index-applier".into())
                .spawn(move || apply_loop(&shared, &receiver, applied))
                .map_err(|err| StorageError::from_io("cannot start the index applier", &err))?
        };
        Ok(LoggedEngine { shared, applier: Mutex::new(Some(applier)) })
    }

    /// Waits until the applier has put every durable group into the index store (for
    /// tests, an orderly close, and the check that compares the index store with the
    /// log).
    pub fn wait_applied(&self) -> Result<(), StorageError> {
        let mut backlog = lock(&self.shared.backlog)?;
        while *backlog > 0 {
            backlog = self.shared.caught_up.wait(backlog).map_err(|_| poisoned())?;
        }
        Ok(())
    }
}

impl Drop for LoggedEngine {
    fn drop(&mut self) {
        // Closing the queue ends the applier once it has applied what it was sent (or,
        // if it cannot, at once).
        self.shared.closing.store(true, std::sync::atomic::Ordering::Release);
        if let Ok(mut queue) = self.shared.queue.lock() {
            queue.take();
        }
        if let Some(applier) = self.applier.lock().ok().and_then(|mut applier| applier.take()) {
            let _ = applier.join();
        }
        if let Err(err) = self.shared.index.persist() {
            tracing::warn!(error = %err, "could not persist the index store on closing; opening will replay the log");
        }
    }
}

/// The applier: puts durable groups into the index store, as many at once as are
/// waiting, then drops them from the overlay.
fn apply_loop(shared: &Shared, receiver: &mpsc::Receiver<Durable>, mut applied: u64) {
    let mut last_persist = Instant::now();
    while let Ok(first) = receiver.recv() {
        let mut groups = vec![first];
        while groups.len() < MAX_BACKLOG {
            match receiver.try_recv() {
                Ok(more) => groups.push(more),
                Err(_) => break,
            }
        }
        let end = groups.last().map_or(0, |group| group.end);
        // Moved, not copied: each group's sequence is kept beside how many writes it had,
        // for dropping them from the overlay once applied.
        let counts: Vec<(u64, usize)> = groups.iter().map(|group| (group.sequence, group.writes.len())).collect();
        let writes: Vec<IndexWrite> = groups.into_iter().flat_map(|group| group.writes).collect();
        // Until the index store takes them, the overlay keeps serving the changes, so
        // a failure here costs memory, not correctness; it is retried.
        let mut delay = Duration::from_millis(10);
        let mut attempts = 0u32;
        while let Err(err) = shared.index.apply(&writes, end) {
            tracing::error!(error = %err, "the index applier cannot write the index store; retrying");
            if let Ok(mut failure) = shared.applier_failure.lock() {
                *failure = Some(err);
            }
            if shared.closing.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
            attempts += 1;
            // fjall and sled keep an I/O error (a full disk) until they are opened
            // again; so, every few tries, reopen it and put back from the log what it
            // lost with its unwritten buffers.
            if attempts.is_multiple_of(3)
                && let Err(err) = reopen_index(shared, applied)
            {
                tracing::warn!(error = %err, "could not reopen the index store; retrying");
            }
        }
        applied = end;
        if let Ok(mut failure) = shared.applier_failure.lock() {
            *failure = None;
        }
        if let Ok(mut overlay) = shared.overlay.lock() {
            let mut writes = writes.into_iter();
            for (sequence, count) in &counts {
                for write in writes.by_ref().take(*count) {
                    let key = (write.space, write.key);
                    if overlay.durable.get(&key).is_some_and(|pending| pending.sequence == *sequence) {
                        overlay.durable.remove(&key);
                    }
                }
            }
        }
        if let Ok(mut backlog) = shared.backlog.lock() {
            *backlog = backlog.saturating_sub(counts.len());
            shared.caught_up.notify_all();
        }
        if last_persist.elapsed() >= PERSIST_EVERY {
            if let Err(err) = shared.index.persist() {
                tracing::warn!(error = %err, "could not persist the index store; opening will replay more of the log");
            }
            last_persist = Instant::now();
        }
    }
}

/// Reopens the index store and applies again, from the log, the groups up to `applied`
/// that it no longer holds.
fn reopen_index(shared: &Shared, applied: u64) -> Result<(), StorageError> {
    shared.index.reopen()?;
    let mark = shared.index.applied_through()?;
    if mark >= applied {
        return Ok(());
    }
    let mut writes = Vec::new();
    let mut reached = mark;
    let mut failure = None;
    GroupLog::read_from(shared.log_dir.clone(), shared.log_options, mark, |group| {
        if group.end > applied || failure.is_some() {
            return;
        }
        for (at, bytes) in &group.records {
            match Record::decode(bytes) {
                Ok(record) => writes.push(index_write(&record, *at)),
                Err(err) => failure = Some(err),
            }
        }
        reached = group.end;
    })
    .map_err(log_error)?;
    if let Some(err) = failure {
        return Err(err);
    }
    if reached < applied {
        return Err(StorageError::new(
            StorageErrorKind::Corrupt,
            "the group log no longer holds the groups the index store lost",
        ));
    }
    shared.index.apply(&writes, applied)
}

impl Shared {
    /// What an overlay or index value means for a reader.
    fn resolve(
        &self,
        space: Keyspace,
        value: Vec<u8>,
        from_overlay: bool,
        slots: Option<&Slots>,
    ) -> Result<Vec<u8>, StorageError> {
        if space == Keyspace::ChildKeys {
            let slot = slots::decode_slot(&value)?;
            let slots = slots.ok_or_else(|| {
                StorageError::new(StorageErrorKind::Io, "a child key was read without holding its slots")
            })?;
            return slots.read(slot)?.ok_or_else(|| {
                StorageError::new(
                    StorageErrorKind::Corrupt,
                    format!("a child key entry names slot {slot}, which is empty"),
                )
            });
        }
        if !space.is_log() || from_overlay {
            return Ok(value);
        }
        let at = u64::from_be_bytes(
            value
                .as_slice()
                .try_into()
                .map_err(|_| StorageError::new(StorageErrorKind::Corrupt, "a log index entry is damaged"))?,
        );
        let bytes = self.reader.read(at).map_err(log_error)?;
        match Record::decode(&bytes)? {
            Record::Append { value, .. } => Ok(value.to_vec()),
            _ => Err(StorageError::new(
                StorageErrorKind::Corrupt,
                "a log index entry names a record that is not an append",
            )),
        }
    }

    /// The stored value of `key` (a child key's slot number, a log record's index
    /// entry), from the overlay or the index store, and whether it came from the
    /// overlay.
    fn raw(&self, space: Keyspace, key: &[u8]) -> Result<Option<(Vec<u8>, bool)>, StorageError> {
        if let Some(change) = lock(&self.overlay)?.lookup(space, key) {
            return Ok(change.map(|value| (value, true)));
        }
        Ok(self.index.get(space, key)?.map(|value| (value, false)))
    }

    fn get(&self, space: Keyspace, key: &[u8], slots: Option<&Slots>) -> Result<Option<Vec<u8>>, StorageError> {
        match self.raw(space, key)? {
            Some((value, from_overlay)) => Ok(Some(self.resolve(space, value, from_overlay, slots)?)),
            None => Ok(None),
        }
    }

    /// Merges the overlay over the index store: up to `limit` entries in key order, as
    /// stored (`true` where the value came from the overlay).
    fn scan_raw(
        &self,
        space: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Stored>, StorageError> {
        let pending = lock(&self.overlay)?.range(space, start, end);
        let mut out = Vec::new();
        let mut pending = pending.into_iter().peekable();
        let mut cursor = start.to_vec();
        while out.len() < limit {
            let want = limit - out.len();
            let chunk = self.index.scan(space, &cursor, end, want)?;
            let exhausted = chunk.len() < want;
            let bound = if exhausted { None } else { chunk.last().map(|(key, _)| key.clone()) };
            let mut chunk = chunk.into_iter().peekable();
            while out.len() < limit {
                // Overlay changes past the chunk's last key wait for the next chunk.
                let due = pending.peek().filter(|(key, _)| bound.as_ref().is_none_or(|bound| key <= bound));
                let take_pending = match (due, chunk.peek()) {
                    (Some((pending_key, _)), Some((index_key, _))) => pending_key <= index_key,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                if take_pending {
                    let Some((key, value)) = pending.next() else { break };
                    if chunk.peek().is_some_and(|(index_key, _)| *index_key == key) {
                        chunk.next();
                    }
                    if let Some(value) = value {
                        out.push((key, value, true));
                    }
                } else if let Some((key, value)) = chunk.next() {
                    out.push((key, value, false));
                }
            }
            match bound {
                Some(bound) => cursor = key_after(&bound),
                None => break,
            }
        }
        Ok(out)
    }
}

/// The overlay bound just past every key of `space`.
fn next_space_bound(space: Keyspace) -> Bound<(Keyspace, Vec<u8>)> {
    match Keyspace::ALL.get(space.index() + 1) {
        Some(next) => Bound::Excluded((*next, Vec::new())),
        None => Bound::Unbounded,
    }
}

impl Engine for LoggedEngine {
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if space == Keyspace::ChildKeys {
            // Held across the lookup and the read, so that a slot cannot be zeroed in
            // between by the sync that makes its replacement durable.
            let slots = lock(&self.shared.slots)?;
            return self.shared.get(space, key, Some(&slots));
        }
        self.shared.get(space, key, None)
    }

    fn scan(&self, space: Keyspace, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Entries, StorageError> {
        let slots = if space == Keyspace::ChildKeys { Some(lock(&self.shared.slots)?) } else { None };
        self.shared
            .scan_raw(space, start, end, limit)?
            .into_iter()
            .map(|(key, value, from_overlay)| {
                Ok((key, self.shared.resolve(space, value, from_overlay, slots.as_deref())?))
            })
            .collect()
    }

    fn last(&self, space: Keyspace) -> Result<Option<Entry>, StorageError> {
        let slots = if space == Keyspace::ChildKeys { Some(lock(&self.shared.slots)?) } else { None };
        let mut below: Option<Vec<u8>> = None;
        loop {
            let pending = lock(&self.shared.overlay)?.last_below(space, below.as_deref());
            let indexed = self.shared.index.last_below(space, below.as_deref())?;
            let (key, value, from_overlay) = match (pending, indexed) {
                (Some((key, value)), Some((index_key, _))) if key >= index_key => (key, value, true),
                (_, Some((key, value))) => (key, Some(value), false),
                (Some((key, value)), None) => (key, value, true),
                (None, None) => return Ok(None),
            };
            match value {
                Some(value) => {
                    let value = self.shared.resolve(space, value, from_overlay, slots.as_deref())?;
                    return Ok(Some((key, value)));
                }
                // Removed, and not yet from the index store: look below it.
                None => below = Some(key),
            }
        }
    }

    fn apply(&self, batch: &Batch) -> Result<Applied, CommitError> {
        validate_batch(batch)?;
        let shared = &self.shared;
        let mut writer = lock(&shared.writer)?;
        let mut slots = lock(&shared.slots)?;
        for (index, condition) in batch.conditions.iter().enumerate() {
            let holds = match condition {
                Condition::Absent { space, key } => shared.raw(*space, key)?.is_none(),
                Condition::Equals { space, key, value } => {
                    shared.get(*space, key, Some(&slots))?.as_ref() == Some(value)
                }
            };
            if !holds {
                return Err(CommitError::Conflict { index });
            }
        }
        let sequence = writer.log.next_sequence();
        let mut positions = Vec::with_capacity(batch.append_count());
        // Everything is worked out before anything changes, so that a failure (a slot
        // that cannot be written) leaves no trace of the batch.
        let mut changes: Vec<(Keyspace, Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(batch.ops.len());
        let mut appends = writer.appends;
        for op in &batch.ops {
            match op {
                Op::Put { space, key, value } => changes.push((*space, key.clone(), Some(value.clone()))),
                Op::Delete { space, key } => changes.push((*space, key.clone(), None)),
                Op::Append { space, value } => {
                    let position = append_position(sequence, appends);
                    appends += 1;
                    positions.push(Position::from_bytes(position.clone()));
                    changes.push((*space, position, Some(value.clone())));
                }
                Op::PutAtPosition { space, prefix, append, value } => {
                    let mut key = prefix.clone();
                    key.extend_from_slice(positions[*append].as_bytes());
                    changes.push((*space, key, Some(value.clone())));
                }
                Op::PutPosition { space, key, prefix, append } => {
                    let mut value = prefix.clone();
                    value.extend_from_slice(positions[*append].as_bytes());
                    changes.push((*space, key.clone(), Some(value)));
                }
            }
        }
        // Child keys: each new value to a fresh slot; the slots they replace or remove
        // are let go of once this group is durable.
        let mut written_slots = Vec::new();
        let mut released = Vec::new();
        let mut named_in_batch: BTreeMap<Vec<u8>, Option<u64>> = BTreeMap::new();
        for (space, key, value) in &mut changes {
            if *space != Keyspace::ChildKeys {
                continue;
            }
            let before = match named_in_batch.get(key.as_slice()) {
                Some(slot) => *slot,
                None => match shared.raw(Keyspace::ChildKeys, key)? {
                    Some((named, _)) => Some(slots::decode_slot(&named)?),
                    None => None,
                },
            };
            released.extend(before);
            let now = match value {
                Some(wrapped) => match slots.write_new(wrapped) {
                    Ok(slot) => {
                        written_slots.push(slot);
                        *wrapped = slots::encode_slot(slot).to_vec();
                        Some(slot)
                    }
                    Err(err) => {
                        // The batch is abandoned: the slots it wrote hold keys nothing names.
                        slots.zero(&written_slots)?;
                        return Err(err.into());
                    }
                },
                None => None,
            };
            named_in_batch.insert(key.clone(), now);
        }
        drop(slots);
        let mut overlay = lock(&shared.overlay)?;
        for (space, key, value) in changes {
            let mut record = Vec::with_capacity(key.len() + value.as_ref().map_or(0, Vec::len) + 6);
            let logged = match &value {
                Some(value) if space.is_log() => Record::Append { space, position: &key, value },
                Some(value) => Record::Put { space, key: &key, value },
                None => Record::Delete { space, key: &key },
            };
            logged.encode(&mut record);
            writer.writes.push(index_write(&logged, 0));
            writer.records.push(record);
            overlay.gathering.insert((space, key), Pending { sequence, value });
        }
        drop(overlay);
        writer.appends = appends;
        writer.slots_written.extend(written_slots);
        writer.released.extend(released);
        Ok(Applied { positions })
    }

    fn sync(&self) -> Result<(), StorageError> {
        let shared = &self.shared;
        let mut writer = lock(&shared.writer)?;
        if writer.records.is_empty() {
            return Ok(());
        }
        // Backpressure, before anything is written: the overlay holds what the applier
        // has not reached, so while the applier is behind, wait; while it cannot write
        // the index store at all (a full disk), refuse the group rather than grow the
        // overlay without bound.
        let room = (|| {
            let mut backlog = lock(&shared.backlog)?;
            while *backlog >= MAX_BACKLOG {
                if let Some(failure) = lock(&shared.applier_failure)?.clone() {
                    return Err(failure);
                }
                backlog = shared.caught_up.wait_timeout(backlog, Duration::from_millis(50)).map_err(|_| poisoned())?.0;
            }
            Ok(())
        })();
        let written = room.and_then(|()| {
            let Writer { log, records, slots_written, .. } = &mut *writer;
            let synced = if slots_written.is_empty() { Ok(()) } else { lock(&shared.slots)?.sync() };
            synced.and_then(|()| {
                let records: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
                log.append(&records).map_err(log_error)
            })
        });
        let appended = match written {
            Ok(appended) => appended,
            Err(err) => {
                // Nothing of the group is durable, and its writers are told so: it must
                // not appear later either. Its changes go, and so do its new slots.
                lock(&shared.overlay)?.gathering.clear();
                let abandoned = std::mem::take(&mut writer.slots_written);
                writer.records.clear();
                writer.writes.clear();
                writer.appends = 0;
                writer.released.clear();
                writer.failing = true;
                if !abandoned.is_empty()
                    && let Err(zeroing) = lock(&shared.slots)?.zero(&abandoned)
                {
                    tracing::warn!(error = %zeroing, "could not zero the slots of a group that failed; opening will");
                }
                return Err(err);
            }
        };
        writer.slots_written.clear();
        if std::mem::take(&mut writer.failing) {
            tracing::warn!("the group log accepts writes again after a failed write");
        }
        {
            let mut overlay = lock(&shared.overlay)?;
            let gathered = std::mem::take(&mut overlay.gathering);
            overlay.durable.extend(gathered);
        }
        let mut writes = std::mem::take(&mut writer.writes);
        for (write, at) in writes.iter_mut().zip(&appended.positions) {
            if write.space.is_log() {
                write.value = Some(at.to_be_bytes().to_vec());
            }
        }
        writer.records.clear();
        writer.appends = 0;
        let released = std::mem::take(&mut writer.released);
        if !released.is_empty() {
            lock(&shared.slots)?.zero(&released)?;
        }
        drop(writer);
        *lock(&shared.backlog)? += 1;
        let sent = lock(&shared.queue)?.as_ref().is_some_and(|queue| {
            queue.send(Durable { sequence: appended.sequence, writes, end: appended.end }).is_ok()
        });
        if !sent {
            return Err(StorageError::new(StorageErrorKind::Closed, "the index applier has stopped"));
        }
        Ok(())
    }

    fn check_files(&self) -> Result<Vec<String>, StorageError> {
        match GroupLog::check(self.shared.log_dir.clone(), self.shared.log_options) {
            Ok(_) => {}
            Err(damaged @ LogError::Damaged { .. }) => return Ok(vec![damaged.to_string()]),
            Err(other) => return Err(log_error(other)),
        }
        // The log is whole: the index store must then say exactly what it says.
        self.wait_applied()?;
        compare::index_against_log(self.shared.index.as_ref(), self.shared.log_dir.clone(), self.shared.log_options)
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        let Some(dir) = &self.shared.dir else { return Ok(0) };
        let mut total = self.shared.index.size_on_disk();
        for name in [LOG_DIR, slots::SLOTS_FILE] {
            let path = dir.join(name);
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    total += entry.metadata().map(|meta| meta.len()).unwrap_or(0);
                }
            } else {
                total += path.metadata().map(|meta| meta.len()).unwrap_or(0);
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests;
