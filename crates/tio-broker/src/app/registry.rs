//! Who may call: the registry of agencies (with their permissions), admins, auditors and
//! revoked certificates that every request is checked against, and the caller a request
//! was admitted as.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use tio_core::{Agency, Identity, IdentityError, Role};

/// The authenticated caller of one request, put in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The certificate's `urn:tio:` identity.
    pub(crate) identity: Identity,
    /// SHA-256 of the certificate (DER), lowercase hex.
    pub(crate) certificate_fingerprint: String,
    /// The professional acting, from `x-tio-professional` metadata, if given.
    pub(crate) professional_id: Option<String>,
}

/// Why a caller is refused. Messages name no person: only roles, ids and fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// No client certificate reached the server.
    #[error("no client certificate")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("client certificate cannot be parsed")]
    Unparseable,
    /// The certificate lacks the client-authentication extended key usage.
    #[error("client certificate lacks the client-authentication usage")]
    NoClientAuthUsage,
    /// No usable `urn:tio:` identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The identity is not registered.
    #[error("{role} `{id}` is not registered")]
    Unknown {
        /// The role claimed.
        role: &'static str,
        /// The id claimed.
        id: String,
    },
    /// The agency is suspended.
    #[error("agency `{0}` is suspended")]
    Suspended(String),
    /// The call needs the professional's id and has none.
    #[error("x-tio-professional metadata is required: name the professional acting")]
    NoProfessional,
    /// The certificate's fingerprint has been revoked.
    #[error("client certificate {0} has been revoked")]
    Revoked(String),
}

/// Who may connect: agencies with their permissions, admins, auditors, and revoked
/// certificate fingerprints. Shared by every connection.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    state: RwLock<RegistryState>,
}

#[derive(Debug, Default)]
struct RegistryState {
    agencies: HashMap<String, Agency>,
    admins: HashSet<String>,
    auditors: HashSet<String>,
    revoked: HashSet<String>,
}

impl Registry {
    /// Returns a registry holding exactly these entries.
    pub(crate) fn new(
        agencies: impl IntoIterator<Item = Agency>,
        admins: impl IntoIterator<Item = String>,
        auditors: impl IntoIterator<Item = String>,
        revoked_fingerprints: impl IntoIterator<Item = String>,
    ) -> Self {
        let state = RegistryState {
            agencies: agencies.into_iter().map(|agency| (agency.id.as_str().to_owned(), agency)).collect(),
            admins: admins.into_iter().collect(),
            auditors: auditors.into_iter().collect(),
            revoked: revoked_fingerprints.into_iter().collect(),
        };
        Registry { state: RwLock::new(state) }
    }

    /// Returns the agency registered under `id`.
    pub(crate) fn agency(&self, id: &str) -> Option<Agency> {
        self.read().agencies.get(id).cloned()
    }

    /// Returns the agencies of `sectors`, in id order.
    pub(crate) fn agencies_in(&self, sectors: &[tio_core::Sector]) -> Vec<Agency> {
        let mut found: Vec<Agency> =
            self.read().agencies.values().filter(|agency| sectors.contains(&agency.sector)).cloned().collect();
        found.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        found
    }

    /// Adds or replaces an agency; the next request sees the change.
    pub(crate) fn set_agency(&self, agency: Agency) {
        self.write().agencies.insert(agency.id.as_str().to_owned(), agency);
    }

    /// Takes every entry of `other` in place of this registry's, at once: the next
    /// request sees the registry as read afresh.
    pub(crate) fn replace(&self, other: Registry) {
        let state = other.state.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        *self.write() = state;
    }

    /// Refuses the certificate with `fingerprint` from the next request on.
    pub(crate) fn revoke(&self, fingerprint: String) {
        self.write().revoked.insert(fingerprint);
    }

    /// Checks that `identity`, presenting a certificate with `fingerprint`, may connect.
    pub(crate) fn admit(&self, identity: &Identity, fingerprint: &str) -> Result<(), AuthError> {
        let state = self.read();
        if state.revoked.contains(fingerprint) {
            return Err(AuthError::Revoked(fingerprint.to_owned()));
        }
        let unknown = || AuthError::Unknown { role: identity.role.as_str(), id: identity.id.clone() };
        match identity.role {
            Role::Agency => match state.agencies.get(&identity.id) {
                None => Err(unknown()),
                Some(agency) if agency.suspended => Err(AuthError::Suspended(identity.id.clone())),
                Some(_) => Ok(()),
            },
            Role::Admin if state.admins.contains(&identity.id) => Ok(()),
            Role::Auditor if state.auditors.contains(&identity.id) => Ok(()),
            Role::Admin | Role::Auditor => Err(unknown()),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RegistryState> {
        // As for `read`: every change is one insert or one whole replacement, so a
        // poisoned lock is consistent.
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RegistryState> {
        // A panic while holding the lock cannot leave the maps half-updated (each
        // change is one insert), so a poisoned lock is still consistent.
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A caller refused at authentication, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The identity the certificate claims, if it carries a usable one.
    pub(crate) identity: Option<Identity>,
    /// SHA-256 of the certificate, lowercase hex.
    pub(crate) certificate_fingerprint: String,
    /// Why, as a stable code.
    pub(crate) reason: &'static str,
}
