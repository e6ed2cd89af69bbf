//! Signing audit checkpoints on a schedule: every N entries or T seconds, and at
//! shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tio_audit_log::{AuditError, AuditLog};
use tokio::sync::watch;

use crate::runtime::config::AuditConfig;

/// How often the task looks at the log; a checkpoint is at most this late.
const POLL: Duration = Duration::from_millis(500);

/// Decides when a checkpoint is due: `pending` entries not yet covered, the first of
/// which has waited `waited`.
pub(crate) fn checkpoint_due(config: &AuditConfig, pending: u64, waited: Duration) -> bool {
    pending > 0
        && (pending >= config.checkpoint_every_entries
            || waited >= Duration::from_secs(config.checkpoint_interval_seconds))
}

/// Runs until `stop` turns true, then signs a last checkpoint covering everything.
pub(crate) async fn run(
    log: Arc<AuditLog>,
    config: AuditConfig,
    mut stop: watch::Receiver<bool>,
) -> Result<(), AuditError> {
    let mut covered = checkpoint_size(&log)?;
    let mut pending_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            () = tokio::time::sleep(POLL) => {}
        }
        let size = log.build().await?;
        let pending = size.saturating_sub(covered);
        if pending == 0 {
            continue;
        }
        let since = *pending_since.get_or_insert_with(Instant::now);
        if checkpoint_due(&config, pending, since.elapsed()) {
            log.checkpoint().await?;
            tracing::info!(audit.size = size, "signed audit checkpoint");
            covered = size;
            pending_since = None;
        }
    }
    if log.build().await? > covered || log.latest_checkpoint()?.is_none() {
        log.checkpoint().await?;
        tracing::info!("signed audit checkpoint at shutdown");
    }
    Ok(())
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
        let log = Arc::new(AuditLog::new(store, Signer::generate("tio.test/audit").unwrap()));
        let config = AuditConfig { checkpoint_every_entries: 3, checkpoint_interval_seconds: 3600 };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(log.clone(), config, stopped));
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
