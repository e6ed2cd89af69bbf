//! Publishing category values and reading a child's profile.
//!
//! A publish is decided by the domain core, then stored with its audit entry (and, the
//! first time, the publisher's care relationship) in one durable commit. A profile read
//! decides every category again at the moment of reading; a withheld category looks
//! exactly like one never published, and the read and what was withheld are audited.

use std::collections::BTreeMap;

use prost::Message;
use tio_audit::entry::{Action as AuditAction, AuditEntry, Outcome};
use tio_audit::log::entry_op;
use tio_core::{
    AccessRequest, Action, Category, Decision, Facts, FieldViolation, Grant, NhsNumber, Service, decide, limits,
};
use tio_proto::v1;
use tio_store::{Extra, NewUpdate};

use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;
use crate::app::facts::load_facts;
use crate::grpc::convert::{category_from_proto, category_to_proto, timestamp_to_proto};

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

/// A publish request, validated.
struct Publication {
    child: NhsNumber,
    category: Category,
    value: Vec<u8>,
}

impl Broker {
    /// Validates a publish request's fields, in contract order.
    fn validate_publication(&self, request: &v1::PublishRequest) -> Result<Publication, ServiceError> {
        let child = self.parse_nhs_number(
            "child.nhs_number",
            request.child.as_ref().map(|child| child.nhs_number.as_str()).unwrap_or_default(),
        )?;
        let category = category_from_proto("category", request.category)?;
        let value = request
            .value
            .as_ref()
            .and_then(|value| value.value.as_ref())
            .ok_or_else(|| invalid("value", "is required"))?;
        if value_category(value) != category {
            return Err(invalid("value", format!("holds {} but category is {}", value_category(value), category)));
        }
        let encoded = request.value.as_ref().map(Message::encode_to_vec).unwrap_or_default();
        if encoded.len() > limits::MAX_CATEGORY_VALUE_BYTES {
            return Err(invalid(
                "value",
                format!("must be at most {} bytes encoded, got {}", limits::MAX_CATEGORY_VALUE_BYTES, encoded.len()),
            ));
        }
        crate::grpc::value_limits::check_category_value(&encoded).map_err(ServiceError::InvalidArgument)?;
        // A UPN travels only inside the sealed value, but a wrong one must not travel.
        if let v1::category_value::Value::IdentityAndContacts(identity) = value
            && !identity.upn.is_empty()
        {
            tio_core::Upn::parse(&identity.upn)
                .map_err(|err| invalid("value.identity_and_contacts.upn", err.to_string()))?;
        }
        limits::check_identifier("source_reference", &request.source_reference, limits::MAX_SHORT_STRING_BYTES)
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        if request.idempotency_key.is_empty() {
            return Err(invalid("idempotency_key", "is required"));
        }
        limits::check_identifier("idempotency_key", &request.idempotency_key, limits::MAX_IDEMPOTENCY_KEY_BYTES)
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        // Informative only, but a time that is not a time must not pass as one.
        crate::grpc::convert::optional_timestamp("recorded_at", request.recorded_at.as_ref())?;
        Ok(Publication { child, category, value: encoded })
    }

    /// Publishes one update: validated, decided, then stored durably with its audit
    /// entry and, if the publisher was not involved, its new care relationship.
    pub(crate) async fn publish(
        &self,
        call: &Call,
        request: &v1::PublishRequest,
    ) -> Result<v1::PublishResponse, ServiceError> {
        let agency = self.agency_call(call, Service::Records, AuditAction::Publish).await?;
        let publication = self.validate_publication(request)?;
        let child = &publication.child;
        let decision = decide(
            &AccessRequest { agency: &agency, action: Action::Publish, category: publication.category },
            &Facts::default(),
            call.now,
        );
        if let Decision::Deny(reason) = decision {
            let mut entry = self.entry(call, AuditAction::Publish, Outcome::Denied);
            self.name_child(&mut entry, child)?;
            entry.categories = vec![publication.category.as_str().to_owned()];
            entry.reason = reason.code().to_owned();
            self.record(&[entry]).await?;
            self.metrics().publish(Outcome::Denied.code());
            self.metrics().denied(AuditAction::Publish.code(), reason.code());
            return Err(ServiceError::denied(
                reason.code(),
                format!("this agency may not publish {}: {}", publication.category, reason.code()),
            ));
        }

        self.store().ensure_child_key(child).await?;
        let facts = load_facts(self.store(), child)?;
        let involvement = match facts.active_relationship(&agency.id, call.now) {
            Some(_) => None,
            None => Some(self.new_relationship(call, &agency, child, tio_core::RelationshipKind::Publisher, "")?),
        };
        let mut entry = self.entry(call, AuditAction::Publish, Outcome::Allowed);
        self.name_child(&mut entry, child)?;
        entry.categories = vec![publication.category.as_str().to_owned()];
        let update = NewUpdate {
            child,
            category: publication.category,
            value: &publication.value,
            source_reference: &request.source_reference,
            publisher: &agency.id,
            idempotency_key: &request.idempotency_key,
            committed_at: call.now,
        };
        let appended = self
            .store()
            .append_update_and(update, |update_id| {
                let mut extra = Extra::default();
                if let Some((_, batch)) = &involvement {
                    extra.conditions.extend(batch.conditions.iter().cloned());
                    extra.ops.extend(batch.ops.iter().cloned());
                }
                extra.ops.push(entry_op(&AuditEntry { update_id: update_id.to_string(), ..entry.clone() }));
                extra
            })
            .await
            .inspect_err(|_| self.metrics().publish(Outcome::Failed.code()))?;
        self.metrics().publish(Outcome::Allowed.code());
        self.notify_change();
        if appended.duplicate {
            // Nothing new was stored; the replay itself is still on the record.
            let replay = AuditEntry {
                update_id: appended.update_id.to_string(),
                detail: "idempotent replay".to_owned(),
                ..entry
            };
            self.record(&[replay]).await?;
        }
        Ok(v1::PublishResponse {
            update_id: appended.update_id.to_string(),
            position: Some(v1::Position { token: appended.position.as_bytes().to_vec() }),
            // For a repeat, the original's: the reply repeats the original reply.
            committed_at: Some(timestamp_to_proto(appended.committed_at)),
            duplicate: appended.duplicate,
        })
    }

    /// Returns the latest value of each category of `child` the caller may read now.
    pub(crate) async fn profile(
        &self,
        call: &Call,
        request: &v1::GetProfileRequest,
    ) -> Result<Vec<v1::ProfileEntry>, ServiceError> {
        let agency = self.agency_call(call, Service::Records, AuditAction::ProfileRead).await?;
        let child = self.parse_nhs_number(
            "child.nhs_number",
            request.child.as_ref().map(|child| child.nhs_number.as_str()).unwrap_or_default(),
        )?;
        let wanted = crate::grpc::convert::categories_from_proto("categories", &request.categories)?;
        let facts = load_facts(self.store(), &child)?;
        let (relationships, consents) = facts.domain();
        let facts = Facts { relationships: &relationships, consents: &consents };

        let mut shown = Vec::new();
        let mut granted: BTreeMap<(String, u32, String), Vec<Category>> = BTreeMap::new();
        let mut withheld: BTreeMap<&'static str, Vec<Category>> = BTreeMap::new();
        for stored in self.store().profile(&child)? {
            if !wanted.is_empty() && !wanted.contains(stored.category) {
                continue;
            }
            let Some(content) = stored.content else { continue };
            let question = AccessRequest { agency: &agency, action: Action::Read, category: stored.category };
            match decide(&question, &facts, call.now) {
                Decision::Allow(Grant { consent, relationship }) => {
                    let (consent_id, revision) = consent.map(|(id, revision)| (id.0, revision)).unwrap_or_default();
                    let relationship = relationship.map(|id| id.0).unwrap_or_default();
                    granted.entry((consent_id, revision, relationship)).or_default().push(stored.category);
                    let value = v1::CategoryValue::decode(content.value.as_slice())
                        .map_err(|_| ServiceError::Internal("a stored category value does not decode".to_owned()))?;
                    shown.push(v1::ProfileEntry {
                        category: category_to_proto(stored.category) as i32,
                        value: Some(value),
                        update_id: stored.update_id.to_string(),
                        position: Some(v1::Position { token: stored.position.as_bytes().to_vec() }),
                        publisher_agency_id: stored.publisher,
                        source_reference: content.source_reference,
                        committed_at: Some(timestamp_to_proto(stored.committed_at)),
                    });
                }
                Decision::Deny(reason) => {
                    self.metrics().denied(AuditAction::ProfileRead.code(), reason.code());
                    withheld.entry(reason.code()).or_default().push(stored.category);
                }
            }
        }

        // One entry per consent and relationship that allowed something, one per reason
        // something was withheld; a read that found nothing is recorded too.
        let names = |categories: &[Category]| categories.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>();
        let mut entries = Vec::new();
        for ((consent_id, consent_revision, relationship_id), categories) in &granted {
            let mut entry = self.entry(call, AuditAction::ProfileRead, Outcome::Allowed);
            entry.categories = names(categories);
            entry.consent_id = consent_id.clone();
            entry.consent_revision = *consent_revision;
            entry.relationship_id = relationship_id.clone();
            entries.push(entry);
        }
        for (reason, categories) in &withheld {
            let mut entry = self.entry(call, AuditAction::ProfileRead, Outcome::Denied);
            entry.categories = names(categories);
            entry.reason = (*reason).to_owned();
            entries.push(entry);
        }
        if entries.is_empty() {
            entries.push(self.entry(call, AuditAction::ProfileRead, Outcome::Allowed));
        }
        for entry in &mut entries {
            self.name_child(entry, &child)?;
        }
        self.record(&entries).await?;
        Ok(shown)
    }
}
