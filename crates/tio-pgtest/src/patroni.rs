//! A throwaway Patroni cluster for failover tests: one etcd and several PostgreSQL
//! members managed by Patroni (`synchronous_mode` and `synchronous_mode_strict` on, as
//! `deploy/postgres/patroni.yml` sets them), all on loopback ports of their own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{HarnessError, RunAs, USER, children_of, free_port, server_bin_dir, step};

/// How long a cluster may take to elect its first leader and stream to a standby.
const FORM_TIMEOUT: Duration = Duration::from_secs(120);

/// The password of the test's database role (the cluster lives only as long as the test).
const PASSWORD: &str = "tio-test-password";

/// One member: its Patroni process and ports.
struct Member {
    name: String,
    patroni: Option<Child>,
    pg_port: u16,
    data: PathBuf,
    config: PathBuf,
}

/// A running Patroni cluster; dropped, it kills every process of it and removes its
/// directory.
pub struct PatroniCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: RunAs,
    etcd: Option<Child>,
    members: Vec<Member>,
}

impl std::fmt::Debug for PatroniCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports: Vec<u16> = self.members.iter().map(|member| member.pg_port).collect();
        f.debug_struct("PatroniCluster").field("ports", &ports).finish_non_exhaustive()
    }
}

/// What `patronictl list` says of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// The member's name (`pg1`, `pg2`, ...).
    pub name: String,
    /// `Leader`, `Sync Standby` or `Replica`.
    pub role: String,
    /// `running`, `streaming`, `stopped`, ...
    pub state: String,
}

/// Finds a program on the PATH or in /usr/bin.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]).map(|dir| dir.join(name)).find(|p| p.is_file())
}

impl PatroniCluster {
    /// Starts etcd and `members` Patroni members, and returns once one leads and
    /// another is its synchronous standby, with role `tio` (password authentication
    /// over loopback) owning database `tio`.
    pub fn start(members: usize) -> Result<PatroniCluster, HarnessError> {
        let (Some(patroni), Some(etcd)) = (program("patroni"), program("etcd")) else {
            return Err(HarnessError::PatroniNotInstalled);
        };
        let bin = server_bin_dir()?;
        let run_as = RunAs::for_this_process()?;
        let dir = run_as.temp_dir("tio-patroni-")?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let etcd_log = log_file(dir.path(), "etcd.log")?;
        let etcd = run_as
            .command(&etcd)
            .args(["--name", "etcd1", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client_port}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client_port}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!("--initial-cluster=etcd1=http://127.0.0.1:{peer_port}"))
            .stdin(Stdio::null())
            .stdout(etcd_log.try_clone().map_err(|err| step("opening etcd's log", err))?)
            .stderr(etcd_log)
            .spawn()
            .map_err(|err| step("starting etcd", err))?;
        let mut cluster = PatroniCluster { dir, bin, run_as, etcd: Some(etcd), members: Vec::new() };
        for index in 1..=members {
            let name = format!("pg{index}");
            let (rest_port, pg_port) = (free_port()?, free_port()?);
            let data = cluster.dir.path().join(format!("{name}-data"));
            let config = cluster.dir.path().join(format!("{name}.yml"));
            let text = member_config(&name, &cluster.bin, cluster.dir.path(), client_port, rest_port, pg_port);
            std::fs::write(&config, text).map_err(|err| step("writing a Patroni configuration", err))?;
            cluster.run_as.give(&config)?;
            let log = log_file(cluster.dir.path(), &format!("{name}.log"))?;
            let child = cluster
                .run_as
                .command(&patroni)
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|err| step("opening Patroni's log", err))?)
                .stderr(log)
                .spawn()
                .map_err(|err| step("starting Patroni", err))?;
            cluster.members.push(Member { name, patroni: Some(child), pg_port, data, config });
            if index == 1 {
                // The first member bootstraps the cluster; the others copy it.
                cluster.wait_until("a leader", |members| {
                    members.iter().any(|m| m.role == "Leader" && m.state == "running")
                })?;
            }
        }
        cluster.wait_until("a leader and a synchronous standby", |members| {
            members.iter().any(|m| m.role == "Leader") && members.iter().any(|m| m.role == "Sync Standby")
        })?;
        let leader = cluster.leader()?;
        cluster.psql(&leader, "postgres", &format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"))?;
        cluster.psql(&leader, "postgres", &format!("CREATE DATABASE tio OWNER {USER}"))?;
        Ok(cluster)
    }

    /// Every member's state, as `patronictl list` gives it.
    pub fn members(&self) -> Result<Vec<MemberState>, HarnessError> {
        let Some(first) = self.members.first() else { return Ok(Vec::new()) };
        let output = Command::new(program("patronictl").ok_or(HarnessError::PatroniNotInstalled)?)
            .arg("--config-file")
            .arg(&first.config)
            .args(["list", "--format", "json"])
            .output()
            .map_err(|err| step("running patronictl", err))?;
        if !output.status.success() {
            return Err(step("patronictl list", String::from_utf8_lossy(&output.stderr)));
        }
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&output.stdout).map_err(|err| step("reading patronictl's list", err))?;
        Ok(rows
            .iter()
            .map(|row| {
                let field = |name: &str| row.get(name).and_then(|value| value.as_str()).unwrap_or_default().to_owned();
                MemberState { name: field("Member"), role: field("Role"), state: field("State") }
            })
            .collect())
    }

    /// The name of the member that leads now.
    pub fn leader(&self) -> Result<String, HarnessError> {
        let members = self.members()?;
        members
            .into_iter()
            .find(|member| member.role == "Leader")
            .map(|member| member.name)
            .ok_or_else(|| step("finding the leader", "no member leads"))
    }

    /// Waits (at most FORM_TIMEOUT) until `done` holds of the members.
    pub fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&[MemberState]) -> bool,
    ) -> Result<Vec<MemberState>, HarnessError> {
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            if let Ok(members) = self.members()
                && done(&members)
            {
                return Ok(members);
            }
            if Instant::now() > deadline {
                return Err(step(
                    format!("the cluster did not have {what} within {} s", FORM_TIMEOUT.as_secs()),
                    self.logs_tail(),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A connection string naming every member, for the `tio` database, taking whichever
    /// accepts writes: as a node outside the cluster connects.
    pub fn url(&self) -> String {
        let hosts: Vec<&str> = self.members.iter().map(|_| "127.0.0.1").collect();
        let ports: Vec<String> = self.members.iter().map(|member| member.pg_port.to_string()).collect();
        format!(
            "host={} port={} user={USER} password={PASSWORD} dbname=tio target_session_attrs=read-write",
            hosts.join(","),
            ports.join(",")
        )
    }

    /// Kills member `name` whole, as the loss of its machine: its Patroni and every
    /// process of its PostgreSQL, with SIGKILL.
    pub fn kill(&mut self, name: &str) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let Some(member) = self.members.iter_mut().find(|member| member.name == name) else { return };
        // Patroni is stopped first, so that it does not start PostgreSQL again, and
        // PostgreSQL's processes are found through the postmaster before it dies.
        let patroni = member.patroni.take();
        if let Some(patroni) = &patroni {
            let _ = kill(Pid::from_raw(patroni.id() as i32), Signal::SIGSTOP);
        }
        if let Some(postmaster) = postmaster_pid(&member.data) {
            signal_tree(postmaster, Signal::SIGKILL);
        }
        if let Some(mut patroni) = patroni {
            let _ = patroni.kill();
            let _ = patroni.wait();
        }
    }

    /// Stops (SIGSTOP) or lets run on (SIGCONT) member `name`'s PostgreSQL, every process
    /// of it, leaving its Patroni running.
    pub fn signal_postgres(&self, name: &str, signal: nix::sys::signal::Signal) {
        if let Some(member) = self.members.iter().find(|member| member.name == name)
            && let Some(postmaster) = postmaster_pid(&member.data)
        {
            signal_tree(postmaster, signal);
        }
    }

    /// Runs `sql` with psql on member `name`'s socket as the superuser.
    pub fn psql(&self, name: &str, database: &str, sql: &str) -> Result<String, HarnessError> {
        let member = self
            .members
            .iter()
            .find(|member| member.name == name)
            .ok_or_else(|| step("psql", format!("no member {name}")))?;
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args(["-p", &member.pg_port.to_string(), "-U", "postgres", "-d", database, "-c", sql])
            .output()
            .map_err(|err| step("running psql", err))?;
        if !output.status.success() {
            return Err(step(format!("psql {sql:?}"), String::from_utf8_lossy(&output.stderr)));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn logs_tail(&self) -> String {
        let mut text = String::new();
        for name in std::iter::once("etcd".to_owned()).chain(self.members.iter().map(|member| member.name.clone())) {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            text.push_str(&format!("--- {name}\n{}\n", lines[lines.len().saturating_sub(10)..].join("\n")));
        }
        text
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        let names: Vec<String> = self.members.iter().map(|member| member.name.clone()).collect();
        for name in names {
            self.kill(&name);
        }
        if let Some(mut etcd) = self.etcd.take() {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
    }
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, HarnessError> {
    std::fs::File::create(dir.join(name)).map_err(|err| step(format!("creating {name}"), err))
}

/// The postmaster's pid, from the first line of `postmaster.pid`.
fn postmaster_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// Sends `signal` to `pid` and its children (stopped first when killing, so that it
/// starts no process while they are found).
fn signal_tree(pid: u32, signal: nix::sys::signal::Signal) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if signal == Signal::SIGKILL {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP);
    }
    for child in children_of(pid) {
        let _ = kill(Pid::from_raw(child as i32), signal);
    }
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

/// One member's Patroni configuration: short timings, so that a failover takes
/// seconds, and the synchronous settings of the deployment example.
fn member_config(name: &str, bin: &Path, dir: &Path, etcd_port: u16, rest_port: u16, pg_port: u16) -> String {
    let (bin, dir) = (bin.display(), dir.display());
    format!(
        r#"scope: tio-test
namespace: /tio-test/
name: {name}
log:
  level: WARNING
restapi:
  listen: 127.0.0.1:{rest_port}
  connect_address: 127.0.0.1:{rest_port}
etcd3:
  hosts: 127.0.0.1:{etcd_port}
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 2
    retry_timeout: 5
    synchronous_mode: true
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      parameters:
        synchronous_commit: "on"
        wal_log_hints: "on"
  initdb:
    - encoding: UTF8
    - locale: C
postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {dir}/{name}-data
  bin_dir: {bin}
  pgpass: {dir}/{name}.pgpass
  authentication:
    superuser:
      username: postgres
      password: test-superuser
    replication:
      username: replicator
      password: test-replicator
    rewind:
      username: rewinder
      password: test-rewinder
  parameters:
    unix_socket_directories: {dir}
    fsync: "on"
    shared_buffers: 64MB
    max_connections: 200
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
"#
    )
}
