//! The conformance suite every engine must pass. Each case takes a fresh, empty engine
//! from `make` and panics with the case's name on failure.
//!
//! Run it from an engine's tests: `conformance::run_all(&|| MyEngine::new())`.

use super::{Batch, CommitError, Condition, Engine, Found, Keyspace, Op, Position, Read, key_after, prefix_end};

/// Runs every case against fresh engines from `make`.
pub fn run_all<E: Engine>(make: &dyn Fn() -> E) {
    type Case = fn(&dyn Engine);
    let cases: [(&str, Case); 10] = [
        ("put, get and delete", put_get_delete),
        ("scans honour bounds and limits", scans_honour_bounds_and_limits),
        ("a failed condition applies nothing", a_failed_condition_applies_nothing),
        ("equals conditions compare values", equals_conditions_compare_values),
        ("appends get increasing positions", appends_get_increasing_positions),
        ("positions can be referenced in the same batch", positions_can_be_referenced_in_the_same_batch),
        ("malformed batches are refused", malformed_batches_are_refused),
        ("a group's appends read back from any position", a_groups_appends_read_back_from_any_position),
        ("child keys are values like any other", child_keys_are_values_like_any_other),
        ("reads made together find what each alone finds", reads_made_together_find_what_each_alone_finds),
    ];
    for (name, case) in cases {
        let engine = make();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&engine)));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("conformance case `{name}` failed: {message}");
        }
    }
}

fn commit(engine: &dyn Engine, batch: &Batch) -> Vec<Position> {
    let applied = engine.apply(batch).expect("batch applies");
    engine.sync().expect("sync succeeds");
    applied.positions
}

fn put(space: Keyspace, key: &[u8], value: &[u8]) -> Op {
    Op::Put { space, key: key.to_vec(), value: value.to_vec() }
}

fn put_get_delete(engine: &dyn Engine) {
    let mut batch = Batch::new();
    batch.push(put(Keyspace::Agencies, b"gp", b"1")).push(put(Keyspace::Consents, b"gp", b"2"));
    commit(engine, &batch);
    assert_eq!(engine.get(Keyspace::Agencies, b"gp").unwrap(), Some(b"1".to_vec()));
    assert_eq!(engine.get(Keyspace::Consents, b"gp").unwrap(), Some(b"2".to_vec()), "keyspaces are separate");
    assert_eq!(engine.get(Keyspace::Cursors, b"gp").unwrap(), None);

    let mut batch = Batch::new();
    batch
        .push(put(Keyspace::Agencies, b"gp", b"3"))
        .push(Op::Delete { space: Keyspace::Consents, key: b"gp".to_vec() });
    commit(engine, &batch);
    assert_eq!(engine.get(Keyspace::Agencies, b"gp").unwrap(), Some(b"3".to_vec()));
    assert_eq!(engine.get(Keyspace::Consents, b"gp").unwrap(), None);
}

fn scans_honour_bounds_and_limits(engine: &dyn Engine) {
    let mut batch = Batch::new();
    for key in [b"a1".as_slice(), b"a2", b"a3", b"b1", b"\xff"] {
        batch.push(put(Keyspace::Relationships, key, key));
    }
    commit(engine, &batch);
    let keys = |entries: super::Entries| entries.into_iter().map(|(key, _)| key).collect::<Vec<_>>();
    let all = engine.scan(Keyspace::Relationships, b"", None, 100).unwrap();
    assert_eq!(keys(all), vec![b"a1".to_vec(), b"a2".to_vec(), b"a3".to_vec(), b"b1".to_vec(), b"\xff".to_vec()]);
    let prefix = engine.scan(Keyspace::Relationships, b"a", prefix_end(b"a").as_deref(), 100).unwrap();
    assert_eq!(keys(prefix), vec![b"a1".to_vec(), b"a2".to_vec(), b"a3".to_vec()]);
    let limited = engine.scan(Keyspace::Relationships, b"a", None, 2).unwrap();
    assert_eq!(keys(limited), vec![b"a1".to_vec(), b"a2".to_vec()]);
    let after = engine.scan(Keyspace::Relationships, &key_after(b"a2"), Some(b"b1"), 100).unwrap();
    assert_eq!(keys(after), vec![b"a3".to_vec()], "start is inclusive, end exclusive");
    // A page is full while the range has entries, deleted ones skipped: callers take a
    // short page for the end.
    let mut delete = Batch::new();
    delete.push(Op::Delete { space: Keyspace::Relationships, key: b"a2".to_vec() });
    commit(engine, &delete);
    let limited = engine.scan(Keyspace::Relationships, b"a", None, 2).unwrap();
    assert_eq!(keys(limited), vec![b"a1".to_vec(), b"a3".to_vec()]);
}

fn a_failed_condition_applies_nothing(engine: &dyn Engine) {
    commit(engine, Batch::new().push(put(Keyspace::Idempotency, b"key", b"first")));
    let mut batch = Batch::new();
    batch
        .require(Condition::Absent { space: Keyspace::Cursors, key: b"c".to_vec() })
        .require(Condition::Absent { space: Keyspace::Idempotency, key: b"key".to_vec() })
        .push(put(Keyspace::Idempotency, b"key", b"second"))
        .push(put(Keyspace::Agencies, b"side-effect", b"x"))
        .push(Op::Append { space: Keyspace::Updates, value: b"u".to_vec() });
    match engine.apply(&batch) {
        Err(CommitError::Conflict { index }) => assert_eq!(index, 1),
        other => panic!("expected a conflict on condition 1, got {other:?}"),
    }
    assert_eq!(engine.get(Keyspace::Idempotency, b"key").unwrap(), Some(b"first".to_vec()));
    assert_eq!(engine.get(Keyspace::Agencies, b"side-effect").unwrap(), None);
    assert!(engine.scan(Keyspace::Updates, b"", None, 10).unwrap().is_empty(), "no append survives an abort");
    // The aborted append used no position: the next one is the first.
    let positions = commit(engine, Batch::new().push(Op::Append { space: Keyspace::Updates, value: b"v".to_vec() }));
    let all = engine.scan(Keyspace::Updates, b"", None, 10).unwrap();
    assert_eq!(all, vec![(positions[0].as_bytes().to_vec(), b"v".to_vec())]);
}

fn equals_conditions_compare_values(engine: &dyn Engine) {
    commit(engine, Batch::new().push(put(Keyspace::Cursors, b"sub", b"5")));
    let guarded = |expected: &[u8], new: &[u8]| {
        let mut batch = Batch::new();
        batch
            .require(Condition::Equals { space: Keyspace::Cursors, key: b"sub".to_vec(), value: expected.to_vec() })
            .push(put(Keyspace::Cursors, b"sub", new));
        batch
    };
    assert!(matches!(engine.apply(&guarded(b"4", b"6")), Err(CommitError::Conflict { index: 0 })));
    engine.apply(&guarded(b"5", b"6")).expect("matching value applies");
    assert_eq!(engine.get(Keyspace::Cursors, b"sub").unwrap(), Some(b"6".to_vec()));
    let mut absent = Batch::new();
    absent.require(Condition::Equals { space: Keyspace::Cursors, key: b"none".to_vec(), value: Vec::new() });
    assert!(matches!(engine.apply(&absent), Err(CommitError::Conflict { index: 0 })), "absent is not equal to empty");
}

fn appends_get_increasing_positions(engine: &dyn Engine) {
    let mut seen: Vec<Position> = Vec::new();
    for round in 0..20u8 {
        let mut batch = Batch::new();
        for item in 0..3u8 {
            batch.push(Op::Append { space: Keyspace::Updates, value: vec![round, item] });
        }
        batch.push(Op::Append { space: Keyspace::Audit, value: vec![round] });
        let positions = commit(engine, &batch);
        assert_eq!(positions.len(), 4);
        seen.extend(positions[..3].iter().cloned());
    }
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "positions strictly increase in commit order");
    let stored = engine.scan(Keyspace::Updates, b"", None, 1000).unwrap();
    assert_eq!(stored.len(), 60);
    let stored_positions: Vec<Vec<u8>> = stored.iter().map(|(key, _)| key.clone()).collect();
    let expected: Vec<Vec<u8>> = seen.iter().map(|position| position.as_bytes().to_vec()).collect();
    assert_eq!(stored_positions, expected, "records are keyed by their positions, in order");
    assert_eq!(stored[4].1, vec![1, 1]);
    assert_eq!(engine.scan(Keyspace::Audit, b"", None, 1000).unwrap().len(), 20, "each log has its own order");
    let last = engine.last(Keyspace::Updates).unwrap().expect("a last record");
    assert_eq!(last.0, seen.last().unwrap().as_bytes(), "the last record is the latest appended");
    assert_eq!(last.1, vec![19, 2]);
    assert_eq!(engine.last(Keyspace::Consents).unwrap(), None, "an empty keyspace has no last entry");
}

fn positions_can_be_referenced_in_the_same_batch(engine: &dyn Engine) {
    let mut batch = Batch::new();
    batch
        .push(Op::Append { space: Keyspace::Updates, value: b"first".to_vec() })
        .push(Op::Append { space: Keyspace::Updates, value: b"second".to_vec() })
        .push(Op::PutAtPosition {
            space: Keyspace::UpdatesByChild,
            prefix: b"child".to_vec(),
            append: 1,
            value: b"x".to_vec(),
        })
        .push(Op::PutPosition { space: Keyspace::Latest, key: b"child/cat".to_vec(), prefix: Vec::new(), append: 0 })
        .push(Op::PutPosition { space: Keyspace::Idempotency, key: b"k".to_vec(), prefix: b"id:".to_vec(), append: 1 });
    let positions = commit(engine, &batch);
    let mut by_child_key = b"child".to_vec();
    by_child_key.extend_from_slice(positions[1].as_bytes());
    assert_eq!(engine.get(Keyspace::UpdatesByChild, &by_child_key).unwrap(), Some(b"x".to_vec()));
    assert_eq!(engine.get(Keyspace::Latest, b"child/cat").unwrap(), Some(positions[0].as_bytes().to_vec()));
    let mut prefixed = b"id:".to_vec();
    prefixed.extend_from_slice(positions[1].as_bytes());
    assert_eq!(engine.get(Keyspace::Idempotency, b"k").unwrap(), Some(prefixed));
}

fn malformed_batches_are_refused(engine: &dyn Engine) {
    let refused = |batch: &Batch| matches!(engine.apply(batch), Err(CommitError::Invalid(_)));
    assert!(refused(Batch::new().push(Op::Append { space: Keyspace::Agencies, value: b"x".to_vec() })));
    assert!(refused(Batch::new().push(put(Keyspace::Updates, b"k", b"v"))));
    assert!(refused(Batch::new().push(Op::PutPosition {
        space: Keyspace::Latest,
        key: b"k".to_vec(),
        prefix: Vec::new(),
        append: 0
    })));
    let mut conditioned = Batch::new();
    conditioned.require(Condition::Absent { space: Keyspace::Updates, key: vec![0; 8] });
    assert!(refused(&conditioned), "a log is read by position, not conditioned on");
    assert!(engine.get(Keyspace::Latest, b"k").unwrap().is_none());
}

/// Groups of batches of several sizes (engines may store a group's appends together),
/// a skipped batch among them, and records up to 64 KiB: every record reads back alone
/// and in scans that start, end and stop anywhere.
fn a_groups_appends_read_back_from_any_position(engine: &dyn Engine) {
    let record = |n: usize| -> Vec<u8> {
        let len = if n.is_multiple_of(17) { 64 * 1024 } else { n % 300 };
        (0..len).map(|i| (n + i) as u8).collect()
    };
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut n = 0;
    for group_size in [1usize, 5, 64, 2, 130, 1] {
        let mut batches = Vec::new();
        for index in 0..group_size {
            let mut batch = Batch::new();
            if index == 1 {
                batch.require(Condition::Absent { space: Keyspace::Meta, key: b"never-absent".to_vec() });
            }
            batch.push(Op::Append { space: Keyspace::Audit, value: record(n) });
            batches.push((batch, record(n)));
            n += 1;
        }
        let mut present = Batch::new();
        present.push(put(Keyspace::Meta, b"never-absent", b""));
        engine.apply(&present).expect("applies");
        let refs: Vec<&Batch> = batches.iter().map(|(batch, _)| batch).collect();
        let results = engine.apply_group(&refs);
        engine.sync().expect("sync succeeds");
        for (index, (result, (_, value))) in results.into_iter().zip(&batches).enumerate() {
            match result {
                Ok(applied) => expected.push((applied.positions[0].as_bytes().to_vec(), value.clone())),
                Err(CommitError::Conflict { .. }) => assert_eq!(index, 1, "only the conditioned batch is skipped"),
                Err(other) => panic!("batch {index} failed: {other}"),
            }
        }
    }
    assert!(expected.windows(2).all(|pair| pair[0].0 < pair[1].0), "positions increase");
    assert_eq!(engine.scan(Keyspace::Audit, b"", None, usize::MAX).unwrap(), expected, "the whole log");
    assert_eq!(engine.last(Keyspace::Audit).unwrap().as_ref(), expected.last(), "the last record");
    for (index, (key, value)) in expected.iter().enumerate() {
        assert_eq!(engine.get(Keyspace::Audit, key).unwrap().as_ref(), Some(value), "record {index} alone");
        let from_here = engine.scan(Keyspace::Audit, key, None, 3).unwrap();
        assert_eq!(from_here, expected[index..(index + 3).min(expected.len())], "a scan from record {index}");
        let after = engine.scan(Keyspace::Audit, &key_after(key), None, 1).unwrap();
        assert_eq!(after, expected[index + 1..(index + 2).min(expected.len())], "a scan after record {index}");
        let before = engine.scan(Keyspace::Audit, b"", Some(key), usize::MAX).unwrap();
        assert_eq!(before, expected[..index], "a scan that ends at record {index}");
    }
    let mut missing = expected.last().map(|(key, _)| key.clone()).unwrap_or_default();
    if let Some(byte) = missing.last_mut() {
        *byte = byte.wrapping_add(1);
    }
    assert_eq!(engine.get(Keyspace::Audit, &missing).unwrap(), None, "no record after the last");
    assert_eq!(engine.get(Keyspace::Audit, b"not-a-position").unwrap(), None);
    assert_eq!(engine.get(Keyspace::Updates, &expected[0].0).unwrap(), None, "the other log is empty");
}

/// `child_keys` (which an engine may store apart, see [`super::MAX_CHILD_KEY_BYTES`])
/// behaves as any keyspace: puts, replacements, deletes, both conditions, scans, and
/// groups in which a skipped batch's key never appears.
fn child_keys_are_values_like_any_other(engine: &dyn Engine) {
    let space = Keyspace::ChildKeys;
    let key = |n: u8| vec![n; 32];
    let mut batch = Batch::new();
    for n in 0..5u8 {
        batch.push(put(space, &key(n), &[n; 77]));
    }
    commit(engine, &batch);
    let mut replace = Batch::new();
    replace
        .require(Condition::Equals { space, key: key(1), value: vec![1; 77] })
        .push(put(space, &key(1), &[9; 77]))
        .push(Op::Delete { space, key: key(2) });
    commit(engine, &replace);
    assert_eq!(engine.get(space, &key(1)).unwrap(), Some(vec![9; 77]), "replaced");
    assert_eq!(engine.get(space, &key(2)).unwrap(), None, "deleted");
    let mut stale = Batch::new();
    stale.require(Condition::Equals { space, key: key(1), value: vec![1; 77] }).push(put(space, &key(1), &[7; 77]));
    let mut fresh = Batch::new();
    fresh.require(Condition::Absent { space, key: key(7) }).push(put(space, &key(7), &[7; 10]));
    let results = engine.apply_group(&[&stale, &fresh]);
    engine.sync().unwrap();
    assert!(matches!(results[0], Err(CommitError::Conflict { index: 0 })), "a stale value is not equal");
    assert!(results[1].is_ok());
    let all = engine.scan(space, b"", None, 100).unwrap();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (key(0), vec![0; 77]),
        (key(1), vec![9; 77]),
        (key(3), vec![3; 77]),
        (key(4), vec![4; 77]),
        (key(7), vec![7; 10]),
    ];
    assert_eq!(all, expected);
    assert_eq!(engine.last(space).unwrap(), expected.last().cloned());
    assert_eq!(engine.scan(space, &key(3), Some(&key(5)), 100).unwrap(), expected[2..4]);
    let oversized = put(space, &key(8), &[0; super::MAX_CHILD_KEY_BYTES + 1]);
    assert!(matches!(engine.apply(Batch::new().push(oversized)), Err(CommitError::Invalid(_))));
    assert_eq!(engine.get(space, &key(8)).unwrap(), None);
}

fn reads_made_together_find_what_each_alone_finds(engine: &dyn Engine) {
    let mut batch = Batch::new();
    for key in [&b"a1"[..], b"a2", b"a3", b"b1"] {
        batch.push(Op::Put { space: Keyspace::Consents, key: key.to_vec(), value: [key, b"-v"].concat() });
    }
    batch.push(Op::Put { space: Keyspace::ChildKeys, key: b"a".to_vec(), value: b"wrapped".to_vec() });
    batch.push(Op::Append { space: Keyspace::Updates, value: b"u".to_vec() });
    let positions = commit(engine, &batch);
    let reads = [
        Read::Get { space: Keyspace::ChildKeys, key: b"a".to_vec() },
        Read::Get { space: Keyspace::ChildKeys, key: b"missing".to_vec() },
        Read::Scan { space: Keyspace::Consents, start: b"a".to_vec(), end: Some(b"b".to_vec()), limit: 2 },
        Read::Scan { space: Keyspace::Consents, start: b"a3".to_vec(), end: None, limit: 10 },
        Read::Get { space: Keyspace::Updates, key: positions[0].as_bytes().to_vec() },
        Read::Scan { space: Keyspace::Objections, start: Vec::new(), end: None, limit: 10 },
    ];
    let together = engine.read_many(&reads).expect("reads made together");
    let alone: Vec<Found> = reads
        .iter()
        .map(|read| match read {
            Read::Get { space, key } => Found::Value(engine.get(*space, key).unwrap()),
            Read::Scan { space, start, end, limit } => {
                Found::Entries(engine.scan(*space, start, end.as_deref(), *limit).unwrap())
            }
        })
        .collect();
    assert_eq!(together, alone);
    assert_eq!(together[0], Found::Value(Some(b"wrapped".to_vec())));
    assert_eq!(together[1], Found::Value(None));
    assert_eq!(
        together[2],
        Found::Entries(vec![(b"a1".to_vec(), b"a1-v".to_vec()), (b"a2".to_vec(), b"a2-v".to_vec())])
    );
    assert_eq!(together[4], Found::Value(Some(b"u".to_vec())));
    assert_eq!(together[5], Found::Entries(Vec::new()));
    assert!(engine.read_many(&[]).unwrap().is_empty());
}
