//! What the broker keeps about a child besides its updates: consent revisions and care
//! relationships, sealed under the child's data key in the store, and the domain
//! [`Facts`](tio_core::Facts) every decision is made on.
//!
//! Both are stored in their contract form (`v1::ConsentRecord`, `v1::CareRelationship`),
//! so what a client reads back is exactly what was recorded, and converted to the
//! domain's plain values here, in one place.

use std::collections::BTreeMap;

use prost::Message;
use tio_core::{
    AgencyId, CareRelationship, Consent, ConsentGiverRole, ConsentId, ConsentState, LawfulBasis, NhsNumber, Recipients,
    RelationshipId, RelationshipKind, Sector, Timestamp, Validity,
};
use tio_proto::v1;
use tio_store::{Keyspace, Store, StoreError};

use crate::convert::{categories_from_proto, sector_from_proto, timestamp_from_proto};
use crate::status::ServiceError;

/// A stored care relationship and its stored bytes (for a precondition on ending it).
#[derive(Debug, Clone)]
pub struct StoredRelationship {
    /// The relationship as recorded.
    pub record: v1::CareRelationship,
    /// Its store key suffix.
    pub suffix: Vec<u8>,
    /// The sealed bytes as stored.
    pub raw: Vec<u8>,
}

/// Everything recorded about one child that decisions use.
#[derive(Debug, Clone, Default)]
pub struct ChildFacts {
    /// Every care relationship, active and ended.
    pub relationships: Vec<StoredRelationship>,
    /// The latest revision of every consent, in id order.
    pub consents: Vec<v1::ConsentRecord>,
}

/// Returns the store key suffix of a consent revision: the id, `/`, the revision
/// (4 bytes, big-endian, so revisions sort in order). Do not change.
pub fn consent_suffix(consent_id: &str, revision: u32) -> Vec<u8> {
    [consent_id.as_bytes(), b"/", &revision.to_be_bytes()].concat()
}

/// Returns the store key suffix of a care relationship: its id. Do not change.
pub fn relationship_suffix(relationship_id: &str) -> Vec<u8> {
    relationship_id.as_bytes().to_vec()
}

fn corrupt(what: &str) -> ServiceError {
    ServiceError::Store(StoreError::Corrupt(format!("a stored {what} does not decode")))
}

/// Reads every relationship and the latest revision of every consent of `child`.
pub fn load_facts(store: &Store, child: &NhsNumber) -> Result<ChildFacts, ServiceError> {
    let relationships = store
        .read_sealed(child, Keyspace::Relationships, b"")?
        .into_iter()
        .map(|sealed| {
            let record =
                v1::CareRelationship::decode(sealed.plaintext.as_slice()).map_err(|_| corrupt("relationship"))?;
            Ok(StoredRelationship { record, suffix: sealed.suffix, raw: sealed.raw })
        })
        .collect::<Result<Vec<_>, ServiceError>>()?;
    let mut latest: BTreeMap<String, v1::ConsentRecord> = BTreeMap::new();
    for sealed in store.read_sealed(child, Keyspace::Consents, b"")? {
        let record = v1::ConsentRecord::decode(sealed.plaintext.as_slice()).map_err(|_| corrupt("consent"))?;
        // Revisions of one consent sort in order, so the last one read is the latest.
        latest.insert(record.consent_id.clone(), record);
    }
    Ok(ChildFacts { relationships, consents: latest.into_values().collect() })
}

/// Returns every revision of one consent of `child`, oldest first.
pub fn consent_revisions(
    store: &Store,
    child: &NhsNumber,
    consent_id: &str,
) -> Result<Vec<v1::ConsentRecord>, ServiceError> {
    let prefix = [consent_id.as_bytes(), b"/"].concat();
    store
        .read_sealed(child, Keyspace::Consents, &prefix)?
        .into_iter()
        .map(|sealed| v1::ConsentRecord::decode(sealed.plaintext.as_slice()).map_err(|_| corrupt("consent")))
        .collect()
}

impl ChildFacts {
    /// Returns the facts as the domain core takes them.
    pub fn domain(&self) -> Result<(Vec<CareRelationship>, Vec<Consent>), ServiceError> {
        let relationships =
            self.relationships.iter().map(|stored| relationship_to_domain(&stored.record)).collect::<Result<_, _>>()?;
        let consents = self.consents.iter().map(consent_to_domain).collect::<Result<_, _>>()?;
        Ok((relationships, consents))
    }

    /// Returns the active relationship of `agency` at `now`, if any.
    pub fn active_relationship(&self, agency: &str, now: Timestamp) -> Option<&StoredRelationship> {
        self.relationships.iter().find(|stored| {
            stored.record.agency_id == agency
                && relationship_to_domain(&stored.record).is_ok_and(|relationship| relationship.is_active_at(now))
        })
    }
}

fn stored_time(time: Option<&prost_types::Timestamp>, what: &str) -> Result<Timestamp, ServiceError> {
    let time = time.ok_or_else(|| corrupt(what))?;
    timestamp_from_proto(what, time).map_err(|_| corrupt(what))
}

/// Converts a stored relationship to the domain's.
pub fn relationship_to_domain(record: &v1::CareRelationship) -> Result<CareRelationship, ServiceError> {
    Ok(CareRelationship {
        id: RelationshipId(record.relationship_id.clone()),
        agency: AgencyId::parse("agency_id", &record.agency_id).map_err(|_| corrupt("relationship"))?,
        kind: relationship_kind_from_proto(record.kind).ok_or_else(|| corrupt("relationship"))?,
        started_at: stored_time(record.started_at.as_ref(), "relationship")?,
        ended_at: record.ended_at.as_ref().map(|time| stored_time(Some(time), "relationship")).transpose()?,
    })
}

/// Returns the domain kind of a contract value (`None` for unspecified or unknown).
pub fn relationship_kind_from_proto(value: i32) -> Option<RelationshipKind> {
    match v1::RelationshipKind::try_from(value).ok()? {
        v1::RelationshipKind::Unspecified => None,
        v1::RelationshipKind::Referral => Some(RelationshipKind::Referral),
        v1::RelationshipKind::Enrolment => Some(RelationshipKind::Enrolment),
        v1::RelationshipKind::Allocation => Some(RelationshipKind::Allocation),
        v1::RelationshipKind::Registration => Some(RelationshipKind::Registration),
        v1::RelationshipKind::Publisher => Some(RelationshipKind::Publisher),
    }
}

/// Converts the latest stored revision of a consent to the domain's.
pub fn consent_to_domain(record: &v1::ConsentRecord) -> Result<Consent, ServiceError> {
    let bad = |_| corrupt("consent");
    let recipients = record.recipients.clone().unwrap_or_default();
    let valid = record.valid.unwrap_or_default();
    let recorded_at = stored_time(record.recorded_at.as_ref(), "consent")?;
    Ok(Consent {
        id: ConsentId(record.consent_id.clone()),
        revision: record.revision,
        giver_role: giver_role_from_proto(record.giver_role).ok_or_else(|| corrupt("consent"))?,
        categories: categories_from_proto("categories", &record.categories).map_err(bad)?,
        recipients: recipients_to_domain(&recipients).map_err(bad)?,
        purpose: record.purpose.clone(),
        lawful_basis: lawful_basis_from_proto(record.lawful_basis).ok_or_else(|| corrupt("consent"))?,
        valid: Validity {
            from: stored_time(valid.from.as_ref(), "consent")?,
            until: valid.until.as_ref().map(|time| stored_time(Some(time), "consent")).transpose()?,
        },
        state: match record.state() {
            v1::ConsentState::Withdrawn => ConsentState::Withdrawn { at: recorded_at },
            _ => ConsentState::Active,
        },
        recorded_at: record
            .first_recorded_at
            .as_ref()
            .map_or(Ok(recorded_at), |time| stored_time(Some(time), "consent"))?,
    })
}

/// Validates recipients as a client sends them (fields named `recipients.<field>`).
pub fn recipients_to_domain(recipients: &v1::Recipients) -> Result<Recipients, ServiceError> {
    let ids = |field: &str, ids: &[String]| -> Result<Vec<AgencyId>, ServiceError> {
        tio_core::limits::check_items(field, ids, tio_core::limits::MAX_LIST_ITEMS)
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        ids.iter()
            .enumerate()
            .map(|(index, id)| {
                AgencyId::parse(&format!("{field}[{index}]"), id)
                    .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))
            })
            .collect()
    };
    let sectors = recipients
        .sectors
        .iter()
        .enumerate()
        .map(|(index, sector)| sector_from_proto(&format!("recipients.sectors[{index}]"), *sector))
        .collect::<Result<Vec<Sector>, _>>()?;
    Ok(Recipients {
        agencies: ids("recipients.agency_ids", &recipients.agency_ids)?,
        sectors,
        excluded: ids("recipients.excluded_agency_ids", &recipients.excluded_agency_ids)?,
    })
}

/// Returns the domain giver role of a contract value (`None` for unspecified).
pub fn giver_role_from_proto(value: i32) -> Option<ConsentGiverRole> {
    match v1::ConsentGiverRole::try_from(value).ok()? {
        v1::ConsentGiverRole::Unspecified => None,
        v1::ConsentGiverRole::ParentWithParentalResponsibility => {
            Some(ConsentGiverRole::ParentWithParentalResponsibility)
        }
        v1::ConsentGiverRole::YoungPerson => Some(ConsentGiverRole::YoungPerson),
        v1::ConsentGiverRole::CompetentChild => Some(ConsentGiverRole::CompetentChild),
    }
}

/// Returns the domain lawful basis of a contract value (`None` for unspecified).
pub fn lawful_basis_from_proto(value: i32) -> Option<LawfulBasis> {
    match v1::LawfulBasis::try_from(value).ok()? {
        v1::LawfulBasis::Unspecified => None,
        v1::LawfulBasis::Consent => Some(LawfulBasis::Consent),
        v1::LawfulBasis::LegalObligation => Some(LawfulBasis::LegalObligation),
        v1::LawfulBasis::VitalInterests => Some(LawfulBasis::VitalInterests),
        v1::LawfulBasis::PublicTask => Some(LawfulBasis::PublicTask),
    }
}
