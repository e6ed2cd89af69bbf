use std::sync::Arc;

use tio_core::{AgencyId, Category, NhsNumber, NhsNumberPolicy, Timestamp};

use super::*;
use crate::engine::StorageErrorKind;
use crate::engine::sled::SledEngine;
use crate::keys::{KeyRing, open_with};

pub(crate) const T0: Timestamp = Timestamp::from_unix_seconds(1_800_000_000);

pub(crate) fn child(digits: &str) -> NhsNumber {
    NhsNumber::parse(digits, &NhsNumberPolicy::development()).unwrap()
}

pub(crate) fn agency(id: &str) -> AgencyId {
    AgencyId::parse("id", id).unwrap()
}

pub(crate) fn update<'a>(
    child: &'a NhsNumber,
    category: Category,
    value: &'a [u8],
    key: &'a str,
    publisher: &'a AgencyId,
) -> NewUpdate<'a> {
    NewUpdate {
        child,
        category,
        value,
        source_reference: "EPR-1",
        publisher,
        idempotency_key: key,
        committed_at: T0,
        date_of_birth: None,
    }
}

fn count_updates(store: &Store) -> usize {
    store.updates_after(None, 10_000).unwrap().len()
}

#[tokio::test]
async fn appends_are_readable_by_profile_log_and_child() {
    appends_are_readable_on(Store::in_memory(KeyRing::generate().unwrap()).unwrap()).await;
}

/// Issue 13: nothing in the store reads a position as a dense counter; the same reads,
/// and the check, hold over an engine whose positions have gaps and another shape.
#[tokio::test]
async fn appends_are_readable_and_check_clean_over_positions_that_are_not_counters() {
    let engine = Arc::new(crate::engine::memory::MemoryEngine::sparse());
    let store = Store::with_engine(engine, KeyRing::generate().unwrap()).unwrap();
    appends_are_readable_on(store).await;
}

async fn appends_are_readable_on(store: Store) {
    let (amy, ben) = (child("9990079196"), child("9990237573"));
    let hospital = agency("hospital");
    let first = store.append_update(update(&amy, Category::HealthSummary, b"v1", "k1", &hospital)).await.unwrap();
    let second = store.append_update(update(&ben, Category::HealthSummary, b"other", "k2", &hospital)).await.unwrap();
    let third = store.append_update(update(&amy, Category::HealthSummary, b"v2", "k3", &hospital)).await.unwrap();
    store.append_update(update(&amy, Category::CommunicationNeeds, b"c1", "k4", &hospital)).await.unwrap();
    assert!(first.position < second.position && second.position < third.position);
    assert!(!first.duplicate);

    let profile = store.profile(&amy).unwrap();
    let summary: Vec<(Category, Vec<u8>)> =
        profile.iter().map(|u| (u.category, u.content.as_ref().unwrap().value.clone())).collect();
    assert_eq!(
        summary,
        vec![(Category::CommunicationNeeds, b"c1".to_vec()), (Category::HealthSummary, b"v2".to_vec())]
    );
    assert_eq!(profile[1].update_id, third.update_id, "the profile holds the latest value");
    assert_eq!(profile[1].publisher, "hospital");
    assert_eq!(profile[1].content.as_ref().unwrap().source_reference, "EPR-1");

    let log = store.updates_after(None, 100).unwrap();
    assert_eq!(log.len(), 4);
    let after_first = store.updates_after(Some(&first.position), 100).unwrap();
    assert_eq!(after_first.len(), 3);
    assert_eq!(after_first[0].update_id, second.update_id);
    let amys: Vec<UpdateId> = store.updates_for_child(&amy, 100).unwrap().iter().map(|u| u.update_id).collect();
    assert_eq!(amys.len(), 3);
    assert_eq!(amys[0], first.update_id);
    assert!(store.profile(&child("9990316767")).unwrap().is_empty(), "an unknown child has an empty profile");
    assert!(
        store.holds_update(&third.position).unwrap()
            && !store.holds_update(&Position::from_bytes(b"x".to_vec())).unwrap()
    );
    let report = store.check().unwrap();
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!(report.updates, 4);
}

#[tokio::test]
async fn idempotency_returns_the_original_or_refuses_different_content() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let amy = child("9990079196");
    let (gp, school) = (agency("gp"), agency("school"));
    let original = store.append_update(update(&amy, Category::HealthSummary, b"v1", "same-key", &gp)).await.unwrap();
    // A retry an hour later: the repeat carries the original's commit time, not its own.
    let later = NewUpdate {
        committed_at: Timestamp::from_unix_seconds(1_800_003_600),
        ..update(&amy, Category::HealthSummary, b"v1", "same-key", &gp)
    };
    let again = store.append_update(later).await.unwrap();
    assert_eq!((again.update_id, &again.position, again.duplicate), (original.update_id, &original.position, true));
    assert_eq!(again.committed_at, original.committed_at);
    assert_ne!(again.committed_at, Timestamp::from_unix_seconds(1_800_003_600));
    let different = store.append_update(update(&amy, Category::HealthSummary, b"v2", "same-key", &gp)).await;
    assert!(matches!(different, Err(StoreError::IdempotencyMismatch)));
    // Keys are scoped per publisher.
    let other_publisher =
        store.append_update(update(&amy, Category::HealthSummary, b"v2", "same-key", &school)).await.unwrap();
    assert!(!other_publisher.duplicate);
    assert_eq!(count_updates(&store), 2);
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_and_writes_nothing() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let amy = child("9990079196");
    let gp = agency("gp");
    let big = vec![0u8; tio_core::limits::MAX_CATEGORY_VALUE_BYTES + 1];
    let long_reference = "r".repeat(257);
    let long_key = "k".repeat(129);
    let cases: Vec<(NewUpdate<'_>, &str)> = vec![
        (update(&amy, Category::HealthSummary, &big, "k", &gp), "value"),
        (update(&amy, Category::HealthSummary, b"", "k", &gp), "value"),
        (
            NewUpdate { source_reference: &long_reference, ..update(&amy, Category::HealthSummary, b"v", "k", &gp) },
            "source_reference",
        ),
        (update(&amy, Category::HealthSummary, b"v", "", &gp), "idempotency_key"),
        (update(&amy, Category::HealthSummary, b"v", &long_key, &gp), "idempotency_key"),
    ];
    for (bad, field) in cases {
        match store.append_update(bad).await {
            Err(StoreError::InvalidInput(violation)) => assert_eq!(violation.field, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    assert_eq!(count_updates(&store), 0);
    assert!(store.engine.scan(Keyspace::ChildKeys, b"", None, 10).unwrap().is_empty(), "no data key was created");
}

/// Every file under `dir`, read whole.
fn every_file(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(current).unwrap().map(Result::unwrap) {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                files.push((entry.path(), std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_personal_is_stored_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let children = ["9990079196", "9990237573", "9990316767", "9990395950"];
    let name = "Zofia Kowalczyk-Brennan";
    let free_text = "Needs a Polish interpreter; calms with the blue weighted blanket";
    {
        let store = Store::open(dir.path(), &Default::default(), KeyRing::generate().unwrap()).unwrap();
        let publisher = agency("hospital");
        for (index, digits) in children.iter().enumerate() {
            let nhs = child(digits);
            let value = format!("{name} {digits} {free_text}");
            let key = format!("key-{index}");
            let reference = format!("EPR/{digits}");
            let update = NewUpdate {
                source_reference: &reference,
                ..update(&nhs, Category::CommunicationNeeds, value.as_bytes(), &key, &publisher)
            };
            store.append_update(update).await.unwrap();
        }
        assert_eq!(store.profile(&child(children[0])).unwrap().len(), 1, "it is all still readable");
        // A control: a marker written in the clear must be found by the same scan.
        let mut batch = Batch::new();
        batch.push(Op::Put {
            space: Keyspace::Agencies,
            key: b"control".to_vec(),
            value: b"PLAINTEXT-CONTROL-MARKER".to_vec(),
        });
        store.commit.commit(batch).await.unwrap();
        store.shutdown();
    }
    let mut needles: Vec<Vec<u8>> =
        vec![name.as_bytes().to_vec(), free_text.as_bytes().to_vec(), b"Kowalczyk".to_vec(), b"interpreter".to_vec()];
    for digits in children {
        needles.push(digits.as_bytes().to_vec());
        needles.push(format!("{} {} {}", &digits[..3], &digits[3..6], &digits[6..]).into_bytes());
        needles.push(format!("EPR/{digits}").into_bytes());
    }
    let files = every_file(dir.path());
    assert!(
        files.iter().any(|(_, bytes)| contains(bytes, b"PLAINTEXT-CONTROL-MARKER")),
        "the scan sees what is stored"
    );
    for (path, bytes) in &files {
        for needle in &needles {
            assert!(!contains(bytes, needle), "{} contains {:?}", path.display(), String::from_utf8_lossy(needle));
        }
    }
}

/// Opens a sled store whose engine the test can also reach directly.
/// Options for a store on the sled engine (format tio-store/2).
fn sled_options() -> crate::StoreOptions {
    crate::StoreOptions { engine: crate::EngineKind::Sled, ..Default::default() }
}

/// Options for a store on the group log with the smallest segments, for a small disk.
fn small_segments() -> crate::StoreOptions {
    crate::StoreOptions { log_segment_bytes: crate::StoreOptions::MIN_LOG_SEGMENT_BYTES, ..Default::default() }
}

/// Updates as a restore keeps them: everything but the position, which is the
/// engine's own.
fn without_positions(updates: &[StoredUpdate]) -> Vec<StoredUpdate> {
    let unplaced = Position::from_bytes(Vec::new());
    updates.iter().map(|update| StoredUpdate { position: unplaced.clone(), ..update.clone() }).collect()
}

fn sled_store(dir: &std::path::Path, keys: KeyRing) -> (Store, Arc<SledEngine>) {
    let engine = Arc::new(SledEngine::open(dir).unwrap());
    (Store::with_engine(engine.clone(), keys).unwrap(), engine)
}

#[tokio::test]
async fn tampered_or_moved_ciphertext_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (store, engine) = sled_store(dir.path(), KeyRing::generate().unwrap());
    let (amy, ben) = (child("9990079196"), child("9990237573"));
    let gp = agency("gp");
    let a = store.append_update(update(&amy, Category::HealthSummary, b"amy's value", "a", &gp)).await.unwrap();
    let b = store.append_update(update(&ben, Category::HealthSummary, b"ben's value", "b", &gp)).await.unwrap();
    let original_a = engine.get(Keyspace::Updates, a.position.as_bytes()).unwrap().unwrap();
    let original_b = engine.get(Keyspace::Updates, b.position.as_bytes()).unwrap().unwrap();
    let position_a = u64::from_be_bytes(a.position.as_bytes().try_into().unwrap());
    let replace_a = |value: &[u8]| engine.replace_log_record(Keyspace::Updates, position_a, Some(value));

    // One flipped bit in the sealed payload.
    let mut flipped = original_a.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    replace_a(&flipped);
    assert!(matches!(store.profile(&amy), Err(StoreError::Key(KeyError::Authentication))));

    // Ben's sealed payload under Amy's record header (same lengths: same layout).
    let header_len = original_a.len() - UpdateRecord::decode(&original_a).unwrap().sealed.len();
    let mut swapped = original_a[..header_len].to_vec();
    swapped.extend_from_slice(&UpdateRecord::decode(&original_b).unwrap().sealed);
    replace_a(&swapped);
    assert!(matches!(store.profile(&amy), Err(StoreError::Key(KeyError::Authentication))));

    // Ben's whole record moved to Amy's position: Amy's index now points at Ben's record.
    replace_a(&original_b);
    assert!(matches!(store.profile(&amy), Err(StoreError::Corrupt(_))));

    // Amy's data key swapped for Ben's: the wrapping is bound to the child.
    replace_a(&original_a);
    assert_eq!(store.profile(&amy).unwrap().len(), 1, "restored");
    let bens_key = engine.get(Keyspace::ChildKeys, &store.child_index(&ben).0).unwrap().unwrap();
    engine.replace_child_key(&store.child_index(&amy).0, &bens_key);
    // The unwrapped key is cached; the swap is found when the key is read again (after
    // a restart, an eviction, or a rotation, which forgets every cached key).
    store.replace_keys(store.key_ring());
    assert!(matches!(store.profile(&amy), Err(StoreError::Key(KeyError::Authentication))));
}

#[tokio::test]
async fn an_erased_child_cannot_be_read_with_any_key_the_store_holds() {
    let ring = KeyRing::generate().unwrap();
    let store = Store::in_memory(ring.clone()).unwrap();
    let (amy, ben) = (child("9990079196"), child("9990237573"));
    let gp = agency("gp");
    store.append_update(update(&amy, Category::HealthSummary, b"amy 1", "a1", &gp)).await.unwrap();
    store.append_update(update(&amy, Category::SendSupport, b"amy 2", "a2", &gp)).await.unwrap();
    store.append_update(update(&ben, Category::HealthSummary, b"ben 1", "b1", &gp)).await.unwrap();

    assert!(store.erase_child(&amy, T0).await.unwrap());
    assert!(!store.erase_child(&amy, T0).await.unwrap(), "erasing twice finds nothing");
    assert!(store.profile(&amy).unwrap().is_empty());
    assert_eq!(store.profile(&ben).unwrap().len(), 1, "other children are untouched");
    let log = store.updates_after(None, 100).unwrap();
    assert_eq!(log.len(), 5, "the log keeps its records, and gains an erasure notice for each of amy's");
    let amy_index = store.child_index(&amy);
    let amys: Vec<&StoredUpdate> = log.iter().filter(|u| u.child == amy_index).collect();
    assert_eq!(amys.len(), 4);
    assert!(amys.iter().all(|u| u.content.is_none()));
    let notices: Vec<_> = amys[2..].iter().map(|u| u.amends.map(|amends| (amends.kind, amends.update_id))).collect();
    let erased = [amys[0].update_id, amys[1].update_id].map(|id| Some((crate::AmendKind::Erasure, id)));
    assert_eq!(notices, erased, "a notice names each value erased");

    // Try every key the store still holds: the KEKs, the index key, every remaining
    // child's data key and category keys.
    let mut candidates = ring.all_keys();
    let stored = store.engine.scan(Keyspace::ChildKeys, b"", None, 100).unwrap();
    for (key, wrapped) in &stored {
        if let Ok(child) = <[u8; 32]>::try_from(key.as_slice()) {
            let child_key = ring.unwrap(wrapped, key).unwrap();
            for category in Category::ALL {
                if let Some(key) = store.category_key(ChildIndex(child), category, &child_key).unwrap().live() {
                    candidates.push(key.clone());
                }
            }
            candidates.push(child_key);
        }
    }
    assert_eq!(stored.len(), 2, "ben's data key and his one category's key: amy's are gone");
    assert_eq!(candidates.len(), 4, "two ring keys, ben's data key and his category key");
    for (position, bytes) in store.engine.scan(Keyspace::Updates, b"", None, 100).unwrap() {
        let record = UpdateRecord::decode(&bytes).unwrap();
        if record.child_index != amy_index.0 {
            continue;
        }
        for key in &candidates {
            assert!(open_with(key, &record.associated_data(), &record.sealed).is_err(), "opened {position:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_writes_for_one_child_create_one_key() {
    let store = Arc::new(Store::in_memory(KeyRing::generate().unwrap()).unwrap());
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let amy = child("9990079196");
            let publisher = agency("gp");
            let key = format!("writer-{writer}");
            store.append_update(update(&amy, Category::HealthSummary, b"v", &key, &publisher)).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        store.engine.scan(Keyspace::ChildKeys, b"", None, 10).unwrap().len(),
        2,
        "one key for the child and one for its category"
    );
    let all = store.updates_after(None, 100).unwrap();
    assert_eq!(all.len(), 16);
    assert!(all.iter().all(|u| u.content.is_some()), "every record opens with the one key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_under_concurrent_writes_loses_and_corrupts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate().unwrap();
    let store = Arc::new(Store::open(dir.path(), &Default::default(), ring.clone()).unwrap());
    // A first set of children exists before rotation.
    let test_numbers: Vec<NhsNumber> = (0..400u64)
        .filter_map(|n| {
            let nine = format!("{:09}", 999_000_000 + n * 2477);
            (0..10)
                .map(|d| format!("{nine}{d}"))
                .find_map(|digits| NhsNumber::parse(&digits, &NhsNumberPolicy::development()).ok())
        })
        .take(120)
        .collect();
    let numbers = Arc::new(test_numbers);
    for (index, nhs) in numbers.iter().take(60).enumerate() {
        let key = format!("before-{index}");
        store.append_update(update(nhs, Category::SendSupport, b"before", &key, &agency("school"))).await.unwrap();
    }

    let mut rotated = ring.clone();
    rotated.add_version().unwrap();
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = store.clone();
            let numbers = numbers.clone();
            tokio::spawn(async move {
                for round in 0..30 {
                    let nhs = &numbers[(writer * 30 + round) % numbers.len()];
                    let key = format!("during-{writer}-{round}");
                    store
                        .append_update(update(nhs, Category::HealthSummary, b"during", &key, &agency("gp")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    store.replace_keys(rotated.clone());
    let mut last_progress = (0, 0);
    let rewrapped = store.rewrap_all(|done, total| last_progress = (done, total)).await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    // Catch keys created by writers that read the ring just before it was replaced.
    store.rewrap_all(|_, _| {}).await.unwrap();
    assert!(rewrapped >= 60, "rewrapped {rewrapped}");
    assert!(last_progress.0 > 0 && last_progress.0 <= last_progress.1, "progress {last_progress:?}");

    let mut retired = rotated;
    retired.retire(1).unwrap();
    store.replace_keys(retired.clone());
    let all = store.updates_after(None, 10_000).unwrap();
    assert_eq!(all.len(), 60 + 4 * 30, "nothing lost");
    assert!(all.iter().all(|u| u.content.is_some()), "everything opens without the retired version");
    Arc::try_unwrap(store).unwrap().shutdown();

    let reopened = Store::open(dir.path(), &Default::default(), retired).unwrap();
    assert_eq!(reopened.updates_after(None, 10_000).unwrap().iter().filter(|u| u.content.is_some()).count(), 180);
}

async fn populated_sled_store(dir: &std::path::Path) -> (Store, Arc<SledEngine>, KeyRing) {
    let ring = KeyRing::generate().unwrap();
    let (store, engine) = sled_store(dir, ring.clone());
    let children = ["9990079196", "9990237573", "9990316767"];
    for round in 0..40 {
        let nhs = child(children[round % children.len()]);
        let key = format!("k{round}");
        let value = format!("value {round} {}", "x".repeat(700));
        let category = Category::ALL[(round / 3) % 3];
        store.append_update(update(&nhs, category, value.as_bytes(), &key, &agency("gp"))).await.unwrap();
    }
    (store, engine, ring)
}

#[tokio::test]
async fn check_passes_a_healthy_store_and_counts_what_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = populated_sled_store(dir.path()).await;
    store.erase_child(&child("9990316767"), T0).await.unwrap();
    let report = store.check().unwrap();
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!(report.updates, 40 + 13, "with an erasure notice for each of the erased child's 13 values");
    assert_eq!(report.children, 2);
    assert_eq!(report.erased, 13, "the erased child's values are counted, not reported (its notices seal nothing)");
    assert_eq!(
        report.index_entries,
        53 + 9 + 40 + 13 + 1,
        "per child, latest value (3 children x 3 categories), idempotency, amended marks and the erased child's count"
    );
}

#[tokio::test]
async fn check_reports_each_kind_of_damage() {
    type Damage = fn(&SledEngine, &Store);
    let cases: [(&str, Damage, &str); 5] = [
        (
            "flipped ciphertext",
            |engine, _| {
                let mut value = engine.get(Keyspace::Updates, &5u64.to_be_bytes()).unwrap().unwrap();
                let last = value.len() - 1;
                value[last] ^= 0x40;
                engine.replace_log_record(Keyspace::Updates, 5, Some(&value));
            },
            "fails authentication",
        ),
        (
            "missing index entry",
            |engine, _| {
                let tree = engine.tree(Keyspace::UpdatesByChild);
                let key = tree.iter().next().unwrap().unwrap().0;
                tree.remove(key).unwrap();
            },
            "missing from the per-child index",
        ),
        (
            "stale latest value",
            |engine, _| {
                let tree = engine.tree(Keyspace::Latest);
                let key = tree.iter().next().unwrap().unwrap().0;
                tree.insert(key, 0u64.to_be_bytes().to_vec()).unwrap();
            },
            "latest-value entries disagree",
        ),
        (
            "a gap in the log",
            |engine, _| {
                engine.replace_log_record(Keyspace::Updates, 7, None);
            },
            "positions jump from 7 to 8",
        ),
        (
            "a damaged data key",
            |engine, _| {
                let (key, mut value) = engine.scan(Keyspace::ChildKeys, &[], None, 1).unwrap().remove(0);
                value[10] ^= 1;
                engine.replace_child_key(&key, &value);
            },
            "cannot be unwrapped",
        ),
    ];
    for (name, damage, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (store, engine, _) = populated_sled_store(dir.path()).await;
        damage(&engine, &store);
        let report = store.check().unwrap();
        assert!(!report.is_healthy(), "{name}: not detected");
        assert!(report.problems.iter().any(|problem| problem.contains(expected)), "{name}: {:?}", report.problems);
    }
}

#[tokio::test]
async fn bytes_overwritten_in_the_middle_of_the_data_file_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (ring, live_ciphertext) = {
        let (store, engine, ring) = populated_sled_store(dir.path()).await;
        // A record from the middle of the log; its sealed bytes are random, so they occur
        // in the file only where sled wrote this record.
        let record = engine.get(Keyspace::Updates, &20u64.to_be_bytes()).unwrap().unwrap();
        let sealed = UpdateRecord::decode(&record).unwrap().sealed;
        store.shutdown();
        (ring, sealed[sealed.len() - 200..].to_vec())
    };
    let data_file = dir.path().join("db");
    let mut bytes = std::fs::read(&data_file).unwrap();
    // sled is log-structured: a record can sit in several page versions, and the page
    // table may point at any of them. Damage every copy, in place.
    let offsets: Vec<usize> = bytes
        .windows(live_ciphertext.len())
        .enumerate()
        .filter(|(_, window)| *window == live_ciphertext.as_slice())
        .map(|(offset, _)| offset)
        .collect();
    assert!(!offsets.is_empty(), "the record is in the file");
    assert!(offsets.iter().all(|offset| *offset > 4096 && *offset < bytes.len() - 4096), "in the middle of the file");
    for offset in offsets {
        for byte in &mut bytes[offset + 50..offset + 114] {
            *byte ^= 0xa5;
        }
    }
    std::fs::write(&data_file, &bytes).unwrap();
    // sled recovers up to the damaged record and drops the rest as a torn tail; the
    // log-end mark shows that more was acknowledged, so the store refuses to open.
    match Store::open(dir.path(), &sled_options(), ring) {
        Err(StoreError::Storage(err)) => {
            assert_eq!(err.kind, StorageErrorKind::Corrupt, "{err}");
            assert!(err.message.contains("recovered 20 records but 40 were acknowledged"), "{err}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(store) => panic!("a damaged store opened: {:?}", store.check()),
    }
    // Note: sled's recovery has already cut the "torn" tail off the file in place during
    // that open; sled 0.34 has no read-only open. The refusal keeps the broker from
    // running on the shortened store; `tio store check` works on a copy so that looking
    // never changes anything.
}

#[tokio::test]
async fn a_damaged_log_end_mark_is_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let ring = {
        let (store, _, ring) = populated_sled_store(dir.path()).await;
        store.shutdown();
        ring
    };
    let mark = dir.path().join(crate::engine::sled::LOG_END_FILE);
    let text = std::fs::read_to_string(&mark).unwrap();
    assert!(text.starts_with("tio-log-end 1 40 0 "), "{text:?}");
    std::fs::write(&mark, text.replace(" 40 ", " 41 ")).unwrap();
    let err = Store::open(dir.path(), &sled_options(), ring.clone()).unwrap_err();
    assert!(err.to_string().contains("log-end file is damaged"), "{err}");
    std::fs::remove_file(&mark).unwrap();
    assert!(
        Store::open(dir.path(), &sled_options(), ring).is_ok(),
        "without a mark (a store from before it existed) the store opens"
    );
}

#[tokio::test]
async fn a_backup_restores_to_the_same_store_and_a_damaged_one_restores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let (ring, before) = {
        let (store, _, ring) = populated_sled_store(&live).await;
        let before = store.updates_after(None, 1000).unwrap();
        store.shutdown();
        (ring, before)
    };
    let backup = dir.path().join("store.backup");
    let backup_copy = backup.clone();
    tokio::task::spawn_blocking(move || {
        let engine: Arc<dyn Engine> = Arc::new(SledEngine::open(&live).unwrap());
        let commit = crate::GroupCommit::start(engine.clone()).unwrap();
        let mut seen = 0;
        let summary =
            crate::backup::write_backup(&commit, engine.as_ref(), &backup_copy, |entries| seen = entries).unwrap();
        assert_eq!(seen, summary.entries);
        assert!(summary.entries > 80);
        assert_eq!(crate::backup::verify_backup(&backup_copy).unwrap(), summary, "verifies as written");
        assert!(
            crate::backup::write_backup(&commit, engine.as_ref(), &backup_copy, |_| {}).is_err(),
            "never overwrites a backup"
        );
        commit.shutdown();
    })
    .await
    .unwrap();
    let restored_dir = dir.path().join("restored");
    // Onto the same engine: the same records at the same positions.
    crate::backup::restore_backup(&backup, &restored_dir, &sled_options(), |_| {}).unwrap();
    let restored = Store::open(&restored_dir, &sled_options(), ring.clone()).unwrap();
    assert_eq!(restored.updates_after(None, 1000).unwrap(), before);
    assert!(restored.check().unwrap().is_healthy());
    let appended = restored
        .append_update(update(&child("9990079196"), Category::SendSupport, b"after", "after-restore", &agency("gp")))
        .await
        .unwrap();
    assert_eq!(
        appended.position,
        Position::from_bytes(40u64.to_be_bytes().to_vec()),
        "positions continue after a restore"
    );

    let mut damaged = std::fs::read(&backup).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 1;
    let damaged_path = dir.path().join("damaged.backup");
    std::fs::write(&damaged_path, damaged).unwrap();
    let target = dir.path().join("from-damaged");
    let err = crate::backup::restore_backup(&damaged_path, &target, &Default::default(), |_| {}).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Corrupt, "{err}");
    assert_eq!(crate::backup::verify_backup(&damaged_path).unwrap_err().kind, StorageErrorKind::Corrupt);
    assert!(!target.exists() && !target.with_extension("restoring").exists(), "a failed restore leaves nothing");
    assert!(
        crate::backup::restore_backup(&backup, &restored_dir, &Default::default(), |_| {}).is_err(),
        "never restores over a store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writers_run_restores_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("live"), &Default::default(), ring.clone()).unwrap());
    let gp = agency("gp");
    let children = ["9990079196", "9990237573", "9990316767"];
    // Writers run before, during and after the backup: each appends until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (writer, nhs) in children.iter().enumerate() {
        let (store, stop, gp) = (store.clone(), stop.clone(), gp.clone());
        let nhs = child(nhs);
        writers.push(tokio::spawn(async move {
            let mut written = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && written < 2000 {
                let key = format!("w{writer}-{written}");
                let category = Category::ALL[written as usize % Category::ALL.len()];
                store.append_update(update(&nhs, category, key.as_bytes(), &key, &gp)).await.unwrap();
                written += 1;
            }
            written
        }));
    }
    while store.last_update_position().unwrap().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let backup = dir.path().join("live.backup");
    let (backup_store, spool, out) = (store.clone(), dir.path().to_owned(), backup.clone());
    let summary = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create_new(&out).unwrap();
        backup_store.backup_to(&spool, std::io::BufWriter::new(file), |_| {}).unwrap()
    })
    .await
    .unwrap();
    // One more update after the backup, whatever the writers managed on a busy
    // machine (issue 12: the writers could all have finished before the backup began,
    // and the test then failed), so that the live log is always longer than the backup.
    let after = child(children[0]);
    store.append_update(update(&after, Category::ALL[0], b"after", "after-backup", &gp)).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 1;
    for writer in writers {
        written += writer.await.unwrap();
    }
    let restored_dir = dir.path().join("restored");
    crate::backup::restore_backup(&backup, &restored_dir, &Default::default(), |_| {}).unwrap();
    let restored = Store::open(&restored_dir, &Default::default(), ring).unwrap();
    let report = restored.check().unwrap();
    assert!(report.is_healthy(), "indexes and latest values agree with the records: {:?}", report.problems);
    assert!(summary.entries > 0 && report.updates > 0, "the backup holds updates");
    assert!(report.updates < u64::from(written), "writers went on during and after the backup");
    let live_updates = store.updates_after(None, 100_000).unwrap();
    let restored_updates = restored.updates_after(None, 100_000).unwrap();
    assert_eq!(live_updates.len() as u64, u64::from(written));
    assert_eq!(
        without_positions(&live_updates[..restored_updates.len()]),
        without_positions(&restored_updates),
        "a prefix of the live log, unchanged"
    );
}

/// Wraps an engine and fails its writes with "no space" while `full` is set.
struct FullDisk {
    inner: crate::engine::memory::MemoryEngine,
    full_on_apply: std::sync::atomic::AtomicBool,
    full_on_sync: std::sync::atomic::AtomicBool,
}

impl Engine for FullDisk {
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(space, key)
    }
    fn scan(
        &self,
        space: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<crate::engine::Entries, StorageError> {
        self.inner.scan(space, start, end, limit)
    }
    fn last(&self, space: Keyspace) -> Result<Option<crate::engine::Entry>, StorageError> {
        self.inner.last(space)
    }
    fn apply(&self, batch: &Batch) -> Result<crate::engine::Applied, CommitError> {
        if self.full_on_apply.load(std::sync::atomic::Ordering::SeqCst) {
            let enospc = std::io::Error::from_raw_os_error(28);
            return Err(CommitError::Storage(StorageError::from_io("cannot write", &enospc)));
        }
        self.inner.apply(batch)
    }
    fn sync(&self) -> Result<(), StorageError> {
        if self.full_on_sync.load(std::sync::atomic::Ordering::SeqCst) {
            let enospc = std::io::Error::from_raw_os_error(28);
            return Err(StorageError::from_io("cannot sync", &enospc));
        }
        self.inner.sync()
    }
    fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.inner.size_on_disk()
    }
}

#[tokio::test]
async fn a_full_disk_fails_writes_as_no_space_acknowledges_nothing_and_recovers() {
    use std::sync::atomic::Ordering::SeqCst;
    let engine = Arc::new(FullDisk {
        inner: crate::engine::memory::MemoryEngine::new(),
        full_on_apply: false.into(),
        full_on_sync: false.into(),
    });
    let store = Store::with_engine(engine.clone(), KeyRing::generate().unwrap()).unwrap();
    let amy = child("9990079196");
    let gp = agency("gp");
    store.append_update(update(&amy, Category::HealthSummary, b"before", "k0", &gp)).await.unwrap();

    engine.full_on_apply.store(true, SeqCst);
    match store.append_update(update(&amy, Category::HealthSummary, b"while full", "k1", &gp)).await {
        Err(StoreError::Storage(err)) => assert_eq!(err.kind, StorageErrorKind::NoSpace, "{err}"),
        other => panic!("expected no space, got {other:?}"),
    }
    assert_eq!(count_updates(&store), 1, "nothing of the failed write was applied");

    // The write applies but its sync fails: it is not acknowledged.
    engine.full_on_apply.store(false, SeqCst);
    engine.full_on_sync.store(true, SeqCst);
    match store.append_update(update(&amy, Category::HealthSummary, b"unsynced", "k2", &gp)).await {
        Err(StoreError::Storage(err)) => assert_eq!(err.kind, StorageErrorKind::NoSpace, "{err}"),
        other => panic!("expected no space, got {other:?}"),
    }

    // Space returns: writes succeed, and a retry of the unacknowledged write settles it
    // (it either lands now or turns out to have landed, never twice).
    engine.full_on_sync.store(false, SeqCst);
    store.append_update(update(&amy, Category::HealthSummary, b"after", "k3", &gp)).await.unwrap();
    store.append_update(update(&amy, Category::HealthSummary, b"unsynced", "k2", &gp)).await.unwrap();
    let values: Vec<Vec<u8>> =
        store.updates_after(None, 100).unwrap().into_iter().map(|u| u.content.unwrap().value).collect();
    assert_eq!(values.iter().filter(|value| value.as_slice() == b"unsynced").count(), 1);
    assert!(values.iter().all(|value| value.as_slice() != b"while full"));
    assert!(store.check().unwrap().is_healthy());
}

/// A tmpfs of `megabytes`, unmounted on drop; `None` where this machine does not let
/// the tests mount (then the fault-injecting test above is the coverage).
struct SmallFilesystem(tempfile::TempDir);

impl SmallFilesystem {
    fn mount(megabytes: u32) -> Option<SmallFilesystem> {
        let dir = tempfile::tempdir().ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(SmallFilesystem(dir))
    }

    fn resize(&self, megabytes: u32) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={megabytes}m")])
            .arg(self.0.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

/// sled 0.34 keeps its first I/O error: after ENOSPC every later write fails until the
/// database is reopened, which the engine does itself once the filesystem has room. What
/// must hold: nothing acknowledged is lost, nothing is half-written, writes fail as
/// `NoSpace` while the disk is full and succeed again, in the same process, once space
/// returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_full_filesystem_fails_cleanly_and_the_store_writes_again_once_space_returns() {
    let Some(filesystem) = SmallFilesystem::mount(24) else {
        eprintln!(
            "SKIPPED a_real_full_filesystem_fails_cleanly_and_the_store_writes_again_once_space_returns: \
             cannot mount a tmpfs here"
        );
        return;
    };
    let dir = filesystem.0.path().join("store");
    let ring = KeyRing::generate().unwrap();
    let store = Store::open(&dir, &small_segments(), ring.clone()).unwrap();
    let gp = agency("gp");
    let value = vec![b'v'; 1024];
    let mut acknowledged = 0u64;
    let append = async |key: String| {
        store.append_update(update(&child("9990079196"), Category::HealthSummary, &value, &key, &gp)).await
    };
    let error = loop {
        assert!(acknowledged < 200_000, "the filesystem never filled");
        match append(format!("k{acknowledged}")).await {
            Ok(_) => acknowledged += 1,
            Err(err) => break err,
        }
    };
    assert!(matches!(&error, StoreError::Storage(err) if err.kind == StorageErrorKind::NoSpace), "{error}");
    assert!(acknowledged > 100);
    // Still full: refused again as NoSpace. (sled may refuse reads too meanwhile: it
    // keeps its first error for every operation until it is reopened.)
    let again = append("still-full".to_owned()).await.unwrap_err();
    assert!(matches!(&again, StoreError::Storage(err) if err.kind == StorageErrorKind::NoSpace), "{again}");

    filesystem.resize(200);
    append("after".to_owned()).await.expect("writes resume once space returns, without a restart");
    acknowledged += 1;
    let report = store.check().unwrap();
    assert!(report.is_healthy(), "{:?}", report.problems);
    store.shutdown();

    let reopened = Store::open(&dir, &small_segments(), ring).unwrap();
    let report = reopened.check().unwrap();
    assert!(report.is_healthy(), "{:?}", report.problems);
    // A group whose sync failed is not acknowledged, but may have reached the disk.
    assert!(
        (acknowledged..=acknowledged + 1).contains(&report.updates),
        "every acknowledged write is there: {} of {acknowledged}",
        report.updates
    );
    reopened.shutdown();
}

#[tokio::test]
async fn a_sealed_child_reference_opens_for_its_child_only_and_never_after_erasure() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let (amy, ben) = (child("9990079196"), child("9990237573"));
    assert_eq!(store.seal_child_reference(&amy).unwrap(), None, "no key, no reference");
    let hospital = agency("hospital");
    store.append_update(update(&amy, Category::HealthSummary, b"v1", "k1", &hospital)).await.unwrap();
    store.append_update(update(&ben, Category::HealthSummary, b"v1", "k2", &hospital)).await.unwrap();

    let sealed = store.seal_child_reference(&amy).unwrap().expect("amy has a key");
    assert!(!contains(&sealed, amy.digits().as_bytes()));
    let amy_index = store.child_index(&amy);
    assert_eq!(store.open_child_reference(amy_index, &sealed).unwrap(), Some(amy.digits()));
    assert!(matches!(store.open_child_reference(store.child_index(&ben), &sealed), Err(StoreError::Key(_))));

    assert!(store.erase_child(&amy, T0).await.unwrap());
    assert_eq!(store.open_child_reference(amy_index, &sealed).unwrap(), None);
    assert_eq!(store.seal_child_reference(&amy).unwrap(), None);
}

#[tokio::test]
async fn sealed_child_records_open_in_place_only_and_vanish_with_the_child() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let (amy, ben) = (child("9990079196"), child("9990237573"));
    assert!(store.sealed_put(&amy, Keyspace::Consents, b"c-1", b"x").is_err(), "no key yet");
    store.ensure_child_key(&amy).await.unwrap();
    store.ensure_child_key(&amy).await.unwrap();
    store.ensure_child_key(&ben).await.unwrap();
    assert!(store.sealed_put(&amy, Keyspace::Updates, b"c-1", b"x").is_err(), "only consents and relationships");

    let mut batch = Batch::new();
    for (suffix, text) in [(&b"c-1/1"[..], &b"first"[..]), (b"c-1/2", b"second"), (b"c-2/1", b"other")] {
        batch.push(store.sealed_put(&amy, Keyspace::Consents, suffix, text).unwrap());
    }
    batch.push(store.sealed_put(&ben, Keyspace::Consents, b"c-1/1", b"ben's").unwrap());
    store.commit(batch).await.unwrap();

    let amy_c1 = store.read_sealed(&amy, Keyspace::Consents, b"c-1/").unwrap();
    let texts: Vec<&[u8]> = amy_c1.iter().map(|record| record.plaintext.as_slice()).collect();
    assert_eq!(texts, [&b"first"[..], b"second"]);
    assert_eq!(amy_c1[1].suffix, b"c-1/2");
    assert_eq!(store.read_sealed(&amy, Keyspace::Consents, b"").unwrap().len(), 3);
    assert!(store.read_sealed(&amy, Keyspace::Relationships, b"").unwrap().is_empty());
    let raw = &amy_c1[0].raw;
    assert!(!contains(raw, b"first"));

    // Moved to the other child's key, the ciphertext no longer opens.
    let mut batch = Batch::new();
    batch.push(Op::Put { space: Keyspace::Consents, key: store.child_record_key(&ben, b"c-9/1"), value: raw.clone() });
    store.commit(batch).await.unwrap();
    assert!(matches!(store.read_sealed(&ben, Keyspace::Consents, b"c-9/"), Err(StoreError::Key(_))));

    assert!(store.erase_child(&amy, T0).await.unwrap());
    assert!(store.read_sealed(&amy, Keyspace::Consents, b"").unwrap().is_empty());
}

#[tokio::test]
async fn the_child_s_number_is_kept_sealed_for_deliveries_and_the_latest_positions_are_listed() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let (amy, ben) = (child("9990079196"), child("9990237573"));
    assert_eq!(store.last_update_position().unwrap(), None);
    let hospital = agency("hospital");
    let first = store.append_update(update(&amy, Category::HealthSummary, b"v1", "k1", &hospital)).await.unwrap();
    store.ensure_child_key(&ben).await.unwrap();
    let second = store.append_update(update(&ben, Category::SendSupport, b"v2", "k2", &hospital)).await.unwrap();
    let third = store.append_update(update(&amy, Category::HealthSummary, b"v3", "k3", &hospital)).await.unwrap();
    assert_eq!(store.last_update_position().unwrap(), Some(third.position.clone()));

    for (child, index) in [(&amy, store.child_index(&amy)), (&ben, store.child_index(&ben))] {
        assert_eq!(store.child_nhs_number(index).unwrap(), Some(child.digits()));
    }
    let latest = store.latest_after(None, 10).unwrap();
    let mut positions: Vec<Position> = latest.iter().map(|(_, position)| position.clone()).collect();
    positions.sort();
    assert_eq!(positions, [second.position.clone(), third.position.clone()], "one per child and category");
    assert_eq!(store.latest_after(Some(&latest[0].0), 10).unwrap().len(), 1);
    let stored = store.update_at(&first.position).unwrap().unwrap();
    assert_eq!(stored.content.unwrap().value, b"v1");

    assert!(store.erase_child(&amy, T0).await.unwrap());
    assert_eq!(store.child_nhs_number(store.child_index(&amy)).unwrap(), None);
}

/// Erasure as a data-protection officer would check it: afterwards the child's wrapped
/// data key (which the key-encryption key the store still holds would unwrap) is in no
/// file under the data directory, nor is any wrapping a key rotation replaced.
#[tokio::test]
async fn after_erasure_no_file_under_the_store_holds_the_childs_wrapped_key() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate().unwrap();
    let (store, engine) = sled_store(dir.path(), ring.clone());
    let (amy, ben) = (child("9990079196"), child("9990237573"));
    let gp = agency("gp");
    store.append_update(update(&amy, Category::HealthSummary, b"amy 1", "a1", &gp)).await.unwrap();
    let amy_index = store.child_index(&amy);
    let first_wrapping = engine.get(Keyspace::ChildKeys, &amy_index.0).unwrap().unwrap();
    let mut rotated = ring.clone();
    rotated.add_version().unwrap();
    store.replace_keys(rotated.clone());
    assert_eq!(store.rewrap_all(|_, _| {}).await.unwrap(), 1);
    let second_wrapping = engine.get(Keyspace::ChildKeys, &amy_index.0).unwrap().unwrap();
    assert_ne!(first_wrapping, second_wrapping);
    for n in 0..100 {
        store.append_update(update(&ben, Category::HealthSummary, b"ben", &format!("b{n}"), &gp)).await.unwrap();
    }
    let copies = |wrapped: &[u8]| -> usize {
        walk(dir.path())
            .iter()
            .map(|path| std::fs::read(path).unwrap().windows(wrapped.len()).filter(|w| *w == wrapped).count())
            .sum()
    };
    assert_eq!(copies(&first_wrapping), 0, "the wrapping the rotation replaced is gone");
    assert!(copies(&second_wrapping) > 0, "the live wrapping is on disk: the search can find it");

    assert!(store.erase_child(&amy, T0).await.unwrap());
    for n in 0..100 {
        store.append_update(update(&ben, Category::HealthSummary, b"ben", &format!("c{n}"), &gp)).await.unwrap();
    }
    drop(engine);
    store.shutdown();
    assert_eq!(copies(&second_wrapping), 0, "a copy of the erased child's wrapped key is still on disk");
    let (store, _) = sled_store(dir.path(), rotated);
    assert_eq!(store.profile(&ben).unwrap().len(), 1, "the other child reads after reopening");
    assert!(store.check().unwrap().is_healthy());
}

/// Every file under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Issue 13: a backup restores onto an engine whose positions are not counters. Every
/// record is there; every stored position (indexes, cursors, the audit tree's) names the
/// same record as before; a repeated idempotency key still finds its original.
#[tokio::test]
async fn a_backup_restores_onto_an_engine_with_other_positions() {
    use crate::audit_records::{EntriesFrom, TreeRecord, append_entry, put_tree};
    use crate::cursors::{ProfilePhase, SubscriptionHead, UnackedDelivery, put_head, put_unacked};
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let (store, _, ring) = populated_sled_store(&live).await;
    let before = store.updates_after(None, 1000).unwrap();
    let mut batch = Batch::new();
    for n in 0..5u8 {
        batch.push(append_entry(vec![b'e', n]));
    }
    store.commit(batch).await.unwrap();
    let entries = store.audit_entries(EntriesFrom::Start, 10).unwrap();
    let head = SubscriptionHead {
        name: "main".into(),
        categories: vec!["send_support".into()],
        max_in_flight: 8,
        created_at_micros: 0,
        cursor: Some(before[6].position.as_bytes().to_vec()),
        since_micros: None,
        profile: ProfilePhase::Done,
        next_number: 2,
        last_acked: 0,
        last_error: String::new(),
    };
    let mut batch = Batch::new();
    batch.push(put_head("school", &head));
    let unacked = UnackedDelivery { position: before[5].position.as_bytes().to_vec(), from_profile: false };
    batch.push(put_unacked("school", "main", 1, &unacked));
    batch.push(put_tree(TreeRecord::Leaf(0), entries[0].0.clone()));
    batch.push(put_tree(TreeRecord::Sequenced, entries[4].0.clone()));
    store.commit(batch).await.unwrap();
    store.shutdown();

    let backup = dir.path().join("store.backup");
    let (from, to) = (live.clone(), backup.clone());
    tokio::task::spawn_blocking(move || crate::backup::backup_stopped_store(&from, &sled_options(), &to, |_| {}))
        .await
        .unwrap()
        .unwrap();
    let engine = Arc::new(crate::engine::memory::MemoryEngine::sparse());
    crate::backup::restore_into(&backup, engine.as_ref(), &mut |_| {}).unwrap();
    let restored = Store::with_engine(engine, ring).unwrap();

    let after = restored.updates_after(None, 1000).unwrap();
    assert_ne!(after[0].position, before[0].position, "control: the engine gave other positions");
    let without_position = |updates: &[StoredUpdate]| {
        updates.iter().map(|u| (u.update_id, u.category, u.content.clone())).collect::<Vec<_>>()
    };
    assert_eq!(without_position(&after), without_position(&before));
    let report = restored.check().unwrap();
    assert!(report.is_healthy(), "indexes point at the records: {:?}", report.problems);
    assert_eq!(restored.profile(&child("9990079196")).unwrap().len(), 3);

    let head = restored.subscription_head("school", "main").unwrap().unwrap().head;
    let cursor = Position::from_bytes(head.cursor.unwrap());
    assert_eq!(restored.update_at(&cursor).unwrap().unwrap().update_id, before[6].update_id);
    let unacked = restored.unacked_deliveries("school", "main", 10).unwrap();
    let delivered = Position::from_bytes(unacked[&1].position.clone());
    assert_eq!(restored.update_at(&delivered).unwrap().unwrap().update_id, before[5].update_id);
    let restored_entries = restored.audit_entries(EntriesFrom::Start, 10).unwrap();
    assert_eq!(
        restored_entries.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        [b"e\0", b"e\x01", b"e\x02", b"e\x03", b"e\x04"]
    );
    assert_eq!(restored.audit_tree(TreeRecord::Leaf(0)).unwrap(), Some(restored_entries[0].0.clone()));
    assert_eq!(restored.audit_tree(TreeRecord::Sequenced).unwrap(), Some(restored_entries[4].0.clone()));

    // The idempotency record names the restored position: a repeat finds the original.
    let repeat =
        restored.append_update(update(&child("9990079196"), Category::ALL[0], b"value 0 ", "k0", &agency("gp"))).await;
    assert!(matches!(repeat, Err(StoreError::IdempotencyMismatch)), "k0 was used with other content");
    let original = format!("value 0 {}", "x".repeat(700));
    let repeat = restored
        .append_update(update(&child("9990079196"), Category::ALL[0], original.as_bytes(), "k0", &agency("gp")))
        .await
        .unwrap();
    assert!(repeat.duplicate);
    assert_eq!((repeat.update_id, repeat.position), (after[0].update_id, after[0].position.clone()));
}

/// Issue 13: past the edge a child is its number with its blind index, computed once;
/// a delivery finds the child from the index alone while its key exists.
#[tokio::test]
async fn a_child_past_the_edge_carries_its_index_and_is_found_from_it_until_erased() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let amy = child("9990079196");
    let found = store.child(&amy);
    assert_eq!(found.index(), store.child_index(&amy));
    assert_eq!(found.index_in(&store), found.index(), "a Child answers with the index it carries");
    assert!(store.child_at(found.index()).unwrap().is_none(), "no key yet: nothing to find");
    store.ensure_child_key(&found).await.unwrap();
    assert_eq!(store.child_at(found.index()).unwrap(), Some(found));
    store.append_update(update(&amy, Category::SendSupport, b"v", "k", &agency("gp"))).await.unwrap();
    assert_eq!(store.profile(&found).unwrap(), store.profile(&amy).unwrap(), "either form finds the same records");
    assert!(store.erase_child(&found, T0).await.unwrap());
    assert!(store.child_at(found.index()).unwrap().is_none(), "erased: the number is gone with the key");
}

/// A date of birth given with an update is kept beside the child's number, sealed: a
/// later update without one keeps it, a corrected one replaces it, the store checks
/// clean, and erasure leaves it unreadable.
#[tokio::test]
async fn a_date_of_birth_is_kept_sealed_beside_the_child_until_erasure() {
    let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
    let (amy, ben) = (child("9990079196"), child("9990237573"));
    let gp = agency("gp");
    let born = tio_core::Date::new(2016, 2, 29).unwrap();
    let corrected = tio_core::Date::new(2016, 3, 1).unwrap();
    assert_eq!(store.date_of_birth(&amy).unwrap(), None);
    let first =
        NewUpdate { date_of_birth: Some(born), ..update(&amy, Category::IdentityAndContacts, b"id", "k1", &gp) };
    store.append_update(first).await.unwrap();
    assert_eq!(store.date_of_birth(&amy).unwrap(), Some(born));
    store.append_update(update(&amy, Category::HealthSummary, b"hs", "k2", &gp)).await.unwrap();
    assert_eq!(store.date_of_birth(&amy).unwrap(), Some(born), "an update without one keeps it");
    let again =
        NewUpdate { date_of_birth: Some(corrected), ..update(&amy, Category::IdentityAndContacts, b"id2", "k3", &gp) };
    store.append_update(again).await.unwrap();
    assert_eq!(store.date_of_birth(&amy).unwrap(), Some(corrected));
    assert_eq!(store.date_of_birth(&ben).unwrap(), None);
    let report = store.check().unwrap();
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert!(store.erase_child(&amy, T0).await.unwrap());
    assert_eq!(store.date_of_birth(&amy).unwrap(), None);
}

/// The stored form of a date: version 1, the year big-endian, month, day.
#[test]
fn dates_of_birth_have_a_stable_stored_form() {
    let born = tio_core::Date::new(2016, 2, 29).unwrap();
    assert_eq!(super::encode_date(born), [1, 0x07, 0xE0, 2, 29]);
    assert_eq!(super::decode_date(&[1, 0x07, 0xE0, 2, 29]), Some(born));
    assert_eq!(super::decode_date(&[2, 0x07, 0xE0, 2, 29]), None, "an unknown version");
    assert_eq!(super::decode_date(&[1, 0x07, 0xE1, 2, 29]), None, "not a date: 29 February 2017");
    assert_eq!(super::decode_date(&[1, 0x07, 0xE0, 2]), None, "too short");
}

/// Issue 15: a store moves between the embedded engines and PostgreSQL, both ways, by
/// backup and restore: every update, index, cursor and audit entry comes across, and a
/// database that already holds a store is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moves_to_postgresql_and_back_by_backup_and_restore() {
    let server = tio_pgtest::TestPostgres::start().expect("a test PostgreSQL starts (tests/run installs it)");
    let postgres = crate::StoreOptions {
        engine: crate::EngineKind::Postgres,
        postgres: Some(crate::PostgresOptions::new(server.create_database().unwrap())),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let (store, _, ring) = populated_sled_store(&live).await;
    let before = store.updates_after(None, 1000).unwrap();
    store.shutdown();
    let without_position = |updates: &[StoredUpdate]| {
        updates.iter().map(|u| (u.update_id, u.category, u.content.clone())).collect::<Vec<_>>()
    };

    let backup = dir.path().join("from-sled.backup");
    let (from, to) = (live.clone(), backup.clone());
    tokio::task::spawn_blocking(move || crate::backup::backup_stopped_store(&from, &sled_options(), &to, |_| {}))
        .await
        .unwrap()
        .unwrap();
    let (input, options) = (backup.clone(), postgres.clone());
    let unused = dir.path().join("unused");
    let restored =
        tokio::task::spawn_blocking(move || crate::backup::restore_backup(&input, &unused, &options, |_| {}))
            .await
            .unwrap()
            .unwrap();
    assert!(restored.entries > 0);
    assert!(!dir.path().join("unused").exists(), "nothing is written beside a database");
    let on_postgres = Store::open(dir.path(), &postgres, ring.clone()).unwrap();
    let moved = on_postgres.updates_after(None, 1000).unwrap();
    assert_eq!(without_position(&moved), without_position(&before));
    assert!(on_postgres.check().unwrap().is_healthy());
    assert_eq!(on_postgres.profile(&child("9990079196")).unwrap().len(), 3);
    on_postgres.shutdown();

    let (input, options) = (backup.clone(), postgres.clone());
    let unused = dir.path().join("unused");
    let err = tokio::task::spawn_blocking(move || crate::backup::restore_backup(&input, &unused, &options, |_| {}))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("already holds a store"), "{err}");

    let back = dir.path().join("from-postgres.backup");
    let (options, to) = (postgres.clone(), back.clone());
    tokio::task::spawn_blocking(move || crate::backup::backup_stopped_store(Path::new(""), &options, &to, |_| {}))
        .await
        .unwrap()
        .unwrap();
    let embedded = dir.path().join("embedded");
    let (input, target) = (back.clone(), embedded.clone());
    tokio::task::spawn_blocking(move || {
        crate::backup::restore_backup(&input, &target, &crate::StoreOptions::default(), |_| {})
    })
    .await
    .unwrap()
    .unwrap();
    let returned = Store::open(&embedded, &crate::StoreOptions::default(), ring).unwrap();
    assert_eq!(without_position(&returned.updates_after(None, 1000).unwrap()), without_position(&before));
    assert!(returned.check().unwrap().is_healthy());
    assert_eq!(returned.profile(&child("9990079196")).unwrap().len(), 3);
}

/// Two stores (nodes) on one database of a PostgreSQL started for the test, which
/// lives as long as the first value returned.
fn two_nodes_on_postgresql() -> (tio_pgtest::TestPostgres, Store, Store) {
    let server = tio_pgtest::TestPostgres::start().expect("a test PostgreSQL starts (tests/run installs it)");
    let url = server.create_database().unwrap();
    let node = crate::StoreOptions {
        engine: crate::EngineKind::Postgres,
        postgres: Some(crate::PostgresOptions { hold: crate::PostgresHold::Node, ..crate::PostgresOptions::new(url) }),
        ..Default::default()
    };
    let ring = KeyRing::generate().unwrap();
    // A database engine writes nothing beside it.
    let unused = Path::new("");
    let first = Store::open(unused, &node, ring.clone()).unwrap();
    let second = Store::open(unused, &node, ring).unwrap();
    (server, first, second)
}

/// Two stores on one PostgreSQL database stand for two nodes. A child's key that one
/// node holds in memory is forgotten when the other erases the child: the notice of the
/// erasure's commit empties the cache (a notice lost would leave it at most a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_erasure_empties_this_nodes_key_cache() {
    let (_server, first, second) = two_nodes_on_postgresql();
    let amy = child("9990079196");
    let publisher = agency("hospital");
    first.append_update(update(&amy, Category::HealthSummary, b"v", "k1", &publisher)).await.unwrap();
    let index = first.child_index(&amy);
    assert!(first.data_key(index).unwrap().is_some());
    assert!(first.cached_data_key(index).is_ok(), "the first node holds the key in memory");
    let generation = first.key_cache().generation();
    assert!(second.erase_child(&amy, T0).await.unwrap());
    // Told by the notice (the cache's generation moves on), not by the key's lifetime.
    let started = std::time::Instant::now();
    while first.key_cache().generation() == generation {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the erasure was never announced");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(first.key_cache().key(index).is_none(), "the key left this node's memory");
    assert!(first.data_key(index).unwrap().is_none(), "and the store holds it no more");
    assert!(first.child_records(&amy).unwrap().consents.is_empty());
}

/// Two stores on one PostgreSQL database stand for two nodes. What a delivery may read
/// of a child from this node's memory (`child_records_for_guarded_commit`) is forgotten
/// when a precondition on the child's records fails here, and when the other node
/// commits to some child's records (by the notice of its commit); reads that are not
/// guarded by a commit's preconditions (`child_records`) are made now, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_shared_database_kept_records_go_when_a_precondition_fails_or_another_node_changes_them() {
    let (_server, first, second) = two_nodes_on_postgresql();
    let amy = child("9990079196");
    let index = first.child_index(&amy);
    first.append_update(update(&amy, Category::HealthSummary, b"v", "k1", &agency("hospital"))).await.unwrap();
    let relationship = |id: &str| tio_core::RelationshipRecord {
        relationship: tio_core::CareRelationship {
            id: tio_core::RelationshipId(id.into()),
            ended_at: None,
            ..crate::relationships::tests::record().relationship
        },
        end_reason: String::new(),
        ..crate::relationships::tests::record()
    };
    let declare = |store: &Store, id: &str| {
        let (absent, op) = store.put_new_relationship(&amy, &relationship(id)).unwrap();
        let mut batch = Batch::new();
        batch.require(absent);
        batch.push(op);
        batch
    };
    first.commit(declare(&first, "r-1")).await.unwrap();

    let kept = first.child_records_for_guarded_commit(&amy).unwrap();
    assert_eq!(kept.relationships.len(), 1);
    assert!(Arc::ptr_eq(&kept, &first.child_records_for_guarded_commit(&amy).unwrap()), "kept");
    // Only a guarded read answers from memory: an out-of-date reading stands in here.
    {
        let mut cache = first.key_cache();
        let generation = cache.generation();
        cache.keep_records(generation, index, &Arc::new(crate::child_records::ChildRecords::default()));
    }
    assert!(first.child_records_for_guarded_commit(&amy).unwrap().relationships.is_empty());
    assert_eq!(first.child_records(&amy).unwrap().relationships.len(), 1, "an unguarded read is made now");
    assert_eq!(first.child_records_for_guarded_commit(&amy).unwrap().relationships.len(), 1, "and kept");

    // A precondition on the child's records fails (r-1 is not as a delivery read it),
    // in a batch that writes none of them: they go.
    let key = first.child_record_key(&amy, b"r-1");
    let mut batch = Batch::new();
    batch.require(Condition::Equals { space: Keyspace::Relationships, key, value: b"older".to_vec() });
    let refused = first.commit(batch).await.unwrap_err();
    assert!(matches!(refused, StoreError::Conflict { .. }), "{refused:?}");
    assert!(first.key_cache().records(index).is_none(), "forgotten when a precondition on them failed");

    // The other node declares r-2: the notice of its commit makes this node forget.
    let kept = first.child_records_for_guarded_commit(&amy).unwrap();
    assert_eq!(kept.relationships.len(), 1);
    let generation = first.key_cache().generation();
    second.commit(declare(&second, "r-2")).await.unwrap();
    let started = std::time::Instant::now();
    while first.key_cache().generation() == generation {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the other node's commit was never announced");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(first.key_cache().records(index).is_none(), "forgotten on the other node's notice");
    assert_eq!(first.child_records_for_guarded_commit(&amy).unwrap().relationships.len(), 2);
}

/// Opens every update a group appends and, for each, puts a marker under its position;
/// keeps what it opened and what became of its batches.
struct Marker {
    store: std::sync::OnceLock<std::sync::Weak<Store>>,
    opened: std::sync::Mutex<Vec<(Position, Category, Vec<u8>)>>,
    settled: std::sync::Mutex<Vec<bool>>,
}

impl crate::UpdateFollower for Marker {
    fn follow(&self, appended: &[crate::AppendedUpdate<'_>]) -> Vec<Batch> {
        let store = self.store.get().and_then(std::sync::Weak::upgrade).unwrap();
        appended
            .iter()
            .map(|appended| {
                let update = store.open_appended(appended).unwrap();
                let value = update.content.unwrap().value;
                self.opened.lock().unwrap().push((appended.position.clone(), update.category, value));
                let mut batch = Batch::new();
                batch.push(Op::Put {
                    space: Keyspace::Cursors,
                    key: appended.position.as_bytes().to_vec(),
                    value: b"followed".to_vec(),
                });
                batch
            })
            .collect()
    }

    fn settled(&self, outcomes: Vec<Result<(), StoreError>>) {
        self.settled.lock().unwrap().extend(outcomes.iter().map(Result::is_ok));
    }
}

#[tokio::test]
async fn a_follower_opens_each_appended_update_and_its_batches_share_the_publish_sync() {
    let store = Arc::new(Store::in_memory(KeyRing::generate().unwrap()).unwrap());
    let marker = Arc::new(Marker {
        store: std::sync::OnceLock::new(),
        opened: std::sync::Mutex::default(),
        settled: std::sync::Mutex::default(),
    });
    marker.store.set(Arc::downgrade(&store)).unwrap();
    assert!(store.follow_updates(marker.clone()));
    let (amy, hospital) = (child("9990079196"), agency("hospital"));
    let syncs = store.commit_stats().syncs;
    let first = store.append_update(update(&amy, Category::HealthSummary, b"v1", "k1", &hospital)).await.unwrap();
    assert_eq!(store.commit_stats().syncs, syncs + 1, "the follower's batch rode on the publish's sync");
    assert_eq!(
        store.engine.get(Keyspace::Cursors, first.position.as_bytes()).unwrap(),
        Some(b"followed".to_vec()),
        "the follower's batch is committed"
    );
    // A batch with no update in it is not shown to the follower; a repeat appends nothing.
    let mut other = Batch::new();
    other.push(Op::Put { space: Keyspace::Cursors, key: b"x".to_vec(), value: vec![1] });
    store.commit(other).await.unwrap();
    store.append_update(update(&amy, Category::HealthSummary, b"v1", "k1", &hospital)).await.unwrap();
    let second = store.append_update(update(&amy, Category::CommunicationNeeds, b"v2", "k2", &hospital)).await.unwrap();
    assert_eq!(
        *marker.opened.lock().unwrap(),
        vec![
            (first.position, Category::HealthSummary, b"v1".to_vec()),
            (second.position, Category::CommunicationNeeds, b"v2".to_vec())
        ],
        "each appended update, opened, in order"
    );
    assert_eq!(*marker.settled.lock().unwrap(), vec![true, true]);
}

#[test]
fn a_store_other_nodes_share_takes_no_follower() {
    let mut nodes = Store::in_memory_nodes(KeyRing::generate().unwrap(), 1).unwrap();
    let store = nodes.pop().unwrap();
    let marker = Arc::new(Marker {
        store: std::sync::OnceLock::new(),
        opened: std::sync::Mutex::default(),
        settled: std::sync::Mutex::default(),
    });
    assert!(!store.follow_updates(marker), "another node's appends would not pass its follower");
}
