//! The PostgreSQL engine: the store on a PostgreSQL cluster that several broker nodes
//! share (`store.engine = "postgres"`).
//!
//! Two tables hold every keyspace: `tio_kv (space, key, value)` for the keyed ones and
//! `tio_log (space, xid, seq, value)` for the logs. A group of batches is one
//! serializable transaction of multi-row statements: one reads the value of every key
//! the group's conditions name; the engine then decides the batches in order, as a
//! serial engine would (a batch's conditions see the writes of the batches before it
//! that held; a batch whose condition fails writes nothing); and one statement per kind
//! of write (upserts, deletes, log records), sent together, stores what the group
//! leaves. A serialization failure (another node touched what a condition read) retries
//! the whole group; it never commits part of one. With `synchronous_commit` on (checked
//! at connection), the commit is the sync: [`Engine::sync`] has nothing left to do.
//!
//! A log position is `(xid, n)`, 16 bytes big-endian: the writing transaction's id and
//! the record's place among the group's appends. Transactions commit out of id order, so a reader would skip a
//! record whose transaction commits after a later one was read; log scans therefore
//! return only records of transactions below the snapshot's `xmin` (every transaction
//! before it has ended), and a commit returns only once its own records are below it,
//! so that reads see every applied batch, as the interface promises. Never a counter
//! row: its lock would be held through every commit's WAL flush.
//!
//! The engine runs on threads of its own (a small tokio runtime and a connection pool),
//! and the store's synchronous calls wait for it; from a worker of a multi-threaded
//! runtime they wait through `block_in_place`, so a database round trip never holds up
//! the other tasks on that worker.
//!
//! The database holds only what the store hands every engine: blind indexes and
//! ciphertext. Errors never carry the connection string (it may hold a password) nor
//! the server's detail lines (they may quote a key).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, NoTls};

use super::{
    Applied, Batch, CommitError, Condition, Engine, Entries, Entry, Found, Keyspace, Op, Position, Read, StorageError,
    StorageErrorKind, Touched, validate_batch,
};

/// The schema this release creates and reads; a database at another version is
/// refused rather than changed.
const SCHEMA_VERSION: i32 = 1;

/// The advisory lock key under which nodes create the schema one at a time
/// (`tio` in ASCII, so that it is recognisable in `pg_locks`).
const SCHEMA_LOCK: i64 = 0x74_69_6f;

/// How long a connection may take to open when the connection string sets no
/// `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a probe of the database ([`Engine::reachable`]) waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a group is tried again after a serialization failure before the writers
/// are told it failed.
const MAX_GROUP_ATTEMPTS: u32 = 16;

/// The longest a commit waits for its records to become readable in log order (for
/// transactions of other nodes begun before it to end); past it, the commit is
/// answered anyway and readers see the records a little later.
const VISIBILITY_WAIT: Duration = Duration::from_secs(2);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tio_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS tio_kv (
    space smallint NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (space, key)
);
CREATE TABLE IF NOT EXISTS tio_log (
    space smallint NOT NULL,
    xid bigint NOT NULL,
    seq bigint NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (space, xid, seq)
);
CREATE TABLE IF NOT EXISTS tio_groups (
    token bytea PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now()
);
"#;

const XACT_ID: &str = "SELECT pg_current_xact_id()::text::bigint";
/// Every group's transaction writes a token of its own, so that a group whose COMMIT
/// went unanswered can be settled by the token rather than by its transaction id,
/// which a promoted standby may give again to another transaction.
const WRITE_TOKEN: &str = "INSERT INTO tio_groups (token) VALUES ($1)";
/// Settles an unanswered group: inserting its token waits for the group's transaction
/// if it is still running, then inserts nothing if the group committed, or takes the
/// token if it did not, so that the group can never commit afterwards.
const CLAIM_TOKEN: &str = "INSERT INTO tio_groups (token) VALUES ($1) ON CONFLICT DO NOTHING";
/// A token is needed only until its group is settled, within OUTCOME_WAIT; an hour
/// leaves room for a node stalled far longer.
const FORGET_TOKENS: &str = "DELETE FROM tio_groups WHERE at < now() - interval '1 hour'";
/// How often a node forgets old tokens.
const FORGET_EVERY: Duration = Duration::from_secs(300);
/// How old a token may be and still settle its group: well inside the hour it is kept,
/// since a token forgotten would be claimed as if its group had never committed.
const TOKEN_TRUSTED: Duration = Duration::from_secs(30 * 60);
const TAKE_COMMIT_TURN: &str = "SELECT pg_advisory_lock($1)";
const GIVE_COMMIT_TURN: &str = "SELECT pg_advisory_unlock($1)";

/// The session advisory lock a group holds from before its transaction begins until
/// after it commits (`tio2` in ASCII): groups of every node commit one at a time, so a
/// later group's transaction id, and so its records' log positions, come after every
/// group committed before it. Without it, a group could take its snapshot and id
/// before another node's group committed and itself commit after it: serialized
/// before that group (it read what that group overwrote, as a delivery reads the
/// consent a withdrawal revises) yet logged after it, so the audit log would show a
/// delivery after the withdrawal that it preceded.
const COMMIT_TURN_LOCK: i64 = 0x7469_6f32;
const READ_CONDITIONS: &str = "SELECT c.s, c.k, t.value FROM unnest($1::int2[], $2::bytea[]) AS c(s, k) \
     LEFT JOIN tio_kv t ON t.space = c.s AND t.key = c.k";
const UPSERT: &str = "INSERT INTO tio_kv (space, key, value) SELECT * FROM unnest($1::int2[], $2::bytea[], $3::bytea[]) \
     ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value";
const DELETE: &str =
    "DELETE FROM tio_kv t USING unnest($1::int2[], $2::bytea[]) AS d(s, k) WHERE t.space = d.s AND t.key = d.k";
const APPEND: &str = "INSERT INTO tio_log (space, xid, seq, value) \
     SELECT a.s, $1, a.q, a.v FROM unnest($2::int2[], $3::int8[], $4::bytea[]) AS a(s, q, v)";
const XMIN: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint";
const GET_KV: &str = "SELECT value FROM tio_kv WHERE space = $1 AND key = $2";
const GET_LOG: &str = "SELECT value FROM tio_log WHERE space = $1 AND xid = $2 AND seq = $3";
const SCAN_KV: &str = "SELECT key, value FROM tio_kv WHERE space = $1 AND key >= $2 ORDER BY key LIMIT $3";
const SCAN_KV_TO: &str =
    "SELECT key, value FROM tio_kv WHERE space = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4";
const SCAN_LOG: &str = "SELECT xid, seq, value FROM tio_log WHERE space = $1 AND (xid, seq) >= ($2, $3) \
     AND (xid, seq) < ($4, $5) AND xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
     ORDER BY xid, seq LIMIT $6";
const LAST_KV: &str = "SELECT key, value FROM tio_kv WHERE space = $1 ORDER BY key DESC LIMIT 1";
const LAST_LOG: &str = "SELECT xid, seq, value FROM tio_log WHERE space = $1 \
     AND xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint ORDER BY xid DESC, seq DESC LIMIT 1";
const SIZE: &str = "SELECT (pg_total_relation_size('tio_kv') + pg_total_relation_size('tio_log'))::bigint";

/// How to reach the database.
#[derive(Clone)]
pub struct PostgresOptions {
    /// A libpq-style connection string: `postgresql://…` or `host=… user=… dbname=…`
    /// (several hosts, `target_session_attrs=read-write` for failover). It may carry a
    /// password, so it is never logged or put in an error.
    pub url: String,
    /// A password to use when the connection string has none (read from a file or the
    /// environment by the caller).
    pub password: Option<String>,
    /// The most connections the engine opens.
    pub pool_size: usize,
    /// How the engine holds the database against maintenance: see [`Hold`].
    pub hold: Hold,
    /// TLS to the database (rustls): required, and the server's certificate verified
    /// against these roots and the connection string's host name, when given.
    pub tls: Option<PostgresTls>,
}

/// How an engine holds its database, by a session advisory lock on a connection of
/// its own kept for the engine's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Not at all (tests, tools that only read).
    Nothing,
    /// As one broker node of several: a shared hold, which maintenance's exclusive one
    /// refuses, on a connection that also listens for the other nodes' commits.
    Node,
    /// For maintenance alone (backup, restore, check): refused while any node runs, and
    /// refusing every node while held.
    Maintenance,
}

/// TLS to the database.
#[derive(Clone)]
pub struct PostgresTls {
    /// PEM certificates of the authorities that issue the database's certificate.
    pub ca_pem: Vec<u8>,
    /// A PEM client certificate chain and its key, for a database that asks for one.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for PostgresTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTls").field("client_certificate", &self.client.is_some()).finish_non_exhaustive()
    }
}

impl PostgresTls {
    fn connector(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StorageError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |what: &str, err: &dyn std::fmt::Display| {
            StorageError::new(StorageErrorKind::Io, format!("store.postgres: {what}: {err}"))
        };
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let certificate = certificate.map_err(|err| bad("ca_file is not PEM certificates", &err))?;
            roots.add(certificate).map_err(|err| bad("a certificate of ca_file is not usable", &err))?;
        }
        if roots.is_empty() {
            return Err(bad("ca_file", &"holds no certificate"));
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|err| bad("TLS", &err))?
            .with_root_certificates(roots);
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain = CertificateDer::pem_slice_iter(chain)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|err| bad("cert_file is not PEM certificates", &err))?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|err| bad("key_file is not a PEM key", &err))?;
                builder.with_client_auth_cert(chain, key).map_err(|err| bad("the client certificate", &err))?
            }
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions").field("pool_size", &self.pool_size).finish_non_exhaustive()
    }
}

impl PostgresOptions {
    /// The default number of connections.
    pub const DEFAULT_POOL_SIZE: usize = 16;

    /// Options for `url` with the default pool and no separate password.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            password: None,
            pool_size: PostgresOptions::DEFAULT_POOL_SIZE,
            hold: Hold::Nothing,
            tls: None,
        }
    }
}

/// The store on PostgreSQL. See the module documentation.
pub struct PostgresEngine {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    /// The connection holding the database for maintenance, if the engine took it.
    _holder: Option<tokio_postgres::Client>,
    /// This engine among the nodes: its commits' notices carry it, so that it passes
    /// over its own.
    id: u64,
    /// Who is told of other nodes' commits.
    watchers: Watchers,
    /// The keyspaces committed since the last notice was sent.
    unannounced: std::sync::Arc<AtomicU32>,
    /// Rung after each commit that wrote something, for the notice sender.
    doorbell: std::sync::Arc<tokio::sync::Notify>,
}

/// The callbacks told of other nodes' commits.
type Watchers = std::sync::Arc<std::sync::Mutex<Vec<super::ForeignCommits>>>;

/// Tells every watcher that another node touched `touched`.
fn wake(watchers: &Watchers, touched: Touched) {
    let callbacks = watchers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    for callback in callbacks {
        callback(touched);
    }
}

impl std::fmt::Debug for PostgresEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEngine").finish_non_exhaustive()
    }
}

impl PostgresEngine {
    /// Connects, checks that commits are durable (`synchronous_commit` not `off`), and
    /// creates the schema if the database has none.
    pub fn connect(options: &PostgresOptions) -> Result<PostgresEngine, StorageError> {
        let mut config = tokio_postgres::Config::from_str(&options.url).map_err(|err| {
            // The parser's message names the part it could not read, never the string.
            StorageError::new(StorageErrorKind::Io, format!("store.postgres.url is not a connection string: {err}"))
        })?;
        if config.get_password().is_none()
            && let Some(password) = &options.password
        {
            config.password(password.as_bytes());
        }
        if config.get_application_name().is_none() {
            config.application_name("tio");
        }
        if config.get_connect_timeout().is_none() {
            // A database that drops packets must not hang the node's start for ever.
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tio-postgres")
            .enable_all()
            .build()
            .map_err(|err| StorageError::from_io("starting the PostgreSQL engine's threads", &err))?;
        let tls = options.tls.as_ref().map(PostgresTls::connector).transpose()?;
        if tls.is_some() {
            // Never fall back to a connection in the clear.
            config.ssl_mode(SslMode::Require);
        } else if config.get_ssl_mode() == SslMode::Require {
            return Err(StorageError::new(
                StorageErrorKind::Io,
                "store.postgres.url asks for TLS (sslmode=require): give store.postgres.ca_file, the authority \
                 that verifies the database's certificate",
            ));
        }
        let recycling = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match &tls {
            Some(tls) => Manager::from_config(config.clone(), tls.clone(), recycling),
            None => Manager::from_config(config.clone(), NoTls, recycling),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|err| StorageError::new(StorageErrorKind::Io, format!("PostgreSQL connection pool: {err}")))?;
        let mut engine = PostgresEngine {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            pool,
            _holder: None,
            id: engine_id(),
            watchers: Watchers::default(),
            unannounced: std::sync::Arc::default(),
            doorbell: std::sync::Arc::default(),
        };
        let pool = engine.pool.clone();
        engine.run(async move { prepare_database(&pool).await })??;
        match options.hold {
            Hold::Nothing => {}
            Hold::Maintenance => engine._holder = Some(engine.run(hold_exclusively(config, tls))??),
            Hold::Node => {
                let (id, watchers) = (engine.id, engine.watchers.clone());
                engine.run(async move {
                    let session = open_node_session(&config, tls.as_ref(), id, &watchers).await?;
                    tokio::spawn(keep_node_session(config, tls, id, watchers, session));
                    Ok::<_, StorageError>(())
                })??;
            }
        }
        if options.hold != Hold::Maintenance {
            let ring =
                announce_commits(engine.pool.clone(), engine.id, engine.unannounced.clone(), engine.doorbell.clone());
            engine.handle.spawn(ring);
            engine.handle.spawn(forget_old_tokens(engine.pool.clone()));
        }
        Ok(engine)
    }

    /// Runs `work` on the engine's own threads and waits for it.
    fn run<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> Result<T, StorageError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = sender.send(work.await);
        });
        let wait = || receiver.recv();
        let on_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let result = if on_worker { tokio::task::block_in_place(wait) } else { wait() };
        result.map_err(|_| StorageError::new(StorageErrorKind::Closed, "the PostgreSQL engine has stopped"))
    }

    /// Runs a read on a pooled connection, on the engine's threads.
    fn read<T, F, Fut>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pool_error)?;
            work(client).await.map_err(|err| storage_error("reading", &err))
        })?
    }
}

impl Drop for PostgresEngine {
    fn drop(&mut self) {
        self.pool.close();
        if let Some(runtime) = self.runtime.take() {
            // May be dropped inside another runtime, where a blocking shutdown panics.
            runtime.shutdown_background();
        }
    }
}

/// The session advisory lock by which nodes (shared) and maintenance (exclusive) hold
/// the database (`tio1` in ASCII).
const HOLD_LOCK: i64 = 0x74_69_6f_31;

/// The channel on which nodes tell each other of their commits.
const CHANNEL: &str = "tio_changes";

/// Returns an id for this engine that no other node's is likely to share (it names
/// the sender of a notice; nothing rests on it being secret).
fn engine_id() -> u64 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), now.as_nanos()))
}

/// A commit's notice: the sending engine and what its commits touched.
fn notice(id: u64, touched: Touched) -> String {
    format!("{id:016x} {:08x}", touched.bits())
}

/// What another engine's notice says it touched; `None` for this engine's own notice or
/// one that does not parse.
fn foreign_notice(payload: &str, own: u64) -> Option<Touched> {
    let (sender, bits) = payload.split_once(' ')?;
    let sender = u64::from_str_radix(sender, 16).ok()?;
    let bits = u32::from_str_radix(bits, 16).ok()?;
    (sender != own).then_some(Touched::from_bits(bits))
}

/// Sends a notice after commits, one at a time: commits made while one is on its way
/// go in the next, so that a busy node sends at most one per round trip. Outside the
/// writing transaction (a NOTIFY inside one takes a lock every commit then waits on).
async fn announce_commits(
    pool: Pool,
    id: u64,
    unannounced: std::sync::Arc<AtomicU32>,
    doorbell: std::sync::Arc<tokio::sync::Notify>,
) {
    loop {
        doorbell.notified().await;
        let touched = Touched::from_bits(unannounced.swap(0, Ordering::AcqRel));
        if touched.is_empty() {
            continue;
        }
        let sent = async {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &notice(id, touched)])
                .await
                .map_err(|err| storage_error("telling other nodes of a commit", &err))
        };
        if let Err(err) = sent.await {
            // The other nodes read again on their own soon; nothing is lost.
            tracing::debug!(error = %err, "could not tell other nodes of a commit");
        }
    }
}

/// The node's own connection: it holds the database (shared) and listens for the
/// other nodes' notices. The task driving it ends when the connection does.
struct NodeSession {
    _client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
}

/// Connects, takes the shared hold and listens for notices.
async fn open_node_session(
    config: &tokio_postgres::Config,
    tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
    id: u64,
    watchers: &Watchers,
) -> Result<NodeSession, StorageError> {
    let failed = |err: tokio_postgres::Error| storage_error("connecting to hold the database", &err);
    let (client, driver) = match tls {
        Some(tls) => {
            let (client, connection) = config.connect(tls.clone()).await.map_err(failed)?;
            (client, tokio::spawn(forward_notices(connection, id, watchers.clone())))
        }
        None => {
            let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
            (client, tokio::spawn(forward_notices(connection, id, watchers.clone())))
        }
    };
    let held: bool = client
        .query_one("SELECT pg_try_advisory_lock_shared($1)", &[&HOLD_LOCK])
        .await
        .map_err(|err| storage_error("holding the database", &err))?
        .get(0);
    if !held {
        driver.abort();
        return Err(StorageError::new(
            StorageErrorKind::Io,
            "a maintenance command (tio store backup, restore or check) holds this database: start the node \
             once it has finished",
        ));
    }
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(|err| storage_error("listening", &err))?;
    Ok(NodeSession { _client: client, driver })
}

/// Keeps the node's connection: when it ends, connects again (backing off), then tells
/// the watchers that anything may have changed meanwhile.
async fn keep_node_session(
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    id: u64,
    watchers: Watchers,
    mut session: NodeSession,
) {
    loop {
        let _ = (&mut session.driver).await;
        tracing::warn!(
            "the node's own connection to the database ended (it listens for other nodes' commits); \
             connecting again"
        );
        let mut pause = Duration::from_millis(100);
        session = loop {
            tokio::time::sleep(pause).await;
            match open_node_session(&config, tls.as_ref(), id, &watchers).await {
                Ok(session) => break session,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot connect again to listen for other nodes' commits");
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        };
        wake(&watchers, Touched::EVERYTHING);
    }
}

/// Drives the node's connection, passing other engines' notices to the watchers.
async fn forward_notices<S, T>(mut connection: tokio_postgres::Connection<S, T>, id: u64, watchers: Watchers)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(note))) => {
                if let Some(touched) = foreign_notice(note.payload(), id) {
                    wake(&watchers, touched);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                tracing::warn!(error = %err, "the node's own connection to the database failed");
                return;
            }
            None => return,
        }
    }
}

/// Opens a connection of its own and takes the exclusive lock on it; the lock lasts
/// as long as the connection.
async fn hold_exclusively(
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
) -> Result<tokio_postgres::Client, StorageError> {
    let failed = |err: tokio_postgres::Error| storage_error("connecting to hold the database", &err);
    let ended = |err: tokio_postgres::Error| {
        tracing::warn!(error = %err, "the connection holding the database for this node ended");
    };
    let client = match tls {
        Some(tls) => {
            let (client, connection) = config.connect(tls).await.map_err(failed)?;
            tokio::spawn(async move { connection.await.unwrap_or_else(ended) });
            client
        }
        None => {
            let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
            tokio::spawn(async move { connection.await.unwrap_or_else(ended) });
            client
        }
    };
    let held: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&HOLD_LOCK])
        .await
        .map_err(|err| storage_error("holding the database", &err))?
        .get(0);
    if !held {
        return Err(StorageError::new(
            StorageErrorKind::Io,
            "a broker node (or another maintenance command) is using this database: stop every node before \
             a backup, restore or check of the stopped store",
        ));
    }
    Ok(client)
}

async fn prepare_database(pool: &Pool) -> Result<(), StorageError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let durable: String = client
        .query_one("SHOW synchronous_commit", &[])
        .await
        .map_err(|err| storage_error("reading synchronous_commit", &err))?
        .get(0);
    if durable == "off" {
        return Err(StorageError::new(
            StorageErrorKind::Io,
            "the database has synchronous_commit = off, so a commit could be acknowledged before it is \
             flushed: set it to on (or remote_apply with a synchronous standby)",
        ));
    }
    let tx = client.transaction().await.map_err(|err| storage_error("creating the schema", &err))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(|err| storage_error("creating the schema", &err))?;
    tx.batch_execute(SCHEMA).await.map_err(|err| storage_error("creating the schema", &err))?;
    let versions: Vec<i32> = tx
        .query("SELECT version FROM tio_schema", &[])
        .await
        .map_err(|err| storage_error("reading the schema version", &err))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    match versions.as_slice() {
        [] => {
            tx.execute("INSERT INTO tio_schema (version) VALUES ($1)", &[&SCHEMA_VERSION])
                .await
                .map_err(|err| storage_error("creating the schema", &err))?;
        }
        [version] if *version == SCHEMA_VERSION => {}
        other => {
            return Err(StorageError::new(
                StorageErrorKind::Format,
                format!(
                    "the database holds a Tell It Once schema of version {other:?}; this release reads version \
                     {SCHEMA_VERSION}: move the store with tio store backup and restore"
                ),
            ));
        }
    }
    tx.commit().await.map_err(|err| storage_error("creating the schema", &err))
}

fn space_code(space: Keyspace) -> i16 {
    // Keyspace::ALL has 19 entries and only ever grows at its end.
    space.index() as i16
}

/// Splits a 16-byte position into its transaction id and sequence value.
fn split_position(bytes: &[u8]) -> Option<(i64, i64)> {
    let xid = i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let seq = i64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
    (bytes.len() == 16 && xid >= 0 && seq >= 0).then_some((xid, seq))
}

fn position_bytes(xid: i64, seq: i64) -> Vec<u8> {
    [xid.to_be_bytes(), seq.to_be_bytes()].concat()
}

/// The smallest 16-byte position at or after `key` in byte order, as `(xid, seq)`;
/// `None` if there is none.
fn first_position_from(key: &[u8]) -> Option<(i64, i64)> {
    let mut padded = [0u8; 16];
    if key.len() <= 16 {
        padded[..key.len()].copy_from_slice(key);
        return Some(as_pair(u128::from_be_bytes(padded)));
    }
    padded.copy_from_slice(&key[..16]);
    // Longer than a position with the same first 16 bytes: after that position.
    u128::from_be_bytes(padded).checked_add(1).map(as_pair)
}

/// The exclusive upper bound, as `(xid, seq)`, of the 16-byte positions before `key`.
fn positions_before(key: &[u8]) -> (i64, i64) {
    first_position_from(key).unwrap_or((i64::MAX, i64::MAX))
}

fn as_pair(value: u128) -> (i64, i64) {
    // Positions are two non-negative i64s; a bound past them clamps to the largest.
    let xid = (value >> 64) as u64;
    let seq = value as u64;
    if xid > i64::MAX as u64 {
        (i64::MAX, i64::MAX)
    } else if seq > i64::MAX as u64 {
        (xid as i64, i64::MAX)
    } else {
        (xid as i64, seq as i64)
    }
}

fn clamp_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn pool_error(err: deadpool_postgres::PoolError) -> StorageError {
    match err {
        deadpool_postgres::PoolError::Backend(err) => storage_error("connecting", &err),
        // A connection not had in time: the database does not answer.
        other => StorageError::new(StorageErrorKind::Unavailable, format!("PostgreSQL connection pool: {other}")),
    }
}

/// Describes a database error by its SQLSTATE and primary message only: the detail
/// line may quote a key.
fn storage_error(context: &str, err: &tokio_postgres::Error) -> StorageError {
    let Some(db) = err.as_db_error() else {
        // Not the server's answer: the connection (refused, lost, timed out), which may
        // come back, or a certificate refused, which will not. Its message names the
        // failure, never the connection string.
        let kind = if refused_certificate(err) { StorageErrorKind::Io } else { StorageErrorKind::Unavailable };
        return StorageError::new(kind, format!("PostgreSQL {context}: {err}"));
    };
    let code = db.code();
    let kind = if *code == SqlState::DISK_FULL || *code == SqlState::INSUFFICIENT_RESOURCES {
        StorageErrorKind::NoSpace
    } else if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
        StorageErrorKind::Corrupt
    } else if [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::READ_ONLY_SQL_TRANSACTION,
    ]
    .contains(code)
    {
        // Shutting down, recovering, or a standby: another server may take over.
        StorageErrorKind::Unavailable
    } else {
        StorageErrorKind::Io
    };
    StorageError::new(kind, format!("PostgreSQL {context}: {} ({})", db.message(), code.code()))
}

/// Whether TLS refused the connection (the database's certificate not verified, or
/// ours not accepted): a matter of configuration, not of the database's availability.
fn refused_certificate(err: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        // TLS streams report rustls's errors inside an io::Error, whose `source` skips them.
        let inner = cause.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
        if cause.is::<rustls::Error>() || inner.is_some_and(|inner| inner.is::<rustls::Error>()) {
            return true;
        }
        source = cause.source();
    }
    false
}

fn retryable(err: &tokio_postgres::Error) -> bool {
    err.code()
        .is_some_and(|code| *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED)
}

/// What the database said of one batch: the failed condition, or the positions.
type BatchOutcome = Result<Vec<Position>, usize>;

/// A keyspace's code and a key.
type SpaceKey = (i16, Vec<u8>);

/// A group worked out against the values its conditions read: each batch's outcome,
/// and the writes of those that hold, as the multi-row statements take them.
#[derive(Default)]
struct GroupWrites {
    outcomes: Vec<BatchOutcome>,
    /// Every key the group leaves set or removed, with its final value.
    finals: BTreeMap<SpaceKey, Option<Vec<u8>>>,
    log_space: Vec<i16>,
    log_seq: Vec<i64>,
    log_value: Vec<Vec<u8>>,
}

/// Decides each batch of `batches` in order, as a serial engine would: its conditions
/// against the values read before the group (`read`) overlaid with the writes of the
/// batches before it that held, and its appends at `(xid, n)`, n counting the group's
/// appends.
fn plan_group(batches: &[Batch], mut current: HashMap<SpaceKey, Option<Vec<u8>>>, xid: i64) -> GroupWrites {
    let mut plan = GroupWrites::default();
    let mut seq: i64 = 0;
    for batch in batches {
        let failed = batch.conditions.iter().position(|condition| {
            let (Condition::Absent { space, key } | Condition::Equals { space, key, .. }) = condition;
            let value = current.get(&(space_code(*space), key.clone())).cloned().flatten();
            match condition {
                Condition::Absent { .. } => value.is_some(),
                Condition::Equals { value: expected, .. } => value.as_ref() != Some(expected),
            }
        });
        if let Some(index) = failed {
            plan.outcomes.push(Err(index));
            continue;
        }
        let mut positions: Vec<Vec<u8>> = Vec::new();
        let mut set = |space: Keyspace, key: Vec<u8>, value: Option<Vec<u8>>| {
            let space_key = (space_code(space), key);
            current.insert(space_key.clone(), value.clone());
            plan.finals.insert(space_key, value);
        };
        for op in &batch.ops {
            match op {
                Op::Put { space, key, value } => set(*space, key.clone(), Some(value.clone())),
                Op::Delete { space, key } => set(*space, key.clone(), None),
                Op::Append { space, value } => {
                    positions.push(position_bytes(xid, seq));
                    plan.log_space.push(space_code(*space));
                    plan.log_seq.push(seq);
                    plan.log_value.push(value.clone());
                    seq += 1;
                }
                // validate_batch bounds `append` by the batch's appends.
                Op::PutAtPosition { space, prefix, append, value } => {
                    let key = [prefix.as_slice(), positions[*append].as_slice()].concat();
                    set(*space, key, Some(value.clone()));
                }
                Op::PutPosition { space, key, prefix, append } => {
                    let value = [prefix.as_slice(), positions[*append].as_slice()].concat();
                    set(*space, key.clone(), Some(value));
                }
            }
        }
        plan.outcomes.push(Ok(positions.into_iter().map(Position::from_bytes).collect()));
    }
    plan
}

/// Commits a group in one serializable transaction: reads every condition's key in
/// one statement, decides the batches here, then writes with one statement per kind
/// (sent together), and commits. A serialization failure retries the whole group.
async fn commit_group(pool: Pool, batches: Vec<Batch>) -> Result<Vec<BatchOutcome>, StorageError> {
    let condition_keys: BTreeSet<SpaceKey> = batches
        .iter()
        .flat_map(|batch| &batch.conditions)
        .map(|condition| {
            let (Condition::Absent { space, key } | Condition::Equals { space, key, .. }) = condition;
            (space_code(*space), key.clone())
        })
        .collect();
    let (c_space, c_key): (Vec<i16>, Vec<Vec<u8>>) = condition_keys.into_iter().unzip();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let token = group_token()?;
        let trusted_until = Instant::now() + TOKEN_TRUSTED;
        let mut client = pool.get().await.map_err(pool_error)?;
        // The turn is taken before the transaction begins, so that its snapshot and
        // id come after the previous group's commit.
        client
            .execute(TAKE_COMMIT_TURN, &[&COMMIT_TURN_LOCK])
            .await
            .map_err(|err| storage_error("waiting for the turn to commit", &err))?;
        let outcome = async {
            let tx = client.build_transaction().isolation_level(IsolationLevel::Serializable).start().await?;
            let xact_id = tx.prepare_cached(XACT_ID).await?;
            let read_conditions = tx.prepare_cached(READ_CONDITIONS).await?;
            let xid = tx.query_one(&xact_id, &[]).await?.get::<_, i64>(0);
            let rows =
                if c_key.is_empty() { Vec::new() } else { tx.query(&read_conditions, &[&c_space, &c_key]).await? };
            let current: HashMap<SpaceKey, Option<Vec<u8>>> =
                rows.iter().map(|row| ((row.get(0), row.get(1)), row.get(2))).collect();
            let plan = plan_group(&batches, current, xid);
            let (mut u_space, mut u_key, mut u_value) = (Vec::new(), Vec::new(), Vec::new());
            let (mut d_space, mut d_key) = (Vec::new(), Vec::new());
            for ((space, key), value) in &plan.finals {
                match value {
                    Some(value) => {
                        u_space.push(*space);
                        u_key.push(key.clone());
                        u_value.push(value.clone());
                    }
                    None => {
                        d_space.push(*space);
                        d_key.push(key.clone());
                    }
                }
            }
            let upsert = tx.prepare_cached(UPSERT).await?;
            let delete = tx.prepare_cached(DELETE).await?;
            let append = tx.prepare_cached(APPEND).await?;
            let write_token = tx.prepare_cached(WRITE_TOKEN).await?;
            // Sent together; when one fails the others fail as "transaction aborted",
            // so the error that says why (a serialization failure, to retry) is kept.
            let token = token.as_slice();
            let written = tokio::join!(
                async { tx.execute(&write_token, &[&token]).await },
                async {
                    if u_key.is_empty() { Ok(0) } else { tx.execute(&upsert, &[&u_space, &u_key, &u_value]).await }
                },
                async { if d_key.is_empty() { Ok(0) } else { tx.execute(&delete, &[&d_space, &d_key]).await } },
                async {
                    if plan.log_value.is_empty() {
                        Ok(0)
                    } else {
                        tx.execute(&append, &[&xid, &plan.log_space, &plan.log_seq, &plan.log_value]).await
                    }
                },
            );
            let mut errors: Vec<tokio_postgres::Error> =
                [written.0, written.1, written.2, written.3].into_iter().filter_map(Result::err).collect();
            if !errors.is_empty() {
                let why = errors.iter().position(retryable).unwrap_or(0);
                return Err(errors.swap_remove(why));
            }
            if let Err(err) = tx.commit().await {
                // No answer to COMMIT (the connection lost, the server failing over): the
                // group may have committed or not, which its token settles.
                if err.as_db_error().is_none() {
                    return Ok(Attempt::Unknown { outcomes: plan.outcomes, error: err });
                }
                return Err(err);
            }
            Ok::<_, tokio_postgres::Error>(Attempt::Committed {
                outcomes: plan.outcomes,
                appended: (!plan.log_value.is_empty()).then_some(xid),
            })
        }
        .await;
        // A connection that cannot give the turn back is closed, which gives it back.
        let client = match client.execute(GIVE_COMMIT_TURN, &[&COMMIT_TURN_LOCK]).await {
            Ok(_) => Some(client),
            Err(err) => {
                tracing::warn!(error = %err, "a connection could not give back its turn to commit; closing it");
                drop(deadpool_postgres::Object::take(client));
                None
            }
        };
        let (outcomes, appended) = match outcome {
            Ok(Attempt::Committed { outcomes, appended }) => (outcomes, appended),
            Ok(Attempt::Unknown { outcomes, error }) => match committed(&pool, &token, trusted_until, &error).await? {
                true => (outcomes, None),
                false if attempt < MAX_GROUP_ATTEMPTS => continue,
                false => return Err(storage_error("committing a group", &error)),
            },
            Err(err) if retryable(&err) && attempt < MAX_GROUP_ATTEMPTS => {
                tokio::time::sleep(Duration::from_micros(200 << attempt.min(8))).await;
                continue;
            }
            Err(err) => return Err(storage_error("committing a group", &err)),
        };
        // Committed: durable, whatever became of the connection afterwards; readable in
        // log order soon if this connection cannot wait for it.
        if let (Some(xid), Some(client)) = (appended, &client) {
            wait_until_readable(client, xid).await?;
        }
        return Ok(outcomes);
    }
}

/// What one try of a group came to.
enum Attempt {
    /// Committed: each batch's outcome, and the transaction id if it appended.
    Committed { outcomes: Vec<BatchOutcome>, appended: Option<i64> },
    /// COMMIT was sent and no answer came: the outcomes if it committed, and why.
    Unknown { outcomes: Vec<BatchOutcome>, error: tokio_postgres::Error },
}

/// How long the engine keeps asking, on new connections, whether a group whose COMMIT
/// went unanswered committed: longer than a failover takes (Patroni's defaults promote a
/// standby within ttl + loop_wait, 40 s). The node's writes wait meanwhile, as they
/// would for any database that does not answer.
const OUTCOME_WAIT: Duration = Duration::from_secs(90);

/// A token no other group, on any node, has or will have.
fn group_token() -> Result<[u8; 16], StorageError> {
    let mut token = [0u8; 16];
    getrandom::fill(&mut token)
        .map_err(|err| StorageError::new(StorageErrorKind::Io, format!("drawing a group's token: {err}")))?;
    Ok(token)
}

/// Whether the group that wrote `token`, whose COMMIT went unanswered (`lost`),
/// committed: settled on new connections until the database answers, by claiming the
/// token (CLAIM_TOKEN). A promoted standby that never received the group's transaction
/// says it did not commit, and the claim keeps it from ever committing on a server that
/// still runs it. So a group is never answered as failed when it committed, nor applied
/// twice when it did not. After `trusted_until` the token may have been forgotten (a node
/// stalled for half an hour mid-commit) and settles nothing: the group stays in doubt.
async fn committed(
    pool: &Pool,
    token: &[u8; 16],
    trusted_until: Instant,
    lost: &tokio_postgres::Error,
) -> Result<bool, StorageError> {
    tracing::warn!(error = %lost, "a group's COMMIT went unanswered; asking the database whether it committed");
    let started = Instant::now();
    loop {
        if Instant::now() > trusted_until {
            return Err(StorageError::new(
                StorageErrorKind::Unavailable,
                format!(
                    "a group's COMMIT went unanswered more than {} minutes after it began, too late to settle \
                     whether it committed: {lost}",
                    TOKEN_TRUSTED.as_secs() / 60
                ),
            ));
        }
        match claim_token(pool, token).await {
            Ok(committed) => {
                let waited_ms = started.elapsed().as_millis() as u64;
                tracing::warn!(committed, waited_ms, "settled a group whose COMMIT went unanswered");
                return Ok(committed);
            }
            Err(err) => tracing::warn!(error = %err, "cannot yet ask whether a group committed"),
        }
        if started.elapsed() > OUTCOME_WAIT {
            return Err(StorageError::new(
                StorageErrorKind::Unavailable,
                format!(
                    "a group's COMMIT went unanswered and the database could not say within {} s whether it \
                     committed: {lost}",
                    OUTCOME_WAIT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Claims `token`: true if a committed group holds it, false if this claim took it.
async fn claim_token(pool: &Pool, token: &[u8; 16]) -> Result<bool, StorageError> {
    let client = pool.get().await.map_err(pool_error)?;
    let claimed = client
        .execute(CLAIM_TOKEN, &[&token.as_slice()])
        .await
        .map_err(|err| storage_error("asking whether a group committed", &err))?;
    Ok(claimed == 0)
}

/// Forgets tokens of groups long settled, every FORGET_EVERY.
async fn forget_old_tokens(pool: Pool) {
    loop {
        tokio::time::sleep(FORGET_EVERY).await;
        let forgotten = async {
            let client = pool.get().await.map_err(pool_error)?;
            client.execute(FORGET_TOKENS, &[]).await.map_err(|err| storage_error("forgetting old tokens", &err))
        };
        if let Err(err) = forgotten.await {
            // Tried again next time; the table only grows meanwhile.
            tracing::debug!(error = %err, "could not forget old group tokens");
        }
    }
}

/// Waits until every transaction that began before `xid` has ended, so that log scans
/// (which read below the snapshot's xmin) show the group's records.
async fn wait_until_readable(client: &deadpool_postgres::Client, xid: i64) -> Result<(), StorageError> {
    let started = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        let xmin: i64 = client.query_one(XMIN, &[]).await.map_err(|err| storage_error("reading xmin", &err))?.get(0);
        if xmin > xid {
            return Ok(());
        }
        if started.elapsed() > VISIBILITY_WAIT {
            tracing::warn!(
                waited_ms = started.elapsed().as_millis() as u64,
                "a transaction begun before this commit is still open: its records are readable in log order only \
                 once it ends"
            );
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Reads one key on `client`.
async fn get_on(
    client: &deadpool_postgres::Client,
    space: Keyspace,
    key: &[u8],
) -> Result<Option<Vec<u8>>, tokio_postgres::Error> {
    let code = space_code(space);
    if space.is_log() {
        let Some((xid, seq)) = split_position(key) else { return Ok(None) };
        let statement = client.prepare_cached(GET_LOG).await?;
        return Ok(client.query_opt(&statement, &[&code, &xid, &seq]).await?.map(|row| row.get(0)));
    }
    let statement = client.prepare_cached(GET_KV).await?;
    Ok(client.query_opt(&statement, &[&code, &key]).await?.map(|row| row.get(0)))
}

/// Scans on `client`, as [`Engine::scan`] does.
async fn scan_on(
    client: &deadpool_postgres::Client,
    space: Keyspace,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> Result<Entries, tokio_postgres::Error> {
    let code = space_code(space);
    let limit = clamp_limit(limit);
    if limit == 0 {
        return Ok(Vec::new());
    }
    if space.is_log() {
        let Some((from_xid, from_seq)) = first_position_from(start) else { return Ok(Vec::new()) };
        let (to_xid, to_seq) = end.map_or((i64::MAX, i64::MAX), positions_before);
        let statement = client.prepare_cached(SCAN_LOG).await?;
        let rows = client.query(&statement, &[&code, &from_xid, &from_seq, &to_xid, &to_seq, &limit]).await?;
        return Ok(rows.iter().map(|row| (position_bytes(row.get(0), row.get(1)), row.get(2))).collect());
    }
    let rows = match end {
        Some(end) => {
            let statement = client.prepare_cached(SCAN_KV_TO).await?;
            client.query(&statement, &[&code, &start, &end, &limit]).await?
        }
        None => {
            let statement = client.prepare_cached(SCAN_KV).await?;
            client.query(&statement, &[&code, &start, &limit]).await?
        }
    };
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

impl Engine for PostgresEngine {
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let key = key.to_vec();
        self.read(move |client| async move { get_on(&client, space, &key).await })
    }

    fn scan(&self, space: Keyspace, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Entries, StorageError> {
        let start = start.to_vec();
        let end = end.map(<[u8]>::to_vec);
        self.read(move |client| async move { scan_on(&client, space, &start, end.as_deref(), limit).await })
    }

    fn read_many(&self, reads: &[Read]) -> Result<Vec<Found>, StorageError> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let reads = reads.to_vec();
        self.read(move |client| async move {
            // Sent together on one connection: the server answers them in order, and
            // the reads wait for one round trip, not one each.
            let client = &client;
            let each = reads.iter().map(|read| async move {
                match read {
                    Read::Get { space, key } => get_on(client, *space, key).await.map(Found::Value),
                    Read::Scan { space, start, end, limit } => {
                        scan_on(client, *space, start, end.as_deref(), *limit).await.map(Found::Entries)
                    }
                }
            });
            futures_util::future::try_join_all(each).await
        })
    }

    fn last(&self, space: Keyspace) -> Result<Option<Entry>, StorageError> {
        let code = space_code(space);
        if space.is_log() {
            return self.read(move |client| async move {
                let statement = client.prepare_cached(LAST_LOG).await?;
                let row = client.query_opt(&statement, &[&code]).await?;
                Ok(row.map(|row| (position_bytes(row.get(0), row.get(1)), row.get(2))))
            });
        }
        self.read(move |client| async move {
            let statement = client.prepare_cached(LAST_KV).await?;
            Ok(client.query_opt(&statement, &[&code]).await?.map(|row| (row.get(0), row.get(1))))
        })
    }

    fn apply(&self, batch: &Batch) -> Result<Applied, CommitError> {
        self.apply_group(&[batch]).pop().unwrap_or_else(|| Err(CommitError::Invalid("no outcome".to_owned())))
    }

    fn apply_group(&self, batches: &[&Batch]) -> Vec<Result<Applied, CommitError>> {
        let mut results: Vec<Option<Result<Applied, CommitError>>> = Vec::with_capacity(batches.len());
        let mut valid = Vec::new();
        for batch in batches {
            match validate_batch(batch) {
                Ok(()) => {
                    valid.push((*batch).clone());
                    results.push(None);
                }
                Err(err) => results.push(Some(Err(err))),
            }
        }
        let touched_by: Vec<Touched> = valid.iter().map(Touched::by).collect();
        let outcomes = if valid.is_empty() {
            Ok(Vec::new())
        } else {
            let pool = self.pool.clone();
            self.run(commit_group(pool, valid)).and_then(|outcomes| outcomes)
        };
        if let Ok(outcomes) = &outcomes {
            let touched = outcomes
                .iter()
                .zip(&touched_by)
                .filter(|(outcome, _)| outcome.is_ok())
                .fold(Touched::default(), |all, (_, touched)| all.union(*touched));
            if !touched.is_empty() {
                self.unannounced.fetch_or(touched.bits(), Ordering::AcqRel);
                self.doorbell.notify_one();
            }
        }
        match outcomes {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                results
                    .into_iter()
                    .map(|result| {
                        result.unwrap_or_else(|| match outcomes.next() {
                            Some(Ok(positions)) => Ok(Applied { positions }),
                            Some(Err(index)) => Err(CommitError::Conflict { index }),
                            None => Err(CommitError::Storage(StorageError::new(
                                StorageErrorKind::Io,
                                "a group came back with fewer outcomes than batches",
                            ))),
                        })
                    })
                    .collect()
            }
            Err(err) => results.into_iter().map(|result| result.unwrap_or_else(|| Err(err.clone().into()))).collect(),
        }
    }

    fn shared(&self) -> bool {
        true
    }

    fn reachable(&self) -> Result<(), StorageError> {
        let pool = self.pool.clone();
        self.run(async move {
            let probe = async {
                let client = pool.get().await.map_err(pool_error)?;
                client.simple_query("SELECT 1").await.map_err(|err| storage_error("probing", &err))?;
                Ok(())
            };
            tokio::time::timeout(PROBE_TIMEOUT, probe).await.unwrap_or_else(|_| {
                Err(StorageError::new(
                    StorageErrorKind::Unavailable,
                    format!("the database did not answer within {} s", PROBE_TIMEOUT.as_secs()),
                ))
            })
        })?
    }

    fn watch_foreign_commits(&self, wake: super::ForeignCommits) {
        self.watchers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(wake);
    }

    fn sync(&self) -> Result<(), StorageError> {
        // Each group's transaction was committed with synchronous_commit on.
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        let size: i64 = self.read(async move |client| Ok(client.query_one(SIZE, &[]).await?.get(0)))?;
        Ok(size.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_map_byte_keys_onto_positions() {
        let position = position_bytes(5, 9);
        assert_eq!(first_position_from(&position), Some((5, 9)));
        assert_eq!(first_position_from(b""), Some((0, 0)));
        assert_eq!(first_position_from(&super::super::key_after(&position)), Some((5, 10)), "strictly after");
        assert_eq!(first_position_from(&[0, 0, 0, 0, 0, 0, 0, 5]), Some((5, 0)), "a prefix pads with zeros");
        assert_eq!(first_position_from(&[0xff; 17]), None, "nothing after the largest");
        assert_eq!(positions_before(&position), (5, 9));
        assert_eq!(positions_before(&[0xff; 3]), (i64::MAX, i64::MAX));
        assert_eq!(split_position(&position), Some((5, 9)));
        assert_eq!(split_position(b"not-a-position"), None);
        assert_eq!(split_position(&[0xff; 16]), None, "not a pair of non-negative numbers");
    }

    /// A group is decided as a serial engine would decide it: a batch's conditions see
    /// the writes of the batches before it that held, a failed batch writes nothing and
    /// takes no position, and a key's last write is the one stored.
    #[test]
    fn a_group_is_decided_batch_by_batch_over_the_writes_before() {
        let space = Keyspace::Idempotency;
        let code = space_code(space);
        let put = |key: &[u8], value: &[u8]| Op::Put { space, key: key.to_vec(), value: value.to_vec() };
        let mut first = Batch::new();
        first.require(Condition::Absent { space, key: b"k".to_vec() }).push(put(b"k", b"1"));
        first.push(Op::Append { space: Keyspace::Updates, value: b"a".to_vec() });
        let mut repeat = Batch::new();
        repeat.require(Condition::Absent { space, key: b"k".to_vec() }).push(put(b"k", b"2"));
        repeat.push(Op::Append { space: Keyspace::Updates, value: b"b".to_vec() });
        let mut follow = Batch::new();
        follow
            .require(Condition::Equals { space, key: b"k".to_vec(), value: b"1".to_vec() })
            .push(Op::Delete { space, key: b"gone".to_vec() })
            .push(Op::Append { space: Keyspace::Audit, value: b"c".to_vec() })
            .push(Op::PutPosition { space, key: b"k".to_vec(), prefix: b"p".to_vec(), append: 0 });
        let read = HashMap::from([((code, b"k".to_vec()), None)]);
        let plan = plan_group(&[first, repeat, follow], read, 42);
        assert_eq!(plan.outcomes[0], Ok(vec![Position::from_bytes(position_bytes(42, 0))]));
        assert_eq!(plan.outcomes[1], Err(0), "the first batch's key is no longer absent");
        assert_eq!(plan.outcomes[2], Ok(vec![Position::from_bytes(position_bytes(42, 1))]), "no position skipped");
        assert_eq!(plan.log_value, vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(plan.log_seq, vec![0, 1]);
        let expected = [position_bytes(42, 1)].concat();
        assert_eq!(plan.finals[&(code, b"k".to_vec())], Some([b"p".as_slice(), &expected].concat()), "the last write");
        assert_eq!(plan.finals[&(code, b"gone".to_vec())], None);
    }

    fn test_server() -> tio_pgtest::TestPostgres {
        tio_pgtest::TestPostgres::start().expect("a test PostgreSQL starts (tests/run installs it)")
    }

    #[test]
    fn passes_the_conformance_suite() {
        let server = test_server();
        super::super::conformance::run_all(&|| {
            let url = server.create_database().expect("a database");
            PostgresEngine::connect(&PostgresOptions::new(url)).expect("the engine connects")
        });
    }

    /// Two engines on one database stand for two broker nodes: racing to claim the same
    /// keys on a condition, exactly one claim of each key wins, whatever the
    /// interleaving (the serializable transaction, not a check then a write).
    #[test]
    fn conditions_hold_across_nodes() {
        let server = test_server();
        let url = server.create_database().unwrap();
        let nodes = [
            PostgresEngine::connect(&PostgresOptions::new(&url)).unwrap(),
            PostgresEngine::connect(&PostgresOptions::new(&url)).unwrap(),
        ];
        const KEYS: u32 = 60;
        let wins = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for node in &nodes {
                for writer in 0..3u8 {
                    let wins = &wins;
                    scope.spawn(move || {
                        for key in 0..KEYS {
                            let key = key.to_be_bytes().to_vec();
                            let mut batch = Batch::new();
                            batch
                                .require(Condition::Absent { space: Keyspace::Idempotency, key: key.clone() })
                                .push(Op::Put { space: Keyspace::Idempotency, key: key.clone(), value: vec![writer] })
                                .push(Op::Append { space: Keyspace::Updates, value: key });
                            match node.apply(&batch) {
                                Ok(_) => {
                                    wins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                                Err(CommitError::Conflict { index: 0 }) => {}
                                Err(other) => panic!("a claim failed: {other}"),
                            }
                        }
                    });
                }
            }
        });
        assert_eq!(wins.into_inner(), KEYS, "one claim of each key won");
        let records = nodes[0].scan(Keyspace::Updates, b"", None, usize::MAX).unwrap();
        assert_eq!(records.len(), KEYS as usize, "one record per winning claim, none from a losing one");
    }

    /// One node revises a key (as a withdrawal revises a consent) while another commits
    /// records on condition that the key is as it read it (as a delivery commits on its
    /// consent being unrevised): in log order, every record comes after the revision it
    /// read and before the next one, however the two nodes' transactions interleave.
    #[test]
    fn a_record_decided_on_a_value_is_logged_before_the_value_is_revised() {
        let server = test_server();
        let url = server.create_database().unwrap();
        let (reviser, decider) = (
            PostgresEngine::connect(&PostgresOptions::new(&url)).unwrap(),
            PostgresEngine::connect(&PostgresOptions::new(&url)).unwrap(),
        );
        const REVISIONS: u32 = 150;
        let key = b"consent".to_vec();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for revision in 1..=REVISIONS {
                    let mut batch = Batch::new();
                    batch.push(Op::Put {
                        space: Keyspace::Consents,
                        key: key.clone(),
                        value: revision.to_be_bytes().to_vec(),
                    });
                    batch.push(Op::Append {
                        space: Keyspace::Audit,
                        value: [b"w".to_vec(), revision.to_be_bytes().to_vec()].concat(),
                    });
                    reviser.apply(&batch).unwrap();
                    // Room between revisions for records decided on each.
                    std::thread::sleep(Duration::from_millis(3));
                }
                done.store(true, std::sync::atomic::Ordering::Release);
            });
            scope.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !done.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
                    let seen = reviser.get(Keyspace::Consents, &key).unwrap();
                    let mut batch = Batch::new();
                    batch.require(match &seen {
                        Some(value) => {
                            Condition::Equals { space: Keyspace::Consents, key: key.clone(), value: value.clone() }
                        }
                        None => Condition::Absent { space: Keyspace::Consents, key: key.clone() },
                    });
                    let revision = seen.map_or(0, |value| u32::from_be_bytes(value.try_into().unwrap()));
                    batch.push(Op::Append {
                        space: Keyspace::Audit,
                        value: [b"d".to_vec(), revision.to_be_bytes().to_vec()].concat(),
                    });
                    match decider.apply(&batch) {
                        Ok(_) | Err(CommitError::Conflict { index: 0 }) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
            });
        });
        let log = decider.scan(Keyspace::Audit, b"", None, usize::MAX).unwrap();
        let mut latest = 0;
        let mut decided = 0;
        for (_, record) in &log {
            let revision = u32::from_be_bytes(record[1..].try_into().unwrap());
            match record[0] {
                b'w' => latest = revision,
                _ => {
                    assert_eq!(
                        revision, latest,
                        "a record decided on revision {revision} is logged after revision {latest}"
                    );
                    decided += 1;
                }
            }
        }
        assert_eq!(latest, REVISIONS);
        assert!(decided > 10, "the two raced: {decided} records decided");
    }

    /// A group whose COMMIT went unanswered is settled by its token: committed when its
    /// transaction committed; not when it never reached this database (a promoted
    /// standby's case), and then it can never commit later; and when its transaction
    /// still runs, the answer waits for it to end and follows its outcome.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unanswered_commit_is_settled_by_its_groups_token() {
        let later = || Instant::now() + TOKEN_TRUSTED;
        let server = test_server();
        let engine = PostgresEngine::connect(&PostgresOptions::new(server.create_database().unwrap())).unwrap();
        let pool = engine.pool.clone();
        let handle = engine.handle.clone();
        handle
            .spawn(async move {
                let lost = pool.get().await.unwrap().query_one("SELECT 1/0", &[]).await.unwrap_err();
                let mut writer = pool.get().await.unwrap();

                let done = group_token().unwrap();
                let tx = writer.transaction().await.unwrap();
                tx.execute(WRITE_TOKEN, &[&done.as_slice()]).await.unwrap();
                tx.commit().await.unwrap();
                assert!(
                    committed(&pool, &done, later(), &lost).await.unwrap(),
                    "a committed group is settled as committed"
                );

                let too_late = committed(&pool, &done, Instant::now(), &lost).await.unwrap_err();
                assert_eq!(too_late.kind, StorageErrorKind::Unavailable, "a token too old to trust settles nothing");

                let never = group_token().unwrap();
                assert!(
                    !committed(&pool, &never, later(), &lost).await.unwrap(),
                    "a group the database never saw did not"
                );
                let late = writer.execute(WRITE_TOKEN, &[&never.as_slice()]).await.unwrap_err();
                assert_eq!(late.code(), Some(&SqlState::UNIQUE_VIOLATION), "and cannot commit afterwards");

                for commits in [true, false] {
                    let running = group_token().unwrap();
                    let tx = writer.transaction().await.unwrap();
                    tx.execute(WRITE_TOKEN, &[&running.as_slice()]).await.unwrap();
                    let (pool, lost) = (pool.clone(), pool.get().await.unwrap().query_one("SELECT 1/0", &[]).await);
                    let settling =
                        tokio::spawn(async move { committed(&pool, &running, later(), &lost.unwrap_err()).await });
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    assert!(!settling.is_finished(), "the answer waits for a transaction still running");
                    if commits {
                        tx.commit().await.unwrap()
                    } else {
                        tx.rollback().await.unwrap()
                    }
                    assert_eq!(settling.await.unwrap().unwrap(), commits, "and follows its outcome");
                }
            })
            .await
            .unwrap();
    }

    /// A reader paging through a log by cursor while two nodes append never skips a
    /// record and never sees one twice, though transactions commit out of id order.
    #[test]
    fn a_cursor_reader_sees_every_record_of_both_nodes_once_in_order() {
        let server = test_server();
        let url = server.create_database().unwrap();
        let nodes = [
            PostgresEngine::connect(&PostgresOptions::new(&url)).unwrap(),
            PostgresEngine::connect(&PostgresOptions::new(&url)).unwrap(),
        ];
        const PER_WRITER: u32 = 150;
        const WRITERS: u32 = 3;
        let done = std::sync::atomic::AtomicBool::new(false);
        let seen = std::thread::scope(|scope| {
            let writers: Vec<_> = nodes
                .iter()
                .enumerate()
                .flat_map(|(n, node)| (0..WRITERS).map(move |w| (n as u32 * WRITERS + w, node)))
                .map(|(writer, node)| {
                    scope.spawn(move || {
                        for item in 0..PER_WRITER {
                            let mut batch = Batch::new();
                            batch.push(Op::Append {
                                space: Keyspace::Audit,
                                value: [writer, item].map(u32::to_be_bytes).concat(),
                            });
                            node.apply(&batch).expect("an append commits");
                        }
                    })
                })
                .collect();
            let reader = scope.spawn(|| {
                let mut cursor: Vec<u8> = Vec::new();
                let mut seen: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                    let page = nodes[1].scan(Keyspace::Audit, &cursor, None, 7).unwrap();
                    if let Some((last, _)) = page.last() {
                        cursor = super::super::key_after(last);
                    }
                    let empty = page.is_empty();
                    seen.extend(page);
                    if (finished && empty) || Instant::now() > deadline {
                        return seen;
                    }
                }
            });
            for writer in writers {
                writer.join().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            reader.join().unwrap()
        });
        assert!(seen.windows(2).all(|pair| pair[0].0 < pair[1].0), "positions only increase");
        let mut values: Vec<Vec<u8>> = seen.into_iter().map(|(_, value)| value).collect();
        values.sort();
        values.dedup();
        assert_eq!(values.len() as u32, 2 * WRITERS * PER_WRITER, "every record, once");
    }

    #[test]
    fn refuses_a_database_that_acknowledges_before_flushing_and_hides_the_password() {
        let server = test_server();
        let url = server.create_database().unwrap();
        let name = url.rsplit("dbname=").next().unwrap().to_owned();
        server.psql("postgres", &format!("ALTER DATABASE {name} SET synchronous_commit = off")).unwrap();
        let err = PostgresEngine::connect(&PostgresOptions::new(&url)).expect_err("refused");
        assert!(err.to_string().contains("synchronous_commit = off"), "{err}");

        let unreachable = "postgresql://tio:s3cret-pw@127.0.0.1:1/tio?connect_timeout=2";
        let err = PostgresEngine::connect(&PostgresOptions::new(unreachable)).expect_err("no server there");
        assert!(!err.to_string().contains("s3cret-pw"), "the password stays out of errors: {err}");
        assert_eq!(err.kind, StorageErrorKind::Unavailable, "a server that does not answer may yet: {err}");
        let err = PostgresEngine::connect(&PostgresOptions::new("postgresql://tio:s3cret-pw@[::1")).err().unwrap();
        assert!(err.to_string().contains("store.postgres.url") && !err.to_string().contains("s3cret-pw"), "{err}");
    }

    /// With a CA, the engine connects over TLS and nothing else: the server's own view
    /// of the connection says TLS 1.3; a CA that did not issue the server's certificate
    /// is refused, as is a connection string that asks for TLS without a CA.
    #[test]
    fn tls_to_the_database_is_verified_and_never_falls_back() {
        let server = tio_pgtest::TestPostgres::start_with_tls().expect("a test PostgreSQL starts");
        let url = server.create_database().unwrap();
        let name = url.rsplit("dbname=").next().unwrap().to_owned();
        let tcp = server.tcp_url(&name);
        let ca_pem = server.tls_ca_pem().unwrap().as_bytes().to_vec();
        let tls = PostgresTls { ca_pem, client: None };
        let engine =
            PostgresEngine::connect(&PostgresOptions { tls: Some(tls), ..PostgresOptions::new(&tcp) }).unwrap();
        engine
            .apply(Batch::new().push(Op::Put { space: Keyspace::Agencies, key: b"a".to_vec(), value: b"1".to_vec() }))
            .unwrap();
        let pool = engine.pool.clone();
        let version: Option<String> = engine
            .run(async move {
                let client = pool.get().await.unwrap();
                client
                    .query_one("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl", &[])
                    .await
                    .map(|row| row.get(0))
                    .ok()
            })
            .unwrap();
        assert_eq!(version.as_deref(), Some("TLSv1.3"), "the engine's connection is TLS 1.3");

        let other = tio_pgtest::TestPostgres::start_with_tls().unwrap();
        let wrong = PostgresTls { ca_pem: other.tls_ca_pem().unwrap().as_bytes().to_vec(), client: None };
        let err = PostgresEngine::connect(&PostgresOptions { tls: Some(wrong), ..PostgresOptions::new(&tcp) })
            .expect_err("a certificate from another CA is refused");
        assert_eq!(err.kind, StorageErrorKind::Io, "a refused certificate is no passing outage: {err}");

        let err = PostgresEngine::connect(&PostgresOptions::new(format!("{tcp} sslmode=require")))
            .expect_err("TLS asked for without a CA");
        assert!(err.to_string().contains("store.postgres.ca_file"), "{err}");
        let not_pem = PostgresTls { ca_pem: b"not a certificate".to_vec(), client: None };
        let err = PostgresEngine::connect(&PostgresOptions { tls: Some(not_pem), ..PostgresOptions::new(&tcp) })
            .expect_err("a CA file without certificates");
        assert!(err.to_string().contains("ca_file"), "{err}");
    }

    /// A single-threaded runtime cannot lend its thread: the engine's own threads do the
    /// work while the caller waits, and a read and a commit from it complete.
    #[tokio::test(flavor = "current_thread")]
    async fn reads_and_commits_from_a_single_threaded_runtime_complete() {
        let server = test_server();
        let engine = PostgresEngine::connect(&PostgresOptions::new(server.create_database().unwrap())).unwrap();
        let put = Op::Put { space: Keyspace::Cursors, key: b"c".to_vec(), value: b"1".to_vec() };
        engine.apply(Batch::new().push(put)).unwrap();
        assert_eq!(engine.get(Keyspace::Cursors, b"c").unwrap(), Some(b"1".to_vec()));
    }

    /// Nodes hold the database together; maintenance holds it alone: a maintenance
    /// command is refused while a node runs, and a node while maintenance runs, each
    /// saying why, and the hold goes with its engine.
    #[test]
    fn nodes_share_the_database_and_maintenance_has_it_alone() {
        let server = test_server();
        let url = server.create_database().unwrap();
        let node = PostgresOptions { hold: Hold::Node, ..PostgresOptions::new(&url) };
        let maintenance = PostgresOptions { hold: Hold::Maintenance, ..PostgresOptions::new(&url) };
        let first = PostgresEngine::connect(&node).unwrap();
        let second = PostgresEngine::connect(&node).expect("a second node shares the database");
        let err = PostgresEngine::connect(&maintenance).expect_err("maintenance is refused while nodes run");
        assert!(err.to_string().contains("a broker node"), "{err}");
        drop((first, second));
        let connect_when_free = |options: &PostgresOptions| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match PostgresEngine::connect(options) {
                    Ok(engine) => return engine,
                    Err(err) => assert!(Instant::now() < deadline, "the hold went with the engines: {err}"),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let held = connect_when_free(&maintenance);
        let err = PostgresEngine::connect(&maintenance).expect_err("maintenance runs one at a time");
        assert!(err.to_string().contains("is using this database"), "{err}");
        let err = PostgresEngine::connect(&node).expect_err("a node is refused during maintenance");
        assert!(err.to_string().contains("a maintenance command"), "{err}");
        drop(held);
        drop(connect_when_free(&node));
    }

    /// A node hears of another node's commits, with what they touched, and not of its
    /// own; a commit that writes nothing (every batch refused) says nothing.
    #[test]
    fn a_node_hears_of_the_other_nodes_commits_and_not_its_own() {
        let server = test_server();
        let url = server.create_database().unwrap();
        let node = PostgresOptions { hold: Hold::Node, ..PostgresOptions::new(&url) };
        let (writer, listener) = (PostgresEngine::connect(&node).unwrap(), PostgresEngine::connect(&node).unwrap());
        let (sender, heard) = std::sync::mpsc::channel::<(&str, Touched)>();
        let to_listener = sender.clone();
        listener.watch_foreign_commits(std::sync::Arc::new(move |touched| {
            let _ = to_listener.send(("listener", touched));
        }));
        writer.watch_foreign_commits(std::sync::Arc::new(move |touched| {
            let _ = sender.send(("writer", touched));
        }));
        let mut refused = Batch::new();
        refused.require(Condition::Equals { space: Keyspace::Agencies, key: b"a".to_vec(), value: b"x".to_vec() });
        refused.push(Op::Put { space: Keyspace::Consents, key: b"c".to_vec(), value: b"v".to_vec() });
        assert!(matches!(writer.apply(&refused), Err(CommitError::Conflict { index: 0 })));
        let mut batch = Batch::new();
        batch.push(Op::Put { space: Keyspace::Agencies, key: b"a".to_vec(), value: b"v".to_vec() });
        batch.push(Op::Append { space: Keyspace::Audit, value: b"e".to_vec() });
        writer.apply(&batch).unwrap();
        let (who, touched) = heard.recv_timeout(Duration::from_secs(10)).expect("the other node hears of the commit");
        assert_eq!(who, "listener");
        assert_eq!(touched, Touched::default().with(Keyspace::Agencies).with(Keyspace::Audit));
        listener.apply(&batch).unwrap();
        let (who, touched) = heard.recv_timeout(Duration::from_secs(10)).expect("and the first of the second's");
        assert_eq!(who, "writer");
        assert!(touched.contains(Keyspace::Agencies));
        assert!(heard.recv_timeout(Duration::from_millis(500)).is_err(), "nobody hears of its own commits");
    }

    #[test]
    fn a_notice_names_its_sender_and_what_it_touched() {
        let touched = Touched::default().with(Keyspace::Consents);
        assert_eq!(foreign_notice(&notice(7, touched), 8), Some(touched));
        assert_eq!(foreign_notice(&notice(7, touched), 7), None, "its own");
        assert_eq!(foreign_notice("garbage", 8), None);
    }

    /// Called from async code on a multi-threaded runtime (where the engine waits
    /// through `block_in_place`), many tasks reading at once on two workers all finish;
    /// the single-threaded case is the next test.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_from_many_async_tasks_on_two_workers_all_finish() {
        let server = test_server();
        let engine = std::sync::Arc::new(
            PostgresEngine::connect(&PostgresOptions::new(server.create_database().unwrap())).unwrap(),
        );
        engine
            .apply(Batch::new().push(Op::Put { space: Keyspace::Agencies, key: b"a".to_vec(), value: b"1".to_vec() }))
            .unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let engine = engine.clone();
                tokio::spawn(async move { engine.get(Keyspace::Agencies, b"a").unwrap() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Some(b"1".to_vec()));
        }
        assert!(engine.size_on_disk().unwrap() > 0);
    }
}
