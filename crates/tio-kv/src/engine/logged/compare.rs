//! The check that the index store says what the log says: replaying every group the
//! index store claims to hold (everything before its applied mark) must give exactly
//! its entries, keyspace by keyspace. The log is the durable record and the index
//! store is derived from it, so any difference is the index store's fault, and
//! `tio store reindex` is the way out.
//!
//! The replay is held in memory (keys and values of every live entry), as the store's
//! own check already holds every update's position: a check of a stopped store, not
//! something to run beside a busy server.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::index::IndexStore;
use super::records::Record;
use super::{index_write, log_error};
use crate::engine::{Keyspace, StorageError, StorageErrorKind};
use crate::group_log::fs::LogDir;
use crate::group_log::{GroupLog, LogOptions};

/// Entries read from the index store at a time.
const PAGE: usize = 4096;

/// How the index store differs from the log in one keyspace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Differences {
    /// Entries the log holds and the index store does not.
    missing: u64,
    /// Entries the index store holds and the log does not (never written, or removed).
    extra: u64,
    /// Entries both hold, with different values.
    differing: u64,
}

/// Compares `index` with a replay of the log in `log_dir` up to the index store's mark,
/// returning one line per keyspace that differs (empty: they agree). Fails if commits
/// move the mark while it runs: the comparison is for a stopped store.
pub(super) fn index_against_log(
    index: &dyn IndexStore,
    log_dir: Arc<dyn LogDir>,
    options: LogOptions,
) -> Result<Vec<String>, StorageError> {
    let mark = index.applied_through()?;
    let mut expected: BTreeMap<(usize, Vec<u8>), Option<Vec<u8>>> = BTreeMap::new();
    let mut undecodable = 0u64;
    GroupLog::read_from(log_dir, options, 0, |group| {
        if group.end > mark {
            return;
        }
        for (at, bytes) in &group.records {
            match Record::decode(bytes) {
                Ok(record) => {
                    let write = index_write(&record, *at);
                    expected.insert((write.space.index(), write.key), write.value);
                }
                Err(_) => undecodable += 1,
            }
        }
    })
    .map_err(log_error)?;

    let mut problems = Vec::new();
    if undecodable > 0 {
        problems.push(format!("{undecodable} records of the group log do not decode as changes"));
    }
    for space in Keyspace::ALL {
        let mut differences = Differences::default();
        let mut from = Vec::new();
        loop {
            let page = index.scan(space, &from, None, PAGE)?;
            let Some((last, _)) = page.last() else { break };
            from = [last.as_slice(), &[0]].concat();
            for (key, value) in page {
                match expected.remove(&(space.index(), key)) {
                    Some(Some(logged)) if logged == value => {}
                    Some(Some(_)) => differences.differing += 1,
                    Some(None) | None => differences.extra += 1,
                }
            }
        }
        differences.missing = expected
            .range((space.index(), Vec::new())..(space.index() + 1, Vec::new()))
            .filter(|(_, value)| value.is_some())
            .count() as u64;
        if differences != Differences::default() {
            problems.push(describe(space, differences, mark));
        }
    }
    if index.applied_through()? != mark {
        return Err(StorageError::new(
            StorageErrorKind::Io,
            "commits went on while the index store was compared with the log: check a stopped store",
        ));
    }
    Ok(problems)
}

fn describe(space: Keyspace, differences: Differences, mark: u64) -> String {
    let Differences { missing, extra, differing } = differences;
    format!(
        "the index store disagrees with the group log in keyspace `{}` (replayed up to log position {mark}): \
         {missing} entries missing, {extra} entries the log does not hold, {differing} with other values; \
         rebuild it with `tio store reindex`",
        space.name()
    )
}
