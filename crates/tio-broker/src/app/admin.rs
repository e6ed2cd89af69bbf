//! The agency registry, kept in the store: registering, updating, suspending and
//! reinstating agencies, revoking certificates, and seeding an empty registry from the
//! configuration at first start.
//!
//! Each change is one atomic commit of the record and its audit entry, guarded by a
//! precondition on the record as it was read, and only then applied to the in-memory
//! [`Registry`] every request is checked against.

use tio_audit::entry::{Action, AuditEntry, Outcome};
use tio_audit_log::entry_op;
use tio_core::{Agency, FieldViolation, Service, Timestamp, limits};
use tio_store::agencies::{AgencyRecord, StoredAgency, agency_absent, put_agency, put_revoked};
use tio_store::{Batch, Child, ChildIndex, Condition, Store, StoreError};

use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;
use crate::app::registry::Registry;

/// Fills an empty registry from the configuration (or development seed) and records
/// it in the audit log, in one commit. Does nothing once the registry holds an agency:
/// from then on agencies are managed with the AdminService. Returns how many it stored.
pub(crate) async fn seed_registry(
    store: &Store,
    agencies: &[Agency],
    revoked: &[String],
    now: Timestamp,
) -> Result<usize, ServiceError> {
    if !store.agencies()?.is_empty() || agencies.is_empty() {
        return Ok(0);
    }
    let mut batch = Batch::new();
    for agency in agencies {
        batch.require(agency_absent(&agency.id));
        batch.push(put_agency(&AgencyRecord { agency: agency.clone(), code: None, registered_at: Some(now) }));
    }
    for fingerprint in revoked {
        batch.push(put_revoked(fingerprint, ""));
    }
    let entry = AuditEntry {
        action: Action::Admin.code().to_owned(),
        actor: tio_audit::entry::Actor { id: "configuration".into(), role: "system".into(), ..Default::default() },
        outcome: Outcome::Allowed.code().to_owned(),
        time_micros: now.unix_micros(),
        detail: format!("seed_registry {} agencies", agencies.len()),
        ..AuditEntry::default()
    };
    batch.push(entry_op(&entry));
    match store.commit(batch).await {
        Ok(_) => Ok(agencies.len()),
        // Another process seeded it first (a second server on the same store): keep theirs.
        Err(StoreError::Conflict { .. }) => Ok(0),
        Err(err) => Err(err.into()),
    }
}

/// Builds the in-memory registry from the store, with the configuration's admins,
/// auditors and revocations (configuration revocations always apply).
pub(crate) fn load_registry(
    store: &Store,
    admins: &[String],
    auditors: &[String],
    config_revoked: &[String],
) -> Result<Registry, ServiceError> {
    let agencies = store.agencies()?.into_iter().map(|record| record.agency);
    let mut revoked = store.revoked_certificates()?;
    revoked.extend(config_revoked.iter().cloned());
    Ok(Registry::new(agencies, admins.iter().cloned(), auditors.iter().cloned(), revoked))
}

/// The longest reason for an erasure, in bytes.
const MAX_ERASURE_REASON_BYTES: usize = 1024;

/// The registry as an admitted admin changes it.
pub(crate) struct Administrator<'a> {
    pub(crate) broker: &'a Broker,
    pub(crate) call: &'a Call,
}

impl Broker {
    /// Admits `call` to the AdminService if it is an admin's; otherwise records the
    /// refusal and returns PERMISSION_DENIED.
    pub(crate) async fn administrator<'a>(&'a self, call: &'a Call) -> Result<Administrator<'a>, ServiceError> {
        self.admit(call, Service::Admin, Action::Admin).await?;
        Ok(Administrator { broker: self, call })
    }
}

impl Administrator<'_> {
    /// Registers a new agency (not suspended, registered now). ALREADY_EXISTS if the id
    /// is taken.
    pub(crate) async fn register(&self, request: AgencyRecord) -> Result<AgencyRecord, ServiceError> {
        let record = AgencyRecord {
            agency: Agency { suspended: false, ..request.agency },
            registered_at: Some(self.call.now),
            ..request
        };
        let id = record.agency.id.clone();
        self.write(agency_absent(&id), &record, format!("register_agency {id}")).await.map_err(|err| match err {
            ServiceError::Store(StoreError::Conflict { .. }) => ServiceError::already_exists(
                "tio.v1.Agency",
                "AGENCY_EXISTS",
                id.as_str(),
                format!("agency `{id}` is already registered"),
            ),
            other => other,
        })?;
        self.broker.change_registry(|registry| registry.set_agency(record.agency.clone())).await;
        Ok(record)
    }

    /// Replaces an agency's name, sector, code and permissions; keeps its suspension
    /// and registration time.
    pub(crate) async fn update(&self, request: AgencyRecord) -> Result<AgencyRecord, ServiceError> {
        let id = request.agency.id.clone();
        self.change(id.as_str(), "update_agency", |stored| AgencyRecord {
            agency: Agency { suspended: stored.agency.suspended, ..request.agency },
            code: request.code,
            registered_at: stored.registered_at,
        })
        .await
    }

    /// Suspends an agency: refused everywhere from its next request on.
    pub(crate) async fn suspend(&self, id: &str, reason: &str) -> Result<AgencyRecord, ServiceError> {
        limits::check_len("reason", reason, limits::MAX_SHORT_STRING_BYTES)
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        let action = if reason.is_empty() { "suspend_agency".to_owned() } else { format!("suspend_agency ({reason})") };
        self.change(id, &action, |stored| suspended(stored, true)).await
    }

    /// Lifts an agency's suspension.
    pub(crate) async fn reinstate(&self, id: &str) -> Result<AgencyRecord, ServiceError> {
        self.change(id, "reinstate_agency", |stored| suspended(stored, false)).await
    }

    /// Lists every agency, in id order.
    pub(crate) fn list(&self) -> Result<Vec<AgencyRecord>, ServiceError> {
        Ok(self.broker.store().agencies()?)
    }

    /// Refuses a certificate by its SHA-256 fingerprint from the next request on.
    pub(crate) async fn revoke(&self, fingerprint: &str, reason: &str) -> Result<(), ServiceError> {
        let valid =
            fingerprint.len() == 64 && fingerprint.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(ServiceError::InvalidArgument(vec![FieldViolation::new(
                "fingerprint",
                "must be the certificate's SHA-256 as 64 lower-case hex digits",
            )]));
        }
        limits::check_len("reason", reason, limits::MAX_SHORT_STRING_BYTES)
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        let mut batch = Batch::new();
        batch.push(put_revoked(fingerprint, reason));
        let mut entry = self.entry(format!("revoke_certificate {fingerprint}"));
        if !reason.is_empty() {
            entry.detail.push_str(&format!(" ({reason})"));
        }
        batch.push(entry_op(&entry));
        self.broker.store().commit(batch).await?;
        self.broker.change_registry(|registry| registry.revoke(fingerprint.to_owned())).await;
        tracing::info!(certificate.fingerprint = fingerprint, "certificate revoked");
        Ok(())
    }

    /// Erases `child`: destroys its data key, with the audit entry (naming the child by
    /// blind index alone, with `reason` and the request's `reference`) in the same
    /// commit. Returns the child's blind index.
    pub(crate) async fn erase_child(
        &self,
        child: &Child,
        reason: &str,
        reference: &str,
    ) -> Result<ChildIndex, ServiceError> {
        let invalid = |violation| ServiceError::InvalidArgument(vec![violation]);
        if reason.trim().is_empty() {
            return Err(invalid(FieldViolation::new("reason", "is required: why is the child erased?")));
        }
        limits::check_len("reason", reason, MAX_ERASURE_REASON_BYTES).map_err(invalid)?;
        if reference.is_empty() {
            return Err(invalid(FieldViolation::new("request_reference", "is required")));
        }
        limits::check_identifier("request_reference", reference, limits::MAX_SHORT_STRING_BYTES).map_err(invalid)?;
        let index = child.index();
        // The child by blind index only: a reference sealed under the key being
        // destroyed would be unreadable anyway.
        let mut entry = self.entry(format!("{}{reference} ({reason})", tio_audit_log::ERASURE_DETAIL));
        entry.child_index = index.to_hex();
        // Past recipients are told by erasure notices in the update log, committed with it.
        let erased_by = self.call.caller.identity.id.as_str();
        let erased =
            self.broker.store().erase_child_with(child, vec![entry_op(&entry)], erased_by, self.call.now).await?;
        if !erased {
            return Err(ServiceError::not_found(
                "tio.v1.ChildRef",
                "CHILD_NOT_FOUND",
                index.to_hex(),
                "the store holds nothing readable about this child",
            ));
        }
        tracing::info!(child.index = %index, "child erased");
        // Deliveries are decided again at sending: an erased child's queued ones are
        // dropped, and its erasure notices go out.
        self.broker.notify_change();
        Ok(index)
    }

    /// Reads agency `id`, applies `change`, and writes the result if the record is
    /// unchanged since it was read.
    async fn change(
        &self,
        id: &str,
        what: &str,
        change: impl FnOnce(&AgencyRecord) -> AgencyRecord,
    ) -> Result<AgencyRecord, ServiceError> {
        if id.is_empty() {
            return Err(ServiceError::InvalidArgument(vec![FieldViolation::new("agency_id", "is required")]));
        }
        let not_found = || {
            ServiceError::not_found("tio.v1.Agency", "AGENCY_NOT_FOUND", id, format!("agency `{id}` is not registered"))
        };
        let stored: StoredAgency = self.broker.store().agency(id)?.ok_or_else(not_found)?;
        let record = change(&stored.record);
        let detail = match what.split_once(' ') {
            Some((verb, rest)) => format!("{verb} {id} {rest}"),
            None => format!("{what} {id}"),
        };
        self.write(stored.unchanged(), &record, detail).await?;
        self.broker.change_registry(|registry| registry.set_agency(record.agency.clone())).await;
        // A suspension closes the agency's open streams; any change re-decides deliveries.
        self.broker.notify_change();
        Ok(record)
    }

    async fn write(&self, condition: Condition, record: &AgencyRecord, detail: String) -> Result<(), ServiceError> {
        let mut batch = Batch::new();
        batch.require(condition);
        batch.push(put_agency(record));
        batch.push(entry_op(&self.entry(detail)));
        self.broker.store().commit(batch).await?;
        Ok(())
    }

    /// Returns an allowed admin entry for this call with `detail`.
    pub(crate) fn entry(&self, detail: String) -> AuditEntry {
        AuditEntry { detail, ..self.broker.entry(self.call, Action::Admin, Outcome::Allowed) }
    }
}

/// Returns `record` with its suspension set to `suspended`.
fn suspended(record: &AgencyRecord, suspended: bool) -> AgencyRecord {
    AgencyRecord { agency: Agency { suspended, ..record.agency.clone() }, ..record.clone() }
}
