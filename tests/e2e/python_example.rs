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
    // The README's own subscription, made first: the example must not wait for ever for
    // updates that this one takes (one copy per agency, to the name that sorts first).
    crate::support::records::runtime().block_on(async {
        let school = crate::support::records::as_professional(&sandbox, "school").await;
        let request = tio_proto::v1::CreateSubscriptionRequest {
            name: "main".into(),
            categories: vec![tio_proto::v1::Category::CommunicationNeeds as i32],
            start: None,
            max_in_flight: 0,
        };
        school.subscriptions().create_subscription(school.request(request)).await.unwrap();
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/run.sh");
    // Bounded: the example fails a wait of its own after 30 s; this is the backstop.
    let output = Command::new("timeout")
        .args(["300", "bash"])
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
