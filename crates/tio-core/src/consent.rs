//! Consent to share, as plain values.
//!
//! A consent names a child (held by the caller: every consent passed to
//! [`crate::decide`] is about the child being decided on), who gave it, which
//! categories, which recipients, why, on what lawful basis and for how long. Each change
//! is a new revision; [`crate::decide`] sees the latest revision of each consent.

use std::fmt;

use crate::names::stable_names;
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
    /// A young person of 16 or more, deciding for themselves (the Mental Capacity Act
    /// presumes capacity from the 16th birthday). Their decision supersedes a parent's
    /// for the categories it covers.
    YoungPerson,
    /// A younger child judged competent (Gillick), by a named professional on a given
    /// day (`ConsentRevision::authority`). Their decision, too, supersedes a parent's
    /// for the categories it covers.
    CompetentChild,
    /// The local authority holding parental responsibility under a care order (Children
    /// Act 1989 s33): like a parent's, its consent ends at 18 and gives way to the
    /// child's own decision.
    LocalAuthority,
    /// A best-interests decision under the Mental Capacity Act 2005 s4 for a young
    /// person of 16 or more who lacks capacity to decide, by a named decision-maker on a
    /// given day (`ConsentRevision::authority`).
    BestInterests,
    /// A deputy for personal welfare appointed by the Court of Protection (16 or more;
    /// the order's reference in the evidence).
    Deputy,
    /// An attorney under a registered health-and-welfare lasting power of attorney
    /// (the donor 18 or more; its reference in the evidence).
    Attorney,
}

impl ConsentGiverRole {
    /// Whether this is the child's or young person's own decision rather than a
    /// parent's.
    pub const fn is_own_decision(self) -> bool {
        matches!(self, ConsentGiverRole::YoungPerson | ConsentGiverRole::CompetentChild)
    }

    /// Whether this role holds parental responsibility: its consent lapses on the 18th
    /// birthday, is to review from the 16th, and gives way to the child's or young
    /// person's own decision.
    pub const fn holds_parental_responsibility(self) -> bool {
        matches!(self, ConsentGiverRole::ParentWithParentalResponsibility | ConsentGiverRole::LocalAuthority)
    }

    /// Whether a consent in this role must name who judged (competence) or decided
    /// (best interests), and when.
    pub const fn needs_authority(self) -> bool {
        matches!(self, ConsentGiverRole::CompetentChild | ConsentGiverRole::BestInterests)
    }

    /// The ages at which the law lets this role speak for the child, if it limits them:
    /// from (inclusive) and until (exclusive) the given birthdays.
    pub const fn ages(self) -> (Option<i16>, Option<i16>) {
        match self {
            ConsentGiverRole::ParentWithParentalResponsibility | ConsentGiverRole::LocalAuthority => (None, Some(18)),
            ConsentGiverRole::CompetentChild => (None, Some(16)),
            ConsentGiverRole::YoungPerson | ConsentGiverRole::BestInterests | ConsentGiverRole::Deputy => {
                (Some(16), None)
            }
            ConsentGiverRole::Attorney => (Some(18), None),
        }
    }
}

stable_names!(ConsentGiverRole {
    ParentWithParentalResponsibility => "parent_with_parental_responsibility",
    YoungPerson => "young_person",
    CompetentChild => "competent_child",
    LocalAuthority => "local_authority_care_order",
    BestInterests => "best_interests_decision",
    Deputy => "court_of_protection_deputy",
    Attorney => "lpa_attorney",
});

/// Who judged a child competent, or made a best-interests decision, and on which day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiverAuthority {
    /// The assessing professional or decision-maker, as named (at most a short string).
    pub by: String,
    /// The day of the assessment or decision (not in the future).
    pub on: crate::Date,
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

stable_names!(LawfulBasis {
    Consent => "consent",
    LegalObligation => "legal_obligation",
    VitalInterests => "vital_interests",
    PublicTask => "public_task",
});

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

stable_names!(SpecialCategoryCondition {
    ExplicitConsent => "explicit_consent",
    VitalInterests => "vital_interests",
    HealthOrSocialCare => "health_or_social_care",
    SubstantialPublicInterest => "substantial_public_interest",
});

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

stable_names!(ConsentMethod {
    InPerson => "in_person",
    Telephone => "telephone",
    SignedForm => "signed_form",
    VideoCall => "video_call",
});

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

/// Returns whether the child or young person has made their own decision (a consent,
/// given or since withdrawn) about `category`, recorded by `now`: a parent's consent
/// then no longer speaks for that category.
pub(crate) fn own_decision_covers(consents: &[Consent], category: crate::Category, now: Timestamp) -> bool {
    consents.iter().any(|consent| {
        consent.giver_role.is_own_decision() && consent.recorded_at <= now && consent.categories.contains(category)
    })
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
    /// Who judged the child competent, or made the best-interests decision, and when
    /// (required for those roles, absent for others).
    pub authority: Option<GiverAuthority>,
}

pub mod recording;
