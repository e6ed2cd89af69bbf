//! A broker node: what `tio serve` runs. [`Node::start`] opens the store and the audit
//! log, loads the registry, and starts the checkpoint task, the metrics endpoint and the
//! gRPC server; [`Node::shutdown`] stops them in the one order that loses nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tio_audit_log::{AuditError, AuditLog};
use tio_store::Store;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::app::broker::{Broker, RegistrySeed};
use crate::grpc::server::{ServeError, serve};
use crate::runtime::config::{Config, TelemetryConfig};
use crate::runtime::storage::{EnvSecrets, StorageSetupError, audit_signer, key_ring_file, load_key_ring, open_store};

/// Why a node could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration, TLS material or the server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The key ring or the store could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageSetupError),
    /// An address could not be listened on.
    #[error("cannot listen on {address} ({what}): {source}")]
    Listen {
        /// What the address is for.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The last audit checkpoint could not be signed at shutdown.
    #[error("cannot sign the audit checkpoint: {0}")]
    Checkpoint(#[from] AuditError),
    /// A task of the node panicked.
    #[error("{0} task failed: {1}")]
    Task(&'static str, String),
}

/// A running node.
pub struct Node {
    config: Config,
    address: SocketAddr,
    metrics_address: Option<SocketAddr>,
    store: Arc<Store>,
    audit: Arc<AuditLog>,
    broker: Arc<Broker>,
    server: JoinHandle<Result<(), ServeError>>,
    stop_server: oneshot::Sender<()>,
    stop_metrics: watch::Sender<bool>,
    checkpoints: JoinHandle<Result<(), AuditError>>,
    /// The retention sweeper, if it is on.
    sweeper: Option<JoinHandle<()>>,
    /// What keeps this node in step with the others on a shared store, if it is one.
    cluster: Option<JoinHandle<()>>,
    stop_checkpoints: watch::Sender<bool>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Node {
    /// Starts a node of `config`: in development mode first makes its certificates and
    /// fills its defaults; checks TLS and the agencies; opens the key ring (`secrets`
    /// holds what the environment gave: the `TIO_KEYS` text, the database password), the
    /// store and the audit log; seeds or loads the registry; then starts the checkpoint
    /// task, the metrics endpoint and the server.
    pub async fn start(mut config: Config, secrets: EnvSecrets<'_>) -> Result<Node, NodeError> {
        crate::grpc::server::prepare_dev(&mut config)?;
        crate::grpc::server::check(&config)?;
        let keys = load_key_ring(&config, secrets.keys)?;
        let signer = audit_signer(&keys)?;
        let store = Arc::new(open_store(&config, keys, secrets.postgres_password)?);
        let audit = Arc::new(AuditLog::new(store.clone(), signer));
        let (stop_checkpoints, checkpoints_stopped) = watch::channel(false);
        let sequencing = crate::app::checkpoints::Sequencing {
            store: store.clone(),
            lease: std::time::Duration::from_secs(config.store.postgres.stream_lease_seconds),
        };
        let checkpoints = tokio::spawn(crate::app::checkpoints::run(
            audit.clone(),
            config.audit.clone(),
            sequencing,
            checkpoints_stopped,
        ));
        // Everything that can still fail; if it does, the checkpoint task stops first.
        let rest = async {
            let seed = RegistrySeed {
                agencies: config.agencies().map_err(ServeError::Config)?,
                admins: config.admins.clone(),
                auditors: config.auditors.clone(),
                revoked: config.revoked_fingerprints.clone(),
                say_if_ignored: !config.dev,
            };
            let nhs_numbers = config.nhs_number_policy().map_err(ServeError::Config)?;
            let retention = config.retention.policy().map_err(|(key, message)| {
                ServeError::Config(crate::runtime::config::ConfigError::Key {
                    key,
                    source_layer: "configuration".to_owned(),
                    message,
                })
            })?;
            let sharing = crate::app::sharing::Sharing {
                flag_sectors: config.flag_sectors(),
                flag_of: crate::grpc::records::flag_of_value,
                date_of_birth_of: crate::grpc::records::date_of_birth_of_value,
            };
            let clock: Arc<dyn crate::app::broker::Clock> = match config.dev_clock_offset_days {
                0 => Arc::new(crate::app::broker::SystemClock),
                days => {
                    tracing::warn!(days, "development clock: the server's time runs ahead of the system's");
                    Arc::new(crate::app::broker::OffsetClock::days(days))
                }
            };
            let broker = Broker::open(store.clone(), audit.clone(), seed, nhs_numbers, sharing, clock)
                .await
                .map_err(|err| ServeError::Registry(err.to_string()))?;
            let lease = std::time::Duration::from_secs(config.store.postgres.stream_lease_seconds);
            let broker = Arc::new(
                broker
                    .with_maintenance(config.data_dir.clone(), key_ring_file(&config, secrets.keys))
                    .with_stream_lease(lease),
            );
            let listen = |source| NodeError::Listen { what: "listen", address: config.listen, source };
            let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(listen)?;
            let address = listener.local_addr().map_err(listen)?;
            let metrics = match metrics_address(&config)? {
                Some(wanted) => {
                    let listen =
                        |source| NodeError::Listen { what: "telemetry.metrics_listen", address: wanted, source };
                    let listener = tokio::net::TcpListener::bind(wanted).await.map_err(listen)?;
                    Some((listener.local_addr().map_err(listen)?, listener))
                }
                None => None,
            };
            Ok::<_, NodeError>((broker, listener, address, metrics, retention))
        };
        let (broker, listener, address, metrics, policy) = match rest.await {
            Ok(started) => started,
            Err(err) => {
                let _ = stop_checkpoints.send(true);
                let _ = checkpoints.await;
                return Err(err);
            }
        };
        let (stop_metrics, metrics_stopped) = watch::channel(false);
        // The retention sweeper stops with the metrics endpoint, before the store.
        let sweeper = match config.retention.sweep_every_minutes {
            0 => None,
            minutes => Some(tokio::spawn(crate::runtime::retention::run(
                broker.clone(),
                policy,
                std::time::Duration::from_secs(minutes.saturating_mul(60)),
                metrics_stopped.clone(),
            ))),
        };
        // In step with the other nodes until the metrics endpoint stops, before the store.
        let cluster =
            store.shared().then(|| tokio::spawn(crate::runtime::cluster::run(broker.clone(), metrics_stopped.clone())));
        let metrics_address = metrics.map(|(bound, listener)| {
            tokio::spawn(crate::runtime::metrics::serve(
                listener,
                broker.metrics().clone(),
                store.clone(),
                metrics_stopped,
            ));
            bound
        });
        let (stop_server, server_stopped) = oneshot::channel::<()>();
        let server = tokio::spawn({
            let (config, broker) = (config.clone(), broker.clone());
            async move {
                serve(&config, broker, listener, async {
                    let _ = server_stopped.await;
                })
                .await
            }
        });
        Ok(Node {
            config,
            address,
            metrics_address,
            store,
            audit,
            broker,
            server,
            stop_server,
            stop_metrics,
            checkpoints,
            stop_checkpoints,
            sweeper,
            cluster,
        })
    }

    /// Returns the address the gRPC server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Returns the address of the metrics endpoint, if it is on.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// Returns the configuration the node runs with (development defaults filled in).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves until `signal` completes (or the server fails), then shuts down.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), NodeError> {
        let early = tokio::select! {
            () = signal => None,
            ended = &mut self.server => Some(ended),
        };
        self.stop(early).await
    }

    /// Stops the node: the server drains (NOT_SERVING, open calls finish for up to
    /// `limits.drain_timeout_seconds`), the metrics endpoint closes, a last checkpoint is
    /// signed, and the store finishes its queued commits.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        self.stop(None).await
    }

    async fn stop(
        self,
        ended: Option<Result<Result<(), ServeError>, tokio::task::JoinError>>,
    ) -> Result<(), NodeError> {
        let _ = self.stop_server.send(());
        let served = match ended {
            Some(ended) => ended,
            None => self.server.await,
        };
        let _ = self.stop_metrics.send(true);
        if let Some(sweeper) = self.sweeper {
            let _ = sweeper.await;
        }
        if let Some(cluster) = self.cluster {
            let _ = cluster.await;
        }
        // Sign a last checkpoint, then finish queued commits, whatever happened to the server.
        let _ = self.stop_checkpoints.send(true);
        let checkpointed = self.checkpoints.await;
        drop(self.audit);
        drop(self.broker);
        match Arc::try_unwrap(self.store) {
            Ok(store) => store.shutdown(),
            Err(_) => tracing::error!("store still in use at shutdown; its commit thread stops on exit"),
        }
        served.map_err(|err| NodeError::Task("server", err.to_string()))??;
        checkpointed.map_err(|err| NodeError::Task("checkpoint", err.to_string()))??;
        Ok(())
    }
}

/// Returns where to serve metrics: the configured address, or in development mode with
/// the default left alone, any free loopback port (so several development servers can
/// run at once).
fn metrics_address(config: &Config) -> Result<Option<SocketAddr>, NodeError> {
    let address = config.telemetry.metrics_address().map_err(|reason| {
        NodeError::Serve(ServeError::Config(crate::runtime::config::ConfigError::Key {
            key: "telemetry.metrics_listen".to_owned(),
            source_layer: "the configuration".to_owned(),
            message: reason,
        }))
    })?;
    if config.dev && config.telemetry.metrics_listen == TelemetryConfig::DEFAULT_METRICS_LISTEN {
        return Ok(Some(SocketAddr::from(([127, 0, 0, 1], 0))));
    }
    Ok(address)
}
