//! Verifying an export offline: every entry against the signed checkpoint, the
//! checkpoint against the log's public key, and optionally that the log extends an
//! older checkpoint the auditor kept.

use std::io::BufReader;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use tio_audit::export::{Verified, verify_export};
use tio_audit::note::Verifier;

use crate::AuditorError;
use crate::export::{CHECKPOINT_FILE, ENTRIES_FILE};

/// The outcome of verifying an export whose files could all be read.
#[derive(Debug)]
pub enum Verdict {
    /// Everything checked out.
    Verified {
        /// What was verified.
        verified: Verified,
        /// The name of the key that signed the checkpoint.
        signer: String,
    },
    /// The export does not verify, and this is why.
    Failed(tio_audit::export::ExportError),
}

/// Verifies the export in `dir` with the public key (a signed-note verifier key) in
/// `public_key`, and, with `against`, that the log extends the older checkpoint kept in
/// that file. With `progress`, a bar on standard error follows the bytes read.
///
/// An error is a file that cannot be read or a key that does not parse; a log that does
/// not verify is [`Verdict::Failed`], so a caller can tell "could not check" from
/// "checked, and it is wrong".
pub fn verify_export_dir(
    dir: &Path,
    public_key: &Path,
    against: Option<&Path>,
    progress: bool,
) -> Result<Verdict, AuditorError> {
    let read = |path: &Path| std::fs::read_to_string(path).map_err(AuditorError::io("read", path));
    let verifier = Verifier::parse(&read(public_key)?).map_err(|err| {
        AuditorError::BadInput(format!("{} is not a signed-note verifier key: {err}", public_key.display()))
    })?;
    let checkpoint = read(&dir.join(CHECKPOINT_FILE))?;
    let older = against.map(read).transpose()?;
    let entries_path = dir.join(ENTRIES_FILE);
    let entries = std::fs::File::open(&entries_path).map_err(AuditorError::io("read", &entries_path))?;
    let bar = if progress {
        ProgressBar::new(entries.metadata().map(|m| m.len()).unwrap_or(0)).with_style(
            ProgressStyle::with_template("verifying {bar:40} {bytes}/{total_bytes} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let result = verify_export(BufReader::new(bar.wrap_read(entries)), &checkpoint, &verifier, older.as_deref());
    bar.finish_and_clear();
    Ok(match result {
        Ok(verified) => Verdict::Verified { verified, signer: verifier.name().to_owned() },
        Err(err) => Verdict::Failed(err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn could_not_check_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("tio-audit.pub");
        let err = verify_export_dir(dir.path(), &key, None, false).unwrap_err();
        assert!(matches!(err, AuditorError::Io { action: "read", ref path, .. } if *path == key), "{err}");
        std::fs::write(&key, "not a key\n").unwrap();
        let err = verify_export_dir(dir.path(), &key, None, false).unwrap_err();
        assert!(err.to_string().contains("is not a signed-note verifier key"), "{err}");
    }
}
