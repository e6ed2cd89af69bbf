//! `tio.v1.TransitionService`: requests to and from `app::assessments::transitions`.

use std::sync::Arc;

use tio_audit::entry::Action;
use tio_core::ehc::DeadlineState;
use tio_core::transition::{Milestone, Transition};
use tio_core::{AgencyId, NhsNumber};
use tio_proto::v1;
use tonic::{Request, Response, Status};

use crate::app::assessments::Assessments;
use crate::app::broker::Broker;
use crate::app::error::ServiceError;
use crate::grpc::convert::{date_from_proto, date_to_proto, timestamp_to_proto};
use crate::grpc::request::call_of;
use crate::grpc::services::child_of;
use crate::grpc::status::into_status;

/// `tio.v1.TransitionService`: see [`crate::app::assessments::transitions`].
#[derive(Clone)]
pub(crate) struct Transitions {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
}

fn invalid(field: &str, reason: &str) -> ServiceError {
    ServiceError::InvalidArgument(vec![tio_core::FieldViolation::new(field, reason)])
}

fn required_date(field: &str, date: Option<&v1::Date>) -> Result<tio_core::Date, ServiceError> {
    date_from_proto(field, date.ok_or_else(|| invalid(field, "is required"))?)
}

fn milestone_to_proto(milestone: Milestone) -> v1::TransitionMilestone {
    match milestone {
        Milestone::PreparingForAdulthoodReview => v1::TransitionMilestone::PreparingForAdulthoodReview,
        Milestone::AnnualHealthCheck => v1::TransitionMilestone::AnnualHealthCheck,
        Milestone::AdultSocialCareReferral => v1::TransitionMilestone::AdultSocialCareReferral,
        Milestone::AdultHealthServices => v1::TransitionMilestone::AdultHealthServices,
        Milestone::PlanReviewBeforeLeaving => v1::TransitionMilestone::PlanReviewBeforeLeaving,
        Milestone::PlanCeases => v1::TransitionMilestone::PlanCeases,
    }
}

fn milestone_from_proto(field: &str, value: i32) -> Result<Milestone, ServiceError> {
    Milestone::ALL
        .into_iter()
        .find(|milestone| milestone_to_proto(*milestone) as i32 == value)
        .ok_or_else(|| invalid(field, "must be a known milestone"))
}

fn record_to_proto(
    transition: &Transition,
    child: &NhsNumber,
    born: tio_core::Date,
    today: tio_core::Date,
) -> v1::TransitionRecord {
    let milestones = transition
        .milestones(born, today)
        .into_iter()
        .zip(&transition.milestones)
        .map(|(state, record)| {
            let (status, days) = match state.state {
                None => (v1::DeadlineStatus::Unspecified, 0),
                Some(DeadlineState::Open { days_left }) => (v1::DeadlineStatus::Open, days_left),
                Some(DeadlineState::Met { .. }) => (v1::DeadlineStatus::Met, 0),
                Some(DeadlineState::Late { days_late, .. }) => (v1::DeadlineStatus::Late, days_late),
                Some(DeadlineState::Missed { days_over }) => (v1::DeadlineStatus::Missed, days_over),
                Some(DeadlineState::Excused { .. }) => (v1::DeadlineStatus::Excused, 0),
            };
            v1::MilestoneStatus {
                milestone: milestone_to_proto(state.milestone) as i32,
                owner_agency_id: state.owner.as_str().to_owned(),
                due: state.due.map(date_to_proto),
                done_on: record.done_on.map(date_to_proto),
                status: status as i32,
                days: i32::try_from(days).unwrap_or(i32::MAX),
            }
        })
        .collect();
    v1::TransitionRecord {
        child_masked: child.to_string(),
        revision: transition.revision,
        run_by_agency_id: transition.run_by.as_str().to_owned(),
        opened_on: Some(date_to_proto(transition.opened_on)),
        leaving_education: transition.leaving_education.map(date_to_proto),
        milestones,
        recorded_by_agency_id: transition.recorded_by.agency.as_str().to_owned(),
        recorded_by_professional_id: transition.recorded_by.professional.clone(),
        recorded_at: Some(timestamp_to_proto(transition.recorded_at)),
    }
}

impl Transitions {
    /// Admits the caller for `action` on the request's child, runs `work`, and answers
    /// with the record it returns, its milestones as they stand on the broker's day.
    async fn respond<M>(
        &self,
        request: &Request<M>,
        child: Option<&v1::ChildRef>,
        action: Action,
        work: impl AsyncFnOnce(&Assessments<'_>) -> Result<Transition, ServiceError>,
    ) -> Result<Response<v1::TransitionRecord>, Status> {
        let call = call_of(&self.broker, request).map_err(into_status)?;
        let child = child_of(&self.broker, child)?;
        let today = call.now.uk_date().ok_or_else(|| into_status(invalid("now", "is out of range")))?;
        let service = self.broker.assessments(&call, action, &child).await.map_err(into_status)?;
        let transition = work(&service).await.map_err(into_status)?;
        let born = service.date_of_birth().map_err(into_status)?;
        Ok(Response::new(record_to_proto(&transition, &child, born, today)))
    }
}

#[tonic::async_trait]
impl v1::transition_service_server::TransitionService for Transitions {
    async fn open_transition(
        &self,
        request: Request<v1::OpenTransitionRequest>,
    ) -> Result<Response<v1::TransitionRecord>, Status> {
        let message = request.get_ref();
        self.respond(&request, message.child.as_ref(), Action::TransitionRecorded, async |service| {
            let opened_on = required_date("opened_on", message.opened_on.as_ref())?;
            let mut owners = Vec::with_capacity(message.owners.len());
            for (index, owner) in message.owners.iter().enumerate() {
                let milestone = milestone_from_proto(&format!("owners[{index}].milestone"), owner.milestone)?;
                let agency = AgencyId::parse(&format!("owners[{index}].agency_id"), &owner.agency_id)
                    .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
                owners.push((milestone, agency));
            }
            service.open_transition(opened_on, owners).await
        })
        .await
    }

    async fn record_milestone(
        &self,
        request: Request<v1::RecordMilestoneRequest>,
    ) -> Result<Response<v1::TransitionRecord>, Status> {
        let message = request.get_ref();
        self.respond(&request, message.child.as_ref(), Action::TransitionRecorded, async |service| {
            let milestone = milestone_from_proto("milestone", message.milestone)?;
            let on = required_date("done_on", message.done_on.as_ref())?;
            service.record_milestone(milestone, on).await
        })
        .await
    }

    async fn record_leaving_date(
        &self,
        request: Request<v1::RecordLeavingDateRequest>,
    ) -> Result<Response<v1::TransitionRecord>, Status> {
        let message = request.get_ref();
        self.respond(&request, message.child.as_ref(), Action::TransitionRecorded, async |service| {
            let leaving = required_date("leaving_education", message.leaving_education.as_ref())?;
            service.record_leaving(leaving).await
        })
        .await
    }

    async fn get_transition(
        &self,
        request: Request<v1::GetTransitionRequest>,
    ) -> Result<Response<v1::TransitionRecord>, Status> {
        let message = request.get_ref();
        self.respond(&request, message.child.as_ref(), Action::TransitionRead, async |service| {
            service.get_transition().await
        })
        .await
    }
}
