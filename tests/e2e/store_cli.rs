//! The store's tools through the real binaries: `tio store check|backup|restore`,
//! `tio keys init|rotate|retire`, and `tio serve` refusing a damaged store.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Options, Pki, arg, run_tio, spawn_server, walk_files};

/// Fills `DATA_DIR/store` through the real store for about `millis`, then SIGKILLs the
/// writer; returns how many writes it acknowledged.
fn fill_store(data_dir: &Path, keys: &Path, millis: u64) -> usize {
    fill_store_on(data_dir, keys, millis, "log")
}

/// As [`fill_store`], on the engine named (`sled`: a store of the earlier format).
fn fill_store_on(data_dir: &Path, keys: &Path, millis: u64, engine: &str) -> usize {
    let mut writer = Command::new(env!("CARGO_BIN_EXE_tio-crash-writer"))
        .env("TIO_CRASH_WRITER_ENGINE", engine)
        .arg(data_dir.join("store"))
        .arg(keys)
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Writes for `millis` once the first is acknowledged: a loaded machine may take a
    // while to start the writer, which a fixed sleep from the spawn would not allow.
    let stdout = writer.stdout.take().unwrap();
    let (first, acked) = std::sync::mpsc::channel();
    let counter = std::thread::spawn(move || {
        let mut acks = 0;
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if line.starts_with("ack ") {
                acks += 1;
                if acks == 1 {
                    let _ = first.send(());
                }
            }
        }
        acks
    });
    let started = acked.recv_timeout(Duration::from_secs(60)).is_ok();
    if started {
        std::thread::sleep(Duration::from_millis(millis));
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    counter.join().unwrap()
}

/// Every file under `dir` with its contents, to prove that nothing changed.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    walk_files(dir, |_| false)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

#[test]
fn check_backup_restore_rotate_and_retire_through_the_cli() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let keys = root.path().join("tio.keys");
    let (status, stdout, stderr) =
        run_tio(&["keys", "init", "--keys-file", &arg(&keys), "--audit-origin", "tio.test/audit"], &[]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("mode 0600"));
    assert!(fill_store(&data, &keys, 400) > 0);

    let check = |data: &Path| run_tio(&["store", "check", "--data-dir", &arg(data), "--keys-file", &arg(&keys)], &[]);
    let (status, original_report, stderr) = check(&data);
    assert!(status.success(), "{original_report}{stderr}");
    assert!(original_report.contains("OK: every record decrypts"), "{original_report}");

    let backup = root.path().join("store.backup");
    let (status, stdout, stderr) =
        run_tio(&["store", "backup", "--data-dir", &arg(&data), "--out", &arg(&backup)], &[]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("ciphertext only"), "{stdout}");
    let restored = root.path().join("restored");
    let (status, _, stderr) = run_tio(&["store", "restore", "--in", &arg(&backup), "--data-dir", &arg(&restored)], &[]);
    assert!(status.success(), "{stderr}");
    let (status, restored_report, _) = check(&restored);
    assert!(status.success(), "{restored_report}");
    let counts = |report: &str| report.lines().find(|line| line.contains(" updates (")).map(str::to_owned);
    assert_eq!(counts(&restored_report), counts(&original_report), "the restore holds what was backed up");

    let (status, stdout, stderr) =
        run_tio(&["keys", "rotate", "--keys-file", &arg(&keys), "--data-dir", &arg(&data)], &[]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("version 2 is current"), "{stdout}");
    let retire = |version: &str| {
        run_tio(
            &["keys", "retire", "--keys-file", &arg(&keys), "--data-dir", &arg(&data), "--kek-version", version],
            &[],
        )
    };
    let (status, _, stderr) = retire("2");
    assert!(!status.success() && stderr.contains("is current"), "{stderr}");
    let (status, _, stderr) = retire("1");
    assert!(status.success(), "{stderr}");
    let (status, stdout, _) = check(&data);
    assert!(status.success(), "everything still reads after rotating and retiring:\n{stdout}");
}

#[test]
fn a_damaged_store_fails_the_check_unchanged_and_stops_the_server() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let keys = root.path().join("tio.keys");
    run_tio(&["keys", "init", "--keys-file", &arg(&keys), "--audit-origin", "tio.test/audit"], &[]);
    assert!(fill_store(&data, &keys, 400) > 0);
    // A run of bytes overwritten in the middle of what the group log holds.
    let segment = data.join("store").join("log").join("0000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let written = bytes.iter().rposition(|byte| *byte != 0).unwrap();
    let half = written / 2;
    bytes[half..half + 64].fill(0xa5);
    std::fs::write(&segment, bytes).unwrap();

    let before = snapshot(&data);
    let (status, stdout, stderr) =
        run_tio(&["store", "check", "--data-dir", &arg(&data), "--keys-file", &arg(&keys)], &[]);
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("DAMAGED"), "{stdout}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert!(snapshot(&data) == before, "the check changed the store it looked at");

    // The server refuses to start on it, and says how to recover.
    let pki = Pki::create(&root.path().join("pki"));
    let options =
        Options { args: vec!["--set".into(), format!("store.keys_file={}", arg(&keys))], ..Options::default() };
    let failure = spawn_server(root.path(), &pki.dir, &options).expect_err("a damaged store must stop start-up");
    assert!(failure.contains("cannot open the store"), "{failure}");
    assert!(failure.contains("tio store check --data-dir"), "{failure}");
    assert!(failure.contains("tio store restore"), "{failure}");
}

#[test]
fn a_store_in_an_older_format_is_left_alone_with_the_way_forward() {
    use tio_store::Engine;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let keys = root.path().join("tio.keys");
    run_tio(&["keys", "init", "--keys-file", &arg(&keys), "--audit-origin", "tio.test/audit"], &[]);
    assert!(fill_store_on(&data, &keys, 300, "sled") > 0);
    {
        // As a store written before logs were kept in runs.
        let engine = tio_store::engine::sled::SledEngine::open(&data.join("store")).unwrap();
        let mut batch = tio_store::Batch::new();
        batch.push(tio_store::Op::Put {
            space: tio_store::Keyspace::Meta,
            key: b"format".to_vec(),
            value: b"tio-store/1".to_vec(),
        });
        engine.apply(&batch).unwrap();
        engine.sync().unwrap();
    }
    // That release wrote no format file beside sled's.
    std::fs::remove_file(data.join("store").join(tio_store::engine::sled::FORMAT_FILE)).unwrap();
    let before = snapshot(&data);
    let (status, stdout, stderr) =
        run_tio(&["store", "check", "--data-dir", &arg(&data), "--keys-file", &arg(&keys)], &[]);
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("NOT CHECKED") && stdout.contains("tio store restore"), "{stdout}");
    assert!(stderr.contains("another format; nothing was changed"), "{stderr}");
    assert!(snapshot(&data) == before, "the check changed the store it looked at");

    let pki = Pki::create(&root.path().join("pki"));
    let options =
        Options { args: vec!["--set".into(), format!("store.keys_file={}", arg(&keys))], ..Options::default() };
    let failure = spawn_server(root.path(), &pki.dir, &options).expect_err("an older format must stop start-up");
    assert!(failure.contains("tio-store/1") && failure.contains("tio store restore"), "{failure}");
    assert!(!failure.contains("keep a copy"), "not the recovery steps for damage: {failure}");
    let after = snapshot(&data);
    let changed: Vec<_> = after.iter().filter(|entry| !before.contains(entry)).map(|(path, _)| path.clone()).collect();
    assert!(changed.is_empty(), "the refused start changed the store: {changed:?}");
}

#[test]
fn development_mode_creates_a_private_key_ring_and_store() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = crate::support::Sandbox::start();
    let data = sandbox.data_dir();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("dev-keys")), 0o700);
    assert_eq!(mode(&data.join("dev-keys").join("tio.keys")), 0o600);
    assert!(data.join("store").join("log").join("0000000000000000.seg").exists());
    assert_eq!(std::fs::read_to_string(data.join("store").join("format")).unwrap(), "tio-store/3\n");
    let ring = tio_store::keys::KeyRing::load_file(&data.join("dev-keys").join("tio.keys")).unwrap();
    let signer =
        tio_audit::note::Signer::from_private_key(ring.audit_signing_key().expect("an audit signing key")).unwrap();
    assert!(signer.verifier().to_string().starts_with("tio.dev.local/audit+"));
}

/// Issue 14: a store of the earlier format (tio-store/2, the sled engine) is refused by
/// this release's default engine with the way forward, and `tio store migrate` moves it
/// to the group log in place, keeping the old one beside it; everything reads after.
#[test]
fn a_store_of_the_earlier_format_migrates_to_the_group_log() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let keys = root.path().join("tio.keys");
    run_tio(&["keys", "init", "--keys-file", &arg(&keys), "--audit-origin", "tio.test/audit"], &[]);
    assert!(fill_store_on(&data, &keys, 400, "sled") > 0);
    let check_on = |engine: &str| {
        run_tio(&["store", "check", "--data-dir", &arg(&data), "--keys-file", &arg(&keys), "--engine", engine], &[])
    };
    let (status, before, _) = check_on("sled");
    assert!(status.success(), "{before}");
    let (status, stdout, stderr) = check_on("log");
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("NOT CHECKED") && stdout.contains("tio store migrate"), "{stdout}");

    let (status, stdout, stderr) = run_tio(&["store", "migrate", "--data-dir", &arg(&data)], &[]);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("now format tio-store/3"), "{stdout}");
    assert!(data.join("store.tio-store-2").is_dir(), "the old store is kept");
    let (status, after, _) = check_on("log");
    assert!(status.success(), "{after}");
    let counts = |report: &str| report.lines().find(|line| line.contains(" updates (")).map(str::to_owned);
    assert_eq!(counts(&after), counts(&before), "the migrated store holds what the old one did");
    let audit = |report: &str| report.lines().find(|line| line.starts_with("audit log:")).map(str::to_owned);
    assert_eq!(audit(&after), audit(&before));

    // A second migration finds the kept copy in the way and changes nothing.
    let (status, _, stderr) = run_tio(&["store", "migrate", "--data-dir", &arg(&data)], &[]);
    assert!(!status.success() && stderr.contains("already exists"), "{stderr}");
    let (status, again, _) = check_on("log");
    assert!(status.success(), "{again}");
}

/// Issue 14: the index store is derived from the group log, and `tio store reindex`
/// rebuilds it from the log, keeping the old one until the new one is complete; the
/// store then checks as it did. A store on the sled engine has no such index store.
#[test]
fn the_index_store_is_rebuilt_from_the_group_log() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let keys = root.path().join("tio.keys");
    run_tio(&["keys", "init", "--keys-file", &arg(&keys), "--audit-origin", "tio.test/audit"], &[]);
    assert!(fill_store(&data, &keys, 400) > 0);
    let check = || run_tio(&["store", "check", "--data-dir", &arg(&data), "--keys-file", &arg(&keys)], &[]);
    let (status, before, _) = check();
    assert!(status.success(), "{before}");
    let reindex = || run_tio(&["store", "reindex", "--data-dir", &arg(&data)], &[]);
    let (status, stdout, stderr) = reindex();
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("rebuilt the fjall index store"), "{stdout}");
    let index = data.join("store").join("index-fjall");
    assert!(index.is_dir() && !data.join("store").join("index-fjall.before-reindex").exists());
    let (status, after, _) = check();
    assert!(status.success(), "{after}");
    let summary = |report: &str| {
        report
            .lines()
            .filter(|line| line.contains(" updates (") || line.starts_with("audit log:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(summary(&after), summary(&before), "the rebuilt indexes say what the old ones said");

    // The other index store, built from the same log, checks the same.
    let (status, stdout, stderr) =
        run_tio(&["store", "reindex", "--data-dir", &arg(&data), "--index-engine", "sled"], &[]);
    assert!(status.success(), "{stdout}{stderr}");
    let (status, on_sled, _) = run_tio(
        &["store", "check", "--data-dir", &arg(&data), "--keys-file", &arg(&keys), "--index-engine", "sled"],
        &[],
    );
    assert!(status.success(), "{on_sled}");
    assert_eq!(summary(&on_sled), summary(&before));

    let (status, _, stderr) = run_tio(&["store", "reindex", "--data-dir", &arg(&data), "--engine", "sled"], &[]);
    assert!(!status.success() && stderr.contains("only the group log"), "{stderr}");
}
