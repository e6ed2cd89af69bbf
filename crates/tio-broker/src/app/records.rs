//! Publishing category values and reading a child's profile, each admitted first
//! (`Publisher`, `ProfileReader`), over domain values.
//!
//! A publish is decided by the domain core, then stored with its audit entry (and, the
//! first time, the publisher's care relationship) in one durable commit. A profile read
//! decides every category again at the moment of reading; a withheld category looks
//! exactly like one never published, and the read and what was withheld are audited.

use std::collections::BTreeMap;

use tio_audit::entry::{Action as AuditAction, AuditEntry, Outcome};
use tio_audit_log::entry_op;
use tio_core::protection::FlagShare;
use tio_core::{
    AccessRequest, Action, Agency, AgencyId, Category, CategorySet, Decision, Facts, Grant, NhsNumber, Service, decide,
};
use tio_store::{AmendKind, Batch, BirthDate, Child, Extra, NewAmendment, NewUpdate, Position, StoredUpdate, UpdateId};

use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;
use crate::app::facts::{active_relationship, load_facts};
use crate::app::sharing::{fill_alert, fill_grant, fill_share_alert, flag_access_alert};

/// How often a profile read is tried when its values keep being replaced under it.
const MAX_READ_ATTEMPTS: usize = 4;

/// One category value to publish, its fields checked by the adapter.
#[derive(Debug, Clone)]
pub(crate) struct Publication {
    /// The child.
    pub(crate) child: NhsNumber,
    /// The category.
    pub(crate) category: Category,
    /// The encoded value, opaque here and sealed as it is.
    pub(crate) value: Vec<u8>,
    /// The publisher's own reference.
    pub(crate) source_reference: String,
    /// The publisher's idempotency key.
    pub(crate) idempotency_key: String,
    /// The child's date of birth, when the value states one (checked by the adapter).
    pub(crate) date_of_birth: Option<tio_core::Date>,
}

/// What a publish stored (or, for a repeat, had stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    /// The update's id.
    pub(crate) update_id: UpdateId,
    /// Its position in the update log.
    pub(crate) position: Position,
    /// When it was committed (for a repeat, the original's time).
    pub(crate) committed_at: tio_core::Timestamp,
    /// Whether the idempotency key was used before with the same content.
    pub(crate) duplicate: bool,
}

/// An agency admitted to publish.
pub(crate) struct Publisher<'a> {
    broker: &'a Broker,
    call: &'a Call,
    agency: Agency,
}

/// An agency admitted to read profiles.
pub(crate) struct ProfileReader<'a> {
    broker: &'a Broker,
    call: &'a Call,
    agency: Agency,
}

impl Broker {
    /// Admits the calling agency to publish.
    pub(crate) async fn publisher<'a>(&'a self, call: &'a Call) -> Result<Publisher<'a>, ServiceError> {
        let agency = self.agency_call(call, Service::Records, AuditAction::Publish).await?;
        Ok(Publisher { broker: self, call, agency })
    }

    /// Admits the calling agency to read profiles.
    pub(crate) async fn profile_reader<'a>(&'a self, call: &'a Call) -> Result<ProfileReader<'a>, ServiceError> {
        let agency = self.agency_call(call, Service::Records, AuditAction::ProfileRead).await?;
        Ok(ProfileReader { broker: self, call, agency })
    }
}

impl Publisher<'_> {
    /// Publishes one update: decided, then stored durably with its audit entry and, if
    /// the publisher was not involved, its new care relationship.
    pub(crate) async fn publish(&self, publication: &Publication) -> Result<Published, ServiceError> {
        let (broker, call, agency) = (self.broker, self.call, &self.agency);
        // The child's blind index, once for the whole request.
        let child = &broker.store().child(&publication.child);
        let decision = decide(
            &AccessRequest { agency, action: Action::Publish, category: publication.category, flag: None },
            &Facts::default(),
            call.now,
        );
        if let Decision::Deny(reason) = decision {
            let mut entry = broker.entry(call, AuditAction::Publish, Outcome::Denied);
            broker.name_child(&mut entry, child)?;
            entry.categories = vec![publication.category.as_str().to_owned()];
            entry.reason = reason.code().to_owned();
            broker.write_audit(&[entry]).await?;
            broker.metrics().publish(Outcome::Denied.code());
            broker.metrics().denied(AuditAction::Publish.code(), reason.code());
            return Err(ServiceError::denied(
                reason.code(),
                format!("this agency may not publish {}: {}", publication.category, reason.code()),
            ));
        }

        broker.store().ensure_child_key(child).await?;
        let involvement = match active_relationship(broker.store(), child, &agency.id, call.now)? {
            Some(_) => None,
            None => Some(broker.new_relationship(call, agency, child, tio_core::RelationshipKind::Publisher, "")?),
        };
        let mut entry = broker.entry(call, AuditAction::Publish, Outcome::Allowed);
        broker.name_child(&mut entry, child)?;
        entry.categories = vec![publication.category.as_str().to_owned()];
        let update = NewUpdate {
            child,
            category: publication.category,
            value: &publication.value,
            source_reference: &publication.source_reference,
            publisher: &agency.id,
            idempotency_key: &publication.idempotency_key,
            committed_at: call.now,
            date_of_birth: publication.date_of_birth,
        };
        let appended = broker
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
            .inspect_err(|_| broker.metrics().publish(Outcome::Failed.code()))?;
        broker.metrics().publish(Outcome::Allowed.code());
        broker.notify_change();
        if appended.duplicate {
            // Nothing new was stored; the replay itself is still on the record.
            let replay = AuditEntry {
                update_id: appended.update_id.to_string(),
                detail: "idempotent replay".to_owned(),
                ..entry
            };
            broker.write_audit(&[replay]).await?;
        }
        Ok(Published {
            update_id: appended.update_id,
            position: appended.position,
            // For a repeat, the original's: the reply repeats the original reply.
            committed_at: appended.committed_at,
            duplicate: appended.duplicate,
        })
    }
}

/// A correction or a retraction of one of the caller's updates, its fields checked by
/// the adapter.
#[derive(Debug, Clone)]
pub(crate) struct AmendmentRequest {
    /// The child.
    pub(crate) child: NhsNumber,
    /// The update to amend.
    pub(crate) update_id: UpdateId,
    /// Correction or retraction.
    pub(crate) kind: Amend,
    /// For a correction, the category the request names (it must be the update's).
    pub(crate) category: Option<Category>,
    /// For a correction, the encoded new value; empty for a retraction.
    pub(crate) value: Vec<u8>,
    /// The publisher's own reference for the amendment.
    pub(crate) source_reference: String,
    /// Why (sealed at rest, sent to past recipients, never audited in words).
    pub(crate) reason: String,
    /// For a correction of an identity value, the date of birth it states.
    pub(crate) date_of_birth: Option<tio_core::Date>,
}

/// What a publisher may do to its own update (an erasure is the admin's, of the child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Amend {
    /// Replace it with a new value.
    Correction,
    /// Withdraw it, entered in error.
    Retraction,
}

impl Amend {
    /// The store's kind of amendment.
    fn kind(self) -> AmendKind {
        match self {
            Amend::Correction => AmendKind::Correction,
            Amend::Retraction => AmendKind::Retraction,
        }
    }

    /// The audit action.
    fn action(self) -> AuditAction {
        match self {
            Amend::Correction => AuditAction::UpdateCorrected,
            Amend::Retraction => AuditAction::UpdateRetracted,
        }
    }
}

impl Broker {
    /// Admits the calling agency to amend its updates.
    pub(crate) async fn amender<'a>(&'a self, call: &'a Call, kind: Amend) -> Result<Publisher<'a>, ServiceError> {
        let agency = self.agency_call(call, Service::Records, kind.action()).await?;
        Ok(Publisher { broker: self, call, agency })
    }
}

impl Publisher<'_> {
    /// Corrects or retracts one of the agency's own updates: checked, then stored
    /// durably with its audit entry. The past recipients are told by their
    /// subscriptions, which meet the amendment in the log.
    pub(crate) async fn amend(&self, request: &AmendmentRequest) -> Result<Published, ServiceError> {
        let (broker, call, agency) = (self.broker, self.call, &self.agency);
        let store = broker.store();
        let action = request.kind.action();
        let child = &store.child(&request.child);
        let id = request.update_id.to_string();
        let subject = format!("update/{id}");
        let Some(amended) = store.find_update(child, &request.update_id)? else {
            return Err(ServiceError::not_found(
                "tio.v1.Update",
                "UPDATE_NOT_FOUND",
                id.clone(),
                format!("the child has no update {id}"),
            ));
        };
        if let Some(category) = request.category
            && category != amended.category
        {
            return Err(ServiceError::InvalidArgument(vec![tio_core::FieldViolation::new(
                "category",
                format!("is {category} but update {id} is {}", amended.category),
            )]));
        }
        let refusal = if amended.publisher != agency.id.as_str() {
            Some(("not_publisher", format!("only the agency that published update {id} may amend it")))
        } else {
            let question = AccessRequest { agency, action: Action::Publish, category: amended.category, flag: None };
            match decide(&question, &Facts::default(), call.now) {
                Decision::Deny(reason) => Some((
                    reason.code(),
                    format!("this agency may not publish {}: {}", amended.category, reason.code()),
                )),
                Decision::Allow(_) => None,
            }
        };
        if let Some((reason, message)) = refusal {
            let mut entry = broker.entry(call, action, Outcome::Denied);
            broker.name_child(&mut entry, child)?;
            entry.categories = vec![amended.category.as_str().to_owned()];
            entry.reason = reason.to_owned();
            entry.detail = format!("amends {id}");
            broker.write_audit(&[entry]).await?;
            broker.metrics().denied(action.code(), reason);
            return Err(ServiceError::denied(reason, message));
        }
        if amended.amends.is_some_and(|amends| amends.kind != AmendKind::Correction) {
            return Err(ServiceError::InvalidArgument(vec![tio_core::FieldViolation::new(
                "update_id",
                format!("update {id} is a retraction, which has no value to amend"),
            )]));
        }
        let already = |by: Option<UpdateId>| {
            // A retry after a lost reply learns which update did it.
            let by = by.map(|by| format!(" (by update {by})")).unwrap_or_default();
            ServiceError::failed_precondition(
                "UPDATE_ALREADY_AMENDED",
                subject.clone(),
                format!("update {id} was corrected or retracted already{by}"),
            )
        };
        if let Some(by) = store.amended_by(&amended)? {
            return Err(already(Some(by)));
        }
        if request.kind == Amend::Correction && !store.is_latest(&amended)? {
            return Err(ServiceError::failed_precondition(
                "UPDATE_SUPERSEDED",
                subject.clone(),
                format!(
                    "update {id} is no longer the current {}: a newer update replaced it; retract it instead",
                    amended.category
                ),
            ));
        }

        let date_of_birth = self.birth_date_after(&amended, request)?;
        let mut entry = broker.entry(call, action, Outcome::Allowed);
        broker.name_child(&mut entry, child)?;
        entry.categories = vec![amended.category.as_str().to_owned()];
        entry.detail = format!("amends {id}");
        let amendment = NewAmendment {
            child,
            amended: &amended,
            kind: request.kind.kind(),
            value: &request.value,
            source_reference: &request.source_reference,
            reason: &request.reason,
            publisher: &agency.id,
            committed_at: call.now,
            date_of_birth,
        };
        let appended = store
            .amend_update(amendment, |update_id| Extra {
                conditions: Vec::new(),
                ops: vec![entry_op(&AuditEntry { update_id: update_id.to_string(), ..entry.clone() })],
            })
            .await
            .map_err(|err| match err {
                // Its first precondition: amended by another call meanwhile.
                tio_store::StoreError::Conflict { index: 0 } => already(store.amended_by(&amended).ok().flatten()),
                other => other.into(),
            })?;
        broker.notify_change();
        Ok(Published {
            update_id: appended.update_id,
            position: appended.position,
            committed_at: appended.committed_at,
            duplicate: false,
        })
    }
}

impl Publisher<'_> {
    /// What an amendment of `amended` does to the stored date of birth. Only an
    /// identity value that stated one can have been where it came from: the date then
    /// follows the category's current value after the amendment (the correction, or
    /// the value a retraction goes back to), and goes if that states none.
    fn birth_date_after(&self, amended: &StoredUpdate, request: &AmendmentRequest) -> Result<BirthDate, ServiceError> {
        let read = self.broker.sharing().date_of_birth_of;
        let stated = amended.content.as_ref().and_then(|content| read(&content.value));
        if amended.category != Category::IdentityAndContacts || stated.is_none() {
            return Ok(request.date_of_birth.map_or(BirthDate::Keep, BirthDate::Set));
        }
        let current = match request.kind {
            Amend::Correction => request.date_of_birth,
            Amend::Retraction => self
                .broker
                .store()
                .value_after_retraction(amended)?
                .and_then(|value| value.content.and_then(|content| read(&content.value))),
        };
        Ok(current.map_or(BirthDate::Clear, BirthDate::Set))
    }
}

impl ProfileReader<'_> {
    /// Returns the latest value of each category of `child` (of `wanted`, or all if it
    /// is empty) the agency may read now.
    pub(crate) async fn profile(
        &self,
        child: &NhsNumber,
        wanted: CategorySet,
    ) -> Result<Vec<StoredUpdate>, ServiceError> {
        let child = &self.broker.store().child(child);
        // A read whose values were replaced (published anew, corrected, retracted)
        // before its record committed reads again: every value it shows is recorded as
        // shown while still current, so a later amendment knows to tell this agency.
        for _ in 0..MAX_READ_ATTEMPTS {
            if let Some(shown) = self.try_profile(child, wanted).await? {
                return Ok(shown);
            }
        }
        Err(ServiceError::Store(tio_store::StoreError::Conflict { index: 0 }))
    }

    /// One attempt at [`ProfileReader::profile`]: `None` if a value shown stopped being
    /// current before the read's record committed.
    async fn try_profile(&self, child: &Child, wanted: CategorySet) -> Result<Option<Vec<StoredUpdate>>, ServiceError> {
        let (broker, call, agency) = (self.broker, self.call, &self.agency);
        let facts = load_facts(broker.store(), child)?;
        let domain = facts.domain();
        let facts = domain.facts();

        let mut shown = Vec::new();
        // Grants in the order first met (with whom the disclosure alerts), each with the
        // categories it allowed.
        type AlertedGrant = (Grant, Option<AgencyId>);
        let mut granted: Vec<(AlertedGrant, Vec<Category>)> = Vec::new();
        let mut withheld: BTreeMap<&'static str, Vec<Category>> = BTreeMap::new();
        for stored in broker.store().profile(child)? {
            if !wanted.is_empty() && !wanted.contains(stored.category) {
                continue;
            }
            if stored.content.is_none() {
                continue;
            }
            let flag = broker.flag_of(&stored);
            // Every profile value is its category's latest: a flag in it is current.
            let share =
                flag.as_ref().map(|flag| FlagShare { flag, current: true, to_sectors: &broker.sharing().flag_sectors });
            let question = AccessRequest { agency, action: Action::Read, category: stored.category, flag: share };
            match decide(&question, &facts, call.now) {
                Decision::Allow(grant) => {
                    let grant = (grant, flag_access_alert(flag.as_ref(), &agency.id));
                    match granted.iter_mut().find(|(seen, _)| *seen == grant) {
                        Some((_, categories)) => categories.push(stored.category),
                        None => granted.push((grant, vec![stored.category])),
                    }
                    shown.push(stored);
                }
                Decision::Deny(reason) => {
                    broker.metrics().denied(AuditAction::ProfileRead.code(), reason.code());
                    withheld.entry(reason.code()).or_default().push(stored.category);
                }
            }
        }

        // One entry per grant that allowed something (a consent and relationship, or a
        // basis without consent), one per reason something was withheld; a read that
        // found nothing is recorded too.
        let names = |categories: &[Category]| categories.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>();
        let mut entries = Vec::new();
        for ((grant, alert_to), categories) in &granted {
            let mut entry = broker.entry(call, AuditAction::ProfileRead, Outcome::Allowed);
            entry.categories = names(categories);
            fill_grant(&mut entry, grant);
            fill_alert(&mut entry, alert_to.as_ref());
            fill_share_alert(&mut entry, grant);
            entries.push(entry);
        }
        for (reason, categories) in &withheld {
            let mut entry = broker.entry(call, AuditAction::ProfileRead, Outcome::Denied);
            entry.categories = names(categories);
            entry.reason = (*reason).to_owned();
            entries.push(entry);
        }
        if entries.is_empty() {
            entries.push(broker.entry(call, AuditAction::ProfileRead, Outcome::Allowed));
        }
        let mut batch = Batch::new();
        for entry in &mut entries {
            broker.name_child(entry, child)?;
            batch.push(entry_op(entry));
        }
        for update in &shown {
            batch.require(broker.store().still_latest(update));
            batch.push(broker.store().disclosure(update, agency.id.as_str()));
        }
        match broker.store().commit(batch).await {
            Ok(_) => Ok(Some(shown)),
            Err(tio_store::StoreError::Conflict { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}
