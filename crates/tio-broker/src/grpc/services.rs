//! The `tio.v1` service adapters.
//!
//! Each is a thin adapter: it takes the [`crate::app::registry::Caller`] from the request,
//! converts the request, calls the broker and maps the error with
//! [`crate::grpc::status::into_status`]. Every RPC of the contract is implemented here: the
//! generated traits have no defaults, so a new RPC does not compile until it is.

use std::sync::Arc;

use tio_audit::checkpoint::SignedCheckpoint;
use tio_audit::entry::Action;
use tio_core::{Category, FieldViolation};
use tio_proto::v1;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::app::audit_reads::EntryFilter;
use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;
use crate::grpc::care::{
    consent_to_proto, evidence_from_proto, new_consent_from_proto, new_objection_from_proto, objection_to_proto,
    relationship_kind_from_proto, relationship_to_proto,
};
use crate::grpc::convert::{
    action_filter, action_to_proto, agency_from_proto, agency_to_proto, category_to_proto, entry_to_proto,
    optional_timestamp, outcome_filter, outcome_to_proto, timestamp_to_proto,
};
use crate::grpc::paging::page_scope;
use crate::grpc::request::call_of;
use crate::grpc::status::into_status;
use crate::grpc::transport_status::inbound_status;
use crate::grpc::{paging, records, subscriptions};

/// `tio.v1.RecordService`: see [`crate::records`].
#[derive(Clone)]
pub(crate) struct Records {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
}

/// How many items of one publish stream are in flight at once: enough for them to
/// share group commits, few enough to bound the memory one stream holds.
const PUBLISH_STREAM_IN_FLIGHT: usize = 256;

#[tonic::async_trait]
impl v1::record_service_server::RecordService for Records {
    type PublishStreamStream = tonic::codegen::BoxStream<v1::PublishStreamResult>;

    async fn publish(&self, request: Request<v1::PublishRequest>) -> Result<Response<v1::PublishResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let published = publish(&self.broker, &call, request.get_ref()).await.map_err(into_status)?;
        Ok(Response::new(records::published_to_proto(&published)))
    }

    async fn publish_stream(
        &self,
        request: Request<tonic::Streaming<v1::PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        use futures_util::StreamExt;
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        // A caller that may not publish at all is refused once, for the whole stream.
        self.broker
            .agency_call(&call, tio_core::Service::Records, tio_audit::entry::Action::Publish)
            .await
            .map_err(into_status)?;
        let mut inbound = request.into_inner();
        let (sender, receiver) = tokio::sync::mpsc::channel(PUBLISH_STREAM_IN_FLIGHT);
        let broker = self.broker.clone();
        tokio::spawn(async move {
            let mut pending = futures_util::stream::FuturesOrdered::new();
            let mut next_index = 0u64;
            let mut inbound_open = true;
            loop {
                tokio::select! {
                    item = inbound.message(), if inbound_open && pending.len() < PUBLISH_STREAM_IN_FLIGHT => {
                        match item {
                            Ok(Some(item)) => {
                                let (broker, index) = (broker.clone(), next_index);
                                let call = Call { now: broker.now(), ..call.clone() };
                                next_index += 1;
                                pending.push_back(async move { (index, publish(&broker, &call, &item).await) });
                            }
                            Ok(None) => inbound_open = false,
                            // The client's stream failed (a message over the size
                            // limit, or one that does not decode): say why, then stop.
                            Err(status) => {
                                let _ = sender.send(Err(inbound_status(status))).await;
                                return;
                            }
                        }
                    }
                    Some((index, outcome)) = pending.next(), if !pending.is_empty() => {
                        let outcome = match outcome {
                            Ok(published) => {
                                v1::publish_stream_result::Outcome::Published(records::published_to_proto(&published))
                            }
                            Err(err) => v1::publish_stream_result::Outcome::Error(item_error(err)),
                        };
                        let result = v1::PublishStreamResult { index, outcome: Some(outcome) };
                        if sender.send(Ok(result)).await.is_err() {
                            return;
                        }
                    }
                    else => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn get_profile(
        &self,
        request: Request<v1::GetProfileRequest>,
    ) -> Result<Response<v1::GetProfileResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let reader = self.broker.profile_reader(&call).await.map_err(into_status)?;
        let message = request.get_ref();
        let child = child_of(&self.broker, message.child.as_ref())?;
        let wanted =
            crate::grpc::convert::categories_from_proto("categories", &message.categories).map_err(into_status)?;
        let shown = reader.profile(&child, wanted).await.map_err(into_status)?;
        let entries = shown.into_iter().map(records::profile_entry_to_proto).collect::<Result<_, _>>();
        Ok(Response::new(v1::GetProfileResponse { entries: entries.map_err(into_status)? }))
    }

    async fn correct_update(
        &self,
        request: Request<v1::CorrectUpdateRequest>,
    ) -> Result<Response<v1::AmendUpdateResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let amender = self.broker.amender(&call, crate::app::records::Amend::Correction).await.map_err(into_status)?;
        let correction = records::correction_from_proto(&self.broker, request.get_ref()).map_err(into_status)?;
        let corrected = amender.amend(&correction).await.map_err(into_status)?;
        Ok(Response::new(records::amended_to_proto(&corrected)))
    }

    async fn retract_update(
        &self,
        request: Request<v1::RetractUpdateRequest>,
    ) -> Result<Response<v1::AmendUpdateResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let amender = self.broker.amender(&call, crate::app::records::Amend::Retraction).await.map_err(into_status)?;
        let retraction = records::retraction_from_proto(&self.broker, request.get_ref()).map_err(into_status)?;
        let retracted = amender.amend(&retraction).await.map_err(into_status)?;
        Ok(Response::new(records::amended_to_proto(&retracted)))
    }
}

/// Publishes one request: the caller admitted, then the request checked, then published.
async fn publish(
    broker: &Broker,
    call: &Call,
    request: &v1::PublishRequest,
) -> Result<crate::app::records::Published, ServiceError> {
    let publisher = broker.publisher(call).await?;
    let publication = records::publication_from_proto(broker, request)?;
    publisher.publish(&publication).await
}

/// Turns one failed stream item into its error, with the status the unary call would
/// have returned (mapped in the one place statuses are made).
fn item_error(err: ServiceError) -> v1::ItemError {
    use tonic_types::StatusExt;
    let status = into_status(err);
    let field_violations = status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| v1::FieldViolation { field: v.field, description: v.description })
                .collect()
        })
        .unwrap_or_default();
    let reason = status.get_details_error_info().map(|info| info.reason).unwrap_or_default();
    v1::ItemError { code: status.code() as i32, message: status.message().to_owned(), field_violations, reason }
}

/// Parses the child of a request, naming `child.nhs_number`.
pub(crate) fn child_of(broker: &Broker, child: Option<&v1::ChildRef>) -> Result<tio_core::NhsNumber, Status> {
    let text = child.map(|child| child.nhs_number.as_str()).unwrap_or_default();
    broker.parse_nhs_number("child.nhs_number", text).map_err(into_status)
}

/// `tio.v1.ConsentService`: see [`crate::consents`].
#[derive(Clone)]
pub(crate) struct Consents {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
}

#[tonic::async_trait]
impl v1::consent_service_server::ConsentService for Consents {
    async fn record_consent(
        &self,
        request: Request<v1::RecordConsentRequest>,
    ) -> Result<Response<v1::ConsentRecord>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let child = child_of(&self.broker, request.get_ref().child.as_ref())?;
        let recorder =
            self.broker.consent_recorder(&call, Action::ConsentRecorded, &child).await.map_err(into_status)?;
        let new = new_consent_from_proto(request.get_ref()).map_err(into_status)?;
        let revision = recorder.record(new).await.map_err(into_status)?;
        let review = self.broker.consents_to_review(&call, &child).map_err(into_status)?;
        Ok(Response::new(consent_to_proto(&revision, &child, review.marks(&revision))))
    }

    async fn withdraw_consent(
        &self,
        request: Request<v1::WithdrawConsentRequest>,
    ) -> Result<Response<v1::ConsentRecord>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let message = request.get_ref();
        let child = child_of(&self.broker, message.child.as_ref())?;
        let recorder =
            self.broker.consent_recorder(&call, Action::ConsentWithdrawn, &child).await.map_err(into_status)?;
        let evidence = evidence_from_proto("evidence", message.evidence.as_ref()).map_err(into_status)?;
        let revision = recorder.withdraw(&message.consent_id, &message.reason, evidence).await.map_err(into_status)?;
        let review = self.broker.consents_to_review(&call, &child).map_err(into_status)?;
        Ok(Response::new(consent_to_proto(&revision, &child, review.marks(&revision))))
    }

    async fn get_consent(
        &self,
        request: Request<v1::GetConsentRequest>,
    ) -> Result<Response<v1::ConsentRecord>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let child = child_of(&self.broker, request.get_ref().child.as_ref())?;
        let mut revisions =
            self.broker.consent_history(&call, &child, &request.get_ref().consent_id).await.map_err(into_status)?;
        let latest = revisions
            .pop()
            .ok_or_else(|| into_status(crate::app::consents::consent_not_found(&request.get_ref().consent_id)))?;
        let review = self.broker.consents_to_review(&call, &child).map_err(into_status)?;
        Ok(Response::new(consent_to_proto(&latest, &child, review.marks(&latest))))
    }

    async fn list_consent_revisions(
        &self,
        request: Request<v1::ListConsentRevisionsRequest>,
    ) -> Result<Response<v1::ListConsentRevisionsResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let child = child_of(&self.broker, request.get_ref().child.as_ref())?;
        let revisions =
            self.broker.consent_history(&call, &child, &request.get_ref().consent_id).await.map_err(into_status)?;
        let review = self.broker.consents_to_review(&call, &child).map_err(into_status)?;
        let revisions =
            revisions.iter().map(|revision| consent_to_proto(revision, &child, review.marks(revision))).collect();
        Ok(Response::new(v1::ListConsentRevisionsResponse { revisions }))
    }

    async fn list_consents(
        &self,
        request: Request<v1::ListConsentsRequest>,
    ) -> Result<Response<v1::ListConsentsResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let child = child_of(&self.broker, request.get_ref().child.as_ref())?;
        let message = request.get_ref();
        let scope = page_scope("ListConsents", &call, v1::ListConsentsRequest { page: None, ..message.clone() });
        let page = message.page.clone().unwrap_or_default();
        let page = paging::WholeListPage::open(self.broker.store(), &scope, page.page_size, &page.page_token)
            .map_err(into_status)?;
        let consents = self.broker.list_consents(&call, &child).await.map_err(into_status)?;
        let (range, next_page_token) = page.of(consents.len());
        let review = self.broker.consents_to_review(&call, &child).map_err(into_status)?;
        let consents =
            consents[range].iter().map(|revision| consent_to_proto(revision, &child, review.marks(revision))).collect();
        Ok(Response::new(v1::ListConsentsResponse { consents, page: Some(v1::PageResponse { next_page_token }) }))
    }

    async fn record_objection(
        &self,
        request: Request<v1::RecordObjectionRequest>,
    ) -> Result<Response<v1::ObjectionRecord>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let child = child_of(&self.broker, request.get_ref().child.as_ref())?;
        let recorder =
            self.broker.consent_recorder(&call, Action::ObjectionRaised, &child).await.map_err(into_status)?;
        let new = new_objection_from_proto(request.get_ref()).map_err(into_status)?;
        let revision = recorder.raise_objection(new).await.map_err(into_status)?;
        Ok(Response::new(objection_to_proto(&revision, &child)))
    }

    async fn withdraw_objection(
        &self,
        request: Request<v1::WithdrawObjectionRequest>,
    ) -> Result<Response<v1::ObjectionRecord>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let message = request.get_ref();
        let child = child_of(&self.broker, message.child.as_ref())?;
        let recorder =
            self.broker.consent_recorder(&call, Action::ObjectionWithdrawn, &child).await.map_err(into_status)?;
        let evidence = evidence_from_proto("evidence", message.evidence.as_ref()).map_err(into_status)?;
        let revision =
            recorder.withdraw_objection(&message.objection_id, &message.reason, evidence).await.map_err(into_status)?;
        Ok(Response::new(objection_to_proto(&revision, &child)))
    }

    async fn list_objections(
        &self,
        request: Request<v1::ListObjectionsRequest>,
    ) -> Result<Response<v1::ListObjectionsResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let message = request.get_ref();
        let child = child_of(&self.broker, message.child.as_ref())?;
        let scope = page_scope("ListObjections", &call, v1::ListObjectionsRequest { page: None, ..message.clone() });
        let page = message.page.clone().unwrap_or_default();
        let page = paging::WholeListPage::open(self.broker.store(), &scope, page.page_size, &page.page_token)
            .map_err(into_status)?;
        let objections = self.broker.list_objections(&call, &child).await.map_err(into_status)?;
        let (range, next_page_token) = page.of(objections.len());
        let objections = objections[range].iter().map(|revision| objection_to_proto(revision, &child)).collect();
        Ok(Response::new(v1::ListObjectionsResponse { objections, page: Some(v1::PageResponse { next_page_token }) }))
    }
}

/// `tio.v1.CareRelationshipService`: see [`crate::relationships`].
#[derive(Clone)]
pub(crate) struct CareRelationships {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
}

#[tonic::async_trait]
impl v1::care_relationship_service_server::CareRelationshipService for CareRelationships {
    async fn declare_relationship(
        &self,
        request: Request<v1::DeclareRelationshipRequest>,
    ) -> Result<Response<v1::CareRelationship>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let message = request.get_ref();
        let child = child_of(&self.broker, message.child.as_ref())?;
        let (relationship, already_active) = self
            .broker
            .declare_relationship(&call, &child, relationship_kind_from_proto(message.kind), &message.reference)
            .await
            .map_err(into_status)?;
        Ok(Response::new(relationship_to_proto(&relationship, already_active)))
    }

    async fn end_relationship(
        &self,
        request: Request<v1::EndRelationshipRequest>,
    ) -> Result<Response<v1::CareRelationship>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let message = request.get_ref();
        let child = child_of(&self.broker, message.child.as_ref())?;
        let relationship = self
            .broker
            .end_relationship(&call, &child, &message.relationship_id, &message.reason)
            .await
            .map_err(into_status)?;
        Ok(Response::new(relationship_to_proto(&relationship, false)))
    }

    async fn list_relationships(
        &self,
        request: Request<v1::ListRelationshipsRequest>,
    ) -> Result<Response<v1::ListRelationshipsResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let message = request.get_ref();
        let child = child_of(&self.broker, message.child.as_ref())?;
        let relationships =
            self.broker.list_relationships(&call, &child, message.include_ended).await.map_err(into_status)?;
        let relationships = relationships.iter().map(|record| relationship_to_proto(record, false)).collect();
        Ok(Response::new(v1::ListRelationshipsResponse { relationships }))
    }
}

/// `tio.v1.SubscriptionService`: see [`crate::subscriptions`].
#[derive(Clone)]
pub(crate) struct Subscriptions {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
}

/// Messages a delivery stream holds for a slow client before it waits for it.
const SUBSCRIBE_BUFFER: usize = 64;

#[tonic::async_trait]
impl v1::subscription_service_server::SubscriptionService for Subscriptions {
    type SubscribeStream = tonic::codegen::BoxStream<v1::SubscribeResponse>;

    async fn create_subscription(
        &self,
        request: Request<v1::CreateSubscriptionRequest>,
    ) -> Result<Response<v1::Subscription>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let subscriber = self.broker.subscriber(&call).await.map_err(into_status)?;
        let new = subscriptions::new_subscription_from_proto(request.get_ref()).map_err(into_status)?;
        let head = subscriber.create(new).await.map_err(into_status)?;
        Ok(Response::new(subscriptions::head_to_proto(&head)))
    }

    async fn delete_subscription(
        &self,
        request: Request<v1::DeleteSubscriptionRequest>,
    ) -> Result<Response<v1::DeleteSubscriptionResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let subscriber = self.broker.subscriber(&call).await.map_err(into_status)?;
        subscriber.delete(&request.get_ref().name).await.map_err(into_status)?;
        Ok(Response::new(v1::DeleteSubscriptionResponse {}))
    }

    async fn list_subscriptions(
        &self,
        request: Request<v1::ListSubscriptionsRequest>,
    ) -> Result<Response<v1::ListSubscriptionsResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let subscriber = self.broker.subscriber(&call).await.map_err(into_status)?;
        let heads = subscriber.list().map_err(into_status)?;
        Ok(Response::new(v1::ListSubscriptionsResponse {
            subscriptions: heads.iter().map(subscriptions::head_to_proto).collect(),
        }))
    }

    async fn get_subscription_status(
        &self,
        request: Request<v1::GetSubscriptionStatusRequest>,
    ) -> Result<Response<v1::SubscriptionStatus>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let subscriber = self.broker.subscriber(&call).await.map_err(into_status)?;
        let state = subscriber.status(&request.get_ref().name).map_err(into_status)?;
        Ok(Response::new(subscriptions::status_to_proto(state)))
    }

    async fn subscribe(
        &self,
        request: Request<tonic::Streaming<v1::SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        use crate::app::subscriptions::deliver::Deliverer;
        use subscriptions::StreamEnd;
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let mut inbound = request.into_inner();
        let open = match inbound.message().await.map_err(inbound_status)?.and_then(|first| first.message) {
            Some(v1::subscribe_request::Message::Open(open)) => open,
            _ => return Err(into_status(subscriptions::open_first())),
        };
        let deliverer =
            Deliverer::open(self.broker.clone(), call, &open.name, open.credit).await.map_err(into_status)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(SUBSCRIBE_BUFFER);
        let broker = self.broker.clone();
        tokio::spawn(async move {
            let changes = broker.watch_changes();
            let live = broker.live().cloned();
            let ended = subscriptions::run(deliverer, live, inbound, sender.clone(), changes, || broker.now()).await;
            let status = match ended {
                StreamEnd::ClientGone => return,
                StreamEnd::Error(err) => into_status(err),
                StreamEnd::Refused(status) => status,
            };
            // Ignored error: the client has gone already.
            let _ = sender.send(Err(status)).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// `tio.v1.AuditService`: see [`crate::audit_reads`].
#[derive(Clone)]
pub(crate) struct Audit {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
}

/// Entries an export reads from the store at a time; the stream's channel holds one
/// page more, so a slow reader holds back reading rather than filling memory.
const EXPORT_PAGE: u64 = 1024;

#[tonic::async_trait]
impl v1::audit_service_server::AuditService for Audit {
    type ExportEntriesStream = tonic::codegen::BoxStream<v1::ExportEntriesResponse>;

    async fn query_entries(
        &self,
        request: Request<v1::QueryEntriesRequest>,
    ) -> Result<Response<v1::QueryEntriesResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let reader = self.broker.audit_reader(&call).await.map_err(into_status)?;
        let message = request.into_inner();
        let scope = page_scope("QueryEntries", &call, v1::QueryEntriesRequest { page: None, ..message.clone() });
        let query = async {
            let filter = EntryFilter {
                from: optional_timestamp("from_time", message.from_time.as_ref())?,
                until: optional_timestamp("until_time", message.until_time.as_ref())?,
                agency_id: Some(message.agency_id).filter(|id| !id.is_empty()),
                action: action_filter("action", message.action)?,
                outcome: outcome_filter("outcome", message.outcome)?,
                child_index: None,
            };
            let child = match &message.child {
                Some(child) => Some(self.broker.parse_nhs_number("child.nhs_number", &child.nhs_number)?),
                None => None,
            };
            let page = message.page.clone().unwrap_or_default();
            let size = paging::page_size("page.page_size", page.page_size)?;
            let start = paging::open_token(self.broker.store(), "page.page_token", &scope, &page.page_token)?;
            reader.query(filter, child.as_ref(), start, size).await
        };
        // Read before the page, so that no entry of it is said to be in the tree early.
        let tree_size = self.broker.audit().tree_size().map_err(|err| into_status(ServiceError::from(err)))?;
        let page = query.await.map_err(into_status)?;
        Ok(Response::new(v1::QueryEntriesResponse {
            tree_size,
            entries: page.entries.iter().map(entry_to_proto).collect(),
            page: Some(v1::PageResponse {
                next_page_token: page
                    .next_leaf
                    .map(|next| paging::issue_token(self.broker.store(), &scope, next))
                    .unwrap_or_default(),
            }),
        }))
    }

    async fn export_entries(
        &self,
        request: Request<v1::ExportEntriesRequest>,
    ) -> Result<Response<Self::ExportEntriesStream>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let reader = self.broker.audit_reader(&call).await.map_err(into_status)?;
        let message = request.into_inner();
        let plan = reader.export(message.from_index, message.to_index).await.map_err(into_status)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(EXPORT_PAGE as usize);
        let broker = self.broker.clone();
        tokio::spawn(async move {
            let range = v1::ExportRange { from_index: plan.from, to_index: plan.to };
            let item = v1::export_entries_response::Item::Range(range);
            if sender.send(Ok(v1::ExportEntriesResponse { item: Some(item) })).await.is_err() {
                return;
            }
            let mut next = plan.from;
            while next < plan.to {
                let end = plan.to.min(next + EXPORT_PAGE);
                let page = match broker.audit().entries(next, end) {
                    Ok(page) if page.len() as u64 == end - next => page,
                    read => {
                        let error = match read {
                            Err(err) => ServiceError::from(err),
                            Ok(_) => ServiceError::Internal("audit entries missing below the checkpoint".into()),
                        };
                        // Ignored error: the client has gone, and so has the stream.
                        let _ = sender.send(Err(into_status(error))).await;
                        return;
                    }
                };
                for entry in &page {
                    let item = v1::export_entries_response::Item::Entry(entry_to_proto(entry));
                    if sender.send(Ok(v1::ExportEntriesResponse { item: Some(item) })).await.is_err() {
                        return;
                    }
                }
                next = end;
            }
            let item = v1::export_entries_response::Item::Checkpoint(checkpoint_to_proto(&plan.checkpoint));
            let _ = sender.send(Ok(v1::ExportEntriesResponse { item: Some(item) })).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn get_checkpoint(
        &self,
        request: Request<v1::GetCheckpointRequest>,
    ) -> Result<Response<v1::Checkpoint>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let reader = self.broker.audit_reader(&call).await.map_err(into_status)?;
        let signed = reader.checkpoint().await.map_err(into_status)?;
        Ok(Response::new(checkpoint_to_proto(&signed)))
    }

    async fn get_public_key(
        &self,
        request: Request<v1::GetPublicKeyRequest>,
    ) -> Result<Response<v1::PublicKey>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let reader = self.broker.audit_reader(&call).await.map_err(into_status)?;
        let verifier = reader.public_key().await.map_err(into_status)?;
        Ok(Response::new(v1::PublicKey {
            verifier_key: verifier.to_string(),
            origin: verifier.name().to_owned(),
            fingerprint: verifier.fingerprint(),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<v1::GetInclusionProofRequest>,
    ) -> Result<Response<v1::InclusionProof>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let reader = self.broker.audit_reader(&call).await.map_err(into_status)?;
        let message = request.into_inner();
        let proof = reader.inclusion_proof(message.leaf_index, message.tree_size).await.map_err(into_status)?;
        Ok(Response::new(v1::InclusionProof {
            leaf_index: message.leaf_index,
            tree_size: message.tree_size,
            hashes: proof.iter().map(|hash| hash.to_vec()).collect(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<v1::GetConsistencyProofRequest>,
    ) -> Result<Response<v1::ConsistencyProof>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let reader = self.broker.audit_reader(&call).await.map_err(into_status)?;
        let message = request.into_inner();
        let proof = reader.consistency_proof(message.old_size, message.new_size).await.map_err(into_status)?;
        Ok(Response::new(v1::ConsistencyProof {
            old_size: message.old_size,
            new_size: message.new_size,
            hashes: proof.iter().map(|hash| hash.to_vec()).collect(),
        }))
    }

    async fn subject_access_report(
        &self,
        request: Request<v1::SubjectAccessReportRequest>,
    ) -> Result<Response<v1::SubjectAccessReportResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let reader = self.broker.audit_reader(&call).await.map_err(into_status)?;
        let message = request.into_inner();
        let report = async {
            let child = message.child.as_ref().map(|child| child.nhs_number.as_str()).unwrap_or_default();
            let child = self.broker.parse_nhs_number("child.nhs_number", child)?;
            let from = optional_timestamp("from_time", message.from_time.as_ref())?;
            let until = optional_timestamp("until_time", message.until_time.as_ref())?;
            reader.subject_access_report(&child, from, until).await
        };
        let lines = report.await.map_err(into_status)?;
        Ok(Response::new(v1::SubjectAccessReportResponse {
            lines: lines
                .into_iter()
                .map(|line| v1::SubjectAccessLine {
                    time: Some(timestamp_to_proto(line.time)),
                    agency_id: line.agency_id,
                    agency_name: line.agency_name,
                    professional_id: line.professional_id,
                    action: action_to_proto(line.action) as i32,
                    outcome: outcome_to_proto(line.outcome) as i32,
                    categories: line
                        .categories
                        .iter()
                        .filter_map(|name| Category::from_name(name))
                        .map(|category| category_to_proto(category) as i32)
                        .collect(),
                    why: line.why,
                    leaf_index: line.leaf_index,
                    reason: line.grounds.reason,
                    consent_id: line.grounds.consent_id,
                    consent_revision: line.grounds.consent_revision,
                    relationship_id: line.grounds.relationship_id,
                    basis: line.grounds.basis,
                })
                .collect(),
        }))
    }
}

fn checkpoint_to_proto(signed: &SignedCheckpoint) -> v1::Checkpoint {
    v1::Checkpoint {
        signed_note: signed.note.clone(),
        tree_size: signed.checkpoint.size,
        root_hash: signed.checkpoint.root.to_vec(),
    }
}

/// `tio.v1.AdminService`: see [`crate::admin`].
#[derive(Clone)]
pub(crate) struct Admin {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
}

#[tonic::async_trait]
impl v1::admin_service_server::AdminService for Admin {
    type BackupStoreStream = tonic::codegen::BoxStream<v1::BackupChunk>;
    type RotateKeysStream = tonic::codegen::BoxStream<v1::RotateKeysProgress>;

    async fn register_agency(
        &self,
        request: Request<v1::RegisterAgencyRequest>,
    ) -> Result<Response<v1::Agency>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let admin = self.broker.administrator(&call).await.map_err(into_status)?;
        let agency = request.into_inner().agency.ok_or_else(|| into_status(required("agency")))?;
        let record = agency_from_proto(&agency).map_err(into_status)?;
        Ok(Response::new(agency_to_proto(&admin.register(record).await.map_err(into_status)?)))
    }

    async fn update_agency(&self, request: Request<v1::UpdateAgencyRequest>) -> Result<Response<v1::Agency>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let admin = self.broker.administrator(&call).await.map_err(into_status)?;
        let agency = request.into_inner().agency.ok_or_else(|| into_status(required("agency")))?;
        let record = agency_from_proto(&agency).map_err(into_status)?;
        Ok(Response::new(agency_to_proto(&admin.update(record).await.map_err(into_status)?)))
    }

    async fn suspend_agency(&self, request: Request<v1::SuspendAgencyRequest>) -> Result<Response<v1::Agency>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let admin = self.broker.administrator(&call).await.map_err(into_status)?;
        let message = request.into_inner();
        Ok(Response::new(agency_to_proto(
            &admin.suspend(&message.agency_id, &message.reason).await.map_err(into_status)?,
        )))
    }

    async fn reinstate_agency(
        &self,
        request: Request<v1::ReinstateAgencyRequest>,
    ) -> Result<Response<v1::Agency>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let admin = self.broker.administrator(&call).await.map_err(into_status)?;
        let record = admin.reinstate(&request.into_inner().agency_id).await.map_err(into_status)?;
        Ok(Response::new(agency_to_proto(&record)))
    }

    async fn list_agencies(
        &self,
        request: Request<v1::ListAgenciesRequest>,
    ) -> Result<Response<v1::ListAgenciesResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let admin = self.broker.administrator(&call).await.map_err(into_status)?;
        let agencies = admin.list().map_err(into_status)?.iter().map(agency_to_proto).collect();
        Ok(Response::new(v1::ListAgenciesResponse { agencies }))
    }

    async fn revoke_certificate(
        &self,
        request: Request<v1::RevokeCertificateRequest>,
    ) -> Result<Response<v1::RevokeCertificateResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let admin = self.broker.administrator(&call).await.map_err(into_status)?;
        let message = request.into_inner();
        admin.revoke(&message.fingerprint, &message.reason).await.map_err(into_status)?;
        Ok(Response::new(v1::RevokeCertificateResponse {}))
    }

    async fn backup_store(
        &self,
        request: Request<v1::BackupStoreRequest>,
    ) -> Result<Response<Self::BackupStoreStream>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let admin = self.broker.administrator(&call).await.map_err(into_status)?;
        let pieces = admin.backup().await.map_err(into_status)?;
        use futures_util::StreamExt;
        let stream =
            ReceiverStream::new(pieces).map(|piece| piece.map(|data| v1::BackupChunk { data }).map_err(into_status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn rotate_keys(
        &self,
        request: Request<v1::RotateKeysRequest>,
    ) -> Result<Response<Self::RotateKeysStream>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        // Refused callers are answered before the stream starts.
        self.broker.administrator(&call).await.map_err(into_status)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let broker = self.broker.clone();
        tokio::spawn(async move {
            let admin = crate::app::admin::Administrator { broker: &broker, call: &call };
            let progress_sender = sender.clone();
            let outcome = admin
                .rotate_keys(|step| {
                    // A full channel drops a step: progress is advisory, the end is not.
                    let _ = progress_sender.try_send(Ok(v1::RotateKeysProgress {
                        version: step.version,
                        done: step.done,
                        total: step.total,
                        ..Default::default()
                    }));
                })
                .await;
            let last = outcome
                .map(|outcome| v1::RotateKeysProgress {
                    version: outcome.version,
                    finished: true,
                    rewrapped: outcome.rewrapped,
                    versions: outcome.versions,
                    ..Default::default()
                })
                .map_err(into_status);
            // Ignored error: the caller has gone; the rotation itself has finished.
            let _ = sender.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn retire_key(
        &self,
        request: Request<v1::RetireKeyRequest>,
    ) -> Result<Response<v1::RetireKeyResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let admin = self.broker.administrator(&call).await.map_err(into_status)?;
        let versions = admin.retire_key(request.get_ref().kek_version).await.map_err(into_status)?;
        Ok(Response::new(v1::RetireKeyResponse { versions }))
    }

    async fn erase_child(
        &self,
        request: Request<v1::EraseChildRequest>,
    ) -> Result<Response<v1::EraseChildResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let admin = self.broker.administrator(&call).await.map_err(into_status)?;
        let message = request.get_ref();
        let child = self.broker.store().child(&child_of(&self.broker, message.child.as_ref())?);
        let index =
            admin.erase_child(&child, &message.reason, &message.request_reference).await.map_err(into_status)?;
        Ok(Response::new(v1::EraseChildResponse { child_index: index.to_hex() }))
    }
}

/// The error for a required message field left out.
fn required(field: &str) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, "is required")])
}
