//! Everything a decision reads about one child, read together: its care relationships,
//! the latest revision of each consent, objection and safeguarding share, its date of
//! birth and its count of amendments. One [`crate::Engine::read_many`] (one round trip
//! on a database across a network), where reading them one after another costs a round
//! trip each, twice over where the child's data key is read too.

use tio_core::safeguarding::ShareRevision;
use tio_core::{ConsentRevision, Date, ObjectionRevision};

use crate::amendments::amendment_count_of;
use crate::engine::{Found, Keyspace, Read, prefix_end};
use crate::relationships::StoredRelationship;
use crate::store::{SEALED_PAGE, date_of_birth_key, open_date_of_birth, open_sealed};
use crate::{ChildRef, SealedRecord, Store, StoreError};

/// What decisions read about one child. Empty (but for the amendments) once the child
/// is erased.
#[derive(Debug, Clone, Default)]
pub struct ChildRecords {
    /// Every care relationship, active and ended.
    pub relationships: Vec<StoredRelationship>,
    /// The latest revision of every consent, in id order.
    pub consents: Vec<ConsentRevision>,
    /// The latest revision of every objection, in the order raised.
    pub objections: Vec<ObjectionRevision>,
    /// The latest revision of every safeguarding share, in the order declared.
    pub shares: Vec<ShareRevision>,
    /// The date of birth as last published.
    pub date_of_birth: Option<Date>,
    /// How many amendments the child's updates have had.
    pub amendments: u64,
}

/// The keyspaces of a child's sealed records that decisions read, in the order read.
const SEALED: [Keyspace; 4] =
    [Keyspace::Relationships, Keyspace::Consents, Keyspace::Objections, Keyspace::Safeguarding];

impl Store {
    /// Reads [`ChildRecords`] of `child` together, or returns them as kept from an
    /// earlier reading that no commit has touched since (on a store no other node
    /// writes; every commit forgets the records of the children it touches). On a store
    /// other nodes write they are read now.
    pub fn child_records(&self, child: &(impl ChildRef + ?Sized)) -> Result<ChildRecords, StoreError> {
        let fresh = self.shared();
        Ok(ChildRecords::clone(&*self.kept_child_records(child, fresh)?))
    }

    /// [`Store::child_records`] for a decision whose every disclosure is committed
    /// under preconditions on the revisions it relied on (a delivery's grant), which
    /// may come from what this node kept even on a store other nodes write: there a
    /// reading is at most a second old (it goes with the child's key) and is forgotten
    /// when another node's commit to some child's records is announced or a
    /// precondition on the child's records fails, and a grant made on an out-of-date
    /// reading fails its commit. A refusal made on it must be made again on
    /// [`Store::child_records`]: nothing at commit would catch a consent given meanwhile.
    pub fn child_records_for_guarded_commit(
        &self,
        child: &(impl ChildRef + ?Sized),
    ) -> Result<std::sync::Arc<ChildRecords>, StoreError> {
        self.kept_child_records(child, false)
    }

    /// The child's records as kept, or read now (always, if `fresh`) and kept.
    pub(crate) fn kept_child_records(
        &self,
        child: &(impl ChildRef + ?Sized),
        fresh: bool,
    ) -> Result<std::sync::Arc<ChildRecords>, StoreError> {
        let index = child.index_in(self);
        let (kept, generation) = {
            let mut cache = self.key_cache();
            (if fresh { None } else { cache.records(index) }, cache.generation())
        };
        if let Some(kept) = kept {
            return Ok(kept);
        }
        let records = std::sync::Arc::new(self.read_child_records(child, index)?);
        self.key_cache().keep_records(generation, index, &records);
        Ok(records)
    }

    fn read_child_records(
        &self,
        child: &(impl ChildRef + ?Sized),
        index: crate::ChildIndex,
    ) -> Result<ChildRecords, StoreError> {
        let cached = self.cached_data_key(index);
        let mut reads = vec![
            Read::Get { space: Keyspace::Amendments, key: index.0.to_vec() },
            Read::Get { space: Keyspace::Children, key: date_of_birth_key(index) },
        ];
        let end = prefix_end(&index.0);
        reads.extend(SEALED.iter().map(|space| Read::Scan {
            space: *space,
            start: index.0.to_vec(),
            end: end.clone(),
            limit: SEALED_PAGE,
        }));
        if cached.is_err() {
            reads.push(Read::Get { space: Keyspace::ChildKeys, key: index.0.to_vec() });
        }
        let mut found = self.engine.read_many(&reads)?.into_iter();
        let mut next_value = || match found.next() {
            Some(Found::Value(value)) => Ok(value),
            _ => Err(StoreError::Corrupt("reads made together came back out of shape".to_owned())),
        };
        let amendments = amendment_count_of(next_value()?);
        let date_of_birth = next_value()?;
        let mut scans = Vec::with_capacity(SEALED.len());
        for _ in SEALED {
            match found.next() {
                Some(Found::Entries(entries)) => scans.push(entries),
                _ => return Err(StoreError::Corrupt("reads made together came back out of shape".to_owned())),
            }
        }
        let data_key = match cached {
            Ok(key) => key,
            Err(generation) => {
                let wrapped = match found.next() {
                    Some(Found::Value(value)) => value,
                    _ => return Err(StoreError::Corrupt("reads made together came back out of shape".to_owned())),
                };
                match self.unwrap_data_key(index, generation, wrapped)? {
                    Some(key) => key,
                    // Never published about, or erased: nothing of it can be opened.
                    None => return Ok(ChildRecords { amendments, ..ChildRecords::default() }),
                }
            }
        };
        let mut opened: Vec<Vec<SealedRecord>> = Vec::with_capacity(SEALED.len());
        for (space, entries) in SEALED.iter().zip(scans) {
            // A child with more records than a page (rare) reads the rest on its own.
            opened.push(if entries.len() == SEALED_PAGE {
                self.read_sealed(child, *space, b"")?
            } else {
                open_sealed(&data_key, index, *space, entries)?
            });
        }
        let mut opened = opened.into_iter();
        let mut take = || opened.next().unwrap_or_default();
        let relationships = self.stored_relationships(child, take())?;
        let consents = crate::consents::latest_consents_of(take())?;
        let plaintexts = |records: Vec<SealedRecord>| records.into_iter().map(|record| record.plaintext).collect();
        let objections = crate::objections::latest_objections_of(plaintexts(take()))?;
        let shares = crate::safeguarding::latest_shares_of(plaintexts(take()))?;
        Ok(ChildRecords {
            relationships,
            consents,
            objections,
            shares,
            date_of_birth: open_date_of_birth(&data_key, index, date_of_birth)?,
            amendments,
        })
    }
}

#[cfg(test)]
mod tests {
    use tio_core::Category;

    use super::*;
    use crate::NewUpdate;

    /// Read together, a child's records are what the readers of each find one by one,
    /// for a child with records of every kind and for one never seen.
    #[tokio::test]
    async fn a_childs_records_read_together_are_what_each_reader_finds() {
        use crate::store::tests::{agency, child, update};
        let store = Store::in_memory(crate::keys::KeyRing::generate().unwrap()).unwrap();
        let amy = child("9990079196");
        let publisher = agency("hospital");
        let born = Date::constant(2015, 3, 1);
        let first =
            NewUpdate { date_of_birth: Some(born), ..update(&amy, Category::HealthSummary, b"v", "k1", &publisher) };
        store.append_update(first).await.unwrap();
        let mut batch = crate::Batch::new();
        for (condition, op) in [
            store.put_consent_revision(&amy, &crate::consents::tests::revision()).unwrap(),
            store.put_objection_revision(&amy, &crate::objections::tests::revision()).unwrap(),
            store.put_share_revision(&amy, &crate::safeguarding::tests::revision()).unwrap(),
            store.put_new_relationship(&amy, &crate::relationships::tests::record()).unwrap(),
        ] {
            batch.require(condition);
            batch.push(op);
        }
        store.commit(batch).await.unwrap();
        let together = store.child_records(&amy).unwrap();
        let records = |stored: &[StoredRelationship]| {
            stored.iter().map(|one| (one.record.clone(), one.unchanged())).collect::<Vec<_>>()
        };
        assert_eq!(records(&together.relationships), records(&store.relationships_read_alone(&amy).unwrap()));
        assert_eq!(together.consents, store.latest_consents(&amy).unwrap());
        assert_eq!(together.objections, store.latest_objections(&amy).unwrap());
        assert_eq!(together.shares, store.latest_shares(&amy).unwrap());
        assert_eq!(together.amendments, store.amendment_count(amy.index_in(&store)).unwrap());
        assert_eq!(together.date_of_birth, Some(born));
        let counts =
            [together.relationships.len(), together.consents.len(), together.objections.len(), together.shares.len()];
        assert_eq!(counts, [1, 1, 1, 1]);
        let never = store.child_records(&child("9990237573")).unwrap();
        assert!(never.relationships.is_empty() && never.consents.is_empty() && never.date_of_birth.is_none());
    }

    /// A child's records are kept once read, until a commit touches the child: a new
    /// consent is seen at once, another child's commit leaves them kept, and an erasure
    /// leaves nothing of them in memory.
    #[tokio::test]
    async fn records_are_kept_until_a_commit_touches_their_child() {
        use crate::store::tests::{agency, child, update};
        let store = Store::in_memory(crate::keys::KeyRing::generate().unwrap()).unwrap();
        let (amy, bob) = (child("9990079196"), child("9990237573"));
        let publisher = agency("hospital");
        store.append_update(update(&amy, Category::HealthSummary, b"v", "k1", &publisher)).await.unwrap();
        store.append_update(update(&bob, Category::HealthSummary, b"v", "k2", &publisher)).await.unwrap();
        let kept = |store: &Store| store.key_cache().records(amy.index_in(store)).is_some();
        assert!(store.child_records(&amy).unwrap().consents.is_empty());
        assert!(kept(&store), "kept once read");

        let consent = |store: &Store, child| {
            let (condition, op) = store.put_consent_revision(child, &crate::consents::tests::revision()).unwrap();
            let mut batch = crate::Batch::new();
            batch.require(condition);
            batch.push(op);
            batch
        };
        store.commit(consent(&store, &bob)).await.unwrap();
        assert!(kept(&store), "another child's commit leaves them");
        assert!(store.relationships(&bob).unwrap().is_empty());
        assert!(store.key_cache().records(bob.index_in(&store)).is_some(), "a publisher's check keeps them too");
        store.commit(consent(&store, &amy)).await.unwrap();
        assert!(!kept(&store), "forgotten by a commit that touches the child");
        assert_eq!(store.child_records(&amy).unwrap().consents.len(), 1, "the new consent is seen at once");
        assert!(kept(&store));

        assert!(store.erase_child(&amy, tio_core::Timestamp::from_unix_seconds(1)).await.unwrap());
        assert!(!kept(&store), "nothing of an erased child stays in memory");
        assert!(store.child_records(&amy).unwrap().consents.is_empty(), "and nothing can be read");
        assert!(!kept(&store));
    }
}
