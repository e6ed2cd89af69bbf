//! A node among several on a shared store (PostgreSQL): what it keeps in memory is
//! read again when another node may have changed it. Told of another node's commit,
//! it wakes its open streams (a delivery or an alert may be due), and reads the
//! registry afresh if the commit touched it; every [`POLL`] it does both anyway, in
//! case news of a commit was lost, so that a suspension or a revocation made on one
//! node applies on every node within a second. Every [`PROBE`] it asks whether the
//! database answers, for health checks and metrics.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::app::broker::Broker;

/// How often a node reads again what other nodes may have changed, whatever it heard.
pub(crate) const POLL: Duration = Duration::from_millis(500);

/// How often a node asks whether the database answers.
pub(crate) const PROBE: Duration = Duration::from_secs(2);

/// Runs until `stopped` turns true.
pub(crate) async fn run(broker: Arc<Broker>, mut stopped: watch::Receiver<bool>) {
    let registry_changed = Arc::new(Notify::new());
    let weak = Arc::downgrade(&broker);
    let told = registry_changed.clone();
    broker.store().watch_foreign_commits(Arc::new(move |change| {
        if let Some(broker) = weak.upgrade() {
            broker.notify_change();
        }
        if change.registry {
            told.notify_one();
        }
    }));
    let mut probe_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = registry_changed.notified() => {}
            () = tokio::time::sleep(POLL) => broker.notify_change(),
            _ = stopped.changed() => return,
        }
        if *stopped.borrow() {
            return;
        }
        if tokio::time::Instant::now() >= probe_at {
            probe_at = tokio::time::Instant::now() + PROBE;
            let answered = broker.store().reachable();
            if let Err(err) = &answered {
                tracing::warn!(error = %err, "the store's database does not answer: not serving");
            } else if !*broker.watch_store_reachable().borrow() {
                tracing::info!("the store's database answers again: serving");
            }
            broker.set_store_reachable(answered.is_ok());
        }
        if let Err(err) = broker.reload_registry().await {
            tracing::warn!(error = %err, "cannot read the registry again; keeping the one read before");
        }
    }
}
