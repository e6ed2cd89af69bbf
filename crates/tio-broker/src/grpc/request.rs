//! What the broker records about one request besides its caller: the request id and
//! the W3C trace id, both written to the request's audit entries.

use tio_core::FieldViolation;

use crate::app::broker::{Broker, Call, RequestMeta};
use crate::app::error::ServiceError;
use crate::app::registry::Caller;

/// The metadata key a client may use to name its request; otherwise the broker makes
/// one up, so that every audit entry carries a request id.
pub(crate) const REQUEST_ID_METADATA_KEY: &str = "x-request-id";

/// The longest request id accepted, in bytes.
pub(crate) const MAX_REQUEST_ID_BYTES: usize = 64;

/// Reads the request id and trace id from `metadata`.
pub(crate) fn request_meta(metadata: &tonic::metadata::MetadataMap) -> Result<RequestMeta, ServiceError> {
    let request_id = match metadata.get(REQUEST_ID_METADATA_KEY) {
        Some(value) => {
            let text = value.to_str().unwrap_or_default();
            let valid = !text.is_empty()
                && text.len() <= MAX_REQUEST_ID_BYTES
                && text.bytes().all(|byte| byte.is_ascii_graphic());
            if !valid {
                return Err(ServiceError::InvalidArgument(vec![FieldViolation::new(
                    REQUEST_ID_METADATA_KEY,
                    format!("must be 1 to {MAX_REQUEST_ID_BYTES} printable ASCII characters without spaces"),
                )]));
            }
            text.to_owned()
        }
        None => random_id()?,
    };
    let trace_id = metadata
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(trace_id_of)
        .unwrap_or_default()
        .to_owned();
    Ok(RequestMeta { request_id, trace_id })
}

/// Starts a call: takes the caller and ids the authentication interceptor put in the
/// request, and reads the broker's clock.
pub(crate) fn call_of<T>(broker: &Broker, request: &tonic::Request<T>) -> Result<Call, ServiceError> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ServiceError::Internal("request reached a service unauthenticated".to_owned()))?;
    let meta = request
        .extensions()
        .get::<RequestMeta>()
        .cloned()
        .ok_or_else(|| ServiceError::Internal("request reached a service without its ids".to_owned()))?;
    Ok(Call { caller, meta, now: broker.now() })
}

/// Returns the trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), or
/// `None` if it is malformed or all zeros (both mean "no trace" in the spec).
pub(crate) fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |text: &str, len: usize| {
        text.len() == len && text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    let valid = lower_hex(version, 2)
        && version != "ff"
        && lower_hex(trace, 32)
        && lower_hex(parent, 16)
        && lower_hex(flags, 2)
        && trace.bytes().any(|byte| byte != b'0')
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

fn random_id() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|err| ServiceError::Internal(format!("no randomness: {err}")))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id_of(&format!("00-{trace}-00f067aa0ba902b7-01")), Some(trace));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_owned(),
            format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase()),
            format!("ff-{trace}-00f067aa0ba902b7-01"),
            format!("00-{trace}-00f067aa0ba902b7-01-extra"),
            format!("00-{trace}-00f067aa0ba902b7"),
            String::new(),
        ] {
            assert_eq!(trace_id_of(&bad), None, "{bad}");
        }
    }

    #[test]
    fn request_ids_are_the_clients_or_random() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        let made = request_meta(&metadata).unwrap();
        assert_eq!(made.request_id.len(), 32);
        assert_ne!(made.request_id, request_meta(&metadata).unwrap().request_id);
        assert_eq!(made.trace_id, "");

        metadata.insert(REQUEST_ID_METADATA_KEY, "mis-import-42".parse().unwrap());
        assert_eq!(request_meta(&metadata).unwrap().request_id, "mis-import-42");
        metadata.insert(REQUEST_ID_METADATA_KEY, "x".repeat(65).parse().unwrap());
        assert!(matches!(
            request_meta(&metadata),
            Err(ServiceError::InvalidArgument(v)) if v[0].field == REQUEST_ID_METADATA_KEY
        ));
    }
}
