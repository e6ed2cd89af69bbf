//! The Python example client (`examples/python/`), as an integration team would run
//! it: its own grpcio, stubs generated from `proto/`, against a real server over
//! mutual TLS. It checks its own outcomes and exits 1 if any differs.

use std::path::Path;
use std::process::Command;

use crate::support::{Sandbox, arg};

#[test]
fn the_python_example_publishes_reads_and_subscribes_with_acks_and_a_reconnect() {
    let python = Command::new("python3").arg("-c").arg("import venv, ensurepip").output();
    assert!(
        python.is_ok_and(|output| output.status.success()),
        "the Python example needs python3 with venv: apt-get install python3 python3-venv (.ci/run does it)"
    );
    let sandbox = Sandbox::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/run.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args(["--server", &format!("localhost:{}", sandbox.address.port()), "--pki", &arg(&sandbox.pki.dir)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python example failed:\n{stdout}\n{stderr}");
    for expected in [
        "ok: a bad NHS number is refused: INVALID_ARGUMENT, field ['child.nhs_number']",
        "ok: the school's profile shows ['Makaton signs']",
        "ok: delivery 1 again after reconnecting",
        "ok: delivery 2 live",
        "The Python example checked out.",
    ] {
        assert!(stdout.contains(expected), "missing `{expected}` in:\n{stdout}");
    }
}
