//! Opening the encrypted store for the server: finding the key ring, and refusing to
//! start on a damaged store with the steps that recover it.

use std::path::{Path, PathBuf};

use tio_store::keys::{KeyError, KeyRing};
use tio_store::{StorageErrorKind, Store, StoreError};

use crate::runtime::config::Config;

/// The audit log origin of development key rings.
pub const DEV_AUDIT_ORIGIN: &str = "tio.dev.local/audit";

/// The environment variable that may hold the key ring's text instead of a file.
pub const KEYS_ENV: &str = "TIO_KEYS";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageSetupError {
    /// No key ring configured outside development mode.
    #[error("no key ring: set store.keys_file (create one with `tio keys init --keys-file FILE`) or TIO_KEYS")]
    NoKeys,
    /// The key ring could not be read.
    #[error("cannot load the key ring: {0}")]
    Keys(#[from] KeyError),
    /// The key ring holds no usable audit signing key.
    #[error(
        "the key ring holds no usable audit checkpoint signing key ({0}); create rings with `tio keys init --audit-origin NAME`"
    )]
    AuditKey(String),
    /// The store failed to open or failed its integrity checks.
    #[error(
        "cannot open the store in {dir}: {source}\n\
         The broker did not start. To recover:\n\
         1. keep a copy of {dir} as it is now, for investigation;\n\
         2. run `tio store check --data-dir DATA_DIR` to see what is damaged (it works on a copy);\n\
         3. restore the latest backup with `tio store restore --in BACKUP --data-dir NEW_DATA_DIR`, \
         then point data_dir at NEW_DATA_DIR."
    )]
    Open {
        /// The store directory.
        dir: PathBuf,
        /// What failed.
        source: StoreError,
    },
    /// The PostgreSQL database could not be used (unreachable, refused, not durable, a
    /// schema of another release). The message never holds the connection string.
    #[error("cannot open the store on PostgreSQL (store.postgres): {0}\nThe broker did not start.")]
    Database(String),
    /// The store is in a format this release does not read: not damaged, so the recovery
    /// steps for damage do not apply.
    #[error("cannot open the store in {dir}: {source}\nThe broker did not start; the store was not changed.")]
    Format {
        /// The store directory.
        dir: PathBuf,
        /// What the engine said, with the way forward.
        source: StoreError,
    },
}

/// Returns the key ring: `TIO_KEYS` if set in `env`, else `store.keys_file`, else (in
/// development mode only) the development ring, created on first use.
pub fn load_key_ring(config: &Config, env_keys: Option<&str>) -> Result<KeyRing, StorageSetupError> {
    if let Some(text) = env_keys {
        return Ok(KeyRing::parse(text)?);
    }
    if let Some(path) = &config.store.keys_file {
        return Ok(KeyRing::load_file(path)?);
    }
    if !config.dev {
        return Err(StorageSetupError::NoKeys);
    }
    let path = config.dev_keys_file();
    if !path.exists() {
        create_private_dir(path.parent().unwrap_or(Path::new(".")))?;
        let mut ring = KeyRing::generate()?;
        let signer = tio_audit::note::Signer::generate(DEV_AUDIT_ORIGIN)
            .map_err(|err| KeyError::Refused(format!("cannot create the audit signing key: {err}")))?;
        ring.set_audit_signing_key(signer.private_key());
        ring.write_new_file(&path)?;
        tracing::info!(file = %path.display(), "created development key ring");
    }
    Ok(KeyRing::load_file(&path)?)
}

/// Returns the key ring file [`load_key_ring`] reads, which key rotation on the running
/// server rewrites; `None` when the ring comes from the environment.
pub fn key_ring_file(config: &Config, env_keys: Option<&str>) -> Option<PathBuf> {
    if env_keys.is_some() {
        return None;
    }
    match &config.store.keys_file {
        Some(path) => Some(path.clone()),
        None => config.dev.then(|| config.dev_keys_file()),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StorageSetupError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| {
        StorageSetupError::Keys(KeyError::File(tio_store::secret_file::SecretFileError::Write {
            path: dir.to_owned(),
            source,
        }))
    })
}

/// Returns the audit log's checkpoint signer from the key ring.
pub fn audit_signer(keys: &KeyRing) -> Result<tio_audit::note::Signer, StorageSetupError> {
    let text = keys.audit_signing_key().ok_or_else(|| StorageSetupError::AuditKey("none".to_owned()))?;
    tio_audit::note::Signer::from_private_key(text).map_err(|err| StorageSetupError::AuditKey(err.to_string()))
}

/// What a node takes from its environment rather than from its configuration, so that
/// secrets stay out of configuration files and their printouts.
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvSecrets<'a> {
    /// The key ring's text ([`KEYS_ENV`]), if set.
    pub keys: Option<&'a str>,
    /// The database password ([`POSTGRES_PASSWORD_ENV`]), if set; a
    /// `store.postgres.password_file` wins over it.
    pub postgres_password: Option<&'a str>,
}

/// The environment variable holding the PostgreSQL password (libpq's own name).
pub const POSTGRES_PASSWORD_ENV: &str = "PGPASSWORD";

/// Opens the store with `keys`: under `data_dir/store`, or in the PostgreSQL database
/// (`env_password` is the [`POSTGRES_PASSWORD_ENV`] variable).
pub fn open_store(config: &Config, keys: KeyRing, env_password: Option<&str>) -> Result<Store, StorageSetupError> {
    let dir = config.store_dir();
    let options = config.store.options(env_password).map_err(StorageSetupError::Database)?;
    if config.store.engine == tio_store::EngineKind::Postgres {
        return Store::open(&dir, &options, keys).map_err(|source| StorageSetupError::Database(source.to_string()));
    }
    Store::open(&dir, &options, keys).map_err(|source| match &source {
        StoreError::Storage(storage) if storage.kind == StorageErrorKind::Format => {
            StorageSetupError::Format { dir, source }
        }
        _ => StorageSetupError::Open { dir, source },
    })
}
