//! `tio demo`, the README's first command: the whole story against its own server,
//! every outcome checked by the demo itself; here, that it ran to the end.

use crate::support::{arg, run_tio};

#[test]
fn the_demo_tells_the_whole_story_and_every_outcome_checks_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let (status, stdout, stderr) = run_tio(&["demo", "--data-dir", &arg(&data)], &[]);
    assert!(status.success(), "the demo failed:\n{stdout}\n{stderr}");
    for expected in [
        "NHS number 999 007 9196",
        "ok: the school sees: communication needs, health summary",
        "ok: the SEND team received delivery 1",
        "ok: it is shown nothing",
        "the school received nothing and now sees communication needs only",
        "refused: the agency is not involved in the child's care",
        "recorded on the family's instruction",
        "ok: the hospital sees the child-protection flag, without consent",
        "ok: the social worker's alert: the hospital (dr-okafor) read Amelia's flag",
        "OK: ",
        "The story checked out",
    ] {
        assert!(stdout.contains(expected), "missing `{expected}` in:\n{stdout}");
    }
    // Issue 12: the export is kept with the data directory, and the command printed to
    // verify it again works as printed.
    let again = stdout.lines().find_map(|line| line.trim().strip_prefix("kept; verify it again with: tio ")).unwrap();
    let args: Vec<&str> = again.split(' ').collect();
    let (status, verified, stderr) = run_tio(&args, &[]);
    assert!(status.success() && verified.contains("OK"), "{verified}{stderr}");
    assert!(stdout.contains("the log's public key has fingerprint sha256:"), "{stdout}");
    // No full NHS number in the server's log, and the kept data directory holds the store.
    let log = std::fs::read_to_string(data.join("demo-server.log")).unwrap();
    assert!(!log.contains("9990079196") && !log.contains("999 007 9196"), "an NHS number reached the log");
    assert!(data.join("store").is_dir());
}

/// Issue 12: the demo printed, as it exited, paths of a temporary directory that it
/// had just removed.
#[test]
fn the_demo_without_a_data_directory_prints_no_path_that_is_gone() {
    let (status, stdout, stderr) = run_tio(&["demo"], &[]);
    assert!(status.success(), "the demo failed:\n{stdout}\n{stderr}");
    let temporary = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Starting a development server (data in "))
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .to_owned();
    assert!(!std::path::Path::new(&temporary).exists(), "{temporary} is left behind");
    let after_start = stdout.split_once("Starting a development server").unwrap().1;
    let after_start = after_start.split_once('\n').unwrap().1;
    assert!(!after_start.contains(&temporary), "a removed path is printed:\n{stdout}");
    assert!(stdout.contains("`tio demo --data-dir DIR` keeps them"), "{stdout}");
}

#[test]
fn the_demo_tells_the_story_again_on_a_server_that_has_told_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let (status, stdout, stderr) = run_tio(&["demo", "--data-dir", &arg(&data)], &[]);
    assert!(status.success(), "the first run failed:\n{stdout}\n{stderr}");
    assert!(!stdout.contains("told the story before"), "a fresh server has nothing to clear:\n{stdout}");
    // The same store again: the first run's subscriptions were deleted as it ended, and
    // the consents it left active are withdrawn before the story starts again.
    let (status, stdout, stderr) = run_tio(&["demo", "--data-dir", &arg(&data)], &[]);
    assert!(status.success(), "the second run failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("deleted 0 subscriptions and withdrew 2 consents"), "{stdout}");
    assert!(stdout.contains("The story checked out"), "{stdout}");
}
