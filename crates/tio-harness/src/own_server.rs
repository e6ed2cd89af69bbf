//! A `tio serve --dev` child process on a loopback port with its own data directory,
//! for `tio demo` and `tio bench`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{HarnessError, Result};

/// A `tio serve --dev` child process on a loopback port, stopped with SIGTERM on drop.
pub struct OwnServer {
    child: Child,
    url: String,
    _temporary: Option<tempfile::TempDir>,
    data_dir: PathBuf,
}

impl OwnServer {
    /// Starts `tio serve --dev` from the `tio` binary at `tio`, with its data in
    /// `data_dir` (a temporary directory, removed on drop, if `None`), and waits until it
    /// listens. With `announce`, says where its data and log are.
    pub fn start(tio: &Path, data_dir: Option<&Path>, announce: bool) -> Result<OwnServer> {
        let (temporary, data_dir) = match data_dir {
            Some(dir) => (None, dir.to_owned()),
            None => {
                let temporary = tempfile::tempdir().map_err(HarnessError::io("make a temporary directory"))?;
                let dir = temporary.path().to_owned();
                (Some(temporary), dir)
            }
        };
        std::fs::create_dir_all(&data_dir).map_err(HarnessError::io(format!("create {}", data_dir.display())))?;
        let log_path = data_dir.join("demo-server.log");
        let log =
            std::fs::File::create(&log_path).map_err(HarnessError::io(format!("create {}", log_path.display())))?;
        if announce {
            println!(
                "Starting a development server (data in {}, log in {})...",
                data_dir.display(),
                log_path.display()
            );
        }
        let mut child = Command::new(tio)
            .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(HarnessError::io(format!("start {} serve", tio.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| HarnessError::ServerStart("no standard output".into()))?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("tio: listening on ") {
                    let _ = sender.send(address.to_owned());
                }
            }
        });
        let mut server = OwnServer { child, url: String::new(), _temporary: temporary, data_dir };
        let address = receiver
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| HarnessError::ServerStart(format!("see {}", log_path.display())))?;
        let port = address
            .rsplit_once(':')
            .map(|(_, port)| port.to_owned())
            .ok_or_else(|| HarnessError::ServerStart(format!("no port in the address `{address}`")))?;
        server.url = format!("https://localhost:{port}");
        Ok(server)
    }

    /// The server's URL, `https://localhost:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's resident memory now, in bytes (from `/proc`), if known.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        // SIGTERM, so the server drains and signs its last checkpoint.
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok() {
            for _ in 0..200 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
