//! Reading secret files (TLS private keys, the store's key ring) safely.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others may read it.
    #[error(
        "private key file {path} is readable by group or others (mode {mode:04o}); refusing to start. Fix it with: chmod 600 {path}"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Reads a secret file, refusing it if its mode lets group or others read or write it.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, SecretFileError> {
    check_secret_file_mode(path)?;
    std::fs::read(path).map_err(|source| SecretFileError::Read { path: path.to_owned(), source })
}

/// Refuses a secret file whose mode lets group or others at it.
pub fn check_secret_file_mode(path: &Path) -> Result<(), SecretFileError> {
    let metadata = std::fs::metadata(path).map_err(|source| SecretFileError::Read { path: path.to_owned(), source })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen { path: path.to_owned(), mode });
    }
    Ok(())
}

/// Writes a new file with `mode` and syncs it, refusing to replace an existing one, so
/// that a key is never written over and never readable by others even for a moment.
pub fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), SecretFileError> {
    let fail = |source| SecretFileError::Write { path: path.to_owned(), source };
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(fail)?;
    file.write_all(contents).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_group_or_world_access_and_says_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        std::fs::write(&path, b"secret").unwrap();
        for (mode, allowed) in
            [(0o600, true), (0o400, true), (0o640, false), (0o604, false), (0o644, false), (0o620, false)]
        {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let result = read_secret_file(&path);
            assert_eq!(result.is_ok(), allowed, "mode {mode:o}");
            if let Err(err) = result {
                let message = err.to_string();
                assert!(message.contains(&format!("chmod 600 {}", path.display())), "{message}");
            }
        }
    }

    #[test]
    fn new_files_get_their_mode_and_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        write_new_file(&path, b"one", 0o600).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(write_new_file(&path, b"two", 0o600), Err(SecretFileError::Write { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read_secret_file(&dir.path().join("absent.key")), Err(SecretFileError::Read { .. })));
    }
}
