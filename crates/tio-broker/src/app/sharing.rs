//! Sharing without consent, as this deployment does it: the sectors a child-protection
//! or looked-after flag reaches, how a stored value's flag is read, and what a grant
//! (by consent or without) writes into the audit entry of the disclosure.
//!
//! The rule itself is the domain's (`tio_core::decide`, `tio_core::protection`); what a
//! stored value says is the contract's business, so the adapter hands its readers in
//! (`Sharing::flag_of`, `Sharing::date_of_birth_of`) and the use cases never parse a
//! contract message.

use tio_audit::entry::AuditEntry;
use tio_core::protection::{FlagShare, FlagValue, ProtectionFlag};
use tio_core::{AgencyId, Category, Grant, Sector, WithoutConsent};
use tio_store::{Store, StoredUpdate};

use crate::app::broker::Broker;
use crate::app::error::ServiceError;

/// How this deployment shares without consent.
#[derive(Debug, Clone)]
pub(crate) struct Sharing {
    /// The sectors a flag reaches (`sharing.child_protection_flag_sectors`).
    pub(crate) flag_sectors: Vec<Sector>,
    /// Reads the flag an encoded social-care value carries, if any.
    pub(crate) flag_of: fn(&[u8]) -> Option<FlagValue>,
    /// Reads the date of birth an encoded identity value states, if any (an amendment
    /// of one may change what decisions count the child's age from).
    pub(crate) date_of_birth_of: fn(&[u8]) -> Option<tio_core::Date>,
}

/// The audit entry's `basis` for a disclosure on a flag. Do not change: it is hashed.
pub(crate) const PROTECTION_FLAG_BASIS: &str = "protection_flag";

/// The audit entry's `basis` for a disclosure on a safeguarding share. Do not change.
pub(crate) const SAFEGUARDING_SHARE_BASIS: &str = "safeguarding_share";

/// The alert a disclosure on a safeguarding share raises. Do not change.
pub(crate) const SHARE_USED_ALERT: &str = "safeguarding_share_used";

/// The alert a disclosure of a flag to another agency raises. Do not change: it is
/// hashed.
pub(crate) const FLAG_ACCESS_ALERT: &str = "protection_flag_access";

/// Returns whom a disclosure of a value carrying `flag` to `agency` alerts: the
/// children's social-care agency that published the flag, whenever another agency reads
/// or receives it, on whatever basis (as CP-IS tells the child's social worker).
pub(crate) fn flag_access_alert(flag: Option<&ProtectionFlag>, agency: &AgencyId) -> Option<AgencyId> {
    flag.filter(|flag| flag.publisher_sector == Sector::SocialCare && &flag.publisher != agency)
        .map(|flag| flag.publisher.clone())
}

/// Addresses a disclosure on a safeguarding share to the agency that declared it, as
/// well: every use of a share is told (auditors and admins see every alert).
pub(crate) fn fill_share_alert(entry: &mut AuditEntry, grant: &Grant) {
    if let Some(WithoutConsent::SafeguardingShare { declared_by, .. }) = &grant.without_consent {
        if entry.alert.is_empty() {
            entry.alert = SHARE_USED_ALERT.to_owned();
        }
        if !entry.alert_to.iter().any(|to| to == declared_by.as_str()) {
            entry.alert_to.push(declared_by.as_str().to_owned());
        }
    }
}

/// Addresses the disclosure's audit entry as an access alert to `publisher`.
pub(crate) fn fill_alert(entry: &mut AuditEntry, publisher: Option<&AgencyId>) {
    if let Some(publisher) = publisher {
        entry.alert = FLAG_ACCESS_ALERT.to_owned();
        entry.alert_to = vec![publisher.as_str().to_owned()];
    }
}

impl Broker {
    /// Returns the flag `stored` carries, as its publisher is registered now (`None`
    /// for any other value, or once the publisher is no longer registered).
    pub(crate) fn flag_of(&self, stored: &StoredUpdate) -> Option<ProtectionFlag> {
        if stored.category != Category::SocialCareInvolvement {
            return None;
        }
        let value = (self.sharing().flag_of)(&stored.content.as_ref()?.value)?;
        let publisher = self.registry().agency(&stored.publisher)?;
        Some(ProtectionFlag::new(value, publisher.id, publisher.sector))
    }

    /// Returns `flag` as `tio_core::decide` takes it, for `stored`: current if it is
    /// the child's latest value of its category now.
    pub(crate) fn flag_share<'a>(
        &'a self,
        store: &Store,
        stored: &StoredUpdate,
        flag: Option<&'a ProtectionFlag>,
    ) -> Result<Option<FlagShare<'a>>, ServiceError> {
        let Some(flag) = flag else { return Ok(None) };
        let current = store.is_latest(stored)?;
        Ok(Some(FlagShare { flag, current, to_sectors: &self.sharing().flag_sectors }))
    }
}

/// Writes what allowed a disclosure into its audit entry: the consent and revision, or
/// the basis without consent and what it recorded; the relationship; and the family's
/// objections it overrode.
pub(crate) fn fill_grant(entry: &mut AuditEntry, grant: &Grant) {
    if let Some((consent, revision)) = &grant.consent {
        entry.consent_id = consent.0.clone();
        entry.consent_revision = *revision;
    }
    if let Some(relationship) = &grant.relationship {
        entry.relationship_id = relationship.0.clone();
    }
    match &grant.without_consent {
        Some(WithoutConsent::ProtectionFlag { level, lawful_basis, condition }) => {
            entry.basis = PROTECTION_FLAG_BASIS.to_owned();
            entry.detail = format!("{} {} {}", level.as_str(), lawful_basis.as_str(), condition.as_str());
        }
        Some(WithoutConsent::SafeguardingShare { id, revision, .. }) => {
            entry.basis = SAFEGUARDING_SHARE_BASIS.to_owned();
            entry.detail = format!("{id} {revision}");
        }
        None => {}
    }
    entry.overrides = grant.overridden.iter().map(ToString::to_string).collect();
}
