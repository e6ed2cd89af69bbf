//! A full disk under a running server: publishes are refused with RESOURCE_EXHAUSTED
//! and nothing half-written; so are reads, because no read is answered without its
//! audit entry; the server stays up, and once space is freed both succeed again without
//! a restart.

use std::time::{Duration, Instant};

use tio_proto::v1;
use tonic::Code;

use crate::support::Sandbox;
use crate::support::records::{AMY, as_professional, child, communication_needs, publish, publish_request, runtime};

/// Writes `path` until the filesystem has no room left (bounded by the tmpfs's size).
fn fill_what_is_free(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    // The filesystem is 24 MiB: far fewer chunks than this fill it.
    for _ in 0..1024 {
        if file.write_all(&chunk).and_then(|()| file.sync_data()).is_err() {
            return;
        }
    }
    panic!("the filesystem never filled");
}

#[test]
fn a_full_disk_refuses_writes_and_reads_keeps_the_server_up_and_recovers_once_space_is_freed() {
    let Some(mut sandbox) = Sandbox::start_on_small_filesystem(24) else {
        eprintln!("SKIPPED a_full_disk_refuses_writes...: cannot mount a tmpfs here");
        return;
    };
    let runtime = runtime();
    let hospital = runtime.block_on(as_professional(&sandbox, "hospital"));
    let text = "Uses Makaton and a few spoken words; ".repeat(28);
    let publish_as = |key: String| {
        let request = publish_request(
            AMY,
            v1::Category::CommunicationNeeds,
            communication_needs(&format!("{key}: {text}")),
            &key,
        );
        runtime.block_on(publish(&hospital, request))
    };

    let deadline = Instant::now() + Duration::from_secs(180);
    let mut acknowledged = 0u64;
    let refusal = loop {
        assert!(acknowledged < 200_000 && Instant::now() < deadline, "the filesystem never filled");
        match publish_as(format!("fill-{acknowledged}")) {
            Ok(_) => acknowledged += 1,
            Err(status) => break status,
        }
    };
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert_eq!(refusal.message(), "the broker's store is out of space; nothing was written");
    assert!(acknowledged > 100, "only {acknowledged} publishes before the disk filled");

    // Still full: refused again the same way. A read is answered only while its audit
    // entry, smaller than a publish, still fits in the log's last segment; once it does
    // not, the read is refused rather than answered unaudited.
    // The index store's own compactions may free space meanwhile; what is free now is
    // taken, so that the disk is still full when the next publish comes.
    fill_what_is_free(&sandbox.data_dir().join("ballast"));
    let again = publish_as("while-full".to_owned()).unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted, "{again:?}");
    let read = || {
        let request = v1::GetProfileRequest { child: child(AMY), categories: Vec::new() };
        runtime.block_on(hospital.records().get_profile(hospital.request(request)))
    };
    let mut answered = 0;
    let status = loop {
        match read() {
            Ok(_) => answered += 1,
            Err(status) => break status,
        }
        assert!(answered < 20_000, "reads were answered without end on a full disk");
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "a read is not answered unaudited: {status:?}");
    assert!(sandbox.is_running(), "the server must survive a full disk:\n{}", sandbox.log_text());

    // Space returns: the next publish succeeds, without a restart.
    sandbox.resize_filesystem(256);
    let recovered = publish_as("after-space-returned".to_owned());
    assert!(recovered.is_ok(), "{recovered:?}\n{}", sandbox.log_text());
    let read = v1::GetProfileRequest { child: child(AMY), categories: Vec::new() };
    let answered = runtime.block_on(hospital.records().get_profile(hospital.request(read)));
    assert!(answered.is_ok(), "reads are answered again: {answered:?}");
    assert!(sandbox.is_running());
    let log = sandbox.log_text();
    assert!(log.contains("accepts writes again"), "{log}");
}
