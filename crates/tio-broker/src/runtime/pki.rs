//! Certificates for development and tests: a throwaway CA and leaf certificates
//! carrying `urn:tio:` identities. Production certificates come from the
//! deployment's own CA; nothing here is used outside `--dev`, `tio dev-pki` and tests.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use tio_core::{Identity, Role};
use tio_store::secret_file::SecretFileError;

use crate::runtime::dev::DEV_AGENCIES;

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A certificate authority that lives only in memory.
pub struct CertificateAuthority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// The extended key usages a leaf certificate may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// id-kp-clientAuth.
    ClientAuth,
    /// id-kp-serverAuth.
    ServerAuth,
}

/// What to put in a leaf certificate.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// The subject common name.
    pub common_name: String,
    /// URI SANs (a `urn:tio:` identity for clients).
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP address SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// Extended key usages.
    pub usages: Vec<Usage>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// Returns a client certificate spec for `identity`, valid for a year from an hour ago.
    pub fn client(identity: &Identity) -> Self {
        let now = OffsetDateTime::now_utc();
        LeafSpec {
            common_name: identity.id.clone(),
            uris: vec![identity.to_uri()],
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            usages: vec![Usage::ClientAuth],
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(365),
        }
    }

    /// Returns the development server's certificate spec: `localhost`, `127.0.0.1`, `::1`.
    pub fn loopback_server() -> Self {
        let now = OffsetDateTime::now_utc();
        LeafSpec {
            common_name: "localhost".to_owned(),
            uris: Vec::new(),
            dns_names: vec!["localhost".to_owned()],
            ip_addresses: vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)],
            usages: vec![Usage::ServerAuth],
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(365),
        }
    }
}

/// A leaf certificate and its private key, PEM encoded.
pub struct IssuedCertificate {
    /// The certificate.
    pub cert_pem: String,
    /// The private key. Written with mode 0600, never logged.
    pub key_pem: String,
}

impl IssuedCertificate {
    /// Writes `DIR/NAME.crt` (mode 0644) and `DIR/NAME.key` (mode 0600).
    pub fn write(&self, dir: &Path, name: &str) -> Result<(), PkiError> {
        write_file(&dir.join(format!("{name}.crt")), self.cert_pem.as_bytes(), 0o644)?;
        write_file(&dir.join(format!("{name}.key")), self.key_pem.as_bytes(), 0o600)
    }
}

impl CertificateAuthority {
    /// Generates a new CA with an ECDSA P-256 key, valid for ten years.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        Ok(CertificateAuthority { issuer: CertifiedIssuer::self_signed(params, key)? })
    }

    /// Returns the CA certificate, PEM encoded.
    pub fn certificate_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a leaf certificate with a fresh ECDSA P-256 key.
    pub fn issue(&self, spec: &LeafSpec) -> Result<IssuedCertificate, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&spec.common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = spec
            .usages
            .iter()
            .map(|usage| match usage {
                Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
                Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            })
            .collect();
        let mut sans = Vec::new();
        for uri in &spec.uris {
            sans.push(SanType::URI(uri.as_str().try_into()?));
        }
        for name in &spec.dns_names {
            sans.push(SanType::DnsName(name.as_str().try_into()?));
        }
        sans.extend(spec.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        params.subject_alt_names = sans;
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCertificate { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Tell It Once (development)");
    name.push(DnType::CommonName, common_name);
    name
}

/// The file names `tio dev-pki` writes, without extension, beside `ca.crt`.
pub fn dev_pki_names() -> Vec<String> {
    let mut names = vec!["server".to_owned(), "admin".to_owned(), "auditor".to_owned()];
    names.extend(DEV_AGENCIES.iter().map(|agency| agency.id.to_owned()));
    names
}

/// Writes a throwaway development PKI into `dir`: `ca.crt`, `server.crt`/`.key`
/// (SANs `localhost`, `127.0.0.1`, `::1`), `admin`, `auditor` and one pair per
/// development agency. Keys are written with mode 0600. Refuses to overwrite.
pub fn write_dev_pki(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write { path: dir.to_owned(), source })?;
    let ca = CertificateAuthority::generate("Tell It Once development CA")?;
    ca.issue(&LeafSpec::loopback_server())?.write(dir, "server")?;
    ca.issue(&LeafSpec::client(&Identity { role: Role::Admin, id: "admin".to_owned() }))?.write(dir, "admin")?;
    ca.issue(&LeafSpec::client(&Identity { role: Role::Auditor, id: "auditor".to_owned() }))?.write(dir, "auditor")?;
    for agency in DEV_AGENCIES {
        ca.issue(&LeafSpec::client(&Identity::agency(agency.id)))?.write(dir, agency.id)?;
    }
    // The CA goes last: its presence marks a complete set.
    write_file(&dir.join("ca.crt"), ca.certificate_pem().as_bytes(), 0o644)
}

/// Writes a new file with `mode`, refusing to replace an existing one.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    tio_store::secret_file::write_new_file(path, contents, mode).map_err(|err| match err {
        SecretFileError::Write { path, source } | SecretFileError::Read { path, source } => {
            PkiError::Write { path, source }
        }
        SecretFileError::TooOpen { path, .. } => {
            PkiError::Write { path, source: std::io::Error::other("unexpected permission check") }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn dev_pki_writes_every_file_with_safe_modes_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        write_dev_pki(dir.path()).unwrap();
        assert!(dir.path().join("ca.crt").exists());
        for name in dev_pki_names() {
            let cert = std::fs::read_to_string(dir.path().join(format!("{name}.crt"))).unwrap();
            assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{name}");
            let key_mode =
                std::fs::metadata(dir.path().join(format!("{name}.key"))).unwrap().permissions().mode() & 0o777;
            assert_eq!(key_mode, 0o600, "{name}.key");
        }
        assert!(matches!(write_dev_pki(dir.path()), Err(PkiError::Write { .. })));
    }

    #[test]
    fn client_certificates_carry_their_identity() {
        let ca = CertificateAuthority::generate("test CA").unwrap();
        let issued = ca.issue(&LeafSpec::client(&Identity::agency("gp"))).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let identity = crate::grpc::auth::certificate_identity(&der).unwrap();
        assert_eq!(identity, Identity::agency("gp"));
    }

    use rustls_pki_types::pem::PemObject;
}
