//! One EHC needs assessment as the council's SEND team runs it: opened from a request,
//! then each step recorded (the decision whether to assess, advice asked for and given,
//! exceptions, the draft, the final plan or the decision not to issue one). Every
//! change makes a new revision from the last, checked as a whole
//! ([`AssessmentDates::check`]), so that no stored revision has dates out of order.
//!
//! Advice is Tell It Once written into the regulations: an adviser answers with a
//! category value it published after being asked, or the authority records that advice
//! already given is sufficient, which regulation 6(4) allows only when the authority,
//! the person who gave it and the child's parent (or the young person) all agree; the
//! three agreements are recorded with it.

use std::fmt;

use jiff::civil::Date;

use super::{AdviserType, AssessDecision, AssessmentDates, Clock, ClockException, Deadline, DeadlineState};
use crate::consent::recording::Recorder;
use crate::numbered_id::parse_numbered_id;
use crate::{AgencyId, Category, FieldViolation, Timestamp};

/// An assessment's number among the child's, as the contract writes it (`ehc-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssessmentId(pub u32);

const ID_PREFIX: &str = "ehc-";

impl AssessmentId {
    /// Parses an id as the contract writes it; `field` names it in the error.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        parse_numbered_id(text, ID_PREFIX)
            .map(AssessmentId)
            .ok_or_else(|| FieldViolation::new(field, "must be an assessment id such as ehc-1"))
    }

    /// Returns the id that follows this one.
    pub fn next(self) -> Option<AssessmentId> {
        self.0.checked_add(1).map(AssessmentId)
    }
}

impl fmt::Display for AssessmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ID_PREFIX}{}", self.0)
    }
}

/// Who asked for the assessment (section 36(1) of the Children and Families Act 2014:
/// the child's parent, the young person, or a person acting for a school or college;
/// or the authority became aware of the child itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedBy {
    /// The child's parent.
    Parent,
    /// The young person.
    YoungPerson,
    /// An agency (a school or college, or another service), by id.
    Agency(AgencyId),
}

impl AdviserType {
    /// The categories in which this adviser's advice is given: what the broker offers
    /// as advice already given, and what an answer may name.
    pub fn categories(self) -> &'static [Category] {
        match self {
            AdviserType::ParentViews | AdviserType::YoungPersonViews => &[Category::CommunicationNeeds],
            AdviserType::Educational => &[Category::SendSupport, Category::EducationPlacement],
            AdviserType::MedicalHealth => &[Category::HealthSummary, Category::CommunicationNeeds],
            AdviserType::Psychological => &[Category::SendSupport],
            AdviserType::SocialCare => &[Category::SocialCareInvolvement],
            AdviserType::PreparingForAdulthood => &[Category::TransitionToAdulthood],
            AdviserType::Other => &Category::ALL,
        }
    }
}

/// The three agreements that advice already given is sufficient (regulation 6(4)), each
/// on the day it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreements {
    /// The authority's.
    pub authority: Date,
    /// The person who gave the advice.
    pub adviser: Date,
    /// The child's parent or the young person.
    pub family: Date,
}

/// Advice given for one request: a category value, named by its update id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    /// The update holding the advice.
    pub update_id: String,
    /// Its category.
    pub category: Category,
    /// The day the advice counts as given: its publication for new advice, the last
    /// agreement for advice already given.
    pub given_on: Date,
    /// For advice already given, the agreements that it is sufficient.
    pub reuse: Option<Agreements>,
}

/// Advice asked of one adviser (regulation 6(1)), due 6 weeks on (regulation 8(1)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdviceRequest {
    /// Which adviser.
    pub adviser: AdviserType,
    /// The agency asked.
    pub agency: AgencyId,
    /// The day it was asked.
    pub asked_on: Date,
    /// The advice, once given.
    pub answer: Option<Advice>,
}

impl AdviceRequest {
    /// Its deadline, or `None` past the calendar's end.
    pub fn deadline(&self) -> Option<Deadline> {
        Deadline::of(Clock::Advice, self.asked_on)
    }
}

/// One revision of an assessment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Its number among the child's.
    pub id: AssessmentId,
    /// 1 when opened, one more with each change.
    pub revision: u32,
    /// The SEND team's agency that runs it.
    pub run_by: AgencyId,
    /// Who asked for it.
    pub requested_by: RequestedBy,
    /// The dates its clocks run from and stop at.
    pub dates: AssessmentDates,
    /// Advice asked for, one request per adviser type, in the order asked.
    pub advice: Vec<AdviceRequest>,
    /// Who recorded this revision.
    pub recorded_by: Recorder,
    /// When.
    pub recorded_at: Timestamp,
}

/// A step of the assessment, recorded by the SEND team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The decision whether to assess, and the day the family was told.
    Decision(AssessDecision, Date),
    /// The day the draft plan was sent to the family.
    DraftSent(Date),
    /// The day the final plan was issued.
    FinalPlanIssued(Date),
    /// The day the family was told no plan will be issued.
    NoPlanNotified(Date),
    /// An exception that may excuse a time limit.
    Exception(ClockException),
}

impl Step {
    /// A short name, for audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Decision(AssessDecision::Assess, _) => "decision_to_assess",
            Step::Decision(AssessDecision::DoNotAssess, _) => "decision_not_to_assess",
            Step::DraftSent(_) => "draft_sent",
            Step::FinalPlanIssued(_) => "final_plan_issued",
            Step::NoPlanNotified(_) => "no_plan_notified",
            Step::Exception(_) => "exception",
        }
    }
}

/// What an answer names: an update of the child's, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedUpdate {
    /// Its id.
    pub update_id: String,
    /// Its category.
    pub category: Category,
    /// The agency that published it.
    pub publisher: AgencyId,
    /// The day it was published.
    pub published_on: Date,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Fields of the request are at fault.
    #[error("invalid: {0:?}")]
    Invalid(Vec<FieldViolation>),
    /// The step, or the adviser's request or answer, was recorded before; the field
    /// names it.
    #[error("`{0}` is already recorded")]
    AlreadyRecorded(&'static str),
    /// The assessment is over (a plan issued or refused, or no assessment): nothing more
    /// is recorded.
    #[error("the assessment is closed")]
    Closed,
    /// The agency answering was not asked for this advice.
    #[error("this agency was not asked for this advice")]
    NotAsked,
}

fn invalid(field: &str, reason: &str) -> Refused {
    Refused::Invalid(vec![FieldViolation::new(field, reason)])
}

/// The UK day of `now`, which every date is checked against.
fn today_of(now: Timestamp) -> Result<Date, Refused> {
    now.uk_date().ok_or_else(|| invalid("recorded_at", "is out of range"))
}

/// Opens assessment `id` from a request received on `request_received`.
pub fn open(
    id: AssessmentId,
    run_by: AgencyId,
    requested_by: RequestedBy,
    request_received: Date,
    recorded_by: Recorder,
    now: Timestamp,
) -> Result<Assessment, Refused> {
    let dates = AssessmentDates { request_received: Some(request_received), ..AssessmentDates::default() };
    dates.check(today_of(now)?).map_err(Refused::Invalid)?;
    Ok(Assessment { id, revision: 1, run_by, requested_by, dates, advice: Vec::new(), recorded_by, recorded_at: now })
}

impl Assessment {
    /// Whether nothing more is recorded: a plan issued or refused, or no assessment.
    pub fn is_closed(&self) -> bool {
        let dates = &self.dates;
        dates.final_plan_issued.is_some()
            || dates.no_plan_notified.is_some()
            || matches!(dates.decision, Some((AssessDecision::DoNotAssess, _)))
    }

    /// The day the request was received.
    pub fn request_received(&self) -> Option<Date> {
        self.dates.request_received
    }

    /// The next revision, recorded by `recorded_by` at `now`, before its change.
    fn next(&self, recorded_by: Recorder, now: Timestamp) -> Result<Assessment, Refused> {
        let revision =
            self.revision.checked_add(1).ok_or_else(|| invalid("assessment_id", "has too many revisions"))?;
        Ok(Assessment { revision, recorded_by, recorded_at: now, ..self.clone() })
    }

    /// Records `step`. A step is recorded once (an exception may be recorded again);
    /// dates out of order, in the future, or a step without the one it needs are refused
    /// with the field at fault.
    pub fn record(&self, step: Step, recorded_by: Recorder, now: Timestamp) -> Result<Assessment, Refused> {
        if self.is_closed() && !matches!(step, Step::Exception(_)) {
            return Err(Refused::Closed);
        }
        let mut next = self.next(recorded_by, now)?;
        let dates = &mut next.dates;
        let once = |slot: bool, field: &'static str| if slot { Err(Refused::AlreadyRecorded(field)) } else { Ok(()) };
        match step {
            Step::Decision(decision, on) => {
                once(dates.decision.is_some(), "decision")?;
                dates.decision = Some((decision, on));
            }
            Step::DraftSent(on) => {
                once(dates.draft_sent.is_some(), "draft_sent")?;
                dates.draft_sent = Some(on);
            }
            Step::FinalPlanIssued(on) => {
                once(dates.final_plan_issued.is_some(), "final_plan_issued")?;
                dates.final_plan_issued = Some(on);
            }
            Step::NoPlanNotified(on) => {
                once(dates.no_plan_notified.is_some(), "no_plan_notified")?;
                dates.no_plan_notified = Some(on);
            }
            Step::Exception(exception) => dates.exceptions.push(exception),
        }
        next.dates.check(today_of(now)?).map_err(Refused::Invalid)?;
        Ok(next)
    }

    /// Asks `agency` for `adviser`'s advice on `asked_on`: after a decision to assess,
    /// once per adviser type, not in the future, while the assessment is open.
    pub fn ask(
        &self,
        adviser: AdviserType,
        agency: AgencyId,
        asked_on: Date,
        recorded_by: Recorder,
        now: Timestamp,
    ) -> Result<Assessment, Refused> {
        if self.is_closed() {
            return Err(Refused::Closed);
        }
        let Some((AssessDecision::Assess, decided)) = self.dates.decision else {
            return Err(invalid("asked_on", "needs a decision to assess first"));
        };
        if self.advice.iter().any(|request| request.adviser == adviser) {
            return Err(Refused::AlreadyRecorded("adviser_type"));
        }
        if asked_on < decided {
            return Err(invalid("asked_on", "must not be before the decision to assess"));
        }
        if asked_on > today_of(now)? {
            return Err(invalid("asked_on", "must not be in the future"));
        }
        let mut next = self.next(recorded_by, now)?;
        next.advice.push(AdviceRequest { adviser, agency, asked_on, answer: None });
        Ok(next)
    }

    /// Records `adviser`'s advice, answered by `answerer` with `update`: new advice from
    /// the agency asked (`reuse` is `None`), published since it was asked; or, recorded
    /// by the authority, advice the same agency gave before it was asked, with the three
    /// agreements that it is sufficient.
    pub fn answer(
        &self,
        adviser: AdviserType,
        answerer: &AgencyId,
        update: &OfferedUpdate,
        reuse: Option<Agreements>,
        recorded_by: Recorder,
        now: Timestamp,
    ) -> Result<Assessment, Refused> {
        if self.is_closed() {
            return Err(Refused::Closed);
        }
        let today = today_of(now)?;
        let Some(index) = self.advice.iter().position(|request| request.adviser == adviser) else {
            return Err(invalid("adviser_type", "no advice was asked of this adviser in this assessment"));
        };
        let request = &self.advice[index];
        if request.answer.is_some() {
            return Err(Refused::AlreadyRecorded("adviser_type"));
        }
        if !adviser.categories().contains(&update.category) {
            return Err(invalid("update_id", "is not in a category this adviser's advice is given in"));
        }
        if update.publisher != request.agency {
            return Err(invalid("update_id", "was not published by the agency asked for this advice"));
        }
        let given_on = match reuse {
            None => {
                if *answerer != request.agency {
                    return Err(Refused::NotAsked);
                }
                if update.published_on < request.asked_on {
                    return Err(invalid(
                        "update_id",
                        "was published before the advice was asked for: the authority may record it as advice \
                         already given, with the three agreements",
                    ));
                }
                update.published_on
            }
            Some(agreements) => {
                if *answerer != self.run_by {
                    return Err(Refused::NotAsked);
                }
                if update.published_on > request.asked_on {
                    return Err(invalid("update_id", "was published after the advice was asked for: it is new advice"));
                }
                let mut violations = Vec::new();
                for (field, day) in [
                    ("agreements.authority", agreements.authority),
                    ("agreements.adviser", agreements.adviser),
                    ("agreements.family", agreements.family),
                ] {
                    if day > today {
                        violations.push(FieldViolation::new(field, "must not be in the future"));
                    } else if self.request_received().is_some_and(|request| day < request) {
                        violations.push(FieldViolation::new(field, "must not be before the request was received"));
                    }
                }
                if !violations.is_empty() {
                    return Err(Refused::Invalid(violations));
                }
                agreements.authority.max(agreements.adviser).max(agreements.family)
            }
        };
        let mut next = self.next(recorded_by, now)?;
        next.advice[index].answer =
            Some(Advice { update_id: update.update_id.clone(), category: update.category, given_on, reuse });
        Ok(next)
    }

    /// Every deadline with its state on `today`, in the order they fall due: the
    /// assessment's own, and each adviser's (with the adviser).
    pub fn clocks(&self, today: Date) -> Vec<ClockState> {
        let mut clocks: Vec<ClockState> = self
            .dates
            .deadlines(today)
            .into_iter()
            .map(|(deadline, state)| ClockState { deadline, state, adviser: None })
            .collect();
        for request in &self.advice {
            let Some(deadline) = request.deadline() else { continue };
            let done = request.answer.as_ref().map(|advice| advice.given_on);
            let state = deadline.state(done, &self.dates.exceptions, today);
            clocks.push(ClockState { deadline, state, adviser: Some(request.adviser) });
        }
        clocks.sort_by_key(|clock| (clock.deadline.due, clock.deadline.clock, clock.adviser));
        clocks
    }
}

/// One deadline of an assessment and where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockState {
    /// The deadline.
    pub deadline: Deadline,
    /// Its state.
    pub state: DeadlineState,
    /// For an adviser's deadline, which adviser.
    pub adviser: Option<AdviserType>,
}

#[cfg(test)]
mod tests;
