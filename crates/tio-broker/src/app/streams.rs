//! One stream at a time: a subscription is delivered on one stream, and a caller's
//! alerts watched on one. On this node a set of what is open says so; on a store that
//! several nodes share, a lease in the store says so across them ([`StreamClaim`]):
//! taken when the stream opens, renewed every third of its length while the stream
//! runs, released when it ends, and lapsing on its own when its node stops without
//! releasing it (a crash), so that another node may then serve the stream. The
//! stream's own writes go on condition that it still holds the lease, so a node that
//! lost it (stalled past its length while another took over) can never deliver under
//! it again.
//!
//! Lease times are read from the system clock (never the development clock, which
//! nodes may set differently); nodes of one store keep their clocks in step (NTP).

use std::sync::Arc;
use std::time::Duration;

use tio_store::cursors::{self, Lease, StoredLease};
use tio_store::{Batch, Condition, StoreError};

use crate::app::broker::{Broker, Clock, SystemClock};
use crate::app::error::ServiceError;

/// A stream's claim on what it serves: on this node, and on a shared store its lease.
/// Dropping it gives up the claim on this node and lets the lease lapse (or releases it
/// at once with [`StreamClaim::release`]).
pub(crate) struct StreamClaim {
    broker: Arc<Broker>,
    key: String,
    /// The lease as this stream last wrote it; `None` on a store no other node writes.
    lease: Option<StoredLease>,
    /// When the lease is next to be renewed.
    renew_at: tokio::time::Instant,
}

impl std::fmt::Debug for StreamClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamClaim").field("key", &self.key).field("leased", &self.lease.is_some()).finish()
    }
}

/// The name of the lease of stream `key`.
fn lease_name(key: &str) -> String {
    format!("stream/{key}")
}

/// The system clock now, in microseconds since the Unix epoch.
fn now_micros() -> i64 {
    SystemClock.now().unix_micros()
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl Broker {
    /// Claims stream `key` (`agency/name` for a subscription, `alerts/…` for alerts):
    /// `None` if a stream has it open already, on this node or, on a shared store,
    /// on another whose lease has not lapsed.
    pub(crate) async fn claim_stream(self: &Arc<Self>, key: &str) -> Result<Option<StreamClaim>, ServiceError> {
        if !self.mark_stream_open(key) {
            return Ok(None);
        }
        // From here the claim releases the mark on this node however this ends.
        let mut claim = StreamClaim {
            broker: self.clone(),
            key: key.to_owned(),
            lease: None,
            renew_at: tokio::time::Instant::now() + self.stream_lease() / 3,
        };
        if !self.store().shared() {
            return Ok(Some(claim));
        }
        let name = lease_name(key);
        let store = self.store();
        let now = now_micros();
        let lease =
            Lease { holder: self.node().to_owned(), expires_micros: now.saturating_add(micros(self.stream_lease())) };
        let mut batch = Batch::new();
        match store.lease(&name)? {
            Some(held) if held.lease.expires_micros > now && held.lease.holder != self.node() => return Ok(None),
            Some(lapsed) => batch.require(lapsed.unchanged()),
            None => batch.require(cursors::lease_absent(&name)),
        };
        batch.push(cursors::put_lease(&name, &lease));
        match store.commit(batch).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        }
        claim.lease = Some(StoredLease::after_put(&name, lease));
        Ok(Some(claim))
    }

    /// Whether stream `key` is open now: on this node, or on a shared store on another
    /// node whose lease has not lapsed.
    pub(crate) fn stream_is_open(&self, key: &str) -> Result<bool, ServiceError> {
        if self.stream_is_open_here(key) {
            return Ok(true);
        }
        if !self.store().shared() {
            return Ok(false);
        }
        let held = self.store().lease(&lease_name(key))?;
        Ok(held.is_some_and(|held| held.lease.expires_micros > now_micros()))
    }
}

impl StreamClaim {
    /// The precondition under which the stream's writes go: that it still holds its
    /// lease. `None` on a store no other node writes.
    pub(crate) fn holds(&self) -> Option<Condition> {
        self.lease.as_ref().map(StoredLease::unchanged)
    }

    /// When the lease is next due for renewal, if there is one.
    pub(crate) fn renew_at(&self) -> Option<tokio::time::Instant> {
        self.lease.as_ref().map(|_| self.renew_at)
    }

    /// Renews the lease if it is due; FAILED_PRECONDITION `STREAM_TAKEN_OVER` if another
    /// node has taken it over meanwhile (this one did not renew in time).
    pub(crate) async fn keep(&mut self, subject: &str) -> Result<(), ServiceError> {
        let Some(held) = &self.lease else { return Ok(()) };
        if tokio::time::Instant::now() < self.renew_at {
            return Ok(());
        }
        let length = self.broker.stream_lease();
        let lease = Lease { expires_micros: now_micros().saturating_add(micros(length)), ..held.lease.clone() };
        let name = lease_name(&self.key);
        let mut batch = Batch::new();
        batch.require(held.unchanged());
        batch.push(cursors::put_lease(&name, &lease));
        match self.broker.store().commit(batch).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => return Err(taken_over(subject)),
            Err(err) => return Err(err.into()),
        }
        self.lease = Some(StoredLease::after_put(&name, lease));
        self.renew_at = tokio::time::Instant::now() + length / 3;
        Ok(())
    }

    /// Releases the lease at once, so that another node may serve the stream without
    /// waiting for it to lapse; a failure only means that wait.
    pub(crate) async fn release(mut self) {
        let Some(held) = self.lease.take() else { return };
        let mut batch = Batch::new();
        batch.require(held.unchanged());
        batch.push(cursors::delete_lease(&lease_name(&self.key)));
        if let Err(err) = self.broker.store().commit(batch).await
            && !matches!(err, StoreError::Conflict { .. })
        {
            tracing::warn!(error = %err, "a stream's lease was not released; it lapses on its own");
        }
    }
}

impl Drop for StreamClaim {
    fn drop(&mut self) {
        self.broker.release_stream(&self.key);
    }
}

/// The refusal of a stream write whose lease another node has taken over.
pub(crate) fn taken_over(subject: &str) -> ServiceError {
    ServiceError::failed_precondition(
        "STREAM_TAKEN_OVER",
        subject.to_owned(),
        format!("another node took `{subject}` over: this node did not renew its lease in time; open the stream again"),
    )
}
