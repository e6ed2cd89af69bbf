//! Store maintenance on a running server, for admins: a consistent backup streamed to
//! the caller, and rotating or retiring the key-encryption key while traffic flows.
//!
//! Each operation is audited before it starts (and a rotation again when it ends). Only
//! one rotation or retirement runs at a time; a second is refused rather than queued,
//! so that an operator never waits on a command they did not know was running.

use std::io::Write;
use std::path::PathBuf;

use tio_audit::entry::Outcome;
use tio_store::keys::KeyRing;
use tio_store::{Batch, StoreError};

use crate::app::admin::Administrator;
use crate::app::error::ServiceError;

/// Bytes per backup chunk sent to the caller.
pub(crate) const BACKUP_CHUNK_BYTES: usize = 64 * 1024;

/// Chunks buffered between the backup and a slow caller before the backup waits.
const BACKUP_CHUNKS_BUFFERED: usize = 16;

/// Where maintenance finds what it needs on this server.
#[derive(Debug)]
pub(crate) struct Maintenance {
    /// A directory on the store's disk for a backup's temporary copy of the indexes.
    spool_dir: PathBuf,
    /// The key ring file rotation rewrites; `None` when the ring came from the
    /// environment.
    key_ring_file: Option<PathBuf>,
    /// Held by a running rotation or retirement.
    keys_busy: tokio::sync::Mutex<()>,
}

impl Maintenance {
    /// Returns maintenance settings.
    pub(crate) fn new(spool_dir: PathBuf, key_ring_file: Option<PathBuf>) -> Self {
        Maintenance { spool_dir, key_ring_file, keys_busy: tokio::sync::Mutex::new(()) }
    }
}

/// A piece of a backup as it streams, or why it stopped.
pub(crate) type BackupPiece = Result<Vec<u8>, ServiceError>;

/// One step of a rotation, as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RotationProgress {
    /// The new current version.
    pub(crate) version: u32,
    /// Data keys looked at in this pass.
    pub(crate) done: u64,
    /// Data keys found under older versions in this pass.
    pub(crate) total: u64,
}

/// How a rotation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RotationOutcome {
    /// The new current version.
    pub(crate) version: u32,
    /// Data keys re-wrapped.
    pub(crate) rewrapped: u64,
    /// The versions the ring holds now.
    pub(crate) versions: Vec<u32>,
}

/// Sends a backup's bytes to the caller in chunks, from a blocking task.
struct ChunkWriter {
    buffer: Vec<u8>,
    sender: tokio::sync::mpsc::Sender<BackupPiece>,
}

impl ChunkWriter {
    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(BACKUP_CHUNK_BYTES));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the caller went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = BACKUP_CHUNK_BYTES - self.buffer.len();
        let taken = room.min(bytes.len());
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() == BACKUP_CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffer()
    }
}

impl Administrator<'_> {
    /// Audits a backup, then starts it: the receiver yields the backup file's bytes in
    /// order, then ends; an error ends it early (the caller's copy then fails its
    /// checksum, so a cut-short backup can never be taken for a whole one).
    pub(crate) async fn backup(&self) -> Result<tokio::sync::mpsc::Receiver<BackupPiece>, ServiceError> {
        self.commit_entry("backup_store".to_owned(), Outcome::Allowed).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(BACKUP_CHUNKS_BUFFERED);
        let store = self.broker.store().clone();
        let spool_dir = self.broker.maintenance().spool_dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = ChunkWriter { buffer: Vec::with_capacity(BACKUP_CHUNK_BYTES), sender: sender.clone() };
            let written = store.backup_to(&spool_dir, &mut writer, |_| {}).and_then(|summary| {
                writer.flush().map_err(|err| StoreError::from(tio_store::StorageError::from_io("backup", &err)))?;
                Ok(summary)
            });
            match written {
                Ok(summary) => tracing::info!(entries = summary.entries, bytes = summary.bytes, "backup streamed"),
                Err(err) => {
                    tracing::warn!(error = %err, "backup stopped");
                    // Ignored error: the caller has gone, and so has the stream.
                    let _ = sender.blocking_send(Err(ServiceError::from(err)));
                }
            }
        });
        Ok(receiver)
    }

    /// Adds a key-encryption key version, saves the ring, and re-wraps every data key
    /// under it, telling `progress` as it goes. Traffic continues throughout: a data key
    /// created meanwhile is wrapped under the new version already, or caught by the
    /// next pass.
    pub(crate) async fn rotate_keys(
        &self,
        mut progress: impl FnMut(RotationProgress),
    ) -> Result<RotationOutcome, ServiceError> {
        let (_busy, file) = self.key_ring_lock()?;
        let store = self.broker.store();
        let mut ring = store.key_ring();
        let version = ring.add_version().map_err(StoreError::from)?;
        // On the record before anything changes; a rotation that then fails says so too.
        self.commit_entry(format!("rotate_keys to version {version}"), Outcome::Allowed).await?;
        // Saved before any data key uses it: a crash from here on leaves a ring that
        // still opens everything.
        if let Err(err) = save_ring(&ring, &file).await {
            self.commit_entry(
                format!("rotate_keys to version {version}: the ring file was not saved"),
                Outcome::Failed,
            )
            .await?;
            return Err(err);
        }
        store.replace_keys(ring);
        tracing::info!(kek.version = version, "key-encryption key rotation started");
        let rewrapped = match store.rewrap_all(|done, total| progress(RotationProgress { version, done, total })).await
        {
            Ok(rewrapped) => rewrapped,
            Err(err) => {
                let detail = format!("rotate_keys to version {version}: re-wrapping stopped; run it again to finish");
                self.commit_entry(detail, Outcome::Failed).await?;
                return Err(err.into());
            }
        };
        let versions = store.key_ring().versions();
        self.commit_entry(
            format!("rotate_keys finished: version {version}, {rewrapped} data keys re-wrapped"),
            Outcome::Allowed,
        )
        .await?;
        tracing::info!(kek.version = version, rewrapped, "key-encryption key rotation finished");
        Ok(RotationOutcome { version, rewrapped, versions })
    }

    /// Removes key-encryption key `version` once no data key is wrapped under it.
    pub(crate) async fn retire_key(&self, version: u32) -> Result<Vec<u32>, ServiceError> {
        let (_busy, file) = self.key_ring_lock()?;
        let store = self.broker.store();
        let mut ring = store.key_ring();
        if !ring.versions().contains(&version) {
            return Err(ServiceError::not_found(
                "key-encryption key version",
                "KEK_VERSION_NOT_FOUND",
                version.to_string(),
                format!("key-encryption key version {version} is not in the ring (it holds {:?})", ring.versions()),
            ));
        }
        if version == ring.current_version() {
            return Err(ServiceError::failed_precondition(
                "KEK_VERSION_CURRENT",
                format!("kek_version/{version}"),
                format!("version {version} is current: rotate to a new version before retiring it"),
            ));
        }
        let still_used = store.keys_under_version(version)?;
        if still_used > 0 {
            return Err(ServiceError::failed_precondition(
                "KEK_VERSION_IN_USE",
                format!("kek_version/{version}"),
                format!("{still_used} data keys still use version {version}: rotate first"),
            ));
        }
        ring.retire(version).map_err(StoreError::from)?;
        if let Err(err) = save_ring(&ring, &file).await {
            self.commit_entry(format!("retire_key version {version}: the ring file was not saved"), Outcome::Failed)
                .await?;
            return Err(err);
        }
        let versions = ring.versions();
        store.replace_keys(ring);
        self.commit_entry(format!("retire_key version {version}"), Outcome::Allowed).await?;
        tracing::info!(kek.version = version, "key-encryption key version retired");
        Ok(versions)
    }

    /// Takes the one rotation-or-retirement slot, and returns the ring file to rewrite.
    fn key_ring_lock(&self) -> Result<(tokio::sync::MutexGuard<'_, ()>, PathBuf), ServiceError> {
        if self.broker.store().shared() {
            // Another node's ring would lack the new version, and could not read a key
            // wrapped under it.
            return Err(ServiceError::failed_precondition(
                "KEY_RING_SHARED_STORE",
                "key_ring",
                "other broker nodes share this store, and this server cannot rewrite their key rings: stop \
                 every node, rotate or retire with `tio keys rotate|retire --data-dir D --engine postgres \
                 --postgres-url URL`, and give every node the new ring before starting them again",
            ));
        }
        let maintenance = self.broker.maintenance();
        let file = maintenance.key_ring_file.clone().ok_or_else(|| {
            ServiceError::failed_precondition(
                "KEY_RING_FROM_ENVIRONMENT",
                "key_ring",
                "the key ring was given in the environment (TIO_KEYS), which the server cannot rewrite: \
                 rotate it with `tio keys rotate --data-dir` while the server is stopped",
            )
        })?;
        let busy = maintenance.keys_busy.try_lock().map_err(|_| {
            ServiceError::failed_precondition(
                "KEY_OPERATION_RUNNING",
                "key_ring",
                "a key rotation or retirement is already running",
            )
        })?;
        Ok((busy, file))
    }

    /// Commits one admin entry on its own.
    async fn commit_entry(&self, detail: String, outcome: Outcome) -> Result<(), ServiceError> {
        let entry = tio_audit::entry::AuditEntry { outcome: outcome.code().to_owned(), ..self.entry(detail) };
        let mut batch = Batch::new();
        batch.push(tio_audit_log::entry_op(&entry));
        self.broker.store().commit(batch).await?;
        Ok(())
    }
}

/// Replaces the ring file (atomically, mode 0600), off the async threads.
async fn save_ring(ring: &KeyRing, file: &std::path::Path) -> Result<(), ServiceError> {
    let (ring, file) = (ring.clone(), file.to_owned());
    tokio::task::spawn_blocking(move || ring.replace_file(&file))
        .await
        .map_err(|err| ServiceError::Internal(format!("saving the key ring stopped: {err}")))?
        .map_err(|err| ServiceError::Store(StoreError::from(err)))
}
