//! Who is calling: the identity carried by a client certificate's URI SAN.

use std::fmt;

use crate::agency::is_valid_name;

/// The role a certificate identity holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// An agency system: publishes, reads, subscribes, records consent.
    Agency,
    /// An administrator: registers agencies, revokes certificates.
    Admin,
    /// An auditor or Data Protection Officer: reads and verifies the audit log.
    Auditor,
}

impl Role {
    /// Returns the role's name as it appears in the URN.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Agency => "agency",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

/// The broker's API surfaces, for deciding which role may call which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Publishing and reading records.
    Records,
    /// Recording, withdrawing and reading consent.
    Consent,
    /// Declaring and ending care relationships.
    CareRelationships,
    /// Subscriptions and their delivery streams.
    Subscriptions,
    /// The audit log: queries, exports, proofs, subject-access reports.
    Audit,
    /// The registry: agencies and certificates.
    Admin,
    /// Alerts: an agency's own, or every alert for admins and auditors.
    Alerts,
    /// Safeguarding shares: declared, renewed, ended and listed by agencies permitted.
    Safeguarding,
    /// The SEND journey: EHC needs assessments and transitions to adult services, run by
    /// the SEND team, answered and read by the agencies asked, owning or involved.
    EhcAssessments,
    /// The partnership's SEND measures: counts only, for admins, auditors and SEND teams.
    Reporting,
}

/// The reason code audited when a role calls a service it may not use.
pub const ROLE_NOT_PERMITTED: &str = "role_not_permitted";

impl Role {
    /// Whether this role may call `service` at all. Agencies handle children's records
    /// and never read the audit log; admins run the registry and may read the log;
    /// auditors only read the log; every role reads alerts (an agency only those
    /// addressed to it). Default deny: anything not named is refused.
    pub const fn may_call(self, service: Service) -> bool {
        matches!(
            (self, service),
            (
                Role::Agency,
                Service::Records
                    | Service::Consent
                    | Service::CareRelationships
                    | Service::Subscriptions
                    | Service::Alerts
                    | Service::Safeguarding
                    | Service::EhcAssessments
                    | Service::Reporting
            ) | (Role::Admin, Service::Admin | Service::Audit | Service::Alerts | Service::Reporting)
                | (Role::Auditor, Service::Audit | Service::Alerts | Service::Reporting)
        )
    }
}

/// A caller's identity: `urn:tio:<role>:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The role.
    pub role: Role,
    /// The agency, admin or auditor name (same rules as an agency id).
    pub id: String,
}

/// Why a certificate carries no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No URI SAN starting `urn:tio:`.
    #[error("certificate has no urn:tio: identity")]
    Missing,
    /// More than one `urn:tio:` URI SAN: ambiguous, so refused.
    #[error("certificate has more than one urn:tio: identity")]
    Ambiguous,
    /// A `urn:tio:` URI that is not `urn:tio:<agency|admin|auditor>:<id>`.
    #[error("certificate identity is not urn:tio:<agency|admin|auditor>:<id>")]
    Malformed,
}

/// The prefix every identity URI starts with.
pub const URN_PREFIX: &str = "urn:tio:";

impl Identity {
    /// Returns the identity of an agency.
    pub fn agency(id: &str) -> Identity {
        Identity { role: Role::Agency, id: id.to_owned() }
    }

    /// Parses one `urn:tio:` URI.
    pub fn parse_uri(uri: &str) -> Result<Identity, IdentityError> {
        let rest = uri.strip_prefix(URN_PREFIX).ok_or(IdentityError::Missing)?;
        let (role, id) = rest.split_once(':').ok_or(IdentityError::Malformed)?;
        let role = match role {
            "agency" => Role::Agency,
            "admin" => Role::Admin,
            "auditor" => Role::Auditor,
            _ => return Err(IdentityError::Malformed),
        };
        if !is_valid_name(id) {
            return Err(IdentityError::Malformed);
        }
        Ok(Identity { role, id: id.to_owned() })
    }

    /// Picks the one `urn:tio:` identity among a certificate's URI SANs; other URIs are
    /// ignored, so an agency may carry its own URIs beside ours.
    pub fn from_uri_sans<'a>(uris: impl IntoIterator<Item = &'a str>) -> Result<Identity, IdentityError> {
        let mut found = None;
        for uri in uris.into_iter().filter(|uri| uri.starts_with(URN_PREFIX)) {
            if found.is_some() {
                return Err(IdentityError::Ambiguous);
            }
            found = Some(Identity::parse_uri(uri)?);
        }
        found.ok_or(IdentityError::Missing)
    }

    /// Returns the URI form, `urn:tio:<role>:<id>`.
    pub fn to_uri(&self) -> String {
        format!("{URN_PREFIX}{}:{}", self.role.as_str(), self.id)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_role() {
        for (uri, role, id) in [
            ("urn:tio:agency:hospital", Role::Agency, "hospital"),
            ("urn:tio:admin:ops-1", Role::Admin, "ops-1"),
            ("urn:tio:auditor:dpo", Role::Auditor, "dpo"),
        ] {
            let identity = Identity::parse_uri(uri).unwrap();
            assert_eq!((identity.role, identity.id.as_str()), (role, id));
            assert_eq!(identity.to_uri(), uri);
        }
    }

    #[test]
    fn refuses_malformed_and_missing() {
        for uri in
            ["urn:tio:agency:", "urn:tio:agency", "urn:tio:root:x", "urn:tio:agency:Hospital", "urn:tio:agency:a:b"]
        {
            assert_eq!(Identity::parse_uri(uri), Err(IdentityError::Malformed), "{uri}");
        }
        assert_eq!(Identity::from_uri_sans(["https://example.org/x"]), Err(IdentityError::Missing));
        assert_eq!(Identity::from_uri_sans(std::iter::empty()), Err(IdentityError::Missing));
    }

    #[test]
    fn picks_the_one_tio_uri_and_refuses_two() {
        let identity = Identity::from_uri_sans(["https://example.org/x", "urn:tio:agency:gp"]).unwrap();
        assert_eq!(identity, Identity::agency("gp"));
        assert_eq!(Identity::from_uri_sans(["urn:tio:agency:gp", "urn:tio:admin:gp"]), Err(IdentityError::Ambiguous));
    }

    #[test]
    fn only_admins_and_auditors_read_the_audit_log_and_only_agencies_handle_records() {
        let services = [
            Service::Records,
            Service::Consent,
            Service::CareRelationships,
            Service::Subscriptions,
            Service::Audit,
            Service::Admin,
            Service::Alerts,
            Service::Safeguarding,
            Service::EhcAssessments,
            Service::Reporting,
        ];
        let allowed = |role: Role| services.iter().copied().filter(|s| role.may_call(*s)).collect::<Vec<_>>();
        assert_eq!(
            allowed(Role::Agency),
            [
                Service::Records,
                Service::Consent,
                Service::CareRelationships,
                Service::Subscriptions,
                Service::Alerts,
                Service::Safeguarding,
                Service::EhcAssessments,
                Service::Reporting
            ]
        );
        assert_eq!(allowed(Role::Admin), [Service::Audit, Service::Admin, Service::Alerts, Service::Reporting]);
        assert_eq!(allowed(Role::Auditor), [Service::Audit, Service::Alerts, Service::Reporting]);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(uri in "\\PC{0,40}") {
            let _ = Identity::parse_uri(&uri);
            let _ = Identity::parse_uri(&format!("urn:tio:{uri}"));
        }
    }
}
