//! Consent to share, as plain values.
//!
//! A consent names a child (held by the caller: every consent passed to
//! [`crate::decide`] is about the child being decided on), who gave it, which
//! categories, which recipients, why, on what lawful basis and for how long. Each change
//! is a new revision; [`crate::decide`] sees the latest revision of each consent.

use std::fmt;

use crate::{Agency, AgencyId, CategorySet, Sector, Timestamp};

/// The broker's id for a consent (all its revisions share it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsentId(pub String);

impl fmt::Display for ConsentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who gave the consent, in law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentGiverRole {
    /// A person with parental responsibility.
    ParentWithParentalResponsibility,
    /// A young person of 16 or more, deciding for themselves. Their decision supersedes
    /// a parent's.
    YoungPerson,
    /// A younger child judged competent (Gillick).
    CompetentChild,
}

impl ConsentGiverRole {
    /// Every role, in contract order.
    pub const ALL: [ConsentGiverRole; 3] = [
        ConsentGiverRole::ParentWithParentalResponsibility,
        ConsentGiverRole::YoungPerson,
        ConsentGiverRole::CompetentChild,
    ];

    /// Returns the stable snake_case name used in stored records.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConsentGiverRole::ParentWithParentalResponsibility => "parent_with_parental_responsibility",
            ConsentGiverRole::YoungPerson => "young_person",
            ConsentGiverRole::CompetentChild => "competent_child",
        }
    }

    /// Parses a name produced by [`ConsentGiverRole::as_str`].
    pub fn from_name(name: &str) -> Option<ConsentGiverRole> {
        ConsentGiverRole::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

/// The UK GDPR Article 6 basis for sharing, recorded apart from the family's agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LawfulBasis {
    /// Art. 6(1)(a).
    Consent,
    /// Art. 6(1)(c).
    LegalObligation,
    /// Art. 6(1)(d).
    VitalInterests,
    /// Art. 6(1)(e): the usual basis for public bodies.
    PublicTask,
}

impl LawfulBasis {
    /// Every basis, in contract order.
    pub const ALL: [LawfulBasis; 4] =
        [LawfulBasis::Consent, LawfulBasis::LegalObligation, LawfulBasis::VitalInterests, LawfulBasis::PublicTask];

    /// Returns the stable snake_case name used in stored records.
    pub const fn as_str(self) -> &'static str {
        match self {
            LawfulBasis::Consent => "consent",
            LawfulBasis::LegalObligation => "legal_obligation",
            LawfulBasis::VitalInterests => "vital_interests",
            LawfulBasis::PublicTask => "public_task",
        }
    }

    /// Parses a name produced by [`LawfulBasis::as_str`].
    pub fn from_name(name: &str) -> Option<LawfulBasis> {
        LawfulBasis::ALL.into_iter().find(|basis| basis.as_str() == name)
    }
}

/// The UK GDPR Article 9 condition for sharing special-category data (health, and
/// social care), recorded beside the Article 6 basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialCategoryCondition {
    /// Art. 9(2)(a).
    ExplicitConsent,
    /// Art. 9(2)(c).
    VitalInterests,
    /// Art. 9(2)(h).
    HealthOrSocialCare,
    /// Art. 9(2)(g).
    SubstantialPublicInterest,
}

impl SpecialCategoryCondition {
    /// Every condition, in contract order.
    pub const ALL: [SpecialCategoryCondition; 4] = [
        SpecialCategoryCondition::ExplicitConsent,
        SpecialCategoryCondition::VitalInterests,
        SpecialCategoryCondition::HealthOrSocialCare,
        SpecialCategoryCondition::SubstantialPublicInterest,
    ];

    /// Returns the stable snake_case name used in stored records.
    pub const fn as_str(self) -> &'static str {
        match self {
            SpecialCategoryCondition::ExplicitConsent => "explicit_consent",
            SpecialCategoryCondition::VitalInterests => "vital_interests",
            SpecialCategoryCondition::HealthOrSocialCare => "health_or_social_care",
            SpecialCategoryCondition::SubstantialPublicInterest => "substantial_public_interest",
        }
    }

    /// Parses a name produced by [`SpecialCategoryCondition::as_str`].
    pub fn from_name(name: &str) -> Option<SpecialCategoryCondition> {
        SpecialCategoryCondition::ALL.into_iter().find(|condition| condition.as_str() == name)
    }
}

/// How an agreement, or its withdrawal, was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentMethod {
    /// Face to face.
    InPerson,
    /// On the telephone.
    Telephone,
    /// On a signed form.
    SignedForm,
    /// On a video call.
    VideoCall,
}

impl ConsentMethod {
    /// Every method, in contract order.
    pub const ALL: [ConsentMethod; 4] =
        [ConsentMethod::InPerson, ConsentMethod::Telephone, ConsentMethod::SignedForm, ConsentMethod::VideoCall];

    /// Returns the stable snake_case name used in stored records.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConsentMethod::InPerson => "in_person",
            ConsentMethod::Telephone => "telephone",
            ConsentMethod::SignedForm => "signed_form",
            ConsentMethod::VideoCall => "video_call",
        }
    }

    /// Parses a name produced by [`ConsentMethod::as_str`].
    pub fn from_name(name: &str) -> Option<ConsentMethod> {
        ConsentMethod::ALL.into_iter().find(|method| method.as_str() == name)
    }
}

/// Evidence of how an agreement, or its withdrawal, was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEvidence {
    /// How it was given.
    pub method: ConsentMethod,
    /// A reference to the record of it (a form number, a call log), at most a short string.
    pub reference: String,
    /// The ISO 639 code of the language it was given in, if not English (`pl`).
    pub language: String,
    /// Whether an interpreter was present.
    pub interpreter_present: bool,
    /// Anything else, in free text.
    pub notes: String,
}

/// Who may receive: named agencies or whole sectors, less named exclusions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    /// Agencies named one by one.
    pub agencies: Vec<AgencyId>,
    /// Whole sectors.
    pub sectors: Vec<Sector>,
    /// Agencies excluded, whatever the lists above say.
    pub excluded: Vec<AgencyId>,
}

/// How a recipient list applies to one agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coverage {
    Covered,
    Excluded,
    NotNamed,
}

impl Recipients {
    /// Returns how this list applies to `agency`; an exclusion wins.
    pub(crate) fn coverage(&self, agency: &Agency) -> Coverage {
        if self.excluded.contains(&agency.id) {
            return Coverage::Excluded;
        }
        if self.agencies.contains(&agency.id) || self.sectors.contains(&agency.sector) {
            Coverage::Covered
        } else {
            Coverage::NotNamed
        }
    }
}

/// When a consent applies: from `from` (inclusive) until `until` (exclusive), if set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first moment it applies.
    pub from: Timestamp,
    /// The first moment it no longer applies; `None` for open-ended.
    pub until: Option<Timestamp>,
}

/// Whether a consent has been withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentState {
    /// In force, subject to its validity period.
    Active,
    /// Withdrawn at the given moment; it applies to nothing from then on.
    Withdrawn {
        /// When the withdrawal was recorded.
        at: Timestamp,
    },
}

/// The latest revision of one consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The consent's id.
    pub id: ConsentId,
    /// 1 for the first record; each change adds one.
    pub revision: u32,
    /// Who gave it.
    pub giver_role: ConsentGiverRole,
    /// The categories it covers.
    pub categories: CategorySet,
    /// Who may receive.
    pub recipients: Recipients,
    /// Why the information is shared, in plain words.
    pub purpose: String,
    /// The lawful basis for sharing.
    pub lawful_basis: LawfulBasis,
    /// When it applies.
    pub valid: Validity,
    /// Whether it has been withdrawn.
    pub state: ConsentState,
    /// When this consent was first recorded.
    pub recorded_at: Timestamp,
}

/// One revision of a consent as recorded: the decision's part ([`Consent`]) and what
/// the record keeps besides, for the family, the professionals and the auditor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRevision {
    /// The consent as [`crate::decide`] sees it, at this revision.
    pub consent: Consent,
    /// The name of the person who gave it.
    pub giver_name: String,
    /// The Article 9 condition, required when the categories are special-category data.
    pub special_category_condition: Option<SpecialCategoryCondition>,
    /// How this revision's agreement or withdrawal was given.
    pub evidence: ConsentEvidence,
    /// The agency that recorded this revision.
    pub recorded_by: AgencyId,
    /// The professional who recorded it.
    pub recorded_by_professional: String,
    /// When this revision was recorded.
    pub recorded_at: Timestamp,
    /// Why it was withdrawn (a withdrawal's revision), in free text.
    pub withdrawal_reason: String,
}

pub mod recording;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in ConsentGiverRole::ALL {
            assert_eq!(ConsentGiverRole::from_name(role.as_str()), Some(role));
        }
        for basis in LawfulBasis::ALL {
            assert_eq!(LawfulBasis::from_name(basis.as_str()), Some(basis));
        }
        for condition in SpecialCategoryCondition::ALL {
            assert_eq!(SpecialCategoryCondition::from_name(condition.as_str()), Some(condition));
        }
        for method in ConsentMethod::ALL {
            assert_eq!(ConsentMethod::from_name(method.as_str()), Some(method));
        }
        assert_eq!(LawfulBasis::from_name("Consent"), None);
    }
}
