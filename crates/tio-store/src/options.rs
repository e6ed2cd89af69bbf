//! How a store is opened: the engine it runs on (the configuration's `store.engine`,
//! and for the group log `store.index_engine`) and that engine's settings. A new engine
//! is a new variant here and a module in `tio-kv`; nothing above the store changes.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::logged::{IndexKind, LoggedEngine, LoggedOptions};
use crate::engine::postgres::{PostgresEngine, PostgresOptions};
use crate::engine::sled::{DEFAULT_CACHE_BYTES, SledEngine};
use crate::engine::{Engine, StorageError, StorageErrorKind};

/// The engines a store can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// The group log (the commit point: one framed append and one `fdatasync` per
    /// group) with an index store beside it: format `tio-store/3`, the default.
    #[default]
    Log,
    /// sled alone, format `tio-store/2`: the engine of earlier releases, for a store
    /// not yet moved with `tio store migrate`.
    Sled,
    /// A PostgreSQL database (`store.postgres.url`) that several broker nodes share.
    Postgres,
}

impl EngineKind {
    /// Every engine.
    pub const ALL: [EngineKind; 3] = [EngineKind::Log, EngineKind::Sled, EngineKind::Postgres];

    /// Returns the name used in configuration and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            EngineKind::Log => "log",
            EngineKind::Sled => "sled",
            EngineKind::Postgres => "postgres",
        }
    }

    /// Parses a name produced by [`EngineKind::name`].
    pub fn from_name(name: &str) -> Option<EngineKind> {
        EngineKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The index stores the group log can have beside it (`store.index_engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexEngine {
    /// fjall, an LSM tree: the default (the README gives the figures).
    #[default]
    Fjall,
    /// sled.
    Sled,
}

impl IndexEngine {
    /// Every index engine.
    pub const ALL: [IndexEngine; 2] = [IndexEngine::Fjall, IndexEngine::Sled];

    /// Returns the name used in configuration and on the command line.
    pub const fn name(self) -> &'static str {
        self.kind().name()
    }

    /// Parses a name produced by [`IndexEngine::name`].
    pub fn from_name(name: &str) -> Option<IndexEngine> {
        IndexEngine::ALL.into_iter().find(|kind| kind.name() == name)
    }

    pub(crate) const fn kind(self) -> IndexKind {
        match self {
            IndexEngine::Fjall => IndexKind::Fjall,
            IndexEngine::Sled => IndexKind::Sled,
        }
    }
}

impl std::fmt::Display for IndexEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The engine.
    pub engine: EngineKind,
    /// The index store beside the group log (ignored by the sled engine).
    pub index_engine: IndexEngine,
    /// About how much memory the engine's cache may use, in bytes.
    pub cache_bytes: u64,
    /// Bytes preallocated per group-log segment (ignored by the sled engine).
    pub log_segment_bytes: u64,
    /// The database, for the PostgreSQL engine (required by it, ignored by the others).
    pub postgres: Option<PostgresOptions>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            engine: EngineKind::default(),
            index_engine: IndexEngine::default(),
            cache_bytes: DEFAULT_CACHE_BYTES,
            log_segment_bytes: StoreOptions::DEFAULT_LOG_SEGMENT_BYTES,
            postgres: None,
        }
    }
}

impl StoreOptions {
    /// The default cache size, in bytes.
    pub const DEFAULT_CACHE_BYTES: u64 = DEFAULT_CACHE_BYTES;

    /// The default size of a group-log segment, in bytes.
    pub const DEFAULT_LOG_SEGMENT_BYTES: u64 = tio_kv::group_log::DEFAULT_SEGMENT_BYTES;

    /// The smallest group-log segment allowed, in bytes.
    pub const MIN_LOG_SEGMENT_BYTES: u64 = 1 << 20;

    /// Opens (creating if need be) the engine in `dir` (on PostgreSQL: in the database
    /// `postgres` names; `dir` is not used).
    pub fn open_engine(&self, dir: &Path) -> Result<Arc<dyn Engine>, StorageError> {
        match self.engine {
            EngineKind::Log => {
                let options = LoggedOptions {
                    index: self.index_engine.kind(),
                    cache_bytes: self.cache_bytes,
                    segment_bytes: self.log_segment_bytes.max(StoreOptions::MIN_LOG_SEGMENT_BYTES),
                };
                Ok(Arc::new(LoggedEngine::open_with_options(dir, &options)?))
            }
            EngineKind::Sled => Ok(Arc::new(SledEngine::open_with_cache(dir, self.cache_bytes)?)),
            EngineKind::Postgres => {
                let options = self.postgres.as_ref().ok_or_else(|| {
                    StorageError::new(
                        StorageErrorKind::Io,
                        "store.engine = \"postgres\" needs the database's connection string in store.postgres.url",
                    )
                })?;
                Ok(Arc::new(PostgresEngine::connect(options)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_round_trip_and_match_the_configuration() {
        for kind in EngineKind::ALL {
            assert_eq!(EngineKind::from_name(kind.name()), Some(kind));
            let toml_name = serde_json::to_string(&kind).unwrap();
            assert_eq!(toml_name, format!("\"{}\"", kind.name()));
        }
        for kind in IndexEngine::ALL {
            assert_eq!(IndexEngine::from_name(kind.name()), Some(kind));
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{}\"", kind.name()));
        }
        assert_eq!(EngineKind::from_name("Sled"), None);
    }

    #[test]
    fn a_store_opened_with_the_other_engine_is_refused_naming_the_right_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = StoreOptions::default();
        let sled = StoreOptions { engine: EngineKind::Sled, ..log.clone() };
        drop(log.open_engine(&dir.path().join("log")).unwrap());
        drop(sled.open_engine(&dir.path().join("sled")).unwrap());
        let err = sled.open_engine(&dir.path().join("log")).err().unwrap();
        assert!(err.to_string().contains("store.engine = \"log\""), "{err}");
        let err = log.open_engine(&dir.path().join("sled")).err().unwrap();
        assert!(err.to_string().contains("tio store migrate"), "{err}");
        let postgres = StoreOptions { engine: EngineKind::Postgres, ..StoreOptions::default() };
        let err = postgres.open_engine(dir.path()).err().unwrap();
        assert!(err.to_string().contains("store.postgres.url"), "{err}");
    }
}
