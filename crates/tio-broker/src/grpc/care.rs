//! The contract forms of consent revisions, objections and care relationships,
//! converted to and from the domain's values here, in one place.

use tio_core::{
    AgencyId, ConsentEvidence, ConsentGiverRole, ConsentMethod, ConsentRevision, ConsentState, GiverAuthority,
    LawfulBasis, NhsNumber, ObjectionRevision, ObjectionState, Recipients, RelationshipKind, RelationshipRecord,
    Sector, SpecialCategoryCondition, objection::NewObjection, recording::NewConsent,
};
use tio_proto::v1;

use crate::app::error::ServiceError;
use crate::grpc::convert::{
    categories_from_proto, categories_to_proto, date_from_proto, date_to_proto, optional_timestamp, sector_from_proto,
    sector_to_proto, timestamp_to_proto,
};

fn invalid(field: &str, reason: &str) -> ServiceError {
    ServiceError::InvalidArgument(vec![tio_core::FieldViolation::new(field, reason)])
}

/// Parses a consent as a client asks to record it; the rules of what it must say are
/// the domain's (`tio_core::recording`).
pub(crate) fn new_consent_from_proto(request: &v1::RecordConsentRequest) -> Result<NewConsent, ServiceError> {
    let giver_role = giver_role_of(request.giver_role)?;
    let categories = categories_from_proto("categories", &request.categories)?;
    let recipients = recipients_from_proto(&request.recipients.clone().unwrap_or_default())?;
    let lawful_basis = lawful_basis_from_proto(request.lawful_basis)
        .ok_or_else(|| invalid("lawful_basis", "must be consent, legal obligation, vital interests or public task"))?;
    let special_category_condition = match v1::SpecialCategoryCondition::try_from(request.special_category_condition) {
        Ok(condition) => condition_from_proto(condition),
        Err(_) => return Err(invalid("special_category_condition", "must be a known condition")),
    };
    let valid = request.valid.unwrap_or_default();
    Ok(NewConsent {
        giver_role,
        giver_name: request.giver_name.clone(),
        categories,
        recipients,
        purpose: request.purpose.clone(),
        lawful_basis,
        special_category_condition,
        valid_from: optional_timestamp("valid.from", valid.from.as_ref())?,
        valid_until: optional_timestamp("valid.until", valid.until.as_ref())?,
        evidence: evidence_from_proto("evidence", request.evidence.as_ref())?,
        authority: request
            .authority
            .as_ref()
            .map(|authority| -> Result<GiverAuthority, ServiceError> {
                let on = authority.on.as_ref().ok_or_else(|| invalid("authority.on", "is required"))?;
                Ok(GiverAuthority { by: authority.by.clone(), on: date_from_proto("authority.on", on)? })
            })
            .transpose()?,
    })
}

/// Parses an objection as a client asks to record it; the rules of what it must say are
/// the domain's (`tio_core::objection`).
pub(crate) fn new_objection_from_proto(request: &v1::RecordObjectionRequest) -> Result<NewObjection, ServiceError> {
    Ok(NewObjection {
        giver_role: giver_role_of(request.giver_role)?,
        giver_name: request.giver_name.clone(),
        categories: categories_from_proto("categories", &request.categories)?,
        agencies: agency_ids_from_proto("agency_ids", &request.agency_ids)?,
        sectors: sectors_from_proto("sectors", &request.sectors)?,
        reason: request.reason.clone(),
        evidence: evidence_from_proto("evidence", request.evidence.as_ref())?,
    })
}

/// Returns the contract form of an objection's revision about `child` (shown masked).
pub(crate) fn objection_to_proto(revision: &ObjectionRevision, child: &NhsNumber) -> v1::ObjectionRecord {
    let objection = &revision.objection;
    v1::ObjectionRecord {
        objection_id: objection.id.to_string(),
        revision: objection.revision,
        state: match objection.state {
            ObjectionState::Active => v1::ObjectionState::Active,
            ObjectionState::Withdrawn { .. } => v1::ObjectionState::Withdrawn,
        } as i32,
        child_masked: child.to_string(),
        giver_role: giver_role_to_proto(objection.giver_role) as i32,
        giver_name: revision.giver_name.clone(),
        categories: categories_to_proto(objection.categories),
        agency_ids: agency_ids_to_proto(&objection.agencies),
        sectors: objection.sectors.iter().map(|sector| sector_to_proto(*sector) as i32).collect(),
        reason: revision.reason.clone(),
        evidence: Some(evidence_to_proto(&revision.evidence)),
        recorded_by_agency_id: revision.recorded_by.as_str().to_owned(),
        recorded_by_professional_id: revision.recorded_by_professional.clone(),
        recorded_at: Some(timestamp_to_proto(revision.recorded_at)),
        withdrawal_reason: revision.withdrawal_reason.clone(),
        first_recorded_at: Some(timestamp_to_proto(objection.recorded_at)),
    }
}

/// Parses evidence of how an agreement or withdrawal was given (`field` names it).
pub(crate) fn evidence_from_proto(
    field: &str,
    evidence: Option<&v1::ConsentEvidence>,
) -> Result<ConsentEvidence, ServiceError> {
    let evidence = evidence.ok_or_else(|| invalid(field, "is required: how was it given?"))?;
    let method = match v1::ConsentMethod::try_from(evidence.method) {
        Ok(v1::ConsentMethod::InPerson) => ConsentMethod::InPerson,
        Ok(v1::ConsentMethod::Telephone) => ConsentMethod::Telephone,
        Ok(v1::ConsentMethod::SignedForm) => ConsentMethod::SignedForm,
        Ok(v1::ConsentMethod::VideoCall) => ConsentMethod::VideoCall,
        Ok(v1::ConsentMethod::Unspecified) | Err(_) => {
            return Err(invalid(&format!("{field}.method"), "must be in person, telephone, signed form or video call"));
        }
    };
    Ok(ConsentEvidence {
        method,
        reference: evidence.reference.clone(),
        language: evidence.language.clone(),
        interpreter_present: evidence.interpreter_present,
        notes: evidence.notes.clone(),
    })
}

/// Returns the contract form of a consent revision about `child` (shown masked), marked
/// `to_review` as the caller says.
pub(crate) fn consent_to_proto(revision: &ConsentRevision, child: &NhsNumber, to_review: bool) -> v1::ConsentRecord {
    let consent = &revision.consent;
    let condition = match revision.special_category_condition {
        None => v1::SpecialCategoryCondition::Unspecified,
        Some(SpecialCategoryCondition::ExplicitConsent) => v1::SpecialCategoryCondition::ExplicitConsent,
        Some(SpecialCategoryCondition::VitalInterests) => v1::SpecialCategoryCondition::VitalInterests,
        Some(SpecialCategoryCondition::HealthOrSocialCare) => v1::SpecialCategoryCondition::HealthOrSocialCare,
        Some(SpecialCategoryCondition::SubstantialPublicInterest) => {
            v1::SpecialCategoryCondition::SubstantialPublicInterest
        }
    };
    let ids = agency_ids_to_proto;
    v1::ConsentRecord {
        consent_id: consent.id.0.clone(),
        revision: consent.revision,
        state: match consent.state {
            ConsentState::Active => v1::ConsentState::Active,
            ConsentState::Withdrawn { .. } => v1::ConsentState::Withdrawn,
        } as i32,
        child_masked: child.to_string(),
        giver_role: giver_role_to_proto(consent.giver_role) as i32,
        giver_name: revision.giver_name.clone(),
        categories: categories_to_proto(consent.categories),
        recipients: Some(v1::Recipients {
            agency_ids: ids(&consent.recipients.agencies),
            sectors: consent.recipients.sectors.iter().map(|sector| sector_to_proto(*sector) as i32).collect(),
            excluded_agency_ids: ids(&consent.recipients.excluded),
        }),
        purpose: consent.purpose.clone(),
        lawful_basis: lawful_basis_to_proto(consent.lawful_basis) as i32,
        special_category_condition: condition as i32,
        valid: Some(v1::Validity {
            from: Some(timestamp_to_proto(consent.valid.from)),
            until: consent.valid.until.map(timestamp_to_proto),
        }),
        evidence: Some(evidence_to_proto(&revision.evidence)),
        recorded_by_agency_id: revision.recorded_by.as_str().to_owned(),
        recorded_by_professional_id: revision.recorded_by_professional.clone(),
        recorded_at: Some(timestamp_to_proto(revision.recorded_at)),
        withdrawal_reason: revision.withdrawal_reason.clone(),
        first_recorded_at: Some(timestamp_to_proto(consent.recorded_at)),
        to_review,
        authority: revision
            .authority
            .as_ref()
            .map(|authority| v1::GiverAuthority { by: authority.by.clone(), on: Some(date_to_proto(authority.on)) }),
    }
}

fn evidence_to_proto(evidence: &ConsentEvidence) -> v1::ConsentEvidence {
    let method = match evidence.method {
        ConsentMethod::InPerson => v1::ConsentMethod::InPerson,
        ConsentMethod::Telephone => v1::ConsentMethod::Telephone,
        ConsentMethod::SignedForm => v1::ConsentMethod::SignedForm,
        ConsentMethod::VideoCall => v1::ConsentMethod::VideoCall,
    };
    v1::ConsentEvidence {
        method: method as i32,
        reference: evidence.reference.clone(),
        language: evidence.language.clone(),
        interpreter_present: evidence.interpreter_present,
        notes: evidence.notes.clone(),
    }
}

pub(crate) fn agency_ids_to_proto(ids: &[AgencyId]) -> Vec<String> {
    ids.iter().map(|id| id.as_str().to_owned()).collect()
}

/// Returns the contract form of a relationship; `already_active` says a declaration
/// found it rather than made it.
pub(crate) fn relationship_to_proto(record: &RelationshipRecord, already_active: bool) -> v1::CareRelationship {
    let relationship = &record.relationship;
    v1::CareRelationship {
        relationship_id: relationship.id.0.clone(),
        agency_id: relationship.agency.as_str().to_owned(),
        kind: relationship_kind_to_proto(relationship.kind) as i32,
        reference: record.reference.clone(),
        started_at: Some(timestamp_to_proto(relationship.started_at)),
        ended_at: relationship.ended_at.map(timestamp_to_proto),
        declared_by_professional_id: record.declared_by_professional.clone(),
        end_reason: record.end_reason.clone(),
        already_active,
    }
}

/// Returns the domain kind of a contract value (`None` for unspecified or unknown).
pub(crate) fn relationship_kind_from_proto(value: i32) -> Option<RelationshipKind> {
    RelationshipKind::ALL.into_iter().find(|kind| relationship_kind_to_proto(*kind) as i32 == value)
}

fn relationship_kind_to_proto(kind: RelationshipKind) -> v1::RelationshipKind {
    match kind {
        RelationshipKind::Referral => v1::RelationshipKind::Referral,
        RelationshipKind::Enrolment => v1::RelationshipKind::Enrolment,
        RelationshipKind::Allocation => v1::RelationshipKind::Allocation,
        RelationshipKind::Registration => v1::RelationshipKind::Registration,
        RelationshipKind::Publisher => v1::RelationshipKind::Publisher,
    }
}

/// Parses recipients as a client sends them (fields named `recipients.<field>`).
pub(crate) fn recipients_from_proto(recipients: &v1::Recipients) -> Result<Recipients, ServiceError> {
    Ok(Recipients {
        agencies: agency_ids_from_proto("recipients.agency_ids", &recipients.agency_ids)?,
        sectors: sectors_from_proto("recipients.sectors", &recipients.sectors)?,
        excluded: agency_ids_from_proto("recipients.excluded_agency_ids", &recipients.excluded_agency_ids)?,
    })
}

/// Parses a list of agency ids (at most the documented number), naming `field[i]`.
pub(crate) fn agency_ids_from_proto(field: &str, ids: &[String]) -> Result<Vec<AgencyId>, ServiceError> {
    tio_core::limits::check_items(field, ids, tio_core::limits::MAX_LIST_ITEMS)
        .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
    ids.iter()
        .enumerate()
        .map(|(index, id)| {
            AgencyId::parse(&format!("{field}[{index}]"), id)
                .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))
        })
        .collect()
}

/// Parses a list of sectors, naming `field[i]`.
pub(crate) fn sectors_from_proto(field: &str, sectors: &[i32]) -> Result<Vec<Sector>, ServiceError> {
    sectors.iter().enumerate().map(|(index, sector)| sector_from_proto(&format!("{field}[{index}]"), *sector)).collect()
}

/// Parses who gave a consent or an objection.
fn giver_role_of(value: i32) -> Result<ConsentGiverRole, ServiceError> {
    giver_role_from_proto(value)
        .ok_or_else(|| {
            invalid(
                "giver_role",
                "must be a parent, the local authority, the young person, a competent child, a best-interests decision, a deputy or an attorney",
            )
        })
}

fn giver_role_to_proto(role: ConsentGiverRole) -> v1::ConsentGiverRole {
    match role {
        ConsentGiverRole::ParentWithParentalResponsibility => v1::ConsentGiverRole::ParentWithParentalResponsibility,
        ConsentGiverRole::YoungPerson => v1::ConsentGiverRole::YoungPerson,
        ConsentGiverRole::CompetentChild => v1::ConsentGiverRole::CompetentChild,
        ConsentGiverRole::LocalAuthority => v1::ConsentGiverRole::LocalAuthority,
        ConsentGiverRole::BestInterests => v1::ConsentGiverRole::BestInterests,
        ConsentGiverRole::Deputy => v1::ConsentGiverRole::Deputy,
        ConsentGiverRole::Attorney => v1::ConsentGiverRole::Attorney,
    }
}

/// Returns the domain giver role of a contract value (`None` for unspecified).
fn giver_role_from_proto(value: i32) -> Option<ConsentGiverRole> {
    ConsentGiverRole::ALL.into_iter().find(|role| giver_role_to_proto(*role) as i32 == value)
}

fn lawful_basis_to_proto(basis: LawfulBasis) -> v1::LawfulBasis {
    match basis {
        LawfulBasis::Consent => v1::LawfulBasis::Consent,
        LawfulBasis::LegalObligation => v1::LawfulBasis::LegalObligation,
        LawfulBasis::VitalInterests => v1::LawfulBasis::VitalInterests,
        LawfulBasis::PublicTask => v1::LawfulBasis::PublicTask,
    }
}

/// Returns the domain lawful basis of a contract value (`None` for unspecified).
pub(crate) fn lawful_basis_from_proto(value: i32) -> Option<LawfulBasis> {
    LawfulBasis::ALL.into_iter().find(|basis| lawful_basis_to_proto(*basis) as i32 == value)
}

pub(crate) fn condition_from_proto(condition: v1::SpecialCategoryCondition) -> Option<SpecialCategoryCondition> {
    match condition {
        v1::SpecialCategoryCondition::Unspecified => None,
        v1::SpecialCategoryCondition::ExplicitConsent => Some(SpecialCategoryCondition::ExplicitConsent),
        v1::SpecialCategoryCondition::VitalInterests => Some(SpecialCategoryCondition::VitalInterests),
        v1::SpecialCategoryCondition::HealthOrSocialCare => Some(SpecialCategoryCondition::HealthOrSocialCare),
        v1::SpecialCategoryCondition::SubstantialPublicInterest => {
            Some(SpecialCategoryCondition::SubstantialPublicInterest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enum_maps_both_ways_and_unspecified_is_none() {
        for kind in RelationshipKind::ALL {
            assert_eq!(relationship_kind_from_proto(relationship_kind_to_proto(kind) as i32), Some(kind));
        }
        for role in ConsentGiverRole::ALL {
            assert_eq!(giver_role_from_proto(giver_role_to_proto(role) as i32), Some(role));
        }
        for basis in LawfulBasis::ALL {
            assert_eq!(lawful_basis_from_proto(lawful_basis_to_proto(basis) as i32), Some(basis));
        }
        assert_eq!(
            (relationship_kind_from_proto(0), giver_role_from_proto(0), lawful_basis_from_proto(0)),
            (None, None, None)
        );
        assert_eq!(condition_from_proto(v1::SpecialCategoryCondition::Unspecified), None);
    }
}
