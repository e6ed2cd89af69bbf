//! The cryptography of the Tell It Once audit log: RFC 6962 Merkle trees with inclusion
//! and consistency proofs, C2SP signed-note checkpoints with Ed25519, the entry's
//! canonical form, and the export format with its offline verifier.
//!
//! Everything here is pure (no I/O beyond the reader an export is verified from, no
//! store, no gRPC): an auditor's offline verifier runs exactly the code the broker runs.
//! The log the broker keeps in its store is `tio-audit-log`.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod merkle;
pub mod note;
