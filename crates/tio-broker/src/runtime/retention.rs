//! The broker's scheduled duties. The retention sweeper works out every child's retention (`tio_core::retention`)
//! from what the store holds, and erases the records that are due, as an admin's
//! erasure does (the key destroyed, an erasure notice for every past recipient, an
//! audit entry naming the child by blind index only). The server runs it on a
//! schedule; `tio store retention` runs it on a stopped store, or lists what is due.
//! The same schedule raises the consent-review alerts (`app::reviews`).

use std::sync::Arc;
use std::time::Duration;

use tio_audit::entry::{Action, Actor, AuditEntry, Outcome};
use tio_audit_log::{ERASURE_DETAIL, entry_op};
use tio_core::retention::{ChildRetention, RetentionPolicy, child_retention};
use tio_core::{Date, Timestamp};
use tio_store::{ChildIndex, Store, StoreError};
use tokio::sync::watch;

use crate::app::broker::Broker;

/// The role an audit entry names for what the broker does of itself.
pub const BROKER_ROLE: &str = "broker";

/// Children read from the store at a time.
const PAGE: usize = 512;

/// How long after start the first sweep runs: once the server is serving.
const FIRST_SWEEP: Duration = Duration::from_secs(5);

/// One child's retention, by blind index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildPlan {
    /// The child.
    pub child: ChildIndex,
    /// Its retention, category by category.
    pub retention: ChildRetention,
}

/// Works out the retention of every child the store can still read, calling
/// `progress(children read)` as it goes.
pub fn plan(
    store: &Store,
    policy: &RetentionPolicy,
    mut progress: impl FnMut(u64),
) -> Result<Vec<ChildPlan>, StoreError> {
    let mut plans = Vec::new();
    let mut after = None;
    loop {
        let page = store.retention_facts(after, PAGE)?;
        let Some(last) = page.last() else { return Ok(plans) };
        after = Some(last.child);
        for facts in page {
            let retention = child_retention(policy, facts.date_of_birth, &facts.last_updates);
            plans.push(ChildPlan { child: facts.child, retention });
        }
        progress(plans.len() as u64);
    }
}

/// Erases the child of `plan` if it is due on `today`, with the audit entry of the
/// sweep (made at `now`). Returns whether it erased it (false if it was not due, or
/// was erased meanwhile).
pub async fn erase_if_due(store: &Store, plan: &ChildPlan, today: Date, now: Timestamp) -> Result<bool, StoreError> {
    let (Some(erase_on), true) = (plan.retention.erase_on, plan.retention.is_due(today)) else { return Ok(false) };
    let Some(child) = store.child_at(plan.child)? else { return Ok(false) };
    let kept: Vec<String> = plan
        .retention
        .categories
        .iter()
        .map(|category| format!("{} until {} ({})", category.category, category.expires_on, category.kept_by))
        .collect();
    let entry = AuditEntry {
        action: Action::Admin.code().to_owned(),
        actor: Actor { role: BROKER_ROLE.to_owned(), id: "retention".to_owned(), ..Actor::default() },
        outcome: Outcome::Allowed.code().to_owned(),
        time_micros: now.unix_micros(),
        child_index: plan.child.to_hex(),
        detail: format!(
            "{ERASURE_DETAIL}retention-{erase_on} (every category past its retention: {})",
            kept.join("; ")
        ),
        ..AuditEntry::default()
    };
    store.erase_child_with(&child, vec![entry_op(&entry)], "retention", now).await
}

/// The broker's own duties, every `every` (the first after [`FIRST_SWEEP`]) until
/// `stop` turns true: the retention sweep, then the consent-review alerts that are due
/// (`app::reviews`).
pub(crate) async fn run(
    broker: Arc<Broker>,
    policy: RetentionPolicy,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = FIRST_SWEEP.min(every);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = every;
        match sweep(&broker, &policy).await {
            Ok(0) => {}
            Ok(erased) => tracing::info!(retention.erased = erased, "retention sweep erased expired records"),
            Err(err) => tracing::error!(error = %err, "retention sweep failed; it runs again at the next interval"),
        }
        let now = broker.now();
        let Some(today) = now.uk_date() else { continue };
        match crate::app::reviews::raise_due(&broker, today, now).await {
            Ok(0) => {}
            Ok(raised) => tracing::info!(reviews.raised = raised, "consent review alerts raised"),
            Err(err) => {
                tracing::error!(error = %err, "consent review alerts failed; they are tried again at the next interval")
            }
        }
    }
}

/// One sweep: every child due today erased. Returns how many were.
async fn sweep(broker: &Broker, policy: &RetentionPolicy) -> Result<u64, StoreError> {
    let now = broker.now();
    let Some(today) = now.uk_date() else { return Ok(0) };
    let store = broker.store().clone();
    // Reading every child is blocking store work: off the async threads.
    let plans = {
        let (store, policy) = (store.clone(), policy.clone());
        tokio::task::spawn_blocking(move || plan(&store, &policy, |_| {}))
            .await
            .map_err(|err| StoreError::Corrupt(format!("the retention plan failed: {err}")))??
    };
    let mut erased = 0;
    for plan in plans.iter().filter(|plan| plan.retention.is_due(today)) {
        if erase_if_due(&store, plan, today, now).await? {
            erased += 1;
            tracing::info!(child.index = %plan.child, "retention: child erased");
        }
    }
    if erased > 0 {
        // Queued deliveries of the erased are dropped, and their notices go out.
        broker.notify_change();
    }
    Ok(erased)
}
