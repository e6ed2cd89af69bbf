//! HTTPS for a console reached over the network: the console's own certificate and key
//! (PEM), TLS 1.2 and 1.3 as browsers speak them, HTTP/1.1. Required for any address
//! that is not loopback, so that sign-in links and session cookies never cross a
//! network in clear.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::{ConsoleError, TlsFiles};

/// How long a client has to finish the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The acceptor for the console's certificate and key.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ConsoleError> {
    let fail =
        |path: &std::path::Path, err: &dyn std::fmt::Display| ConsoleError::Tls(format!("{}: {err}", path.display()));
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|err| fail(&files.cert, &err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| fail(&files.cert, &err))?;
    if certs.is_empty() {
        return Err(fail(&files.cert, &"no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|err| fail(&files.key, &err))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ConsoleError::Tls(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| ConsoleError::Tls(format!("the certificate and key do not make a TLS identity: {err}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` over TLS until `shutdown` completes. Each connection runs on its own
/// task; a failed handshake closes only that connection.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ConsoleError> {
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: the listener itself is fine.
                Err(err) => {
                    tracing::warn!(error = %err, "the console could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let (acceptor, service) = (acceptor.clone(), service.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "a TLS handshake with the console failed");
                    return;
                }
                Err(_) => return,
            };
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(err) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!(%peer, error = %err, "a console connection ended with an error");
            }
        });
    }
}
