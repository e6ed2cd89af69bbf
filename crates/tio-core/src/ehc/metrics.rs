//! The partnership's SEND measures, counts only: by month, assessments opened,
//! decisions whether to assess and how many within 6 weeks, plans issued and how many
//! within 20 weeks (the national measure), exceptions by code, and the median advice
//! turnaround by adviser type and by agency; and, today, the young people aged 17 or
//! over with no referral to adult social care recorded.
//!
//! No figure names a child, and no figure rests on fewer than [`SMALL_NUMBER`]
//! children: a count of 1 to 4 children is withheld, and so is a median over fewer than
//! 5 (small-number suppression, as NHS and DfE statistics do). A month is a calendar
//! month of the day the thing happened (the request received, the decision told, the
//! plan issued, the exception begun, the advice given).

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;

use super::assessment::Assessment;
use super::{AdviserType, Clock, Deadline, ExceptionCode};
use crate::AgencyId;
use crate::age::age_on;
use crate::transition::{Milestone, Transition};

/// The fewest children a published figure may rest on.
pub const SMALL_NUMBER: usize = 5;

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    /// The year.
    pub year: i16,
    /// 1 to 12.
    pub month: i8,
}

impl Month {
    /// The month `date` falls in.
    pub fn of(date: Date) -> Month {
        Month { year: date.year(), month: date.month() }
    }
}

/// A count of children, or withheld because it would rest on fewer than
/// [`SMALL_NUMBER`] (but more than none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// The figure.
    Shown(u64),
    /// Withheld: 1 to 4 children.
    Suppressed,
}

impl Figure {
    fn count(children: usize) -> Figure {
        if (1..SMALL_NUMBER).contains(&children) { Figure::Suppressed } else { Figure::Shown(children as u64) }
    }
}

/// One month's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthFigures {
    /// The month.
    pub month: Month,
    /// Children whose assessment request was received in the month.
    pub opened: Figure,
    /// Children whose family was told the decision whether to assess in the month.
    pub decisions: Figure,
    /// Of those, told within 6 weeks of the request.
    pub decisions_within_6_weeks: Figure,
    /// Children whose final plan was issued in the month.
    pub plans_issued: Figure,
    /// Of those, issued within 20 weeks of the request.
    pub plans_within_20_weeks: Figure,
    /// Children with an exception beginning in the month, by code.
    pub exceptions: Vec<(ExceptionCode, Figure)>,
}

/// Whose advice a turnaround is of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Adviser {
    /// Every adviser of a type.
    Type(AdviserType),
    /// Every advice of one agency.
    Agency(AgencyId),
}

/// The median days from an advice request to the advice, for one adviser type or
/// agency in one month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turnaround {
    /// The month the advice was given.
    pub month: Month,
    /// Whose.
    pub adviser: Adviser,
    /// How many children's advice it rests on.
    pub advice: Figure,
    /// The median in days, withheld when it would rest on fewer than [`SMALL_NUMBER`]
    /// children (the lower middle of an even count).
    pub median_days: Option<i64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMetrics {
    /// Each month from the first to the last asked for, in order.
    pub months: Vec<MonthFigures>,
    /// Advice turnaround by adviser type, then by agency, in month order.
    pub turnaround: Vec<Turnaround>,
    /// Young people aged 17 to 24 today, with an assessment or a transition record,
    /// whose referral to adult social care is not recorded.
    pub aged_17_without_referral: Figure,
}

/// One child's records, as the report reads them: an ordinal stands for the child, so
/// that each figure counts children, not records.
#[derive(Debug, Clone, Copy)]
pub struct ChildRecords<'a> {
    /// The child, by a number meaningful only within one report.
    pub ordinal: usize,
    /// The child's date of birth, if known.
    pub date_of_birth: Option<Date>,
    /// The child's assessments (latest revisions).
    pub assessments: &'a [Assessment],
    /// The child's transition record, if any.
    pub transition: Option<&'a Transition>,
}

/// The children counted in one month, each figure's set.
#[derive(Default)]
struct Sets {
    opened: BTreeSet<usize>,
    decisions: BTreeSet<usize>,
    decisions_in_time: BTreeSet<usize>,
    plans: BTreeSet<usize>,
    plans_in_time: BTreeSet<usize>,
    exceptions: BTreeMap<&'static str, (ExceptionCode, BTreeSet<usize>)>,
}

/// The sets of the month `day` falls in, if it is one of `from` to `to`.
fn sets_at(months: &mut BTreeMap<Month, Sets>, day: Date, from: Month, to: Month) -> Option<&mut Sets> {
    let month = Month::of(day);
    (from <= month && month <= to).then(|| months.entry(month).or_default())
}

/// Works out the figures for the months `from` to `to` (inclusive), on `today`.
pub fn send_metrics(children: &[ChildRecords<'_>], from: Month, to: Month, today: Date) -> SendMetrics {
    let in_range = |month: Month| from <= month && month <= to;
    let mut months: BTreeMap<Month, Sets> = BTreeMap::new();
    // (month, adviser) -> child -> the days of its advice (the child's first counts once).
    let mut turnaround: BTreeMap<(Month, Adviser), BTreeMap<usize, i64>> = BTreeMap::new();
    let mut without_referral = BTreeSet::new();

    for child in children {
        for assessment in child.assessments {
            let dates = &assessment.dates;
            let Some(request) = dates.request_received else { continue };
            if let Some(sets) = sets_at(&mut months, request, from, to) {
                sets.opened.insert(child.ordinal);
            }
            if let Some((_, told)) = dates.decision {
                let in_time = Deadline::of(Clock::DecisionWhetherToAssess, request).is_some_and(|due| told <= due.due);
                if let Some(sets) = sets_at(&mut months, told, from, to) {
                    sets.decisions.insert(child.ordinal);
                    if in_time {
                        sets.decisions_in_time.insert(child.ordinal);
                    }
                }
            }
            if let Some(issued) = dates.final_plan_issued {
                let in_time = Deadline::of(Clock::FinalPlan, request).is_some_and(|due| issued <= due.due);
                if let Some(sets) = sets_at(&mut months, issued, from, to) {
                    sets.plans.insert(child.ordinal);
                    if in_time {
                        sets.plans_in_time.insert(child.ordinal);
                    }
                }
            }
            for exception in &dates.exceptions {
                if let Some(sets) = sets_at(&mut months, exception.from, from, to) {
                    sets.exceptions
                        .entry(exception.code.as_str())
                        .or_insert_with(|| (exception.code, BTreeSet::new()))
                        .1
                        .insert(child.ordinal);
                }
            }
            for request in &assessment.advice {
                let Some(advice) = &request.answer else { continue };
                let month = Month::of(advice.given_on);
                if !in_range(month) {
                    continue;
                }
                let days = request.asked_on.until(advice.given_on).map(|span| i64::from(span.get_days())).unwrap_or(0);
                for adviser in [Adviser::Type(request.adviser), Adviser::Agency(request.agency.clone())] {
                    turnaround.entry((month, adviser)).or_default().entry(child.ordinal).or_insert(days);
                }
            }
        }
        let aged = child.date_of_birth.map(|born| age_on(born, today)).is_some_and(|age| (17..25).contains(&age));
        let known = !child.assessments.is_empty() || child.transition.is_some();
        let referred = child.transition.is_some_and(|transition| {
            transition
                .milestones
                .iter()
                .any(|record| record.milestone == Milestone::AdultSocialCareReferral && record.done_on.is_some())
        });
        if aged && known && !referred {
            without_referral.insert(child.ordinal);
        }
    }

    let mut figures = Vec::new();
    let mut month = from;
    // Bounded: a month at a time from `from` to `to`.
    while month <= to {
        let sets = months.remove(&month).unwrap_or_default();
        figures.push(MonthFigures {
            month,
            opened: Figure::count(sets.opened.len()),
            decisions: Figure::count(sets.decisions.len()),
            decisions_within_6_weeks: Figure::count(sets.decisions_in_time.len()),
            plans_issued: Figure::count(sets.plans.len()),
            plans_within_20_weeks: Figure::count(sets.plans_in_time.len()),
            exceptions: sets
                .exceptions
                .into_values()
                .map(|(code, children)| (code, Figure::count(children.len())))
                .collect(),
        });
        month = if month.month == 12 {
            Month { year: month.year + 1, month: 1 }
        } else {
            Month { month: month.month + 1, ..month }
        };
    }
    let mut turnaround: Vec<Turnaround> = turnaround
        .into_iter()
        .map(|((month, adviser), by_child)| {
            let mut days: Vec<i64> = by_child.into_values().collect();
            days.sort_unstable();
            let median = (days.len() >= SMALL_NUMBER).then(|| days[(days.len() - 1) / 2]);
            Turnaround { month, adviser, advice: Figure::count(days.len()), median_days: median }
        })
        .collect();
    turnaround.sort_by(|a, b| {
        let kind = |adviser: &Adviser| matches!(adviser, Adviser::Agency(_));
        (kind(&a.adviser), a.month, &a.adviser).cmp(&(kind(&b.adviser), b.month, &b.adviser))
    });
    SendMetrics { months: figures, turnaround, aged_17_without_referral: Figure::count(without_referral.len()) }
}

#[cfg(test)]
mod tests;
