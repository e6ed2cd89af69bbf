//! `tio.v1.AlertService`: alerts listed by page, and watched on a stream with credit
//! and cumulative acks, over `app::alerts`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tio_core::FieldViolation;
use tio_proto::v1;
use tokio::sync::mpsc::Sender;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::app::alerts::{Alert, AlertWatch};
use crate::app::broker::Broker;
use crate::app::error::ServiceError;
use crate::grpc::convert::{action_to_proto, category_name_to_proto, entry_to_proto, timestamp_to_proto};
use crate::grpc::paging::{self, page_scope};
use crate::grpc::request::call_of;
use crate::grpc::status::into_status;
use crate::grpc::transport_status::inbound_status;

/// How often an open watch looks for new alerts when nothing woke it: an alert is
/// sequenced by the log at most this long after a watcher looks.
const POLL: Duration = Duration::from_millis(250);

/// How long a watch stays quiet before it sends a heartbeat.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

/// The credit when `open` leaves it at 0, and the most it may ask for.
const DEFAULT_CREDIT: u32 = 64;
const MAX_CREDIT: u32 = 1000;

/// What the stream sends.
type Outbound = Sender<Result<v1::WatchAlertsResponse, Status>>;

/// `tio.v1.AlertService`: see [`crate::app::alerts`].
#[derive(Clone)]
pub(crate) struct Alerts {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
}

fn invalid(field: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

/// Returns the contract form of an alert.
fn alert_to_proto(alert: &Alert) -> v1::Alert {
    let entry = &alert.entry;
    let action = tio_audit::entry::Action::from_code(&entry.action);
    v1::Alert {
        leaf_index: entry.leaf_index,
        kind: entry.alert.clone(),
        time: Some(timestamp_to_proto(tio_core::Timestamp::from_unix_micros(entry.time_micros))),
        agency_id: entry.actor.id.clone(),
        professional_id: entry.actor.professional_id.clone(),
        action: action.map_or(v1::AuditAction::Unspecified, action_to_proto) as i32,
        categories: entry.categories.iter().map(|name| category_name_to_proto(name)).collect(),
        nhs_number: alert.nhs_number.as_ref().map(|number| number.digits()).unwrap_or_default(),
        child_masked: alert.child_masked.clone().unwrap_or_default(),
        addressed_to: entry.alert_to.clone(),
        entry: Some(entry_to_proto(entry)),
    }
}

#[tonic::async_trait]
impl v1::alert_service_server::AlertService for Alerts {
    async fn list_alerts(
        &self,
        request: Request<v1::ListAlertsRequest>,
    ) -> Result<Response<v1::ListAlertsResponse>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let message = request.get_ref();
        let scope = page_scope("ListAlerts", &call, v1::ListAlertsRequest { page: None });
        let page = message.page.clone().unwrap_or_default();
        let store = self.broker.store();
        let size = paging::page_size("page.page_size", page.page_size).map_err(into_status)?;
        let from = paging::open_token(store, "page.page_token", &scope, &page.page_token).map_err(into_status)?;
        let reader = self.broker.alert_reader(&call).await.map_err(into_status)?;
        let alerts = reader.page(from, size).await.map_err(into_status)?;
        let next_page_token = match alerts.last() {
            Some(last) if alerts.len() == size => paging::issue_token(store, &scope, last.entry.leaf_index + 1),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListAlertsResponse {
            alerts: alerts.iter().map(alert_to_proto).collect(),
            page: Some(v1::PageResponse { next_page_token }),
        }))
    }

    type WatchAlertsStream = tonic::codegen::BoxStream<v1::WatchAlertsResponse>;

    async fn watch_alerts(
        &self,
        request: Request<tonic::Streaming<v1::WatchAlertsRequest>>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let mut inbound = request.into_inner();
        let open = match inbound.message().await.map_err(inbound_status)?.and_then(|first| first.message) {
            Some(v1::watch_alerts_request::Message::Open(open)) => open,
            _ => return Err(into_status(open_first())),
        };
        let credit = match open.credit {
            0 => DEFAULT_CREDIT,
            credit if credit <= MAX_CREDIT => credit,
            _ => {
                return Err(into_status(invalid(
                    "open.credit",
                    format!("must be 1 to {MAX_CREDIT} (0 means {DEFAULT_CREDIT})"),
                )));
            }
        };
        let mut watch = self.broker.watch_alerts(call).await.map_err(into_status)?;
        let from = match open.from_leaf_index {
            Some(from) => from,
            None => watch
                .reader()
                .await
                .and_then(|reader| reader.acked_through())
                .map_err(into_status)?
                .map_or(0, |acked| acked + 1),
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(credit as usize + 1);
        tokio::spawn(async move {
            let ended = run(&mut watch, inbound, &sender, from, credit as usize).await;
            watch.close().await;
            if let Err(status) = ended {
                // Ignored error: the client has gone already.
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Returns the refusal of an alert stream whose first message is not `open`, or that
/// sends `open` again.
fn open_first() -> ServiceError {
    ServiceError::failed_precondition(
        "OPEN_FIRST",
        "alerts",
        "the first message on an alert stream must be `open`, and only the first",
    )
}

/// Runs an open watch until the client goes (`Ok`) or it must end with a status.
async fn run(
    watch: &mut AlertWatch,
    mut inbound: tonic::Streaming<v1::WatchAlertsRequest>,
    sender: &Outbound,
    mut next: u64,
    credit: usize,
) -> Result<(), Status> {
    let mut changes = watch.changes();
    // Leaf indexes sent and not yet acked, in order.
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    let mut acked = watch.reader().await.and_then(|reader| reader.acked_through()).map_err(into_status)?;
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        watch.keep().await.map_err(into_status)?;
        let reader = watch.reader().await.map_err(into_status)?;
        if reader.suspended() {
            return Err(into_status(ServiceError::denied("AGENCY_SUSPENDED", "the agency is suspended")));
        }
        if in_flight.len() < credit {
            let alerts = reader.page(next, credit - in_flight.len()).await.map_err(into_status)?;
            for alert in &alerts {
                let message = v1::watch_alerts_response::Message::Alert(alert_to_proto(alert));
                if sender.send(Ok(v1::WatchAlertsResponse { message: Some(message) })).await.is_err() {
                    return Ok(());
                }
                in_flight.push_back(alert.entry.leaf_index);
                next = alert.entry.leaf_index + 1;
                quiet_since = tokio::time::Instant::now();
            }
        }
        if quiet_since.elapsed() >= HEARTBEAT_INTERVAL {
            let heartbeat = v1::AlertHeartbeat { acked_through_leaf_index: acked };
            let message = v1::watch_alerts_response::Message::Heartbeat(heartbeat);
            if sender.send(Ok(v1::WatchAlertsResponse { message: Some(message) })).await.is_err() {
                return Ok(());
            }
            quiet_since = tokio::time::Instant::now();
        }
        drop(reader);
        tokio::select! {
            message = inbound.message() => {
                match message.map_err(inbound_status)?.and_then(|request| request.message) {
                    None => return Ok(()),
                    Some(v1::watch_alerts_request::Message::Open(_)) => return Err(into_status(open_first())),
                    Some(v1::watch_alerts_request::Message::Ack(ack)) => {
                        let through = ack.through_leaf_index;
                        if next == 0 || through >= next {
                            return Err(into_status(invalid("ack.through_leaf_index", "acks an alert that was not sent")));
                        }
                        while in_flight.front().is_some_and(|leaf| *leaf <= through) {
                            in_flight.pop_front();
                        }
                        if acked.is_none_or(|acked| through > acked) {
                            watch.reader().await.map_err(into_status)?.ack(through).await.map_err(into_status)?;
                            acked = Some(through);
                        }
                    }
                }
            }
            _ = changes.changed() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
