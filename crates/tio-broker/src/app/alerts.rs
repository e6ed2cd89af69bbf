//! Alerts: audit entries addressed to someone (`AuditEntry::alert_to`), read by whom
//! they are for once the audit log has sequenced them (`AuditLog::alerts`). An agency
//! reads the alerts addressed to it, and learns which child each is about (it published
//! what was accessed); auditors and admins read every alert, the child masked. Every
//! page read is itself audited, and each caller's last ack is kept, so that a watch
//! resumes after it.

use base64::Engine as _;
use tio_audit::entry::{Action, AuditEntry, Outcome};
use tio_core::{NhsNumber, Role, Service};
use tio_store::{Batch, ChildIndex, cursors};

use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;

/// One alert as its reader sees it.
#[derive(Debug, Clone)]
pub(crate) struct Alert {
    /// The audit entry that raised it, with its leaf index.
    pub(crate) entry: AuditEntry,
    /// The child's NHS number, for an agency the alert is addressed to; `None` for
    /// auditors and admins, and once the child is erased.
    pub(crate) nhs_number: Option<NhsNumber>,
    /// The child's number masked, unless the child is erased.
    pub(crate) child_masked: Option<String>,
}

/// Whose alerts a reader reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// Those addressed to this agency.
    Agency(String),
    /// Every alert (auditors and admins).
    Everyone,
}

/// A caller admitted to read alerts.
pub(crate) struct AlertReader<'a> {
    broker: &'a Broker,
    call: &'a Call,
    scope: Scope,
}

impl Broker {
    /// Admits a caller to read alerts: an agency (registered, with its professional)
    /// reads its own, auditors and admins every one.
    pub(crate) async fn alert_reader<'a>(&'a self, call: &'a Call) -> Result<AlertReader<'a>, ServiceError> {
        let scope = match call.caller.identity.role {
            Role::Agency => {
                Scope::Agency(self.agency_call(call, Service::Alerts, Action::AuditRead).await?.id.to_string())
            }
            Role::Admin | Role::Auditor => {
                self.admit(call, Service::Alerts, Action::AuditRead).await?;
                Scope::Everyone
            }
        };
        Ok(AlertReader { broker: self, call, scope })
    }
}

impl AlertReader<'_> {
    /// The name the caller's ack is kept under: its role and id.
    fn watcher(&self) -> String {
        let identity = &self.call.caller.identity;
        format!("{}/{}", identity.role.as_str(), identity.id)
    }

    /// Whether the reader is an agency that has since been suspended (a watch ends).
    pub(crate) fn suspended(&self) -> bool {
        match &self.scope {
            Scope::Agency(id) => self.broker.registry().agency(id).is_none_or(|agency| agency.suspended),
            Scope::Everyone => false,
        }
    }

    /// Returns up to `limit` of the caller's alerts from leaf `from` on, the log
    /// sequenced first so that the latest are there, and audits the read when it found
    /// any.
    pub(crate) async fn page(&self, from: u64, limit: usize) -> Result<Vec<Alert>, ServiceError> {
        let audit = self.broker.audit();
        audit.build().await?;
        let recipient = match &self.scope {
            Scope::Agency(id) => Some(id.as_str()),
            Scope::Everyone => None,
        };
        let entries = audit.alerts(recipient, from, limit)?;
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return Ok(Vec::new()) };
        let mut read = self.broker.entry(self.call, Action::AuditRead, Outcome::Allowed);
        read.detail = format!("alerts {}..={}", first.leaf_index, last.leaf_index);
        self.broker.write_audit(&[read]).await?;
        entries.into_iter().map(|entry| self.reveal(entry)).collect()
    }

    /// Names the child of an alert as far as the reader may know it.
    fn reveal(&self, entry: AuditEntry) -> Result<Alert, ServiceError> {
        let store = self.broker.store();
        let sealed = base64::engine::general_purpose::STANDARD.decode(&entry.child_sealed).unwrap_or_default();
        let number = match ChildIndex::from_hex(&entry.child_index) {
            Some(index) if !sealed.is_empty() => store.open_child_reference(index, &sealed)?,
            _ => None,
        };
        // The number was checked when it was first stored; one that no longer parses
        // under today's policy is still the child's, so it is shown masked by digits.
        let number = number.and_then(|digits| NhsNumber::parse_checked(&digits).ok());
        let child_masked = number.as_ref().map(ToString::to_string);
        let addressed = matches!(&self.scope, Scope::Agency(id) if entry.alert_to.contains(id));
        Ok(Alert { nhs_number: number.filter(|_| addressed), child_masked, entry })
    }

    /// Returns the leaf index through which the caller has acked, if it has.
    pub(crate) fn acked_through(&self) -> Result<Option<u64>, ServiceError> {
        Ok(self.broker.store().alert_mark(&self.watcher())?)
    }

    /// Keeps the caller's ack: every alert through leaf `through`.
    pub(crate) async fn ack(&self, through: u64) -> Result<(), ServiceError> {
        let mut batch = Batch::new();
        batch.push(cursors::put_alert_mark(&self.watcher(), through));
        self.broker.store().commit(batch).await?;
        Ok(())
    }
}

/// A caller's open alert stream: one per caller at a time, released when dropped.
pub(crate) struct AlertWatch {
    broker: std::sync::Arc<Broker>,
    call: Call,
    claim: crate::app::streams::StreamClaim,
}

impl Broker {
    /// Opens `call`'s caller's alert stream, admitted as [`Broker::alert_reader`];
    /// refused while the caller has another open.
    pub(crate) async fn watch_alerts(self: &std::sync::Arc<Self>, call: Call) -> Result<AlertWatch, ServiceError> {
        let key = format!("alerts/{}", self.alert_reader(&call).await?.watcher());
        let Some(claim) = self.claim_stream(&key).await? else {
            return Err(ServiceError::failed_precondition(
                "STREAM_ALREADY_OPEN",
                "alerts",
                format!(
                    "this caller's alerts are already open on another stream (a stream whose broker node stopped is \
                     freed within {} s)",
                    self.stream_lease().as_secs()
                ),
            ));
        };
        Ok(AlertWatch { broker: self.clone(), call, claim })
    }
}

impl AlertWatch {
    /// Returns the reader, admitted again (a caller revoked or removed meanwhile is
    /// refused).
    pub(crate) async fn reader(&self) -> Result<AlertReader<'_>, ServiceError> {
        self.broker.alert_reader(&self.call).await
    }

    /// Returns a receiver that sees every change worth a look (a new entry may be an
    /// alert).
    pub(crate) fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.broker.watch_changes()
    }
}

impl AlertWatch {
    /// Renews the stream's lease when due (on a store other nodes share).
    pub(crate) async fn keep(&mut self) -> Result<(), ServiceError> {
        self.claim.keep("alerts").await
    }

    /// Ends the watch, releasing its lease at once.
    pub(crate) async fn close(self) {
        self.claim.release().await;
    }
}

/// Commits `entry`, an alert the broker raises of itself, with the marker that it was
/// raised (`once`: the precondition that it was not, and the operation that marks it),
/// so that each is raised once however many passes see it due. Returns whether this
/// pass raised it (false if another did meanwhile).
pub(crate) async fn raise_once(
    store: &tio_store::Store,
    once: (tio_store::Condition, tio_store::Op),
    entry: &tio_audit::entry::AuditEntry,
) -> Result<bool, ServiceError> {
    let (not_yet, mark) = once;
    let mut batch = tio_store::Batch::new();
    batch.require(not_yet);
    batch.push(mark).push(tio_audit_log::entry_op(entry));
    match store.commit(batch).await {
        Ok(_) => Ok(true),
        Err(tio_store::StoreError::Conflict { .. }) => Ok(false),
        Err(err) => Err(err.into()),
    }
}
