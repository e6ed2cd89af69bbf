//! The compact form an audit entry is kept in inside the store.
//!
//! The log hashes an entry's canonical JSON (see [`tio_audit::entry`]); storing that JSON
//! costs every commit about 650 bytes, most of them key names and hex digits. The store
//! keeps a protobuf message instead, with hex and base64 fields as raw bytes, about 300
//! bytes, and the canonical JSON is rebuilt from it exactly: every text field is kept
//! either as the bytes it spells (only when spelling them again gives the same text) or
//! as the text itself. Entries stored as JSON by earlier versions still read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::Message;

use tio_audit::entry::{Actor, AuditEntry};

/// The first byte of a compact entry; JSON entries start with `{`. Do not change.
const COMPACT_FORMAT: u8 = 1;

/// A text field, kept as compactly as it can be and given back exactly.
#[derive(Clone, PartialEq, Message)]
struct Text {
    #[prost(oneof = "Form", tags = "1, 2, 3")]
    form: Option<Form>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Form {
    /// Lowercase hex digits, as the bytes they spell.
    #[prost(bytes, tag = "1")]
    Hex(Vec<u8>),
    /// Standard base64 with padding, as the bytes it spells.
    #[prost(bytes, tag = "2")]
    Base64(Vec<u8>),
    /// Anything else, as it is.
    #[prost(string, tag = "3")]
    Plain(String),
}

/// The stored form of an [`AuditEntry`] (its leaf index is its position in the store).
#[derive(Clone, PartialEq, Message)]
struct StoredEntry {
    #[prost(string, tag = "1")]
    action: String,
    #[prost(string, tag = "2")]
    actor_id: String,
    #[prost(string, tag = "3")]
    actor_role: String,
    #[prost(string, tag = "4")]
    actor_professional_id: String,
    #[prost(message, optional, tag = "5")]
    actor_certificate_fingerprint: Option<Text>,
    #[prost(string, repeated, tag = "6")]
    categories: Vec<String>,
    #[prost(message, optional, tag = "7")]
    child_index: Option<Text>,
    #[prost(message, optional, tag = "8")]
    child_sealed: Option<Text>,
    #[prost(string, tag = "9")]
    consent_id: String,
    #[prost(uint32, tag = "10")]
    consent_revision: u32,
    #[prost(string, tag = "11")]
    detail: String,
    #[prost(string, tag = "12")]
    outcome: String,
    #[prost(string, tag = "13")]
    reason: String,
    #[prost(string, tag = "14")]
    recipient_agency_id: String,
    #[prost(string, tag = "15")]
    relationship_id: String,
    #[prost(message, optional, tag = "16")]
    request_id: Option<Text>,
    #[prost(sint64, tag = "17")]
    time_micros: i64,
    #[prost(message, optional, tag = "18")]
    trace_id: Option<Text>,
    #[prost(message, optional, tag = "19")]
    update_id: Option<Text>,
    #[prost(string, tag = "20")]
    basis: String,
    #[prost(string, repeated, tag = "21")]
    overrides: Vec<String>,
    #[prost(string, tag = "22")]
    alert: String,
    #[prost(string, repeated, tag = "23")]
    alert_to: Vec<String>,
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() {
        return None;
    }
    // Only lowercase spellings, so that spelling the bytes again gives the same text:
    // checked on the characters rather than by spelling them again, since every
    // delivery's entry carries three hex fields.
    if !text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)) {
        return None;
    }
    hex::decode(text).ok()
}

fn compact(text: &str) -> Option<Text> {
    if text.is_empty() {
        return None;
    }
    if let Some(bytes) = unhex(text) {
        return Some(Text { form: Some(Form::Hex(bytes)) });
    }
    if let Ok(bytes) = STANDARD.decode(text)
        && STANDARD.encode(&bytes) == text
    {
        return Some(Text { form: Some(Form::Base64(bytes)) });
    }
    Some(Text { form: Some(Form::Plain(text.to_owned())) })
}

fn expand(text: Option<Text>) -> String {
    match text.and_then(|text| text.form) {
        None => String::new(),
        Some(Form::Hex(bytes)) => hex::encode(&bytes),
        Some(Form::Base64(bytes)) => STANDARD.encode(bytes),
        Some(Form::Plain(text)) => text,
    }
}

/// Returns the stored bytes of `entry` (its leaf index is not stored).
pub(crate) fn encode(entry: &AuditEntry) -> Vec<u8> {
    let stored = StoredEntry {
        action: entry.action.clone(),
        actor_id: entry.actor.id.clone(),
        actor_role: entry.actor.role.clone(),
        actor_professional_id: entry.actor.professional_id.clone(),
        actor_certificate_fingerprint: compact(&entry.actor.certificate_fingerprint),
        categories: entry.categories.clone(),
        child_index: compact(&entry.child_index),
        child_sealed: compact(&entry.child_sealed),
        consent_id: entry.consent_id.clone(),
        consent_revision: entry.consent_revision,
        detail: entry.detail.clone(),
        outcome: entry.outcome.clone(),
        reason: entry.reason.clone(),
        recipient_agency_id: entry.recipient_agency_id.clone(),
        relationship_id: entry.relationship_id.clone(),
        request_id: compact(&entry.request_id),
        time_micros: entry.time_micros,
        trace_id: compact(&entry.trace_id),
        update_id: compact(&entry.update_id),
        basis: entry.basis.clone(),
        overrides: entry.overrides.clone(),
        alert: entry.alert.clone(),
        alert_to: entry.alert_to.clone(),
    };
    let mut bytes = vec![COMPACT_FORMAT];
    // prost fails only when the buffer has no room, and a Vec grows.
    stored.encode(&mut bytes).expect("encoding into a Vec cannot run out of room");
    bytes
}

/// Reads stored bytes (compact, or JSON from earlier versions) back into the entry with
/// leaf index `leaf_index`.
pub(crate) fn decode(leaf_index: u64, bytes: &[u8]) -> Result<AuditEntry, String> {
    match bytes.first() {
        Some(&COMPACT_FORMAT) => {
            let stored = StoredEntry::decode(&bytes[1..]).map_err(|err| err.to_string())?;
            Ok(AuditEntry {
                action: stored.action,
                basis: stored.basis,
                overrides: stored.overrides,
                alert: stored.alert,
                alert_to: stored.alert_to,
                actor: Actor {
                    certificate_fingerprint: expand(stored.actor_certificate_fingerprint),
                    id: stored.actor_id,
                    professional_id: stored.actor_professional_id,
                    role: stored.actor_role,
                },
                categories: stored.categories,
                child_index: expand(stored.child_index),
                child_sealed: expand(stored.child_sealed),
                consent_id: stored.consent_id,
                consent_revision: stored.consent_revision,
                detail: stored.detail,
                leaf_index,
                outcome: stored.outcome,
                reason: stored.reason,
                recipient_agency_id: stored.recipient_agency_id,
                relationship_id: stored.relationship_id,
                request_id: expand(stored.request_id),
                time_micros: stored.time_micros,
                trace_id: expand(stored.trace_id),
                update_id: expand(stored.update_id),
            })
        }
        Some(b'{') => {
            let entry: AuditEntry = serde_json::from_slice(bytes).map_err(|err| err.to_string())?;
            Ok(AuditEntry { leaf_index, ..entry })
        }
        _ => Err("unknown entry format".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn typical() -> AuditEntry {
        AuditEntry {
            action: "delivery".into(),
            actor: Actor {
                certificate_fingerprint: "ab".repeat(32),
                id: "send-team".into(),
                professional_id: "caseworker-jones".into(),
                role: "agency".into(),
            },
            categories: vec!["health_summary".into()],
            child_index: "0f".repeat(32),
            child_sealed: STANDARD.encode([7u8; 50]),
            consent_id: "c-5c5b9a9b93381b695fd2122c".into(),
            consent_revision: 1,
            leaf_index: 41,
            outcome: "allowed".into(),
            recipient_agency_id: "send-team".into(),
            relationship_id: "r-7d942ed835fe0fc1c0c8e85b".into(),
            request_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            time_micros: 1_800_000_000_000_000,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            update_id: "630f4c01f1aec917c23d0cf09cf6a39b".into(),
            ..AuditEntry::default()
        }
    }

    #[test]
    fn a_typical_entry_is_less_than_half_its_json_and_comes_back_exactly() {
        let entry = typical();
        let stored = encode(&entry);
        assert!(
            stored.len() * 2 < entry.canonical_bytes().len(),
            "{} vs {}",
            stored.len(),
            entry.canonical_bytes().len()
        );
        let back = decode(41, &stored).unwrap();
        assert_eq!(back, entry);
        assert_eq!(back.canonical_bytes(), entry.canonical_bytes(), "the same leaf hash");
    }

    #[test]
    fn entries_stored_as_json_still_read() {
        let entry = typical();
        let json = AuditEntry { leaf_index: 0, ..entry.clone() }.canonical_bytes();
        assert_eq!(decode(41, &json).unwrap(), entry);
        assert!(decode(1, b"\x07junk").is_err());
    }

    #[test]
    fn texts_that_only_look_like_hex_or_base64_are_kept_as_written() {
        for text in ["ABCD", "abc", "0A", "YWJj", "YWJjZA", "YWJjZA==", "not base64!", "00"] {
            let entry = AuditEntry { request_id: text.into(), trace_id: text.into(), ..AuditEntry::default() };
            assert_eq!(decode(0, &encode(&entry)).unwrap(), entry, "{text}");
        }
    }

    proptest! {
        #[test]
        fn every_entry_comes_back_exactly(
            texts in proptest::collection::vec("[ -~]{0,40}", 8),
            hexes in proptest::collection::vec("[0-9a-fA-F]{0,70}", 4),
            revision in any::<u32>(),
            time in any::<i64>(),
        ) {
            let entry = AuditEntry {
                action: texts[0].clone(),
                actor: Actor {
                    certificate_fingerprint: hexes[0].clone(),
                    id: texts[1].clone(),
                    professional_id: texts[2].clone(),
                    role: texts[3].clone(),
                },
                categories: vec![texts[4].clone()],
                child_index: hexes[1].clone(),
                child_sealed: texts[5].clone(),
                consent_revision: revision,
                request_id: hexes[2].clone(),
                time_micros: time,
                trace_id: texts[6].clone(),
                update_id: hexes[3].clone(),
                detail: texts[7].clone(),
                basis: texts[0].clone(),
                overrides: texts[1..3].to_vec(),
                alert: texts[3].clone(),
                alert_to: texts[4..6].to_vec(),
                ..AuditEntry::default()
            };
            prop_assert_eq!(decode(0, &encode(&entry)).unwrap(), entry);
        }
    }
}
