//! Serving: TLS termination, the service stack, health, reflection and draining.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tio_proto::v1;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::app::broker::Broker;
use crate::grpc::auth;
use crate::grpc::services;
use crate::runtime::config::{Config, ConfigError};
use crate::runtime::pki::PkiError;
use crate::runtime::tls::{self, TlsError};
use crate::runtime::{dev, pki, telemetry};

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS material is missing, unsafe or invalid.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Development certificates could not be made.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Reflection could not be built from the descriptor set.
    #[error("cannot build reflection service: {0}")]
    Reflection(String),
    /// The transport failed.
    #[error("server transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The store could not be opened.
    #[error(transparent)]
    Storage(#[from] crate::runtime::storage::StorageSetupError),
    /// The registry could not be seeded or loaded from the store.
    #[error("cannot load the agency registry: {0}")]
    Registry(String),
    /// The serving task panicked.
    #[error("server task failed: {0}")]
    Task(String),
}

/// Fills in development mode's defaults: creates `data_dir/dev-pki` when absent, points
/// TLS at it, and registers the development agencies, admin and auditor unless the
/// configuration names its own. Does nothing outside development mode.
pub(crate) fn prepare_dev(config: &mut Config) -> Result<(), ServeError> {
    if !config.dev {
        return Ok(());
    }
    let dir = config.dev_pki_dir();
    let tls_given = config.tls.ca_file.is_some() && config.tls.cert_file.is_some() && config.tls.key_file.is_some();
    if !tls_given && !dir.join("ca.crt").exists() {
        tracing::info!(dir = %dir.display(), "generating development certificates");
        pki::write_dev_pki(&dir)?;
    }
    config.tls.ca_file.get_or_insert_with(|| dir.join("ca.crt"));
    config.tls.cert_file.get_or_insert_with(|| dir.join("server.crt"));
    config.tls.key_file.get_or_insert_with(|| dir.join("server.key"));
    if config.agencies.is_empty() {
        config.agencies = dev::dev_agency_configs();
    }
    if config.admins.is_empty() {
        config.admins.push(dev::DEV_ADMIN.to_owned());
    }
    if config.auditors.is_empty() {
        config.auditors.push(dev::DEV_AUDITOR.to_owned());
    }
    Ok(())
}

/// Checks what can be checked before binding: TLS material readable and safe, agencies
/// valid. `tio serve` calls it so that a bad key file stops start-up with its message.
pub(crate) fn check(config: &Config) -> Result<(), ServeError> {
    tls_config(config)?;
    config.agencies()?;
    Ok(())
}

fn tls_config(config: &Config) -> Result<rustls::ServerConfig, ServeError> {
    let missing = |key: &str| ConfigError::Key {
        key: key.to_owned(),
        source_layer: "the configuration".to_owned(),
        message: "is required".to_owned(),
    };
    let ca = config.tls.ca_file.as_ref().ok_or_else(|| missing("tls.ca_file"))?;
    let cert = config.tls.cert_file.as_ref().ok_or_else(|| missing("tls.cert_file"))?;
    let key = config.tls.key_file.as_ref().ok_or_else(|| missing("tls.key_file"))?;
    Ok(tls::server_config(ca, cert, key)?)
}

/// The largest header block a request may carry. Far above any real request's (the
/// professional id is at most 128 bytes), so that an oversized header reaches the
/// interceptor and is refused with INVALID_ARGUMENT on its own call; HTTP/2's default
/// (16 KiB) answered 431, and a block past it by a few times closed the whole
/// connection with the caller's other streams. A block larger than this still closes
/// the connection: that is HTTP/2's own defence against header floods.
pub(crate) const MAX_HEADER_LIST_BYTES: u32 = 256 * 1024;

/// Serves every service on `listener` over mutual TLS until `shutdown` completes, then
/// reports NOT_SERVING, stops accepting, lets open calls finish for up to
/// `limits.drain_timeout_seconds`, closes what is left, and returns.
pub(crate) async fn serve(
    config: &Config,
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let tls = Arc::new(tls_config(config)?);
    let registry = broker.registry().clone();
    let (refusals, refused) = mpsc::channel(auth::REFUSAL_QUEUE);
    let audit_refusals = tokio::spawn(broker.clone().record_refusals(refused));
    let limits = &config.limits;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&health_reporter, ServingStatus::Serving).await;
    // Not serving while the store's database does not answer (a shared store's nodes
    // probe it), serving again when it does.
    let follow_store = tokio::spawn({
        let (reporter, mut reachable) = (health_reporter.clone(), broker.watch_store_reachable());
        async move {
            while reachable.changed().await.is_ok() {
                let up = *reachable.borrow_and_update();
                set_health(&reporter, if up { ServingStatus::Serving } else { ServingStatus::NotServing }).await;
            }
        }
    });

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tio_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|err| ServeError::Reflection(err.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tio_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|err| ServeError::Reflection(err.to_string()))?;

    // Every tio.v1 service gets the configured message bound both ways.
    macro_rules! limited {
        ($service:expr) => {
            $service
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(limits.max_message_bytes)
        };
    }
    let router = Server::builder()
        .trace_fn(telemetry::request_span)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .concurrency_limit_per_connection(limits.max_concurrent_requests_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(limits.keepalive_interval_seconds)))
        .http2_keepalive_timeout(Some(Duration::from_secs(limits.keepalive_timeout_seconds)))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .layer(crate::grpc::transport_status::ContractStatusLayer)
        .layer(tonic::service::InterceptorLayer::new(auth::interceptor(registry.clone(), refusals)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(limited!(v1::record_service_server::RecordServiceServer::new(services::Records {
            broker: broker.clone()
        })))
        .add_service(limited!(v1::consent_service_server::ConsentServiceServer::new(services::Consents {
            broker: broker.clone()
        })))
        .add_service(limited!(v1::care_relationship_service_server::CareRelationshipServiceServer::new(
            services::CareRelationships { broker: broker.clone() }
        )))
        .add_service(limited!(v1::subscription_service_server::SubscriptionServiceServer::new(
            services::Subscriptions { broker: broker.clone() }
        )))
        .add_service(limited!(v1::safeguarding_service_server::SafeguardingServiceServer::new(
            crate::grpc::safeguarding::Safeguarding { broker: broker.clone() }
        )))
        .add_service(limited!(v1::ehc_assessment_service_server::EhcAssessmentServiceServer::new(
            crate::grpc::assessments::EhcAssessments { broker: broker.clone() }
        )))
        .add_service(limited!(v1::transition_service_server::TransitionServiceServer::new(
            crate::grpc::transitions::Transitions { broker: broker.clone() }
        )))
        .add_service(limited!(v1::reporting_service_server::ReportingServiceServer::new(
            crate::grpc::reporting::Reporting { broker: broker.clone() }
        )))
        .add_service(limited!(v1::alert_service_server::AlertServiceServer::new(crate::grpc::alerts::Alerts {
            broker: broker.clone()
        })))
        .add_service(limited!(v1::audit_service_server::AuditServiceServer::new(services::Audit {
            broker: broker.clone()
        })))
        .add_service(limited!(v1::admin_service_server::AdminServiceServer::new(services::Admin {
            broker: broker.clone()
        })));

    let (stop_sender, stop_receiver) = watch::channel(false);
    let (connections, incoming) =
        mpsc::channel::<Result<TlsStream<TcpStream>, std::io::Error>>(limits.max_pending_handshakes);
    let acceptor = AcceptLoop {
        listener,
        acceptor: TlsAcceptor::from(tls),
        handshakes: Arc::new(Semaphore::new(limits.max_pending_handshakes)),
        handshake_timeout: Duration::from_secs(limits.handshake_timeout_seconds),
        connections,
    };
    let accept_task = tokio::spawn(acceptor.run(stop_receiver.clone()));

    let mut stop_for_server = stop_receiver;
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(ReceiverStream::new(incoming), async move {
        let _ = stop_for_server.wait_for(|stopped| *stopped).await;
    }));

    tokio::select! {
        () = shutdown => {}
        result = &mut server => {
            // The server stopped on its own: a transport failure.
            accept_task.abort();
            follow_store.abort();
            return result.map_err(|err| ServeError::Task(err.to_string()))?.map_err(ServeError::from);
        }
    }

    let drain = Duration::from_secs(limits.drain_timeout_seconds);
    tracing::info!(drain.seconds = drain.as_secs(), "draining: not serving, no new connections");
    follow_store.abort();
    set_health(&health_reporter, ServingStatus::NotServing).await;
    // Ignored error: every receiver gone means everything has stopped already.
    let _ = stop_sender.send(true);
    let result = match tokio::time::timeout(drain, &mut server).await {
        Ok(joined) => joined.map_err(|err| ServeError::Task(err.to_string()))?.map_err(ServeError::from),
        Err(_) => {
            tracing::warn!(drain.seconds = drain.as_secs(), "drain deadline passed; closing open calls");
            server.abort();
            Ok(())
        }
    };
    accept_task.abort();
    // The interceptor's sender is gone with the server: the recorder drains and ends.
    if tokio::time::timeout(Duration::from_secs(5), audit_refusals).await.is_err() {
        tracing::warn!("authentication refusals still queued at shutdown were not audited");
    }
    tracing::info!("stopped");
    result
}

/// Sets the overall status and every `tio.v1` service's status.
async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in tio_proto::SERVICE_NAMES {
        reporter.set_service_status(*name, status).await;
    }
}

/// Accepts TCP connections, sets `TCP_NODELAY`, and completes TLS handshakes off the
/// accept path, handing finished connections to the gRPC server.
struct AcceptLoop {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: Arc<Semaphore>,
    handshake_timeout: Duration,
    connections: mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>,
}

impl AcceptLoop {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => break,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    // Usually running out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without it, small gRPC frames wait on delayed ACKs (milliseconds each).
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY");
            }
            let Ok(permit) = self.handshakes.clone().acquire_owned().await else { break };
            let acceptor = self.acceptor.clone();
            let connections = self.connections.clone();
            let timeout = self.handshake_timeout;
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        // Ignored error: the server has stopped and no longer wants connections.
                        let _ = connections.send(Ok(tls)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(error = %err, "tls handshake failed"),
                    Err(_) => tracing::debug!("tls handshake timed out"),
                }
            });
        }
    }
}
