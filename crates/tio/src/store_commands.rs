//! `tio keys` and `tio store`: key management and store maintenance, on a stopped store
//! (`--data-dir`) or through the running server's admin service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tio_store::keys::KeyRing;
use tio_store::{EngineKind, Store, StoreOptions};

use tio_client::ClientError;
use tio_proto::v1;

use crate::cli::{KeyRotationArgs, KeysCommand, KeysStoreArgs, StoreCommand};
use crate::connection::ConnectionArgs;

/// Runs a `tio keys` command.
pub(crate) fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Init { keys_file, audit_origin } => {
            let mut ring = KeyRing::generate()?;
            let signer = tio_audit::note::Signer::generate(&audit_origin)
                .with_context(|| format!("invalid --audit-origin `{audit_origin}`"))?;
            ring.set_audit_signing_key(signer.private_key());
            ring.write_new_file(&keys_file)?;
            println!("created key ring {} (mode 0600)", keys_file.display());
            println!("audit checkpoint verifier key (give it to auditors): {}", signer.verifier());
            println!(
                "keep it outside the data directory and back it up separately: without it nothing stored can be read"
            );
            Ok(())
        }
        KeysCommand::Rotate(args) => match offline(&args) {
            Some(store) => crate::runtime()?.block_on(rotate(&store)),
            None => crate::runtime()?.block_on(rotate_online(&args.connection)),
        },
        KeysCommand::Retire { store, kek_version } => match offline(&store) {
            Some(offline) => crate::runtime()?.block_on(retire(&offline, kek_version)),
            None => crate::runtime()?.block_on(retire_online(&store.connection, kek_version)),
        },
    }
}

/// Runs a `tio store` command.
pub(crate) fn store(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Check(args) => check(&args),
        StoreCommand::Retention { store, dry_run, config, on } => retention(&store, dry_run, config, on.as_deref()),
        StoreCommand::Backup { data_dir: Some(data_dir), engine, out, .. } => {
            let options = engine.options()?;
            let bar = spinner("backing up");
            let summary = tio_store::backup::backup_stopped_store(&store_dir(&data_dir), &options, &out, |entries| {
                bar.set_position(entries)
            });
            bar.finish_and_clear();
            let summary = summary.context(
                "cannot back up the store (if the server is running, leave out --data-dir to back it up through the server)",
            )?;
            println!("wrote {} entries ({} bytes) to {}", summary.entries, summary.bytes, out.display());
            println!("the backup holds ciphertext only: keep the key ring's own backup to read it");
            Ok(())
        }
        StoreCommand::Backup { data_dir: None, out, connection, .. } => {
            crate::runtime()?.block_on(backup_online(&out, &connection))
        }
        StoreCommand::Restore { input, data_dir, engine } => {
            let options = engine.options()?;
            let bar = spinner("restoring");
            let summary = tio_store::backup::restore_backup(&input, &store_dir(&data_dir), &options, |entries| {
                bar.set_position(entries)
            })?;
            bar.finish_and_clear();
            match options.engine {
                EngineKind::Postgres => println!("restored {} entries into the PostgreSQL database", summary.entries),
                _ => println!("restored {} entries into {}", summary.entries, store_dir(&data_dir).display()),
            }
            Ok(())
        }
        StoreCommand::Reindex { data_dir, engine } => {
            let dir = store_dir(&data_dir);
            let bar = spinner("rebuilding the index store from the log");
            let rebuilt = tio_store::backup::reindex_stopped_store(&dir, &engine.options()?);
            bar.finish_and_clear();
            rebuilt.context("cannot rebuild the index store (the server must be stopped)")?;
            println!(
                "rebuilt the {} index store of {} from its group log; check it with `tio store check`",
                engine.index_engine,
                dir.display()
            );
            Ok(())
        }
        StoreCommand::Migrate { data_dir, index_engine } => {
            let dir = store_dir(&data_dir);
            let from = StoreOptions { engine: EngineKind::Sled, ..StoreOptions::default() };
            let to = StoreOptions { engine: EngineKind::Log, index_engine, ..StoreOptions::default() };
            let kept = dir.with_extension("tio-store-2");
            let bar = spinner("migrating");
            let migrated =
                tio_store::backup::migrate_stopped_store(&dir, &from, &to, &kept, |entries| bar.set_position(entries));
            bar.finish_and_clear();
            let migrated =
                migrated.context("cannot migrate the store (it must be stopped, and in format tio-store/2)")?;
            println!(
                "moved {} entries to the group log (index store: {index_engine}); {} is now format tio-store/3",
                migrated.entries,
                dir.display()
            );
            println!(
                "the old store is kept in {}: remove it once the server runs well on the new one \
                 (set store.engine = \"log\" and store.index_engine = \"{index_engine}\")",
                kept.display()
            );
            Ok(())
        }
    }
}

/// The stopped store's ring and data directory, or `None` to ask the running server.
fn offline(args: &KeyRotationArgs) -> Option<KeysStoreArgs> {
    args.data_dir.as_ref().map(|data_dir| KeysStoreArgs {
        keys_file: args.keys_file.clone(),
        data_dir: data_dir.clone(),
        engine: args.engine.clone(),
    })
}

impl KeysStoreArgs {
    /// How to open the stopped store.
    fn options(&self) -> anyhow::Result<StoreOptions> {
        self.engine.options()
    }
}

/// Backs up the running server's store into a new file `out`: written under a
/// temporary name, checked against its own checksum, then moved into place.
async fn backup_online(out: &Path, connection: &ConnectionArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!out.exists(), "{} already exists; a backup never overwrites a file", out.display());
    let partial = partial_path(out);
    let client = connection.connect().await?;
    let mut stream = client
        .admin()
        .backup_store(client.request(v1::BackupStoreRequest {}))
        .await
        .map_err(ClientError::from)?
        .into_inner();
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&partial).with_context(|| {
        format!("cannot create {} (remove it if an earlier backup was cut short)", partial.display())
    })?;
    let mut writer = std::io::BufWriter::new(file);
    let bar = ProgressBar::new_spinner().with_message("backing up");
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let received = async {
        while let Some(chunk) = stream.message().await.map_err(ClientError::from)? {
            std::io::Write::write_all(&mut writer, &chunk.data)?;
            bar.inc(chunk.data.len() as u64);
        }
        let file = writer.into_inner().map_err(|err| err.into_error())?;
        file.sync_all()?;
        anyhow::Ok(())
    };
    let received = received.await;
    bar.finish_and_clear();
    let checked = received.and_then(|()| {
        tio_store::backup::verify_backup(&partial).context("the backup received is not whole; nothing was kept")
    });
    let summary = match checked {
        Ok(summary) => summary,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
    };
    // A hard link fails if `out` appeared meanwhile, where a rename would replace it.
    std::fs::hard_link(&partial, out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::remove_file(&partial)?;
    println!("wrote {} entries ({} bytes) to {}, checksum verified", summary.entries, summary.bytes, out.display());
    println!("the backup holds ciphertext only: keep the key ring's own backup to read it");
    Ok(())
}

/// `FILE.partial` beside `out`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// Rotates the running server's key-encryption key, showing its progress.
async fn rotate_online(connection: &ConnectionArgs) -> anyhow::Result<()> {
    let client = connection.connect().await?;
    let mut stream = client
        .admin()
        .rotate_keys(client.request(v1::RotateKeysRequest {}))
        .await
        .map_err(ClientError::from)?
        .into_inner();
    let bar = rewrap_bar();
    let mut finished = None;
    while let Some(step) = stream.message().await.map_err(ClientError::from)? {
        if step.finished {
            finished = Some(step);
            break;
        }
        bar.set_length(step.total);
        bar.set_position(step.done);
    }
    bar.finish_and_clear();
    let done = finished.context("the server ended the rotation without saying how it went")?;
    println!("key-encryption key version {} is current; re-wrapped {} data keys", done.version, done.rewrapped);
    for old in done.versions.iter().filter(|version| **version != done.version) {
        println!("retire version {old} with: tio keys retire --kek-version {old} (and the same connection flags)");
    }
    Ok(())
}

/// Retires a key-encryption key version of the running server's ring.
async fn retire_online(connection: &ConnectionArgs, version: u32) -> anyhow::Result<()> {
    let client = connection.connect().await?;
    let response = client
        .admin()
        .retire_key(client.request(v1::RetireKeyRequest { kek_version: version }))
        .await
        .map_err(ClientError::from)?
        .into_inner();
    println!("retired key-encryption key version {version}; the ring now holds {:?}", response.versions);
    Ok(())
}

/// The progress bar of a key rotation.
fn rewrap_bar() -> ProgressBar {
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template("re-wrapping data keys {bar:40} {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

/// The ring given, or the development ring in the data directory.
fn keys_file(args: &KeysStoreArgs) -> anyhow::Result<PathBuf> {
    if let Some(file) = &args.keys_file {
        return Ok(file.clone());
    }
    let dev = args.data_dir.join("dev-keys").join("tio.keys");
    anyhow::ensure!(dev.exists(), "--keys-file is required (no development ring at {})", dev.display());
    Ok(dev)
}

async fn rotate(args: &KeysStoreArgs) -> anyhow::Result<()> {
    let file = keys_file(args)?;
    let mut ring = KeyRing::load_file(&file)?;
    let old_versions = ring.versions();
    let version = ring.add_version()?;
    // The new version is saved before any data key uses it: a crash now leaves a ring
    // that still opens everything.
    ring.replace_file(&file)?;
    let store = Store::open(&store_dir(&args.data_dir), &args.options()?, ring).context(
        "cannot open the store (if the server is running, leave out --data-dir to do this through the server)",
    )?;
    let bar = rewrap_bar();
    let rewrapped = store.rewrap_all(|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    let rewrapped = rewrapped.await?;
    bar.finish_and_clear();
    store.shutdown();
    println!("key-encryption key version {version} is current; re-wrapped {rewrapped} data keys");
    for old in old_versions {
        println!(
            "retire version {old} with: tio keys retire --keys-file {} --data-dir {} --kek-version {old}",
            file.display(),
            args.data_dir.display()
        );
    }
    Ok(())
}

async fn retire(args: &KeysStoreArgs, version: u32) -> anyhow::Result<()> {
    let file = keys_file(args)?;
    let mut ring = KeyRing::load_file(&file)?;
    anyhow::ensure!(
        version != ring.current_version(),
        "version {version} is current: rotate to a new version before retiring it"
    );
    let store = Store::open(&store_dir(&args.data_dir), &args.options()?, ring.clone()).context(
        "cannot open the store (if the server is running, leave out --data-dir to do this through the server)",
    )?;
    let still_used = store.keys_under_version(version)?;
    store.shutdown();
    anyhow::ensure!(still_used == 0, "{still_used} data keys still use version {version}: run `tio keys rotate` first");
    ring.retire(version)?;
    ring.replace_file(&file)?;
    println!("retired key-encryption key version {version}; the ring now holds {:?}", ring.versions());
    Ok(())
}

/// Lists each child's retention and, unless `dry_run`, erases what is due today: each
/// category past its retention, or the whole record once every category is.
fn retention(args: &KeysStoreArgs, dry_run: bool, config: Option<PathBuf>, on: Option<&str>) -> anyhow::Result<()> {
    use tio_broker::runtime::retention;
    use tio_core::retention::RetentionDue;
    // Layered as the server layers it, so that both apply the same rules.
    let sources =
        tio_broker::config::ConfigSources { file: config, env: std::env::vars().collect(), flags: Vec::new() };
    let rules = tio_broker::Config::load_retention(&sources)?;
    let policy = rules.policy().map_err(|(key, message)| anyhow::anyhow!("{key}: {message}"))?;
    let now = tio_broker::runtime::now();
    let today = match on {
        Some(text) => text.parse().map_err(|_| anyhow::anyhow!("--on `{text}`: expected a date such as 2030-09-01"))?,
        None => now.uk_date().context("the clock is out of range")?,
    };
    let store = Store::open(&store_dir(&args.data_dir), &args.options()?, KeyRing::load_file(&keys_file(args)?)?)
        .context("cannot open the store (stop the server first: the store is used by one process at a time)")?;
    let bar = spinner("reading every child's record");
    let plans = retention::plan(&store, &policy, |read| bar.set_message(format!("read {read} children")));
    bar.finish_and_clear();
    let plans = plans?;
    let due: Vec<&retention::ChildPlan> =
        plans.iter().filter(|plan| plan.retention.due(today) != RetentionDue::Nothing).collect();
    let (mut children_due, mut categories_due) = (0, 0);
    for plan in &plans {
        let due = plan.retention.due(today);
        let state = match (&due, plan.retention.erase_on) {
            (RetentionDue::Child, Some(day)) => format!("due for erasure since {day}"),
            (RetentionDue::Child, None) => "due for erasure: every value was erased before".to_owned(),
            (RetentionDue::Categories(categories), Some(day)) => {
                format!("{} categories due for erasure; the record is kept until {day}", categories.len())
            }
            (_, Some(day)) => format!("kept until {day}"),
            (_, None) => "nothing held".to_owned(),
        };
        match &due {
            RetentionDue::Child => children_due += 1,
            RetentionDue::Categories(categories) => categories_due += categories.len(),
            RetentionDue::Nothing => {}
        }
        println!("child {}: {state}", plan.child.to_hex());
        for category in &plan.retention.categories {
            let expired = if category.expires_on <= today { ", due for erasure" } else { "" };
            println!(
                "  {:<24} last update {}, kept until {} ({}){expired}",
                category.category.as_str(),
                category.last_update,
                category.expires_on,
                category.kept_by
            );
        }
        for category in &plan.retention.erased {
            println!("  {:<24} erased before", category.as_str());
        }
    }
    println!(
        "{} children; due for erasure on {today}: whole records {children_due}, single categories {categories_due}",
        plans.len()
    );
    if dry_run || due.is_empty() {
        store.shutdown();
        if dry_run {
            println!("dry run: nothing was changed");
        }
        return Ok(());
    }
    let erased = crate::runtime()?.block_on(async {
        let (mut children, mut categories) = (0u64, 0usize);
        for plan in &due {
            let erased = retention::erase_if_due(&store, plan, today, now).await?;
            children += u64::from(erased.child);
            categories += erased.categories.len();
        }
        Ok::<_, tio_store::StoreError>((children, categories))
    });
    store.shutdown();
    let (children, categories) = erased?;
    println!(
        "erased whole records {children}, single categories {categories} (audited; past recipients are told when \
         the server next runs)"
    );
    Ok(())
}

/// Checks a copy of the store, so that looking never changes it.
fn check(args: &KeysStoreArgs) -> anyhow::Result<()> {
    let source = store_dir(&args.data_dir);
    let ring = KeyRing::load_file(&keys_file(args)?)?;
    let scratch = tempfile::tempdir().context("cannot create a scratch directory for the copy")?;
    let copy = scratch.path().join("store");
    if args.engine.engine == EngineKind::Postgres {
        // Nothing to copy: checking reads the database and changes nothing in it.
        println!("checking the PostgreSQL database");
    } else {
        anyhow::ensure!(source.is_dir(), "no store at {}", source.display());
        copy_dir(&source, &copy).context("cannot copy the store")?;
        println!("checking a copy of {}", source.display());
    }
    // The audit log's checkpoints are checked under the ring's own checkpoint key.
    let verifier = tio_broker::runtime::storage::audit_signer(&ring).ok().map(|signer| signer.verifier());
    let store = match Store::open(&copy, &args.options()?, ring) {
        Ok(store) => store,
        Err(tio_store::StoreError::Storage(err)) if err.kind == tio_store::StorageErrorKind::Format => {
            println!("NOT CHECKED: {}", err.message);
            anyhow::bail!("the store is in another format; nothing was changed");
        }
        Err(err) => {
            println!("DAMAGED: the store does not open: {err}");
            anyhow::bail!("the store is damaged; nothing was changed");
        }
    };
    let bar = spinner("checking");
    let report = store.check();
    let audit = tio_audit_log::check_log(&store, verifier.as_ref());
    bar.finish_and_clear();
    store.shutdown();
    let (report, audit) = (report?, audit?);
    println!(
        "{} updates ({} of erased children), {} children, {} index entries, {} consent and relationship records",
        report.updates, report.erased, report.children, report.index_entries, report.sealed_records
    );
    let checkpoint = match (audit.checkpoint_size, &verifier) {
        (Some(size), _) => format!("the latest signed checkpoint covers {size}"),
        (None, Some(_)) => "no checkpoint yet".to_owned(),
        (None, None) => "checkpoints not checked (the ring holds no checkpoint key)".to_owned(),
    };
    println!(
        "audit log: {} entries, the stored tree covers {}, {checkpoint}; {} updates matched to their publish entries",
        audit.entries, audit.tree_size, audit.updates_matched
    );
    if report.is_healthy() && audit.is_healthy() {
        println!(
            "OK: every record decrypts and authenticates, no record is missing from the logs, indexes agree, \
             and the audit log matches its tree, its checkpoint and the stored updates"
        );
        return Ok(());
    }
    println!("DAMAGED: {} problems", report.problems.count() + audit.problems.count());
    for problem in report.problems.iter().chain(audit.problems.iter()) {
        println!("  - {problem}");
    }
    anyhow::bail!("the store is damaged; nothing was changed")
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn spinner(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} entries")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
