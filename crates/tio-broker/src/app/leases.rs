//! Leases in a store that several nodes share: one holder at a time of something named
//! (a subscription's stream, the audit log's sequencer), taken when free or lapsed,
//! renewed every third of its length while held, released when done, and lapsing on
//! its own when its holder stops without releasing it (a crash), so that another node
//! may then take it. Every write of the lease goes on condition that it is as its
//! holder last wrote it, so a holder that stalled past its lease while another took
//! over learns so and never acts under it again.
//!
//! Lease times are read from the system clock (never the development clock, which
//! nodes may set differently); nodes of one store keep their clocks in step (NTP).

use std::time::Duration;

use tio_store::cursors::{self, Lease, StoredLease};
use tio_store::{Batch, Condition, Store, StoreError};

use crate::app::broker::{Clock, SystemClock};

/// A lease this node holds.
#[derive(Debug)]
pub(crate) struct HeldLease {
    name: String,
    length: Duration,
    /// The lease as this node last wrote it.
    stored: StoredLease,
    /// When the lease is next to be renewed.
    renew_at: tokio::time::Instant,
}

/// A name for a holder that no other node's, nor this node's next run's, is likely to
/// share (it tells holders apart; nothing rests on it being secret).
pub(crate) fn holder_id() -> String {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let hash = std::collections::hash_map::RandomState::new().hash_one((std::process::id(), now.as_nanos()));
    format!("node-{hash:016x}")
}

/// The system clock now, in microseconds since the Unix epoch.
fn now_micros() -> i64 {
    SystemClock.now().unix_micros()
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Takes lease `name` for `holder`, `length` long, if it is free, lapsed or already
/// `holder`'s: `None` if another holder's has not lapsed, or another node took it first.
pub(crate) async fn take(
    store: &Store,
    name: &str,
    holder: &str,
    length: Duration,
) -> Result<Option<HeldLease>, StoreError> {
    let now = now_micros();
    let lease = Lease { holder: holder.to_owned(), expires_micros: now.saturating_add(micros(length)) };
    let mut batch = Batch::new();
    match store.lease(name)? {
        Some(held) if held.lease.expires_micros > now && held.lease.holder != holder => return Ok(None),
        Some(lapsed) => batch.require(lapsed.unchanged()),
        None => batch.require(cursors::lease_absent(name)),
    };
    batch.push(cursors::put_lease(name, &lease));
    match store.commit(batch).await {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => return Ok(None),
        Err(err) => return Err(err),
    }
    Ok(Some(HeldLease {
        name: name.to_owned(),
        length,
        stored: StoredLease::after_put(name, lease),
        renew_at: tokio::time::Instant::now() + length / 3,
    }))
}

/// Whether lease `name` is held now by anyone (taken and not lapsed).
pub(crate) fn is_held(store: &Store, name: &str) -> Result<bool, StoreError> {
    Ok(store.lease(name)?.is_some_and(|held| held.lease.expires_micros > now_micros()))
}

impl HeldLease {
    /// The condition under which the holder's writes go: that it still holds the lease.
    pub(crate) fn holds(&self) -> Condition {
        self.stored.unchanged()
    }

    /// When the lease is next due for renewal.
    pub(crate) fn renew_at(&self) -> tokio::time::Instant {
        self.renew_at
    }

    /// Renews the lease if it is due. `Ok(false)` if another holder has taken it over
    /// meanwhile (this one did not renew in time): it is no longer held.
    pub(crate) async fn keep(&mut self, store: &Store) -> Result<bool, StoreError> {
        if tokio::time::Instant::now() < self.renew_at {
            return Ok(true);
        }
        let lease =
            Lease { expires_micros: now_micros().saturating_add(micros(self.length)), ..self.stored.lease.clone() };
        let mut batch = Batch::new();
        batch.require(self.stored.unchanged());
        batch.push(cursors::put_lease(&self.name, &lease));
        match store.commit(batch).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => return Ok(false),
            Err(err) => return Err(err),
        }
        self.stored = StoredLease::after_put(&self.name, lease);
        self.renew_at = tokio::time::Instant::now() + self.length / 3;
        Ok(true)
    }

    /// Releases the lease at once, so that another node may take it without waiting for
    /// it to lapse; a failure only means that wait.
    pub(crate) async fn release(self, store: &Store) {
        let mut batch = Batch::new();
        batch.require(self.stored.unchanged());
        batch.push(cursors::delete_lease(&self.name));
        if let Err(err) = store.commit(batch).await
            && !matches!(err, StoreError::Conflict { .. })
        {
            tracing::warn!(error = %err, "a lease was not released; it lapses on its own");
        }
    }
}
