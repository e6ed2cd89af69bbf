//! Creating, deleting, listing and reporting on subscriptions.

use tio_audit::entry::{Action as AuditAction, AuditEntry, Outcome};
use tio_audit_log::entry_op;
use tio_core::{Agency, AgencyId, CategorySet, FieldViolation, Service, Timestamp};
use tio_store::cursors::{self, ProfilePhase, SubscriptionHead};
use tio_store::{Batch, Position};

use super::{DEFAULT_MAX_IN_FLIGHT, MAX_MAX_IN_FLIGHT, MAX_SUBSCRIPTIONS_READ, not_found, stream_key};
use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;

/// How far `lag` counts before it reports "at least this many".
const MAX_LAG_COUNTED: usize = 100_000;

/// The longest position token the contract allows (`common.proto`).
const MAX_POSITION_BYTES: usize = 64;

/// Where a new subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// With updates committed from now on.
    Live,
    /// After the update at this position (one the broker issued).
    AfterPosition(Vec<u8>),
    /// With updates committed at or after this time (now, if not given).
    Since(Option<Timestamp>),
    /// With the latest value of each category of every child it may receive, then live.
    ProfileThenLive,
}

/// A subscription as an agency asks to create it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewSubscription {
    /// Its name, unique per agency: the rules of an agency id.
    pub(crate) name: String,
    /// The categories it takes: at least one, each one the agency may read.
    pub(crate) categories: CategorySet,
    /// Deliveries in flight at most; 0 for the default.
    pub(crate) max_in_flight: u32,
    /// Where it starts.
    pub(crate) start: Start,
}

/// A subscription's state, as its status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionState {
    /// Its head.
    pub(crate) head: SubscriptionHead,
    /// Updates after its cursor (counted up to a bound).
    pub(crate) lag: u64,
    /// Deliveries sent and not acked.
    pub(crate) unacked: u32,
    /// Whether a stream has it open.
    pub(crate) open: bool,
}

/// An agency admitted to manage its subscriptions.
pub(crate) struct Subscriber<'a> {
    broker: &'a Broker,
    call: &'a Call,
    agency: Agency,
}

impl Broker {
    /// Admits the calling agency to manage its subscriptions.
    pub(crate) async fn subscriber<'a>(&'a self, call: &'a Call) -> Result<Subscriber<'a>, ServiceError> {
        let agency = self.agency_call(call, Service::Subscriptions, AuditAction::SubscriptionChanged).await?;
        Ok(Subscriber { broker: self, call, agency })
    }

    /// Returns the heads of `agency`'s subscriptions, in name order.
    pub(crate) fn agency_heads(&self, agency: &str) -> Result<Vec<SubscriptionHead>, ServiceError> {
        Ok(self.store().subscription_heads(agency, MAX_SUBSCRIPTIONS_READ)?)
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

impl Subscriber<'_> {
    fn entry(&self, detail: String) -> AuditEntry {
        AuditEntry { detail, ..self.broker.entry(self.call, AuditAction::SubscriptionChanged, Outcome::Allowed) }
    }

    fn id(&self) -> &str {
        self.agency.id.as_str()
    }

    /// Creates a durable subscription owned by the agency.
    pub(crate) async fn create(&self, new: NewSubscription) -> Result<SubscriptionHead, ServiceError> {
        AgencyId::parse("name", &new.name).map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?;
        if new.categories.is_empty() {
            return Err(invalid("categories", "must name at least one category"));
        }
        for (index, category) in new.categories.iter().enumerate() {
            if !self.agency.may_read.contains(category) {
                return Err(invalid(&format!("categories[{index}]"), format!("this agency may not read {category}")));
            }
        }
        let max_in_flight = match new.max_in_flight {
            0 => DEFAULT_MAX_IN_FLIGHT,
            n if n <= MAX_MAX_IN_FLIGHT => n,
            _ => {
                return Err(invalid(
                    "max_in_flight",
                    format!("must be 1 to {MAX_MAX_IN_FLIGHT} (0 means {DEFAULT_MAX_IN_FLIGHT})"),
                ));
            }
        };
        let store = self.broker.store();
        let live_cursor = || -> Result<Option<Vec<u8>>, ServiceError> {
            Ok(store.last_update_position()?.map(|position| position.as_bytes().to_vec()))
        };
        let (cursor, since_micros, profile) = match new.start {
            Start::Live => (live_cursor()?, None, ProfilePhase::Done),
            Start::AfterPosition(token) => {
                let field = "start.after_position.token";
                if token.is_empty() {
                    return Err(invalid(field, "is required"));
                }
                if token.len() > MAX_POSITION_BYTES {
                    return Err(invalid(field, format!("must be at most {MAX_POSITION_BYTES} bytes")));
                }
                // Only a position this broker gave out (a publish's reply, a delivery, a
                // profile entry) names a place in its order.
                if !store.holds_update(&Position::from_bytes(token.clone()))? {
                    return Err(invalid(field, "is not a position this broker issued"));
                }
                (Some(token), None, ProfilePhase::Done)
            }
            Start::Since(since) => (None, Some(since.unwrap_or(self.call.now).unix_micros()), ProfilePhase::Done),
            Start::ProfileThenLive => (live_cursor()?, None, ProfilePhase::Sending { after: None }),
        };
        let head = SubscriptionHead {
            name: new.name.clone(),
            categories: new.categories.iter().map(|category| category.as_str().to_owned()).collect(),
            max_in_flight,
            created_at_micros: self.call.now.unix_micros(),
            cursor,
            since_micros,
            profile,
            next_number: 1,
            last_acked: 0,
            last_error: String::new(),
        };
        let mut batch = Batch::new();
        batch.require(cursors::head_absent(self.id(), &new.name));
        batch.push(cursors::put_head(self.id(), &head));
        batch.push(entry_op(&self.entry(format!("create_subscription {}", new.name))));
        store.commit(batch).await.map_err(|err| match err {
            tio_store::StoreError::Conflict { .. } => ServiceError::already_exists(
                "tio.v1.Subscription",
                "SUBSCRIPTION_EXISTS",
                new.name.clone(),
                format!("this agency already has a subscription `{}`", new.name),
            ),
            other => other.into(),
        })?;
        self.broker.note_subscriptions_changed();
        Ok(head)
    }

    /// Deletes a subscription and its unacked deliveries; it must not be open.
    pub(crate) async fn delete(&self, name: &str) -> Result<(), ServiceError> {
        let store = self.broker.store();
        // Whether it is open first, then the head: a stream that closes in between
        // stores its head as it goes, which a head read before would not be.
        let open = self.broker.stream_is_open(&stream_key(self.id(), name))?;
        let stored = store.subscription_head(self.id(), name)?.ok_or_else(|| not_found(name))?;
        if open {
            return Err(ServiceError::failed_precondition(
                "STREAM_OPEN",
                format!("subscription/{name}"),
                format!("subscription `{name}` is open; close its stream first"),
            ));
        }
        let mut batch = Batch::new();
        batch.require(stored.unchanged());
        batch.push(cursors::delete_head(self.id(), name));
        for number in store.unacked_deliveries(self.id(), name, MAX_MAX_IN_FLIGHT as usize + 1)?.keys() {
            batch.push(cursors::delete_unacked(self.id(), name, *number));
        }
        batch.push(entry_op(&self.entry(format!("delete_subscription {name}"))));
        store.commit(batch).await?;
        self.broker.note_subscriptions_changed();
        Ok(())
    }

    /// Lists the agency's subscriptions, in name order.
    pub(crate) fn list(&self) -> Result<Vec<SubscriptionHead>, ServiceError> {
        self.broker.agency_heads(self.id())
    }

    /// Returns a subscription's lag, unacked count, numbers, last error and whether it
    /// is open.
    pub(crate) fn status(&self, name: &str) -> Result<SubscriptionState, ServiceError> {
        let store = self.broker.store();
        let head = store.subscription_head(self.id(), name)?.ok_or_else(|| not_found(name))?.head;
        let lag = store.count_updates_after(head.cursor.as_deref(), MAX_LAG_COUNTED)?;
        let unacked = store.unacked_deliveries(self.id(), name, MAX_MAX_IN_FLIGHT as usize + 1)?.len();
        Ok(SubscriptionState {
            head,
            lag,
            unacked: u32::try_from(unacked).unwrap_or(u32::MAX),
            open: self.broker.stream_is_open(&stream_key(self.id(), name))?,
        })
    }
}
