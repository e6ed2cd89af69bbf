//! How the sled engine stores a log: in runs of consecutive records.
//!
//! Each sled insert costs several microseconds whatever its size (measured by
//! `cargo bench -p tio-store --bench sled_ceiling`), and a commit's log record used to
//! be one of them. A group commit's appends to one log are instead stored together, as
//! one sled value under the position of its first record: a run. The rest of the store
//! never sees runs; the engine hands out and answers by per-record positions as before.
//!
//! Do not change the encoding without a new store format: it is read back at open.
//! `count: u32`, then for each record `length: u32` and its bytes, big-endian.

use super::super::{StorageError, StorageErrorKind};

/// The most record bytes a run holds before the next record starts a new one (a larger
/// single record gets a run of its own). sled writes a tree node, several runs, as one
/// page, and a page larger than a quarter of a segment goes to a blob file that its
/// flush does not cover; 64 KiB runs keep every node well inside the data file.
pub(super) const RUN_BYTES: usize = 64 * 1024;

/// Encodes records as one run.
pub(super) fn encode(records: &[&[u8]]) -> Vec<u8> {
    let mut run = Vec::with_capacity(4 + records.iter().map(|record| 4 + record.len()).sum::<usize>());
    run.extend_from_slice(&len_u32(records.len()).to_be_bytes());
    for record in records {
        run.extend_from_slice(&len_u32(record.len()).to_be_bytes());
        run.extend_from_slice(record);
    }
    run
}

/// Record lengths are bounded far below 4 GiB by the store's value limits.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Splits records into groups of consecutive records that each fit a run.
pub(super) fn split<'a>(records: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
    let mut runs: Vec<Vec<&[u8]>> = Vec::new();
    let mut bytes = 0;
    for record in records {
        match runs.last_mut() {
            Some(run) if bytes + record.len() <= RUN_BYTES => run.push(record),
            _ => {
                runs.push(vec![record]);
                bytes = 0;
            }
        }
        bytes += record.len();
    }
    runs
}

/// Decodes the run stored under `key` into its records with their positions.
pub(super) fn decode<'a>(key: &[u8], run: &'a [u8]) -> Result<Vec<(u64, &'a [u8])>, StorageError> {
    let first = position(key)?;
    let damaged =
        || StorageError::new(StorageErrorKind::Corrupt, format!("the log run at position {first} is damaged"));
    let (count, mut rest) = take_u32(run).ok_or_else(damaged)?;
    if count == 0 {
        return Err(damaged());
    }
    let mut records = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(rest.len() / 4));
    for offset in 0..u64::from(count) {
        let (len, after) = take_u32(rest).ok_or_else(damaged)?;
        let len = usize::try_from(len).map_err(|_| damaged())?;
        if after.len() < len {
            return Err(damaged());
        }
        let (record, after) = after.split_at(len);
        records.push((first.checked_add(offset).ok_or_else(damaged)?, record));
        rest = after;
    }
    if !rest.is_empty() {
        return Err(damaged());
    }
    Ok(records)
}

/// Reads a run's key: the position of its first record.
pub(super) fn position(key: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] =
        key.try_into().map_err(|_| StorageError::new(StorageErrorKind::Corrupt, "a log key is not a position"))?;
    Ok(u64::from_be_bytes(bytes))
}

fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_come_back_with_consecutive_positions() {
        let run = encode(&[b"one", b"", b"three"]);
        let records = decode(&41u64.to_be_bytes(), &run).unwrap();
        assert_eq!(records, vec![(41, b"one".as_slice()), (42, b"".as_slice()), (43, b"three".as_slice())]);
    }

    #[test]
    fn damage_is_reported_as_corruption() {
        let run = encode(&[b"one", b"two"]);
        let key = 7u64.to_be_bytes();
        for damaged in [&run[..run.len() - 1], &[run.as_slice(), b"x"].concat()[..], &[0, 0, 0, 0][..], &[][..]] {
            let err = decode(&key, damaged).unwrap_err();
            assert_eq!(err.kind, StorageErrorKind::Corrupt);
            assert!(err.message.contains("position 7"), "{}", err.message);
        }
        assert_eq!(decode(b"short", &run).unwrap_err().kind, StorageErrorKind::Corrupt);
    }

    #[test]
    fn split_keeps_runs_within_the_bound_and_oversized_records_alone() {
        let big = vec![0u8; RUN_BYTES + 1];
        let half = vec![0u8; RUN_BYTES / 2];
        let records: Vec<&[u8]> = vec![&half, &half, b"x", &big, b"y"];
        let runs = split(&records);
        let lens: Vec<Vec<usize>> = runs.iter().map(|run| run.iter().map(|r| r.len()).collect()).collect();
        assert_eq!(lens, vec![vec![RUN_BYTES / 2, RUN_BYTES / 2], vec![1], vec![RUN_BYTES + 1], vec![1]]);
    }

    proptest! {
        #[test]
        fn any_records_round_trip_through_split_runs(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20_000), 1..40),
            first in 0u64..u64::MAX / 2,
        ) {
            let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            let mut next = first;
            let mut decoded = Vec::new();
            for run in split(&slices) {
                let bytes = encode(&run);
                for (position, record) in decode(&next.to_be_bytes(), &bytes).unwrap() {
                    decoded.push((position, record.to_vec()));
                }
                next += run.len() as u64;
            }
            let expected: Vec<(u64, Vec<u8>)> = (first..).zip(records).collect();
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&0u64.to_be_bytes(), &bytes);
        }
    }
}
