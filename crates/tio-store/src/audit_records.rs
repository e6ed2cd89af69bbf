//! The audit log's records: its entries, in the `audit` log, and its Merkle tree's
//! records, in `audit_tree`. The audit crate owns what the bytes mean (entries, hashes,
//! the frontier, signed notes); this module owns where they are kept, so that the audit
//! crate never names a keyspace or builds a key.
//!
//! Tree keys: `frontier`, `checkpoint`, `sequenced`; `l` and a big-endian leaf index
//! for an indexed leaf; `s`, a level byte and a big-endian index for a complete subtree.

use crate::engine::{Entries, Keyspace, key_after};
use crate::{Condition, Op, Store, StoreError};

/// A record of the audit log's Merkle tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeRecord {
    /// The tree's frontier: its size and the peaks.
    Frontier,
    /// The latest signed checkpoint.
    Checkpoint,
    /// The position of the last entry in the tree, where sequencing resumes.
    Sequenced,
    /// The position of the entry at a leaf index (the log indexes some leaves).
    Leaf(u64),
    /// A complete subtree's hash, by level and index.
    Subtree {
        /// The level (0 for leaves).
        level: u32,
        /// The subtree's index at its level.
        index: u64,
    },
}

impl TreeRecord {
    /// Returns the record's key. Do not change: stored trees are keyed by these.
    fn key(self) -> Vec<u8> {
        match self {
            TreeRecord::Frontier => b"frontier".to_vec(),
            TreeRecord::Checkpoint => b"checkpoint".to_vec(),
            TreeRecord::Sequenced => b"sequenced".to_vec(),
            TreeRecord::Leaf(index) => [&[b'l'][..], &index.to_be_bytes()].concat(),
            TreeRecord::Subtree { level, index } => {
                // Levels stop at 64 (a tree of 2^64 leaves); a byte holds them.
                [&[b's', u8::try_from(level).unwrap_or(u8::MAX)][..], &index.to_be_bytes()].concat()
            }
        }
    }
}

/// Where a read of the audit entries starts.
#[derive(Debug, Clone, Copy)]
pub enum EntriesFrom<'a> {
    /// At the first entry.
    Start,
    /// At the entry at this position.
    At(&'a [u8]),
    /// After the entry at this position.
    After(&'a [u8]),
}

/// Returns the operation that appends an encoded audit entry to the log, to go in the
/// batch of the action it records.
pub fn append_entry(bytes: Vec<u8>) -> Op {
    Op::Append { space: Keyspace::Audit, value: bytes }
}

/// Returns the operation that stores a tree record.
pub fn put_tree(record: TreeRecord, value: Vec<u8>) -> Op {
    Op::Put { space: Keyspace::AuditTree, key: record.key(), value }
}

/// The first byte of an alert's index key in the `audit_tree` keyspace. Do not change.
const ALERT_KEY: u8 = b'a';

/// The index key of the alert at `leaf` for `recipient` (`None`: the index of every
/// alert, which auditors and admins read). Agency ids hold no zero byte, so the
/// recipient ends at one.
fn alert_key(recipient: Option<&str>, leaf: u64) -> Vec<u8> {
    [&[ALERT_KEY][..], recipient.unwrap_or_default().as_bytes(), &[0], &leaf.to_be_bytes()].concat()
}

/// Returns the operation that indexes the entry at `leaf` as an alert for `recipient`
/// (`None`: among every alert). The audit log writes it when it sequences the entry.
pub fn put_alert(recipient: Option<&str>, leaf: u64) -> Op {
    Op::Put { space: Keyspace::AuditTree, key: alert_key(recipient, leaf), value: Vec::new() }
}

/// Returns the precondition that a tree record is still `value` as read (`None`:
/// still absent).
pub fn tree_unchanged(record: TreeRecord, value: Option<Vec<u8>>) -> Condition {
    match value {
        Some(value) => Condition::Equals { space: Keyspace::AuditTree, key: record.key(), value },
        None => Condition::Absent { space: Keyspace::AuditTree, key: record.key() },
    }
}

impl Store {
    /// Returns up to `limit` audit entries from `from` on, in log order, each with its
    /// (opaque) position.
    pub fn audit_entries(&self, from: EntriesFrom<'_>, limit: usize) -> Result<Entries, StoreError> {
        let start = match from {
            EntriesFrom::Start => Vec::new(),
            EntriesFrom::At(position) => position.to_vec(),
            EntriesFrom::After(position) => key_after(position),
        };
        Ok(self.engine.scan(Keyspace::Audit, &start, None, limit)?)
    }

    /// Returns the leaf indexes of up to `limit` alerts for `recipient` (`None`: every
    /// alert) from leaf `from` on, in order.
    pub fn alert_leaves(&self, recipient: Option<&str>, from: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let start = alert_key(recipient, from);
        let end = alert_key(recipient, u64::MAX);
        let prefix = start.len() - 8;
        let mut leaves: Vec<u64> = self
            .engine
            .scan(Keyspace::AuditTree, &start, Some(&end), limit)?
            .into_iter()
            .filter_map(|(key, _)| key.get(prefix..).and_then(|bytes| <[u8; 8]>::try_from(bytes).ok()))
            .map(u64::from_be_bytes)
            .collect();
        // The scan's end is exclusive; the last leaf there can be is looked up alone.
        if leaves.len() < limit && self.engine.get(Keyspace::AuditTree, &end)?.is_some() {
            leaves.push(u64::MAX);
        }
        Ok(leaves)
    }

    /// Returns a tree record, if it is stored.
    pub fn audit_tree(&self, record: TreeRecord) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.engine.get(Keyspace::AuditTree, &record.key())?)
    }

    /// Returns what the engine knows of entries lost from the audit log (positions are
    /// opaque, so only the engine can tell a gap that is a lost entry).
    pub fn audit_log_holes(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.engine.log_holes(Keyspace::Audit)?)
    }
}

/// Returns a tree record of a backup with the entry position it holds (an indexed
/// leaf's, or where sequencing resumes) translated by `audit`, for a restore onto
/// another engine.
pub(crate) fn restored_tree_entry(
    key: Vec<u8>,
    value: Vec<u8>,
    audit: &crate::backup::PositionMap,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let holds_position = key == TreeRecord::Sequenced.key() || (key.len() == 9 && key[0] == b'l');
    if holds_position { Ok((key, audit.get(&value)?)) } else { Ok((key, value)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys stored trees were written with. Do not change these fixtures.
    #[test]
    fn golden_keys() {
        assert_eq!(TreeRecord::Frontier.key(), b"frontier");
        assert_eq!(TreeRecord::Checkpoint.key(), b"checkpoint");
        assert_eq!(TreeRecord::Sequenced.key(), b"sequenced");
        assert_eq!(TreeRecord::Leaf(258).key(), b"l\0\0\0\0\0\0\x01\x02");
        assert_eq!(TreeRecord::Subtree { level: 3, index: 1 }.key(), b"s\x03\0\0\0\0\0\0\0\x01");
        assert_eq!(alert_key(Some("gp"), 258), b"agp\0\0\0\0\0\0\0\x01\x02");
        assert_eq!(alert_key(None, 1), b"a\0\0\0\0\0\0\0\0\x01");
    }

    #[tokio::test]
    async fn alerts_are_read_per_recipient_in_leaf_order_from_a_leaf() {
        let store = Store::in_memory(crate::keys::KeyRing::generate().unwrap()).unwrap();
        let mut batch = crate::Batch::new();
        for (recipient, leaf) in
            [(Some("gp"), 9), (Some("gp"), 3), (Some("gpx"), 4), (None, 3), (None, 4), (Some("gp"), u64::MAX)]
        {
            batch.push(put_alert(recipient, leaf));
        }
        store.commit(batch).await.unwrap();
        assert_eq!(store.alert_leaves(Some("gp"), 0, 10).unwrap(), [3, 9, u64::MAX], "not gpx's");
        assert_eq!(store.alert_leaves(Some("gp"), 4, 10).unwrap(), [9, u64::MAX]);
        assert_eq!(store.alert_leaves(Some("gp"), 0, 1).unwrap(), [3]);
        assert_eq!(store.alert_leaves(None, 0, 10).unwrap(), [3, 4]);
        assert!(store.alert_leaves(Some("school"), 0, 10).unwrap().is_empty());
        // The tree's own records are not alerts.
        assert!(store.audit_tree(TreeRecord::Frontier).unwrap().is_none());
    }

    #[tokio::test]
    async fn entries_are_read_from_a_start_at_or_after_a_position() {
        let store = Store::in_memory(crate::keys::KeyRing::generate().unwrap()).unwrap();
        let mut batch = crate::Batch::new();
        for entry in [b"a", b"b", b"c"] {
            batch.push(append_entry(entry.to_vec()));
        }
        batch.push(put_tree(TreeRecord::Frontier, b"f".to_vec()));
        store.commit(batch).await.unwrap();
        let all = store.audit_entries(EntriesFrom::Start, 10).unwrap();
        let values = |page: &[(Vec<u8>, Vec<u8>)]| page.iter().map(|(_, value)| value.clone()).collect::<Vec<_>>();
        assert_eq!(values(&all), [b"a", b"b", b"c"]);
        assert_eq!(values(&store.audit_entries(EntriesFrom::At(&all[1].0), 10).unwrap()), [b"b", b"c"]);
        assert_eq!(values(&store.audit_entries(EntriesFrom::After(&all[1].0), 1).unwrap()), [b"c"]);
        assert_eq!(store.audit_tree(TreeRecord::Frontier).unwrap(), Some(b"f".to_vec()));
        assert!(store.audit_tree(TreeRecord::Checkpoint).unwrap().is_none());
        assert!(store.audit_log_holes().unwrap().is_empty());

        let mut stale = crate::Batch::new();
        stale.require(tree_unchanged(TreeRecord::Frontier, None));
        stale.push(put_tree(TreeRecord::Frontier, b"g".to_vec()));
        assert!(matches!(store.commit(stale).await, Err(StoreError::Conflict { .. })));
        let mut fresh = crate::Batch::new();
        fresh.require(tree_unchanged(TreeRecord::Frontier, Some(b"f".to_vec())));
        fresh.push(put_tree(TreeRecord::Frontier, b"g".to_vec()));
        store.commit(fresh).await.unwrap();
    }
}
