//! The agency registry, kept in the store: registering, updating, suspending and
//! reinstating agencies, revoking certificates, and seeding an empty registry from the
//! configuration at first start.
//!
//! Each change is one atomic commit of the record and its audit entry, guarded by a
//! precondition on the record as it was read, and only then applied to the in-memory
//! [`Registry`] every request is checked against.

use prost::Message;
use tio_audit::entry::{Action, AuditEntry, Outcome};
use tio_audit::log::entry_op;
use tio_core::{Agency, FieldViolation, Service, Timestamp, limits};
use tio_proto::v1;
use tio_store::{Batch, Condition, Keyspace, Op, Store, StoreError};

use crate::auth::Registry;
use crate::broker::{Broker, Call};
use crate::convert::{agency_from_proto, agency_to_proto, timestamp_to_proto};
use crate::status::ServiceError;

/// Key prefixes in the `agencies` keyspace. Do not change.
const AGENCY_PREFIX: &[u8] = b"agency/";
const REVOKED_PREFIX: &[u8] = b"revoked/";

/// The most agencies the registry lists or loads.
const MAX_AGENCIES: usize = 100_000;

fn agency_key(id: &str) -> Vec<u8> {
    [AGENCY_PREFIX, id.as_bytes()].concat()
}

fn revoked_key(fingerprint: &str) -> Vec<u8> {
    [REVOKED_PREFIX, fingerprint.as_bytes()].concat()
}

/// Returns every stored agency record, in id order.
pub fn stored_agencies(store: &Store) -> Result<Vec<v1::Agency>, ServiceError> {
    let end = tio_store::engine::prefix_end(AGENCY_PREFIX);
    let rows = store.engine().scan(Keyspace::Agencies, AGENCY_PREFIX, end.as_deref(), MAX_AGENCIES)?;
    rows.iter().map(|(_, bytes)| decode_agency(bytes)).collect()
}

/// Returns every stored revoked fingerprint.
pub fn stored_revocations(store: &Store) -> Result<Vec<String>, ServiceError> {
    let end = tio_store::engine::prefix_end(REVOKED_PREFIX);
    let rows = store.engine().scan(Keyspace::Agencies, REVOKED_PREFIX, end.as_deref(), MAX_AGENCIES)?;
    rows.iter()
        .map(|(key, _)| {
            std::str::from_utf8(&key[REVOKED_PREFIX.len()..])
                .map(str::to_owned)
                .map_err(|_| ServiceError::Store(StoreError::Corrupt("a revoked fingerprint is not text".into())))
        })
        .collect()
}

fn decode_agency(bytes: &[u8]) -> Result<v1::Agency, ServiceError> {
    v1::Agency::decode(bytes)
        .map_err(|_| ServiceError::Store(StoreError::Corrupt("an agency record does not decode".into())))
}

/// Fills an empty registry from the configuration (or development seed) and records
/// it in the audit log, in one commit. Does nothing once the registry holds an agency:
/// from then on agencies are managed with the AdminService. Returns how many it stored.
pub async fn seed_registry(
    store: &Store,
    agencies: &[Agency],
    revoked: &[String],
    now: Timestamp,
) -> Result<usize, ServiceError> {
    if !stored_agencies(store)?.is_empty() || agencies.is_empty() {
        return Ok(0);
    }
    let mut batch = Batch::new();
    for agency in agencies {
        let key = agency_key(agency.id.as_str());
        let mut record = agency_to_proto(agency);
        record.registered_at = Some(timestamp_to_proto(now));
        batch.require(Condition::Absent { space: Keyspace::Agencies, key: key.clone() });
        batch.push(Op::Put { space: Keyspace::Agencies, key, value: record.encode_to_vec() });
    }
    for fingerprint in revoked {
        batch.push(Op::Put { space: Keyspace::Agencies, key: revoked_key(fingerprint), value: Vec::new() });
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
pub fn load_registry(
    store: &Store,
    admins: &[String],
    auditors: &[String],
    config_revoked: &[String],
) -> Result<Registry, ServiceError> {
    let agencies = stored_agencies(store)?
        .iter()
        .map(|record| {
            agency_from_proto(record).map_err(|err| {
                ServiceError::Store(StoreError::Corrupt(format!("stored agency `{}` is invalid: {err}", record.id)))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut revoked = stored_revocations(store)?;
    revoked.extend(config_revoked.iter().cloned());
    Ok(Registry::new(agencies, admins.iter().cloned(), auditors.iter().cloned(), revoked))
}

/// Returns the record to store for a validated request: the domain's form (categories
/// in contract order) with the request's organisation code.
fn normalised(request: &v1::Agency, agency: &Agency) -> v1::Agency {
    v1::Agency { code_kind: request.code_kind, code: request.code.clone(), ..agency_to_proto(agency) }
}

/// The registry as an admitted admin changes it.
pub struct Administrator<'a> {
    pub(crate) broker: &'a Broker,
    pub(crate) call: &'a Call,
}

impl Broker {
    /// Admits `call` to the AdminService if it is an admin's; otherwise records the
    /// refusal and returns PERMISSION_DENIED.
    pub async fn administrator<'a>(&'a self, call: &'a Call) -> Result<Administrator<'a>, ServiceError> {
        self.admit(call, Service::Admin, Action::Admin).await?;
        Ok(Administrator { broker: self, call })
    }
}

impl Administrator<'_> {
    /// Registers a new agency. ALREADY_EXISTS if the id is taken.
    pub async fn register(&self, request: &v1::Agency) -> Result<v1::Agency, ServiceError> {
        let agency = Agency { suspended: false, ..agency_from_proto(request)? };
        let record =
            v1::Agency { registered_at: Some(timestamp_to_proto(self.call.now)), ..normalised(request, &agency) };
        let key = agency_key(agency.id.as_str());
        let condition = Condition::Absent { space: Keyspace::Agencies, key: key.clone() };
        self.write(key, condition, &record, format!("register_agency {}", agency.id)).await.map_err(
            |err| match err {
                ServiceError::Store(StoreError::Conflict { .. }) => ServiceError::already_exists(
                    "tio.v1.Agency",
                    "AGENCY_EXISTS",
                    agency.id.as_str(),
                    format!("agency `{}` is already registered", agency.id),
                ),
                other => other,
            },
        )?;
        self.broker.registry().set_agency(agency);
        Ok(record)
    }

    /// Replaces an agency's name, sector, code and permissions; keeps its suspension
    /// and registration time.
    pub async fn update(&self, request: &v1::Agency) -> Result<v1::Agency, ServiceError> {
        let record = normalised(request, &agency_from_proto(request)?);
        self.change(&request.id, "update_agency", |stored| v1::Agency {
            suspended: stored.suspended,
            registered_at: stored.registered_at,
            ..record
        })
        .await
    }

    /// Suspends an agency: refused everywhere from its next request on.
    pub async fn suspend(&self, id: &str, reason: &str) -> Result<v1::Agency, ServiceError> {
        limits::check_len("reason", reason, limits::MAX_SHORT_STRING_BYTES)
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        let action = if reason.is_empty() { "suspend_agency".to_owned() } else { format!("suspend_agency ({reason})") };
        self.change(id, &action, |stored| v1::Agency { suspended: true, ..stored.clone() }).await
    }

    /// Lifts an agency's suspension.
    pub async fn reinstate(&self, id: &str) -> Result<v1::Agency, ServiceError> {
        self.change(id, "reinstate_agency", |stored| v1::Agency { suspended: false, ..stored.clone() }).await
    }

    /// Lists every agency, in id order.
    pub fn list(&self) -> Result<Vec<v1::Agency>, ServiceError> {
        stored_agencies(self.broker.store())
    }

    /// Refuses a certificate by its SHA-256 fingerprint from the next request on.
    pub async fn revoke(&self, fingerprint: &str, reason: &str) -> Result<(), ServiceError> {
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
        batch.push(Op::Put {
            space: Keyspace::Agencies,
            key: revoked_key(fingerprint),
            value: reason.as_bytes().to_vec(),
        });
        let mut entry = self.entry(format!("revoke_certificate {fingerprint}"));
        if !reason.is_empty() {
            entry.detail.push_str(&format!(" ({reason})"));
        }
        batch.push(entry_op(&entry));
        self.broker.store().commit(batch).await?;
        self.broker.registry().revoke(fingerprint.to_owned());
        tracing::info!(certificate.fingerprint = fingerprint, "certificate revoked");
        Ok(())
    }

    /// Reads agency `id`, applies `change`, and writes the result if the record is
    /// unchanged since it was read.
    async fn change(
        &self,
        id: &str,
        what: &str,
        change: impl FnOnce(&v1::Agency) -> v1::Agency,
    ) -> Result<v1::Agency, ServiceError> {
        let key = agency_key(id);
        let not_found = || {
            ServiceError::not_found("tio.v1.Agency", "AGENCY_NOT_FOUND", id, format!("agency `{id}` is not registered"))
        };
        if id.is_empty() {
            return Err(ServiceError::InvalidArgument(vec![FieldViolation::new("agency_id", "is required")]));
        }
        let stored_bytes = self.broker.store().engine().get(Keyspace::Agencies, &key)?.ok_or_else(not_found)?;
        let record = change(&decode_agency(&stored_bytes)?);
        let agency = agency_from_proto(&record)?;
        let condition = Condition::Equals { space: Keyspace::Agencies, key: key.clone(), value: stored_bytes };
        let detail = match what.split_once(' ') {
            Some((verb, rest)) => format!("{verb} {id} {rest}"),
            None => format!("{what} {id}"),
        };
        self.write(key, condition, &record, detail).await?;
        self.broker.registry().set_agency(agency);
        // A suspension closes the agency's open streams; any change re-decides deliveries.
        self.broker.notify_change();
        Ok(record)
    }

    async fn write(
        &self,
        key: Vec<u8>,
        condition: Condition,
        record: &v1::Agency,
        detail: String,
    ) -> Result<(), ServiceError> {
        let mut batch = Batch::new();
        batch.require(condition);
        batch.push(Op::Put { space: Keyspace::Agencies, key, value: record.encode_to_vec() });
        batch.push(entry_op(&self.entry(detail)));
        self.broker.store().commit(batch).await?;
        Ok(())
    }

    /// Returns an allowed admin entry for this call with `detail`.
    pub(crate) fn entry(&self, detail: String) -> AuditEntry {
        AuditEntry { detail, ..self.broker.entry(self.call, Action::Admin, Outcome::Allowed) }
    }
}
