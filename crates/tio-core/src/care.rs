//! Care relationships: an agency's declared involvement with a child.

use std::fmt;

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
