//! What an auditor does with a broker's audit log from outside the broker, as a client
//! of its `AuditService`: export the whole log into a directory
//! ([`export::export_log`]), verify such an export offline against the log's public
//! key ([`verify::verify_export_dir`]), and render the subject-access report for a
//! family ([`report`]).
//!
//! The `tio audit` commands and `tio demo` use it; what the bytes of an entry mean and
//! how a proof is checked stay in `tio-audit`, so this crate adds no second reading of
//! the log's format.

pub mod export;
pub mod report;
pub mod table;
pub mod time;
pub mod verify;

use std::path::PathBuf;

/// Why an auditor's operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditorError {
    /// The broker refused a call, or could not be reached.
    #[error(transparent)]
    Client(#[from] tio_client::ClientError),
    /// A file or directory could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done: `read`, `write`, `create`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An export would overwrite an earlier one.
    #[error("{} already exists; export into a new directory", .0.display())]
    ExportExists(PathBuf),
    /// The broker sent something an honest broker never sends (entries out of order,
    /// an entry not in canonical form, no checkpoint).
    #[error("{0}")]
    Protocol(String),
    /// A key or checkpoint file is not what it should be.
    #[error("{0}")]
    BadInput(String),
}

impl From<tonic::Status> for AuditorError {
    fn from(status: tonic::Status) -> AuditorError {
        AuditorError::Client(status.into())
    }
}

impl AuditorError {
    /// An I/O failure on `path` while doing `action`.
    pub(crate) fn io(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AuditorError {
        let path = path.to_owned();
        move |source| AuditorError::Io { action, path, source }
    }
}

/// Returns the entry an audit entry message carries, from its canonical bytes, after
/// checking that they are canonical (so a leaf hash computed from it is the log's).
pub fn canonical_entry(message: &tio_proto::v1::AuditEntry) -> Result<tio_audit::entry::AuditEntry, AuditorError> {
    let entry: tio_audit::entry::AuditEntry = serde_json::from_slice(&message.canonical_json).map_err(|err| {
        AuditorError::Protocol(format!("entry {} from the server does not decode: {err}", message.leaf_index))
    })?;
    if entry.canonical_bytes() != message.canonical_json || entry.leaf_index != message.leaf_index {
        return Err(AuditorError::Protocol(format!(
            "entry {} from the server is not in canonical form",
            message.leaf_index
        )));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use tio_audit::entry::AuditEntry;
    use tio_proto::v1;

    use super::*;

    #[test]
    fn entries_must_arrive_in_canonical_form() {
        let entry = AuditEntry { leaf_index: 4, action: "delivery".into(), ..AuditEntry::default() };
        let message = v1::AuditEntry { leaf_index: 4, canonical_json: entry.canonical_bytes(), ..Default::default() };
        assert_eq!(canonical_entry(&message).unwrap(), entry);
        let spaced = v1::AuditEntry { canonical_json: serde_json::to_vec_pretty(&entry).unwrap(), ..message.clone() };
        assert!(canonical_entry(&spaced).unwrap_err().to_string().contains("not in canonical form"));
        assert!(canonical_entry(&v1::AuditEntry { leaf_index: 5, ..message }).is_err());
    }
}
