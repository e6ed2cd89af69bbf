//! Checkpoints (c2sp.org/tlog-checkpoint): the signed statement "the log named ORIGIN
//! has SIZE entries and this root hash".

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::Hash;
use crate::note::{NoteError, Signer, Verifier};

/// A checkpoint's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's unique name (by convention a schema-less URL).
    pub origin: String,
    /// The number of entries.
    pub size: u64,
    /// The RFC 6962 root hash of those entries.
    pub root: Hash,
}

/// A checkpoint with the signed note that states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// What the note states.
    pub checkpoint: Checkpoint,
    /// The C2SP signed note, verbatim.
    pub note: String,
}

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signature did not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The body is not `origin`, size and base64 root on three lines.
    #[error("malformed checkpoint body")]
    Body,
}

impl Checkpoint {
    /// Returns the note text: origin, decimal size and base64 root, each on a line.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root))
    }

    /// Signs the checkpoint and returns the signed note.
    pub fn sign(&self, signer: &Signer) -> Result<String, CheckpointError> {
        Ok(signer.sign(&self.body())?)
    }

    /// Verifies a signed checkpoint with `verifier` and parses it. Extension lines after
    /// the root are allowed and ignored.
    pub fn open(note: &str, verifier: &Verifier) -> Result<Checkpoint, CheckpointError> {
        let body = verifier.open(note)?;
        let mut lines = body.lines();
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(CheckpointError::Body);
        };
        if origin.is_empty() || size.is_empty() || (size.len() > 1 && size.starts_with('0')) {
            return Err(CheckpointError::Body);
        }
        let size = size.parse::<u64>().map_err(|_| CheckpointError::Body)?;
        let root: Hash =
            STANDARD.decode(root).ok().and_then(|bytes| bytes.try_into().ok()).ok_or(CheckpointError::Body)?;
        Ok(Checkpoint { origin: origin.to_owned(), size, root })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{empty_root, leaf_hash};

    #[test]
    fn checkpoints_round_trip_and_fail_under_another_key_or_edit() {
        let signer = Signer::generate("tio.example/audit").unwrap();
        let checkpoint = Checkpoint { origin: "tio.example/audit".into(), size: 42, root: leaf_hash(b"x") };
        let note = checkpoint.sign(&signer).unwrap();
        assert!(note.starts_with("tio.example/audit\n42\n"), "{note}");
        assert_eq!(Checkpoint::open(&note, &signer.verifier()), Ok(checkpoint.clone()));
        let stranger = Signer::generate("tio.example/audit").unwrap();
        assert!(Checkpoint::open(&note, &stranger.verifier()).is_err(), "a checkpoint signed by another key");
        let edited = note.replacen("\n42\n", "\n43\n", 1);
        assert!(Checkpoint::open(&edited, &signer.verifier()).is_err());
    }

    #[test]
    fn malformed_bodies_are_refused_even_when_signed() {
        let signer = Signer::generate("log").unwrap();
        let root = STANDARD.encode(empty_root());
        for body in [
            "log\n".to_owned(),
            "log\n007\n".to_owned() + &root + "\n",
            format!("log\nten\n{root}\n"),
            "log\n1\nnot-base64!\n".to_owned(),
        ] {
            let note = signer.sign(&body).unwrap();
            assert_eq!(Checkpoint::open(&note, &signer.verifier()), Err(CheckpointError::Body), "{body:?}");
        }
        let with_extension = signer.sign(&format!("log\n0\n{root}\nextension line\n")).unwrap();
        assert_eq!(Checkpoint::open(&with_extension, &signer.verifier()).unwrap().size, 0);
    }
}
