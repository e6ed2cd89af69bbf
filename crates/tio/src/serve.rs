//! `tio serve`: loads the configuration, starts telemetry, and runs the broker until
//! SIGTERM or SIGINT.

use std::collections::BTreeMap;

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
    let config = Config::load(&sources)?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }

    let runtime = crate::runtime()?;
    let telemetry = runtime.block_on(async { tio_broker::runtime::telemetry::init(&config.log, &config.telemetry) })?;
    let result = runtime.block_on(async {
        use tio_broker::runtime::storage::{EnvSecrets, KEYS_ENV, POSTGRES_PASSWORD_ENV};
        let env_keys = std::env::var(KEYS_ENV).ok();
        let postgres_password = std::env::var(POSTGRES_PASSWORD_ENV).ok();
        let secrets = EnvSecrets { keys: env_keys.as_deref(), postgres_password: postgres_password.as_deref() };
        let node = tio_broker::Node::start(config, secrets).await?;
        announce(node.config(), node.address(), node.metrics_address());
        node.run_until(shutdown_signal()).await?;
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
