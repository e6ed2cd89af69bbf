//! Consent revisions, in the `consents` keyspace: every revision of every consent of a
//! child, sealed under the child's data key. This module owns their key layout and
//! encoding; the broker builds no key and parses no byte of them.
//!
//! Key: the child's blind index, the consent id, `/`, the revision (4 bytes, big-endian,
//! so that a consent's revisions scan in order). Sealed value: a version byte, then
//! JSON ([`crate::versioned`]); a revision written before the version byte existed (the
//! contract's own `tio.v1.ConsentRecord`, protobuf) still reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tio_core::{
    AgencyId, Category, CategorySet, Consent, ConsentEvidence, ConsentGiverRole, ConsentId, ConsentMethod,
    ConsentRevision, ConsentState, Date, GiverAuthority, LawfulBasis, Recipients, Sector, SpecialCategoryCondition,
    Timestamp, Validity,
};

use crate::engine::Keyspace;
use crate::versioned::{JSON_V1, decode_json, encode};
use crate::{ChildRef, Condition, Op, Store, StoreError};

fn suffix(consent_id: &str, revision: u32) -> Vec<u8> {
    [consent_id.as_bytes(), b"/", &revision.to_be_bytes()].concat()
}

impl Store {
    /// Returns the precondition that `revision` of the consent is new and the operation
    /// that stores it. The child must have a data key ([`Store::ensure_child_key`]).
    pub fn put_consent_revision(
        &self,
        child: &(impl ChildRef + ?Sized),
        revision: &ConsentRevision,
    ) -> Result<(Condition, Op), StoreError> {
        let consent = &revision.consent;
        let suffix = suffix(&consent.id.0, consent.revision);
        let condition = Condition::Absent { space: Keyspace::Consents, key: self.child_record_key(child, &suffix) };
        let op = self.sealed_put(child, Keyspace::Consents, &suffix, &encode_revision(revision))?;
        Ok((condition, op))
    }

    /// Returns the precondition that consent `id` has had no revision after `revision`
    /// (a delivery it allowed is made on that condition).
    pub fn consent_unrevised(&self, child: &(impl ChildRef + ?Sized), id: &ConsentId, revision: u32) -> Condition {
        let next = suffix(&id.0, revision.saturating_add(1));
        Condition::Absent { space: Keyspace::Consents, key: self.child_record_key(child, &next) }
    }

    /// Returns the latest revision of every consent of `child`, in id order.
    pub fn latest_consents(&self, child: &(impl ChildRef + ?Sized)) -> Result<Vec<ConsentRevision>, StoreError> {
        latest_consents_of(self.read_sealed(child, Keyspace::Consents, b"")?)
    }

    /// Returns every revision of consent `id` of `child`, oldest first.
    pub fn consent_revisions(
        &self,
        child: &(impl ChildRef + ?Sized),
        id: &str,
    ) -> Result<Vec<ConsentRevision>, StoreError> {
        let prefix = [id.as_bytes(), b"/"].concat();
        self.read_sealed(child, Keyspace::Consents, &prefix)?
            .iter()
            .map(|sealed| decode_revision(&sealed.plaintext))
            .collect()
    }
}

/// The latest revision of each consent among a child's consent records, in id order.
pub(crate) fn latest_consents_of(records: Vec<crate::SealedRecord>) -> Result<Vec<ConsentRevision>, StoreError> {
    let mut latest = BTreeMap::new();
    for sealed in records {
        let revision = decode_revision(&sealed.plaintext)?;
        // Revisions of one consent scan in order, so the last one read is the latest.
        latest.insert(revision.consent.id.clone(), revision);
    }
    Ok(latest.into_values().collect())
}

/// Version 1's body: every enum by its stable name, every time in microseconds.
#[derive(Debug, Serialize, Deserialize)]
struct RevisionV1 {
    id: String,
    revision: u32,
    withdrawn: bool,
    giver_role: String,
    giver_name: String,
    categories: Vec<String>,
    recipient_agencies: Vec<String>,
    recipient_sectors: Vec<String>,
    excluded_agencies: Vec<String>,
    purpose: String,
    lawful_basis: String,
    special_category_condition: Option<String>,
    valid_from_micros: i64,
    valid_until_micros: Option<i64>,
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
    /// Who judged or decided, and the day (`YYYY-MM-DD`): left out when absent, so that
    /// revisions without them keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authority_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authority_on: Option<String>,
}

fn encode_revision(revision: &ConsentRevision) -> Vec<u8> {
    let consent = &revision.consent;
    let ids = |ids: &[AgencyId]| ids.iter().map(|id| id.as_str().to_owned()).collect();
    encode(&RevisionV1 {
        id: consent.id.0.clone(),
        revision: consent.revision,
        withdrawn: matches!(consent.state, ConsentState::Withdrawn { .. }),
        giver_role: consent.giver_role.as_str().to_owned(),
        giver_name: revision.giver_name.clone(),
        categories: consent.categories.iter().map(|category| category.as_str().to_owned()).collect(),
        recipient_agencies: ids(&consent.recipients.agencies),
        recipient_sectors: consent.recipients.sectors.iter().map(|sector| sector.as_str().to_owned()).collect(),
        excluded_agencies: ids(&consent.recipients.excluded),
        purpose: consent.purpose.clone(),
        lawful_basis: consent.lawful_basis.as_str().to_owned(),
        special_category_condition: revision.special_category_condition.map(|c| c.as_str().to_owned()),
        valid_from_micros: consent.valid.from.unix_micros(),
        valid_until_micros: consent.valid.until.map(Timestamp::unix_micros),
        evidence_method: revision.evidence.method.as_str().to_owned(),
        evidence_reference: revision.evidence.reference.clone(),
        evidence_language: revision.evidence.language.clone(),
        interpreter_present: revision.evidence.interpreter_present,
        evidence_notes: revision.evidence.notes.clone(),
        recorded_by: revision.recorded_by.as_str().to_owned(),
        recorded_by_professional: revision.recorded_by_professional.clone(),
        recorded_at_micros: revision.recorded_at.unix_micros(),
        withdrawal_reason: revision.withdrawal_reason.clone(),
        first_recorded_at_micros: consent.recorded_at.unix_micros(),
        authority_by: revision.authority.as_ref().map(|authority| authority.by.clone()),
        authority_on: revision.authority.as_ref().map(|authority| authority.on.to_string()),
    })
}

fn decode_revision(plaintext: &[u8]) -> Result<ConsentRevision, StoreError> {
    let v1: RevisionV1 = match plaintext.first() {
        Some(&JSON_V1) => decode_json(&plaintext[1..], "consent")?,
        // The previous format, the contract's message, starts with field 1 (the id).
        Some(&previous::FIRST_BYTE) => previous::decode(plaintext)?,
        _ => return Err(StoreError::Corrupt("a stored consent has an unknown format".into())),
    };
    let corrupt = || StoreError::Corrupt(format!("the stored consent `{}` is invalid", v1.id));
    fn known<T>(value: Option<T>, id: &str) -> Result<T, StoreError> {
        value.ok_or_else(|| StoreError::Corrupt(format!("the stored consent `{id}` names an unknown value")))
    }
    let ids = |ids: &[String]| {
        ids.iter().map(|id| AgencyId::parse("agency_id", id).map_err(|_| corrupt())).collect::<Result<Vec<_>, _>>()
    };
    let categories = v1
        .categories
        .iter()
        .map(|c| known(Category::from_name(c), &v1.id))
        .collect::<Result<CategorySet, StoreError>>()?;
    let recorded_at = Timestamp::from_unix_micros(v1.recorded_at_micros);
    Ok(ConsentRevision {
        consent: Consent {
            id: ConsentId(v1.id.clone()),
            revision: v1.revision,
            giver_role: known(ConsentGiverRole::from_name(&v1.giver_role), &v1.id)?,
            categories,
            recipients: Recipients {
                agencies: ids(&v1.recipient_agencies)?,
                sectors: v1
                    .recipient_sectors
                    .iter()
                    .map(|s| known(Sector::from_name(s), &v1.id))
                    .collect::<Result<_, _>>()?,
                excluded: ids(&v1.excluded_agencies)?,
            },
            purpose: v1.purpose.clone(),
            lawful_basis: known(LawfulBasis::from_name(&v1.lawful_basis), &v1.id)?,
            valid: Validity {
                from: Timestamp::from_unix_micros(v1.valid_from_micros),
                until: v1.valid_until_micros.map(Timestamp::from_unix_micros),
            },
            state: if v1.withdrawn { ConsentState::Withdrawn { at: recorded_at } } else { ConsentState::Active },
            recorded_at: Timestamp::from_unix_micros(v1.first_recorded_at_micros),
        },
        giver_name: v1.giver_name.clone(),
        special_category_condition: v1
            .special_category_condition
            .as_deref()
            .map(|c| known(SpecialCategoryCondition::from_name(c), &v1.id))
            .transpose()?,
        evidence: ConsentEvidence {
            method: known(ConsentMethod::from_name(&v1.evidence_method), &v1.id)?,
            reference: v1.evidence_reference.clone(),
            language: v1.evidence_language.clone(),
            interpreter_present: v1.interpreter_present,
            notes: v1.evidence_notes.clone(),
        },
        recorded_by: AgencyId::parse("recorded_by", &v1.recorded_by).map_err(|_| corrupt())?,
        recorded_by_professional: v1.recorded_by_professional.clone(),
        recorded_at,
        withdrawal_reason: v1.withdrawal_reason.clone(),
        authority: match (&v1.authority_by, &v1.authority_on) {
            (None, None) => None,
            (Some(by), Some(on)) => {
                Some(GiverAuthority { by: by.clone(), on: on.parse::<Date>().map_err(|_| corrupt())? })
            }
            _ => return Err(corrupt()),
        },
    })
}

/// The format before the version byte: the contract's `tio.v1.ConsentRecord` as it was
/// when those revisions were written, frozen here so that the store reads them without
/// depending on the contract. Its enum numbers are the contract's of that time.
mod previous {
    use super::RevisionV1;
    use crate::StoreError;
    use crate::previous::{Timestamp, category_names, micros, name_of, sector_names};

    /// Field 1 (the consent id), length-delimited: how every such record starts.
    pub(super) const FIRST_BYTE: u8 = 0x0a;

    #[derive(Clone, PartialEq, prost::Message)]
    struct ConsentRecord {
        #[prost(string, tag = "1")]
        consent_id: String,
        #[prost(uint32, tag = "2")]
        revision: u32,
        #[prost(int32, tag = "3")]
        state: i32,
        #[prost(int32, tag = "5")]
        giver_role: i32,
        #[prost(string, tag = "6")]
        giver_name: String,
        #[prost(int32, repeated, tag = "7")]
        categories: Vec<i32>,
        #[prost(message, optional, tag = "8")]
        recipients: Option<Recipients>,
        #[prost(string, tag = "9")]
        purpose: String,
        #[prost(int32, tag = "10")]
        lawful_basis: i32,
        #[prost(int32, tag = "11")]
        special_category_condition: i32,
        #[prost(message, optional, tag = "12")]
        valid: Option<Validity>,
        #[prost(message, optional, tag = "13")]
        evidence: Option<Evidence>,
        #[prost(string, tag = "14")]
        recorded_by_agency_id: String,
        #[prost(string, tag = "15")]
        recorded_by_professional_id: String,
        #[prost(message, optional, tag = "16")]
        recorded_at: Option<Timestamp>,
        #[prost(string, tag = "17")]
        withdrawal_reason: String,
        #[prost(message, optional, tag = "18")]
        first_recorded_at: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Recipients {
        #[prost(string, repeated, tag = "1")]
        agency_ids: Vec<String>,
        #[prost(int32, repeated, tag = "2")]
        sectors: Vec<i32>,
        #[prost(string, repeated, tag = "3")]
        excluded_agency_ids: Vec<String>,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    struct Validity {
        #[prost(message, optional, tag = "1")]
        from: Option<Timestamp>,
        #[prost(message, optional, tag = "2")]
        until: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Evidence {
        #[prost(int32, tag = "1")]
        method: i32,
        #[prost(string, tag = "2")]
        reference: String,
        #[prost(string, tag = "3")]
        language: String,
        #[prost(bool, tag = "4")]
        interpreter_present: bool,
        #[prost(string, tag = "5")]
        notes: String,
    }

    const GIVER_ROLES: [&str; 3] = ["parent_with_parental_responsibility", "young_person", "competent_child"];
    const LAWFUL_BASES: [&str; 4] = ["consent", "legal_obligation", "vital_interests", "public_task"];
    const CONDITIONS: [&str; 4] =
        ["explicit_consent", "vital_interests", "health_or_social_care", "substantial_public_interest"];
    const METHODS: [&str; 4] = ["in_person", "telephone", "signed_form", "video_call"];
    const WITHDRAWN: i32 = 2;

    pub(super) fn decode(bytes: &[u8]) -> Result<RevisionV1, StoreError> {
        let corrupt = || StoreError::Corrupt("a stored consent of the previous format does not decode".into());
        let old = <ConsentRecord as prost::Message>::decode(bytes).map_err(|_| corrupt())?;
        let recipients = old.recipients.clone().unwrap_or_default();
        let valid = old.valid.unwrap_or_default();
        let evidence = old.evidence.clone().unwrap_or_default();
        let recorded_at = micros(old.recorded_at).ok_or_else(corrupt)?;
        let condition = match old.special_category_condition {
            0 => None,
            number => Some(name_of(&CONDITIONS, number).ok_or_else(corrupt)?),
        };
        Ok(RevisionV1 {
            id: old.consent_id,
            revision: old.revision,
            withdrawn: old.state == WITHDRAWN,
            giver_role: name_of(&GIVER_ROLES, old.giver_role).ok_or_else(corrupt)?,
            giver_name: old.giver_name,
            categories: category_names(&old.categories).ok_or_else(corrupt)?,
            recipient_agencies: recipients.agency_ids,
            recipient_sectors: sector_names(&recipients.sectors).ok_or_else(corrupt)?,
            excluded_agencies: recipients.excluded_agency_ids,
            purpose: old.purpose,
            lawful_basis: name_of(&LAWFUL_BASES, old.lawful_basis).ok_or_else(corrupt)?,
            special_category_condition: condition,
            valid_from_micros: micros(valid.from).ok_or_else(corrupt)?,
            valid_until_micros: micros(valid.until),
            evidence_method: name_of(&METHODS, evidence.method).ok_or_else(corrupt)?,
            evidence_reference: evidence.reference,
            evidence_language: evidence.language,
            interpreter_present: evidence.interpreter_present,
            evidence_notes: evidence.notes,
            recorded_by: old.recorded_by_agency_id,
            recorded_by_professional: old.recorded_by_professional_id,
            recorded_at_micros: recorded_at,
            withdrawal_reason: old.withdrawal_reason,
            // Revisions written before the first recording time was kept had only their own.
            first_recorded_at_micros: micros(old.first_recorded_at).unwrap_or(recorded_at),
            authority_by: None,
            authority_on: None,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use tio_core::NhsNumber;

    use super::*;
    use crate::keys::KeyRing;

    const T0: i64 = 1_800_000_000_000_000;

    pub(crate) fn revision() -> ConsentRevision {
        let agency = |id: &str| AgencyId::parse("id", id).unwrap();
        ConsentRevision {
            consent: Consent {
                id: ConsentId("c-1".into()),
                revision: 2,
                giver_role: ConsentGiverRole::ParentWithParentalResponsibility,
                categories: [Category::CommunicationNeeds, Category::HealthSummary].into_iter().collect(),
                recipients: Recipients {
                    agencies: vec![agency("gp")],
                    sectors: vec![Sector::Health],
                    excluded: vec![agency("rxx")],
                },
                purpose: "care".into(),
                lawful_basis: LawfulBasis::PublicTask,
                valid: Validity {
                    from: Timestamp::from_unix_micros(T0),
                    until: Some(Timestamp::from_unix_micros(1_900_000_000_000_000)),
                },
                state: ConsentState::Withdrawn { at: Timestamp::from_unix_micros(T0 + 60_000_000) },
                recorded_at: Timestamp::from_unix_micros(T0),
            },
            giver_name: "Anna".into(),
            special_category_condition: Some(SpecialCategoryCondition::HealthOrSocialCare),
            evidence: ConsentEvidence {
                method: ConsentMethod::SignedForm,
                reference: "F-7".into(),
                language: "pl".into(),
                interpreter_present: true,
                notes: "n".into(),
            },
            recorded_by: agency("send-team"),
            recorded_by_professional: "dr-j".into(),
            recorded_at: Timestamp::from_unix_micros(T0 + 60_000_000),
            withdrawal_reason: "moved".into(),
            authority: None,
        }
    }

    /// The bytes this release seals, and the bytes the previous release sealed (the
    /// contract's message, as prost encoded it): both read. Do not change these fixtures.
    #[test]
    fn golden_bytes_of_this_and_the_previous_format_read() {
        let golden: &[u8] = b"\x01{\"id\":\"c-1\",\"revision\":2,\"withdrawn\":true,\
\"giver_role\":\"parent_with_parental_responsibility\",\"giver_name\":\"Anna\",\
\"categories\":[\"communication_needs\",\"health_summary\"],\"recipient_agencies\":[\"gp\"],\
\"recipient_sectors\":[\"health\"],\"excluded_agencies\":[\"rxx\"],\"purpose\":\"care\",\
\"lawful_basis\":\"public_task\",\"special_category_condition\":\"health_or_social_care\",\
\"valid_from_micros\":1800000000000000,\"valid_until_micros\":1900000000000000,\
\"evidence_method\":\"signed_form\",\"evidence_reference\":\"F-7\",\"evidence_language\":\"pl\",\
\"interpreter_present\":true,\"evidence_notes\":\"n\",\"recorded_by\":\"send-team\",\
\"recorded_by_professional\":\"dr-j\",\"recorded_at_micros\":1800000060000000,\
\"withdrawal_reason\":\"moved\",\"first_recorded_at_micros\":1800000000000000}";
        assert_eq!(encode_revision(&revision()), golden);
        assert_eq!(decode_revision(golden).unwrap(), revision());
        let previous: &[u8] =
            b"\x0a\x03\x63\x2d\x31\x10\x02\x18\x02\x22\x0c\x39\x39\x39\x20\x2a\x2a\x2a\x20\x39\x31\x39\x36\x28\
\x01\x32\x04\x41\x6e\x6e\x61\x3a\x02\x02\x03\x42\x0c\x0a\x02\x67\x70\x12\x01\x01\x1a\x03\x72\x78\
\x78\x4a\x04\x63\x61\x72\x65\x50\x04\x58\x03\x62\x10\x0a\x06\x08\x80\xa4\xa7\xda\x06\x12\x06\x08\
\x80\xe6\xfe\x89\x07\x6a\x10\x08\x03\x12\x03\x46\x2d\x37\x1a\x02\x70\x6c\x20\x01\x2a\x01\x6e\x72\
\x09\x73\x65\x6e\x64\x2d\x74\x65\x61\x6d\x7a\x04\x64\x72\x2d\x6a\x82\x01\x06\x08\xbc\xa4\xa7\xda\
\x06\x8a\x01\x05\x6d\x6f\x76\x65\x64\x92\x01\x06\x08\x80\xa4\xa7\xda\x06";
        assert_eq!(decode_revision(previous).unwrap(), revision());
        for damaged in [&b""[..], b"\x02{}", b"\x01{", &previous[..previous.len() - 3]] {
            assert!(matches!(decode_revision(damaged), Err(StoreError::Corrupt(_))), "{damaged:?}");
        }
    }

    #[test]
    fn who_judged_competence_and_when_is_kept() {
        let competent = ConsentRevision {
            consent: Consent { giver_role: ConsentGiverRole::CompetentChild, ..revision().consent },
            authority: Some(GiverAuthority { by: "Dr Lee".into(), on: Date::constant(2026, 11, 2) }),
            ..revision()
        };
        let bytes = encode_revision(&competent);
        assert!(
            String::from_utf8_lossy(&bytes).contains("\"authority_by\":\"Dr Lee\",\"authority_on\":\"2026-11-02\"")
        );
        assert_eq!(decode_revision(&bytes).unwrap(), competent);
        let half = String::from_utf8_lossy(&bytes).replace(",\"authority_on\":\"2026-11-02\"", "");
        assert!(matches!(decode_revision(half.as_bytes()), Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn revisions_are_new_sealed_and_read_latest_first_or_in_order() {
        let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
        let child = NhsNumber::parse("9990079196", &tio_core::NhsNumberPolicy::development()).unwrap();
        store.ensure_child_key(&child).await.unwrap();
        let first = ConsentRevision {
            consent: Consent { revision: 1, state: ConsentState::Active, ..revision().consent },
            ..revision()
        };
        for stored in [&first, &revision()] {
            let (condition, op) = store.put_consent_revision(&child, stored).unwrap();
            let mut batch = crate::Batch::new();
            batch.require(condition);
            batch.push(op);
            store.commit(batch).await.unwrap();
        }
        assert_eq!(store.latest_consents(&child).unwrap(), [revision()]);
        assert_eq!(store.consent_revisions(&child, "c-1").unwrap(), [first.clone(), revision()]);
        assert!(store.consent_revisions(&child, "c-").unwrap().is_empty(), "ids are matched whole");
        // Revision 2 exists: storing it again, or a delivery conditional on revision 1, fails.
        let (again, op) = store.put_consent_revision(&child, &revision()).unwrap();
        let mut batch = crate::Batch::new();
        batch.require(again);
        batch.push(op);
        assert!(matches!(store.commit(batch).await, Err(StoreError::Conflict { .. })));
        let mut stale = crate::Batch::new();
        stale.require(store.consent_unrevised(&child, &ConsentId("c-1".into()), 1));
        assert!(matches!(store.commit(stale).await, Err(StoreError::Conflict { .. })));
        let mut fresh = crate::Batch::new();
        fresh.require(store.consent_unrevised(&child, &ConsentId("c-1".into()), 2));
        store.commit(fresh).await.unwrap();
    }
}
