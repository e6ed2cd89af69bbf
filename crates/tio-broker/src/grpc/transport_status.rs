//! The transport's own refusals, told in the contract's words.
//!
//! tonic refuses a request larger than `limits.max_message_bytes` before any handler
//! sees it, with OUT_OF_RANGE; `common.proto` promises RESOURCE_EXHAUSTED, as other gRPC
//! servers answer. A unary call's refusal is a trailers-only response, so this layer
//! rewrites its headers; a streaming call meets the same error when its handler reads
//! the stream, and the handler maps it with [`inbound_status`].

use std::task::{Context, Poll};

use futures_util::TryFutureExt;
use tonic::{Code, Status};

/// The start of tonic's message for a request over the decoding limit.
const TOO_LARGE_PREFIX: &str = "Error, decoded message length too large";

/// Returns the contract's status for an error met while reading a request stream.
pub(crate) fn inbound_status(status: Status) -> Status {
    if status.code() == Code::OutOfRange && status.message().starts_with(TOO_LARGE_PREFIX) {
        return Status::new(
            Code::ResourceExhausted,
            format!("the request message is too large: {}", status.message().trim_start_matches("Error, ")),
        );
    }
    status
}

/// A layer that applies [`inbound_status`] to trailers-only responses.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ContractStatusLayer;

impl<S> tower_layer::Layer<S> for ContractStatusLayer {
    type Service = ContractStatus<S>;

    fn layer(&self, inner: S) -> ContractStatus<S> {
        ContractStatus { inner }
    }
}

/// The service [`ContractStatusLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct ContractStatus<S> {
    inner: S,
}

impl<S, Request, Body> tower_service::Service<Request> for ContractStatus<S>
where
    S: tower_service::Service<Request, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures_util::future::MapOk<S::Future, fn(http::Response<Body>) -> http::Response<Body>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.inner.call(request).map_ok(rewrite::<Body> as fn(http::Response<Body>) -> http::Response<Body>)
    }
}

fn rewrite<Body>(mut response: http::Response<Body>) -> http::Response<Body> {
    let Some(status) = Status::from_header_map(response.headers()) else { return response };
    if status.code() != Code::OutOfRange {
        return response;
    }
    let mapped = inbound_status(status);
    if mapped.code() != Code::OutOfRange {
        // A status made here always encodes; if it did not, the original stands.
        let _ = mapped.add_header(response.headers_mut());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_size_refusal_becomes_resource_exhausted() {
        let too_large =
            Status::out_of_range(format!("{TOO_LARGE_PREFIX}: found 5000000 bytes, the limit is: 4194304 bytes"));
        let mapped = inbound_status(too_large);
        assert_eq!(mapped.code(), Code::ResourceExhausted);
        assert_eq!(
            mapped.message(),
            "the request message is too large: decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes"
        );
        assert_eq!(inbound_status(Status::out_of_range("other")).code(), Code::OutOfRange);
        assert_eq!(inbound_status(Status::cancelled("gone")).code(), Code::Cancelled);
    }

    #[test]
    fn a_trailers_only_response_is_rewritten_in_place() {
        let response: http::Response<()> =
            Status::out_of_range(format!("{TOO_LARGE_PREFIX}: found 9 bytes, the limit is: 8 bytes")).into_http();
        let rewritten = rewrite(response);
        let status = Status::from_header_map(rewritten.headers()).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        let untouched = rewrite(Status::not_found("no such consent").into_http::<()>());
        assert_eq!(Status::from_header_map(untouched.headers()).unwrap().code(), Code::NotFound);
    }
}
