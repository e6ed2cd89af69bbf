//! Objections: a family's (or a young person's) "not to them" or "not this", recorded
//! by a professional like a consent, and stronger than any consent.
//!
//! Under UK GDPR Article 21 a person may object to processing that rests on public
//! task, which is the basis most sharing here rests on. An active objection names
//! categories, recipients, or both; [`crate::decide`] refuses what it covers
//! (`DenyReason::Objection`) whatever a consent says. It only ever narrows: it stands
//! until it is withdrawn, whoever raised it (a parent's objection does not lapse at 18,
//! since keeping it can only share less; the young person withdraws it if they wish).
//!
//! Objections of one child are numbered densely from 1 in the order they are raised, so
//! that "no objection raised since" is one number (a delivery is committed on that
//! condition, as on its consent being unrevised).

use std::fmt;

use crate::consent::recording::{MAX_PURPOSE_BYTES, Recorder, WithdrawalRefused, check_evidence, check_withdrawal};
use crate::{
    Agency, AgencyId, Category, CategorySet, ConsentEvidence, ConsentGiverRole, FieldViolation, Sector, Timestamp,
    limits,
};

/// An objection's number among the child's objections: 1 for the first, dense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectionId(pub u32);

/// What an objection id looks like in the contract: `o-` and its number.
const ID_PREFIX: &str = "o-";

impl ObjectionId {
    /// Parses an id as the contract writes it (`o-3`); `field` names it in the error.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        crate::numbered_id::parse_numbered_id(text, ID_PREFIX)
            .map(ObjectionId)
            .ok_or_else(|| FieldViolation::new(field, "must be an objection id such as o-1"))
    }

    /// Returns the id that follows this one.
    pub fn next(self) -> Option<ObjectionId> {
        self.0.checked_add(1).map(ObjectionId)
    }
}

impl fmt::Display for ObjectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ID_PREFIX}{}", self.0)
    }
}

/// Whether an objection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectionState {
    /// In force.
    Active,
    /// Withdrawn at the given moment.
    Withdrawn {
        /// When the withdrawal was recorded.
        at: Timestamp,
    },
}

/// The latest revision of one objection: what [`crate::decide`] sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objection {
    /// Its number among the child's objections.
    pub id: ObjectionId,
    /// 1 when raised; a withdrawal is 2.
    pub revision: u32,
    /// Who raised it.
    pub giver_role: ConsentGiverRole,
    /// The categories objected to; empty for every category.
    pub categories: CategorySet,
    /// The agencies objected to by name.
    pub agencies: Vec<AgencyId>,
    /// The sectors objected to; with `agencies` empty too, every recipient.
    pub sectors: Vec<Sector>,
    /// Whether it stands.
    pub state: ObjectionState,
    /// When it was raised (recorded): it applies from then.
    pub recorded_at: Timestamp,
}

impl Objection {
    /// Returns whether this objection refuses `agency` the `category` at `now`.
    pub fn covers(&self, agency: &Agency, category: Category, now: Timestamp) -> bool {
        let standing = self.recorded_at <= now
            && match self.state {
                ObjectionState::Active => true,
                ObjectionState::Withdrawn { at } => now < at,
            };
        let category_named = self.categories.is_empty() || self.categories.contains(category);
        let every_recipient = self.agencies.is_empty() && self.sectors.is_empty();
        let recipient_named =
            every_recipient || self.agencies.contains(&agency.id) || self.sectors.contains(&agency.sector);
        standing && category_named && recipient_named
    }
}

/// One revision of an objection as recorded: the decision's part and what the record
/// keeps besides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectionRevision {
    /// The objection as [`crate::decide`] sees it, at this revision.
    pub objection: Objection,
    /// The name of the person who raised it.
    pub giver_name: String,
    /// Why they object, in their words, if they gave a reason (Article 21 lets them
    /// object on grounds of their particular situation; no reason is required here).
    pub reason: String,
    /// How this revision was given.
    pub evidence: ConsentEvidence,
    /// The agency that recorded this revision.
    pub recorded_by: AgencyId,
    /// The professional who recorded it.
    pub recorded_by_professional: String,
    /// When this revision was recorded.
    pub recorded_at: Timestamp,
    /// Why it was withdrawn (a withdrawal's revision).
    pub withdrawal_reason: String,
}

/// An objection as a professional asks to record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewObjection {
    /// Who raised it.
    pub giver_role: ConsentGiverRole,
    /// Their name.
    pub giver_name: String,
    /// The categories objected to; empty for every category.
    pub categories: CategorySet,
    /// The agencies objected to.
    pub agencies: Vec<AgencyId>,
    /// The sectors objected to.
    pub sectors: Vec<Sector>,
    /// Why, in their words; may be empty.
    pub reason: String,
    /// How it was given.
    pub evidence: ConsentEvidence,
}

/// Returns revision 1 of objection `id`, raised now, if `new` says what an objection
/// must: who raised it, and at least one category, agency or sector (an objection to
/// everything is the withdrawal of every consent, which is recorded as that).
pub fn record(
    new: NewObjection,
    id: ObjectionId,
    by: Recorder,
    now: Timestamp,
) -> Result<ObjectionRevision, FieldViolation> {
    if new.giver_name.trim().is_empty() {
        return Err(FieldViolation::new("giver_name", "is required"));
    }
    limits::check_len("giver_name", &new.giver_name, limits::MAX_SHORT_STRING_BYTES)?;
    if new.categories.is_empty() && new.agencies.is_empty() && new.sectors.is_empty() {
        return Err(FieldViolation::new(
            "categories",
            "an objection must name at least one category, agency or sector (to stop all sharing, withdraw the consents)",
        ));
    }
    limits::check_items("agency_ids", &new.agencies, limits::MAX_LIST_ITEMS)?;
    limits::check_len("reason", &new.reason, MAX_PURPOSE_BYTES)?;
    check_evidence("evidence", &new.evidence)?;
    Ok(ObjectionRevision {
        objection: Objection {
            id,
            revision: 1,
            giver_role: new.giver_role,
            categories: new.categories,
            agencies: new.agencies,
            sectors: new.sectors,
            state: ObjectionState::Active,
            recorded_at: now,
        },
        giver_name: new.giver_name,
        reason: new.reason,
        evidence: new.evidence,
        recorded_by: by.agency,
        recorded_by_professional: by.professional,
        recorded_at: now,
        withdrawal_reason: String::new(),
    })
}

/// Returns the revision that withdraws `latest` (the objection's latest revision) at
/// `now`, recorded by `by` for `reason` with `evidence`.
pub fn withdraw(
    latest: &ObjectionRevision,
    reason: &str,
    evidence: ConsentEvidence,
    by: Recorder,
    now: Timestamp,
) -> Result<ObjectionRevision, WithdrawalRefused> {
    check_withdrawal(reason, &evidence, matches!(latest.objection.state, ObjectionState::Withdrawn { .. }))?;
    Ok(ObjectionRevision {
        objection: Objection {
            revision: latest.objection.revision + 1,
            state: ObjectionState::Withdrawn { at: now },
            ..latest.objection.clone()
        },
        evidence,
        recorded_by: by.agency,
        recorded_by_professional: by.professional,
        recorded_at: now,
        withdrawal_reason: reason.to_owned(),
        ..latest.clone()
    })
}

#[cfg(test)]
mod tests;
