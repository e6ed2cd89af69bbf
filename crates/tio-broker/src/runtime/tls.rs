//! The server's TLS configuration: TLS 1.3 only, a client certificate required and
//! verified against the configured CA, ALPN h2.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use tio_store::secret_file::{SecretFileError, read_secret_file};

/// Why the TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file is missing or not PEM.
    #[error("cannot read certificates from {path}: {message}")]
    Certificates {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The private key file is unsafe or unreadable.
    #[error(transparent)]
    Key(#[from] SecretFileError),
    /// The private key file holds no usable key.
    #[error("cannot read a private key from {path}: {message}")]
    KeyFormat {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Rustls(String),
}

/// Installs the `ring` crypto provider as the process default, once.
///
/// Two rustls providers in one process make the server panic at start; this is the
/// one place that chooses. Call it first in `main` and in each TLS test binary.
pub fn install_crypto_provider() {
    // An error means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads every certificate in a PEM file.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |message: String| TlsError::Certificates { path: path.display().to_string(), message };
    let pem = std::fs::read(path).map_err(|err| fail(err.to_string()))?;
    let certs =
        CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|err| fail(err.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate found".to_owned()));
    }
    Ok(certs)
}

/// Reads a private key from a PEM file whose mode is 0600 or stricter.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_secret_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|err| TlsError::KeyFormat { path: path.display().to_string(), message: err.to_string() })
}

/// Builds the server's rustls configuration.
pub fn server_config(ca_file: &Path, cert_file: &Path, key_file: &Path) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(ca_file)? {
        roots.add(cert).map_err(|err| TlsError::Rustls(format!("CA certificate in {}: {err}", ca_file.display())))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|err| TlsError::Rustls(err.to_string()))?;
    let chain = read_certificates(cert_file)?;
    let key = read_private_key(key_file)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|err| TlsError::Rustls(err.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|err| TlsError::Rustls(err.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
