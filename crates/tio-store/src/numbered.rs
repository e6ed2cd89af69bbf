//! The layout shared by a child's numbered records kept revision by revision
//! (objections, safeguarding shares): the child's blind index, the record's number
//! (4 bytes, big-endian, dense from 1 per child) and the revision (4 bytes, big-endian),
//! sealed under the child's data key. Numbers scan in the order given and revisions in
//! order, so the last revision read of a number is its latest; "nothing numbered after
//! n" and "no revision after r" are each one absent key.

use crate::engine::Keyspace;
use crate::{ChildRef, Condition, Op, Store, StoreError};

fn suffix(number: u32, revision: u32) -> Vec<u8> {
    [number.to_be_bytes(), revision.to_be_bytes()].concat()
}

impl Store {
    /// Returns the precondition that `revision` of record `number` is new, and the
    /// operation that stores its `plaintext` sealed.
    pub(crate) fn put_numbered(
        &self,
        space: Keyspace,
        child: &(impl ChildRef + ?Sized),
        number: u32,
        revision: u32,
        plaintext: &[u8],
    ) -> Result<(Condition, Op), StoreError> {
        let suffix = suffix(number, revision);
        let condition = Condition::Absent { space, key: self.child_record_key(child, &suffix) };
        Ok((condition, self.sealed_put(child, space, &suffix, plaintext)?))
    }

    /// Returns the precondition that record `number` has no revision `revision`.
    pub(crate) fn numbered_absent(
        &self,
        space: Keyspace,
        child: &(impl ChildRef + ?Sized),
        number: u32,
        revision: u32,
    ) -> Condition {
        Condition::Absent { space, key: self.child_record_key(child, &suffix(number, revision)) }
    }

    /// Returns the plaintext of every revision of record `number` (of every record, if
    /// `None`), in number and revision order.
    pub(crate) fn numbered_revisions(
        &self,
        space: Keyspace,
        child: &(impl ChildRef + ?Sized),
        number: Option<u32>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let prefix = number.map(u32::to_be_bytes);
        let records = self.read_sealed(child, space, prefix.as_ref().map_or(&[][..], |bytes| &bytes[..]))?;
        Ok(records.into_iter().map(|record| record.plaintext).collect())
    }
}

/// The latest revision of each numbered record among a child's revisions (plaintexts in
/// number and revision order, as [`Store::numbered_revisions`] reads them), in number
/// order: revisions of one record scan in order, so the last one read is the latest.
pub(crate) fn latest_by_number<T>(
    plaintexts: Vec<Vec<u8>>,
    decode: fn(&[u8]) -> Result<T, StoreError>,
    number: fn(&T) -> u32,
) -> Result<Vec<T>, StoreError> {
    let mut latest = std::collections::BTreeMap::new();
    for plaintext in plaintexts {
        let revision = decode(&plaintext)?;
        latest.insert(number(&revision), revision);
    }
    Ok(latest.into_values().collect())
}
