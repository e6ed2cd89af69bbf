//! The broker on the PostgreSQL engine (`store.engine = "postgres"`), against a real
//! PostgreSQL started for the test (`initdb` in a temporary directory).

use crate::support::{arg, run_tio};

/// Every place an NHS number of the story could be written in plain text: as digits,
/// spaced as people write it, and as the ASCII of either.
fn plain_forms(number: &str) -> Vec<Vec<u8>> {
    let spaced = format!("{} {} {}", &number[..3], &number[3..6], &number[6..]);
    vec![number.as_bytes().to_vec(), spaced.into_bytes()]
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut next = vec![dir.to_owned()];
    while let Some(dir) = next.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                next.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The README's first command on PostgreSQL: the demo's own server keeps its store in
/// the database, reached over loopback TCP with TLS verified against the database's CA
/// (`store.postgres.ca_file`); the story checks out, the tables hold what it wrote, and
/// no NHS number of the story is anywhere in the database's files or its WAL.
#[test]
fn the_demo_tells_the_whole_story_on_postgresql_and_the_database_holds_no_nhs_number() {
    let server = tio_pgtest::TestPostgres::start_with_tls().expect("a test PostgreSQL starts (tests/run installs it)");
    let url = server.create_database().unwrap();
    let database = url.rsplit("dbname=").next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("postgres-ca.pem");
    std::fs::write(&ca_file, server.tls_ca_pem().unwrap()).unwrap();
    let data = dir.path().join("demo-data");
    let (status, stdout, stderr) = run_tio(
        &["demo", "--data-dir", &arg(&data)],
        &[
            ("TIO_STORE_ENGINE", "postgres"),
            ("TIO_STORE_POSTGRES_URL", &server.tcp_url(&database)),
            ("TIO_STORE_POSTGRES_CA_FILE", &arg(&ca_file)),
        ],
    );
    assert!(status.success(), "the demo failed on PostgreSQL:\n{stdout}\n{stderr}");
    assert!(stdout.contains("The story checked out"), "{stdout}");
    assert!(!data.join("store").exists(), "the store is in the database, not the data directory");
    let updates: u64 =
        server.psql(&database, "SELECT count(*) FROM tio_log WHERE space = 1").unwrap().trim().parse().unwrap();
    let audit: u64 =
        server.psql(&database, "SELECT count(*) FROM tio_log WHERE space = 11").unwrap().trim().parse().unwrap();
    assert!(updates >= 5 && audit > updates, "updates {updates}, audit entries {audit}");
    let log = std::fs::read_to_string(data.join("demo-server.log")).unwrap();
    assert!(!log.contains("error"), "the server logged an error:\n{log}");
    server.psql("postgres", "CHECKPOINT").unwrap();

    let numbers = ["9990079196"];
    let forms: Vec<Vec<u8>> = numbers.iter().flat_map(|number| plain_forms(number)).collect();
    assert!(stdout.contains("999 007 9196"), "the story is about a child the grep looks for");
    let mut found = Vec::new();
    let files = files_under(&server.data_dir());
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_default();
        for form in &forms {
            if bytes.windows(form.len()).any(|window| window == form.as_slice()) {
                found.push(format!("{} in {}", String::from_utf8_lossy(form), path.display()));
            }
        }
    }
    assert!(files.iter().any(|path| path.to_string_lossy().contains("pg_wal")), "the WAL was searched too");
    assert!(found.is_empty(), "NHS numbers in plain text in the database's files:\n{}", found.join("\n"));

    // The stopped store moves off PostgreSQL with the offline commands, and checks out.
    let url = server.tcp_url(&database);
    let on_postgres = ["--engine", "postgres", "--postgres-url", &url, "--postgres-ca-file", &arg(&ca_file)];
    let keys = data.join("dev-keys").join("tio.keys");
    let (status, stdout, stderr) = run_tio(
        &[&["store", "check", "--data-dir", &arg(&data), "--keys-file", &arg(&keys)], &on_postgres[..]].concat(),
        &[],
    );
    assert!(status.success() && stdout.contains("checking the PostgreSQL database"), "{stdout}{stderr}");
    let backup = dir.path().join("store.backup");
    let (status, stdout, stderr) = run_tio(
        &[&["store", "backup", "--data-dir", &arg(&data), "--out", &arg(&backup)], &on_postgres[..]].concat(),
        &[],
    );
    assert!(status.success(), "{stdout}{stderr}");
    let embedded = dir.path().join("embedded");
    let (status, stdout, stderr) =
        run_tio(&["store", "restore", "--in", &arg(&backup), "--data-dir", &arg(&embedded)], &[]);
    assert!(status.success(), "{stdout}{stderr}");
    let (status, stdout, stderr) =
        run_tio(&["store", "check", "--data-dir", &arg(&embedded), "--keys-file", &arg(&keys)], &[]);
    assert!(status.success() && !stdout.contains("DAMAGED"), "{stdout}{stderr}");
    let (status, _, stderr) = run_tio(
        &[&["store", "restore", "--in", &arg(&backup), "--data-dir", &arg(&embedded)], &on_postgres[..]].concat(),
        &[],
    );
    assert!(!status.success() && stderr.contains("already holds a store"), "{stderr}");
    let (status, _, stderr) =
        run_tio(&["store", "backup", "--data-dir", &arg(&data), "--out", "x", "--engine", "postgres"], &[]);
    assert!(!status.success() && stderr.contains("--postgres-url"), "{stderr}");
}
