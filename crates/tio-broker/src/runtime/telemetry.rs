//! Logs and traces: `tracing` everywhere, human or JSON lines, and OpenTelemetry spans
//! over OTLP when configured, continuing the caller's W3C trace context.
//!
//! Nothing personal goes into a span or an event: request spans carry the gRPC method
//! only, and the broker's own events carry ids, counts and blind indexes.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::runtime::config::{LogConfig, LogFormat, TelemetryConfig};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The level filter is invalid.
    #[error("invalid log level filter: {0}")]
    Filter(String),
    /// The OTLP exporter could not be built.
    #[error("cannot set up OTLP export: {0}")]
    Exporter(String),
    /// A global subscriber was already installed.
    #[error("logging was already initialised")]
    AlreadyInitialised,
}

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] flushes spans not yet sent.
#[must_use = "dropping it without shutdown loses buffered spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops span export. Blocks the calling thread until done.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "span exporter did not shut down cleanly");
        }
    }
}

/// Installs the global subscriber: the level filter (`RUST_LOG` wins over the
/// configuration), the log format, and OTLP span export when an endpoint is set.
/// Call inside a Tokio runtime when OTLP is configured.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => EnvFilter::try_new(value),
        _ => EnvFilter::try_new(&log.level),
    }
    .map_err(|err| TelemetryError::Filter(err.to_string()))?;

    let fmt_layer = match log.format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed()
        }
    };

    let (provider, otel_layer) = match &telemetry.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
            let resource =
                opentelemetry_sdk::Resource::builder().with_service_name(telemetry.service_name.clone()).build();
            let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
            let tracer = provider.tracer("tio");
            (Some(provider), Some(tracing_opentelemetry::layer().with_tracer(tracer)))
        }
        None => (None, None),
    };

    tracing_subscriber::registry()
        .with(otel_layer)
        .with(fmt_layer)
        .with(filter)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    Ok(Telemetry { provider })
}

/// Returns the span for one gRPC request, named after its method and parented on the
/// caller's `traceparent`, if it sent one.
pub fn request_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    let span = tracing::info_span!("grpc.request", otel.name = %path, rpc.system = "grpc", rpc.method = %path);
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    // Fails only when no OpenTelemetry layer is installed, where there is no trace to join.
    let _ = span.set_parent(parent);
    span
}

/// Reads W3C trace context from HTTP/2 headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
