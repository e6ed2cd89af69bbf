use std::sync::Arc;

use tio_core::{AgencyId, Category, NhsNumber, NhsNumberPolicy, Timestamp};
use tio_store::engine::{Engine, Keyspace};
use tio_store::keys::KeyRing;
use tio_store::{NewUpdate, Store, StoreError};

use super::*;
use tio_audit::entry::Actor;
use tio_audit::export::verify_export;
use tio_audit::merkle::{MemoryTree, verify_consistency, verify_inclusion};

const ORIGIN: &str = "tio.test/audit";

fn entry(action: &str, request: u64) -> AuditEntry {
    AuditEntry {
        actor: Actor { id: "school".into(), role: "agency".into(), ..Actor::default() },
        action: action.into(),
        outcome: "allowed".into(),
        request_id: format!("req-{request}"),
        ..AuditEntry::default()
    }
}

fn open(dir: &std::path::Path, ring: &KeyRing) -> (Arc<Store>, AuditLog) {
    let store = Arc::new(Store::open(dir, &Default::default(), ring.clone()).unwrap());
    let log = AuditLog::new(store.clone(), Signer::generate(ORIGIN).unwrap());
    (store, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_commit_with_their_action_and_the_export_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate().unwrap();
    let (store, log) = open(dir.path(), &ring);
    let child = NhsNumber::parse("9990079196", &NhsNumberPolicy::development()).unwrap();
    let gp = AgencyId::parse("id", "gp").unwrap();
    let update = |key: &'static str, value: &'static [u8]| NewUpdate {
        child: &child,
        category: Category::HealthSummary,
        value,
        source_reference: "EPR-1",
        publisher: &gp,
        idempotency_key: key,
        committed_at: Timestamp::from_unix_seconds(1_800_000_000),
        date_of_birth: None,
    };

    // An update and its entry in one batch.
    let appended = store.append_update_with(update("k1", b"v1"), &[entry_op(&entry("publish", 1))]).await.unwrap();
    // The same key with other content: neither the update nor its entry is written.
    let refused = store.append_update_with(update("k1", b"v2"), &[entry_op(&entry("publish", 2))]).await;
    assert!(matches!(refused, Err(StoreError::IdempotencyMismatch)));
    // Entries of reads and refusals, from several tasks at once.
    let log = Arc::new(log);
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for request in 0..10u64 {
                log.append(&[entry("profile_read", 100 + task * 10 + request)]).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let entries = log.entries(0, u64::MAX).unwrap();
    assert_eq!(entries.len(), 81, "one publish entry and 80 reads; nothing of the refused publish");
    assert!(
        entries.iter().enumerate().all(|(index, entry)| entry.leaf_index == index as u64),
        "leaf indexes are dense"
    );
    assert_eq!(entries[0].action, "publish");
    assert!(store.updates_after(None, 10).unwrap().iter().any(|u| u.update_id == appended.update_id));

    // Two builders at once build one tree.
    let (first, second) = tokio::join!(log.build(), log.build());
    assert_eq!((first.unwrap(), second.unwrap()), (81, 81));
    let mut reference = MemoryTree::new();
    for entry in &entries {
        reference.append(entry.leaf_hash());
    }

    let export = dir.path().join("export");
    let mut last_progress = (0, 0);
    assert_eq!(log.export(&export, |done, total| last_progress = (done, total)).await.unwrap(), 81);
    assert_eq!(last_progress, (81, 81));
    let checkpoint_text = std::fs::read_to_string(export.join("checkpoint")).unwrap();
    let verifier = log.signer.verifier();
    let entries_file = std::io::BufReader::new(std::fs::File::open(export.join("entries.jsonl")).unwrap());
    let verified = verify_export(entries_file, &checkpoint_text, &verifier, None).unwrap();
    assert_eq!(verified.checkpoint.root, reference.root());
    assert_eq!(log.latest_checkpoint().unwrap().as_deref(), Some(checkpoint_text.as_str()));

    // Proofs from the stored subtrees.
    for index in 0..81 {
        let proof = log.inclusion_proof(index, 81).unwrap();
        assert_eq!(
            verify_inclusion(&entries[index as usize].leaf_hash(), index, 81, &proof, &reference.root()),
            Ok(())
        );
    }
    let old_root = reference.root_at(37).unwrap();
    let proof = log.consistency_proof(37, 81).unwrap();
    assert_eq!(verify_consistency(37, 81, &proof, &old_root, &reference.root()), Ok(()));
    assert!(matches!(log.inclusion_proof(0, 82), Err(AuditError::Range(_))), "beyond the built tree");
}

#[tokio::test]
async fn the_tree_survives_reopening_and_keeps_growing() {
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate().unwrap();
    let first_root = {
        let (store, log) = open(dir.path(), &ring);
        log.append(&[entry("admin", 1), entry("admin", 2), entry("admin", 3)]).await.unwrap();
        log.build().await.unwrap();
        let root = log.frontier().unwrap().1.root();
        drop(log);
        Arc::try_unwrap(store).unwrap().shutdown();
        root
    };
    let (_store, log) = open(dir.path(), &ring);
    assert_eq!(log.frontier().unwrap().1.root(), first_root);
    log.append(&[entry("admin", 4)]).await.unwrap();
    assert_eq!(log.build().await.unwrap(), 4);
    let proof = log.consistency_proof(3, 4).unwrap();
    assert_eq!(verify_consistency(3, 4, &proof, &first_root, &log.frontier().unwrap().1.root()), Ok(()));
}

/// Erasing a child (destroying its data key) leaves every entry and the whole log
/// verifiable, while no entry can any longer reveal the child's NHS number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_crypto_shredding_the_log_verifies_and_no_entry_reveals_the_child() {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate().unwrap();
    let (store, log) = open(dir.path(), &ring);
    let policy = NhsNumberPolicy::development();
    let (amy, ben) =
        (NhsNumber::parse("9990079196", &policy).unwrap(), NhsNumber::parse("9990237573", &policy).unwrap());
    let gp = AgencyId::parse("id", "gp").unwrap();
    for (key, child) in [("k-amy", &amy), ("k-ben", &ben)] {
        let update = NewUpdate {
            child,
            category: Category::CommunicationNeeds,
            value: b"uses Makaton signs",
            source_reference: "EPR-7",
            publisher: &gp,
            idempotency_key: key,
            committed_at: Timestamp::from_unix_seconds(1_800_000_000),
            date_of_birth: None,
        };
        let mut published = entry("publish", 1);
        published.child_index = store.child_index(child).to_hex();
        store.append_update_with(update, &[entry_op(&published)]).await.unwrap();
        // Later entries carry the number sealed under the child's key as well.
        let mut read = entry("profile_read", 2);
        read.child_index = store.child_index(child).to_hex();
        read.child_sealed = base64.encode(store.seal_child_reference(child).unwrap().unwrap());
        log.append(&[read]).await.unwrap();
    }
    let verifier = log.signer.verifier();
    let before = dir.path().join("before");
    log.export(&before, |_, _| {}).await.unwrap();
    let sealed_of = |entries: &[AuditEntry], child: &NhsNumber| -> Vec<Vec<u8>> {
        let index = store.child_index(child).to_hex();
        entries
            .iter()
            .filter(|entry| entry.child_index == index && !entry.child_sealed.is_empty())
            .map(|entry| base64.decode(&entry.child_sealed).unwrap())
            .collect()
    };
    let entries = log.entries(0, 4).unwrap();
    let amy_sealed = sealed_of(&entries, &amy);
    assert_eq!(amy_sealed.len(), 1);
    assert_eq!(store.open_child_reference(store.child_index(&amy), &amy_sealed[0]).unwrap(), Some(amy.digits()));

    assert!(store.erase_child(&amy, Timestamp::from_unix_seconds(1_800_000_000)).await.unwrap());
    log.append(&[entry("admin", 3)]).await.unwrap();
    let after = dir.path().join("after");
    log.export(&after, |_, _| {}).await.unwrap();

    // The whole log verifies, and extends the checkpoint made before the erasure.
    let older = std::fs::read_to_string(before.join("checkpoint")).unwrap();
    let verified = verify_export(
        std::io::BufReader::new(std::fs::File::open(after.join("entries.jsonl")).unwrap()),
        &std::fs::read_to_string(after.join("checkpoint")).unwrap(),
        &verifier,
        Some(&older),
    )
    .unwrap();
    assert_eq!(verified.entries, 5);
    // Amy's reference no longer opens; Ben's still does; no export holds either number.
    assert_eq!(store.open_child_reference(store.child_index(&amy), &amy_sealed[0]).unwrap(), None);
    let ben_sealed = sealed_of(&log.entries(0, 5).unwrap(), &ben);
    assert_eq!(store.open_child_reference(store.child_index(&ben), &ben_sealed[0]).unwrap(), Some(ben.digits()));
    for export in [&before, &after] {
        let text = std::fs::read_to_string(export.join("entries.jsonl")).unwrap();
        for child in [&amy, &ben] {
            assert!(!text.contains(&child.digits()), "an export holds an NHS number in plain text");
        }
        assert!(text.contains(&store.child_index(&amy).to_hex()), "control: the child's entries are there");
    }
}

/// `tio store check`'s audit half: a healthy log passes; an update without its entry, a
/// checkpoint under another key and an altered entry are each named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_passes_a_healthy_log_and_names_each_kind_of_damage() {
    use tio_store::engine::sled::SledEngine;
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(SledEngine::open(dir.path()).unwrap());
    let store = Arc::new(Store::with_engine(engine.clone(), KeyRing::generate().unwrap()).unwrap());
    let signer = Signer::generate(ORIGIN).unwrap();
    let verifier = signer.verifier();
    let log = AuditLog::new(store.clone(), signer);
    let child = NhsNumber::parse("9990079196", &NhsNumberPolicy::development()).unwrap();
    let gp = AgencyId::parse("id", "gp").unwrap();
    fn update<'a>(child: &'a NhsNumber, gp: &'a AgencyId, key: &'a str) -> NewUpdate<'a> {
        NewUpdate {
            child,
            category: Category::HealthSummary,
            value: b"value",
            source_reference: "EPR-1",
            publisher: gp,
            idempotency_key: key,
            committed_at: Timestamp::from_unix_seconds(1_800_000_000),
            date_of_birth: None,
        }
    }
    for n in 0..20u64 {
        let key = format!("k{n}");
        store
            .append_update_and(update(&child, &gp, &key), |id| {
                let mut extra = tio_store::Extra::default();
                extra.ops.push(entry_op(&AuditEntry { update_id: id.to_string(), ..entry("publish", n) }));
                extra
            })
            .await
            .unwrap();
        log.append(&[entry("profile_read", 100 + n)]).await.unwrap();
    }
    log.checkpoint().await.unwrap();
    let report = check_log(&store, Some(&verifier)).unwrap();
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!((report.entries, report.tree_size, report.checkpoint_size), (40, 40, Some(40)));
    assert_eq!(report.updates_matched, 20);

    // An update stored without its entry.
    store.append_update(update(&child, &gp, "lonely")).await.unwrap();
    let report = check_log(&store, Some(&verifier)).unwrap();
    assert_eq!(report.problems.listed(), ["1 stored updates have no publish entry in the audit log"]);

    // The checkpoint under another key.
    let stranger = Signer::generate(ORIGIN).unwrap().verifier();
    let report = check_log(&store, Some(&stranger)).unwrap();
    assert!(report.problems.iter().any(|problem| problem.starts_with("the latest checkpoint does not open")));

    // One entry altered in place (as a tamperer with the files would): the stored tree
    // and the signed checkpoint no longer match the entries.
    let mut altered = log.entries(3, 4).unwrap().remove(0);
    altered.actor.id = "hospital".into();
    engine.import(Keyspace::Audit, &[(3u64.to_be_bytes().to_vec(), crate::stored::encode(&altered))]).unwrap();
    let report = check_log(&store, Some(&verifier)).unwrap();
    assert!(report.problems.iter().any(|problem| problem.contains("is not what the entries hash to")), "{report:?}");
    assert!(report.problems.iter().any(|problem| problem.contains("the log was altered")), "{report:?}");
}

/// Issue 13: the log keeps its own dense leaf index, so an engine whose positions are
/// not counters (an epoch, then a sequence with gaps) gives the same tree, proofs,
/// export and check; entries not yet in the tree are read with the indexes they get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_dense_over_an_engine_whose_positions_are_not_counters() {
    use tio_store::engine::memory::MemoryEngine;
    let engine = Arc::new(MemoryEngine::sparse());
    let store = Arc::new(Store::with_engine(engine.clone(), KeyRing::generate().unwrap()).unwrap());
    let signer = Signer::generate(ORIGIN).unwrap();
    let verifier = signer.verifier();
    let log = AuditLog::new(store.clone(), signer);
    // More than one leaf-index stride, so that reads start between indexed leaves.
    for n in 0..150 {
        log.append(&[entry("admin", 2 * n), entry("profile_read", 2 * n + 1)]).await.unwrap();
    }
    let positions = engine.scan(Keyspace::Audit, &[], None, 100).unwrap();
    assert_eq!(positions[0].0.len(), 12, "control: positions are not 8-byte counters");

    assert_eq!(log.build().await.unwrap(), 300);
    log.append(&[entry("admin", 900), entry("admin", 901)]).await.unwrap();
    // 300 in the tree, 2 after it: read across the seam, and from past it.
    let entries = log.entries(0, 1000).unwrap();
    assert_eq!(entries.len(), 302);
    assert!(entries.iter().enumerate().all(|(index, entry)| entry.leaf_index == index as u64));
    assert_eq!(entries[301].request_id, "req-901");
    let tail = log.entries_from(301, 10).unwrap();
    assert_eq!((tail.len(), tail[0].leaf_index, tail[0].request_id.as_str()), (1, 301, "req-901"));
    let middle = log.entries(254, 258).unwrap();
    assert_eq!(
        middle.iter().map(|entry| entry.request_id.as_str()).collect::<Vec<_>>(),
        ["req-254", "req-255", "req-256", "req-257"]
    );
    assert_eq!(log.entries(260, 262).unwrap()[0].leaf_index, 260);

    let dir = tempfile::tempdir().unwrap();
    assert_eq!(log.export(&dir.path().join("export"), |_, _| {}).await.unwrap(), 302);
    let checkpoint = std::fs::read_to_string(dir.path().join("export/checkpoint")).unwrap();
    let lines = std::io::BufReader::new(std::fs::File::open(dir.path().join("export/entries.jsonl")).unwrap());
    let verified = verify_export(lines, &checkpoint, &verifier, None).unwrap();
    let mut reference = MemoryTree::new();
    for entry in log.entries(0, 302).unwrap() {
        reference.append(entry.leaf_hash());
    }
    assert_eq!(verified.checkpoint.root, reference.root());
    let proof = log.inclusion_proof(283, 302).unwrap();
    assert_eq!(verify_inclusion(&entries[283].leaf_hash(), 283, 302, &proof, &reference.root()), Ok(()));
    let report = check_log(&store, Some(&verifier)).unwrap();
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!((report.entries, report.tree_size), (302, 302));
}

/// A tree built before leaves were indexed (store format tio-store/2) is read by order
/// and checks clean, and the next build indexes its leaves.
#[tokio::test]
async fn a_tree_built_before_leaves_were_indexed_is_read_and_then_indexed() {
    use tio_store::engine::memory::MemoryEngine;
    let engine = Arc::new(MemoryEngine::new());
    let store = Arc::new(Store::with_engine(engine.clone(), KeyRing::generate().unwrap()).unwrap());
    let signer = Signer::generate(ORIGIN).unwrap();
    let verifier = signer.verifier();
    let log = AuditLog::new(store.clone(), signer);
    for n in 0..5 {
        log.append(&[entry("admin", n)]).await.unwrap();
    }
    log.checkpoint().await.unwrap();
    // What the previous release stored: the frontier and subtrees, no leaf index (the
    // keys of the sequencing record and of leaf 0, the one indexed leaf of five).
    let mut batch = Batch::new();
    batch.push(Op::Delete { space: Keyspace::AuditTree, key: b"sequenced".to_vec() });
    batch.push(Op::Delete { space: Keyspace::AuditTree, key: [&b"l"[..], &0u64.to_be_bytes()].concat() });
    engine.apply(&batch).unwrap();
    assert!(store.audit_tree(TreeRecord::Leaf(0)).unwrap().is_none(), "control: the leaf index is gone");
    assert!(check_log(&store, Some(&verifier)).unwrap().is_healthy());
    let requests = |entries: Vec<AuditEntry>| entries.into_iter().map(|entry| entry.request_id).collect::<Vec<_>>();
    assert_eq!(requests(log.entries(3, 5).unwrap()), ["req-3", "req-4"]);

    log.append(&[entry("admin", 5)]).await.unwrap();
    assert_eq!(log.build().await.unwrap(), 6);
    assert!(store.audit_tree(TreeRecord::Leaf(0)).unwrap().is_some(), "old leaves are indexed");
    assert_eq!(requests(log.entries(4, 6).unwrap()), ["req-4", "req-5"]);
    assert!(check_log(&store, Some(&verifier)).unwrap().is_healthy());
}

/// Issue 13: a store moved to an engine with other positions (backup, then restore onto
/// it) keeps its audit log: the same entries at the same leaves, the same signed
/// checkpoint, a clean check, and sequencing goes on from where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_survives_a_move_to_an_engine_with_other_positions() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let ring = KeyRing::generate().unwrap();
    let signer = Signer::generate(ORIGIN).unwrap();
    let verifier = signer.verifier();
    let (before, checkpoint) = {
        let store = Arc::new(Store::open(&live, &Default::default(), ring.clone()).unwrap());
        let log = AuditLog::new(store.clone(), Signer::from_private_key(&signer.private_key()).unwrap());
        for n in 0..300 {
            log.append(&[entry("admin", n)]).await.unwrap();
        }
        let checkpoint = log.checkpoint().await.unwrap();
        log.append(&[entry("admin", 300)]).await.unwrap(); // committed, not yet in the tree
        let before = log.entries(0, 1000).unwrap();
        drop(log);
        Arc::into_inner(store).unwrap().shutdown();
        (before, checkpoint)
    };
    let backup = dir.path().join("audit.backup");
    let (from, to) = (live.clone(), backup.clone());
    tokio::task::spawn_blocking(move || {
        tio_store::backup::backup_stopped_store(&from, &Default::default(), &to, |_| {}).unwrap()
    })
    .await
    .unwrap();
    let engine = Arc::new(tio_store::engine::memory::MemoryEngine::sparse());
    tio_store::backup::restore_into(&backup, engine.as_ref(), &mut |_| {}).unwrap();
    let store = Arc::new(Store::with_engine(engine, ring).unwrap());
    let log = AuditLog::new(store.clone(), signer);

    assert_eq!(log.entries(0, 1000).unwrap(), before);
    assert_eq!(log.latest_signed_checkpoint().unwrap().unwrap().note, checkpoint.note);
    assert!(check_log(&store, Some(&verifier)).unwrap().is_healthy());
    let proof = log.inclusion_proof(257, 300).unwrap();
    assert_eq!(verify_inclusion(&before[257].leaf_hash(), 257, 300, &proof, &checkpoint.checkpoint.root), Ok(()));
    assert_eq!(log.build().await.unwrap(), 301, "sequencing resumes after the restored tree");
    let later = log.checkpoint().await.unwrap();
    let consistency = log.consistency_proof(300, 301).unwrap();
    assert_eq!(verify_consistency(300, 301, &consistency, &checkpoint.checkpoint.root, &later.checkpoint.root), Ok(()));
}

#[tokio::test]
async fn alerts_are_found_once_sequenced_by_whom_they_are_for_and_from_a_leaf() {
    let store = Arc::new(Store::in_memory(KeyRing::generate().unwrap()).unwrap());
    let log = AuditLog::new(store, Signer::generate(ORIGIN).unwrap());
    let alert = |request: u64, to: &[&str]| AuditEntry {
        alert: "protection_flag_access".into(),
        alert_to: to.iter().map(|id| (*id).to_owned()).collect(),
        ..entry("profile_read", request)
    };
    // Leaves 0..6: an ordinary entry, alerts for social care (1, 4), for two agencies (2),
    // an ordinary one, and one more for another (5).
    let entries = [
        entry("publish", 0),
        alert(1, &["social-care"]),
        alert(2, &["social-care", "gp"]),
        entry("delivery", 3),
        alert(4, &["social-care"]),
        alert(5, &["gp"]),
    ];
    log.append(&entries).await.unwrap();
    assert!(log.alerts(None, 0, 10).unwrap().is_empty(), "not sequenced yet");
    log.build().await.unwrap();
    let leaves = |alerts: Vec<AuditEntry>| alerts.iter().map(|entry| entry.leaf_index).collect::<Vec<_>>();
    assert_eq!(leaves(log.alerts(Some("social-care"), 0, 10).unwrap()), [1, 2, 4]);
    assert_eq!(leaves(log.alerts(Some("social-care"), 2, 10).unwrap()), [2, 4]);
    assert_eq!(leaves(log.alerts(Some("social-care"), 0, 2).unwrap()), [1, 2]);
    assert_eq!(leaves(log.alerts(Some("gp"), 0, 10).unwrap()), [2, 5]);
    assert_eq!(leaves(log.alerts(None, 0, 10).unwrap()), [1, 2, 4, 5]);
    assert!(log.alerts(Some("school"), 0, 10).unwrap().is_empty());
    // Each comes back as it was logged, with its leaf index.
    let first = &log.alerts(Some("gp"), 0, 1).unwrap()[0];
    assert_eq!(first, &AuditEntry { leaf_index: 2, ..entries[2].clone() });
}
