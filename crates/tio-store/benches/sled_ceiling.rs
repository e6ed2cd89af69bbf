//! What sled alone allows: the writes of one stored update, on one thread, with no
//! encryption, no sync and no other work, in the two layouts the engine has had.
//!
//!   cargo bench -p tio-store --bench sled_ceiling
//!
//! A publish writes its record and three index entries (per child, latest value,
//! idempotency key) under blind-index keys, after checking inside the commit that its
//! idempotency key is new. The store's durable commit rate at 64
//! writers cannot exceed these figures, whatever the group commit does, because one
//! thread applies every group. Environment: TIO_BENCH_COMMITS (default 100000),
//! TIO_BENCH_DIR (default the system temporary directory).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use sha2::{Digest, Sha256};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

/// The allocator the `tio` binary uses, so that the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Commits per group, as the durable commit bench sees at 64 writers.
const GROUP: u64 = 32;

/// A sealed 1 KiB value with its record header.
const RECORD_BYTES: usize = 1024 + 120;

fn main() {
    let commits: u64 = std::env::var("TIO_BENCH_COMMITS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let base = std::env::var_os("TIO_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let commits = commits - commits % GROUP;
    println!("{commits} commits of a {RECORD_BYTES} B record and 3 index entries, one thread, no sync, no encryption");
    println!("{:<44} {:>12} {:>12}", "layout", "commits/s", "us/commit");
    let record = vec![0x5a; RECORD_BYTES];
    for layout in Layout::ALL {
        let dir = tempfile::tempdir_in(&base).expect("bench directory");
        let db = sled::Config::new()
            .path(dir.path())
            .segment_size(8 * 1024 * 1024)
            .cache_capacity(256 * 1024 * 1024)
            .open()
            .expect("sled opens");
        let trees: Vec<sled::Tree> =
            ["log", "by_child", "latest", "idempotency"].iter().map(|name| db.open_tree(name).expect("tree")).collect();
        let started = Instant::now();
        for group in 0..commits / GROUP {
            let first = group * GROUP;
            match layout {
                Layout::RecordPerInsert => {
                    for n in first..first + GROUP {
                        trees[0].insert(n.to_be_bytes(), record.as_slice()).expect("insert");
                        for (tree, key) in trees[1..].iter().zip(index_keys(n)) {
                            tree.insert(key, &n.to_be_bytes()).expect("insert");
                        }
                    }
                }
                Layout::RecordPerInsertInTransaction
                | Layout::RunPerGroupInTransaction
                | Layout::RunPerGroupWithPrecondition => {
                    let runs = !matches!(layout, Layout::RecordPerInsertInTransaction);
                    let precondition = matches!(layout, Layout::RunPerGroupWithPrecondition);
                    trees
                        .as_slice()
                        .transaction(|views| {
                            let mut run = Vec::new();
                            for n in first..first + GROUP {
                                if runs {
                                    run.extend_from_slice(&record);
                                } else {
                                    views[0].insert(&n.to_be_bytes(), record.as_slice())?;
                                }
                                let keys = index_keys(n);
                                if precondition && views[3].get(&keys[2])?.is_some() {
                                    continue;
                                }
                                for (view, key) in views[1..].iter().zip(keys) {
                                    view.insert(key, &n.to_be_bytes())?;
                                }
                            }
                            if runs {
                                views[0].insert(&first.to_be_bytes(), run)?;
                            }
                            Ok::<_, ConflictableTransactionError<()>>(())
                        })
                        .expect("transaction");
                }
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!("{:<44} {:>12.0} {:>12.2}", layout.name(), commits as f64 / elapsed, elapsed * 1e6 / commits as f64);
    }
}

#[derive(Clone, Copy)]
enum Layout {
    RecordPerInsert,
    RecordPerInsertInTransaction,
    RunPerGroupInTransaction,
    RunPerGroupWithPrecondition,
}

impl Layout {
    const ALL: [Layout; 4] = [
        Layout::RecordPerInsert,
        Layout::RecordPerInsertInTransaction,
        Layout::RunPerGroupInTransaction,
        Layout::RunPerGroupWithPrecondition,
    ];

    fn name(self) -> &'static str {
        match self {
            Layout::RecordPerInsert => "record per insert, no transaction",
            Layout::RecordPerInsertInTransaction => "record per insert, one transaction per group",
            Layout::RunPerGroupInTransaction => "records in one run per group (the engine's)",
            Layout::RunPerGroupWithPrecondition => "the same, reading the idempotency key first",
        }
    }
}

/// Three keys spread like blind indexes: the per-child key ends with the position.
fn index_keys(n: u64) -> [Vec<u8>; 3] {
    let hash = |label: &[u8]| Sha256::new().chain_update(label).chain_update(n.to_be_bytes()).finalize().to_vec();
    let mut by_child = hash(b"child");
    by_child.extend_from_slice(&n.to_be_bytes());
    [by_child, hash(b"latest"), hash(b"idempotency")]
}
