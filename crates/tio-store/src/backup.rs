//! Backups: every keyspace of a store in one file, and back.
//!
//! A backup holds exactly what the engine holds (blind indexes and ciphertext), never
//! the key ring: back the ring up separately, and keep the two apart. Format, version 1
//! (do not change; add a version): the line `tio-backup 1`, then for each entry a
//! keyspace byte, a 4-byte big-endian key length, the key, a 4-byte value length and
//! the value; then a 0xff byte; then the SHA-256 of everything before it.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::engine::sled::SledEngine;
use crate::engine::{Engine, Entries, Keyspace, StorageError, StorageErrorKind, key_after};

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

/// Writes every entry of `engine` to a new file `out`, calling `progress(entries)` as
/// it goes. Consistent when the engine has no writer during the backup (a stopped
/// store). Refuses to overwrite `out`.
pub fn write_backup(
    engine: &dyn Engine,
    out: &Path,
    mut progress: impl FnMut(u64),
) -> Result<BackupSummary, StorageError> {
    let file =
        std::fs::OpenOptions::new().write(true).create_new(true).open(out).map_err(io("cannot create backup"))?;
    let mut writer = HashingWriter { inner: BufWriter::new(file), hasher: Sha256::new(), bytes: 0 };
    writer.write_all(MAGIC).map_err(io("cannot write backup"))?;
    let mut summary = BackupSummary::default();
    for space in Keyspace::ALL {
        let mut start = Vec::new();
        loop {
            let page = engine.scan(space, &start, None, 4096)?;
            let Some((last, _)) = page.last() else { break };
            start = key_after(last);
            for (key, value) in &page {
                writer.write_all(&[space.index() as u8]).map_err(io("cannot write backup"))?;
                for field in [key, value] {
                    let len = u32::try_from(field.len())
                        .map_err(|_| StorageError::new(StorageErrorKind::Io, "entry too large"))?;
                    writer.write_all(&len.to_be_bytes()).map_err(io("cannot write backup"))?;
                    writer.write_all(field).map_err(io("cannot write backup"))?;
                }
                summary.entries += 1;
            }
            progress(summary.entries);
        }
    }
    writer.write_all(&[END]).map_err(io("cannot write backup"))?;
    let digest = writer.hasher.clone().finalize();
    writer.inner.write_all(&digest).map_err(io("cannot write backup"))?;
    summary.bytes = writer.bytes + digest.len() as u64;
    let file = writer.inner.into_inner().map_err(|err| StorageError::from_io("cannot write backup", err.error()))?;
    file.sync_all().map_err(io("cannot sync backup"))?;
    Ok(summary)
}

/// Restores a backup into `dir`, which must not exist: it is built beside `dir` and
/// renamed into place only once the whole file has been read and its checksum matched,
/// so a damaged backup leaves nothing behind.
pub fn restore_backup(input: &Path, dir: &Path, mut progress: impl FnMut(u64)) -> Result<BackupSummary, StorageError> {
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
    let result = restore_into(input, &staging, &mut progress);
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

fn restore_into(input: &Path, staging: &Path, progress: &mut impl FnMut(u64)) -> Result<BackupSummary, StorageError> {
    let damaged = |what: &str| StorageError::new(StorageErrorKind::Corrupt, format!("backup is damaged: {what}"));
    let file = std::fs::File::open(input).map_err(io("cannot open backup"))?;
    let bytes = file.metadata().map_err(io("cannot read backup"))?.len();
    let mut reader = HashingReader { inner: BufReader::new(file), hasher: Sha256::new() };
    let mut magic = vec![0u8; MAGIC.len()];
    reader.read_exact(&mut magic).map_err(|_| damaged("too short"))?;
    if magic != MAGIC {
        return Err(damaged("not a tio backup, or an unknown version"));
    }
    let engine = SledEngine::open(staging)?;
    let mut summary = BackupSummary { entries: 0, bytes };
    // Entries are imported a chunk at a time; a chunk holds one keyspace.
    let mut chunk: Option<(Keyspace, Entries)> = None;
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
        match &mut chunk {
            Some((current, entries)) if *current == space && entries.len() < 4096 => entries.push((key, value)),
            _ => {
                if let Some((full, entries)) = chunk.replace((space, vec![(key, value)])) {
                    engine.import(full, &entries)?;
                    progress(summary.entries);
                }
            }
        }
    }
    let expected = reader.hasher.clone().finalize();
    let mut stored = [0u8; 32];
    reader.inner.read_exact(&mut stored).map_err(|_| damaged("checksum missing"))?;
    if stored.as_slice() != expected.as_slice() {
        return Err(damaged("checksum does not match"));
    }
    if let Some((space, entries)) = chunk {
        engine.import(space, &entries)?;
    }
    engine.sync()?;
    progress(summary.entries);
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
