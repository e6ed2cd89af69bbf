//! Transitions to adult services (14 to 25): the young person's one record, kept by the
//! SEND team, its milestones recorded by their owners, read by those and by the agencies
//! `tio_core::decide` lets read the child's `transition_to_adulthood` category. Those
//! agencies of the adult social care and ICB sectors, with the SEND team, are told on
//! their alert stream as milestones are done and, from the broker's duties, once a
//! milestone is past due (`missed_milestone_alerts`). The due days and states are the
//! domain's (`tio_core::transition`).

use tio_audit::entry::{Action, Actor, AuditEntry, Outcome};
use tio_core::transition::{self, Milestone, Refused, Transition};
use tio_core::{AccessRequest, Agency, AgencyId, Category, Date, FieldViolation, Sector, Timestamp, decide};
use tio_store::Child;

use super::Assessments;
use crate::app::broker::Broker;
use crate::app::error::ServiceError;
use crate::app::facts::load_facts;
use crate::runtime::retention::BROKER_ROLE;

/// The reason code audited when an agency records a milestone it does not own.
pub(crate) const NOT_THE_MILESTONE_OWNER: &str = "not_the_milestone_owner";
/// The alert to the owners when a record is opened.
pub(crate) const OPENED_ALERT: &str = "transition_opened";
/// The alert when a milestone is done.
pub(crate) const DONE_ALERT: &str = "transition_milestone_done";
/// The alert when a milestone is past due.
pub(crate) const MISSED_ALERT: &str = "transition_milestone_missed";

/// The sectors whose agencies, allowed to see the record, are told of its events.
const WATCHING_SECTORS: [Sector; 2] = [Sector::AdultSocialCare, Sector::Icb];

fn invalid(field: &str, reason: &str) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

fn not_found() -> ServiceError {
    ServiceError::not_found(
        "tio.v1.TransitionRecord",
        "TRANSITION_NOT_FOUND",
        "transition",
        "no transition record for this young person: the SEND team opens one at the Year 9 annual review",
    )
}

impl Assessments<'_> {
    /// Opens the young person's record at the Year 9 review on `opened_on`.
    pub(crate) async fn open_transition(
        &self,
        opened_on: Date,
        owners: Vec<(Milestone, AgencyId)>,
    ) -> Result<Transition, ServiceError> {
        self.require_send_team(Action::TransitionRecorded).await?;
        for (index, (_, owner)) in owners.iter().enumerate() {
            if self.broker.registry().agency(owner.as_str()).is_none() {
                return Err(invalid(&format!("owners[{index}].agency_id"), "is not a registered agency"));
            }
        }
        let store = self.broker.store();
        if store.transition(&self.child)?.is_some() {
            return Err(ServiceError::already_exists(
                "tio.v1.TransitionRecord",
                "TRANSITION_ALREADY_OPEN",
                "transition",
                "this young person's transition record is already open",
            ));
        }
        let born = self.date_of_birth()?;
        store.ensure_child_key(&self.child).await?;
        let opened = transition::open(self.agency.id.clone(), born, opened_on, &owners, self.recorder(), self.call.now)
            .map_err(transition_refusal)?;
        let mut told: Vec<String> = opened.milestones.iter().map(|record| record.owner.as_str().to_owned()).collect();
        told.sort();
        told.dedup();
        told.retain(|agency| agency != opened.run_by.as_str());
        self.commit_transition(&opened, "opened".to_owned(), Some((OPENED_ALERT, told))).await?;
        Ok(opened)
    }

    /// Records `milestone` done on `on`, by its owner or the SEND team.
    pub(crate) async fn record_milestone(&self, milestone: Milestone, on: Date) -> Result<Transition, ServiceError> {
        let latest = self.broker.store().transition(&self.child)?.ok_or_else(not_found)?;
        let next = match latest.done(milestone, on, &self.agency.id, self.recorder(), self.call.now) {
            Ok(next) => next,
            Err(Refused::NotTheOwner) => {
                let message = "only the milestone's owner or the SEND team keeping the record records it".to_owned();
                return Err(self.deny(Action::TransitionRecorded, NOT_THE_MILESTONE_OWNER, message).await);
            }
            Err(refused) => return Err(transition_refusal(refused)),
        };
        let mut told = watchers(self.broker, &self.child, self.call.now)?;
        told.push(next.run_by.as_str().to_owned());
        told.sort();
        told.dedup();
        told.retain(|agency| *agency != self.agency.id.as_str());
        let alert = Some((DONE_ALERT, told)).filter(|(_, to)| !to.is_empty());
        self.commit_transition(&next, format!("{} done on {on}", milestone.as_str()), alert).await?;
        Ok(next)
    }

    /// Records the day the young person is expected to leave education.
    pub(crate) async fn record_leaving(&self, leaving: Date) -> Result<Transition, ServiceError> {
        self.require_send_team(Action::TransitionRecorded).await?;
        let latest = self.broker.store().transition(&self.child)?.ok_or_else(not_found)?;
        if latest.run_by != self.agency.id {
            return Err(ServiceError::denied("NOT_THE_RUNNING_AGENCY", "the record is kept by another agency"));
        }
        let next = latest.leaving_on(leaving, self.recorder(), self.call.now).map_err(transition_refusal)?;
        self.commit_transition(&next, format!("leaving education on {leaving}"), None).await?;
        Ok(next)
    }

    /// Returns the record to an agency that may see it; the read is audited.
    pub(crate) async fn get_transition(&self) -> Result<Transition, ServiceError> {
        let latest = self.broker.store().transition(&self.child)?.ok_or_else(not_found)?;
        let owner = latest.milestones.iter().any(|record| record.owner == self.agency.id);
        if latest.run_by != self.agency.id
            && !owner
            && !may_read(self.broker, &self.child, &self.agency, self.call.now)?
        {
            return Err(self.not_involved(Action::TransitionRead).await);
        }
        let mut entry = self.broker.entry(self.call, Action::TransitionRead, Outcome::Allowed);
        self.broker.name_child(&mut entry, &self.child)?;
        entry.detail = "transition record".to_owned();
        self.broker.write_audit(&[entry]).await?;
        Ok(latest)
    }

    /// The young person's date of birth, which every due day counts from.
    pub(crate) fn date_of_birth(&self) -> Result<Date, ServiceError> {
        self.broker.store().date_of_birth(&self.child)?.ok_or_else(|| {
            ServiceError::failed_precondition(
                "DATE_OF_BIRTH_UNKNOWN",
                "transition",
                "the young person's date of birth is not known: publish it in their identity first",
            )
        })
    }

    async fn commit_transition(
        &self,
        transition: &Transition,
        what: String,
        alert: Option<(&str, Vec<String>)>,
    ) -> Result<(), ServiceError> {
        let put = self.broker.store().put_transition(&self.child, transition)?;
        let mut entry = self.broker.entry(self.call, Action::TransitionRecorded, Outcome::Allowed);
        entry.consent_revision = transition.revision;
        entry.categories = vec![Category::TransitionToAdulthood.as_str().to_owned()];
        entry.detail = what;
        self.commit_revision(put, entry, alert).await
    }
}

/// Whether `tio_core::decide` lets `agency` read the child's transition category now.
fn may_read(broker: &Broker, child: &Child, agency: &Agency, now: Timestamp) -> Result<bool, ServiceError> {
    let facts = load_facts(broker.store(), child)?;
    let domain = facts.domain();
    let question =
        AccessRequest { agency, action: tio_core::Action::Read, category: Category::TransitionToAdulthood, flag: None };
    Ok(decide(&question, &domain.facts(), now).is_allowed())
}

/// The adult social care and ICB agencies that may read the child's transition category
/// now, by id: they receive the record's events.
fn watchers(broker: &Broker, child: &Child, now: Timestamp) -> Result<Vec<String>, ServiceError> {
    let mut found = Vec::new();
    for agency in broker.registry().agencies_in(&WATCHING_SECTORS) {
        if may_read(broker, child, &agency, now)? {
            found.push(agency.id.as_str().to_owned());
        }
    }
    Ok(found)
}

fn transition_refusal(refused: Refused) -> ServiceError {
    match refused {
        Refused::Invalid(violations) => ServiceError::InvalidArgument(violations),
        Refused::NotTheOwner => ServiceError::denied(NOT_THE_MILESTONE_OWNER, "this agency does not own the milestone"),
    }
}

/// Tells, once per milestone and due day, of every milestone past due on `today`: an
/// alert to its owner, the SEND team keeping the record and the adult social care and
/// ICB agencies that may see it. Raised by the broker's duties task. Returns how many.
pub(crate) async fn missed_milestone_alerts(broker: &Broker, today: Date, now: Timestamp) -> Result<u64, ServiceError> {
    let store = broker.store();
    let mut raised = 0;
    let mut pages = store.child_pages();
    while let Some(page) = pages.next_page()? {
        for facts in page {
            let Some(born) = facts.date_of_birth else { continue };
            let Some(child) = store.child_at(facts.child)? else { continue };
            let Some(record) = store.transition(&child)? else { continue };
            for state in record.milestones(born, today) {
                let (Some(due), Some(deadline)) = (state.due, state.state) else { continue };
                if !deadline.is_missed() {
                    continue;
                }
                let what = format!("{}/{due}", state.milestone.as_str());
                if store.transition_alert_raised(facts.child, &what)? {
                    continue;
                }
                let mut to = watchers(broker, &child, now)?;
                to.push(state.owner.as_str().to_owned());
                to.push(record.run_by.as_str().to_owned());
                to.sort();
                to.dedup();
                let mut entry = AuditEntry {
                    action: Action::TransitionAlert.code().to_owned(),
                    actor: Actor {
                        role: BROKER_ROLE.to_owned(),
                        id: "transition-clocks".to_owned(),
                        ..Actor::default()
                    },
                    outcome: Outcome::Allowed.code().to_owned(),
                    time_micros: now.unix_micros(),
                    alert: MISSED_ALERT.to_owned(),
                    alert_to: to,
                    categories: vec![Category::TransitionToAdulthood.as_str().to_owned()],
                    detail: format!("{} due {due}, owned by {}", state.milestone.as_str(), state.owner),
                    ..AuditEntry::default()
                };
                broker.name_child(&mut entry, &child)?;
                let once = tio_store::cursors::raise_transition_alert(facts.child, &what);
                // Raised by another pass meanwhile if not by this one.
                raised += u64::from(crate::app::alerts::raise_once(store, once, &entry).await?);
            }
        }
    }
    Ok(raised)
}
