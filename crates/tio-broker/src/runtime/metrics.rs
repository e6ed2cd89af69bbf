//! Prometheus metrics: publishes, deliveries and denials by reason, delivery lag, group
//! commit sizes and sync latency, store size and open streams.
//!
//! Every label value is a `&'static str` (an outcome, an action, a reason code): no
//! identifier, name or category value can become a label, by construction.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tio_store::{CommitObserver, Store};
use tokio::net::TcpListener;

/// Labels of a metric: fixed words only.
type Labels = Vec<(&'static str, &'static str)>;

/// The broker's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    publishes: Family<Labels, Counter>,
    deliveries: Counter,
    denials: Family<Labels, Counter>,
    delivery_lag: Histogram,
    commit_group: Histogram,
    commit_sync: Histogram,
    open_streams: Gauge,
    store_bytes: Gauge<u64, AtomicU64>,
    store_reachable: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Returns the metrics, registered and at zero.
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tio");
        let publishes = Family::<Labels, Counter>::default();
        registry.register("publishes", "Publish requests by outcome (allowed, denied, failed)", publishes.clone());
        let deliveries = Counter::default();
        registry.register("deliveries", "Updates delivered to subscribers (redeliveries included)", deliveries.clone());
        let denials = Family::<Labels, Counter>::default();
        registry.register("denials", "Refusals by action and reason code", denials.clone());
        let delivery_lag = Histogram::new(exponential_buckets(0.000_5, 2.0, 16));
        registry.register(
            "delivery_lag_seconds",
            "From an update's commit to its delivery being sent",
            delivery_lag.clone(),
        );
        let commit_group = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register("commit_group_batches", "Batches made durable by one group commit", commit_group.clone());
        let commit_sync = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register(
            "commit_sync_seconds",
            "Time one group commit spent in flush and fdatasync",
            commit_sync.clone(),
        );
        let open_streams = Gauge::default();
        registry.register("open_streams", "Delivery streams open now", open_streams.clone());
        let store_bytes = Gauge::<u64, AtomicU64>::default();
        registry.register("store_size_bytes", "Size of the store on disk", store_bytes.clone());
        let store_reachable = Gauge::default();
        store_reachable.set(1);
        registry.register(
            "store_reachable",
            "Whether the store's database answered its last probe (1) or not (0); always 1 on an embedded store",
            store_reachable.clone(),
        );
        Metrics {
            store_reachable,
            registry,
            publishes,
            deliveries,
            denials,
            delivery_lag,
            commit_group,
            commit_sync,
            open_streams,
            store_bytes,
        }
    }

    /// Counts a publish request with its outcome.
    pub(crate) fn publish(&self, outcome: &'static str) {
        self.publishes.get_or_create(&vec![("outcome", outcome)]).inc();
    }

    /// Counts a refusal of `action` for `reason` (a reason code).
    pub(crate) fn denied(&self, action: &'static str, reason: &'static str) {
        self.denials.get_or_create(&vec![("action", action), ("reason", reason)]).inc();
    }

    /// Counts a delivery sent `lag` after its update was committed.
    pub(crate) fn delivered(&self, lag: Duration) {
        self.deliveries.inc();
        self.delivery_lag.observe(lag.as_secs_f64());
    }

    /// Records whether the store's database answered its last probe.
    pub(crate) fn store_reachable(&self, reachable: bool) {
        self.store_reachable.set(i64::from(reachable));
    }

    /// Counts a delivery stream opening (+1) or closing (-1).
    pub(crate) fn stream(&self, change: i64) {
        self.open_streams.inc_by(change);
    }

    /// Returns the metrics in the Prometheus text format, with the store's size now (or,
    /// while its database does not answer, as last read: asking would hold the scrape
    /// until the connection attempt failed).
    pub(crate) fn render(&self, store: &Store) -> String {
        if self.store_reachable.get() == 1
            && let Ok(bytes) = store.size_on_disk()
        {
            self.store_bytes.set(bytes);
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl CommitObserver for Metrics {
    fn group_committed(&self, batches: u64, sync: Duration) {
        self.commit_group.observe(batches as f64);
        self.commit_sync.observe(sync.as_secs_f64());
    }
}

/// Serves `GET /metrics` on `listener` until `stop` turns true. Anything else is 404.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (metrics, store) = (metrics.clone(), store.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let response = if request.method() == hyper::Method::GET && request.uri().path() == "/metrics" {
                    hyper::Response::builder()
                        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                        .body(Full::new(Bytes::from(metrics.render(&store))))
                } else {
                    hyper::Response::builder().status(404).body(Full::new(Bytes::from_static(b"not found\n")))
                };
                async move { response }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(err) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!(error = %err, "metrics connection failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_fixed_labels_only() {
        let store = Store::in_memory(tio_store::keys::KeyRing::generate().unwrap()).unwrap();
        let metrics = Metrics::new();
        metrics.publish("allowed");
        metrics.publish("allowed");
        metrics.denied("profile_read", "no_consent");
        metrics.delivered(Duration::from_millis(3));
        metrics.group_committed(7, Duration::from_micros(900));
        metrics.stream(1);
        let text = metrics.render(&store);
        for expected in [
            "tio_publishes_total{outcome=\"allowed\"} 2",
            "tio_denials_total{action=\"profile_read\",reason=\"no_consent\"} 1",
            "tio_deliveries_total 1",
            "tio_delivery_lag_seconds_count 1",
            "tio_commit_group_batches_sum 7.0",
            "tio_open_streams 1",
            "tio_store_size_bytes",
        ] {
            assert!(text.contains(expected), "missing {expected} in:\n{text}");
        }
    }
}
