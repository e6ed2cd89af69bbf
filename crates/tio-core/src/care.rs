//! Care relationships: an agency's declared involvement with a child.

use std::fmt;

use crate::names::stable_names;
use crate::{AgencyId, Timestamp};

/// The broker's id for a care relationship.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelationshipId(pub String);

impl fmt::Display for RelationshipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an agency is involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationshipKind {
    /// A referral to the agency.
    Referral,
    /// Enrolment at a school or college.
    Enrolment,
    /// Allocation of a worker.
    Allocation,
    /// Registration with a practice.
    Registration,
    /// Made by the broker when the agency first publishes about the child.
    Publisher,
}

stable_names!(RelationshipKind {
    Referral => "referral",
    Enrolment => "enrolment",
    Allocation => "allocation",
    Registration => "registration",
    Publisher => "publisher",
});

/// One agency's involvement with the child being decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareRelationship {
    /// The relationship's id.
    pub id: RelationshipId,
    /// The involved agency.
    pub agency: AgencyId,
    /// Why it is involved.
    pub kind: RelationshipKind,
    /// When it began.
    pub started_at: Timestamp,
    /// When it ended, if it has.
    pub ended_at: Option<Timestamp>,
}

impl CareRelationship {
    /// Returns whether the relationship holds at `now`.
    pub fn is_active_at(&self, now: Timestamp) -> bool {
        self.started_at <= now && self.ended_at.is_none_or(|ended| now < ended)
    }
}

/// A care relationship as recorded: the decision's part and what the record keeps
/// besides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationshipRecord {
    /// The relationship as [`crate::decide`] sees it.
    pub relationship: CareRelationship,
    /// The agency's own reference for it (a referral number), at most a short string.
    pub reference: String,
    /// The professional who declared it.
    pub declared_by_professional: String,
    /// Why it ended, once it has, in free text.
    pub end_reason: String,
}
