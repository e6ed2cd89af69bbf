//! Consent: recorded by a professional on behalf of the person who gave it, withdrawn
//! the same way, read by agencies that may record consent or are involved with the
//! child. Every revision is kept, sealed under the child's data key; each change
//! commits with its audit entry.

use tio_audit::entry::{Action, Outcome};
use tio_audit::log::entry_op;
use tio_core::{Agency, ConsentGiverRole, FieldViolation, NhsNumber, Service, limits};
use tio_proto::v1;
use tio_store::{Batch, Condition, Keyspace};

use crate::broker::{Broker, Call};
use crate::child_records::{
    consent_revisions, consent_suffix, giver_role_from_proto, lawful_basis_from_proto, load_facts, recipients_to_domain,
};
use crate::convert::{categories_from_proto, categories_to_proto, optional_timestamp, timestamp_to_proto};
use crate::status::ServiceError;

/// The reason code audited when an agency without the consent permission records,
/// withdraws or reads consent.
const NOT_PERMITTED_FOR_CONSENT: &str = "not_permitted_for_consent";

/// The longest purpose, in bytes.
const MAX_PURPOSE_BYTES: usize = 1024;

fn invalid(field: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), ServiceError> {
    limits::check_len(field, value, max).map_err(|violation| ServiceError::InvalidArgument(vec![violation]))
}

/// Checks evidence of how the agreement (or withdrawal) was given.
fn check_evidence(field: &str, evidence: Option<&v1::ConsentEvidence>) -> Result<v1::ConsentEvidence, ServiceError> {
    let evidence = evidence.ok_or_else(|| invalid(field, "is required: how was it given?"))?;
    if matches!(v1::ConsentMethod::try_from(evidence.method), Ok(v1::ConsentMethod::Unspecified) | Err(_)) {
        return Err(invalid(&format!("{field}.method"), "must be in person, telephone, signed form or video call"));
    }
    check_len(&format!("{field}.reference"), &evidence.reference, limits::MAX_SHORT_STRING_BYTES)?;
    let language_ok = evidence.language.is_empty()
        || ((2..=3).contains(&evidence.language.len()) && evidence.language.bytes().all(|b| b.is_ascii_lowercase()));
    if !language_ok {
        return Err(invalid(&format!("{field}.language"), "must be an ISO 639 code such as pl or en"));
    }
    check_len(&format!("{field}.notes"), &evidence.notes, limits::MAX_FREE_TEXT_BYTES)?;
    Ok(evidence.clone())
}

impl Broker {
    /// Admits an agency to change consent: it must be permitted to record consent; a
    /// refusal is audited.
    async fn consent_recorder(&self, call: &Call, action: Action, child: &NhsNumber) -> Result<Agency, ServiceError> {
        let agency = self.agency_call(call, Service::Consent, action).await?;
        if !agency.may_record_consent {
            let mut entry = self.entry(call, action, Outcome::Denied);
            self.name_child(&mut entry, child)?;
            entry.reason = NOT_PERMITTED_FOR_CONSENT.to_owned();
            self.record(&[entry]).await?;
            return Err(ServiceError::denied(
                "MAY_NOT_RECORD_CONSENT",
                "this agency may not record or withdraw consent",
            ));
        }
        Ok(agency)
    }

    /// Records a new consent (revision 1).
    pub async fn record_consent(
        &self,
        call: &Call,
        child: &NhsNumber,
        request: &v1::RecordConsentRequest,
    ) -> Result<v1::ConsentRecord, ServiceError> {
        let agency = self.consent_recorder(call, Action::ConsentRecorded, child).await?;
        let giver_role = giver_role_from_proto(request.giver_role)
            .ok_or_else(|| invalid("giver_role", "must be a parent, the young person or a competent child"))?;
        if request.giver_name.trim().is_empty() {
            return Err(invalid("giver_name", "is required"));
        }
        check_len("giver_name", &request.giver_name, limits::MAX_SHORT_STRING_BYTES)?;
        let categories = categories_from_proto("categories", &request.categories)?;
        if categories.is_empty() {
            return Err(invalid("categories", "must name at least one category"));
        }
        let recipients = request.recipients.clone().unwrap_or_default();
        let domain_recipients = recipients_to_domain(&recipients)?;
        if domain_recipients.agencies.is_empty() && domain_recipients.sectors.is_empty() {
            return Err(invalid("recipients", "must name at least one agency or sector"));
        }
        if request.purpose.trim().is_empty() {
            return Err(invalid("purpose", "is required"));
        }
        check_len("purpose", &request.purpose, MAX_PURPOSE_BYTES)?;
        lawful_basis_from_proto(request.lawful_basis).ok_or_else(|| {
            invalid("lawful_basis", "must be consent, legal obligation, vital interests or public task")
        })?;
        let special = v1::SpecialCategoryCondition::try_from(request.special_category_condition)
            .map_err(|_| invalid("special_category_condition", "must be a known condition"))?;
        if special == v1::SpecialCategoryCondition::Unspecified && categories.iter().any(|c| c.is_special_category()) {
            return Err(invalid(
                "special_category_condition",
                "is required when the categories include health, communication or social-care information",
            ));
        }
        let valid = request.valid.unwrap_or_default();
        let from = optional_timestamp("valid.from", valid.from.as_ref())?.unwrap_or(call.now);
        let until = optional_timestamp("valid.until", valid.until.as_ref())?;
        if until.is_some_and(|until| until <= from) {
            return Err(invalid("valid.until", "must be after valid.from"));
        }
        let evidence = check_evidence("evidence", request.evidence.as_ref())?;

        self.store().ensure_child_key(child).await?;
        let facts = load_facts(self.store(), child)?;
        let young_person_decides = facts
            .consents
            .iter()
            .any(|consent| giver_role_from_proto(consent.giver_role) == Some(ConsentGiverRole::YoungPerson));
        if young_person_decides && giver_role == ConsentGiverRole::ParentWithParentalResponsibility {
            return Err(invalid(
                "giver_role",
                "the young person now decides for themselves; a parent's consent no longer applies",
            ));
        }
        let now = Some(timestamp_to_proto(call.now));
        let record = v1::ConsentRecord {
            consent_id: Broker::new_id("c-")?,
            revision: 1,
            state: v1::ConsentState::Active as i32,
            child_masked: child.to_string(),
            giver_role: request.giver_role,
            giver_name: request.giver_name.clone(),
            categories: categories_to_proto(categories),
            recipients: Some(recipients),
            purpose: request.purpose.clone(),
            lawful_basis: request.lawful_basis,
            special_category_condition: request.special_category_condition,
            valid: Some(v1::Validity { from: Some(timestamp_to_proto(from)), until: until.map(timestamp_to_proto) }),
            evidence: Some(evidence),
            recorded_by_agency_id: agency.id.as_str().to_owned(),
            recorded_by_professional_id: call.caller.professional_id.clone().unwrap_or_default(),
            recorded_at: now,
            withdrawal_reason: String::new(),
            first_recorded_at: now,
        };
        self.commit_consent_revision(call, child, &record, Action::ConsentRecorded).await?;
        Ok(record)
    }

    /// Withdraws a consent: a new revision, in force from the moment it commits.
    pub async fn withdraw_consent(
        &self,
        call: &Call,
        child: &NhsNumber,
        request: &v1::WithdrawConsentRequest,
    ) -> Result<v1::ConsentRecord, ServiceError> {
        let agency = self.consent_recorder(call, Action::ConsentWithdrawn, child).await?;
        if request.consent_id.is_empty() {
            return Err(invalid("consent_id", "is required"));
        }
        check_len("reason", &request.reason, MAX_PURPOSE_BYTES)?;
        let evidence = check_evidence("evidence", request.evidence.as_ref())?;
        let latest = consent_revisions(self.store(), child, &request.consent_id)?
            .pop()
            .ok_or_else(|| consent_not_found(&request.consent_id))?;
        if latest.state() == v1::ConsentState::Withdrawn {
            return Err(ServiceError::failed_precondition(
                "CONSENT_ALREADY_WITHDRAWN",
                format!("consent/{}", request.consent_id),
                format!("consent `{}` is already withdrawn", request.consent_id),
            ));
        }
        let record = v1::ConsentRecord {
            revision: latest.revision + 1,
            state: v1::ConsentState::Withdrawn as i32,
            evidence: Some(evidence),
            recorded_by_agency_id: agency.id.as_str().to_owned(),
            recorded_by_professional_id: call.caller.professional_id.clone().unwrap_or_default(),
            recorded_at: Some(timestamp_to_proto(call.now)),
            withdrawal_reason: request.reason.clone(),
            ..latest
        };
        self.commit_consent_revision(call, child, &record, Action::ConsentWithdrawn).await?;
        Ok(record)
    }

    /// Stores one revision, which must be new, with its audit entry.
    async fn commit_consent_revision(
        &self,
        call: &Call,
        child: &NhsNumber,
        record: &v1::ConsentRecord,
        action: Action,
    ) -> Result<(), ServiceError> {
        let suffix = consent_suffix(&record.consent_id, record.revision);
        let mut batch = Batch::new();
        batch.require(Condition::Absent {
            space: Keyspace::Consents,
            key: self.store().child_record_key(child, &suffix),
        });
        batch.push(self.store().sealed_put(
            child,
            Keyspace::Consents,
            &suffix,
            &prost::Message::encode_to_vec(record),
        )?);
        let mut entry = self.entry(call, action, Outcome::Allowed);
        self.name_child(&mut entry, child)?;
        entry.consent_id = record.consent_id.clone();
        entry.consent_revision = record.revision;
        entry.categories = record
            .categories
            .iter()
            .filter_map(|value| crate::convert::category_from_proto("categories", *value).ok())
            .map(|category| category.as_str().to_owned())
            .collect();
        batch.push(entry_op(&entry));
        // A concurrent change to the same consent makes this ABORTED: the client retries.
        self.store().commit(batch).await?;
        self.notify_change();
        Ok(())
    }

    /// Admits an agency to read a child's consents: permitted to record consent, or
    /// involved with the child. Every read, and every refusal, is audited.
    async fn consent_reader(&self, call: &Call, child: &NhsNumber, consent_id: &str) -> Result<(), ServiceError> {
        let agency = self.agency_call(call, Service::Consent, Action::ConsentRead).await?;
        let involved = load_facts(self.store(), child)?.active_relationship(agency.id.as_str(), call.now).is_some();
        let allowed = agency.may_record_consent || involved;
        let mut entry = self.entry(call, Action::ConsentRead, if allowed { Outcome::Allowed } else { Outcome::Denied });
        self.name_child(&mut entry, child)?;
        entry.consent_id = consent_id.to_owned();
        if !allowed {
            entry.reason = tio_core::DenyReason::NotInvolved.code().to_owned();
        }
        self.record(&[entry]).await?;
        if allowed {
            Ok(())
        } else {
            Err(ServiceError::denied(
                tio_core::DenyReason::NotInvolved.code(),
                "only agencies involved with the child, or permitted to record consent, may read its consents",
            ))
        }
    }

    /// Returns every revision of one consent, oldest first.
    pub async fn consent_history(
        &self,
        call: &Call,
        child: &NhsNumber,
        consent_id: &str,
    ) -> Result<Vec<v1::ConsentRecord>, ServiceError> {
        if consent_id.is_empty() {
            return Err(invalid("consent_id", "is required"));
        }
        self.consent_reader(call, child, consent_id).await?;
        let revisions = consent_revisions(self.store(), child, consent_id)?;
        if revisions.is_empty() {
            return Err(consent_not_found(consent_id));
        }
        Ok(revisions)
    }

    /// Returns the latest revision of every consent of `child`.
    pub async fn list_consents(&self, call: &Call, child: &NhsNumber) -> Result<Vec<v1::ConsentRecord>, ServiceError> {
        self.consent_reader(call, child, "").await?;
        Ok(load_facts(self.store(), child)?.consents)
    }
}

/// Returns the NOT_FOUND for a consent id the child has no consent under.
pub(crate) fn consent_not_found(consent_id: &str) -> ServiceError {
    ServiceError::not_found(
        "tio.v1.ConsentRecord",
        "CONSENT_NOT_FOUND",
        consent_id,
        format!("no consent `{consent_id}` for this child"),
    )
}
