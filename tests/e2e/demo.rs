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
        "OK: ",
        "The story checked out",
    ] {
        assert!(stdout.contains(expected), "missing `{expected}` in:\n{stdout}");
    }
    // No full NHS number in the server's log, and the kept data directory holds the store.
    let log = std::fs::read_to_string(data.join("demo-server.log")).unwrap();
    assert!(!log.contains("9990079196") && !log.contains("999 007 9196"), "an NHS number reached the log");
    assert!(data.join("store").is_dir());
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
