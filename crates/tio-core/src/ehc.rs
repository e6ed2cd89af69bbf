//! The statutory clocks of an EHC needs assessment (the Special Educational Needs and
//! Disability Regulations 2014, SI 2014/1530): dates in, deadlines and their states out.
//!
//! - Regulation 5(1): the decision whether to assess, within 6 weeks of the request.
//! - Regulation 8(1): each adviser's advice, within 6 weeks of being asked.
//! - Regulation 10(1): a decision not to issue a plan, within 16 weeks of the request.
//! - Regulation 13(1): the family has at least 15 days from the draft plan to comment,
//!   so no final plan may be issued before they have passed.
//! - Regulation 13(2): the final plan, within 20 weeks of the request.
//!
//! The regulations excuse a time limit (the authority "need not comply" with it) when
//! meeting it is impractical for a listed reason (regulations 5(4), 8(2) and 10(4)): a
//! recorded [`ClockException`] makes a deadline it covers [`DeadlineState::Excused`],
//! never moves its date, and nothing else does either. The work is then still due as
//! soon as practicable, which the state shows by keeping the due date beside the code.
//!
//! Nothing here reads a clock: `today` is passed in.

use jiff::Span;
use jiff::civil::{Date, Weekday};

use crate::FieldViolation;
use crate::names::stable_names;

pub mod assessment;
pub mod metrics;

/// One statutory time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Clock {
    /// The decision whether to assess, told to the family (regulation 5(1)).
    DecisionWhetherToAssess,
    /// One adviser's advice (regulation 8(1)).
    Advice,
    /// A decision not to issue a plan, told to the family (regulation 10(1)).
    DecisionNotToIssue,
    /// The family's time to comment on the draft plan, a minimum (regulation 13(1)).
    DraftComments,
    /// The final plan (regulation 13(2)).
    FinalPlan,
}

stable_names!(Clock {
    DecisionWhetherToAssess => "decision_whether_to_assess",
    Advice => "advice",
    DecisionNotToIssue => "decision_not_to_issue",
    DraftComments => "draft_comments",
    FinalPlan => "final_plan",
});

impl Clock {
    /// The regulation that sets it.
    pub const fn regulation(self) -> &'static str {
        match self {
            Clock::DecisionWhetherToAssess => "SEND Regulations 2014, regulation 5(1)",
            Clock::Advice => "SEND Regulations 2014, regulation 8(1)",
            Clock::DecisionNotToIssue => "SEND Regulations 2014, regulation 10(1)",
            Clock::DraftComments => "SEND Regulations 2014, regulation 13(1)",
            Clock::FinalPlan => "SEND Regulations 2014, regulation 13(2)",
        }
    }

    /// How long it runs from its start.
    fn period(self) -> Span {
        match self {
            Clock::DecisionWhetherToAssess | Clock::Advice => Span::new().weeks(6),
            Clock::DecisionNotToIssue => Span::new().weeks(16),
            Clock::DraftComments => Span::new().days(15),
            Clock::FinalPlan => Span::new().weeks(20),
        }
    }

    /// Whether an exception with `code` excuses it. The family's 15 days are theirs,
    /// not the authority's, and nothing excuses them. An adviser's clock (regulation
    /// 8(2)) is excused by the family's circumstances, their absence, or a missed
    /// appointment with that adviser, not by a school closure; the authority's own
    /// clocks (regulations 5(4) and 10(4)) by a school closure, the family's
    /// circumstances or their absence. Where unsure whether the regulation lists a
    /// reason for a clock, it is left out: a deadline shown missed can be explained, one
    /// wrongly excused hides a breach.
    pub const fn excused_by(self, code: ExceptionCode) -> bool {
        match self {
            Clock::DraftComments => false,
            Clock::Advice => !matches!(code, ExceptionCode::SchoolClosure),
            Clock::DecisionWhetherToAssess | Clock::DecisionNotToIssue | Clock::FinalPlan => {
                !matches!(code, ExceptionCode::MissedAppointment)
            }
        }
    }
}

/// Why a time limit could not be met, as the regulations list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExceptionCode {
    /// Advice was asked of a head teacher or principal from a week before their school
    /// or college closed for at least 4 weeks until a week before it reopened.
    SchoolClosure,
    /// Exceptional personal circumstances affect the child, their parent or the young
    /// person.
    ExceptionalPersonalCircumstances,
    /// The child, their parent or the young person is away from the authority's area
    /// for at least 4 weeks in a row.
    AbsenceFromArea,
    /// The child or young person did not keep an appointment for an examination or a
    /// test with the adviser within the adviser's 6 weeks.
    MissedAppointment,
}

stable_names!(ExceptionCode {
    SchoolClosure => "school_closure",
    ExceptionalPersonalCircumstances => "exceptional_personal_circumstances",
    AbsenceFromArea => "absence_from_area",
    MissedAppointment => "missed_appointment",
});

/// A recorded exception: what, and the days it covers (`until` inclusive; open-ended
/// while it lasts). It excuses a deadline it covers ([`Clock::excused_by`]) whose
/// running period it overlaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockException {
    /// The reason.
    pub code: ExceptionCode,
    /// Its first day.
    pub from: Date,
    /// Its last day, once known.
    pub until: Option<Date>,
    /// The day it was recorded.
    pub recorded_on: Date,
}

/// Who gives advice in an assessment (regulation 6(1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AdviserType {
    /// The child's parent's views and advice.
    ParentViews,
    /// The young person's own views and advice.
    YoungPersonViews,
    /// Educational advice (the head teacher, a SENCO, a specialist teacher).
    Educational,
    /// Medical advice from a health care professional.
    MedicalHealth,
    /// Psychological advice from an educational psychologist.
    Psychological,
    /// Social care advice.
    SocialCare,
    /// Advice on preparing for adulthood and independent living, from Year 9.
    PreparingForAdulthood,
    /// Anyone else the authority thinks appropriate.
    Other,
}

stable_names!(AdviserType {
    ParentViews => "parent_views",
    YoungPersonViews => "young_person_views",
    Educational => "educational",
    MedicalHealth => "medical_health",
    Psychological => "psychological",
    SocialCare => "social_care",
    PreparingForAdulthood => "preparing_for_adulthood",
    Other => "other",
});

/// One deadline of an assessment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// Which time limit.
    pub clock: Clock,
    /// The day it started (the request, the advice request, the draft).
    pub starts: Date,
    /// The last day to meet it (for the draft comments: the first day a final plan may
    /// be issued is the day after).
    pub due: Date,
}

impl Deadline {
    /// The deadline of `clock` started on `starts`, or `None` past the calendar's end.
    pub fn of(clock: Clock, starts: Date) -> Option<Deadline> {
        Some(Deadline { clock, starts, due: starts.checked_add(clock.period()).ok()? })
    }

    /// Its state on `today`, met on `done_on` if it was, with `exceptions` recorded on
    /// the assessment.
    pub fn state(&self, done_on: Option<Date>, exceptions: &[ClockException], today: Date) -> DeadlineState {
        let excused = || {
            exceptions
                .iter()
                .find(|exception| {
                    self.clock.excused_by(exception.code)
                        && exception.from <= self.due
                        && exception.until.is_none_or(|until| until >= self.starts)
                })
                .map(|exception| exception.code)
        };
        state_on(self.due, done_on, today, excused)
    }
}

/// The state on `today` of something due on `due`, done on `done_on` if it was;
/// `excused` says which exception, if any, excuses it once past due.
pub fn state_on(
    due: Date,
    done_on: Option<Date>,
    today: Date,
    excused: impl Fn() -> Option<ExceptionCode>,
) -> DeadlineState {
    match done_on {
        Some(done) if done <= due => DeadlineState::Met { on: done },
        Some(done) => match excused() {
            Some(code) => DeadlineState::Excused { code, done_on: Some(done) },
            None => DeadlineState::Late { on: done, days_late: days_between(due, done) },
        },
        None if today <= due => DeadlineState::Open { days_left: days_between(today, due) },
        None => match excused() {
            Some(code) => DeadlineState::Excused { code, done_on: None },
            None => DeadlineState::Missed { days_over: days_between(due, today) },
        },
    }
}

/// Where a deadline stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineState {
    /// Not met yet, and not yet due: this many days left (0 on the last day).
    Open {
        /// Calendar days until the due date.
        days_left: i64,
    },
    /// Met on time.
    Met {
        /// The day it was met.
        on: Date,
    },
    /// Met after the due date, with no exception to excuse it.
    Late {
        /// The day it was met.
        on: Date,
        /// Calendar days after the due date.
        days_late: i64,
    },
    /// Not met, past due, with no exception to excuse it.
    Missed {
        /// Calendar days since the due date.
        days_over: i64,
    },
    /// Past due, excused by a recorded exception: due as soon as practicable.
    Excused {
        /// The exception that excuses it.
        code: ExceptionCode,
        /// The day it was met, if it has been.
        done_on: Option<Date>,
    },
}

impl DeadlineState {
    /// Whether it is past due and not met, with nothing to excuse it.
    pub fn is_missed(self) -> bool {
        matches!(self, DeadlineState::Missed { .. })
    }
}

fn days_between(from: Date, to: Date) -> i64 {
    from.until(to).map(|span| i64::from(span.get_days())).unwrap_or(0)
}

/// Returns the working days (Monday to Friday, not in `holidays`) after `from` up to and
/// including `to`; 0 if `to` is not after `from`. Bank holidays differ between the
/// nations and years, so the deployment supplies them.
pub fn working_days_between(from: Date, to: Date, holidays: &[Date]) -> i64 {
    let mut count = 0;
    let mut day = from;
    while day < to {
        let Ok(next) = day.tomorrow() else { break };
        day = next;
        if !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) && !holidays.contains(&day) {
            count += 1;
        }
    }
    count
}

/// Returns whether an open deadline should be flagged as coming: due within `within`
/// working days of `today` (the events use 10).
pub fn is_due_soon(deadline: &Deadline, today: Date, within: i64, holidays: &[Date]) -> bool {
    today <= deadline.due && working_days_between(today, deadline.due, holidays) <= within
}

/// The authority's decision whether to assess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssessDecision {
    /// It will assess.
    Assess,
    /// It will not.
    DoNotAssess,
}

/// The dates of one assessment as recorded: what the clocks run from and what stops
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssessmentDates {
    /// When the authority received the request.
    pub request_received: Option<Date>,
    /// The decision whether to assess, and the day the family was told.
    pub decision: Option<(AssessDecision, Date)>,
    /// The day the draft plan was sent to the family.
    pub draft_sent: Option<Date>,
    /// The day the family was told no plan will be issued.
    pub no_plan_notified: Option<Date>,
    /// The day the final plan was issued.
    pub final_plan_issued: Option<Date>,
    /// Exceptions recorded against the assessment.
    pub exceptions: Vec<ClockException>,
}

impl AssessmentDates {
    /// Checks the dates as a whole on `today`: each step after the one it needs, none
    /// in the future, no step without the one before it, and a plan not both issued and
    /// refused. Every violation names its field; none names a date.
    pub fn check(&self, today: Date) -> Result<(), Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let mut fault = |field: &str, reason: &str| violations.push(FieldViolation::new(field, reason));
        let Some(request) = self.request_received else {
            fault("request_received", "is required");
            return Err(violations);
        };
        let steps = [
            ("request_received", Some(request)),
            ("decision.notified_on", self.decision.map(|(_, on)| on)),
            ("draft_sent", self.draft_sent),
            ("no_plan_notified", self.no_plan_notified),
            ("final_plan_issued", self.final_plan_issued),
        ];
        for (field, date) in steps {
            if date.is_some_and(|date| date > today) {
                fault(field, "must not be in the future");
            }
        }
        if self.decision.is_some_and(|(_, on)| on < request) {
            fault("decision.notified_on", "must not be before the request was received");
        }
        let assessing = match self.decision {
            Some((AssessDecision::Assess, on)) => Some(on),
            _ => None,
        };
        for (field, date) in [
            ("draft_sent", self.draft_sent),
            ("no_plan_notified", self.no_plan_notified),
            ("final_plan_issued", self.final_plan_issued),
        ] {
            let Some(date) = date else { continue };
            match assessing {
                None => fault(field, "needs a decision to assess first"),
                Some(decided) if date < decided => fault(field, "must not be before the decision to assess"),
                Some(_) => {}
            }
        }
        if self.no_plan_notified.is_some() && (self.draft_sent.is_some() || self.final_plan_issued.is_some()) {
            fault("no_plan_notified", "cannot be recorded with a draft or final plan");
        }
        if let Some(issued) = self.final_plan_issued {
            match self.draft_sent.and_then(|draft| Deadline::of(Clock::DraftComments, draft)) {
                None => fault("final_plan_issued", "needs a draft plan first"),
                Some(comments) if issued <= comments.due => {
                    fault("final_plan_issued", "must be after the family's 15 days to comment on the draft")
                }
                Some(_) => {}
            }
        }
        for (index, exception) in self.exceptions.iter().enumerate() {
            if let Err(violation) = check_exception(exception, request, today) {
                violations.push(violation.within(&format!("exceptions[{index}]")));
            }
        }
        if violations.is_empty() { Ok(()) } else { Err(violations) }
    }

    /// The assessment's deadlines with their states on `today`, in the order they fall
    /// due; those that cannot apply any more (a plan's clocks after a decision not to
    /// assess, the 16 weeks after a draft, the 20 weeks after a refusal) are left out.
    pub fn deadlines(&self, today: Date) -> Vec<(Deadline, DeadlineState)> {
        let Some(request) = self.request_received else { return Vec::new() };
        let mut clocks: Vec<(Clock, Date, Option<Date>)> =
            vec![(Clock::DecisionWhetherToAssess, request, self.decision.map(|(_, on)| on))];
        if !matches!(self.decision, Some((AssessDecision::DoNotAssess, _))) {
            if self.draft_sent.is_none() && self.final_plan_issued.is_none() {
                clocks.push((Clock::DecisionNotToIssue, request, self.no_plan_notified));
            }
            if self.no_plan_notified.is_none() {
                clocks.push((Clock::FinalPlan, request, self.final_plan_issued));
            }
        }
        if let Some(draft) = self.draft_sent {
            clocks.push((Clock::DraftComments, draft, None));
        }
        let mut deadlines: Vec<(Deadline, DeadlineState)> = clocks
            .into_iter()
            .filter_map(|(clock, starts, done)| {
                let deadline = Deadline::of(clock, starts)?;
                let state = match clock {
                    // A minimum for the family: it is "met" once it has run.
                    Clock::DraftComments if today > deadline.due => DeadlineState::Met { on: deadline.due },
                    _ => deadline.state(done, &self.exceptions, today),
                };
                Some((deadline, state))
            })
            .collect();
        deadlines.sort_by_key(|(deadline, _)| (deadline.due, deadline.clock));
        deadlines
    }
}

/// Checks one exception against the assessment's request and `today`: it ends no earlier
/// than it starts, starts no earlier than the request and not in the future, and a
/// school closure or an absence that has ended lasted at least 4 weeks.
pub fn check_exception(exception: &ClockException, request: Date, today: Date) -> Result<(), FieldViolation> {
    if exception.from < request {
        return Err(FieldViolation::new("from", "must not be before the request was received"));
    }
    if exception.from > today {
        return Err(FieldViolation::new("from", "must not be in the future"));
    }
    if exception.recorded_on > today {
        return Err(FieldViolation::new("recorded_on", "must not be in the future"));
    }
    if let Some(until) = exception.until {
        if until < exception.from {
            return Err(FieldViolation::new("until", "must not be before `from`"));
        }
        // Four weeks counted inclusively: a Monday to the Sunday 27 days later.
        let four_weeks = exception.from.checked_add(Span::new().days(27)).ok();
        let needs_four_weeks = matches!(exception.code, ExceptionCode::SchoolClosure | ExceptionCode::AbsenceFromArea);
        if needs_four_weeks && four_weeks.is_some_and(|four_weeks| until < four_weeks) {
            return Err(FieldViolation::new("until", "must be at least 4 weeks after `from` for this exception"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
