//! Safeguarding share revisions, in the `safeguarding` keyspace: every revision of every
//! share of a child, sealed under the child's data key. This module owns their key
//! layout and encoding; the broker builds no key and parses no byte of them.
//!
//! Key: a numbered record's ([`crate::numbered`]): the child's blind index, the share's
//! number, the revision. Sealed value: a version byte, then JSON ([`crate::versioned`]).

use serde::{Deserialize, Serialize};
use tio_core::safeguarding::{SafeguardingShare, ShareId, ShareReason, ShareRevision, ShareState};
use tio_core::{AgencyId, Category, CategorySet, Date, Sector, Timestamp};

use crate::engine::Keyspace;
use crate::versioned::{JSON_V1, decode_json, encode};

/// Where shares live, in the layout of [`crate::numbered`].
const SPACE: Keyspace = Keyspace::Safeguarding;
use crate::{ChildRef, Condition, Op, Store, StoreError};

impl Store {
    /// Returns the precondition that `revision` of the share is new and the operation
    /// that stores it (revision 1 of share `n` is refused if another declaration took
    /// the number first). The child must have a data key ([`Store::ensure_child_key`]).
    pub fn put_share_revision(
        &self,
        child: &(impl ChildRef + ?Sized),
        revision: &ShareRevision,
    ) -> Result<(Condition, Op), StoreError> {
        let share = &revision.share;
        self.put_numbered(SPACE, child, share.id.0, share.revision, &encode_revision(revision))
    }

    /// Returns the precondition that share `id` has had no revision after `revision` (a
    /// disclosure it allowed is made on that condition, so an end stops it).
    pub fn share_unrevised(&self, child: &(impl ChildRef + ?Sized), id: ShareId, revision: u32) -> Condition {
        self.numbered_absent(SPACE, child, id.0, revision.saturating_add(1))
    }

    /// Returns the latest revision of every share of `child`, in the order declared.
    pub fn latest_shares(&self, child: &(impl ChildRef + ?Sized)) -> Result<Vec<ShareRevision>, StoreError> {
        latest_shares_of(self.numbered_revisions(SPACE, child, None)?)
    }

    /// Returns every revision of share `id` of `child`, oldest first.
    pub fn share_revisions(
        &self,
        child: &(impl ChildRef + ?Sized),
        id: ShareId,
    ) -> Result<Vec<ShareRevision>, StoreError> {
        self.numbered_revisions(SPACE, child, Some(id.0))?.iter().map(|plaintext| decode_revision(plaintext)).collect()
    }
}

/// The latest revision of each share among a child's revisions, in number order.
pub(crate) fn latest_shares_of(plaintexts: Vec<Vec<u8>>) -> Result<Vec<ShareRevision>, StoreError> {
    crate::numbered::latest_by_number(plaintexts, decode_revision, |revision| revision.share.id.0)
}

/// Version 1's body: every enum by its stable name, every time in microseconds.
#[derive(Debug, Serialize, Deserialize)]
struct RevisionV1 {
    id: u32,
    revision: u32,
    reason: String,
    reason_text: String,
    categories: Vec<String>,
    agencies: Vec<String>,
    sectors: Vec<String>,
    starts_micros: i64,
    expires_micros: i64,
    declared_by: String,
    ended_micros: Option<i64>,
    review_family_notification_by: Option<String>,
    recorded_by: String,
    recorded_by_professional: String,
    recorded_at_micros: i64,
    end_reason: String,
}

fn encode_revision(revision: &ShareRevision) -> Vec<u8> {
    let share = &revision.share;
    encode(&RevisionV1 {
        id: share.id.0,
        revision: share.revision,
        reason: share.reason.as_str().to_owned(),
        reason_text: revision.reason_text.clone(),
        categories: share.categories.iter().map(|category| category.as_str().to_owned()).collect(),
        agencies: share.agencies.iter().map(|id| id.as_str().to_owned()).collect(),
        sectors: share.sectors.iter().map(|sector| sector.as_str().to_owned()).collect(),
        starts_micros: share.starts.unix_micros(),
        expires_micros: share.expires.unix_micros(),
        declared_by: share.declared_by.as_str().to_owned(),
        ended_micros: match share.state {
            ShareState::Active => None,
            ShareState::Ended { at } => Some(at.unix_micros()),
        },
        review_family_notification_by: revision.review_family_notification_by.map(|date| date.to_string()),
        recorded_by: revision.recorded_by.as_str().to_owned(),
        recorded_by_professional: revision.recorded_by_professional.clone(),
        recorded_at_micros: revision.recorded_at.unix_micros(),
        end_reason: revision.end_reason.clone(),
    })
}

fn decode_revision(plaintext: &[u8]) -> Result<ShareRevision, StoreError> {
    let v1: RevisionV1 = match plaintext.first() {
        Some(&JSON_V1) => decode_json(&plaintext[1..], "safeguarding share")?,
        _ => return Err(StoreError::Corrupt("a stored safeguarding share has an unknown format".into())),
    };
    let id = ShareId(v1.id);
    fn known<T>(value: Option<T>, id: ShareId) -> Result<T, StoreError> {
        value.ok_or_else(|| StoreError::Corrupt(format!("the stored safeguarding share `{id}` names an unknown value")))
    }
    let agency = |text: &String| {
        AgencyId::parse("agency_id", text)
            .map_err(|_| StoreError::Corrupt(format!("the stored safeguarding share `{id}` is invalid")))
    };
    let review = match &v1.review_family_notification_by {
        None => None,
        Some(text) => Some(known(text.parse::<Date>().ok(), id)?),
    };
    Ok(ShareRevision {
        share: SafeguardingShare {
            id,
            revision: v1.revision,
            reason: known(ShareReason::from_name(&v1.reason), id)?,
            categories: v1
                .categories
                .iter()
                .map(|name| known(Category::from_name(name), id))
                .collect::<Result<CategorySet, _>>()?,
            agencies: v1.agencies.iter().map(agency).collect::<Result<_, _>>()?,
            sectors: v1.sectors.iter().map(|name| known(Sector::from_name(name), id)).collect::<Result<_, _>>()?,
            starts: Timestamp::from_unix_micros(v1.starts_micros),
            expires: Timestamp::from_unix_micros(v1.expires_micros),
            declared_by: agency(&v1.declared_by)?,
            state: v1
                .ended_micros
                .map_or(ShareState::Active, |at| ShareState::Ended { at: Timestamp::from_unix_micros(at) }),
        },
        reason_text: v1.reason_text,
        review_family_notification_by: review,
        recorded_by: agency(&v1.recorded_by)?,
        recorded_by_professional: v1.recorded_by_professional,
        recorded_at: Timestamp::from_unix_micros(v1.recorded_at_micros),
        end_reason: v1.end_reason,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use tio_core::NhsNumber;

    use super::*;
    use crate::keys::KeyRing;

    const T0: i64 = 1_800_000_000_000_000;

    pub(crate) fn revision() -> ShareRevision {
        ShareRevision {
            share: SafeguardingShare {
                id: ShareId(2),
                revision: 3,
                reason: ShareReason::Section47Enquiry,
                categories: [Category::HealthSummary].into_iter().collect(),
                agencies: vec![AgencyId::parse("id", "hospital").unwrap()],
                sectors: vec![Sector::Health],
                starts: Timestamp::from_unix_micros(T0),
                expires: Timestamp::from_unix_micros(T0 + 86_400_000_000),
                declared_by: AgencyId::parse("id", "social-care").unwrap(),
                state: ShareState::Ended { at: Timestamp::from_unix_micros(T0 + 60_000_000) },
            },
            reason_text: "strategy meeting".into(),
            review_family_notification_by: Some(Date::constant(2027, 1, 29)),
            recorded_by: AgencyId::parse("id", "social-care").unwrap(),
            recorded_by_professional: "sw-1".into(),
            recorded_at: Timestamp::from_unix_micros(T0 + 60_000_000),
            end_reason: "plan agreed".into(),
        }
    }

    /// The bytes this release seals read back as written. Do not change this fixture.
    #[test]
    fn golden_bytes_read() {
        let golden: &[u8] = b"\x01{\"id\":2,\"revision\":3,\"reason\":\"section_47_enquiry\",\"reason_text\":\"strategy meeting\",\
\"categories\":[\"health_summary\"],\"agencies\":[\"hospital\"],\"sectors\":[\"health\"],\"starts_micros\":1800000000000000,\
\"expires_micros\":1800086400000000,\"declared_by\":\"social-care\",\"ended_micros\":1800000060000000,\
\"review_family_notification_by\":\"2027-01-29\",\"recorded_by\":\"social-care\",\"recorded_by_professional\":\"sw-1\",\
\"recorded_at_micros\":1800000060000000,\"end_reason\":\"plan agreed\"}";
        assert_eq!(encode_revision(&revision()), golden);
        assert_eq!(decode_revision(golden).unwrap(), revision());
        for damaged in [&b""[..], b"\x02{}", b"\x01{", &golden[..golden.len() - 3]] {
            assert!(matches!(decode_revision(damaged), Err(StoreError::Corrupt(_))), "{damaged:?}");
        }
    }

    #[tokio::test]
    async fn revisions_are_new_sealed_read_in_order_and_an_end_fails_what_the_share_allowed() {
        let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
        let child = NhsNumber::parse("9990079196", &tio_core::NhsNumberPolicy::development()).unwrap();
        store.ensure_child_key(&child).await.unwrap();
        let at = |number: u32| {
            let sample = revision();
            ShareRevision {
                share: SafeguardingShare { revision: number, state: ShareState::Active, ..sample.share.clone() },
                ..sample
            }
        };
        for stored in [at(1), at(2)] {
            let (condition, op) = store.put_share_revision(&child, &stored).unwrap();
            let mut batch = crate::Batch::new();
            batch.require(condition);
            batch.push(op);
            store.commit(batch).await.unwrap();
        }
        assert_eq!(store.latest_shares(&child).unwrap(), [at(2)]);
        assert_eq!(store.share_revisions(&child, ShareId(2)).unwrap(), [at(1), at(2)]);
        let mut stale = crate::Batch::new();
        stale.require(store.share_unrevised(&child, ShareId(2), 1));
        assert!(matches!(store.commit(stale).await, Err(StoreError::Conflict { .. })));
        let mut fresh = crate::Batch::new();
        fresh.require(store.share_unrevised(&child, ShareId(2), 2));
        store.commit(fresh).await.unwrap();
    }
}
