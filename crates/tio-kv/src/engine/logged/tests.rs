use proptest::prelude::*;

use super::*;
use crate::group_log::fs::{SimulatedDisk, Tear};

/// Small segments, so that tests cross several.
const SMALL: LogOptions = LogOptions { segment_bytes: 8192 };

fn put(space: Keyspace, key: &[u8], value: &[u8]) -> Op {
    Op::Put { space, key: key.to_vec(), value: value.to_vec() }
}

fn commit(engine: &dyn Engine, ops: Vec<Op>) -> Vec<Position> {
    let applied = engine.apply(&Batch { conditions: Vec::new(), ops }).unwrap();
    engine.sync().unwrap();
    applied.positions
}

#[test]
fn passes_the_conformance_suite_with_each_index_store() {
    let scratch = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let fresh = || scratch.path().join(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string());
    super::super::conformance::run_all(&|| LoggedEngine::open(&fresh(), IndexKind::Fjall).unwrap());
    super::super::conformance::run_all(&|| LoggedEngine::open(&fresh(), IndexKind::Sled).unwrap());
    super::super::conformance::run_all(&|| {
        let slots = fresh();
        std::fs::create_dir_all(&slots).unwrap();
        LoggedEngine::open_in_memory_index(Arc::new(SimulatedDisk::new()), &slots, SMALL).unwrap()
    });
}

/// Reads are the same whether a change is still in the overlay or already in the index
/// store: the same checks run before and after the applier catches up.
#[test]
fn reads_merge_the_overlay_over_the_index_store() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LoggedEngine::open(dir.path(), IndexKind::Fjall).unwrap();
    for n in 0u8..20 {
        commit(&engine, vec![put(Keyspace::Latest, &[n], &[n, n])]);
    }
    engine.wait_applied().unwrap();
    // Now in the overlay only: removals of indexed keys, new keys between them, a
    // replaced value, and log appends.
    let applied = engine
        .apply(&Batch {
            conditions: Vec::new(),
            ops: vec![
                Op::Delete { space: Keyspace::Latest, key: vec![3] },
                Op::Delete { space: Keyspace::Latest, key: vec![19] },
                put(Keyspace::Latest, &[4, 1], b"new"),
                put(Keyspace::Latest, &[5], b"replaced"),
                Op::Append { space: Keyspace::Audit, value: b"first".to_vec() },
                Op::Append { space: Keyspace::Audit, value: b"second".to_vec() },
            ],
        })
        .unwrap();
    let check = |engine: &LoggedEngine| {
        let all = engine.scan(Keyspace::Latest, &[], None, 100).unwrap();
        let keys: Vec<Vec<u8>> = all.iter().map(|(key, _)| key.clone()).collect();
        let mut expected: Vec<Vec<u8>> = (0u8..19).filter(|n| *n != 3).map(|n| vec![n]).collect();
        expected.insert(4, vec![4, 1]);
        assert_eq!(keys, expected);
        assert_eq!(engine.get(Keyspace::Latest, &[5]).unwrap().unwrap(), b"replaced");
        assert_eq!(engine.get(Keyspace::Latest, &[3]).unwrap(), None);
        // Limits and bounds across the two.
        let page: Vec<Vec<u8>> =
            engine.scan(Keyspace::Latest, &[2], Some(&[6]), 3).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(page, vec![vec![2], vec![4], vec![4, 1]]);
        assert_eq!(engine.last(Keyspace::Latest).unwrap().unwrap().0, vec![18]);
        let audit = engine.scan(Keyspace::Audit, &[], None, 10).unwrap();
        assert_eq!(audit.iter().map(|(_, value)| value.as_slice()).collect::<Vec<_>>(), [&b"first"[..], b"second"]);
        assert_eq!(engine.last(Keyspace::Audit).unwrap().unwrap().1, b"second");
        assert_eq!(engine.get(Keyspace::Audit, applied.positions[0].as_bytes()).unwrap().unwrap(), b"first");
    };
    check(&engine);
    engine.sync().unwrap();
    engine.wait_applied().unwrap();
    assert!(engine.shared.overlay.lock().unwrap().is_empty(), "the applier left changes in the overlay");
    check(&engine);
    drop(engine);
    // And after reopening, from the index store and the log.
    check(&LoggedEngine::open(dir.path(), IndexKind::Fjall).unwrap());
}

#[test]
fn reopening_replays_what_the_index_store_lacks_and_rebuilds_a_lost_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LoggedEngine::open(dir.path(), IndexKind::Fjall).unwrap();
    let mut positions = Vec::new();
    for n in 0u32..300 {
        positions.extend(commit(
            &engine,
            vec![
                put(Keyspace::Cursors, &n.to_be_bytes(), b"v"),
                Op::Append { space: Keyspace::Updates, value: n.to_be_bytes().to_vec() },
            ],
        ));
    }
    drop(engine);
    // The index store lost: rebuilt from the log.
    std::fs::remove_dir_all(dir.path().join("index-fjall")).unwrap();
    let engine = LoggedEngine::open(dir.path(), IndexKind::Fjall).unwrap();
    assert_eq!(engine.scan(Keyspace::Cursors, &[], None, 1000).unwrap().len(), 300);
    for (n, position) in positions.iter().enumerate() {
        assert_eq!(engine.get(Keyspace::Updates, position.as_bytes()).unwrap().unwrap(), (n as u32).to_be_bytes());
    }
    drop(engine);
    // The other index store, built from the same log.
    let engine = LoggedEngine::open(dir.path(), IndexKind::Sled).unwrap();
    assert_eq!(engine.scan(Keyspace::Updates, &[], None, 1000).unwrap().len(), 300);
}

#[test]
fn child_keys_live_in_slots_and_a_removed_one_leaves_nothing_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LoggedEngine::open(dir.path(), IndexKind::Fjall).unwrap();
    let wrapped = [0x5Au8; 77];
    commit(&engine, vec![put(Keyspace::ChildKeys, b"child", &wrapped)]);
    assert_eq!(engine.get(Keyspace::ChildKeys, b"child").unwrap().unwrap(), wrapped);
    commit(&engine, vec![Op::Delete { space: Keyspace::ChildKeys, key: b"child".to_vec() }]);
    engine.wait_applied().unwrap();
    drop(engine);
    let needle = &wrapped[..16];
    let mut stack = vec![dir.path().to_owned()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                let bytes = std::fs::read(entry.path()).unwrap();
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "the wrapped key is still in {:?}",
                    entry.path()
                );
            }
        }
    }
    let engine = LoggedEngine::open(dir.path(), IndexKind::Fjall).unwrap();
    assert_eq!(engine.get(Keyspace::ChildKeys, b"child").unwrap(), None);
}

#[test]
fn a_log_that_does_not_match_its_index_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LoggedEngine::open(dir.path(), IndexKind::Fjall).unwrap();
    commit(&engine, vec![put(Keyspace::Meta, b"k", b"v")]);
    drop(engine);
    std::fs::remove_dir_all(dir.path().join(LOG_DIR)).unwrap();
    let err = LoggedEngine::open(dir.path(), IndexKind::Fjall).err().unwrap();
    assert_eq!(err.kind, StorageErrorKind::Corrupt, "{err}");
}

/// A group whose sync fails was reported as not written: it must not appear, then or
/// later, and its keys are free again.
#[test]
fn a_group_whose_sync_fails_leaves_no_trace() {
    let slots = tempfile::tempdir().unwrap();
    let disk = SimulatedDisk::new();
    let engine = LoggedEngine::open_in_memory_index(Arc::new(disk.clone()), slots.path(), SMALL).unwrap();
    commit(&engine, vec![put(Keyspace::Latest, b"kept", b"1")]);
    // Fill the first segment so that the next group needs a new one, and fail making it.
    let mut n = 0u32;
    let failed = loop {
        let ops = vec![
            put(Keyspace::Latest, &n.to_be_bytes(), &[9; 500]),
            put(Keyspace::ChildKeys, &n.to_be_bytes(), &[7; 77]),
        ];
        engine.apply(&Batch { conditions: Vec::new(), ops }).unwrap();
        disk.fail_after(2);
        let synced = engine.sync();
        disk.heal();
        if synced.is_err() {
            break n;
        }
        n += 1;
        assert!(n < 100, "no rollover in 100 groups");
    };
    assert_eq!(engine.get(Keyspace::Latest, &failed.to_be_bytes()).unwrap(), None);
    assert_eq!(engine.get(Keyspace::ChildKeys, &failed.to_be_bytes()).unwrap(), None);
    assert!(engine.shared.overlay.lock().unwrap().gathering.is_empty());
    // The key is free again, and the engine goes on (the failure was in making a
    // segment, before anything of the group was written).
    let again = Batch {
        conditions: vec![Condition::Absent { space: Keyspace::Latest, key: failed.to_be_bytes().to_vec() }],
        ops: vec![put(Keyspace::Latest, &failed.to_be_bytes(), b"second try")],
    };
    engine.apply(&again).unwrap();
    engine.sync().unwrap();
    drop(engine);
    let engine = LoggedEngine::open_in_memory_index(Arc::new(disk), slots.path(), SMALL).unwrap();
    assert_eq!(engine.get(Keyspace::Latest, &failed.to_be_bytes()).unwrap().unwrap(), b"second try");
    assert_eq!(engine.get(Keyspace::ChildKeys, &failed.to_be_bytes()).unwrap(), None);
    assert_eq!(engine.get(Keyspace::Latest, b"kept").unwrap().unwrap(), b"1");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A power cut at any operation, torn writes included: every synced batch is found
    /// after reopening, and a batch applied but never synced is there whole or not at
    /// all (here: each batch's keys all present or all absent).
    #[test]
    fn after_a_power_cut_every_synced_batch_is_whole_and_nothing_is_half_applied(
        batches in proptest::collection::vec(1usize..6, 1..30),
        crash_after in 0u64..120,
        whole_writes in 0usize..2,
        partial_bytes in 0usize..600,
    ) {
        let slots = tempfile::tempdir().unwrap();
        let disk = SimulatedDisk::new();
        let engine = LoggedEngine::open_in_memory_index(Arc::new(disk.clone()), slots.path(), SMALL).unwrap();
        disk.fail_after(crash_after);
        let mut synced = 0;
        for (n, size) in batches.iter().enumerate() {
            let ops = (0..*size).map(|k| put(Keyspace::Cursors, &[n as u8, k as u8], &[7; 40])).collect();
            if engine.apply(&Batch { conditions: Vec::new(), ops }).is_err() || engine.sync().is_err() {
                break;
            }
            synced = n + 1;
        }
        drop(engine);
        let after = disk.power_cut(Tear { whole_writes, partial_bytes });
        let engine = LoggedEngine::open_in_memory_index(Arc::new(after), slots.path(), SMALL)
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        for (n, size) in batches.iter().enumerate() {
            let found = engine.scan(Keyspace::Cursors, &[n as u8], Some(&[n as u8 + 1]), 100).unwrap().len();
            if n < synced {
                prop_assert_eq!(found, *size, "synced batch {} lost", n);
            } else {
                prop_assert!(found == 0 || found == *size, "batch {} half applied: {} of {}", n, found, size);
            }
        }
    }
}

#[test]
fn the_full_check_finds_damage_that_opening_does_not_scan() {
    let slots = tempfile::tempdir().unwrap();
    let disk = SimulatedDisk::new();
    let engine = LoggedEngine::open_in_memory_index(Arc::new(disk.clone()), slots.path(), SMALL).unwrap();
    for n in 0u8..60 {
        commit(&engine, vec![put(Keyspace::Latest, &[n], &[n; 300])]);
    }
    assert!(engine.check_files().unwrap().is_empty());
    let first = crate::group_log::segment_name(0);
    let mut bytes = disk.contents(&first).unwrap();
    bytes[1000] ^= 0x10;
    disk.set_contents(&first, bytes);
    let problems = engine.check_files().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains(&first), "{problems:?}");
}

/// `tio store check` compares the index store with a replay of the log: one that agrees
/// passes on both index stores, and a changed, an extra and a lost entry are each
/// counted in their keyspace.
#[test]
fn the_check_compares_the_index_store_with_the_log() {
    for kind in [IndexKind::Fjall, IndexKind::Sled] {
        let dir = tempfile::tempdir().unwrap();
        let engine = LoggedEngine::open_with_options(
            dir.path(),
            &LoggedOptions { index: kind, segment_bytes: SMALL.segment_bytes, ..LoggedOptions::default() },
        )
        .unwrap();
        for n in 0u8..120 {
            commit(
                &engine,
                vec![
                    put(Keyspace::Latest, &[n % 40], &[n; 100]),
                    put(Keyspace::Cursors, &[n], b"c"),
                    Op::Append { space: Keyspace::Audit, value: vec![n; 50] },
                ],
            );
            if n % 3 == 0 {
                commit(&engine, vec![Op::Delete { space: Keyspace::Cursors, key: vec![n] }]);
            }
        }
        commit(&engine, vec![put(Keyspace::ChildKeys, b"child", &[7u8; 77])]);
        assert_eq!(engine.check_files().unwrap(), Vec::<String>::new(), "{kind:?}");
        drop(engine);

        // The index store changed behind the log's back, its mark untouched.
        let index: Box<dyn IndexStore> = match kind {
            IndexKind::Fjall => Box::new(FjallIndex::open(&index_dir(dir.path(), kind), 1 << 20).unwrap()),
            IndexKind::Sled => Box::new(SledIndex::open(&index_dir(dir.path(), kind), 1 << 20).unwrap()),
        };
        let mark = index.applied_through().unwrap();
        let write = |space, key: &[u8], value: Option<&[u8]>| IndexWrite {
            space,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        };
        index
            .apply(
                &[
                    write(Keyspace::Latest, &[5], Some(b"not what the log says")),
                    write(Keyspace::Cursors, &[3], Some(b"deleted in the log")),
                    write(Keyspace::Cursors, &[200], Some(b"never in the log")),
                    write(Keyspace::Cursors, &[4], None),
                ],
                mark,
            )
            .unwrap();
        index.persist().unwrap();
        drop(index);

        let engine = LoggedEngine::open_with_options(
            dir.path(),
            &LoggedOptions { index: kind, segment_bytes: SMALL.segment_bytes, ..LoggedOptions::default() },
        )
        .unwrap();
        let problems = engine.check_files().unwrap();
        assert_eq!(problems.len(), 2, "{kind:?}: {problems:?}");
        assert!(
            problems[0].contains("`latest`")
                && problems[0].contains("0 entries missing, 0 entries the log does not hold, 1 with other values"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("`cursors`")
                && problems[1].contains("1 entries missing, 2 entries the log does not hold, 0 with other values"),
            "{problems:?}"
        );
        assert!(problems.iter().all(|problem| problem.contains("tio store reindex")), "{problems:?}");
    }
}
