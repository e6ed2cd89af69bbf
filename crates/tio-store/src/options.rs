//! How a store is opened: the engine it runs on (the configuration's `store.engine`)
//! and that engine's settings. A new engine is a new variant here and a module in
//! `tio-kv`; nothing above the store changes.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::sled::{DEFAULT_CACHE_BYTES, SledEngine};
use crate::engine::{Engine, StorageError};

/// The engines a store can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// sled, embedded, in the data directory.
    #[default]
    Sled,
}

impl EngineKind {
    /// Every engine.
    pub const ALL: [EngineKind; 1] = [EngineKind::Sled];

    /// Returns the name used in configuration and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            EngineKind::Sled => "sled",
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

/// How to open a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The engine.
    pub engine: EngineKind,
    /// About how much memory the engine's cache may use, in bytes.
    pub cache_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { engine: EngineKind::default(), cache_bytes: DEFAULT_CACHE_BYTES }
    }
}

impl StoreOptions {
    /// The default cache size, in bytes.
    pub const DEFAULT_CACHE_BYTES: u64 = DEFAULT_CACHE_BYTES;

    /// Opens (creating if need be) the engine in `dir`.
    pub fn open_engine(&self, dir: &Path) -> Result<Arc<dyn Engine>, StorageError> {
        match self.engine {
            EngineKind::Sled => Ok(Arc::new(SledEngine::open_with_cache(dir, self.cache_bytes)?)),
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
        assert_eq!(EngineKind::from_name("Sled"), None);
    }
}
