//! The audit log kept in the store (`tio-audit` holds its cryptography and formats).
//!
//! Entries go in the store's `audit` log keyspace, in the same atomic batch as the
//! action they record (see [`entry_op`]), so no action exists without its entry. The
//! engine's positions are opaque (an engine need not count densely), so the log keeps
//! its own dense index: [`AuditLog::build`] sequences entries in position order, giving
//! each the next leaf index and storing which position holds every 256th, extends the frontier
//! and stores the complete subtrees; [`AuditLog::checkpoint`] signs the result. Hashing
//! and sequencing stay off the commit path.

#![warn(missing_docs)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use tio_store::audit_records::{EntriesFrom, TreeRecord, append_entry, put_alert, put_tree, tree_unchanged};
use tio_store::{Batch, Op, Store, StoreError};

use tio_audit::checkpoint::{Checkpoint, SignedCheckpoint};
use tio_audit::entry::AuditEntry;
use tio_audit::export::ExportLine;
use tio_audit::merkle::{self, Frontier, Hash, ProofError, SubtreeSource};
use tio_audit::note::Signer;

/// Every how many leaves a leaf key is stored: a read starts at the nearest one below
/// and steps over the rest in order. One key per leaf doubled what a build writes, and
/// the longer build commits showed in the publishes' tail latency. Do not change.
const LEAF_STRIDE: u64 = 256;

/// How many entries one build step reads and hashes before it commits.
const BUILD_PAGE: usize = 4096;

/// Why the audit log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored entry or tree record is damaged.
    #[error("audit log is damaged: {0}")]
    Corrupt(String),
    /// Signing failed.
    #[error("cannot sign checkpoint: {0}")]
    Sign(String),
    /// A proof was asked for sizes the log does not have.
    #[error("{0}")]
    Range(String),
}

impl From<tio_store::StorageError> for AuditError {
    fn from(err: tio_store::StorageError) -> Self {
        AuditError::Store(StoreError::Storage(err))
    }
}

/// Returns the operation that appends `entry` to the log, to put in the batch of the
/// action it records. Its leaf index is assigned by the commit (its position).
pub fn entry_op(entry: &AuditEntry) -> Op {
    append_entry(crate::stored::encode(entry))
}

/// The audit log of one store.
pub struct AuditLog {
    store: Arc<Store>,
    signer: Signer,
    origin: String,
}

impl AuditLog {
    /// Returns the key that verifies this log's checkpoints.
    pub fn verifier(&self) -> tio_audit::note::Verifier {
        self.signer.verifier()
    }

    /// Returns the log of `store`, signing checkpoints with `signer` under its name.
    pub fn new(store: Arc<Store>, signer: Signer) -> AuditLog {
        let origin = signer.verifier().name().to_owned();
        AuditLog { store, signer, origin }
    }

    /// Records entries that go with no other change (reads, refusals) in one commit.
    /// Their leaf indexes come when the tree is next built.
    pub async fn append(&self, entries: &[AuditEntry]) -> Result<(), AuditError> {
        let mut batch = Batch::new();
        for entry in entries {
            batch.push(entry_op(entry));
        }
        self.store.commit(batch).await?;
        Ok(())
    }

    /// Returns the entries with leaf indexes in `[from, to)`, in order. Entries past the
    /// tree (committed, not yet sequenced) get the indexes they will have: the tree
    /// takes them in position order.
    pub fn entries(&self, from: u64, to: u64) -> Result<Vec<AuditEntry>, AuditError> {
        let wanted = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX);
        let mut entries = Vec::new();
        if wanted == 0 {
            return Ok(entries);
        }
        let (_, frontier) = self.frontier()?;
        // Where to read from: at the nearest indexed leaf inside the tree, or after
        // the tree's last entry past it; then after each page's last entry.
        let (mut at, mut after, mut skip) = if from < frontier.size() {
            let indexed = from - from % LEAF_STRIDE;
            (Some(self.leaf_position(indexed, &frontier)?), None, from - indexed)
        } else {
            (None, self.sequenced(&frontier)?, from - frontier.size())
        };
        let mut next = from;
        while entries.len() < wanted {
            let from = match (&at, &after) {
                (Some(position), _) => EntriesFrom::At(position),
                (None, Some(last)) => EntriesFrom::After(last),
                (None, None) => EntriesFrom::Start,
            };
            let page = self.store.audit_entries(from, BUILD_PAGE)?;
            let Some((last, _)) = page.last() else { break };
            (at, after) = (None, Some(last.clone()));
            for (_, bytes) in page {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                if entries.len() == wanted {
                    break;
                }
                entries.push(decode_entry(next, &bytes)?);
                next += 1;
            }
        }
        Ok(entries)
    }

    /// Returns up to `limit` entries from leaf index `from` on, in order, including
    /// entries the tree does not cover yet; fewer than `limit` means the end of the log.
    pub fn entries_from(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        self.entries(from, from.saturating_add(limit as u64))
    }

    /// Returns the position of the entry at leaf `index` (a multiple of
    /// [`LEAF_STRIDE`]), below the tree's size.
    fn leaf_position(&self, index: u64, frontier: &Frontier) -> Result<Vec<u8>, AuditError> {
        match self.store.audit_tree(TreeRecord::Leaf(index))? {
            Some(position) => Ok(position),
            // A tree built before leaves were indexed (store format tio-store/2) until
            // the next build indexes them: found by order.
            None if self.legacy(frontier)? => self.nth_position(index),
            None => Err(AuditError::Corrupt(format!("leaf {index} of the tree has no position"))),
        }
    }

    /// Returns the position of the last entry in the tree, if the tree has any.
    fn sequenced(&self, frontier: &Frontier) -> Result<Option<Vec<u8>>, AuditError> {
        if frontier.size() == 0 {
            return Ok(None);
        }
        match self.store.audit_tree(TreeRecord::Sequenced)? {
            Some(position) => Ok(Some(position)),
            None => self.nth_position(frontier.size() - 1).map(Some),
        }
    }

    /// Returns whether the tree was built before leaves were indexed.
    fn legacy(&self, frontier: &Frontier) -> Result<bool, AuditError> {
        Ok(frontier.size() > 0 && self.store.audit_tree(TreeRecord::Sequenced)?.is_none())
    }

    /// Returns the position of the `n`-th entry of the log (from 0), by reading in order.
    fn nth_position(&self, n: u64) -> Result<Vec<u8>, AuditError> {
        let mut after: Option<Vec<u8>> = None;
        let mut seen = 0u64;
        loop {
            let from = after.as_deref().map_or(EntriesFrom::Start, EntriesFrom::After);
            let page = self.store.audit_entries(from, BUILD_PAGE)?;
            let Some((last, _)) = page.last() else {
                return Err(AuditError::Corrupt(format!("the log has no entry {n}")));
            };
            if n < seen + page.len() as u64 {
                let index = usize::try_from(n - seen).unwrap_or(usize::MAX);
                return Ok(page[index].0.clone());
            }
            seen += page.len() as u64;
            after = Some(last.clone());
        }
    }

    /// Gives the leaves of a tree built before leaves were indexed their positions, in
    /// pages, so that later reads find them directly. Idempotent.
    async fn index_legacy_leaves(&self) -> Result<(), AuditError> {
        let (_, frontier) = self.frontier()?;
        if !self.legacy(&frontier)? {
            return Ok(());
        }
        let mut leaf = 0u64;
        let mut last: Option<Vec<u8>> = None;
        while leaf < frontier.size() {
            let from = last.as_deref().map_or(EntriesFrom::Start, EntriesFrom::After);
            let page = self.store.audit_entries(from, BUILD_PAGE)?;
            if page.is_empty() {
                return Err(AuditError::Corrupt(format!("the tree has {} entries, the log fewer", frontier.size())));
            }
            let mut batch = Batch::new();
            for (position, _) in page {
                if leaf == frontier.size() {
                    break;
                }
                if leaf.is_multiple_of(LEAF_STRIDE) {
                    batch.push(put_tree(TreeRecord::Leaf(leaf), position.clone()));
                }
                last = Some(position);
                leaf += 1;
            }
            self.store.commit(batch).await?;
        }
        let mut batch = Batch::new();
        batch.push(put_tree(TreeRecord::Sequenced, last.unwrap_or_default()));
        self.store.commit(batch).await?;
        Ok(())
    }

    /// Returns up to `limit` sequenced alerts for `recipient` (`None`: every alert) from
    /// leaf `from` on, in leaf order. An alert is sequenced with its entry, so call
    /// [`AuditLog::build`] first to see the latest.
    pub fn alerts(&self, recipient: Option<&str>, from: u64, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let mut alerts = Vec::new();
        for leaf in self.store.alert_leaves(recipient, from, limit)? {
            let entry = self.entries(leaf, leaf.saturating_add(1))?.pop();
            alerts.push(entry.ok_or_else(|| AuditError::Corrupt(format!("alert {leaf} is past the tree")))?);
        }
        Ok(alerts)
    }

    /// Extends the tree to the end of the log; returns its size. Safe to call from
    /// several tasks: a step that lost a race to another builder changes nothing.
    pub async fn build(&self) -> Result<u64, AuditError> {
        self.index_legacy_leaves().await?;
        loop {
            let (stored, mut frontier) = self.frontier()?;
            let sequenced = self.sequenced(&frontier)?;
            let from = sequenced.as_deref().map_or(EntriesFrom::Start, EntriesFrom::After);
            let page = self.store.audit_entries(from, BUILD_PAGE)?;
            if page.is_empty() {
                return Ok(frontier.size());
            }
            let mut batch = Batch::new();
            batch.require(tree_unchanged(TreeRecord::Frontier, stored));
            for (position, bytes) in &page {
                let leaf = frontier.size();
                let entry = decode_entry(leaf, bytes)?;
                if leaf.is_multiple_of(LEAF_STRIDE) {
                    batch.push(put_tree(TreeRecord::Leaf(leaf), position.clone()));
                }
                // An alert is found by its leaf, once sequenced, by whom it is for.
                if !entry.alert.is_empty() {
                    batch.push(put_alert(None, leaf));
                    for recipient in &entry.alert_to {
                        batch.push(put_alert(Some(recipient), leaf));
                    }
                }
                for (level, index, hash) in frontier.append(entry.leaf_hash()) {
                    batch.push(put_tree(TreeRecord::Subtree { level, index }, hash.to_vec()));
                }
            }
            if let Some((last, _)) = page.last() {
                batch.push(put_tree(TreeRecord::Sequenced, last.clone()));
            }
            batch.push(put_tree(TreeRecord::Frontier, encode_frontier(&frontier)));
            match self.store.commit(batch).await {
                Ok(_) => {}
                // Another builder extended the tree first; read its work and go on.
                Err(StoreError::Conflict { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Builds the tree to the end of the log, signs a checkpoint of it, stores it as the
    /// latest, and returns it. The stored latest checkpoint never goes back: if another
    /// task stored a checkpoint at least as large meanwhile, that one is returned.
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, AuditError> {
        self.build().await?;
        let (_, frontier) = self.frontier()?;
        let checkpoint = Checkpoint { origin: self.origin.clone(), size: frontier.size(), root: frontier.root() };
        let note = checkpoint.sign(&self.signer).map_err(|err| AuditError::Sign(err.to_string()))?;
        loop {
            let previous = self.latest_checkpoint()?;
            if let Some(stored) = &previous {
                let opened = self.open_checkpoint(stored)?;
                if opened.size >= checkpoint.size {
                    return Ok(SignedCheckpoint { checkpoint: opened, note: stored.clone() });
                }
            }
            let mut batch = Batch::new();
            batch.require(tree_unchanged(TreeRecord::Checkpoint, previous.map(String::into_bytes)));
            batch.push(put_tree(TreeRecord::Checkpoint, note.clone().into_bytes()));
            match self.store.commit(batch).await {
                Ok(_) => return Ok(SignedCheckpoint { checkpoint, note }),
                // Another checkpoint was stored first; compare with it.
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    fn open_checkpoint(&self, note: &str) -> Result<Checkpoint, AuditError> {
        Checkpoint::open(note, &self.signer.verifier())
            .map_err(|err| AuditError::Corrupt(format!("latest checkpoint: {err}")))
    }

    /// Returns the latest checkpoint, opened with this log's own key (so a damaged or
    /// foreign one is an error), if one was made.
    pub fn latest_checkpoint_opened(&self) -> Result<Option<Checkpoint>, AuditError> {
        self.latest_checkpoint()?.map(|note| self.open_checkpoint(&note)).transpose()
    }

    /// Returns the latest checkpoint with its signed note, opened with this log's own
    /// key, if one was made.
    pub fn latest_signed_checkpoint(&self) -> Result<Option<SignedCheckpoint>, AuditError> {
        self.latest_checkpoint()?
            .map(|note| Ok(SignedCheckpoint { checkpoint: self.open_checkpoint(&note)?, note }))
            .transpose()
    }

    /// Returns the latest signed checkpoint, if one was made.
    pub fn latest_checkpoint(&self) -> Result<Option<String>, AuditError> {
        let note = self.store.audit_tree(TreeRecord::Checkpoint)?;
        note.map(|bytes| String::from_utf8(bytes).map_err(|_| AuditError::Corrupt("checkpoint is not text".into())))
            .transpose()
    }

    /// Writes `DIR/entries.jsonl` (the entries the latest checkpoint covers) and
    /// `DIR/checkpoint`, making a checkpoint first; calls `progress(done, total)`.
    pub async fn export(&self, dir: &Path, mut progress: impl FnMut(u64, u64)) -> Result<u64, AuditError> {
        let SignedCheckpoint { checkpoint, note } = self.checkpoint().await?;
        let size = checkpoint.size;
        std::fs::create_dir_all(dir)
            .map_err(|err| AuditError::Corrupt(format!("cannot create {}: {err}", dir.display())))?;
        let io = |err: std::io::Error| AuditError::Corrupt(format!("cannot write the export: {err}"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("entries.jsonl")).map_err(io)?);
        let mut done = 0;
        while done < size {
            let page = self.entries(done, size.min(done + BUILD_PAGE as u64))?;
            for entry in page {
                writeln!(out, "{}", ExportLine::new(entry).to_json()).map_err(io)?;
                done += 1;
            }
            progress(done, size);
        }
        out.flush().map_err(io)?;
        std::fs::write(dir.join("checkpoint"), note).map_err(io)?;
        Ok(size)
    }

    /// Returns the inclusion proof of leaf `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(size)?;
        merkle::inclusion_proof(&Subtrees(&self.store), index, size).map_err(proof_error)
    }

    /// Returns the consistency proof between the trees of `old_size` and `new_size`.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(new_size)?;
        merkle::consistency_proof(&Subtrees(&self.store), old_size, new_size).map_err(proof_error)
    }

    fn check_size(&self, size: u64) -> Result<(), AuditError> {
        let built = self.frontier()?.1.size();
        if size > built {
            return Err(AuditError::Range(format!("the tree has {built} entries, not {size}")));
        }
        Ok(())
    }

    /// Returns the stored frontier record and the frontier.
    /// How many entries the tree holds now (sequenced; a checkpoint may cover fewer).
    /// Entries at leaf indexes from it on are committed but not yet in the tree.
    pub fn tree_size(&self) -> Result<u64, AuditError> {
        Ok(self.frontier()?.1.size())
    }

    fn frontier(&self) -> Result<(Option<Vec<u8>>, Frontier), AuditError> {
        match self.store.audit_tree(TreeRecord::Frontier)? {
            None => Ok((None, Frontier::new())),
            Some(bytes) => {
                let frontier = decode_frontier(&bytes).ok_or_else(|| AuditError::Corrupt("frontier record".into()))?;
                Ok((Some(bytes), frontier))
            }
        }
    }
}

/// Reads complete subtrees from the `audit_tree` keyspace.
struct Subtrees<'a>(&'a Store);

impl SubtreeSource for Subtrees<'_> {
    type Error = String;

    fn subtree(&self, level: u32, index: u64) -> Result<Hash, String> {
        let bytes = self.0.audit_tree(TreeRecord::Subtree { level, index }).map_err(|err| err.to_string())?;
        bytes.and_then(|bytes| bytes.try_into().ok()).ok_or_else(|| format!("no subtree {level}/{index}"))
    }
}

fn proof_error(err: ProofError<String>) -> AuditError {
    match err {
        ProofError::Range(reason) => AuditError::Range(reason.to_owned()),
        ProofError::Source(reason) => AuditError::Corrupt(reason),
    }
}

fn decode_entry(leaf_index: u64, bytes: &[u8]) -> Result<AuditEntry, AuditError> {
    crate::stored::decode(leaf_index, bytes)
        .map_err(|err| AuditError::Corrupt(format!("entry {leaf_index} does not decode: {err}")))
}

/// Encodes the frontier: size (8 bytes, big-endian) and the peaks. Do not change.
fn encode_frontier(frontier: &Frontier) -> Vec<u8> {
    let mut bytes = frontier.size().to_be_bytes().to_vec();
    for peak in frontier.peaks() {
        bytes.extend_from_slice(peak);
    }
    bytes
}

fn decode_frontier(bytes: &[u8]) -> Option<Frontier> {
    let size = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let peaks = bytes.get(8..)?.chunks(32).map(|chunk| chunk.try_into().ok()).collect::<Option<Vec<Hash>>>()?;
    Frontier::from_parts(size, peaks)
}

mod check;
mod stored;

pub use check::{AuditCheckReport, CATEGORY_ERASURE_DETAIL, ERASURE_DETAIL, check_log};

#[cfg(test)]
mod tests;
