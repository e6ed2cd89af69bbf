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
