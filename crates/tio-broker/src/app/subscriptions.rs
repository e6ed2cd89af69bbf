//! Durable subscriptions: managing them ([`manage`]) and delivering on them
//! ([`deliver`]).
//!
//! A subscription is a cursor over the store's update log, owned by one agency, kept by
//! the store (`tio_store::cursors`): a head record (the cursor, the next delivery number,
//! where a profile-then-live start has got to) and one record per unacked delivery.
//! Deliveries are read from the store by cursor, never queued in memory, so a slow or
//! stalled subscriber costs nothing but its cursor.
//!
//! Every delivery is decided again by `tio_core::decide` at the moment it is sent, and
//! committed (head, unacked record and audit entry) before it is sent, under
//! preconditions that the consent and relationship that allowed it are unchanged: a
//! withdrawal or ended relationship that commits first stops it, and one that commits
//! after it comes after it in the log. On a store no other node writes, a stream that has
//! read everything waits in [`live`], where its deliveries are decided with their
//! publish and committed in the publish's own group (one sync between a publish and its
//! delivery), and checked again at the moment of sending. The stream itself (messages,
//! credit, heartbeats) is the gRPC adapter's (`grpc::subscriptions`).

use tio_core::Category;
use tio_store::cursors::SubscriptionHead;

use crate::app::error::ServiceError;

pub(crate) mod deliver;
pub(crate) mod live;
pub(crate) mod manage;

/// Deliveries in flight when the subscription does not say.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: u32 = 256;

/// The most deliveries in flight a subscription may ask for.
pub(crate) const MAX_MAX_IN_FLIGHT: u32 = 10_000;

/// The most subscriptions of one agency read at once (listing, and the one-copy rule).
const MAX_SUBSCRIPTIONS_READ: usize = 10_000;

/// Returns the categories a head takes.
pub(crate) fn head_categories(head: &SubscriptionHead) -> Vec<Category> {
    head.categories.iter().filter_map(|name| Category::from_name(name)).collect()
}

fn not_found(name: &str) -> ServiceError {
    ServiceError::not_found(
        "tio.v1.Subscription",
        "SUBSCRIPTION_NOT_FOUND",
        name,
        format!("this agency has no subscription `{name}`"),
    )
}

/// The key of a subscription in the open-stream set.
fn stream_key(agency: &str, name: &str) -> String {
    format!("{agency}/{name}")
}
