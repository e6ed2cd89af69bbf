//! Contract messages as JSON (the protobuf JSON mapping, with the `.proto` field
//! names), for values read from files and results printed for people and scripts.

use std::sync::OnceLock;

use anyhow::Context;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

/// The descriptors of every `tio.v1` message.
fn pool() -> anyhow::Result<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(tio_proto::FILE_DESCRIPTOR_SET).map_err(|err| err.to_string()))
        .as_ref()
        .map_err(|err| anyhow::anyhow!("the built-in contract descriptors do not load: {err}"))
}

/// Returns `message` (of the contract type `full_name`, e.g. `tio.v1.Delivery`) as JSON.
pub(crate) fn to_json<M: prost::Message>(full_name: &str, message: &M) -> anyhow::Result<serde_json::Value> {
    let descriptor = pool()?.get_message_by_name(full_name).with_context(|| format!("no message {full_name}"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    let options = SerializeOptions::new().use_proto_field_name(true).skip_default_fields(true);
    Ok(dynamic.serialize_with_options(serde_json::value::Serializer, &options)?)
}

/// Reads a contract message of type `full_name` from JSON, refusing unknown fields.
pub(crate) fn from_json<M: prost::Message + Default>(full_name: &str, json: &str) -> anyhow::Result<M> {
    let descriptor = pool()?.get_message_by_name(full_name).with_context(|| format!("no message {full_name}"))?;
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut deserializer)?;
    deserializer.end()?;
    Ok(M::decode(prost::Message::encode_to_vec(&dynamic).as_slice())?)
}

#[cfg(test)]
mod tests {
    use tio_proto::v1;

    use super::*;

    #[test]
    fn category_values_round_trip_through_json_with_proto_field_names() {
        let json = r#"{"communication_needs": {"how_i_communicate": "Makaton", "things_you_must_know": ["Polish"]}}"#;
        let value: v1::CategoryValue = from_json("tio.v1.CategoryValue", json).unwrap();
        match &value.value {
            Some(v1::category_value::Value::CommunicationNeeds(needs)) => {
                assert_eq!(needs.how_i_communicate, "Makaton")
            }
            other => panic!("{other:?}"),
        }
        let back = to_json("tio.v1.CategoryValue", &value).unwrap();
        assert_eq!(back["communication_needs"]["things_you_must_know"][0], "Polish");
        let err = from_json::<v1::CategoryValue>("tio.v1.CategoryValue", r#"{"nonsense": 1}"#).unwrap_err();
        assert!(err.to_string().contains("nonsense"), "{err}");
    }
}
