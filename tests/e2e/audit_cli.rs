//! `tio audit public-key` and `tio audit verify` through the real binary, on exports
//! signed with the key `tio keys init` created.

use std::path::Path;

use tio_audit::checkpoint::Checkpoint;
use tio_audit::entry::{Actor, AuditEntry};
use tio_audit::export::ExportLine;
use tio_audit::merkle::MemoryTree;
use tio_audit::note::Signer;
use tio_store::keys::KeyRing;

use crate::support::{arg, run_tio};

const ORIGIN: &str = "tio.test/audit";

fn entry(index: u64) -> AuditEntry {
    AuditEntry {
        leaf_index: index,
        time_micros: 1_800_000_000_000_000 + index as i64,
        actor: Actor { id: "school".into(), role: "agency".into(), ..Actor::default() },
        action: "profile_read".into(),
        outcome: "allowed".into(),
        categories: vec!["send_support".into()],
        ..AuditEntry::default()
    }
}

/// Writes an export of the first `size` of `count` entries, signed by `signer`.
fn write_export(dir: &Path, signer: &Signer, size: u64) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let mut tree = MemoryTree::new();
    let mut lines = String::new();
    for index in 0..size {
        let entry = entry(index);
        tree.append(entry.leaf_hash());
        lines.push_str(&ExportLine::new(entry).to_json());
        lines.push('\n');
    }
    let checkpoint = Checkpoint { origin: ORIGIN.into(), size, root: tree.root() }.sign(signer).unwrap();
    std::fs::write(dir.join("entries.jsonl"), lines).unwrap();
    std::fs::write(dir.join("checkpoint"), &checkpoint).unwrap();
    checkpoint
}

#[test]
fn auditors_verify_exports_offline_and_every_tampering_fails() {
    let root = tempfile::tempdir().unwrap();
    let keys = root.path().join("tio.keys");
    let (status, stdout, stderr) =
        run_tio(&["keys", "init", "--keys-file", &arg(&keys), "--audit-origin", ORIGIN], &[]);
    assert!(status.success(), "{stderr}");
    let (status, public_key, stderr) = run_tio(&["audit", "public-key", "--keys-file", &arg(&keys)], &[]);
    assert!(status.success(), "{stderr}");
    assert!(public_key.starts_with(&format!("{ORIGIN}+")), "{public_key}");
    assert!(stdout.contains(public_key.trim()), "keys init shows the same verifier key");
    let public_key_file = root.path().join("tio-audit.pub");
    std::fs::write(&public_key_file, &public_key).unwrap();

    let ring = KeyRing::load_file(&keys).unwrap();
    let signer = Signer::from_private_key(ring.audit_signing_key().unwrap()).unwrap();
    let early = root.path().join("early");
    let early_checkpoint = write_export(&early, &signer, 30);
    let late = root.path().join("late");
    write_export(&late, &signer, 50);
    std::fs::write(root.path().join("early-checkpoint"), &early_checkpoint).unwrap();

    let verify = |dir: &Path, against: Option<&Path>| {
        let mut args =
            vec!["audit".to_owned(), "verify".to_owned(), arg(dir), "--public-key".to_owned(), arg(&public_key_file)];
        if let Some(against) = against {
            args.push("--against".to_owned());
            args.push(arg(against));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tio(&args, &[])
    };

    let (status, stdout, stderr) = verify(&late, None);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("OK: 50 entries"), "{stdout}");
    let (status, stdout, _) = verify(&late, Some(&root.path().join("early-checkpoint")));
    assert!(status.success() && stdout.contains("extends the older checkpoint of 30"), "{stdout}");

    // A rollback: the earlier export against the later checkpoint.
    let (status, stdout, _) = verify(&early, Some(&late.join("checkpoint")));
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("rolled back"), "{stdout}");

    // One edited, deleted or reordered line.
    let original = std::fs::read_to_string(late.join("entries.jsonl")).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let rewrite = |lines: Vec<String>| std::fs::write(late.join("entries.jsonl"), lines.join("\n") + "\n").unwrap();
    let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    edited[12] = edited[12].replacen("profile_read", "publish", 1);
    rewrite(edited);
    let (status, stdout, _) = verify(&late, None);
    assert_eq!(status.code(), Some(1));
    assert!(stdout.contains("line 13 (leaf 12): the entry was altered"), "{stdout}");

    let mut deleted: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    deleted.remove(20);
    rewrite(deleted);
    let (status, stdout, _) = verify(&late, None);
    assert!(status.code() == Some(1) && stdout.contains("line 21"), "{stdout}");

    let mut reordered: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    reordered.swap(1, 2);
    rewrite(reordered);
    let (status, stdout, _) = verify(&late, None);
    assert!(status.code() == Some(1) && stdout.contains("reordered"), "{stdout}");

    // A checkpoint signed by another key.
    std::fs::write(late.join("entries.jsonl"), &original).unwrap();
    let stranger = Signer::generate(ORIGIN).unwrap();
    write_export(&late, &stranger, 50);
    let (status, stdout, _) = verify(&late, None);
    assert!(status.code() == Some(1) && stdout.contains("checkpoint"), "{stdout}");
}
