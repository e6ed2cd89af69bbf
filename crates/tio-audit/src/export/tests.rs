//! The tamper matrix: every honest export verifies; every edit, deletion, reordering,
//! insertion, truncation, rollback, fork or foreign key is caught.

use proptest::prelude::*;

use super::*;
use crate::entry::Actor;
use crate::merkle::MemoryTree;
use crate::note::Signer;

const ORIGIN: &str = "tio.example/audit";

fn entry(index: u64) -> AuditEntry {
    AuditEntry {
        leaf_index: index,
        time_micros: 1_800_000_000_000_000 + index as i64 * 1000,
        actor: Actor {
            id: ["hospital", "school", "send-team"][index as usize % 3].to_owned(),
            role: "agency".to_owned(),
            certificate_fingerprint: format!("{:064x}", index * 7919),
            professional_id: format!("staff-{index}"),
        },
        action: ["publish", "profile_read", "delivery"][index as usize % 3].to_owned(),
        outcome: if index.is_multiple_of(5) { "denied" } else { "allowed" }.to_owned(),
        reason: if index.is_multiple_of(5) { "no_consent" } else { "" }.to_owned(),
        child_index: format!("{:064x}", index % 4),
        child_sealed: "c2VhbGVk".to_owned(),
        categories: vec!["communication_needs".to_owned()],
        request_id: format!("req-{index}"),
        trace_id: String::new(),
        consent_id: "consent-1".to_owned(),
        consent_revision: 1,
        relationship_id: "rel-1".to_owned(),
        update_id: format!("{:032x}", index),
        recipient_agency_id: String::new(),
        detail: String::new(),
        basis: String::new(),
        overrides: Vec::new(),
        alert: String::new(),
        alert_to: Vec::new(),
    }
}

/// An honest log of `entries`: its JSON lines and a checkpoint for its first `size`.
struct Log {
    lines: Vec<String>,
    tree: MemoryTree,
}

impl Log {
    fn new(entries: impl IntoIterator<Item = AuditEntry>) -> Log {
        let mut lines = Vec::new();
        let mut tree = MemoryTree::new();
        for entry in entries {
            tree.append(entry.leaf_hash());
            lines.push(ExportLine::new(entry).to_json());
        }
        Log { lines, tree }
    }

    fn checkpoint(&self, signer: &Signer, size: u64) -> String {
        Checkpoint { origin: ORIGIN.to_owned(), size, root: self.tree.root_at(size).unwrap() }.sign(signer).unwrap()
    }
}

fn verify(
    lines: &[String],
    checkpoint: &str,
    verifier: &Verifier,
    against: Option<&str>,
) -> Result<Verified, ExportError> {
    let text = lines.iter().map(|line| format!("{line}\n")).collect::<String>();
    verify_export(text.as_bytes(), checkpoint, verifier, against)
}

/// Re-serialises a line after editing its entry, keeping (or recomputing) its recorded hash.
fn edit(line: &str, recompute_hash: bool, change: impl FnOnce(&mut AuditEntry)) -> String {
    let mut parsed: ExportLine = serde_json::from_str(line).unwrap();
    change(&mut parsed.entry);
    if recompute_hash {
        parsed = ExportLine::new(parsed.entry);
    }
    parsed.to_json()
}

fn setup() -> (Signer, Log, String) {
    let signer = Signer::generate(ORIGIN).unwrap();
    let log = Log::new((0..40).map(entry));
    let checkpoint = log.checkpoint(&signer, 40);
    (signer, log, checkpoint)
}

#[test]
fn an_honest_export_verifies() {
    let (signer, log, checkpoint) = setup();
    let verified = verify(&log.lines, &checkpoint, &signer.verifier(), None).unwrap();
    assert_eq!(verified.entries, 40);
    assert_eq!(verified.checkpoint.size, 40);
    let empty = Log::new([]);
    assert!(verify(&[], &empty.checkpoint(&signer, 0), &signer.verifier(), None).is_ok(), "an empty log verifies");
}

#[test]
fn changing_any_one_field_names_the_entry() {
    let (signer, log, checkpoint) = setup();
    type Change = (&'static str, fn(&mut AuditEntry));
    let changes: Vec<Change> = vec![
        ("time", |e| e.time_micros += 1),
        ("actor id", |e| e.actor.id = "gp".into()),
        ("actor role", |e| e.actor.role = "admin".into()),
        ("fingerprint", |e| e.actor.certificate_fingerprint.replace_range(0..1, "f")),
        ("professional", |e| e.actor.professional_id.push('x')),
        ("action", |e| e.action = "admin".into()),
        ("outcome", |e| e.outcome = "failed".into()),
        ("reason", |e| e.reason = "consent_withdrawn".into()),
        ("child index", |e| e.child_index.replace_range(0..1, "f")),
        ("child sealed", |e| e.child_sealed.push('A')),
        ("categories", |e| e.categories.push("health_summary".into())),
        ("request id", |e| e.request_id.push('x')),
        ("trace id", |e| e.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736".into()),
        ("consent id", |e| e.consent_id.push('x')),
        ("consent revision", |e| e.consent_revision += 1),
        ("relationship", |e| e.relationship_id.push('x')),
        ("update id", |e| e.update_id.replace_range(0..1, "f")),
        ("recipient", |e| e.recipient_agency_id = "school".into()),
        ("detail", |e| e.detail = "register_agency gp".into()),
        ("basis", |e| e.basis = "protection_flag".into()),
        ("overrides", |e| e.overrides = vec!["o-1".into()]),
        ("alert", |e| e.alert = "protection_flag_access".into()),
        ("alert to", |e| e.alert_to = vec!["social-care".into()]),
    ];
    for (name, change) in changes {
        let mut lines = log.lines.clone();
        lines[17] = edit(&lines[17], false, change);
        match verify(&lines, &checkpoint, &signer.verifier(), None) {
            Err(ExportError::Altered { line, leaf_index }) => assert_eq!((line, leaf_index), (18, 17), "{name}"),
            other => panic!("{name}: expected the entry to be named, got {other:?}"),
        }
        // A careful forger also rewrites the recorded hash: the root still gives it away.
        let mut lines = log.lines.clone();
        lines[17] = edit(&lines[17], true, change);
        assert!(
            matches!(verify(&lines, &checkpoint, &signer.verifier(), None), Err(ExportError::Mismatch(_))),
            "{name}"
        );
    }
}

#[test]
fn deleting_reordering_inserting_and_truncating_are_caught() {
    let (signer, log, checkpoint) = setup();
    let verifier = signer.verifier();

    let mut deleted = log.lines.clone();
    deleted.remove(10);
    assert!(matches!(
        verify(&deleted, &checkpoint, &verifier, None),
        Err(ExportError::Sequence { line: 11, expected: 10, found: 11 })
    ));

    let mut reordered = log.lines.clone();
    reordered.swap(3, 4);
    assert!(matches!(verify(&reordered, &checkpoint, &verifier, None), Err(ExportError::Sequence { line: 4, .. })));

    let mut inserted = log.lines.clone();
    inserted.insert(5, ExportLine::new(entry(5)).to_json());
    assert!(matches!(verify(&inserted, &checkpoint, &verifier, None), Err(ExportError::Sequence { line: 7, .. })));

    // Inserted with every later index and hash rewritten: the tree no longer matches.
    let mut renumbered: Vec<AuditEntry> = (0..40).map(entry).collect();
    renumbered.insert(5, AuditEntry { action: "profile_read".into(), ..entry(5) });
    for (index, entry) in renumbered.iter_mut().enumerate() {
        entry.leaf_index = index as u64;
    }
    let forged = Log::new(renumbered);
    assert!(matches!(verify(&forged.lines, &checkpoint, &verifier, None), Err(ExportError::Mismatch(_))));

    let truncated = &log.lines[..35];
    assert!(matches!(verify(truncated, &checkpoint, &verifier, None), Err(ExportError::Mismatch(_))));
}

#[test]
fn rollback_fork_and_foreign_keys_are_caught_and_honest_growth_passes() {
    let (signer, log, checkpoint_40) = setup();
    let verifier = signer.verifier();
    let checkpoint_25 = log.checkpoint(&signer, 25);

    // A later export checked against an earlier checkpoint: consistent.
    let verified = verify(&log.lines, &checkpoint_40, &verifier, Some(&checkpoint_25)).unwrap();
    assert_eq!(verified.consistent_with.map(|c| c.size), Some(25));

    // An earlier export checked against a later checkpoint: rolled back.
    let older_lines = &log.lines[..25];
    assert!(matches!(
        verify(older_lines, &checkpoint_25, &verifier, Some(&checkpoint_40)),
        Err(ExportError::Inconsistent(_))
    ));

    // A log that forked at entry 20 and was re-signed by the same key: its own checkpoint
    // verifies, but not against a checkpoint from before the fork that covers the fork.
    let mut forked_entries: Vec<AuditEntry> = (0..40).map(entry).collect();
    forked_entries[20].outcome = "failed".into();
    let forked = Log::new(forked_entries);
    let forked_checkpoint = forked.checkpoint(&signer, 40);
    assert!(verify(&forked.lines, &forked_checkpoint, &verifier, None).is_ok(), "a fork is self-consistent");
    assert!(matches!(
        verify(&forked.lines, &forked_checkpoint, &verifier, Some(&checkpoint_25)),
        Err(ExportError::Inconsistent(_))
    ));
    let checkpoint_20 = log.checkpoint(&signer, 20);
    assert!(
        verify(&forked.lines, &forked_checkpoint, &verifier, Some(&checkpoint_20)).is_ok(),
        "identical up to the fork"
    );

    // A checkpoint signed by another key, and an edited checkpoint.
    let impostor = Signer::generate(ORIGIN).unwrap();
    assert!(matches!(
        verify(&log.lines, &log.checkpoint(&impostor, 40), &verifier, None),
        Err(ExportError::Checkpoint(_))
    ));
    let edited = checkpoint_40.replacen("\n40\n", "\n39\n", 1);
    assert!(matches!(verify(&log.lines[..39], &edited, &verifier, None), Err(ExportError::Checkpoint(_))));
}

#[test]
fn malformed_lines_name_their_line() {
    let (signer, log, checkpoint) = setup();
    let mut lines = log.lines.clone();
    lines[7] = "{not json".to_owned();
    assert!(matches!(
        verify(&lines, &checkpoint, &signer.verifier(), None),
        Err(ExportError::Malformed { line: 8, .. })
    ));
    let mut lines = log.lines.clone();
    lines[7] = lines[7].replacen("\"leaf_hash\"", "\"extra\":1,\"leaf_hash\"", 1);
    assert!(
        matches!(verify(&lines, &checkpoint, &signer.verifier(), None), Err(ExportError::Malformed { line: 8, .. })),
        "unknown fields are refused"
    );
}

#[test]
fn lines_in_another_layout_take_the_full_parse_and_a_smuggled_entry_is_caught() {
    let (signer, log, checkpoint) = setup();
    let verifier = signer.verifier();
    let (entry_json, leaf_hash, index) = split_canonical_line(&log.lines[7]).expect("the exporter's own layout");
    assert_eq!(index, 7);
    // The same fields in another order: not the exporter's layout, still the same entry.
    let mut lines = log.lines.clone();
    lines[7] = format!("{{\"leaf_hash\":\"{leaf_hash}\",\"entry\":{entry_json}}}");
    assert!(split_canonical_line(&lines[7]).is_none());
    assert!(verify(&lines, &checkpoint, &verifier, None).is_ok(), "a reordered line verifies");
    // A second entry after the logged one: a JSON reader would show the second.
    let forged = String::from_utf8(AuditEntry { outcome: "denied".into(), ..entry(7) }.canonical_bytes()).unwrap();
    let mut lines = log.lines.clone();
    lines[7] = lines[7].replacen(",\"leaf_hash\"", &format!(",\"entry\":{forged},\"leaf_hash\""), 1);
    assert!(matches!(verify(&lines, &checkpoint, &verifier, None), Err(ExportError::Altered { line: 8, .. })));
    // The same, with the forged entry first.
    let mut lines = log.lines.clone();
    lines[7] = lines[7].replacen("{\"entry\":", &format!("{{\"entry\":{forged},\"entry\":"), 1);
    assert!(verify(&lines, &checkpoint, &verifier, None).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any single-byte change to any line of an export is detected.
    #[test]
    fn any_byte_changed_anywhere_is_detected(line in 0usize..40, offset in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (signer, log, checkpoint) = setup();
        let mut lines = log.lines.clone();
        let mut bytes = lines[line].clone().into_bytes();
        let at = offset.index(bytes.len());
        prop_assume!(bytes[at] != byte);
        bytes[at] = byte;
        let Ok(changed) = String::from_utf8(bytes) else { return Ok(()) };
        // A change that parses to the same entry and hash (white space) is no change.
        let same = serde_json::from_str::<ExportLine>(&changed).ok() == serde_json::from_str::<ExportLine>(&lines[line]).ok();
        prop_assume!(!same);
        lines[line] = changed;
        prop_assert!(verify(&lines, &checkpoint, &signer.verifier(), None).is_err());
    }
}

#[test]
fn the_leaf_index_is_read_from_canonical_entries_and_never_from_inside_a_string() {
    for index in [0, 7, 1_234_567, u64::MAX / 10_000] {
        let entry = AuditEntry { reason: ",\"leaf_index\":99,".into(), ..entry(index) };
        let json = String::from_utf8(entry.canonical_bytes()).unwrap();
        assert_eq!(canonical_leaf_index(&json), Some(index), "{json}");
    }
    // Any other form falls back to a full parse.
    for other in ["{\"leaf_index\":3}", "{\"a\":1,\"leaf_index\": 3}", "{\"a\":1,\"leaf_index\":-3}", "{}"] {
        assert_eq!(canonical_leaf_index(other), None, "{other}");
    }
}
