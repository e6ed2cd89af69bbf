//! The server's configuration: a TOML file, overridden by `TIO_*` environment
//! variables, overridden by command-line settings.
//!
//! Every layer is merged into one TOML table before it is deserialized once, so that
//! precedence is a single mechanism and every error names the key at fault and the
//! layer it came from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tio_core::{Agency, AgencyId, Category, CategorySet, NhsNumberPolicy, NhsNumberRange, Sector};
use tio_store::{EngineKind, IndexEngine, StoreOptions};

/// The commented default configuration that `tio serve gen-config` prints. A test
/// checks that it loads to exactly the built-in defaults.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("config/default.toml");

/// The configuration format version this release reads.
pub const CONFIG_VERSION: u32 = 1;

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The configuration format version; must be [`CONFIG_VERSION`].
    pub version: u32,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The data directory (store, development certificates).
    pub data_dir: PathBuf,
    /// Development mode: generated certificates, test NHS numbers, loopback only.
    pub dev: bool,
    /// Development only: days the server's clock runs ahead of the system's.
    pub dev_clock_offset_days: i64,
    /// Server certificate and the CA that client certificates must chain to.
    pub tls: TlsConfig,
    /// Sizes, concurrency, keepalive and timeouts.
    pub limits: LimitsConfig,
    /// Log format and level.
    pub log: LogConfig,
    /// OpenTelemetry export.
    pub telemetry: TelemetryConfig,
    /// Which identifiers are accepted.
    pub identifiers: IdentifiersConfig,
    /// The encrypted store.
    pub store: StoreConfig,
    /// The audit log.
    pub audit: AuditConfig,
    /// Sharing without consent.
    pub sharing: SharingConfig,
    /// How long records are kept, and the sweeper that erases them after.
    pub retention: RetentionConfig,
    /// Administrator ids (`urn:tio:admin:<id>`) allowed to connect.
    pub admins: Vec<String>,
    /// Auditor ids (`urn:tio:auditor:<id>`) allowed to connect.
    pub auditors: Vec<String>,
    /// SHA-256 fingerprints (lowercase hex) of client certificates refused from now on.
    pub revoked_fingerprints: Vec<String>,
    /// The agencies that seed an empty registry at first start, with their permissions;
    /// afterwards the registry lives in the store and the AdminService changes it.
    pub agencies: Vec<AgencyConfig>,
}

/// Where the server's TLS material lives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of the CA(s) that client certificates must chain to.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the server's certificate chain.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the server's private key (mode 0600 or stricter).
    pub key_file: Option<PathBuf>,
}

/// Bounds on what one client can make the server do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Most requests served at once per connection.
    pub max_concurrent_requests_per_connection: usize,
    /// Most TLS handshakes in progress at once.
    pub max_pending_handshakes: usize,
    /// Seconds a TLS handshake may take.
    pub handshake_timeout_seconds: u64,
    /// Seconds between HTTP/2 keepalive pings.
    pub keepalive_interval_seconds: u64,
    /// Seconds to wait for a keepalive answer before closing the connection.
    pub keepalive_timeout_seconds: u64,
    /// Seconds open streams may take to finish after SIGTERM before they are closed.
    pub drain_timeout_seconds: u64,
}

impl LimitsConfig {
    /// Default for [`LimitsConfig::max_concurrent_streams`].
    pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;
    /// Default for [`LimitsConfig::max_concurrent_requests_per_connection`].
    pub const DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CONNECTION: usize = 256;
    /// Default for [`LimitsConfig::max_pending_handshakes`].
    pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 128;
    /// Default for [`LimitsConfig::handshake_timeout_seconds`].
    pub const DEFAULT_HANDSHAKE_TIMEOUT_SECONDS: u64 = 10;
    /// Default for [`LimitsConfig::keepalive_interval_seconds`].
    pub const DEFAULT_KEEPALIVE_INTERVAL_SECONDS: u64 = 30;
    /// Default for [`LimitsConfig::keepalive_timeout_seconds`].
    pub const DEFAULT_KEEPALIVE_TIMEOUT_SECONDS: u64 = 10;
    /// Default for [`LimitsConfig::drain_timeout_seconds`].
    pub const DEFAULT_DRAIN_TIMEOUT_SECONDS: u64 = 30;
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: tio_core::limits::DEFAULT_MAX_MESSAGE_BYTES,
            max_concurrent_streams: Self::DEFAULT_MAX_CONCURRENT_STREAMS,
            max_concurrent_requests_per_connection: Self::DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CONNECTION,
            max_pending_handshakes: Self::DEFAULT_MAX_PENDING_HANDSHAKES,
            handshake_timeout_seconds: Self::DEFAULT_HANDSHAKE_TIMEOUT_SECONDS,
            keepalive_interval_seconds: Self::DEFAULT_KEEPALIVE_INTERVAL_SECONDS,
            keepalive_timeout_seconds: Self::DEFAULT_KEEPALIVE_TIMEOUT_SECONDS,
            drain_timeout_seconds: Self::DEFAULT_DRAIN_TIMEOUT_SECONDS,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event.
    Json,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `tio_broker=debug,info`); `RUST_LOG` wins if set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Human, level: "info".to_owned() }
    }
}

/// OpenTelemetry export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector endpoint (`http://127.0.0.1:4317`); none means no export.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP: keep it on
    /// loopback or a private interface), or `off`. Development mode uses port 0 (any
    /// free port) unless set.
    pub metrics_listen: String,
}

impl TelemetryConfig {
    /// Default for [`TelemetryConfig::metrics_listen`].
    pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

    /// Returns the metrics address, or `None` when metrics are off.
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>, String> {
        match self.metrics_listen.as_str() {
            "off" => Ok(None),
            text => text.parse().map(Some).map_err(|_| format!("`{text}` is not HOST:PORT or `off`")),
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "tio".to_owned(),
            metrics_listen: TelemetryConfig::DEFAULT_METRICS_LISTEN.to_owned(),
        }
    }
}

/// The encrypted store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The key ring file (mode 0600). Required outside development mode, and outside
    /// the data directory, so that a copy of the data directory cannot be read. In
    /// development mode it defaults to `DATA_DIR/dev-keys/tio.keys`, created if absent.
    /// The `TIO_KEYS` environment variable may hold the ring's text instead.
    pub keys_file: Option<PathBuf>,
    /// The storage engine: `log` (the group log with an index store beside it, the
    /// default), `postgres` (a PostgreSQL database that several broker nodes share,
    /// `store.postgres`) or `sled` (the engine of earlier releases, for a store not yet
    /// moved with `tio store migrate`).
    pub engine: EngineKind,
    /// The index store beside the group log: `fjall` (the default) or `sled`.
    pub index_engine: IndexEngine,
    /// About how much memory the store's page cache may use, in bytes.
    pub cache_bytes: u64,
    /// Bytes preallocated per group-log segment (at least 1 MiB). A full disk shows
    /// when the next segment cannot be made, so a small disk wants small segments.
    pub log_segment_bytes: u64,
    /// The database, when `engine = "postgres"`.
    pub postgres: PostgresConfig,
}

/// The PostgreSQL database of the `postgres` engine.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// The connection string, libpq style: `postgresql://tio@db1,db2/tio?target_session_attrs=read-write`
    /// or `host=/run/postgresql dbname=tio user=tio`. Keep the password out of it:
    /// give `password_file`, or the `PGPASSWORD` environment variable.
    pub url: Option<String>,
    /// A file holding the database password (mode 0600), read at start.
    pub password_file: Option<PathBuf>,
    /// The most connections this node opens to the database.
    pub pool_size: u64,
    /// PEM certificates of the authorities that issue the database's certificate. When
    /// set, every connection is TLS (1.3 or 1.2) with the certificate verified against
    /// them and the connection string's host; never a connection in the clear.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain) for a database that asks for one; with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file` (mode 0600).
    pub key_file: Option<PathBuf>,
    /// How long a node holds a subscription's stream, or the audit log's sequencing,
    /// without renewing its lease (it renews every third of it): after a node stops
    /// without closing its streams, the longest wait before another node serves them,
    /// or takes over sequencing.
    pub stream_lease_seconds: u64,
}

impl std::fmt::Debug for PostgresConfig {
    // The connection string may carry a password despite the advice above.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.url.as_ref().map(|_| "(set)"))
            .field("password_file", &self.password_file)
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: None,
            password_file: None,
            pool_size: tio_store::PostgresOptions::DEFAULT_POOL_SIZE as u64,
            ca_file: None,
            cert_file: None,
            key_file: None,
            stream_lease_seconds: PostgresConfig::DEFAULT_STREAM_LEASE_SECONDS,
        }
    }
}

impl PostgresConfig {
    /// The default of `stream_lease_seconds`.
    pub const DEFAULT_STREAM_LEASE_SECONDS: u64 = 10;

    /// Returns the engine's options: the connection string, and the password from
    /// `password_file` or else from `env_password` (the `PGPASSWORD` variable).
    pub fn options(&self, env_password: Option<&str>) -> Result<Option<tio_store::PostgresOptions>, String> {
        let Some(url) = &self.url else { return Ok(None) };
        let password = match &self.password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|err| format!("cannot read store.postgres.password_file {}: {err}", path.display()))?;
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            }
            None => env_password.map(str::to_owned),
        };
        let read = |key: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|err| format!("cannot read store.postgres.{key} {}: {err}", path.display()))
        };
        let tls = match (&self.ca_file, &self.cert_file, &self.key_file) {
            (None, None, None) => None,
            (Some(ca), None, None) => Some(tio_store::PostgresTls { ca_pem: read("ca_file", ca)?, client: None }),
            (Some(ca), Some(cert), Some(key)) => Some(tio_store::PostgresTls {
                ca_pem: read("ca_file", ca)?,
                client: Some((read("cert_file", cert)?, read("key_file", key)?)),
            }),
            (None, _, _) => return Err("store.postgres.cert_file and key_file need store.postgres.ca_file".to_owned()),
            _ => return Err("store.postgres.cert_file and store.postgres.key_file go together".to_owned()),
        };
        Ok(Some(tio_store::PostgresOptions {
            url: url.clone(),
            password,
            pool_size: usize::try_from(self.pool_size).unwrap_or(usize::MAX),
            // One node of several: maintenance commands are refused while it runs.
            hold: tio_store::PostgresHold::Node,
            tls,
        }))
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            keys_file: None,
            engine: EngineKind::default(),
            index_engine: IndexEngine::default(),
            cache_bytes: StoreOptions::DEFAULT_CACHE_BYTES,
            log_segment_bytes: StoreOptions::DEFAULT_LOG_SEGMENT_BYTES,
            postgres: PostgresConfig::default(),
        }
    }
}

impl StoreConfig {
    /// Returns how to open the store; `env_password` is the `PGPASSWORD` variable, used
    /// when no `store.postgres.password_file` is given.
    pub fn options(&self, env_password: Option<&str>) -> Result<StoreOptions, String> {
        Ok(StoreOptions {
            engine: self.engine,
            index_engine: self.index_engine,
            cache_bytes: self.cache_bytes,
            log_segment_bytes: self.log_segment_bytes,
            postgres: match self.engine {
                EngineKind::Postgres => self.postgres.options(env_password)?,
                _ => None,
            },
        })
    }
}

/// Sharing without consent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharingConfig {
    /// The sectors whose agencies involved with a child receive its child-protection
    /// or looked-after flag from children's social care without consent (CP-IS
    /// parity). Sector names as in `agencies[].sector`; empty shares flags on consent
    /// only.
    pub child_protection_flag_sectors: Vec<String>,
}

impl Default for SharingConfig {
    fn default() -> Self {
        SharingConfig { child_protection_flag_sectors: vec![Sector::Health.as_str().to_owned()] }
    }
}

/// Retention: how long each category is kept, and the sweeper that erases a child's
/// record once every category it holds is past its retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Minutes between sweeps (the first runs five seconds after start), which also
    /// raise the consent-review alerts before the 16th and 18th birthdays; 0 turns both
    /// off (`tio store retention --dry-run` still lists what is due).
    pub sweep_every_minutes: u64,
    /// Years after the last update for a category without a rule, and for a birthday
    /// rule while the child's date of birth is unknown.
    pub years_after_last_update: u16,
    /// The rule of each category (names as in the contract, e.g. `health_summary`):
    /// "25th birthday" or "8 years after last update".
    pub categories: BTreeMap<String, String>,
}

impl Default for RetentionConfig {
    /// The NHS Records Management Code's children's rule: until the 25th birthday.
    fn default() -> Self {
        let policy = tio_core::retention::RetentionPolicy::default();
        RetentionConfig {
            sweep_every_minutes: 60,
            years_after_last_update: policy.fallback_years,
            categories: policy
                .rules
                .iter()
                .map(|(category, rule)| (category.as_str().to_owned(), rule.to_string()))
                .collect(),
        }
    }
}

impl RetentionConfig {
    /// The policy it describes, or the key at fault and why.
    pub fn policy(&self) -> Result<tio_core::retention::RetentionPolicy, (String, String)> {
        use tio_core::retention::{RetentionPolicy, RetentionRule};
        if self.years_after_last_update == 0 {
            return Err(("retention.years_after_last_update".to_owned(), "must be at least 1".to_owned()));
        }
        let mut rules = BTreeMap::new();
        for (name, text) in &self.categories {
            let key = format!("retention.categories.{name}");
            let category = tio_core::Category::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = tio_core::Category::ALL.iter().map(|category| category.as_str()).collect();
                (key.clone(), format!("unknown category; known: {}", known.join(", ")))
            })?;
            let rule = RetentionRule::parse(text).ok_or_else(|| {
                (key.clone(), format!("`{text}` is not a rule: say \"25th birthday\" or \"8 years after last update\""))
            })?;
            rules.insert(category, rule);
        }
        Ok(RetentionPolicy { rules, fallback_years: self.years_after_last_update })
    }
}

/// The audit log's checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Sign a checkpoint once this many entries have been added since the last one.
    pub checkpoint_every_entries: u64,
    /// Sign a checkpoint at most this many seconds after the first entry it will cover.
    pub checkpoint_interval_seconds: u64,
}

impl AuditConfig {
    /// Default for [`AuditConfig::checkpoint_every_entries`].
    pub const DEFAULT_CHECKPOINT_EVERY_ENTRIES: u64 = 10_000;
    /// Default for [`AuditConfig::checkpoint_interval_seconds`].
    pub const DEFAULT_CHECKPOINT_INTERVAL_SECONDS: u64 = 60;
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_every_entries: Self::DEFAULT_CHECKPOINT_EVERY_ENTRIES,
            checkpoint_interval_seconds: Self::DEFAULT_CHECKPOINT_INTERVAL_SECONDS,
        }
    }
}

/// Which NHS numbers are accepted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentifiersConfig {
    /// Accept the `999` test range (always on in development mode).
    pub allow_test_nhs_numbers: bool,
    /// Accepted ranges as `[first, last]` ten-digit strings; empty means the English,
    /// Welsh and Manx ranges.
    pub nhs_number_ranges: Vec<[String; 2]>,
}

/// One agency as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyConfig {
    /// The `<id>` of its certificate identity `urn:tio:agency:<id>`.
    pub id: String,
    /// Its name, for people.
    pub name: String,
    /// `health`, `education` or `social_care`.
    pub sector: String,
    /// Categories it may publish.
    #[serde(default)]
    pub may_publish: Vec<String>,
    /// Categories it may read.
    #[serde(default)]
    pub may_read: Vec<String>,
    /// Whether its professionals may record consent.
    #[serde(default)]
    pub may_record_consent: bool,
    /// Whether its professionals may declare safeguarding shares.
    #[serde(default)]
    pub may_declare_safeguarding: bool,
    /// Whether it runs EHC needs assessments.
    #[serde(default)]
    pub may_run_ehc_assessments: bool,
    /// Whether it starts suspended.
    #[serde(default)]
    pub suspended: bool,
}

/// Why the configuration cannot be used. Each names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key has the wrong type, an unknown name, or a value that cannot be used.
    #[error("invalid configuration key `{key}` (from {source_layer}): {message}")]
    Key {
        /// The dotted key.
        key: String,
        /// Where the value came from: the file, an environment variable, or a flag.
        source_layer: String,
        /// Why.
        message: String,
    },
}

/// Where one overriding value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// The built-in defaults, when no configuration file was given.
    Defaults,
    /// The configuration file.
    File,
    /// An environment variable, named.
    Env(String),
    /// A command-line flag.
    Flag,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::Defaults => f.write_str("the built-in defaults: no configuration file was given"),
            Layer::File => f.write_str("the configuration file"),
            Layer::Env(name) => write!(f, "environment variable {name}"),
            Layer::Flag => f.write_str("the command line"),
        }
    }
}

/// The kind of a key settable from the environment or a flag.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Boolean,
    List,
}

/// Every scalar key that `TIO_*` environment variables and `--set` may override. The
/// environment variable is `TIO_` and the key in upper case with `.` as `_`
/// (`limits.max_message_bytes` is `TIO_LIMITS_MAX_MESSAGE_BYTES`).
const SETTABLE_KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Text),
    ("data_dir", Kind::Text),
    ("dev", Kind::Boolean),
    ("dev_clock_offset_days", Kind::Integer),
    ("tls.ca_file", Kind::Text),
    ("tls.cert_file", Kind::Text),
    ("tls.key_file", Kind::Text),
    ("limits.max_message_bytes", Kind::Integer),
    ("limits.max_concurrent_streams", Kind::Integer),
    ("limits.max_concurrent_requests_per_connection", Kind::Integer),
    ("limits.max_pending_handshakes", Kind::Integer),
    ("limits.handshake_timeout_seconds", Kind::Integer),
    ("limits.keepalive_interval_seconds", Kind::Integer),
    ("limits.keepalive_timeout_seconds", Kind::Integer),
    ("limits.drain_timeout_seconds", Kind::Integer),
    ("log.format", Kind::Text),
    ("log.level", Kind::Text),
    ("telemetry.otlp_endpoint", Kind::Text),
    ("telemetry.service_name", Kind::Text),
    ("telemetry.metrics_listen", Kind::Text),
    ("identifiers.allow_test_nhs_numbers", Kind::Boolean),
    ("store.keys_file", Kind::Text),
    ("store.engine", Kind::Text),
    ("store.index_engine", Kind::Text),
    ("store.cache_bytes", Kind::Integer),
    ("store.log_segment_bytes", Kind::Integer),
    ("store.postgres.url", Kind::Text),
    ("store.postgres.password_file", Kind::Text),
    ("store.postgres.pool_size", Kind::Integer),
    ("store.postgres.ca_file", Kind::Text),
    ("store.postgres.cert_file", Kind::Text),
    ("store.postgres.key_file", Kind::Text),
    ("store.postgres.stream_lease_seconds", Kind::Integer),
    ("audit.checkpoint_every_entries", Kind::Integer),
    ("audit.checkpoint_interval_seconds", Kind::Integer),
    ("retention.sweep_every_minutes", Kind::Integer),
    ("retention.years_after_last_update", Kind::Integer),
    ("admins", Kind::List),
    ("auditors", Kind::List),
    ("revoked_fingerprints", Kind::List),
];

/// The furthest the development clock may be moved, either way: a century.
const MAX_CLOCK_OFFSET_DAYS: i64 = 36_525;

/// Returns the environment variable that overrides `key`.
pub fn env_var_for(key: &str) -> String {
    format!("TIO_{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// Returns every settable key with its environment variable, for `--help` and docs.
pub fn settable_keys() -> impl Iterator<Item = (&'static str, String)> {
    SETTABLE_KEYS.iter().map(|(key, _)| (*key, env_var_for(key)))
}

/// The layers of one configuration, lowest precedence first after the defaults.
#[derive(Debug, Default)]
pub struct ConfigSources {
    /// The configuration file, if any.
    pub file: Option<PathBuf>,
    /// Environment variables (usually `std::env::vars()`); only `TIO_*` names of
    /// settable keys are read, so client variables like `TIO_SERVER` do not interfere.
    pub env: BTreeMap<String, String>,
    /// `key=value` settings from the command line, applied last, in order.
    pub flags: Vec<(String, String)>,
}

impl Config {
    /// Loads the configuration: defaults, then the file, then the environment, then the
    /// flags, and validates the result.
    pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
        let (config, origins, unset) = Config::layered(sources)?;
        config.validate(&origins, &unset)?;
        Ok(config)
    }

    /// Loads the retention rules alone, layered as [`Config::load`] layers everything,
    /// for the commands that work on a stopped store: they need the server's rules, not
    /// its certificates.
    pub fn load_retention(sources: &ConfigSources) -> Result<RetentionConfig, ConfigError> {
        let (config, origins, unset) = Config::layered(sources)?;
        if let Err((key, message)) = config.retention.policy() {
            let source_layer = origins.get(&key).cloned().unwrap_or(unset).to_string();
            return Err(ConfigError::Key { key, source_layer, message });
        }
        Ok(config.retention)
    }

    /// The layers merged and read, not yet validated; with where each key came from.
    fn layered(sources: &ConfigSources) -> Result<(Config, BTreeMap<String, Layer>, Layer), ConfigError> {
        let mut table = default_table();
        let mut origins: BTreeMap<String, Layer> = BTreeMap::new();
        if let Some(path) = &sources.file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            let file: toml::Table = text
                .parse()
                .map_err(|err: toml::de::Error| ConfigError::Syntax { path: path.clone(), message: err.to_string() })?;
            merge(&mut table, file);
        }
        for (key, kind) in SETTABLE_KEYS {
            let var = env_var_for(key);
            if let Some(raw) = sources.env.get(&var) {
                let layer = Layer::Env(var.clone());
                set_key(&mut table, key, typed_value(key, *kind, raw, &layer)?);
                origins.insert((*key).to_owned(), layer);
            }
        }
        for (key, raw) in &sources.flags {
            let Some((_, kind)) = SETTABLE_KEYS.iter().find(|(settable, _)| settable == key) else {
                return Err(ConfigError::Key {
                    key: key.clone(),
                    source_layer: Layer::Flag.to_string(),
                    message: "is not a key that can be set from the command line".to_owned(),
                });
            };
            set_key(&mut table, key, typed_value(key, *kind, raw, &Layer::Flag)?);
            origins.insert(key.clone(), Layer::Flag);
        }

        // A key no layer set comes from the file if there is one, else the defaults.
        let unset = if sources.file.is_some() { Layer::File } else { Layer::Defaults };
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|err| {
            let key = err.path().to_string();
            let layer = origins.get(&key).cloned().unwrap_or_else(|| unset.clone());
            ConfigError::Key { key, source_layer: layer.to_string(), message: err.inner().to_string() }
        })?;
        Ok((config, origins, unset))
    }

    /// Checks what types alone cannot.
    fn validate(&self, origins: &BTreeMap<String, Layer>, unset: &Layer) -> Result<(), ConfigError> {
        let fail = |key: &str, message: String| ConfigError::Key {
            key: key.to_owned(),
            source_layer: origins.get(key).cloned().unwrap_or_else(|| unset.clone()).to_string(),
            message,
        };
        if self.version != CONFIG_VERSION {
            return Err(fail("version", format!("must be {CONFIG_VERSION}, got {}", self.version)));
        }
        if let Some(unknown) =
            self.sharing.child_protection_flag_sectors.iter().find(|name| Sector::from_name(name).is_none())
        {
            let known: Vec<&str> = Sector::ALL.iter().map(|sector| sector.as_str()).collect();
            return Err(fail(
                "sharing.child_protection_flag_sectors",
                format!("unknown sector `{unknown}`; known: {}", known.join(", ")),
            ));
        }
        if let Err((key, message)) = self.retention.policy() {
            return Err(fail(&key, message));
        }
        if self.dev_clock_offset_days != 0 && !self.dev {
            return Err(fail(
                "dev_clock_offset_days",
                "is a development setting: refused outside development mode".to_owned(),
            ));
        }
        if self.dev_clock_offset_days.abs() > MAX_CLOCK_OFFSET_DAYS {
            return Err(fail("dev_clock_offset_days", format!("must be within {MAX_CLOCK_OFFSET_DAYS} days of today")));
        }
        if self.dev && !self.listen.ip().is_loopback() {
            return Err(fail("listen", "development mode listens on loopback addresses only".to_owned()));
        }
        if !self.dev {
            for (key, value) in [
                ("tls.ca_file", &self.tls.ca_file),
                ("tls.cert_file", &self.tls.cert_file),
                ("tls.key_file", &self.tls.key_file),
            ] {
                if value.is_none() {
                    return Err(fail(
                        key,
                        "is required outside development mode: give `--config FILE` (`tio serve gen-config` \
                         prints one to start from), or try the broker with `tio serve --dev`, which makes \
                         throwaway certificates"
                            .to_owned(),
                    ));
                }
            }
        }
        if let Some(keys_file) = &self.store.keys_file
            && !self.dev
            && keys_file.starts_with(&self.data_dir)
        {
            return Err(fail(
                "store.keys_file",
                "must be outside data_dir: a copy of the data directory must not carry the keys that read it"
                    .to_owned(),
            ));
        }
        let limits = &self.limits;
        for (key, value) in [
            ("limits.max_message_bytes", limits.max_message_bytes as u64),
            ("limits.max_concurrent_streams", u64::from(limits.max_concurrent_streams)),
            ("limits.max_concurrent_requests_per_connection", limits.max_concurrent_requests_per_connection as u64),
            ("limits.max_pending_handshakes", limits.max_pending_handshakes as u64),
            ("limits.handshake_timeout_seconds", limits.handshake_timeout_seconds),
            ("limits.keepalive_interval_seconds", limits.keepalive_interval_seconds),
            ("limits.keepalive_timeout_seconds", limits.keepalive_timeout_seconds),
            ("store.cache_bytes", self.store.cache_bytes),
            ("audit.checkpoint_every_entries", self.audit.checkpoint_every_entries),
            ("audit.checkpoint_interval_seconds", self.audit.checkpoint_interval_seconds),
        ] {
            if value == 0 {
                return Err(fail(key, "must be greater than 0".to_owned()));
            }
        }
        if self.store.engine == EngineKind::Postgres && self.store.postgres.url.is_none() {
            return Err(fail(
                "store.postgres.url",
                "is required with store.engine = \"postgres\": the database's connection string".to_owned(),
            ));
        }
        if self.store.postgres.pool_size == 0 {
            return Err(fail("store.postgres.pool_size", "must be greater than 0".to_owned()));
        }
        if !(2..=300).contains(&self.store.postgres.stream_lease_seconds) {
            return Err(fail("store.postgres.stream_lease_seconds", "must be from 2 to 300".to_owned()));
        }
        if self.store.log_segment_bytes < StoreOptions::MIN_LOG_SEGMENT_BYTES {
            return Err(fail(
                "store.log_segment_bytes",
                format!("must be at least {} (1 MiB)", StoreOptions::MIN_LOG_SEGMENT_BYTES),
            ));
        }
        if limits.max_message_bytes < 64 * 1024 {
            return Err(fail(
                "limits.max_message_bytes",
                "must be at least 65536 so that one category value fits".to_owned(),
            ));
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(fail("telemetry.otlp_endpoint", "must start with http:// or https://".to_owned()));
        }
        let metrics = self.telemetry.metrics_address().map_err(|reason| fail("telemetry.metrics_listen", reason))?;
        if self.dev && metrics.is_some_and(|address| !address.ip().is_loopback()) {
            return Err(fail("telemetry.metrics_listen", "must be a loopback address in development mode".to_owned()));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|err| fail("log.level", format!("is not a valid filter: {err}")))?;
        self.nhs_number_policy()?;
        for (index, agency) in self.agencies.iter().enumerate() {
            agency.to_agency(index)?;
        }
        for (key, ids) in [("admins", &self.admins), ("auditors", &self.auditors)] {
            for id in ids {
                AgencyId::parse(key, id).map_err(|violation| fail(key, violation.reason))?;
            }
        }
        for fingerprint in &self.revoked_fingerprints {
            if fingerprint.len() != 64 || !fingerprint.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(fail("revoked_fingerprints", "each must be 64 lowercase hex digits (SHA-256)".to_owned()));
            }
        }
        Ok(())
    }

    /// Returns the NHS number policy this configuration asks for.
    pub fn nhs_number_policy(&self) -> Result<NhsNumberPolicy, ConfigError> {
        let mut policy = NhsNumberPolicy::production();
        policy.allow_test_range = self.dev || self.identifiers.allow_test_nhs_numbers;
        if !self.identifiers.nhs_number_ranges.is_empty() {
            policy.ranges = self
                .identifiers
                .nhs_number_ranges
                .iter()
                .map(|[first, last]| {
                    let parse = |text: &str| {
                        text.parse::<u64>()
                            .ok()
                            .filter(|_| text.len() == 10 && text.bytes().all(|b| b.is_ascii_digit()))
                    };
                    match (parse(first), parse(last)) {
                        (Some(first), Some(last)) if first <= last => Ok(NhsNumberRange { first, last }),
                        _ => Err(ConfigError::Key {
                            key: "identifiers.nhs_number_ranges".to_owned(),
                            source_layer: Layer::File.to_string(),
                            message: "each range must be [first, last] as ten-digit strings with first <= last"
                                .to_owned(),
                        }),
                    }
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(policy)
    }

    /// Returns the sectors flags are shared with (checked when the configuration loaded).
    pub fn flag_sectors(&self) -> Vec<Sector> {
        self.sharing.child_protection_flag_sectors.iter().filter_map(|name| Sector::from_name(name)).collect()
    }

    /// Returns the configured agencies as domain values.
    pub fn agencies(&self) -> Result<Vec<Agency>, ConfigError> {
        self.agencies.iter().enumerate().map(|(index, agency)| agency.to_agency(index)).collect()
    }

    /// Returns the directory of the store's database.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    /// Returns the development key ring file.
    pub fn dev_keys_file(&self) -> PathBuf {
        self.data_dir.join("dev-keys").join("tio.keys")
    }

    /// Returns the directory holding development certificates.
    pub fn dev_pki_dir(&self) -> PathBuf {
        self.data_dir.join("dev-pki")
    }

    /// Renders the configuration as TOML, for `--print-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|err| format!("# cannot render configuration: {err}\n"))
    }
}

impl AgencyConfig {
    /// Converts to a domain agency, naming `agencies[index].<field>` on error.
    fn to_agency(&self, index: usize) -> Result<Agency, ConfigError> {
        let fail = |field: &str, message: String| ConfigError::Key {
            key: format!("agencies[{index}].{field}"),
            source_layer: Layer::File.to_string(),
            message,
        };
        let id = AgencyId::parse("id", &self.id).map_err(|violation| fail("id", violation.reason))?;
        let sector = Sector::from_name(&self.sector).ok_or_else(|| {
            let known: Vec<&str> = Sector::ALL.iter().map(|sector| sector.as_str()).collect();
            fail("sector", format!("must be one of {}", known.join(", ")))
        })?;
        let categories = |field: &str, names: &[String]| -> Result<CategorySet, ConfigError> {
            names
                .iter()
                .map(|name| {
                    Category::from_name(name).ok_or_else(|| {
                        let known: Vec<&str> = Category::ALL.iter().map(|category| category.as_str()).collect();
                        fail(field, format!("unknown category `{name}`; known: {}", known.join(", ")))
                    })
                })
                .collect()
        };
        Agency::check_name("name", &self.name).map_err(|violation| fail("name", violation.reason))?;
        Ok(Agency {
            id,
            name: self.name.clone(),
            sector,
            may_publish: categories("may_publish", &self.may_publish)?,
            may_read: categories("may_read", &self.may_read)?,
            may_record_consent: self.may_record_consent,
            may_declare_safeguarding: self.may_declare_safeguarding,
            may_run_ehc_assessments: self.may_run_ehc_assessments,
            suspended: self.suspended,
        })
    }
}

/// The defaults as a TOML table, the lowest layer.
fn default_table() -> toml::Table {
    let defaults = Config {
        version: CONFIG_VERSION,
        listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
        data_dir: PathBuf::from("/var/lib/tio"),
        dev: false,
        dev_clock_offset_days: 0,
        tls: TlsConfig::default(),
        limits: LimitsConfig::default(),
        log: LogConfig::default(),
        telemetry: TelemetryConfig::default(),
        identifiers: IdentifiersConfig::default(),
        store: StoreConfig::default(),
        audit: AuditConfig::default(),
        sharing: SharingConfig::default(),
        retention: RetentionConfig::default(),
        admins: Vec::new(),
        auditors: Vec::new(),
        revoked_fingerprints: Vec::new(),
        agencies: Vec::new(),
    };
    toml::Table::try_from(defaults).unwrap_or_default()
}

/// Merges `overlay` into `base`, table by table; other values are replaced.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge(base_table, overlay_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets a dotted `key` in `table`, creating tables on the way.
fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut current = table;
    for part in parts {
        let entry = current.entry(part.to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else { return };
        current = next;
    }
    current.insert(last.to_owned(), value);
}

/// Parses a string from the environment or a flag as the key's kind.
fn typed_value(key: &str, kind: Kind, raw: &str, layer: &Layer) -> Result<toml::Value, ConfigError> {
    let fail = |message: &str| ConfigError::Key {
        key: key.to_owned(),
        source_layer: layer.to_string(),
        message: message.to_owned(),
    };
    Ok(match kind {
        Kind::Text => toml::Value::String(raw.to_owned()),
        Kind::Integer => toml::Value::Integer(raw.trim().parse().map_err(|_| fail("must be a whole number"))?),
        Kind::Boolean => toml::Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(fail("must be true or false")),
        }),
        Kind::List => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ),
    })
}

#[cfg(test)]
mod tests;
