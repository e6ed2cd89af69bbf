use tio_core::{Category, NhsNumber, Timestamp};

use super::*;
use crate::keys::{KeyRing, open_with};
use crate::store::tests::{T0, agency, child, update};
use crate::update_record::encode_payload;
use crate::{AmendKind, Position, StoredUpdate};

const LATER: Timestamp = Timestamp::from_unix_seconds(1_900_000_000);

async fn publish(store: &Store, nhs: &NhsNumber, category: Category, value: &[u8], key: &str) -> StoredUpdate {
    let appended = store.append_update(update(nhs, category, value, key, &agency("gp"))).await.unwrap();
    store.update_at(&appended.position).unwrap().unwrap()
}

async fn erase(store: &Store, nhs: &NhsNumber, category: Category, latest: &Position) -> bool {
    store.erase_category_with(nhs, category, Some(latest), Vec::new(), "retention", LATER).await.unwrap()
}

fn values(store: &Store, nhs: &NhsNumber) -> Vec<(Category, Option<Vec<u8>>)> {
    let index = store.child_index(nhs);
    store
        .updates_after(None, 1000)
        .unwrap()
        .into_iter()
        .filter(|stored| stored.child == index && stored.amends.is_none())
        .map(|stored| (stored.category, stored.content.map(|content| content.value)))
        .collect()
}

fn notices(store: &Store, nhs: &NhsNumber) -> Vec<(Category, crate::UpdateId)> {
    let index = store.child_index(nhs);
    store
        .updates_after(None, 1000)
        .unwrap()
        .into_iter()
        .filter(|stored| stored.child == index)
        .filter_map(|stored| match stored.amends {
            Some(amends) if amends.kind == AmendKind::Erasure => Some((stored.category, amends.update_id)),
            _ => None,
        })
        .collect()
}

fn profile(store: &Store, nhs: &NhsNumber) -> Vec<(Category, Vec<u8>)> {
    store
        .profile(nhs)
        .unwrap()
        .into_iter()
        .map(|stored| (stored.category, stored.content.map(|content| content.value).unwrap_or_default()))
        .collect()
}

fn raw_record(store: &Store, position: &Position) -> UpdateRecord {
    UpdateRecord::decode(&store.engine.get(Keyspace::Updates, position.as_bytes()).unwrap().unwrap()).unwrap()
}

/// Every key the store still holds: the ring's, every child's, every live category key.
fn every_key(store: &Store, ring: &KeyRing) -> Vec<SecretKey> {
    let mut keys = ring.all_keys();
    for (key, wrapped) in store.engine.scan(Keyspace::ChildKeys, b"", None, 1000).unwrap() {
        let Ok(child) = <[u8; CHILD_INDEX_BYTES]>::try_from(key.as_slice()) else { continue };
        let child_key = ring.unwrap(&wrapped, &key).unwrap();
        for category in Category::ALL {
            if let Some(key) = store.category_key(ChildIndex(child), category, &child_key).unwrap().live() {
                keys.push(key.clone());
            }
        }
        keys.push(child_key);
    }
    keys
}

#[tokio::test]
async fn erasing_a_category_destroys_its_key_tells_of_its_values_and_keeps_the_rest() {
    let ring = KeyRing::generate().unwrap();
    let store = Store::in_memory(ring.clone()).unwrap();
    let (amy, ben) = (child("9990079196"), child("9990237573"));
    let h1 = publish(&store, &amy, Category::HealthSummary, b"h1", "a1").await;
    let h2 = publish(&store, &amy, Category::HealthSummary, b"h2", "a2").await;
    publish(&store, &amy, Category::SendSupport, b"s1", "a3").await;
    publish(&store, &ben, Category::HealthSummary, b"b1", "b1").await;

    let facts = store.retention_facts(None, 10).unwrap();
    let amys = facts.iter().find(|facts| facts.child == store.child_index(&amy)).unwrap();
    let current: Vec<Category> = amys.current.iter().map(|value| value.category).collect();
    assert_eq!(current, [Category::HealthSummary, Category::SendSupport]);
    assert_eq!(amys.current[0].position, h2.position, "erasure is decided on the current value's position");
    assert!(amys.erased.is_empty());

    assert!(erase(&store, &amy, Category::HealthSummary, &h2.position).await);
    assert_eq!(profile(&store, &amy), [(Category::SendSupport, b"s1".to_vec())]);
    assert_eq!(
        values(&store, &amy),
        [
            (Category::HealthSummary, None),
            (Category::HealthSummary, None),
            (Category::SendSupport, Some(b"s1".to_vec()))
        ]
    );
    assert_eq!(profile(&store, &ben), [(Category::HealthSummary, b"b1".to_vec())], "other children are untouched");
    assert_eq!(
        notices(&store, &amy),
        [(Category::HealthSummary, h1.update_id), (Category::HealthSummary, h2.update_id)],
        "a notice names each erased value"
    );
    assert_eq!(store.find_update(&amy, &h2.update_id).unwrap(), None, "an erased value cannot be amended");

    // No key the store still holds opens an erased value.
    let keys = every_key(&store, &ring);
    assert_eq!(keys.len(), 2 + 2 + 2, "the ring's two; amy's key and support key; ben's key and health key");
    for position in [&h1.position, &h2.position] {
        let record = raw_record(&store, position);
        assert_eq!(record.key_generation, 1);
        for key in &keys {
            assert!(open_with(key, &record.associated_data(), &record.sealed).is_err());
        }
    }

    assert!(!erase(&store, &amy, Category::HealthSummary, &h2.position).await, "nothing is left to erase");
    assert_eq!(notices(&store, &amy).len(), 2, "and nothing is told twice");
    let facts = store.retention_facts(None, 10).unwrap();
    let amys = facts.iter().find(|facts| facts.child == store.child_index(&amy)).unwrap();
    let current: Vec<Category> = amys.current.iter().map(|value| value.category).collect();
    assert_eq!(current, [Category::SendSupport], "an erased value is not kept, so not ruled on");
    assert_eq!(amys.erased, [Category::HealthSummary]);

    let report = store.check().unwrap();
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!(report.erased, 2);
}

#[tokio::test]
async fn a_value_published_after_its_category_was_erased_is_sealed_under_the_next_key() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let amy = child("9990079196");
    let h1 = publish(&store, &amy, Category::HealthSummary, b"h1", "a1").await;
    publish(&store, &amy, Category::SendSupport, b"s1", "a2").await;
    assert!(erase(&store, &amy, Category::HealthSummary, &h1.position).await);

    let h2 = publish(&store, &amy, Category::HealthSummary, b"h2", "a3").await;
    assert_eq!(raw_record(&store, &h2.position).key_generation, 2);
    assert_eq!(
        profile(&store, &amy),
        [(Category::HealthSummary, b"h2".to_vec()), (Category::SendSupport, b"s1".to_vec())]
    );
    assert_eq!(values(&store, &amy)[0], (Category::HealthSummary, None), "the erased value stays erased");
    assert!(store.check().unwrap().is_healthy());

    // Erasing the whole child tells of what was not told of before, once.
    assert!(store.erase_child(&amy, LATER).await.unwrap());
    let told: Vec<crate::UpdateId> = notices(&store, &amy).into_iter().map(|(_, id)| id).collect();
    assert_eq!(told.len(), 3, "h1 at the category's erasure; h2 and s1 with the child's");
    assert_eq!(told[0], h1.update_id);
    assert!(told.contains(&h2.update_id));
    let child_keys = store.engine.scan(Keyspace::ChildKeys, b"", None, 100).unwrap();
    assert!(child_keys.is_empty(), "the child's key and its category keys are gone");
    let report = store.check().unwrap();
    assert!(report.is_healthy(), "{:?}", report.problems);
}

/// A publisher holding a category key from before an erasure does not seal under it:
/// its commit requires the key state it read, fails, and reads the next key.
#[tokio::test]
async fn a_key_read_before_an_erasure_is_never_used_after_it() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let amy = child("9990079196");
    let index = store.child_index(&amy);
    let h1 = publish(&store, &amy, Category::HealthSummary, b"h1", "a1").await;
    let child_key = store.data_key(index).unwrap().unwrap();
    let stale = store.category_key(index, Category::HealthSummary, &child_key).unwrap();
    assert!(stale.live().is_some());
    assert!(erase(&store, &amy, Category::HealthSummary, &h1.position).await);

    // As if the state had been read just before the erasure committed.
    let generation = store.key_cache().generation();
    store.key_cache().keep_category(generation, index, Category::HealthSummary, &stale);
    let h2 = publish(&store, &amy, Category::HealthSummary, b"h2", "a2").await;
    assert_eq!(raw_record(&store, &h2.position).key_generation, 2);
    assert_eq!(profile(&store, &amy), [(Category::HealthSummary, b"h2".to_vec())], "the new value can be read");
}

/// A category without a live key (none yet, or erased) is read from the store every
/// time, never remembered: a publish makes its key, and a reader between that commit
/// and the cache forgetting the old state must still find the new key.
#[tokio::test]
async fn only_live_category_keys_are_remembered() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let amy = child("9990079196");
    let index = store.child_index(&amy);
    publish(&store, &amy, Category::CommunicationNeeds, b"c1", "a0").await;
    let child_key = store.data_key(index).unwrap().unwrap();
    let absent = store.category_key(index, Category::HealthSummary, &child_key).unwrap();
    assert!(absent.live().is_none());
    assert!(store.key_cache().category(index, Category::HealthSummary).is_none(), "no key yet: not remembered");
    let h1 = publish(&store, &amy, Category::HealthSummary, b"h1", "a1").await;
    assert!(store.category_key(index, Category::HealthSummary, &child_key).unwrap().live().is_some());
    assert!(store.key_cache().category(index, Category::HealthSummary).is_some(), "a live key is remembered");
    assert!(erase(&store, &amy, Category::HealthSummary, &h1.position).await);
    assert!(store.category_key(index, Category::HealthSummary, &child_key).unwrap().live().is_none());
    assert!(store.key_cache().category(index, Category::HealthSummary).is_none(), "erased: not remembered");
    // What a reader between a commit and the forgetting sees: the new value, opened.
    publish(&store, &amy, Category::HealthSummary, b"h2", "a2").await;
    assert!(values(&store, &amy).contains(&(Category::HealthSummary, Some(b"h2".to_vec()))));
}

#[tokio::test]
async fn an_erasure_decided_on_a_value_that_was_replaced_does_not_go_ahead() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let amy = child("9990079196");
    let h1 = publish(&store, &amy, Category::HealthSummary, b"h1", "a1").await;
    publish(&store, &amy, Category::HealthSummary, b"h2", "a2").await;
    let before = store.updates_after(None, 100).unwrap().len();
    assert!(!erase(&store, &amy, Category::HealthSummary, &h1.position).await);
    assert_eq!(store.updates_after(None, 100).unwrap().len(), before, "nothing appended");
    assert_eq!(profile(&store, &amy), [(Category::HealthSummary, b"h2".to_vec())]);
    let unknown = child("9990237573");
    assert!(!erase(&store, &unknown, Category::HealthSummary, &h1.position).await, "an unknown child");
}

/// Values written before category keys (version 1 records, sealed under the child's
/// key) are erased with their category too: no longer opened, told of, and the
/// category's next value gets a key of its own.
#[tokio::test]
async fn values_sealed_under_the_childs_key_are_erased_with_their_category() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let amy = child("9990079196");
    let index = store.child_index(&amy);
    publish(&store, &amy, Category::SendSupport, b"s1", "a1").await;
    let child_key = store.data_key(index).unwrap().unwrap();
    let mut record = UpdateRecord {
        update_id: [5; 16],
        child_index: index.0,
        category: Category::HealthSummary,
        committed_at_micros: T0.unix_micros(),
        publisher: "gp".to_owned(),
        sealed: Vec::new(),
        amends: None,
        key_generation: 0,
    };
    record.sealed = seal_with(&child_key, &record.associated_data(), &encode_payload("EPR-0", b"old")).unwrap();
    assert_eq!(record.encode()[0], crate::update_record::UPDATE_RECORD_V1);
    let mut batch = Batch::new();
    batch
        .push(Op::Append { space: Keyspace::Updates, value: record.encode() })
        .push(Op::PutAtPosition {
            space: Keyspace::UpdatesByChild,
            prefix: index.0.to_vec(),
            append: 0,
            value: record.update_id.to_vec(),
        })
        .push(Op::PutPosition {
            space: Keyspace::Latest,
            key: latest_key(index, Category::HealthSummary),
            prefix: Vec::new(),
            append: 0,
        });
    let old = store.commit(batch).await.unwrap().remove(0);
    assert_eq!(
        profile(&store, &amy),
        [(Category::HealthSummary, b"old".to_vec()), (Category::SendSupport, b"s1".to_vec())],
        "an old value opens with the child's key"
    );
    assert!(store.check().unwrap().is_healthy());

    assert!(erase(&store, &amy, Category::HealthSummary, &old).await);
    assert_eq!(profile(&store, &amy), [(Category::SendSupport, b"s1".to_vec())]);
    assert_eq!(notices(&store, &amy), [(Category::HealthSummary, crate::UpdateId([5; 16]))]);
    let h2 = publish(&store, &amy, Category::HealthSummary, b"h2", "a2").await;
    assert_eq!(raw_record(&store, &h2.position).key_generation, 1);
    assert_eq!(values(&store, &amy)[1], (Category::HealthSummary, None), "the old value stays erased");
    let report = store.check().unwrap();
    assert!(report.is_healthy(), "{:?}", report.problems);
}
