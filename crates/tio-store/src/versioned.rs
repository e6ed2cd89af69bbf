//! The one encoding of the store's small records (cursors, agencies): a version byte,
//! then JSON. The byte comes first so that a later layout is a new version read beside
//! the old one, never a change in place.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

/// The version byte of a record whose body is JSON. Do not change.
pub(crate) const JSON_V1: u8 = 1;

/// Returns `value` as a version-1 record.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![JSON_V1];
    // The records are strings, integers, booleans, byte lists and plain enums, written
    // to memory: serde_json fails only on non-string map keys or a failing writer.
    serde_json::to_writer(&mut bytes, value).expect("a store record of plain fields always serialises");
    bytes
}

/// Decodes the JSON body of a record (after its version byte), naming `what` in the
/// error.
pub(crate) fn decode_json<T: DeserializeOwned>(json: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(json).map_err(|_| StoreError::Corrupt(format!("a stored {what} does not decode")))
}
