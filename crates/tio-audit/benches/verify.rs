//! Offline verification speed: `tio audit verify` over an export of N entries, on one
//! core (parse each line, recompute its leaf from canonical JSON, check its recorded
//! hash, extend the tree, check the signed checkpoint).
//!
//!   cargo bench -p tio-audit --bench verify
//!
//! TIO_BENCH_ENTRIES sets N (default 1,000,000).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use tio_audit::checkpoint::Checkpoint;
use tio_audit::entry::{Actor, AuditEntry};
use tio_audit::export::{ExportLine, verify_export};
use tio_audit::merkle::Frontier;
use tio_audit::note::Signer;

fn main() {
    let entries: u64 = std::env::var("TIO_BENCH_ENTRIES").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let signer = Signer::generate("bench.example/audit").expect("key");
    let mut frontier = Frontier::new();
    let mut text = String::new();
    for index in 0..entries {
        let entry = AuditEntry {
            leaf_index: index,
            time_micros: 1_800_000_000_000_000 + index as i64,
            actor: Actor {
                id: "hospital".into(),
                role: "agency".into(),
                certificate_fingerprint: format!("{:064x}", index),
                professional_id: "staff-0042".into(),
            },
            action: "delivery".into(),
            outcome: "allowed".into(),
            reason: String::new(),
            child_index: format!("{:064x}", index % 5000),
            child_sealed: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4".into(),
            categories: vec!["communication_needs".into(), "health_summary".into()],
            request_id: format!("req-{index}"),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            consent_id: "consent-7".into(),
            consent_revision: 2,
            relationship_id: "rel-3".into(),
            update_id: format!("{index:032x}"),
            recipient_agency_id: "school".into(),
            ..AuditEntry::default()
        };
        frontier.append(entry.leaf_hash());
        text.push_str(&ExportLine::new(entry).to_json());
        text.push('\n');
    }
    let checkpoint = Checkpoint { origin: "bench.example/audit".into(), size: entries, root: frontier.root() }
        .sign(&signer)
        .expect("sign");
    let started = Instant::now();
    let verified = verify_export(text.as_bytes(), &checkpoint, &signer.verifier(), None).expect("verifies");
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "verified {} entries ({:.0} MB, {:.0} B/entry) in {seconds:.2} s on one thread: {:.0} entries/s",
        verified.entries,
        text.len() as f64 / 1e6,
        text.len() as f64 / entries as f64,
        entries as f64 / seconds
    );
}
