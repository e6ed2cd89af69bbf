//! `tio keys` and `tio store`: key management and store maintenance, on a stopped store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tio_store::Store;
use tio_store::keys::KeyRing;

use crate::cli::{KeysCommand, KeysStoreArgs, StoreCommand};

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
        KeysCommand::Rotate(args) => crate::runtime()?.block_on(rotate(&args)),
        KeysCommand::Retire { store, kek_version } => crate::runtime()?.block_on(retire(&store, kek_version)),
    }
}

/// Runs a `tio store` command.
pub(crate) fn store(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Check(args) => check(&args),
        StoreCommand::Backup { data_dir, out } => {
            let engine = tio_store::engine::sled::SledEngine::open(&store_dir(&data_dir))
                .context("cannot open the store (is the server still running?)")?;
            let bar = spinner("backing up");
            let summary = tio_store::backup::write_backup(&engine, &out, |entries| bar.set_position(entries))?;
            bar.finish_and_clear();
            println!("wrote {} entries ({} bytes) to {}", summary.entries, summary.bytes, out.display());
            println!("the backup holds ciphertext only: keep the key ring's own backup to read it");
            Ok(())
        }
        StoreCommand::Restore { input, data_dir } => {
            let bar = spinner("restoring");
            let summary =
                tio_store::backup::restore_backup(&input, &store_dir(&data_dir), |entries| bar.set_position(entries))?;
            bar.finish_and_clear();
            println!("restored {} entries into {}", summary.entries, store_dir(&data_dir).display());
            Ok(())
        }
    }
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
    let store = Store::open(&store_dir(&args.data_dir), ring)
        .context("cannot open the store (is the server still running?)")?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("re-wrapping data keys {bar:40} {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
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
    let store = Store::open(&store_dir(&args.data_dir), ring.clone())
        .context("cannot open the store (is the server still running?)")?;
    let still_used = store.keys_under_version(version)?;
    store.shutdown();
    anyhow::ensure!(still_used == 0, "{still_used} data keys still use version {version}: run `tio keys rotate` first");
    ring.retire(version)?;
    ring.replace_file(&file)?;
    println!("retired key-encryption key version {version}; the ring now holds {:?}", ring.versions());
    Ok(())
}

/// Checks a copy of the store, so that looking never changes it.
fn check(args: &KeysStoreArgs) -> anyhow::Result<()> {
    let source = store_dir(&args.data_dir);
    anyhow::ensure!(source.is_dir(), "no store at {}", source.display());
    let ring = KeyRing::load_file(&keys_file(args)?)?;
    let scratch = tempfile::tempdir().context("cannot create a scratch directory for the copy")?;
    let copy = scratch.path().join("store");
    copy_dir(&source, &copy).context("cannot copy the store")?;
    println!("checking a copy of {}", source.display());
    let store = match Store::open(&copy, ring) {
        Ok(store) => store,
        Err(err) => {
            println!("DAMAGED: the store does not open: {err}");
            anyhow::bail!("the store is damaged; nothing was changed");
        }
    };
    let bar = spinner("checking");
    let report = store.check();
    bar.finish_and_clear();
    store.shutdown();
    let report = report?;
    println!(
        "{} updates ({} of erased children), {} children, {} index entries, {} consent and relationship records",
        report.updates, report.erased, report.children, report.index_entries, report.sealed_records
    );
    if report.is_healthy() {
        println!("OK: every record decrypts and authenticates, positions are contiguous, indexes agree");
        return Ok(());
    }
    println!("DAMAGED: {} problems", report.problem_count);
    for problem in &report.problems {
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
