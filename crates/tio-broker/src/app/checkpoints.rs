//! Building the audit tree and signing checkpoints on a schedule: the tree is extended
//! with every committed entry every half second, a checkpoint signed every N entries or
//! T seconds, and a last one at shutdown.
//!
//! On a store several nodes share, one node at a time does this, the audit log's
//! sequencer: the node that holds the lease `audit/sequencer` (taken when free or
//! lapsed, as a stream's is). Another node takes over once a dead sequencer's lease
//! lapses. The lease is for economy, not safety: each step of the tree is written on
//! condition that the tree is as the step read it, so two nodes that both believed they
//! sequenced could never fork it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tio_audit_log::{AuditError, AuditLog};
use tio_store::Store;
use tokio::sync::watch;

use crate::app::leases::{self, HeldLease};
use crate::runtime::config::AuditConfig;

/// How often the task looks at the log; an entry is in the tree at most this late
/// (after its commit) while the task's steps succeed.
const POLL: Duration = Duration::from_millis(500);

/// The longest wait between tries while building or signing fails (a database that
/// does not answer); the task never gives up while the node runs.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// The name of the sequencer's lease on a shared store.
const SEQUENCER_LEASE: &str = "audit/sequencer";

/// Decides when a checkpoint is due: `pending` entries not yet covered, the first of
/// which has waited `waited`.
pub(crate) fn checkpoint_due(config: &AuditConfig, pending: u64, waited: Duration) -> bool {
    pending > 0
        && (pending >= config.checkpoint_every_entries
            || waited >= Duration::from_secs(config.checkpoint_interval_seconds))
}

/// Which node builds and signs: on a store no other node writes, this one; on a shared
/// store, the holder of the sequencer's lease, `lease` long.
pub(crate) struct Sequencing {
    /// The store the log is in.
    pub(crate) store: Arc<Store>,
    /// How long the sequencer's lease lasts unrenewed.
    pub(crate) lease: Duration,
}

/// Runs until `stop` turns true, then signs a last checkpoint covering everything (if
/// this node sequences).
pub(crate) async fn run(
    log: Arc<AuditLog>,
    config: AuditConfig,
    sequencing: Sequencing,
    mut stop: watch::Receiver<bool>,
) -> Result<(), AuditError> {
    let shared = sequencing.store.shared();
    let holder = leases::holder_id();
    // On a shared store, the sequencer's lease while this node holds it.
    let mut sequencer: Option<HeldLease> = None;
    let mut covered: Option<u64> = None;
    let mut pending_since: Option<Instant> = None;
    let mut pause = POLL;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            () = tokio::time::sleep(pause) => {}
        }
        if shared && !keep_sequencing(&sequencing, &holder, &mut sequencer).await {
            // Another node sequences: what it signs is read from the store when asked.
            covered = None;
            pending_since = None;
            pause = POLL;
            continue;
        }
        match step(&log, &config, &mut covered, &mut pending_since).await {
            Ok(()) => pause = POLL,
            Err(err) => {
                tracing::warn!(error = %err, "building or signing the audit tree failed; trying again");
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
    if shared && sequencer.is_none() {
        return Ok(());
    }
    let covered = checkpoint_size(&log)?;
    if log.build().await? > covered || log.latest_checkpoint()?.is_none() {
        log.checkpoint().await?;
        tracing::info!("signed audit checkpoint at shutdown");
    }
    if let Some(lease) = sequencer {
        lease.release(&sequencing.store).await;
    }
    Ok(())
}

/// Extends the tree with what was committed since, and signs a checkpoint if one is due.
async fn step(
    log: &AuditLog,
    config: &AuditConfig,
    covered: &mut Option<u64>,
    pending_since: &mut Option<Instant>,
) -> Result<(), AuditError> {
    let covered_size = match *covered {
        Some(size) => size,
        None => *covered.insert(checkpoint_size(log)?),
    };
    let size = log.build().await?;
    let pending = size.saturating_sub(covered_size);
    if pending == 0 {
        return Ok(());
    }
    let since = *pending_since.get_or_insert_with(Instant::now);
    if checkpoint_due(config, pending, since.elapsed()) {
        log.checkpoint().await?;
        tracing::info!(audit.size = size, "signed audit checkpoint");
        *covered = Some(size);
        *pending_since = None;
    }
    Ok(())
}

/// Whether this node sequences now: takes the sequencer's lease when it is free or
/// lapsed, and renews it when due; says so in the log when that changes.
async fn keep_sequencing(sequencing: &Sequencing, holder: &str, sequencer: &mut Option<HeldLease>) -> bool {
    let store = &sequencing.store;
    match sequencer {
        Some(lease) => match lease.keep(store).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!("another node took over sequencing the audit log (this one did not renew in time)");
                *sequencer = None;
                false
            }
            Err(err) => {
                // Building would fail the same way; the lease is tried again next time.
                tracing::warn!(error = %err, "cannot renew the audit sequencer's lease");
                false
            }
        },
        None => match leases::take(store, SEQUENCER_LEASE, holder, sequencing.lease).await {
            Ok(Some(lease)) => {
                tracing::info!("this node now sequences the audit log");
                *sequencer = Some(lease);
                true
            }
            Ok(None) => false,
            Err(err) => {
                tracing::debug!(error = %err, "cannot read the audit sequencer's lease");
                false
            }
        },
    }
}

/// Returns how many entries the latest checkpoint covers.
fn checkpoint_size(log: &AuditLog) -> Result<u64, AuditError> {
    Ok(log.latest_checkpoint_opened()?.map_or(0, |checkpoint| checkpoint.size))
}

#[cfg(test)]
mod tests {
    use tio_audit::entry::AuditEntry;
    use tio_audit::note::Signer;
    use tio_store::Store;
    use tio_store::keys::KeyRing;

    use super::*;

    #[test]
    fn due_after_n_entries_or_t_seconds_never_when_idle() {
        let config = AuditConfig { checkpoint_every_entries: 100, checkpoint_interval_seconds: 60 };
        assert!(!checkpoint_due(&config, 0, Duration::from_secs(3600)), "nothing new, nothing to sign");
        assert!(!checkpoint_due(&config, 99, Duration::from_secs(59)));
        assert!(checkpoint_due(&config, 100, Duration::ZERO));
        assert!(checkpoint_due(&config, 1, Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn the_task_signs_when_due_and_at_shutdown() {
        let store = Arc::new(Store::in_memory(KeyRing::generate().unwrap()).unwrap());
        let log = Arc::new(AuditLog::new(store.clone(), Signer::generate("tio.test/audit").unwrap()));
        let config = AuditConfig { checkpoint_every_entries: 3, checkpoint_interval_seconds: 3600 };
        let (stop, stopped) = watch::channel(false);
        let sequencing = Sequencing { store: store.clone(), lease: Duration::from_secs(10) };
        let task = tokio::spawn(run(log.clone(), config, sequencing, stopped));
        let entry = AuditEntry { action: "admin".into(), ..AuditEntry::default() };
        log.append(&[entry.clone(), entry.clone(), entry.clone()]).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while checkpoint_size(&log).unwrap() < 3 {
            assert!(Instant::now() < deadline, "no checkpoint after 3 entries");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        log.append(&[entry]).await.unwrap();
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        assert_eq!(checkpoint_size(&log).unwrap(), 4, "the last entry is covered at shutdown");
    }
}
