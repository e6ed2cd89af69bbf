//! The codec every `tio.v1` service and client uses: prost's, except that a request
//! whose bytes do not decode is the caller's fault.
//!
//! tonic's prost codec answers any decode failure with INTERNAL and prost's message
//! (`failed to decode Protobuf message: ...`), which tells an integrator neither that
//! the request was wrong nor which field. This codec answers a request that does not
//! decode (garbage bytes, a string that is not UTF-8, a wrong wire type) with
//! INVALID_ARGUMENT and a `google.rpc.BadRequest` naming the field by its path in the
//! request (`value.communication_needs.how_i_communicate`), as every other bad field is
//! named. A *response* that does not decode (on the client side) stays INTERNAL: that is
//! the broker's fault, not the caller's.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::OnceLock;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};

/// A prost codec whose decoder reports undecodable requests as INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ContractCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for ContractCodec<T, U> {
    fn default() -> Self {
        ContractCodec { _types: PhantomData }
    }
}

impl<T, U> Codec for ContractCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ContractDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ContractDecoder { _type: PhantomData }
    }
}

/// Decodes `U` with prost, mapping failures as the module says.
#[derive(Debug, Clone)]
pub struct ContractDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for ContractDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|error| decode_status::<U>(&error))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Returns the status for a message of type `U` that failed to decode.
fn decode_status<U>(error: &prost::DecodeError) -> Status {
    let type_name = std::any::type_name::<U>();
    let short_name = type_name.rsplit("::").next().unwrap_or(type_name);
    // Every RPC's input message is named `...Request` (a test holds the contract to
    // it), and only those arrive from a caller.
    if !short_name.ends_with("Request") {
        return Status::new(Code::Internal, format!("a tio.v1.{short_name} from the broker does not decode: {error}"));
    }
    let (field, reason) = located(&error.to_string());
    let message = if field.is_empty() {
        format!("the request does not decode as tio.v1.{short_name}: {reason}")
    } else {
        format!("invalid request: {field}: does not decode: {reason}")
    };
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(if field.is_empty() { "(request)".to_owned() } else { field }, reason);
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// Splits prost's decode error text (`failed to decode Protobuf message:
/// Inner.field: Outer.field: reason`, innermost first) into the field's path from the
/// request (`field.field`) and the reason.
fn located(text: &str) -> (String, String) {
    let mut rest = text.strip_prefix("failed to decode Protobuf message: ").unwrap_or(text);
    let mut stack: Vec<(&str, &str)> = Vec::new();
    while let Some((segment, after)) = rest.split_once(": ") {
        let Some((message, field)) = segment.split_once('.') else { break };
        let is_name = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !is_name(message) || !is_name(field) || !message.starts_with(|c: char| c.is_ascii_uppercase()) {
            break;
        }
        stack.push((message, field));
        rest = after;
    }
    // Outermost first; a oneof is pushed under its own name, so its member is found
    // from the message type of the step inside it.
    stack.reverse();
    let mut path: Vec<String> = Vec::with_capacity(stack.len());
    for (index, (message, field)) in stack.iter().enumerate() {
        let inner = stack.get(index + 1).map(|(inner, _)| *inner);
        match inner.and_then(|inner| oneof_member(message, field, inner)) {
            Some(member) => path.push(member.to_owned()),
            // A oneof whose member cannot be told (the failure was its own wire type)
            // is not a field of the request: the path stops at its message.
            None if is_oneof(message, field) => {}
            None => path.push((*field).to_owned()),
        }
    }
    (path.join("."), rest.to_owned())
}

/// Returns the field of `message` inside oneof `oneof` whose type is `inner`, if
/// `oneof` names a oneof of `message` in the contract.
fn oneof_member(message: &str, oneof: &str, inner: &str) -> Option<&'static str> {
    oneof_members().get(&(message.to_owned(), oneof.to_owned(), inner.to_owned())).map(String::as_str)
}

/// Returns whether `name` is a oneof of `message` in the contract.
fn is_oneof(message: &str, name: &str) -> bool {
    oneof_members().keys().any(|(owner, oneof, _)| owner == message && oneof == name)
}

/// The contract's oneof members: (message, oneof, member's message type) to member.
fn oneof_members() -> &'static HashMap<(String, String, String), String> {
    static MEMBERS: OnceLock<HashMap<(String, String, String), String>> = OnceLock::new();
    MEMBERS.get_or_init(|| {
        let mut members = HashMap::new();
        let Ok(set) = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET) else { return members };
        for file in set.file.iter().filter(|file| file.package() == "tio.v1") {
            for descriptor in &file.message_type {
                for field in &descriptor.field {
                    let Some(oneof) = field.oneof_index.and_then(|i| descriptor.oneof_decl.get(i as usize)) else {
                        continue;
                    };
                    let Some(type_name) = field.type_name.as_deref().and_then(|t| t.rsplit('.').next()) else {
                        continue;
                    };
                    members.insert(
                        (descriptor.name().to_owned(), oneof.name().to_owned(), type_name.to_owned()),
                        field.name().to_owned(),
                    );
                }
            }
        }
        members
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    fn decode_publish(bytes: &[u8]) -> Status {
        let error = v1::PublishRequest::decode(bytes).expect_err("the bytes must not decode");
        decode_status::<v1::PublishRequest>(&error)
    }

    /// A publish request whose `value` (field 3) holds `value_bytes`.
    fn publish_with_value(value_bytes: &[u8]) -> Vec<u8> {
        let mut bytes = v1::PublishRequest { idempotency_key: "k".into(), ..Default::default() }.encode_to_vec();
        bytes.push(3 << 3 | 2);
        prost::encoding::encode_varint(value_bytes.len() as u64, &mut bytes);
        bytes.extend_from_slice(value_bytes);
        bytes
    }

    fn field_of(status: &Status) -> String {
        status.get_details_bad_request().expect("bad request details").field_violations[0].field.clone()
    }

    #[test]
    fn a_string_that_is_not_utf8_is_named_by_its_path() {
        // CategoryValue.communication_needs (field 2) holding how_i_communicate (field 1).
        let needs = [1 << 3 | 2, 2, 0xff, 0xfe];
        let mut value = vec![2 << 3 | 2, needs.len() as u8];
        value.extend_from_slice(&needs);
        let status = decode_publish(&publish_with_value(&value));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(field_of(&status), "value.communication_needs.how_i_communicate");
        assert!(status.message().contains("not UTF-8"), "{}", status.message());
    }

    #[test]
    fn a_wrong_wire_type_is_named_by_its_path() {
        // communication_needs sent as a varint.
        let status = decode_publish(&publish_with_value(&[2 << 3, 1]));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(field_of(&status), "value");
        assert!(status.message().contains("wire type"), "{}", status.message());
    }

    #[test]
    fn garbage_bytes_are_invalid_argument() {
        let status = decode_publish(&publish_with_value(&[0xff, 0xff, 0xff]));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(field_of(&status), "value");
        let status = decode_publish(&[0x0a, 0x7f]);
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    #[test]
    fn a_response_that_does_not_decode_stays_internal() {
        let error = v1::PublishResponse::decode(&[0x0a, 0x7f][..]).unwrap_err();
        assert_eq!(decode_status::<v1::PublishResponse>(&error).code(), Code::Internal);
    }

    /// The decoder tells requests from responses by name, so every RPC's input must
    /// be named `...Request` and no output may be.
    #[test]
    fn every_rpc_input_and_only_inputs_are_named_request() {
        let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
        for file in set.file.iter().filter(|file| file.package() == "tio.v1") {
            for service in &file.service {
                for method in &service.method {
                    assert!(method.input_type().ends_with("Request"), "{}", method.name());
                    assert!(!method.output_type().ends_with("Request"), "{}", method.name());
                }
            }
        }
    }
}
