//! The conformance suite every engine must pass. Each case takes a fresh, empty engine
//! from `make` and panics with the case's name on failure.
//!
//! Run it from an engine's tests: `conformance::run_all(&|| MyEngine::new())`.

use super::{Batch, CommitError, Condition, Engine, Keyspace, Op, Position, key_after, prefix_end};

/// Runs every case against fresh engines from `make`.
pub fn run_all<E: Engine>(make: &dyn Fn() -> E) {
    type Case = fn(&dyn Engine);
    let cases: [(&str, Case); 7] = [
        ("put, get and delete", put_get_delete),
        ("scans honour bounds and limits", scans_honour_bounds_and_limits),
        ("a failed condition applies nothing", a_failed_condition_applies_nothing),
        ("equals conditions compare values", equals_conditions_compare_values),
        ("appends get increasing positions", appends_get_increasing_positions),
        ("positions can be referenced in the same batch", positions_can_be_referenced_in_the_same_batch),
        ("malformed batches are refused", malformed_batches_are_refused),
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
    assert!(engine.get(Keyspace::Latest, b"k").unwrap().is_none());
}
