//! Exports and their offline verification: `entries.jsonl` (one entry per line, in log
//! order, with its leaf hash) and `checkpoint` (the signed note covering them).

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::entry::AuditEntry;
use crate::merkle::{Frontier, Hash, empty_root};
use crate::note::Verifier;

/// One line of `entries.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportLine {
    /// The entry.
    pub entry: AuditEntry,
    /// Its leaf hash, hex, as the log computed it: lets a verifier name an edited entry.
    pub leaf_hash: String,
}

impl ExportLine {
    /// Returns the line for `entry`.
    pub fn new(entry: AuditEntry) -> ExportLine {
        let leaf_hash = hex(&entry.leaf_hash());
        ExportLine { entry, leaf_hash }
    }

    /// Returns the line as JSON, without a newline.
    pub fn to_json(&self) -> String {
        // As for `AuditEntry::canonical_bytes`: strings and integers to memory cannot fail.
        serde_json::to_string(self).expect("an export line of strings and integers always serialises")
    }
}

fn hex(hash: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in hash {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

fn unhex(text: &str) -> Option<Hash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (index, pair) in bytes.chunks_exact(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        hash[index] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(hash)
}

/// A line as read by the verifier: the entry's raw canonical bytes, which the leaf
/// hashes directly (any edit, even a re-encoding of the same fields, changes them).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine<'a> {
    #[serde(borrow)]
    entry: &'a serde_json::value::RawValue,
    leaf_hash: &'a str,
}

/// The one field the verifier needs to parse.
#[derive(Deserialize)]
struct LeafIndex {
    leaf_index: u64,
}

/// Reads the leaf index of an entry in canonical form without parsing it again: the
/// first `,"leaf_index":` followed by digits. The pattern holds an unescaped quote, so
/// it cannot occur inside a string value, and in canonical form (keys sorted, `actor`
/// the only nested object, which has no such key) it is the entry's own field. `None`
/// for any other form, which the caller then parses in full.
///
/// Soundness does not rest on this: an export verifies only if every entry's bytes hash
/// to its recorded leaf and the leaves make the signed root. The index read here only
/// lets a failure name the first line out of sequence; honest exports, always
/// canonical, take this path.
fn canonical_leaf_index(entry: &str) -> Option<u64> {
    const KEY: &str = ",\"leaf_index\":";
    let start = entry.find(KEY)? + KEY.len();
    let rest = &entry.as_bytes()[start..];
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if digits == 0 || !matches!(rest.get(digits), Some(b',' | b'}')) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Splits a line written by [`ExportLine::to_json`] into the entry's bytes, its
/// recorded leaf hash and its leaf index, without parsing the entry: the layout is
/// `{"entry":` ENTRY `,"leaf_hash":"` 64 hex digits `"}`. `None` for any other layout,
/// which the caller then parses in full.
///
/// Skipping the parse is sound because the bytes are then hashed: they verify only if
/// they are exactly an entry the log hashed into its signed tree, and every such entry
/// is a canonical JSON object, so the line is valid JSON whose `entry` is those bytes.
/// Anything else inside the slice (a second `entry` key, stray text) changes the bytes
/// and fails as an altered entry.
fn split_canonical_line(line: &str) -> Option<(&str, &str, u64)> {
    const PREFIX: &str = "{\"entry\":";
    const BETWEEN: &str = ",\"leaf_hash\":\"";
    const HASH_DIGITS: usize = 64;
    let rest = line.strip_prefix(PREFIX)?.strip_suffix("\"}")?;
    let (before, leaf_hash) = rest.split_at_checked(rest.len().checked_sub(HASH_DIGITS)?)?;
    let entry = before.strip_suffix(BETWEEN)?;
    if !(entry.starts_with('{') && entry.ends_with('}')) {
        return None;
    }
    Some((entry, leaf_hash, canonical_leaf_index(entry)?))
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries verified.
    pub entries: u64,
    /// The checkpoint they match.
    pub checkpoint: Checkpoint,
    /// The older checkpoint this log is consistent with, if one was given.
    pub consistent_with: Option<Checkpoint>,
}

/// Why an export does not verify. Each names what failed and, where it can, the first
/// bad entry (its 1-based line number).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A line could not be read.
    #[error("cannot read entries: {0}")]
    Read(#[from] std::io::Error),
    /// A line is not a valid entry.
    #[error("line {line}: not a valid entry: {reason}")]
    Malformed {
        /// The 1-based line.
        line: u64,
        /// The parser's reason.
        reason: String,
    },
    /// Entries are missing, repeated or out of order.
    #[error("line {line}: expected leaf index {expected}, found {found}: entries were removed, inserted or reordered")]
    Sequence {
        /// The 1-based line.
        line: u64,
        /// The index expected there.
        expected: u64,
        /// The index found.
        found: u64,
    },
    /// An entry's fields do not match the leaf hash the log recorded for it.
    #[error("line {line} (leaf {leaf_index}): the entry was altered after it was logged")]
    Altered {
        /// The 1-based line.
        line: u64,
        /// Its leaf index.
        leaf_index: u64,
    },
    /// The checkpoint's signature or format is bad.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The entries do not produce the checkpoint's tree.
    #[error("the entries do not match the checkpoint: {0}")]
    Mismatch(String),
    /// The log is inconsistent with an older checkpoint: cut back, rolled back or forked.
    #[error("not consistent with the older checkpoint: {0}")]
    Inconsistent(String),
}

/// Verifies an export: every line parses, leaf indexes run densely from 0, each entry's
/// bytes (as written, in the canonical form the log hashed) match its recorded leaf hash, the recomputed tree matches the checkpoint, and the
/// checkpoint is signed by `verifier`. With `against`, an older checkpoint signed by the
/// same key, also checks that the log extends it.
pub fn verify_export(
    mut entries: impl BufRead,
    checkpoint_note: &str,
    verifier: &Verifier,
    against: Option<&str>,
) -> Result<Verified, ExportError> {
    let checkpoint = Checkpoint::open(checkpoint_note, verifier)?;
    let older = against.map(|note| Checkpoint::open(note, verifier)).transpose()?;
    if let Some(older) = &older {
        if older.origin != checkpoint.origin {
            return Err(ExportError::Inconsistent(format!("origin {} is not {}", older.origin, checkpoint.origin)));
        }
        if older.size > checkpoint.size {
            return Err(ExportError::Inconsistent(format!(
                "the log has {} entries but an older checkpoint already had {}: it was rolled back or cut",
                checkpoint.size, older.size
            )));
        }
    }
    let mut frontier = Frontier::new();
    let mut root_at_older = older.as_ref().filter(|older| older.size == 0).map(|_| empty_root());
    // One buffer for every line: no allocation per entry.
    let mut buffer = Vec::with_capacity(4096);
    let mut line_number = 0u64;
    loop {
        buffer.clear();
        if entries.read_until(b'\n', &mut buffer)? == 0 {
            break;
        }
        line_number += 1;
        let line = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
        let malformed = |reason: String| ExportError::Malformed { line: line_number, reason };
        // One UTF-8 check of the whole line lets the parser skip its own per string.
        let line = std::str::from_utf8(line).map_err(|_| malformed("not UTF-8".to_owned()))?;
        let (entry, leaf_hash, index) = match split_canonical_line(line) {
            Some(split) => split,
            None => {
                let raw: RawLine<'_> = serde_json::from_str(line).map_err(|err| malformed(err.to_string()))?;
                let index = match canonical_leaf_index(raw.entry.get()) {
                    Some(leaf_index) => LeafIndex { leaf_index },
                    None => serde_json::from_str(raw.entry.get()).map_err(|err| malformed(err.to_string()))?,
                };
                (raw.entry.get(), raw.leaf_hash, index.leaf_index)
            }
        };
        let recorded = unhex(leaf_hash).ok_or_else(|| malformed("leaf_hash is not 64 hex digits".to_owned()))?;
        let expected = frontier.size();
        if index != expected {
            return Err(ExportError::Sequence { line: line_number, expected, found: index });
        }
        let leaf = crate::merkle::leaf_hash(entry.as_bytes());
        if leaf != recorded {
            return Err(ExportError::Altered { line: line_number, leaf_index: expected });
        }
        frontier.append(leaf);
        if older.as_ref().is_some_and(|older| older.size == frontier.size()) {
            root_at_older = Some(frontier.root());
        }
    }
    if frontier.size() != checkpoint.size {
        return Err(ExportError::Mismatch(format!(
            "{} entries, but the checkpoint covers {}: entries were removed or added",
            frontier.size(),
            checkpoint.size
        )));
    }
    if frontier.root() != checkpoint.root {
        return Err(ExportError::Mismatch(
            "the recomputed root differs from the checkpoint's: an entry and its recorded hash were both changed"
                .to_owned(),
        ));
    }
    if let Some(older) = &older
        && root_at_older != Some(older.root)
    {
        return Err(ExportError::Inconsistent(format!(
            "the first {} entries do not have the older checkpoint's root: the log forked",
            older.size
        )));
    }
    Ok(Verified { entries: frontier.size(), checkpoint, consistent_with: older })
}

#[cfg(test)]
mod tests;
