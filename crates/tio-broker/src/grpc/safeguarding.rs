//! `tio.v1.SafeguardingService`: requests to and from `app::safeguarding`.

use std::sync::Arc;

use tio_audit::entry::Action;
use tio_core::NhsNumber;
use tio_core::safeguarding::{NewShare, ShareReason, ShareRevision, ShareState};
use tio_proto::v1;
use tonic::{Request, Response, Status};

use crate::app::broker::Broker;
use crate::app::error::ServiceError;
use crate::grpc::care::{agency_ids_from_proto, agency_ids_to_proto, sectors_from_proto};
use crate::grpc::convert::{
    categories_from_proto, categories_to_proto, date_from_proto, date_to_proto, optional_timestamp, sector_to_proto,
    timestamp_to_proto,
};
use crate::grpc::request::call_of;
use crate::grpc::services::child_of;
use crate::grpc::status::into_status;

/// `tio.v1.SafeguardingService`: see [`crate::app::safeguarding`].
#[derive(Clone)]
pub(crate) struct Safeguarding {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
}

fn invalid(field: &str, reason: &str) -> ServiceError {
    ServiceError::InvalidArgument(vec![tio_core::FieldViolation::new(field, reason)])
}

fn reason_to_proto(reason: ShareReason) -> v1::SafeguardingReason {
    match reason {
        ShareReason::RiskOfSignificantHarm => v1::SafeguardingReason::RiskOfSignificantHarm,
        ShareReason::Section47Enquiry => v1::SafeguardingReason::Section47Enquiry,
        ShareReason::Section17Assessment => v1::SafeguardingReason::Section17Assessment,
        ShareReason::PoliceProtection => v1::SafeguardingReason::PoliceProtection,
        ShareReason::CourtOrder => v1::SafeguardingReason::CourtOrder,
        ShareReason::Other => v1::SafeguardingReason::Other,
    }
}

/// Returns the domain reason of a contract value, naming `reason` if it is none.
fn reason_from_proto(value: i32) -> Result<ShareReason, ServiceError> {
    ShareReason::ALL.into_iter().find(|reason| reason_to_proto(*reason) as i32 == value).ok_or_else(|| {
        invalid(
            "reason",
            "must be risk of significant harm, section 47 enquiry, section 17 assessment, police protection, court order or other",
        )
    })
}

fn new_share_from_proto(request: &v1::DeclareSafeguardingShareRequest) -> Result<NewShare, ServiceError> {
    Ok(NewShare {
        reason: reason_from_proto(request.reason)?,
        reason_text: request.reason_text.clone(),
        categories: categories_from_proto("categories", &request.categories)?,
        agencies: agency_ids_from_proto("agency_ids", &request.agency_ids)?,
        sectors: sectors_from_proto("sectors", &request.sectors)?,
        starts: optional_timestamp("starts", request.starts.as_ref())?,
        expires: optional_timestamp("expires", request.expires.as_ref())?,
        review_family_notification_by: request
            .review_family_notification_by
            .as_ref()
            .map(|date| date_from_proto("review_family_notification_by", date))
            .transpose()?,
    })
}

fn share_to_proto(revision: &ShareRevision, child: &NhsNumber) -> v1::SafeguardingShareRecord {
    let share = &revision.share;
    v1::SafeguardingShareRecord {
        share_id: share.id.to_string(),
        revision: share.revision,
        state: match share.state {
            ShareState::Active => v1::SafeguardingShareState::Active,
            ShareState::Ended { .. } => v1::SafeguardingShareState::Ended,
        } as i32,
        child_masked: child.to_string(),
        reason: reason_to_proto(share.reason) as i32,
        reason_text: revision.reason_text.clone(),
        categories: categories_to_proto(share.categories),
        agency_ids: agency_ids_to_proto(&share.agencies),
        sectors: share.sectors.iter().map(|sector| sector_to_proto(*sector) as i32).collect(),
        starts: Some(timestamp_to_proto(share.starts)),
        expires: Some(timestamp_to_proto(share.expires)),
        review_family_notification_by: revision.review_family_notification_by.map(date_to_proto),
        declared_by_agency_id: share.declared_by.as_str().to_owned(),
        recorded_by_agency_id: revision.recorded_by.as_str().to_owned(),
        recorded_by_professional_id: revision.recorded_by_professional.clone(),
        recorded_at: Some(timestamp_to_proto(revision.recorded_at)),
        end_reason: revision.end_reason.clone(),
    }
}

#[tonic::async_trait]
impl v1::safeguarding_service_server::SafeguardingService for Safeguarding {
    async fn declare_safeguarding_share(
        &self,
        request: Request<v1::DeclareSafeguardingShareRequest>,
    ) -> Result<Response<v1::SafeguardingShareRecord>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let child = child_of(&self.broker, request.get_ref().child.as_ref())?;
        let safeguarder =
            self.broker.safeguarder(&call, Action::SafeguardingDeclared, &child).await.map_err(into_status)?;
        let new = new_share_from_proto(request.get_ref()).map_err(into_status)?;
        let revision = safeguarder.declare(new).await.map_err(into_status)?;
        Ok(Response::new(share_to_proto(&revision, &child)))
    }

    async fn renew_safeguarding_share(
        &self,
        request: Request<v1::RenewSafeguardingShareRequest>,
    ) -> Result<Response<v1::SafeguardingShareRecord>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let message = request.get_ref();
        let child = child_of(&self.broker, message.child.as_ref())?;
        let safeguarder =
            self.broker.safeguarder(&call, Action::SafeguardingRenewed, &child).await.map_err(into_status)?;
        let renew = async {
            let reason = reason_from_proto(message.reason)?;
            let expires = optional_timestamp("expires", message.expires.as_ref())?;
            safeguarder.renew(&message.share_id, reason, &message.reason_text, expires).await
        };
        let revision = renew.await.map_err(into_status)?;
        Ok(Response::new(share_to_proto(&revision, &child)))
    }

    async fn end_safeguarding_share(
        &self,
        request: Request<v1::EndSafeguardingShareRequest>,
    ) -> Result<Response<v1::SafeguardingShareRecord>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let message = request.get_ref();
        let child = child_of(&self.broker, message.child.as_ref())?;
        let safeguarder =
            self.broker.safeguarder(&call, Action::SafeguardingEnded, &child).await.map_err(into_status)?;
        let revision = safeguarder.end(&message.share_id, &message.reason).await.map_err(into_status)?;
        Ok(Response::new(share_to_proto(&revision, &child)))
    }

    async fn list_safeguarding_shares(
        &self,
        request: Request<v1::ListSafeguardingSharesRequest>,
    ) -> Result<Response<v1::ListSafeguardingSharesResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let child = child_of(&self.broker, request.get_ref().child.as_ref())?;
        let safeguarder = self.broker.safeguarder(&call, Action::ConsentRead, &child).await.map_err(into_status)?;
        let shares = safeguarder.list().await.map_err(into_status)?;
        Ok(Response::new(v1::ListSafeguardingSharesResponse {
            shares: shares.iter().map(|revision| share_to_proto(revision, &child)).collect(),
        }))
    }
}
