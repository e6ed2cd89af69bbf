//! `tio`: the Tell It Once broker's command line.
//!
//! `tio serve` runs the broker; `tio dev-pki` makes development certificates; client
//! commands (`tio health`, and more with later releases) share one set of connection
//! flags. Errors are printed once, here, with `anyhow`; configuration errors exit 2.

// A command line prints its results.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod admin_commands;
mod audit_commands;
mod audit_remote;
mod cli;
mod client_commands;
mod connection;
mod ehc_commands;
mod json;
mod serve;
mod store_commands;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command};

/// The allocator. Under load glibc's spent about a quarter of the server's time in
/// malloc, free and heap consolidation (`perf`, publish-stream), mostly on sled's
/// node copies freed on other threads; mimalloc's per-thread heaps cost far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for unusable configuration or command-line input.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    tio_broker::tls::install_crypto_provider();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped reading (`tio audit report ... | head`) is not a failure
        // to report; end as a process stopped by SIGPIPE would, quietly.
        Err(err) if is_broken_pipe(&err) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(err) => {
            eprintln!("tio: {}", render_error(&err));
            if is_usage_error(&err) { ExitCode::from(EXIT_USAGE) } else { ExitCode::FAILURE }
        }
    }
}

/// The status a shell gives a process stopped by SIGPIPE (128 + 13).
const EXIT_BROKEN_PIPE: u8 = 141;

/// Returns whether `err` is our own output pipe closing (`tio ... | head`). A broken
/// pipe inside a connection to the broker (the broker closed it, e.g. refusing the
/// client's certificate) is a failure to report, not a reader that went away.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let from_the_broker = err.chain().any(|cause| {
        cause.downcast_ref::<tio_client::ClientError>().is_some() || cause.downcast_ref::<tonic::Status>().is_some()
    });
    !from_the_broker
        && err.chain().any(|cause| {
            cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::DevPki(args) => {
            tio_broker::pki::write_dev_pki(&args.out)?;
            println!("wrote development certificates to {}", args.out.display());
            println!("  ca.crt, and a .crt/.key pair for: {}", tio_broker::pki::dev_pki_names().join(", "));
            Ok(())
        }
        Command::Health(args) => runtime()?.block_on(health(args)),
        Command::Keys(command) => store_commands::keys(command),
        Command::Store(command) => store_commands::store(command),
        Command::Audit(command) => audit_commands::run(command),
        Command::Report(command) => runtime()?.block_on(ehc_commands::report(command)),
        Command::Admin(command) => runtime()?.block_on(admin_commands::run(command)),
        Command::Publish(args) => runtime()?.block_on(client_commands::publish(args)),
        Command::Correct(args) => runtime()?.block_on(client_commands::correct(args)),
        Command::Retract(args) => runtime()?.block_on(client_commands::retract(args)),
        Command::Profile(args) => runtime()?.block_on(client_commands::profile(args)),
        Command::Consent(command) => runtime()?.block_on(client_commands::consent(command)),
        Command::Relationship(command) => runtime()?.block_on(client_commands::relationship(command)),
        Command::Subscribe(args) => runtime()?.block_on(client_commands::subscribe(args)),
        Command::Alerts(command) => runtime()?.block_on(client_commands::alerts(command)),
        Command::Safeguarding(command) => runtime()?.block_on(client_commands::safeguarding(command)),
        Command::Ehc(command) => runtime()?.block_on(ehc_commands::ehc(command)),
        Command::Transition(command) => runtime()?.block_on(ehc_commands::transition(command)),
        Command::Demo(args) => demo(args),
        Command::Bench(args) => bench(args),
        Command::Console(args) => console(args),
    }
}

/// `tio console`: binds, prints the address, serves until Ctrl-C; with `--dev`, first
/// starts a development server and tells the demo's story against it.
fn console(args: cli::ConsoleArgs) -> anyhow::Result<()> {
    let pinned_key = match &args.public_key {
        Some(file) => Some(
            std::fs::read_to_string(file).with_context(|| format!("cannot read the public key {}", file.display()))?,
        ),
        None => None,
    };
    // Kept until the console stops: the development server stops with it.
    let mut own = None;
    let settings = if args.dev {
        let tio = std::env::current_exe().context("cannot find the tio binary")?;
        let server = tio_harness::OwnServer::start(&tio, args.data_dir.as_deref(), true)?;
        let dev_pki = server.data_dir().join("dev-pki");
        println!("Telling the demo's story first, so that the log has something in it.");
        let running = tio_harness::RunningServer { url: server.url().to_owned(), dev_pki: dev_pki.clone() };
        let story = tio_harness::demo::DemoOptions { tio, data_dir: None, server: Some(running) };
        tio_harness::demo::run(&story)?;
        let settings = tio_client::ConnectionSettings::from_dev_pki(server.url().to_owned(), &dev_pki, "auditor");
        own = Some(server);
        settings
    } else {
        args.connection.settings()?
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(tio_console::TlsFiles { cert, key }),
        _ => None,
    };
    // Each link works once; the console tells the next one here as soon as one is used.
    let announce: tio_console::Announce = Box::new(|link| {
        println!("sign in (this link works once): {link}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    });
    runtime()?.block_on(async {
        let log = tio_broker::runtime::config::LogConfig::default();
        let telemetry = tio_broker::runtime::telemetry::init(&log, &Default::default())?;
        let client = tio_client::Client::connect(&settings).await?;
        let options = tio_console::ConsoleOptions { listen: args.listen, tls, client, pinned_key, announce };
        let bound = tio_console::bind(options).await?;
        println!("console: {}", bound.url()?);
        if own.is_some() {
            println!("(the development server's auditor; Ctrl-C stops the console and the server)");
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
        bound
            .serve(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        telemetry.shutdown();
        Ok::<_, anyhow::Error>(())
    })?;
    drop(own);
    Ok(())
}

/// `tio health`: asks once, or with --wait until the server answers SERVING (a server
/// just started in the background is not listening yet).
async fn health(args: cli::HealthArgs) -> anyhow::Result<()> {
    let name = if args.service.is_empty() { "server" } else { args.service.as_str() };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.wait);
    loop {
        // The certificates too may not exist yet: a development server makes them as
        // it starts.
        let answer = match args.connection.settings() {
            Ok(settings) => match tio_client::Client::connect(&settings).await {
                Ok(client) => client.health(&args.service).await.map_err(anyhow::Error::from),
                Err(err) => Err(err.into()),
            },
            Err(err) => Err(err.into()),
        };
        match answer {
            Ok(status) if status.as_str_name() == "SERVING" => {
                println!("{name}: SERVING");
                return Ok(());
            }
            Ok(status) if std::time::Instant::now() >= deadline => {
                println!("{name}: {}", status.as_str_name());
                anyhow::bail!("{name} is not serving");
            }
            Err(err) if std::time::Instant::now() >= deadline => return Err(err),
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

/// `tio demo`: the story, told by `tio-harness` against a development server this
/// binary starts (or the one given).
fn demo(args: cli::DemoArgs) -> anyhow::Result<()> {
    let options = tio_harness::demo::DemoOptions {
        tio: std::env::current_exe().context("cannot find the tio binary")?,
        data_dir: args.data_dir,
        server: running_server(args.server, args.dev_pki),
    };
    Ok(tio_harness::demo::run(&options)?)
}

/// `tio bench`: the scenarios of `tio-harness`.
fn bench(args: cli::BenchArgs) -> anyhow::Result<()> {
    let options = tio_harness::bench::BenchOptions {
        tio: std::env::current_exe().context("cannot find the tio binary")?,
        scenarios: args.scenario,
        duration: std::time::Duration::from_secs(args.duration),
        publishers: args.publishers,
        rate: args.rate,
        catch_up_updates: args.catch_up_updates,
        console_entries: args.console_entries,
        without_stall: args.without_stall,
        json: args.json,
        server: running_server(args.server, args.dev_pki),
    };
    Ok(tio_harness::bench::run(&options)?)
}

/// The running development server `--server URL --dev-pki DIR` name, if they do (clap
/// requires each with the other).
fn running_server(url: Option<String>, dev_pki: Option<std::path::PathBuf>) -> Option<tio_harness::RunningServer> {
    Some(tio_harness::RunningServer { url: url?, dev_pki: dev_pki? })
}

/// Renders an error and its causes on one line, skipping a cause whose text the
/// message already includes (many errors show their source in their own message).
fn render_error(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        // A status was rendered, once and plainly, by the error that carries it; its
        // own text is tonic's raw form of the same thing.
        if cause.downcast_ref::<tonic::Status>().is_some() {
            break;
        }
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Returns whether `err` comes from configuration or input the user must fix.
fn is_usage_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<tio_broker::config::ConfigError>().is_some()
            || matches!(cause.downcast_ref::<tio_broker::ServeError>(), Some(tio_broker::ServeError::Config(_)))
            || matches!(
                cause.downcast_ref::<tio_broker::NodeError>(),
                Some(tio_broker::NodeError::Serve(tio_broker::ServeError::Config(_)))
            )
            || cause.downcast_ref::<connection::UsageError>().is_some()
            || matches!(cause.downcast_ref::<tio_harness::HarnessError>(), Some(tio_harness::HarnessError::Usage(_)))
    })
}

/// Builds the multi-threaded Tokio runtime every command runs on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(tio_client::ClientError::ReadFile { path: "gp.crt".into(), source: io });
        assert_eq!(render_error(&err), "cannot read gp.crt: no such file");
        let err = anyhow::anyhow!("inner cause").context("outer step");
        assert_eq!(render_error(&err), "outer step: inner cause");
    }

    #[test]
    fn a_closed_pipe_anywhere_in_the_chain_is_recognised() {
        let pipe = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "Broken pipe");
        assert!(is_broken_pipe(&anyhow::Error::new(pipe).context("cannot write the report")));
        // Issue 12: a connection the broker closed is reported, not taken for `| head`.
        let status = tonic::Status::from_error(Box::new(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe")));
        assert!(!is_broken_pipe(&anyhow::Error::new(tio_client::ClientError::Status(status))));
        let other = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        assert!(!is_broken_pipe(&anyhow::Error::new(other).context("cannot write the report")));
    }
}
