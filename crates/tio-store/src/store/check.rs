//! The integrity check behind `tio store check`: reads everything, changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{ChildIndex, DataKeys, Store, StoreError, UpdateId};
use crate::category_keys::is_child_key;
use crate::engine::{Keyspace, key_after};
use crate::keys::open_with;
use crate::update_record::{
    AmendKind, CHILD_INDEX_BYTES, UPDATE_ID_BYTES, UpdateRecord, category_code, category_from_code,
};

/// The most problems a report lists one by one (the count is always complete).
const MAX_LISTED: usize = 50;

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Update records read.
    pub updates: u64,
    /// Of those, records of erased children (present, unreadable by design).
    pub erased: u64,
    /// Children with a data key.
    pub children: u64,
    /// Index entries checked (per child, latest value, idempotency).
    pub index_entries: u64,
    /// Sealed consent and care relationship records checked.
    pub sealed_records: u64,
    /// What was found wrong.
    pub problems: Problems,
}

impl CheckReport {
    /// Returns whether the store is healthy.
    pub fn is_healthy(&self) -> bool {
        self.problems.count() == 0
    }

    fn problem(&mut self, text: String) {
        self.problems.add(text);
    }
}

/// The problems a check found: every one counted, the first [`MAX_LISTED`] kept in
/// plain words without personal data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    count: u64,
    listed: Vec<String>,
}

impl Problems {
    /// Records a problem.
    pub fn add(&mut self, text: String) {
        self.count += 1;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(text);
        }
    }

    /// Returns how many problems were found.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Returns the problems kept, in the order found.
    pub fn listed(&self) -> &[String] {
        &self.listed
    }

    /// Iterates over the problems kept.
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.listed.iter()
    }
}

/// Reads every entry of a keyspace, page by page.
pub(super) fn scan_all(
    store: &Store,
    space: Keyspace,
    mut each: impl FnMut(Vec<u8>, Vec<u8>),
) -> Result<(), StoreError> {
    let mut start = Vec::new();
    loop {
        let page = store.engine.scan(space, &start, None, 4096)?;
        let Some((last, _)) = page.last() else { return Ok(()) };
        start = key_after(last);
        for (key, value) in page {
            each(key, value);
        }
    }
}

impl Store {
    /// Calls `visit` with the id of every stored update, its child and, for an
    /// amendment, its kind, in log order, so that a check above the store (the audit
    /// log's) can match updates without knowing how a record is laid out. A record that
    /// does not decode is skipped: [`Store::check`] reports it.
    pub fn for_each_update_id(
        &self,
        mut visit: impl FnMut(UpdateId, ChildIndex, Option<AmendKind>),
    ) -> Result<(), StoreError> {
        scan_all(self, Keyspace::Updates, |_, bytes| {
            if let Some(record) = UpdateRecord::decode(&bytes) {
                visit(UpdateId(record.update_id), ChildIndex(record.child_index), record.amends.map(|a| a.kind));
            }
        })
    }

    /// Checks the whole store: every record decodes and authenticates, positions are
    /// dense, and the per-child index, latest values and idempotency records agree with
    /// the records. Reports problems instead of stopping at the first; never writes.
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport::default();
        let mut keys = DataKeys::default();
        // (child, category) -> the values standing, oldest first; amendment key ->
        // amending id; position -> (child, update id)
        type Standing = Vec<([u8; UPDATE_ID_BYTES], Vec<u8>)>;
        let mut standing: BTreeMap<(ChildIndex, u8), Standing> = BTreeMap::new();
        let mut amended_expected: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut amendments_per_child: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut records: HashMap<Vec<u8>, (ChildIndex, [u8; UPDATE_ID_BYTES])> = HashMap::new();

        for damage in self.engine.check_files()? {
            report.problem(damage);
        }
        // Positions are opaque: only the engine can tell a gap that is a lost record.
        for hole in self.engine.log_holes(Keyspace::Updates)? {
            report.problem(hole);
        }
        let mut log = Vec::new();
        scan_all(self, Keyspace::Updates, |position, bytes| log.push((position, bytes)))?;
        for (ordinal, (position, bytes)) in log.into_iter().enumerate() {
            report.updates += 1;
            let Some(record) = UpdateRecord::decode(&bytes) else {
                report.problem(format!("update {ordinal} of the log does not decode"));
                continue;
            };
            let child = ChildIndex(record.child_index);
            let is_notice = record.amends.is_some_and(|amends| amends.kind == AmendKind::Erasure);
            match self.record_key(&record, &mut keys) {
                // An erasure notice seals nothing.
                _ if is_notice => {}
                Ok(None) => report.erased += 1,
                Ok(Some(key)) => {
                    if open_with(&key, &record.associated_data(), &record.sealed).is_err() {
                        report.problem(format!("update {ordinal} of the log fails authentication"));
                    }
                }
                Err(err) => report.problem(format!("a data key of child {child} cannot be used: {err}")),
            }
            // Replay what each record does to its category's standing values: a value
            // stands, a correction replaces the one it names, a retraction removes it.
            let values = standing.entry((child, category_code(record.category))).or_default();
            if let Some(amends) = record.amends {
                // An erasure notice leaves the erased child's latest values where they
                // were: unreadable, like the rest.
                if amends.kind != AmendKind::Erasure {
                    values.retain(|(id, _)| *id != amends.update_id.0);
                }
                amended_expected.insert([&child.0[..], &amends.update_id.0[..]].concat(), record.update_id.to_vec());
                *amendments_per_child.entry(child.0.to_vec()).or_default() += 1;
            }
            if record.amends.is_none_or(|amends| amends.kind == AmendKind::Correction) {
                values.push((record.update_id, position.clone()));
            }
            records.insert(position, (child, record.update_id));
        }
        let latest_expected: BTreeMap<(ChildIndex, u8), Vec<u8>> = standing
            .into_iter()
            .filter_map(|(key, values)| values.last().map(|(_, position)| (key, position.clone())))
            .collect();

        let mut by_child_seen = HashSet::new();
        scan_all(self, Keyspace::UpdatesByChild, |key, value| {
            report.index_entries += 1;
            let (child, position) = key.split_at(CHILD_INDEX_BYTES.min(key.len()));
            match records.get(position) {
                Some((record_child, update_id))
                    if record_child.0 == child && update_id.as_slice() == value.as_slice() =>
                {
                    by_child_seen.insert(position.to_vec());
                }
                Some(_) => report.problem("a per-child index entry disagrees with its update".to_owned()),
                None => report.problem("a per-child index entry points at a missing update".to_owned()),
            }
        })?;
        let unindexed = records.len() - by_child_seen.len();
        if unindexed > 0 {
            report.problem(format!("{unindexed} updates are missing from the per-child index"));
        }

        let mut latest_found: BTreeMap<(ChildIndex, u8), Vec<u8>> = BTreeMap::new();
        scan_all(self, Keyspace::Latest, |key, position| {
            report.index_entries += 1;
            match <[u8; CHILD_INDEX_BYTES]>::try_from(&key[..CHILD_INDEX_BYTES.min(key.len())]) {
                Ok(child) if key.len() == CHILD_INDEX_BYTES + 1 => {
                    latest_found.insert((ChildIndex(child), key[CHILD_INDEX_BYTES]), position);
                }
                _ => report.problem("a latest-value entry has a malformed key".to_owned()),
            }
        })?;
        if latest_found != latest_expected {
            let wrong =
                latest_expected.iter().filter(|(key, position)| latest_found.get(*key) != Some(*position)).count()
                    + latest_found.keys().filter(|key| !latest_expected.contains_key(*key)).count();
            report.problem(format!("{wrong} latest-value entries disagree with the updates"));
        }

        // Marks (child and amended id) and each child's count of amendments.
        let mut amended_found = BTreeMap::new();
        let mut counts_found = BTreeMap::new();
        scan_all(self, Keyspace::Amendments, |key, value| {
            report.index_entries += 1;
            if key.len() == CHILD_INDEX_BYTES {
                counts_found.insert(key, value);
            } else {
                amended_found.insert(key, value);
            }
        })?;
        if amended_found != amended_expected {
            report.problem(
                "the amended-update marks disagree with the corrections and retractions in the log".to_owned(),
            );
        }
        let counts_expected: BTreeMap<Vec<u8>, Vec<u8>> =
            amendments_per_child.into_iter().map(|(key, count)| (key, count.to_be_bytes().to_vec())).collect();
        if counts_found != counts_expected {
            report.problem("a child's count of amendments disagrees with the amendments in the log".to_owned());
        }

        let known_ids: HashSet<(ChildIndex, [u8; UPDATE_ID_BYTES])> = records.values().copied().collect();
        scan_all(self, Keyspace::Disclosures, |key, _| {
            report.index_entries += 1;
            let child = key.get(..CHILD_INDEX_BYTES).and_then(|bytes| <[u8; CHILD_INDEX_BYTES]>::try_from(bytes).ok());
            let id = key
                .get(CHILD_INDEX_BYTES..CHILD_INDEX_BYTES + UPDATE_ID_BYTES)
                .and_then(|bytes| <[u8; UPDATE_ID_BYTES]>::try_from(bytes).ok());
            match (child, id) {
                (Some(child), Some(id)) if known_ids.contains(&(ChildIndex(child), id)) => {}
                _ => report.problem("a disclosure record names no stored update".to_owned()),
            }
        })?;

        scan_all(self, Keyspace::Idempotency, |_, value| {
            report.index_entries += 1;
            let update_id = value.get(32..32 + UPDATE_ID_BYTES);
            let position = value.get(32 + UPDATE_ID_BYTES..).unwrap_or_default();
            match (update_id, records.get(position)) {
                (Some(id), Some((_, stored))) if id == stored.as_slice() => {}
                _ => report.problem("an idempotency record points at a missing or different update".to_owned()),
            }
        })?;

        for space in [
            Keyspace::Children,
            Keyspace::Consents,
            Keyspace::Relationships,
            Keyspace::Objections,
            Keyspace::Safeguarding,
            Keyspace::Assessments,
            Keyspace::Transitions,
        ] {
            let mut sealed = Vec::new();
            scan_all(self, space, |key, value| sealed.push((key, value)))?;
            for (key, value) in sealed {
                report.sealed_records += 1;
                let Ok(child) = <[u8; CHILD_INDEX_BYTES]>::try_from(&key[..CHILD_INDEX_BYTES.min(key.len())]) else {
                    report.problem(format!("a {} record has a malformed key", space.name()));
                    continue;
                };
                match keys.get(self, ChildIndex(child)) {
                    Ok(Some(data_key)) => {
                        if open_with(data_key, &super::sealed_record_context(space, &key), &value).is_err() {
                            report.problem(format!("a {} record fails authentication", space.name()));
                        }
                    }
                    // An erased child's records stay, unreadable by design.
                    Ok(None) => {}
                    Err(err) => report.problem(format!("a child's data key cannot be unwrapped: {err}")),
                }
            }
        }

        let mut child_keys = Vec::new();
        scan_all(self, Keyspace::ChildKeys, |child, wrapped| child_keys.push((child, wrapped)))?;
        for (key, wrapped) in child_keys {
            if is_child_key(&key) {
                report.children += 1;
                if let Err(err) = self.keys().unwrap(&wrapped, &key) {
                    report.problem(format!("a child's data key cannot be unwrapped: {err}"));
                }
                continue;
            }
            // A category key: its child's key stands, and opens it.
            let category = key.get(CHILD_INDEX_BYTES).and_then(|code| category_from_code(*code));
            let child = <[u8; CHILD_INDEX_BYTES]>::try_from(&key[..CHILD_INDEX_BYTES.min(key.len())]).ok();
            let (Some(category), Some(child), true) = (category, child, key.len() == CHILD_INDEX_BYTES + 1) else {
                report.problem("a child key entry has a malformed key".to_owned());
                continue;
            };
            match keys.get(self, ChildIndex(child)) {
                Ok(Some(child_key)) => {
                    let child_key = child_key.clone();
                    if let Err(err) = self.category_key(ChildIndex(child), category, &child_key) {
                        report.problem(format!("a category key cannot be opened: {err}"));
                    }
                }
                Ok(None) => report.problem("a category key outlived its child's key".to_owned()),
                Err(err) => report.problem(format!("a child's data key cannot be unwrapped: {err}")),
            }
        }
        Ok(report)
    }
}
