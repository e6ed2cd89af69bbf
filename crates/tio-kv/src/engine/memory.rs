//! An in-memory engine for fast tests. Same semantics as sled, minus durability.
//!
//! It can also hand out positions that are not counters ([`MemoryEngine::sparse`]), in
//! the shape a replicated engine gives (an epoch, then a sequence with gaps), so that
//! the conformance suite and the store's and audit log's tests prove that nothing
//! above the engine reads a position as a dense counter.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{
    Applied, Batch, CommitError, Condition, Engine, Entries, Keyspace, Op, Position, StorageError, StorageErrorKind,
    validate_batch,
};

/// Keyspaces as B-trees behind one lock, so that a batch is trivially atomic.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    state: Mutex<State>,
    shape: PositionShape,
    /// Whether it says other nodes write it (and never announces their commits).
    shared: bool,
}

/// How an engine's positions look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum PositionShape {
    /// A dense counter, 8 bytes big-endian: sled's shape.
    #[default]
    Counter,
    /// `(epoch, sequence)`: 4 + 8 bytes big-endian, the sequence starting high and
    /// stepping by more than one, so that positions have gaps and are not 8 bytes.
    Sparse,
}

#[derive(Debug, Default)]
struct State {
    spaces: BTreeMap<Keyspace, BTreeMap<Vec<u8>, Vec<u8>>>,
    next_position: BTreeMap<Keyspace, u64>,
}

impl MemoryEngine {
    /// Returns an empty engine whose positions are dense counters.
    pub fn new() -> Self {
        MemoryEngine::default()
    }

    /// Returns an empty engine that says other nodes write it, as a shared database
    /// does, yet never announces their commits: for tests of what a node may keep in
    /// memory, with several stores over one engine standing for several nodes whose
    /// commit notices are late.
    pub fn shared() -> Self {
        MemoryEngine { shared: true, ..MemoryEngine::default() }
    }

    /// Returns an empty engine whose positions are `(epoch, sequence)` pairs with gaps.
    pub fn sparse() -> Self {
        MemoryEngine { shape: PositionShape::Sparse, ..MemoryEngine::default() }
    }

    fn position(&self, counter: u64) -> Position {
        match self.shape {
            PositionShape::Counter => counter_position(counter),
            PositionShape::Sparse => {
                const EPOCH: u32 = 7;
                let sequence = 1_000 + counter * 3;
                Position::from_bytes([&EPOCH.to_be_bytes()[..], &sequence.to_be_bytes()[..]].concat())
            }
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StorageError> {
        self.state.lock().map_err(|_| StorageError::new(StorageErrorKind::Io, "memory engine lock poisoned"))
    }
}

/// Encodes a dense log counter as a position: 8 bytes, big-endian, so that byte order
/// is numeric order. Shared by the engines that count. Do not change: stored keys and
/// client-held positions use it.
pub(crate) fn counter_position(counter: u64) -> Position {
    Position::from_bytes(counter.to_be_bytes().to_vec())
}

impl Engine for MemoryEngine {
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock()?.spaces.get(&space).and_then(|tree| tree.get(key).cloned()))
    }

    fn scan(&self, space: Keyspace, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Entries, StorageError> {
        let state = self.lock()?;
        let Some(tree) = state.spaces.get(&space) else { return Ok(Vec::new()) };
        let upper = match end {
            Some(end) => std::ops::Bound::Excluded(end.to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        Ok(tree
            .range((std::ops::Bound::Included(start.to_vec()), upper))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn last(&self, space: Keyspace) -> Result<Option<crate::engine::Entry>, StorageError> {
        let state = self.lock()?;
        Ok(state.spaces.get(&space).and_then(|tree| tree.last_key_value()).map(|(k, v)| (k.clone(), v.clone())))
    }

    fn apply(&self, batch: &Batch) -> Result<Applied, CommitError> {
        validate_batch(batch)?;
        let mut state = self.lock()?;
        for (index, condition) in batch.conditions.iter().enumerate() {
            let holds = match condition {
                Condition::Absent { space, key } => state.spaces.get(space).is_none_or(|tree| !tree.contains_key(key)),
                Condition::Equals { space, key, value } => {
                    state.spaces.get(space).and_then(|tree| tree.get(key)) == Some(value)
                }
            };
            if !holds {
                return Err(CommitError::Conflict { index });
            }
        }
        let mut positions = Vec::with_capacity(batch.append_count());
        for op in &batch.ops {
            match op {
                Op::Put { space, key, value } => {
                    state.spaces.entry(*space).or_default().insert(key.clone(), value.clone());
                }
                Op::Delete { space, key } => {
                    if let Some(tree) = state.spaces.get_mut(space) {
                        tree.remove(key);
                    }
                }
                Op::Append { space, value } => {
                    let counter = state.next_position.entry(*space).or_default();
                    let position = self.position(*counter);
                    *counter += 1;
                    state.spaces.entry(*space).or_default().insert(position.as_bytes().to_vec(), value.clone());
                    positions.push(position);
                }
                Op::PutAtPosition { space, prefix, append, value } => {
                    let mut key = prefix.clone();
                    key.extend_from_slice(positions[*append].as_bytes());
                    state.spaces.entry(*space).or_default().insert(key, value.clone());
                }
                Op::PutPosition { space, key, prefix, append } => {
                    let mut value = prefix.clone();
                    value.extend_from_slice(positions[*append].as_bytes());
                    state.spaces.entry(*space).or_default().insert(key.clone(), value);
                }
            }
        }
        Ok(Applied { positions })
    }

    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(0)
    }

    fn shared(&self) -> bool {
        self.shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_conformance_suite() {
        super::super::conformance::run_all(&|| MemoryEngine::new());
    }

    /// Issue 13: positions that are not counters pass the same suite.
    #[test]
    fn passes_the_conformance_suite_with_positions_that_are_not_counters() {
        super::super::conformance::run_all(&MemoryEngine::sparse);
    }
}
