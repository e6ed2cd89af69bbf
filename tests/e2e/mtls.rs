//! Mutual TLS: who gets in, and how everyone else is refused.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::macros::datetime;
use tio_broker::pki::{CertificateAuthority, LeafSpec, Usage};
use tio_client::{Client, ConnectionSettings};
use tio_core::Identity;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{AGENCIES, Options, Sandbox};

/// What happened when a client tried to check health.
#[derive(Debug)]
enum Outcome {
    Serving,
    /// The handshake or transport failed: the connection was refused.
    TransportRefused(String),
    /// The server answered with a status.
    Status(Code, String),
}

async fn health_as(settings: &ConnectionSettings) -> Outcome {
    let client = match Client::connect(settings).await {
        Ok(client) => client,
        Err(err) => return Outcome::TransportRefused(err.to_string()),
    };
    match client.health("").await {
        Ok(ServingStatus::Serving) => Outcome::Serving,
        Ok(other) => panic!("unexpected health status {other:?}"),
        Err(tio_client::ClientError::Status(status)) if is_transport_failure(&status) => {
            Outcome::TransportRefused(status.message().to_owned())
        }
        Err(tio_client::ClientError::Status(status)) => Outcome::Status(status.code(), status.message().to_owned()),
        Err(err) => Outcome::TransportRefused(err.to_string()),
    }
}

/// A TLS alert or reset surfaces from the client's transport as UNAVAILABLE, UNKNOWN or
/// CANCELLED (depending on when the alert arrives), never as a status the server chose.
fn is_transport_failure(status: &tonic::Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled) && status.metadata().is_empty()
}

/// Asserts that the connection was refused in the handshake or transport.
fn assert_transport_refused(outcome: &Outcome) {
    match outcome {
        Outcome::TransportRefused(reason) => assert!(!reason.is_empty()),
        other => panic!("expected a refused connection, got {other:?}"),
    }
}

#[tokio::test]
async fn every_registered_identity_gets_serving_for_the_server_and_each_service() {
    let sandbox = Sandbox::start();
    for name in AGENCIES.iter().chain(&["admin", "auditor"]) {
        let outcome = health_as(&sandbox.settings(name)).await;
        assert!(matches!(outcome, Outcome::Serving), "{name}: {outcome:?}");
    }
    let client = sandbox.client("hospital").await;
    for service in tio_proto::SERVICE_NAMES {
        assert_eq!(client.health(service).await.unwrap(), ServingStatus::Serving, "{service}");
    }
}

/// Checks health over a hand-built endpoint, for clients `tio-client` would not build.
async fn health_over(
    endpoint: Endpoint,
) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, Box<dyn std::error::Error>> {
    let channel = endpoint.connect_timeout(Duration::from_secs(30)).timeout(Duration::from_secs(60)).connect().await?;
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    Ok(tonic_health::pb::health_client::HealthClient::new(channel).check(request).await?)
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let sandbox = Sandbox::start();
    let ca = std::fs::read(sandbox.pki.dir.join("ca.crt")).unwrap();
    let tls = ClientTlsConfig::new().domain_name("localhost").ca_certificate(Certificate::from_pem(ca));
    let endpoint = Endpoint::from_shared(format!("https://localhost:{}", sandbox.address.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    let err = health_over(endpoint).await.expect_err("a client without a certificate must not get an answer");
    assert!(!err.to_string().is_empty());
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let sandbox = Sandbox::start();
    let other = CertificateAuthority::generate("some other CA").unwrap();
    other.issue(&LeafSpec::client(&Identity::agency("hospital"))).unwrap().write(&sandbox.pki.dir, "impostor").unwrap();
    let outcome = health_as(&sandbox.settings("impostor")).await;
    assert_transport_refused(&outcome);
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let sandbox = Sandbox::start();
    let mut spec = LeafSpec::client(&Identity::agency("hospital"));
    spec.not_before = datetime!(2020-01-01 0:00 UTC);
    spec.not_after = datetime!(2021-01-01 0:00 UTC);
    sandbox.pki.issue("expired", &spec);
    let outcome = health_as(&sandbox.settings("expired")).await;
    assert_transport_refused(&outcome);
}

#[tokio::test]
async fn a_certificate_without_the_client_auth_usage_is_refused() {
    let sandbox = Sandbox::start();
    // Server-auth only: rustls refuses it in the handshake.
    let mut spec = LeafSpec::client(&Identity::agency("hospital"));
    spec.usages = vec![Usage::ServerAuth];
    sandbox.pki.issue("server-usage", &spec);
    let outcome = health_as(&sandbox.settings("server-usage")).await;
    assert_transport_refused(&outcome);

    // No extended key usage at all: rustls lets it through, the broker does not.
    spec.usages = Vec::new();
    sandbox.pki.issue("no-usage", &spec);
    let outcome = health_as(&sandbox.settings("no-usage")).await;
    assert!(
        matches!(&outcome, Outcome::Status(Code::Unauthenticated, message) if message.contains("client-authentication usage")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_certificate_without_a_tio_identity_is_unauthenticated() {
    let sandbox = Sandbox::start();
    let mut spec = LeafSpec::client(&Identity::agency("hospital"));
    spec.uris = vec!["https://trust.example.nhs.uk/systems/epr".into()];
    sandbox.pki.issue("anonymous", &spec);
    let outcome = health_as(&sandbox.settings("anonymous")).await;
    assert!(
        matches!(&outcome, Outcome::Status(Code::Unauthenticated, message) if message == "certificate has no urn:tio: identity"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn unknown_and_revoked_identities_are_unauthenticated_and_suspended_ones_denied() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("tio.toml");
    std::fs::write(
        &config,
        r#"
[[agencies]]
id = "hospital"
name = "Suspended Hospital"
sector = "health"
suspended = true

[[agencies]]
id = "gp"
name = "Active Practice"
sector = "health"

[[agencies]]
id = "school"
name = "Revoked School"
sector = "education"
"#,
    )
    .unwrap();
    let sandbox = Sandbox::start_with(Options {
        args: vec!["--config".into(), config.display().to_string()],
        revoke: vec!["school".into()],
        ..Options::default()
    });
    sandbox.pki.issue("police", &LeafSpec::client(&Identity::agency("police")));

    let expect_unauthenticated = |name: &'static str, fragment: &'static str| {
        let settings = sandbox.settings(name);
        async move {
            let outcome = health_as(&settings).await;
            assert!(
                matches!(&outcome, Outcome::Status(Code::Unauthenticated, message) if message.contains(fragment)),
                "{name}: {outcome:?}"
            );
        }
    };
    expect_unauthenticated("police", "agency `police` is not registered").await;
    let outcome = health_as(&sandbox.settings("hospital")).await;
    assert!(
        matches!(&outcome, Outcome::Status(Code::PermissionDenied, message) if message.contains("agency `hospital` is suspended")),
        "{outcome:?}"
    );
    expect_unauthenticated("school", "has been revoked").await;
    assert!(matches!(health_as(&sandbox.settings("gp")).await, Outcome::Serving));
}

#[tokio::test]
async fn a_tls_1_2_only_client_is_refused_in_the_handshake() {
    let sandbox = Sandbox::start();
    let read = |name: &str| std::fs::read(sandbox.pki.dir.join(name)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(&read("ca.crt")).unwrap()).unwrap();
    let chain = vec![CertificateDer::from_pem_slice(&read("hospital.crt")).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(&read("hospital.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(sandbox.address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("the handshake finishes promptly");
    let err = result.expect_err("TLS 1.2 must be refused");
    assert!(err.to_string().contains("ProtocolVersion"), "{err}");
}

#[tokio::test]
async fn a_plaintext_http2_client_is_refused() {
    let sandbox = Sandbox::start();
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{}", sandbox.address.port())).unwrap();
    let result = health_over(endpoint).await;
    assert!(result.is_err(), "plaintext must not get an answer: {result:?}");
}

#[tokio::test]
async fn authentication_comes_before_any_service_and_agency_calls_need_a_professional() {
    let sandbox = Sandbox::start();
    let list = || tio_proto::v1::ListSubscriptionsRequest::default();
    let client = sandbox.client("hospital").await;
    let status = client.subscriptions().list_subscriptions(list()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("x-tio-professional"), "{status:?}");

    // An unknown identity is refused before any service runs.
    sandbox.pki.issue("police", &LeafSpec::client(&Identity::agency("police")));
    let police = Client::connect(&sandbox.settings("police")).await.unwrap();
    let status = police.subscriptions().list_subscriptions(list()).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::Unauthenticated, "agency `police` is not registered"));
}

#[tokio::test]
async fn a_malformed_professional_id_is_an_invalid_argument_naming_the_metadata_key() {
    let sandbox = Sandbox::start();
    let mut settings = sandbox.settings("hospital");
    settings.professional = Some("two words".into());
    let client = Client::connect(&settings).await.unwrap();
    let err = client.health("").await.unwrap_err();
    let tio_client::ClientError::Status(status) = &err else { panic!("{err}") };
    assert_eq!(status.code(), Code::InvalidArgument);
    let described = tio_client::describe_status(status);
    assert!(described.contains("x-tio-professional: must be"), "{described}");
}
