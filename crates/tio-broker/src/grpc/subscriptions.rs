//! The subscription service's adapter: requests to and from the domain, and the
//! delivery stream itself (the client's acks and credit in, deliveries and heartbeats
//! out), over the delivery path of `app::subscriptions::deliver`.

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tio_proto::v1;
use tio_store::ChildRef;
use tio_store::cursors::SubscriptionHead;
use tokio::sync::mpsc::Sender;

use crate::app::error::ServiceError;
use crate::app::subscriptions::deliver::{ACK_STORE_DELAY, Deliverer, Delivery};
use crate::app::subscriptions::deliver::{Decider, Planned};
use crate::app::subscriptions::head_categories;
use crate::app::subscriptions::live::{Live, Registration};
use crate::app::subscriptions::manage::{NewSubscription, Start, SubscriptionState};
use crate::grpc::convert::{categories_from_proto, category_to_proto, optional_timestamp, timestamp_to_proto};

/// How long a stream stays quiet before it sends a heartbeat.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// The most acks one message may carry.
const MAX_ACKS_PER_MESSAGE: usize = 1024;

/// What the stream sends.
type Outbound = Sender<Result<v1::SubscribeResponse, tonic::Status>>;

/// Parses a subscription as a client asks to create it.
pub(crate) fn new_subscription_from_proto(
    request: &v1::CreateSubscriptionRequest,
) -> Result<NewSubscription, ServiceError> {
    use v1::start_from::From;
    let start = match request.start.as_ref().and_then(|start| start.from.as_ref()) {
        None | Some(From::Live(_)) => Start::Live,
        Some(From::AfterPosition(position)) => Start::AfterPosition(position.token.clone()),
        Some(From::Since(time)) => Start::Since(optional_timestamp("start.since", Some(time))?),
        Some(From::ProfileThenLive(_)) => Start::ProfileThenLive,
    };
    Ok(NewSubscription {
        name: request.name.clone(),
        categories: categories_from_proto("categories", &request.categories)?,
        max_in_flight: request.max_in_flight,
        start,
    })
}

/// Returns the contract form of a head.
pub(crate) fn head_to_proto(head: &SubscriptionHead) -> v1::Subscription {
    v1::Subscription {
        name: head.name.clone(),
        categories: head_categories(head).into_iter().map(|category| category_to_proto(category) as i32).collect(),
        max_in_flight: head.max_in_flight,
        created_at: Some(timestamp_to_proto(tio_core::Timestamp::from_unix_micros(head.created_at_micros))),
    }
}

/// Returns the contract form of a subscription's status.
pub(crate) fn status_to_proto(state: SubscriptionState) -> v1::SubscriptionStatus {
    v1::SubscriptionStatus {
        subscription: Some(head_to_proto(&state.head)),
        lag: state.lag,
        unacked: state.unacked,
        last_delivered_number: state.head.next_number - 1,
        last_acked_number: state.head.last_acked,
        last_error: state.head.last_error,
        open: state.open,
    }
}

/// Returns the refusal of a delivery stream whose first message is not `open`, or
/// that sends `open` again.
pub(crate) fn open_first() -> ServiceError {
    ServiceError::failed_precondition(
        "OPEN_FIRST",
        "subscribe",
        "the first message on a delivery stream must be `open`, and only the first",
    )
}

/// Why a stream stopped.
pub(crate) enum StreamEnd {
    /// The client went away or closed its side.
    ClientGone,
    /// The stream must end with this error sent to the client.
    Error(ServiceError),
    /// The client's own stream failed (a message over the size limit, or one that
    /// does not decode): this status, already in the contract's terms, is sent.
    Refused(tonic::Status),
}

impl From<ServiceError> for StreamEnd {
    fn from(err: ServiceError) -> Self {
        StreamEnd::Error(err)
    }
}

/// Runs an open stream: redelivers what is unacked, then delivers as credit allows,
/// handles acks and credit, heartbeats when quiet, and stops when the client goes, the
/// agency is suspended or the certificate revoked. Records how it ended. With `live`,
/// a stream that has read everything waits there for deliveries decided with their
/// publish (`app::subscriptions::live`).
pub(crate) async fn run(
    deliverer: Deliverer,
    live: Option<std::sync::Arc<Live>>,
    mut inbound: tonic::Streaming<v1::SubscribeRequest>,
    outbound: Outbound,
    mut changes: tokio::sync::watch::Receiver<u64>,
    now: impl Fn() -> tio_core::Timestamp,
) -> StreamEnd {
    let registration = match live {
        Some(live) => live.register(deliverer),
        None => Registration::alone(deliverer),
    };
    if let Err(refused) = registration.deliverer().await.claim().await {
        return StreamEnd::Error(refused);
    }
    let end = pump(&registration, &mut inbound, &outbound, &mut changes, now).await;
    let error = match &end {
        StreamEnd::Error(err) => Some(err.to_string()),
        StreamEnd::Refused(status) => Some(status.message().to_owned()),
        StreamEnd::ClientGone => None,
    };
    let mut deliverer = registration.deliverer().await;
    // Acks that waited for the follower are stored with the rest; deliveries committed
    // and not sent stay unacked, to come again on the next stream.
    registration.unpark(&mut deliverer);
    deliverer.close(error).await;
    end
}

/// What woke a stream with nothing to send.
enum Event {
    Message(Option<Result<v1::SubscribeRequest, tonic::Status>>),
    /// Something that can change a delivery committed (`false`: the broker is going).
    Changed(bool),
    /// The update follower has deliveries for the stream, or left it to read (or a
    /// parked stream's message was handled).
    Woken,
    Renew,
    StorePending,
    Heartbeat,
}

async fn pump(
    registration: &Registration,
    inbound: &mut tonic::Streaming<v1::SubscribeRequest>,
    outbound: &Outbound,
    changes: &mut tokio::sync::watch::Receiver<u64>,
    now: impl Fn() -> tio_core::Timestamp,
) -> StreamEnd {
    let mut deliverer = registration.deliverer().await;
    let decider = deliverer.decider();
    let sent = async {
        let redeliveries = deliverer.redeliver().await?;
        send_all(outbound, redeliveries).await
    };
    if let Err(end) = sent.await {
        return end;
    }
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        // The lease first (on a store other nodes share): a stream busy delivering
        // must not let it lapse.
        if let Err(err) = deliverer.keep_claim().await {
            return StreamEnd::Error(err);
        }
        // Acks and credit first, without waiting.
        while let Some(message) = inbound.next().now_or_never() {
            if let Err(end) = handle(&mut deliverer, message).await {
                return end;
            }
        }
        let agency = match deliverer.current_agency() {
            Ok(agency) => agency,
            Err(err) => return StreamEnd::Error(err),
        };
        // A stream that has read every update there is parks at once: reading again
        // could only find the update a group is committing now, which the follower
        // decides with its publish. Parked, the deliverer is the follower's until woken.
        let mut parked = registration.park(&deliverer);
        if !parked && deliverer.has_room() {
            match deliverer.next(&agency).await {
                Ok(Some(deliveries)) => {
                    if let Err(end) = send_all(outbound, deliveries).await {
                        return end;
                    }
                    quiet_since = tokio::time::Instant::now();
                    continue;
                }
                Ok(None) => parked = registration.park(&deliverer),
                Err(err) => return StreamEnd::Error(err),
            }
        }
        // Nothing to send now. What is pending (acks, a moved cursor) rides on the next
        // delivery's commit, or is stored on its own once it has waited long enough.
        let store_pending_at = deliverer.unstored_since().map(|since| since + ACK_STORE_DELAY);
        let renew_at = deliverer.claim_renew_at();
        let mut waiting =
            Waiting { registration, store_pending_at, renew_at, heartbeat_at: quiet_since + HEARTBEAT_INTERVAL };
        let event;
        (event, deliverer) = if parked {
            drop(deliverer);
            let event = loop {
                let event = waiting.next(inbound, changes, true).await;
                // Acks and the agency's standing are seen to without leaving the
                // follower's reach, and without taking the deliverer from it (each
                // publish wakes every stream, and every delivery is acked): it passes
                // over a stream only while the stream holds its deliverer.
                let handled = match event {
                    Event::Message(message) => match incoming(message) {
                        Ok(Incoming::Ack(numbers)) => match registration.queue_acks(&numbers, MAX_ACKS_PER_MESSAGE) {
                            Ok(queued) if queued >= MAX_ACKS_PER_MESSAGE => break Event::Woken,
                            Ok(_) => {
                                let due = tokio::time::Instant::now() + ACK_STORE_DELAY;
                                waiting.store_pending_at.get_or_insert(due);
                                Ok(())
                            }
                            Err(err) => Err(StreamEnd::Error(err)),
                        },
                        Ok(Incoming::Credit(additional)) => {
                            registration.deliverer().await.credit(additional).map_err(StreamEnd::Error)
                        }
                        Err(end) => Err(end),
                    },
                    Event::Changed(true) => decider.current_agency().map(|_| ()).map_err(StreamEnd::Error),
                    // Deliveries the follower committed go out while it goes on deciding:
                    // checked without its deliverer, which it needs only to decide again.
                    Event::Woken => {
                        match send_followed(registration, &decider, registration.take_ready(), outbound).await {
                            Ok(true) => {
                                quiet_since = tokio::time::Instant::now();
                                waiting.heartbeat_at = quiet_since + HEARTBEAT_INTERVAL;
                                Ok(())
                            }
                            Ok(false) => Ok(()),
                            Err(end) => Err(end),
                        }
                    }
                    other => break other,
                };
                if let Err(end) = handled {
                    return end;
                }
                if !registration.parked() {
                    break Event::Woken;
                }
            };
            let mut deliverer = registration.deliverer().await;
            let ready = registration.unpark(&mut deliverer);
            match send_ready(&mut deliverer, ready, outbound).await {
                Ok(true) => quiet_since = tokio::time::Instant::now(),
                Ok(false) => {}
                Err(end) => return end,
            }
            (event, deliverer)
        } else {
            (waiting.next(inbound, changes, false).await, deliverer)
        };
        match event {
            Event::Message(message) => {
                if let Err(end) = handle(&mut deliverer, message).await {
                    return end;
                }
            }
            Event::Changed(false) => return StreamEnd::ClientGone,
            Event::Changed(true) | Event::Woken | Event::Renew => {}
            Event::StorePending => {
                if let Err(err) = deliverer.flush().await {
                    return StreamEnd::Error(err);
                }
            }
            Event::Heartbeat => {
                if let Err(err) = deliverer.flush().await {
                    return StreamEnd::Error(err);
                }
                let (latest, cursor) = deliverer.progress();
                let heartbeat = v1::Heartbeat {
                    latest_delivery_number: latest,
                    latest_position: cursor.map(|token| v1::Position { token }),
                    at: Some(timestamp_to_proto(now())),
                };
                let message =
                    v1::SubscribeResponse { message: Some(v1::subscribe_response::Message::Heartbeat(heartbeat)) };
                if outbound.send(Ok(message)).await.is_err() {
                    return StreamEnd::ClientGone;
                }
                quiet_since = tokio::time::Instant::now();
            }
        }
    }
}

/// Checks and sends deliveries the update follower committed for a parked stream,
/// taking its deliverer only to decide again those whose grants changed; returns
/// whether any went.
async fn send_followed(
    registration: &Registration,
    decider: &Decider,
    ready: Vec<Planned>,
    outbound: &Outbound,
) -> Result<bool, StreamEnd> {
    if ready.is_empty() {
        return Ok(false);
    }
    let agency = decider.current_agency()?;
    let (sending, again) = decider.check(&agency, ready)?;
    send_all(outbound, sending).await?;
    if !again.is_empty() {
        let deliveries = registration.deliverer().await.decide_again(&agency, again).await?;
        send_all(outbound, deliveries).await?;
    }
    Ok(true)
}

/// Checks and sends deliveries the update follower committed; returns whether any went.
async fn send_ready(deliverer: &mut Deliverer, ready: Vec<Planned>, outbound: &Outbound) -> Result<bool, StreamEnd> {
    if ready.is_empty() {
        return Ok(false);
    }
    let agency = deliverer.current_agency()?;
    let deliveries = deliverer.checked(&agency, ready).await?;
    send_all(outbound, deliveries).await?;
    Ok(true)
}

/// What a stream with nothing to send waits for.
struct Waiting<'a> {
    registration: &'a Registration,
    store_pending_at: Option<tokio::time::Instant>,
    renew_at: Option<tokio::time::Instant>,
    heartbeat_at: tokio::time::Instant,
}

impl Waiting<'_> {
    /// Waits for the next thing to do; `parked`: the update follower may wake it too.
    async fn next(
        &self,
        inbound: &mut tonic::Streaming<v1::SubscribeRequest>,
        changes: &mut tokio::sync::watch::Receiver<u64>,
        parked: bool,
    ) -> Event {
        tokio::select! {
            message = inbound.next() => Event::Message(message),
            changed = changes.changed() => Event::Changed(changed.is_ok()),
            () = self.registration.woken(), if parked => Event::Woken,
            () = sleep_until_some(self.renew_at), if self.renew_at.is_some() => Event::Renew,
            () = sleep_until_some(self.store_pending_at), if self.store_pending_at.is_some() => Event::StorePending,
            () = tokio::time::sleep_until(self.heartbeat_at) => Event::Heartbeat,
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Handles one client message: acks free slots, credit widens the window.
async fn handle(
    deliverer: &mut Deliverer,
    message: Option<Result<v1::SubscribeRequest, tonic::Status>>,
) -> Result<(), StreamEnd> {
    match incoming(message)? {
        Incoming::Ack(numbers) => Ok(deliverer.ack(&numbers, MAX_ACKS_PER_MESSAGE).await?),
        Incoming::Credit(additional) => Ok(deliverer.credit(additional)?),
    }
}

/// What a client may send once its stream is open.
enum Incoming {
    Ack(Vec<u64>),
    Credit(u32),
}

/// Reads one client message, or how the stream ends because of it.
fn incoming(message: Option<Result<v1::SubscribeRequest, tonic::Status>>) -> Result<Incoming, StreamEnd> {
    use v1::subscribe_request::Message;
    let message = match message {
        None => return Err(StreamEnd::ClientGone),
        Some(Err(status)) => {
            let status = crate::grpc::transport_status::inbound_status(status);
            // A message too large or that does not decode is told to the client;
            // anything else is a reset or closed connection, with nobody to tell.
            return Err(match status.code() {
                tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument => StreamEnd::Refused(status),
                _ => StreamEnd::ClientGone,
            });
        }
        Some(Ok(message)) => message,
    };
    match message.message {
        Some(Message::Ack(ack)) => Ok(Incoming::Ack(ack.delivery_numbers)),
        Some(Message::Credit(credit)) => Ok(Incoming::Credit(credit.additional)),
        Some(Message::Open(_)) | None => Err(StreamEnd::Error(open_first())),
    }
}

async fn send_all(outbound: &Outbound, deliveries: Vec<Delivery>) -> Result<(), StreamEnd> {
    for delivery in deliveries {
        let message = v1::SubscribeResponse {
            message: Some(v1::subscribe_response::Message::Delivery(delivery_to_proto(&delivery)?)),
        };
        outbound.send(Ok(message)).await.map_err(|_| StreamEnd::ClientGone)?;
    }
    Ok(())
}

fn delivery_to_proto(delivery: &Delivery) -> Result<v1::Delivery, ServiceError> {
    use prost::Message;
    let corrupt =
        |what: &str| ServiceError::Store(tio_store::StoreError::Corrupt(format!("a stored {what} does not decode")));
    let update = &delivery.update;
    let erasure = delivery.amendment.is_some_and(|notice| notice.amends.kind == tio_store::AmendKind::Erasure);
    // An erasure notice has nothing readable left; anything else has its content.
    let empty = tio_store::UpdateContent::default();
    let content = match &update.content {
        Some(content) => content,
        None if erasure => &empty,
        None => return Err(corrupt("update")),
    };
    // A notice carries the value only if the agency may see it now.
    let value = match delivery.amendment {
        Some(notice) if !notice.with_value => None,
        _ => Some(v1::CategoryValue::decode(content.value.as_slice()).map_err(|_| corrupt("category value"))?),
    };
    let amendment = delivery.amendment.map(|notice| v1::Amendment {
        kind: match notice.amends.kind {
            tio_store::AmendKind::Correction => v1::AmendmentKind::Correction,
            tio_store::AmendKind::Retraction => v1::AmendmentKind::Retraction,
            tio_store::AmendKind::Erasure => v1::AmendmentKind::Erasure,
        } as i32,
        amended_update_id: notice.amends.update_id.to_string(),
        reason: content.reason.clone(),
    });
    Ok(v1::Delivery {
        delivery_number: delivery.number,
        redelivery: delivery.redelivery,
        update_id: update.update_id.to_string(),
        position: Some(v1::Position { token: update.position.as_bytes().to_vec() }),
        child: delivery.child.map(|child| v1::ChildRef { nhs_number: child.number().digits() }),
        category: category_to_proto(update.category) as i32,
        value,
        publisher_agency_id: update.publisher.clone(),
        source_reference: content.source_reference.clone(),
        committed_at: Some(timestamp_to_proto(update.committed_at)),
        from_profile: delivery.from_profile,
        amendment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::convert::categories_to_proto;
    use tio_core::Category;
    use tio_store::cursors::ProfilePhase;

    #[test]
    fn heads_show_in_the_contract_with_their_categories() {
        let head = SubscriptionHead {
            name: "main".into(),
            categories: vec!["health_summary".into()],
            max_in_flight: 256,
            created_at_micros: 5,
            cursor: Some(vec![0, 0, 0, 0, 0, 0, 0, 9]),
            since_micros: None,
            profile: ProfilePhase::Sending { after: Some(vec![1, 2]) },
            next_number: 4,
            last_acked: 2,
            last_error: String::new(),
        };
        assert_eq!(
            head_to_proto(&head).categories,
            categories_to_proto([Category::HealthSummary].into_iter().collect())
        );
    }
}
