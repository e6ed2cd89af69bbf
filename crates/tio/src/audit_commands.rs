//! `tio audit`: the checkpoint public key and offline verification of an export here;
//! the commands that read a broker's log in [`crate::audit_remote`].

use std::io::BufReader;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tio_audit::export::verify_export;
use tio_audit::note::{Signer, Verifier};
use tio_store::keys::KeyRing;

use crate::audit_remote;
use crate::cli::AuditCommand;

/// Runs a `tio audit` command.
pub(crate) fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Query(args) => crate::runtime()?.block_on(audit_remote::query(args)),
        AuditCommand::Export { out, connection } => {
            crate::runtime()?.block_on(audit_remote::export(&out, &connection, true))
        }
        AuditCommand::Checkpoint { out, connection } => {
            crate::runtime()?.block_on(audit_remote::checkpoint(out.as_deref(), &connection))
        }
        AuditCommand::Report(args) => crate::runtime()?.block_on(audit_remote::report(args)),
        AuditCommand::PublicKey { keys_file: Some(keys_file), .. } => {
            let ring = KeyRing::load_file(&keys_file)?;
            let key = ring
                .audit_signing_key()
                .context("the key ring holds no audit signing key (created by `tio keys init`)")?;
            let verifier = Signer::from_private_key(key)?.verifier();
            println!("{verifier}");
            eprintln!("fingerprint: sha256:{}", verifier.fingerprint());
            Ok(())
        }
        AuditCommand::PublicKey { keys_file: None, connection } => {
            crate::runtime()?.block_on(audit_remote::public_key(&connection))
        }
        AuditCommand::Verify { dir, public_key, against } => {
            let read = |path: &std::path::Path| {
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
            };
            let verifier =
                Verifier::parse(&read(&public_key)?).context("the public key is not a signed-note verifier key")?;
            let checkpoint = read(&dir.join("checkpoint"))?;
            let older = against.as_deref().map(read).transpose()?;
            let entries_path = dir.join("entries.jsonl");
            let entries = std::fs::File::open(&entries_path)
                .with_context(|| format!("cannot read {}", entries_path.display()))?;
            let bar = ProgressBar::new(entries.metadata().map(|m| m.len()).unwrap_or(0)).with_style(
                ProgressStyle::with_template("verifying {bar:40} {bytes}/{total_bytes} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let result =
                verify_export(BufReader::new(bar.wrap_read(entries)), &checkpoint, &verifier, older.as_deref());
            bar.finish_and_clear();
            match result {
                Ok(verified) => {
                    println!(
                        "OK: {} entries match the checkpoint of {} signed by {}",
                        verified.entries,
                        verified.checkpoint.origin,
                        verifier.name()
                    );
                    if let Some(older) = verified.consistent_with {
                        println!("OK: the log extends the older checkpoint of {} entries", older.size);
                    }
                    Ok(())
                }
                Err(err) => {
                    println!("FAILED: {err}");
                    anyhow::bail!("the export does not verify")
                }
            }
        }
    }
}
