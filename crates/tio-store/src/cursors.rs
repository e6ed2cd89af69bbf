//! Subscriptions' records: each subscription's head (its cursor and counters) and its
//! unacked deliveries, in the `cursors` keyspace. This module owns their key layout and
//! their encoding; the broker builds no key and parses no byte of them.
//!
//! Keys: `h/{agency}/{name}` for a head, `u/{agency}/{name}/` and the big-endian
//! delivery number for an unacked delivery (so that a subscription's unacked deliveries
//! scan in number order). Values: a version byte, then JSON. Neither holds personal
//! data: a head names categories and counters, an unacked delivery a position. A value
//! written before the version byte existed (JSON alone) still reads.
//!
//! Leases (`l/{name}`): which broker node serves something that one node at a time
//! may serve (a subscription's stream, on a database several nodes share), and until
//! when. A lease is taken and renewed on condition that it is as read, so two nodes
//! never both hold one, and a node's writes under it go on condition that it still
//! holds it ([`StoredLease::unchanged`]).
//!
//! Also here, as the broker's own progress marks: `a/{watcher}` (the leaf through which
//! a caller acked its alerts) and `r/{child's blind index, hex}/{age}` (empty: the
//! alert that a parent's consents need review before that birthday was raised).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Keyspace, prefix_end};
use crate::versioned::{JSON_V1, encode};
use crate::{Condition, Op, Store, StoreError};

/// Where a subscription's profile-then-live start has got to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfilePhase {
    /// Not a profile-then-live subscription, or its profile has been sent.
    Done,
    /// Sending the profile: the latest-value key after which to go on.
    Sending {
        /// The last latest-value key sent, if any.
        after: Option<Vec<u8>>,
    },
}

/// A subscription's head: what it takes, where its cursor stands and its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionHead {
    /// The subscription's name, unique per agency.
    pub name: String,
    /// The categories it takes, by name.
    pub categories: Vec<String>,
    /// Deliveries sent but not acked, at most.
    pub max_in_flight: u32,
    /// When it was created, in microseconds since the Unix epoch.
    pub created_at_micros: i64,
    /// The live cursor: the position after which updates are still to be considered.
    pub cursor: Option<Vec<u8>>,
    /// Updates committed before this time are passed over (a `since` start).
    pub since_micros: Option<i64>,
    /// Where a profile-then-live start has got to.
    pub profile: ProfilePhase,
    /// The number the next delivery gets (dense, from 1).
    pub next_number: u64,
    /// The highest delivery number acked.
    pub last_acked: u64,
    /// The most recent error on its stream, in plain words.
    pub last_error: String,
}

/// One delivery sent and not yet acked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnackedDelivery {
    /// The position of the update delivered.
    pub position: Vec<u8>,
    /// Whether it was sent from the profile at the start of a profile-then-live start.
    pub from_profile: bool,
}

/// A head as read, with the bytes it was read as, so that a change can be made on
/// condition that nobody changed it meanwhile.
#[derive(Debug, Clone)]
pub struct StoredHead {
    /// The head.
    pub head: SubscriptionHead,
    agency: String,
    bytes: Vec<u8>,
}

impl StoredHead {
    /// Returns the precondition that the head is still as read.
    pub fn unchanged(&self) -> Condition {
        Condition::Equals {
            space: Keyspace::Cursors,
            key: head_key(&self.agency, &self.head.name),
            value: self.bytes.clone(),
        }
    }
}

/// Returns the operation that stores `head` of `agency`'s subscription.
pub fn put_head(agency: &str, head: &SubscriptionHead) -> Op {
    Op::Put { space: Keyspace::Cursors, key: head_key(agency, &head.name), value: encode(head) }
}

/// Returns the precondition that `agency` has no subscription `name`.
pub fn head_absent(agency: &str, name: &str) -> Condition {
    Condition::Absent { space: Keyspace::Cursors, key: head_key(agency, name) }
}

/// Returns the operation that deletes the head of `agency`'s subscription `name`.
pub fn delete_head(agency: &str, name: &str) -> Op {
    Op::Delete { space: Keyspace::Cursors, key: head_key(agency, name) }
}

/// Returns the operation that stores unacked delivery `number` of a subscription.
pub fn put_unacked(agency: &str, name: &str, number: u64, delivery: &UnackedDelivery) -> Op {
    Op::Put { space: Keyspace::Cursors, key: unacked_key(agency, name, number), value: encode(delivery) }
}

/// Returns the operation that deletes unacked delivery `number` of a subscription.
pub fn delete_unacked(agency: &str, name: &str, number: u64) -> Op {
    Op::Delete { space: Keyspace::Cursors, key: unacked_key(agency, name, number) }
}

/// Returns the operation that keeps `watcher`'s alert ack: every alert through leaf
/// `through` acked (`watcher` names the caller, role and id, e.g. `agency/social-care`).
pub fn put_alert_mark(watcher: &str, through: u64) -> Op {
    Op::Put { space: Keyspace::Cursors, key: alert_mark_key(watcher), value: through.to_be_bytes().to_vec() }
}

/// Returns the precondition that the review alert before `child`'s birthday of `age`
/// has not been raised, and the operation that records it raised.
pub fn raise_review_alert(child: crate::ChildIndex, age: i16) -> (Condition, Op) {
    raise_once(once_key('r', child, &age.to_string()))
}

/// Returns the precondition that the deadline alert `what` of `child` (an assessment,
/// a clock and the event, e.g. `ehc-1/advice/medical_health/missed`) has not been
/// raised, and the operation that records it raised.
pub fn raise_deadline_alert(child: crate::ChildIndex, what: &str) -> (Condition, Op) {
    raise_once(once_key('e', child, what))
}

/// Returns the precondition that the transition alert `what` of `child` (a milestone
/// and its due day) has not been raised, and the operation that records it raised.
pub fn raise_transition_alert(child: crate::ChildIndex, what: &str) -> (Condition, Op) {
    raise_once(once_key('t', child, what))
}

/// The marker of an alert the broker raises once: its kind's letter, the child, what.
fn once_key(kind: char, child: crate::ChildIndex, what: &str) -> Vec<u8> {
    format!("{kind}/{}/{what}", child.to_hex()).into_bytes()
}

fn raise_once(key: Vec<u8>) -> (Condition, Op) {
    (
        Condition::Absent { space: Keyspace::Cursors, key: key.clone() },
        Op::Put { space: Keyspace::Cursors, key, value: Vec::new() },
    )
}

impl Store {
    /// Returns whether the review alert before `child`'s birthday of `age` was raised.
    pub fn review_alert_raised(&self, child: crate::ChildIndex, age: i16) -> Result<bool, StoreError> {
        Ok(self.engine.get(Keyspace::Cursors, &once_key('r', child, &age.to_string()))?.is_some())
    }

    /// Returns whether transition alert `what` of `child` was raised.
    pub fn transition_alert_raised(&self, child: crate::ChildIndex, what: &str) -> Result<bool, StoreError> {
        Ok(self.engine.get(Keyspace::Cursors, &once_key('t', child, what))?.is_some())
    }

    /// Returns whether deadline alert `what` of `child` was raised.
    pub fn deadline_alert_raised(&self, child: crate::ChildIndex, what: &str) -> Result<bool, StoreError> {
        Ok(self.engine.get(Keyspace::Cursors, &once_key('e', child, what))?.is_some())
    }

    /// Returns the leaf index through which `watcher` has acked its alerts, if it has.
    pub fn alert_mark(&self, watcher: &str) -> Result<Option<u64>, StoreError> {
        match self.engine.get(Keyspace::Cursors, &alert_mark_key(watcher))? {
            None => Ok(None),
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                .map(|bytes| Some(u64::from_be_bytes(bytes)))
                .map_err(|_| StoreError::Corrupt("a stored alert mark is not 8 bytes".to_owned())),
        }
    }

    /// Returns the head of `agency`'s subscription `name`, if there is one.
    pub fn subscription_head(&self, agency: &str, name: &str) -> Result<Option<StoredHead>, StoreError> {
        let Some(bytes) = self.engine.get(Keyspace::Cursors, &head_key(agency, name))? else { return Ok(None) };
        let head = decode(&bytes, "subscription head")?;
        Ok(Some(StoredHead { head, agency: agency.to_owned(), bytes }))
    }

    /// Returns the heads of `agency`'s subscriptions, in name order (at most `limit`).
    pub fn subscription_heads(&self, agency: &str, limit: usize) -> Result<Vec<SubscriptionHead>, StoreError> {
        let prefix = format!("h/{agency}/").into_bytes();
        let end = prefix_end(&prefix);
        self.engine
            .scan(Keyspace::Cursors, &prefix, end.as_deref(), limit)?
            .iter()
            .map(|(_, bytes)| decode(bytes, "subscription head"))
            .collect()
    }

    /// Returns a subscription's unacked deliveries by number (at most `limit`).
    pub fn unacked_deliveries(
        &self,
        agency: &str,
        name: &str,
        limit: usize,
    ) -> Result<BTreeMap<u64, UnackedDelivery>, StoreError> {
        let prefix = unacked_prefix(agency, name);
        let end = prefix_end(&prefix);
        self.engine
            .scan(Keyspace::Cursors, &prefix, end.as_deref(), limit)?
            .iter()
            .map(|(key, bytes)| {
                let number = key[prefix.len()..]
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("an unacked delivery's key has no number".to_owned()))?;
                Ok((number, decode(bytes, "unacked delivery")?))
            })
            .collect()
    }
}

/// Who holds a lease, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The holder: a node and what on it holds the lease.
    pub holder: String,
    /// When the lease lapses unless renewed, in microseconds since the Unix epoch.
    pub expires_micros: i64,
}

/// A lease as read, with its bytes, for a change on condition that it is unchanged.
#[derive(Debug, Clone)]
pub struct StoredLease {
    /// The lease.
    pub lease: Lease,
    name: String,
    bytes: Vec<u8>,
}

impl StoredLease {
    /// Returns the precondition that the lease is still as read: its holder has not
    /// renewed, released or lost it since.
    pub fn unchanged(&self) -> Condition {
        Condition::Equals { space: Keyspace::Cursors, key: lease_key(&self.name), value: self.bytes.clone() }
    }

    /// Returns the lease as it is stored once `put_lease(name, lease)` commits.
    pub fn after_put(name: &str, lease: Lease) -> StoredLease {
        let bytes = encode(&lease);
        StoredLease { lease, name: name.to_owned(), bytes }
    }
}

/// Returns the operation that stores `lease` under `name`.
pub fn put_lease(name: &str, lease: &Lease) -> Op {
    Op::Put { space: Keyspace::Cursors, key: lease_key(name), value: encode(lease) }
}

/// Returns the precondition that nobody has ever held (or still holds a released)
/// lease `name`.
pub fn lease_absent(name: &str) -> Condition {
    Condition::Absent { space: Keyspace::Cursors, key: lease_key(name) }
}

/// Returns the operation that releases lease `name`.
pub fn delete_lease(name: &str) -> Op {
    Op::Delete { space: Keyspace::Cursors, key: lease_key(name) }
}

impl Store {
    /// Returns lease `name` as stored, if anyone holds or held it.
    pub fn lease(&self, name: &str) -> Result<Option<StoredLease>, StoreError> {
        let Some(bytes) = self.engine.get(Keyspace::Cursors, &lease_key(name))? else { return Ok(None) };
        let lease = decode(&bytes, "lease")?;
        Ok(Some(StoredLease { lease, name: name.to_owned(), bytes }))
    }
}

fn lease_key(name: &str) -> Vec<u8> {
    format!("l/{name}").into_bytes()
}

fn head_key(agency: &str, name: &str) -> Vec<u8> {
    format!("h/{agency}/{name}").into_bytes()
}

fn alert_mark_key(watcher: &str) -> Vec<u8> {
    format!("a/{watcher}").into_bytes()
}

fn unacked_prefix(agency: &str, name: &str) -> Vec<u8> {
    format!("u/{agency}/{name}/").into_bytes()
}

fn unacked_key(agency: &str, name: &str, number: u64) -> Vec<u8> {
    [unacked_prefix(agency, name), number.to_be_bytes().to_vec()].concat()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    let json = match bytes.first() {
        Some(&JSON_V1) => &bytes[1..],
        // Written before the version byte: JSON alone, which starts with `{`.
        Some(b'{') => bytes,
        _ => return Err(StoreError::Corrupt(format!("a stored {what} has an unknown format"))),
    };
    crate::versioned::decode_json(json, what)
}

/// Returns a cursor entry of a backup with the update positions it holds translated by
/// `updates`, for a restore onto another engine; written in this release's encoding.
pub(crate) fn restored_entry(
    key: Vec<u8>,
    value: Vec<u8>,
    updates: &crate::backup::PositionMap,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    if key.starts_with(b"h/") {
        let mut head: SubscriptionHead = decode(&value, "subscription head").map_err(|err| err.to_string())?;
        head.cursor = head.cursor.map(|cursor| updates.get(&cursor)).transpose()?;
        Ok((key, encode(&head)))
    } else if key.starts_with(b"u/") {
        let mut delivery: UnackedDelivery = decode(&value, "unacked delivery").map_err(|err| err.to_string())?;
        delivery.position = updates.get(&delivery.position)?;
        Ok((key, encode(&delivery)))
    } else if key.starts_with(b"l/") {
        // A lease of the nodes that ran on the backed-up store: long lapsed by the time
        // a node runs on the restored one, and harmless if not.
        Ok((key, value))
    } else if key.starts_with(b"a/") || key.starts_with(b"r/") {
        // A leaf index of the audit log, which a restore keeps dense and in order; a
        // review alert's mark, by blind index, which the restore keeps too.
        Ok((key, value))
    } else {
        Err("a cursor entry of an unknown kind".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> SubscriptionHead {
        SubscriptionHead {
            name: "main".into(),
            categories: vec!["send_support".into()],
            max_in_flight: 256,
            created_at_micros: 1_800_000_000_000_000,
            cursor: Some(vec![0, 7]),
            since_micros: None,
            profile: ProfilePhase::Sending { after: Some(vec![1, 2]) },
            next_number: 3,
            last_acked: 2,
            last_error: String::new(),
        }
    }

    #[test]
    fn keys_keep_subscriptions_apart_and_deliveries_in_number_order() {
        assert_eq!(head_key("school", "main"), b"h/school/main");
        let key = unacked_key("school", "main", 258);
        assert!(key.starts_with(&unacked_prefix("school", "main")));
        assert_eq!(&key[key.len() - 8..], &258u64.to_be_bytes());
        assert!(unacked_key("school", "main", 9) < unacked_key("school", "main", 10));
        assert!(!unacked_key("school", "main-2", 1).starts_with(&unacked_prefix("school", "main")));
    }

    /// The bytes this release writes, and the bytes the previous release wrote (JSON
    /// without a version byte): both read. Do not change these fixtures.
    #[test]
    fn golden_bytes_of_this_and_the_previous_format_read() {
        let golden: &[u8] = b"\x01{\"name\":\"main\",\"categories\":[\"send_support\"],\"max_in_flight\":256,\
\"created_at_micros\":1800000000000000,\"cursor\":[0,7],\"since_micros\":null,\"profile\":{\"Sending\":{\"after\":[1,2]}},\
\"next_number\":3,\"last_acked\":2,\"last_error\":\"\"}";
        assert_eq!(encode(&head()), golden);
        assert_eq!(decode::<SubscriptionHead>(golden, "head").unwrap(), head());
        let previous = &golden[1..];
        assert_eq!(decode::<SubscriptionHead>(previous, "head").unwrap(), head());
        let delivery = UnackedDelivery { position: vec![0, 0, 0, 9], from_profile: true };
        let previous_delivery: &[u8] = b"{\"position\":[0,0,0,9],\"from_profile\":true}";
        assert_eq!(decode::<UnackedDelivery>(previous_delivery, "delivery").unwrap(), delivery);
        assert_eq!(decode::<UnackedDelivery>(&encode(&delivery), "delivery").unwrap(), delivery);
        assert!(matches!(decode::<SubscriptionHead>(b"\x09{}", "head"), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode::<SubscriptionHead>(b"", "head"), Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn heads_and_deliveries_are_read_back_and_changed_on_condition() {
        let store = Store::in_memory(crate::keys::KeyRing::generate().unwrap()).unwrap();
        let mut batch = crate::Batch::new();
        batch.require(head_absent("school", "main"));
        batch.push(put_head("school", &head()));
        batch.push(put_unacked("school", "main", 2, &UnackedDelivery { position: vec![5], from_profile: false }));
        store.commit(batch).await.unwrap();
        let stored = store.subscription_head("school", "main").unwrap().unwrap();
        assert_eq!(stored.head, head());
        assert_eq!(store.subscription_heads("school", 10).unwrap(), [head()]);
        assert!(store.subscription_heads("gp", 10).unwrap().is_empty());
        assert_eq!(store.unacked_deliveries("school", "main", 10).unwrap().keys().copied().collect::<Vec<_>>(), [2]);

        // A change on condition that the head is unchanged: the first goes, a stale one fails.
        let mut changed = head();
        changed.last_acked = 3;
        let mut batch = crate::Batch::new();
        batch.require(stored.unchanged());
        batch.push(put_head("school", &changed));
        store.commit(batch).await.unwrap();
        let mut stale = crate::Batch::new();
        stale.require(stored.unchanged());
        stale.push(delete_head("school", "main"));
        assert!(matches!(store.commit(stale).await, Err(StoreError::Conflict { .. })));
        assert_eq!(store.subscription_head("school", "main").unwrap().unwrap().head.last_acked, 3);
    }

    /// A lease is taken on condition that nobody holds it, renewed on condition that it
    /// is as its holder last wrote it, and a write under it fails once another holder
    /// took it over.
    #[tokio::test]
    async fn a_lease_has_one_holder_at_a_time() {
        let store = Store::in_memory(crate::keys::KeyRing::generate().unwrap()).unwrap();
        let name = "subscription/school/main";
        assert!(store.lease(name).unwrap().is_none());
        let first = Lease { holder: "node-a/1".into(), expires_micros: 10 };
        let mut take = crate::Batch::new();
        take.require(lease_absent(name)).push(put_lease(name, &first));
        store.commit(take.clone()).await.unwrap();
        assert!(matches!(store.commit(take).await, Err(StoreError::Conflict { index: 0 })), "held already");
        let held = store.lease(name).unwrap().unwrap();
        assert_eq!(held.lease, first);
        assert_eq!(held.unchanged(), StoredLease::after_put(name, first.clone()).unchanged());

        // Another node takes it over once lapsed, on condition that it is as read.
        let second = Lease { holder: "node-b/1".into(), expires_micros: 20 };
        let mut take_over = crate::Batch::new();
        take_over.require(held.unchanged()).push(put_lease(name, &second));
        store.commit(take_over).await.unwrap();
        let mut renew = crate::Batch::new();
        renew.require(held.unchanged()).push(put_lease(name, &Lease { expires_micros: 30, ..first }));
        assert!(matches!(store.commit(renew).await, Err(StoreError::Conflict { index: 0 })), "lost to the other");
        let mut release = crate::Batch::new();
        release.require(store.lease(name).unwrap().unwrap().unchanged()).push(delete_lease(name));
        store.commit(release).await.unwrap();
        assert!(store.lease(name).unwrap().is_none());
    }
}
