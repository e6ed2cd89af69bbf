//! What the logged engine writes in a group-log frame: one record per change of an
//! applied batch, in order, with positions and child-key slots already resolved.
//!
//! ```text
//! record = tag u8 | keyspace u8 (its index in Keyspace::ALL) | key length u32 LE | key | value
//! tag    = 1 put | 2 delete (no value) | 3 append (the key is the position)
//! ```
//!
//! Do not change without a new store format: the log is the durable record.

use super::super::{Keyspace, StorageError, StorageErrorKind};

const PUT: u8 = 1;
const DELETE: u8 = 2;
const APPEND: u8 = 3;

/// Bytes before the key.
const HEAD: usize = 6;

/// One change, as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    Put { space: Keyspace, key: &'a [u8], value: &'a [u8] },
    Delete { space: Keyspace, key: &'a [u8] },
    Append { space: Keyspace, position: &'a [u8], value: &'a [u8] },
}

impl Record<'_> {
    /// Appends the record's bytes to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let (tag, space, key, value): (u8, Keyspace, &[u8], &[u8]) = match *self {
            Record::Put { space, key, value } => (PUT, space, key, value),
            Record::Delete { space, key } => (DELETE, space, key, &[]),
            Record::Append { space, position, value } => (APPEND, space, position, value),
        };
        out.push(tag);
        out.push(u8::try_from(space.index()).unwrap_or(u8::MAX));
        out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }

    /// Reads a record.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Record<'_>, StorageError> {
        let damaged = || StorageError::new(StorageErrorKind::Corrupt, "a group-log record does not decode");
        let head = bytes.get(..HEAD).ok_or_else(damaged)?;
        let space = *Keyspace::ALL.get(usize::from(head[1])).ok_or_else(damaged)?;
        let key_len = u32::from_le_bytes(head[2..6].try_into().map_err(|_| damaged())?) as usize;
        let key = bytes.get(HEAD..HEAD + key_len).ok_or_else(damaged)?;
        let value = &bytes[HEAD + key_len..];
        match head[0] {
            PUT => Ok(Record::Put { space, key, value }),
            DELETE if value.is_empty() => Ok(Record::Delete { space, key }),
            APPEND if space.is_log() => Ok(Record::Append { space, position: key, value }),
            _ => Err(damaged()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let records = [
            Record::Put { space: Keyspace::Latest, key: b"k", value: b"value" },
            Record::Delete { space: Keyspace::Cursors, key: b"gone" },
            Record::Append { space: Keyspace::Audit, position: &[0, 1, 2], value: b"entry" },
            Record::Put { space: Keyspace::Meta, key: b"", value: b"" },
        ];
        for record in &records {
            let mut bytes = Vec::new();
            record.encode(&mut bytes);
            assert_eq!(&Record::decode(&bytes).unwrap(), record);
        }
        // Golden bytes: the log is the durable record.
        let mut bytes = Vec::new();
        records[0].encode(&mut bytes);
        assert_eq!(bytes, [1, 3, 1, 0, 0, 0, b'k', b'v', b'a', b'l', b'u', b'e']);
        for bad in [&[][..], &[9, 0, 0, 0, 0, 0], &[1, 99, 0, 0, 0, 0], &[1, 0, 5, 0, 0, 0, 1], &[3, 0, 0, 0, 0, 0]] {
            assert_eq!(Record::decode(bad).unwrap_err().kind, StorageErrorKind::Corrupt, "{bad:?}");
        }
    }
}
