//! Conversions between the contract's messages and the domain's values, so that each
//! mapping (a category, an action, a time) is written once.

use tio_audit::entry::{Action, AuditEntry, Outcome};
use tio_core::{
    Agency, AgencyId, Category, CategorySet, FieldViolation, OrganisationCodeKind, Role, Sector, Timestamp, limits,
};
use tio_proto::v1;
use tio_store::agencies::AgencyRecord;

use crate::app::error::ServiceError;

/// Returns the contract's timestamp of `time`.
pub(crate) fn timestamp_to_proto(time: Timestamp) -> prost_types::Timestamp {
    let micros = time.unix_micros();
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        // Below 10^9 by construction.
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

/// Returns the time of a contract timestamp, to the microsecond; a malformed one names
/// `field`.
pub(crate) fn timestamp_from_proto(field: &str, time: &prost_types::Timestamp) -> Result<Timestamp, ServiceError> {
    tio_core::calendar::timestamp(field, time.seconds, time.nanos)
        .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))
}

/// Returns the time of an optional contract timestamp.
pub(crate) fn optional_timestamp(
    field: &str,
    time: Option<&prost_types::Timestamp>,
) -> Result<Option<Timestamp>, ServiceError> {
    time.map(|time| timestamp_from_proto(field, time)).transpose()
}

/// Returns the contract's value of a category.
pub(crate) fn category_to_proto(category: Category) -> v1::Category {
    match category {
        Category::IdentityAndContacts => v1::Category::IdentityAndContacts,
        Category::CommunicationNeeds => v1::Category::CommunicationNeeds,
        Category::HealthSummary => v1::Category::HealthSummary,
        Category::SendSupport => v1::Category::SendSupport,
        Category::EducationPlacement => v1::Category::EducationPlacement,
        Category::SocialCareInvolvement => v1::Category::SocialCareInvolvement,
        Category::TransitionToAdulthood => v1::Category::TransitionToAdulthood,
    }
}

/// Returns the category of a contract value; unspecified or unknown values name `field`.
pub(crate) fn category_from_proto(field: &str, value: i32) -> Result<Category, ServiceError> {
    Category::ALL
        .into_iter()
        .find(|category| category_to_proto(*category) as i32 == value)
        .ok_or_else(|| invalid(field, "must be a known category"))
}

/// Returns the contract's value of a stored category name (unspecified if unknown).
pub(crate) fn category_name_to_proto(name: &str) -> i32 {
    Category::from_name(name).map_or(v1::Category::Unspecified as i32, |category| category_to_proto(category) as i32)
}

/// Returns the contract's value of an audit action.
pub(crate) fn action_to_proto(action: Action) -> v1::AuditAction {
    match action {
        Action::Publish => v1::AuditAction::Publish,
        Action::ProfileRead => v1::AuditAction::ProfileRead,
        Action::Delivery => v1::AuditAction::Delivery,
        Action::DeliverySkipped => v1::AuditAction::DeliverySkipped,
        Action::ConsentRecorded => v1::AuditAction::ConsentRecorded,
        Action::ConsentWithdrawn => v1::AuditAction::ConsentWithdrawn,
        Action::ConsentRead => v1::AuditAction::ConsentRead,
        Action::RelationshipDeclared => v1::AuditAction::RelationshipDeclared,
        Action::RelationshipEnded => v1::AuditAction::RelationshipEnded,
        Action::RelationshipRead => v1::AuditAction::RelationshipRead,
        Action::SubscriptionChanged => v1::AuditAction::SubscriptionChanged,
        Action::Admin => v1::AuditAction::Admin,
        Action::AuditRead => v1::AuditAction::AuditRead,
        Action::Authentication => v1::AuditAction::Authentication,
        Action::ObjectionRaised => v1::AuditAction::ObjectionRaised,
        Action::ObjectionWithdrawn => v1::AuditAction::ObjectionWithdrawn,
        Action::SafeguardingDeclared => v1::AuditAction::SafeguardingDeclared,
        Action::SafeguardingRenewed => v1::AuditAction::SafeguardingRenewed,
        Action::SafeguardingEnded => v1::AuditAction::SafeguardingEnded,
        Action::UpdateCorrected => v1::AuditAction::UpdateCorrected,
        Action::UpdateRetracted => v1::AuditAction::UpdateRetracted,
        Action::CorrectionSent => v1::AuditAction::CorrectionSent,
        Action::RetractionSent => v1::AuditAction::RetractionSent,
        Action::ErasureSent => v1::AuditAction::ErasureSent,
        Action::ConsentReviewDue => v1::AuditAction::ConsentReviewDue,
        Action::EhcAssessmentRecorded => v1::AuditAction::EhcAssessmentRecorded,
        Action::EhcAssessmentRead => v1::AuditAction::EhcAssessmentRead,
        Action::EhcDeadlineAlert => v1::AuditAction::EhcDeadlineAlert,
        Action::TransitionRecorded => v1::AuditAction::TransitionRecorded,
        Action::TransitionRead => v1::AuditAction::TransitionRead,
        Action::TransitionAlert => v1::AuditAction::TransitionAlert,
        Action::SendMetricsRead => v1::AuditAction::SendMetricsRead,
    }
}

/// Returns the action a filter asks for: `None` for unspecified (any action).
pub(crate) fn action_filter(field: &str, value: i32) -> Result<Option<Action>, ServiceError> {
    if value == v1::AuditAction::Unspecified as i32 {
        return Ok(None);
    }
    Action::ALL
        .into_iter()
        .find(|action| action_to_proto(*action) as i32 == value)
        .map(Some)
        .ok_or_else(|| invalid(field, "must be a known audit action"))
}

/// Returns the contract's value of an outcome.
pub(crate) fn outcome_to_proto(outcome: Outcome) -> v1::AuditOutcome {
    match outcome {
        Outcome::Allowed => v1::AuditOutcome::Allowed,
        Outcome::Denied => v1::AuditOutcome::Denied,
        Outcome::Failed => v1::AuditOutcome::Failed,
    }
}

/// Returns the outcome a filter asks for: `None` for unspecified (any outcome).
pub(crate) fn outcome_filter(field: &str, value: i32) -> Result<Option<Outcome>, ServiceError> {
    if value == v1::AuditOutcome::Unspecified as i32 {
        return Ok(None);
    }
    [Outcome::Allowed, Outcome::Denied, Outcome::Failed]
        .into_iter()
        .find(|outcome| outcome_to_proto(*outcome) as i32 == value)
        .map(Some)
        .ok_or_else(|| invalid(field, "must be a known audit outcome"))
}

/// Returns an audit entry as the contract shows it, with its canonical bytes.
pub(crate) fn entry_to_proto(entry: &AuditEntry) -> v1::AuditEntry {
    use base64::Engine as _;
    let role = match entry.actor.role.as_str() {
        role if role == Role::Agency.as_str() => v1::Role::Agency,
        role if role == Role::Admin.as_str() => v1::Role::Admin,
        role if role == Role::Auditor.as_str() => v1::Role::Auditor,
        crate::runtime::retention::BROKER_ROLE => v1::Role::Broker,
        _ => v1::Role::Unspecified,
    };
    v1::AuditEntry {
        leaf_index: entry.leaf_index,
        time: Some(timestamp_to_proto(Timestamp::from_unix_micros(entry.time_micros))),
        actor: Some(v1::Actor {
            id: entry.actor.id.clone(),
            role: role as i32,
            certificate_fingerprint: entry.actor.certificate_fingerprint.clone(),
            professional_id: entry.actor.professional_id.clone(),
        }),
        action: Action::from_code(&entry.action).map_or(v1::AuditAction::Unspecified, action_to_proto) as i32,
        outcome: Outcome::from_code(&entry.outcome).map_or(v1::AuditOutcome::Unspecified, outcome_to_proto) as i32,
        reason: entry.reason.clone(),
        child_index: entry.child_index.clone(),
        child_sealed: base64::engine::general_purpose::STANDARD.decode(&entry.child_sealed).unwrap_or_default(),
        categories: entry.categories.iter().map(|name| category_name_to_proto(name)).collect(),
        request_id: entry.request_id.clone(),
        trace_id: entry.trace_id.clone(),
        consent_id: entry.consent_id.clone(),
        consent_revision: entry.consent_revision,
        relationship_id: entry.relationship_id.clone(),
        update_id: entry.update_id.clone(),
        recipient_agency_id: entry.recipient_agency_id.clone(),
        canonical_json: entry.canonical_bytes(),
        detail: entry.detail.clone(),
        basis: entry.basis.clone(),
        overrides: entry.overrides.clone(),
        alert: entry.alert.clone(),
        alert_to: entry.alert_to.clone(),
    }
}

/// Reads a calendar date, naming `field` if it is not one.
pub(crate) fn date_from_proto(field: &str, date: &v1::Date) -> Result<tio_core::Date, ServiceError> {
    let part = |value: i32| i8::try_from(value).ok();
    i16::try_from(date.year)
        .ok()
        .zip(part(date.month))
        .zip(part(date.day))
        .and_then(|((year, month), day)| tio_core::Date::new(year, month, day).ok())
        .ok_or_else(|| ServiceError::InvalidArgument(vec![FieldViolation::new(field, "is not a calendar date")]))
}

/// Returns the contract form of a calendar date.
pub(crate) fn date_to_proto(date: tio_core::Date) -> v1::Date {
    v1::Date { year: i32::from(date.year()), month: i32::from(date.month()), day: i32::from(date.day()) }
}

/// Returns the contract's value of a sector.
pub(crate) fn sector_to_proto(sector: Sector) -> v1::Sector {
    match sector {
        Sector::Health => v1::Sector::Health,
        Sector::Education => v1::Sector::Education,
        Sector::SocialCare => v1::Sector::SocialCare,
        Sector::AdultSocialCare => v1::Sector::AdultSocialCare,
        Sector::Icb => v1::Sector::Icb,
    }
}

/// Returns the sector of a contract value; unspecified or unknown values name `field`.
pub(crate) fn sector_from_proto(field: &str, value: i32) -> Result<Sector, ServiceError> {
    Sector::ALL.into_iter().find(|sector| sector_to_proto(*sector) as i32 == value).ok_or_else(|| {
        let names: Vec<&str> = Sector::ALL.iter().map(|sector| sector.as_str()).collect();
        invalid(field, &format!("must be one of {}", names.join(", ")))
    })
}

/// Returns the categories of a contract list, refusing unknown values and repeats.
pub(crate) fn categories_from_proto(field: &str, values: &[i32]) -> Result<CategorySet, ServiceError> {
    limits::check_items(field, values, Category::ALL.len())
        .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
    let mut set = CategorySet::EMPTY;
    for (index, value) in values.iter().enumerate() {
        let category = category_from_proto(&format!("{field}[{index}]"), *value)?;
        if set.contains(category) {
            return Err(invalid(&format!("{field}[{index}]"), "is listed twice"));
        }
        set.insert(category);
    }
    Ok(set)
}

/// Returns the contract's list of a category set, in category order.
pub(crate) fn categories_to_proto(set: CategorySet) -> Vec<i32> {
    set.iter().map(|category| category_to_proto(category) as i32).collect()
}

/// Returns the organisation code kind of a contract value (`None` for unspecified).
pub(crate) fn code_kind_from_proto(field: &str, value: i32) -> Result<Option<OrganisationCodeKind>, ServiceError> {
    match v1::OrganisationCodeKind::try_from(value) {
        Ok(v1::OrganisationCodeKind::Unspecified) => Ok(None),
        Ok(v1::OrganisationCodeKind::Ods) => Ok(Some(OrganisationCodeKind::Ods)),
        Ok(v1::OrganisationCodeKind::SchoolUrn) => Ok(Some(OrganisationCodeKind::SchoolUrn)),
        Ok(v1::OrganisationCodeKind::LocalAuthority) => Ok(Some(OrganisationCodeKind::LocalAuthority)),
        Err(_) => Err(invalid(field, "must be a known organisation code kind")),
    }
}

/// Validates an agency as an admin sends it (fields named `agency.<field>`) and returns
/// the registry's record of it (no registration time: the registry sets it).
pub(crate) fn agency_from_proto(agency: &v1::Agency) -> Result<AgencyRecord, ServiceError> {
    let one = |violation: FieldViolation| ServiceError::InvalidArgument(vec![violation]);
    let id = AgencyId::parse("agency.id", &agency.id).map_err(one)?;
    Agency::check_name("agency.name", &agency.name).map_err(one)?;
    let sector = sector_from_proto("agency.sector", agency.sector)?;
    let code = match code_kind_from_proto("agency.code_kind", agency.code_kind)? {
        Some(kind) => {
            kind.validate("agency.code", &agency.code).map_err(one)?;
            Some((kind, agency.code.clone()))
        }
        None if agency.code.is_empty() => None,
        None => return Err(invalid("agency.code_kind", "is required when agency.code is given")),
    };
    let agency = Agency {
        id,
        name: agency.name.clone(),
        sector,
        may_publish: categories_from_proto("agency.may_publish", &agency.may_publish)?,
        may_read: categories_from_proto("agency.may_read", &agency.may_read)?,
        may_record_consent: agency.may_record_consent,
        may_declare_safeguarding: agency.may_declare_safeguarding,
        may_run_ehc_assessments: agency.may_run_ehc_assessments,
        suspended: agency.suspended,
    };
    Ok(AgencyRecord { agency, code, registered_at: None })
}

/// Returns the contract form of a registry record.
pub(crate) fn agency_to_proto(record: &AgencyRecord) -> v1::Agency {
    let agency = &record.agency;
    let code_kind = match record.code.as_ref().map(|(kind, _)| *kind) {
        None => v1::OrganisationCodeKind::Unspecified,
        Some(OrganisationCodeKind::Ods) => v1::OrganisationCodeKind::Ods,
        Some(OrganisationCodeKind::SchoolUrn) => v1::OrganisationCodeKind::SchoolUrn,
        Some(OrganisationCodeKind::LocalAuthority) => v1::OrganisationCodeKind::LocalAuthority,
    };
    v1::Agency {
        id: agency.id.as_str().to_owned(),
        name: agency.name.clone(),
        sector: sector_to_proto(agency.sector) as i32,
        code_kind: code_kind as i32,
        code: record.code.as_ref().map(|(_, code)| code.clone()).unwrap_or_default(),
        may_publish: categories_to_proto(agency.may_publish),
        may_read: categories_to_proto(agency.may_read),
        may_record_consent: agency.may_record_consent,
        suspended: agency.suspended,
        registered_at: record.registered_at.map(timestamp_to_proto),
        may_declare_safeguarding: agency.may_declare_safeguarding,
        may_run_ehc_assessments: agency.may_run_ehc_assessments,
    }
}

fn invalid(field: &str, reason: &str) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_to_the_microsecond_and_refuse_bad_nanos() {
        for micros in [0, 1, 1_800_000_000_123_456, -1, -1_500_000] {
            let time = Timestamp::from_unix_micros(micros);
            assert_eq!(timestamp_from_proto("t", &timestamp_to_proto(time)).unwrap(), time, "{micros}");
        }
        let bad = prost_types::Timestamp { seconds: 0, nanos: 1_000_000_000 };
        assert!(matches!(timestamp_from_proto("from_time", &bad),
            Err(ServiceError::InvalidArgument(v)) if v[0].field == "from_time.nanos"));
        let huge = prost_types::Timestamp { seconds: i64::MAX, nanos: 0 };
        assert!(timestamp_from_proto("t", &huge).is_err());
    }

    #[test]
    fn every_category_action_and_outcome_maps_both_ways() {
        for category in Category::ALL {
            assert_eq!(category_from_proto("c", category_to_proto(category) as i32).unwrap(), category);
            assert_eq!(category_name_to_proto(category.as_str()), category_to_proto(category) as i32);
        }
        assert!(category_from_proto("c", 0).is_err());
        assert!(category_from_proto("c", 99).is_err());
        for action in Action::ALL {
            assert_eq!(action_filter("a", action_to_proto(action) as i32).unwrap(), Some(action));
            // The contract's names follow the stored codes.
            assert_eq!(action_to_proto(action).as_str_name(), format!("AUDIT_ACTION_{}", action.code().to_uppercase()));
        }
        assert_eq!(action_filter("a", 0).unwrap(), None);
        assert!(action_filter("a", 99).is_err());
        assert_eq!(outcome_filter("o", v1::AuditOutcome::Denied as i32).unwrap(), Some(Outcome::Denied));
        assert!(outcome_filter("o", 7).is_err());
    }

    #[test]
    fn agencies_are_validated_field_by_field_and_round_trip() {
        let good = v1::Agency {
            id: "school-100000".into(),
            name: "Meadow Primary".into(),
            sector: v1::Sector::Education as i32,
            code_kind: v1::OrganisationCodeKind::SchoolUrn as i32,
            code: "100000".into(),
            may_publish: vec![v1::Category::SendSupport as i32],
            may_read: vec![v1::Category::HealthSummary as i32, v1::Category::CommunicationNeeds as i32],
            may_record_consent: true,
            may_declare_safeguarding: false,
            may_run_ehc_assessments: false,
            ..Default::default()
        };
        let record = agency_from_proto(&good).unwrap();
        let back = agency_to_proto(&record);
        assert_eq!((back.id.as_str(), back.sector), ("school-100000", good.sector));
        assert_eq!((back.code_kind, back.code.as_str()), (good.code_kind, "100000"));
        assert_eq!(back.may_read, vec![v1::Category::CommunicationNeeds as i32, v1::Category::HealthSummary as i32]);
        type Change = fn(&mut v1::Agency);
        let cases: [(&str, Change); 7] = [
            ("agency.id", |a| a.id = "School".into()),
            ("agency.name", |a| a.name = " ".into()),
            ("agency.sector", |a| a.sector = 0),
            ("agency.code", |a| a.code = "12345".into()),
            ("agency.code_kind", |a| a.code_kind = 0),
            ("agency.may_publish[0]", |a| a.may_publish = vec![0]),
            ("agency.may_read[1]", |a| a.may_read = vec![3, 3]),
        ];
        for (field, change) in cases {
            let mut bad = good.clone();
            change(&mut bad);
            match agency_from_proto(&bad) {
                Err(ServiceError::InvalidArgument(v)) => assert_eq!(v[0].field, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn entries_carry_their_canonical_bytes() {
        let entry = AuditEntry {
            leaf_index: 7,
            action: "delivery".into(),
            outcome: "allowed".into(),
            categories: vec!["health_summary".into()],
            child_sealed: "c2VhbGVk".into(),
            ..AuditEntry::default()
        };
        let proto = entry_to_proto(&entry);
        assert_eq!(proto.canonical_json, entry.canonical_bytes());
        assert_eq!(proto.action, v1::AuditAction::Delivery as i32);
        assert_eq!(proto.categories, vec![v1::Category::HealthSummary as i32]);
        assert_eq!(proto.child_sealed, b"sealed");
    }
}
