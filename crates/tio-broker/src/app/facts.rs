//! What the broker reads about a child besides its updates: consent revisions,
//! objections and care relationships, kept by the store as the domain's values, and
//! what decisions use.

use tio_core::safeguarding::{SafeguardingShare, ShareRevision};
use tio_core::{
    AgencyId, CareRelationship, Consent, ConsentRevision, Date, Facts, Objection, ObjectionRevision, Timestamp,
};
use tio_store::relationships::StoredRelationship;
use tio_store::{ChildRef, Store};

use crate::app::error::ServiceError;

/// Everything recorded about one child that decisions use.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChildFacts {
    /// Every care relationship, active and ended.
    pub(crate) relationships: Vec<StoredRelationship>,
    /// The latest revision of every consent, in id order.
    pub(crate) consents: Vec<ConsentRevision>,
    /// The latest revision of every objection, in the order they were raised.
    pub(crate) objections: Vec<ObjectionRevision>,
    /// The latest revision of every safeguarding share, in the order declared.
    pub(crate) shares: Vec<ShareRevision>,
    /// The date of birth as last published, which a parent's consent lapses by.
    pub(crate) date_of_birth: Option<Date>,
    /// How many amendments (corrections, retractions) the child's updates have had.
    pub(crate) amendments: u64,
}

/// Reads every relationship, the latest revision of every consent, objection and
/// share, the date of birth and the count of amendments of `child`, together (one
/// round trip to a database).
pub(crate) fn load_facts(store: &Store, child: &(impl ChildRef + ?Sized)) -> Result<ChildFacts, ServiceError> {
    Ok(ChildFacts::from(store.child_records(child)?))
}

/// [`load_facts`] for a delivery, whose grants commit under preconditions on what they
/// relied on: they may come from what this node kept of the child even on a store other
/// nodes write (`Store::child_records_for_guarded_commit`), so a refusal decided on
/// them must be decided again on [`load_facts`].
pub(crate) fn load_facts_for_guarded_commit(
    store: &Store,
    child: &(impl ChildRef + ?Sized),
) -> Result<ChildFacts, ServiceError> {
    Ok(ChildFacts::from((*store.child_records_for_guarded_commit(child)?).clone()))
}

impl From<tio_store::child_records::ChildRecords> for ChildFacts {
    fn from(records: tio_store::child_records::ChildRecords) -> Self {
        ChildFacts {
            relationships: records.relationships,
            consents: records.consents,
            objections: records.objections,
            shares: records.shares,
            date_of_birth: records.date_of_birth,
            amendments: records.amendments,
        }
    }
}

/// A child's facts as the domain core takes them, owned: [`DomainFacts::facts`] lends
/// them to `tio_core::decide`.
#[derive(Debug, Clone, Default)]
pub(crate) struct DomainFacts {
    relationships: Vec<CareRelationship>,
    consents: Vec<Consent>,
    objections: Vec<Objection>,
    shares: Vec<SafeguardingShare>,
    date_of_birth: Option<Date>,
}

impl DomainFacts {
    /// Returns the facts to decide on.
    pub(crate) fn facts(&self) -> Facts<'_> {
        Facts {
            relationships: &self.relationships,
            consents: &self.consents,
            objections: &self.objections,
            shares: &self.shares,
            date_of_birth: self.date_of_birth,
        }
    }
}

impl ChildFacts {
    /// Returns the facts as the domain core decides on them.
    pub(crate) fn domain(&self) -> DomainFacts {
        DomainFacts {
            relationships: self.relationships.iter().map(|stored| stored.record.relationship.clone()).collect(),
            consents: self.consents.iter().map(|revision| revision.consent.clone()).collect(),
            objections: self.objections.iter().map(|revision| revision.objection.clone()).collect(),
            shares: self.shares.iter().map(|revision| revision.share.clone()).collect(),
            date_of_birth: self.date_of_birth,
        }
    }

    /// Returns how many objections had been raised for the child when these facts were
    /// read: a decision on them holds while no later one is raised
    /// (`Store::no_objection_since`).
    pub(crate) fn objections_raised(&self) -> u32 {
        self.objections.last().map_or(0, |revision| revision.objection.id.0)
    }
}

/// Returns the active relationship of `agency` with `child` at `now`, if any: the
/// relationships alone are read (not the consents), for the checks that ask only
/// whether an agency is involved.
pub(crate) fn active_relationship(
    store: &Store,
    child: &(impl ChildRef + ?Sized),
    agency: &AgencyId,
    now: Timestamp,
) -> Result<Option<StoredRelationship>, ServiceError> {
    Ok(store.relationships(child)?.into_iter().find(|stored| {
        let relationship = &stored.record.relationship;
        &relationship.agency == agency && relationship.is_active_at(now)
    }))
}
