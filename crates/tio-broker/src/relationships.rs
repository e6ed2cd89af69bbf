//! Care relationships: an agency declares it is involved with a child, ends that
//! involvement, and lists its own relationships. Each change commits with its audit
//! entry, and so does each listing (it reads the child's sealed records); only involved
//! agencies read a child's profile or receive its updates.

use tio_audit::entry::{Action, Outcome};
use tio_audit::log::entry_op;
use tio_core::{Agency, FieldViolation, NhsNumber, RelationshipKind, Service, limits};
use tio_proto::v1;
use tio_store::{Batch, Condition, Keyspace};

use crate::broker::{Broker, Call};
use crate::child_records::{load_facts, relationship_kind_from_proto, relationship_suffix};
use crate::convert::timestamp_to_proto;
use crate::status::ServiceError;

fn invalid(field: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

impl Broker {
    /// Declares the calling agency's involvement with `child`; an active relationship
    /// of the agency is returned unchanged instead of a second one.
    pub async fn declare_relationship(
        &self,
        call: &Call,
        child: &NhsNumber,
        kind: i32,
        reference: &str,
    ) -> Result<v1::CareRelationship, ServiceError> {
        let agency = self.agency_call(call, Service::CareRelationships, Action::RelationshipDeclared).await?;
        match relationship_kind_from_proto(kind) {
            None => return Err(invalid("kind", "must be referral, enrolment, allocation or registration")),
            Some(RelationshipKind::Publisher) => {
                return Err(invalid("kind", "publisher relationships are made by the broker"));
            }
            Some(_) => {}
        }
        limits::check_identifier("reference", reference, limits::MAX_SHORT_STRING_BYTES)
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        self.store().ensure_child_key(child).await?;
        if let Some(active) = load_facts(self.store(), child)?.active_relationship(agency.id.as_str(), call.now) {
            return Ok(v1::CareRelationship { already_active: true, ..active.record.clone() });
        }
        let (record, batch) = self.new_relationship(call, &agency, child, kind, reference)?;
        self.store().commit(batch).await?;
        self.notify_change();
        Ok(record)
    }

    /// Returns a new relationship of the calling agency and the batch that stores it
    /// with its audit entry (also used when a publisher becomes involved).
    pub(crate) fn new_relationship(
        &self,
        call: &Call,
        agency: &Agency,
        child: &NhsNumber,
        kind: i32,
        reference: &str,
    ) -> Result<(v1::CareRelationship, Batch), ServiceError> {
        let record = v1::CareRelationship {
            relationship_id: Broker::new_id("r-")?,
            agency_id: agency.id.as_str().to_owned(),
            kind,
            reference: reference.to_owned(),
            started_at: Some(timestamp_to_proto(call.now)),
            ended_at: None,
            declared_by_professional_id: call.caller.professional_id.clone().unwrap_or_default(),
            end_reason: String::new(),
            already_active: false,
        };
        let suffix = relationship_suffix(&record.relationship_id);
        let mut batch = Batch::new();
        batch.require(Condition::Absent {
            space: Keyspace::Relationships,
            key: self.store().child_record_key(child, &suffix),
        });
        batch.push(self.store().sealed_put(
            child,
            Keyspace::Relationships,
            &suffix,
            &prost::Message::encode_to_vec(&record),
        )?);
        let mut entry = self.entry(call, Action::RelationshipDeclared, Outcome::Allowed);
        self.name_child(&mut entry, child)?;
        entry.relationship_id = record.relationship_id.clone();
        batch.push(entry_op(&entry));
        Ok((record, batch))
    }

    /// Ends the calling agency's active relationship `relationship_id` with `child`.
    pub async fn end_relationship(
        &self,
        call: &Call,
        child: &NhsNumber,
        relationship_id: &str,
        reason: &str,
    ) -> Result<v1::CareRelationship, ServiceError> {
        let agency = self.agency_call(call, Service::CareRelationships, Action::RelationshipEnded).await?;
        if relationship_id.is_empty() {
            return Err(invalid("relationship_id", "is required"));
        }
        limits::check_len("reason", reason, limits::MAX_FREE_TEXT_BYTES)
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        let facts = load_facts(self.store(), child)?;
        let stored = facts
            .relationships
            .iter()
            .find(|stored| {
                stored.record.relationship_id == relationship_id
                    && stored.record.agency_id == agency.id.as_str()
                    && stored.record.ended_at.is_none()
            })
            .ok_or_else(|| {
                ServiceError::not_found(
                    "tio.v1.CareRelationship",
                    "RELATIONSHIP_NOT_FOUND",
                    relationship_id,
                    format!("no active relationship `{relationship_id}` of this agency with this child"),
                )
            })?;
        let mut record = stored.record.clone();
        record.ended_at = Some(timestamp_to_proto(call.now));
        record.end_reason = reason.to_owned();
        let mut batch = Batch::new();
        batch.require(Condition::Equals {
            space: Keyspace::Relationships,
            key: self.store().child_record_key(child, &stored.suffix),
            value: stored.raw.clone(),
        });
        batch.push(self.store().sealed_put(
            child,
            Keyspace::Relationships,
            &stored.suffix,
            &prost::Message::encode_to_vec(&record),
        )?);
        let mut entry = self.entry(call, Action::RelationshipEnded, Outcome::Allowed);
        self.name_child(&mut entry, child)?;
        entry.relationship_id = record.relationship_id.clone();
        batch.push(entry_op(&entry));
        self.store().commit(batch).await?;
        self.notify_change();
        Ok(record)
    }

    /// Lists the calling agency's relationships with `child`, ended ones if asked.
    pub async fn list_relationships(
        &self,
        call: &Call,
        child: &NhsNumber,
        include_ended: bool,
    ) -> Result<Vec<v1::CareRelationship>, ServiceError> {
        let agency = self.agency_call(call, Service::CareRelationships, Action::RelationshipRead).await?;
        let own: Vec<v1::CareRelationship> = load_facts(self.store(), child)?
            .relationships
            .into_iter()
            .map(|stored| stored.record)
            .filter(|record| record.agency_id == agency.id.as_str() && (include_ended || record.ended_at.is_none()))
            .collect();
        // Recorded before the answer, like every read of a child's records.
        let mut entry = self.entry(call, Action::RelationshipRead, Outcome::Allowed);
        self.name_child(&mut entry, child)?;
        entry.detail = format!("{} relationships listed", own.len());
        let mut batch = Batch::new();
        batch.push(entry_op(&entry));
        self.store().commit(batch).await?;
        Ok(own)
    }
}
