//! What the broker reads about a child besides its updates: consent revisions and care
//! relationships, kept by the store as the domain's values, and what decisions use.

use tio_core::{AgencyId, CareRelationship, Consent, ConsentRevision, Date, Timestamp};
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
    /// The date of birth as last published, which a parent's consent lapses by.
    pub(crate) date_of_birth: Option<Date>,
}

/// Reads every relationship, the latest revision of every consent and the date of birth
/// of `child`.
pub(crate) fn load_facts(store: &Store, child: &(impl ChildRef + ?Sized)) -> Result<ChildFacts, ServiceError> {
    Ok(ChildFacts {
        relationships: store.relationships(child)?,
        consents: store.latest_consents(child)?,
        date_of_birth: store.date_of_birth(child)?,
    })
}

impl ChildFacts {
    /// Returns the facts as the domain core decides on them.
    pub(crate) fn domain(&self) -> (Vec<CareRelationship>, Vec<Consent>) {
        let relationships = self.relationships.iter().map(|stored| stored.record.relationship.clone()).collect();
        let consents = self.consents.iter().map(|revision| revision.consent.clone()).collect();
        (relationships, consents)
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
