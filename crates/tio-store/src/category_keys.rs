//! Category keys: each category of a child's record has a data key of its own, so that
//! one category can be erased (its key destroyed, as retention asks per category) while
//! the others are kept.
//!
//! A category key is sealed under the child's data key and kept in the `child_keys`
//! keyspace beside it, under the child's blind index and the category's code, so that
//! an engine keeps it where the child's key is kept: in a place it overwrites when the
//! key goes (the logged engine's slots), never in the append-only log. Erasing the
//! child destroys its key and with it every category key.
//!
//! Each key has a generation, written in the records sealed under it (update records
//! from version 3). Erasing a category replaces its key by a tombstone that remembers
//! the generation, so that a value published afterwards gets the next generation's
//! key and the erased values stay unreadable. Values written before category keys
//! existed (versions 1 and 2, generation 0) are sealed under the child's key: erasing
//! their category marks them erased, and the store no longer opens them, but their
//! bytes are destroyed only with the child's key.

use tio_core::{Category, Timestamp};

use crate::engine::{Batch, CommitError, Condition, Keyspace, Op, prefix_end};
use zeroize::Zeroizing;

use crate::keys::{SecretKey, open_with, seal_with};
use crate::store::{ChildIndex, ChildRef, DataKeys, MAX_RACE_RETRIES, Store, StoreError, latest_key};
use crate::update_record::{CHILD_INDEX_BYTES, UpdateRecord, category_code, category_from_code};

/// The format byte of a category key's stored state. Do not change: it is stored.
const STATE_FORMAT: u8 = 1;

/// The flag of a state whose category was erased at least once: its values sealed
/// under the child's key (generation 0) are erased too.
const CHILD_KEY_VALUES_ERASED: u8 = 1;

/// Bytes of a state before the sealed key: format, flags, generation.
const STATE_HEADER_BYTES: usize = 6;

/// Where a category key lives in `child_keys`: the child's index, then the category's
/// code (a child's own key is under the index alone).
pub(crate) fn category_key_key(child: ChildIndex, category: Category) -> Vec<u8> {
    let mut key = child.0.to_vec();
    key.push(category_code(category));
    key
}

/// Whether a `child_keys` key is a child's own (rather than one of its category keys).
pub(crate) fn is_child_key(key: &[u8]) -> bool {
    key.len() == CHILD_INDEX_BYTES
}

/// The associated data of a sealed category key: what it is, whose, and which
/// generation, so that it cannot be moved to another child, category or generation.
/// Do not change.
fn key_context(child: ChildIndex, category: Category, generation: u32) -> Vec<u8> {
    let mut context = b"tio/category-key/".to_vec();
    context.extend_from_slice(&child.0);
    context.push(category_code(category));
    context.extend_from_slice(&generation.to_be_bytes());
    context
}

/// One category's key for one child, as stored: its live key, or what was erased.
#[derive(Debug, Clone, Default)]
pub(crate) struct CategoryKey {
    /// The stored state, for a precondition that it is unchanged; `None` before the
    /// category's first key.
    raw: Option<Vec<u8>>,
    /// The category was erased at least once (so its generation-0 values are erased).
    erased_before: bool,
    /// The generation of the live key, or of the last one erased; 0 before the first.
    generation: u32,
    /// The live key; `None` before the first key and after an erasure.
    key: Option<SecretKey>,
}

impl CategoryKey {
    /// Reads a stored state, opening its key with the child's.
    fn open(
        raw: Vec<u8>,
        child_key: &SecretKey,
        child: ChildIndex,
        category: Category,
    ) -> Result<CategoryKey, StoreError> {
        let damaged = || StoreError::Corrupt("a category key's stored state does not decode".to_owned());
        let [STATE_FORMAT, flags, g0, g1, g2, g3] = *raw.get(..STATE_HEADER_BYTES).ok_or_else(damaged)? else {
            return Err(damaged());
        };
        if flags & !CHILD_KEY_VALUES_ERASED != 0 {
            return Err(damaged());
        }
        let generation = u32::from_be_bytes([g0, g1, g2, g3]);
        let sealed = &raw[STATE_HEADER_BYTES..];
        let key = match sealed.is_empty() {
            true => None,
            false => {
                let bytes = Zeroizing::new(open_with(child_key, &key_context(child, category, generation), sealed)?);
                Some(SecretKey::from_slice(&bytes).ok_or_else(damaged)?)
            }
        };
        if generation == 0 && key.is_some() {
            return Err(damaged());
        }
        Ok(CategoryKey { erased_before: flags & CHILD_KEY_VALUES_ERASED != 0, generation, key, raw: Some(raw) })
    }

    /// The key that opens a record sealed under `generation` (0: the child's key,
    /// `child_key`), or `None` if that record's category was erased since.
    pub(crate) fn opening(&self, generation: u32, child_key: &SecretKey) -> Option<SecretKey> {
        match generation {
            0 => (!self.erased_before).then(|| child_key.clone()),
            generation if generation == self.generation => self.key.clone(),
            _ => None,
        }
    }

    /// The live key, for the tests that try every key the store holds.
    #[cfg(test)]
    pub(crate) fn live(&self) -> Option<&SecretKey> {
        self.key.as_ref()
    }

    /// Whether the category's values were erased at least once.
    pub(crate) fn erased_before(&self) -> bool {
        self.erased_before
    }

    /// The precondition that the stored state is still this one.
    fn unchanged(&self, child: ChildIndex, category: Category) -> Condition {
        let key = category_key_key(child, category);
        match &self.raw {
            None => Condition::Absent { space: Keyspace::ChildKeys, key },
            Some(raw) => Condition::Equals { space: Keyspace::ChildKeys, key, value: raw.clone() },
        }
    }
}

/// Encodes a state: format, flags, generation, then the key sealed under the child's
/// (nothing once erased).
fn encode_state(erased_before: bool, generation: u32, sealed_key: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(STATE_HEADER_BYTES + sealed_key.len());
    bytes.push(STATE_FORMAT);
    bytes.push(if erased_before { CHILD_KEY_VALUES_ERASED } else { 0 });
    bytes.extend_from_slice(&generation.to_be_bytes());
    bytes.extend_from_slice(sealed_key);
    bytes
}

/// The key a new value of a category is sealed under, with what its batch must hold.
pub(crate) struct Sealing {
    /// The key's generation (written in the record).
    pub(crate) generation: u32,
    /// The key.
    pub(crate) key: SecretKey,
    /// The batch commits only if the category's key is still this one (so that a value
    /// is never sealed under a key an erasure destroyed meanwhile), and, for a new key,
    /// only if the child's key is unchanged.
    pub(crate) conditions: Vec<Condition>,
    /// A new key's stored state.
    pub(crate) ops: Vec<Op>,
    /// Whether this makes the category's next key (the cache forgets its state once
    /// committed).
    pub(crate) created: bool,
}

impl Store {
    /// Returns the key state of the child's `category`, opened with the child's key,
    /// from the cache or the store.
    pub(crate) fn category_key(
        &self,
        child: ChildIndex,
        category: Category,
        child_key: &SecretKey,
    ) -> Result<CategoryKey, StoreError> {
        let generation = {
            let mut cache = self.key_cache();
            if let Some(state) = cache.category(child, category) {
                return Ok(state.clone());
            }
            cache.generation()
        };
        let state = match self.engine.get(Keyspace::ChildKeys, &category_key_key(child, category))? {
            None => CategoryKey::default(),
            Some(raw) => CategoryKey::open(raw, child_key, child, category)?,
        };
        // Only a live key is remembered. A state without one (no key yet, or erased) is
        // exactly what a publish replaces with a new key, and the publish forgets the
        // cached state only after its commit: remembered, a reader between that commit
        // and the forgetting (a delivery woken by the commit) would find no key for the
        // new value and take it for erased, skipping it for good.
        if state.key.is_some() {
            self.key_cache().keep_category(generation, child, category, &state);
        }
        Ok(state)
    }

    /// Returns the key to seal a new value of the child's `category` under: the live
    /// one, or a new one of the next generation. `new_child` says that the child's key
    /// is made in the same batch (so nothing of the child is stored yet).
    pub(crate) fn sealing_key(
        &self,
        child: ChildIndex,
        category: Category,
        child_key: &SecretKey,
        new_child: bool,
    ) -> Result<Sealing, StoreError> {
        let state = if new_child { CategoryKey::default() } else { self.category_key(child, category, child_key)? };
        let unchanged = state.unchanged(child, category);
        if let Some(key) = &state.key {
            return Ok(Sealing {
                generation: state.generation,
                key: key.clone(),
                conditions: vec![unchanged],
                ops: Vec::new(),
                created: false,
            });
        }
        let generation = state
            .generation
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("a category key has run out of generations".to_owned()))?;
        let key = SecretKey::generate()?;
        let sealed = seal_with(child_key, &key_context(child, category, generation), key.expose())?;
        let mut conditions = vec![unchanged];
        if !new_child {
            // The category key is sealed under the child's: never under one an erasure
            // of the child destroyed meanwhile.
            let Some(wrapped) = self.engine.get(Keyspace::ChildKeys, &child.0)? else {
                return Err(StoreError::Conflict { index: 0 });
            };
            conditions.push(Condition::Equals { space: Keyspace::ChildKeys, key: child.0.to_vec(), value: wrapped });
        }
        let put = Op::Put {
            space: Keyspace::ChildKeys,
            key: category_key_key(child, category),
            value: encode_state(state.erased_before, generation, &sealed),
        };
        Ok(Sealing { generation, key, conditions, ops: vec![put], created: true })
    }

    /// Forgets the cached key state of the child's `category`, after a commit changed it.
    pub(crate) fn forget_category_key(&self, child: ChildIndex, category: Category) {
        self.key_cache().forget_category(child, category);
    }

    /// Returns the categories of the child that were erased on their own (its key still
    /// stands), in category order.
    pub(crate) fn erased_categories(&self, child: ChildIndex) -> Result<Vec<Category>, StoreError> {
        let end = prefix_end(&child.0);
        let Some(child_key) = self.data_key(child)? else { return Ok(Vec::new()) };
        let mut erased = Vec::new();
        for (key, _) in self.engine.scan(Keyspace::ChildKeys, &child.0, end.as_deref(), 1 + Category::ALL.len())? {
            if let Some(category) = key.get(CHILD_INDEX_BYTES).and_then(|code| category_from_code(*code))
                && self.category_key(child, category, &child_key)?.erased_before()
            {
                erased.push(category);
            }
        }
        Ok(erased)
    }

    /// Returns the preconditions and operations that remove every category key of the
    /// child, for the batch that destroys the child's key: each as read, and none made
    /// meanwhile.
    pub(crate) fn drop_category_keys(&self, child: ChildIndex) -> Result<(Vec<Condition>, Vec<Op>), StoreError> {
        let end = prefix_end(&child.0);
        let stored = self.engine.scan(Keyspace::ChildKeys, &child.0, end.as_deref(), 1 + Category::ALL.len())?;
        let mut conditions = Vec::new();
        let mut ops = Vec::new();
        for category in Category::ALL {
            let key = category_key_key(child, category);
            match stored.iter().find(|(stored, _)| *stored == key) {
                Some((_, raw)) => {
                    conditions.push(Condition::Equals {
                        space: Keyspace::ChildKeys,
                        key: key.clone(),
                        value: raw.clone(),
                    });
                    ops.push(Op::Delete { space: Keyspace::ChildKeys, key });
                }
                None => conditions.push(Condition::Absent { space: Keyspace::ChildKeys, key }),
            }
        }
        Ok((conditions, ops))
    }

    /// Erases one category of the child's record (retention ruled per category): its
    /// key is destroyed, so no value of it can be read again (the profile shows none,
    /// as for an erased child, whose index entries also stay); an erasure notice for each of its values is appended to the update
    /// log (recorded as erased by `erased_by` at `at`), which the past recipients'
    /// streams tell them of; and `extra` (the erasure's audit entry) is committed with
    /// it. The other categories, and the child's number and date of birth, stay.
    ///
    /// Commits only if the category's latest value is still `latest` (the position the
    /// caller decided on; `None` for no latest value): a value published meanwhile
    /// restarts its retention, so the erasure does not go ahead and `false` is
    /// returned, as it is when the child is erased or there is nothing to erase.
    /// Durable when it returns.
    pub async fn erase_category_with(
        &self,
        child: &(impl ChildRef + ?Sized),
        category: Category,
        latest: Option<&crate::Position>,
        extra: Vec<Op>,
        erased_by: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let index = child.index_in(self);
        let latest_key = latest_key(index, category);
        for _ in 0..MAX_RACE_RETRIES {
            let Some(child_key) = self.data_key(index)? else { return Ok(false) };
            let Some(wrapped) = self.engine.get(Keyspace::ChildKeys, &index.0)? else { return Ok(false) };
            let stored_latest = self.engine.get(Keyspace::Latest, &latest_key)?;
            if stored_latest.as_deref() != latest.map(crate::Position::as_bytes) {
                return Ok(false);
            }
            // Read from the store, not the cache: the precondition is on what is stored.
            let state = match self.engine.get(Keyspace::ChildKeys, &category_key_key(index, category))? {
                None => CategoryKey::default(),
                Some(raw) => CategoryKey::open(raw, &child_key, index, category)?,
            };
            let (unchanged, notices, count) = self.erasure_notices(index, Some(category), erased_by, at)?;
            if count == 0 && state.key.is_none() && state.erased_before {
                return Ok(false);
            }
            let mut batch = Batch::new();
            batch
                .require(Condition::Equals { space: Keyspace::ChildKeys, key: index.0.to_vec(), value: wrapped })
                .require(state.unchanged(index, category))
                .require(unchanged)
                .require(match &stored_latest {
                    None => Condition::Absent { space: Keyspace::Latest, key: latest_key.clone() },
                    Some(position) => {
                        Condition::Equals { space: Keyspace::Latest, key: latest_key.clone(), value: position.clone() }
                    }
                });
            batch.ops.extend(notices);
            batch.push(Op::Put {
                space: Keyspace::ChildKeys,
                key: category_key_key(index, category),
                value: encode_state(true, state.generation, &[]),
            });
            batch.ops.extend(extra.iter().cloned());
            match self.commit_raw(batch).await {
                Ok(_) => {
                    self.forget_category_key(index, category);
                    return Ok(true);
                }
                Err(CommitError::Conflict { .. }) => {
                    self.forget_category_key(index, category);
                    continue;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(StoreError::Conflict { index: 0 })
    }

    /// Returns whether `record`'s payload can be opened (its child and its category's
    /// key generation stand), and the key that opens it.
    pub(crate) fn record_key(
        &self,
        record: &UpdateRecord,
        keys: &mut DataKeys,
    ) -> Result<Option<SecretKey>, StoreError> {
        let child = ChildIndex(record.child_index);
        let Some(child_key) = keys.get(self, child)?.cloned() else { return Ok(None) };
        let state = keys.category(self, child, record.category, &child_key)?;
        Ok(state.opening(record.key_generation, &child_key))
    }
}

#[cfg(test)]
mod tests;
