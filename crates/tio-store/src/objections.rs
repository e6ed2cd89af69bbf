//! Objection revisions, in the `objections` keyspace: every revision of every objection
//! of a child, sealed under the child's data key. This module owns their key layout and
//! encoding; the broker builds no key and parses no byte of them.
//!
//! Key: a numbered record's ([`crate::numbered`]): the child's blind index, the
//! objection's number, the revision. Sealed value: a version byte, then JSON
//! ([`crate::versioned`]).

use serde::{Deserialize, Serialize};
use tio_core::{
    AgencyId, Category, CategorySet, ConsentEvidence, ConsentGiverRole, ConsentMethod, Objection, ObjectionId,
    ObjectionRevision, ObjectionState, Sector, Timestamp,
};

use crate::engine::Keyspace;
use crate::versioned::{JSON_V1, decode_json, encode};

/// Where objections live, in the layout of [`crate::numbered`].
const SPACE: Keyspace = Keyspace::Objections;
use crate::{ChildRef, Condition, Op, Store, StoreError};

impl Store {
    /// Returns the precondition that `revision` of the objection is new and the
    /// operation that stores it. Revision 1 of objection `n` is also refused unless the
    /// caller read `n - 1` as the child's last ([`Store::latest_objections`]): numbers
    /// stay dense because two objections raised at once both want the same one. The
    /// child must have a data key ([`Store::ensure_child_key`]).
    pub fn put_objection_revision(
        &self,
        child: &(impl ChildRef + ?Sized),
        revision: &ObjectionRevision,
    ) -> Result<(Condition, Op), StoreError> {
        let objection = &revision.objection;
        self.put_numbered(SPACE, child, objection.id.0, objection.revision, &encode_revision(revision))
    }

    /// Returns the precondition that no objection after the `raised` first ones has been
    /// raised for `child` (a delivery decided on the objections read is made on that
    /// condition; a withdrawal can only allow more, so it need not be watched).
    pub fn no_objection_since(&self, child: &(impl ChildRef + ?Sized), raised: u32) -> Condition {
        self.numbered_absent(SPACE, child, raised.saturating_add(1), 1)
    }

    /// Returns the latest revision of every objection of `child`, in the order they
    /// were raised (so the last one's number is how many have been).
    pub fn latest_objections(&self, child: &(impl ChildRef + ?Sized)) -> Result<Vec<ObjectionRevision>, StoreError> {
        latest_objections_of(self.numbered_revisions(SPACE, child, None)?)
    }

    /// Returns every revision of objection `id` of `child`, oldest first.
    pub fn objection_revisions(
        &self,
        child: &(impl ChildRef + ?Sized),
        id: ObjectionId,
    ) -> Result<Vec<ObjectionRevision>, StoreError> {
        self.numbered_revisions(SPACE, child, Some(id.0))?.iter().map(|plaintext| decode_revision(plaintext)).collect()
    }
}

/// The latest revision of each objection among a child's revisions, in number order.
pub(crate) fn latest_objections_of(plaintexts: Vec<Vec<u8>>) -> Result<Vec<ObjectionRevision>, StoreError> {
    crate::numbered::latest_by_number(plaintexts, decode_revision, |revision| revision.objection.id.0)
}

/// Version 1's body: every enum by its stable name, every time in microseconds.
#[derive(Debug, Serialize, Deserialize)]
struct RevisionV1 {
    id: u32,
    revision: u32,
    withdrawn: bool,
    giver_role: String,
    giver_name: String,
    categories: Vec<String>,
    agencies: Vec<String>,
    sectors: Vec<String>,
    reason: String,
    evidence_method: String,
    evidence_reference: String,
    evidence_language: String,
    interpreter_present: bool,
    evidence_notes: String,
    recorded_by: String,
    recorded_by_professional: String,
    recorded_at_micros: i64,
    withdrawal_reason: String,
    first_recorded_at_micros: i64,
}

fn encode_revision(revision: &ObjectionRevision) -> Vec<u8> {
    let objection = &revision.objection;
    encode(&RevisionV1 {
        id: objection.id.0,
        revision: objection.revision,
        withdrawn: matches!(objection.state, ObjectionState::Withdrawn { .. }),
        giver_role: objection.giver_role.as_str().to_owned(),
        giver_name: revision.giver_name.clone(),
        categories: objection.categories.iter().map(|category| category.as_str().to_owned()).collect(),
        agencies: objection.agencies.iter().map(|id| id.as_str().to_owned()).collect(),
        sectors: objection.sectors.iter().map(|sector| sector.as_str().to_owned()).collect(),
        reason: revision.reason.clone(),
        evidence_method: revision.evidence.method.as_str().to_owned(),
        evidence_reference: revision.evidence.reference.clone(),
        evidence_language: revision.evidence.language.clone(),
        interpreter_present: revision.evidence.interpreter_present,
        evidence_notes: revision.evidence.notes.clone(),
        recorded_by: revision.recorded_by.as_str().to_owned(),
        recorded_by_professional: revision.recorded_by_professional.clone(),
        recorded_at_micros: revision.recorded_at.unix_micros(),
        withdrawal_reason: revision.withdrawal_reason.clone(),
        first_recorded_at_micros: objection.recorded_at.unix_micros(),
    })
}

fn decode_revision(plaintext: &[u8]) -> Result<ObjectionRevision, StoreError> {
    let v1: RevisionV1 = match plaintext.first() {
        Some(&JSON_V1) => decode_json(&plaintext[1..], "objection")?,
        _ => return Err(StoreError::Corrupt("a stored objection has an unknown format".into())),
    };
    let id = ObjectionId(v1.id);
    let corrupt = || StoreError::Corrupt(format!("the stored objection `{id}` is invalid"));
    fn known<T>(value: Option<T>, id: ObjectionId) -> Result<T, StoreError> {
        value.ok_or_else(|| StoreError::Corrupt(format!("the stored objection `{id}` names an unknown value")))
    }
    let agency = |text: &String| AgencyId::parse("agency_id", text).map_err(|_| corrupt());
    let recorded_at = Timestamp::from_unix_micros(v1.recorded_at_micros);
    Ok(ObjectionRevision {
        objection: Objection {
            id,
            revision: v1.revision,
            giver_role: known(ConsentGiverRole::from_name(&v1.giver_role), id)?,
            categories: v1
                .categories
                .iter()
                .map(|name| known(Category::from_name(name), id))
                .collect::<Result<CategorySet, _>>()?,
            agencies: v1.agencies.iter().map(agency).collect::<Result<_, _>>()?,
            sectors: v1.sectors.iter().map(|name| known(Sector::from_name(name), id)).collect::<Result<_, _>>()?,
            state: if v1.withdrawn { ObjectionState::Withdrawn { at: recorded_at } } else { ObjectionState::Active },
            recorded_at: Timestamp::from_unix_micros(v1.first_recorded_at_micros),
        },
        giver_name: v1.giver_name,
        reason: v1.reason,
        evidence: ConsentEvidence {
            method: known(ConsentMethod::from_name(&v1.evidence_method), id)?,
            reference: v1.evidence_reference,
            language: v1.evidence_language,
            interpreter_present: v1.interpreter_present,
            notes: v1.evidence_notes,
        },
        recorded_by: agency(&v1.recorded_by)?,
        recorded_by_professional: v1.recorded_by_professional,
        recorded_at,
        withdrawal_reason: v1.withdrawal_reason,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use tio_core::NhsNumber;

    use super::*;
    use crate::keys::KeyRing;

    const T0: i64 = 1_800_000_000_000_000;

    pub(crate) fn revision() -> ObjectionRevision {
        ObjectionRevision {
            objection: Objection {
                id: ObjectionId(3),
                revision: 2,
                giver_role: ConsentGiverRole::YoungPerson,
                categories: [Category::HealthSummary].into_iter().collect(),
                agencies: vec![AgencyId::parse("id", "school").unwrap()],
                sectors: vec![Sector::Education],
                state: ObjectionState::Withdrawn { at: Timestamp::from_unix_micros(T0 + 60_000_000) },
                recorded_at: Timestamp::from_unix_micros(T0),
            },
            giver_name: "Amy".into(),
            reason: "private".into(),
            evidence: ConsentEvidence {
                method: ConsentMethod::InPerson,
                reference: "M-1".into(),
                language: "pl".into(),
                interpreter_present: false,
                notes: "n".into(),
            },
            recorded_by: AgencyId::parse("id", "social-care").unwrap(),
            recorded_by_professional: "sw-1".into(),
            recorded_at: Timestamp::from_unix_micros(T0 + 60_000_000),
            withdrawal_reason: "changed mind".into(),
        }
    }

    /// The bytes this release seals read back as written. Do not change this fixture.
    #[test]
    fn golden_bytes_read() {
        let golden: &[u8] = b"\x01{\"id\":3,\"revision\":2,\"withdrawn\":true,\"giver_role\":\"young_person\",\
\"giver_name\":\"Amy\",\"categories\":[\"health_summary\"],\"agencies\":[\"school\"],\"sectors\":[\"education\"],\
\"reason\":\"private\",\"evidence_method\":\"in_person\",\"evidence_reference\":\"M-1\",\"evidence_language\":\"pl\",\
\"interpreter_present\":false,\"evidence_notes\":\"n\",\"recorded_by\":\"social-care\",\
\"recorded_by_professional\":\"sw-1\",\"recorded_at_micros\":1800000060000000,\
\"withdrawal_reason\":\"changed mind\",\"first_recorded_at_micros\":1800000000000000}";
        assert_eq!(encode_revision(&revision()), golden);
        assert_eq!(decode_revision(golden).unwrap(), revision());
        for damaged in [&b""[..], b"\x02{}", b"\x01{", &golden[..golden.len() - 3]] {
            assert!(matches!(decode_revision(damaged), Err(StoreError::Corrupt(_))), "{damaged:?}");
        }
        let unknown = String::from_utf8_lossy(golden).replace("young_person", "grandparent");
        assert!(matches!(decode_revision(unknown.as_bytes()), Err(StoreError::Corrupt(_))));
    }

    async fn put(store: &Store, child: &NhsNumber, revision: &ObjectionRevision) -> Result<(), StoreError> {
        let (condition, op) = store.put_objection_revision(child, revision)?;
        let mut batch = crate::Batch::new();
        batch.require(condition);
        batch.push(op);
        store.commit(batch).await.map(|_| ())
    }

    #[tokio::test]
    async fn revisions_are_new_sealed_read_in_order_and_watched_by_number() {
        let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
        let child = NhsNumber::parse("9990079196", &tio_core::NhsNumberPolicy::development()).unwrap();
        store.ensure_child_key(&child).await.unwrap();
        let raised = |id: u32| ObjectionRevision {
            objection: Objection {
                id: ObjectionId(id),
                revision: 1,
                state: ObjectionState::Active,
                ..revision().objection
            },
            ..revision()
        };
        // Nothing raised yet: a delivery made on "none since 0" commits.
        let mut none = crate::Batch::new();
        none.require(store.no_objection_since(&child, 0));
        store.commit(none).await.unwrap();

        for stored in [raised(1), raised(2), raised(3), revision()] {
            put(&store, &child, &stored).await.unwrap();
        }
        let latest = store.latest_objections(&child).unwrap();
        assert_eq!(
            latest.iter().map(|r| (r.objection.id.0, r.objection.revision)).collect::<Vec<_>>(),
            [(1, 1), (2, 1), (3, 2)]
        );
        assert_eq!(store.objection_revisions(&child, ObjectionId(3)).unwrap(), [raised(3), revision()]);
        assert!(store.objection_revisions(&child, ObjectionId(4)).unwrap().is_empty());
        // Storing a revision again fails, as a second objection wanting the same number does.
        assert!(matches!(put(&store, &child, &raised(3)).await, Err(StoreError::Conflict { .. })));
        // A delivery decided when two had been raised is refused; one decided on three commits.
        for (raised_then, commits) in [(2, false), (3, true)] {
            let mut batch = crate::Batch::new();
            batch.require(store.no_objection_since(&child, raised_then));
            assert_eq!(store.commit(batch).await.is_ok(), commits, "decided on {raised_then}");
        }
    }
}
