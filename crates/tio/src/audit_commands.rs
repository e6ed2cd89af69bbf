//! `tio audit`: the checkpoint public key and offline verification of an export here;
//! the commands that read a broker's log in [`crate::audit_remote`].

use std::path::Path;

use anyhow::Context;
use tio_audit::note::Signer;
use tio_auditor::verify::Verdict;
use tio_store::keys::KeyRing;

use crate::audit_remote;
use crate::cli::AuditCommand;

/// Runs a `tio audit` command.
pub(crate) fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Query(args) => crate::runtime()?.block_on(audit_remote::query(args)),
        AuditCommand::Export { out, connection } => crate::runtime()?.block_on(audit_remote::export(&out, &connection)),
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
        AuditCommand::Verify { dir, public_key, against } => verify(&dir, &public_key, against.as_deref()),
    }
}

/// `tio audit verify DIR`: checks an export offline and says so, in one line per check.
pub(crate) fn verify(dir: &Path, public_key: &Path, against: Option<&Path>) -> anyhow::Result<()> {
    match tio_auditor::verify::verify_export_dir(dir, public_key, against, true)? {
        Verdict::Verified { verified, signer } => {
            println!(
                "OK: {} entries match the checkpoint of {} signed by {signer}",
                verified.entries, verified.checkpoint.origin
            );
            if let Some(older) = verified.consistent_with {
                println!("OK: the log extends the older checkpoint of {} entries", older.size);
            }
            Ok(())
        }
        Verdict::Failed(err) => {
            println!("FAILED: {err}");
            anyhow::bail!("the export does not verify")
        }
    }
}
