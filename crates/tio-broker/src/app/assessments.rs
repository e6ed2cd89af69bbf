//! EHC needs assessments: opened and run by the council's SEND team (an agency the
//! registry permits, `Agency::may_run_ehc_assessments`), answered by the agencies asked
//! for advice, read by those and by agencies involved with the child. What a change
//! may be, and the clocks, are the domain's rules (`tio_core::ehc`); each change is a
//! new revision, committed with its audit entry on the condition that it is new, so
//! that two changes made from the same revision cannot both land.
//!
//! The agencies concerned are told by alert (their durable `WatchAlerts` stream): an
//! adviser when advice is asked of it (`ehc_advice_requested`, with its due day), the
//! SEND team when an adviser answers (`ehc_advice_received`), the advisers when the
//! final plan is issued (`ehc_plan_issued`); the broker's duties tell of deadlines
//! coming or missed (`deadline_alerts`).

use tio_audit::entry::{Action, Actor, AuditEntry, Outcome};
use tio_audit_log::entry_op;
use tio_core::ehc::AdviserType;
use tio_core::ehc::assessment::{
    self, AdviceRequest, Agreements, Assessment, AssessmentId, OfferedUpdate, Refused, RequestedBy, Step,
};
use tio_core::ehc::{DeadlineState, is_due_soon};
use tio_core::recording::Recorder;
use tio_core::{Agency, AgencyId, Date, FieldViolation, NhsNumber, Service};
use tio_store::{AmendKind, Batch, Child, StoreError, StoredUpdate, UpdateId};

use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;
use crate::app::facts::active_relationship;
use crate::runtime::retention::BROKER_ROLE;

pub(crate) mod transitions;

/// The reason code audited when an agency the registry does not permit tries to run an
/// assessment.
pub(crate) const MAY_NOT_RUN_EHC_ASSESSMENTS: &str = "may_not_run_ehc_assessments";
/// The reason code audited when advice is answered by an agency that may not.
pub(crate) const NOT_ASKED_FOR_ADVICE: &str = "not_asked_for_advice";

/// The alert to an agency asked for advice.
pub(crate) const ADVICE_REQUESTED_ALERT: &str = "ehc_advice_requested";
/// The alert to the SEND team when an adviser answers.
pub(crate) const ADVICE_RECEIVED_ALERT: &str = "ehc_advice_received";
/// The alert to the advisers when the final plan is issued.
pub(crate) const PLAN_ISSUED_ALERT: &str = "ehc_plan_issued";
/// The alert that a deadline is 10 working days away.
pub(crate) const DEADLINE_SOON_ALERT: &str = "ehc_deadline_soon";
/// The alert that a deadline was missed.
pub(crate) const DEADLINE_MISSED_ALERT: &str = "ehc_deadline_missed";

/// Working days before a deadline that it is told of as coming.
const DUE_SOON_WORKING_DAYS: i64 = 10;

/// How many times an opening takes the next number again after another opening for
/// the same child took it first.
const OPEN_ATTEMPTS: usize = 3;

fn invalid(field: &str, reason: &str) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

/// An agency admitted to the EHC assessment service for one child.
pub(crate) struct Assessments<'a> {
    broker: &'a Broker,
    call: &'a Call,
    child: Child,
    agency: Agency,
}

/// What an answer is: new advice by the agency asked, or advice already given, by the
/// SEND team, with its agreements.
pub(crate) enum Answer {
    /// New advice.
    New,
    /// Advice already given.
    AlreadyGiven(Agreements),
}

impl Broker {
    /// Admits an agency to `action` on `child`'s assessments (which it may do is checked
    /// per call).
    pub(crate) async fn assessments<'a>(
        &'a self,
        call: &'a Call,
        action: Action,
        child: &NhsNumber,
    ) -> Result<Assessments<'a>, ServiceError> {
        let agency = self.agency_call(call, Service::EhcAssessments, action).await?;
        Ok(Assessments { broker: self, call, child: self.store().child(child), agency })
    }
}

impl Assessments<'_> {
    fn recorder(&self) -> Recorder {
        Recorder {
            agency: self.agency.id.clone(),
            professional: self.call.caller.professional_id.clone().unwrap_or_default(),
        }
    }

    /// Refuses, audited, with `reason` (an audit log's lowercase code).
    async fn deny(&self, action: Action, reason: &str, message: String) -> ServiceError {
        let mut entry = self.broker.entry(self.call, action, Outcome::Denied);
        if let Err(err) = self.broker.name_child(&mut entry, &self.child) {
            return err;
        }
        entry.reason = reason.to_owned();
        if let Err(err) = self.broker.write_audit(&[entry]).await {
            return err;
        }
        ServiceError::denied(reason, message)
    }

    /// Refuses an agency the registry does not permit to run assessments.
    async fn require_send_team(&self, action: Action) -> Result<(), ServiceError> {
        if self.agency.may_run_ehc_assessments {
            return Ok(());
        }
        Err(self
            .deny(action, MAY_NOT_RUN_EHC_ASSESSMENTS, "this agency may not run EHC needs assessments".to_owned())
            .await)
    }

    /// Opens an assessment from a request received on `received`.
    pub(crate) async fn open(&self, requested_by: RequestedBy, received: Date) -> Result<Assessment, ServiceError> {
        self.require_send_team(Action::EhcAssessmentRecorded).await?;
        let store = self.broker.store();
        store.ensure_child_key(&self.child).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = store.latest_assessments(&self.child)?.last().map_or(AssessmentId(0), |latest| latest.id);
            let id =
                last.next().ok_or_else(|| invalid("child", "the child has as many assessments as can be numbered"))?;
            let opened = assessment::open(
                id,
                self.agency.id.clone(),
                requested_by.clone(),
                received,
                self.recorder(),
                self.call.now,
            )
            .map_err(|refused| refusal(refused, id))?;
            match self.commit(&opened, "opened".to_owned(), None).await {
                // Another opening took the number first: take the next one.
                Err(ServiceError::Store(StoreError::Conflict { .. })) if attempt < OPEN_ATTEMPTS => continue,
                outcome => return outcome.map(|()| opened),
            }
        }
    }

    /// Records a step of assessment `id`, by the SEND team running it.
    pub(crate) async fn record(&self, id: &str, step: Step) -> Result<Assessment, ServiceError> {
        let latest = self.run(id).await?;
        let next =
            latest.record(step, self.recorder(), self.call.now).map_err(|refused| refusal(refused, latest.id))?;
        let alert = match step {
            Step::FinalPlanIssued(_) => {
                let mut advisers: Vec<String> =
                    next.advice.iter().map(|request| request.agency.as_str().to_owned()).collect();
                advisers.sort();
                advisers.dedup();
                advisers.retain(|agency| agency != next.run_by.as_str());
                Some((PLAN_ISSUED_ALERT, advisers)).filter(|(_, to)| !to.is_empty())
            }
            _ => None,
        };
        self.commit(&next, step.as_str().to_owned(), alert).await?;
        Ok(next)
    }

    /// Asks `agency` for `adviser`'s advice in assessment `id` on `asked_on`.
    pub(crate) async fn request_advice(
        &self,
        id: &str,
        adviser: AdviserType,
        agency: AgencyId,
        asked_on: Date,
    ) -> Result<Assessment, ServiceError> {
        let latest = self.run(id).await?;
        if self.broker.registry().agency(agency.as_str()).is_none() {
            return Err(invalid("agency_id", "is not a registered agency"));
        }
        let next = latest
            .ask(adviser, agency, asked_on, self.recorder(), self.call.now)
            .map_err(|refused| refusal(refused, latest.id))?;
        let due = next.advice.last().and_then(AdviceRequest::deadline).map(|deadline| deadline.due);
        let detail = match due {
            Some(due) => format!("advice_requested:{} due {due}", adviser.as_str()),
            None => format!("advice_requested:{}", adviser.as_str()),
        };
        let to = next.advice.last().map(|request| request.agency.as_str().to_owned()).into_iter().collect();
        self.commit(&next, detail, Some((ADVICE_REQUESTED_ALERT, to))).await?;
        Ok(next)
    }

    /// Records `adviser`'s advice in assessment `id`: update `update_id` of the child.
    pub(crate) async fn answer(
        &self,
        id: &str,
        adviser: AdviserType,
        update_id: &str,
        answer: Answer,
    ) -> Result<Assessment, ServiceError> {
        let latest = self.latest(id)?;
        let offered = self.offered(update_id)?;
        let (reuse, step) = match answer {
            Answer::New => (None, "advice_given"),
            Answer::AlreadyGiven(agreements) => (Some(agreements), "advice_already_given"),
        };
        let next = match latest.answer(adviser, &self.agency.id, &offered, reuse, self.recorder(), self.call.now) {
            Ok(next) => next,
            Err(Refused::NotAsked) => {
                let message = match reuse {
                    None => "only the agency asked for this advice may answer it with new advice",
                    Some(_) => "only the SEND team running the assessment may record advice already given",
                };
                return Err(self.deny(Action::EhcAssessmentRecorded, NOT_ASKED_FOR_ADVICE, message.to_owned()).await);
            }
            Err(refused) => return Err(refusal(refused, latest.id)),
        };
        // The SEND team is told of new advice; advice already given it recorded itself.
        let alert = reuse.is_none().then(|| (ADVICE_RECEIVED_ALERT, vec![next.run_by.as_str().to_owned()]));
        self.commit(&next, format!("{step}:{}", adviser.as_str()), alert).await?;
        Ok(next)
    }

    /// Returns assessment `id` to an agency that may see it; the read is audited.
    pub(crate) async fn get(&self, id: &str) -> Result<Assessment, ServiceError> {
        let latest = self.latest(id)?;
        if !self.may_see(&latest)? {
            return Err(self.not_involved(Action::EhcAssessmentRead).await);
        }
        self.audit_read(&latest.id.to_string()).await?;
        Ok(latest)
    }

    /// Returns the child's assessments this agency may see, in the order opened; the
    /// read is audited.
    pub(crate) async fn list(&self) -> Result<Vec<Assessment>, ServiceError> {
        let mut visible = Vec::new();
        for assessment in self.broker.store().latest_assessments(&self.child)? {
            if self.may_see(&assessment)? {
                visible.push(assessment);
            }
        }
        if visible.is_empty() && !self.involved()? && !self.agency.may_run_ehc_assessments {
            return Err(self.not_involved(Action::EhcAssessmentRead).await);
        }
        self.audit_read("every assessment").await?;
        Ok(visible)
    }

    /// The values the agency asked for each unanswered request already published in the
    /// adviser's categories before it was asked: offered to the SEND team running the
    /// assessment as advice already given. Nothing is offered to anyone else.
    pub(crate) fn already_given(
        &self,
        assessment: &Assessment,
    ) -> Result<Vec<(AdviserType, Vec<StoredUpdate>)>, ServiceError> {
        if assessment.run_by != self.agency.id {
            return Ok(Vec::new());
        }
        let profile = self.broker.store().profile(&self.child)?;
        Ok(assessment
            .advice
            .iter()
            .filter(|request| request.answer.is_none())
            .map(|request| {
                let offered = profile
                    .iter()
                    .filter(|stored| {
                        stored.publisher == request.agency.as_str()
                            && request.adviser.categories().contains(&stored.category)
                            && stored.committed_at.uk_date().is_some_and(|day| day <= request.asked_on)
                    })
                    .cloned()
                    .collect();
                (request.adviser, offered)
            })
            .collect())
    }

    /// The latest revision of assessment `id`, run by this agency (which must be
    /// permitted to run assessments).
    async fn run(&self, id: &str) -> Result<Assessment, ServiceError> {
        self.require_send_team(Action::EhcAssessmentRecorded).await?;
        let latest = self.latest(id)?;
        if latest.run_by != self.agency.id {
            return Err(ServiceError::denied(
                "NOT_THE_RUNNING_AGENCY",
                format!("assessment `{}` is run by another agency", latest.id),
            ));
        }
        Ok(latest)
    }

    fn latest(&self, id: &str) -> Result<Assessment, ServiceError> {
        let parsed = AssessmentId::parse("assessment_id", id)
            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        self.broker.store().assessment(&self.child, parsed)?.ok_or_else(|| {
            ServiceError::not_found(
                "tio.v1.EhcAssessment",
                "ASSESSMENT_NOT_FOUND",
                id,
                format!("no EHC needs assessment `{id}` for this child"),
            )
        })
    }

    /// The update an answer names, as the domain checks it.
    fn offered(&self, update_id: &str) -> Result<OfferedUpdate, ServiceError> {
        let unknown = || invalid("update_id", "is not an update of this child");
        let id = UpdateId::parse(update_id).ok_or_else(unknown)?;
        let store = self.broker.store();
        let stored = store.find_update(&self.child, &id)?.ok_or_else(unknown)?;
        if stored.amends.is_some_and(|amends| amends.kind != AmendKind::Correction) {
            return Err(invalid("update_id", "is a retraction, not a value"));
        }
        if store.amended_by(&stored)?.is_some() {
            return Err(invalid("update_id", "was corrected or retracted since: name its current value"));
        }
        Ok(OfferedUpdate {
            update_id: stored.update_id.to_string(),
            category: stored.category,
            publisher: AgencyId::parse("update_id", &stored.publisher)
                .map_err(|v| ServiceError::InvalidArgument(vec![v]))?,
            published_on: stored.committed_at.uk_date().ok_or_else(unknown)?,
        })
    }

    /// Whether this agency may see `assessment`: it runs it, was asked for advice in it,
    /// or is involved with the child.
    fn may_see(&self, assessment: &Assessment) -> Result<bool, ServiceError> {
        Ok(assessment.run_by == self.agency.id
            || assessment.advice.iter().any(|request| request.agency == self.agency.id)
            || self.involved()?)
    }

    fn involved(&self) -> Result<bool, ServiceError> {
        Ok(active_relationship(self.broker.store(), &self.child, &self.agency.id, self.call.now)?.is_some())
    }

    async fn not_involved(&self, action: Action) -> ServiceError {
        self.deny(
            action,
            "not_involved",
            "only the SEND team running an assessment, the agencies asked for advice and the agencies involved with \
             the child may read it"
                .to_owned(),
        )
        .await
    }

    async fn audit_read(&self, what: &str) -> Result<(), ServiceError> {
        let mut entry = self.broker.entry(self.call, Action::EhcAssessmentRead, Outcome::Allowed);
        self.broker.name_child(&mut entry, &self.child)?;
        entry.detail = what.to_owned();
        self.broker.write_audit(&[entry]).await
    }

    /// Stores one revision, which must be new, with its audit entry naming `step`, an
    /// alert of `alert`'s kind to its agencies if given.
    async fn commit(
        &self,
        assessment: &Assessment,
        step: String,
        alert: Option<(&str, Vec<String>)>,
    ) -> Result<(), ServiceError> {
        let put = self.broker.store().put_assessment(&self.child, assessment)?;
        let mut entry = self.broker.entry(self.call, Action::EhcAssessmentRecorded, Outcome::Allowed);
        entry.consent_id = assessment.id.to_string();
        entry.consent_revision = assessment.revision;
        entry.detail = step;
        self.commit_revision(put, entry, alert).await
    }

    /// Commits a new revision (`put`: the precondition that it is new, and its write)
    /// with its audit entry, which names the child and, if `alert` is given, is an alert
    /// of its kind to its agencies.
    async fn commit_revision(
        &self,
        put: (tio_store::Condition, tio_store::Op),
        mut entry: AuditEntry,
        alert: Option<(&str, Vec<String>)>,
    ) -> Result<(), ServiceError> {
        let (is_new, put) = put;
        self.broker.name_child(&mut entry, &self.child)?;
        if let Some((kind, to)) = alert {
            entry.alert = kind.to_owned();
            entry.alert_to = to;
        }
        let mut batch = Batch::new();
        batch.require(is_new);
        batch.push(put).push(entry_op(&entry));
        self.broker.store().commit(batch).await?;
        Ok(())
    }
}

/// The answer to a change the assessment's state refuses.
fn refusal(refused: Refused, id: AssessmentId) -> ServiceError {
    match refused {
        Refused::Invalid(violations) => ServiceError::InvalidArgument(violations),
        Refused::AlreadyRecorded(field) => ServiceError::failed_precondition(
            "STEP_ALREADY_RECORDED",
            format!("ehc_assessment/{id}"),
            format!("`{field}` is already recorded in assessment `{id}`"),
        ),
        Refused::Closed => ServiceError::failed_precondition(
            "ASSESSMENT_CLOSED",
            format!("ehc_assessment/{id}"),
            format!("assessment `{id}` is closed: a plan was issued or refused, or the decision was not to assess"),
        ),
        Refused::NotAsked => ServiceError::denied("NOT_ASKED_FOR_ADVICE", "this agency was not asked for this advice"),
    }
}

/// Tells, once each, of every deadline of an open assessment that is 10 working days
/// away (weekends left out; bank holidays are not known to the broker, so it may tell
/// a little early) or was missed on `today`: an alert to the SEND team running it and,
/// for an adviser's deadline, to the adviser. Raised by the broker's duties task.
/// Returns how many alerts it raised.
pub(crate) async fn deadline_alerts(
    broker: &Broker,
    today: Date,
    now: tio_core::Timestamp,
) -> Result<u64, ServiceError> {
    let store = broker.store();
    let mut raised = 0;
    let mut pages = store.child_pages();
    while let Some(page) = pages.next_page()? {
        for facts in page {
            let Some(child) = store.child_at(facts.child)? else { continue };
            for assessment in store.latest_assessments(&child)? {
                if assessment.is_closed() {
                    continue;
                }
                for clock in assessment.clocks(today) {
                    // The family's 15 days on the draft are theirs, not a deadline to meet.
                    if clock.deadline.clock == tio_core::ehc::Clock::DraftComments {
                        continue;
                    }
                    let event = match clock.state {
                        DeadlineState::Missed { .. } => DEADLINE_MISSED_ALERT,
                        DeadlineState::Open { .. }
                            if is_due_soon(&clock.deadline, today, DUE_SOON_WORKING_DAYS, &[]) =>
                        {
                            DEADLINE_SOON_ALERT
                        }
                        _ => continue,
                    };
                    let adviser = clock.adviser.map_or("-", |adviser| adviser.as_str());
                    let what = format!("{}/{}/{adviser}/{event}", assessment.id, clock.deadline.clock.as_str());
                    if store.deadline_alert_raised(facts.child, &what)? {
                        continue;
                    }
                    let mut to = vec![assessment.run_by.as_str().to_owned()];
                    let asked = assessment.advice.iter().find(|request| Some(request.adviser) == clock.adviser);
                    if let Some(request) = asked {
                        to.push(request.agency.as_str().to_owned());
                    }
                    to.dedup();
                    let mut entry = AuditEntry {
                        action: Action::EhcDeadlineAlert.code().to_owned(),
                        actor: Actor { role: BROKER_ROLE.to_owned(), id: "ehc-clocks".to_owned(), ..Actor::default() },
                        outcome: Outcome::Allowed.code().to_owned(),
                        time_micros: now.unix_micros(),
                        alert: event.to_owned(),
                        alert_to: to,
                        consent_id: assessment.id.to_string(),
                        consent_revision: assessment.revision,
                        detail: format!(
                            "{}{} due {} ({})",
                            clock.deadline.clock.as_str(),
                            clock.adviser.map(|adviser| format!(" ({})", adviser.as_str())).unwrap_or_default(),
                            clock.deadline.due,
                            clock.deadline.clock.regulation()
                        ),
                        ..AuditEntry::default()
                    };
                    broker.name_child(&mut entry, &child)?;
                    let once = tio_store::cursors::raise_deadline_alert(facts.child, &what);
                    // Raised by another pass meanwhile if not by this one.
                    raised += u64::from(crate::app::alerts::raise_once(store, once, &entry).await?);
                }
            }
        }
    }
    Ok(raised)
}
