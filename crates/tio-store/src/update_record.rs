//! Stored record layouts. Every record starts with a format version byte, so that a
//! later release can read old records and migrate them.
//!
//! Do not change a layout in place: add a version, keep the reader of the old one, and
//! keep golden bytes of it in the tests.

use tio_core::Category;

/// Format of an update record in the `updates` log: a category value.
pub(crate) const UPDATE_RECORD_V1: u8 = 1;

/// Format of an amendment in the `updates` log: a correction (a value that replaces an
/// earlier update) or a retraction (no value), naming the update it amends. Its sealed
/// payload starts with the publisher's reason.
pub(crate) const UPDATE_RECORD_V2: u8 = 2;

/// Format of a category value sealed under its category's key (generation 1 on): a
/// version 1 record with the key's generation after the publisher.
pub(crate) const UPDATE_RECORD_V3: u8 = 3;

/// Format of an amendment sealed under its category's key: a version 2 record with the
/// key's generation after the publisher.
pub(crate) const UPDATE_RECORD_V4: u8 = 4;

/// Bytes of an update id.
pub(crate) const UPDATE_ID_BYTES: usize = 16;

/// Bytes of a child's blind index.
pub(crate) const CHILD_INDEX_BYTES: usize = 32;

/// The stored code of a category. Do not change: codes are in stored keys and
/// associated data.
pub(crate) fn category_code(category: Category) -> u8 {
    match category {
        Category::IdentityAndContacts => 1,
        Category::CommunicationNeeds => 2,
        Category::HealthSummary => 3,
        Category::SendSupport => 4,
        Category::EducationPlacement => 5,
        Category::SocialCareInvolvement => 6,
        Category::TransitionToAdulthood => 7,
    }
}

/// The category of a stored code.
pub(crate) fn category_from_code(code: u8) -> Option<Category> {
    Category::ALL.into_iter().find(|category| category_code(*category) == code)
}

/// An update record as stored: identifiers in the clear (blind index, category,
/// publisher, time), the value and source reference sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpdateRecord {
    /// The broker's id for the update.
    pub(crate) update_id: [u8; UPDATE_ID_BYTES],
    /// The child's blind index.
    pub(crate) child_index: [u8; CHILD_INDEX_BYTES],
    /// The category.
    pub(crate) category: Category,
    /// When it was committed, microseconds since the Unix epoch.
    pub(crate) committed_at_micros: i64,
    /// The publishing agency's id.
    pub(crate) publisher: String,
    /// The sealed source reference and value (for an amendment, the reason first).
    pub(crate) sealed: Vec<u8>,
    /// What it amends, if it is an amendment (a version 2 or 4 record).
    pub(crate) amends: Option<Amends>,
    /// The generation of the category key its payload is sealed under; 0 for a record
    /// sealed under the child's data key (versions 1 and 2, and erasure notices, which
    /// seal nothing).
    pub(crate) key_generation: u32,
}

/// How an amendment changes the update it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmendKind {
    /// A new value replaces the update, which was wrong.
    Correction,
    /// The update was entered in error and is withdrawn; the category's previous value
    /// (or none) is current again.
    Retraction,
    /// The child was erased (UK GDPR Art. 17): the update can no longer be read, and
    /// whoever was given it is told to erase it too. Written with the key's destruction,
    /// so it has no sealed payload.
    Erasure,
}

impl AmendKind {
    /// The stored code. Do not change: codes are in stored records and associated data.
    fn code(self) -> u8 {
        match self {
            AmendKind::Correction => 1,
            AmendKind::Retraction => 2,
            AmendKind::Erasure => 3,
        }
    }

    fn from_code(code: u8) -> Option<AmendKind> {
        [AmendKind::Correction, AmendKind::Retraction, AmendKind::Erasure].into_iter().find(|kind| kind.code() == code)
    }

    /// A short lower-case name, for audit entries and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            AmendKind::Correction => "correction",
            AmendKind::Retraction => "retraction",
            AmendKind::Erasure => "erasure",
        }
    }
}

/// The update an amendment names, by id: ids, unlike positions, survive a restore onto
/// another engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Amends {
    /// Correction or retraction.
    pub kind: AmendKind,
    /// The amended update's id.
    pub update_id: crate::UpdateId,
}

impl UpdateRecord {
    /// The format version the record is written in.
    fn version(&self) -> u8 {
        match (self.amends.is_some(), self.key_generation > 0) {
            (false, false) => UPDATE_RECORD_V1,
            (true, false) => UPDATE_RECORD_V2,
            (false, true) => UPDATE_RECORD_V3,
            (true, true) => UPDATE_RECORD_V4,
        }
    }

    /// Encodes: version, id, child index, category, time, publisher (length-prefixed),
    /// from version 3 the category key's generation, for an amendment its kind and the
    /// amended id, then the sealed payload (the rest).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(96 + self.publisher.len() + self.sealed.len());
        bytes.push(self.version());
        bytes.extend_from_slice(&self.update_id);
        bytes.extend_from_slice(&self.child_index);
        bytes.push(category_code(self.category));
        bytes.extend_from_slice(&self.committed_at_micros.to_be_bytes());
        // Agency ids are at most 64 bytes (tio-core), so one length byte suffices.
        bytes.push(u8::try_from(self.publisher.len()).unwrap_or(u8::MAX));
        bytes.extend_from_slice(self.publisher.as_bytes());
        if self.key_generation > 0 {
            bytes.extend_from_slice(&self.key_generation.to_be_bytes());
        }
        if let Some(amends) = &self.amends {
            bytes.extend_from_slice(&amends_bytes(amends));
        }
        bytes.extend_from_slice(&self.sealed);
        bytes
    }

    /// Decodes a record of any known version; `None` if it is not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<UpdateRecord> {
        let (&version, rest) = bytes.split_first()?;
        let (amendment, by_category) = match version {
            UPDATE_RECORD_V1 => (false, false),
            UPDATE_RECORD_V2 => (true, false),
            UPDATE_RECORD_V3 => (false, true),
            UPDATE_RECORD_V4 => (true, true),
            _ => return None,
        };
        let update_id = rest.get(..UPDATE_ID_BYTES)?.try_into().ok()?;
        let rest = &rest[UPDATE_ID_BYTES..];
        let child_index = rest.get(..CHILD_INDEX_BYTES)?.try_into().ok()?;
        let rest = &rest[CHILD_INDEX_BYTES..];
        let category = category_from_code(*rest.first()?)?;
        let committed_at_micros = i64::from_be_bytes(rest.get(1..9)?.try_into().ok()?);
        let publisher_len = usize::from(*rest.get(9)?);
        let publisher = std::str::from_utf8(rest.get(10..10 + publisher_len)?).ok()?.to_owned();
        let mut rest = rest.get(10 + publisher_len..)?;
        let key_generation = if by_category {
            let generation = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
            rest = &rest[4..];
            // Generation 0 means the child's key, which versions 1 and 2 say.
            if generation == 0 {
                return None;
            }
            generation
        } else {
            0
        };
        let amends = if amendment {
            let kind = AmendKind::from_code(*rest.first()?)?;
            let update_id = crate::UpdateId(rest.get(1..1 + UPDATE_ID_BYTES)?.try_into().ok()?);
            rest = &rest[1 + UPDATE_ID_BYTES..];
            Some(Amends { kind, update_id })
        } else {
            None
        };
        let sealed = rest.to_vec();
        Some(UpdateRecord {
            update_id,
            child_index,
            category,
            committed_at_micros,
            publisher,
            sealed,
            amends,
            key_generation,
        })
    }

    /// The associated data that binds the sealed payload to this record: the keyspace,
    /// the child, the category, the update id and the format version, from version 3
    /// the key's generation, and for an amendment what it amends. Moving a sealed payload to another record, or pointing
    /// an amendment at another update, makes it fail authentication.
    pub(crate) fn associated_data(&self) -> Vec<u8> {
        let mut associated = b"tio/updates/".to_vec();
        associated.push(self.version());
        associated.extend_from_slice(&self.child_index);
        associated.push(category_code(self.category));
        associated.extend_from_slice(&self.update_id);
        if self.key_generation > 0 {
            associated.extend_from_slice(&self.key_generation.to_be_bytes());
        }
        if let Some(amends) = &self.amends {
            associated.extend_from_slice(&amends_bytes(amends));
        }
        associated
    }
}

/// An amendment's kind and the amended id.
fn amends_bytes(amends: &Amends) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + UPDATE_ID_BYTES);
    bytes.push(amends.kind.code());
    bytes.extend_from_slice(&amends.update_id.0);
    bytes
}

/// Encodes the plaintext sealed in an amendment: the reason (length-prefixed), then
/// what [`encode_payload`] encodes (for a retraction, an empty value).
pub(crate) fn encode_amendment_payload(reason: &str, source_reference: &str, value: &[u8]) -> Vec<u8> {
    let mut bytes = u16::try_from(reason.len()).unwrap_or(u16::MAX).to_be_bytes().to_vec();
    bytes.extend_from_slice(reason.as_bytes());
    bytes.extend_from_slice(&encode_payload(source_reference, value));
    bytes
}

/// Decodes what [`encode_amendment_payload`] encoded: reason, source reference, value.
pub(crate) fn decode_amendment_payload(bytes: &[u8]) -> Option<(String, String, Vec<u8>)> {
    let len = usize::from(u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?));
    let reason = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?.to_owned();
    let (source, value) = decode_payload(bytes.get(2 + len..)?)?;
    Some((reason, source, value))
}

/// Encodes the plaintext sealed in an update record: the source reference
/// (length-prefixed) and the value.
pub(crate) fn encode_payload(source_reference: &str, value: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(2 + source_reference.len() + value.len());
    bytes.extend_from_slice(&u16::try_from(source_reference.len()).unwrap_or(u16::MAX).to_be_bytes());
    bytes.extend_from_slice(source_reference.as_bytes());
    bytes.extend_from_slice(value);
    bytes
}

/// Decodes what [`encode_payload`] encoded.
pub(crate) fn decode_payload(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    let len = usize::from(u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?));
    let source = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?.to_owned();
    Some((source, bytes.get(2 + len..)?.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UpdateRecord {
        UpdateRecord {
            update_id: [7; 16],
            child_index: [9; 32],
            category: Category::SendSupport,
            committed_at_micros: 1_800_000_000_000_000,
            publisher: "send-team".to_owned(),
            sealed: vec![1, 2, 3],
            amends: None,
            key_generation: 0,
        }
    }

    fn retraction() -> UpdateRecord {
        UpdateRecord {
            update_id: [8; 16],
            amends: Some(Amends { kind: AmendKind::Retraction, update_id: crate::UpdateId([7; 16]) }),
            ..sample()
        }
    }

    #[test]
    fn records_round_trip() {
        let record = sample();
        assert_eq!(UpdateRecord::decode(&record.encode()), Some(record));
        assert_eq!(decode_payload(&encode_payload("EPR-42", b"value")), Some(("EPR-42".to_owned(), b"value".to_vec())));
    }

    /// The golden bytes every version starts with: version, id, child, category, time
    /// and publisher (as `sample` has them).
    fn header(version: u8, id: u8) -> Vec<u8> {
        let mut golden = vec![version];
        golden.extend_from_slice(&[id; 16]);
        golden.extend_from_slice(&[9; 32]);
        golden.push(4);
        golden.extend_from_slice(&1_800_000_000_000_000i64.to_be_bytes());
        golden.push(9);
        golden.extend_from_slice(b"send-team");
        golden
    }

    /// Golden bytes of a version 1 record: if this fails, a stored layout changed.
    #[test]
    fn version_1_layout_is_stable() {
        let bytes = sample().encode();
        let mut golden = header(1, 7);
        golden.extend_from_slice(&[1, 2, 3]);
        assert_eq!(bytes, golden);
        assert_eq!(UpdateRecord::decode(&golden), Some(sample()));
    }

    /// Golden bytes of a version 2 record (an amendment).
    #[test]
    fn version_2_layout_is_stable() {
        let record = retraction();
        assert_eq!(UpdateRecord::decode(&record.encode()), Some(record.clone()));
        let mut golden = header(2, 8);
        golden.push(2);
        golden.extend_from_slice(&[7; 16]);
        golden.extend_from_slice(&[1, 2, 3]);
        assert_eq!(record.encode(), golden);
        assert_ne!(record.associated_data(), sample().associated_data());
        let payload = encode_amendment_payload("wrong child", "EPR-9", b"");
        assert_eq!(
            decode_amendment_payload(&payload),
            Some(("wrong child".to_owned(), "EPR-9".to_owned(), Vec::new()))
        );
    }

    /// Golden bytes of versions 3 and 4: a value and an amendment sealed under a
    /// category key, its generation after the publisher.
    #[test]
    fn versions_3_and_4_layouts_are_stable() {
        let value = UpdateRecord { key_generation: 2, ..sample() };
        let mut golden = header(3, 7);
        golden.extend_from_slice(&[0, 0, 0, 2]);
        golden.extend_from_slice(&[1, 2, 3]);
        assert_eq!(value.encode(), golden);
        assert_eq!(UpdateRecord::decode(&golden), Some(value.clone()));

        let amendment = UpdateRecord { key_generation: 2, ..retraction() };
        let mut golden = header(4, 8);
        golden.extend_from_slice(&[0, 0, 0, 2]);
        golden.push(2);
        golden.extend_from_slice(&[7; 16]);
        golden.extend_from_slice(&[1, 2, 3]);
        assert_eq!(amendment.encode(), golden);
        assert_eq!(UpdateRecord::decode(&golden), Some(amendment.clone()));

        // The generation is bound: the same record under another generation, or under
        // the child's key, does not authenticate with this one's associated data.
        let other = UpdateRecord { key_generation: 3, ..sample() };
        assert_ne!(value.associated_data(), other.associated_data());
        assert_ne!(value.associated_data(), sample().associated_data());
        // A version 3 record may not claim generation 0 (the child's key).
        let mut zero = value.encode();
        zero[68..72].copy_from_slice(&[0, 0, 0, 0]);
        assert_eq!(UpdateRecord::decode(&zero), None);
    }

    #[test]
    fn truncated_or_unknown_records_do_not_decode() {
        let bytes = sample().encode();
        for len in 0..60 {
            assert_eq!(UpdateRecord::decode(&bytes[..len]), None, "length {len}");
        }
        let amendment = retraction().encode();
        // Cut inside the amended update's id.
        for len in 60..85 {
            assert_eq!(UpdateRecord::decode(&amendment[..len]), None, "length {len}");
        }
        let mut unknown = bytes.clone();
        unknown[0] = 5;
        assert_eq!(UpdateRecord::decode(&unknown), None);
        let mut unknown_kind = amendment.clone();
        unknown_kind[68] = 9;
        assert_eq!(UpdateRecord::decode(&unknown_kind), None);
    }

    #[test]
    fn category_codes_round_trip() {
        for category in Category::ALL {
            assert_eq!(category_from_code(category_code(category)), Some(category));
        }
        assert_eq!(category_from_code(0), None);
    }
}
