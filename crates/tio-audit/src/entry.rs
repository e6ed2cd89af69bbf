//! Audit entries as auditors see them, and the canonical bytes a leaf hashes.
//!
//! An entry names the child only by its blind index and its NHS number sealed under the
//! child's data key, so erasing the child's key leaves every entry, and the log,
//! verifiable while revealing nothing. Do not change the field names: they are hashed.

use serde::{Deserialize, Serialize};

use crate::merkle::{Hash, leaf_hash};

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// SHA-256 of the client certificate, lowercase hex.
    pub certificate_fingerprint: String,
    /// The agency, admin or auditor id from the certificate.
    pub id: String,
    /// The professional's id from `x-tio-professional`, if sent.
    pub professional_id: String,
    /// `agency`, `admin` or `auditor`.
    pub role: String,
}

/// One audit entry: one leaf of the log. Fields stay in alphabetical order (their
/// serialised order is the canonical order that is hashed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// What was done (`publish`, `profile_read`, `delivery`, `admin`, ...).
    pub action: String,
    /// Who acted.
    pub actor: Actor,
    /// Category names.
    pub categories: Vec<String>,
    /// The child's keyed blind index (hex), or empty.
    pub child_index: String,
    /// The NHS number sealed under the child's data key (base64), or empty.
    pub child_sealed: String,
    /// For disclosures: the consent id and revision, and the care relationship.
    pub consent_id: String,
    /// The consent revision, 0 if none.
    pub consent_revision: u32,
    /// Dense from 0: the leaf's index.
    pub leaf_index: u64,
    /// `allowed`, `denied` or `failed`.
    pub outcome: String,
    /// The reason code of a denial (`no_consent`, ...), else empty.
    pub reason: String,
    /// For deliveries: the receiving agency.
    pub recipient_agency_id: String,
    /// The care relationship id.
    pub relationship_id: String,
    /// The request id.
    pub request_id: String,
    /// Microseconds since the Unix epoch, UTC.
    pub time_micros: i64,
    /// The W3C trace id, if any.
    pub trace_id: String,
    /// The update concerned.
    pub update_id: String,
}

impl AuditEntry {
    /// Returns the canonical bytes of the entry: JSON with keys sorted and no white
    /// space, so that the same fields always hash the same way.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Fields are declared in sorted order, so serde's order is the canonical one; a
        // test checks this against a sorted-map serialisation.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Returns the entry's leaf hash.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.canonical_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the canonical form: direct serialisation equals the key-sorted form.
    #[test]
    fn canonical_bytes_have_sorted_keys_and_no_white_space() {
        let entry = AuditEntry {
            leaf_index: 3,
            actor: Actor { id: "gp".into(), ..Actor::default() },
            categories: vec!["send_support".into()],
            ..AuditEntry::default()
        };
        let sorted = serde_json::to_vec(&serde_json::to_value(&entry).unwrap()).unwrap();
        assert_eq!(entry.canonical_bytes(), sorted);
        assert!(!entry.canonical_bytes().contains(&b' '));
        let text = String::from_utf8(entry.canonical_bytes()).unwrap();
        assert!(text.starts_with("{\"action\":\"\",\"actor\":{\"certificate_fingerprint\""), "{text}");
    }
}
