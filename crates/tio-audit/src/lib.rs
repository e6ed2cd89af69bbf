//! The cryptography of the Tell It Once audit log: RFC 6962 Merkle trees with inclusion
//! and consistency proofs, and C2SP signed-note checkpoints with Ed25519.
//!
//! [`merkle`], [`note`], [`checkpoint`], [`entry`] and [`export`] are pure: an auditor's
//! offline verifier runs exactly the code the broker runs. [`log`] keeps the log in the
//! encrypted store: entries commit in the same batch as the action they record, and a
//! tree builder extends the Merkle tree from the log in order and signs checkpoints.
//! It knows nothing of gRPC.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod log;
pub mod merkle;
pub mod note;
mod stored;
