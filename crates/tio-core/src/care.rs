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

impl RelationshipKind {
    /// Every kind, in contract order.
    pub const ALL: [RelationshipKind; 5] = [
        RelationshipKind::Referral,
        RelationshipKind::Enrolment,
        RelationshipKind::Allocation,
        RelationshipKind::Registration,
        RelationshipKind::Publisher,
    ];

    /// Returns the stable snake_case name used in stored records.
    pub const fn as_str(self) -> &'static str {
        match self {
            RelationshipKind::Referral => "referral",
            RelationshipKind::Enrolment => "enrolment",
            RelationshipKind::Allocation => "allocation",
            RelationshipKind::Registration => "registration",
            RelationshipKind::Publisher => "publisher",
        }
    }

    /// Parses a name produced by [`RelationshipKind::as_str`].
    pub fn from_name(name: &str) -> Option<RelationshipKind> {
        RelationshipKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in RelationshipKind::ALL {
            assert_eq!(RelationshipKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(RelationshipKind::from_name("friend"), None);
    }
}
