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

type Overlay = BTreeMap<(Keyspace, Vec<u8>), Pending>;

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
    /// Slots written for the gathered group, to sync before it.
    slots_written: bool,
    /// Slots the gathered group lets go of, zeroed once it is durable.
    released: Vec<u64>,
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
    dir: Option<PathBuf>,
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
        std::fs::create_dir_all(dir).map_err(|err| StorageError::from_io("cannot create the store directory", &err))?;
        let index_dir = dir.join(format!("index-{}", kind.name()));
        let index: Box<dyn IndexStore> = match kind {
            IndexKind::Fjall => Box::new(FjallIndex::open(&index_dir)?),
            IndexKind::Sled => Box::new(SledIndex::open(&index_dir)?),
        };
        let log_dir = DiskDir::open(dir.join(LOG_DIR))
            .map_err(|err| StorageError::from_io("cannot create the group log directory", &err))?;
        LoggedEngine::open_with(Arc::new(log_dir), index, dir, LogOptions::default(), Some(dir.to_owned()))
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
        let (log, recovery) = GroupLog::open(log_dir, options, mark, |group| {
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
            overlay: Mutex::new(BTreeMap::new()),
            writer: Mutex::new(Writer {
                log,
                records: Vec::new(),
                writes: Vec::new(),
                appends: 0,
                slots_written: false,
                released: Vec::new(),
            }),
            slots: Mutex::new(slots),
            queue: Mutex::new(Some(sender)),
            backlog: Mutex::new(0),
            caught_up: Condvar::new(),
            dir,
        });
        let applier = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("tio-index-applier".into())
                .spawn(move || apply_loop(&shared, &receiver))
                .map_err(|err| StorageError::from_io("cannot start the index applier", &err))?
        };
        Ok(LoggedEngine { shared, applier: Mutex::new(Some(applier)) })
    }

    /// Waits until the applier has put every durable group into the index store (for
    /// tests and an orderly close).
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
        // Closing the queue ends the applier once it has applied what it was sent.
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
fn apply_loop(shared: &Shared, receiver: &mpsc::Receiver<Durable>) {
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
        let writes: Vec<IndexWrite> = groups.iter().flat_map(|group| group.writes.iter().cloned()).collect();
        // Until the index store takes them, the overlay keeps serving the changes, so
        // a failure here costs memory, not correctness; it is retried.
        let mut delay = Duration::from_millis(10);
        while let Err(err) = shared.index.apply(&writes, end) {
            tracing::error!(error = %err, "the index applier cannot write the index store; retrying");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        if let Ok(mut overlay) = shared.overlay.lock() {
            for group in &groups {
                for write in &group.writes {
                    let key = (write.space, write.key.clone());
                    if overlay.get(&key).is_some_and(|pending| pending.sequence == group.sequence) {
                        overlay.remove(&key);
                    }
                }
            }
        }
        if let Ok(mut backlog) = shared.backlog.lock() {
            *backlog = backlog.saturating_sub(groups.len());
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
            let slots = slots.ok_or_else(poisoned)?;
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
        if let Some(pending) = lock(&self.overlay)?.get(&(space, key.to_vec())) {
            return Ok(pending.value.clone().map(|value| (value, true)));
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
        let pending: Vec<(Vec<u8>, Option<Vec<u8>>)> = {
            let overlay = lock(&self.overlay)?;
            let upper = match end {
                Some(end) => Bound::Excluded((space, end.to_vec())),
                None => next_space_bound(space),
            };
            overlay
                .range((Bound::Included((space, start.to_vec())), upper))
                .map(|((_, key), pending)| (key.clone(), pending.value.clone()))
                .collect()
        };
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
                let take_pending = match (pending.peek(), chunk.peek()) {
                    (Some((key, _)), _) if bound.as_ref().is_some_and(|bound| key > bound) => {
                        if chunk.peek().is_none() {
                            break;
                        }
                        false
                    }
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
            let pending = {
                let overlay = lock(&self.shared.overlay)?;
                let upper = match &below {
                    Some(below) => Bound::Excluded((space, below.clone())),
                    None => next_space_bound(space),
                };
                overlay
                    .range((Bound::Included((space, Vec::new())), upper))
                    .next_back()
                    .map(|((_, key), pending)| (key.clone(), pending.value.clone()))
            };
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
            overlay.insert((space, key), Pending { sequence, value });
        }
        drop(overlay);
        writer.appends = appends;
        writer.slots_written |= !written_slots.is_empty();
        writer.released.extend(released);
        Ok(Applied { positions })
    }

    fn sync(&self) -> Result<(), StorageError> {
        let shared = &self.shared;
        let mut writer = lock(&shared.writer)?;
        if writer.records.is_empty() {
            return Ok(());
        }
        if writer.slots_written {
            lock(&shared.slots)?.sync()?;
            writer.slots_written = false;
        }
        let appended = {
            let Writer { log, records, .. } = &mut *writer;
            let records: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            log.append(&records).map_err(log_error)?
        };
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
        // Backpressure: the overlay holds what the applier has not reached.
        let mut backlog = lock(&shared.backlog)?;
        while *backlog > MAX_BACKLOG {
            backlog = shared.caught_up.wait(backlog).map_err(|_| poisoned())?;
        }
        Ok(())
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
