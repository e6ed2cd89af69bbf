//! Store maintenance on a running server through `tio` and an admin certificate: a
//! backup and a key rotation taken while agencies publish, a retirement, the refusals,
//! and the audit entries; the backup then restores into a store that checks clean.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tio_proto::v1;
use tonic::Code;

use crate::support::records::{AMY, BEN, as_professional, health_summary, publish, publish_request, runtime};
use crate::support::{Sandbox, arg, run_tio, tio_as};

/// Four test-range children, so that there are several data keys to re-wrap.
const CHILDREN: [&str; 4] = [AMY, BEN, "9990316767", "9990395950"];

#[test]
fn a_running_server_is_backed_up_and_rotated_while_agencies_publish() {
    let mut sandbox = Sandbox::start();
    let runtime = runtime();
    let ring = sandbox.data_dir().join("dev-keys").join("tio.keys");
    // The operator's copy of the ring as it was when the backup was taken.
    let scratch = tempfile::tempdir().unwrap();
    let ring_copy = scratch.path().join("ring-at-backup.keys");
    std::fs::copy(&ring, &ring_copy).unwrap();

    // A publisher runs before, during and after the maintenance; every publish must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (client, stop, published) =
            (runtime.block_on(as_professional(&sandbox, "hospital")), stop.clone(), published.clone());
        runtime.spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            for n in 0u64.. {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let child = CHILDREN[n as usize % CHILDREN.len()];
                let request = publish_request(
                    child,
                    v1::Category::HealthSummary,
                    health_summary(&format!("visit {n}")),
                    &format!("m-{n}"),
                );
                publish(&client, request).await.unwrap_or_else(|status| panic!("publish {n} failed: {status}"));
                published.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let wait_for = |count: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while published.load(Ordering::Relaxed) < count {
            assert!(Instant::now() < deadline, "the publisher stalled at {}", published.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(40);

    // Only an admin may back up or rotate.
    let backup = scratch.path().join("live.backup");
    for name in ["hospital", "auditor"] {
        let (ok, _, stderr) = tio_as(&sandbox, name, &["store", "backup", "--out", &arg(&backup)]);
        assert!(!ok && stderr.contains("PERMISSION_DENIED"), "{name}: {stderr}");
        assert!(!backup.exists(), "a refused backup leaves no file");
    }

    let (ok, stdout, stderr) = tio_as(&sandbox, "admin", &["store", "backup", "--out", &arg(&backup)]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("checksum verified") && stdout.contains("ciphertext only"), "{stdout}");
    let published_at_backup = published.load(Ordering::Relaxed);
    let (ok, _, stderr) = tio_as(&sandbox, "admin", &["store", "backup", "--out", &arg(&backup)]);
    assert!(!ok && stderr.contains("already exists"), "never overwrites: {stderr}");
    wait_for(published_at_backup + 40);

    let (ok, stdout, stderr) = tio_as(&sandbox, "admin", &["keys", "rotate"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("version 2 is current; re-wrapped 4 data keys"), "{stdout}");
    assert!(stdout.contains("retire version 1 with: tio keys retire --kek-version 1"), "{stdout}");
    let published_at_rotation = published.load(Ordering::Relaxed);
    wait_for(published_at_rotation + 40);

    let retire = |version: &str| tio_as(&sandbox, "admin", &["keys", "retire", "--kek-version", version]);
    let (ok, _, stderr) = retire("2");
    assert!(!ok && stderr.contains("FAILED_PRECONDITION: version 2 is current"), "{stderr}");
    let (ok, _, stderr) = retire("7");
    assert!(!ok && stderr.contains("NOT_FOUND"), "{stderr}");
    let (ok, stdout, stderr) = retire("1");
    assert!(ok, "{stderr}");
    assert!(stdout.contains("the ring now holds [2]"), "{stdout}");

    stop.store(true, Ordering::Relaxed);
    runtime.block_on(publisher).unwrap();
    let total = published.load(Ordering::Relaxed);

    // The audit log names each operation, with the admin who asked.
    runtime.block_on(async {
        let auditor = sandbox.client("auditor").await;
        let request = v1::QueryEntriesRequest {
            action: v1::AuditAction::Admin as i32,
            page: Some(v1::PageRequest { page_size: 500, page_token: String::new() }),
            ..Default::default()
        };
        let entries = auditor.audit().query_entries(auditor.request(request)).await.unwrap().into_inner().entries;
        let details: Vec<&str> = entries.iter().map(|entry| entry.detail.as_str()).collect();
        for expected in [
            "backup_store",
            "rotate_keys to version 2",
            "rotate_keys finished: version 2, 4 data keys re-wrapped",
            "retire_key version 1",
        ] {
            assert!(details.contains(&expected), "no `{expected}` entry in {details:?}");
        }
        let refusals = entries.iter().filter(|entry| entry.outcome() == v1::AuditOutcome::Denied).count();
        assert!(refusals >= 2, "the refused backups are audited: {details:?}");
        let hospital = sandbox.client("hospital").await;
        let status = hospital.admin().backup_store(hospital.request(v1::BackupStoreRequest {})).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    });

    // The live store checks clean under the new ring alone, and so does the restored
    // backup under the ring copied when it was taken.
    sandbox.signal(Signal::SIGTERM);
    assert!(sandbox.wait_exit(Duration::from_secs(20)).success(), "{}", sandbox.log_text());
    let check = |data: &std::path::Path, keys: &std::path::Path| {
        run_tio(&["store", "check", "--data-dir", &arg(data), "--keys-file", &arg(keys)], &[])
    };
    let (status, live_report, stderr) = check(&sandbox.data_dir(), &ring);
    assert!(status.success(), "{live_report}{stderr}");
    let restored = scratch.path().join("restored");
    let (status, _, stderr) = run_tio(&["store", "restore", "--in", &arg(&backup), "--data-dir", &arg(&restored)], &[]);
    assert!(status.success(), "{stderr}");
    let (status, restored_report, stderr) = check(&restored, &ring_copy);
    assert!(status.success(), "the backup restores into a consistent store:\n{restored_report}{stderr}");
    // Consistent means the audit log too: every update in the backup has its entry.
    assert!(restored_report.contains("the audit log matches its tree, its checkpoint and the stored updates"));
    let updates = |report: &str| -> u64 {
        let line = report.lines().find(|line| line.contains(" updates (")).unwrap_or_else(|| panic!("{report}"));
        line.split_whitespace().find_map(|word| word.parse().ok()).unwrap_or_else(|| panic!("{line}"))
    };
    let (in_backup, in_live) = (updates(&restored_report), updates(&live_report));
    assert!(in_backup >= published_at_backup.min(40), "the backup holds what was published before it: {in_backup}");
    assert!(in_backup < in_live && in_live >= total, "the live store went on: {in_backup} then {in_live} of {total}");
}

/// Where the filesystem allows it (`chattr`, as root on ext4), a ring file the server
/// cannot rewrite: the rotation fails without changing anything, says so in the audit
/// log, and succeeds once the file can be written again.
#[test]
fn a_rotation_that_cannot_save_the_ring_changes_nothing_and_is_audited_as_failed() {
    let sandbox = Sandbox::start();
    let keys_dir = sandbox.data_dir().join("dev-keys");
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(&keys_dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !chattr("+i") {
        eprintln!("SKIPPED a_rotation_that_cannot_save_the_ring...: chattr is not available here");
        return;
    }
    let (ok, stdout, stderr) = tio_as(&sandbox, "admin", &["keys", "rotate"]);
    let unlocked = chattr("-i");
    assert!(unlocked, "the test must leave the directory writable");
    assert!(!ok && stderr.contains("INTERNAL"), "{stdout}{stderr}");

    let runtime = runtime();
    runtime.block_on(async {
        let auditor = sandbox.client("auditor").await;
        let request = v1::QueryEntriesRequest {
            action: v1::AuditAction::Admin as i32,
            outcome: v1::AuditOutcome::Failed as i32,
            ..Default::default()
        };
        let entries = auditor.audit().query_entries(auditor.request(request)).await.unwrap().into_inner().entries;
        let details: Vec<&str> = entries.iter().map(|entry| entry.detail.as_str()).collect();
        assert_eq!(details, ["rotate_keys to version 2: the ring file was not saved"]);
    });

    // Nothing changed: the same rotation goes through once the file can be written.
    let (ok, stdout, stderr) = tio_as(&sandbox, "admin", &["keys", "rotate"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("version 2 is current"), "{stdout}");
}
