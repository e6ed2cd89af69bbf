//! The typed store the broker uses: updates, profiles and the log, encrypted at rest.
//!
//! Keys are blind indexes and values are sealed under the child's data key, so nothing
//! personal is written in plain text; one request's changes go in one atomic batch
//! through group commit, so nothing is acknowledged before it is durable and a crash
//! never leaves half of a request.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tio_core::{AgencyId, Category, Date, FieldViolation, NhsNumber, Timestamp, limits};

use crate::category_keys::{CategoryKey, is_child_key};
use crate::engine::memory::MemoryEngine;
use crate::engine::{
    Batch, CommitError, Condition, Engine, ForeignCommits, Keyspace, Op, Position, StorageError, Touched, key_after,
    prefix_end,
};
use crate::keys::{KeyError, KeyRing, SecretKey, open_with, seal_with};
use crate::update_record::{
    AmendKind, Amends, CHILD_INDEX_BYTES, UPDATE_ID_BYTES, UpdateRecord, category_code, decode_amendment_payload,
    decode_payload, encode_payload,
};
use crate::{CommitStats, GroupCommit};

/// Blind-index labels. Do not change: stored keys are derived with them.
const NHS_NUMBER_LABEL: &str = "tio/nhs-number";
const IDEMPOTENCY_LABEL: &str = "tio/idempotency";
const CONTENT_LABEL: &str = "tio/content";
const TOKEN_LABEL: &str = "tio/token";

/// How often a commit is retried after losing a race (another writer created the
/// child's key, or used the idempotency key, first).
pub(crate) const MAX_RACE_RETRIES: usize = 4;

/// The index of an append's precondition that its idempotency key is new: the first.
const IDEMPOTENCY_CONDITION: usize = 0;

/// A child's keyed blind index: how the store finds a child without storing its NHS
/// number. `Display` shows the first 8 bytes in hex, enough for a log line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildIndex(pub [u8; CHILD_INDEX_BYTES]);

impl fmt::Display for ChildIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl ChildIndex {
    /// Returns the whole index as 64 lowercase hex digits, as audit entries hold it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads an index as [`ChildIndex::to_hex`] writes it.
    pub fn from_hex(text: &str) -> Option<ChildIndex> {
        let bytes = hex::decode(text).ok()?;
        Some(ChildIndex(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for ChildIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChildIndex({self})")
    }
}

/// A child as the store finds it: by its NHS number, or past the edge as a [`Child`],
/// whose blind index was computed once.
pub trait ChildRef: fmt::Debug + Sync {
    /// The child's NHS number.
    fn number(&self) -> &NhsNumber;
    /// The child's blind index in `store`.
    fn index_in(&self, store: &Store) -> ChildIndex;
}

impl ChildRef for NhsNumber {
    fn number(&self) -> &NhsNumber {
        self
    }

    fn index_in(&self, store: &Store) -> ChildIndex {
        store.child_index(self)
    }
}

/// A child past the edge: its NHS number and its blind index, computed once
/// ([`Store::child`]), so that a request's reads and writes about the child compute no
/// keyed hash again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    number: NhsNumber,
    index: ChildIndex,
}

impl Child {
    /// The child's blind index.
    pub fn index(&self) -> ChildIndex {
        self.index
    }
}

impl ChildRef for Child {
    fn number(&self) -> &NhsNumber {
        &self.number
    }

    fn index_in(&self, _store: &Store) -> ChildIndex {
        self.index
    }
}

/// The broker's id for an update: 128 random bits, shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpdateId(pub [u8; UPDATE_ID_BYTES]);

impl fmt::Display for UpdateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for UpdateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpdateId({self})")
    }
}

/// Why a store operation failed. Messages never contain personal data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // ---- CLIENT ERRORS ----
    /// A field is out of bounds; nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(FieldViolation),
    /// The idempotency key was used before with different content; nothing was written.
    #[error("idempotency key was already used with different content")]
    IdempotencyMismatch,
    /// A precondition of a committed batch did not hold (a concurrent change); nothing
    /// of the batch was written.
    #[error("a concurrent change came first (precondition {index} of the batch)")]
    Conflict {
        /// Which precondition failed.
        index: usize,
    },

    // ---- INTERNAL ERRORS ----
    /// Stored data failed to decode or authenticate.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// A key operation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The engine failed (including a full disk); nothing was acknowledged.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<CommitError> for StoreError {
    fn from(err: CommitError) -> Self {
        match err {
            CommitError::Storage(storage) => StoreError::Storage(storage),
            CommitError::Conflict { index } => StoreError::Conflict { index },
            CommitError::Invalid(reason) => StoreError::Corrupt(format!("invalid batch: {reason}")),
        }
    }
}

/// One update to store.
#[derive(Debug, Clone)]
pub struct NewUpdate<'a> {
    /// The child.
    pub child: &'a dyn ChildRef,
    /// The category.
    pub category: Category,
    /// The encoded category value (opaque to the store), 1 byte to 64 KiB.
    pub value: &'a [u8],
    /// The publisher's own reference, at most 256 bytes.
    pub source_reference: &'a str,
    /// The publishing agency.
    pub publisher: &'a AgencyId,
    /// The publisher's idempotency key, 1 to 128 bytes.
    pub idempotency_key: &'a str,
    /// The commit time to record.
    pub committed_at: Timestamp,
    /// The child's date of birth, when the update states it (an identity value): kept
    /// beside the child's number for the decisions that count the child's age. An
    /// update without one leaves the one stored.
    pub date_of_birth: Option<Date>,
}

/// The result of [`Store::append_update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The update's id.
    pub update_id: UpdateId,
    /// Its position.
    pub position: Position,
    /// True when this repeats an earlier append with the same idempotency key and content.
    pub duplicate: bool,
    /// When it was committed: for a repeat, when the original was.
    pub committed_at: Timestamp,
}

/// A stored update, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpdate {
    /// Its position.
    pub position: Position,
    /// Its id.
    pub update_id: UpdateId,
    /// The child.
    pub child: ChildIndex,
    /// The category.
    pub category: Category,
    /// The publishing agency's id.
    pub publisher: String,
    /// When it was committed.
    pub committed_at: Timestamp,
    /// The publisher's reference and the value; `None` once the child was erased.
    pub content: Option<UpdateContent>,
    /// For a correction or a retraction, the update it amends.
    pub amends: Option<Amends>,
}

/// The sealed part of an update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateContent {
    /// The publisher's reference.
    pub source_reference: String,
    /// The encoded category value (empty for a retraction).
    pub value: Vec<u8>,
    /// For a correction or a retraction, the publisher's reason; empty otherwise.
    pub reason: String,
}

/// Preconditions and operations to commit with an update, in the same batch.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// Further preconditions; if one fails, nothing is written.
    pub conditions: Vec<Condition>,
    /// Further operations; appends take append indexes from 1 on.
    pub ops: Vec<Op>,
}

/// A sealed per-child record, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    /// Its key after the child's blind index.
    pub suffix: Vec<u8>,
    /// What was sealed.
    pub plaintext: Vec<u8>,
    /// The stored bytes, for a precondition that it is unchanged.
    pub raw: Vec<u8>,
}

/// What another node's commit may have changed of what a node keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignChange {
    /// The registry: agencies and revoked certificates.
    pub registry: bool,
}

/// The encrypted durable store.
pub struct Store {
    pub(crate) engine: Arc<dyn Engine>,
    commit: GroupCommit,
    keys: RwLock<KeyRing>,
    data_keys: Arc<std::sync::Mutex<KeyCache>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if need be) the store in `dir` on the engine `options` names,
    /// with `keys`.
    pub fn open(dir: &Path, options: &crate::StoreOptions, keys: KeyRing) -> Result<Store, StoreError> {
        Store::with_engine(options.open_engine(dir)?, keys)
    }

    /// Returns an empty in-memory store, for tests.
    pub fn in_memory(keys: KeyRing) -> Result<Store, StoreError> {
        Store::with_engine(Arc::new(MemoryEngine::new()), keys)
    }

    /// Returns `nodes` stores over one empty in-memory database that says other nodes
    /// write it and never announces their commits, standing for broker nodes on a
    /// shared database whose commit notices are late: for tests of what a node keeps.
    pub fn in_memory_nodes(keys: KeyRing, nodes: usize) -> Result<Vec<Store>, StoreError> {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::shared());
        (0..nodes).map(|_| Store::with_engine(engine.clone(), keys.clone())).collect()
    }

    /// Returns a store over any engine.
    pub fn with_engine(engine: Arc<dyn Engine>, keys: KeyRing) -> Result<Store, StoreError> {
        let commit = GroupCommit::start(engine.clone())
            .map_err(|err| StorageError::from_io("cannot start commit thread", &err))?;
        // On a database other nodes share, another node's erasure or rotation reaches
        // this cache by the notice of its commit, which empties it, and a commit to any
        // child's records forgets every child's; a notice lost on the way is covered by
        // every key's short life here (records go with their keys).
        let lifetime = engine.shared().then_some(SHARED_KEY_LIFETIME);
        let data_keys = Arc::new(std::sync::Mutex::new(KeyCache::holding(KEY_CACHE_ENTRIES, lifetime)));
        if engine.shared() {
            let cache = Arc::downgrade(&data_keys);
            engine.watch_foreign_commits(Arc::new(move |touched: Touched| {
                let Some(cache) = cache.upgrade() else { return };
                let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if touched.contains(Keyspace::ChildKeys) {
                    cache.forget(None);
                } else if RECORD_SPACES.iter().any(|space| touched.contains(*space)) {
                    cache.forget_all_records();
                }
            }));
        }
        Ok(Store { engine, commit, keys: RwLock::new(keys), data_keys })
    }

    /// Checks that the store can reach its data now (on PostgreSQL, that the database
    /// answers within 2 s), for health checks.
    pub fn reachable(&self) -> Result<(), StoreError> {
        Ok(self.engine.reachable()?)
    }

    /// Whether other broker nodes write the same store (a shared database): then what
    /// this node holds in memory must be read again now and then, or when
    /// [`Store::watch_foreign_commits`] says so.
    pub fn shared(&self) -> bool {
        self.engine.shared()
    }

    /// Calls `wake` after another node commits to the shared store, saying what of
    /// what a node keeps in memory it may have changed. Best effort (see
    /// [`Engine::watch_foreign_commits`]): the news can come late or not at all, so a
    /// node also reads again now and then. Called on the engine's threads: `wake` must
    /// return quickly.
    pub fn watch_foreign_commits(&self, wake: std::sync::Arc<dyn Fn(ForeignChange) + Send + Sync>) {
        let translate: ForeignCommits = std::sync::Arc::new(move |touched: Touched| {
            wake(ForeignChange { registry: touched.contains(Keyspace::Agencies) });
        });
        self.engine.watch_foreign_commits(translate);
    }

    /// Returns the bytes the store occupies on disk (0 for a store in memory).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.engine.size_on_disk()?)
    }

    /// Sets the observer told of every group commit (for metrics); the first call wins.
    pub fn set_commit_observer(&self, observer: Arc<dyn crate::CommitObserver>) -> bool {
        self.commit.set_observer(observer)
    }

    /// The commit path, for what plugs into it.
    pub(crate) fn commit_path(&self) -> &GroupCommit {
        &self.commit
    }

    /// Returns the group commit counters.
    pub fn commit_stats(&self) -> CommitStats {
        self.commit.stats()
    }

    /// Returns a keyed tag (HMAC-SHA-256 under the ring's index key, apart from every
    /// blind index by its label) of `payload`, for the tokens the broker hands out and
    /// must later recognise as its own, such as page tokens.
    pub fn token_tag(&self, payload: &[u8]) -> [u8; 32] {
        self.keys().blind_index(TOKEN_LABEL, payload)
    }

    /// Returns the original append that an idempotency record names, with the original
    /// commit time (read from the record's plain header, nothing decrypted), or
    /// `IdempotencyMismatch` if the content differs.
    fn previous_append(&self, existing: &[u8], content_mac: &[u8; 32]) -> Result<Appended, StoreError> {
        let damaged = || StoreError::Corrupt("an idempotency record does not decode".to_owned());
        let stored_mac = existing.get(..32).ok_or_else(damaged)?;
        if stored_mac != content_mac {
            return Err(StoreError::IdempotencyMismatch);
        }
        let update_id: [u8; UPDATE_ID_BYTES] =
            existing.get(32..32 + UPDATE_ID_BYTES).and_then(|b| b.try_into().ok()).ok_or_else(damaged)?;
        let position = Position::from_bytes(existing.get(32 + UPDATE_ID_BYTES..).ok_or_else(damaged)?.to_vec());
        let record = self.engine.get(Keyspace::Updates, position.as_bytes())?.ok_or_else(damaged)?;
        let record = UpdateRecord::decode(&record)
            .ok_or_else(|| StoreError::Corrupt("an update record does not decode".to_owned()))?;
        let committed_at = Timestamp::from_unix_micros(record.committed_at_micros);
        Ok(Appended { update_id: UpdateId(update_id), position, duplicate: true, committed_at })
    }

    /// Returns the child's blind index.
    pub fn child_index(&self, child: &NhsNumber) -> ChildIndex {
        ChildIndex(self.keys().blind_index(NHS_NUMBER_LABEL, child.digits().as_bytes()))
    }

    /// Returns the child past the edge: its number with its blind index.
    pub fn child(&self, number: &NhsNumber) -> Child {
        Child { number: *number, index: self.child_index(number) }
    }

    /// Returns the child with blind index `index`, for a delivery to a recipient
    /// entitled to its NHS number; `None` once the child is erased.
    pub fn child_at(&self, index: ChildIndex) -> Result<Option<Child>, StoreError> {
        let Some(digits) = self.child_nhs_number(index)? else { return Ok(None) };
        let number = NhsNumber::parse_checked(&digits)
            .map_err(|_| StoreError::Corrupt("a sealed NHS number does not parse".to_owned()))?;
        Ok(Some(Child { number, index }))
    }

    /// Returns the child's data key, from the cache or unwrapped from the store; `None`
    /// if the child has none (never seen, or erased).
    pub(crate) fn data_key(&self, child: ChildIndex) -> Result<Option<SecretKey>, StoreError> {
        let generation = match self.cached_data_key(child) {
            Ok(key) => return Ok(Some(key)),
            Err(generation) => generation,
        };
        let wrapped = self.engine.get(Keyspace::ChildKeys, &child.0)?;
        self.unwrap_data_key(child, generation, wrapped)
    }

    /// Returns the child's data key from a cache hit, or else the generation to read its
    /// wrapped key under ([`Store::unwrap_data_key`]).
    pub(crate) fn cached_data_key(&self, child: ChildIndex) -> Result<SecretKey, u64> {
        let mut cache = self.key_cache();
        cache.key(child).ok_or(cache.generation)
    }

    /// Unwraps the child's data key as read (`None`: the child has none) and keeps it
    /// if nothing was forgotten since `generation` was read.
    pub(crate) fn unwrap_data_key(
        &self,
        child: ChildIndex,
        generation: u64,
        wrapped: Option<Vec<u8>>,
    ) -> Result<Option<SecretKey>, StoreError> {
        let Some(wrapped) = wrapped else { return Ok(None) };
        let key = self.keys().unwrap(&wrapped, &child.0)?;
        self.key_cache().keep(generation, child, &key);
        Ok(Some(key))
    }

    pub(crate) fn key_cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        // Every change is an insert or a removal: a poisoned lock is still consistent.
        self.data_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns the child's NHS number sealed under its data key, for an audit entry:
    /// readable while the child's key exists, unreadable once the child is erased.
    /// `None` when the store holds no key for the child (nothing was ever published
    /// about it); the entry then names the child by blind index alone.
    ///
    /// While the child's key is kept in memory the sealing is kept with it and given
    /// again: the entries that carry it name the child by blind index too, so a
    /// sealing shared between them tells nothing more.
    pub fn seal_child_reference(&self, child: &(impl ChildRef + ?Sized)) -> Result<Option<Vec<u8>>, StoreError> {
        let index = child.index_in(self);
        let generation = {
            let mut cache = self.key_cache();
            if let Some(sealed) = cache.reference(index) {
                return Ok(Some(sealed));
            }
            cache.generation()
        };
        let mut keys = DataKeys::default();
        let Some(data_key) = keys.get(self, index)? else { return Ok(None) };
        let sealed = seal_with(data_key, &child_reference_context(index), child.number().digits().as_bytes())?;
        self.key_cache().keep_reference(generation, index, &sealed);
        Ok(Some(sealed))
    }

    /// Opens a reference made by [`Store::seal_child_reference`]: the NHS number's ten
    /// digits, or `None` once the child has been erased.
    pub fn open_child_reference(&self, index: ChildIndex, sealed: &[u8]) -> Result<Option<String>, StoreError> {
        let mut keys = DataKeys::default();
        let Some(data_key) = keys.get(self, index)? else { return Ok(None) };
        let digits = open_with(data_key, &child_reference_context(index), sealed)?;
        String::from_utf8(digits)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("a sealed child reference does not decode".to_owned()))
    }

    /// Makes sure the store holds a data key for the child, creating one (durably) if
    /// not, so that records about the child can be sealed before its first update.
    /// After an erasure this makes a new key; the erased records stay unreadable.
    pub async fn ensure_child_key(&self, child: &(impl ChildRef + ?Sized)) -> Result<(), StoreError> {
        let index = child.index_in(self);
        // From the cache when the child was seen lately; otherwise the key read now is
        // the one the request's next step needs.
        if self.data_key(index)?.is_some() {
            return Ok(());
        }
        let key = SecretKey::generate()?;
        let wrapped = self.keys().wrap(&key, &index.0)?;
        let mut batch = Batch::new();
        batch
            .require(Condition::Absent { space: Keyspace::ChildKeys, key: index.0.to_vec() })
            .push(Op::Put { space: Keyspace::ChildKeys, key: index.0.to_vec(), value: wrapped })
            .push(child_number_op(&key, child, index)?);
        match self.submit(batch).await {
            // Another writer created it first: theirs is as good.
            Ok(_) | Err(CommitError::Conflict { .. }) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    /// Returns the NHS number (ten digits) of the child with blind index `index`, for a
    /// delivery to a recipient entitled to it; `None` once the child is erased.
    pub(crate) fn child_nhs_number(&self, index: ChildIndex) -> Result<Option<String>, StoreError> {
        let mut keys = DataKeys::default();
        let Some(data_key) = keys.get(self, index)? else { return Ok(None) };
        let Some(sealed) = self.engine.get(Keyspace::Children, &index.0)? else { return Ok(None) };
        let digits = open_with(data_key, &sealed_record_context(Keyspace::Children, &index.0), &sealed)?;
        String::from_utf8(digits)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("a sealed NHS number does not decode".to_owned()))
    }

    /// Returns the child's date of birth as last published, if any; `None` too once the
    /// child is erased.
    pub fn date_of_birth(&self, child: &(impl ChildRef + ?Sized)) -> Result<Option<Date>, StoreError> {
        self.date_of_birth_at(child.index_in(self))
    }

    /// [`Store::date_of_birth`] by blind index.
    pub(crate) fn date_of_birth_at(&self, index: ChildIndex) -> Result<Option<Date>, StoreError> {
        let mut keys = DataKeys::default();
        let Some(data_key) = keys.get(self, index)? else { return Ok(None) };
        let sealed = self.engine.get(Keyspace::Children, &date_of_birth_key(index))?;
        open_date_of_birth(data_key, index, sealed)
    }

    /// Returns the position of the latest stored update, if any.
    pub fn last_update_position(&self) -> Result<Option<Position>, StoreError> {
        Ok(self.engine.last(Keyspace::Updates)?.map(|(key, _)| Position::from_bytes(key)))
    }

    /// Returns up to `limit` latest-value pointers after `after` (exclusive), in key
    /// order: each child's latest update of each category, across all children.
    pub fn latest_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Position)>, StoreError> {
        let start = after.map(key_after).unwrap_or_default();
        Ok(self
            .engine
            .scan(Keyspace::Latest, &start, None, limit)?
            .into_iter()
            .map(|(key, position)| (key, Position::from_bytes(position)))
            .collect())
    }

    /// Returns whether `update` is still its child's latest value of its category.
    pub fn is_latest(&self, update: &StoredUpdate) -> Result<bool, StoreError> {
        let current = self.engine.get(Keyspace::Latest, &latest_key(update.child, update.category))?;
        Ok(current.as_deref() == Some(update.position.as_bytes()))
    }

    /// Returns the precondition that `update` is still its child's latest value of its
    /// category (a disclosure that rests on it being current is made on it).
    pub fn still_latest(&self, update: &StoredUpdate) -> Condition {
        Condition::Equals {
            space: Keyspace::Latest,
            key: latest_key(update.child, update.category),
            value: update.position.as_bytes().to_vec(),
        }
    }

    /// Returns the update at `position`, opened (its content `None` once the child is
    /// erased), or `None` if there is none.
    pub fn update_at(&self, position: &Position) -> Result<Option<StoredUpdate>, StoreError> {
        let Some(record) = self.engine.get(Keyspace::Updates, position.as_bytes())? else { return Ok(None) };
        Ok(Some(self.open_record(position.clone(), &record, &mut DataKeys::default())?))
    }

    /// Counts the updates stored after `cursor` (all of them without one), up to `max`:
    /// a subscription's lag.
    pub fn count_updates_after(&self, cursor: Option<&[u8]>, max: usize) -> Result<u64, StoreError> {
        let start = cursor.map(key_after).unwrap_or_default();
        Ok(self.engine.scan(Keyspace::Updates, &start, None, max)?.len() as u64)
    }

    /// Returns whether `position` is the position of a stored update: true for every
    /// position the store handed out, false for bytes it never did.
    pub fn holds_update(&self, position: &Position) -> Result<bool, StoreError> {
        Ok(self.engine.get(Keyspace::Updates, position.as_bytes())?.is_some())
    }

    /// Returns the full store key of a per-child record: the child's blind index, then
    /// `suffix`. For preconditions on records written with [`Store::sealed_put`].
    pub(crate) fn child_record_key(&self, child: &(impl ChildRef + ?Sized), suffix: &[u8]) -> Vec<u8> {
        [&child.index_in(self).0[..], suffix].concat()
    }

    /// Returns the operation that stores `plaintext` about `child` in `space` (consents
    /// or care relationships) under the child's blind index and `suffix`, sealed under
    /// the child's data key and bound to where it lives. The child must have a key
    /// ([`Store::ensure_child_key`]).
    pub(crate) fn sealed_put(
        &self,
        child: &(impl ChildRef + ?Sized),
        space: Keyspace,
        suffix: &[u8],
        plaintext: &[u8],
    ) -> Result<Op, StoreError> {
        check_sealed_space(space)?;
        let index = child.index_in(self);
        let mut keys = DataKeys::default();
        let data_key = keys
            .get(self, index)?
            .ok_or_else(|| StoreError::Corrupt("no data key for the child; ensure_child_key first".to_owned()))?;
        let key = [&index.0[..], suffix].concat();
        let value = seal_with(data_key, &sealed_record_context(space, &key), plaintext)?;
        Ok(Op::Put { space, key, value })
    }

    /// Returns the records about `child` in `space` whose suffix starts with `prefix`, in
    /// key order, opened; empty once the child is erased.
    pub(crate) fn read_sealed(
        &self,
        child: &(impl ChildRef + ?Sized),
        space: Keyspace,
        prefix: &[u8],
    ) -> Result<Vec<SealedRecord>, StoreError> {
        check_sealed_space(space)?;
        let index = child.index_in(self);
        let mut keys = DataKeys::default();
        let Some(data_key) = keys.get(self, index)? else { return Ok(Vec::new()) };
        let start = [&index.0[..], prefix].concat();
        let end = prefix_end(&start);
        let mut records = Vec::new();
        let mut from = start.clone();
        loop {
            let page = self.engine.scan(space, &from, end.as_deref(), SEALED_PAGE)?;
            let Some((last, _)) = page.last() else { break };
            from = key_after(last);
            // A short page is the last: no second scan to find the end (a decision
            // reads four of these per child, and a delivery's decision is on the path).
            let more = page.len() == SEALED_PAGE;
            records.extend(open_sealed(data_key, index, space, page)?);
            if !more {
                break;
            }
        }
        Ok(records)
    }

    /// Stores one update: the sealed record, the child's index entry, the latest value
    /// of the category and the idempotency record, plus the child's data key if it is
    /// the first update about the child, in one atomic, durable commit.
    ///
    /// The same idempotency key (per publisher) with the same content returns the
    /// original id and position; with different content it fails and writes nothing.
    pub async fn append_update(&self, update: NewUpdate<'_>) -> Result<Appended, StoreError> {
        self.append_update_with(update, &[]).await
    }

    /// Like [`Store::append_update`], with `extra` operations committed in the same
    /// atomic batch (the audit entry that records the publish). Extra appends take
    /// append indexes from 1 on; index 0 is the update itself. A repeated idempotency
    /// key commits nothing, extra operations included.
    pub async fn append_update_with(&self, update: NewUpdate<'_>, extra: &[Op]) -> Result<Appended, StoreError> {
        self.append_update_and(update, |_| Extra { conditions: Vec::new(), ops: extra.to_vec() }).await
    }

    /// Like [`Store::append_update_with`], with the extra preconditions and operations
    /// made from the update's id (an audit entry names the update it records). `extra`
    /// runs once per attempt; a repeated idempotency key commits none of it.
    pub async fn append_update_and(
        &self,
        update: NewUpdate<'_>,
        extra: impl Fn(&UpdateId) -> Extra,
    ) -> Result<Appended, StoreError> {
        validate(&update)?;
        let child = update.child.index_in(self);
        let (idempotency_key, content_mac) = {
            let keys = self.keys();
            let mut scoped = update.publisher.as_str().as_bytes().to_vec();
            scoped.push(0);
            scoped.extend_from_slice(&keys.blind_index(IDEMPOTENCY_LABEL, update.idempotency_key.as_bytes()));
            let mut content = child.0.to_vec();
            content.push(category_code(update.category));
            content.extend_from_slice(&encode_payload(update.source_reference, update.value));
            (scoped, keys.blind_index(CONTENT_LABEL, &content))
        };

        let mut last_conflict = 0;
        // A repeated key is found by the batch's first precondition rather than by a read
        // before it: repeats are rare, and the read cost every publish a sled lookup.
        for _ in 0..MAX_RACE_RETRIES {
            let (data_key, new_wrapped_key) = match self.data_key(child)? {
                Some(key) => (key, None),
                None => {
                    let key = SecretKey::generate()?;
                    let wrapped = self.keys().wrap(&key, &child.0)?;
                    (key, Some(wrapped))
                }
            };
            let sealing = match self.sealing_key(child, update.category, &data_key, new_wrapped_key.is_some()) {
                Ok(sealing) => sealing,
                // The child was erased since its key was read: look again.
                Err(StoreError::Conflict { index }) => {
                    last_conflict = index;
                    self.key_cache().forget(Some(child));
                    continue;
                }
                Err(other) => return Err(other),
            };
            let mut update_id = [0u8; UPDATE_ID_BYTES];
            getrandom::fill(&mut update_id).map_err(|err| KeyError::Random(err.to_string()))?;
            let mut record = UpdateRecord {
                update_id,
                child_index: child.0,
                category: update.category,
                committed_at_micros: update.committed_at.unix_micros(),
                publisher: update.publisher.as_str().to_owned(),
                sealed: Vec::new(),
                amends: None,
                key_generation: sealing.generation,
            };
            record.sealed = seal_with(
                &sealing.key,
                &record.associated_data(),
                &encode_payload(update.source_reference, update.value),
            )?;

            let latest_key = latest_key(child, update.category);
            let mut idempotency_value = content_mac.to_vec();
            idempotency_value.extend_from_slice(&update_id);
            let mut batch = Batch::new();
            // First, so that its index is IDEMPOTENCY_CONDITION.
            batch.require(Condition::Absent { space: Keyspace::Idempotency, key: idempotency_key.clone() });
            if let Some(wrapped) = &new_wrapped_key {
                batch.require(Condition::Absent { space: Keyspace::ChildKeys, key: child.0.to_vec() });
                batch.push(Op::Put { space: Keyspace::ChildKeys, key: child.0.to_vec(), value: wrapped.clone() });
                batch.push(child_number_op(&data_key, update.child, child)?);
            }
            if let Some(born) = update.date_of_birth {
                batch.push(date_of_birth_op(&data_key, child, born)?);
            }
            batch.conditions.extend(sealing.conditions);
            batch.ops.extend(sealing.ops);
            batch
                .push(Op::Append { space: Keyspace::Updates, value: record.encode() })
                .push(Op::PutAtPosition {
                    space: Keyspace::UpdatesByChild,
                    prefix: child.0.to_vec(),
                    append: 0,
                    value: update_id.to_vec(),
                })
                .push(Op::PutPosition { space: Keyspace::Latest, key: latest_key, prefix: Vec::new(), append: 0 })
                .push(Op::PutPosition {
                    space: Keyspace::Idempotency,
                    key: idempotency_key.clone(),
                    prefix: idempotency_value,
                    append: 0,
                });
            let extra = extra(&UpdateId(update_id));
            batch.conditions.extend(extra.conditions);
            batch.ops.extend(extra.ops);
            let committed = self.submit(batch).await;
            if sealing.created || committed.is_err() {
                // Its key state changed, or may have: read it afresh next time.
                self.forget_category_key(child, update.category);
            }
            match committed {
                Ok(applied) => {
                    let position = applied
                        .positions
                        .into_iter()
                        .next()
                        .ok_or_else(|| StoreError::Corrupt("no position assigned".to_owned()))?;
                    return Ok(Appended {
                        update_id: UpdateId(update_id),
                        position,
                        duplicate: false,
                        committed_at: update.committed_at,
                    });
                }
                Err(CommitError::Conflict { index: IDEMPOTENCY_CONDITION }) => {
                    match self.engine.get(Keyspace::Idempotency, &idempotency_key)? {
                        Some(existing) => return self.previous_append(&existing, &content_mac),
                        None => continue,
                    }
                }
                // Lost a race: the child's key (or what `extra` depends on) changed since
                // we looked. Look again.
                Err(CommitError::Conflict { index }) => last_conflict = index,
                Err(other) => return Err(other.into()),
            }
        }
        // Contention, not damage: the caller is told to retry (ABORTED), as for any
        // concurrent change that came first.
        Err(StoreError::Conflict { index: last_conflict })
    }

    /// Returns the latest value of every category of the child, in category order;
    /// empty if the child is unknown or erased.
    pub fn profile(&self, child: &(impl ChildRef + ?Sized)) -> Result<Vec<StoredUpdate>, StoreError> {
        let index = child.index_in(self);
        let end = prefix_end(&index.0);
        let pointers = self.engine.scan(Keyspace::Latest, &index.0, end.as_deref(), 64)?;
        let mut keys = DataKeys::default();
        let mut profile = Vec::with_capacity(pointers.len());
        for (_, position) in pointers {
            let position = Position::from_bytes(position);
            let stored = self.read_update(&position, Some(index), &mut keys)?;
            if stored.content.is_some() {
                profile.push(stored);
            }
        }
        Ok(profile)
    }

    /// Returns up to `limit` updates after `after` (from the start if `None`), in order,
    /// decrypted; erased children's updates come with no content.
    pub fn updates_after(&self, after: Option<&Position>, limit: usize) -> Result<Vec<StoredUpdate>, StoreError> {
        let start = after.map(|position| key_after(position.as_bytes())).unwrap_or_default();
        let mut keys = DataKeys::default();
        self.engine
            .scan(Keyspace::Updates, &start, None, limit)?
            .into_iter()
            .map(|(position, record)| self.open_record(Position::from_bytes(position), &record, &mut keys))
            .collect()
    }

    /// Returns up to `limit` of one child's updates, oldest first: the by-child index
    /// as erasure reads it, for the tests that check that index.
    #[cfg(test)]
    pub(crate) fn updates_for_child(
        &self,
        child: &(impl ChildRef + ?Sized),
        limit: usize,
    ) -> Result<Vec<StoredUpdate>, StoreError> {
        let index = child.index_in(self);
        let end = prefix_end(&index.0);
        let mut keys = DataKeys::default();
        self.engine
            .scan(Keyspace::UpdatesByChild, &index.0, end.as_deref(), limit)?
            .into_iter()
            .map(|(key, _)| {
                self.read_update(&Position::from_bytes(key[CHILD_INDEX_BYTES..].to_vec()), Some(index), &mut keys)
            })
            .collect()
    }

    /// Commits any batch durably, for records that are not updates (audit entries of
    /// reads and refusals, the audit tree). Returns the positions of its appends.
    pub async fn commit(&self, batch: Batch) -> Result<Vec<Position>, StoreError> {
        Ok(self.submit(batch).await?.positions)
    }

    /// Every commit goes this way: through the group commit, then the records kept of
    /// each child the batch touched are forgotten before its writer hears (whatever the
    /// outcome: a failed sync may leave the batch applied), so that no decision begun
    /// after a commit is answered can be made on what was true before it.
    ///
    /// A failed precondition on a child's records also forgets them: on a store other
    /// nodes write, it is how this node learns that what it kept is out of date.
    async fn submit(&self, batch: Batch) -> Result<crate::engine::Applied, CommitError> {
        let touched = children_touched(&batch);
        let required = if self.shared() { children_required(&batch) } else { Vec::new() };
        let committed = self.commit.commit(batch).await;
        if !touched.is_empty() {
            self.key_cache().forget_records(&touched);
        }
        if matches!(committed, Err(CommitError::Conflict { .. })) && !required.is_empty() {
            self.key_cache().forget_records(&required);
        }
        committed
    }

    /// Commits a batch durably, telling a failed precondition apart (by its index).
    pub(crate) async fn commit_raw(&self, batch: Batch) -> Result<crate::engine::Applied, CommitError> {
        self.submit(batch).await
    }

    /// Erases a child by destroying its data key: its records stay (the log and its
    /// indexes remain consistent) but can no longer be read, and an erasure notice for
    /// each of its values is appended to the update log at `at`. Returns whether a key
    /// existed. Durable when it returns.
    pub async fn erase_child(&self, child: &(impl ChildRef + ?Sized), at: Timestamp) -> Result<bool, StoreError> {
        self.erase_child_with(child, Vec::new(), "", at).await
    }

    /// Like [`Store::erase_child`], committing in the same batch an erasure notice in
    /// the update log for each of the child's values (recorded as erased by `erased_by`
    /// at `at`; the past recipients' streams tell them) and then `extra` (the erasure's
    /// audit entry, whose appends come after the notices'); nothing if there is no key
    /// to destroy.
    pub async fn erase_child_with(
        &self,
        child: &(impl ChildRef + ?Sized),
        extra: Vec<Op>,
        erased_by: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let index = child.index_in(self);
        for _ in 0..MAX_RACE_RETRIES {
            let Some(wrapped) = self.engine.get(Keyspace::ChildKeys, &index.0)? else { return Ok(false) };
            let mut batch = Batch::new();
            // A rotation may re-wrap the key meanwhile: the erasure goes again, on the new one.
            batch.require(Condition::Equals { space: Keyspace::ChildKeys, key: index.0.to_vec(), value: wrapped });
            batch.push(Op::Delete { space: Keyspace::ChildKeys, key: index.0.to_vec() });
            let (unchanged, notices, _) = self.erasure_notices(index, None, erased_by, at)?;
            batch.require(unchanged);
            batch.ops.extend(notices);
            let (kept, dropped) = self.drop_category_keys(index)?;
            batch.conditions.extend(kept);
            batch.ops.extend(dropped);
            batch.ops.extend(extra.iter().cloned());
            match self.submit(batch).await {
                Ok(_) => {
                    self.key_cache().forget(Some(index));
                    return Ok(true);
                }
                Err(CommitError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(StoreError::Conflict { index: 0 })
    }

    /// Returns a copy of the key ring in use, to change and hand back to
    /// [`Store::replace_keys`].
    pub fn key_ring(&self) -> KeyRing {
        self.keys().clone()
    }

    /// Replaces the key ring (after a KEK was added or retired). The new ring must hold
    /// every version that any stored data key is wrapped under.
    pub fn replace_keys(&self, keys: KeyRing) {
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        // Unwrapped keys do not change with the ring, but a rotation is the moment to
        // hold no more of them than the ring's own.
        self.key_cache().forget(None);
    }

    /// Re-wraps every child data key that is not under the current KEK version, while
    /// the store stays in use, calling `progress(done, total)` as it goes. Repeats until
    /// no key is left under an old version (keys created during a pass are caught by
    /// the next), so that the old version can then be retired. Returns how many keys it
    /// re-wrapped.
    pub async fn rewrap_all(&self, mut progress: impl FnMut(u64, u64)) -> Result<u64, StoreError> {
        const PAGE: usize = 512;
        const MAX_PASSES: usize = 16;
        let mut rewrapped = 0u64;
        for _ in 0..MAX_PASSES {
            let current = self.keys().current_version();
            let stale = self.count_stale_keys(current)?;
            if stale == 0 {
                return Ok(rewrapped);
            }
            let mut done = 0u64;
            let mut start = Vec::new();
            loop {
                let page = self.engine.scan(Keyspace::ChildKeys, &start, None, PAGE)?;
                let Some((last, _)) = page.last() else { break };
                start = key_after(last);
                for (child, wrapped) in page {
                    // Category keys are sealed under their child's key, not a KEK.
                    if !is_child_key(&child) || KeyRing::wrapped_version(&wrapped) == Some(current) {
                        continue;
                    }
                    let new_wrapped = {
                        let keys = self.keys();
                        keys.wrap(&keys.unwrap(&wrapped, &child)?, &child)?
                    };
                    let mut batch = Batch::new();
                    // Only if unchanged since read: an erasure or another re-wrap wins.
                    batch
                        .require(Condition::Equals { space: Keyspace::ChildKeys, key: child.clone(), value: wrapped })
                        .push(Op::Put { space: Keyspace::ChildKeys, key: child, value: new_wrapped });
                    match self.submit(batch).await {
                        Ok(_) => rewrapped += 1,
                        Err(CommitError::Conflict { .. }) => {}
                        Err(other) => return Err(other.into()),
                    }
                    done += 1;
                    progress(done, stale);
                }
            }
        }
        Err(StoreError::Corrupt("data keys kept appearing under an old key version".to_owned()))
    }

    /// Counts data keys wrapped under KEK `version`; a version can be retired at 0.
    pub fn keys_under_version(&self, version: u32) -> Result<u64, StoreError> {
        self.count_child_keys(|wrapped| KeyRing::wrapped_version(wrapped) == Some(version))
    }

    /// Counts data keys not wrapped under `current`.
    fn count_stale_keys(&self, current: u32) -> Result<u64, StoreError> {
        self.count_child_keys(|wrapped| KeyRing::wrapped_version(wrapped) != Some(current))
    }

    fn count_child_keys(&self, matches: impl Fn(&[u8]) -> bool) -> Result<u64, StoreError> {
        let mut count = 0;
        check::scan_all(self, Keyspace::ChildKeys, |key, wrapped| {
            count += u64::from(is_child_key(&key) && matches(&wrapped));
        })?;
        Ok(count)
    }

    /// Writes a consistent backup of the store, which stays in use, to `out` (see
    /// [`crate::backup::write_backup_to`]; `spool_dir` holds a temporary file of the
    /// indexes). Commits wait only while the indexes are copied. Blocks: call it from a
    /// blocking task.
    pub fn backup_to(
        &self,
        spool_dir: &Path,
        out: impl std::io::Write,
        progress: impl FnMut(u64),
    ) -> Result<crate::backup::BackupSummary, StoreError> {
        Ok(crate::backup::write_backup_to(&self.commit, self.engine.as_ref(), spool_dir, out, progress)?)
    }

    /// Stops the commit thread after finishing queued commits.
    pub fn shutdown(self) {
        self.commit.shutdown();
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, KeyRing> {
        // The ring is replaced whole under the write lock, so a poisoned lock still
        // holds a complete ring.
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the update at `position`; when reached through a child's index, checks that
    /// the record is that child's, so that a record moved under another child is refused.
    fn read_update(
        &self,
        position: &Position,
        expected: Option<ChildIndex>,
        keys: &mut DataKeys,
    ) -> Result<StoredUpdate, StoreError> {
        let record = self
            .engine
            .get(Keyspace::Updates, position.as_bytes())?
            .ok_or_else(|| StoreError::Corrupt("an index points at a missing update".to_owned()))?;
        let stored = self.open_record(position.clone(), &record, keys)?;
        if expected.is_some_and(|child| child != stored.child) {
            return Err(StoreError::Corrupt("an index points at another child's update".to_owned()));
        }
        Ok(stored)
    }

    pub(crate) fn open_record(
        &self,
        position: Position,
        bytes: &[u8],
        keys: &mut DataKeys,
    ) -> Result<StoredUpdate, StoreError> {
        let record = UpdateRecord::decode(bytes)
            .ok_or_else(|| StoreError::Corrupt("an update record does not decode".to_owned()))?;
        let child = ChildIndex(record.child_index);
        // An erasure notice seals nothing; any other record opens while its child's key
        // and its category key's generation stand.
        let key = match record.amends {
            Some(Amends { kind: AmendKind::Erasure, .. }) => None,
            _ => self.record_key(&record, keys)?,
        };
        let content = match key {
            None => None,
            Some(key) => {
                let plain = open_with(&key, &record.associated_data(), &record.sealed)?;
                let decoded = match record.amends {
                    None => decode_payload(&plain).map(|(source, value)| (String::new(), source, value)),
                    Some(_) => decode_amendment_payload(&plain),
                };
                let (reason, source_reference, value) =
                    decoded.ok_or_else(|| StoreError::Corrupt("an update payload does not decode".to_owned()))?;
                Some(UpdateContent { source_reference, value, reason })
            }
        };
        Ok(StoredUpdate {
            position,
            update_id: UpdateId(record.update_id),
            child,
            category: record.category,
            publisher: record.publisher,
            committed_at: Timestamp::from_unix_micros(record.committed_at_micros),
            content,
            amends: record.amends,
        })
    }
}

/// Data keys used during one read, so each child's key and each of its category keys
/// is looked up once.
#[derive(Default)]
pub(crate) struct DataKeys {
    children: HashMap<ChildIndex, Option<SecretKey>>,
    categories: HashMap<(ChildIndex, Category), CategoryKey>,
}

impl DataKeys {
    /// The child's key; `None` once the child is erased.
    pub(crate) fn get(&mut self, store: &Store, child: ChildIndex) -> Result<Option<&SecretKey>, StoreError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.children.entry(child) {
            slot.insert(store.data_key(child)?);
        }
        Ok(self.children.get(&child).and_then(Option::as_ref))
    }

    /// The key state of the child's `category`, opened with `child_key`.
    pub(crate) fn category(
        &mut self,
        store: &Store,
        child: ChildIndex,
        category: Category,
        child_key: &SecretKey,
    ) -> Result<&CategoryKey, StoreError> {
        match self.categories.entry((child, category)) {
            std::collections::hash_map::Entry::Occupied(slot) => Ok(slot.into_mut()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                Ok(slot.insert(store.category_key(child, category, child_key)?))
            }
        }
    }
}

/// How many children's unwrapped data keys the store keeps.
const KEY_CACHE_ENTRIES: usize = 4096;

/// The unwrapped data keys of recently used children, so that a publish or a read does
/// not read its child's wrapped key and unwrap it every time. Bounded (the oldest goes
/// first); a key is zeroized when it leaves (`SecretKey` zeroizes on drop). An erasure
/// or a key rotation moves the generation on, and a key unwrapped before that is not
/// kept: a reader that raced an erasure cannot put the destroyed key back.
pub(crate) struct KeyCache {
    /// The most children's keys kept.
    capacity: usize,
    /// How long a key is kept, if not for as long as there is room.
    lifetime: Option<std::time::Duration>,
    /// Each key with when it was kept and the child's number sealed under it.
    keys: HashMap<ChildIndex, KeptKey>,
    /// The key states of the categories of the children in `keys`, which go with them.
    categories: HashMap<(ChildIndex, Category), CategoryKey>,
    /// What decisions read about the children in `keys` (plaintext, so it goes with
    /// them, and on a store other nodes write lives no longer than their keys).
    records: HashMap<ChildIndex, std::sync::Arc<crate::child_records::ChildRecords>>,
    order: std::collections::VecDeque<ChildIndex>,
    generation: u64,
}

/// How long a key is kept on a database other nodes share: the longest another node's
/// erasure or rotation can go unnoticed here should the notice of its commit be lost.
const SHARED_KEY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(1);

/// A child's unwrapped key, with when it was kept and what is sealed under it once.
struct KeptKey {
    key: SecretKey,
    since: std::time::Instant,
    /// The child's number sealed for audit entries ([`Store::seal_child_reference`]):
    /// every entry about the child carries its blind index anyway, so one sealing
    /// serves them all while the key is kept (sealing for every delivery entry was an
    /// eighth of a stream's CPU in catch-up), and it goes with the key.
    reference: Option<Vec<u8>>,
}

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache::holding(KEY_CACHE_ENTRIES, None)
    }
}

impl KeyCache {
    /// An empty cache of at most `capacity` children's keys, each kept at most
    /// `lifetime` if given.
    pub(crate) fn holding(capacity: usize, lifetime: Option<std::time::Duration>) -> Self {
        KeyCache {
            capacity,
            lifetime,
            keys: HashMap::new(),
            categories: HashMap::new(),
            records: HashMap::new(),
            order: std::collections::VecDeque::new(),
            generation: 0,
        }
    }

    /// The generation: read it before a key is read from the store, and hand it back
    /// to keep the key.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The child's key, if kept and not past its lifetime (then it goes, with its
    /// categories' states).
    pub(crate) fn key(&mut self, child: ChildIndex) -> Option<SecretKey> {
        let KeptKey { key, since: kept, .. } = self.keys.get(&child)?;
        if self.lifetime.is_none_or(|lifetime| kept.elapsed() < lifetime) {
            return Some(key.clone());
        }
        self.keys.remove(&child);
        self.order.retain(|held| *held != child);
        self.categories.retain(|(held, _), _| *held != child);
        self.drop_records(Some(child));
        None
    }

    /// The child's records as last kept, while its key is kept.
    pub(crate) fn records(&mut self, child: ChildIndex) -> Option<std::sync::Arc<crate::child_records::ChildRecords>> {
        self.key(child)?;
        self.records.get(&child).cloned()
    }

    /// The child's number as sealed under its kept key, if sealed since it was kept.
    pub(crate) fn reference(&mut self, child: ChildIndex) -> Option<Vec<u8>> {
        self.key(child)?;
        self.keys.get(&child)?.reference.clone()
    }

    /// Keeps the child's number as sealed under its key, if nothing was forgotten since
    /// `generation` was read (before the key was) and the key is kept.
    pub(crate) fn keep_reference(&mut self, generation: u64, child: ChildIndex, sealed: &[u8]) {
        if generation == self.generation
            && let Some(kept) = self.keys.get_mut(&child)
        {
            kept.reference = Some(sealed.to_vec());
        }
    }

    /// Keeps a child's records if nothing was forgotten since `generation` was read
    /// (before they were read) and its key is kept (they leave with it).
    pub(crate) fn keep_records(
        &mut self,
        generation: u64,
        child: ChildIndex,
        records: &std::sync::Arc<crate::child_records::ChildRecords>,
    ) {
        if generation == self.generation && self.keys.contains_key(&child) {
            self.records.insert(child, records.clone());
        }
    }

    /// Forgets the records of these children, and moves the generation on: a commit
    /// touched them, and a reading begun before it is not kept.
    pub(crate) fn forget_records(&mut self, children: &[ChildIndex]) {
        self.generation += 1;
        for child in children {
            self.drop_records(Some(*child));
        }
    }

    /// Forgets every child's records, and moves the generation on: another node
    /// committed to some child's.
    pub(crate) fn forget_all_records(&mut self) {
        self.generation += 1;
        self.drop_records(None);
    }

    fn drop_records(&mut self, child: Option<ChildIndex>) {
        match child {
            Some(child) => {
                self.records.remove(&child);
            }
            None => self.records.clear(),
        }
    }

    /// The cached key state of the child's `category`, while the child's key is kept.
    pub(crate) fn category(&mut self, child: ChildIndex, category: Category) -> Option<&CategoryKey> {
        self.key(child)?;
        self.categories.get(&(child, category))
    }

    /// Keeps a category's key state if nothing was forgotten since `generation` was
    /// read and its child's key is kept (it leaves with the child's).
    pub(crate) fn keep_category(
        &mut self,
        generation: u64,
        child: ChildIndex,
        category: Category,
        state: &CategoryKey,
    ) {
        if generation == self.generation && self.keys.contains_key(&child) {
            self.categories.insert((child, category), state.clone());
        }
    }

    /// Forgets a category's key state, and moves the generation on.
    pub(crate) fn forget_category(&mut self, child: ChildIndex, category: Category) {
        self.generation += 1;
        self.categories.remove(&(child, category));
    }

    /// Keeps `key` if nothing was forgotten since `generation` was read.
    fn keep(&mut self, generation: u64, child: ChildIndex, key: &SecretKey) {
        if generation != self.generation || self.keys.contains_key(&child) {
            return;
        }
        while self.keys.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else { break };
            self.keys.remove(&oldest);
            self.categories.retain(|(child, _), _| *child != oldest);
            self.drop_records(Some(oldest));
        }
        self.keys.insert(child, KeptKey { key: key.clone(), since: std::time::Instant::now(), reference: None });
        self.order.push_back(child);
    }

    /// Forgets one child's key (`Some`) or every key (`None`), and moves the generation on.
    pub(crate) fn forget(&mut self, child: Option<ChildIndex>) {
        self.generation += 1;
        match child {
            Some(child) => {
                self.keys.remove(&child);
                self.order.retain(|kept| *kept != child);
                self.categories.retain(|(kept, _), _| *kept != child);
            }
            None => {
                self.keys.clear();
                self.order.clear();
                self.categories.clear();
            }
        }
        self.drop_records(child);
    }
}

/// The keyspaces of what [`crate::child_records::ChildRecords`] holds, each keyed by child index first.
const RECORD_SPACES: [Keyspace; 7] = [
    Keyspace::Relationships,
    Keyspace::Consents,
    Keyspace::Objections,
    Keyspace::Safeguarding,
    Keyspace::Amendments,
    Keyspace::Children,
    Keyspace::ChildKeys,
];

/// Returns the children whose records `batch` may change: every key it writes in a
/// keyspace of theirs, read as a child index (a key there that is not one, such as an
/// amended update's position, costs only a record read again).
fn children_touched(batch: &Batch) -> Vec<ChildIndex> {
    children_in(batch.ops.iter().filter_map(|op| match op {
        Op::Put { space, key, .. } | Op::Delete { space, key } => Some((*space, key.as_slice())),
        Op::PutAtPosition { space, prefix, .. } => Some((*space, prefix.as_slice())),
        Op::PutPosition { space, key, .. } => Some((*space, key.as_slice())),
        Op::Append { .. } => None,
    }))
}

/// Returns the children whose records `batch`'s preconditions are about: when one
/// fails, what this node kept of them is out of date.
fn children_required(batch: &Batch) -> Vec<ChildIndex> {
    children_in(batch.conditions.iter().map(|condition| match condition {
        Condition::Absent { space, key } | Condition::Equals { space, key, .. } => (*space, key.as_slice()),
    }))
}

/// The children of the keys among `keys` in a keyspace of their records.
fn children_in<'a>(keys: impl Iterator<Item = (Keyspace, &'a [u8])>) -> Vec<ChildIndex> {
    let mut touched = Vec::new();
    for (space, key) in keys {
        if !RECORD_SPACES.contains(&space) {
            continue;
        }
        if let Some(index) =
            key.get(..CHILD_INDEX_BYTES).and_then(|bytes| <[u8; CHILD_INDEX_BYTES]>::try_from(bytes).ok())
            && !touched.contains(&ChildIndex(index))
        {
            touched.push(ChildIndex(index));
        }
    }
    touched
}

/// Where a child's date of birth lives in the `children` keyspace: after its number's
/// key (the child index), so that a child's records stay together.
pub(crate) fn date_of_birth_key(index: ChildIndex) -> Vec<u8> {
    [&index.0[..], b"/date_of_birth"].concat()
}

/// Opens a child's date of birth as read (`None`: none was published).
pub(crate) fn open_date_of_birth(
    data_key: &SecretKey,
    index: ChildIndex,
    sealed: Option<Vec<u8>>,
) -> Result<Option<Date>, StoreError> {
    let Some(sealed) = sealed else { return Ok(None) };
    let key = date_of_birth_key(index);
    let bytes = open_with(data_key, &sealed_record_context(Keyspace::Children, &key), &sealed)?;
    decode_date(&bytes)
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt("a sealed date of birth does not decode".to_owned()))
}

/// A date as stored: version 1, year (i16 BE), month, day. Do not change: sealed
/// records hold it.
fn encode_date(date: Date) -> [u8; 5] {
    let year = date.year().to_be_bytes();
    [1, year[0], year[1], date.month().unsigned_abs(), date.day().unsigned_abs()]
}

fn decode_date(bytes: &[u8]) -> Option<Date> {
    let [1, high, low, month, day] = *bytes else { return None };
    Date::new(i16::from_be_bytes([high, low]), i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()
}

/// Returns the operation that stores the child's date of birth sealed under its data key.
pub(crate) fn date_of_birth_op(data_key: &SecretKey, index: ChildIndex, born: Date) -> Result<Op, StoreError> {
    let key = date_of_birth_key(index);
    let value = seal_with(data_key, &sealed_record_context(Keyspace::Children, &key), &encode_date(born))?;
    Ok(Op::Put { space: Keyspace::Children, key, value })
}

/// Returns the operation that stores the child's NHS number sealed under its new data
/// key, written with the key.
fn child_number_op(
    data_key: &SecretKey,
    child: &(impl ChildRef + ?Sized),
    index: ChildIndex,
) -> Result<Op, StoreError> {
    let value =
        seal_with(data_key, &sealed_record_context(Keyspace::Children, &index.0), child.number().digits().as_bytes())?;
    Ok(Op::Put { space: Keyspace::Children, key: index.0.to_vec(), value })
}

/// The key of a child's latest value of `category` (its position is the value).
pub(crate) fn latest_key(child: ChildIndex, category: Category) -> Vec<u8> {
    let mut key = child.0.to_vec();
    key.push(category_code(category));
    key
}

/// The keyspaces that hold sealed per-child records.
/// How many sealed records of a child one scan reads.
pub(crate) const SEALED_PAGE: usize = 1024;

/// Opens the sealed records of child `index` in `space` that a scan returned.
pub(crate) fn open_sealed(
    data_key: &SecretKey,
    index: ChildIndex,
    space: Keyspace,
    page: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<Vec<SealedRecord>, StoreError> {
    page.into_iter()
        .map(|(key, raw)| {
            let plaintext = open_with(data_key, &sealed_record_context(space, &key), &raw)?;
            Ok(SealedRecord { suffix: key[index.0.len()..].to_vec(), plaintext, raw })
        })
        .collect()
}

fn check_sealed_space(space: Keyspace) -> Result<(), StoreError> {
    match space {
        Keyspace::Consents
        | Keyspace::Relationships
        | Keyspace::Objections
        | Keyspace::Safeguarding
        | Keyspace::Assessments
        | Keyspace::Transitions => Ok(()),
        other => Err(StoreError::Corrupt(format!("keyspace {} does not hold sealed child records", other.name()))),
    }
}

/// The associated data of a sealed per-child record: its keyspace and full key, so it
/// cannot be moved to another child, record or keyspace. Do not change.
fn sealed_record_context(space: Keyspace, key: &[u8]) -> Vec<u8> {
    [b"tio/sealed-record/", space.name().as_bytes(), b"/", key].concat()
}

/// The associated data of a sealed child reference: what it is and whose it is, so it
/// cannot pass for an update's payload or another child's reference. Do not change.
fn child_reference_context(index: ChildIndex) -> Vec<u8> {
    let mut context = b"tio/audit-child-reference".to_vec();
    context.extend_from_slice(&index.0);
    context
}

/// Checks the bounds the contract documents; nothing is written if one fails.
fn validate(update: &NewUpdate<'_>) -> Result<(), StoreError> {
    let invalid = StoreError::InvalidInput;
    if update.value.is_empty() {
        return Err(invalid(FieldViolation::new("value", "is required")));
    }
    if update.value.len() > limits::MAX_CATEGORY_VALUE_BYTES {
        return Err(invalid(FieldViolation::new(
            "value",
            format!("must be at most {} bytes encoded, got {}", limits::MAX_CATEGORY_VALUE_BYTES, update.value.len()),
        )));
    }
    limits::check_len("source_reference", update.source_reference, limits::MAX_SHORT_STRING_BYTES).map_err(invalid)?;
    if update.idempotency_key.is_empty() {
        return Err(invalid(FieldViolation::new("idempotency_key", "is required")));
    }
    limits::check_len("idempotency_key", update.idempotency_key, limits::MAX_IDEMPOTENCY_KEY_BYTES).map_err(invalid)?;
    Ok(())
}

mod check;

pub use check::{CheckReport, Problems};

/// Returns an index entry of a backup (by child, latest value, idempotency) with the
/// update position it holds translated by `updates`, for a restore onto another
/// engine. The layouts are [`Store::append_update_and`]'s.
pub(crate) fn restored_index_entry(
    space: Keyspace,
    key: Vec<u8>,
    value: Vec<u8>,
    updates: &crate::backup::PositionMap,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    match space {
        // The child's index, then the position; the value is the update id.
        Keyspace::UpdatesByChild => {
            let (child, position) = key.split_at_checked(CHILD_INDEX_BYTES).ok_or("a child index entry is short")?;
            Ok(([child, &updates.get(position)?].concat(), value))
        }
        // The position alone.
        Keyspace::Latest => Ok((key, updates.get(&value)?)),
        // The content tag and the update id, then the position.
        Keyspace::Idempotency => {
            let (head, position) =
                value.split_at_checked(32 + UPDATE_ID_BYTES).ok_or("an idempotency record is short")?;
            Ok((key.clone(), [head, &updates.get(position)?].concat()))
        }
        other => Err(format!("{} holds no update positions", other.name())),
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod key_cache_tests {
    use super::*;

    fn index(n: u16) -> ChildIndex {
        let mut bytes = [0u8; CHILD_INDEX_BYTES];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        ChildIndex(bytes)
    }

    #[test]
    fn the_cache_is_bounded_and_the_oldest_goes_first() {
        let mut cache = KeyCache::default();
        let key = SecretKey::generate().unwrap();
        for n in 0..(KEY_CACHE_ENTRIES as u16 + 10) {
            cache.keep(0, index(n), &key);
        }
        assert_eq!(cache.keys.len(), KEY_CACHE_ENTRIES);
        assert!(!cache.keys.contains_key(&index(0)) && cache.keys.contains_key(&index(KEY_CACHE_ENTRIES as u16 + 9)));
    }

    #[test]
    fn a_key_unwrapped_before_an_erasure_is_not_kept_after_it() {
        let mut cache = KeyCache::default();
        let key = SecretKey::generate().unwrap();
        let before = cache.generation;
        cache.forget(Some(index(1))); // the erasure commits while the reader unwraps
        cache.keep(before, index(1), &key);
        assert!(cache.keys.is_empty(), "the destroyed key must not come back");
        cache.keep(cache.generation, index(1), &key);
        cache.forget(None);
        assert!(cache.keys.is_empty() && cache.order.is_empty());
    }

    /// Records read before a commit touched their child are not kept after it; on a
    /// database other nodes share they live no longer than their child's key, and
    /// another node's commit to any child's records forgets them all.
    #[test]
    fn records_read_before_a_commit_are_not_kept_and_on_a_shared_store_not_for_long() {
        let records = std::sync::Arc::new(crate::child_records::ChildRecords::default());
        let key = SecretKey::generate().unwrap();
        let mut cache = KeyCache::default();
        cache.keep(cache.generation, index(1), &key);
        let before = cache.generation;
        cache.forget_records(&[index(1)]); // a commit lands while the reader reads
        cache.keep_records(before, index(1), &records);
        assert!(cache.records(index(1)).is_none(), "read before the commit");
        cache.keep_records(cache.generation, index(1), &records);
        assert!(cache.records(index(1)).is_some());
        cache.keep_records(cache.generation, index(2), &records);
        assert!(cache.records(index(2)).is_none(), "kept only with the child's key");

        let mut shared = KeyCache::holding(8, Some(std::time::Duration::from_millis(20)));
        shared.keep(shared.generation, index(1), &key);
        shared.keep_records(shared.generation, index(1), &records);
        assert!(shared.records(index(1)).is_some());
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(shared.records(index(1)).is_none(), "on a shared store they go with the key, past its lifetime");
        shared.keep(shared.generation, index(1), &key);
        shared.keep_records(shared.generation, index(1), &records);
        shared.forget_all_records();
        assert!(shared.key(index(1)).is_some() && shared.records(index(1)).is_none(), "another node's commit");
    }

    /// The child's number sealed for audit entries goes with its key, and a sealing
    /// made under a key an erasure destroyed meanwhile is not kept.
    #[test]
    fn a_sealed_reference_is_kept_with_its_key_and_goes_with_it() {
        let mut cache = KeyCache::default();
        let key = SecretKey::generate().unwrap();
        cache.keep(cache.generation, index(1), &key);
        let before = cache.generation;
        cache.keep_reference(before, index(1), b"sealed");
        assert_eq!(cache.reference(index(1)).as_deref(), Some(&b"sealed"[..]));
        cache.keep_reference(before, index(2), b"other");
        assert!(cache.reference(index(2)).is_none(), "only beside a kept key");
        cache.forget(Some(index(1)));
        assert!(cache.reference(index(1)).is_none(), "gone with the key");
        cache.keep(cache.generation, index(1), &key);
        cache.keep_reference(before, index(1), b"under the destroyed key");
        assert!(cache.reference(index(1)).is_none(), "sealed before the erasure");
    }

    /// On a database other nodes share, a key (and its categories' states) is kept
    /// no longer than its lifetime.
    #[test]
    fn a_key_past_its_lifetime_is_read_again() {
        let mut cache = KeyCache::holding(8, Some(std::time::Duration::from_millis(20)));
        let key = SecretKey::generate().unwrap();
        cache.keep(cache.generation, index(1), &key);
        assert!(cache.key(index(1)).is_some(), "kept while young");
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(cache.key(index(1)).is_none(), "gone once past its lifetime");
        assert!(cache.keys.is_empty() && cache.order.is_empty());
        let mut forever = KeyCache::holding(8, None);
        forever.keep(forever.generation, index(1), &key);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(forever.key(index(1)).is_some(), "without a lifetime, kept while there is room");
    }
}
