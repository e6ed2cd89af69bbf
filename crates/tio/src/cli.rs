//! The command-line grammar. Doc comments here are the `--help` text.

#![deny(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::connection::ConnectionArgs;

/// Tell It Once: a consented, audited broker for updates about children with special
/// educational needs and disabilities, between NHS, school and council systems.
#[derive(Debug, Parser)]
#[command(name = "tio", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the broker server (mutual TLS, gRPC).
    ///
    /// Configuration layers, lowest precedence first: built-in defaults, --config FILE,
    /// TIO_* environment variables, then flags. `tio serve gen-config` prints a
    /// commented default configuration.
    Serve(ServeArgs),
    /// Write a throwaway development CA and certificates (server, admin, auditor and
    /// one per development agency) into a directory. Keys are written mode 0600.
    DevPki(DevPkiArgs),
    /// Ask a broker's standard gRPC health service whether it is serving.
    Health(HealthArgs),
    /// Manage the key ring: create it, rotate the key-encryption key, retire old versions.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check, back up and restore a stopped store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Audit log tools: the checkpoint public key, and offline verification of an export.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `tio audit`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Print the audit log's checkpoint verifier key (signed-note format), for auditors.
    PublicKey {
        /// The key ring holding the signing key.
        #[arg(long, env = "TIO_KEYS_FILE", value_name = "FILE")]
        keys_file: PathBuf,
    },
    /// Verify an export offline (no server needed): every entry against its leaf hash, the
    /// tree against the signed checkpoint, and with --against an older checkpoint, that
    /// the log extends it (a log cut back, rolled back or forked fails). Names the first
    /// bad entry and exits 1 on any failure.
    Verify {
        /// The export directory: entries.jsonl and checkpoint.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The log's verifier key (as printed by `tio audit public-key`), in a file.
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// An older checkpoint you hold (a signed note, in a file).
        #[arg(long, value_name = "CHECKPOINT")]
        against: Option<PathBuf>,
    },
}

/// `tio keys`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a new key ring file (mode 0600): a key-encryption key and a blind-index
    /// key. Keep it outside the data directory and back it up separately.
    Init {
        /// Where to write it; never overwritten.
        #[arg(long, env = "TIO_KEYS_FILE", value_name = "FILE")]
        keys_file: PathBuf,
        /// The audit log's origin: a unique name for this deployment's log, by
        /// convention a host name and path (e.g. tio.example-council.gov.uk/audit).
        /// Checkpoints carry it; the checkpoint signing key is named after it.
        #[arg(long, value_name = "ORIGIN")]
        audit_origin: String,
    },
    /// Add a new key-encryption key version and re-wrap every child's data key under it
    /// (the store must be stopped). The old version stays in the ring until retired.
    Rotate(KeysStoreArgs),
    /// Remove a key-encryption key version once no data key uses it.
    Retire {
        /// Which store and ring.
        #[command(flatten)]
        store: KeysStoreArgs,
        /// The key-encryption key version to remove.
        #[arg(long, value_name = "VERSION")]
        kek_version: u32,
    },
}

/// A key ring and the stopped store it belongs to.
#[derive(Debug, Args)]
pub(crate) struct KeysStoreArgs {
    /// The key ring file.
    #[arg(long, env = "TIO_KEYS_FILE", value_name = "FILE")]
    pub(crate) keys_file: Option<PathBuf>,
    /// The data directory (the store is DATA_DIR/store).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
}

/// `tio store`.
#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Check a stopped store without modifying it (it works on a copy): every record
    /// decrypts and authenticates, positions are contiguous, indexes agree. Exits 1 on
    /// any damage.
    Check(KeysStoreArgs),
    /// Write a backup of a stopped store to a new file (ciphertext only; back up the key
    /// ring separately).
    Backup {
        /// The data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The backup file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup into a new data directory.
    Restore {
        /// The backup file.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// The data directory to create the store in (DATA_DIR/store must not exist).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

/// `tio serve`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ServeArgs {
    /// Serve-related helpers.
    #[command(subcommand)]
    pub(crate) command: Option<ServeCommand>,
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "TIO_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on (key `listen`).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Data directory (key `data_dir`).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Development mode: generated certificates under DATA_DIR/dev-pki, the
    /// development agencies, test-range NHS numbers, loopback addresses only.
    #[arg(long)]
    pub(crate) dev: bool,
    /// Log format: human or json (key `log.format`).
    #[arg(long, value_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
    /// Log level filter, e.g. info or tio_broker=debug (key `log.level`).
    #[arg(long, value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
    /// OTLP/gRPC collector endpoint for traces (key `telemetry.otlp_endpoint`).
    #[arg(long, value_name = "URL")]
    pub(crate) otlp_endpoint: Option<String>,
    /// Set any scalar configuration key, e.g. --set limits.drain_timeout_seconds=5.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) settings: Vec<(String, String)>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
}

/// `tio serve` helpers.
#[derive(Debug, Subcommand)]
pub(crate) enum ServeCommand {
    /// Print a commented default configuration file.
    GenConfig,
}

/// `tio dev-pki`.
#[derive(Debug, Args)]
pub(crate) struct DevPkiArgs {
    /// Directory to write into; created if absent. Existing files are never replaced.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
}

/// `tio health`.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// Service to ask about, e.g. tio.v1.RecordService; empty for the whole server.
    #[arg(long, default_value = "")]
    pub(crate) service: String,
    /// How to reach the broker.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

fn parse_key_value(input: &str) -> Result<(String, String), String> {
    input
        .split_once('=')
        .map(|(key, value)| (key.trim().to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{input}`"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_values_split_at_the_first_equals_sign() {
        assert_eq!(parse_key_value("log.level=tio=debug"), Ok(("log.level".into(), "tio=debug".into())));
        assert!(parse_key_value("listen").is_err());
    }
}
