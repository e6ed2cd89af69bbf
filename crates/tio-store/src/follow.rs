//! Following the update log from inside the group commit: a [`UpdateFollower`] is told
//! of the updates each group appends once they are applied and before the group's one
//! sync, and may add batches of its own that the same sync makes durable (deliveries
//! decided on an update just published, with their audit entries). Only on a store no
//! other node writes, where this node's commits are every commit.

use std::sync::Arc;

use tio_kv::engine::{Applied, Batch, CommitError, Keyspace, Op};

use crate::store::{DataKeys, Store, StoreError, StoredUpdate};
use crate::{GroupFollower, Position};

/// Told of the updates each group commit appends, in log order, on the commit thread,
/// before the group's sync. Keep it short: every writer of the group waits for it.
pub trait UpdateFollower: Send + Sync {
    /// Returns batches to commit in the same group, given the updates it appended (every
    /// update, in position order). Each returned batch commits on its own terms.
    fn follow(&self, appended: &[AppendedUpdate<'_>]) -> Vec<Batch>;

    /// Tells what became of the batches the last [`UpdateFollower::follow`] returned, in
    /// its order: `Ok` only once applied and durable. Called after the group's sync and
    /// before its writers are answered.
    fn settled(&self, outcomes: Vec<Result<(), StoreError>>);
}

/// An update a group appended, still sealed: [`Store::open_appended`] opens it.
#[derive(Debug, Clone, Copy)]
pub struct AppendedUpdate<'a> {
    /// Its position in the log.
    pub position: &'a Position,
    record: &'a [u8],
}

/// Puts an [`UpdateFollower`] in the group commit's terms.
struct Follower(Arc<dyn UpdateFollower>);

impl GroupFollower for Follower {
    fn follow(&self, applied: &[(&Batch, &Applied)]) -> Vec<Batch> {
        let mut appended = Vec::new();
        for (batch, applied) in applied {
            let appends = batch.ops.iter().filter_map(|op| match op {
                Op::Append { space, value } => Some((*space, value)),
                _ => None,
            });
            for ((space, record), position) in appends.zip(&applied.positions) {
                if space == Keyspace::Updates {
                    appended.push(AppendedUpdate { position, record });
                }
            }
        }
        if appended.is_empty() { Vec::new() } else { self.0.follow(&appended) }
    }

    fn settled(&self, outcomes: Vec<Result<Applied, CommitError>>) {
        self.0.settled(outcomes.into_iter().map(|outcome| outcome.map(|_| ()).map_err(StoreError::from)).collect());
    }
}

impl Store {
    /// Sets the follower of the update log (the first call wins). Returns `false`, and
    /// sets nothing, on a store other nodes share: their commits do not pass here.
    pub fn follow_updates(&self, follower: Arc<dyn UpdateFollower>) -> bool {
        !self.shared() && self.commit_path().set_follower(Arc::new(Follower(follower)))
    }

    /// Opens an update a group appended, as [`Store::updates_after`] would read it.
    pub fn open_appended(&self, appended: &AppendedUpdate<'_>) -> Result<StoredUpdate, StoreError> {
        self.open_record(appended.position.clone(), appended.record, &mut DataKeys::default())
    }
}
