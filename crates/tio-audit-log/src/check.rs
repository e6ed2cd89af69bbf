//! The audit half of `tio store check`: reads the whole log and changes nothing.
//!
//! Every entry decodes; the leaves are the entries in position order, and every indexed
//! leaf the tree covers is indexed at the position that holds it; the stored Merkle
//! tree (its frontier and every complete subtree hash) is what the entries hash to; the
//! latest signed checkpoint opens under the log's key and its root is the entries'
//! root at its size; and entries and actions match: every stored update has the
//! allowed `publish` entry that names it, and every such entry names a stored update.

use std::collections::HashSet;

use tio_store::audit_records::{EntriesFrom, TreeRecord};
use tio_store::{Problems, Store};

use crate::{AuditError, BUILD_PAGE, LEAF_STRIDE, decode_entry, decode_frontier};
use tio_audit::checkpoint::Checkpoint;
use tio_audit::entry::{Action, Outcome};
use tio_audit::merkle::Frontier;
use tio_audit::note::Verifier;

/// What a check of the audit log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditCheckReport {
    /// Entries read.
    pub entries: u64,
    /// Entries the stored tree covers.
    pub tree_size: u64,
    /// Entries the latest signed checkpoint covers, if there is one.
    pub checkpoint_size: Option<u64>,
    /// Stored updates matched with their publish entry.
    pub updates_matched: u64,
    /// What was found wrong.
    pub problems: Problems,
}

impl AuditCheckReport {
    /// Returns whether the log is healthy.
    pub fn is_healthy(&self) -> bool {
        self.problems.count() == 0
    }

    fn problem(&mut self, text: String) {
        self.problems.add(text);
    }
}

/// Checks the audit log of `store`. With `verifier` (the log's checkpoint key), the
/// latest checkpoint is opened and checked against the entries too; without (a ring
/// with no checkpoint key), it is left out.
pub fn check_log(store: &Store, verifier: Option<&Verifier>) -> Result<AuditCheckReport, AuditError> {
    let mut report = AuditCheckReport::default();
    // Positions are opaque: only the store's engine can tell a gap that is a lost entry.
    for hole in store.audit_log_holes()? {
        report.problem(hole);
    }
    let stored_tree = match store.audit_tree(TreeRecord::Frontier)? {
        None => Frontier::new(),
        Some(bytes) => decode_frontier(&bytes).unwrap_or_else(|| {
            report.problem("the stored tree frontier does not decode".to_owned());
            Frontier::new()
        }),
    };
    report.tree_size = stored_tree.size();
    let checkpoint = latest_checkpoint(store, verifier, &mut report)?;
    report.checkpoint_size = checkpoint.as_ref().map(|checkpoint| checkpoint.size);

    // Where the tree's leaves are (absent in a tree built before leaves were indexed,
    // whose leaves are then simply the first entries in order).
    let sequenced = store.audit_tree(TreeRecord::Sequenced)?;
    let legacy = sequenced.is_none();
    let mut tree = Frontier::new();
    let mut published: HashSet<String> = HashSet::new();
    // Children whose erasure is in the log: their erasure notices were written with it.
    let mut erased: HashSet<String> = HashSet::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let from = after.as_deref().map_or(EntriesFrom::Start, EntriesFrom::After);
        let page = store.audit_entries(from, BUILD_PAGE)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (position, bytes) in page {
            let leaf = tree.size();
            let entry = match decode_entry(leaf, &bytes) {
                Ok(entry) => entry,
                Err(err) => {
                    report.problem(err.to_string());
                    return Ok(report); // The tree cannot be followed past a damaged entry.
                }
            };
            if leaf < stored_tree.size() && !legacy {
                if leaf.is_multiple_of(LEAF_STRIDE) {
                    let indexed = store.audit_tree(TreeRecord::Leaf(leaf))?;
                    if indexed.as_deref() != Some(position.as_slice()) {
                        report.problem(format!("leaf {leaf} of the tree is not indexed at the entry that holds it"));
                        return Ok(report);
                    }
                }
                if leaf + 1 == stored_tree.size() && sequenced.as_deref() != Some(position.as_slice()) {
                    report.problem(format!("the tree's last leaf ({leaf}) is not where sequencing resumes"));
                }
            }
            report.entries += 1;
            // Every record in the update log was committed with one of these: a publish,
            // or a correction or retraction (itself a record in the log).
            let writes_an_update = [Action::Publish, Action::UpdateCorrected, Action::UpdateRetracted]
                .iter()
                .any(|action| entry.action == action.code());
            if entry.action == Action::Admin.code()
                && entry.outcome == Outcome::Allowed.code()
                && (entry.detail.starts_with(ERASURE_DETAIL) || entry.detail.starts_with(CATEGORY_ERASURE_DETAIL))
            {
                erased.insert(entry.child_index.clone());
            }
            if writes_an_update && entry.outcome == Outcome::Allowed.code() && !entry.update_id.is_empty() {
                published.insert(entry.update_id.clone());
            }
            for (level, index, hash) in tree.append(entry.leaf_hash()) {
                if tree.size() > stored_tree.size() {
                    continue; // Not built yet: nothing stored to compare.
                }
                let stored = store.audit_tree(TreeRecord::Subtree { level, index })?;
                if stored.as_deref() != Some(hash.as_slice()) {
                    report.problem(format!("stored subtree {level}/{index} is not what the entries hash to"));
                }
            }
            if tree.size() == stored_tree.size() && tree.root() != stored_tree.root() {
                report.problem(format!("the stored tree root at size {} is not the entries' root", tree.size()));
            }
            if let Some(checkpoint) = &checkpoint
                && tree.size() == checkpoint.size
                && tree.root() != checkpoint.root
            {
                report.problem(format!(
                    "the latest checkpoint's root at size {} is not the entries' root: the log was altered",
                    checkpoint.size
                ));
            }
        }
    }
    if stored_tree.size() > report.entries {
        report.problem(format!(
            "the stored tree covers {} entries but the log holds {}",
            stored_tree.size(),
            report.entries
        ));
    }
    if let Some(checkpoint) = &checkpoint
        && checkpoint.size > report.entries
    {
        report.problem(format!(
            "the latest checkpoint covers {} entries but the log holds {}: the log was cut short",
            checkpoint.size, report.entries
        ));
    }
    match_updates(store, published, &erased, &mut report)?;
    Ok(report)
}

/// Reads and opens the latest signed checkpoint, noting a problem if it fails.
fn latest_checkpoint(
    store: &Store,
    verifier: Option<&Verifier>,
    report: &mut AuditCheckReport,
) -> Result<Option<Checkpoint>, AuditError> {
    let Some(verifier) = verifier else { return Ok(None) };
    let Some(bytes) = store.audit_tree(TreeRecord::Checkpoint)? else { return Ok(None) };
    let Ok(note) = String::from_utf8(bytes) else {
        report.problem("the latest checkpoint is not text".to_owned());
        return Ok(None);
    };
    match Checkpoint::open(&note, verifier) {
        Ok(checkpoint) => Ok(Some(checkpoint)),
        Err(err) => {
            report.problem(format!("the latest checkpoint does not open: {err}"));
            Ok(None)
        }
    }
}

/// How the detail of an erasure's audit entry starts (the broker's admin erasure).
pub const ERASURE_DETAIL: &str = "erase_child ";

/// How the detail of one category's erasure starts (retention, per category).
pub const CATEGORY_ERASURE_DETAIL: &str = "erase_category ";

/// Matches stored updates with the publish entries that name them. A store with no
/// audit entries at all (written by the store alone, never by the broker) is skipped.
fn match_updates(
    store: &Store,
    mut published: HashSet<String>,
    erased: &HashSet<String>,
    report: &mut AuditCheckReport,
) -> Result<(), AuditError> {
    if report.entries == 0 {
        return Ok(());
    }
    let mut unaudited = 0u64;
    // The store enumerates its updates; how a record is laid out is its own business.
    store.for_each_update_id(|id, child, kind| {
        // An erasure notice is recorded by the erasure's own entry, which names the child.
        let audited = match kind {
            Some(tio_store::AmendKind::Erasure) => erased.contains(&child.to_hex()),
            _ => published.remove(&id.to_string()),
        };
        if audited {
            report.updates_matched += 1;
        } else {
            unaudited += 1;
        }
    })?;
    if unaudited > 0 {
        report.problem(format!("{unaudited} stored updates have no publish entry in the audit log"));
    }
    if !published.is_empty() {
        report.problem(format!("{} publish entries name an update that is not stored", published.len()));
    }
    Ok(())
}
