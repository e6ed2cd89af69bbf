//! `tio.v1.EhcAssessmentService`: requests to and from `app::assessments`.

use std::sync::Arc;

use tio_audit::entry::Action;
use tio_core::ehc::assessment::{Agreements, Assessment, RequestedBy, Step};
use tio_core::ehc::{AdviserType, AssessDecision, Clock, ClockException, DeadlineState, ExceptionCode};
use tio_core::{AgencyId, NhsNumber};
use tio_proto::v1;
use tio_store::StoredUpdate;
use tonic::{Request, Response, Status};

use crate::app::assessments::{Answer, Assessments};
use crate::app::broker::Broker;
use crate::app::error::ServiceError;
use crate::grpc::convert::{category_to_proto, date_from_proto, date_to_proto, timestamp_to_proto};
use crate::grpc::request::call_of;
use crate::grpc::services::child_of;
use crate::grpc::status::into_status;

/// `tio.v1.EhcAssessmentService`: see [`crate::app::assessments`].
#[derive(Clone)]
pub(crate) struct EhcAssessments {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
}

fn invalid(field: &str, reason: &str) -> ServiceError {
    ServiceError::InvalidArgument(vec![tio_core::FieldViolation::new(field, reason)])
}

/// A required date of the request, named `field`.
fn required_date(field: &str, date: Option<&v1::Date>) -> Result<tio_core::Date, ServiceError> {
    date_from_proto(field, date.ok_or_else(|| invalid(field, "is required"))?)
}

/// The contract's value of an adviser type.
pub(crate) fn adviser_to_proto(adviser: AdviserType) -> v1::AdviserType {
    match adviser {
        AdviserType::ParentViews => v1::AdviserType::ParentViews,
        AdviserType::YoungPersonViews => v1::AdviserType::YoungPersonViews,
        AdviserType::Educational => v1::AdviserType::Educational,
        AdviserType::MedicalHealth => v1::AdviserType::MedicalHealth,
        AdviserType::Psychological => v1::AdviserType::Psychological,
        AdviserType::SocialCare => v1::AdviserType::SocialCare,
        AdviserType::PreparingForAdulthood => v1::AdviserType::PreparingForAdulthood,
        AdviserType::Other => v1::AdviserType::Other,
    }
}

fn adviser_from_proto(value: i32) -> Result<AdviserType, ServiceError> {
    AdviserType::ALL
        .into_iter()
        .find(|adviser| adviser_to_proto(*adviser) as i32 == value)
        .ok_or_else(|| invalid("adviser_type", "must be a known adviser type"))
}

/// The contract's value of an exception code.
pub(crate) fn exception_code_to_proto(code: ExceptionCode) -> v1::ClockExceptionCode {
    match code {
        ExceptionCode::SchoolClosure => v1::ClockExceptionCode::SchoolClosure,
        ExceptionCode::ExceptionalPersonalCircumstances => v1::ClockExceptionCode::ExceptionalPersonalCircumstances,
        ExceptionCode::AbsenceFromArea => v1::ClockExceptionCode::AbsenceFromArea,
        ExceptionCode::MissedAppointment => v1::ClockExceptionCode::MissedAppointment,
    }
}

fn clock_to_proto(clock: Clock) -> v1::AssessmentClock {
    match clock {
        Clock::DecisionWhetherToAssess => v1::AssessmentClock::DecisionWhetherToAssess,
        Clock::Advice => v1::AssessmentClock::Advice,
        Clock::DecisionNotToIssue => v1::AssessmentClock::DecisionNotToIssue,
        Clock::DraftComments => v1::AssessmentClock::DraftComments,
        Clock::FinalPlan => v1::AssessmentClock::FinalPlan,
    }
}

fn decision_to_proto(decision: AssessDecision) -> v1::AssessDecision {
    match decision {
        AssessDecision::Assess => v1::AssessDecision::Assess,
        AssessDecision::DoNotAssess => v1::AssessDecision::DoNotAssess,
    }
}

fn step_from_proto(
    step: Option<&v1::record_assessment_step_request::Step>,
    today: tio_core::Date,
) -> Result<Step, ServiceError> {
    use v1::record_assessment_step_request::Step as Proto;
    match step.ok_or_else(|| invalid("step", "is required"))? {
        Proto::Decision(decision) => {
            let chosen = match v1::AssessDecision::try_from(decision.decision) {
                Ok(v1::AssessDecision::Assess) => AssessDecision::Assess,
                Ok(v1::AssessDecision::DoNotAssess) => AssessDecision::DoNotAssess,
                _ => return Err(invalid("decision.decision", "must be assess or do not assess")),
            };
            Ok(Step::Decision(chosen, required_date("decision.notified_on", decision.notified_on.as_ref())?))
        }
        Proto::DraftSent(date) => Ok(Step::DraftSent(date_from_proto("draft_sent", date)?)),
        Proto::FinalPlanIssued(date) => Ok(Step::FinalPlanIssued(date_from_proto("final_plan_issued", date)?)),
        Proto::NoPlanNotified(date) => Ok(Step::NoPlanNotified(date_from_proto("no_plan_notified", date)?)),
        Proto::Exception(exception) => {
            let code = ExceptionCode::ALL
                .into_iter()
                .find(|code| exception_code_to_proto(*code) as i32 == exception.code)
                .ok_or_else(|| invalid("exception.code", "must be a known exception"))?;
            Ok(Step::Exception(ClockException {
                code,
                from: required_date("exception.from", exception.from.as_ref())?,
                until: exception.until.as_ref().map(|date| date_from_proto("exception.until", date)).transpose()?,
                recorded_on: today,
            }))
        }
    }
}

fn agreements_from_proto(agreements: &v1::ReuseAgreements) -> Result<Agreements, ServiceError> {
    Ok(Agreements {
        authority: required_date("agreements.authority", agreements.authority.as_ref())?,
        adviser: required_date("agreements.adviser", agreements.adviser.as_ref())?,
        family: required_date("agreements.family", agreements.family.as_ref())?,
    })
}

fn agreements_to_proto(agreements: Agreements) -> v1::ReuseAgreements {
    v1::ReuseAgreements {
        authority: Some(date_to_proto(agreements.authority)),
        adviser: Some(date_to_proto(agreements.adviser)),
        family: Some(date_to_proto(agreements.family)),
    }
}

fn deadline_to_proto(clock: &tio_core::ehc::assessment::ClockState) -> v1::AssessmentDeadline {
    let (status, days, done_on, excused_by) = match clock.state {
        DeadlineState::Open { days_left } => (v1::DeadlineStatus::Open, days_left, None, None),
        DeadlineState::Met { on } => (v1::DeadlineStatus::Met, 0, Some(on), None),
        DeadlineState::Late { on, days_late } => (v1::DeadlineStatus::Late, days_late, Some(on), None),
        DeadlineState::Missed { days_over } => (v1::DeadlineStatus::Missed, days_over, None, None),
        DeadlineState::Excused { code, done_on } => (v1::DeadlineStatus::Excused, 0, done_on, Some(code)),
    };
    v1::AssessmentDeadline {
        clock: clock_to_proto(clock.deadline.clock) as i32,
        adviser_type: clock.adviser.map_or(0, |adviser| adviser_to_proto(adviser) as i32),
        starts: Some(date_to_proto(clock.deadline.starts)),
        due: Some(date_to_proto(clock.deadline.due)),
        status: status as i32,
        days: i32::try_from(days).unwrap_or(i32::MAX),
        done_on: done_on.map(date_to_proto),
        excused_by: excused_by.map_or(0, |code| exception_code_to_proto(code) as i32),
        regulation: clock.deadline.clock.regulation().to_owned(),
    }
}

fn offered_to_proto(stored: &StoredUpdate) -> v1::OfferedAdvice {
    v1::OfferedAdvice {
        update_id: stored.update_id.to_string(),
        category: category_to_proto(stored.category) as i32,
        published_at: Some(timestamp_to_proto(stored.committed_at)),
    }
}

/// The contract's view of `assessment` for the caller of `service`, with its clocks on
/// the broker's day.
fn assessment_to_proto(
    service: &Assessments<'_>,
    assessment: &Assessment,
    child: &NhsNumber,
    today: tio_core::Date,
) -> Result<v1::EhcAssessment, ServiceError> {
    let dates = &assessment.dates;
    let offers = service.already_given(assessment)?;
    let (requested_by, requested_by_agency_id) = match &assessment.requested_by {
        RequestedBy::Parent => (v1::AssessmentRequester::Parent, String::new()),
        RequestedBy::YoungPerson => (v1::AssessmentRequester::YoungPerson, String::new()),
        RequestedBy::Agency(id) => (v1::AssessmentRequester::Agency, id.as_str().to_owned()),
    };
    Ok(v1::EhcAssessment {
        assessment_id: assessment.id.to_string(),
        revision: assessment.revision,
        child_masked: child.to_string(),
        run_by_agency_id: assessment.run_by.as_str().to_owned(),
        requested_by: requested_by as i32,
        requested_by_agency_id,
        request_received: dates.request_received.map(date_to_proto),
        decision: dates.decision.map(|(decision, on)| v1::AssessmentDecision {
            decision: decision_to_proto(decision) as i32,
            notified_on: Some(date_to_proto(on)),
        }),
        draft_sent: dates.draft_sent.map(date_to_proto),
        final_plan_issued: dates.final_plan_issued.map(date_to_proto),
        no_plan_notified: dates.no_plan_notified.map(date_to_proto),
        exceptions: dates
            .exceptions
            .iter()
            .map(|exception| v1::ClockException {
                code: exception_code_to_proto(exception.code) as i32,
                from: Some(date_to_proto(exception.from)),
                until: exception.until.map(date_to_proto),
            })
            .collect(),
        advice: assessment
            .advice
            .iter()
            .map(|request| {
                let answer = request.answer.as_ref();
                v1::AdviceRequest {
                    adviser_type: adviser_to_proto(request.adviser) as i32,
                    agency_id: request.agency.as_str().to_owned(),
                    asked_on: Some(date_to_proto(request.asked_on)),
                    update_id: answer.map(|advice| advice.update_id.clone()).unwrap_or_default(),
                    category: answer.map_or(0, |advice| category_to_proto(advice.category) as i32),
                    given_on: answer.map(|advice| date_to_proto(advice.given_on)),
                    agreements: answer.and_then(|advice| advice.reuse).map(agreements_to_proto),
                    already_given: offers
                        .iter()
                        .find(|(adviser, _)| *adviser == request.adviser)
                        .map(|(_, offered)| offered.iter().map(offered_to_proto).collect())
                        .unwrap_or_default(),
                }
            })
            .collect(),
        deadlines: assessment.clocks(today).iter().map(deadline_to_proto).collect(),
        closed: assessment.is_closed(),
        recorded_by_agency_id: assessment.recorded_by.agency.as_str().to_owned(),
        recorded_by_professional_id: assessment.recorded_by.professional.clone(),
        recorded_at: Some(timestamp_to_proto(assessment.recorded_at)),
    })
}

impl EhcAssessments {
    /// Admits the caller for `action` on the request's child, runs `work`, and answers
    /// with the assessment it returns.
    async fn respond<M>(
        &self,
        request: &Request<M>,
        child: Option<&v1::ChildRef>,
        action: Action,
        work: impl AsyncFnOnce(&Assessments<'_>, tio_core::Date) -> Result<Assessment, ServiceError>,
    ) -> Result<Response<v1::EhcAssessment>, Status> {
        let call = call_of(&self.broker, request).map_err(into_status)?;
        let child = child_of(&self.broker, child)?;
        let today = call.now.uk_date().ok_or_else(|| into_status(invalid("now", "is out of range")))?;
        let service = self.broker.assessments(&call, action, &child).await.map_err(into_status)?;
        let assessment = work(&service, today).await.map_err(into_status)?;
        Ok(Response::new(assessment_to_proto(&service, &assessment, &child, today).map_err(into_status)?))
    }
}

#[tonic::async_trait]
impl v1::ehc_assessment_service_server::EhcAssessmentService for EhcAssessments {
    async fn open_assessment(
        &self,
        request: Request<v1::OpenAssessmentRequest>,
    ) -> Result<Response<v1::EhcAssessment>, Status> {
        let message = request.get_ref();
        self.respond(&request, message.child.as_ref(), Action::EhcAssessmentRecorded, async |service, _| {
            let received = required_date("request_received", message.request_received.as_ref())?;
            let requested_by = match v1::AssessmentRequester::try_from(message.requested_by) {
                Ok(v1::AssessmentRequester::Parent) => RequestedBy::Parent,
                Ok(v1::AssessmentRequester::YoungPerson) => RequestedBy::YoungPerson,
                Ok(v1::AssessmentRequester::Agency) => {
                    if message.requested_by_agency_id.is_empty() {
                        return Err(invalid("requested_by_agency_id", "is required for an agency's request"));
                    }
                    RequestedBy::Agency(
                        AgencyId::parse("requested_by_agency_id", &message.requested_by_agency_id)
                            .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?,
                    )
                }
                _ => return Err(invalid("requested_by", "must be parent, young person or agency")),
            };
            service.open(requested_by, received).await
        })
        .await
    }

    async fn record_assessment_step(
        &self,
        request: Request<v1::RecordAssessmentStepRequest>,
    ) -> Result<Response<v1::EhcAssessment>, Status> {
        let message = request.get_ref();
        self.respond(&request, message.child.as_ref(), Action::EhcAssessmentRecorded, async |service, today| {
            let step = step_from_proto(message.step.as_ref(), today)?;
            service.record(&message.assessment_id, step).await
        })
        .await
    }

    async fn request_advice(
        &self,
        request: Request<v1::RequestAdviceRequest>,
    ) -> Result<Response<v1::EhcAssessment>, Status> {
        let message = request.get_ref();
        self.respond(&request, message.child.as_ref(), Action::EhcAssessmentRecorded, async |service, _| {
            let adviser = adviser_from_proto(message.adviser_type)?;
            let agency = AgencyId::parse("agency_id", &message.agency_id)
                .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
            let asked_on = required_date("asked_on", message.asked_on.as_ref())?;
            service.request_advice(&message.assessment_id, adviser, agency, asked_on).await
        })
        .await
    }

    async fn answer_advice_request(
        &self,
        request: Request<v1::AnswerAdviceRequestRequest>,
    ) -> Result<Response<v1::EhcAssessment>, Status> {
        let message = request.get_ref();
        self.respond(&request, message.child.as_ref(), Action::EhcAssessmentRecorded, async |service, _| {
            use v1::answer_advice_request_request::Answer as Proto;
            let adviser = adviser_from_proto(message.adviser_type)?;
            let answer = match &message.answer {
                None => return Err(invalid("answer", "is required: new_advice or already_given")),
                Some(Proto::NewAdvice(_)) => Answer::New,
                Some(Proto::AlreadyGiven(agreements)) => Answer::AlreadyGiven(agreements_from_proto(agreements)?),
            };
            service.answer(&message.assessment_id, adviser, &message.update_id, answer).await
        })
        .await
    }

    async fn get_assessment(
        &self,
        request: Request<v1::GetAssessmentRequest>,
    ) -> Result<Response<v1::EhcAssessment>, Status> {
        let message = request.get_ref();
        self.respond(&request, message.child.as_ref(), Action::EhcAssessmentRead, async |service, _| {
            service.get(&message.assessment_id).await
        })
        .await
    }

    async fn list_assessments(
        &self,
        request: Request<v1::ListAssessmentsRequest>,
    ) -> Result<Response<v1::ListAssessmentsResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let child = child_of(&self.broker, request.get_ref().child.as_ref())?;
        let today = call.now.uk_date().ok_or_else(|| into_status(invalid("now", "is out of range")))?;
        let service = self.broker.assessments(&call, Action::EhcAssessmentRead, &child).await.map_err(into_status)?;
        let assessments = service.list().await.map_err(into_status)?;
        let assessments = assessments
            .iter()
            .map(|assessment| assessment_to_proto(&service, assessment, &child, today))
            .collect::<Result<_, _>>()
            .map_err(into_status)?;
        Ok(Response::new(v1::ListAssessmentsResponse { assessments }))
    }
}
