//! Who is calling: the caller's identity from its verified client certificate, checked
//! against the registry on every request.
//!
//! rustls has already verified the chain to the configured CA, the validity period and
//! the client-authentication usage when present; this module adds what rustls cannot
//! know: the `urn:tio:` identity, that the usage is present at all, that the identity is
//! registered and not suspended, and that the certificate is not revoked.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use tio_core::{FieldViolation, Identity, limits};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::app::error::ServiceError;
use crate::app::registry::{AuthError, Caller, Refusal, Registry};
use crate::grpc::request::request_meta;
use crate::grpc::status::into_status;

/// The metadata key carrying the professional's id.
pub(crate) const PROFESSIONAL_METADATA_KEY: &str = "x-tio-professional";

/// Returns the `urn:tio:` identity of a certificate that rustls has verified, after
/// checking that it carries the client-authentication usage.
pub(crate) fn certificate_identity(cert: &CertificateDer<'_>) -> Result<Identity, AuthError> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|_| AuthError::Unparseable)?;
    let client_auth = parsed
        .extended_key_usage()
        .map_err(|_| AuthError::Unparseable)?
        .is_some_and(|eku| eku.value.client_auth || eku.value.any);
    if !client_auth {
        return Err(AuthError::NoClientAuthUsage);
    }
    let uris: Vec<&str> = match parsed.subject_alternative_name().map_err(|_| AuthError::Unparseable)? {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(Identity::from_uri_sans(uris)?)
}

/// How many certificates' identities [`Identities`] keeps.
const MAX_IDENTITIES: usize = 4096;

/// The identities of the certificates seen, by fingerprint, so that a request does not
/// parse its caller's certificate again: a profile of the transport with no work put a
/// tenth of the server's time in parsing X.509. What a certificate's bytes say never
/// changes, and a SHA-256 fingerprint names those bytes; revocation and the registry
/// are still checked on every request. Bounded: when full it starts again.
#[derive(Debug, Default)]
pub(crate) struct Identities {
    known: std::sync::Mutex<std::collections::HashMap<String, Result<Identity, AuthError>>>,
}

impl Identities {
    /// Returns the certificate's fingerprint and what its identity is (or why it has none).
    fn of(&self, leaf: &CertificateDer<'_>) -> (String, Result<Identity, AuthError>) {
        let fingerprint = fingerprint(leaf);
        // A panic cannot leave the map half-changed (one insert or clear at a time).
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(identity) = known.get(&fingerprint) {
            return (fingerprint, identity.clone());
        }
        let identity = certificate_identity(leaf);
        if known.len() >= MAX_IDENTITIES {
            known.clear();
        }
        known.insert(fingerprint.clone(), identity.clone());
        (fingerprint, identity)
    }
}

/// Returns the SHA-256 fingerprint of a certificate, lowercase hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// Authenticates one request: finds the peer certificate, checks it against the
/// registry and puts the [`Caller`] and its [`RequestMeta`] in the request's extensions. Every service,
/// including health and reflection, sits behind this.
pub(crate) fn authenticate(
    registry: &Registry,
    identities: &Identities,
    refusals: &tokio::sync::mpsc::Sender<Refusal>,
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    let caller = caller_of(registry, identities, &request).map_err(|err| {
        tracing::info!(reason = %err, "request refused at authentication");
        if let ServiceError::Unauthenticated(auth) = &err {
            report_refusal(refusals, &request, auth);
        }
        into_status(err)
    })?;
    let meta = request_meta(request.metadata()).map_err(into_status)?;
    request.extensions_mut().insert(caller);
    request.extensions_mut().insert(meta);
    Ok(request)
}

fn caller_of(
    registry: &Registry,
    identities: &Identities,
    request: &tonic::Request<()>,
) -> Result<Caller, ServiceError> {
    let certs = request.peer_certs().ok_or(AuthError::NoCertificate)?;
    let leaf = certs.first().ok_or(AuthError::NoCertificate)?;
    let (certificate_fingerprint, identity) = identities.of(leaf);
    let identity = identity?;
    registry.admit(&identity, &certificate_fingerprint)?;
    let professional_id = professional_id(request.metadata())?;
    Ok(Caller { identity, certificate_fingerprint, professional_id })
}

/// Reads `x-tio-professional`: printable ASCII, at most 128 bytes, if present.
fn professional_id(metadata: &tonic::metadata::MetadataMap) -> Result<Option<String>, ServiceError> {
    let Some(value) = metadata.get(PROFESSIONAL_METADATA_KEY) else {
        return Ok(None);
    };
    let violation =
        |reason: String| ServiceError::InvalidArgument(vec![FieldViolation::new(PROFESSIONAL_METADATA_KEY, reason)]);
    let text = value.to_str().map_err(|_| violation("must be printable ASCII".to_owned()))?;
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(violation("must be 1 or more printable ASCII characters without spaces".to_owned()));
    }
    limits::check_len(PROFESSIONAL_METADATA_KEY, text, limits::MAX_PROFESSIONAL_ID_BYTES)
        .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
    Ok(Some(text.to_owned()))
}

/// How many refusals may wait to be written to the audit log before more are dropped
/// (and counted); a flood of bad certificates must not exhaust memory.
pub(crate) const REFUSAL_QUEUE: usize = 4096;

/// Queues a refusal for the audit log without waiting. A full queue drops it with a
/// warning: the refusal itself still happens.
fn report_refusal(refusals: &tokio::sync::mpsc::Sender<Refusal>, request: &tonic::Request<()>, err: &AuthError) {
    let Some(leaf) = request.peer_certs().and_then(|certs| certs.first().cloned()) else { return };
    let refusal = Refusal {
        identity: certificate_identity(&leaf).ok(),
        certificate_fingerprint: fingerprint(&leaf),
        reason: err.code(),
    };
    if refusals.try_send(refusal).is_err() {
        tracing::warn!("authentication refusals are arriving faster than they can be audited; one was not recorded");
    }
}

impl AuthError {
    /// Returns the stable reason code written to the audit log.
    pub(crate) const fn code(&self) -> &'static str {
        match self {
            AuthError::NoCertificate => "no_certificate",
            AuthError::Unparseable => "certificate_unparseable",
            AuthError::NoClientAuthUsage => "no_client_auth_usage",
            AuthError::Identity(_) => "no_identity",
            AuthError::Unknown { .. } => "unknown_identity",
            AuthError::Suspended(_) => "agency_suspended",
            AuthError::NoProfessional => "no_professional",
            AuthError::Revoked(_) => "certificate_revoked",
        }
    }
}

/// Returns a cheaply cloneable interceptor closure over `registry`, queueing refusals on
/// `refusals` for the audit log.
pub(crate) fn interceptor(
    registry: Arc<Registry>,
    refusals: tokio::sync::mpsc::Sender<Refusal>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone + Send + Sync + 'static {
    let identities = Arc::new(Identities::default());
    move |request| authenticate(&registry, &identities, &refusals, request)
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject;
    use tio_core::{Agency, AgencyId, CategorySet, IdentityError, Role, Sector};

    use super::*;
    use crate::runtime::pki::{CertificateAuthority, LeafSpec, Usage};

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn registry() -> Registry {
        let agency = |id: &str, suspended| Agency {
            id: AgencyId::parse("id", id).unwrap(),
            name: id.to_owned(),
            sector: Sector::Health,
            may_publish: CategorySet::all(),
            may_read: CategorySet::all(),
            may_record_consent: true,
            may_declare_safeguarding: false,
            may_run_ehc_assessments: false,
            suspended,
        };
        Registry::new(
            [agency("gp", false), agency("closed", true)],
            ["ops".to_owned()],
            ["dpo".to_owned()],
            ["ab".repeat(32)],
        )
    }

    #[test]
    fn admits_registered_identities_only() {
        let registry = registry();
        let fp = "00".repeat(32);
        assert_eq!(registry.admit(&Identity::agency("gp"), &fp), Ok(()));
        assert_eq!(registry.admit(&Identity { role: Role::Admin, id: "ops".into() }, &fp), Ok(()));
        assert_eq!(registry.admit(&Identity { role: Role::Auditor, id: "dpo".into() }, &fp), Ok(()));
        assert!(matches!(registry.admit(&Identity::agency("nobody"), &fp), Err(AuthError::Unknown { .. })));
        assert!(matches!(
            registry.admit(&Identity { role: Role::Admin, id: "dpo".into() }, &fp),
            Err(AuthError::Unknown { .. })
        ));
        assert_eq!(registry.admit(&Identity::agency("closed"), &fp), Err(AuthError::Suspended("closed".into())));
        assert_eq!(registry.admit(&Identity::agency("gp"), &"ab".repeat(32)), Err(AuthError::Revoked("ab".repeat(32))));
    }

    #[test]
    fn certificate_identity_needs_client_auth_usage_and_one_urn() {
        let ca = CertificateAuthority::generate("test CA").unwrap();
        let mut spec = LeafSpec::client(&Identity::agency("gp"));
        assert_eq!(certificate_identity(&der(&ca.issue(&spec).unwrap().cert_pem)), Ok(Identity::agency("gp")));

        spec.usages = vec![Usage::ServerAuth];
        assert_eq!(certificate_identity(&der(&ca.issue(&spec).unwrap().cert_pem)), Err(AuthError::NoClientAuthUsage));
        spec.usages = Vec::new();
        assert_eq!(certificate_identity(&der(&ca.issue(&spec).unwrap().cert_pem)), Err(AuthError::NoClientAuthUsage));

        spec.usages = vec![Usage::ClientAuth];
        spec.uris = vec!["https://example.org/agency".into()];
        assert_eq!(
            certificate_identity(&der(&ca.issue(&spec).unwrap().cert_pem)),
            Err(AuthError::Identity(IdentityError::Missing))
        );
    }

    #[test]
    fn fingerprints_are_sha256_hex() {
        let fp = fingerprint(&CertificateDer::from(b"abc".to_vec()));
        assert_eq!(fp, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn professional_id_is_validated() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(professional_id(&metadata).unwrap(), None);
        metadata.insert(PROFESSIONAL_METADATA_KEY, "staff-0042".parse().unwrap());
        assert_eq!(professional_id(&metadata).unwrap(), Some("staff-0042".into()));
        metadata.insert(PROFESSIONAL_METADATA_KEY, "has space".parse().unwrap());
        assert!(
            matches!(professional_id(&metadata), Err(ServiceError::InvalidArgument(v)) if v[0].field == PROFESSIONAL_METADATA_KEY)
        );
        metadata.insert(PROFESSIONAL_METADATA_KEY, "x".repeat(129).parse().unwrap());
        assert!(professional_id(&metadata).is_err());
    }

    #[test]
    fn a_certificate_is_parsed_once_and_answers_the_same_every_time() {
        let ca = CertificateAuthority::generate("test CA").unwrap();
        let client = ca.issue(&LeafSpec::client(&Identity::agency("school"))).unwrap();
        let mut spec = LeafSpec::client(&Identity::agency("gp"));
        spec.usages = vec![Usage::ServerAuth];
        let server_only = ca.issue(&spec).unwrap();
        let identities = Identities::default();
        for _ in 0..3 {
            let (fingerprint, identity) = identities.of(&der(&client.cert_pem));
            assert_eq!(fingerprint, super::fingerprint(&der(&client.cert_pem)));
            assert_eq!(identity, Ok(Identity::agency("school")));
            assert_eq!(identities.of(&der(&server_only.cert_pem)).1, Err(AuthError::NoClientAuthUsage));
        }
        assert_eq!(identities.known.lock().unwrap().len(), 2, "each certificate is parsed once");
    }
}
