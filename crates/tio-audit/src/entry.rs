//! Audit entries as auditors see them, and the canonical bytes a leaf hashes.
//!
//! An entry names the child only by its blind index and its NHS number sealed under the
//! child's data key, so erasing the child's key leaves every entry, and the log,
//! verifiable while revealing nothing. Do not change the field names: they are hashed.

use serde::{Deserialize, Serialize};

use crate::merkle::{Hash, leaf_hash};

/// What an entry records. Its code is what the entry stores. Do not change the codes:
/// they are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// An update was published (or refused).
    Publish,
    /// A child's profile was read.
    ProfileRead,
    /// An update was delivered to a subscriber.
    Delivery,
    /// A queued update was not delivered, because the decision at delivery refused it.
    DeliverySkipped,
    /// A consent was recorded.
    ConsentRecorded,
    /// A consent was withdrawn.
    ConsentWithdrawn,
    /// A consent was read.
    ConsentRead,
    /// A care relationship was declared.
    RelationshipDeclared,
    /// A care relationship was ended.
    RelationshipEnded,
    /// An agency listed its own care relationships with a child.
    RelationshipRead,
    /// A subscription was created, changed or deleted.
    SubscriptionChanged,
    /// An administrative change to the registry.
    Admin,
    /// The audit log was read (queried, exported, proved, reported on).
    AuditRead,
    /// A caller was refused at authentication.
    Authentication,
    /// A family's objection was recorded (the entry names it in `consent_id`).
    ObjectionRaised,
    /// An objection was withdrawn.
    ObjectionWithdrawn,
    /// A safeguarding share was declared (the entry names it in `consent_id`).
    SafeguardingDeclared,
    /// A safeguarding share was renewed.
    SafeguardingRenewed,
    /// A safeguarding share was ended early.
    SafeguardingEnded,
    /// A publisher corrected one of its updates (the entry names the correction in
    /// `update_id`, the corrected update in `detail`).
    UpdateCorrected,
    /// A publisher retracted one of its updates, entered in error.
    UpdateRetracted,
    /// A past recipient of an update was sent its correction.
    CorrectionSent,
    /// A past recipient of an update was told of its retraction.
    RetractionSent,
    /// A past recipient of an update was told that the child was erased (the entry
    /// names the child by blind index only).
    ErasureSent,
    /// The broker told the agencies that recorded a parent's consents to review them,
    /// 90 days before the child turns 16 or 18 (an alert to each).
    ConsentReviewDue,
    /// A step of an EHC needs assessment was recorded (opened, a decision, advice asked
    /// or given, a plan; the entry names the assessment in `consent_id` and its
    /// revision, the step in `detail`).
    EhcAssessmentRecorded,
    /// An EHC needs assessment was read.
    EhcAssessmentRead,
    /// The broker told the SEND team (and, for an adviser's deadline, the adviser) that
    /// an assessment's deadline is 10 working days away, or was missed (an alert).
    EhcDeadlineAlert,
    /// A young person's transition record was opened or changed.
    TransitionRecorded,
    /// A transition record was read.
    TransitionRead,
    /// The broker told of a transition milestone past due (an alert).
    TransitionAlert,
    /// The partnership's SEND measures (counts only) were read.
    SendMetricsRead,
}

impl Action {
    /// Every action, in code order.
    pub const ALL: [Action; 32] = [
        Action::Publish,
        Action::ProfileRead,
        Action::Delivery,
        Action::DeliverySkipped,
        Action::ConsentRecorded,
        Action::ConsentWithdrawn,
        Action::ConsentRead,
        Action::RelationshipDeclared,
        Action::RelationshipEnded,
        Action::RelationshipRead,
        Action::SubscriptionChanged,
        Action::Admin,
        Action::AuditRead,
        Action::Authentication,
        Action::ObjectionRaised,
        Action::ObjectionWithdrawn,
        Action::SafeguardingDeclared,
        Action::SafeguardingRenewed,
        Action::SafeguardingEnded,
        Action::UpdateCorrected,
        Action::UpdateRetracted,
        Action::CorrectionSent,
        Action::RetractionSent,
        Action::ErasureSent,
        Action::ConsentReviewDue,
        Action::EhcAssessmentRecorded,
        Action::EhcAssessmentRead,
        Action::EhcDeadlineAlert,
        Action::TransitionRecorded,
        Action::TransitionRead,
        Action::TransitionAlert,
        Action::SendMetricsRead,
    ];

    /// Returns the code stored in entries.
    pub const fn code(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::ProfileRead => "profile_read",
            Action::Delivery => "delivery",
            Action::DeliverySkipped => "delivery_skipped",
            Action::ConsentRecorded => "consent_recorded",
            Action::ConsentWithdrawn => "consent_withdrawn",
            Action::ConsentRead => "consent_read",
            Action::RelationshipDeclared => "relationship_declared",
            Action::RelationshipEnded => "relationship_ended",
            Action::RelationshipRead => "relationship_read",
            Action::SubscriptionChanged => "subscription_changed",
            Action::Admin => "admin",
            Action::AuditRead => "audit_read",
            Action::Authentication => "authentication",
            Action::ObjectionRaised => "objection_raised",
            Action::ObjectionWithdrawn => "objection_withdrawn",
            Action::SafeguardingDeclared => "safeguarding_declared",
            Action::SafeguardingRenewed => "safeguarding_renewed",
            Action::SafeguardingEnded => "safeguarding_ended",
            Action::UpdateCorrected => "update_corrected",
            Action::UpdateRetracted => "update_retracted",
            Action::CorrectionSent => "correction_sent",
            Action::RetractionSent => "retraction_sent",
            Action::ErasureSent => "erasure_sent",
            Action::ConsentReviewDue => "consent_review_due",
            Action::EhcAssessmentRecorded => "ehc_assessment_recorded",
            Action::EhcAssessmentRead => "ehc_assessment_read",
            Action::EhcDeadlineAlert => "ehc_deadline_alert",
            Action::TransitionRecorded => "transition_recorded",
            Action::TransitionRead => "transition_read",
            Action::TransitionAlert => "transition_alert",
            Action::SendMetricsRead => "send_metrics_read",
        }
    }

    /// Returns the action with this code.
    pub fn from_code(code: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|action| action.code() == code)
    }

    /// Returns the action in plain words, for reports a family's caseworker reads.
    pub const fn plain_words(self) -> &'static str {
        match self {
            Action::Publish => "shared an update",
            Action::ProfileRead => "read the profile",
            Action::Delivery => "received an update",
            Action::DeliverySkipped => "was not sent an update",
            Action::ConsentRecorded => "recorded a consent",
            Action::ConsentWithdrawn => "recorded a withdrawal of consent",
            Action::ConsentRead => "read the consent record",
            Action::RelationshipDeclared => "declared its involvement",
            Action::RelationshipEnded => "ended its involvement",
            Action::RelationshipRead => "looked up its own involvement",
            Action::SubscriptionChanged => "changed a subscription",
            Action::Admin => "made an administrative change",
            Action::AuditRead => "read the audit log",
            Action::Authentication => "was refused at sign-in",
            Action::ObjectionRaised => "recorded an objection",
            Action::ObjectionWithdrawn => "recorded a withdrawal of an objection",
            Action::SafeguardingDeclared => "declared a safeguarding share",
            Action::SafeguardingRenewed => "renewed a safeguarding share",
            Action::SafeguardingEnded => "ended a safeguarding share",
            Action::UpdateCorrected => "corrected an update it had shared",
            Action::UpdateRetracted => "retracted an update it had shared in error",
            Action::CorrectionSent => "was sent the correction of an update it had been given",
            Action::RetractionSent => "was told that an update it had been given was retracted",
            Action::ErasureSent => "was told that an update it had been given was erased",
            Action::ConsentReviewDue => "asked for a parent's consents to be reviewed as the child grows up",
            Action::EhcAssessmentRecorded => "recorded a step of an EHC needs assessment",
            Action::EhcAssessmentRead => "read an EHC needs assessment",
            Action::EhcDeadlineAlert => "was told an EHC needs assessment deadline was coming or missed",
            Action::TransitionRecorded => "recorded a step of the move to adult services",
            Action::TransitionRead => "read the record of the move to adult services",
            Action::TransitionAlert => "was told a step of the move to adult services was overdue",
            Action::SendMetricsRead => "read the partnership's SEND figures (counts only)",
        }
    }
}

/// How an action ended. Do not change the codes: they are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It was allowed and done.
    Allowed,
    /// It was refused by policy.
    Denied,
    /// It was allowed but failed.
    Failed,
}

impl Outcome {
    /// Returns the code stored in entries.
    pub const fn code(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    /// Returns the outcome with this code.
    pub fn from_code(code: &str) -> Option<Outcome> {
        [Outcome::Allowed, Outcome::Denied, Outcome::Failed].into_iter().find(|outcome| outcome.code() == code)
    }
}

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
    /// If the entry raises an alert, its kind (`protection_flag_access`), else empty.
    /// Left out of the canonical form when empty, so entries without it keep their
    /// hashes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alert: String,
    /// The agencies an alert is addressed to (auditors and admins see every alert).
    /// Left out of the canonical form when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_to: Vec<String>,
    /// For a disclosure made without consent, its basis (`protection_flag`), else
    /// empty. Left out of the canonical form when empty, so entries without it keep
    /// their hashes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub basis: String,
    /// Category names.
    pub categories: Vec<String>,
    /// The child's keyed blind index (hex), or empty.
    pub child_index: String,
    /// The NHS number sealed under the child's data key (base64), or empty.
    pub child_sealed: String,
    /// For disclosures: the consent id and revision, and the care relationship. For
    /// consent actions the consent, for objection actions the objection (`o-<n>`).
    pub consent_id: String,
    /// The consent revision, 0 if none.
    pub consent_revision: u32,
    /// For admin actions, what changed (`register_agency school-x`); for a disclosure
    /// without consent, what its basis recorded (`child_protection public_task
    /// health_or_social_care`); never personal data. Left out of the canonical form
    /// when empty, so entries without it keep their hashes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Dense from 0: the leaf's index.
    pub leaf_index: u64,
    /// `allowed`, `denied` or `failed`.
    pub outcome: String,
    /// The family's objections (`o-<n>`) a disclosure without consent overrode. Left
    /// out of the canonical form when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
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
        // test checks this against a sorted-map serialisation. serde_json fails only on
        // a map with non-string keys or a failing writer; an entry has strings, integers
        // and lists of strings, written to memory, so it cannot fail. An empty fallback
        // would have hashed every entry alike, so a failure is not papered over.
        serde_json::to_vec(self).expect("an audit entry of strings and integers always serialises")
    }

    /// Returns the entry's leaf hash.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.canonical_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_and_outcome_codes_round_trip_and_are_distinct() {
        let codes: std::collections::HashSet<_> = Action::ALL.iter().map(|action| action.code()).collect();
        assert_eq!(codes.len(), Action::ALL.len());
        for action in Action::ALL {
            assert_eq!(Action::from_code(action.code()), Some(action));
        }
        assert_eq!(Action::from_code("Publish"), None);
        assert_eq!(Outcome::from_code("denied"), Some(Outcome::Denied));
        assert_eq!(Outcome::from_code(""), None);
    }

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
        // The fields left out when empty take their sorted places when present.
        let without_consent = AuditEntry {
            alert: "protection_flag_access".into(),
            alert_to: vec!["social-care".into()],
            basis: "protection_flag".into(),
            overrides: vec!["o-1".into()],
            ..entry.clone()
        };
        let sorted = serde_json::to_vec(&serde_json::to_value(&without_consent).unwrap()).unwrap();
        assert_eq!(without_consent.canonical_bytes(), sorted);
        assert_ne!(without_consent.leaf_hash(), entry.leaf_hash());
    }
}
