//! Writes updates, each with its audit entry in the same commit, through the real
//! store as fast as it can and prints one line per acknowledged write (`ack <cycle> <writer> <seq> <position-hex> <update-id>`), until
//! it is killed. Used by the crash tests; not a tool for people.
//!
//! Usage: tio-crash-writer DATA_DIR KEYS_FILE CYCLE; the engine is the default one, or
//! the one named by TIO_CRASH_WRITER_ENGINE (`sled`, to make a store of the earlier format).

// This program reports on stdout by design.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use tio_core::{AgencyId, Category, NhsNumber, NhsNumberPolicy, Timestamp};
use tio_store::keys::KeyRing;
use tio_store::{NewUpdate, Store};

const WRITERS: usize = 8;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, keys, cycle] = args.as_slice() else {
        eprintln!("usage: tio-crash-writer DATA_DIR KEYS_FILE CYCLE");
        return std::process::ExitCode::from(2);
    };
    let keys = KeyRing::load_file(&PathBuf::from(keys)).expect("key ring loads");
    let mut options = tio_store::StoreOptions::default();
    if let Ok(name) = std::env::var("TIO_CRASH_WRITER_ENGINE") {
        options.engine = tio_store::EngineKind::from_name(&name).expect("a known engine");
    }
    let store = Arc::new(Store::open(&PathBuf::from(dir), &options, keys).expect("store opens"));
    let children: Arc<Vec<NhsNumber>> = Arc::new(
        (0..2000u64)
            .filter_map(|n| {
                NhsNumber::parse(&with_check_digit(999_100_000 + n * 7), &NhsNumberPolicy::development()).ok()
            })
            .take(50)
            .collect(),
    );
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let cycle = cycle.clone();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, children, stdout, cycle) = (store.clone(), children.clone(), stdout.clone(), cycle.clone());
            tokio::spawn(async move {
                let publisher = AgencyId::parse("id", "hospital").expect("valid id");
                for seq in 0u64.. {
                    let child = &children[(writer * 7 + seq as usize) % children.len()];
                    let key = format!("{cycle}-{writer}-{seq}");
                    let value = format!("value {key} {}", "x".repeat(900));
                    let update = NewUpdate {
                        child,
                        category: Category::ALL[seq as usize % Category::ALL.len()],
                        value: value.as_bytes(),
                        source_reference: &key,
                        publisher: &publisher,
                        idempotency_key: &key,
                        committed_at: Timestamp::from_unix_seconds(1_800_000_000),
                        date_of_birth: None,
                    };
                    // The publish and its audit entry, naming the update as the broker's
                    // does, commit together or not at all.
                    let entry = tio_audit::entry::AuditEntry {
                        action: "publish".to_owned(),
                        outcome: "allowed".to_owned(),
                        request_id: key.clone(),
                        ..Default::default()
                    };
                    let appended = store
                        .append_update_and(update, |update_id| {
                            let named =
                                tio_audit::entry::AuditEntry { update_id: update_id.to_string(), ..entry.clone() };
                            let mut extra = tio_store::Extra::default();
                            extra.ops.push(tio_audit_log::entry_op(&named));
                            extra
                        })
                        .await
                        .expect("append succeeds");
                    let position: String = appended.position.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
                    let mut out = stdout.lock().expect("stdout lock");
                    // One write per line, so that a kill never leaves a line that looks whole.
                    let line = format!("ack {cycle} {writer} {seq} {position} {}\n", appended.update_id);
                    out.write_all(line.as_bytes()).expect("stdout write");
                    out.flush().expect("stdout flush");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    std::process::ExitCode::SUCCESS
}

/// Appends the NHS check digit to a nine-digit prefix (or an invalid one, filtered out).
fn with_check_digit(prefix: u64) -> String {
    let nine = format!("{prefix:09}");
    let sum: u32 = nine.bytes().zip((2..=10).rev()).map(|(b, w)| u32::from(b - b'0') * w).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        value => value,
    };
    format!("{nine}{check}")
}
