//! Safeguarding shares: declared, renewed, ended and listed by a named professional of
//! an agency the registry permits (`Agency::may_declare_safeguarding`). Each change
//! commits with its audit entry, which is also an alert to the declaring agency (and so
//! to auditors and admins); each use is alerted where it is decided
//! (`sharing::fill_share_alert`). What a share must say, and what a renewal or an end
//! makes, are the domain's rules (`tio_core::safeguarding`); `tio_core::decide` allows
//! what a share in force names.

use tio_audit::entry::{Action, Outcome};
use tio_audit_log::entry_op;
use tio_core::recording::Recorder;
use tio_core::safeguarding::{self, ChangeRefused, NewShare, ShareId, ShareReason, ShareRevision};
use tio_core::{Agency, FieldViolation, NhsNumber, Service, Timestamp};
use tio_store::{Batch, Child, StoreError};

use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;

/// The reason code audited when an agency without the permission tries.
pub(crate) const NOT_PERMITTED_FOR_SAFEGUARDING: &str = "not_permitted_for_safeguarding";

/// How many times a declaration takes the next number again after another declaration
/// for the same child took it first.
const DECLARE_ATTEMPTS: usize = 3;

fn invalid(violation: FieldViolation) -> ServiceError {
    ServiceError::InvalidArgument(vec![violation])
}

/// An agency admitted to declare, change or read a child's safeguarding shares.
pub(crate) struct Safeguarder<'a> {
    broker: &'a Broker,
    call: &'a Call,
    child: Child,
    agency: Agency,
}

impl Broker {
    /// Admits an agency to `action` on `child`'s safeguarding shares: it must be
    /// permitted to declare them; a refusal is audited.
    pub(crate) async fn safeguarder<'a>(
        &'a self,
        call: &'a Call,
        action: Action,
        child: &NhsNumber,
    ) -> Result<Safeguarder<'a>, ServiceError> {
        let agency = self.agency_call(call, Service::Safeguarding, action).await?;
        if !agency.may_declare_safeguarding {
            let mut entry = self.entry(call, action, Outcome::Denied);
            self.name_child(&mut entry, child)?;
            entry.reason = NOT_PERMITTED_FOR_SAFEGUARDING.to_owned();
            self.write_audit(&[entry]).await?;
            return Err(ServiceError::denied(
                "MAY_NOT_DECLARE_SAFEGUARDING",
                "this agency may not declare, change or read safeguarding shares",
            ));
        }
        Ok(Safeguarder { broker: self, call, child: self.store().child(child), agency })
    }
}

impl Safeguarder<'_> {
    fn recorder(&self) -> Recorder {
        Recorder {
            agency: self.agency.id.clone(),
            professional: self.call.caller.professional_id.clone().unwrap_or_default(),
        }
    }

    /// Declares a share: the child's next number, revision 1.
    pub(crate) async fn declare(&self, new: NewShare) -> Result<ShareRevision, ServiceError> {
        let store = self.broker.store();
        store.ensure_child_key(&self.child).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = store.latest_shares(&self.child)?.last().map_or(ShareId(0), |revision| revision.share.id);
            let id = last.next().ok_or_else(|| {
                invalid(FieldViolation::new("child", "the child has as many shares as can be numbered"))
            })?;
            let revision = safeguarding::declare(new.clone(), id, self.recorder(), self.call.now).map_err(invalid)?;
            match self.commit(&revision, Action::SafeguardingDeclared).await {
                // Another declaration took the number first: take the next one.
                Err(ServiceError::Store(StoreError::Conflict { .. })) if attempt < DECLARE_ATTEMPTS => continue,
                outcome => return outcome.map(|()| revision),
            }
        }
    }

    /// Renews share `share_id` for a new reason until `expires` (7 days if not given).
    pub(crate) async fn renew(
        &self,
        share_id: &str,
        reason: ShareReason,
        reason_text: &str,
        expires: Option<Timestamp>,
    ) -> Result<ShareRevision, ServiceError> {
        let latest = self.latest(share_id)?;
        let revision = safeguarding::renew(&latest, reason, reason_text, expires, self.recorder(), self.call.now)
            .map_err(|refused| refusal(refused, share_id))?;
        self.commit(&revision, Action::SafeguardingRenewed).await?;
        Ok(revision)
    }

    /// Ends share `share_id` now.
    pub(crate) async fn end(&self, share_id: &str, reason: &str) -> Result<ShareRevision, ServiceError> {
        let latest = self.latest(share_id)?;
        let revision = safeguarding::end(&latest, reason, self.recorder(), self.call.now)
            .map_err(|refused| refusal(refused, share_id))?;
        self.commit(&revision, Action::SafeguardingEnded).await?;
        Ok(revision)
    }

    /// Returns the latest revision of every share of the child, in the order declared;
    /// the read is audited.
    pub(crate) async fn list(&self) -> Result<Vec<ShareRevision>, ServiceError> {
        let mut entry = self.broker.entry(self.call, Action::ConsentRead, Outcome::Allowed);
        self.broker.name_child(&mut entry, &self.child)?;
        entry.detail = "safeguarding shares".to_owned();
        self.broker.write_audit(&[entry]).await?;
        Ok(self.broker.store().latest_shares(&self.child)?)
    }

    fn latest(&self, share_id: &str) -> Result<ShareRevision, ServiceError> {
        let id = ShareId::parse("share_id", share_id).map_err(invalid)?;
        self.broker.store().share_revisions(&self.child, id)?.pop().ok_or_else(|| {
            ServiceError::not_found(
                "tio.v1.SafeguardingShareRecord",
                "SAFEGUARDING_SHARE_NOT_FOUND",
                share_id,
                format!("no safeguarding share `{share_id}` for this child"),
            )
        })
    }

    /// Stores one revision, which must be new, with its audit entry, an alert to the
    /// declaring agency; wakes the delivery streams (an end stops what they would send).
    async fn commit(&self, revision: &ShareRevision, action: Action) -> Result<(), ServiceError> {
        let (is_new, put) = self.broker.store().put_share_revision(&self.child, revision)?;
        let mut batch = Batch::new();
        batch.require(is_new);
        batch.push(put);
        let share = &revision.share;
        let mut entry = self.broker.entry(self.call, action, Outcome::Allowed);
        self.broker.name_child(&mut entry, &self.child)?;
        entry.consent_id = share.id.to_string();
        entry.consent_revision = share.revision;
        entry.categories = share.categories.iter().map(|category| category.as_str().to_owned()).collect();
        entry.detail = share.reason.as_str().to_owned();
        entry.alert = action.code().to_owned();
        entry.alert_to = vec![share.declared_by.as_str().to_owned()];
        batch.push(entry_op(&entry));
        self.broker.store().commit(batch).await?;
        self.broker.notify_change();
        Ok(())
    }
}

/// The answer to a renewal or an end the share's state refuses.
fn refusal(refused: ChangeRefused, share_id: &str) -> ServiceError {
    match refused {
        ChangeRefused::Invalid(violation) => invalid(violation),
        ChangeRefused::NotDeclarer => ServiceError::failed_precondition(
            "NOT_THE_DECLARING_AGENCY",
            format!("safeguarding_share/{share_id}"),
            "only the agency that declared the share may renew or end it",
        ),
        ChangeRefused::NotInForce => ServiceError::failed_precondition(
            "SHARE_NOT_IN_FORCE",
            format!("safeguarding_share/{share_id}"),
            format!("safeguarding share `{share_id}` has ended or expired: declare a new one"),
        ),
    }
}
