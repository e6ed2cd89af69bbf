//! Durable subscriptions and their delivery streams.
//!
//! A subscription is a cursor over the store's update log, owned by one agency, kept in
//! the `cursors` keyspace: a head record (the cursor, the next delivery number, where a
//! profile-then-live start has got to) and one record per unacked delivery. Deliveries
//! are read from the store by cursor, never queued in memory, so a slow or stalled
//! subscriber costs nothing but its cursor.
//!
//! Every delivery is decided again by `tio_core::decide` at the moment it is sent, and
//! committed (head, unacked record and audit entry) before it is sent, under
//! preconditions that the consent and relationship that allowed it are unchanged: a
//! withdrawal or ended relationship that commits first stops it, and one that commits
//! after it comes after it in the log.

use std::collections::BTreeMap;
use std::time::Duration;

use tio_audit::entry::{Action as AuditAction, AuditEntry, Outcome};
use tio_audit::log::entry_op;
use tio_core::{
    AccessRequest, Action, Agency, AgencyId, Category, Decision, DenyReason, Facts, FieldViolation, NhsNumber, Service,
    decide,
};
use tio_proto::v1;
use tio_store::cursors::{self, ProfilePhase, StoredHead, SubscriptionHead as Head, UnackedDelivery as Unacked};
use tio_store::{Batch, Op, Position, StoredUpdate};

use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;
use crate::app::facts::{ChildFacts, load_facts};
use crate::grpc::convert::{categories_from_proto, category_to_proto, optional_timestamp, timestamp_to_proto};

/// Deliveries in flight when the subscription does not say.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: u32 = 256;

/// The most deliveries in flight a subscription may ask for.
pub(crate) const MAX_MAX_IN_FLIGHT: u32 = 10_000;

/// How long a stream stays quiet before it sends a heartbeat.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// Updates read from the store per step.
const READ_PAGE: usize = 256;

/// The most acks one message may carry.
const MAX_ACKS_PER_MESSAGE: usize = 1024;

/// How far `lag` counts before it reports "at least this many".
const MAX_LAG_COUNTED: usize = 100_000;

/// The most subscriptions of one agency read at once (listing, and the one-copy rule).
const MAX_SUBSCRIPTIONS_READ: usize = 10_000;

fn invalid(field: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

/// The longest position token the contract allows (`common.proto`).
const MAX_POSITION_BYTES: usize = 64;

fn corrupt(what: &str) -> ServiceError {
    ServiceError::Store(tio_store::StoreError::Corrupt(format!("a stored {what} does not decode")))
}

/// Returns the categories a head takes.
fn head_categories(head: &Head) -> Vec<Category> {
    head.categories.iter().filter_map(|name| Category::from_name(name)).collect()
}

/// Returns the contract form of a head.
fn head_to_proto(head: &Head) -> v1::Subscription {
    v1::Subscription {
        name: head.name.clone(),
        categories: head_categories(head).into_iter().map(|category| category_to_proto(category) as i32).collect(),
        max_in_flight: head.max_in_flight,
        created_at: Some(timestamp_to_proto(tio_core::Timestamp::from_unix_micros(head.created_at_micros))),
    }
}

impl Broker {
    fn read_head(&self, agency: &str, name: &str) -> Result<Option<StoredHead>, ServiceError> {
        Ok(self.store().subscription_head(agency, name)?)
    }

    fn agency_heads(&self, agency: &str) -> Result<Vec<Head>, ServiceError> {
        Ok(self.store().subscription_heads(agency, MAX_SUBSCRIPTIONS_READ)?)
    }

    fn unacked(&self, agency: &str, name: &str) -> Result<BTreeMap<u64, Unacked>, ServiceError> {
        Ok(self.store().unacked_deliveries(agency, name, MAX_MAX_IN_FLIGHT as usize + 1)?)
    }

    fn subscription_entry(&self, call: &Call, detail: String) -> AuditEntry {
        AuditEntry { detail, ..self.entry(call, AuditAction::SubscriptionChanged, Outcome::Allowed) }
    }

    /// Creates a durable subscription owned by the calling agency.
    pub(crate) async fn create_subscription(
        &self,
        call: &Call,
        request: &v1::CreateSubscriptionRequest,
    ) -> Result<v1::Subscription, ServiceError> {
        let agency = self.agency_call(call, Service::Subscriptions, AuditAction::SubscriptionChanged).await?;
        AgencyId::parse("name", &request.name).map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        let categories = categories_from_proto("categories", &request.categories)?;
        if categories.is_empty() {
            return Err(invalid("categories", "must name at least one category"));
        }
        for (index, category) in categories.iter().enumerate() {
            if !agency.may_read.contains(category) {
                return Err(invalid(&format!("categories[{index}]"), format!("this agency may not read {category}")));
            }
        }
        let max_in_flight = match request.max_in_flight {
            0 => DEFAULT_MAX_IN_FLIGHT,
            n if n <= MAX_MAX_IN_FLIGHT => n,
            _ => {
                return Err(invalid(
                    "max_in_flight",
                    format!("must be 1 to {MAX_MAX_IN_FLIGHT} (0 means {DEFAULT_MAX_IN_FLIGHT})"),
                ));
            }
        };
        let live_cursor = || -> Result<Option<Vec<u8>>, ServiceError> {
            Ok(self.store().last_update_position()?.map(|position| position.as_bytes().to_vec()))
        };
        use v1::start_from::From;
        let (cursor, since_micros, profile) = match request.start.as_ref().and_then(|start| start.from.as_ref()) {
            None | Some(From::Live(_)) => (live_cursor()?, None, ProfilePhase::Done),
            Some(From::AfterPosition(position)) => {
                let field = "start.after_position.token";
                if position.token.is_empty() {
                    return Err(invalid(field, "is required"));
                }
                if position.token.len() > MAX_POSITION_BYTES {
                    return Err(invalid(field, format!("must be at most {MAX_POSITION_BYTES} bytes")));
                }
                // Only a position this broker gave out (a publish's reply, a delivery, a
                // profile entry) names a place in its order.
                if !self.store().holds_update(&Position::from_bytes(position.token.clone()))? {
                    return Err(invalid(field, "is not a position this broker issued"));
                }
                (Some(position.token.clone()), None, ProfilePhase::Done)
            }
            Some(From::Since(time)) => {
                let since = optional_timestamp("start.since", Some(time))?.unwrap_or(call.now);
                (None, Some(since.unix_micros()), ProfilePhase::Done)
            }
            Some(From::ProfileThenLive(_)) => (live_cursor()?, None, ProfilePhase::Sending { after: None }),
        };
        let head = Head {
            name: request.name.clone(),
            categories: categories.iter().map(|category| category.as_str().to_owned()).collect(),
            max_in_flight,
            created_at_micros: call.now.unix_micros(),
            cursor,
            since_micros,
            profile,
            next_number: 1,
            last_acked: 0,
            last_error: String::new(),
        };
        let mut batch = Batch::new();
        batch.require(cursors::head_absent(agency.id.as_str(), &request.name));
        batch.push(cursors::put_head(agency.id.as_str(), &head));
        batch.push(entry_op(&self.subscription_entry(call, format!("create_subscription {}", request.name))));
        self.store().commit(batch).await.map_err(|err| match err {
            tio_store::StoreError::Conflict { .. } => ServiceError::already_exists(
                "tio.v1.Subscription",
                "SUBSCRIPTION_EXISTS",
                request.name.clone(),
                format!("this agency already has a subscription `{}`", request.name),
            ),
            other => other.into(),
        })?;
        Ok(head_to_proto(&head))
    }

    /// Deletes a subscription and its unacked deliveries; it must not be open.
    pub(crate) async fn delete_subscription(&self, call: &Call, name: &str) -> Result<(), ServiceError> {
        let agency = self.agency_call(call, Service::Subscriptions, AuditAction::SubscriptionChanged).await?;
        let stored = self.read_head(agency.id.as_str(), name)?.ok_or_else(|| not_found(name))?;
        if self.stream_is_open(&stream_key(agency.id.as_str(), name)) {
            return Err(ServiceError::failed_precondition(
                "STREAM_OPEN",
                format!("subscription/{name}"),
                format!("subscription `{name}` is open; close its stream first"),
            ));
        }
        let mut batch = Batch::new();
        batch.require(stored.unchanged());
        batch.push(cursors::delete_head(agency.id.as_str(), name));
        for number in self.unacked(agency.id.as_str(), name)?.keys() {
            batch.push(cursors::delete_unacked(agency.id.as_str(), name, *number));
        }
        batch.push(entry_op(&self.subscription_entry(call, format!("delete_subscription {name}"))));
        self.store().commit(batch).await?;
        Ok(())
    }

    /// Lists the calling agency's subscriptions.
    pub(crate) async fn list_subscriptions(&self, call: &Call) -> Result<Vec<v1::Subscription>, ServiceError> {
        let agency = self.agency_call(call, Service::Subscriptions, AuditAction::SubscriptionChanged).await?;
        Ok(self.agency_heads(agency.id.as_str())?.iter().map(head_to_proto).collect())
    }

    /// Returns a subscription's lag, unacked count, numbers, last error and whether it is open.
    pub(crate) async fn subscription_status(
        &self,
        call: &Call,
        name: &str,
    ) -> Result<v1::SubscriptionStatus, ServiceError> {
        let agency = self.agency_call(call, Service::Subscriptions, AuditAction::SubscriptionChanged).await?;
        let head = self.read_head(agency.id.as_str(), name)?.ok_or_else(|| not_found(name))?.head;
        let lag = self.store().count_updates_after(head.cursor.as_deref(), MAX_LAG_COUNTED)?;
        Ok(v1::SubscriptionStatus {
            subscription: Some(head_to_proto(&head)),
            lag,
            unacked: u32::try_from(self.unacked(agency.id.as_str(), name)?.len()).unwrap_or(u32::MAX),
            last_delivered_number: head.next_number - 1,
            last_acked_number: head.last_acked,
            last_error: head.last_error,
            open: self.stream_is_open(&stream_key(agency.id.as_str(), name)),
        })
    }
}

fn not_found(name: &str) -> ServiceError {
    ServiceError::not_found(
        "tio.v1.Subscription",
        "SUBSCRIPTION_NOT_FOUND",
        name,
        format!("this agency has no subscription `{name}`"),
    )
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

/// The key of a subscription in the open-stream set.
fn stream_key(agency: &str, name: &str) -> String {
    format!("{agency}/{name}")
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

/// One open delivery stream.
pub(crate) struct DeliveryStream {
    broker: std::sync::Arc<Broker>,
    call: Call,
    agency: String,
    head: Head,
    unacked: BTreeMap<u64, Unacked>,
    window: u32,
    /// Whether the head has changes not yet stored (a cursor moved past skipped updates,
    /// acks).
    dirty: bool,
    /// Delivery numbers acked since the state was last stored.
    acked: Vec<u64>,
}

/// Releases the subscription's open-stream claim however the stream ends.
struct Claim {
    broker: std::sync::Arc<Broker>,
    key: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.broker.release_stream(&self.key);
    }
}

/// A child's facts as read for decisions: `None` once the child is erased.
struct Loaded {
    child: NhsNumber,
    facts: ChildFacts,
    relationships: Vec<tio_core::CareRelationship>,
    consents: Vec<tio_core::Consent>,
}

/// Children's facts read while deciding one page.
type FactsCache = std::collections::HashMap<tio_store::ChildIndex, Option<Loaded>>;

/// What one delivery attempt came to.
enum Attempt {
    Sent,
    Skipped,
}

impl DeliveryStream {
    /// Opens subscription `open.name` of the calling agency for streaming.
    pub(crate) async fn open(
        broker: std::sync::Arc<Broker>,
        call: Call,
        open: &v1::OpenSubscription,
    ) -> Result<DeliveryStream, ServiceError> {
        let agency = broker.agency_call(&call, Service::Subscriptions, AuditAction::Delivery).await?;
        let head = broker.read_head(agency.id.as_str(), &open.name)?.ok_or_else(|| not_found(&open.name))?.head;
        let unacked = broker.unacked(agency.id.as_str(), &open.name)?;
        let window = match open.credit {
            0 => head.max_in_flight,
            credit => credit.min(head.max_in_flight),
        };
        Ok(DeliveryStream {
            broker,
            call,
            agency: agency.id.as_str().to_owned(),
            head,
            unacked,
            window,
            dirty: false,
            acked: Vec::new(),
        })
    }

    /// Runs the stream: redelivers what is unacked, then delivers as credit allows,
    /// handles acks and credit, heartbeats when quiet, and stops when the client goes,
    /// the agency is suspended or the certificate revoked.
    pub(crate) async fn run(
        mut self,
        mut inbound: tonic::Streaming<v1::SubscribeRequest>,
        outbound: tokio::sync::mpsc::Sender<Result<v1::SubscribeResponse, tonic::Status>>,
    ) -> StreamEnd {
        let key = stream_key(&self.agency, &self.head.name);
        if !self.broker.claim_stream(&key) {
            return StreamEnd::Error(ServiceError::failed_precondition(
                "STREAM_ALREADY_OPEN",
                format!("subscription/{}", self.head.name),
                format!("subscription `{}` is already open on another stream", self.head.name),
            ));
        }
        let _claim = Claim { broker: self.broker.clone(), key };
        let mut changes = self.broker.watch_changes();
        let end = self.serve(&mut inbound, &outbound, &mut changes).await;
        match &end {
            StreamEnd::Error(err) => self.head.last_error = err.to_string(),
            StreamEnd::Refused(status) => self.head.last_error = status.message().to_owned(),
            StreamEnd::ClientGone => {}
        }
        self.dirty |= !matches!(end, StreamEnd::ClientGone);
        // Keep the cursor moved past skipped updates, and the last error.
        if self.dirty {
            let _ = self.store_head().await;
        }
        end
    }

    async fn serve(
        &mut self,
        inbound: &mut tonic::Streaming<v1::SubscribeRequest>,
        outbound: &tokio::sync::mpsc::Sender<Result<v1::SubscribeResponse, tonic::Status>>,
        changes: &mut tokio::sync::watch::Receiver<u64>,
    ) -> StreamEnd {
        use futures_util::{FutureExt, StreamExt};
        if let Err(end) = self.redeliver(outbound).await {
            return end;
        }
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            // Acks and credit first, without waiting.
            while let Some(message) = inbound.next().now_or_never() {
                if let Err(end) = self.handle(message).await {
                    return end;
                }
            }
            let agency = match self.current_agency() {
                Ok(agency) => agency,
                Err(end) => return end,
            };
            let mut progressed = false;
            if (self.unacked.len() as u64) < u64::from(self.window) {
                match self.step(&agency, outbound).await {
                    Ok(moved) => progressed = moved,
                    Err(end) => return end,
                }
            }
            if progressed {
                quiet_since = tokio::time::Instant::now();
                continue;
            }
            // Nothing to send now: store what is pending (acks, a moved cursor) first.
            if self.dirty
                && let Err(err) = self.store_head().await
            {
                return StreamEnd::Error(err);
            }
            let heartbeat_at = quiet_since + HEARTBEAT_INTERVAL;
            tokio::select! {
                message = inbound.next() => {
                    if let Err(end) = self.handle(message).await {
                        return end;
                    }
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        return StreamEnd::ClientGone;
                    }
                }
                () = tokio::time::sleep_until(heartbeat_at) => {
                    if self.dirty && let Err(err) = self.store_head().await {
                        return StreamEnd::Error(err);
                    }
                    let heartbeat = v1::Heartbeat {
                        latest_delivery_number: self.head.next_number - 1,
                        latest_position: self.head.cursor.clone().map(|token| v1::Position { token }),
                        at: Some(timestamp_to_proto(self.broker.now())),
                    };
                    let message = v1::SubscribeResponse { message: Some(v1::subscribe_response::Message::Heartbeat(heartbeat)) };
                    if outbound.send(Ok(message)).await.is_err() {
                        return StreamEnd::ClientGone;
                    }
                    quiet_since = tokio::time::Instant::now();
                }
            }
        }
    }

    /// Returns the agency as registered now, or ends the stream if it may no longer
    /// connect (suspended, certificate revoked, removed).
    fn current_agency(&self) -> Result<Agency, StreamEnd> {
        let registry = self.broker.registry();
        if let Err(refused) = registry.admit(&self.call.caller.identity, &self.call.caller.certificate_fingerprint) {
            // The same status a new call would get (suspended: PERMISSION_DENIED).
            return Err(StreamEnd::Error(ServiceError::Unauthenticated(refused)));
        }
        registry.agency(&self.agency).ok_or_else(|| {
            StreamEnd::Error(ServiceError::Unauthenticated(crate::app::registry::AuthError::Unknown {
                role: "agency",
                id: self.agency.clone(),
            }))
        })
    }

    /// Handles one client message: acks free slots, credit widens the window.
    async fn handle(&mut self, message: Option<Result<v1::SubscribeRequest, tonic::Status>>) -> Result<(), StreamEnd> {
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
            Some(Message::Ack(ack)) => {
                if ack.delivery_numbers.len() > MAX_ACKS_PER_MESSAGE {
                    return Err(StreamEnd::Error(invalid(
                        "ack.delivery_numbers",
                        format!("at most {MAX_ACKS_PER_MESSAGE} per message"),
                    )));
                }
                // A number never sent is a client fault, said at once; a number acked
                // already, or no longer in flight, is ignored, so that acks may be sent
                // again after a reconnect.
                let latest = self.head.next_number - 1;
                if let Some(never_sent) = ack.delivery_numbers.iter().find(|&&number| number == 0 || number > latest) {
                    return Err(StreamEnd::Error(invalid(
                        "ack.delivery_numbers",
                        format!("delivery number {never_sent} was never sent on this subscription (latest: {latest})"),
                    )));
                }
                for number in ack.delivery_numbers {
                    if self.unacked.remove(&number).is_some() {
                        self.acked.push(number);
                        self.head.last_acked = self.head.last_acked.max(number);
                        self.dirty = true;
                    }
                }
                // Acks are stored with the next commit, or when the stream goes quiet: an
                // ack lost to a crash only means one more redelivery (at least once).
                if self.acked.len() >= MAX_ACKS_PER_MESSAGE {
                    self.store_head().await.map_err(StreamEnd::Error)?;
                }
                Ok(())
            }
            Some(Message::Credit(credit)) => {
                if credit.additional == 0 {
                    return Err(StreamEnd::Error(invalid("credit.additional", "must be at least 1")));
                }
                self.window = self.window.saturating_add(credit.additional).min(self.head.max_in_flight);
                Ok(())
            }
            Some(Message::Open(_)) | None => Err(StreamEnd::Error(open_first())),
        }
    }

    /// Sends every unacked delivery again, with its number, if it is still allowed.
    async fn redeliver(
        &mut self,
        outbound: &tokio::sync::mpsc::Sender<Result<v1::SubscribeResponse, tonic::Status>>,
    ) -> Result<(), StreamEnd> {
        let agency = self.current_agency()?;
        let pending: Vec<(u64, Unacked)> = self.unacked.iter().map(|(n, u)| (*n, u.clone())).collect();
        for (number, unacked) in pending {
            let position = Position::from_bytes(unacked.position.clone());
            let update = self.broker.store().update_at(&position).map_err(|err| StreamEnd::Error(err.into()))?;
            let decided = match update {
                Some(update) => self.decide(&agency, &update).map_err(StreamEnd::Error)?,
                None => None,
            };
            match decided {
                Some((update, child, Decision::Allow(grant), facts)) => {
                    let mut entry = self.delivery_entry(&update, &child, Outcome::Allowed)?;
                    entry.detail = "redelivery".to_owned();
                    fill_grant(&mut entry, &grant);
                    let mut batch = Batch::new();
                    add_grant_conditions(&self.broker, &mut batch, &child, &grant, &facts);
                    batch.push(entry_op(&entry));
                    match self.broker.store().commit(batch).await {
                        Ok(_) => {}
                        // What allowed it changed this instant: decided again on the next open.
                        Err(tio_store::StoreError::Conflict { .. }) => continue,
                        Err(err) => return Err(StreamEnd::Error(err.into())),
                    }
                    let delivery = delivery(number, true, &update, &child, unacked.from_profile)?;
                    send(outbound, delivery).await?;
                }
                other => {
                    // No longer allowed (or gone): it leaves the window, and a refusal is audited.
                    self.unacked.remove(&number);
                    let mut batch = Batch::new();
                    batch.push(cursors::delete_unacked(&self.agency, &self.head.name, number));
                    if let Some((update, child, Decision::Deny(reason), facts)) = other
                        && auditable_skip(reason, &facts, &self.agency)
                    {
                        batch.push(entry_op(&self.skip_entry(&update, &child, reason)?));
                    }
                    batch.ops.extend(self.state_ops(&self.head));
                    self.broker.store().commit(batch).await.map_err(|err| StreamEnd::Error(err.into()))?;
                    self.stored();
                }
            }
        }
        Ok(())
    }

    /// Takes the next step: the next profile value or the next live updates. Returns
    /// whether anything was considered (false when there is nothing new).
    async fn step(
        &mut self,
        agency: &Agency,
        outbound: &tokio::sync::mpsc::Sender<Result<v1::SubscribeResponse, tonic::Status>>,
    ) -> Result<bool, StreamEnd> {
        let categories = head_categories(&self.head);
        let shadowed = self.shadowed_categories().map_err(StreamEnd::Error)?;
        let store = self.broker.store().clone();
        if let ProfilePhase::Sending { after } = &self.head.profile {
            let page = store.latest_after(after.as_deref(), READ_PAGE).map_err(|err| StreamEnd::Error(err.into()))?;
            if page.is_empty() {
                self.head.profile = ProfilePhase::Done;
                self.dirty = true;
                return Ok(true);
            }
            for (latest_key, position) in page {
                if (self.unacked.len() as u64) >= u64::from(self.window) {
                    break;
                }
                self.head.profile = ProfilePhase::Sending { after: Some(latest_key) };
                self.dirty = true;
                // Values newer than the live cursor come in the live phase: no duplicate.
                if self.head.cursor.as_deref().is_none_or(|cursor| position.as_bytes() > cursor) {
                    continue;
                }
                let Some(update) = store.update_at(&position).map_err(|err| StreamEnd::Error(err.into()))? else {
                    continue;
                };
                if !categories.contains(&update.category) || shadowed.contains(&update.category) {
                    continue;
                }
                self.attempt(agency, update, true, outbound).await?;
            }
            return Ok(true);
        }

        let after = self.head.cursor.clone().map(Position::from_bytes);
        let page = store.updates_after(after.as_ref(), READ_PAGE).map_err(|err| StreamEnd::Error(err.into()))?;
        if page.is_empty() {
            return Ok(false);
        }
        let since_micros = self.head.since_micros;
        let wanted = move |update: &StoredUpdate| {
            categories.contains(&update.category)
                && !shadowed.contains(&update.category)
                && since_micros.is_none_or(|since| update.committed_at.unix_micros() >= since)
        };
        // Fast path: the whole page decided and committed as one batch, then sent.
        if self.deliver_page(agency, &page, &wanted, outbound).await? {
            return Ok(true);
        }
        // Something that allowed a delivery changed while the page was decided: go one
        // update at a time, each decided again.
        for update in page {
            if (self.unacked.len() as u64) >= u64::from(self.window) {
                break;
            }
            let position = update.position.as_bytes().to_vec();
            if wanted(&update) {
                // The cursor moves with the delivery's own commit.
                self.head.cursor = Some(position);
                self.attempt(agency, update, false, outbound).await?;
            } else {
                self.head.cursor = Some(position);
                self.dirty = true;
            }
        }
        Ok(true)
    }

    /// Decides a page of live updates and commits every delivery and audited skip of it
    /// in one batch (the head, the unacked records, the audit entries, and the
    /// preconditions of every grant), then sends the deliveries in order. Returns false,
    /// having changed nothing, if a precondition failed.
    async fn deliver_page(
        &mut self,
        agency: &Agency,
        page: &[StoredUpdate],
        wanted: &(dyn Fn(&StoredUpdate) -> bool + Sync),
        outbound: &tokio::sync::mpsc::Sender<Result<v1::SubscribeResponse, tonic::Status>>,
    ) -> Result<bool, StreamEnd> {
        let mut head = self.head.clone();
        let mut batch = Batch::new();
        let mut sends = Vec::new();
        let mut denials = Vec::new();
        let mut cache = FactsCache::new();
        for update in page {
            if (self.unacked.len() + sends.len()) as u64 >= u64::from(self.window) {
                break;
            }
            head.cursor = Some(update.position.as_bytes().to_vec());
            if !wanted(update) {
                continue;
            }
            let Some((update, child, decision, facts)) =
                self.decide_with(agency, update, &mut cache).map_err(StreamEnd::Error)?
            else {
                continue;
            };
            match decision {
                Decision::Allow(grant) => {
                    let number = head.next_number;
                    head.next_number += 1;
                    let mut entry = self.delivery_entry(&update, &child, Outcome::Allowed)?;
                    fill_grant(&mut entry, &grant);
                    add_grant_conditions(&self.broker, &mut batch, &child, &grant, &facts);
                    let unacked = Unacked { position: update.position.as_bytes().to_vec(), from_profile: false };
                    batch.push(cursors::put_unacked(&self.agency, &head.name, number, &unacked));
                    batch.push(entry_op(&entry));
                    sends.push((number, unacked, update, child));
                }
                Decision::Deny(reason) => {
                    denials.push(reason);
                    if auditable_skip(reason, &facts, &self.agency) {
                        batch.push(entry_op(&self.skip_entry(&update, &child, reason)?));
                    }
                }
            }
        }
        batch.ops.extend(self.state_ops(&head));
        match self.broker.store().commit(batch).await {
            Ok(_) => {}
            Err(tio_store::StoreError::Conflict { .. }) => return Ok(false),
            Err(err) => return Err(StreamEnd::Error(err.into())),
        }
        self.head = head;
        self.stored();
        for reason in denials {
            self.broker.metrics().denied(AuditAction::Delivery.code(), reason.code());
        }
        for (number, unacked, update, child) in sends {
            self.unacked.insert(number, unacked);
            send(outbound, delivery(number, false, &update, &child, false)?).await?;
            let lag = self.broker.now().unix_micros().saturating_sub(update.committed_at.unix_micros());
            self.broker.metrics().delivered(Duration::from_micros(u64::try_from(lag).unwrap_or(0)));
        }
        Ok(true)
    }

    /// Categories another subscription of this agency with an earlier name also takes:
    /// the earlier one delivers them, so the agency gets one copy.
    fn shadowed_categories(&self) -> Result<Vec<Category>, ServiceError> {
        let heads = self.broker.agency_heads(&self.agency)?;
        Ok(heads.iter().filter(|head| head.name < self.head.name).flat_map(head_categories).collect())
    }

    /// Decides one update for this agency now; `None` if its child was erased.
    #[allow(clippy::type_complexity)]
    fn decide(
        &self,
        agency: &Agency,
        update: &StoredUpdate,
    ) -> Result<Option<(StoredUpdate, NhsNumber, Decision, ChildFacts)>, ServiceError> {
        self.decide_with(agency, update, &mut FactsCache::new())
    }

    /// Like [`DeliveryStream::decide`], reading each child's facts once per `cache`. A
    /// page's deliveries commit under preconditions on what allowed them, so facts that
    /// changed meanwhile fail the commit rather than slip through.
    #[allow(clippy::type_complexity)]
    fn decide_with(
        &self,
        agency: &Agency,
        update: &StoredUpdate,
        cache: &mut FactsCache,
    ) -> Result<Option<(StoredUpdate, NhsNumber, Decision, ChildFacts)>, ServiceError> {
        if update.content.is_none() {
            return Ok(None);
        }
        let loaded = match cache.entry(update.child) {
            std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let loaded = match self.broker.store().child_nhs_number(update.child)? {
                    None => None,
                    Some(digits) => {
                        let child = NhsNumber::parse_checked(&digits).map_err(|_| corrupt("NHS number"))?;
                        let facts = load_facts(self.broker.store(), &child)?;
                        let (relationships, consents) = facts.domain();
                        Some(Loaded { child, facts, relationships, consents })
                    }
                };
                slot.insert(loaded)
            }
        };
        let Some(loaded) = loaded else { return Ok(None) };
        let question = AccessRequest { agency, action: Action::Receive, category: update.category };
        let facts = Facts { relationships: &loaded.relationships, consents: &loaded.consents };
        let decision = decide(&question, &facts, self.broker.now());
        Ok(Some((update.clone(), loaded.child, decision, loaded.facts.clone())))
    }

    /// Decides one update and delivers it, or skips it (auditing the skip if the agency
    /// knows the child), committing the head with either.
    async fn attempt(
        &mut self,
        agency: &Agency,
        update: StoredUpdate,
        from_profile: bool,
        outbound: &tokio::sync::mpsc::Sender<Result<v1::SubscribeResponse, tonic::Status>>,
    ) -> Result<Attempt, StreamEnd> {
        // A consent or relationship that changes between the decision and the commit
        // fails the commit's precondition; decide again, a few times at most.
        for _ in 0..4 {
            let Some((update, child, decision, facts)) = self.decide(agency, &update).map_err(StreamEnd::Error)? else {
                self.dirty = true;
                return Ok(Attempt::Skipped);
            };
            let mut batch = Batch::new();
            match &decision {
                Decision::Allow(grant) => {
                    let number = self.head.next_number;
                    let mut entry = self.delivery_entry(&update, &child, Outcome::Allowed)?;
                    fill_grant(&mut entry, grant);
                    add_grant_conditions(&self.broker, &mut batch, &child, grant, &facts);
                    let unacked = Unacked { position: update.position.as_bytes().to_vec(), from_profile };
                    let mut head = self.head.clone();
                    head.next_number += 1;
                    batch.push(cursors::put_unacked(&self.agency, &self.head.name, number, &unacked));
                    batch.ops.extend(self.state_ops(&head));
                    batch.push(entry_op(&entry));
                    match self.broker.store().commit(batch).await {
                        Ok(_) => {}
                        Err(tio_store::StoreError::Conflict { .. }) => continue,
                        Err(err) => return Err(StreamEnd::Error(err.into())),
                    }
                    self.head = head;
                    self.stored();
                    self.unacked.insert(number, unacked);
                    send(outbound, delivery(number, false, &update, &child, from_profile)?).await?;
                    let lag = self.broker.now().unix_micros().saturating_sub(update.committed_at.unix_micros());
                    self.broker.metrics().delivered(Duration::from_micros(u64::try_from(lag).unwrap_or(0)));
                    return Ok(Attempt::Sent);
                }
                Decision::Deny(reason) => {
                    self.broker.metrics().denied(AuditAction::Delivery.code(), reason.code());
                    if auditable_skip(*reason, &facts, &self.agency) {
                        batch.push(entry_op(&self.skip_entry(&update, &child, *reason)?));
                        batch.ops.extend(self.state_ops(&self.head));
                        self.broker.store().commit(batch).await.map_err(|err| StreamEnd::Error(err.into()))?;
                        self.stored();
                    } else {
                        self.dirty = true;
                    }
                    return Ok(Attempt::Skipped);
                }
            }
        }
        Err(StreamEnd::Error(ServiceError::Store(tio_store::StoreError::Conflict { index: 0 })))
    }

    fn delivery_entry(
        &self,
        update: &StoredUpdate,
        child: &NhsNumber,
        outcome: Outcome,
    ) -> Result<AuditEntry, StreamEnd> {
        let call = Call { now: self.broker.now(), ..self.call.clone() };
        let mut entry = self.broker.entry(&call, AuditAction::Delivery, outcome);
        self.broker.name_child(&mut entry, child).map_err(StreamEnd::Error)?;
        entry.categories = vec![update.category.as_str().to_owned()];
        entry.update_id = update.update_id.to_string();
        entry.recipient_agency_id = self.agency.clone();
        Ok(entry)
    }

    /// The audit entry of a delivery refused at the moment of sending.
    fn skip_entry(
        &self,
        update: &StoredUpdate,
        child: &NhsNumber,
        reason: DenyReason,
    ) -> Result<AuditEntry, StreamEnd> {
        let mut entry = self.delivery_entry(update, child, Outcome::Denied)?;
        entry.action = AuditAction::DeliverySkipped.code().to_owned();
        entry.reason = reason.code().to_owned();
        Ok(entry)
    }

    /// The operations that store the stream's state: `head`, and the acks not yet stored.
    fn state_ops(&self, head: &Head) -> Vec<Op> {
        let mut ops: Vec<Op> =
            self.acked.iter().map(|number| cursors::delete_unacked(&self.agency, &head.name, *number)).collect();
        ops.push(cursors::put_head(&self.agency, head));
        ops
    }

    /// Notes that the state (head and acks) has been stored.
    fn stored(&mut self) {
        self.acked.clear();
        self.dirty = false;
    }

    async fn store_head(&mut self) -> Result<(), ServiceError> {
        let mut batch = Batch::new();
        batch.ops.extend(self.state_ops(&self.head));
        self.broker.store().commit(batch).await?;
        self.stored();
        Ok(())
    }
}

/// Whether a refused delivery is worth an audit entry: always, unless the agency has
/// never been involved with the child (then the update was never its business, and
/// logging it for every agency would swamp the log).
fn auditable_skip(reason: DenyReason, facts: &ChildFacts, agency: &str) -> bool {
    reason != DenyReason::NotInvolved
        || facts.relationships.iter().any(|stored| stored.record.relationship.agency.as_str() == agency)
}

fn fill_grant(entry: &mut AuditEntry, grant: &tio_core::Grant) {
    if let Some((consent, revision)) = &grant.consent {
        entry.consent_id = consent.0.clone();
        entry.consent_revision = *revision;
    }
    if let Some(relationship) = &grant.relationship {
        entry.relationship_id = relationship.0.clone();
    }
}

/// Makes the delivery's commit depend on the consent revision and the relationship that
/// allowed it being unchanged.
fn add_grant_conditions(
    broker: &Broker,
    batch: &mut Batch,
    child: &NhsNumber,
    grant: &tio_core::Grant,
    facts: &ChildFacts,
) {
    if let Some((consent, revision)) = &grant.consent {
        batch.require(broker.store().consent_unrevised(child, consent, *revision));
    }
    if let Some(relationship) = &grant.relationship
        && let Some(stored) = facts.relationships.iter().find(|stored| &stored.record.relationship.id == relationship)
    {
        batch.require(stored.unchanged());
    }
}

fn delivery(
    number: u64,
    redelivery: bool,
    update: &StoredUpdate,
    child: &NhsNumber,
    from_profile: bool,
) -> Result<v1::Delivery, StreamEnd> {
    use prost::Message;
    let content = update.content.as_ref().ok_or_else(|| StreamEnd::Error(corrupt("update")))?;
    let value =
        v1::CategoryValue::decode(content.value.as_slice()).map_err(|_| StreamEnd::Error(corrupt("category value")))?;
    Ok(v1::Delivery {
        delivery_number: number,
        redelivery,
        update_id: update.update_id.to_string(),
        position: Some(v1::Position { token: update.position.as_bytes().to_vec() }),
        child: Some(v1::ChildRef { nhs_number: child.digits() }),
        category: category_to_proto(update.category) as i32,
        value: Some(value),
        publisher_agency_id: update.publisher.clone(),
        source_reference: content.source_reference.clone(),
        committed_at: Some(timestamp_to_proto(update.committed_at)),
        from_profile,
    })
}

async fn send(
    outbound: &tokio::sync::mpsc::Sender<Result<v1::SubscribeResponse, tonic::Status>>,
    delivery: v1::Delivery,
) -> Result<(), StreamEnd> {
    let message = v1::SubscribeResponse { message: Some(v1::subscribe_response::Message::Delivery(delivery)) };
    outbound.send(Ok(message)).await.map_err(|_| StreamEnd::ClientGone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::convert::categories_to_proto;

    #[test]
    fn heads_show_in_the_contract_with_their_categories() {
        let head = Head {
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
