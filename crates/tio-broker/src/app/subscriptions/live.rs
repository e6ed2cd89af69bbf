//! Deliveries decided with their publish: one sync between a publish and its delivery.
//!
//! A stream that has read every update there is and has room in its window *parks* its
//! [`Deliverer`] here. The store's update follower ([`Live`], on the commit thread) is
//! shown each group's updates after they are applied and before the group's sync; for
//! every parked stream it decides them as the stream itself would
//! ([`Deliverer::follow`]: the same decisions, audit entries, preconditions and head)
//! and adds the stream's batch to the group, so the publish's sync makes its deliveries
//! durable too. Once the sync is over the stream is woken with them, and checks at the
//! moment of sending that what allowed each is still current
//! ([`Deliverer::checked`]): a withdrawal that commits after the group still stops it.
//!
//! Anything the follower cannot take (a stream that has not read every earlier update,
//! a failed precondition, a full window) leaves the stream to read and decide for itself,
//! as it does on a store other nodes share, where no follower is set.

use std::sync::{Arc, Mutex, PoisonError};

use tio_store::{AppendedUpdate, Batch, Store, StoreError, UpdateFollower};
use tokio::sync::{Notify, OwnedMutexGuard};

use super::deliver::{Deliverer, Followed, Plan, Planned, check_acks};
use crate::app::error::ServiceError;

/// The parked streams of one broker, and the follower of its store's update log.
pub(crate) struct Live {
    state: Mutex<State>,
    /// The streams whose batches the last group carries.
    following: Mutex<Vec<Following>>,
}

/// A stream whose batch a group carries: its deliverer is held until the group
/// settles, so that the stream cannot read past what is not yet committed.
struct Following {
    slot: Arc<Slot>,
    deliverer: OwnedMutexGuard<Deliverer>,
    plan: Box<Plan>,
}

struct State {
    slots: Vec<Arc<Slot>>,
    /// The position of the last update committed, as far as the follower has seen.
    last_seen: Option<Vec<u8>>,
}

/// One open stream's place here.
pub(crate) struct Slot {
    /// The stream's deliverer: the stream holds it while it works; the follower may
    /// take it while the stream is parked.
    deliverer: Arc<tokio::sync::Mutex<Deliverer>>,
    parked: Mutex<Parked>,
    wake: Notify,
}

#[derive(Default)]
struct Parked {
    /// Whether the follower may decide for the stream: it is parked, or woken only to
    /// send what the follower decided and still caught up.
    followable: bool,
    /// Deliveries committed with their publish, to check and send.
    ready: Vec<Planned>,
    /// Acks received while parked, checked, for whoever next holds the deliverer.
    acks: Vec<u64>,
    /// The subscription's latest delivery number, as of parking or the last group.
    latest: u64,
}

impl Slot {
    /// A place for `deliverer`, not parked.
    fn new(deliverer: Deliverer) -> Arc<Slot> {
        Arc::new(Slot {
            deliverer: Arc::new(tokio::sync::Mutex::new(deliverer)),
            parked: Mutex::default(),
            wake: Notify::new(),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each holder leaves the state whole between its statements.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Live {
    /// Sets a follower on `store`'s update log, if the store takes one (none on a store
    /// other nodes share, whose commits do not pass here).
    pub(crate) fn install(store: &Store) -> Option<Arc<Live>> {
        let last_seen = match store.last_update_position() {
            Ok(position) => position.map(|position| position.as_bytes().to_vec()),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the update log's end; deliveries are decided by their streams");
                return None;
            }
        };
        let live =
            Arc::new(Live { state: Mutex::new(State { slots: Vec::new(), last_seen }), following: Mutex::default() });
        store.follow_updates(live.clone()).then_some(live)
    }

    /// Gives `deliverer` a place here, for as long as the returned registration lives.
    pub(crate) fn register(self: &Arc<Self>, deliverer: Deliverer) -> Registration {
        let slot = Slot::new(deliverer);
        lock(&self.state).slots.push(slot.clone());
        Registration { live: Some(self.clone()), slot }
    }

    /// Parks the stream whose deliverer `deliverer` is, if it has read every update
    /// committed and can take another delivery: the follower then decides the next
    /// updates for it. Returns whether it parked; the caller then lets go of the
    /// deliverer and waits to be woken.
    pub(crate) fn park(&self, slot: &Slot, deliverer: &Deliverer) -> bool {
        let state = lock(&self.state);
        let mut parked = lock(&slot.parked);
        let caught_up = deliverer.cursor() >= state.last_seen.as_deref();
        parked.followable = caught_up && parked.ready.is_empty() && deliverer.parkable();
        parked.latest = deliverer.progress().0;
        parked.followable
    }

    /// Wakes a stream to read and decide for itself.
    fn wake(slot: &Slot) {
        lock(&slot.parked).followable = false;
        slot.wake.notify_one();
    }
}

impl UpdateFollower for Live {
    fn follow(&self, appended: &[AppendedUpdate<'_>]) -> Vec<Batch> {
        // From here on a stream parks only if it has read these updates too; one that
        // parked before is among `slots`, and decided for below.
        let (slots, before) = {
            let mut state = lock(&self.state);
            let before = state.last_seen.clone();
            if let Some(last) = appended.last() {
                state.last_seen = Some(last.position.as_bytes().to_vec());
            }
            (state.slots.clone(), before)
        };
        let mut updates = None;
        let mut batches = Vec::new();
        let mut following = lock(&self.following);
        for slot in &slots {
            if !lock(&slot.parked).followable {
                continue;
            }
            let Ok(mut deliverer) = slot.deliverer.clone().try_lock_owned() else {
                // Parking, or waking: it reads for itself.
                Live::wake(slot);
                continue;
            };
            let acks = std::mem::take(&mut lock(&slot.parked).acks);
            deliverer.apply_acks(&acks);
            if deliverer.cursor() < before.as_deref() {
                Live::wake(slot);
                continue;
            }
            let updates: &Vec<_> = match &mut updates {
                Some(updates) => updates,
                None => {
                    let store = deliverer.store();
                    let opened: Result<Vec<_>, StoreError> =
                        appended.iter().map(|appended| store.open_appended(appended)).collect();
                    match opened {
                        Ok(opened) => updates.insert(opened),
                        Err(err) => {
                            tracing::warn!(error = %err, "an update just appended does not open; its streams read it");
                            drop(deliverer);
                            slots.iter().for_each(|slot| Live::wake(slot));
                            return batches;
                        }
                    }
                }
            };
            match deliverer.follow(updates) {
                Ok(Followed::Moved) => {}
                Ok(Followed::Commit(mut plan)) => {
                    batches.push(std::mem::take(plan.batch_mut()));
                    following.push(Following { slot: slot.clone(), deliverer, plan });
                }
                Ok(Followed::Wake) => Live::wake(slot),
                Err(err) => {
                    tracing::debug!(error = %err, "a parked stream is left to decide for itself");
                    Live::wake(slot);
                }
            }
        }
        batches
    }

    fn settled(&self, outcomes: Vec<Result<(), StoreError>>) {
        let following = std::mem::take(&mut *lock(&self.following));
        for (Following { slot, mut deliverer, plan }, outcome) in following.into_iter().zip(outcomes) {
            // Committed, its deliveries are the stream's to send, and the follower goes on
            // deciding for it meanwhile; not committed, nothing of the plan stands, and
            // the stream decides again.
            if outcome.is_ok() {
                let ready = deliverer.planned(*plan);
                let mut parked = lock(&slot.parked);
                parked.ready.extend(ready);
                parked.latest = deliverer.progress().0;
                drop(parked);
                drop(deliverer);
                slot.wake.notify_one();
            } else {
                drop(deliverer);
                Live::wake(&slot);
            }
        }
    }
}

/// An open stream's place among the parked streams; leaving it (dropping it) takes the
/// stream's deliverer out of the follower's reach.
pub(crate) struct Registration {
    live: Option<Arc<Live>>,
    slot: Arc<Slot>,
}

impl Registration {
    /// A stream with no follower to park with (a store other nodes share).
    pub(crate) fn alone(deliverer: Deliverer) -> Registration {
        Registration { live: None, slot: Slot::new(deliverer) }
    }

    /// Takes the deliverer to work with; waits while the follower has it.
    pub(crate) async fn deliverer(&self) -> tokio::sync::MutexGuard<'_, Deliverer> {
        self.slot.deliverer.lock().await
    }

    /// Parks the stream if the follower can take it (see [`Live::park`]).
    pub(crate) fn park(&self, deliverer: &Deliverer) -> bool {
        self.live.as_ref().is_some_and(|live| live.park(&self.slot, deliverer))
    }

    /// Whether the stream is still parked: the follower has not woken it to read.
    pub(crate) fn parked(&self) -> bool {
        lock(&self.slot.parked).followable
    }

    /// Takes the deliveries the follower committed for a parked stream, which stays
    /// parked: they are the stream's to check and send, in order, before it takes more.
    pub(crate) fn take_ready(&self) -> Vec<Planned> {
        std::mem::take(&mut lock(&self.slot.parked).ready)
    }

    /// Checks and queues the acks a parked stream receives, for whoever next holds its
    /// deliverer (the follower stores them with its next batch). Returns how many wait.
    pub(crate) fn queue_acks(&self, numbers: &[u64], max_per_message: usize) -> Result<usize, ServiceError> {
        let mut parked = lock(&self.slot.parked);
        check_acks(numbers, max_per_message, parked.latest)?;
        parked.acks.extend_from_slice(numbers);
        Ok(parked.acks.len())
    }

    /// Waits until the follower wakes a parked stream.
    pub(crate) async fn woken(&self) {
        self.slot.wake.notified().await;
    }

    /// Ends the stream's wait: applies the acks queued meanwhile, and returns the
    /// deliveries committed for it. Call it holding the deliverer.
    pub(crate) fn unpark(&self, deliverer: &mut Deliverer) -> Vec<Planned> {
        let mut parked = lock(&self.slot.parked);
        parked.followable = false;
        deliverer.apply_acks(&std::mem::take(&mut parked.acks));
        std::mem::take(&mut parked.ready)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(live) = &self.live {
            lock(&live.state).slots.retain(|slot| !Arc::ptr_eq(slot, &self.slot));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicI64;
    use std::time::Duration;

    use tio_audit::entry::Action as AuditAction;
    use tio_core::{ConsentEvidence, ConsentMethod};

    use super::*;
    use crate::app::broker::Broker;
    use crate::app::test_support::{
        T0, TestClock, amy, broker, call, declare_school, publish_communication_needs, record_education_consent,
        subscribe_school,
    };

    /// A broker where the school is involved with Amy, has her parent's consent and an
    /// open stream on its subscription `main`, which has read everything there is.
    async fn school_streaming() -> (Arc<Broker>, Registration, tio_core::ConsentId) {
        let broker = Arc::new(broker(Arc::new(TestClock(AtomicI64::new(T0)))));
        publish_communication_needs(&broker, "k0").await;
        let consent = record_education_consent(&broker, None).await;
        declare_school(&broker).await;
        subscribe_school(&broker, "main").await;
        let live = broker.live().cloned().expect("an in-memory store no other node writes takes a follower");
        let deliverer = Deliverer::open(broker.clone(), call(&broker, "school"), "main", 0).await.unwrap();
        let registration = live.register(deliverer);
        {
            let mut deliverer = registration.deliverer().await;
            deliverer.claim().await.unwrap();
            let agency = deliverer.current_agency().unwrap();
            assert!(deliverer.next(&agency).await.unwrap().is_none(), "a live start has nothing to read yet");
        }
        (broker, registration, consent)
    }

    /// Parks the stream, as it does with nothing to read.
    async fn park(registration: &Registration) -> bool {
        let deliverer = registration.deliverer().await;
        registration.park(&deliverer)
    }

    /// Waits for the follower to wake the stream, then takes the deliverer back and the
    /// deliveries committed for it.
    async fn wake(registration: &Registration) -> (tokio::sync::MutexGuard<'_, Deliverer>, Vec<Planned>) {
        tokio::time::timeout(Duration::from_secs(10), registration.woken()).await.expect("woken");
        let mut deliverer = registration.deliverer().await;
        let ready = registration.unpark(&mut deliverer);
        (deliverer, ready)
    }

    #[tokio::test]
    async fn a_parked_streams_delivery_commits_with_its_publish_in_one_sync() {
        let (broker, registration, _) = school_streaming().await;
        assert!(park(&registration).await, "a stream that has read everything parks");
        let store = broker.store().clone();
        let syncs = store.commit_stats().syncs;
        publish_communication_needs(&broker, "k1").await;
        assert_eq!(store.commit_stats().syncs, syncs + 1, "the delivery rode on the publish's sync");

        let (mut deliverer, ready) = wake(&registration).await;
        assert_eq!(ready.len(), 1, "the publish's delivery is ready");
        let unacked = store.unacked_deliveries("school", "main", 10).unwrap();
        assert_eq!(unacked.keys().copied().collect::<Vec<_>>(), [1], "and committed before it is sent");
        let agency = deliverer.current_agency().unwrap();
        let sent = deliverer.checked(&agency, ready).await.unwrap();
        assert_eq!(
            sent.iter().map(|delivery| (delivery.number, delivery.redelivery)).collect::<Vec<_>>(),
            [(1, false)]
        );
        assert_eq!(store.commit_stats().syncs, syncs + 1, "nothing changed since: sent with no commit of its own");
        assert!(deliverer.next(&agency).await.unwrap().is_none(), "its cursor moved past the update");
        assert_eq!(deliverer.progress().0, 1);

        // Acks received while parked wait for the follower, which stores them with the
        // next delivery's commit.
        assert!(registration.park(&deliverer));
        drop(deliverer);
        let never_sent = registration.queue_acks(&[2], 1024).unwrap_err().to_string();
        assert!(never_sent.contains("delivery number 2 was never sent"), "{never_sent}");
        assert_eq!(registration.queue_acks(&[1], 1024).unwrap(), 1);
        publish_communication_needs(&broker, "k2").await;
        assert_eq!(store.commit_stats().syncs, syncs + 2, "one sync for the second publish too");
        let unacked = store.unacked_deliveries("school", "main", 10).unwrap();
        assert_eq!(unacked.keys().copied().collect::<Vec<_>>(), [2], "the ack rode on the delivery's commit");
    }

    #[tokio::test]
    async fn acks_received_while_parked_are_the_streams_again_when_it_wakes() {
        let (broker, registration, _) = school_streaming().await;
        assert!(park(&registration).await);
        publish_communication_needs(&broker, "k1").await;
        let (mut deliverer, ready) = wake(&registration).await;
        let agency = deliverer.current_agency().unwrap();
        assert_eq!(deliverer.checked(&agency, ready).await.unwrap().len(), 1);
        assert!(registration.park(&deliverer));
        drop(deliverer);
        registration.queue_acks(&[1], 1024).unwrap();
        // The client goes with no publish since: the stream takes its deliverer back, and
        // what it closes with stores the ack.
        let mut deliverer = registration.deliverer().await;
        assert!(registration.unpark(&mut deliverer).is_empty());
        deliverer.close(None).await;
        assert!(broker.store().unacked_deliveries("school", "main", 10).unwrap().is_empty(), "the ack was kept");
    }

    #[tokio::test]
    async fn a_withdrawal_committed_after_the_publish_stops_the_delivery_committed_with_it() {
        let (broker, registration, consent) = school_streaming().await;
        assert!(park(&registration).await);
        publish_communication_needs(&broker, "k1").await;
        let (mut deliverer, ready) = wake(&registration).await;
        assert_eq!(ready.len(), 1);

        let (hospital, amy) = (call(&broker, "hospital"), amy(&broker));
        let recorder = broker.consent_recorder(&hospital, AuditAction::ConsentWithdrawn, &amy).await.unwrap();
        let evidence = ConsentEvidence {
            method: ConsentMethod::InPerson,
            reference: String::new(),
            language: String::new(),
            interpreter_present: false,
            notes: String::new(),
        };
        recorder.withdraw(&consent.0, "", evidence).await.unwrap();

        let agency = deliverer.current_agency().unwrap();
        assert!(deliverer.checked(&agency, ready).await.unwrap().is_empty(), "decided again at sending: refused");
        assert!(broker.store().unacked_deliveries("school", "main", 10).unwrap().is_empty(), "and it left the window");
    }

    #[tokio::test]
    async fn a_stream_that_has_not_read_every_update_reads_them_itself() {
        let (broker, registration, _) = school_streaming().await;
        publish_communication_needs(&broker, "k1").await;
        assert!(!park(&registration).await, "an update it has not read: it does not park");
        let mut deliverer = registration.deliverer().await;
        let agency = deliverer.current_agency().unwrap();
        assert_eq!(deliverer.next(&agency).await.unwrap().map(|page| page.len()), Some(1), "it reads it itself");
        assert!(registration.park(&deliverer), "and parks once it has");
        drop(deliverer);

        // Held by its stream (between parking and letting go, or waking), a parked
        // stream is woken to read for itself rather than passed over.
        let held = registration.deliverer().await;
        publish_communication_needs(&broker, "k2").await;
        drop(held);
        let (mut deliverer, ready) = wake(&registration).await;
        assert!(ready.is_empty(), "nothing was decided for it");
        assert_eq!(deliverer.next(&agency).await.unwrap().map(|page| page.len()), Some(1));
    }

    #[tokio::test]
    async fn a_stream_that_leaves_is_out_of_the_followers_reach() {
        let (broker, registration, _) = school_streaming().await;
        assert!(park(&registration).await);
        let live = broker.live().cloned().unwrap();
        assert_eq!(lock(&live.state).slots.len(), 1);
        drop(registration);
        assert!(lock(&live.state).slots.is_empty(), "its deliverer goes with it");
        publish_communication_needs(&broker, "k1").await;
        assert!(broker.store().unacked_deliveries("school", "main", 10).unwrap().is_empty(), "nothing decided for it");
    }
}
