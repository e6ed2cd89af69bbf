//! What a new user meets at the command line (issue 12): keys made when left out,
//! errors that name the flag and point into what was typed, a status said once and
//! plainly, a waiting subscriber that says so, and an auditor who needs no key ring.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Sandbox, arg, run_tio, tio_as, tio_binary};

const CHILD: &str = "9990079196";

/// Runs `tio publish` of `value` (written to a file) as `name`, with `extra` flags.
fn publish(sandbox: &Sandbox, name: &str, category: &str, value: &str, extra: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("value.json");
    std::fs::write(&file, value).unwrap();
    let file = arg(&file);
    let mut args = vec!["publish", "--nhs-number", CHILD, "--category", category, "--value", &file];
    args.extend_from_slice(extra);
    tio_as(sandbox, name, &args)
}

#[test]
fn publishing_from_the_command_line_needs_no_key_and_names_what_is_wrong() {
    let sandbox = Sandbox::start();
    let needs = r#"{"how_i_communicate": "Makaton"}"#;

    // No key: one is made, printed on stderr, and the publish goes through.
    let (ok, stdout, stderr) = publish(&sandbox, "hospital", "communication_needs", needs, &["--professional", "dr-1"]);
    assert!(ok, "{stderr}");
    assert!(stderr.starts_with("idempotency key: "), "{stderr}");
    let key = stderr.split_whitespace().nth(2).unwrap();
    assert_eq!(key.len(), 36, "a UUID: {key}");
    assert!(stdout.contains("update_id"), "{stdout}");
    // Retrying with the printed key is a duplicate, not a second update.
    let (ok, stdout, stderr) = publish(
        &sandbox,
        "hospital",
        "communication_needs",
        needs,
        &["--professional", "dr-1", "--idempotency-key", key],
    );
    assert!(ok && stdout.contains("\"duplicate\":true"), "{stdout}{stderr}");
    // An empty key is the CLI's to refuse, naming the flag.
    let (ok, _, stderr) = publish(
        &sandbox,
        "hospital",
        "communication_needs",
        needs,
        &["--professional", "dr-1", "--idempotency-key", ""],
    );
    assert!(!ok && stderr.contains("--idempotency-key is empty"), "{stderr}");

    // No professional: named as the flag, before any call.
    let (ok, _, stderr) = publish(&sandbox, "hospital", "communication_needs", needs, &[]);
    assert!(!ok && stderr.contains("--professional is required"), "{stderr}");
    assert!(!stderr.contains("x-tio-professional"), "{stderr}");

    // A JSON error points into what was typed: the misspelt key is at line 1, column 2.
    let (ok, _, stderr) = publish(
        &sandbox,
        "hospital",
        "communication_needs",
        r#"{"how_i_communicates": "Makaton"}"#,
        &["--professional", "dr-1"],
    );
    assert!(!ok && stderr.contains("how_i_communicates") && stderr.contains("line 1 column 2"), "{stderr}");
    let (ok, _, stderr) = publish(&sandbox, "hospital", "communication_needs", "", &["--professional", "dr-1"]);
    assert!(!ok && stderr.contains("line 1 column 0"), "{stderr}");

    // A refusal is said once and plainly: the canonical code, the message, no raw form.
    let (ok, _, stderr) =
        publish(&sandbox, "school", "health_summary", r#"{"conditions": []}"#, &["--professional", "senco-1"]);
    assert!(!ok, "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some(
            "tio: INVALID_ARGUMENT: invalid request: value.health_summary: is empty: a value must set at least one \
             field (it replaces the whole category)"
        )
    );
    let (ok, _, stderr) = publish(
        &sandbox,
        "school",
        "health_summary",
        r#"{"conditions": [{"description": "Asthma"}]}"#,
        &["--professional", "senco-1"],
    );
    assert!(!ok, "{stderr}");
    assert_eq!(
        stderr.lines().filter(|line| !line.starts_with("idempotency key")).collect::<Vec<_>>(),
        ["tio: PERMISSION_DENIED: this agency may not publish health_summary: not_permitted_for_category"]
    );
    assert!(!stderr.contains("code:") && !stderr.contains("message:"), "{stderr}");

    // Declaring again says so, on stderr, and returns the active relationship.
    let declare =
        ["relationship", "declare", "--nhs-number", CHILD, "--kind", "enrolment", "--professional", "senco-1"];
    let (ok, first, stderr) = tio_as(&sandbox, "school", &declare);
    assert!(ok && !stderr.contains("already declared"), "{stderr}");
    let (ok, again, stderr) = tio_as(&sandbox, "school", &declare);
    assert!(ok && stderr.starts_with("already declared: "), "{stderr}");
    let id = |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap()["relationship_id"].clone();
    assert_eq!(id(&first), id(&again));

    // A misspelt certificate name lists the names there are.
    let server = format!("https://localhost:{}", sandbox.address.port());
    let pki = arg(&sandbox.pki.dir);
    let (status, _, stderr) =
        run_tio(&["profile", "--nhs-number", CHILD, "--server", &server, "--dev-pki", &pki, "--as", "hosptial"], &[]);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("no certificate for `hosptial`") && stderr.contains("hospital, "), "{stderr}");
}

#[test]
fn a_new_subscriber_is_told_it_is_waiting_and_how_to_stop() {
    let sandbox = Sandbox::start();
    let server = format!("https://localhost:{}", sandbox.address.port());
    let pki = arg(&sandbox.pki.dir);
    let mut child = Command::new(tio_binary())
        .args(["subscribe", "--name", "main", "--create", "--categories", "communication_needs"])
        .args(["--server", &server, "--dev-pki", &pki, "--as", "school", "--professional", "senco-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = receiver.recv_timeout(Duration::from_millis(200)) else { continue };
        let waiting = line.contains("waiting for updates on subscription main") && line.contains("Ctrl-C");
        seen.push(line);
        if waiting {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(seen.first().map(String::as_str), Some("created subscription main"), "{seen:?}");
    assert!(seen.iter().any(|line| line.contains("press Ctrl-C to stop")), "{seen:?}");
}

#[test]
fn an_auditor_fetches_the_log_key_from_the_server_and_verifies_an_export_with_it() {
    let sandbox = Sandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    let (ok, stdout, stderr) = tio_as(&sandbox, "auditor", &["audit", "export", "--out", &arg(&export)]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("verify with: tio audit public-key --server"), "{stdout}");
    let (ok, key, stderr) = tio_as(&sandbox, "auditor", &["audit", "public-key"]);
    assert!(ok, "{stderr}");
    let fingerprint = stderr.split_whitespace().nth(1).unwrap();
    assert!(fingerprint.starts_with("sha256:") && fingerprint.len() == 7 + 64, "{stderr}");
    let verifier = tio_audit::note::Verifier::parse(&key).unwrap();
    assert_eq!(format!("sha256:{}", verifier.fingerprint()), fingerprint);
    let key_file = dir.path().join("tio-audit.pub");
    std::fs::write(&key_file, &key).unwrap();
    let (status, stdout, stderr) = run_tio(&["audit", "verify", &arg(&export), "--public-key", &arg(&key_file)], &[]);
    assert!(status.success() && stdout.contains("OK"), "{stdout}{stderr}");
    // An agency may not fetch it (the audit service is for admins and auditors).
    let (ok, _, stderr) = tio_as(&sandbox, "school", &["audit", "public-key"]);
    assert!(!ok && stderr.contains("PERMISSION_DENIED"), "{stderr}");
}

#[test]
fn serve_without_configuration_says_no_file_was_given_and_suggests_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = run_tio(&["serve", "--data-dir", &arg(dir.path())], &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no configuration file was given"), "{stderr}");
    assert!(stderr.contains("tio serve --dev"), "{stderr}");
    assert!(!stderr.contains("from the configuration file"), "{stderr}");
}

#[test]
fn a_certificate_from_another_ca_is_explained_for_the_side_that_refused_it() {
    let sandbox = Sandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other");
    let (status, _, stderr) = run_tio(&["dev-pki", "--out", &arg(&other)], &[]);
    assert!(status.success(), "{stderr}");
    let server = format!("https://localhost:{}", sandbox.address.port());
    let ours = |name: &str| arg(&sandbox.pki.dir.join(name));
    let theirs = |name: &str| arg(&other.join(name));

    // The client does not trust the broker's certificate.
    let (status, _, stderr) = run_tio(
        &[
            "health",
            "--server",
            &server,
            "--ca",
            &theirs("ca.crt"),
            "--cert",
            &ours("hospital.crt"),
            "--key",
            &ours("hospital.key"),
        ],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("the broker's certificate was refused by this client"), "{stderr}");
    assert!(stderr.contains("--ca"), "{stderr}");

    // The broker does not trust the client's certificate.
    let (status, _, stderr) = run_tio(
        &[
            "health",
            "--server",
            &server,
            "--ca",
            &ours("ca.crt"),
            "--cert",
            &theirs("hospital.crt"),
            "--key",
            &theirs("hospital.key"),
        ],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("the broker most likely refused this client's certificate"), "{stderr}");
    assert!(stderr.contains("--cert and --key"), "{stderr}");
}

/// Issue 12: the development server's hint assumed `tio` on the PATH.
#[test]
fn the_development_server_s_hint_works_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(tio_binary())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir", &arg(&dir.path().join("data"))])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Reads to the end: a server whose stdout is closed cannot print.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(hint) = line.strip_prefix("tio: try: ") {
                let _ = sender.send(hint.to_owned());
            }
        }
    });
    let hint = receiver.recv_timeout(Duration::from_secs(60)).expect("a hint in time");
    let words: Vec<&str> = hint.split(' ').collect();
    // The test's PATH has no `tio`, so the hint must name the binary by its path.
    assert_eq!(Path::new(words[0]).canonicalize().unwrap(), tio_binary().canonicalize().unwrap(), "{hint}");
    let output = Command::new(words[0]).args(&words[1..]).current_dir(dir.path()).output().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(output.status.success(), "{hint}: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "server: SERVING");
}
