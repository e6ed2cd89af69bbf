//! A sandbox for end-to-end tests: a test CA and certificates, and the real `tio`
//! binary as a child process on a loopback port.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub(crate) mod records;
pub(crate) mod stream;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tio_broker::pki::{CertificateAuthority, LeafSpec};
use tio_client::{Client, ConnectionSettings};
use tio_core::{Identity, Role};

/// How long a child may take to start listening before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The client certificates every sandbox issues.
pub(crate) const AGENCIES: &[&str] =
    &["hospital", "gp", "school", "send-team", "social-care", "adult-social-care", "icb"];

/// Returns the `tio` binary, building it once per test run so that `cargo test -p
/// tio-e2e` works on its own.
pub(crate) fn tio_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
        command.args(["build", "--quiet", "-p", "tio", "--bin", "tio"]);
        // Cargo sets these for the running test; build scripts that watch them (ring
        // watches CARGO_MANIFEST_DIR) would otherwise rebuild on every run.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_for_tests = name.starts_with("CARGO_PKG_")
                || matches!(
                    name.as_ref(),
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                );
            if set_for_tests {
                command.env_remove(name.as_ref());
            }
        }
        let status = command.status().expect("cargo runs");
        assert!(status.success(), "building the tio binary failed");
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/e2e-<hash> -> target/<profile>/tio
        let binary = exe.parent().and_then(Path::parent).expect("target dir").join("tio");
        assert!(binary.exists(), "no tio binary at {}", binary.display());
        binary
    })
}

/// A test PKI on disk plus the CA that can issue more.
pub(crate) struct Pki {
    pub(crate) ca: CertificateAuthority,
    pub(crate) dir: PathBuf,
}

impl Pki {
    /// Writes `ca.crt`, `server.crt/.key` and a pair per agency, admin and auditor.
    pub(crate) fn create(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca = CertificateAuthority::generate("e2e test CA").unwrap();
        std::fs::write(dir.join("ca.crt"), ca.certificate_pem()).unwrap();
        ca.issue(&LeafSpec::loopback_server()).unwrap().write(dir, "server").unwrap();
        for agency in AGENCIES {
            ca.issue(&LeafSpec::client(&Identity::agency(agency))).unwrap().write(dir, agency).unwrap();
        }
        ca.issue(&LeafSpec::client(&Identity { role: Role::Admin, id: "admin".into() }))
            .unwrap()
            .write(dir, "admin")
            .unwrap();
        ca.issue(&LeafSpec::client(&Identity { role: Role::Auditor, id: "auditor".into() }))
            .unwrap()
            .write(dir, "auditor")
            .unwrap();
        Pki { ca, dir: dir.to_owned() }
    }

    /// Returns the SHA-256 fingerprint of certificate `name`, as the server computes it.
    pub(crate) fn fingerprint(&self, name: &str) -> String {
        use rustls_pki_types::pem::PemObject;
        let pem = std::fs::read(self.dir.join(format!("{name}.crt"))).unwrap();
        tio_broker::fingerprint(&rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap())
    }

    /// Issues and writes a client certificate `name` from `spec`.
    pub(crate) fn issue(&self, name: &str, spec: &LeafSpec) {
        self.ca.issue(spec).unwrap().write(&self.dir, name).unwrap();
    }
}

/// Options for starting a server.
#[derive(Default)]
pub(crate) struct Options {
    /// Extra arguments after `tio serve`.
    pub(crate) args: Vec<String>,
    /// Extra environment variables.
    pub(crate) env: Vec<(String, String)>,
    /// Certificates of the sandbox PKI (by name) whose fingerprints the server revokes.
    pub(crate) revoke: Vec<String>,
    /// The server's log file in the sandbox (`server.log` unless given).
    pub(crate) log_name: Option<String>,
}

/// A running `tio serve` child process and its files.
pub(crate) struct Sandbox {
    /// A small filesystem under the data directory, if asked for; unmounted (after the
    /// server is stopped) before `root` is removed.
    mount: Option<SmallFilesystem>,
    /// Holds the sandbox's files until the sandbox is dropped.
    root: tempfile::TempDir,
    pub(crate) pki: Pki,
    pub(crate) address: SocketAddr,
    /// Where the server serves metrics, if it does.
    pub(crate) metrics: Option<SocketAddr>,
    child: Child,
    log: PathBuf,
    options: Options,
}

impl Sandbox {
    /// Starts a development-mode server using the sandbox's own PKI.
    pub(crate) fn start() -> Sandbox {
        Self::start_with(Options::default())
    }

    /// Starts a server with extra options; panics with its log if it does not come up.
    pub(crate) fn start_with(options: Options) -> Sandbox {
        Self::start_in(tempfile::tempdir().unwrap(), None, options)
    }

    /// Starts a development server whose data directory is a tmpfs of `megabytes`;
    /// `None` where this machine does not let the tests mount one.
    pub(crate) fn start_on_small_filesystem(megabytes: u32) -> Option<Sandbox> {
        let root = tempfile::tempdir().unwrap();
        let mount = SmallFilesystem::mount(&root.path().join("data"), megabytes)?;
        // Segments small beside the disk, so that it fills while the log is in use.
        let options = Options {
            args: vec!["--set".into(), format!("store.log_segment_bytes={}", 1 << 20)],
            ..Options::default()
        };
        Some(Self::start_in(root, Some(mount), options))
    }

    fn start_in(root: tempfile::TempDir, mount: Option<SmallFilesystem>, mut options: Options) -> Sandbox {
        let pki = Pki::create(&root.path().join("pki"));
        if !options.revoke.is_empty() {
            let fingerprints: Vec<String> = options.revoke.iter().map(|name| pki.fingerprint(name)).collect();
            options.args.push("--set".into());
            options.args.push(format!("revoked_fingerprints={}", fingerprints.join(",")));
        }
        match spawn_server(root.path(), &pki.dir, &options) {
            Ok(Started { child, address, metrics, log }) => {
                Sandbox { mount, root, pki, address, metrics, child, log, options }
            }
            Err(failure) => panic!("server did not start: {failure}"),
        }
    }

    /// Stops the server with SIGTERM and starts it again on the same data directory
    /// (and a new port), as an operator's restart would.
    pub(crate) fn restart(&mut self) {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(20));
        assert!(status.success(), "server exited with {status}; log:\n{}", self.log_text());
        self.start_again(&self.options.args.clone());
    }

    /// Restarts the server as [`Sandbox::restart`] does, with its clock `days` ahead of
    /// the system's (development mode's `dev_clock_offset_days`), to watch deadlines
    /// and birthdays fall due.
    pub(crate) fn restart_days_ahead(&mut self, days: i64) {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(20));
        assert!(status.success(), "server exited with {status}; log:\n{}", self.log_text());
        let mut args = self.options.args.clone();
        args.extend(["--set".to_owned(), format!("dev_clock_offset_days={days}")]);
        self.start_again(&args);
    }

    /// Starts the server again after it was stopped (`signal` and `wait_exit`), on the
    /// same data directory and a new port.
    pub(crate) fn start_stopped(&mut self) {
        self.start_again(&self.options.args.clone());
    }

    /// Kills the server with SIGKILL at whatever it was doing, and starts it again on
    /// the same data directory and the same port, so connected clients can reconnect.
    pub(crate) fn crash_and_restart(&mut self) {
        self.signal(Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(20));
        let mut args = self.options.args.clone();
        args.extend(["--set".to_owned(), format!("listen=127.0.0.1:{}", self.address.port())]);
        self.start_again(&args);
    }

    fn start_again(&mut self, args: &[String]) {
        let options = Options { args: args.to_vec(), env: self.options.env.clone(), ..Options::default() };
        let started = spawn_server(self.root.path(), &self.pki.dir, &options)
            .unwrap_or_else(|failure| panic!("server did not restart: {failure}"));
        (self.child, self.address, self.metrics, self.log) =
            (started.child, started.address, started.metrics, started.log);
    }

    /// Returns the server's data directory.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Writes the key that verifies the sandbox's checkpoints (`tio audit public-key`) to
    /// a file in `dir`, as an auditor keeps it, and returns the file.
    pub(crate) fn write_audit_public_key(&self, dir: &Path) -> PathBuf {
        let keys = self.data_dir().join("dev-keys").join("tio.keys");
        let (status, public_key, stderr) = run_tio(&["audit", "public-key", "--keys-file", &arg(&keys)], &[]);
        assert!(status.success(), "{stderr}");
        let file = dir.join("tio-audit.pub");
        std::fs::write(&file, &public_key).unwrap();
        file
    }

    /// Returns connection settings for certificate `name` of the sandbox PKI.
    pub(crate) fn settings(&self, name: &str) -> ConnectionSettings {
        ConnectionSettings::from_dev_pki(format!("https://localhost:{}", self.address.port()), &self.pki.dir, name)
    }

    /// Connects as certificate `name`.
    pub(crate) async fn client(&self, name: &str) -> Client {
        Client::connect(&self.settings(name)).await.unwrap_or_else(|err| panic!("connect as {name}: {err}"))
    }

    /// Sends a signal to the server.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the server to exit, at most `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit within {timeout:?}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resizes the small filesystem under the data directory, as an operator freeing
    /// space would.
    pub(crate) fn resize_filesystem(&self, megabytes: u32) {
        self.mount.as_ref().expect("started on a small filesystem").resize(megabytes);
    }

    /// Whether the server process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Returns everything the server wrote to stderr so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A second broker node beside a sandbox's server, on the same data directory, PKI and
/// store (a database both share): what `tio serve` on another machine would be.
pub(crate) struct Peer {
    child: Child,
    pub(crate) address: SocketAddr,
    log: PathBuf,
    pki: PathBuf,
}

impl Sandbox {
    /// Starts another node with the sandbox's options (its store must be one that
    /// several nodes share).
    pub(crate) fn start_peer(&self, name: &str) -> Peer {
        let options = Options {
            args: self.options.args.clone(),
            env: self.options.env.clone(),
            log_name: Some(format!("{name}.log")),
            ..Options::default()
        };
        let Started { child, address, log, .. } = spawn_server(self.root.path(), &self.pki.dir, &options)
            .unwrap_or_else(|failure| panic!("node {name} did not start: {failure}"));
        Peer { child, address, log, pki: self.pki.dir.clone() }
    }
}

impl Peer {
    /// Returns connection settings for certificate `name`, to this node.
    pub(crate) fn settings(&self, name: &str) -> ConnectionSettings {
        ConnectionSettings::from_dev_pki(format!("https://localhost:{}", self.address.port()), &self.pki, name)
    }

    /// Returns everything the node wrote to stderr so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A tmpfs mounted on a directory, unmounted on drop.
pub(crate) struct SmallFilesystem(PathBuf);

impl SmallFilesystem {
    /// Mounts a tmpfs of `megabytes` on `dir` (created); `None` if mounting is refused.
    fn mount(dir: &Path, megabytes: u32) -> Option<SmallFilesystem> {
        std::fs::create_dir_all(dir).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0700"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| SmallFilesystem(dir.to_owned()))
    }

    fn resize(&self, megabytes: u32) {
        let status =
            Command::new("mount").args(["-o", &format!("remount,size={megabytes}m")]).arg(&self.0).status().unwrap();
        assert!(status.success(), "cannot resize the test filesystem");
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Spawns `tio serve --dev` on `127.0.0.1:0` with the given PKI, and returns once it
/// prints its address; `Err` holds the exit status and log if it exits first.
pub(crate) fn spawn_server(root: &Path, pki: &Path, options: &Options) -> Result<Started, String> {
    let log = root.join(options.log_name.as_deref().unwrap_or("server.log"));
    let mut command = Command::new(tio_binary());
    command
        .arg("serve")
        .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(root.join("data"))
        .arg("--set")
        .arg(format!("tls.ca_file={}", pki.join("ca.crt").display()))
        .arg("--set")
        .arg(format!("tls.cert_file={}", pki.join("server.crt").display()))
        .arg("--set")
        .arg(format!("tls.key_file={}", pki.join("server.key").display()))
        .args(&options.args)
        .env("RUST_LOG", "info")
        .envs(options.env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = command.spawn().expect("spawn tio");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The server prints its metrics address, then the one it listens on.
        let mut metrics = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("tio: metrics on http://") {
                metrics = Some(url.trim_end_matches("/metrics").parse::<SocketAddr>().expect("metrics address"));
            }
            if let Some(address) = line.strip_prefix("tio: listening on ") {
                let _ = sender.send((address.parse::<SocketAddr>().expect("address"), metrics));
            }
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok((address, metrics)) = receiver.recv_timeout(Duration::from_millis(50)) {
            return Ok(Started { child, address, metrics, log });
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("exited with {status}; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("no address within {START_TIMEOUT:?}"));
        }
    }
}

/// A server that came up.
pub(crate) struct Started {
    child: Child,
    address: SocketAddr,
    metrics: Option<SocketAddr>,
    log: PathBuf,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server on {}", self.address)
    }
}

/// Returns every file below `dir`, sorted, not descending into directories whose name
/// `skip` accepts.
pub(crate) fn walk_files(dir: &Path, skip: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                if !skip(&entry.file_name().to_string_lossy()) {
                    pending.push(path);
                }
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Returns a path as a command-line argument.
pub(crate) fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// Runs `tio` with the sandbox's connection flags for certificate `name` appended;
/// returns whether it succeeded, and its stdout and stderr.
pub(crate) fn tio_as(sandbox: &Sandbox, name: &str, args: &[&str]) -> (bool, String, String) {
    let server = format!("https://localhost:{}", sandbox.address.port());
    let pki = arg(&sandbox.pki.dir);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--server", &server, "--dev-pki", &pki, "--as", name]);
    let (status, stdout, stderr) = run_tio(&all, &[]);
    (status.success(), stdout, stderr)
}

/// Runs the `tio` binary to completion with `args` and `env`, returning status,
/// stdout and stderr.
pub(crate) fn run_tio(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let output = Command::new(tio_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run tio");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
