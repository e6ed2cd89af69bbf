//! Delivering on an open subscription: one path, [`Deliverer::commit_steps`], for every
//! kind of delivery (live updates, the profile of a profile-then-live start, and
//! redeliveries of what was sent and not acked). It decides each update for the agency
//! now, commits the deliveries, the refusals worth auditing and the moved head in one
//! batch under the preconditions of every grant, and only then hands the deliveries
//! out to be sent. If a precondition fails (a consent or relationship changed while the
//! batch was decided) nothing of it is kept, and the updates go again one at a time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tio_audit::entry::{Action as AuditAction, AuditEntry, Outcome};
use tio_audit_log::entry_op;
use tio_core::{AccessRequest, Action, Agency, Category, Decision, DenyReason, Service, WithoutConsent, decide};
use tio_store::cursors::{self, ProfilePhase, SubscriptionHead as Head, UnackedDelivery as Unacked};
use tio_store::{AmendKind, Amends, Batch, Child, ChildIndex, Op, Position, StoredUpdate};

use super::{MAX_MAX_IN_FLIGHT, head_categories, not_found, stream_key};
use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;
use crate::app::facts::{ChildFacts, DomainFacts, load_facts, load_facts_for_guarded_commit};
use crate::app::registry::AuthError;
use crate::app::sharing::{fill_alert, fill_grant, fill_share_alert, flag_access_alert};
use crate::app::streams::StreamClaim;

/// Updates read from the store per step.
const READ_PAGE: usize = 256;

/// How long acks and a moved cursor may wait for a delivery's commit to carry them
/// before the stream stores them on their own. Storing them at every quiet moment cost a
/// sync per ack; a crash in this window costs only redeliveries (at least once).
pub(crate) const ACK_STORE_DELAY: Duration = Duration::from_millis(500);

/// How often one delivery is decided again when what allowed it keeps changing.
const MAX_ATTEMPTS: usize = 4;

/// One delivery, committed and ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// Its number on the subscription (dense, from 1).
    pub(crate) number: u64,
    /// Whether it was sent before and not acked.
    pub(crate) redelivery: bool,
    /// The update.
    pub(crate) update: StoredUpdate,
    /// The child, which the recipient is entitled to know; `None` for an erasure
    /// notice (the child's number went with its key).
    pub(crate) child: Option<Child>,
    /// Whether it comes from the profile of a profile-then-live start.
    pub(crate) from_profile: bool,
    /// Set when it tells the agency of an amendment of an update it was given.
    pub(crate) amendment: Option<Notice>,
}

/// A delivery that tells a past recipient of an amendment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Notice {
    /// The kind of amendment and the update it amends.
    pub(crate) amends: Amends,
    /// Whether the delivery carries the corrected value (the agency may see it now).
    pub(crate) with_value: bool,
}

/// How an update in the log reaches this agency.
enum Route {
    /// As a value, decided now.
    Value,
    /// As a notice of an amendment of an update the agency was given, with the
    /// corrected value if `with_value` and the agency may see it now.
    Notice { amends: Amends, with_value: bool },
    /// Not at all: a value amended since (its amendment follows in the log), or an
    /// amendment of an update this agency never had.
    Skip,
}

/// What one step of the delivery path considers.
#[derive(Debug, Clone)]
struct Step {
    /// The update to decide, if it is one the subscription takes (`None`: only move on).
    update: Option<StoredUpdate>,
    /// A redelivery's number, or `None` for a new delivery.
    redelivery: Option<u64>,
    /// Whether the delivery numbered `redelivery` was committed and never sent: it is
    /// decided again because what allowed it changed before it could be sent.
    resend: bool,
    from_profile: bool,
    /// Whether only a notice of an amendment may go (the subscription takes the
    /// category only for amendments no subscription of the agency would carry).
    notice_only: bool,
    /// How the head moves past this step.
    advance: Advance,
}

#[derive(Debug, Clone)]
enum Advance {
    None,
    /// The live cursor moves to this position.
    Cursor(Vec<u8>),
    /// The profile phase moves past this latest-value key.
    Profile(Vec<u8>),
}

/// One step's decisions, as [`Deliverer::plan_steps`] makes them: the batch that commits
/// them, and what the stream becomes once it has.
pub(crate) struct Plan {
    batch: Batch,
    head: Head,
    /// The deliveries to send.
    deliveries: Vec<Planned>,
    new_unacked: Vec<(u64, Unacked)>,
    withdrawn: Vec<u64>,
    denials: Vec<DenyReason>,
}

impl Plan {
    /// The batch that commits the plan.
    pub(crate) fn batch_mut(&mut self) -> &mut Batch {
        &mut self.batch
    }
}

/// A delivery committed and not yet sent, with what its grant relied on.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    delivery: Delivery,
    /// The preconditions its grant committed under (none for a notice that carries no
    /// value): while they all still hold, so does the grant.
    relied_on: Vec<tio_store::Condition>,
    /// Its step's `notice_only`, to decide it again the same way.
    notice_only: bool,
}

/// What the update follower made of a parked stream's next updates.
pub(crate) enum Followed {
    /// Nothing for the stream among them: its cursor moved past them.
    Moved,
    /// Deliveries (or refusals worth auditing) to commit with the publish.
    Commit(Box<Plan>),
    /// The stream must read and decide for itself.
    Wake,
}

/// A child's facts as read for decisions: `None` once the child is erased.
struct Loaded {
    child: Child,
    facts: ChildFacts,
    domain: DomainFacts,
    /// Whether they were read now, or are what this node kept and known to be current
    /// (on a store no other node writes). If not, a refusal is decided again on facts
    /// read now, since no precondition would catch a consent given meanwhile.
    current: bool,
}

/// The delivery state of one open subscription.
pub(crate) struct Deliverer {
    broker: Arc<Broker>,
    call: Call,
    agency: String,
    head: Head,
    unacked: BTreeMap<u64, Unacked>,
    window: u32,
    /// Since when the head has had changes not yet stored (a cursor moved past skipped
    /// updates, acks), if it has.
    dirty: Option<tokio::time::Instant>,
    /// Delivery numbers acked since the state was last stored.
    acked: Vec<u64>,
    /// The subscription's open-stream claim, held while the deliverer lives.
    claim: Option<StreamClaim>,
    /// What decides its deliveries.
    decider: Arc<Decider>,
    /// The one-copy rule's categories as last read, kept while the agency's
    /// subscriptions are unchanged: reading them is a scan of heads that every delivery
    /// rewrites, which in a log-structured index store walks each old version.
    one_copy: Option<OneCopy>,
}

/// What a subscription takes: its categories less those an earlier subscription of the
/// agency delivers, and amendments of categories none of the agency's takes if it is the
/// first.
struct Takes {
    categories: Vec<Category>,
    shadowed: Vec<Category>,
    orphans: Vec<Category>,
}

impl Takes {
    /// Whether the subscription delivers values of `update`'s category.
    fn subscribed(&self, update: &StoredUpdate) -> bool {
        self.categories.contains(&update.category) && !self.shadowed.contains(&update.category)
    }

    /// Whether `update` goes on this subscription at all: a value it subscribes to, or
    /// an amendment of a category no subscription of the agency takes (it was shown in a
    /// profile read), which goes on the agency's first subscription.
    fn taken(&self, update: &StoredUpdate) -> bool {
        self.subscribed(update) || (update.amends.is_some() && self.orphans.contains(&update.category))
    }
}

/// What the one-copy rule leaves a stream, as read at a moment.
struct OneCopy {
    /// [`Broker::subscriptions_generation`] when it was read.
    generation: u64,
    read_at: std::time::Instant,
    /// Categories an earlier subscription of the agency delivers.
    shadowed: Vec<Category>,
    /// Categories no subscription of the agency takes, if this is its first one.
    orphans: Vec<Category>,
}

/// How long the one-copy rule's reading holds on a store other nodes share, where a
/// subscription may be created or deleted without this node knowing: changes there take
/// effect within this time, as suspensions do.
const ONE_COPY_FRESH_SHARED: Duration = Duration::from_secs(1);

/// How many children a stream remembers before it starts again.
const MAX_CHILDREN_REMEMBERED: usize = 4096;

impl Deliverer {
    /// Opens the calling agency's subscription `name` for delivery, with `credit`
    /// deliveries in flight (0: as many as the subscription allows). Nothing is
    /// delivered before [`Deliverer::claim`].
    pub(crate) async fn open(
        broker: Arc<Broker>,
        call: Call,
        name: &str,
        credit: u32,
    ) -> Result<Deliverer, ServiceError> {
        let agency = broker.agency_call(&call, Service::Subscriptions, AuditAction::Delivery).await?;
        let id = agency.id.as_str().to_owned();
        let store = broker.store();
        let head = store.subscription_head(&id, name)?.ok_or_else(|| not_found(name))?.head;
        let unacked = store.unacked_deliveries(&id, name, MAX_MAX_IN_FLIGHT as usize + 1)?;
        let window = match credit {
            0 => head.max_in_flight,
            credit => credit.min(head.max_in_flight),
        };
        let decider = Arc::new(Decider {
            broker: broker.clone(),
            call: call.clone(),
            agency: id.clone(),
            children: std::sync::Mutex::default(),
        });
        Ok(Deliverer {
            broker,
            call,
            agency: id,
            head,
            unacked,
            window,
            dirty: None,
            acked: Vec::new(),
            claim: None,
            decider,
            one_copy: None,
        })
    }

    /// Claims the subscription for this stream: only one stream may have it open. On a
    /// store other nodes share, the head and unacked deliveries are read again once
    /// the claim is held, as the stream that held it before may have moved them.
    pub(crate) async fn claim(&mut self) -> Result<(), ServiceError> {
        let key = stream_key(&self.agency, &self.head.name);
        let Some(claim) = self.broker.claim_stream(&key).await? else {
            let lease = self.broker.stream_lease().as_secs();
            return Err(ServiceError::failed_precondition(
                "STREAM_ALREADY_OPEN",
                self.subject(),
                format!(
                    "subscription `{}` is already open on another stream (a stream whose broker node stopped is \
                     freed within {lease} s)",
                    self.head.name
                ),
            ));
        };
        if claim.holds().is_some() {
            let store = self.broker.store();
            self.head =
                store.subscription_head(&self.agency, &self.head.name)?.ok_or_else(|| not_found(&self.head.name))?.head;
            self.unacked = store.unacked_deliveries(&self.agency, &self.head.name, MAX_MAX_IN_FLIGHT as usize + 1)?;
            self.window = self.window.min(self.head.max_in_flight);
        }
        self.claim = Some(claim);
        Ok(())
    }

    /// What refusals about this stream name.
    fn subject(&self) -> String {
        format!("subscription/{}", self.head.name)
    }

    /// Refuses to deliver without the claim: two streams on one subscription would
    /// hand out the same numbers.
    fn claimed(&self) -> Result<(), ServiceError> {
        match self.claim {
            Some(_) => Ok(()),
            None => Err(ServiceError::Internal("a subscription was delivered on without its claim".to_owned())),
        }
    }

    /// Renews the stream's lease when due (on a store other nodes share).
    pub(crate) async fn keep_claim(&mut self) -> Result<(), ServiceError> {
        let subject = self.subject();
        match &mut self.claim {
            Some(claim) => claim.keep(&subject).await,
            None => Ok(()),
        }
    }

    /// When the stream's lease is next due for renewal, if it has one.
    pub(crate) fn claim_renew_at(&self) -> Option<tokio::time::Instant> {
        self.claim.as_ref().and_then(StreamClaim::renew_at)
    }

    /// Starts `batch` with the precondition that the stream still holds its lease, if
    /// it has one: condition 0, so that a conflict there is told apart.
    fn fenced_batch(&self) -> Batch {
        let mut batch = Batch::new();
        if let Some(holds) = self.claim.as_ref().and_then(StreamClaim::holds) {
            batch.require(holds);
        }
        batch
    }

    /// Whether a conflict on condition `index` of a fenced batch is the lost lease.
    fn lost_claim(&self, index: usize) -> bool {
        index == 0 && self.claim.as_ref().is_some_and(|claim| claim.holds().is_some())
    }

    /// Returns the number of the latest delivery and the live cursor, for a heartbeat.
    pub(crate) fn progress(&self) -> (u64, Option<Vec<u8>>) {
        (self.head.next_number - 1, self.head.cursor.clone())
    }

    /// Returns whether the window has room for another delivery.
    pub(crate) fn has_room(&self) -> bool {
        (self.unacked.len() as u64) < u64::from(self.window)
    }

    /// Returns the agency as registered now, or the refusal a new call would get if it
    /// may no longer connect (suspended, certificate revoked, removed).
    pub(crate) fn current_agency(&self) -> Result<Agency, ServiceError> {
        self.decider.current_agency()
    }

    /// What decides this stream's deliveries, to use without the deliverer.
    pub(crate) fn decider(&self) -> Arc<Decider> {
        self.decider.clone()
    }

    /// Frees the slots of acked deliveries. A number never sent is the client's fault;
    /// one acked already, or no longer in flight, is ignored (acks may be sent again
    /// after a reconnect). Acks are stored with the next commit, or by the stream once
    /// they have waited [`ACK_STORE_DELAY`]: an ack lost to a crash only means one more
    /// redelivery (at least once).
    pub(crate) async fn ack(&mut self, numbers: &[u64], max_per_message: usize) -> Result<(), ServiceError> {
        check_acks(numbers, max_per_message, self.progress().0)?;
        self.apply_acks(numbers);
        if self.acked.len() >= max_per_message {
            self.store_head().await?;
        }
        Ok(())
    }

    /// Frees the slots of acked deliveries already checked ([`check_acks`]).
    pub(crate) fn apply_acks(&mut self, numbers: &[u64]) {
        for number in numbers {
            if self.unacked.remove(number).is_some() {
                self.acked.push(*number);
                self.head.last_acked = self.head.last_acked.max(*number);
                self.mark_dirty();
            }
        }
    }

    /// Widens the window by `additional` deliveries, up to the subscription's maximum.
    pub(crate) fn credit(&mut self, additional: u32) -> Result<(), ServiceError> {
        if additional == 0 {
            return Err(invalid("credit.additional", "must be at least 1"));
        }
        self.window = self.window.saturating_add(additional).min(self.head.max_in_flight);
        Ok(())
    }

    /// Stores the head if it has changes (acks, a cursor moved past skipped updates).
    pub(crate) async fn flush(&mut self) -> Result<(), ServiceError> {
        if self.dirty.is_some() { self.store_head().await } else { Ok(()) }
    }

    /// Returns since when the head has had changes not yet stored, if it has.
    pub(crate) fn unstored_since(&self) -> Option<tokio::time::Instant> {
        self.dirty
    }

    fn mark_dirty(&mut self) {
        self.dirty.get_or_insert_with(tokio::time::Instant::now);
    }

    /// Records why the stream ended (`None`: the client went away) and stores the head.
    pub(crate) async fn close(&mut self, error: Option<String>) {
        if let Some(error) = error {
            self.head.last_error = error;
            self.mark_dirty();
        }
        // Keep the cursor moved past skipped updates, and the last error; a failure here
        // costs only a redelivery.
        let _ = self.flush().await;
        if let Some(claim) = self.claim.take() {
            claim.release().await;
        }
    }

    /// Decides again every unacked delivery: those still allowed are returned to be
    /// sent again with their numbers; the rest leave the window (a refusal audited).
    pub(crate) async fn redeliver(&mut self) -> Result<Vec<Delivery>, ServiceError> {
        self.claimed()?;
        let agency = self.current_agency()?;
        let store = self.broker.store().clone();
        let mut steps = Vec::new();
        for (number, unacked) in &self.unacked {
            let update = store.update_at(&Position::from_bytes(unacked.position.clone()))?;
            steps.push(Step {
                update,
                redelivery: Some(*number),
                resend: false,
                from_profile: unacked.from_profile,
                notice_only: false,
                advance: Advance::None,
            });
        }
        self.deliver(&agency, steps).await
    }

    /// Takes the next step: the next page of the profile, or of live updates. Returns
    /// `None` when there is nothing new.
    pub(crate) async fn next(&mut self, agency: &Agency) -> Result<Option<Vec<Delivery>>, ServiceError> {
        self.claimed()?;
        let takes = self.takes()?;
        let store = self.broker.store().clone();
        let mut steps = Vec::new();
        if let ProfilePhase::Sending { after } = &self.head.profile {
            let page = store.latest_after(after.as_deref(), READ_PAGE)?;
            if page.is_empty() {
                self.head.profile = ProfilePhase::Done;
                self.mark_dirty();
                return Ok(Some(Vec::new()));
            }
            for (latest_key, position) in page {
                // Values newer than the live cursor come in the live phase: no duplicate.
                let before_cursor = self.head.cursor.as_deref().is_some_and(|cursor| position.as_bytes() <= cursor);
                let update = if before_cursor { store.update_at(&position)?.filter(|u| takes.taken(u)) } else { None };
                let notice_only = update.as_ref().is_some_and(|update| !takes.subscribed(update));
                steps.push(Step {
                    update,
                    redelivery: None,
                    resend: false,
                    from_profile: true,
                    notice_only,
                    advance: Advance::Profile(latest_key),
                });
            }
        } else {
            let after = self.head.cursor.clone().map(Position::from_bytes);
            let page = store.updates_after(after.as_ref(), READ_PAGE)?;
            if page.is_empty() {
                return Ok(None);
            }
            steps = self.live_steps(&takes, page);
        }
        self.deliver(agency, steps).await.map(Some)
    }

    /// What this subscription takes now, by the one-copy rule.
    fn takes(&mut self) -> Result<Takes, ServiceError> {
        let (shadowed, orphans) = self.shadowed_categories()?;
        Ok(Takes { categories: head_categories(&self.head), shadowed, orphans })
    }

    /// The steps of live updates, in log order, each moving the cursor past it.
    fn live_steps(&self, takes: &Takes, page: Vec<StoredUpdate>) -> Vec<Step> {
        let since_micros = self.head.since_micros;
        page.into_iter()
            .map(|update| {
                let advance = Advance::Cursor(update.position.as_bytes().to_vec());
                let wanted =
                    takes.taken(&update) && since_micros.is_none_or(|since| update.committed_at.unix_micros() >= since);
                let notice_only = !takes.subscribed(&update);
                Step {
                    update: wanted.then_some(update),
                    redelivery: None,
                    resend: false,
                    from_profile: false,
                    notice_only,
                    advance,
                }
            })
            .collect()
    }

    /// The live cursor: every update up to it has been read.
    pub(crate) fn cursor(&self) -> Option<&[u8]> {
        self.head.cursor.as_deref()
    }

    /// The store deliveries are read from and committed to.
    pub(crate) fn store(&self) -> &tio_store::Store {
        self.broker.store()
    }

    /// Whether the update follower may decide this stream's next updates: it is in its
    /// live phase, holds its claim, and has room for a delivery.
    pub(crate) fn parkable(&self) -> bool {
        self.claim.is_some() && matches!(self.head.profile, ProfilePhase::Done) && self.has_room()
    }

    /// Decides, on the commit thread, the updates a group has just appended (`appended`,
    /// in log order) as [`Deliverer::next`] would, for a parked stream that has read
    /// every update before them: the plan to commit in the same group, or that only its
    /// cursor moves, or that it must read for itself.
    pub(crate) fn follow(&mut self, appended: &[StoredUpdate]) -> Result<Followed, ServiceError> {
        if !self.parkable() {
            return Ok(Followed::Wake);
        }
        let cursor = self.head.cursor.clone();
        let page: Vec<StoredUpdate> = appended
            .iter()
            .filter(|update| cursor.as_deref().is_none_or(|cursor| update.position.as_bytes() > cursor))
            .cloned()
            .collect();
        let Some(last) = page.last().map(|update| update.position.as_bytes().to_vec()) else {
            return Ok(Followed::Moved);
        };
        let agency = self.current_agency()?;
        let takes = self.takes()?;
        let steps = self.live_steps(&takes, page);
        if steps.iter().all(|step| step.update.is_none()) {
            self.head.cursor = Some(last);
            self.mark_dirty();
            return Ok(Followed::Moved);
        }
        Ok(Followed::Commit(Box::new(self.plan_steps(&agency, &steps)?)))
    }

    /// Checks, at the moment of sending, deliveries committed with their publish
    /// ([`Decider::check`]), and decides again those whose grants no longer rest on
    /// the same records ([`Deliverer::decide_again`]); returns those to send, in order.
    pub(crate) async fn checked(
        &mut self,
        agency: &Agency,
        ready: Vec<Planned>,
    ) -> Result<Vec<Delivery>, ServiceError> {
        let (mut sending, again) = self.decider.check(agency, ready)?;
        sending.extend(self.decide_again(agency, again).await?);
        Ok(sending)
    }

    /// Decides again, each under its own number, deliveries committed and not sent
    /// whose grants no longer rest on the records they relied on: each is sent only if
    /// still allowed, its refusal committed otherwise, so that a withdrawal committed
    /// meanwhile still stops it.
    pub(crate) async fn decide_again(
        &mut self,
        agency: &Agency,
        again: Vec<Planned>,
    ) -> Result<Vec<Delivery>, ServiceError> {
        if again.is_empty() {
            return Ok(Vec::new());
        }
        let steps = again
            .into_iter()
            .map(|Planned { delivery, notice_only, .. }| Step {
                update: Some(delivery.update),
                redelivery: Some(delivery.number),
                resend: true,
                from_profile: delivery.from_profile,
                notice_only,
                advance: Advance::None,
            })
            .collect();
        self.deliver(agency, steps).await
    }

    /// Delivers `steps`: all in one commit, or, if what allowed one of them changed
    /// meanwhile, one at a time, each decided again.
    async fn deliver(&mut self, agency: &Agency, steps: Vec<Step>) -> Result<Vec<Delivery>, ServiceError> {
        if let Some(deliveries) = self.commit_steps(agency, &steps).await? {
            return Ok(deliveries);
        }
        let mut deliveries = Vec::new();
        for step in steps {
            if step.redelivery.is_none() && !self.has_room() {
                break;
            }
            let mut committed = None;
            for _ in 0..MAX_ATTEMPTS {
                committed = self.commit_steps(agency, std::slice::from_ref(&step)).await?;
                if committed.is_some() {
                    break;
                }
            }
            match committed {
                Some(mut sent) => deliveries.append(&mut sent),
                None => return Err(ServiceError::Store(tio_store::StoreError::Conflict { index: 0 })),
            }
        }
        Ok(deliveries)
    }

    /// The delivery path. Decides each step's update for `agency` now and commits, in
    /// one batch, every delivery (its unacked record and audit entry, under the
    /// preconditions of its grant), every refusal worth auditing, and the head as the
    /// steps move it, stopping when the window is full. Returns the deliveries to send,
    /// or `None`, having changed nothing, if a precondition failed.
    async fn commit_steps(&mut self, agency: &Agency, steps: &[Step]) -> Result<Option<Vec<Delivery>>, ServiceError> {
        let mut plan = self.plan_steps(agency, steps)?;
        match self.broker.store().commit(std::mem::take(&mut plan.batch)).await {
            Ok(_) => {}
            Err(tio_store::StoreError::Conflict { index }) if self.lost_claim(index) => {
                return Err(crate::app::streams::taken_over(&self.subject()));
            }
            Err(tio_store::StoreError::Conflict { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        }
        Ok(Some(self.planned(plan).into_iter().map(|planned| planned.delivery).collect()))
    }

    /// Decides `steps` for `agency` now, as [`Deliverer::commit_steps`] commits them:
    /// the batch to commit, and what the stream becomes once it has.
    fn plan_steps(&self, agency: &Agency, steps: &[Step]) -> Result<Plan, ServiceError> {
        let mut head = self.head.clone();
        let mut batch = self.fenced_batch();
        // A page's deliveries of one child rest on the same consent, relationship and
        // objections: each condition is checked once per batch, not once per delivery.
        let mut required = std::collections::HashSet::new();
        let mut deliveries = Vec::new();
        let mut new_unacked = Vec::new();
        let mut withdrawn = Vec::new();
        let mut denials = Vec::new();
        let mut cache = std::collections::HashMap::new();
        for step in steps {
            if step.redelivery.is_none() && (self.unacked.len() + new_unacked.len()) as u64 >= u64::from(self.window) {
                break;
            }
            match &step.advance {
                Advance::None => {}
                Advance::Cursor(position) => head.cursor = Some(position.clone()),
                Advance::Profile(key) => head.profile = ProfilePhase::Sending { after: Some(key.clone()) },
            }
            // An erasure notice: the child's key is gone, so there is nothing to decide
            // and no child to name; it goes to every agency its update was disclosed to.
            if let Some(update) = &step.update
                && let Some(amends) = update.amends.filter(|amends| amends.kind == AmendKind::Erasure)
            {
                if self.broker.store().was_disclosed(update.child, &amends.update_id, &self.agency)? {
                    let call = Call { now: self.broker.now(), ..self.call.clone() };
                    let mut entry = self.broker.entry(&call, AuditAction::ErasureSent, Outcome::Allowed);
                    entry.child_index = update.child.to_hex();
                    entry.categories = vec![update.category.as_str().to_owned()];
                    entry.update_id = update.update_id.to_string();
                    entry.recipient_agency_id = self.agency.clone();
                    let number = number_delivery(
                        &self.agency,
                        step,
                        update,
                        &mut head,
                        &mut batch,
                        &mut new_unacked,
                        &mut entry,
                    );
                    batch.push(entry_op(&entry));
                    let delivery = Delivery {
                        number,
                        redelivery: step.redelivery.is_some() && !step.resend,
                        update: update.clone(),
                        child: None,
                        from_profile: step.from_profile,
                        amendment: Some(Notice { amends, with_value: false }),
                    };
                    deliveries.push(Planned { delivery, relied_on: Vec::new(), notice_only: step.notice_only });
                } else if let Some(number) = step.redelivery {
                    batch.push(cursors::delete_unacked(&self.agency, &head.name, number));
                    withdrawn.push(number);
                }
                continue;
            }
            let decided = match &step.update {
                Some(update) => self.decider.decide(agency, update, &mut cache)?,
                None => None,
            };
            let Some((update, child, decision, loaded)) = decided else {
                // Gone (erased) or not taken: a redelivery leaves the window.
                if let Some(number) = step.redelivery {
                    batch.push(cursors::delete_unacked(&self.agency, &head.name, number));
                    withdrawn.push(number);
                }
                continue;
            };
            let route = match self.route(&update, loaded.facts.amendments)? {
                Route::Value if step.notice_only => Route::Skip,
                route => route,
            };
            let (decision, notice) = match route {
                Route::Skip => {
                    if let Some(number) = step.redelivery {
                        batch.push(cursors::delete_unacked(&self.agency, &head.name, number));
                        withdrawn.push(number);
                    }
                    continue;
                }
                Route::Value => (decision, None),
                Route::Notice { amends, with_value } => (decision, Some((amends, with_value))),
            };
            // What goes out: the value (decided now), or a notice of an amendment with
            // the value only if it may be seen now.
            let grant = match (decision, &notice) {
                (Decision::Allow(grant), None) | (Decision::Allow(grant), Some((_, true))) => Some(grant),
                (_, Some(_)) => None,
                (Decision::Deny(reason), None) => {
                    if let Some(number) = step.redelivery {
                        batch.push(cursors::delete_unacked(&self.agency, &head.name, number));
                        withdrawn.push(number);
                    } else {
                        denials.push(reason);
                    }
                    if auditable_skip(reason, &loaded.facts, &self.agency) {
                        batch.push(entry_op(&self.skip_entry(&update, &child, reason)?));
                    }
                    continue;
                }
            };
            let mut entry = self.delivery_entry(&update, &child, Outcome::Allowed)?;
            if let Some((amends, _)) = &notice {
                entry.action = match amends.kind {
                    AmendKind::Correction => AuditAction::CorrectionSent,
                    AmendKind::Retraction => AuditAction::RetractionSent,
                    AmendKind::Erasure => AuditAction::ErasureSent,
                }
                .code()
                .to_owned();
            }
            let mut relied_on = Vec::new();
            if let Some(grant) = &grant {
                fill_grant(&mut entry, grant);
                let alert_to = flag_access_alert(self.broker.flag_of(&update).as_ref(), &agency.id);
                fill_alert(&mut entry, alert_to.as_ref());
                fill_share_alert(&mut entry, grant);
                relied_on = grant_conditions(&self.broker, &update, &child, grant, &loaded.facts);
                for condition in &relied_on {
                    if required.insert(condition.clone()) {
                        batch.require(condition.clone());
                    }
                }
                // Known to have been disclosed, so that a later amendment reaches this agency.
                batch.push(self.broker.store().disclosure(&update, &self.agency));
            }
            let number =
                number_delivery(&self.agency, step, &update, &mut head, &mut batch, &mut new_unacked, &mut entry);
            batch.push(entry_op(&entry));
            let delivery = Delivery {
                number,
                redelivery: step.redelivery.is_some() && !step.resend,
                update,
                child: Some(child),
                from_profile: step.from_profile,
                amendment: notice
                    .map(|(amends, with_value)| Notice { amends, with_value: with_value && grant.is_some() }),
            };
            deliveries.push(Planned { delivery, relied_on, notice_only: step.notice_only });
        }
        batch.ops.extend(self.state_ops(&head));
        Ok(Plan { batch, head, deliveries, new_unacked, withdrawn, denials })
    }

    /// Makes the stream what `plan` leaves it, once its batch is committed, and returns
    /// its deliveries to send, each with the preconditions its grant committed under.
    pub(crate) fn planned(&mut self, plan: Plan) -> Vec<Planned> {
        let Plan { head, deliveries, new_unacked, withdrawn, denials, .. } = plan;
        self.head = head;
        self.acked.clear();
        self.dirty = None;
        for number in withdrawn {
            self.unacked.remove(&number);
        }
        self.unacked.extend(new_unacked);
        let metrics = self.broker.metrics();
        for reason in denials {
            metrics.denied(AuditAction::Delivery.code(), reason.code());
        }
        let now = self.broker.now().unix_micros();
        for Planned { delivery, .. } in deliveries.iter().filter(|planned| !planned.delivery.redelivery) {
            let lag = now.saturating_sub(delivery.update.committed_at.unix_micros());
            metrics.delivered(Duration::from_micros(u64::try_from(lag).unwrap_or(0)));
        }
        deliveries
    }

    /// Routes `update` for this agency: past recipients of an amended update get a
    /// notice; others get a correction as an ordinary value and nothing of a
    /// retraction; a value amended since is not sent at all.
    /// `amendments` is the child's count of them as read with its facts: a child never
    /// amended needs no lookup.
    fn route(&self, update: &StoredUpdate, amendments: u64) -> Result<Route, ServiceError> {
        let store = self.broker.store();
        let amended_since = amendments > 0 && store.amended_by(update)?.is_some();
        Ok(match update.amends {
            Some(amends) if store.was_disclosed(update.child, &amends.update_id, &self.agency)? => {
                Route::Notice { amends, with_value: amends.kind == AmendKind::Correction && !amended_since }
            }
            Some(Amends { kind: AmendKind::Retraction, .. }) => Route::Skip,
            _ if amended_since => Route::Skip,
            _ => Route::Value,
        })
    }

    /// Returns the categories another subscription of this agency with an earlier name
    /// also takes: the earlier one delivers them, so the agency gets one copy.
    ///
    /// Also returns, if this is the agency's first subscription by name, the categories
    /// none of its subscriptions takes (empty otherwise).
    fn shadowed_categories(&mut self) -> Result<(Vec<Category>, Vec<Category>), ServiceError> {
        let generation = self.broker.subscriptions_generation();
        let fresh = |one_copy: &OneCopy| {
            one_copy.generation == generation
                && (!self.broker.store().shared() || one_copy.read_at.elapsed() < ONE_COPY_FRESH_SHARED)
        };
        if let Some(one_copy) = self.one_copy.as_ref().filter(|one_copy| fresh(one_copy)) {
            return Ok((one_copy.shadowed.clone(), one_copy.orphans.clone()));
        }
        let read_at = std::time::Instant::now();
        let heads = self.broker.agency_heads(&self.agency)?;
        let shadowed: Vec<Category> =
            heads.iter().filter(|head| head.name < self.head.name).flat_map(head_categories).collect();
        let orphans: Vec<Category> = if heads.iter().all(|head| head.name >= self.head.name) {
            let taken: Vec<Category> = heads.iter().flat_map(head_categories).collect();
            Category::ALL.into_iter().filter(|category| !taken.contains(category)).collect()
        } else {
            Vec::new()
        };
        self.one_copy = Some(OneCopy { generation, read_at, shadowed: shadowed.clone(), orphans: orphans.clone() });
        Ok((shadowed, orphans))
    }

    fn delivery_entry(
        &self,
        update: &StoredUpdate,
        child: &Child,
        outcome: Outcome,
    ) -> Result<AuditEntry, ServiceError> {
        let call = Call { now: self.broker.now(), ..self.call.clone() };
        let mut entry = self.broker.entry(&call, AuditAction::Delivery, outcome);
        self.broker.name_child(&mut entry, child)?;
        entry.categories = vec![update.category.as_str().to_owned()];
        entry.update_id = update.update_id.to_string();
        entry.recipient_agency_id = self.agency.clone();
        Ok(entry)
    }

    /// The audit entry of a delivery refused at the moment of sending.
    fn skip_entry(&self, update: &StoredUpdate, child: &Child, reason: DenyReason) -> Result<AuditEntry, ServiceError> {
        let mut entry = self.delivery_entry(update, child, Outcome::Denied)?;
        entry.action = AuditAction::DeliverySkipped.code().to_owned();
        entry.reason = reason.code().to_owned();
        Ok(entry)
    }

    /// The operations that store the stream's state: `head`, and the acks not yet stored.
    fn state_ops(&self, head: &Head) -> Vec<Op> {
        let mut ops: Vec<Op> =
            self.acked.iter().map(|number| cursors::delete_unacked(&self.agency, &head.name, *number)).collect();
        ops.push(cursors::put_head(&self.agency, head));
        ops
    }

    async fn store_head(&mut self) -> Result<(), ServiceError> {
        let mut batch = self.fenced_batch();
        batch.ops.extend(self.state_ops(&self.head));
        match self.broker.store().commit(batch).await {
            Ok(_) => {}
            Err(tio_store::StoreError::Conflict { index }) if self.lost_claim(index) => {
                return Err(crate::app::streams::taken_over(&self.subject()));
            }
            Err(err) => return Err(err.into()),
        }
        self.acked.clear();
        self.dirty = None;
        Ok(())
    }
}

/// Returns a delivery's number: a redelivery's own (said in its audit entry), or the
/// subscription's next, with its unacked record added to `batch`.
fn number_delivery(
    agency: &str,
    step: &Step,
    update: &StoredUpdate,
    head: &mut Head,
    batch: &mut Batch,
    new_unacked: &mut Vec<(u64, Unacked)>,
    entry: &mut AuditEntry,
) -> u64 {
    if let Some(number) = step.redelivery {
        entry.detail = if step.resend { "decided again before sending" } else { "redelivery" }.to_owned();
        return number;
    }
    let number = head.next_number;
    head.next_number += 1;
    let unacked = Unacked { position: update.position.as_bytes().to_vec(), from_profile: step.from_profile };
    batch.push(cursors::put_unacked(agency, &head.name, number, &unacked));
    new_unacked.push((number, unacked));
    number
}

/// What decides a stream's deliveries for its agency: shared by the stream and the
/// update follower, and used without the stream's deliverer at the moment of sending.
pub(crate) struct Decider {
    broker: Arc<Broker>,
    call: Call,
    agency: String,
    /// The children this stream has delivered about, by blind index, so that each
    /// child's number is unsealed once a stream rather than once a page. An erased
    /// child's updates have no content and are passed over before this is asked.
    children: std::sync::Mutex<std::collections::HashMap<ChildIndex, Child>>,
}

impl Decider {
    /// Returns the agency as registered now, or the refusal a new call would get if it
    /// may no longer connect (suspended, certificate revoked, removed).
    pub(crate) fn current_agency(&self) -> Result<Agency, ServiceError> {
        let registry = self.broker.registry();
        registry.admit(&self.call.caller.identity, &self.call.caller.certificate_fingerprint)?;
        registry.agency(&self.agency).ok_or_else(|| {
            ServiceError::Unauthenticated(AuthError::Unknown { role: "agency", id: self.agency.clone() })
        })
    }

    /// Checks, at the moment of sending, deliveries committed with their publish, in
    /// order: each whose grant's preconditions all still hold (decided now, on the
    /// facts as they are, it is allowed on the same ones) is returned to send as
    /// committed; from the first whose consent, relationship, objections or amendments
    /// changed since, every one is returned to decide again
    /// ([`Deliverer::decide_again`]), so that none overtakes another.
    pub(crate) fn check(
        &self,
        agency: &Agency,
        ready: Vec<Planned>,
    ) -> Result<(Vec<Delivery>, Vec<Planned>), ServiceError> {
        let mut cache = std::collections::HashMap::new();
        let mut sending = Vec::with_capacity(ready.len());
        let mut ready = ready.into_iter();
        while let Some(planned) = ready.next() {
            if planned.relied_on.is_empty() || self.still_allowed(agency, &planned, &mut cache)? {
                sending.push(planned.delivery);
                continue;
            }
            return Ok((sending, std::iter::once(planned).chain(ready).collect()));
        }
        Ok((sending, Vec::new()))
    }

    /// Whether what allowed `planned` is unchanged: decided now on the facts as they are,
    /// it is allowed on the same preconditions.
    fn still_allowed(
        &self,
        agency: &Agency,
        planned: &Planned,
        cache: &mut std::collections::HashMap<ChildIndex, Option<Arc<Loaded>>>,
    ) -> Result<bool, ServiceError> {
        Ok(match self.decide(agency, &planned.delivery.update, cache)? {
            Some((update, child, Decision::Allow(grant), loaded)) => {
                grant_conditions(&self.broker, &update, &child, &grant, &loaded.facts) == planned.relied_on
            }
            _ => false,
        })
    }

    /// Decides one update for this agency now, reading each child's facts once per
    /// `cache`; `None` if its child was erased. A batch's deliveries commit under
    /// preconditions on what allowed them, so facts that changed meanwhile fail the
    /// commit rather than slip through.
    #[allow(clippy::type_complexity)]
    fn decide(
        &self,
        agency: &Agency,
        update: &StoredUpdate,
        cache: &mut std::collections::HashMap<ChildIndex, Option<Arc<Loaded>>>,
    ) -> Result<Option<(StoredUpdate, Child, Decision, Arc<Loaded>)>, ServiceError> {
        if update.content.is_none() {
            return Ok(None);
        }
        let store = self.broker.store();
        let loaded = match cache.entry(update.child) {
            std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let loaded = match self.child_at(update.child)? {
                    None => None,
                    Some(child) => {
                        let facts = load_facts_for_guarded_commit(store, &child)?;
                        Some(Arc::new(Loaded { child, domain: facts.domain(), facts, current: !store.shared() }))
                    }
                };
                slot.insert(loaded)
            }
        };
        let Some(found) = loaded else { return Ok(None) };
        let flag = self.broker.flag_of(update);
        let flag = self.broker.flag_share(store, update, flag.as_ref())?;
        let question = AccessRequest { agency, action: Action::Receive, category: update.category, flag };
        let mut decision = decide(&question, &found.domain.facts(), self.broker.now());
        if matches!(decision, Decision::Deny(_)) && !found.current {
            let facts = load_facts(store, &found.child)?;
            let now_read = Arc::new(Loaded { child: found.child, domain: facts.domain(), facts, current: true });
            decision = decide(&question, &now_read.domain.facts(), self.broker.now());
            *loaded = Some(now_read);
        }
        let Some(found) = loaded else { return Ok(None) };
        // The facts are shared, not copied, by every update of the child in the batch.
        Ok(Some((update.clone(), found.child, decision, found.clone())))
    }

    /// Returns the child with blind index `index`, remembered from earlier pages.
    fn child_at(&self, index: ChildIndex) -> Result<Option<Child>, ServiceError> {
        // Each change is one insert or a clear: a poisoned lock is still consistent.
        let remembered = self.children.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&index).copied();
        if remembered.is_some() {
            return Ok(remembered);
        }
        let Some(child) = self.broker.store().child_at(index)? else { return Ok(None) };
        let mut children = self.children.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if children.len() >= MAX_CHILDREN_REMEMBERED {
            children.clear();
        }
        children.insert(index, child);
        Ok(Some(child))
    }
}

/// Refuses acks a client may not send: more than `max_per_message`, or a number never
/// sent (0, or after `latest`, the subscription's latest delivery).
pub(crate) fn check_acks(numbers: &[u64], max_per_message: usize, latest: u64) -> Result<(), ServiceError> {
    let field = "ack.delivery_numbers";
    if numbers.len() > max_per_message {
        return Err(invalid(field, format!("at most {max_per_message} per message")));
    }
    if let Some(never_sent) = numbers.iter().find(|&&number| number == 0 || number > latest) {
        return Err(invalid(
            field,
            format!("delivery number {never_sent} was never sent on this subscription (latest: {latest})"),
        ));
    }
    Ok(())
}

fn invalid(field: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(vec![tio_core::FieldViolation::new(field, reason)])
}

/// Whether a refused delivery is worth an audit entry: always, unless the agency has
/// never been involved with the child (then the update was never its business, and
/// logging it for every agency would swamp the log).
fn auditable_skip(reason: DenyReason, facts: &ChildFacts, agency: &str) -> bool {
    reason != DenyReason::NotInvolved
        || facts.relationships.iter().any(|stored| stored.record.relationship.agency.as_str() == agency)
}

/// Returns what a delivery's commit depends on: none of the child's updates corrected
/// or retracted meanwhile (one condition per child, like the others), the consent revision and the relationship that allowed it being
/// unchanged, no objection having been raised since the facts were read, and, without
/// consent, the flag still current or the share unrevised.
fn grant_conditions(
    broker: &Broker,
    update: &StoredUpdate,
    child: &Child,
    grant: &tio_core::Grant,
    facts: &ChildFacts,
) -> Vec<tio_store::Condition> {
    let store = broker.store();
    let mut conditions = Vec::with_capacity(5);
    conditions.push(store.amendments_unchanged(child.index(), facts.amendments));
    match &grant.without_consent {
        Some(WithoutConsent::ProtectionFlag { .. }) => conditions.push(store.still_latest(update)),
        // An end or a renewal is a new revision: what the share allowed before it fails.
        Some(WithoutConsent::SafeguardingShare { id, revision, .. }) => {
            conditions.push(store.share_unrevised(child, *id, *revision));
        }
        None => {}
    }
    if let Some((consent, revision)) = &grant.consent {
        conditions.push(store.consent_unrevised(child, consent, *revision));
    }
    conditions.push(store.no_objection_since(child, facts.objections_raised()));
    if let Some(relationship) = &grant.relationship
        && let Some(stored) = facts.relationships.iter().find(|stored| &stored.record.relationship.id == relationship)
    {
        conditions.push(stored.unchanged());
    }
    conditions
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicI64;

    use tio_core::objection::NewObjection;
    use tio_core::{ConsentEvidence, ConsentGiverRole, ConsentMethod, Decision};

    use super::*;
    use crate::app::test_support::{
        T0, TestClock, amy, broker, brokers_sharing_one_store, call, declare_school, publish_communication_needs,
        record_education_consent, subscribe_school,
    };

    /// What a delivery to the school of Amy's latest communication needs is decided on.
    struct Decided {
        child: Child,
        facts: ChildFacts,
        update: StoredUpdate,
        decision: Decision,
    }

    /// Decides the school's receipt of Amy's latest communication needs on facts read now.
    fn decide_for_school(broker: &Broker) -> Decided {
        let child = broker.store().child(&amy(broker));
        let facts = load_facts(broker.store(), &child).unwrap();
        let update = broker.store().profile(&child).unwrap().remove(0);
        let school = broker.registry().agency("school").unwrap();
        let question = AccessRequest {
            agency: &school,
            action: Action::Receive,
            category: Category::CommunicationNeeds,
            flag: None,
        };
        let decision = decide(&question, &facts.domain().facts(), broker.now());
        Decided { child, facts, update, decision }
    }

    /// Commits what a delivery allowed by its grant commits under, and nothing else.
    async fn commit_under(broker: &Broker, decided: &Decided) -> bool {
        let Decision::Allow(grant) = &decided.decision else { panic!("not allowed: {:?}", decided.decision) };
        let mut batch = Batch::new();
        for condition in grant_conditions(broker, &decided.update, &decided.child, grant, &decided.facts) {
            batch.require(condition);
        }
        match broker.store().commit(batch).await {
            Ok(_) => true,
            Err(tio_store::StoreError::Conflict { .. }) => false,
            Err(err) => panic!("{err}"),
        }
    }

    fn evidence() -> ConsentEvidence {
        ConsentEvidence {
            method: ConsentMethod::InPerson,
            reference: String::new(),
            language: String::new(),
            interpreter_present: false,
            notes: String::new(),
        }
    }

    /// The race the end-to-end tests can only sample: a delivery decided on facts read
    /// before an objection is raised, or before its consent is withdrawn, never commits
    /// after it; decided afresh it is refused; and one decided on facts that are still
    /// current commits.
    #[tokio::test]
    async fn a_delivery_decided_before_an_objection_or_a_withdrawal_cannot_commit_after_it() {
        let broker = broker(Arc::new(TestClock(AtomicI64::new(T0))));
        publish_communication_needs(&broker, "k1").await;
        let consent = record_education_consent(&broker, None).await;
        declare_school(&broker).await;
        let hospital = call(&broker, "hospital");
        let amy = amy(&broker);

        let decided = decide_for_school(&broker);
        assert!(commit_under(&broker, &decided).await, "nothing changed: it commits");

        let recorder = broker.consent_recorder(&hospital, AuditAction::ObjectionRaised, &amy).await.unwrap();
        let objection = NewObjection {
            giver_role: ConsentGiverRole::ParentWithParentalResponsibility,
            giver_name: "Anna".into(),
            categories: [Category::CommunicationNeeds].into_iter().collect(),
            agencies: vec![tio_core::AgencyId::parse("id", "school").unwrap()],
            sectors: Vec::new(),
            reason: String::new(),
            evidence: evidence(),
        };
        let raised = recorder.raise_objection(objection).await.unwrap();
        assert!(!commit_under(&broker, &decided).await, "decided before the objection");
        assert_eq!(decide_for_school(&broker).decision, Decision::Deny(DenyReason::Objection));

        let id = raised.objection.id.to_string();
        recorder.withdraw_objection(&id, "", evidence()).await.unwrap();
        let decided = decide_for_school(&broker);
        assert!(commit_under(&broker, &decided).await, "a withdrawn objection is no conflict");

        recorder.withdraw(&consent.0, "", evidence()).await.unwrap();
        assert!(!commit_under(&broker, &decided).await, "decided before the withdrawal");
        assert_eq!(decide_for_school(&broker).decision, Decision::Deny(DenyReason::ConsentWithdrawn));
    }

    /// Publishes Amy's communication needs and returns how many deliveries the open
    /// stream's next step sends.
    async fn publish_and_deliver(broker: &Broker, deliverer: &mut Deliverer, key: &str) -> usize {
        publish_communication_needs(broker, key).await;
        let agency = deliverer.current_agency().unwrap();
        deliverer.next(&agency).await.unwrap().map_or(0, |page| page.len())
    }

    /// The one-copy rule is read once and kept, yet a subscription created or deleted
    /// while a stream is open changes what that stream sends from its next step on.
    #[tokio::test]
    async fn an_open_stream_follows_the_agencys_subscriptions_as_they_are_created_and_deleted() {
        let broker = Arc::new(broker(Arc::new(TestClock(AtomicI64::new(T0)))));
        publish_communication_needs(&broker, "k0").await;
        record_education_consent(&broker, None).await;
        declare_school(&broker).await;
        subscribe_school(&broker, "later").await;
        let school = call(&broker, "school");
        let mut deliverer = Deliverer::open(broker.clone(), school.clone(), "later", 0).await.unwrap();
        deliverer.claim().await.unwrap();

        assert_eq!(publish_and_deliver(&broker, &mut deliverer, "k1").await, 1, "its own subscription alone");
        assert_eq!(publish_and_deliver(&broker, &mut deliverer, "k2").await, 1, "still its own alone");
        let kept = |deliverer: &Deliverer| deliverer.one_copy.as_ref().map(|one_copy| one_copy.read_at);
        let first_read = kept(&deliverer);
        assert!(first_read.is_some(), "the rule's reading is kept");
        assert_eq!(publish_and_deliver(&broker, &mut deliverer, "k2b").await, 1);
        assert_eq!(kept(&deliverer), first_read, "and not read again while nothing changed");
        subscribe_school(&broker, "earlier").await;
        assert_eq!(publish_and_deliver(&broker, &mut deliverer, "k3").await, 0, "the earlier name delivers now");
        broker.subscriber(&school).await.unwrap().delete("earlier").await.unwrap();
        assert_eq!(publish_and_deliver(&broker, &mut deliverer, "k4").await, 1, "and no longer");
    }

    /// On a store other nodes share, a delivery is decided on what this node kept of
    /// the child: a refusal so decided is decided again on records read now, so that a
    /// consent given on another node is not missed while its notice is on the way (here
    /// it never comes), and a grant made on an out-of-date reading fails its commit.
    #[tokio::test]
    async fn on_a_shared_store_a_refusal_on_kept_records_is_decided_again_on_records_read_now() {
        let (here, there) = brokers_sharing_one_store(Arc::new(TestClock(AtomicI64::new(T0))));
        let here = Arc::new(here);
        publish_communication_needs(&here, "k0").await;
        declare_school(&here).await;
        subscribe_school(&here, "passport").await;
        let mut deliverer = Deliverer::open(here.clone(), call(&here, "school"), "passport", 0).await.unwrap();
        deliverer.claim().await.unwrap();
        assert_eq!(publish_and_deliver(&here, &mut deliverer, "k1").await, 0, "no consent yet");
        let child = here.store().child(&amy(&here));
        assert!(here.store().child_records_for_guarded_commit(&child).unwrap().consents.is_empty(), "kept here");

        let consent = record_education_consent(&there, None).await;
        assert!(here.store().child_records_for_guarded_commit(&child).unwrap().consents.is_empty(), "still kept");
        assert_eq!(publish_and_deliver(&here, &mut deliverer, "k2").await, 1, "the refusal is decided again");

        let kept = here.store().child_records_for_guarded_commit(&child).unwrap();
        let (hospital, amy) = (call(&there, "hospital"), amy(&there));
        let recorder = there.consent_recorder(&hospital, AuditAction::ConsentWithdrawn, &amy).await.unwrap();
        recorder.withdraw(&consent.0, "", evidence()).await.unwrap();
        let still = here.store().child_records_for_guarded_commit(&child).unwrap();
        assert!(Arc::ptr_eq(&kept, &still), "the reading from before the withdrawal is kept here");
        assert_eq!(publish_and_deliver(&here, &mut deliverer, "k3").await, 0, "its grant fails at commit");
        assert_eq!(deliverer.progress().0, 1, "one delivery in all");
    }

    /// A delivery decided before its update is retracted never commits after it.
    #[tokio::test]
    async fn a_delivery_decided_before_a_retraction_cannot_commit_after_it() {
        let broker = broker(Arc::new(TestClock(AtomicI64::new(T0))));
        publish_communication_needs(&broker, "k1").await;
        record_education_consent(&broker, None).await;
        declare_school(&broker).await;
        let decided = decide_for_school(&broker);
        assert!(commit_under(&broker, &decided).await, "nothing changed: it commits");

        let hospital = call(&broker, "hospital");
        let amender = broker.amender(&hospital, crate::app::records::Amend::Retraction).await.unwrap();
        let request = crate::app::records::AmendmentRequest {
            child: amy(&broker),
            update_id: decided.update.update_id,
            kind: crate::app::records::Amend::Retraction,
            category: None,
            value: Vec::new(),
            source_reference: String::new(),
            reason: "entered on the wrong record".into(),
            date_of_birth: None,
        };
        amender.amend(&request).await.unwrap();
        assert!(!commit_under(&broker, &decided).await, "decided before the retraction");
        assert!(broker.store().profile(&decided.child).unwrap().is_empty(), "nothing before it: no value now");
    }
}
