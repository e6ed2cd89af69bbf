//! The README as a new user pastes it (issue 12): every shell block, in order, in one
//! shell, in an empty directory, with `tio` on the `PATH` as the README says to put it,
//! against the development server the README starts. A block that cannot run here
//! carries a `<!-- readme-test: skip: REASON -->` line, and the reason is required.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::tio_binary;

/// The most the whole README may take (the demo is most of it).
const LIMIT: Duration = Duration::from_secs(600);

/// The README's port, replaced by a free one so that tests can run side by side.
const README_PORT: &str = "7443";

/// Returns the shell blocks to run and the number skipped, checking every skip's reason.
fn shell_blocks(readme: &str) -> (Vec<String>, usize) {
    let mut blocks = Vec::new();
    let mut skipped = 0;
    let mut lines = readme.lines().peekable();
    let mut skip_next = false;
    while let Some(line) = lines.next() {
        if let Some(reason) = line.strip_prefix("<!-- readme-test: skip:") {
            let reason = reason.trim_end_matches("-->").trim();
            assert!(!reason.is_empty(), "a readme-test skip without a reason: {line}");
            skip_next = true;
            continue;
        }
        if line.trim_end() != "```sh" {
            continue;
        }
        let mut block = String::new();
        for line in lines.by_ref() {
            if line.starts_with("```") {
                break;
            }
            block.push_str(line);
            block.push('\n');
        }
        if std::mem::take(&mut skip_next) {
            skipped += 1;
        } else {
            blocks.push(block);
        }
    }
    (blocks, skipped)
}

#[test]
fn every_shell_block_of_the_readme_works_as_pasted() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let (blocks, skipped) = shell_blocks(&readme);
    // Every `sh` block is either run or skipped with its reason: none is passed over.
    let written = readme.lines().filter(|line| line.trim_end() == "```sh").count();
    assert_eq!(blocks.len() + skipped, written, "the README has {written} shell blocks");
    assert!(blocks.len() >= 4, "{} blocks to run, {skipped} skipped", blocks.len());

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    // The harness around the blocks: stop the background server at the end.
    let mut script = String::from("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n");
    for block in &blocks {
        script.push_str(&block.replace(README_PORT, &port));
    }

    // `tio` on the PATH is the built binary, as the README's alias makes it, except that
    // `tio subscribe` (which waits for updates until Ctrl-C) is given fifteen seconds: it
    // says it is waiting as soon as it is connected, which a loaded machine may delay.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let real = tio_binary().display().to_string();
    std::fs::write(
        bin.join("tio"),
        format!(
            "#!/usr/bin/env bash\nif [ \"$1\" = subscribe ]; then timeout 15 '{real}' \"$@\" </dev/null || [ $? -eq 124 ]; \
             else exec '{real}' \"$@\"; fi\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("tio"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        // Its own process group, so that whatever it leaves running is stopped below.
        .process_group(0)
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout_pipe = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout_pipe.read_to_string(&mut text).unwrap();
        text
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr_pipe.read_to_string(&mut text).unwrap();
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Anything the script left running (a server whose job was not stopped) goes too,
    // and with it the pipes the readers wait on.
    let group = nix::unistd::Pid::from_raw(-i32::try_from(child.id()).unwrap());
    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    let (stdout, stderr) = (reader.join().unwrap(), errors.join().unwrap());
    assert!(status.success(), "the README's commands failed ({status}):\n{stdout}\n{stderr}");
    for expected in [
        "server: SERVING",
        "The story checked out",
        "\"update_id\"",
        "\"consent_id\"",
        "waiting for updates on subscription main",
        "exported ",
        "OK: the log extends the older checkpoint",
    ] {
        assert!(stdout.contains(expected) || stderr.contains(expected), "missing `{expected}`:\n{stdout}\n{stderr}");
    }
    // What the README leaves behind is what .gitignore names.
    for left in ["tio-dev", "audit-export", "checkpoint-today", "tio-audit.pub"] {
        assert!(work.join(left).exists(), "{left} was expected");
    }
    let gitignore = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.gitignore")).unwrap();
    for ignored in ["/tio-dev/", "/audit-export/", "/checkpoint-today", "/tio-audit.pub"] {
        assert!(gitignore.lines().any(|line| line == ignored), "{ignored} is not in .gitignore");
    }
}
