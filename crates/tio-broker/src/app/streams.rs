//! One stream at a time: a subscription is delivered on one stream, and a caller's
//! alerts watched on one. On this node a set of what is open says so; on a store that
//! several nodes share, a lease in the store says so across them ([`StreamClaim`], over
//! [`crate::app::leases`]): taken when the stream opens, renewed while it runs,
//! released when it ends, lapsing on its own after a crash. The stream's own writes go
//! on condition that it still holds the lease, so a node that lost it (stalled past its
//! length while another took over) can never deliver under it again.

use std::sync::Arc;

use tio_store::Condition;

use crate::app::broker::Broker;
use crate::app::error::ServiceError;
use crate::app::leases::{self, HeldLease};

/// A stream's claim on what it serves: on this node, and on a shared store its lease.
/// Dropping it gives up the claim on this node and lets the lease lapse (or releases it
/// at once with [`StreamClaim::release`]).
pub(crate) struct StreamClaim {
    broker: Arc<Broker>,
    key: String,
    /// The stream's lease; `None` on a store no other node writes.
    lease: Option<HeldLease>,
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

impl Broker {
    /// Claims stream `key` (`agency/name` for a subscription, `alerts/…` for alerts):
    /// `None` if a stream has it open already, on this node or, on a shared store,
    /// on another whose lease has not lapsed.
    pub(crate) async fn claim_stream(self: &Arc<Self>, key: &str) -> Result<Option<StreamClaim>, ServiceError> {
        if !self.mark_stream_open(key) {
            return Ok(None);
        }
        // From here the claim releases the mark on this node however this ends.
        let mut claim = StreamClaim { broker: self.clone(), key: key.to_owned(), lease: None };
        if !self.store().shared() {
            return Ok(Some(claim));
        }
        match leases::take(self.store(), &lease_name(key), self.node(), self.stream_lease()).await? {
            Some(lease) => claim.lease = Some(lease),
            None => return Ok(None),
        }
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
        Ok(leases::is_held(self.store(), &lease_name(key))?)
    }
}

impl StreamClaim {
    /// The precondition under which the stream's writes go: that it still holds its
    /// lease. `None` on a store no other node writes.
    pub(crate) fn holds(&self) -> Option<Condition> {
        self.lease.as_ref().map(HeldLease::holds)
    }

    /// When the lease is next due for renewal, if there is one.
    pub(crate) fn renew_at(&self) -> Option<tokio::time::Instant> {
        self.lease.as_ref().map(HeldLease::renew_at)
    }

    /// Renews the lease if it is due; FAILED_PRECONDITION `STREAM_TAKEN_OVER` if another
    /// node has taken it over meanwhile (this one did not renew in time).
    pub(crate) async fn keep(&mut self, subject: &str) -> Result<(), ServiceError> {
        let Some(lease) = &mut self.lease else { return Ok(()) };
        if !lease.keep(self.broker.store()).await? {
            return Err(taken_over(subject));
        }
        Ok(())
    }

    /// Releases the lease at once, so that another node may serve the stream without
    /// waiting for it to lapse; a failure only means that wait.
    pub(crate) async fn release(mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release(self.broker.store()).await;
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
