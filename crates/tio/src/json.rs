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

/// Reads a category value from the JSON of the category's own message (e.g. a
/// `CommunicationNeeds` for `communication_needs`). The user's text is parsed as it
/// was typed, so an error's line and column point into it.
pub(crate) fn category_value_from_json(
    category_name: &str,
    json: &str,
) -> anyhow::Result<tio_proto::v1::CategoryValue> {
    let outer = pool()?.get_message_by_name("tio.v1.CategoryValue").context("no message tio.v1.CategoryValue")?;
    let field = outer.get_field_by_name(category_name).with_context(|| format!("no category {category_name}"))?;
    let prost_reflect::Kind::Message(inner) = field.kind() else {
        anyhow::bail!("category {category_name} is not a message");
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let value = DynamicMessage::deserialize(inner, &mut deserializer)?;
    deserializer.end()?;
    let mut wrapped = DynamicMessage::new(outer);
    wrapped.set_field(&field, prost_reflect::Value::Message(value));
    Ok(prost::Message::decode(prost::Message::encode_to_vec(&wrapped).as_slice())?)
}

#[cfg(test)]
mod tests {
    use tio_proto::v1;

    use super::*;

    #[test]
    fn category_values_round_trip_through_json_with_proto_field_names() {
        let json = r#"{"how_i_communicate": "Makaton", "things_you_must_know": ["Polish"]}"#;
        let value = category_value_from_json("communication_needs", json).unwrap();
        match &value.value {
            Some(v1::category_value::Value::CommunicationNeeds(needs)) => {
                assert_eq!(needs.how_i_communicate, "Makaton")
            }
            other => panic!("{other:?}"),
        }
        let back = to_json("tio.v1.CategoryValue", &value).unwrap();
        assert_eq!(back["communication_needs"]["things_you_must_know"][0], "Polish");
        let err = category_value_from_json("communication_needs", r#"{"nonsense": 1}"#).unwrap_err();
        assert!(err.to_string().contains("nonsense"), "{err}");
    }

    /// Issue 12: errors pointed at columns of a wrapped text the user never typed.
    #[test]
    fn category_value_errors_point_into_what_the_user_typed() {
        let value = category_value_from_json("communication_needs", r#"{"how_i_communicate": "Makaton"}"#).unwrap();
        assert!(
            matches!(value.value, Some(v1::category_value::Value::CommunicationNeeds(n)) if n.how_i_communicate == "Makaton")
        );
        // 34 characters; the misspelt field ends at column 20.
        let err = category_value_from_json("communication_needs", r#"{"how_i_communicates": "Makaton"}"#).unwrap_err();
        assert!(err.to_string().contains("line 1 column 2"), "{err}");
        let err = category_value_from_json("communication_needs", "").unwrap_err();
        assert!(err.to_string().contains("line 1 column 0"), "{err}");
        let err = category_value_from_json("communication_needs", "{\n  \"likes\": [1]\n}").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
