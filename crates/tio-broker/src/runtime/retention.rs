//! The broker's scheduled duties. The retention sweeper works out every child's
//! retention (`tio_core::retention`) from what the store holds, and erases what is
//! due: a category past its retention on its own (its key destroyed), or the whole
//! record once every category is, as an admin's erasure does. Either way an erasure
//! notice goes to every past recipient of each erased value, and an audit entry names
//! the child by blind index only. The server runs it on a
//! schedule; `tio store retention` runs it on a stopped store, or lists what is due.
//! The same schedule raises the consent-review alerts (`app::reviews`).

use std::sync::Arc;
use std::time::Duration;

use tio_audit::entry::{Action, Actor, AuditEntry, Outcome};
use tio_audit_log::{CATEGORY_ERASURE_DETAIL, ERASURE_DETAIL, entry_op};
use tio_core::retention::{ChildRetention, RetentionDue, RetentionPolicy, child_retention};
use tio_core::{Category, Date, Timestamp};
use tio_store::{ChildIndex, CurrentValue, Store, StoreError};
use tokio::sync::watch;

use crate::app::broker::Broker;

/// The role an audit entry names for what the broker does of itself.
pub const BROKER_ROLE: &str = "broker";

/// How long after start the first sweep runs: once the server is serving.
const FIRST_SWEEP: Duration = Duration::from_secs(5);

/// One child's retention, by blind index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildPlan {
    /// The child.
    pub child: ChildIndex,
    /// Its retention, category by category.
    pub retention: ChildRetention,
    /// Each category's current value: a category's erasure goes ahead only while the
    /// value it was decided on is still current.
    pub current: Vec<CurrentValue>,
}

/// What one child's erasure did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    /// The whole record was erased.
    pub child: bool,
    /// These categories were erased on their own.
    pub categories: Vec<Category>,
}

impl Erased {
    /// Whether anything was erased.
    pub fn any(&self) -> bool {
        self.child || !self.categories.is_empty()
    }
}

/// Works out the retention of every child the store can still read, calling
/// `progress(children read)` as it goes.
pub fn plan(
    store: &Store,
    policy: &RetentionPolicy,
    mut progress: impl FnMut(u64),
) -> Result<Vec<ChildPlan>, StoreError> {
    let mut plans = Vec::new();
    let mut pages = store.child_pages();
    while let Some(page) = pages.next_page()? {
        for facts in page {
            let retention = child_retention(policy, facts.date_of_birth, &facts.last_updates(), &facts.erased);
            plans.push(ChildPlan { child: facts.child, retention, current: facts.current });
        }
        progress(plans.len() as u64);
    }
    Ok(plans)
}

/// Erases what of the child of `plan` is due on `today` (each category past its
/// retention, or the whole record), each erasure with its audit entry (made at `now`).
/// Returns what it erased: nothing if nothing was due, or if the child was erased or a
/// category updated meanwhile (its retention starts again).
pub async fn erase_if_due(store: &Store, plan: &ChildPlan, today: Date, now: Timestamp) -> Result<Erased, StoreError> {
    let Some(child) = store.child_at(plan.child)? else { return Ok(Erased::default()) };
    let entry = |detail: String, categories: Vec<String>| AuditEntry {
        action: Action::Admin.code().to_owned(),
        actor: Actor { role: BROKER_ROLE.to_owned(), id: "retention".to_owned(), ..Actor::default() },
        outcome: Outcome::Allowed.code().to_owned(),
        time_micros: now.unix_micros(),
        child_index: plan.child.to_hex(),
        categories,
        detail,
        ..AuditEntry::default()
    };
    let mut erased = Erased::default();
    match plan.retention.due(today) {
        RetentionDue::Nothing => {}
        RetentionDue::Child => {
            let kept: Vec<String> = plan
                .retention
                .categories
                .iter()
                .map(|category| format!("{} until {} ({})", category.category, category.expires_on, category.kept_by))
                .collect();
            let detail = match plan.retention.erase_on {
                Some(erase_on) => format!(
                    "{ERASURE_DETAIL}retention-{erase_on} (every category past its retention: {})",
                    kept.join("; ")
                ),
                None => format!("{ERASURE_DETAIL}retention-{today} (every value was erased before)"),
            };
            let entry = entry(detail, Vec::new());
            erased.child = store.erase_child_with(&child, vec![entry_op(&entry)], "retention", now).await?;
        }
        RetentionDue::Categories(due) => {
            for category in due {
                let Some(current) = plan.current.iter().find(|value| value.category == category.category) else {
                    continue;
                };
                let detail = format!(
                    "{CATEGORY_ERASURE_DETAIL}{} retention-{} (last update {}, kept until {} by {})",
                    category.category, category.expires_on, category.last_update, category.expires_on, category.kept_by
                );
                let entry = entry(detail, vec![category.category.as_str().to_owned()]);
                let ops = vec![entry_op(&entry)];
                if store
                    .erase_category_with(&child, category.category, Some(&current.position), ops, "retention", now)
                    .await?
                {
                    erased.categories.push(category.category);
                }
            }
        }
    }
    Ok(erased)
}

/// The broker's own duties, every `every` (the first after [`FIRST_SWEEP`]) until
/// `stop` turns true: the retention sweep, then the consent-review alerts that are due
/// (`app::reviews`), then the transition milestones past due
/// (`app::assessments::transitions`) and the EHC assessment deadline alerts
/// (`app::assessments::deadline_alerts`).
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
        match crate::app::assessments::transitions::missed_milestone_alerts(&broker, today, now).await {
            Ok(0) => {}
            Ok(raised) => tracing::info!(milestones.raised = raised, "transition milestone alerts raised"),
            Err(err) => tracing::error!(
                error = %err,
                "transition milestone alerts failed; they are tried again at the next interval"
            ),
        }
        match crate::app::assessments::deadline_alerts(&broker, today, now).await {
            Ok(0) => {}
            Ok(raised) => tracing::info!(deadlines.raised = raised, "assessment deadline alerts raised"),
            Err(err) => tracing::error!(
                error = %err,
                "assessment deadline alerts failed; they are tried again at the next interval"
            ),
        }
    }
}

/// One sweep: everything due today erased. Returns how many erasures (of a child or of
/// one category) there were.
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
    for plan in plans.iter().filter(|plan| plan.retention.due(today) != RetentionDue::Nothing) {
        let done = erase_if_due(&store, plan, today, now).await?;
        if done.child {
            erased += 1;
            tracing::info!(child.index = %plan.child, "retention: child erased");
        }
        for category in &done.categories {
            erased += 1;
            tracing::info!(child.index = %plan.child, category = category.as_str(), "retention: category erased");
        }
    }
    if erased > 0 {
        // Queued deliveries of the erased are dropped, and their notices go out.
        broker.notify_change();
    }
    Ok(erased)
}
