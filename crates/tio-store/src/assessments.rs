//! EHC needs assessment revisions, in the `assessments` keyspace: every revision of
//! every assessment of a child, sealed under the child's data key. This module owns
//! their key layout and encoding; the broker builds no key and parses no byte of them.
//!
//! Key: a numbered record's ([`crate::numbered`]): the child's blind index, the
//! assessment's number, the revision. Sealed value: a version byte, then JSON
//! ([`crate::versioned`]), every enum by its stable name and every date as ISO text.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tio_core::ehc::assessment::{Advice, AdviceRequest, Agreements, Assessment, AssessmentId, RequestedBy};
use tio_core::ehc::{AdviserType, AssessDecision, AssessmentDates, ClockException, ExceptionCode};
use tio_core::recording::Recorder;
use tio_core::{AgencyId, Category, Date, Timestamp};

use crate::engine::Keyspace;
use crate::versioned::{JSON_V1, decode_json, encode};
use crate::{ChildRef, Condition, Op, Store, StoreError};

/// Where assessments live, in the layout of [`crate::numbered`].
const SPACE: Keyspace = Keyspace::Assessments;

impl Store {
    /// Returns the precondition that `assessment`'s revision is new and the operation
    /// that stores it (revision 1 of assessment `n` is refused if another opening took
    /// the number first; revision `r + 1` if another change came first). The child must
    /// have a data key ([`Store::ensure_child_key`]).
    pub fn put_assessment(
        &self,
        child: &(impl ChildRef + ?Sized),
        assessment: &Assessment,
    ) -> Result<(Condition, Op), StoreError> {
        self.put_numbered(SPACE, child, assessment.id.0, assessment.revision, &encode_assessment(assessment))
    }

    /// Returns the latest revision of every assessment of `child`, in the order opened.
    pub fn latest_assessments(&self, child: &(impl ChildRef + ?Sized)) -> Result<Vec<Assessment>, StoreError> {
        let mut latest = BTreeMap::new();
        for plaintext in self.numbered_revisions(SPACE, child, None)? {
            let assessment = decode_assessment(&plaintext)?;
            latest.insert(assessment.id, assessment);
        }
        Ok(latest.into_values().collect())
    }

    /// Returns the latest revision of assessment `id` of `child`, if there is one.
    pub fn assessment(
        &self,
        child: &(impl ChildRef + ?Sized),
        id: AssessmentId,
    ) -> Result<Option<Assessment>, StoreError> {
        self.numbered_revisions(SPACE, child, Some(id.0))?.last().map(|plain| decode_assessment(plain)).transpose()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct AssessmentV1 {
    id: u32,
    revision: u32,
    run_by: String,
    /// `parent`, `young_person`, or `agency` with `requested_by_agency`.
    requested_by: String,
    requested_by_agency: Option<String>,
    request_received: Option<String>,
    decision: Option<String>,
    decision_notified_on: Option<String>,
    draft_sent: Option<String>,
    no_plan_notified: Option<String>,
    final_plan_issued: Option<String>,
    exceptions: Vec<ExceptionV1>,
    advice: Vec<AdviceRequestV1>,
    recorded_by: String,
    recorded_by_professional: String,
    recorded_at_micros: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ExceptionV1 {
    code: String,
    from: String,
    until: Option<String>,
    recorded_on: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct AdviceRequestV1 {
    adviser: String,
    agency: String,
    asked_on: String,
    answer: Option<AdviceV1>,
}

#[derive(Debug, Serialize, Deserialize)]
struct AdviceV1 {
    update_id: String,
    category: String,
    given_on: String,
    /// The authority's, the adviser's and the family's agreements, for advice already
    /// given.
    agreements: Option<[String; 3]>,
}

fn day(date: Date) -> String {
    date.to_string()
}

fn encode_assessment(assessment: &Assessment) -> Vec<u8> {
    let dates = &assessment.dates;
    let (requested_by, requested_by_agency) = match &assessment.requested_by {
        RequestedBy::Parent => ("parent", None),
        RequestedBy::YoungPerson => ("young_person", None),
        RequestedBy::Agency(id) => ("agency", Some(id.as_str().to_owned())),
    };
    encode(&AssessmentV1 {
        id: assessment.id.0,
        revision: assessment.revision,
        run_by: assessment.run_by.as_str().to_owned(),
        requested_by: requested_by.to_owned(),
        requested_by_agency,
        request_received: dates.request_received.map(day),
        decision: dates.decision.map(|(decision, _)| {
            match decision {
                AssessDecision::Assess => "assess",
                AssessDecision::DoNotAssess => "do_not_assess",
            }
            .to_owned()
        }),
        decision_notified_on: dates.decision.map(|(_, on)| day(on)),
        draft_sent: dates.draft_sent.map(day),
        no_plan_notified: dates.no_plan_notified.map(day),
        final_plan_issued: dates.final_plan_issued.map(day),
        exceptions: dates
            .exceptions
            .iter()
            .map(|exception| ExceptionV1 {
                code: exception.code.as_str().to_owned(),
                from: day(exception.from),
                until: exception.until.map(day),
                recorded_on: day(exception.recorded_on),
            })
            .collect(),
        advice: assessment
            .advice
            .iter()
            .map(|request| AdviceRequestV1 {
                adviser: request.adviser.as_str().to_owned(),
                agency: request.agency.as_str().to_owned(),
                asked_on: day(request.asked_on),
                answer: request.answer.as_ref().map(|advice| AdviceV1 {
                    update_id: advice.update_id.clone(),
                    category: advice.category.as_str().to_owned(),
                    given_on: day(advice.given_on),
                    agreements: advice
                        .reuse
                        .map(|agreed| [day(agreed.authority), day(agreed.adviser), day(agreed.family)]),
                }),
            })
            .collect(),
        recorded_by: assessment.recorded_by.agency.as_str().to_owned(),
        recorded_by_professional: assessment.recorded_by.professional.clone(),
        recorded_at_micros: assessment.recorded_at.unix_micros(),
    })
}

fn decode_assessment(plaintext: &[u8]) -> Result<Assessment, StoreError> {
    let v1: AssessmentV1 = match plaintext.first() {
        Some(&JSON_V1) => decode_json(&plaintext[1..], "EHC needs assessment")?,
        _ => return Err(StoreError::Corrupt("a stored EHC needs assessment has an unknown format".into())),
    };
    let id = AssessmentId(v1.id);
    let bad = || StoreError::Corrupt(format!("the stored EHC needs assessment `{id}` is invalid"));
    let agency = |text: &str| AgencyId::parse("agency_id", text).map_err(|_| bad());
    let date = |text: &str| text.parse::<Date>().map_err(|_| bad());
    let optional = |text: &Option<String>| text.as_deref().map(date).transpose();
    let requested_by = match (v1.requested_by.as_str(), &v1.requested_by_agency) {
        ("parent", None) => RequestedBy::Parent,
        ("young_person", None) => RequestedBy::YoungPerson,
        ("agency", Some(id)) => RequestedBy::Agency(agency(id)?),
        _ => return Err(bad()),
    };
    let decision = match (v1.decision.as_deref(), &v1.decision_notified_on) {
        (None, None) => None,
        (Some("assess"), Some(on)) => Some((AssessDecision::Assess, date(on)?)),
        (Some("do_not_assess"), Some(on)) => Some((AssessDecision::DoNotAssess, date(on)?)),
        _ => return Err(bad()),
    };
    let exceptions = v1
        .exceptions
        .iter()
        .map(|exception| {
            Ok(ClockException {
                code: ExceptionCode::from_name(&exception.code).ok_or_else(bad)?,
                from: date(&exception.from)?,
                until: optional(&exception.until)?,
                recorded_on: date(&exception.recorded_on)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let advice = v1
        .advice
        .iter()
        .map(|request| {
            let answer = match &request.answer {
                None => None,
                Some(advice) => Some(Advice {
                    update_id: advice.update_id.clone(),
                    category: Category::from_name(&advice.category).ok_or_else(bad)?,
                    given_on: date(&advice.given_on)?,
                    reuse: match &advice.agreements {
                        None => None,
                        Some([authority, adviser, family]) => Some(Agreements {
                            authority: date(authority)?,
                            adviser: date(adviser)?,
                            family: date(family)?,
                        }),
                    },
                }),
            };
            Ok(AdviceRequest {
                adviser: AdviserType::from_name(&request.adviser).ok_or_else(bad)?,
                agency: agency(&request.agency)?,
                asked_on: date(&request.asked_on)?,
                answer,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Assessment {
        id,
        revision: v1.revision,
        run_by: agency(&v1.run_by)?,
        requested_by,
        dates: AssessmentDates {
            request_received: optional(&v1.request_received)?,
            decision,
            draft_sent: optional(&v1.draft_sent)?,
            no_plan_notified: optional(&v1.no_plan_notified)?,
            final_plan_issued: optional(&v1.final_plan_issued)?,
            exceptions,
        },
        advice,
        recorded_by: Recorder { agency: agency(&v1.recorded_by)?, professional: v1.recorded_by_professional },
        recorded_at: Timestamp::from_unix_micros(v1.recorded_at_micros),
    })
}

#[cfg(test)]
mod tests {
    use tio_core::NhsNumber;

    use super::*;
    use crate::keys::KeyRing;

    fn assessment() -> Assessment {
        let agency = |id: &str| AgencyId::parse("id", id).unwrap();
        Assessment {
            id: AssessmentId(1),
            revision: 4,
            run_by: agency("send-team"),
            requested_by: RequestedBy::Agency(agency("school")),
            dates: AssessmentDates {
                request_received: Some(Date::constant(2026, 1, 5)),
                decision: Some((AssessDecision::Assess, Date::constant(2026, 2, 2))),
                draft_sent: None,
                no_plan_notified: None,
                final_plan_issued: None,
                exceptions: vec![ClockException {
                    code: ExceptionCode::AbsenceFromArea,
                    from: Date::constant(2026, 2, 9),
                    until: None,
                    recorded_on: Date::constant(2026, 2, 10),
                }],
            },
            advice: vec![
                AdviceRequest {
                    adviser: AdviserType::MedicalHealth,
                    agency: agency("hospital"),
                    asked_on: Date::constant(2026, 2, 3),
                    answer: Some(Advice {
                        update_id: "0123456789abcdef0123456789abcdef".into(),
                        category: Category::HealthSummary,
                        given_on: Date::constant(2026, 2, 6),
                        reuse: Some(Agreements {
                            authority: Date::constant(2026, 2, 4),
                            adviser: Date::constant(2026, 2, 5),
                            family: Date::constant(2026, 2, 6),
                        }),
                    }),
                },
                AdviceRequest {
                    adviser: AdviserType::Educational,
                    agency: agency("school"),
                    asked_on: Date::constant(2026, 2, 3),
                    answer: None,
                },
            ],
            recorded_by: Recorder { agency: agency("send-team"), professional: "cw-1".into() },
            recorded_at: Timestamp::from_unix_micros(1_800_000_000_000_000),
        }
    }

    /// The bytes this release seals read back as written. Do not change this fixture.
    #[test]
    fn golden_bytes_read() {
        let golden: &[u8] = b"\x01{\"id\":1,\"revision\":4,\"run_by\":\"send-team\",\"requested_by\":\"agency\",\
\"requested_by_agency\":\"school\",\"request_received\":\"2026-01-05\",\"decision\":\"assess\",\
\"decision_notified_on\":\"2026-02-02\",\"draft_sent\":null,\"no_plan_notified\":null,\"final_plan_issued\":null,\
\"exceptions\":[{\"code\":\"absence_from_area\",\"from\":\"2026-02-09\",\"until\":null,\"recorded_on\":\"2026-02-10\"}],\
\"advice\":[{\"adviser\":\"medical_health\",\"agency\":\"hospital\",\"asked_on\":\"2026-02-03\",\"answer\":\
{\"update_id\":\"0123456789abcdef0123456789abcdef\",\"category\":\"health_summary\",\"given_on\":\"2026-02-06\",\
\"agreements\":[\"2026-02-04\",\"2026-02-05\",\"2026-02-06\"]}},{\"adviser\":\"educational\",\"agency\":\"school\",\
\"asked_on\":\"2026-02-03\",\"answer\":null}],\"recorded_by\":\"send-team\",\"recorded_by_professional\":\"cw-1\",\
\"recorded_at_micros\":1800000000000000}";
        assert_eq!(String::from_utf8_lossy(&encode_assessment(&assessment())), String::from_utf8_lossy(golden));
        assert_eq!(decode_assessment(golden).unwrap(), assessment());
        for damaged in [&b""[..], b"\x02{}", b"\x01{", &golden[..golden.len() - 3]] {
            assert!(matches!(decode_assessment(damaged), Err(StoreError::Corrupt(_))), "{damaged:?}");
        }
    }

    #[tokio::test]
    async fn revisions_are_new_sealed_and_the_latest_is_read() {
        let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
        let child = NhsNumber::parse("9990079196", &tio_core::NhsNumberPolicy::development()).unwrap();
        store.ensure_child_key(&child).await.unwrap();
        let at = |revision: u32| Assessment { revision, ..assessment() };
        for stored in [at(1), at(2)] {
            let (condition, op) = store.put_assessment(&child, &stored).unwrap();
            let mut batch = crate::Batch::new();
            batch.require(condition);
            batch.push(op);
            store.commit(batch).await.unwrap();
        }
        assert_eq!(store.latest_assessments(&child).unwrap(), [at(2)]);
        assert_eq!(store.assessment(&child, AssessmentId(1)).unwrap(), Some(at(2)));
        assert_eq!(store.assessment(&child, AssessmentId(2)).unwrap(), None);
        // A change made from a revision another change already followed is refused.
        let (again, op) = store.put_assessment(&child, &at(2)).unwrap();
        let mut batch = crate::Batch::new();
        batch.require(again);
        batch.push(op);
        assert!(matches!(store.commit(batch).await, Err(StoreError::Conflict { .. })));
        assert!(store.check().unwrap().is_healthy());
    }
}
