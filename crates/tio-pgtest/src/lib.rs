//! A throwaway PostgreSQL server for tests and benchmarks, started from the machine's
//! PostgreSQL packages (Debian's `postgresql`): `initdb` into a temporary directory, the
//! server on its own loopback port and a Unix socket in that directory, with `fsync`
//! and `synchronous_commit` on (as in production, so that what a test shows of
//! durability holds), and stopped (an immediate shutdown) when dropped.
//!
//! Nothing is mocked and nothing runs in a container. When the server binaries are not
//! installed, [`TestPostgres::start`] fails naming the install step; it never skips.
//!
//! PostgreSQL refuses to run as root. Run as root (as CI may be), the harness hands the
//! directory to the `postgres` account the Debian package creates and starts `initdb`
//! and the server as that account (with `setpriv`, so that the server is the child the
//! harness stops).

#![warn(missing_docs)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod patroni;

pub use patroni::{MemberState, PatroniCluster};

/// The database role the harness creates (trusted, local connections only).
pub const USER: &str = "tio";

/// How long the server may take to accept connections after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a test server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The server binaries are not installed.
    #[error(
        "PostgreSQL's server programs (initdb, postgres) were not found: install them with \
         `apt-get install postgresql` (tests/run does so on a fresh machine), or set TIO_PG_BIN \
         to the directory that holds them"
    )]
    NotInstalled,
    /// Running as root, but the `postgres` account to run the server as does not exist.
    #[error(
        "running as root, and PostgreSQL refuses to: the `postgres` account (created by \
         `apt-get install postgresql`) is needed to run the test server as"
    )]
    NoServerAccount,
    /// Patroni or etcd is not installed.
    #[error(
        "Patroni and etcd were not found: install them with `apt-get install patroni python3-etcd \
         etcd-server` (tests/run does so on a fresh machine)"
    )]
    PatroniNotInstalled,
    /// A step failed.
    #[error("{step}: {detail}")]
    Step {
        /// What was being done.
        step: String,
        /// What went wrong (the program's own output when there is some).
        detail: String,
    },
}

fn step(step: impl Into<String>, detail: impl std::fmt::Display) -> HarnessError {
    HarnessError::Step { step: step.into(), detail: detail.to_string() }
}

/// Finds the directory of the server programs: `TIO_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), else `initdb` on the `PATH`.
pub fn server_bin_dir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = std::env::var_os("TIO_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").is_file() { Ok(dir) } else { Err(HarnessError::NotInstalled) };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .ok_or(HarnessError::NotInstalled)
}

/// Who the server runs as: this process's user, or (as root) the `postgres` account.
#[derive(Debug, Clone)]
struct RunAs {
    account: Option<(u32, u32)>,
}

impl RunAs {
    fn for_this_process() -> Result<RunAs, HarnessError> {
        let euid =
            std::fs::metadata("/proc/self").map(|meta| meta.uid()).map_err(|err| step("reading /proc/self", err))?;
        if euid != 0 {
            return Ok(RunAs { account: None });
        }
        let id = |flag: &str| -> Option<u32> {
            let output = Command::new("id").args([flag, "postgres"]).output().ok()?;
            if !output.status.success() {
                return None;
            }
            String::from_utf8_lossy(&output.stdout).trim().parse().ok()
        };
        match (id("-u"), id("-g")) {
            (Some(uid), Some(gid)) => Ok(RunAs { account: Some((uid, gid)) }),
            _ => Err(HarnessError::NoServerAccount),
        }
    }

    fn command(&self, program: &Path) -> Command {
        match self.account {
            None => Command::new(program),
            Some((uid, gid)) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                command
            }
        }
    }

    /// A new temporary directory named from `prefix`, the server account's.
    fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|err| step("making a temporary directory", err))?;
        self.give(dir.path())?;
        Ok(dir)
    }

    fn give(&self, path: &Path) -> Result<(), HarnessError> {
        if let Some((uid, gid)) = self.account {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|err| step(format!("handing {} to the postgres account", path.display()), err))?;
        }
        Ok(())
    }
}

/// A running throwaway server. Dropping it stops the server at once (an immediate
/// shutdown) and removes its directory.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: RunAs,
    port: u16,
    server: Option<Child>,
    databases: AtomicU32,
    /// The CA that issued the server's certificate, when it serves TLS.
    tls_ca: Option<String>,
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPostgres").field("port", &self.port).finish_non_exhaustive()
    }
}

impl TestPostgres {
    /// Initialises a cluster in a new temporary directory and starts its server; returns
    /// once it accepts connections.
    pub fn start() -> Result<TestPostgres, HarnessError> {
        TestPostgres::start_with(false)
    }

    /// As [`TestPostgres::start`], the server also serving TLS on its loopback port,
    /// with a certificate for `127.0.0.1` and `localhost` from a throwaway CA
    /// ([`TestPostgres::tls_ca_pem`]). Connections without TLS are still accepted, so
    /// that a test can show which one a client made.
    pub fn start_with_tls() -> Result<TestPostgres, HarnessError> {
        TestPostgres::start_with(true)
    }

    fn start_with(tls: bool) -> Result<TestPostgres, HarnessError> {
        let bin = server_bin_dir()?;
        let run_as = RunAs::for_this_process()?;
        let dir = run_as.temp_dir("tio-pg-")?;
        let data = dir.path().join("data");
        let output = run_as
            .command(&bin.join("initdb"))
            .arg("--pgdata")
            .arg(&data)
            .args(["--username", USER, "--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-instructions"])
            .output()
            .map_err(|err| step("running initdb", err))?;
        if !output.status.success() {
            return Err(step("initdb", String::from_utf8_lossy(&output.stderr)));
        }
        let mut server =
            TestPostgres { dir, bin, run_as, port: 0, server: None, databases: AtomicU32::new(0), tls_ca: None };
        if tls {
            server.make_certificates()?;
        }
        server.start_server()?;
        Ok(server)
    }

    /// Writes a throwaway CA's server certificate and key into the data directory and
    /// turns TLS on in the server's configuration.
    fn make_certificates(&mut self) -> Result<(), HarnessError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
        let generate = |err: rcgen::Error| step("making test certificates", err);
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "tio test database CA");
        let ca_key = KeyPair::generate().map_err(generate)?;
        let ca = ca_params.self_signed(&ca_key).map_err(generate)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).map_err(generate)?;
        leaf.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        leaf.distinguished_name.push(DnType::CommonName, "tio test database");
        let leaf_key = KeyPair::generate().map_err(generate)?;
        let leaf = leaf.signed_by(&leaf_key, &issuer).map_err(generate)?;
        let data = self.data_dir();
        for (name, text, mode) in [("server.crt", leaf.pem(), 0o644), ("server.key", leaf_key.serialize_pem(), 0o600)] {
            let path = data.join(name);
            std::fs::write(&path, text).map_err(|err| step(format!("writing {name}"), err))?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(|err| step(format!("writing {name}"), err))?;
            self.run_as.give(&path)?;
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(|err| step("reading postgresql.conf", err))?;
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).map_err(|err| step("writing postgresql.conf", err))?;
        self.tls_ca = Some(ca.pem());
        Ok(())
    }

    /// The PEM of the CA that issued the server's certificate (servers started with
    /// [`TestPostgres::start_with_tls`]).
    pub fn tls_ca_pem(&self) -> Option<&str> {
        self.tls_ca.as_deref()
    }

    fn start_server(&mut self) -> Result<(), HarnessError> {
        // A port free now; a clash with another process in the moment between is
        // reported by the server and retried.
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            match self.spawn_server(port) {
                Ok(()) => return Ok(()),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| step("starting postgres", "no attempt made")))
    }

    fn spawn_server(&mut self, port: u16) -> Result<(), HarnessError> {
        let log = std::fs::File::create(self.dir.path().join("server.log"))
            .map_err(|err| step("creating the server log", err))?;
        let log_err = log.try_clone().map_err(|err| step("creating the server log", err))?;
        let mut child = self
            .run_as
            .command(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &port.to_string()])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.path().display()))
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
                "-c",
                "synchronous_commit=on",
                "-c",
                "shared_buffers=64MB",
                "-c",
                "max_connections=200",
                "-c",
                "log_min_messages=warning",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|err| step("starting postgres", err))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(|err| step("waiting for postgres", err))? {
                return Err(step(format!("postgres exited at start ({status})"), self.server_log_tail()));
            }
            if self.answers_on(port) {
                self.port = port;
                self.server = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(step("postgres did not accept connections within 60 s", self.server_log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the server on `port` accepts connections now (`pg_isready`).
    fn answers_on(&self, port: u16) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER, "-d", "postgres"])
            .status()
            .is_ok_and(|status| status.success())
    }

    fn accepts_connections(&self) -> bool {
        self.answers_on(self.port)
    }

    fn server_log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The cluster's data directory (for tests that read the files themselves).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for `database` over the Unix socket.
    pub fn url(&self, database: &str) -> String {
        format!("host={} port={} user={USER} dbname={database}", self.dir.path().display(), self.port)
    }

    /// A connection string for `database` over loopback TCP.
    pub fn tcp_url(&self, database: &str) -> String {
        format!("host=127.0.0.1 port={} user={USER} dbname={database}", self.port)
    }

    /// Creates a new, empty database and returns its connection string (Unix socket).
    pub fn create_database(&self) -> Result<String, HarnessError> {
        let name = format!("tio_{}", self.databases.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs one SQL command with `psql` in `database` and returns what it printed
    /// (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, HarnessError> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", database, "-c", sql])
            .output()
            .map_err(|err| step("running psql", err))?;
        if !output.status.success() {
            return Err(step(format!("psql {sql:?}"), String::from_utf8_lossy(&output.stderr)));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops the server at once, as a crash of its machine would: every process of it
    /// (the postmaster, its backends, its WAL sender) is killed with SIGKILL together, so
    /// that no backend answers a commit afterwards. The data directory is left to be
    /// started again.
    pub fn kill(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if let Some(mut child) = self.server.take() {
            let postmaster = Pid::from_raw(child.id() as i32);
            // Stopped first, so that it starts no process while its children are found.
            let _ = kill(postmaster, Signal::SIGSTOP);
            for pid in children_of(child.id()) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a streaming standby of this server (`pg_basebackup -R` into a directory of
    /// its own, its own port and socket) and makes it synchronous: from then on this
    /// server answers a commit only once the standby has flushed it
    /// (`synchronous_standby_names`, set here and not on the standby, so that once
    /// promoted it commits alone). Returns when the standby is streaming in sync.
    pub fn start_standby(&self) -> Result<TestPostgres, HarnessError> {
        let dir = self.run_as.temp_dir("tio-pg-standby-")?;
        let output = self
            .run_as
            .command(&self.bin.join("pg_basebackup"))
            .arg("--host")
            .arg(self.dir.path())
            .args(["--port", &self.port.to_string(), "--username", USER, "--pgdata"])
            .arg(dir.path().join("data"))
            .args(["--write-recovery-conf", "--wal-method", "stream", "--checkpoint", "fast", "--no-sync"])
            .output()
            .map_err(|err| step("running pg_basebackup", err))?;
        if !output.status.success() {
            return Err(step("pg_basebackup", String::from_utf8_lossy(&output.stderr)));
        }
        let mut standby = TestPostgres {
            dir,
            bin: self.bin.clone(),
            run_as: self.run_as.clone(),
            port: 0,
            server: None,
            databases: AtomicU32::new(self.databases.load(Ordering::Relaxed)),
            tls_ca: self.tls_ca.clone(),
        };
        standby.start_server()?;
        self.psql("postgres", "ALTER SYSTEM SET synchronous_standby_names = '*'")?;
        self.psql("postgres", "SELECT pg_reload_conf()")?;
        let deadline = Instant::now() + START_TIMEOUT;
        while self.psql("postgres", "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")?.trim() != "1"
        {
            if Instant::now() > deadline {
                return Err(step("the standby did not stream in sync within 60 s", standby.server_log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(standby)
    }

    /// Promotes this standby to a primary that accepts writes, waiting until it does
    /// (and first until it accepts connections, as after a restart of its processes).
    pub fn promote(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.accepts_connections() {
            if Instant::now() > deadline {
                return Err(step("the standby did not accept connections within 60 s", self.server_log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let promoted = self.psql("postgres", "SELECT pg_promote(wait => true, wait_seconds => 60)")?;
        if promoted.trim() != "t" {
            return Err(step("pg_promote", format!("the standby was not promoted: {promoted}")));
        }
        Ok(())
    }

    /// A connection string naming every server in `servers` (their sockets, in order) for
    /// `database`, taking whichever accepts writes (`target_session_attrs=read-write`), as
    /// a node that outlives a failover connects.
    pub fn url_across(servers: &[&TestPostgres], database: &str) -> String {
        let hosts: Vec<String> = servers.iter().map(|server| server.dir.path().display().to_string()).collect();
        let ports: Vec<String> = servers.iter().map(|server| server.port.to_string()).collect();
        format!(
            "host={} port={} user={USER} dbname={database} target_session_attrs=read-write",
            hosts.join(","),
            ports.join(",")
        )
    }

    /// Stops every process of the server where it stands (SIGSTOP), as a machine that
    /// hangs: connections stay open and nothing is answered until [`TestPostgres::resume`].
    pub fn pause(&self) {
        self.signal_all(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a paused server run on (SIGCONT to every process of it).
    pub fn resume(&self) {
        self.signal_all(nix::sys::signal::Signal::SIGCONT);
    }

    /// Cuts this standby's replication stream where it stands: its WAL receiver is
    /// killed with SIGKILL (the server restarts its processes and goes on recovering
    /// from what it has), so that nothing more of the primary's WAL reaches it for some
    /// seconds, until a new receiver connects.
    pub fn cut_replication(&self) {
        let Some(child) = &self.server else { return };
        for pid in children_of(child.id()) {
            let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&command).contains("walreceiver") {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    fn signal_all(&self, signal: nix::sys::signal::Signal) {
        use nix::unistd::Pid;
        if let Some(child) = &self.server {
            let _ = nix::sys::signal::kill(Pid::from_raw(child.id() as i32), signal);
            for pid in children_of(child.id()) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
            }
        }
    }

    /// Starts the server again on the same data directory (after [`TestPostgres::kill`])
    /// and the same port and socket, so that clients find it where they left it, as
    /// after a database's crash and recovery.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_server(self.port) {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() > deadline => return Err(err),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// A loopback port free at the moment of asking.
fn free_port() -> Result<u16, HarnessError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|err| step("finding a free loopback port", err))
}

/// The processes whose parent is `parent`, read from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The command name, in parentheses, may hold spaces: fields follow its end.
            let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
            (fields.get(1)?.parse::<u32>().ok()? == parent).then_some(pid)
        })
        .collect()
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            // SIGQUIT is PostgreSQL's immediate shutdown: the backends go too.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_a_server_that_answers_and_creates_databases() {
        let server = TestPostgres::start().expect("a test server starts (tests/run installs postgresql)");
        assert_eq!(server.psql("postgres", "SELECT 1 + 1").unwrap().trim(), "2");
        assert_eq!(server.psql("postgres", "SHOW fsync").unwrap().trim(), "on");
        assert_eq!(server.psql("postgres", "SHOW synchronous_commit").unwrap().trim(), "on");
        let url = server.create_database().unwrap();
        let name = url.rsplit("dbname=").next().unwrap().to_owned();
        assert_eq!(server.psql(&name, "SELECT current_database()").unwrap().trim(), name);
        let data = server.data_dir();
        assert!(data.join("PG_VERSION").is_file());
        drop(server);
        assert!(!data.exists(), "the directory goes with the server");
    }

    #[test]
    fn a_synchronous_standby_has_every_commit_and_takes_writes_once_promoted() {
        let mut primary = TestPostgres::start().expect("a test server starts (tests/run installs postgresql)");
        let url = primary.create_database().unwrap();
        let name = url.rsplit("dbname=").next().unwrap().to_owned();
        primary.psql(&name, "CREATE TABLE t (n integer)").unwrap();
        let standby = primary.start_standby().unwrap();
        let state = primary.psql("postgres", "SELECT sync_state FROM pg_stat_replication").unwrap();
        assert_eq!(state.trim(), "sync");
        primary.psql(&name, "INSERT INTO t VALUES (1)").unwrap();
        let refused = standby.psql(&name, "INSERT INTO t VALUES (2)").unwrap_err().to_string();
        assert!(refused.contains("read-only"), "{refused}");

        // The primary gone, the acknowledged row is on the standby, which takes writes
        // once promoted.
        primary.kill();
        standby.promote().unwrap();
        standby.psql(&name, "INSERT INTO t VALUES (3)").unwrap();
        assert_eq!(standby.psql(&name, "SELECT string_agg(n::text, ',' ORDER BY n) FROM t").unwrap().trim(), "1,3");
        let across = TestPostgres::url_across(&[&primary, &standby], &name);
        assert!(across.contains(&format!("port={},{}", primary.port(), standby.port())), "{across}");
        assert!(across.ends_with("target_session_attrs=read-write"), "{across}");
    }
}
