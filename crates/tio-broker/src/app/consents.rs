//! Consent: recorded by a professional on behalf of the person who gave it, withdrawn
//! the same way, read by agencies that may record consent or are involved with the
//! child. Every revision is kept, sealed under the child's data key; each change
//! commits with its audit entry. What a consent must say, and what a withdrawal makes,
//! are the domain's rules (`tio_core::recording`).

use tio_audit::entry::{Action, Outcome};
use tio_audit_log::entry_op;
use tio_core::recording::{self, NewConsent, Recorder, WithdrawalRefused};
use tio_core::{Agency, ConsentEvidence, ConsentId, ConsentRevision, FieldViolation, NhsNumber, Service};
use tio_store::{Batch, Child};

use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;
use crate::app::facts::active_relationship;

mod objections;

/// The reason code audited when an agency without the consent permission records,
/// withdraws or reads consent.
const NOT_PERMITTED_FOR_CONSENT: &str = "not_permitted_for_consent";

fn invalid(violation: FieldViolation) -> ServiceError {
    ServiceError::InvalidArgument(vec![violation])
}

/// Which consents of one child are to review today.
pub(crate) struct ToReview {
    born: Option<tio_core::Date>,
    today: Option<tio_core::Date>,
}

impl ToReview {
    /// Whether `revision`'s consent is to review.
    pub(crate) fn marks(&self, revision: &ConsentRevision) -> bool {
        self.today.is_some_and(|today| tio_core::age::consent_to_review(revision.consent.giver_role, self.born, today))
    }
}

/// An agency admitted to change a child's consents.
pub(crate) struct ConsentRecorder<'a> {
    broker: &'a Broker,
    call: &'a Call,
    child: Child,
    agency: Agency,
}

impl Broker {
    /// Admits an agency to change `child`'s consents (`action` says how): it must be
    /// permitted to record consent; a refusal is audited.
    pub(crate) async fn consent_recorder<'a>(
        &'a self,
        call: &'a Call,
        action: Action,
        child: &'a NhsNumber,
    ) -> Result<ConsentRecorder<'a>, ServiceError> {
        let agency = self.agency_call(call, Service::Consent, action).await?;
        if !agency.may_record_consent {
            let mut entry = self.entry(call, action, Outcome::Denied);
            self.name_child(&mut entry, child)?;
            entry.reason = NOT_PERMITTED_FOR_CONSENT.to_owned();
            self.write_audit(&[entry]).await?;
            return Err(ServiceError::denied(
                "MAY_NOT_RECORD_CONSENT",
                "this agency may not record or withdraw consent",
            ));
        }
        Ok(ConsentRecorder { broker: self, call, child: self.store().child(child), agency })
    }

    /// Admits an agency to read a child's consents: permitted to record consent, or
    /// involved with the child. Every read, and every refusal, is audited.
    async fn consent_reader(&self, call: &Call, child: &Child, consent_id: &str) -> Result<(), ServiceError> {
        let agency = self.agency_call(call, Service::Consent, Action::ConsentRead).await?;
        let involved = active_relationship(self.store(), child, &agency.id, call.now)?.is_some();
        let allowed = agency.may_record_consent || involved;
        let mut entry = self.entry(call, Action::ConsentRead, if allowed { Outcome::Allowed } else { Outcome::Denied });
        self.name_child(&mut entry, child)?;
        entry.consent_id = consent_id.to_owned();
        if !allowed {
            entry.reason = tio_core::DenyReason::NotInvolved.code().to_owned();
        }
        self.write_audit(&[entry]).await?;
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
    pub(crate) async fn consent_history(
        &self,
        call: &Call,
        child: &NhsNumber,
        consent_id: &str,
    ) -> Result<Vec<ConsentRevision>, ServiceError> {
        if consent_id.is_empty() {
            return Err(invalid(FieldViolation::new("consent_id", "is required")));
        }
        let child = &self.store().child(child);
        self.consent_reader(call, child, consent_id).await?;
        let revisions = self.store().consent_revisions(child, consent_id)?;
        if revisions.is_empty() {
            return Err(consent_not_found(consent_id));
        }
        Ok(revisions)
    }

    /// Returns which of `child`'s consents are to review at the call's time (a parent's,
    /// once the child is 16), reading the child's date of birth once. For a caller
    /// already admitted to read or record the child's consents.
    pub(crate) fn consents_to_review(&self, call: &Call, child: &NhsNumber) -> Result<ToReview, ServiceError> {
        let born = self.store().date_of_birth(&self.store().child(child))?;
        Ok(ToReview { born, today: call.now.uk_date() })
    }

    /// Returns the latest revision of every consent of `child`.
    pub(crate) async fn list_consents(
        &self,
        call: &Call,
        child: &NhsNumber,
    ) -> Result<Vec<ConsentRevision>, ServiceError> {
        let child = &self.store().child(child);
        self.consent_reader(call, child, "").await?;
        Ok(self.store().latest_consents(child)?)
    }
}

impl ConsentRecorder<'_> {
    fn recorder(&self) -> Recorder {
        Recorder {
            agency: self.agency.id.clone(),
            professional: self.call.caller.professional_id.clone().unwrap_or_default(),
        }
    }

    /// Records a new consent (revision 1).
    pub(crate) async fn record(&self, new: NewConsent) -> Result<ConsentRevision, ServiceError> {
        let store = self.broker.store();
        store.ensure_child_key(&self.child).await?;
        // The young person's own decision is in the consents alone.
        let existing: Vec<_> =
            store.latest_consents(&self.child)?.into_iter().map(|revision| revision.consent).collect();
        let id = ConsentId(Broker::new_id("c-")?);
        let born = store.date_of_birth(&self.child)?;
        let revision = recording::record(new, id, self.recorder(), self.call.now, &existing, born).map_err(invalid)?;
        self.commit(&revision, Action::ConsentRecorded).await?;
        Ok(revision)
    }

    /// Withdraws consent `consent_id`: a new revision, in force from the moment it
    /// commits.
    pub(crate) async fn withdraw(
        &self,
        consent_id: &str,
        reason: &str,
        evidence: ConsentEvidence,
    ) -> Result<ConsentRevision, ServiceError> {
        if consent_id.is_empty() {
            return Err(invalid(FieldViolation::new("consent_id", "is required")));
        }
        let latest = self
            .broker
            .store()
            .consent_revisions(&self.child, consent_id)?
            .pop()
            .ok_or_else(|| consent_not_found(consent_id))?;
        let revision =
            recording::withdraw(&latest, reason, evidence, self.recorder(), self.call.now).map_err(|refused| {
                match refused {
                    WithdrawalRefused::Invalid(violation) => invalid(violation),
                    WithdrawalRefused::AlreadyWithdrawn => ServiceError::failed_precondition(
                        "CONSENT_ALREADY_WITHDRAWN",
                        format!("consent/{consent_id}"),
                        format!("consent `{consent_id}` is already withdrawn"),
                    ),
                }
            })?;
        self.commit(&revision, Action::ConsentWithdrawn).await?;
        Ok(revision)
    }

    /// Stores one revision, which must be new, with its audit entry.
    async fn commit(&self, revision: &ConsentRevision, action: Action) -> Result<(), ServiceError> {
        let (is_new, put) = self.broker.store().put_consent_revision(&self.child, revision)?;
        let mut batch = Batch::new();
        batch.require(is_new);
        batch.push(put);
        let mut entry = self.broker.entry(self.call, action, Outcome::Allowed);
        self.broker.name_child(&mut entry, &self.child)?;
        entry.consent_id = revision.consent.id.0.clone();
        entry.consent_revision = revision.consent.revision;
        entry.categories = revision.consent.categories.iter().map(|category| category.as_str().to_owned()).collect();
        batch.push(entry_op(&entry));
        // A concurrent change to the same consent makes this ABORTED: the client retries.
        self.broker.store().commit(batch).await?;
        self.broker.notify_change();
        Ok(())
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
