//! Safeguarding shares: sharing without consent where a child may be at risk, as
//! Working Together to Safeguard Children (2023) and the DPA 2018 (Schedule 8 para 4,
//! Schedule 1 para 18) allow: necessary, proportionate, recorded and reviewable.
//!
//! A professional of an agency permitted to declare them names why (a reason from a
//! closed list, and free text), which categories, which recipients (agencies or
//! sectors), from when and until when: at most 30 days (7 by default), renewed only as a
//! new revision with a new reason, ended early by the declaring agency. While a share is
//! in force, [`crate::decide`] allows the named recipients that are involved with the
//! child those categories without consent, over a family's objection (both recorded).
//! Nothing is said to the family automatically; a share may carry the date by which
//! telling them is to be reviewed.
//!
//! Shares of one child are numbered densely (`s-1`, `s-2`, ...) in the order declared.

use std::fmt;

use crate::consent::recording::Recorder;
use crate::names::stable_names;
use crate::{Agency, AgencyId, Category, CategorySet, Date, FieldViolation, Sector, Timestamp, limits};

/// The longest a share lasts, from its start or its renewal.
pub const MAX_SHARE_DAYS: i64 = 30;

/// How long a share lasts when its declaration does not say.
pub const DEFAULT_SHARE_DAYS: i64 = 7;

/// The longest free-text reason, in bytes.
pub const MAX_REASON_TEXT_BYTES: usize = limits::MAX_FREE_TEXT_BYTES;

const DAY_SECONDS: i64 = 24 * 60 * 60;

/// Why a share was declared: the closed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShareReason {
    /// Reasonable cause to suspect the child is suffering, or likely to suffer,
    /// significant harm.
    RiskOfSignificantHarm,
    /// A section 47 enquiry (Children Act 1989).
    Section47Enquiry,
    /// A section 17 assessment of a child in need.
    Section17Assessment,
    /// Police protection (section 46).
    PoliceProtection,
    /// A court order.
    CourtOrder,
    /// Another reason, given in the free text.
    Other,
}

stable_names!(ShareReason {
    RiskOfSignificantHarm => "risk_of_significant_harm",
    Section47Enquiry => "section_47_enquiry",
    Section17Assessment => "section_17_assessment",
    PoliceProtection => "police_protection",
    CourtOrder => "court_order",
    Other => "other",
});

/// A share's number among the child's shares: 1 for the first, dense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareId(pub u32);

const ID_PREFIX: &str = "s-";

impl ShareId {
    /// Parses an id as the contract writes it (`s-3`); `field` names it in the error.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        crate::numbered_id::parse_numbered_id(text, ID_PREFIX)
            .map(ShareId)
            .ok_or_else(|| FieldViolation::new(field, "must be a safeguarding share id such as s-1"))
    }

    /// Returns the id that follows this one.
    pub fn next(self) -> Option<ShareId> {
        self.0.checked_add(1).map(ShareId)
    }
}

impl fmt::Display for ShareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ID_PREFIX}{}", self.0)
    }
}

/// Whether a share was ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareState {
    /// In force between its start and its expiry.
    Active,
    /// Ended at the given moment.
    Ended {
        /// When the end was recorded.
        at: Timestamp,
    },
}

/// The latest revision of one share: what [`crate::decide`] sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeguardingShare {
    /// Its number among the child's shares.
    pub id: ShareId,
    /// 1 when declared; each renewal or the end adds one.
    pub revision: u32,
    /// Why, at this revision.
    pub reason: ShareReason,
    /// The categories shared: at least one.
    pub categories: CategorySet,
    /// The agencies shared with by name.
    pub agencies: Vec<AgencyId>,
    /// The sectors shared with.
    pub sectors: Vec<Sector>,
    /// The first moment it applies.
    pub starts: Timestamp,
    /// The first moment it no longer applies.
    pub expires: Timestamp,
    /// The agency that declared it.
    pub declared_by: AgencyId,
    /// Whether it was ended early.
    pub state: ShareState,
}

impl SafeguardingShare {
    /// Returns whether the share is in force at `now`.
    pub fn in_force(&self, now: Timestamp) -> bool {
        let ended = matches!(self.state, ShareState::Ended { at } if at <= now);
        !ended && self.starts <= now && now < self.expires
    }

    /// Returns whether the share allows `agency` the `category` at `now` (involvement
    /// is [`crate::decide`]'s to check).
    pub fn covers(&self, agency: &Agency, category: Category, now: Timestamp) -> bool {
        self.in_force(now)
            && self.categories.contains(category)
            && (self.agencies.contains(&agency.id) || self.sectors.contains(&agency.sector))
    }
}

/// One revision of a share as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRevision {
    /// The share as [`crate::decide`] sees it, at this revision.
    pub share: SafeguardingShare,
    /// Why, in the professional's words (sealed at rest), at this revision.
    pub reason_text: String,
    /// When telling the family is to be reviewed, if set; the subject-access report
    /// shows the share once this date has passed or the share has ended.
    pub review_family_notification_by: Option<Date>,
    /// The agency that recorded this revision.
    pub recorded_by: AgencyId,
    /// The professional who recorded it.
    pub recorded_by_professional: String,
    /// When this revision was recorded.
    pub recorded_at: Timestamp,
    /// Why it was ended early (an end's revision).
    pub end_reason: String,
}

impl ShareRevision {
    /// Returns whether the family may now be told of the share (in the subject-access
    /// report): once it has ended or expired, or its review date (a day in the UK)
    /// has come.
    pub fn disclosable(&self, now: Timestamp) -> bool {
        let over = matches!(self.share.state, ShareState::Ended { .. }) || now >= self.share.expires;
        let reviewed =
            self.review_family_notification_by.is_some_and(|by| now.uk_date().is_some_and(|today| today >= by));
        over || reviewed
    }
}

/// A share as a professional asks to declare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShare {
    /// Why.
    pub reason: ShareReason,
    /// Why, in words: required for `Other`.
    pub reason_text: String,
    /// The categories shared.
    pub categories: CategorySet,
    /// The agencies shared with.
    pub agencies: Vec<AgencyId>,
    /// The sectors shared with.
    pub sectors: Vec<Sector>,
    /// The first moment it applies; now if not given.
    pub starts: Option<Timestamp>,
    /// When it ends; 7 days after it starts if not given, at most 30.
    pub expires: Option<Timestamp>,
    /// When telling the family is to be reviewed.
    pub review_family_notification_by: Option<Date>,
}

/// Why a renewal or an end was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefused {
    /// A field of the request is at fault.
    #[error("{0}")]
    Invalid(FieldViolation),
    /// Only the declaring agency renews or ends a share.
    #[error("only the agency that declared the share may change it")]
    NotDeclarer,
    /// The share has ended or expired.
    #[error("the share is no longer in force")]
    NotInForce,
}

fn check_reason_text(reason: ShareReason, text: &str) -> Result<(), FieldViolation> {
    limits::check_len("reason_text", text, MAX_REASON_TEXT_BYTES)?;
    if reason == ShareReason::Other && text.trim().is_empty() {
        return Err(FieldViolation::new("reason_text", "is required when the reason is other"));
    }
    Ok(())
}

fn check_expiry(expires: Timestamp, from: Timestamp, now: Timestamp) -> Result<(), FieldViolation> {
    if expires <= now {
        return Err(FieldViolation::new("expires", "must be in the future"));
    }
    if expires <= from {
        return Err(FieldViolation::new("expires", "must be after starts"));
    }
    if expires > from.plus_seconds(MAX_SHARE_DAYS * DAY_SECONDS) {
        return Err(FieldViolation::new("expires", format!("must be at most {MAX_SHARE_DAYS} days after it starts")));
    }
    Ok(())
}

/// Returns revision 1 of share `id`, declared by `by` at `now`, if `new` says what a
/// share must: a reason (in words too, for `Other`), at least one category, at least
/// one recipient, a start not in the past, and an expiry after it, at most 30 days on.
pub fn declare(new: NewShare, id: ShareId, by: Recorder, now: Timestamp) -> Result<ShareRevision, FieldViolation> {
    check_reason_text(new.reason, &new.reason_text)?;
    if new.categories.is_empty() {
        return Err(FieldViolation::new("categories", "must name at least one category"));
    }
    if new.agencies.is_empty() && new.sectors.is_empty() {
        return Err(FieldViolation::new("recipients", "must name at least one agency or sector"));
    }
    limits::check_items("recipients.agency_ids", &new.agencies, limits::MAX_LIST_ITEMS)?;
    let starts = new.starts.unwrap_or(now);
    if starts < now {
        return Err(FieldViolation::new("starts", "must not be in the past: a share cannot authorise what was done"));
    }
    let expires = new.expires.unwrap_or(starts.plus_seconds(DEFAULT_SHARE_DAYS * DAY_SECONDS));
    check_expiry(expires, starts, now)?;
    Ok(ShareRevision {
        share: SafeguardingShare {
            id,
            revision: 1,
            reason: new.reason,
            categories: new.categories,
            agencies: new.agencies,
            sectors: new.sectors,
            starts,
            expires,
            declared_by: by.agency.clone(),
            state: ShareState::Active,
        },
        reason_text: new.reason_text,
        review_family_notification_by: new.review_family_notification_by,
        recorded_by: by.agency,
        recorded_by_professional: by.professional,
        recorded_at: now,
        end_reason: String::new(),
    })
}

/// Returns the revision that renews `latest` until `expires` (7 days from now if not
/// given, at most 30) for a new `reason`, recorded by `by` of the declaring agency.
pub fn renew(
    latest: &ShareRevision,
    reason: ShareReason,
    reason_text: &str,
    expires: Option<Timestamp>,
    by: Recorder,
    now: Timestamp,
) -> Result<ShareRevision, ChangeRefused> {
    check_reason_text(reason, reason_text).map_err(ChangeRefused::Invalid)?;
    if by.agency != latest.share.declared_by {
        return Err(ChangeRefused::NotDeclarer);
    }
    if matches!(latest.share.state, ShareState::Ended { .. }) || now >= latest.share.expires {
        return Err(ChangeRefused::NotInForce);
    }
    let expires = expires.unwrap_or(now.plus_seconds(DEFAULT_SHARE_DAYS * DAY_SECONDS));
    check_expiry(expires, now, now).map_err(ChangeRefused::Invalid)?;
    Ok(ShareRevision {
        share: SafeguardingShare { revision: latest.share.revision + 1, reason, expires, ..latest.share.clone() },
        reason_text: reason_text.to_owned(),
        recorded_by: by.agency,
        recorded_by_professional: by.professional,
        recorded_at: now,
        ..latest.clone()
    })
}

/// Returns the revision that ends `latest` at `now`, recorded by `by` of the declaring
/// agency for `reason`.
pub fn end(latest: &ShareRevision, reason: &str, by: Recorder, now: Timestamp) -> Result<ShareRevision, ChangeRefused> {
    limits::check_len("reason", reason, MAX_REASON_TEXT_BYTES).map_err(ChangeRefused::Invalid)?;
    if by.agency != latest.share.declared_by {
        return Err(ChangeRefused::NotDeclarer);
    }
    if matches!(latest.share.state, ShareState::Ended { .. }) || now >= latest.share.expires {
        return Err(ChangeRefused::NotInForce);
    }
    Ok(ShareRevision {
        share: SafeguardingShare {
            revision: latest.share.revision + 1,
            state: ShareState::Ended { at: now },
            ..latest.share.clone()
        },
        recorded_by: by.agency,
        recorded_by_professional: by.professional,
        recorded_at: now,
        end_reason: reason.to_owned(),
        ..latest.clone()
    })
}

#[cfg(test)]
mod tests;
