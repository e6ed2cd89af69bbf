//! The access decision: one pure function that every check in the broker calls.

use crate::consent::Coverage;
use crate::{
    Agency, CareRelationship, Category, Consent, ConsentId, ConsentState, ObjectionId, RelationshipId, Timestamp,
};

/// What an agency wants to do with one category of one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publish a new value. Needs the publish permission only: publishing shares with
    /// the broker, which discloses to nobody without consent.
    Publish,
    /// Read the current value (`GetProfile`).
    Read,
    /// Receive an update on a subscription, decided again at the moment of delivery.
    Receive,
}

/// One question for [`decide`].
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The agency asking, as registered now.
    pub agency: &'a Agency,
    /// What it wants to do.
    pub action: Action,
    /// With which category.
    pub category: Category,
    /// For a read or receipt of a value that carries a child-protection or
    /// looked-after flag: the flag, which may allow it without consent.
    pub flag: Option<crate::protection::FlagShare<'a>>,
}

/// What is known about the child being decided on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// Every care relationship of the child, any agency, active or ended.
    pub relationships: &'a [CareRelationship],
    /// The latest revision of every consent recorded for the child.
    pub consents: &'a [Consent],
    /// The latest revision of every objection raised for the child: an active one
    /// refuses what it covers, whatever the consents say.
    pub objections: &'a [crate::Objection],
    /// The latest revision of every safeguarding share declared for the child: one in
    /// force allows what it names without consent.
    pub shares: &'a [crate::safeguarding::SafeguardingShare],
    /// The child's date of birth, once published: a parent's consent lapses on the
    /// 18th birthday (parental responsibility ends).
    pub date_of_birth: Option<crate::Date>,
}

/// What allowed an access, so that the audit log can show it was authorised when it
/// was made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    /// The consent and its revision (none for a publish, or a share without consent).
    pub consent: Option<(ConsentId, u32)>,
    /// The care relationship (none for a publish).
    pub relationship: Option<RelationshipId>,
    /// What allowed it without consent, if a consent did not.
    pub without_consent: Option<WithoutConsent>,
    /// The family's objections that would have refused it, overridden by
    /// `without_consent` (recorded, never silent).
    pub overridden: Vec<ObjectionId>,
}

/// A basis for sharing without consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WithoutConsent {
    /// A safeguarding share in force, and its revision.
    SafeguardingShare {
        /// The share.
        id: crate::safeguarding::ShareId,
        /// Its revision when the decision was made.
        revision: u32,
        /// The agency that declared it (told of every use).
        declared_by: crate::AgencyId,
    },
    /// A child-protection or looked-after flag, on the publisher's basis.
    ProtectionFlag {
        /// The level flagged.
        level: crate::protection::FlagLevel,
        /// The Article 6 basis the publisher recorded.
        lawful_basis: crate::LawfulBasis,
        /// The Article 9 condition the publisher recorded.
        condition: crate::SpecialCategoryCondition,
    },
}

/// Why an access was refused: a closed set, shared by the audit log and the broker's
/// error mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The agency is suspended.
    AgencySuspended,
    /// The agency may not publish or read this category.
    NotPermittedForCategory,
    /// The agency has no active care relationship with the child.
    NotInvolved,
    /// No consent covers this child, category and agency.
    NoConsent,
    /// The only consents naming the agency and category are parents', and the young
    /// person now decides for themselves.
    ConsentSuperseded,
    /// A consent covering the access exists but has not begun.
    ConsentNotYetValid,
    /// A consent covering the access has expired.
    ConsentExpired,
    /// A consent covering the access was withdrawn.
    ConsentWithdrawn,
    /// The only consents covering the access are a parent's, and the child has turned
    /// 18: parental responsibility has ended, and the young person decides.
    ConsentLapsed,
    /// A consent covering the category excludes this agency by name.
    RecipientExcluded,
    /// The family (or the young person) objects to this agency, or its sector,
    /// receiving this category: an objection refuses whatever a consent allows.
    Objection,
}

impl DenyReason {
    /// Every reason.
    pub const ALL: [DenyReason; 11] = [
        DenyReason::AgencySuspended,
        DenyReason::NotPermittedForCategory,
        DenyReason::NotInvolved,
        DenyReason::NoConsent,
        DenyReason::ConsentSuperseded,
        DenyReason::ConsentNotYetValid,
        DenyReason::ConsentExpired,
        DenyReason::ConsentWithdrawn,
        DenyReason::ConsentLapsed,
        DenyReason::RecipientExcluded,
        DenyReason::Objection,
    ];

    /// Returns the stable snake_case code written to the audit log and error details.
    pub const fn code(self) -> &'static str {
        match self {
            DenyReason::AgencySuspended => "agency_suspended",
            DenyReason::NotPermittedForCategory => "not_permitted_for_category",
            DenyReason::NotInvolved => "not_involved",
            DenyReason::NoConsent => "no_consent",
            DenyReason::ConsentSuperseded => "consent_superseded",
            DenyReason::ConsentNotYetValid => "consent_not_yet_valid",
            DenyReason::ConsentExpired => "consent_expired",
            DenyReason::ConsentWithdrawn => "consent_withdrawn",
            DenyReason::ConsentLapsed => "consent_lapsed",
            DenyReason::RecipientExcluded => "recipient_excluded",
            DenyReason::Objection => "objection",
        }
    }

    /// Ranks the consent reasons so that, of several consents that each fail, the most
    /// specific failure is reported (an exclusion says more than a mere absence).
    const fn specificity(self) -> u8 {
        match self {
            DenyReason::RecipientExcluded => 6,
            DenyReason::ConsentWithdrawn => 5,
            DenyReason::ConsentLapsed => 4,
            DenyReason::ConsentExpired => 3,
            DenyReason::ConsentNotYetValid => 2,
            DenyReason::ConsentSuperseded => 1,
            _ => 0,
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, and by what.
    Allow(Grant),
    /// Refused, and why.
    Deny(DenyReason),
}

impl Decision {
    /// Returns whether the access is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// Decides whether `request.agency` may do `request.action` with `request.category` of
/// the child described by `facts`, at `now`.
///
/// Default deny: reading or receiving needs the agency not suspended, permitted for the
/// category, actively involved with the child, and an active, current consent that
/// names the category and covers the agency without excluding it (a parent's no longer
/// once the child is 18, by the child's date of birth and the day `now` is in the UK),
/// and no active objection covering the agency and category; or, in place of the
/// consent, a safeguarding share in force naming the agency or its sector and the
/// category (the latest declared, if several), or a current child-protection or
/// looked-after flag shared with the agency's sector (`request.flag`), neither of which
/// an objection stops (the objections overridden are in the grant). Publishing needs the agency not suspended and permitted. Checks run
/// in that order, except that an objection is named before any consent's reason: it
/// refuses whatever consents say.
pub fn decide(request: &AccessRequest<'_>, facts: &Facts<'_>, now: Timestamp) -> Decision {
    let agency = request.agency;
    if agency.suspended {
        return Decision::Deny(DenyReason::AgencySuspended);
    }
    let permitted = match request.action {
        Action::Publish => agency.may_publish.contains(request.category),
        Action::Read | Action::Receive => agency.may_read.contains(request.category),
    };
    if !permitted {
        return Decision::Deny(DenyReason::NotPermittedForCategory);
    }
    if request.action == Action::Publish {
        return Decision::Allow(Grant::default());
    }

    let Some(relationship) = facts
        .relationships
        .iter()
        .filter(|relationship| relationship.agency == agency.id && relationship.is_active_at(now))
        .min_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)))
    else {
        return Decision::Deny(DenyReason::NotInvolved);
    };

    let objecting: Vec<ObjectionId> = facts
        .objections
        .iter()
        .filter(|objection| objection.covers(agency, request.category, now))
        .map(|objection| objection.id)
        .collect();
    if let Some(share) =
        facts.shares.iter().filter(|share| share.covers(agency, request.category, now)).max_by_key(|share| share.id)
    {
        return Decision::Allow(Grant {
            consent: None,
            relationship: Some(relationship.id.clone()),
            without_consent: Some(WithoutConsent::SafeguardingShare {
                id: share.id,
                revision: share.revision,
                declared_by: share.declared_by.clone(),
            }),
            overridden: objecting,
        });
    }
    if let Some(share) = request.flag
        && share.reaches(&agency.id, agency.sector)
    {
        let flag = share.flag;
        return Decision::Allow(Grant {
            consent: None,
            relationship: Some(relationship.id.clone()),
            without_consent: Some(WithoutConsent::ProtectionFlag {
                level: flag.level,
                lawful_basis: flag.lawful_basis,
                condition: flag.condition,
            }),
            overridden: objecting,
        });
    }
    if !objecting.is_empty() {
        return Decision::Deny(DenyReason::Objection);
    }

    let lapse = facts.date_of_birth.and_then(crate::age::parental_consent_lapses_on);
    let parents_lapsed = lapse.is_some_and(|lapse| now.uk_date().is_none_or(|today| today >= lapse));
    match covering_consent(agency, request.category, facts.consents, now, parents_lapsed) {
        Ok(consent) => Decision::Allow(Grant {
            consent: Some((consent.id.clone(), consent.revision)),
            relationship: Some(relationship.id.clone()),
            ..Grant::default()
        }),
        Err(reason) => Decision::Deny(reason),
    }
}

/// Returns the consent that covers the access (the most recently recorded, if several),
/// or the most specific reason why none does.
fn covering_consent<'a>(
    agency: &Agency,
    category: Category,
    consents: &'a [Consent],
    now: Timestamp,
    parents_lapsed: bool,
) -> Result<&'a Consent, DenyReason> {
    // The child's or young person's own decision about the category, once made,
    // supersedes every parent's for it.
    let child_decides = crate::consent::own_decision_covers(consents, category, now);

    let mut best: Option<&Consent> = None;
    let mut reason = DenyReason::NoConsent;
    for consent in consents {
        match evaluate(consent, agency, category, now, child_decides, parents_lapsed) {
            Ok(()) => {
                if best.is_none_or(|current| (consent.recorded_at, &consent.id) > (current.recorded_at, &current.id)) {
                    best = Some(consent);
                }
            }
            Err(candidate) if candidate.specificity() > reason.specificity() => reason = candidate,
            Err(_) => {}
        }
    }
    best.ok_or(reason)
}

/// Says whether one consent covers the access, or why not.
fn evaluate(
    consent: &Consent,
    agency: &Agency,
    category: Category,
    now: Timestamp,
    child_decides: bool,
    parents_lapsed: bool,
) -> Result<(), DenyReason> {
    if !consent.categories.contains(category) {
        return Err(DenyReason::NoConsent);
    }
    match consent.recipients.coverage(agency) {
        Coverage::Excluded => return Err(DenyReason::RecipientExcluded),
        Coverage::NotNamed => return Err(DenyReason::NoConsent),
        Coverage::Covered => {}
    }
    if consent.giver_role.holds_parental_responsibility() {
        if child_decides {
            return Err(DenyReason::ConsentSuperseded);
        }
        if parents_lapsed {
            return Err(DenyReason::ConsentLapsed);
        }
    }
    if let ConsentState::Withdrawn { at } = consent.state
        && at <= now
    {
        return Err(DenyReason::ConsentWithdrawn);
    }
    if now < consent.valid.from {
        return Err(DenyReason::ConsentNotYetValid);
    }
    if consent.valid.until.is_some_and(|until| until <= now) {
        return Err(DenyReason::ConsentExpired);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
