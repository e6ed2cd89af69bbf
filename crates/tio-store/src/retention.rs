//! What retention is decided on, read for every child the store can still read: its
//! date of birth, the time of each category's current value, and which categories
//! were erased on their own.

use tio_core::{Category, Date, Timestamp};

use crate::category_keys::is_child_key;
use crate::engine::{Keyspace, Position, key_after, prefix_end};
use crate::store::DataKeys;
use crate::update_record::{CHILD_INDEX_BYTES, UpdateRecord};
use crate::{ChildIndex, Store, StoreError};

/// One category's current value, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentValue {
    /// The category.
    pub category: Category,
    /// When the value was committed.
    pub committed_at: Timestamp,
    /// Where it is: an erasure of the category goes ahead only while it is still the
    /// current value (a newer one restarts the category's retention).
    pub position: Position,
}

/// One child's retention facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionFacts {
    /// The child.
    pub child: ChildIndex,
    /// Its date of birth, if one was published.
    pub date_of_birth: Option<Date>,
    /// Each category's current value that can still be read, in category order.
    pub current: Vec<CurrentValue>,
    /// The categories erased on their own before (by retention), in category order.
    pub erased: Vec<Category>,
}

impl RetentionFacts {
    /// When each category's current value was committed, in category order.
    pub fn last_updates(&self) -> Vec<(Category, Timestamp)> {
        self.current.iter().map(|value| (value.category, value.committed_at)).collect()
    }
}

/// Children read at a time by [`ChildPages`].
const CHILD_PAGE: usize = 512;

/// Every child the store can still read, with its retention facts, a page at a time in
/// blind-index order: what the broker's scheduled duties and reports walk.
pub struct ChildPages<'a> {
    store: &'a Store,
    after: Option<ChildIndex>,
    done: bool,
}

impl ChildPages<'_> {
    /// Returns the next page, or `None` after the last child.
    pub fn next_page(&mut self) -> Result<Option<Vec<RetentionFacts>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self.store.retention_facts(self.after, CHILD_PAGE)?;
        match page.last() {
            Some(last) => self.after = Some(last.child),
            None => {
                self.done = true;
                return Ok(None);
            }
        }
        Ok(Some(page))
    }
}

impl Store {
    /// Returns every child the store can still read, a page at a time.
    pub fn child_pages(&self) -> ChildPages<'_> {
        ChildPages { store: self, after: None, done: false }
    }

    /// Returns the retention facts of up to `limit` children after `after` (from the
    /// first without one), in blind-index order: every child with a data key (an erased
    /// child has nothing left to keep).
    pub fn retention_facts(&self, after: Option<ChildIndex>, limit: usize) -> Result<Vec<RetentionFacts>, StoreError> {
        let mut start = after.map(|index| key_after(&index.0)).unwrap_or_default();
        let mut facts = Vec::new();
        while facts.len() < limit {
            let page = self.engine.scan(Keyspace::ChildKeys, &start, None, limit)?;
            let Some((last, _)) = page.last() else { break };
            start = key_after(last);
            // A child's category keys follow its own key: only the child's count.
            for (key, _) in page.into_iter().filter(|(key, _)| is_child_key(key)) {
                if facts.len() == limit {
                    break;
                }
                let child =
                    ChildIndex(key.as_slice().try_into().map_err(|_| {
                        StoreError::Corrupt("a child key is stored under a malformed index".to_owned())
                    })?);
                facts.push(self.child_retention_facts(child)?);
            }
        }
        Ok(facts)
    }

    fn child_retention_facts(&self, child: ChildIndex) -> Result<RetentionFacts, StoreError> {
        let end = prefix_end(&child.0);
        let mut current = Vec::new();
        let mut keys = DataKeys::default();
        for (_, position) in self.engine.scan(Keyspace::Latest, &child.0, end.as_deref(), 64)? {
            let position = Position::from_bytes(position);
            let Some(bytes) = self.engine.get(Keyspace::Updates, position.as_bytes())? else {
                return Err(StoreError::Corrupt("a latest value points at a missing update".to_owned()));
            };
            let record = UpdateRecord::decode(&bytes)
                .filter(|record| record.child_index.len() == CHILD_INDEX_BYTES && record.child_index == child.0)
                .ok_or_else(|| StoreError::Corrupt("a latest value points at another record".to_owned()))?;
            // Erased with its category: nothing left to keep.
            if self.record_key(&record, &mut keys)?.is_none() {
                continue;
            }
            current.push(CurrentValue {
                category: record.category,
                committed_at: Timestamp::from_unix_micros(record.committed_at_micros),
                position,
            });
        }
        current.sort_by_key(|value| value.category);
        Ok(RetentionFacts {
            child,
            date_of_birth: self.date_of_birth_at(child)?,
            current,
            erased: self.erased_categories(child)?,
        })
    }
}
