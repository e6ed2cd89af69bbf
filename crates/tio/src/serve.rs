//! `tio serve`: loads the configuration, starts telemetry, and runs the broker until
//! SIGTERM or SIGINT.

use std::collections::BTreeMap;

use anyhow::Context;
use tio_broker::config::{Config, ConfigSources, DEFAULT_CONFIG_TOML};

use crate::cli::{ServeArgs, ServeCommand};

/// Runs `tio serve` with its arguments.
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(ServeCommand::GenConfig) = args.command {
        print!("{DEFAULT_CONFIG_TOML}");
        return Ok(());
    }
    let sources = ConfigSources {
        file: args.config.clone(),
        env: std::env::vars().collect::<BTreeMap<_, _>>(),
        flags: flags(&args),
    };
    let mut config = Config::load(&sources)?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }

    let runtime = crate::runtime()?;
    let telemetry = runtime.block_on(async { tio_broker::telemetry::init(&config.log, &config.telemetry) })?;
    let result = runtime.block_on(async {
        tio_broker::prepare_dev(&mut config)?;
        tio_broker::check(&config)?;
        let env_keys = std::env::var(tio_broker::storage::KEYS_ENV).ok();
        let keys = tio_broker::storage::load_key_ring(&config, env_keys.as_deref())?;
        let key_ring_file = tio_broker::storage::key_ring_file(&config, env_keys.as_deref());
        let signer = tio_broker::storage::audit_signer(&keys)?;
        let store = std::sync::Arc::new(tio_broker::storage::open_store(&config, keys)?);
        let audit = std::sync::Arc::new(tio_audit::log::AuditLog::new(store.clone(), signer));
        let (stop_checkpoints, checkpoints_stopped) = tokio::sync::watch::channel(false);
        let checkpoints =
            tokio::spawn(tio_broker::checkpoints::run(audit.clone(), config.audit.clone(), checkpoints_stopped));
        let broker = std::sync::Arc::new(
            tio_broker::broker::Broker::open(&config, store.clone(), audit.clone())
                .await?
                .with_maintenance(config.data_dir.clone(), key_ring_file),
        );
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
        let metrics_address = match metrics_address(&config)? {
            Some(wanted) => {
                let metrics_listener = tokio::net::TcpListener::bind(wanted)
                    .await
                    .with_context(|| format!("cannot serve metrics on {wanted} (telemetry.metrics_listen)"))?;
                let bound = metrics_listener.local_addr()?;
                tokio::spawn(tio_broker::metrics::serve(
                    metrics_listener,
                    broker.metrics().clone(),
                    store.clone(),
                    metrics_stopped,
                ));
                Some(bound)
            }
            None => None,
        };
        announce(&config, address, metrics_address);
        let served = tio_broker::serve(&config, broker.clone(), listener, shutdown_signal()).await;
        let _ = stop_metrics.send(true);
        // Sign a last checkpoint, then finish queued commits, whatever happened to the server.
        let _ = stop_checkpoints.send(true);
        let checkpointed = checkpoints.await.context("checkpoint task failed")?;
        drop(audit);
        drop(broker);
        match std::sync::Arc::try_unwrap(store) {
            Ok(store) => store.shutdown(),
            Err(_) => tracing::error!("store still in use at shutdown; its commit thread stops on exit"),
        }
        served?;
        checkpointed.context("cannot sign the audit checkpoint")?;
        anyhow::Ok(())
    });
    // Flushing spans blocks; the runtime's tasks have finished by now.
    telemetry.shutdown();
    result
}

/// Turns the dedicated flags and `--set` pairs into configuration settings, in order.
fn flags(args: &ServeArgs) -> Vec<(String, String)> {
    let mut flags = Vec::new();
    if let Some(listen) = args.listen {
        flags.push(("listen".to_owned(), listen.to_string()));
    }
    if let Some(dir) = &args.data_dir {
        flags.push(("data_dir".to_owned(), dir.display().to_string()));
    }
    if args.dev {
        flags.push(("dev".to_owned(), "true".to_owned()));
    }
    if let Some(format) = &args.log_format {
        flags.push(("log.format".to_owned(), format.clone()));
    }
    if let Some(level) = &args.log_level {
        flags.push(("log.level".to_owned(), level.clone()));
    }
    if let Some(endpoint) = &args.otlp_endpoint {
        flags.push(("telemetry.otlp_endpoint".to_owned(), endpoint.clone()));
    }
    flags.extend(args.settings.iter().cloned());
    flags
}

/// Returns where to serve metrics: the configured address, or in development mode with
/// the default left alone, any free loopback port (so several development servers can
/// run at once).
fn metrics_address(config: &Config) -> anyhow::Result<Option<std::net::SocketAddr>> {
    use tio_broker::config::TelemetryConfig;
    let address =
        config.telemetry.metrics_address().map_err(|reason| anyhow::anyhow!("telemetry.metrics_listen: {reason}"))?;
    if config.dev && config.telemetry.metrics_listen == TelemetryConfig::DEFAULT_METRICS_LISTEN {
        return Ok(Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))));
    }
    Ok(address)
}

/// Prints where the server listens and, in development mode, how to call it.
fn announce(config: &Config, address: std::net::SocketAddr, metrics: Option<std::net::SocketAddr>) {
    // Metrics first: a supervisor waiting for "listening on" then knows both.
    if let Some(metrics) = metrics {
        println!("tio: metrics on http://{metrics}/metrics");
    }
    println!("tio: listening on {address}");
    if config.dev {
        let pki = config.dev_pki_dir();
        let pki = pki.display();
        let host = if address.is_ipv6() { format!("[{}]", address.ip()) } else { address.ip().to_string() };
        println!("tio: development mode; certificates in {pki}");
        println!(
            "tio: try: {tio} health --server https://{host}:{port} --dev-pki {pki} --as hospital",
            tio = this_command(),
            port = address.port()
        );
        println!(
            "tio:  or: grpcurl -cacert {pki}/ca.crt -cert {pki}/hospital.crt -key {pki}/hospital.key {host}:{port} grpc.health.v1.Health/Check",
            port = address.port()
        );
    }
}

/// Returns how to run this binary from a shell: `tio` when that name on the `PATH` is
/// this binary, else its full path (a hint must work when pasted, and `tio` is often
/// not on the `PATH` of someone who ran `cargo run`).
fn this_command() -> String {
    let Ok(this) = std::env::current_exe().and_then(std::fs::canonicalize) else { return "tio".to_owned() };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .filter_map(|dir| std::fs::canonicalize(dir.join("tio")).ok())
            .next()
            .is_some_and(|found| found == this)
    });
    if on_path { "tio".to_owned() } else { this.display().to_string() }
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
}
