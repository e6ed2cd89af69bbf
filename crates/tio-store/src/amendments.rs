//! Corrections and retractions of stored updates, and the record of who was shown
//! which update, so that an amendment reaches every past recipient (UK GDPR Art. 16
//! and 19).
//!
//! An amendment is a record of its own in the update log (a version 2 update record
//! naming the update it amends), so subscribers meet it in order, offline ones when
//! they return. Beside the log:
//!
//! - `amendments`: the child's blind index and the amended update's id, holding the
//!   amending record's id: an update is amended at most once. Under the child's blind
//!   index alone, how many amendments the child has had (8 bytes, big-endian): a
//!   delivery commits on that count being unchanged since its facts were read, one
//!   condition per child per page rather than one per update, and a child never
//!   amended (nearly all) costs no lookup per update.
//! - `disclosures`: the child's blind index, an update's id and an agency id, empty:
//!   the update was delivered to the agency or shown to it in a profile read.
//!
//! Both are keyed by update id, not position: ids survive a restore onto another engine.

use tio_core::{AgencyId, Category, Date, FieldViolation, Timestamp, limits};

use crate::engine::{Batch, Condition, Keyspace, Op, Position, key_after, prefix_end};
use crate::keys::seal_with;
use crate::store::{DataKeys, date_of_birth_key, date_of_birth_op, latest_key};
use crate::update_record::{
    AmendKind, Amends, CHILD_INDEX_BYTES, UPDATE_ID_BYTES, UpdateRecord, encode_amendment_payload,
};
use crate::{Appended, ChildIndex, ChildRef, Extra, Store, StoreError, StoredUpdate, UpdateId};

/// How often an amendment is tried again after losing a race with another write about
/// the same child's category.
const MAX_RACE_RETRIES: usize = 4;

/// Index entries read at a time when walking one child's updates.
const PAGE: usize = 1024;

/// A correction or a retraction to store.
#[derive(Debug, Clone)]
pub struct NewAmendment<'a> {
    /// The child.
    pub child: &'a dyn ChildRef,
    /// The update it amends, as read ([`Store::find_update`]).
    pub amended: &'a StoredUpdate,
    /// Correction or retraction.
    pub kind: AmendKind,
    /// For a correction, the new encoded value (1 byte to 64 KiB); empty for a retraction.
    pub value: &'a [u8],
    /// The publisher's own reference, at most 256 bytes.
    pub source_reference: &'a str,
    /// Why, 1 byte to 4 KiB: sealed like the value.
    pub reason: &'a str,
    /// The publishing agency (the amended update's publisher).
    pub publisher: &'a AgencyId,
    /// The commit time to record.
    pub committed_at: Timestamp,
    /// What becomes of the child's stored date of birth (an amended identity value may
    /// have been where it came from).
    pub date_of_birth: BirthDate,
}

/// What an amendment does to the child's stored date of birth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BirthDate {
    /// Leave it as it is.
    Keep,
    /// Store this one.
    Set(Date),
    /// Remove it: the amended value stated it, and the category's current value states
    /// none.
    Clear,
}

fn amendment_key(child: ChildIndex, update: &UpdateId) -> Vec<u8> {
    [&child.0[..], &update.0[..]].concat()
}

fn disclosure_key(child: ChildIndex, update: &UpdateId, agency: &str) -> Vec<u8> {
    [&child.0[..], &update.0[..], agency.as_bytes()].concat()
}

impl UpdateId {
    /// Parses the 32 hex digits [`UpdateId`] displays as.
    pub fn parse(text: &str) -> Option<UpdateId> {
        Some(UpdateId(hex::decode(text).ok()?.try_into().ok()?))
    }
}

impl Store {
    /// Returns the update of `child` with id `id`, opened, or `None` if the child has
    /// none by that id (or is erased).
    pub fn find_update(
        &self,
        child: &(impl ChildRef + ?Sized),
        id: &UpdateId,
    ) -> Result<Option<StoredUpdate>, StoreError> {
        let index = child.index_in(self);
        match self.position_of(index, id)? {
            Some(position) => {
                let update = self.update_at(&position)?;
                Ok(update.filter(|update| update.child == index && update.content.is_some()))
            }
            None => Ok(None),
        }
    }

    /// Returns the position of the child's update `id` by walking the child's index.
    fn position_of(&self, child: ChildIndex, id: &UpdateId) -> Result<Option<Position>, StoreError> {
        let end = prefix_end(&child.0);
        let mut from = child.0.to_vec();
        loop {
            let page = self.engine.scan(Keyspace::UpdatesByChild, &from, end.as_deref(), PAGE)?;
            let Some((last, _)) = page.last() else { return Ok(None) };
            from = key_after(last);
            if let Some((key, _)) = page.iter().find(|(_, value)| value.as_slice() == id.0) {
                return Ok(Some(Position::from_bytes(key[CHILD_INDEX_BYTES..].to_vec())));
            }
        }
    }

    /// Returns how many amendments (corrections, retractions, erasure notices) `child`
    /// has had.
    pub fn amendment_count(&self, child: ChildIndex) -> Result<u64, StoreError> {
        Ok(amendment_count_of(self.engine.get(Keyspace::Amendments, &child.0)?))
    }

    /// Returns the precondition that `child` has had exactly `count` amendments (what a
    /// delivery decided on facts read with that count commits on).
    pub fn amendments_unchanged(&self, child: ChildIndex, count: u64) -> Condition {
        match count {
            0 => Condition::Absent { space: Keyspace::Amendments, key: child.0.to_vec() },
            count => Condition::Equals {
                space: Keyspace::Amendments,
                key: child.0.to_vec(),
                value: count.to_be_bytes().to_vec(),
            },
        }
    }

    /// Returns the precondition and the operation that move `child`'s amendment count
    /// from `count` on by `by`.
    fn count_amendments(&self, child: ChildIndex, count: u64, by: u64) -> (Condition, Op) {
        let put =
            Op::Put { space: Keyspace::Amendments, key: child.0.to_vec(), value: (count + by).to_be_bytes().to_vec() };
        (self.amendments_unchanged(child, count), put)
    }

    /// Returns the id of the correction or retraction that amended `update`, if one did.
    pub fn amended_by(&self, update: &StoredUpdate) -> Result<Option<UpdateId>, StoreError> {
        let value = self.engine.get(Keyspace::Amendments, &amendment_key(update.child, &update.update_id))?;
        Ok(value.and_then(|bytes| Some(UpdateId(bytes.as_slice().try_into().ok()?))))
    }

    /// Returns the operation that records that `update` was disclosed to `agency`
    /// (committed with the delivery or the profile read that disclosed it).
    pub fn disclosure(&self, update: &StoredUpdate, agency: &str) -> Op {
        Op::Put {
            space: Keyspace::Disclosures,
            key: disclosure_key(update.child, &update.update_id, agency),
            value: Vec::new(),
        }
    }

    /// Returns whether the child's update `id` was disclosed to `agency`.
    pub fn was_disclosed(&self, child: ChildIndex, id: &UpdateId, agency: &str) -> Result<bool, StoreError> {
        Ok(self.engine.get(Keyspace::Disclosures, &disclosure_key(child, id, agency))?.is_some())
    }

    /// Stores a correction or a retraction of `amended` in one atomic, durable commit:
    /// the amendment record in the log and the child's index, the amended update marked
    /// amended, and the category's latest value moved (to the correction; after a
    /// retraction of the latest value, back to the value before it, or none), with
    /// `extra` (the audit entry) made from the new record's id.
    ///
    /// The caller checks who may amend what; this refuses what would corrupt the
    /// record: a correction of anything but the category's current value, an amendment
    /// of a retraction, or of an update already amended (a conflict if it happened
    /// meanwhile).
    pub async fn amend_update(
        &self,
        amendment: NewAmendment<'_>,
        extra: impl Fn(&UpdateId) -> Extra,
    ) -> Result<Appended, StoreError> {
        let invalid = |field: &str, reason: &str| StoreError::InvalidInput(FieldViolation::new(field, reason));
        let child = amendment.child.index_in(self);
        let amended = amendment.amended;
        if amended.child != child {
            return Err(invalid("update_id", "is not an update of this child"));
        }
        if amended.amends.is_some_and(|amends| amends.kind != AmendKind::Correction) {
            return Err(invalid("update_id", "names a retraction, which has no value to amend"));
        }
        match amendment.kind {
            // Only an erasure writes these, with the key's destruction.
            AmendKind::Erasure => return Err(invalid("kind", "an erasure is made by erasing the child")),
            AmendKind::Correction => {
                if amendment.value.is_empty() {
                    return Err(invalid("value", "is required"));
                }
                if amendment.value.len() > limits::MAX_CATEGORY_VALUE_BYTES {
                    return Err(invalid("value", "is too long"));
                }
            }
            AmendKind::Retraction if !amendment.value.is_empty() => {
                return Err(invalid("value", "a retraction has no value"));
            }
            AmendKind::Retraction => {}
        }
        if amendment.reason.trim().is_empty() {
            return Err(invalid("reason", "is required"));
        }
        limits::check_len("reason", amendment.reason, limits::MAX_FREE_TEXT_BYTES).map_err(StoreError::InvalidInput)?;
        limits::check_len("source_reference", amendment.source_reference, limits::MAX_SHORT_STRING_BYTES)
            .map_err(StoreError::InvalidInput)?;

        let latest_key = latest_key(child, amended.category);
        let mut last_conflict = 0;
        for _ in 0..MAX_RACE_RETRIES {
            let Some(data_key) = self.data_key(child)? else {
                return Err(invalid("child", "has been erased"));
            };
            let sealing = match self.sealing_key(child, amended.category, &data_key, false) {
                Ok(sealing) => sealing,
                Err(StoreError::Conflict { index }) => {
                    last_conflict = index;
                    continue;
                }
                Err(other) => return Err(other),
            };
            let latest = self.engine.get(Keyspace::Latest, &latest_key)?;
            let is_latest = latest.as_deref() == Some(amended.position.as_bytes());
            if amendment.kind == AmendKind::Correction && !is_latest {
                return Err(invalid(
                    "update_id",
                    "is no longer the category's current value: a newer update replaced it (retract it, or publish anew)",
                ));
            }
            let mut update_id = [0u8; UPDATE_ID_BYTES];
            getrandom::fill(&mut update_id).map_err(|err| crate::keys::KeyError::Random(err.to_string()))?;
            let mut record = UpdateRecord {
                update_id,
                child_index: child.0,
                category: amended.category,
                committed_at_micros: amendment.committed_at.unix_micros(),
                publisher: amendment.publisher.as_str().to_owned(),
                sealed: Vec::new(),
                amends: Some(Amends { kind: amendment.kind, update_id: amended.update_id }),
                key_generation: sealing.generation,
            };
            record.sealed = seal_with(
                &sealing.key,
                &record.associated_data(),
                &encode_amendment_payload(amendment.reason, amendment.source_reference, amendment.value),
            )?;

            let mut batch = Batch::new();
            batch.require(Condition::Absent {
                space: Keyspace::Amendments,
                key: amendment_key(child, &amended.update_id),
            });
            batch.conditions.extend(sealing.conditions);
            batch.ops.extend(sealing.ops);
            let (unchanged, counted) = self.count_amendments(child, self.amendment_count(child)?, 1);
            batch.require(unchanged);
            batch.push(counted);
            batch
                .push(Op::Append { space: Keyspace::Updates, value: record.encode() })
                .push(Op::PutAtPosition {
                    space: Keyspace::UpdatesByChild,
                    prefix: child.0.to_vec(),
                    append: 0,
                    value: update_id.to_vec(),
                })
                .push(Op::Put {
                    space: Keyspace::Amendments,
                    key: amendment_key(child, &amended.update_id),
                    value: update_id.to_vec(),
                });
            if is_latest {
                // The latest value moves only if nobody published or amended meanwhile.
                batch.require(Condition::Equals {
                    space: Keyspace::Latest,
                    key: latest_key.clone(),
                    value: amended.position.as_bytes().to_vec(),
                });
                match amendment.kind {
                    AmendKind::Correction => {
                        batch.push(Op::PutPosition {
                            space: Keyspace::Latest,
                            key: latest_key.clone(),
                            prefix: Vec::new(),
                            append: 0,
                        });
                    }
                    AmendKind::Erasure => {}
                    AmendKind::Retraction => match self.previous_value(amended)? {
                        Some((position, id)) => {
                            // Nor if that value was amended meanwhile.
                            batch.require(Condition::Absent {
                                space: Keyspace::Amendments,
                                key: amendment_key(child, &id),
                            });
                            batch.push(Op::Put {
                                space: Keyspace::Latest,
                                key: latest_key.clone(),
                                value: position.as_bytes().to_vec(),
                            });
                        }
                        None => {
                            batch.push(Op::Delete { space: Keyspace::Latest, key: latest_key.clone() });
                        }
                    },
                }
            }
            match amendment.date_of_birth {
                BirthDate::Keep => {}
                BirthDate::Set(born) => {
                    batch.push(date_of_birth_op(&data_key, child, born)?);
                }
                BirthDate::Clear => {
                    batch.push(Op::Delete { space: Keyspace::Children, key: date_of_birth_key(child) });
                }
            }
            let extra = extra(&UpdateId(update_id));
            batch.conditions.extend(extra.conditions);
            batch.ops.extend(extra.ops);
            let committed = self.commit(batch).await;
            if sealing.created || committed.is_err() {
                self.forget_category_key(child, amended.category);
            }
            match committed {
                Ok(positions) => {
                    let position = positions
                        .into_iter()
                        .next()
                        .ok_or_else(|| StoreError::Corrupt("no position assigned".to_owned()))?;
                    return Ok(Appended {
                        update_id: UpdateId(update_id),
                        position,
                        duplicate: false,
                        committed_at: amendment.committed_at,
                    });
                }
                // Amended meanwhile (the first precondition) is final; anything else
                // moved under us: look again.
                Err(StoreError::Conflict { index: 0 }) => return Err(StoreError::Conflict { index: 0 }),
                Err(StoreError::Conflict { index }) => last_conflict = index,
                Err(other) => return Err(other),
            }
        }
        Err(StoreError::Conflict { index: last_conflict })
    }

    /// Returns the operations that append an erasure notice for each value of `child`
    /// (updates and corrections) not erased already, of every category or of `only`
    /// one, each naming the value, for the batch that destroys the key they are sealed
    /// under, and the precondition they rest on (the child's amendments as read): each
    /// stream meets them in the log and tells every agency the value was disclosed to.
    /// Their appends come first in that batch. Also returns how many notices there are.
    pub(crate) fn erasure_notices(
        &self,
        child: ChildIndex,
        only: Option<Category>,
        erased_by: &str,
        at: Timestamp,
    ) -> Result<(Condition, Vec<Op>, u64), StoreError> {
        let end = prefix_end(&child.0);
        let mut from = child.0.to_vec();
        let mut ops = Vec::new();
        let mut appended = 0;
        let mut keys = DataKeys::default();
        loop {
            let page = self.engine.scan(Keyspace::UpdatesByChild, &from, end.as_deref(), PAGE)?;
            let Some((last, _)) = page.last() else {
                // The count moves with the notices, from the count read here.
                let (unchanged, counted) = self.count_amendments(child, self.amendment_count(child)?, appended as u64);
                ops.push(counted);
                return Ok((unchanged, ops, appended as u64));
            };
            from = key_after(last);
            for (key, _) in page {
                let Some(bytes) = self.engine.get(Keyspace::Updates, &key[CHILD_INDEX_BYTES..])? else {
                    return Err(StoreError::Corrupt("an index points at a missing update".to_owned()));
                };
                let value = UpdateRecord::decode(&bytes)
                    .ok_or_else(|| StoreError::Corrupt("an update record does not decode".to_owned()))?;
                let is_value = value.amends.is_none_or(|amends| amends.kind == AmendKind::Correction);
                // A value whose category key was destroyed before was told of then.
                if !is_value
                    || only.is_some_and(|category| category != value.category)
                    || self.record_key(&value, &mut keys)?.is_none()
                {
                    continue;
                }
                let mut update_id = [0u8; UPDATE_ID_BYTES];
                getrandom::fill(&mut update_id).map_err(|err| crate::keys::KeyError::Random(err.to_string()))?;
                let notice = UpdateRecord {
                    update_id,
                    child_index: child.0,
                    category: value.category,
                    committed_at_micros: at.unix_micros(),
                    publisher: erased_by.to_owned(),
                    // The key is destroyed in the same commit: nothing to seal under it.
                    sealed: Vec::new(),
                    amends: Some(Amends { kind: AmendKind::Erasure, update_id: UpdateId(value.update_id) }),
                    key_generation: 0,
                };
                ops.push(Op::Append { space: Keyspace::Updates, value: notice.encode() });
                ops.push(Op::PutAtPosition {
                    space: Keyspace::UpdatesByChild,
                    prefix: child.0.to_vec(),
                    append: appended,
                    value: update_id.to_vec(),
                });
                ops.push(Op::Put {
                    space: Keyspace::Amendments,
                    key: amendment_key(child, &UpdateId(value.update_id)),
                    value: update_id.to_vec(),
                });
                appended += 1;
            }
        }
    }

    /// Returns the value of `amended`'s category that would be current if `amended` were
    /// retracted: `amended` itself stays current unless it is the category's latest, in
    /// which case the value before it that still stands (or none).
    pub fn value_after_retraction(&self, amended: &StoredUpdate) -> Result<Option<StoredUpdate>, StoreError> {
        let latest = self.engine.get(Keyspace::Latest, &latest_key(amended.child, amended.category))?;
        let position = if latest.as_deref() == Some(amended.position.as_bytes()) {
            self.previous_value(amended)?.map(|(position, _)| position)
        } else {
            latest.map(Position::from_bytes)
        };
        match position {
            Some(position) => self.update_at(&position),
            None => Ok(None),
        }
    }

    /// Returns the position and id of the value of `amended`'s category that was current
    /// before it and still stands (not amended, not a retraction), if any.
    fn previous_value(&self, amended: &StoredUpdate) -> Result<Option<(Position, UpdateId)>, StoreError> {
        let child = amended.child;
        let start = child.0.to_vec();
        let end = [&child.0[..], amended.position.as_bytes()].concat();
        let mut from = start;
        let mut previous = None;
        loop {
            let page = self.engine.scan(Keyspace::UpdatesByChild, &from, Some(&end), PAGE)?;
            let Some((last, _)) = page.last() else { return Ok(previous) };
            from = key_after(last);
            for (key, id) in page {
                let position = Position::from_bytes(key[CHILD_INDEX_BYTES..].to_vec());
                let Some(bytes) = self.engine.get(Keyspace::Updates, position.as_bytes())? else {
                    return Err(StoreError::Corrupt("an index points at a missing update".to_owned()));
                };
                let record = UpdateRecord::decode(&bytes)
                    .ok_or_else(|| StoreError::Corrupt("an update record does not decode".to_owned()))?;
                let is_value = record.amends.is_none_or(|amends| amends.kind == AmendKind::Correction);
                if record.category != amended.category || !is_value {
                    continue;
                }
                let id = UpdateId(
                    id.as_slice().try_into().map_err(|_| StoreError::Corrupt("malformed update id".to_owned()))?,
                );
                if self.engine.get(Keyspace::Amendments, &amendment_key(child, &id))?.is_none() {
                    previous = Some((position, id));
                }
            }
        }
    }
}

/// A child's count of amendments as stored (none stored: 0).
pub(crate) fn amendment_count_of(value: Option<Vec<u8>>) -> u64 {
    value.and_then(|bytes| Some(u64::from_be_bytes(bytes.as_slice().try_into().ok()?))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use tio_core::{AgencyId, Category, NhsNumber, NhsNumberPolicy};

    use super::*;
    use crate::NewUpdate;
    use crate::keys::KeyRing;

    const T0: Timestamp = Timestamp::from_unix_seconds(1_800_000_000);

    fn amy() -> NhsNumber {
        NhsNumber::parse("9990079196", &NhsNumberPolicy::development()).unwrap()
    }

    async fn publish(store: &Store, child: &NhsNumber, value: &[u8], key: &str) -> StoredUpdate {
        let hospital = AgencyId::parse("id", "hospital").unwrap();
        let appended = store
            .append_update(NewUpdate {
                child,
                category: Category::HealthSummary,
                value,
                source_reference: "EPR-1",
                publisher: &hospital,
                idempotency_key: key,
                committed_at: T0,
                date_of_birth: None,
            })
            .await
            .unwrap();
        store.update_at(&appended.position).unwrap().unwrap()
    }

    async fn amend(
        store: &Store,
        child: &NhsNumber,
        amended: &StoredUpdate,
        kind: AmendKind,
        value: &[u8],
    ) -> Result<StoredUpdate, StoreError> {
        let hospital = AgencyId::parse("id", "hospital").unwrap();
        let appended = store
            .amend_update(
                NewAmendment {
                    child,
                    amended,
                    kind,
                    value,
                    source_reference: "EPR-2",
                    reason: "entered on the wrong record",
                    publisher: &hospital,
                    committed_at: T0,
                    date_of_birth: BirthDate::Keep,
                },
                |_| Extra::default(),
            )
            .await?;
        Ok(store.update_at(&appended.position).unwrap().unwrap())
    }

    fn current(store: &Store, child: &NhsNumber) -> Option<Vec<u8>> {
        store.profile(child).unwrap().pop().map(|update| update.content.unwrap().value)
    }

    #[tokio::test]
    async fn corrections_and_retractions_move_the_profile_and_are_in_the_log() {
        let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
        let amy = amy();
        let first = publish(&store, &amy, b"v1", "k1").await;
        let second = publish(&store, &amy, b"v2", "k2").await;

        // Retracting the current value brings back the one before it.
        let retraction = amend(&store, &amy, &second, AmendKind::Retraction, b"").await.unwrap();
        assert_eq!(current(&store, &amy), Some(b"v1".to_vec()));
        assert_eq!(retraction.amends, Some(Amends { kind: AmendKind::Retraction, update_id: second.update_id }));
        let content = retraction.content.as_ref().unwrap();
        assert_eq!((content.reason.as_str(), content.value.as_slice()), ("entered on the wrong record", &b""[..]));
        assert_eq!(store.amended_by(&second).unwrap(), Some(retraction.update_id));
        assert_eq!(store.amended_by(&first).unwrap(), None);

        // A correction replaces the current value; retracting it leaves nothing standing.
        let correction = amend(&store, &amy, &first, AmendKind::Correction, b"v1 corrected").await.unwrap();
        assert_eq!(current(&store, &amy), Some(b"v1 corrected".to_vec()));
        amend(&store, &amy, &correction, AmendKind::Retraction, b"").await.unwrap();
        assert_eq!(current(&store, &amy), None);

        // All four records are in the log, in order, and found by id.
        let log: Vec<_> = store.updates_after(None, 10).unwrap().into_iter().map(|u| u.update_id).collect();
        assert_eq!(log.len(), 5);
        assert_eq!(log[3], correction.update_id);
        assert_eq!(store.find_update(&amy, &correction.update_id).unwrap(), Some(correction));
        assert_eq!(store.find_update(&amy, &UpdateId([0; 16])).unwrap(), None);
        let report = store.check().unwrap();
        assert!(report.is_healthy(), "{:?}", report.problems.listed());
    }

    #[tokio::test]
    async fn what_would_corrupt_the_record_is_refused_and_nothing_is_written() {
        let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
        let amy = amy();
        let first = publish(&store, &amy, b"v1", "k1").await;
        let second = publish(&store, &amy, b"v2", "k2").await;
        let before = store.updates_after(None, 10).unwrap().len();

        let field = |result: Result<StoredUpdate, StoreError>| match result {
            Err(StoreError::InvalidInput(violation)) => violation.field,
            other => panic!("not refused: {other:?}"),
        };
        assert_eq!(field(amend(&store, &amy, &first, AmendKind::Correction, b"x").await), "update_id", "superseded");
        assert_eq!(field(amend(&store, &amy, &second, AmendKind::Correction, b"").await), "value");
        assert_eq!(field(amend(&store, &amy, &second, AmendKind::Retraction, b"x").await), "value");
        assert_eq!(store.updates_after(None, 10).unwrap().len(), before);

        // An older value may be retracted; the current one stays.
        let retraction = amend(&store, &amy, &first, AmendKind::Retraction, b"").await.unwrap();
        assert_eq!(current(&store, &amy), Some(b"v2".to_vec()));
        assert!(matches!(
            amend(&store, &amy, &first, AmendKind::Retraction, b"").await,
            Err(StoreError::Conflict { index: 0 })
        ));
        assert_eq!(field(amend(&store, &amy, &retraction, AmendKind::Retraction, b"").await), "update_id");
        let report = store.check().unwrap();
        assert!(report.is_healthy(), "{:?}", report.problems.listed());
    }

    #[tokio::test]
    async fn disclosures_are_recorded_per_update_and_agency() {
        let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
        let amy = amy();
        let first = publish(&store, &amy, b"v1", "k1").await;
        let mut batch = Batch::new();
        batch.push(store.disclosure(&first, "school")).push(store.disclosure(&first, "gp"));
        store.commit(batch).await.unwrap();
        assert!(store.was_disclosed(first.child, &first.update_id, "school").unwrap());
        assert!(!store.was_disclosed(first.child, &first.update_id, "council").unwrap());
        assert!(store.was_disclosed(first.child, &first.update_id, "gp").unwrap(), "each agency on its own");
        assert!(!store.was_disclosed(first.child, &UpdateId([0; 16]), "gp").unwrap(), "and each update");
        assert_eq!(UpdateId::parse(&first.update_id.to_string()), Some(first.update_id));
        assert_eq!(UpdateId::parse("zz"), None);
        assert_eq!(UpdateId::parse(&"0".repeat(30)), None, "too short");
        assert_eq!(UpdateId::parse(&"g".repeat(32)), None, "not hex");
        assert!(store.check().unwrap().is_healthy());
    }
}
