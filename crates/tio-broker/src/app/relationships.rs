//! Care relationships: an agency declares it is involved with a child, ends that
//! involvement, and lists its own relationships. Each change commits with its audit
//! entry, and so does each listing (it reads the child's sealed records); only involved
//! agencies read a child's profile or receive its updates.

use tio_audit::entry::{Action, Outcome};
use tio_audit_log::entry_op;
use tio_core::{
    Agency, CareRelationship, FieldViolation, NhsNumber, RelationshipId, RelationshipKind, RelationshipRecord, Service,
    limits,
};
use tio_store::{Batch, Child};

use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;
use crate::app::facts::{active_relationship, load_facts};

fn invalid(field: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

impl Broker {
    /// Declares the calling agency's involvement with `child` (`kind` as the request
    /// gave it: `None` if unspecified or unknown); an active relationship of the agency
    /// is returned unchanged instead of a second one, with `true`.
    pub(crate) async fn declare_relationship(
        &self,
        call: &Call,
        child: &NhsNumber,
        kind: Option<RelationshipKind>,
        reference: &str,
    ) -> Result<(RelationshipRecord, bool), ServiceError> {
        let agency = self.agency_call(call, Service::CareRelationships, Action::RelationshipDeclared).await?;
        let child = &self.store().child(child);
        let kind = match kind {
            None => return Err(invalid("kind", "must be referral, enrolment, allocation or registration")),
            Some(RelationshipKind::Publisher) => {
                return Err(invalid("kind", "publisher relationships are made by the broker"));
            }
            Some(kind) => kind,
        };
        limits::check_identifier("reference", reference, limits::MAX_SHORT_STRING_BYTES)
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        self.store().ensure_child_key(child).await?;
        if let Some(active) = active_relationship(self.store(), child, &agency.id, call.now)? {
            return Ok((active.record, true));
        }
        let (record, batch) = self.new_relationship(call, &agency, child, kind, reference)?;
        self.store().commit(batch).await?;
        self.notify_change();
        Ok((record, false))
    }

    /// Returns a new relationship of the calling agency and the batch that stores it
    /// with its audit entry (also used when a publisher becomes involved).
    pub(crate) fn new_relationship(
        &self,
        call: &Call,
        agency: &Agency,
        child: &Child,
        kind: RelationshipKind,
        reference: &str,
    ) -> Result<(RelationshipRecord, Batch), ServiceError> {
        let record = RelationshipRecord {
            relationship: CareRelationship {
                id: RelationshipId(Broker::new_id("r-")?),
                agency: agency.id.clone(),
                kind,
                started_at: call.now,
                ended_at: None,
            },
            reference: reference.to_owned(),
            declared_by_professional: call.caller.professional_id.clone().unwrap_or_default(),
            end_reason: String::new(),
        };
        let (is_new, put) = self.store().put_new_relationship(child, &record)?;
        let mut batch = Batch::new();
        batch.require(is_new);
        batch.push(put);
        let mut entry = self.entry(call, Action::RelationshipDeclared, Outcome::Allowed);
        self.name_child(&mut entry, child)?;
        entry.relationship_id = record.relationship.id.0.clone();
        batch.push(entry_op(&entry));
        Ok((record, batch))
    }

    /// Ends the calling agency's active relationship `relationship_id` with `child`.
    pub(crate) async fn end_relationship(
        &self,
        call: &Call,
        child: &NhsNumber,
        relationship_id: &str,
        reason: &str,
    ) -> Result<RelationshipRecord, ServiceError> {
        let agency = self.agency_call(call, Service::CareRelationships, Action::RelationshipEnded).await?;
        let child = &self.store().child(child);
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
                let relationship = &stored.record.relationship;
                relationship.id.0 == relationship_id
                    && relationship.agency == agency.id
                    && relationship.ended_at.is_none()
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
        record.relationship.ended_at = Some(call.now);
        record.end_reason = reason.to_owned();
        let mut batch = Batch::new();
        batch.require(stored.unchanged());
        batch.push(self.store().put_relationship(child, &record)?);
        let mut entry = self.entry(call, Action::RelationshipEnded, Outcome::Allowed);
        self.name_child(&mut entry, child)?;
        entry.relationship_id = record.relationship.id.0.clone();
        batch.push(entry_op(&entry));
        self.store().commit(batch).await?;
        self.notify_change();
        Ok(record)
    }

    /// Lists the calling agency's relationships with `child`, ended ones if asked.
    pub(crate) async fn list_relationships(
        &self,
        call: &Call,
        child: &NhsNumber,
        include_ended: bool,
    ) -> Result<Vec<RelationshipRecord>, ServiceError> {
        let agency = self.agency_call(call, Service::CareRelationships, Action::RelationshipRead).await?;
        let child = &self.store().child(child);
        let own: Vec<RelationshipRecord> = load_facts(self.store(), child)?
            .relationships
            .into_iter()
            .map(|stored| stored.record)
            .filter(|record| {
                record.relationship.agency == agency.id && (include_ended || record.relationship.ended_at.is_none())
            })
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
