//! The AuditService over real mutual TLS, through the client library and the `tio
//! audit` commands: agencies are refused and the refusal is logged; an auditor exports,
//! verifies offline, detects tampering and rollback, checks proofs, and reports on a
//! child.

use std::path::Path;

use tio_audit::checkpoint::Checkpoint;
use tio_audit::entry::AuditEntry;
use tio_audit::merkle::{Hash, verify_consistency, verify_inclusion};
use tio_audit::note::Verifier;
use tio_proto::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::{Sandbox, arg, run_tio, tio_as};

/// A test-range NHS number.
const CHILD: &str = "9990079196";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

fn read_entries(dir: &Path) -> Vec<AuditEntry> {
    std::fs::read_to_string(dir.join("entries.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            serde_json::from_value(value["entry"].clone()).unwrap()
        })
        .collect()
}

fn hash(bytes: &[u8]) -> Hash {
    bytes.try_into().expect("32-byte hash")
}

#[test]
fn agencies_are_refused_the_audit_log_and_the_refusal_is_in_it() {
    let sandbox = Sandbox::start();
    let runtime = runtime();
    runtime.block_on(async {
        let client = sandbox.client("school").await;
        let status = client
            .audit()
            .query_entries(client.request(v1::QueryEntriesRequest::default()))
            .await
            .expect_err("an agency may not query the audit log");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(status.message(), "the agency role may not use this service");
        let status = client
            .audit()
            .export_entries(client.request(v1::ExportEntriesRequest::default()))
            .await
            .expect_err("an agency may not export the audit log");
        assert_eq!(status.code(), Code::PermissionDenied);

        let auditor = sandbox.client("auditor").await;
        let request = v1::QueryEntriesRequest {
            agency_id: "school".into(),
            outcome: v1::AuditOutcome::Denied as i32,
            ..Default::default()
        };
        let entries = auditor.audit().query_entries(auditor.request(request)).await.unwrap().into_inner().entries;
        assert_eq!(entries.len(), 2, "both refusals are logged: {entries:?}");
        for entry in &entries {
            assert_eq!(entry.action, v1::AuditAction::AuditRead as i32);
            assert_eq!(entry.reason, "role_not_permitted");
            let actor = entry.actor.as_ref().unwrap();
            assert_eq!((actor.id.as_str(), actor.role), ("school", v1::Role::Agency as i32));
            assert_eq!(actor.certificate_fingerprint, sandbox.pki.fingerprint("school"));
            assert_eq!(entry.request_id.len(), 32, "a request id is assigned");
        }
    });
    let (ok, _, stderr) = tio_as(&sandbox, "hospital", &["audit", "query"]);
    assert!(!ok);
    assert!(stderr.contains("PERMISSION_DENIED: the agency role may not use this service"), "{stderr}");
}

#[test]
fn an_auditor_exports_and_verifies_and_tampering_or_rollback_fails() {
    let sandbox = Sandbox::start();
    let work = tempfile::tempdir().unwrap();
    let public_key_file = sandbox.write_audit_public_key(work.path());
    let verify = |dir: &Path, against: Option<&Path>| {
        let mut args = vec!["audit".to_owned(), "verify".to_owned(), arg(dir), "--public-key".to_owned()];
        args.push(arg(&public_key_file));
        if let Some(against) = against {
            args.extend(["--against".to_owned(), arg(against)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, stdout, stderr) = run_tio(&args, &[]);
        (status.success(), format!("{stdout}{stderr}"))
    };

    // Some traffic: a refusal, then the first export.
    let (ok, _, _) = tio_as(&sandbox, "gp", &["audit", "checkpoint"]);
    assert!(!ok, "an agency may not read checkpoints");
    let first = work.path().join("first");
    let (ok, stdout, stderr) = tio_as(&sandbox, "auditor", &["audit", "export", "--out", &arg(&first)]);
    assert!(ok, "{stderr}");
    // The registry's seed, the refusal, and this export's own read.
    assert!(stdout.contains("exported 3 entries"), "{stdout}");
    let (ok, report) = verify(&first, None);
    assert!(ok, "{report}");
    let entries = read_entries(&first);
    assert_eq!(entries[0].detail, "seed_registry 7 agencies");
    assert_eq!((entries[1].actor.id.as_str(), entries[1].outcome.as_str()), ("gp", "denied"));
    assert_eq!((entries[2].action.as_str(), entries[2].actor.id.as_str()), ("audit_read", "auditor"));

    // Exporting into the same directory again is refused rather than overwriting it.
    let (ok, _, stderr) = tio_as(&sandbox, "auditor", &["audit", "export", "--out", &arg(&first)]);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");

    // A later export extends the earlier checkpoint; the earlier one is a rollback of it.
    let second = work.path().join("second");
    let (ok, _, stderr) = tio_as(&sandbox, "auditor", &["audit", "export", "--out", &arg(&second)]);
    assert!(ok, "{stderr}");
    assert!(read_entries(&second).len() > entries.len());
    let (ok, report) = verify(&second, Some(&first.join("checkpoint")));
    assert!(ok, "{report}");
    assert!(report.contains("extends the older checkpoint"), "{report}");
    let (ok, report) = verify(&first, Some(&second.join("checkpoint")));
    assert!(!ok, "an older log must not verify against a newer checkpoint: {report}");

    // Any one edited, deleted or reordered line fails.
    let lines: Vec<String> =
        std::fs::read_to_string(second.join("entries.jsonl")).unwrap().lines().map(str::to_owned).collect();
    let tampered: Vec<(&str, Vec<String>)> = vec![
        ("edited", {
            let mut copy = lines.clone();
            copy[2] = copy[2].replace("\"auditor\"", "\"auditer\"");
            assert_ne!(copy[2], lines[2]);
            copy
        }),
        ("deleted", lines[1..].to_vec()),
        ("reordered", {
            let mut copy = lines.clone();
            copy.swap(0, 1);
            copy
        }),
    ];
    for (what, changed) in tampered {
        let dir = work.path().join(what);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(second.join("checkpoint"), dir.join("checkpoint")).unwrap();
        std::fs::write(dir.join("entries.jsonl"), changed.join("\n") + "\n").unwrap();
        let (ok, report) = verify(&dir, None);
        assert!(!ok, "{what} line verified: {report}");
        assert!(report.contains("FAILED"), "{what}: {report}");
    }

    // Proofs from the server check out against the signed checkpoints.
    let verifier = Verifier::parse(&std::fs::read_to_string(&public_key_file).unwrap()).unwrap();
    let open =
        |dir: &Path| Checkpoint::open(&std::fs::read_to_string(dir.join("checkpoint")).unwrap(), &verifier).unwrap();
    let (old, new) = (open(&first), open(&second));
    let new_entries = read_entries(&second);
    runtime().block_on(async {
        let auditor = sandbox.client("auditor").await;
        let mut audit = auditor.audit();
        let request = v1::GetConsistencyProofRequest { old_size: old.size, new_size: new.size };
        let proof = audit.get_consistency_proof(auditor.request(request)).await.unwrap().into_inner();
        let proof: Vec<Hash> = proof.hashes.iter().map(|h| hash(h)).collect();
        verify_consistency(old.size, new.size, &proof, &old.root, &new.root).unwrap();
        for index in [0, new.size - 1] {
            let request = v1::GetInclusionProofRequest { leaf_index: index, tree_size: new.size };
            let proof = audit.get_inclusion_proof(auditor.request(request)).await.unwrap().into_inner();
            let proof: Vec<Hash> = proof.hashes.iter().map(|h| hash(h)).collect();
            let leaf = new_entries[index as usize].leaf_hash();
            verify_inclusion(&leaf, index, new.size, &proof, &new.root).unwrap();
        }
        let request = v1::GetInclusionProofRequest { leaf_index: new.size, tree_size: new.size };
        let status = audit.get_inclusion_proof(auditor.request(request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "leaf_index");
        let request = v1::GetConsistencyProofRequest { old_size: 1, new_size: u64::MAX };
        let status = audit.get_consistency_proof(auditor.request(request)).await.unwrap_err();
        assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "new_size");
    });
}

#[test]
fn the_subject_access_report_names_who_looked_and_why_and_needs_a_valid_nhs_number() {
    let sandbox = Sandbox::start();
    // Every report is itself an access to the child's information, recorded before it is
    // answered: the first report lists only itself, the next lists both.
    let (ok, stdout, stderr) = tio_as(&sandbox, "auditor", &["audit", "report", "--nhs-number", "999 007 9196"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("Subject-access report for the child with NHS number 999 007 9196"), "{stdout}");
    assert!(
        stdout.contains("auditor or data protection officer (auditor)")
            && !stdout.contains("auditor auditor")
            && stdout.contains("read the audit log"),
        "{stdout}"
    );
    assert!(stdout.contains("an audit or subject-access request"), "{stdout}");
    assert!(stdout.contains("\n1 entries."), "{stdout}");
    let (ok, stdout, stderr) = tio_as(&sandbox, "admin", &["audit", "report", "--nhs-number", CHILD]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("broker administrator (admin)"), "{stdout}");
    assert!(stdout.contains("\n2 entries."), "{stdout}");

    let (ok, csv, stderr) = tio_as(&sandbox, "auditor", &["audit", "report", "--nhs-number", CHILD, "--format", "csv"]);
    assert!(ok, "{stderr}");
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("time,agency_id,agency_name,professional_id,what,outcome,information,why,leaf_index"));
    assert_eq!(rows.count(), 3, "{csv}");

    // Another child's report lists none of this one's entries, only its own read.
    let (ok, stdout, _) = tio_as(&sandbox, "auditor", &["audit", "report", "--nhs-number", "9990237573"]);
    assert!(ok && stdout.contains("\n1 entries."), "{stdout}");

    // A bad NHS number is refused naming the field, and nothing is logged for it.
    runtime().block_on(async {
        let auditor = sandbox.client("auditor").await;
        let mut audit = auditor.audit();
        let count = |mut audit: v1::audit_service_client::AuditServiceClient<_>| {
            let request = auditor.request(v1::QueryEntriesRequest::default());
            async move { audit.query_entries(request).await.unwrap().into_inner().entries.len() }
        };
        let before = count(audit.clone()).await;
        let request = v1::SubjectAccessReportRequest {
            child: Some(v1::ChildRef { nhs_number: "9990079197".into() }),
            ..Default::default()
        };
        let status = audit.subject_access_report(auditor.request(request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let violation = &status.get_details_bad_request().unwrap().field_violations[0];
        assert_eq!(
            (violation.field.as_str(), violation.description.as_str()),
            ("child.nhs_number", "fails the modulus-11 check digit")
        );
        let status =
            audit.subject_access_report(auditor.request(v1::SubjectAccessReportRequest::default())).await.unwrap_err();
        assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "child.nhs_number");
        // Only the second count's own read was added: refused requests write nothing.
        assert_eq!(count(audit.clone()).await, before + 1);
    });
    // The CLI checks the number before it connects.
    let (ok, _, stderr) = tio_as(&sandbox, "auditor", &["audit", "report", "--nhs-number", "123"]);
    assert!(!ok && stderr.contains("--nhs-number"), "{stderr}");
}

#[test]
fn refusals_at_authentication_are_in_the_audit_log() {
    let sandbox = Sandbox::start();
    sandbox.pki.issue("police", &tio_broker::pki::LeafSpec::client(&tio_core::Identity::agency("police")));
    runtime().block_on(async {
        let police = tio_client::Client::connect(&sandbox.settings("police")).await.unwrap();
        assert_eq!(police.health("").await.unwrap_err().to_string().split(':').next(), Some("UNAUTHENTICATED"));
        // An agency call without the professional's id is refused, and recorded too.
        let hospital = sandbox.client("hospital").await;
        let status =
            hospital.subscriptions().list_subscriptions(v1::ListSubscriptionsRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);

        let auditor = sandbox.client("auditor").await;
        let mut reasons = Vec::new();
        for _ in 0..100 {
            let query =
                v1::QueryEntriesRequest { action: v1::AuditAction::Authentication as i32, ..Default::default() };
            let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
            reasons = entries
                .iter()
                .map(|entry| {
                    let actor = entry.actor.clone().unwrap();
                    (actor.id, entry.reason.clone(), actor.certificate_fingerprint.len(), entry.outcome())
                })
                .collect();
            if reasons.len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        reasons.sort();
        assert_eq!(
            reasons,
            [
                ("hospital".to_owned(), "no_professional".to_owned(), 64, v1::AuditOutcome::Denied),
                ("police".to_owned(), "unknown_identity".to_owned(), 64, v1::AuditOutcome::Denied),
            ]
        );
    });
}
