//! A delivery stream as a client holds it, and the subscription calls around it.

use std::time::Duration;

use tio_client::Client;
use tio_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// How long a test waits for one expected message: long, so that a loaded two-core
/// machine never fails a test that would pass (a passing test never waits this long).
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// An open delivery stream, as a client holds it.
pub(crate) struct Stream {
    pub(crate) requests: mpsc::Sender<v1::SubscribeRequest>,
    pub(crate) responses: tonic::Streaming<v1::SubscribeResponse>,
}

impl Stream {
    pub(crate) async fn open(client: &Client, name: &str, credit: u32) -> Result<Stream, tonic::Status> {
        let (requests, receiver) = mpsc::channel(16);
        let open = v1::OpenSubscription { name: name.into(), credit };
        requests
            .send(v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Open(open)) })
            .await
            .unwrap();
        let responses = client.subscriptions().subscribe(client.request(ReceiverStream::new(receiver))).await?;
        Ok(Stream { requests, responses: responses.into_inner() })
    }

    /// The next delivery, skipping heartbeats; panics after `WAIT`.
    pub(crate) async fn delivery(&mut self) -> v1::Delivery {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.responses.message())
                .await
                .expect("a delivery in time")
                .expect("the stream is healthy")
                .expect("the stream is open");
            if let Some(v1::subscribe_response::Message::Delivery(delivery)) = message.message {
                return delivery;
            }
        }
    }

    /// Whether a delivery arrives within `wait` (heartbeats do not count).
    pub(crate) async fn delivery_within(&mut self, wait: Duration) -> Option<v1::Delivery> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.responses.message()).await.ok()?;
            match message.expect("the stream is healthy")?.message {
                Some(v1::subscribe_response::Message::Delivery(delivery)) => return Some(delivery),
                _ => continue,
            }
        }
    }

    pub(crate) async fn ack(&self, numbers: &[u64]) {
        let ack = v1::Ack { delivery_numbers: numbers.to_vec() };
        self.requests
            .send(v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Ack(ack)) })
            .await
            .unwrap();
    }

    /// Closes the client's side and waits for the server to end the stream, so that
    /// acks sent before are stored (as a client going away cleanly does).
    pub(crate) async fn close(self) {
        let Stream { requests, mut responses } = self;
        drop(requests);
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Ok(Ok(Some(_))) = tokio::time::timeout_at(deadline, responses.message()).await {}
    }

    /// The status the stream ends with.
    pub(crate) async fn end(&mut self) -> tonic::Status {
        loop {
            match tokio::time::timeout(WAIT, self.responses.message()).await.expect("the stream ends in time") {
                Err(status) => return status,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
            }
        }
    }
}

/// Creates subscription `name` of `categories`, starting as `start` says.
pub(crate) async fn create(
    client: &Client,
    name: &str,
    categories: &[v1::Category],
    start: Option<v1::start_from::From>,
) {
    let request = v1::CreateSubscriptionRequest {
        name: name.into(),
        categories: categories.iter().map(|c| *c as i32).collect(),
        start: start.map(|from| v1::StartFrom { from: Some(from) }),
        max_in_flight: 0,
    };
    client.subscriptions().create_subscription(client.request(request)).await.unwrap();
}

/// Deletes a subscription once the broker has seen its stream close.
pub(crate) async fn delete_when_closed(client: &Client, name: &str) {
    for attempt in 0.. {
        let request = client.request(v1::DeleteSubscriptionRequest { name: name.into() });
        match client.subscriptions().delete_subscription(request).await {
            Ok(_) => return,
            Err(status) if status.code() == Code::FailedPrecondition && attempt < 100 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}
