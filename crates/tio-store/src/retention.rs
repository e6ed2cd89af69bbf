//! What retention is decided on, read for every child the store can still read: its
//! date of birth and the time of each category's current value.

use tio_core::{Category, Date, Timestamp};

use crate::engine::{Keyspace, Position, key_after, prefix_end};
use crate::update_record::{CHILD_INDEX_BYTES, UpdateRecord};
use crate::{ChildIndex, Store, StoreError};

/// One child's retention facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionFacts {
    /// The child.
    pub child: ChildIndex,
    /// Its date of birth, if one was published.
    pub date_of_birth: Option<Date>,
    /// When each category's current value was committed, in category order.
    pub last_updates: Vec<(Category, Timestamp)>,
}

impl Store {
    /// Returns the retention facts of up to `limit` children after `after` (from the
    /// first without one), in blind-index order: every child with a data key (an erased
    /// child has nothing left to keep).
    pub fn retention_facts(&self, after: Option<ChildIndex>, limit: usize) -> Result<Vec<RetentionFacts>, StoreError> {
        let start = after.map(|index| key_after(&index.0)).unwrap_or_default();
        let mut facts = Vec::new();
        for (key, _) in self.engine.scan(Keyspace::ChildKeys, &start, None, limit)? {
            let child = ChildIndex(
                key.as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a child key is stored under a malformed index".to_owned()))?,
            );
            let end = prefix_end(&child.0);
            let mut last_updates = Vec::new();
            for (_, position) in self.engine.scan(Keyspace::Latest, &child.0, end.as_deref(), 64)? {
                let position = Position::from_bytes(position);
                let Some(bytes) = self.engine.get(Keyspace::Updates, position.as_bytes())? else {
                    return Err(StoreError::Corrupt("a latest value points at a missing update".to_owned()));
                };
                let record = UpdateRecord::decode(&bytes)
                    .filter(|record| record.child_index.len() == CHILD_INDEX_BYTES && record.child_index == child.0)
                    .ok_or_else(|| StoreError::Corrupt("a latest value points at another record".to_owned()))?;
                last_updates.push((record.category, Timestamp::from_unix_micros(record.committed_at_micros)));
            }
            last_updates.sort_by_key(|(category, _)| *category);
            facts.push(RetentionFacts { child, date_of_birth: self.date_of_birth_at(child)?, last_updates });
        }
        Ok(facts)
    }
}
