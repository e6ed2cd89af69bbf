//! The record service's adapter: a publish request checked and parsed into a
//! `Publication`, and what was published or read, in the contract's form.

use prost::Message;
use tio_core::protection::{FlagLevel, FlagValue};
use tio_core::{Category, FieldViolation, limits};
use tio_proto::v1;
use tio_store::{StoredUpdate, UpdateId};

use crate::app::broker::Broker;
use crate::app::error::ServiceError;
use crate::app::records::{Amend, AmendmentRequest, Publication, Published};
use crate::grpc::care::{condition_from_proto, lawful_basis_from_proto};
use crate::grpc::convert::{category_from_proto, category_to_proto, optional_timestamp, timestamp_to_proto};

fn invalid(field: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

/// Returns the category a value's oneof holds.
fn value_category(value: &v1::category_value::Value) -> Category {
    use v1::category_value::Value;
    match value {
        Value::IdentityAndContacts(_) => Category::IdentityAndContacts,
        Value::CommunicationNeeds(_) => Category::CommunicationNeeds,
        Value::HealthSummary(_) => Category::HealthSummary,
        Value::SendSupport(_) => Category::SendSupport,
        Value::EducationPlacement(_) => Category::EducationPlacement,
        Value::SocialCareInvolvement(_) => Category::SocialCareInvolvement,
        Value::TransitionToAdulthood(_) => Category::TransitionToAdulthood,
    }
}

/// Checks a publish request's fields, in contract order, and returns the publication.
pub(crate) fn publication_from_proto(
    broker: &Broker,
    request: &v1::PublishRequest,
) -> Result<Publication, ServiceError> {
    let checked = value_from_proto(broker, request.child.as_ref(), request.category, request.value.as_ref())?;
    limits::check_identifier("source_reference", &request.source_reference, limits::MAX_SHORT_STRING_BYTES)
        .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
    if request.idempotency_key.is_empty() {
        return Err(invalid("idempotency_key", "is required"));
    }
    limits::check_identifier("idempotency_key", &request.idempotency_key, limits::MAX_IDEMPOTENCY_KEY_BYTES)
        .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
    // Informative only, but a time that is not a time must not pass as one.
    optional_timestamp("recorded_at", request.recorded_at.as_ref())?;
    Ok(Publication {
        child: checked.child,
        category: checked.category,
        value: checked.value,
        source_reference: request.source_reference.clone(),
        idempotency_key: request.idempotency_key.clone(),
        date_of_birth: checked.date_of_birth,
    })
}

/// A child and a category value, checked as every publish and correction checks them.
struct CheckedValue {
    child: tio_core::NhsNumber,
    category: Category,
    /// The encoded `CategoryValue`.
    value: Vec<u8>,
    /// The date of birth an identity value states.
    date_of_birth: Option<tio_core::Date>,
}

/// Checks a request's child, category and value, in contract order: the same limits
/// and rules for a publish and a correction.
fn value_from_proto(
    broker: &Broker,
    child: Option<&v1::ChildRef>,
    category: i32,
    value: Option<&v1::CategoryValue>,
) -> Result<CheckedValue, ServiceError> {
    let child = broker
        .parse_nhs_number("child.nhs_number", child.map(|child| child.nhs_number.as_str()).unwrap_or_default())?;
    let category = category_from_proto("category", category)?;
    let whole = value;
    let value = whole.and_then(|value| value.value.as_ref()).ok_or_else(|| invalid("value", "is required"))?;
    if value_category(value) != category {
        return Err(invalid("value", format!("holds {} but category is {}", value_category(value), category)));
    }
    let encoded = whole.map(Message::encode_to_vec).unwrap_or_default();
    if encoded.len() > limits::MAX_CATEGORY_VALUE_BYTES {
        return Err(invalid(
            "value",
            format!("must be at most {} bytes encoded, got {}", limits::MAX_CATEGORY_VALUE_BYTES, encoded.len()),
        ));
    }
    crate::grpc::value_limits::check_category_value(&encoded).map_err(ServiceError::InvalidArgument)?;
    let mut date_of_birth = None;
    if let v1::category_value::Value::IdentityAndContacts(identity) = value {
        // A UPN travels only inside the sealed value, but a wrong one must not travel.
        if !identity.upn.is_empty() {
            tio_core::Upn::parse(&identity.upn)
                .map_err(|err| invalid("value.identity_and_contacts.upn", err.to_string()))?;
        }
        // The date the child's age, and so who may consent, is counted from.
        if let Some(born) = &identity.date_of_birth {
            date_of_birth = Some(check_date_of_birth(broker, born)?);
        }
    }
    if let v1::category_value::Value::SendSupport(support) = value
        && let Some(plan) = &support.ehc_plan
    {
        check_advice_references(&plan.advice)?;
    }
    if let v1::category_value::Value::SocialCareInvolvement(involvement) = value {
        // A flag is shared without consent, so it must say on what basis.
        if flag_level(involvement).is_some() {
            flag_basis(involvement).map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        }
    }
    Ok(CheckedValue { child, category, value: encoded, date_of_birth })
}

/// Checks the references of an EHC plan to the advice it was written from: each names
/// an adviser type, an assessment and an update by their ids.
fn check_advice_references(references: &[v1::AdviceReference]) -> Result<(), ServiceError> {
    for (index, reference) in references.iter().enumerate() {
        let field = |name: &str| format!("value.send_support.ehc_plan.advice[{index}].{name}");
        if v1::AdviserType::try_from(reference.adviser_type).is_err()
            || reference.adviser_type == v1::AdviserType::Unspecified as i32
        {
            return Err(invalid(&field("adviser_type"), "must be a known adviser type"));
        }
        tio_core::ehc::assessment::AssessmentId::parse(&field("assessment_id"), &reference.assessment_id)
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        if tio_store::UpdateId::parse(&reference.update_id).is_none() {
            return Err(invalid(&field("update_id"), "must be an update id (32 hex digits)"));
        }
        if !reference.agency_id.is_empty() {
            tio_core::AgencyId::parse(&field("agency_id"), &reference.agency_id)
                .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        }
    }
    Ok(())
}

/// Checks a correction request's fields, in contract order.
pub(crate) fn correction_from_proto(
    broker: &Broker,
    request: &v1::CorrectUpdateRequest,
) -> Result<AmendmentRequest, ServiceError> {
    let checked = value_from_proto(broker, request.child.as_ref(), request.category, request.value.as_ref())?;
    let update_id = update_id_from_proto(&request.update_id)?;
    limits::check_identifier("source_reference", &request.source_reference, limits::MAX_SHORT_STRING_BYTES)
        .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
    Ok(AmendmentRequest {
        child: checked.child,
        update_id,
        kind: Amend::Correction,
        category: Some(checked.category),
        value: checked.value,
        source_reference: request.source_reference.clone(),
        reason: reason_from_proto(&request.reason)?,
        date_of_birth: checked.date_of_birth,
    })
}

/// Checks a retraction request's fields, in contract order.
pub(crate) fn retraction_from_proto(
    broker: &Broker,
    request: &v1::RetractUpdateRequest,
) -> Result<AmendmentRequest, ServiceError> {
    let child = broker.parse_nhs_number(
        "child.nhs_number",
        request.child.as_ref().map(|child| child.nhs_number.as_str()).unwrap_or_default(),
    )?;
    let update_id = update_id_from_proto(&request.update_id)?;
    let reason = reason_from_proto(&request.reason)?;
    limits::check_identifier("source_reference", &request.source_reference, limits::MAX_SHORT_STRING_BYTES)
        .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
    Ok(AmendmentRequest {
        child,
        update_id,
        kind: Amend::Retraction,
        category: None,
        value: Vec::new(),
        source_reference: request.source_reference.clone(),
        reason,
        date_of_birth: None,
    })
}

fn update_id_from_proto(text: &str) -> Result<UpdateId, ServiceError> {
    if text.is_empty() {
        return Err(invalid("update_id", "is required"));
    }
    UpdateId::parse(text).ok_or_else(|| invalid("update_id", "must be 32 hex digits, as the broker gave it"))
}

fn reason_from_proto(reason: &str) -> Result<String, ServiceError> {
    if reason.trim().is_empty() {
        return Err(invalid("reason", "is required: say why, for the agencies that are told"));
    }
    limits::check_len("reason", reason, limits::MAX_FREE_TEXT_BYTES)
        .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
    Ok(reason.to_owned())
}

/// Returns the reply to a correction or a retraction.
pub(crate) fn amended_to_proto(amended: &Published) -> v1::AmendUpdateResponse {
    v1::AmendUpdateResponse {
        update_id: amended.update_id.to_string(),
        position: Some(v1::Position { token: amended.position.as_bytes().to_vec() }),
        committed_at: Some(timestamp_to_proto(amended.committed_at)),
    }
}

/// The level a social-care value flags, if it is a child-protection or looked-after one.
fn flag_level(involvement: &v1::SocialCareInvolvement) -> Option<FlagLevel> {
    match involvement.level() {
        v1::SocialCareLevel::ChildProtection => Some(FlagLevel::ChildProtection),
        v1::SocialCareLevel::LookedAfter => Some(FlagLevel::LookedAfter),
        _ => None,
    }
}

/// The basis a flag's publisher recorded, checked (`tio_core::protection::check_basis`).
fn flag_basis(
    involvement: &v1::SocialCareInvolvement,
) -> Result<(tio_core::LawfulBasis, tio_core::SpecialCategoryCondition), FieldViolation> {
    let condition = v1::SpecialCategoryCondition::try_from(involvement.special_category_condition)
        .ok()
        .and_then(condition_from_proto);
    tio_core::protection::check_basis(
        "value.social_care_involvement",
        lawful_basis_from_proto(involvement.lawful_basis),
        condition,
    )
}

/// Reads the flag a stored social-care value carries (its encoded `CategoryValue`),
/// for the broker's decisions: the level and the basis its publisher recorded. `None`
/// for any other value, and for one stored without a valid basis.
pub(crate) fn flag_of_value(value: &[u8]) -> Option<FlagValue> {
    let decoded = v1::CategoryValue::decode(value).ok()?;
    let v1::category_value::Value::SocialCareInvolvement(involvement) = decoded.value? else { return None };
    let level = flag_level(&involvement)?;
    let (lawful_basis, condition) = flag_basis(&involvement).ok()?;
    Some(FlagValue { level, lawful_basis, condition })
}

/// Reads the date of birth a stored identity value (its encoded `CategoryValue`)
/// states, for the broker's amendments; `None` for any other value or one without it.
pub(crate) fn date_of_birth_of_value(value: &[u8]) -> Option<tio_core::Date> {
    let decoded = v1::CategoryValue::decode(value).ok()?;
    let v1::category_value::Value::IdentityAndContacts(identity) = decoded.value? else { return None };
    crate::grpc::convert::date_from_proto("date_of_birth", identity.date_of_birth.as_ref()?).ok()
}

/// Checks a date of birth (already a calendar date) against today's date in the UK, and
/// returns it.
fn check_date_of_birth(broker: &Broker, born: &v1::Date) -> Result<tio_core::Date, ServiceError> {
    let field = "value.identity_and_contacts.date_of_birth";
    let born = crate::grpc::convert::date_from_proto(field, born)?;
    let today = broker.now().uk_date().ok_or_else(|| ServiceError::Internal("the clock is out of range".to_owned()))?;
    tio_core::age::check_date_of_birth(field, born, today)
        .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
    Ok(born)
}

/// Returns the reply to a publish.
pub(crate) fn published_to_proto(published: &Published) -> v1::PublishResponse {
    v1::PublishResponse {
        update_id: published.update_id.to_string(),
        position: Some(v1::Position { token: published.position.as_bytes().to_vec() }),
        committed_at: Some(timestamp_to_proto(published.committed_at)),
        duplicate: published.duplicate,
    }
}

/// Returns a profile entry in the contract's form.
pub(crate) fn profile_entry_to_proto(stored: StoredUpdate) -> Result<v1::ProfileEntry, ServiceError> {
    let content = stored.content.ok_or_else(|| ServiceError::Internal("a profile value has no content".to_owned()))?;
    let value = v1::CategoryValue::decode(content.value.as_slice())
        .map_err(|_| ServiceError::Internal("a stored category value does not decode".to_owned()))?;
    Ok(v1::ProfileEntry {
        category: category_to_proto(stored.category) as i32,
        value: Some(value),
        update_id: stored.update_id.to_string(),
        position: Some(v1::Position { token: stored.position.as_bytes().to_vec() }),
        publisher_agency_id: stored.publisher,
        source_reference: content.source_reference,
        committed_at: Some(timestamp_to_proto(stored.committed_at)),
    })
}
