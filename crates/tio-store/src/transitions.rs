//! Transition records (14 to 25), in the `transitions` keyspace: every revision of a
//! young person's one record, sealed under the child's data key. This module owns
//! their key layout and encoding.
//!
//! Key: a numbered record's ([`crate::numbered`]): the child's blind index, number 1
//! (a young person has one record), the revision. Sealed value: a version byte, then
//! JSON ([`crate::versioned`]), every enum by its stable name and every date as ISO
//! text.

use serde::{Deserialize, Serialize};
use tio_core::recording::Recorder;
use tio_core::transition::{Milestone, MilestoneRecord, Transition};
use tio_core::{AgencyId, Date, Timestamp};

use crate::engine::Keyspace;
use crate::versioned::{JSON_V1, decode_json, encode};
use crate::{ChildRef, Condition, Op, Store, StoreError};

/// Where transition records live, in the layout of [`crate::numbered`].
const SPACE: Keyspace = Keyspace::Transitions;

/// The number of a young person's one record.
const THE_RECORD: u32 = 1;

impl Store {
    /// Returns the precondition that `transition`'s revision is new and the operation
    /// that stores it (a second opening, or a change from a revision another change
    /// already followed, is refused). The child must have a data key
    /// ([`Store::ensure_child_key`]).
    pub fn put_transition(
        &self,
        child: &(impl ChildRef + ?Sized),
        transition: &Transition,
    ) -> Result<(Condition, Op), StoreError> {
        self.put_numbered(SPACE, child, THE_RECORD, transition.revision, &encode_transition(transition))
    }

    /// Returns the latest revision of `child`'s transition record, if it has one.
    pub fn transition(&self, child: &(impl ChildRef + ?Sized)) -> Result<Option<Transition>, StoreError> {
        self.numbered_revisions(SPACE, child, Some(THE_RECORD))?
            .last()
            .map(|plain| decode_transition(plain))
            .transpose()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TransitionV1 {
    revision: u32,
    run_by: String,
    opened_on: String,
    leaving_education: Option<String>,
    milestones: Vec<MilestoneV1>,
    recorded_by: String,
    recorded_by_professional: String,
    recorded_at_micros: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct MilestoneV1 {
    milestone: String,
    owner: String,
    done_on: Option<String>,
}

fn encode_transition(transition: &Transition) -> Vec<u8> {
    encode(&TransitionV1 {
        revision: transition.revision,
        run_by: transition.run_by.as_str().to_owned(),
        opened_on: transition.opened_on.to_string(),
        leaving_education: transition.leaving_education.map(|date| date.to_string()),
        milestones: transition
            .milestones
            .iter()
            .map(|record| MilestoneV1 {
                milestone: record.milestone.as_str().to_owned(),
                owner: record.owner.as_str().to_owned(),
                done_on: record.done_on.map(|date| date.to_string()),
            })
            .collect(),
        recorded_by: transition.recorded_by.agency.as_str().to_owned(),
        recorded_by_professional: transition.recorded_by.professional.clone(),
        recorded_at_micros: transition.recorded_at.unix_micros(),
    })
}

fn decode_transition(plaintext: &[u8]) -> Result<Transition, StoreError> {
    let v1: TransitionV1 = match plaintext.first() {
        Some(&JSON_V1) => decode_json(&plaintext[1..], "transition record")?,
        _ => return Err(StoreError::Corrupt("a stored transition record has an unknown format".into())),
    };
    let bad = || StoreError::Corrupt("a stored transition record is invalid".to_owned());
    let agency = |text: &str| AgencyId::parse("agency_id", text).map_err(|_| bad());
    let date = |text: &str| text.parse::<Date>().map_err(|_| bad());
    let milestones = v1
        .milestones
        .iter()
        .map(|record| {
            Ok(MilestoneRecord {
                milestone: Milestone::from_name(&record.milestone).ok_or_else(bad)?,
                owner: agency(&record.owner)?,
                done_on: record.done_on.as_deref().map(date).transpose()?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Transition {
        revision: v1.revision,
        run_by: agency(&v1.run_by)?,
        opened_on: date(&v1.opened_on)?,
        leaving_education: v1.leaving_education.as_deref().map(date).transpose()?,
        milestones,
        recorded_by: Recorder { agency: agency(&v1.recorded_by)?, professional: v1.recorded_by_professional },
        recorded_at: Timestamp::from_unix_micros(v1.recorded_at_micros),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition() -> Transition {
        let agency = |id: &str| AgencyId::parse("id", id).unwrap();
        Transition {
            revision: 2,
            run_by: agency("send-team"),
            opened_on: Date::constant(2025, 9, 1),
            leaving_education: Some(Date::constant(2030, 7, 19)),
            milestones: vec![
                MilestoneRecord {
                    milestone: Milestone::AdultSocialCareReferral,
                    owner: agency("social-care"),
                    done_on: Some(Date::constant(2029, 9, 1)),
                },
                MilestoneRecord { milestone: Milestone::PlanCeases, owner: agency("send-team"), done_on: None },
            ],
            recorded_by: Recorder { agency: agency("send-team"), professional: "cw-1".into() },
            recorded_at: Timestamp::from_unix_micros(1_800_000_000_000_000),
        }
    }

    /// The bytes this release seals read back as written. Do not change this fixture.
    #[test]
    fn golden_bytes_read() {
        let golden: &[u8] = b"\x01{\"revision\":2,\"run_by\":\"send-team\",\"opened_on\":\"2025-09-01\",\
\"leaving_education\":\"2030-07-19\",\"milestones\":[{\"milestone\":\"adult_social_care_referral\",\
\"owner\":\"social-care\",\"done_on\":\"2029-09-01\"},{\"milestone\":\"plan_ceases\",\"owner\":\"send-team\",\
\"done_on\":null}],\"recorded_by\":\"send-team\",\"recorded_by_professional\":\"cw-1\",\
\"recorded_at_micros\":1800000000000000}";
        assert_eq!(String::from_utf8_lossy(&encode_transition(&transition())), String::from_utf8_lossy(golden));
        assert_eq!(decode_transition(golden).unwrap(), transition());
        for damaged in [&b""[..], b"\x02{}", b"\x01{", &golden[..golden.len() - 3]] {
            assert!(matches!(decode_transition(damaged), Err(StoreError::Corrupt(_))), "{damaged:?}");
        }
    }

    #[tokio::test]
    async fn one_record_per_young_person_each_revision_new() {
        let store = Store::in_memory(crate::keys::KeyRing::generate().unwrap()).unwrap();
        let child = tio_core::NhsNumber::parse("9990079196", &tio_core::NhsNumberPolicy::development()).unwrap();
        store.ensure_child_key(&child).await.unwrap();
        assert_eq!(store.transition(&child).unwrap(), None);
        let at = |revision: u32| Transition { revision, ..transition() };
        for (revision, outcome_ok) in [(1, true), (1, false), (2, true)] {
            let (condition, op) = store.put_transition(&child, &at(revision)).unwrap();
            let mut batch = crate::Batch::new();
            batch.require(condition);
            batch.push(op);
            assert_eq!(store.commit(batch).await.is_ok(), outcome_ok, "revision {revision}");
        }
        assert_eq!(store.transition(&child).unwrap(), Some(at(2)));
    }
}
