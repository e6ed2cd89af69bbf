use std::sync::Arc;

use tio_core::{AgencyId, Category, NhsNumber, NhsNumberPolicy, Timestamp};
use tio_store::keys::KeyRing;
use tio_store::{NewUpdate, Store, StoreError};

use super::*;
use crate::entry::Actor;
use crate::export::verify_export;
use crate::merkle::{MemoryTree, verify_consistency, verify_inclusion};

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
    let store = Arc::new(Store::open(dir, ring.clone()).unwrap());
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
                log.record(&[entry("profile_read", 100 + task * 10 + request)]).await.unwrap();
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
        log.record(&[entry("admin", 1), entry("admin", 2), entry("admin", 3)]).await.unwrap();
        log.build().await.unwrap();
        let root = log.frontier().unwrap().1.root();
        drop(log);
        Arc::try_unwrap(store).unwrap().shutdown();
        root
    };
    let (_store, log) = open(dir.path(), &ring);
    assert_eq!(log.frontier().unwrap().1.root(), first_root);
    log.record(&[entry("admin", 4)]).await.unwrap();
    assert_eq!(log.build().await.unwrap(), 4);
    let proof = log.consistency_proof(3, 4).unwrap();
    assert_eq!(verify_consistency(3, 4, &proof, &first_root, &log.frontier().unwrap().1.root()), Ok(()));
}
