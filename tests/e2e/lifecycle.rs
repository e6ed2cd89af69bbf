//! Starting and stopping: refusal of unsafe keys, draining on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{Options, Pki, Sandbox, spawn_server};

#[test]
fn a_world_readable_key_stops_start_up_with_the_fix() {
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::create(&root.path().join("pki"));
    let key = pki.dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let failure = spawn_server(root.path(), &pki.dir, &Options::default()).expect_err("start-up must fail");
    assert!(failure.contains("exited with exit status: 1"), "{failure}");
    assert!(failure.contains(&format!("chmod 600 {}", key.display())), "{failure}");
    assert!(failure.contains("readable by group or others"), "{failure}");
}

/// Opens a health watch, sends SIGTERM, and returns the status the watch reports next.
async fn watch_then_terminate(
    sandbox: &Sandbox,
) -> (tonic::Streaming<tonic_health::pb::HealthCheckResponse>, ServingStatus) {
    let client = sandbox.client("hospital").await;
    let mut watch = HealthClient::new(client.channel())
        .watch(client.request(HealthCheckRequest { service: String::new() }))
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.expect("first watch message").unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    sandbox.signal(Signal::SIGTERM);
    let next = tokio::time::timeout(Duration::from_secs(60), watch.next())
        .await
        .expect("the watch reports the change promptly")
        .expect("the watch is still open")
        .unwrap();
    (watch, next.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reports_not_serving_waits_for_an_open_stream_then_exits_0() {
    let mut sandbox = Sandbox::start_with(Options {
        args: vec!["--set".into(), "limits.drain_timeout_seconds=60".into()],
        ..Options::default()
    });
    let (watch, status) = watch_then_terminate(&sandbox).await;
    assert_eq!(status, ServingStatus::NotServing);
    // The open stream holds the server in its drain; closing it lets the server finish.
    drop(watch);
    let exit = tokio::task::block_in_place(|| sandbox.wait_exit(Duration::from_secs(30)));
    assert!(exit.success(), "exit status {exit}; log:\n{}", sandbox.log_text());
    let log = sandbox.log_text();
    assert!(log.contains("draining"), "{log}");
    assert!(!log.contains("drain deadline passed"), "the server should have finished before its deadline:\n{log}");

    // It signed an audit checkpoint on the way out, with the ring's key.
    let data = sandbox.data_dir();
    let ring = tio_store::keys::KeyRing::load_file(&data.join("dev-keys").join("tio.keys")).unwrap();
    let signer = tio_audit::note::Signer::from_private_key(ring.audit_signing_key().unwrap()).unwrap();
    let verifier = signer.verifier();
    let store = std::sync::Arc::new(tio_store::Store::open(&data.join("store"), &Default::default(), ring).unwrap());
    let audit = tio_audit_log::AuditLog::new(store, signer);
    let note = audit.latest_checkpoint().unwrap().expect("a checkpoint signed at shutdown");
    let checkpoint = tio_audit::checkpoint::Checkpoint::open(&note, &verifier).unwrap();
    assert_eq!(checkpoint.origin, "tio.dev.local/audit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_a_stream_still_open_at_the_drain_deadline_and_exits_0() {
    let mut sandbox = Sandbox::start_with(Options {
        args: vec!["--set".into(), "limits.drain_timeout_seconds=1".into()],
        ..Options::default()
    });
    let (_watch, status) = watch_then_terminate(&sandbox).await;
    assert_eq!(status, ServingStatus::NotServing);
    let exit = tokio::task::block_in_place(|| sandbox.wait_exit(Duration::from_secs(30)));
    assert!(exit.success(), "exit status {exit}; log:\n{}", sandbox.log_text());
    assert!(sandbox.log_text().contains("drain deadline passed"), "{}", sandbox.log_text());
}

/// A second server asked to listen where the first does stops at once, saying which
/// address is taken, and leaves the first serving (its store, checkpoint task and
/// registry are set up before the listener, and are put away again in order).
#[test]
fn a_taken_address_stops_start_up_and_names_the_address() {
    let sandbox = Sandbox::start();
    let port = sandbox.settings("hospital").server.rsplit(':').next().unwrap().to_owned();
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::create(&root.path().join("pki"));
    let options = Options { args: vec!["--set".into(), format!("listen=127.0.0.1:{port}")], ..Options::default() };
    let failure = spawn_server(root.path(), &pki.dir, &options).expect_err("start-up must fail");
    assert!(failure.contains("exited with exit status: 1"), "{failure}");
    assert!(failure.contains(&format!("cannot listen on 127.0.0.1:{port} (listen)")), "{failure}");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = sandbox.client("hospital").await;
        assert_eq!(client.health("").await.unwrap(), ServingStatus::Serving, "the first server is untouched");
    });
}
