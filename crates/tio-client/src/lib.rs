//! A Rust client for the Tell It Once broker.
//!
//! [`ConnectionSettings`] holds what every client needs (the server URL, the CA, the
//! agency's certificate and key, and the professional acting), the same settings the
//! `tio` command line takes as flags. [`Client::connect`] opens one mutual-TLS channel
//! that every typed call shares; [`Subscriber`] keeps a delivery stream open across
//! failures. `examples/subscribe.rs` shows an agency system receiving updates.
//!
//! It depends on the generated API only, never on the broker's internals.

#![warn(missing_docs)]

mod clocks;
mod subscriber;

use std::path::{Path, PathBuf};

use tio_proto::v1;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub use clocks::{describe_clocks, describe_milestones};
pub use subscriber::{DeliveryKind, Subscriber, describe_amendment};

/// The metadata key that carries the professional's id on every call.
pub const PROFESSIONAL_METADATA_KEY: &str = "x-tio-professional";

/// The default server URL.
pub const DEFAULT_SERVER: &str = "https://localhost:7443";

/// How to reach and authenticate to a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// `https://HOST:PORT`.
    pub server: String,
    /// PEM file of the CA that signed the server's certificate.
    pub ca: PathBuf,
    /// PEM file of this client's certificate.
    pub cert: PathBuf,
    /// PEM file of this client's private key.
    pub key: PathBuf,
    /// The professional acting, sent as `x-tio-professional`.
    pub professional: Option<String>,
}

impl ConnectionSettings {
    /// Returns settings for the certificate `NAME` of a development PKI directory:
    /// `DIR/ca.crt`, `DIR/NAME.crt`, `DIR/NAME.key`.
    pub fn from_dev_pki(server: impl Into<String>, dir: &Path, name: &str) -> Self {
        ConnectionSettings {
            server: server.into(),
            ca: dir.join("ca.crt"),
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            professional: None,
        }
    }
}

/// Why a connection or call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server URL is not `https://HOST:PORT`.
    #[error("invalid server URL `{0}`: expected https://HOST:PORT")]
    ServerUrl(String),
    /// The professional id cannot be sent as metadata.
    #[error("invalid professional id: must be printable ASCII")]
    ProfessionalId,
    /// The connection could not be made (TLS, DNS, refused).
    #[error("cannot connect to {server}: {}{}", chain_text(source), tls_hint(source).unwrap_or_default())]
    Connect {
        /// The server URL.
        server: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The server answered with an error status.
    #[error("{}", describe_status(.0))]
    Status(#[from] tonic::Status),
}

/// Renders a status once, plainly: `CODE: message` with the code's canonical gRPC
/// name, then one line per field at fault from the `google.rpc.BadRequest` details the
/// broker attaches.
pub fn describe_status(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let mut text = format!("{}: {}", code_name(status.code()), status.message());
    text.push_str(&tls_hint(status).unwrap_or_default());
    if let Some(bad_request) = status.get_details_bad_request() {
        for violation in &bad_request.field_violations {
            // The message already names a single violation.
            if bad_request.field_violations.len() == 1 && status.message().contains(&violation.description) {
                break;
            }
            text.push_str(&format!("\n  field {}: {}", violation.field, violation.description));
        }
    }
    text
}

/// Returns an error and its causes on one line, each said once.
fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

/// Says which side's certificate a failed TLS handshake refused, and what to check,
/// when `error` (or what caused it) is such a failure; rustls's own words
/// (`invalid peer certificate: BadSignature`) name neither.
fn tls_hint(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut chain = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        chain.push_str(&cause.to_string());
        chain.push('\n');
        next = cause.source();
    }
    if chain.contains("invalid peer certificate") {
        return Some(
            "\n  the broker's certificate was refused by this client: it is not signed by the CA given with --ca \
             (or has expired, or is not for this host name); check that --ca names the CA that issued the broker's \
             certificate"
                .to_owned(),
        );
    }
    let refused_by_peer = chain.contains("received fatal alert")
        || (chain.contains("transport error") && !chain.contains("Connection refused") && !chain.contains("dns"));
    refused_by_peer.then(|| {
        "\n  the TLS connection failed after it was opened: the broker most likely refused this client's \
         certificate; check that --cert and --key were issued by the CA the broker trusts (its tls.ca_file), \
         have not expired and are not revoked"
            .to_owned()
    })
}

/// Returns a status code's canonical name, as gRPC documents it (`PERMISSION_DENIED`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A connection to a broker, shared by every typed call.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    professional: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Client {
    /// Connects over mutual TLS.
    pub async fn connect(settings: &ConnectionSettings) -> Result<Client, ClientError> {
        let read =
            |path: &Path| std::fs::read(path).map_err(|source| ClientError::ReadFile { path: path.to_owned(), source });
        let host = host_of(&settings.server).ok_or_else(|| ClientError::ServerUrl(settings.server.clone()))?;
        let tls = ClientTlsConfig::new()
            .domain_name(host)
            .ca_certificate(Certificate::from_pem(read(&settings.ca)?))
            .identity(Identity::from_pem(read(&settings.cert)?, read(&settings.key)?));
        let connect_error = |source| ClientError::Connect { server: settings.server.clone(), source };
        let endpoint = Endpoint::from_shared(settings.server.clone())
            .map_err(|_| ClientError::ServerUrl(settings.server.clone()))?
            .tls_config(tls)
            .map_err(connect_error)?
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(connect_error)?;
        let professional = match &settings.professional {
            Some(id) => Some(id.parse().map_err(|_| ClientError::ProfessionalId)?),
            None => None,
        };
        Ok(Client { channel, professional })
    }

    /// The same connection, naming `professional` on every call (a console's signed-in
    /// person, say); it shares the channel, so it costs no new connection.
    pub fn with_professional(&self, professional: &str) -> Result<Client, ClientError> {
        let professional = professional.parse().map_err(|_| ClientError::ProfessionalId)?;
        Ok(Client { channel: self.channel.clone(), professional: Some(professional) })
    }

    /// Returns the underlying channel, for calls this crate has no wrapper for yet.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Wraps a message in a request carrying the professional's id.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(professional) = &self.professional {
            request.metadata_mut().insert(PROFESSIONAL_METADATA_KEY, professional.clone());
        }
        request
    }

    /// Asks the standard health service for `service` (`""` for the whole server).
    pub async fn health(&self, service: &str) -> Result<ServingStatus, ClientError> {
        let request = self.request(tonic_health::pb::HealthCheckRequest { service: service.to_owned() });
        let response = HealthClient::new(self.channel()).check(request).await?;
        Ok(response.into_inner().status())
    }

    /// Returns a client for `tio.v1.AdminService` (admin certificates only).
    pub fn admin(&self) -> v1::admin_service_client::AdminServiceClient<Channel> {
        v1::admin_service_client::AdminServiceClient::new(self.channel())
    }

    /// Returns a client for `tio.v1.AuditService` (admin and auditor certificates only).
    pub fn audit(&self) -> v1::audit_service_client::AuditServiceClient<Channel> {
        v1::audit_service_client::AuditServiceClient::new(self.channel())
    }

    /// Returns a client for `tio.v1.AlertService` (an agency's own alerts; every alert
    /// for admins and auditors).
    pub fn alerts(&self) -> v1::alert_service_client::AlertServiceClient<Channel> {
        v1::alert_service_client::AlertServiceClient::new(self.channel())
    }

    /// Returns a client for `tio.v1.EhcAssessmentService` (the SEND team, and the
    /// agencies asked for advice or involved with the child).
    pub fn ehc(&self) -> v1::ehc_assessment_service_client::EhcAssessmentServiceClient<Channel> {
        v1::ehc_assessment_service_client::EhcAssessmentServiceClient::new(self.channel())
    }

    /// Returns a client for `tio.v1.TransitionService` (the SEND team, milestone owners,
    /// and the agencies the record may be shown to).
    pub fn transitions(&self) -> v1::transition_service_client::TransitionServiceClient<Channel> {
        v1::transition_service_client::TransitionServiceClient::new(self.channel())
    }

    /// Returns a client for `tio.v1.ReportingService` (admins, auditors and SEND teams).
    pub fn reporting(&self) -> v1::reporting_service_client::ReportingServiceClient<Channel> {
        v1::reporting_service_client::ReportingServiceClient::new(self.channel())
    }

    /// Returns a client for `tio.v1.SafeguardingService` (agencies permitted to declare
    /// safeguarding shares).
    pub fn safeguarding(&self) -> v1::safeguarding_service_client::SafeguardingServiceClient<Channel> {
        v1::safeguarding_service_client::SafeguardingServiceClient::new(self.channel())
    }

    /// Returns a client for `tio.v1.RecordService`.
    pub fn records(&self) -> v1::record_service_client::RecordServiceClient<Channel> {
        v1::record_service_client::RecordServiceClient::new(self.channel())
    }

    /// Returns a client for `tio.v1.SubscriptionService`.
    pub fn subscriptions(&self) -> v1::subscription_service_client::SubscriptionServiceClient<Channel> {
        v1::subscription_service_client::SubscriptionServiceClient::new(self.channel())
    }

    /// Returns a client for `tio.v1.ConsentService`.
    pub fn consents(&self) -> v1::consent_service_client::ConsentServiceClient<Channel> {
        v1::consent_service_client::ConsentServiceClient::new(self.channel())
    }

    /// Returns a client for `tio.v1.CareRelationshipService`.
    pub fn relationships(&self) -> v1::care_relationship_service_client::CareRelationshipServiceClient<Channel> {
        v1::care_relationship_service_client::CareRelationshipServiceClient::new(self.channel())
    }
}

/// Returns the host of `https://HOST:PORT` (IPv6 literals without brackets).
fn host_of(server: &str) -> Option<String> {
    let rest = server.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(host, _port)| host)
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_taken_from_https_urls_only() {
        assert_eq!(host_of("https://localhost:7443"), Some("localhost".into()));
        assert_eq!(host_of("https://127.0.0.1:7443/"), Some("127.0.0.1".into()));
        assert_eq!(host_of("https://[::1]:7443"), Some("::1".into()));
        assert_eq!(host_of("https://broker.example.nhs.uk"), Some("broker.example.nhs.uk".into()));
        assert_eq!(host_of("http://localhost:7443"), None);
        assert_eq!(host_of("https://:7443"), None);
    }

    #[test]
    fn dev_pki_settings_name_the_three_files() {
        let settings = ConnectionSettings::from_dev_pki("https://localhost:1", Path::new("pki"), "gp");
        assert_eq!(settings.ca, Path::new("pki/ca.crt"));
        assert_eq!(settings.cert, Path::new("pki/gp.crt"));
        assert_eq!(settings.key, Path::new("pki/gp.key"));
    }

    #[test]
    fn status_descriptions_list_the_fields_at_fault() {
        use tonic_types::{ErrorDetails, StatusExt};
        let details = ErrorDetails::with_bad_request_violation("child.nhs_number", "fails the check digit");
        let status = tonic::Status::with_error_details(tonic::Code::InvalidArgument, "invalid request", details);
        assert_eq!(
            describe_status(&status),
            "INVALID_ARGUMENT: invalid request\n  field child.nhs_number: fails the check digit"
        );
        // One violation the message already states is not said twice.
        let details = ErrorDetails::with_bad_request_violation("child.nhs_number", "fails the check digit");
        let message = "invalid request: child.nhs_number: fails the check digit";
        let status = tonic::Status::with_error_details(tonic::Code::InvalidArgument, message, details);
        assert_eq!(describe_status(&status), format!("INVALID_ARGUMENT: {message}"));
    }

    #[tokio::test]
    async fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ConnectionSettings::from_dev_pki("https://localhost:1", dir.path(), "gp");
        let err = Client::connect(&settings).await.unwrap_err();
        assert!(matches!(&err, ClientError::ReadFile { path, .. } if path.ends_with("ca.crt")), "{err}");
    }
}
