//! The agency registry's records, in the `agencies` keyspace: one record per agency and
//! one per revoked certificate. This module owns their key layout and encoding; the
//! broker builds no key and parses no byte of them.
//!
//! Keys: `agency/{id}` and `revoked/{fingerprint}`. An agency's value is a version byte
//! then JSON ([`crate::versioned`]); a record written before the version byte existed
//! (the contract's own `tio.v1.Agency` message, protobuf) still reads. A revocation's
//! value is its reason, as text. Nothing here is personal data.

use serde::{Deserialize, Serialize};
use tio_core::{Agency, AgencyId, Category, CategorySet, FieldViolation, OrganisationCodeKind, Sector, Timestamp};

use crate::engine::{Keyspace, prefix_end};
use crate::versioned::{JSON_V1, decode_json, encode};
use crate::{Condition, Op, Store, StoreError};

/// Key prefixes. Do not change.
const AGENCY_PREFIX: &[u8] = b"agency/";
const REVOKED_PREFIX: &[u8] = b"revoked/";

/// The most agencies, or revocations, the registry reads.
pub const MAX_AGENCIES: usize = 100_000;

/// An agency as the registry stores it: the domain agency, the code it is known by
/// outside the broker, and when it was registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyRecord {
    /// The agency and its permissions.
    pub agency: Agency,
    /// Its organisation code, if it was given one.
    pub code: Option<(OrganisationCodeKind, String)>,
    /// When it was registered (absent for a record of the previous format that had none).
    pub registered_at: Option<Timestamp>,
}

/// An agency record as read, with the bytes it was read as, so that a change can be
/// made on condition that nobody changed it meanwhile.
#[derive(Debug, Clone)]
pub struct StoredAgency {
    /// The record.
    pub record: AgencyRecord,
    bytes: Vec<u8>,
}

impl StoredAgency {
    /// Returns the precondition that the record is still as read.
    pub fn unchanged(&self) -> Condition {
        Condition::Equals {
            space: Keyspace::Agencies,
            key: agency_key(self.record.agency.id.as_str()),
            value: self.bytes.clone(),
        }
    }
}

/// Returns the operation that stores `record`.
pub fn put_agency(record: &AgencyRecord) -> Op {
    Op::Put { space: Keyspace::Agencies, key: agency_key(record.agency.id.as_str()), value: encode_record(record) }
}

/// Returns the precondition that no agency `id` is registered.
pub fn agency_absent(id: &AgencyId) -> Condition {
    Condition::Absent { space: Keyspace::Agencies, key: agency_key(id.as_str()) }
}

/// Returns the operation that records certificate `fingerprint` as revoked, with
/// `reason` (may be empty).
pub fn put_revoked(fingerprint: &str, reason: &str) -> Op {
    Op::Put { space: Keyspace::Agencies, key: revoked_key(fingerprint), value: reason.as_bytes().to_vec() }
}

impl Store {
    /// Returns every registered agency, in id order.
    pub fn agencies(&self) -> Result<Vec<AgencyRecord>, StoreError> {
        let end = prefix_end(AGENCY_PREFIX);
        self.engine
            .scan(Keyspace::Agencies, AGENCY_PREFIX, end.as_deref(), MAX_AGENCIES)?
            .iter()
            .map(|(_, bytes)| decode_record(bytes))
            .collect()
    }

    /// Returns agency `id`'s record, if it is registered.
    pub fn agency(&self, id: &str) -> Result<Option<StoredAgency>, StoreError> {
        let Some(bytes) = self.engine.get(Keyspace::Agencies, &agency_key(id))? else { return Ok(None) };
        Ok(Some(StoredAgency { record: decode_record(&bytes)?, bytes }))
    }

    /// Returns the fingerprint of every revoked certificate.
    pub fn revoked_certificates(&self) -> Result<Vec<String>, StoreError> {
        let end = prefix_end(REVOKED_PREFIX);
        self.engine
            .scan(Keyspace::Agencies, REVOKED_PREFIX, end.as_deref(), MAX_AGENCIES)?
            .iter()
            .map(|(key, _)| {
                std::str::from_utf8(&key[REVOKED_PREFIX.len()..])
                    .map(str::to_owned)
                    .map_err(|_| StoreError::Corrupt("a revoked fingerprint is not text".into()))
            })
            .collect()
    }
}

fn agency_key(id: &str) -> Vec<u8> {
    [AGENCY_PREFIX, id.as_bytes()].concat()
}

fn revoked_key(fingerprint: &str) -> Vec<u8> {
    [REVOKED_PREFIX, fingerprint.as_bytes()].concat()
}

/// Version 1's body: every enum by its stable name.
#[derive(Debug, Serialize, Deserialize)]
struct AgencyV1 {
    id: String,
    name: String,
    sector: String,
    may_publish: Vec<String>,
    may_read: Vec<String>,
    may_record_consent: bool,
    suspended: bool,
    code_kind: Option<String>,
    /// Left out when false, so that records written before it read and encode alike.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    may_declare_safeguarding: bool,
    /// Left out when false, like the safeguarding permission.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    may_run_ehc_assessments: bool,
    code: String,
    registered_at_micros: Option<i64>,
}

fn encode_record(record: &AgencyRecord) -> Vec<u8> {
    let agency = &record.agency;
    let names = |set: CategorySet| set.iter().map(|category| category.as_str().to_owned()).collect();
    encode(&AgencyV1 {
        id: agency.id.as_str().to_owned(),
        name: agency.name.clone(),
        sector: agency.sector.as_str().to_owned(),
        may_publish: names(agency.may_publish),
        may_read: names(agency.may_read),
        may_record_consent: agency.may_record_consent,
        suspended: agency.suspended,
        may_declare_safeguarding: agency.may_declare_safeguarding,
        may_run_ehc_assessments: agency.may_run_ehc_assessments,
        code_kind: record.code.as_ref().map(|(kind, _)| kind.as_str().to_owned()),
        code: record.code.as_ref().map(|(_, code)| code.clone()).unwrap_or_default(),
        registered_at_micros: record.registered_at.map(Timestamp::unix_micros),
    })
}

fn decode_record(bytes: &[u8]) -> Result<AgencyRecord, StoreError> {
    let v1: AgencyV1 = match bytes.first() {
        Some(&JSON_V1) => decode_json(&bytes[1..], "agency record")?,
        // The previous format, the contract's message, starts with field 1 (the id).
        Some(&previous::FIRST_BYTE) => previous::decode(bytes)?,
        _ => return Err(StoreError::Corrupt("a stored agency record has an unknown format".into())),
    };
    let corrupt = |violation: FieldViolation| {
        StoreError::Corrupt(format!("the stored agency `{}` is invalid: {violation}", v1.id))
    };
    let categories = |field: &str, names: &[String]| {
        names
            .iter()
            .map(|name| Category::from_name(name).ok_or_else(|| FieldViolation::new(field, "unknown category")))
            .collect::<Result<CategorySet, _>>()
    };
    let code = match &v1.code_kind {
        None => None,
        Some(name) => {
            let kind = OrganisationCodeKind::from_name(name)
                .ok_or_else(|| corrupt(FieldViolation::new("code_kind", "unknown kind")))?;
            kind.validate("code", &v1.code).map_err(corrupt)?;
            Some((kind, v1.code.clone()))
        }
    };
    Agency::check_name("name", &v1.name).map_err(corrupt)?;
    let agency = Agency {
        id: AgencyId::parse("id", &v1.id).map_err(corrupt)?,
        name: v1.name.clone(),
        sector: Sector::from_name(&v1.sector).ok_or_else(|| corrupt(FieldViolation::new("sector", "unknown")))?,
        may_publish: categories("may_publish", &v1.may_publish).map_err(corrupt)?,
        may_read: categories("may_read", &v1.may_read).map_err(corrupt)?,
        may_record_consent: v1.may_record_consent,
        may_declare_safeguarding: v1.may_declare_safeguarding,
        may_run_ehc_assessments: v1.may_run_ehc_assessments,
        suspended: v1.suspended,
    };
    Ok(AgencyRecord { agency, code, registered_at: v1.registered_at_micros.map(Timestamp::from_unix_micros) })
}

/// The format before the version byte: the contract's `tio.v1.Agency` as it was when
/// those records were written, frozen here so that the store reads them without
/// depending on the contract. Its enum numbers are the contract's of that time.
mod previous {
    use super::AgencyV1;
    use crate::StoreError;
    use crate::previous::{SECTORS, Timestamp, category_names, micros, name_of};

    /// Field 1 (the id), length-delimited: how every such record starts.
    pub(super) const FIRST_BYTE: u8 = 0x0a;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Agency {
        #[prost(string, tag = "1")]
        id: String,
        #[prost(string, tag = "2")]
        name: String,
        #[prost(int32, tag = "3")]
        sector: i32,
        #[prost(int32, tag = "4")]
        code_kind: i32,
        #[prost(string, tag = "5")]
        code: String,
        #[prost(int32, repeated, tag = "6")]
        may_publish: Vec<i32>,
        #[prost(int32, repeated, tag = "7")]
        may_read: Vec<i32>,
        #[prost(bool, tag = "8")]
        may_record_consent: bool,
        #[prost(bool, tag = "9")]
        suspended: bool,
        #[prost(message, optional, tag = "10")]
        registered_at: Option<Timestamp>,
    }

    const CODE_KINDS: [&str; 3] = ["ods", "school_urn", "local_authority"];

    pub(super) fn decode(bytes: &[u8]) -> Result<AgencyV1, StoreError> {
        let corrupt = || StoreError::Corrupt("a stored agency record of the previous format does not decode".into());
        let old = <Agency as prost::Message>::decode(bytes).map_err(|_| corrupt())?;
        let code_kind = match old.code_kind {
            0 => None,
            number => Some(name_of(&CODE_KINDS, number).ok_or_else(corrupt)?),
        };
        Ok(AgencyV1 {
            sector: name_of(&SECTORS, old.sector).ok_or_else(corrupt)?,
            may_publish: category_names(&old.may_publish).ok_or_else(corrupt)?,
            may_read: category_names(&old.may_read).ok_or_else(corrupt)?,
            id: old.id,
            name: old.name,
            may_record_consent: old.may_record_consent,
            suspended: old.suspended,
            may_declare_safeguarding: false,
            may_run_ehc_assessments: false,
            code_kind,
            code: old.code,
            registered_at_micros: micros(old.registered_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safeguarding_permission_is_kept_and_left_out_when_off() {
        let mut granted = record();
        granted.agency.may_declare_safeguarding = true;
        let bytes = encode_record(&granted);
        assert!(String::from_utf8_lossy(&bytes).contains("\"may_declare_safeguarding\":true"));
        assert_eq!(decode_record(&bytes).unwrap(), granted);
        assert!(!String::from_utf8_lossy(&encode_record(&record())).contains("may_declare_safeguarding"));
    }

    #[test]
    fn the_assessment_permission_is_kept_and_left_out_when_off() {
        let mut granted = record();
        granted.agency.may_run_ehc_assessments = true;
        let bytes = encode_record(&granted);
        assert!(String::from_utf8_lossy(&bytes).contains("\"may_run_ehc_assessments\":true"));
        assert_eq!(decode_record(&bytes).unwrap(), granted);
        assert!(!String::from_utf8_lossy(&encode_record(&record())).contains("may_run_ehc_assessments"));
    }

    fn record() -> AgencyRecord {
        AgencyRecord {
            agency: Agency {
                id: AgencyId::parse("id", "meadow-primary").unwrap(),
                name: "Meadow Primary School".into(),
                sector: Sector::Education,
                may_publish: [Category::SendSupport, Category::EducationPlacement].into_iter().collect(),
                may_read: [Category::CommunicationNeeds].into_iter().collect(),
                may_record_consent: true,
                may_declare_safeguarding: false,
                may_run_ehc_assessments: false,
                suspended: false,
            },
            code: Some((OrganisationCodeKind::SchoolUrn, "100000".into())),
            registered_at: Some(Timestamp::from_unix_micros(1_800_000_000_000_000)),
        }
    }

    /// The bytes this release writes, and the bytes the previous release wrote (the
    /// contract's message): both read. Do not change these fixtures.
    #[test]
    fn golden_bytes_of_this_and_the_previous_format_read() {
        let golden: &[u8] =
            b"\x01{\"id\":\"meadow-primary\",\"name\":\"Meadow Primary School\",\"sector\":\"education\",\
\"may_publish\":[\"send_support\",\"education_placement\"],\"may_read\":[\"communication_needs\"],\
\"may_record_consent\":true,\"suspended\":false,\"code_kind\":\"school_urn\",\"code\":\"100000\",\
\"registered_at_micros\":1800000000000000}";
        assert_eq!(encode_record(&record()), golden);
        assert_eq!(decode_record(golden).unwrap(), record());
        // tio.v1.Agency as the previous release stored it (prost's encoding).
        let previous: &[u8] = b"\x0a\x0emeadow-primary\x12\x15Meadow Primary School\x18\x02\x20\x02\
\x2a\x06100000\x32\x02\x04\x05\x3a\x01\x02\x40\x01\x52\x06\x08\x80\xa4\xa7\xda\x06";
        assert_eq!(decode_record(previous).unwrap(), record());
    }

    #[test]
    fn damaged_or_invalid_records_are_corruption() {
        let mut bad_id = encode_record(&record());
        let at = bad_id.windows(14).position(|w| w == b"meadow-primary").unwrap();
        bad_id[at] = b'M';
        for bytes in [&b""[..], b"\x09{}", b"\x01{", &bad_id, b"\x0a\x03abc\x18\x09"] {
            assert!(matches!(decode_record(bytes), Err(StoreError::Corrupt(_))), "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn agencies_and_revocations_are_read_back_and_changed_on_condition() {
        let store = Store::in_memory(crate::keys::KeyRing::generate().unwrap()).unwrap();
        let mut batch = crate::Batch::new();
        batch.require(agency_absent(&record().agency.id));
        batch.push(put_agency(&record()));
        batch.push(put_revoked(&"ab".repeat(32), "lost laptop"));
        store.commit(batch).await.unwrap();
        assert_eq!(store.agencies().unwrap(), [record()]);
        assert_eq!(store.revoked_certificates().unwrap(), ["ab".repeat(32)]);
        assert!(store.agency("meadow").unwrap().is_none());

        let stored = store.agency("meadow-primary").unwrap().unwrap();
        let mut suspended = record();
        suspended.agency.suspended = true;
        let mut batch = crate::Batch::new();
        batch.require(stored.unchanged());
        batch.push(put_agency(&suspended));
        store.commit(batch).await.unwrap();
        let mut stale = crate::Batch::new();
        stale.require(stored.unchanged());
        stale.push(put_agency(&record()));
        assert!(matches!(store.commit(stale).await, Err(StoreError::Conflict { .. })));
        let mut again = crate::Batch::new();
        again.require(agency_absent(&record().agency.id));
        again.push(put_agency(&record()));
        assert!(matches!(store.commit(again).await, Err(StoreError::Conflict { .. })));
        assert!(store.agency("meadow-primary").unwrap().unwrap().record.agency.suspended);
    }
}
