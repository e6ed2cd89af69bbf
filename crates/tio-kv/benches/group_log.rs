//! The floor under the store's commit path: the group log alone, appending groups of
//! records and syncing once per group, on one thread, with nothing else to do.
//!
//!   cargo bench -p tio-kv --bench group_log
//!
//! Environment: TIO_BENCH_SECONDS (default 5) per group size, TIO_BENCH_DIR (default the
//! system temporary directory; it must be on a real disk, not tmpfs, or syncs are free).
//! Records are 1,600 bytes, about what one publish writes (its sealed record, index
//! entries and audit entry).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tio_kv::group_log::fs::DiskDir;
use tio_kv::group_log::{GroupLog, LogOptions};

const RECORD_BYTES: usize = 1600;

fn main() {
    let seconds: u64 = std::env::var("TIO_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let base = std::env::var_os("TIO_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    println!("the group log alone: {RECORD_BYTES} B records, one fdatasync per group, {seconds} s per group size");
    println!(
        "{:>8} {:>12} {:>12} {:>10} {:>10} {:>14}",
        "records", "groups/s", "records/s", "p50 ms", "p99 ms", "CPU us/record"
    );
    for records in [1usize, 8, 32, 64] {
        let dir = tempfile::tempdir_in(&base).expect("bench directory");
        let disk = Arc::new(DiskDir::open(dir.path().join("log")).expect("log directory"));
        let (mut log, _) = GroupLog::open(disk, LogOptions::default(), 0, |_| {}).expect("log");
        let record = vec![0x5a_u8; RECORD_BYTES];
        let group: Vec<&[u8]> = (0..records).map(|_| record.as_slice()).collect();
        let mut latencies = Vec::new();
        let cpu_started = cpu_time();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(seconds) {
            let began = Instant::now();
            log.append(&group).expect("append");
            latencies.push(began.elapsed().as_micros() as u64);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_time().saturating_sub(cpu_started);
        latencies.sort_unstable();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        let groups = latencies.len() as f64;
        println!(
            "{records:>8} {:>12.0} {:>12.0} {:>10.3} {:>10.3} {:>14.1}",
            groups / elapsed,
            groups * records as f64 / elapsed,
            at(0.5),
            at(0.99),
            cpu.as_secs_f64() * 1e6 / (groups * records as f64),
        );
    }
}

/// This process's CPU time.
fn cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(u64::try_from(time.tv_sec).unwrap_or(0), u32::try_from(time.tv_nsec).unwrap_or(0))
}
