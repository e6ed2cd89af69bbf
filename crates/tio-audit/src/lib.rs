//! The cryptography of the Tell It Once audit log: RFC 6962 Merkle trees with inclusion
//! and consistency proofs, and C2SP signed-note checkpoints with Ed25519.
//!
//! Pure functions and small values: it stores nothing and knows nothing of the broker.
//! The audit log appends its entries' leaf hashes through [`merkle::Frontier`] and
//! proves them with [`merkle::inclusion_proof`] over its stored subtrees; an auditor
//! verifies offline with [`merkle::verify_inclusion`], [`merkle::verify_consistency`]
//! and [`note::Verifier`].

#![warn(missing_docs)]

pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod merkle;
pub mod note;
