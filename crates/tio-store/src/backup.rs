//! Backups: every keyspace of a store in one file, and back, onto any engine.
//!
//! A backup holds exactly what the engine holds (blind indexes and ciphertext), never
//! the key ring: back the ring up separately, and keep the two apart. Format, version 1
//! (do not change; add a version): the line `tio-backup 1`, then for each entry a
//! keyspace byte, a 4-byte big-endian key length, the key, a 4-byte value length and
//! the value, in any order of keyspaces; then a 0xff byte; then the SHA-256 of
//! everything before it.
//!
//! A backup of a running store is consistent without stopping it for long: see
//! [`write_backup_to`].
//!
//! A restore is logical, so that a store moves between engines: log positions are the
//! source engine's and opaque, so the logs are appended afresh (in their order) to the
//! target engine, and every stored position (in the indexes, the cursors and the audit
//! tree) is translated to the position its record now has, by the module that owns
//! that record's layout. The engine's own bookkeeping (`meta`) is not restored.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::engine::{Batch, Engine, Keyspace, Op, StorageError, StorageErrorKind, key_after};
use crate::{GroupCommit, StoreOptions};

const MAGIC: &[u8] = b"tio-backup 1\n";
const END: u8 = 0xff;

/// What a backup or restore covered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// Entries written or read.
    pub entries: u64,
    /// Bytes of the backup file.
    pub bytes: u64,
}

fn io(context: &str) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |err| StorageError::from_io(context, &err)
}

/// Writes a backup of the store behind `commit` to a new file `out` (never overwriting
/// one), synced before it returns. See [`write_backup_to`].
pub fn write_backup(
    commit: &GroupCommit,
    engine: &dyn Engine,
    out: &Path,
    progress: impl FnMut(u64),
) -> Result<BackupSummary, StorageError> {
    let file =
        std::fs::OpenOptions::new().write(true).create_new(true).open(out).map_err(io("cannot create backup"))?;
    let spool_dir = out.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut writer = BufWriter::new(file);
    let summary = write_backup_to(commit, engine, spool_dir, &mut writer, progress);
    let summary = match summary {
        Ok(summary) => summary,
        Err(err) => {
            drop(writer);
            // A partial backup must not be mistaken for one: it fails its checksum anyway.
            let _ = std::fs::remove_file(out);
            return Err(err);
        }
    };
    let file = writer.into_inner().map_err(|err| StorageError::from_io("cannot write backup", err.error()))?;
    file.sync_all().map_err(io("cannot sync backup"))?;
    Ok(summary)
}

/// Writes a backup of the stopped store in `dir` (opened on the engine `options` names,
/// without its key ring: a backup is ciphertext) to a new file `out`.
pub fn backup_stopped_store(
    dir: &Path,
    options: &StoreOptions,
    out: &Path,
    progress: impl FnMut(u64),
) -> Result<BackupSummary, StorageError> {
    let engine = options.open_engine(dir)?;
    let commit = GroupCommit::start(engine.clone()).map_err(io("cannot start the commit thread"))?;
    let summary = write_backup(&commit, engine.as_ref(), out, progress);
    commit.shutdown();
    summary
}

/// Writes a consistent backup of the store behind `commit` (its engine is `engine`) to
/// `out`, calling `progress(entries)` as it goes. The store may be in use.
///
/// Two steps, so that writers wait only for the first. While no commit can change the
/// engine ([`GroupCommit::exclusive_blocking`]), every keyspace that is not a log is
/// copied to an unnamed spool file in `spool_dir` and the last key of each log is
/// noted. Then, with writers running again, each log is copied up to that key. Log
/// records never change once appended, so the result is the store as it was at one
/// instant, with every index and latest value pointing at records it holds.
pub fn write_backup_to(
    commit: &GroupCommit,
    engine: &dyn Engine,
    spool_dir: &Path,
    out: impl Write,
    mut progress: impl FnMut(u64),
) -> Result<BackupSummary, StorageError> {
    let spool = tempfile::tempfile_in(spool_dir).map_err(io("cannot create a spool file for the backup"))?;
    let (spool, mut entries, log_ends) = commit.exclusive_blocking(move |engine| snapshot(engine, spool))??;
    let mut writer = HashingWriter { inner: out, hasher: Sha256::new(), bytes: 0 };
    writer.write_all(MAGIC).map_err(io("cannot write backup"))?;
    let mut spool = spool.into_inner().map_err(|err| StorageError::from_io("cannot write spool", err.error()))?;
    std::io::Seek::rewind(&mut spool).map_err(io("cannot read spool"))?;
    std::io::copy(&mut BufReader::new(spool), &mut writer).map_err(io("cannot write backup"))?;
    progress(entries);
    for (space, last) in log_ends {
        let Some(last) = last else { continue };
        let end = key_after(&last);
        let mut start = Vec::new();
        loop {
            let page = engine.scan(space, &start, Some(&end), 4096)?;
            let Some((page_last, _)) = page.last() else { break };
            start = key_after(page_last);
            for (key, value) in &page {
                write_entry(&mut writer, space, key, value)?;
            }
            entries += page.len() as u64;
            progress(entries);
        }
    }
    writer.write_all(&[END]).map_err(io("cannot write backup"))?;
    let digest = writer.hasher.clone().finalize();
    writer.inner.write_all(&digest).map_err(io("cannot write backup"))?;
    writer.inner.flush().map_err(io("cannot write backup"))?;
    Ok(BackupSummary { entries, bytes: writer.bytes + digest.len() as u64 })
}

/// The first step of a backup, run while no commit can change the engine: every entry
/// of every keyspace that is not a log, into `spool`, and the last key of each log.
#[allow(clippy::type_complexity)]
fn snapshot(
    engine: &dyn Engine,
    spool: std::fs::File,
) -> Result<(BufWriter<std::fs::File>, u64, Vec<(Keyspace, Option<Vec<u8>>)>), StorageError> {
    let mut spool = BufWriter::new(spool);
    let mut entries = 0u64;
    let mut log_ends = Vec::new();
    for space in Keyspace::ALL {
        if space.is_log() {
            log_ends.push((space, engine.last(space)?.map(|(key, _)| key)));
            continue;
        }
        let mut start = Vec::new();
        loop {
            let page = engine.scan(space, &start, None, 4096)?;
            let Some((last, _)) = page.last() else { break };
            start = key_after(last);
            for (key, value) in &page {
                write_entry(&mut spool, space, key, value)?;
            }
            entries += page.len() as u64;
        }
    }
    Ok((spool, entries, log_ends))
}

/// Writes one entry in the backup format.
fn write_entry(out: &mut impl Write, space: Keyspace, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
    out.write_all(&[space.index() as u8]).map_err(io("cannot write backup"))?;
    for field in [key, value] {
        let len = u32::try_from(field.len()).map_err(|_| StorageError::new(StorageErrorKind::Io, "entry too large"))?;
        out.write_all(&len.to_be_bytes()).map_err(io("cannot write backup"))?;
        out.write_all(field).map_err(io("cannot write backup"))?;
    }
    Ok(())
}

/// Restores a backup into `dir`, which must not exist, on the engine `options` names:
/// it is built beside `dir` and renamed into place only once the whole file has been
/// read and its checksum matched, so a damaged backup leaves nothing behind.
pub fn restore_backup(
    input: &Path,
    dir: &Path,
    options: &StoreOptions,
    mut progress: impl FnMut(u64),
) -> Result<BackupSummary, StorageError> {
    if options.engine == crate::EngineKind::Postgres {
        return restore_into_database(input, options, &mut progress);
    }
    if dir.exists() {
        return Err(StorageError::new(
            StorageErrorKind::Io,
            format!("{} already exists; restore into a new directory", dir.display()),
        ));
    }
    let staging = dir.with_extension("restoring");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io("cannot clear an interrupted restore"))?;
    }
    let result = options.open_engine(&staging).and_then(|engine| {
        let summary = restore_into(input, engine.as_ref(), &mut progress)?;
        drop(engine);
        Ok(summary)
    });
    match result {
        Ok(summary) => {
            std::fs::rename(&staging, dir).map_err(io("cannot move restored store into place"))?;
            Ok(summary)
        }
        Err(err) => {
            // The staging copy holds no data of record: the backup file is the source.
            let _ = std::fs::remove_dir_all(&staging);
            Err(err)
        }
    }
}

/// Restores a backup into the PostgreSQL database `options` names, which must hold no
/// store yet. A database cannot be built beside and renamed into place as a directory
/// can, so a restore that fails part way leaves part of the backup in it, and says so:
/// the database is then to be dropped and made again before another try.
fn restore_into_database(
    input: &Path,
    options: &StoreOptions,
    progress: &mut impl FnMut(u64),
) -> Result<BackupSummary, StorageError> {
    let engine = options.open_engine(Path::new(""))?;
    for space in Keyspace::ALL {
        if !engine.scan(space, &[], None, 1)?.is_empty() {
            return Err(StorageError::new(
                StorageErrorKind::Io,
                format!(
                    "the database already holds a store (its {} are not empty): restore into an empty database",
                    space.name()
                ),
            ));
        }
    }
    restore_into(input, engine.as_ref(), progress).map_err(|err| {
        StorageError::new(
            err.kind,
            format!(
                "{}; the database now holds part of the backup: drop it and create it again before restoring again",
                err.message
            ),
        )
    })
}

/// Rebuilds the index store of the stopped group-log store in `dir` from its log: the
/// old index store is moved aside, the engine opened (which replays the whole log into
/// a new one), and only then is the old one removed; should the rebuild fail, the old
/// one is put back. For an index store that is damaged, or to change nothing but be
/// sure that the indexes say what the log says.
pub fn reindex_stopped_store(dir: &Path, options: &StoreOptions) -> Result<(), StorageError> {
    if options.engine != crate::EngineKind::Log {
        return Err(StorageError::new(
            StorageErrorKind::Format,
            "only the group log's index store is rebuilt from a log (store.engine = \"log\")",
        ));
    }
    if !dir.join(crate::engine::sled::FORMAT_FILE).exists() {
        return Err(StorageError::new(StorageErrorKind::Io, format!("no store in {}", dir.display())));
    }
    let index = crate::engine::logged::index_dir(dir, options.index_engine.kind());
    let aside = index.with_extension("before-reindex");
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(io("cannot clear an interrupted rebuild"))?;
    }
    if index.exists() {
        std::fs::rename(&index, &aside).map_err(io("cannot move the index store aside"))?;
    }
    match options.open_engine(dir) {
        Ok(engine) => {
            drop(engine);
            if aside.exists() {
                std::fs::remove_dir_all(&aside).map_err(io("cannot remove the old index store"))?;
            }
            Ok(())
        }
        Err(err) => {
            let _ = std::fs::remove_dir_all(&index);
            if aside.exists() {
                let _ = std::fs::rename(&aside, &index);
            }
            Err(err)
        }
    }
}

/// What a migration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Entries moved.
    pub entries: u64,
}

/// Moves the stopped store in `dir` from the engine `from` describes to the one `to`
/// describes, in place: a logical backup beside it, a restore beside it, then the new
/// store takes `dir`'s place and the old one is kept at `kept` (which must not exist)
/// for the operator to remove once satisfied. Nothing in `dir` changes until the new
/// store is complete; `progress` is called with the entries done, twice over (backup,
/// then restore).
pub fn migrate_stopped_store(
    dir: &Path,
    from: &StoreOptions,
    to: &StoreOptions,
    kept: &Path,
    mut progress: impl FnMut(u64),
) -> Result<Migrated, StorageError> {
    if kept.exists() {
        return Err(StorageError::new(
            StorageErrorKind::Io,
            format!("{} already exists (an earlier migration's copy?): move it away first", kept.display()),
        ));
    }
    let backup = dir.with_extension("migrating.backup");
    let moved = dir.with_extension("migrating");
    for leftover in [&backup, &moved] {
        if leftover.is_dir() {
            std::fs::remove_dir_all(leftover).map_err(io("cannot clear an interrupted migration"))?;
        } else if leftover.exists() {
            std::fs::remove_file(leftover).map_err(io("cannot clear an interrupted migration"))?;
        }
    }
    let written = backup_stopped_store(dir, from, &backup, &mut progress)?;
    let restored = restore_backup(&backup, &moved, to, &mut progress);
    let _ = std::fs::remove_file(&backup);
    let restored = restored?;
    if restored.entries != written.entries {
        let _ = std::fs::remove_dir_all(&moved);
        return Err(StorageError::new(
            StorageErrorKind::Corrupt,
            format!("the migration wrote {} entries but restored {}", written.entries, restored.entries),
        ));
    }
    std::fs::rename(dir, kept).map_err(io("cannot move the old store aside"))?;
    std::fs::rename(&moved, dir).map_err(io("cannot move the migrated store into place"))?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)
            .and_then(|parent| parent.sync_all())
            .map_err(io("cannot sync the data directory"))?;
    }
    Ok(Migrated { entries: restored.entries })
}

/// Restores a backup into `engine`, which must be empty, and syncs it; calls
/// `progress(entries)` as it goes. Reads the file twice: the logs first, appended in
/// order to learn each record's new position, then everything else, translated.
/// Whatever was written before a damage is found is the caller's to throw away.
pub fn restore_into(
    input: &Path,
    engine: &dyn Engine,
    progress: &mut impl FnMut(u64),
) -> Result<BackupSummary, StorageError> {
    let mut maps = Positions::default();
    let mut pending: Vec<(Keyspace, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut done = 0u64;
    let flush_logs = |pending: &mut Vec<(Keyspace, Vec<u8>, Vec<u8>)>, maps: &mut Positions| {
        let mut batch = Batch::new();
        for (space, _, value) in pending.iter() {
            batch.push(Op::Append { space: *space, value: value.clone() });
        }
        let applied = engine.apply(&batch).map_err(commit_error)?;
        if applied.positions.len() != pending.len() {
            return Err(StorageError::new(StorageErrorKind::Corrupt, "the engine gave fewer positions than appends"));
        }
        for ((space, old, _), new) in pending.drain(..).zip(applied.positions) {
            maps.of(space)?.push(old, new.as_bytes().to_vec())?;
        }
        // A chunk at a time, so that an engine that gathers applied batches until its
        // sync (the group log) writes bounded groups.
        engine.sync()
    };
    read_backup(input, |space, key, value, _| {
        if !space.is_log() {
            return Ok(());
        }
        pending.push((space, key, value));
        done += 1;
        if pending.len() == RESTORE_CHUNK {
            flush_logs(&mut pending, &mut maps)?;
            progress(done);
        }
        Ok(())
    })?;
    flush_logs(&mut pending, &mut maps)?;
    let mut chunk = Batch::new();
    let summary = read_backup(input, |space, key, value, _| {
        if space.is_log() || space == Keyspace::Meta {
            return Ok(());
        }
        let (key, value) = translate(space, key, value, &maps)?;
        chunk.push(Op::Put { space, key, value });
        done += 1;
        if chunk.ops.len() == RESTORE_CHUNK {
            engine.apply(&std::mem::take(&mut chunk)).map_err(commit_error)?;
            engine.sync()?;
            progress(done);
        }
        Ok(())
    })?;
    engine.apply(&chunk).map_err(commit_error)?;
    engine.sync()?;
    progress(summary.entries);
    Ok(summary)
}

/// How many entries a restore writes in one batch.
const RESTORE_CHUNK: usize = 4096;

fn commit_error(err: crate::engine::CommitError) -> StorageError {
    match err {
        crate::engine::CommitError::Storage(storage) => storage,
        other => StorageError::new(StorageErrorKind::Corrupt, format!("cannot restore: {other}")),
    }
}

/// Returns a non-log entry as the target engine must hold it: its stored positions
/// translated by the module that owns its layout.
fn translate(
    space: Keyspace,
    key: Vec<u8>,
    value: Vec<u8>,
    maps: &Positions,
) -> Result<(Vec<u8>, Vec<u8>), StorageError> {
    let translated = match space {
        Keyspace::UpdatesByChild | Keyspace::Latest | Keyspace::Idempotency => {
            crate::store::restored_index_entry(space, key, value, &maps.updates)
        }
        Keyspace::Cursors => crate::cursors::restored_entry(key, value, &maps.updates),
        Keyspace::AuditTree => crate::audit_records::restored_tree_entry(key, value, &maps.audit),
        _ => Ok((key, value)),
    };
    translated.map_err(|err| StorageError::new(StorageErrorKind::Corrupt, format!("backup is damaged: {err}")))
}

/// The positions each log's records had in the backup and have now.
#[derive(Default)]
struct Positions {
    updates: PositionMap,
    audit: PositionMap,
}

impl Positions {
    fn of(&mut self, space: Keyspace) -> Result<&mut PositionMap, StorageError> {
        match space {
            Keyspace::Updates => Ok(&mut self.updates),
            Keyspace::Audit => Ok(&mut self.audit),
            other => Err(StorageError::new(StorageErrorKind::Corrupt, format!("{} is not a log", other.name()))),
        }
    }
}

/// The positions of one log's records in the backup and in the restored store, in log
/// order. Two flat lists, not a hash map: a log in order is sorted both ways, so a
/// binary search finds a position, at two small allocations per record.
#[derive(Default)]
pub(crate) struct PositionMap {
    old: Vec<Box<[u8]>>,
    new: Vec<Box<[u8]>>,
}

impl PositionMap {
    fn push(&mut self, old: Vec<u8>, new: Vec<u8>) -> Result<(), StorageError> {
        if self.old.last().is_some_and(|last| **last >= *old) {
            return Err(StorageError::new(StorageErrorKind::Corrupt, "backup is damaged: a log is out of order"));
        }
        self.old.push(old.into_boxed_slice());
        self.new.push(new.into_boxed_slice());
        Ok(())
    }

    /// Returns the restored position of the record at `old` in the backup.
    pub(crate) fn get(&self, old: &[u8]) -> Result<Vec<u8>, String> {
        let index = self
            .old
            .binary_search_by(|probe| (**probe).cmp(old))
            .map_err(|_| "a stored position names no record of the backup".to_owned())?;
        Ok(self.new[index].to_vec())
    }
}

/// Reads a backup file through and checks its format and checksum, without restoring
/// it: for a backup just taken, or one about to be relied on.
pub fn verify_backup(input: &Path) -> Result<BackupSummary, StorageError> {
    read_backup(input, |_, _, _, _| Ok(()))
}

/// Reads every entry of a backup, calling `each(keyspace, key, value, entries so far)`,
/// then checks the checksum (so `each` may have seen entries of a damaged backup).
fn read_backup(
    input: &Path,
    mut each: impl FnMut(Keyspace, Vec<u8>, Vec<u8>, u64) -> Result<(), StorageError>,
) -> Result<BackupSummary, StorageError> {
    let damaged = |what: &str| StorageError::new(StorageErrorKind::Corrupt, format!("backup is damaged: {what}"));
    let file = std::fs::File::open(input).map_err(io("cannot open backup"))?;
    let bytes = file.metadata().map_err(io("cannot read backup"))?.len();
    let mut reader = HashingReader { inner: BufReader::new(file), hasher: Sha256::new() };
    let mut magic = vec![0u8; MAGIC.len()];
    reader.read_exact(&mut magic).map_err(|_| damaged("too short"))?;
    if magic != MAGIC {
        return Err(damaged("not a tio backup, or an unknown version"));
    }
    let mut summary = BackupSummary { entries: 0, bytes };
    loop {
        let mut tag = [0u8; 1];
        reader.read_exact(&mut tag).map_err(|_| damaged("truncated"))?;
        if tag[0] == END {
            break;
        }
        let space = *Keyspace::ALL.get(usize::from(tag[0])).ok_or_else(|| damaged("unknown keyspace"))?;
        let mut fields = Vec::with_capacity(2);
        for _ in 0..2 {
            let mut len = [0u8; 4];
            reader.read_exact(&mut len).map_err(|_| damaged("truncated"))?;
            let len = u32::from_be_bytes(len) as usize;
            if len > 16 * 1024 * 1024 {
                return Err(damaged("entry length out of range"));
            }
            let mut field = vec![0u8; len];
            reader.read_exact(&mut field).map_err(|_| damaged("truncated"))?;
            fields.push(field);
        }
        let value = fields.pop().unwrap_or_default();
        let key = fields.pop().unwrap_or_default();
        summary.entries += 1;
        each(space, key, value, summary.entries)?;
    }
    let expected = reader.hasher.clone().finalize();
    let mut stored = [0u8; 32];
    reader.inner.read_exact(&mut stored).map_err(|_| damaged("checksum missing"))?;
    if stored.as_slice() != expected.as_slice() {
        return Err(damaged("checksum does not match"));
    }
    let mut rest = [0u8; 1];
    if reader.inner.read(&mut rest).map_err(io("cannot read backup"))? != 0 {
        return Err(damaged("bytes after the checksum"));
    }
    Ok(summary)
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}
