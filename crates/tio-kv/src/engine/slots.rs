//! Where the engines keep the `child_keys` keyspace's values: fixed slots in a file of
//! their own, overwritten in place.
//!
//! sled and the group log are log-structured: a value replaced or removed stays in
//! their files (sled until it happens to reuse the space, the group log for good). For a
//! child's wrapped data key that would undo erasure, since the key-encryption key the
//! store still holds unwraps any old copy. So the engine's tree or log holds only each
//! child's slot number, and the wrapped key lives in a slot: a new
//! value goes to a free slot (synced before the commit that names it), and a replaced or
//! removed value's slot is zeroed and synced once the commit that let go of it is
//! durable. Slots nothing names (after a crash) are zeroed when the store opens.
//!
//! Do not change the layout without a new store format: a 64-byte header
//! ([`HEADER`], zero-padded), then slots of [`SLOT_BYTES`]: a big-endian `u16` length
//! and the value, zero-padded; length 0 is a free slot.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{StorageError, StorageErrorKind};

/// The slot file's name, in the engine's directory.
pub const SLOTS_FILE: &str = "child-key-slots";

const HEADER: &[u8] = b"tio-child-key-slots 1\n";
const HEADER_BYTES: u64 = 64;

/// The size of one slot.
pub(crate) const SLOT_BYTES: usize = 128;

/// The largest value a slot holds.
pub(crate) const MAX_VALUE_BYTES: usize = SLOT_BYTES - 2;

const _: () = assert!(super::MAX_CHILD_KEY_BYTES <= MAX_VALUE_BYTES, "every child key fits a slot");

/// The slot file and which slots are free.
#[derive(Debug)]
pub(crate) struct Slots {
    file: File,
    /// Slots below `count` that hold nothing.
    free: BTreeSet<u64>,
    /// Slots in the file.
    count: u64,
    /// Slots let go of by applied commits, zeroed by the sync that makes those commits
    /// durable ([`Slots::take_released`], [`Slots::zero`]).
    released: Vec<u64>,
}

fn io(context: &'static str) -> impl Fn(std::io::Error) -> StorageError {
    move |err| StorageError::from_io(context, &err)
}

fn offset(slot: u64) -> u64 {
    HEADER_BYTES + slot * SLOT_BYTES as u64
}

impl Slots {
    /// Opens (or creates) the slot file in `dir`. `named` lists the slots the tree
    /// names; every other slot that holds anything is zeroed (and synced) now.
    pub(crate) fn open(dir: &Path, named: &BTreeSet<u64>) -> Result<Slots, StorageError> {
        let path = dir.join(SLOTS_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("cannot open the child key slots"))?;
        let len = file.metadata().map_err(io("cannot read the child key slots"))?.len();
        if len == 0 {
            let mut header = HEADER.to_vec();
            header.resize(HEADER_BYTES as usize, 0);
            file.write_all_at(&header, 0).map_err(io("cannot write the child key slots"))?;
            file.sync_all().map_err(io("cannot sync the child key slots"))?;
            File::open(dir).and_then(|dir| dir.sync_all()).map_err(io("cannot sync the store directory"))?;
        } else {
            let mut header = vec![0u8; HEADER.len()];
            file.read_exact_at(&mut header, 0).map_err(|_| corrupt("its header is missing"))?;
            if header != HEADER {
                return Err(corrupt("its header is not a slot file's"));
            }
        }
        // A crash may leave a partly written last slot: it was never named, so it is
        // free, and the next write of it rewrites the whole slot.
        let count = len.saturating_sub(HEADER_BYTES).div_ceil(SLOT_BYTES as u64);
        if let Some(beyond) = named.iter().find(|slot| **slot >= count) {
            return Err(corrupt(&format!("slot {beyond} is named but the file has {count} slots")));
        }
        let mut slots = Slots { file, free: BTreeSet::new(), count, released: Vec::new() };
        let mut orphans = Vec::new();
        let mut bytes = [0u8; SLOT_BYTES];
        for slot in (0..count).filter(|slot| !named.contains(slot)) {
            slots.free.insert(slot);
            read_slot(&slots.file, slot, &mut bytes)?;
            if bytes.iter().any(|byte| *byte != 0) {
                orphans.push(slot);
            }
        }
        if !orphans.is_empty() {
            slots.zero(&orphans)?;
        }
        Ok(slots)
    }

    /// Writes `value` to a free slot (growing the file when none is free) and returns
    /// it. Not durable until [`Slots::sync`]; not named by anything yet.
    pub(crate) fn write_new(&mut self, value: &[u8]) -> Result<u64, StorageError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(StorageError::new(StorageErrorKind::Io, "a child key record is larger than its slot"));
        }
        let slot = match self.free.pop_first() {
            Some(slot) => slot,
            None => {
                self.count += 1;
                self.count - 1
            }
        };
        let mut bytes = Vec::with_capacity(SLOT_BYTES);
        bytes.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        bytes.extend_from_slice(value);
        bytes.resize(SLOT_BYTES, 0);
        if let Err(err) = self.file.write_all_at(&bytes, offset(slot)) {
            self.free.insert(slot);
            return Err(StorageError::from_io("cannot write a child key slot", &err));
        }
        Ok(slot)
    }

    /// Makes every slot written so far durable.
    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.file.sync_data().map_err(io("cannot sync the child key slots"))
    }

    /// Notes slots that an applied commit let go of, for the sync that makes it durable.
    pub(crate) fn release(&mut self, slots: impl IntoIterator<Item = u64>) {
        self.released.extend(slots);
    }

    /// Returns the slots released so far, for a sync about to start.
    pub(crate) fn take_released(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.released)
    }

    /// Zeroes `slots`, syncs, and frees them.
    pub(crate) fn zero(&mut self, slots: &[u64]) -> Result<(), StorageError> {
        let zeros = [0u8; SLOT_BYTES];
        for slot in slots {
            self.file.write_all_at(&zeros, offset(*slot)).map_err(io("cannot zero a child key slot"))?;
        }
        self.sync()?;
        self.free.extend(slots.iter().copied());
        Ok(())
    }

    /// Returns the value in `slot`; `None` for a free slot.
    pub(crate) fn read(&self, slot: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let mut bytes = [0u8; SLOT_BYTES];
        if slot >= self.count {
            return Err(corrupt(&format!("slot {slot} is beyond the end of the file")));
        }
        read_slot(&self.file, slot, &mut bytes)?;
        let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        if len > MAX_VALUE_BYTES {
            return Err(corrupt(&format!("slot {slot} has a length beyond its size")));
        }
        Ok((len > 0).then(|| bytes[2..2 + len].to_vec()))
    }
}

/// Reads a slot; a last slot cut short by a crash reads as zeros where it was cut.
fn read_slot(file: &File, slot: u64, bytes: &mut [u8; SLOT_BYTES]) -> Result<(), StorageError> {
    let mut read = 0;
    while read < SLOT_BYTES {
        match file.read_at(&mut bytes[read..], offset(slot) + read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(StorageError::from_io("cannot read a child key slot", &err)),
        }
    }
    Ok(())
}

fn corrupt(what: &str) -> StorageError {
    StorageError::new(StorageErrorKind::Corrupt, format!("the child key slot file is damaged: {what}"))
}

/// Encodes a slot number as the value the engine stores for a child key.
pub(crate) fn encode_slot(slot: u64) -> [u8; 8] {
    slot.to_be_bytes()
}

/// Decodes a slot number from the value the engine stores for a child key.
pub(crate) fn decode_slot(value: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| StorageError::new(StorageErrorKind::Corrupt, "a child key entry is not a slot"))?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_go_to_free_slots_and_zeroed_slots_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut slots = Slots::open(dir.path(), &BTreeSet::new()).unwrap();
        let a = slots.write_new(b"first").unwrap();
        let b = slots.write_new(&[7u8; MAX_VALUE_BYTES]).unwrap();
        assert_eq!((a, b), (0, 1));
        assert_eq!(slots.read(a).unwrap(), Some(b"first".to_vec()));
        assert_eq!(slots.read(b).unwrap(), Some(vec![7u8; MAX_VALUE_BYTES]));
        assert!(slots.write_new(&[0u8; MAX_VALUE_BYTES + 1]).is_err(), "too large for a slot");
        slots.zero(&[a]).unwrap();
        assert_eq!(slots.read(a).unwrap(), None);
        assert_eq!(slots.write_new(b"again").unwrap(), a, "a zeroed slot is reused");
    }

    #[test]
    fn slots_nothing_names_are_zeroed_when_the_file_opens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut slots = Slots::open(dir.path(), &BTreeSet::new()).unwrap();
            for value in [b"named".as_slice(), b"orphan"] {
                slots.write_new(value).unwrap();
            }
            slots.sync().unwrap();
        }
        let slots = Slots::open(dir.path(), &BTreeSet::from([0])).unwrap();
        assert_eq!(slots.read(0).unwrap(), Some(b"named".to_vec()));
        assert_eq!(slots.read(1).unwrap(), None);
        let bytes = std::fs::read(dir.path().join(SLOTS_FILE)).unwrap();
        assert!(!bytes.windows(6).any(|window| window == b"orphan"), "the orphan's bytes are gone from the file");
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SLOTS_FILE), b"something else entirely, not a slot file").unwrap();
        assert_eq!(Slots::open(dir.path(), &BTreeSet::new()).unwrap_err().kind, StorageErrorKind::Corrupt);
        let dir = tempfile::tempdir().unwrap();
        Slots::open(dir.path(), &BTreeSet::new()).unwrap();
        let err = Slots::open(dir.path(), &BTreeSet::from([3])).unwrap_err();
        assert!(err.message.contains("slot 3 is named"), "{}", err.message);
    }
}
