//! Durable commits of 1 KiB values through the real store (encryption, group commit,
//! the engine's sync) at 1, 8 and 64 concurrent writers.
//!
//!   cargo bench -p tio-store --bench durable_commit
//!
//! Environment: TIO_BENCH_SECONDS (default 5) per scenario, TIO_BENCH_DIR (default the
//! system temporary directory; it must be on a real disk, not tmpfs, or syncs are free),
//! TIO_BENCH_AUDIT=1 to commit an audit entry with every update, as the broker does
//! (TIO_BENCH_AUDIT_BYTES long, default 600; the audit log's hashing runs later, off the
//! commit path), TIO_BENCH_WRITERS=N to run only the scenario with N writers,
//! TIO_BENCH_ENGINE (log, the default, or sled) and TIO_BENCH_INDEX (fjall, the
//! default, or sled) for the engine. The disk's own floor, the group log alone, is
//! `cargo bench -p tio-kv --bench group_log`.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tio_core::{AgencyId, Category, NhsNumber, NhsNumberPolicy, Timestamp};
use tio_store::keys::KeyRing;
use tio_store::{Keyspace, NewUpdate, Op, Store};

const VALUE_BYTES: usize = 1024;

/// The allocator the `tio` binary uses, so that the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let seconds: u64 = std::env::var("TIO_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let base = std::env::var_os("TIO_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let audit = std::env::var("TIO_BENCH_AUDIT").is_ok_and(|value| value == "1");
    println!("audit entry with every commit: {audit}");
    let options = options();
    println!("engine: {}, index store: {}", options.engine, options.index_engine);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!(
        "durable commits of {VALUE_BYTES} B values, {seconds} s per scenario, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>8} {:>12} {:>10} {:>10} {:>10} {:>14} {:>12} {:>12} {:>14}",
        "writers",
        "commits/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "disk B/record",
        "commits/sync",
        "ms/sync",
        "CPU us/commit"
    );
    let only: Option<usize> = std::env::var("TIO_BENCH_WRITERS").ok().and_then(|s| s.parse().ok());
    for writers in [1usize, 8, 64].into_iter().filter(|writers| only.is_none_or(|only| only == *writers)) {
        let dir = tempfile::tempdir_in(&base).expect("bench directory");
        let result = runtime.block_on(run(dir.path(), writers, Duration::from_secs(seconds), audit));
        println!(
            "{writers:>8} {:>12.0} {:>10.3} {:>10.3} {:>10.3} {:>14.0} {:>12.1} {:>12.3} {:>14.1}",
            result.commits as f64 / result.elapsed.as_secs_f64(),
            result.percentile(0.50),
            result.percentile(0.99),
            result.percentile(1.0),
            result.disk_bytes as f64 / result.commits.max(1) as f64,
            result.commits as f64 / result.syncs.max(1) as f64,
            result.sync_micros as f64 / result.syncs.max(1) as f64 / 1000.0,
            result.cpu.as_secs_f64() * 1e6 / result.commits.max(1) as f64,
        );
    }
}

/// The store options the environment asks for.
fn options() -> tio_store::StoreOptions {
    let mut options = tio_store::StoreOptions::default();
    if let Ok(name) = std::env::var("TIO_BENCH_ENGINE") {
        options.engine = tio_store::EngineKind::from_name(&name).expect("TIO_BENCH_ENGINE: log or sled");
    }
    if let Ok(name) = std::env::var("TIO_BENCH_INDEX") {
        options.index_engine = tio_store::IndexEngine::from_name(&name).expect("TIO_BENCH_INDEX: fjall or sled");
    }
    options
}

struct Outcome {
    commits: u64,
    elapsed: Duration,
    /// CPU time of the whole process (sled's threads included) over the scenario: less
    /// disturbed than the rate by other work on a shared machine.
    cpu: Duration,
    latencies_micros: Vec<u64>,
    disk_bytes: u64,
    syncs: u64,
    sync_micros: u64,
}

impl Outcome {
    /// Returns the latency at quantile `q`, in milliseconds.
    fn percentile(&self, q: f64) -> f64 {
        if self.latencies_micros.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_micros.len() - 1) as f64 * q).round() as usize;
        self.latencies_micros[index] as f64 / 1000.0
    }
}

async fn run(dir: &std::path::Path, writers: usize, duration: Duration, audit: bool) -> Outcome {
    let audit_bytes: usize = std::env::var("TIO_BENCH_AUDIT_BYTES").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let store = Arc::new(Store::open(dir, &options(), KeyRing::generate().expect("keys")).expect("store"));
    let children: Arc<Vec<NhsNumber>> = Arc::new(
        (0..20_000u64)
            .filter_map(|n| {
                let nine = format!("{:09}", 999_200_000 + n * 13);
                (0..10).find_map(|d| NhsNumber::parse(&format!("{nine}{d}"), &NhsNumberPolicy::development()).ok())
            })
            .take(1000)
            .collect(),
    );
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let cpu_started = process_cpu_time();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (store, children) = (store.clone(), children.clone());
            tokio::spawn(async move {
                let publisher = AgencyId::parse("id", "hospital").expect("id");
                let value = vec![b'v'; VALUE_BYTES];
                let mut latencies = Vec::new();
                let mut seq = 0usize;
                while Instant::now() < deadline {
                    let key = format!("{writer}-{seq}");
                    let update = NewUpdate {
                        child: &children[(writer * 31 + seq) % children.len()],
                        category: Category::ALL[seq % Category::ALL.len()],
                        value: &value,
                        source_reference: "bench",
                        publisher: &publisher,
                        idempotency_key: &key,
                        committed_at: Timestamp::from_unix_seconds(1_800_000_000),
                        date_of_birth: None,
                    };
                    let began = Instant::now();
                    if audit {
                        let entry = Op::Append { space: Keyspace::Audit, value: vec![b'a'; audit_bytes] };
                        store.append_update_with(update, &[entry]).await.expect("append");
                    } else {
                        store.append_update(update).await.expect("append");
                    }
                    latencies.push(began.elapsed().as_micros() as u64);
                    seq += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies_micros = Vec::new();
    for task in tasks {
        latencies_micros.extend(task.await.expect("writer"));
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu_time().saturating_sub(cpu_started);
    latencies_micros.sort_unstable();
    let stats = store.commit_stats();
    println!(
        "    groups {} apply ms/group {:.3} sync ms/group {:.3} group period ms {:.3}",
        stats.groups,
        stats.apply_micros as f64 / stats.groups.max(1) as f64 / 1000.0,
        stats.sync_micros as f64 / stats.syncs.max(1) as f64 / 1000.0,
        elapsed.as_secs_f64() * 1000.0 / stats.groups.max(1) as f64
    );
    let disk_bytes = store.size_on_disk().expect("size");
    Outcome {
        commits: latencies_micros.len() as u64,
        elapsed,
        cpu,
        latencies_micros,
        disk_bytes,
        syncs: stats.syncs,
        sync_micros: stats.sync_micros,
    }
}

fn process_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(u64::try_from(time.tv_sec).unwrap_or(0), u32::try_from(time.tv_nsec).unwrap_or(0))
}
