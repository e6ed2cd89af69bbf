//! OpenTelemetry export: a request's span reaches an OTLP collector carrying the
//! caller's trace id.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio::sync::mpsc;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{Options, Sandbox};

/// An OTLP trace collector that forwards every export to the test.
struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_span_reaches_the_collector_with_the_callers_trace_id() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_address = listener.local_addr().unwrap();
    let (sender, mut exports) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(sender)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let sandbox = Sandbox::start_with(Options {
        args: vec!["--otlp-endpoint".into(), format!("http://{collector_address}")],
        env: vec![("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into())],
        ..Options::default()
    });
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client = sandbox.client("gp").await;
    let mut request = client.request(HealthCheckRequest { service: String::new() });
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().unwrap());
    HealthClient::new(client.channel()).check(request).await.unwrap();

    let wanted: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap()).collect();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(export) = exports.recv().await {
            for span in export.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
                if span.trace_id == wanted {
                    return Some(span.name.clone());
                }
            }
        }
        None
    })
    .await
    .unwrap_or_else(|_| panic!("no span with the caller's trace id within 30 s; server log:\n{}", sandbox.log_text()));
    assert_eq!(found.as_deref(), Some("/grpc.health.v1.Health/Check"));
}
