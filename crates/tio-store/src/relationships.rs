//! Care relationships, in the `relationships` keyspace: every relationship of an agency
//! with a child, active and ended, sealed under the child's data key. This module owns
//! their key layout and encoding; the broker builds no key and parses no byte of them.
//!
//! Key: the child's blind index, then the relationship id. Sealed value: a version
//! byte, then JSON ([`crate::versioned`]); a relationship written before the version
//! byte existed (the contract's own `tio.v1.CareRelationship`, protobuf) still reads.

use serde::{Deserialize, Serialize};
use tio_core::{AgencyId, CareRelationship, RelationshipId, RelationshipKind, RelationshipRecord, Timestamp};

use crate::engine::Keyspace;
use crate::versioned::{JSON_V1, decode_json, encode};
use crate::{ChildRef, Condition, Op, Store, StoreError};

/// A relationship as read, with where and how it is stored, so that a change can be made
/// on condition that nobody changed it meanwhile.
#[derive(Debug, Clone)]
pub struct StoredRelationship {
    /// The relationship.
    pub record: RelationshipRecord,
    key: Vec<u8>,
    raw: Vec<u8>,
}

impl StoredRelationship {
    /// Returns the precondition that the relationship is still as read.
    pub fn unchanged(&self) -> Condition {
        Condition::Equals { space: Keyspace::Relationships, key: self.key.clone(), value: self.raw.clone() }
    }
}

impl Store {
    /// Returns the precondition that `record` is new and the operation that stores it.
    /// The child must have a data key ([`Store::ensure_child_key`]).
    pub fn put_new_relationship(
        &self,
        child: &(impl ChildRef + ?Sized),
        record: &RelationshipRecord,
    ) -> Result<(Condition, Op), StoreError> {
        let suffix = record.relationship.id.0.as_bytes();
        let condition = Condition::Absent { space: Keyspace::Relationships, key: self.child_record_key(child, suffix) };
        Ok((condition, self.put_relationship(child, record)?))
    }

    /// Returns the operation that stores `record` (new, or a change of one read).
    pub fn put_relationship(
        &self,
        child: &(impl ChildRef + ?Sized),
        record: &RelationshipRecord,
    ) -> Result<Op, StoreError> {
        let suffix = record.relationship.id.0.as_bytes();
        self.sealed_put(child, Keyspace::Relationships, suffix, &encode_record(record))
    }

    /// Returns every relationship with `child`, active and ended, in id order. On a
    /// store no other node writes they come from the child's kept records
    /// ([`Store::child_records`]), read whole and kept on a miss (every publish asks
    /// whether its publisher is involved); on a shared store they are read alone, now.
    pub fn relationships(&self, child: &(impl ChildRef + ?Sized)) -> Result<Vec<StoredRelationship>, StoreError> {
        if !self.shared() {
            return Ok(self.kept_child_records(child, false)?.relationships.clone());
        }
        self.relationships_read_alone(child)
    }

    /// Reads every relationship with `child` from the store, nothing else.
    pub(crate) fn relationships_read_alone(
        &self,
        child: &(impl ChildRef + ?Sized),
    ) -> Result<Vec<StoredRelationship>, StoreError> {
        let records = self.read_sealed(child, Keyspace::Relationships, b"")?;
        self.stored_relationships(child, records)
    }

    /// A child's relationship records as read, decoded.
    pub(crate) fn stored_relationships(
        &self,
        child: &(impl ChildRef + ?Sized),
        records: Vec<crate::SealedRecord>,
    ) -> Result<Vec<StoredRelationship>, StoreError> {
        records
            .into_iter()
            .map(|sealed| {
                Ok(StoredRelationship {
                    record: decode_record(&sealed.plaintext)?,
                    key: self.child_record_key(child, &sealed.suffix),
                    raw: sealed.raw,
                })
            })
            .collect()
    }
}

/// Version 1's body.
#[derive(Debug, Serialize, Deserialize)]
struct RelationshipV1 {
    id: String,
    agency: String,
    kind: String,
    reference: String,
    started_at_micros: i64,
    ended_at_micros: Option<i64>,
    declared_by_professional: String,
    end_reason: String,
}

fn encode_record(record: &RelationshipRecord) -> Vec<u8> {
    let relationship = &record.relationship;
    encode(&RelationshipV1 {
        id: relationship.id.0.clone(),
        agency: relationship.agency.as_str().to_owned(),
        kind: relationship.kind.as_str().to_owned(),
        reference: record.reference.clone(),
        started_at_micros: relationship.started_at.unix_micros(),
        ended_at_micros: relationship.ended_at.map(Timestamp::unix_micros),
        declared_by_professional: record.declared_by_professional.clone(),
        end_reason: record.end_reason.clone(),
    })
}

fn decode_record(plaintext: &[u8]) -> Result<RelationshipRecord, StoreError> {
    let v1: RelationshipV1 = match plaintext.first() {
        Some(&JSON_V1) => decode_json(&plaintext[1..], "relationship")?,
        // The previous format, the contract's message, starts with field 1 (the id).
        Some(&previous::FIRST_BYTE) => previous::decode(plaintext)?,
        _ => return Err(StoreError::Corrupt("a stored relationship has an unknown format".into())),
    };
    let corrupt = || StoreError::Corrupt(format!("the stored relationship `{}` is invalid", v1.id));
    Ok(RelationshipRecord {
        relationship: CareRelationship {
            id: RelationshipId(v1.id.clone()),
            agency: AgencyId::parse("agency", &v1.agency).map_err(|_| corrupt())?,
            kind: RelationshipKind::from_name(&v1.kind).ok_or_else(corrupt)?,
            started_at: Timestamp::from_unix_micros(v1.started_at_micros),
            ended_at: v1.ended_at_micros.map(Timestamp::from_unix_micros),
        },
        reference: v1.reference,
        declared_by_professional: v1.declared_by_professional,
        end_reason: v1.end_reason,
    })
}

/// The format before the version byte: the contract's `tio.v1.CareRelationship` as it
/// was when those records were written, frozen here (see [`crate::previous`]).
mod previous {
    use super::RelationshipV1;
    use crate::StoreError;
    use crate::previous::{Timestamp, micros, name_of};

    /// Field 1 (the relationship id), length-delimited: how every such record starts.
    pub(super) const FIRST_BYTE: u8 = 0x0a;

    #[derive(Clone, PartialEq, prost::Message)]
    struct CareRelationship {
        #[prost(string, tag = "1")]
        relationship_id: String,
        #[prost(string, tag = "2")]
        agency_id: String,
        #[prost(int32, tag = "3")]
        kind: i32,
        #[prost(string, tag = "4")]
        reference: String,
        #[prost(message, optional, tag = "5")]
        started_at: Option<Timestamp>,
        #[prost(message, optional, tag = "6")]
        ended_at: Option<Timestamp>,
        #[prost(string, tag = "7")]
        declared_by_professional_id: String,
        #[prost(string, tag = "8")]
        end_reason: String,
    }

    const KINDS: [&str; 5] = ["referral", "enrolment", "allocation", "registration", "publisher"];

    pub(super) fn decode(bytes: &[u8]) -> Result<RelationshipV1, StoreError> {
        let corrupt = || StoreError::Corrupt("a stored relationship of the previous format does not decode".into());
        let old = <CareRelationship as prost::Message>::decode(bytes).map_err(|_| corrupt())?;
        Ok(RelationshipV1 {
            kind: name_of(&KINDS, old.kind).ok_or_else(corrupt)?,
            started_at_micros: micros(old.started_at).ok_or_else(corrupt)?,
            ended_at_micros: micros(old.ended_at),
            id: old.relationship_id,
            agency: old.agency_id,
            reference: old.reference,
            declared_by_professional: old.declared_by_professional_id,
            end_reason: old.end_reason,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use tio_core::NhsNumber;

    use super::*;
    use crate::keys::KeyRing;

    pub(crate) fn record() -> RelationshipRecord {
        RelationshipRecord {
            relationship: CareRelationship {
                id: RelationshipId("r-1".into()),
                agency: AgencyId::parse("id", "school").unwrap(),
                kind: RelationshipKind::Enrolment,
                started_at: Timestamp::from_unix_seconds(1_800_000_000),
                ended_at: Some(Timestamp::from_unix_seconds(1_800_000_060)),
            },
            reference: "ENR-1".into(),
            declared_by_professional: "ms-k".into(),
            end_reason: "left".into(),
        }
    }

    /// The bytes this release seals, and the bytes the previous release sealed (the
    /// contract's message, as prost encoded it): both read. Do not change these fixtures.
    #[test]
    fn golden_bytes_of_this_and_the_previous_format_read() {
        let golden: &[u8] =
            b"\x01{\"id\":\"r-1\",\"agency\":\"school\",\"kind\":\"enrolment\",\"reference\":\"ENR-1\",\
\"started_at_micros\":1800000000000000,\"ended_at_micros\":1800000060000000,\"declared_by_professional\":\"ms-k\",\
\"end_reason\":\"left\"}";
        assert_eq!(encode_record(&record()), golden);
        assert_eq!(decode_record(golden).unwrap(), record());
        let previous: &[u8] =
            b"\x0a\x03\x72\x2d\x31\x12\x06\x73\x63\x68\x6f\x6f\x6c\x18\x02\x22\x05\x45\x4e\x52\x2d\x31\x2a\x06\
\x08\x80\xa4\xa7\xda\x06\x32\x06\x08\xbc\xa4\xa7\xda\x06\x3a\x04\x6d\x73\x2d\x6b\x42\x04\x6c\x65\
\x66\x74";
        assert_eq!(decode_record(previous).unwrap(), record());
        for damaged in [&b""[..], b"\x02{}", b"\x0a\x03r-1\x18\x09"] {
            assert!(matches!(decode_record(damaged), Err(StoreError::Corrupt(_))), "{damaged:?}");
        }
    }

    #[tokio::test]
    async fn relationships_are_new_then_changed_on_condition() {
        let store = Store::in_memory(KeyRing::generate().unwrap()).unwrap();
        let child = NhsNumber::parse("9990079196", &tio_core::NhsNumberPolicy::development()).unwrap();
        store.ensure_child_key(&child).await.unwrap();
        let active = RelationshipRecord {
            relationship: CareRelationship { ended_at: None, ..record().relationship },
            end_reason: String::new(),
            ..record()
        };
        let (absent, op) = store.put_new_relationship(&child, &active).unwrap();
        let mut batch = crate::Batch::new();
        batch.require(absent.clone());
        batch.push(op);
        store.commit(batch).await.unwrap();
        let stored = store.relationships(&child).unwrap().remove(0);
        assert_eq!(stored.record, active);

        let mut end = crate::Batch::new();
        end.require(stored.unchanged());
        end.push(store.put_relationship(&child, &record()).unwrap());
        store.commit(end).await.unwrap();
        let mut stale = crate::Batch::new();
        stale.require(stored.unchanged());
        assert!(matches!(store.commit(stale).await, Err(StoreError::Conflict { .. })));
        let mut again = crate::Batch::new();
        again.require(absent);
        assert!(matches!(store.commit(again).await, Err(StoreError::Conflict { .. })));
        assert_eq!(store.relationships(&child).unwrap()[0].record, record());
    }
}
