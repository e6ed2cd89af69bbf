//! Objections: recorded and withdrawn by the same professionals as consents, read by
//! the same agencies, and committed with their audit entries. What an objection must
//! say, and what a withdrawal makes, are the domain's rules (`tio_core::objection`);
//! `tio_core::decide` refuses what a standing one covers, and every delivery is
//! committed on condition that no objection was raised after its facts were read
//! (`Store::no_objection_since`).

use tio_audit::entry::{Action, Outcome};
use tio_audit_log::entry_op;
use tio_core::objection::{self, NewObjection};
use tio_core::recording::WithdrawalRefused;
use tio_core::{ConsentEvidence, FieldViolation, NhsNumber, ObjectionId, ObjectionRevision};
use tio_store::{Batch, StoreError};

use super::{ConsentRecorder, invalid};
use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;

/// How many times raising an objection takes the next number again after another
/// objection for the same child took it first.
const RAISE_ATTEMPTS: usize = 3;

impl ConsentRecorder<'_> {
    /// Raises a new objection: the child's next number, revision 1, in force from the
    /// moment it commits.
    pub(crate) async fn raise_objection(&self, new: NewObjection) -> Result<ObjectionRevision, ServiceError> {
        let store = self.broker.store();
        store.ensure_child_key(&self.child).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = store.latest_objections(&self.child)?.last().map_or(ObjectionId(0), |r| r.objection.id);
            let id = last.next().ok_or_else(|| {
                invalid(FieldViolation::new("child", "the child has as many objections as can be numbered"))
            })?;
            let revision = objection::record(new.clone(), id, self.recorder(), self.call.now).map_err(invalid)?;
            match self.commit_objection(&revision, Action::ObjectionRaised).await {
                // Another objection took the number first: take the next one.
                Err(ServiceError::Store(StoreError::Conflict { .. })) if attempt < RAISE_ATTEMPTS => continue,
                outcome => return outcome.map(|()| revision),
            }
        }
    }

    /// Withdraws objection `objection_id` (as the contract writes it, `o-<n>`).
    pub(crate) async fn withdraw_objection(
        &self,
        objection_id: &str,
        reason: &str,
        evidence: ConsentEvidence,
    ) -> Result<ObjectionRevision, ServiceError> {
        let id = ObjectionId::parse("objection_id", objection_id).map_err(invalid)?;
        let latest = self
            .broker
            .store()
            .objection_revisions(&self.child, id)?
            .pop()
            .ok_or_else(|| objection_not_found(objection_id))?;
        let revision =
            objection::withdraw(&latest, reason, evidence, self.recorder(), self.call.now).map_err(|refused| {
                match refused {
                    WithdrawalRefused::Invalid(violation) => invalid(violation),
                    WithdrawalRefused::AlreadyWithdrawn => ServiceError::failed_precondition(
                        "OBJECTION_ALREADY_WITHDRAWN",
                        format!("objection/{objection_id}"),
                        format!("objection `{objection_id}` is already withdrawn"),
                    ),
                }
            })?;
        self.commit_objection(&revision, Action::ObjectionWithdrawn).await?;
        Ok(revision)
    }

    /// Stores one revision, which must be new, with its audit entry, and wakes the
    /// delivery streams (a new objection stops what they were about to send).
    async fn commit_objection(&self, revision: &ObjectionRevision, action: Action) -> Result<(), ServiceError> {
        let (is_new, put) = self.broker.store().put_objection_revision(&self.child, revision)?;
        let mut batch = Batch::new();
        batch.require(is_new);
        batch.push(put);
        let mut entry = self.broker.entry(self.call, action, Outcome::Allowed);
        self.broker.name_child(&mut entry, &self.child)?;
        entry.consent_id = revision.objection.id.to_string();
        entry.consent_revision = revision.objection.revision;
        entry.categories = revision.objection.categories.iter().map(|category| category.as_str().to_owned()).collect();
        batch.push(entry_op(&entry));
        self.broker.store().commit(batch).await?;
        self.broker.notify_change();
        Ok(())
    }
}

impl Broker {
    /// Returns the latest revision of every objection raised for `child`, for an agency
    /// that may read its consents (the read is audited as one).
    pub(crate) async fn list_objections(
        &self,
        call: &Call,
        child: &NhsNumber,
    ) -> Result<Vec<ObjectionRevision>, ServiceError> {
        let child = &self.store().child(child);
        self.consent_reader(call, child, "").await?;
        Ok(self.store().latest_objections(child)?)
    }
}

/// Returns the NOT_FOUND for an objection id the child has no objection under.
fn objection_not_found(objection_id: &str) -> ServiceError {
    ServiceError::not_found(
        "tio.v1.ObjectionRecord",
        "OBJECTION_NOT_FOUND",
        objection_id,
        format!("no objection `{objection_id}` for this child"),
    )
}
