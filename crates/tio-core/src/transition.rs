//! A young person's transition to adult services, tracked from the Year 9 annual review
//! (the school year in which they turn 14) to 25: the milestones the SEND Code of
//! Practice (chapter 8, preparing for adulthood) and NHS guidance set, each with an
//! owner agency, a due day worked out from the date of birth, and a state on a given
//! day. Dates in, states out; nothing here reads a clock.
//!
//! - The preparing-for-adulthood review, at the Year 9 annual review: by the end of the
//!   school year (31 August) in which the young person turns 14.
//! - The annual learning-disability health check, from 14: first by the 15th birthday,
//!   then a year after the last.
//! - The referral to adult social care (a Care Act 2014 transition assessment): by 17
//!   and a half.
//! - Adult health services identified: by the 18th birthday.
//! - The EHC plan's review before leaving education: by the day the young person is
//!   expected to leave, once that day is recorded.
//! - The plan ceasing or continuing into adult life: by the 25th birthday, when an EHC
//!   plan ends.

use std::fmt;

use jiff::Span;
use jiff::civil::Date;

use crate::age::{age_on, birthday};
use crate::consent::recording::Recorder;
use crate::ehc::{DeadlineState, state_on};
use crate::names::stable_names;
use crate::{AgencyId, FieldViolation, Timestamp};

/// One milestone of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Milestone {
    /// The preparing-for-adulthood review at the Year 9 annual review.
    PreparingForAdulthoodReview,
    /// The annual learning-disability health check, from 14.
    AnnualHealthCheck,
    /// The referral to adult social care.
    AdultSocialCareReferral,
    /// Adult health services identified.
    AdultHealthServices,
    /// The EHC plan reviewed before the young person leaves education.
    PlanReviewBeforeLeaving,
    /// The EHC plan ceasing, or its continuation decided, by 25.
    PlanCeases,
}

stable_names!(Milestone {
    PreparingForAdulthoodReview => "preparing_for_adulthood_review",
    AnnualHealthCheck => "annual_health_check",
    AdultSocialCareReferral => "adult_social_care_referral",
    AdultHealthServices => "adult_health_services",
    PlanReviewBeforeLeaving => "plan_review_before_leaving",
    PlanCeases => "plan_ceases",
});

impl Milestone {
    /// The day it is due, for a young person born on `born` who is expected to leave
    /// education on `leaving` (if recorded) and, for the health check, was last checked
    /// on `last_done`; `None` while it cannot be known (no leaving day yet) or past the
    /// calendar's end.
    pub fn due(self, born: Date, leaving: Option<Date>, last_done: Option<Date>) -> Option<Date> {
        match self {
            Milestone::PreparingForAdulthoodReview => year_nine_ends(born),
            Milestone::AnnualHealthCheck => match last_done {
                Some(last) => last.checked_add(Span::new().years(1)).ok(),
                None => birthday(born, 15),
            },
            Milestone::AdultSocialCareReferral => birthday(born, 17)?.checked_add(Span::new().months(6)).ok(),
            Milestone::AdultHealthServices => birthday(born, 18),
            Milestone::PlanReviewBeforeLeaving => leaving,
            Milestone::PlanCeases => birthday(born, 25),
        }
    }
}

/// The last day of Year 9: 31 August ending the school year (1 September to 31 August)
/// in which the young person turns 14.
pub fn year_nine_ends(born: Date) -> Option<Date> {
    let fourteenth = birthday(born, 14)?;
    let year = if fourteenth.month() < 9 { fourteenth.year() } else { fourteenth.year().checked_add(1)? };
    Date::new(year, 8, 31).ok()
}

/// The first day of Year 9, from which a transition record may be opened.
pub fn year_nine_starts(born: Date) -> Option<Date> {
    let ends = year_nine_ends(born)?;
    Date::new(ends.year().checked_sub(1)?, 9, 1).ok()
}

/// One milestone as recorded: who owns it and when it was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilestoneRecord {
    /// Which milestone.
    pub milestone: Milestone,
    /// The agency responsible for it.
    pub owner: AgencyId,
    /// The day it was last done (for the health check, the last check).
    pub done_on: Option<Date>,
}

/// One revision of a young person's transition record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// 1 when opened, one more with each change.
    pub revision: u32,
    /// The SEND team's agency that keeps it.
    pub run_by: AgencyId,
    /// The day it was opened (the Year 9 annual review).
    pub opened_on: Date,
    /// The day the young person is expected to leave education, once known.
    pub leaving_education: Option<Date>,
    /// Every milestone, in milestone order.
    pub milestones: Vec<MilestoneRecord>,
    /// Who recorded this revision.
    pub recorded_by: Recorder,
    /// When.
    pub recorded_at: Timestamp,
}

/// A milestone and where it stands on a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilestoneState {
    /// Which milestone.
    pub milestone: Milestone,
    /// Its owner.
    pub owner: AgencyId,
    /// Its due day, once it can be known.
    pub due: Option<Date>,
    /// Its state: `None` while the due day is not known.
    pub state: Option<DeadlineState>,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Fields of the request are at fault.
    #[error("invalid: {0:?}")]
    Invalid(Vec<FieldViolation>),
    /// Only the milestone's owner, or the SEND team keeping the record, records it.
    #[error("only the milestone's owner or the SEND team records it")]
    NotTheOwner,
}

fn invalid(field: &str, reason: &str) -> Refused {
    Refused::Invalid(vec![FieldViolation::new(field, reason)])
}

fn today_of(now: Timestamp) -> Result<Date, Refused> {
    now.uk_date().ok_or_else(|| invalid("recorded_at", "is out of range"))
}

/// Opens the transition record of a young person born on `born`, at the Year 9 annual
/// review on `opened_on`, with an owner for every milestone.
pub fn open(
    run_by: AgencyId,
    born: Date,
    opened_on: Date,
    owners: &[(Milestone, AgencyId)],
    recorded_by: Recorder,
    now: Timestamp,
) -> Result<Transition, Refused> {
    let today = today_of(now)?;
    if opened_on > today {
        return Err(invalid("opened_on", "must not be in the future"));
    }
    if year_nine_starts(born).is_none_or(|starts| opened_on < starts) {
        return Err(invalid("opened_on", "is before Year 9, the school year in which the young person turns 14"));
    }
    if age_on(born, opened_on) >= 25 {
        return Err(invalid("opened_on", "is after the young person's 25th birthday, when an EHC plan ends"));
    }
    let mut milestones = Vec::with_capacity(Milestone::ALL.len());
    for milestone in Milestone::ALL {
        let named: Vec<&AgencyId> = owners.iter().filter(|(kind, _)| *kind == milestone).map(|(_, id)| id).collect();
        match named.as_slice() {
            [owner] => milestones.push(MilestoneRecord { milestone, owner: (*owner).clone(), done_on: None }),
            [] => return Err(invalid("owners", &format!("names no owner for {}", milestone.as_str()))),
            _ => return Err(invalid("owners", &format!("names {} more than once", milestone.as_str()))),
        }
    }
    Ok(Transition {
        revision: 1,
        run_by,
        opened_on,
        leaving_education: None,
        milestones,
        recorded_by,
        recorded_at: now,
    })
}

impl Transition {
    fn next(&self, recorded_by: Recorder, now: Timestamp) -> Result<Transition, Refused> {
        let revision = self.revision.checked_add(1).ok_or_else(|| invalid("child", "has too many revisions"))?;
        Ok(Transition { revision, recorded_by, recorded_at: now, ..self.clone() })
    }

    /// Records `milestone` done on `on`, by `by` (its owner, or the SEND team keeping
    /// the record): not in the future, not before the record was opened; a health check
    /// after the last one.
    pub fn done(
        &self,
        milestone: Milestone,
        on: Date,
        by: &AgencyId,
        recorded_by: Recorder,
        now: Timestamp,
    ) -> Result<Transition, Refused> {
        let index = self
            .milestones
            .iter()
            .position(|record| record.milestone == milestone)
            .ok_or_else(|| invalid("milestone", "is not in this record"))?;
        let record = &self.milestones[index];
        if *by != record.owner && *by != self.run_by {
            return Err(Refused::NotTheOwner);
        }
        if on > today_of(now)? {
            return Err(invalid("done_on", "must not be in the future"));
        }
        if on < self.opened_on {
            return Err(invalid("done_on", "must not be before the record was opened"));
        }
        match (milestone, record.done_on) {
            (Milestone::AnnualHealthCheck, Some(last)) if on <= last => {
                return Err(invalid("done_on", "must be after the last health check"));
            }
            (Milestone::AnnualHealthCheck, _) => {}
            (_, Some(_)) => return Err(invalid("milestone", "is already recorded as done")),
            (_, None) => {}
        }
        let mut next = self.next(recorded_by, now)?;
        next.milestones[index].done_on = Some(on);
        Ok(next)
    }

    /// Records the day the young person is expected to leave education (it can change).
    pub fn leaving_on(&self, leaving: Date, recorded_by: Recorder, now: Timestamp) -> Result<Transition, Refused> {
        if leaving < self.opened_on {
            return Err(invalid("leaving_education", "must not be before the record was opened"));
        }
        let mut next = self.next(recorded_by, now)?;
        next.leaving_education = Some(leaving);
        Ok(next)
    }

    /// Every milestone with its due day and state on `today`, for a young person born
    /// on `born`, in milestone order. The health check is never done for good: its
    /// state is the next one's.
    pub fn milestones(&self, born: Date, today: Date) -> Vec<MilestoneState> {
        self.milestones
            .iter()
            .map(|record| {
                let recurring = record.milestone == Milestone::AnnualHealthCheck;
                let due = record.milestone.due(born, self.leaving_education, record.done_on.filter(|_| recurring));
                let done = if recurring { None } else { record.done_on };
                MilestoneState {
                    milestone: record.milestone,
                    owner: record.owner.clone(),
                    due,
                    state: due.map(|due| state_on(due, done, today, || None)),
                }
            })
            .collect()
    }
}

impl fmt::Display for Milestone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}

#[cfg(test)]
mod tests;
