//! A subscriber that keeps its delivery stream open across broker restarts and network
//! failures, resuming where its acknowledgements left off.

use std::time::Duration;

use tio_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::{Client, ClientError};

/// The first wait before reconnecting; it doubles on each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Receives deliveries on one subscription, reconnecting when the stream breaks.
///
/// The broker keeps every delivery not yet acknowledged and sends it again, with its
/// number, on the next connection; deliveries are at least once, so this subscriber
/// also drops any it has already acknowledged. Errors that a reconnect cannot cure
/// (no such subscription, the agency suspended, a bad certificate) are returned.
///
/// ```no_run
/// # async fn run(client: tio_client::Client) -> Result<(), tio_client::ClientError> {
/// use tio_client::DeliveryKind;
/// let mut subscriber = tio_client::Subscriber::new(client, "main");
/// loop {
///     let delivery = subscriber.next().await?;
///     match DeliveryKind::of(&delivery) {
///         Some(DeliveryKind::Value(value)) => { /* store it as the current value */ }
///         Some(DeliveryKind::Correction { amended_update_id, value, .. }) => {
///             /* replace what came from `amended_update_id` with `value` (or remove it) */
///         }
///         Some(DeliveryKind::Retraction { amended_update_id, .. }) => {
///             /* withdraw what came from `amended_update_id` */
///         }
///         Some(DeliveryKind::Erasure { amended_update_id }) => {
///             /* erase what came from `amended_update_id` */
///         }
///         None => {}
///     }
///     // ... once the agency's own system holds the change:
///     subscriber.ack(delivery.delivery_number).await?;
/// }
/// # }
/// ```
pub struct Subscriber {
    client: Client,
    name: String,
    credit: u32,
    max_attempts: u32,
    last_acked: u64,
    stream: Option<OpenStream>,
}

/// What a delivery asks the receiving system to do: [`DeliveryKind::of`] reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeliveryKind<'a> {
    /// A category's new whole value: store it as the child's current value of the
    /// category (it replaces the previous one).
    Value(&'a v1::CategoryValue),
    /// An update this agency was given before was wrong. Replace what came from
    /// `amended_update_id` with `value`; if `value` is `None` (this agency may not see
    /// the corrected value now), delete or mark as wrong what came from it.
    Correction {
        /// The update this agency holds that is wrong.
        amended_update_id: &'a str,
        /// The publisher's reason.
        reason: &'a str,
        /// The corrected value, if this agency may see it now.
        value: Option<&'a v1::CategoryValue>,
    },
    /// An update this agency was given before was entered in error: withdraw what came
    /// from `amended_update_id`. The category's value is the one before it, if this
    /// agency had it, or none.
    Retraction {
        /// The update to withdraw.
        amended_update_id: &'a str,
        /// The publisher's reason.
        reason: &'a str,
    },
    /// The child was erased (UK GDPR Art. 17): erase what came from
    /// `amended_update_id`. The delivery names no child; the update id is how the
    /// receiving system finds what to erase.
    Erasure {
        /// The update to erase.
        amended_update_id: &'a str,
    },
}

impl<'a> DeliveryKind<'a> {
    /// Reads what `delivery` asks for; `None` for a delivery that has neither a value
    /// nor an amendment (which the broker never sends).
    pub fn of(delivery: &'a v1::Delivery) -> Option<DeliveryKind<'a>> {
        let Some(amendment) = &delivery.amendment else { return delivery.value.as_ref().map(DeliveryKind::Value) };
        let (amended_update_id, reason) = (amendment.amended_update_id.as_str(), amendment.reason.as_str());
        match amendment.kind() {
            v1::AmendmentKind::Correction => {
                Some(DeliveryKind::Correction { amended_update_id, reason, value: delivery.value.as_ref() })
            }
            v1::AmendmentKind::Retraction => Some(DeliveryKind::Retraction { amended_update_id, reason }),
            v1::AmendmentKind::Erasure => Some(DeliveryKind::Erasure { amended_update_id }),
            v1::AmendmentKind::Unspecified => None,
        }
    }
}

/// Says in one line what an amendment asks of the receiving system, for people
/// watching a subscription (it names update ids, never the child).
pub fn describe_amendment(delivery: &v1::Delivery, amendment: &v1::Amendment) -> String {
    let category = v1::Category::try_from(delivery.category)
        .map_or("a category", |category| category.as_str_name().strip_prefix("CATEGORY_").unwrap_or("a category"));
    let category = category.to_lowercase();
    match DeliveryKind::of(delivery) {
        Some(DeliveryKind::Correction { value: Some(_), .. }) => format!(
            "correction: update {} ({category}) was wrong; replace it with the value in delivery {} (reason: {})",
            amendment.amended_update_id, delivery.delivery_number, amendment.reason
        ),
        Some(DeliveryKind::Correction { value: None, .. }) => format!(
            "correction: update {} ({category}) was wrong; remove it (this agency may not see the corrected value now; reason: {})",
            amendment.amended_update_id, amendment.reason
        ),
        Some(DeliveryKind::Erasure { .. }) => format!(
            "erasure: the child of update {} ({category}) was erased; erase what came from it",
            amendment.amended_update_id
        ),
        _ => format!(
            "retraction: update {} ({category}) was entered in error; withdraw it (reason: {})",
            amendment.amended_update_id, amendment.reason
        ),
    }
}

struct OpenStream {
    requests: mpsc::Sender<v1::SubscribeRequest>,
    responses: tonic::Streaming<v1::SubscribeResponse>,
}

impl Subscriber {
    /// Returns a subscriber for subscription `name` (which must exist) over `client`.
    pub fn new(client: Client, name: impl Into<String>) -> Subscriber {
        Subscriber { client, name: name.into(), credit: 0, max_attempts: 20, last_acked: 0, stream: None }
    }

    /// Sets the initial credit asked for on each connection (0, the default, means the
    /// subscription's `max_in_flight`).
    #[must_use]
    pub fn with_credit(mut self, credit: u32) -> Subscriber {
        self.credit = credit;
        self
    }

    /// Sets how many reconnection attempts in a row may fail before `next` gives up.
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Subscriber {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Returns the next delivery, connecting or reconnecting as needed. Heartbeats are
    /// consumed here; redeliveries of what this subscriber already acknowledged are
    /// dropped.
    pub async fn next(&mut self) -> Result<v1::Delivery, ClientError> {
        let mut failures = 0u32;
        let mut backoff = FIRST_BACKOFF;
        loop {
            if self.stream.is_none() {
                match self.open().await {
                    Ok(stream) => self.stream = Some(stream),
                    Err(err) if failures + 1 < self.max_attempts && retryable(&err) => {
                        failures += 1;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                    Err(err) => return Err(err),
                }
            }
            let Some(stream) = self.stream.as_mut() else { continue };
            match stream.responses.message().await {
                Ok(Some(v1::SubscribeResponse {
                    message: Some(v1::subscribe_response::Message::Delivery(delivery)),
                })) => {
                    if delivery.redelivery && delivery.delivery_number <= self.last_acked {
                        continue;
                    }
                    return Ok(delivery);
                }
                Ok(Some(_)) => continue,
                // The broker closed the stream (a restart, a drain): connect again.
                Ok(None) => self.stream = None,
                Err(status) => {
                    self.stream = None;
                    let err = ClientError::Status(status);
                    if !retryable(&err) || failures + 1 >= self.max_attempts {
                        return Err(err);
                    }
                    failures += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Acknowledges a delivery. If the stream has broken, the ack is lost with it and
    /// the delivery comes again on the next connection (and is dropped there).
    pub async fn ack(&mut self, delivery_number: u64) -> Result<(), ClientError> {
        self.last_acked = self.last_acked.max(delivery_number);
        if let Some(stream) = &self.stream {
            let ack = v1::Ack { delivery_numbers: vec![delivery_number] };
            let message = v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Ack(ack)) };
            if stream.requests.send(message).await.is_err() {
                self.stream = None;
            }
        }
        Ok(())
    }

    async fn open(&self) -> Result<OpenStream, ClientError> {
        let (requests, outgoing) = mpsc::channel(64);
        let open = v1::OpenSubscription { name: self.name.clone(), credit: self.credit };
        // The receiver is alive: the send cannot fail.
        let _ = requests.send(v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Open(open)) }).await;
        let responses = self
            .client
            .subscriptions()
            .subscribe(self.client.request(ReceiverStream::new(outgoing)))
            .await?
            .into_inner();
        Ok(OpenStream { requests, responses })
    }
}

/// Whether a reconnect may cure `err`: the broker unreachable or restarting, or the
/// subscription still held by a stream the broker has not yet seen close.
fn retryable(err: &ClientError) -> bool {
    match err {
        ClientError::Status(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::Unknown
                | Code::Internal
                | Code::Aborted
                | Code::FailedPrecondition
                | Code::Cancelled
        ),
        ClientError::Connect { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        let status = |code| ClientError::Status(tonic::Status::new(code, "x"));
        assert!(retryable(&status(Code::Unavailable)));
        assert!(retryable(&status(Code::FailedPrecondition)), "the old stream may not have closed yet");
        assert!(!retryable(&status(Code::NotFound)));
        assert!(!retryable(&status(Code::PermissionDenied)));
        assert!(!retryable(&status(Code::Unauthenticated)));
        assert!(!retryable(&ClientError::ProfessionalId));
    }
}
