//! The broker's shared state, and what every call begins with: who is calling, the
//! request's ids, one reading of the clock, and the audit entry it will write.

use std::sync::Arc;

use base64::Engine as _;
use tio_audit::entry::{Action, AuditEntry, Outcome};
use tio_audit_log::AuditLog;
use tio_core::{Agency, FieldViolation, NhsNumber, NhsNumberPolicy, ROLE_NOT_PERMITTED, Service, Timestamp};
use tio_store::{ChildRef, Store};

use crate::app::admin;
use crate::app::error::ServiceError;
use crate::app::registry::{AuthError, Caller, Registry};
use crate::runtime::metrics::Metrics;

/// The request id and trace id of one request, put in its extensions by the
/// authentication interceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestMeta {
    /// The client's `x-request-id`, or 32 random hex digits.
    pub(crate) request_id: String,
    /// The trace id of the caller's `traceparent`, 32 hex digits, or empty.
    pub(crate) trace_id: String,
}

/// Where the broker reads the time. Read once per call, so that every decision in a
/// call sees the same `now`; tests put in their own.
pub(crate) trait Clock: Send + Sync {
    /// Returns the current time.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX));
        Timestamp::from_unix_micros(micros)
    }
}

/// The system clock moved by a number of days: development mode's
/// `dev_clock_offset_days`, so that deadlines and birthdays can be watched falling due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OffsetClock {
    /// Microseconds added to the system clock.
    pub(crate) offset_micros: i64,
}

impl OffsetClock {
    /// The system clock moved by `days`.
    pub(crate) fn days(days: i64) -> OffsetClock {
        OffsetClock { offset_micros: days.saturating_mul(86_400_000_000) }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_micros(SystemClock.now().unix_micros().saturating_add(self.offset_micros))
    }
}

/// What the registry starts from: the agencies that fill an empty one, and the admins,
/// auditors and revoked certificates that always apply.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistrySeed {
    /// Agencies registered at first start.
    pub(crate) agencies: Vec<Agency>,
    /// Admin ids.
    pub(crate) admins: Vec<String>,
    /// Auditor ids.
    pub(crate) auditors: Vec<String>,
    /// Revoked certificate fingerprints.
    pub(crate) revoked: Vec<String>,
    /// Whether to say so when the store's registry leaves the agencies unapplied.
    pub(crate) say_if_ignored: bool,
}

/// Everything the services share: the store, the audit log, the registry, the NHS
/// number policy and the clock.
pub(crate) struct Broker {
    store: Arc<Store>,
    audit: Arc<AuditLog>,
    registry: Arc<Registry>,
    nhs_numbers: NhsNumberPolicy,
    clock: Arc<dyn Clock>,
    /// Bumped after every change that can alter a delivery (a publish, a consent or
    /// relationship change, a registry change), to wake open subscription streams.
    changes: tokio::sync::watch::Sender<u64>,
    /// The subscriptions open on a stream of this node now (`agency/name`): one stream
    /// each (on a shared store, a lease keeps other nodes off them too).
    open_streams: std::sync::Mutex<std::collections::HashSet<String>>,
    /// This node among the nodes of a shared store: the holder its leases name.
    node: String,
    /// How long a lease of this node lasts unrenewed.
    stream_lease: std::time::Duration,
    /// What the registry is loaded from besides the store: the configured admins,
    /// auditors and revoked certificates.
    seed: RegistrySeed,
    /// Held while the registry is read afresh or changed by this node, so that a
    /// reading begun before a change never lands after it.
    registry_turn: tokio::sync::Mutex<()>,
    /// Whether the store's database answered its last probe (health checks watch it).
    store_reachable: tokio::sync::watch::Sender<bool>,
    metrics: Arc<Metrics>,
    /// Where backups spool and where the key ring lives, for store maintenance.
    maintenance: crate::app::maintenance::Maintenance,
    /// How this deployment shares without consent.
    sharing: crate::app::sharing::Sharing,
    /// Bumped after this node creates or deletes a subscription, so that open streams
    /// read their agency's subscriptions again (the one-copy rule) only when they change.
    subscriptions_changed: std::sync::atomic::AtomicU64,
    /// Where streams with nothing to read wait for deliveries decided with their
    /// publish; `None` on a store other nodes share.
    live: Option<Arc<crate::app::subscriptions::live::Live>>,
}

/// How long a stream lease lasts unrenewed unless configured.
const DEFAULT_STREAM_LEASE: std::time::Duration = std::time::Duration::from_secs(10);

/// One call: its caller, its ids and the time it started.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// Who is calling.
    pub(crate) caller: Caller,
    /// The request id and trace id.
    pub(crate) meta: RequestMeta,
    /// The time, read once when the call started.
    pub(crate) now: Timestamp,
}

impl Broker {
    /// Returns a broker over these parts.
    pub(crate) fn new(
        store: Arc<Store>,
        audit: Arc<AuditLog>,
        registry: Arc<Registry>,
        nhs_numbers: NhsNumberPolicy,
        clock: Arc<dyn Clock>,
        sharing: crate::app::sharing::Sharing,
    ) -> Broker {
        let metrics = Arc::new(Metrics::new());
        store.set_commit_observer(metrics.clone());
        let live = crate::app::subscriptions::live::Live::install(&store);
        Broker {
            live,
            metrics,
            store,
            audit,
            registry,
            nhs_numbers,
            clock,
            changes: tokio::sync::watch::Sender::new(0),
            open_streams: std::sync::Mutex::default(),
            node: crate::app::leases::holder_id(),
            stream_lease: DEFAULT_STREAM_LEASE,
            seed: RegistrySeed::default(),
            registry_turn: tokio::sync::Mutex::new(()),
            store_reachable: tokio::sync::watch::Sender::new(true),
            maintenance: crate::app::maintenance::Maintenance::new(std::env::temp_dir(), None),
            sharing,
            subscriptions_changed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How this deployment shares without consent.
    pub(crate) fn sharing(&self) -> &crate::app::sharing::Sharing {
        &self.sharing
    }

    /// Sets where backups spool their index copy and the key ring file that key
    /// rotation rewrites (`None`: the ring came from the environment and cannot be
    /// rotated by the server).
    pub(crate) fn with_maintenance(
        mut self,
        spool_dir: std::path::PathBuf,
        key_ring_file: Option<std::path::PathBuf>,
    ) -> Self {
        self.maintenance = crate::app::maintenance::Maintenance::new(spool_dir, key_ring_file);
        self
    }

    /// Returns the store maintenance settings.
    pub(crate) fn maintenance(&self) -> &crate::app::maintenance::Maintenance {
        &self.maintenance
    }

    /// Opens the broker over its store and audit log, on `clock`: fills an empty
    /// registry from `seed` (the configuration, or the development seed), then loads the
    /// registry from the store.
    pub(crate) async fn open(
        store: Arc<Store>,
        audit: Arc<AuditLog>,
        seed: RegistrySeed,
        nhs_numbers: NhsNumberPolicy,
        sharing: crate::app::sharing::Sharing,
        clock: Arc<dyn Clock>,
    ) -> Result<Broker, ServiceError> {
        let seeded = admin::seed_registry(&store, &seed.agencies, &seed.revoked, clock.now()).await?;
        if seeded > 0 {
            tracing::info!(agencies = seeded, "registry seeded from the configuration");
        } else if !seed.agencies.is_empty() && seed.say_if_ignored {
            tracing::info!("registry already in the store; configured agencies are not applied (use the admin API)");
        }
        let registry = admin::load_registry(&store, &seed.admins, &seed.auditors, &seed.revoked)?;
        let broker = Broker::new(store, audit, Arc::new(registry), nhs_numbers, clock, sharing);
        Ok(Broker { seed: RegistrySeed { agencies: Vec::new(), ..seed }, ..broker })
    }

    /// Sets how long this node's stream leases last unrenewed (on a shared store).
    pub(crate) fn with_stream_lease(mut self, lease: std::time::Duration) -> Self {
        self.stream_lease = lease;
        self
    }

    /// How long this node's stream leases last unrenewed.
    pub(crate) fn stream_lease(&self) -> std::time::Duration {
        self.stream_lease
    }

    /// This node's name among the nodes of a shared store.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Reads the registry afresh from the store (on a shared store, where other nodes
    /// change it): a suspension or a revocation made on another node applies here from
    /// the next request.
    pub(crate) async fn reload_registry(&self) -> Result<(), ServiceError> {
        let _turn = self.registry_turn.lock().await;
        let seed = &self.seed;
        let registry = admin::load_registry(&self.store, &seed.admins, &seed.auditors, &seed.revoked)?;
        self.registry.replace(registry);
        Ok(())
    }

    /// Applies a change this node committed to the registry in memory, in turn with
    /// [`Broker::reload_registry`].
    pub(crate) async fn change_registry(&self, change: impl FnOnce(&Registry)) {
        let _turn = self.registry_turn.lock().await;
        change(&self.registry);
    }

    /// Wakes open subscription streams: something that can change a delivery committed.
    pub(crate) fn notify_change(&self) {
        self.changes.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Returns a number that changes whenever this node creates or deletes a
    /// subscription: read it before [`Broker::agency_heads`], and what was read stays
    /// current (on this node) while the number does not change.
    pub(crate) fn subscriptions_generation(&self) -> u64 {
        self.subscriptions_changed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Where open streams wait for deliveries decided with their publish, if this
    /// node's commits are every commit of its store.
    pub(crate) fn live(&self) -> Option<&Arc<crate::app::subscriptions::live::Live>> {
        self.live.as_ref()
    }

    /// Records that this node created or deleted a subscription.
    pub(crate) fn note_subscriptions_changed(&self) {
        self.subscriptions_changed.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Returns a receiver that sees every [`Broker::notify_change`].
    pub(crate) fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Marks subscription `key` open on this node; false if a stream has it open
    /// already. [`Broker::claim_stream`] is the whole claim.
    pub(crate) fn mark_stream_open(&self, key: &str) -> bool {
        let claimed =
            self.open_streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.to_owned());
        if claimed {
            self.metrics.stream(1);
        }
        claimed
    }

    /// Marks subscription `key` closed.
    pub(crate) fn release_stream(&self, key: &str) {
        if self.open_streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key) {
            self.metrics.stream(-1);
        }
    }

    /// Whether subscription `key` is open on a stream of this node now.
    pub(crate) fn stream_is_open_here(&self, key: &str) -> bool {
        self.open_streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(key)
    }

    /// Records whether the store's database answered its last probe.
    pub(crate) fn set_store_reachable(&self, reachable: bool) {
        self.metrics.store_reachable(reachable);
        self.store_reachable.send_if_modified(|was| std::mem::replace(was, reachable) != reachable);
    }

    /// Returns a receiver that sees whether the store's database answers.
    pub(crate) fn watch_store_reachable(&self) -> tokio::sync::watch::Receiver<bool> {
        self.store_reachable.subscribe()
    }

    /// Reads the clock (for each item of a stream, which is one call of many items).
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The metrics.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The store.
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The audit log.
    pub(crate) fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// The registry of who may connect.
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Returns the audit entry of `call` doing `action` with `outcome`; the caller fills
    /// in what else applies (child, categories, reason, consent, relationship).
    pub(crate) fn entry(&self, call: &Call, action: Action, outcome: Outcome) -> AuditEntry {
        AuditEntry {
            action: action.code().to_owned(),
            actor: tio_audit::entry::Actor {
                certificate_fingerprint: call.caller.certificate_fingerprint.clone(),
                id: call.caller.identity.id.clone(),
                professional_id: call.caller.professional_id.clone().unwrap_or_default(),
                role: call.caller.identity.role.as_str().to_owned(),
            },
            outcome: outcome.code().to_owned(),
            request_id: call.meta.request_id.clone(),
            time_micros: call.now.unix_micros(),
            trace_id: call.meta.trace_id.clone(),
            ..AuditEntry::default()
        }
    }

    /// Fills in the child of an entry: its blind index, and its NHS number sealed under
    /// its data key when the store holds one.
    pub(crate) fn name_child(
        &self,
        entry: &mut AuditEntry,
        child: &(impl ChildRef + ?Sized),
    ) -> Result<(), ServiceError> {
        entry.child_index = child.index_in(&self.store).to_hex();
        entry.child_sealed = match self.store.seal_child_reference(child)? {
            Some(sealed) => base64::engine::general_purpose::STANDARD.encode(sealed),
            None => String::new(),
        };
        Ok(())
    }

    /// Checks that the caller's role may use `service`. A refusal is recorded as a
    /// denied `action` before PERMISSION_DENIED is returned.
    pub(crate) async fn admit(&self, call: &Call, service: Service, action: Action) -> Result<(), ServiceError> {
        let role = call.caller.identity.role;
        if role.may_call(service) {
            return Ok(());
        }
        let mut entry = self.entry(call, action, Outcome::Denied);
        entry.reason = ROLE_NOT_PERMITTED.to_owned();
        self.write_audit(&[entry]).await?;
        self.metrics.denied(action.code(), ROLE_NOT_PERMITTED);
        tracing::info!(role = role.as_str(), service = ?service, "refused: role may not use this service");
        Err(ServiceError::denied(ROLE_NOT_PERMITTED, format!("the {} role may not use this service", role.as_str())))
    }

    /// Admits an agency's call to `service`: the role must be an agency's, the call must
    /// name its professional, and the agency must be registered. Returns the agency as
    /// registered now. A refused role is audited as a denied `action`.
    pub(crate) async fn agency_call(
        &self,
        call: &Call,
        service: Service,
        action: Action,
    ) -> Result<Agency, ServiceError> {
        self.admit(call, service, action).await?;
        if call.caller.professional_id.is_none() {
            let mut entry = self.entry(call, Action::Authentication, Outcome::Denied);
            entry.reason = AuthError::NoProfessional.code().to_owned();
            self.write_audit(&[entry]).await?;
            self.metrics.denied(Action::Authentication.code(), AuthError::NoProfessional.code());
            return Err(ServiceError::Unauthenticated(AuthError::NoProfessional));
        }
        self.registry.agency(&call.caller.identity.id).ok_or_else(|| {
            ServiceError::Unauthenticated(AuthError::Unknown { role: "agency", id: call.caller.identity.id.clone() })
        })
    }

    /// Returns a new random id with `prefix` (`c-` consents, `r-` relationships).
    pub(crate) fn new_id(prefix: &str) -> Result<String, ServiceError> {
        let mut bytes = [0u8; 12];
        getrandom::fill(&mut bytes).map_err(|err| ServiceError::Internal(format!("no randomness: {err}")))?;
        Ok(format!("{prefix}{}", hex::encode(bytes)))
    }

    /// Writes authentication refusals to the audit log as they come, in batches, until
    /// every sender is gone.
    pub(crate) async fn record_refusals(
        self: Arc<Self>,
        mut refused: tokio::sync::mpsc::Receiver<crate::app::registry::Refusal>,
    ) {
        const BATCH: usize = 256;
        let mut pending = Vec::with_capacity(BATCH);
        while refused.recv_many(&mut pending, BATCH).await > 0 {
            let now = self.now();
            let entries: Vec<AuditEntry> = pending
                .drain(..)
                .map(|refusal| {
                    self.metrics.denied(Action::Authentication.code(), refusal.reason);
                    let (id, role) = refusal.identity.map_or((String::new(), String::new()), |identity| {
                        (identity.id, identity.role.as_str().to_owned())
                    });
                    AuditEntry {
                        action: Action::Authentication.code().to_owned(),
                        actor: tio_audit::entry::Actor {
                            certificate_fingerprint: refusal.certificate_fingerprint,
                            id,
                            professional_id: String::new(),
                            role,
                        },
                        outcome: Outcome::Denied.code().to_owned(),
                        reason: refusal.reason.to_owned(),
                        time_micros: now.unix_micros(),
                        ..AuditEntry::default()
                    }
                })
                .collect();
            if let Err(err) = self.write_audit(&entries).await {
                tracing::error!(error = %err, refusals = entries.len(), "cannot audit authentication refusals");
            }
        }
    }

    /// Records entries that go with no other change (reads, refusals), durably.
    pub(crate) async fn write_audit(&self, entries: &[AuditEntry]) -> Result<(), ServiceError> {
        self.audit.append(entries).await?;
        Ok(())
    }

    /// Parses an NHS number under the configured policy; a failure names `field`.
    pub(crate) fn parse_nhs_number(&self, field: &str, text: &str) -> Result<NhsNumber, ServiceError> {
        NhsNumber::parse(text, &self.nhs_numbers)
            .map_err(|err| ServiceError::InvalidArgument(vec![FieldViolation::new(field, err.to_string())]))
    }
}

#[cfg(test)]
mod tests;
