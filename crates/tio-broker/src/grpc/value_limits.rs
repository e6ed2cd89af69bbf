//! The documented bounds inside a category value: every string and list of every
//! category message, checked field by field so that an integration team is told which
//! field is too long (`value.health_summary.conditions[2].description`), not only that
//! the whole value is.
//!
//! The rules (stated in `categories.proto`): free-text fields at most
//! [`limits::MAX_FREE_TEXT_BYTES`], every other string at most
//! [`limits::MAX_SHORT_STRING_BYTES`], every list at most [`limits::MAX_LIST_ITEMS`]
//! unless listed in [`LIST_LIMITS`]. The walk is generic over the contract's
//! descriptors, so a field added to a category is bounded without a change here; only
//! a new free-text field must be named in [`FREE_TEXT`].

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, MapKey, ReflectMessage, Value};
use tio_core::{FieldViolation, limits};

/// Fields holding free text (4 KiB); for a map, its values.
pub(crate) const FREE_TEXT: &[&str] = &[
    "tio.v1.CommunicationNeeds.how_i_communicate",
    "tio.v1.CommunicationNeeds.how_i_show_pain",
    "tio.v1.CommunicationNeeds.things_you_must_know",
    "tio.v1.CommunicationNeeds.important_to_me",
    "tio.v1.CommunicationNeeds.likes",
    "tio.v1.CommunicationNeeds.dislikes",
    "tio.v1.CommunicationNeeds.reasonable_adjustments",
    "tio.v1.CommunicationNeeds.risks",
    "tio.v1.Condition.description",
    "tio.v1.Medication.how_taken",
    "tio.v1.Allergy.reaction",
    "tio.v1.EhcPlan.section_summaries",
    "tio.v1.EhcPlan.section_a",
    "tio.v1.TransitionToAdulthood.outcomes",
];

/// Lists and maps with a bound of their own.
pub(crate) const LIST_LIMITS: &[(&str, usize)] = &[("tio.v1.EhcPlan.section_summaries", 12)];

/// The most violations one answer lists: enough to fix a value, few enough to bound
/// the error's size.
const MAX_VIOLATIONS: usize = 20;

fn pool() -> Result<&'static DescriptorPool, FieldViolation> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(tio_proto::FILE_DESCRIPTOR_SET).ok())
        .as_ref()
        .ok_or_else(|| FieldViolation::new("value", "cannot be checked: the contract's descriptors do not load"))
}

/// Checks every string and list inside an encoded `CategoryValue` (the bytes the
/// publish stores, so the value is not encoded twice), naming each field out of bounds
/// (paths start at `value`).
pub(crate) fn check_category_value(encoded: &[u8]) -> Result<(), Vec<FieldViolation>> {
    let pool = pool().map_err(|violation| vec![violation])?;
    let descriptor = pool
        .get_message_by_name("tio.v1.CategoryValue")
        .ok_or_else(|| vec![FieldViolation::new("value", "cannot be checked: CategoryValue is not in the contract")])?;
    let message = DynamicMessage::decode(descriptor, encoded)
        .map_err(|err| vec![FieldViolation::new("value", format!("does not decode: {err}"))])?;
    let mut violations = Vec::new();
    // A value is the category's whole state, so an empty one would wipe what agencies
    // see (a hospital passport gone on a slip of a script); that is a retraction, not
    // a publish, and is refused.
    for (field, value) in message.fields() {
        if let Value::Message(member) = value
            && member.fields().next().is_none()
        {
            violations.push(FieldViolation::new(
                format!("value.{}", field.name()),
                "is empty: a value must set at least one field (it replaces the whole category)",
            ));
        }
    }
    check_message(&message, "value", &mut violations);
    if violations.is_empty() { Ok(()) } else { Err(violations) }
}

fn check_message(message: &DynamicMessage, path: &str, violations: &mut Vec<FieldViolation>) {
    for (field, value) in message.fields() {
        let path = format!("{path}.{}", field.name());
        check_value(&field, value, &path, violations);
    }
}

fn check_value(field: &FieldDescriptor, value: &Value, path: &str, violations: &mut Vec<FieldViolation>) {
    if violations.len() >= MAX_VIOLATIONS {
        return;
    }
    match value {
        Value::String(text) => check_string(field, text, path, violations),
        Value::Message(message) if message.descriptor().full_name() == "tio.v1.Date" => {
            check_date(message, path, violations);
        }
        Value::Message(message) => check_message(message, path, violations),
        Value::List(items) => {
            check_count(field, items.len(), path, violations);
            for (index, item) in items.iter().enumerate() {
                check_value(field, item, &format!("{path}[{index}]"), violations);
            }
        }
        Value::Map(entries) => {
            check_count(field, entries.len(), path, violations);
            for (key, item) in entries {
                let key_text = match key {
                    MapKey::String(text) => text.clone(),
                    other => format!("{other:?}"),
                };
                if let Err(violation) =
                    limits::check_len(&format!("{path} key"), &key_text, limits::MAX_SHORT_STRING_BYTES)
                {
                    violations.push(violation);
                    continue;
                }
                check_value(field, item, &format!("{path}[{key_text}]"), violations);
            }
        }
        _ => {}
    }
}

fn check_string(field: &FieldDescriptor, text: &str, path: &str, violations: &mut Vec<FieldViolation>) {
    let max = if FREE_TEXT.contains(&field.full_name()) {
        limits::MAX_FREE_TEXT_BYTES
    } else {
        limits::MAX_SHORT_STRING_BYTES
    };
    if let Err(violation) = limits::check_len(path, text, max) {
        violations.push(violation);
    }
}

/// Checks a `tio.v1.Date` against the calendar (a date of birth of 30 February is not
/// a date).
fn check_date(date: &DynamicMessage, path: &str, violations: &mut Vec<FieldViolation>) {
    let part = |name: &str| date.get_field_by_name(name).and_then(|value| value.as_i32()).unwrap_or_default();
    if let Err(violation) = tio_core::calendar::check_date(path, part("year"), part("month"), part("day")) {
        violations.push(violation);
    }
}

fn check_count(field: &FieldDescriptor, count: usize, path: &str, violations: &mut Vec<FieldViolation>) {
    let max =
        LIST_LIMITS.iter().find(|(name, _)| *name == field.full_name()).map_or(limits::MAX_LIST_ITEMS, |(_, max)| *max);
    if count > max {
        violations.push(FieldViolation::new(path, format!("must have at most {max} items, got {count}")));
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use tio_proto::v1;

    use super::*;

    fn check(value: &v1::CategoryValue) -> Result<(), Vec<FieldViolation>> {
        check_category_value(&value.encode_to_vec())
    }

    fn passport(needs: v1::CommunicationNeeds) -> v1::CategoryValue {
        v1::CategoryValue { value: Some(v1::category_value::Value::CommunicationNeeds(needs)) }
    }

    #[test]
    fn free_text_fields_take_four_kib_and_other_strings_a_short_string() {
        let fine = passport(v1::CommunicationNeeds {
            how_i_communicate: "a".repeat(limits::MAX_FREE_TEXT_BYTES),
            things_you_must_know: vec!["b".repeat(limits::MAX_FREE_TEXT_BYTES); 3],
            ..Default::default()
        });
        assert_eq!(check(&fine), Ok(()));
        let too_long = passport(v1::CommunicationNeeds {
            how_i_communicate: "a".repeat(limits::MAX_FREE_TEXT_BYTES + 1),
            things_you_must_know: vec!["fine".into(), "b".repeat(limits::MAX_FREE_TEXT_BYTES + 1)],
            ..Default::default()
        });
        let fields: Vec<String> = check(&too_long).unwrap_err().into_iter().map(|violation| violation.field).collect();
        assert_eq!(
            fields,
            ["value.communication_needs.how_i_communicate", "value.communication_needs.things_you_must_know[1]"]
        );

        let long_name = v1::CategoryValue {
            value: Some(v1::category_value::Value::HealthSummary(v1::HealthSummary {
                medications: vec![v1::Medication {
                    name: "m".repeat(limits::MAX_SHORT_STRING_BYTES + 1),
                    how_taken: "crushed in yoghurt ".repeat(100),
                    ..Default::default()
                }],
                ..Default::default()
            })),
        };
        let violations = check(&long_name).unwrap_err();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, "value.health_summary.medications[0].name");
        assert_eq!(violations[0].reason, "must be at most 256 bytes, got 257");
    }

    #[test]
    fn lists_take_sixty_four_items_unless_their_field_says_otherwise() {
        let many = v1::CategoryValue {
            value: Some(v1::category_value::Value::HealthSummary(v1::HealthSummary {
                allergies: vec![v1::Allergy::default(); limits::MAX_LIST_ITEMS + 1],
                ..Default::default()
            })),
        };
        let violations = check(&many).unwrap_err();
        assert_eq!(violations[0].field, "value.health_summary.allergies");
        assert_eq!(violations[0].reason, "must have at most 64 items, got 65");

        let plan = |sections: usize| v1::CategoryValue {
            value: Some(v1::category_value::Value::SendSupport(v1::SendSupport {
                ehc_plan: Some(v1::EhcPlan {
                    section_summaries: (0..sections).map(|n| (format!("S{n}"), "x".repeat(4000))).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        };
        assert_eq!(check(&plan(12)), Ok(()), "12 sections of nearly 4 KiB each");
        let violations = check(&plan(13)).unwrap_err();
        assert_eq!(violations[0].field, "value.send_support.ehc_plan.section_summaries");
    }

    /// Section A is free text: 4 KiB.
    #[test]
    fn an_ehc_plans_section_a_takes_four_kilobytes() {
        let plan = |len: usize| v1::CategoryValue {
            value: Some(v1::category_value::Value::SendSupport(v1::SendSupport {
                ehc_plan: Some(v1::EhcPlan { section_a: "a".repeat(len), ..Default::default() }),
                ..Default::default()
            })),
        };
        assert_eq!(check(&plan(limits::MAX_FREE_TEXT_BYTES)), Ok(()));
        let violations = check(&plan(limits::MAX_FREE_TEXT_BYTES + 1)).unwrap_err();
        assert_eq!(violations[0].field, "value.send_support.ehc_plan.section_a");
    }

    /// A plan stored by the release before section A and the advice references reads
    /// as it did, with neither. Do not change these bytes.
    #[test]
    fn a_plan_stored_before_section_a_reads_as_before() {
        let previous: &[u8] = b"\x22\x32\x08\x03\x10\x06\x22\x2c\x0a\x07\x08\xea\x0f\x10\x01\x18\x05\x3a\x07\x08\xea\x0f\x10\x05\x18\x12\x4a\x18\x0a\x01\x42\x12\x13Speech and language";
        let expected = v1::CategoryValue {
            value: Some(v1::category_value::Value::SendSupport(v1::SendSupport {
                provision: v1::SenProvision::EhcPlan as i32,
                primary_need: v1::SenNeed::Slcn as i32,
                ehc_plan: Some(v1::EhcPlan {
                    requested_on: Some(v1::Date { year: 2026, month: 1, day: 5 }),
                    final_issued_on: Some(v1::Date { year: 2026, month: 5, day: 18 }),
                    section_summaries: [("B".to_owned(), "Speech and language".to_owned())].into_iter().collect(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        };
        assert_eq!(prost::Message::encode_to_vec(&expected), previous, "the new fields, empty, add nothing");
        let decoded = <v1::CategoryValue as prost::Message>::decode(previous).unwrap();
        assert_eq!(decoded, expected);
        let Some(v1::category_value::Value::SendSupport(support)) = decoded.value else { panic!("send support") };
        let plan = support.ehc_plan.unwrap();
        assert!(plan.section_a.is_empty() && plan.advice.is_empty());
        assert_eq!(check(&expected), Ok(()));
    }

    /// Issue 12: `{}` was accepted as a whole communication-needs value.
    #[test]
    fn an_empty_value_is_refused() {
        let violations = check(&passport(v1::CommunicationNeeds::default())).unwrap_err();
        assert_eq!(violations[0].field, "value.communication_needs");
        assert_eq!(
            check(&passport(v1::CommunicationNeeds { likes: vec!["trains".into()], ..Default::default() })),
            Ok(())
        );
    }

    /// Issue 12: a month 13 was stored, shown and audited as a date.
    #[test]
    fn every_date_is_a_calendar_date() {
        let with_dob = |year, month, day| v1::CategoryValue {
            value: Some(v1::category_value::Value::IdentityAndContacts(v1::IdentityAndContacts {
                date_of_birth: Some(v1::Date { year, month, day }),
                ..Default::default()
            })),
        };
        assert_eq!(check(&with_dob(2016, 2, 29)), Ok(()));
        for ((year, month, day), field) in [
            ((2016, 13, 1), "value.identity_and_contacts.date_of_birth.month"),
            ((2017, 2, 29), "value.identity_and_contacts.date_of_birth.day"),
            ((2016, 1, 32), "value.identity_and_contacts.date_of_birth.day"),
            ((0, 0, 0), "value.identity_and_contacts.date_of_birth.year"),
        ] {
            let violations = check(&with_dob(year, month, day)).unwrap_err();
            assert_eq!(violations[0].field, field, "{year}-{month}-{day}");
        }
        let diagnosed = v1::CategoryValue {
            value: Some(v1::category_value::Value::HealthSummary(v1::HealthSummary {
                conditions: vec![v1::Condition {
                    diagnosed_on: Some(v1::Date { year: 2020, month: 4, day: 31 }),
                    ..Default::default()
                }],
                ..Default::default()
            })),
        };
        assert_eq!(check(&diagnosed).unwrap_err()[0].field, "value.health_summary.conditions[0].diagnosed_on.day");
    }

    #[test]
    fn every_named_field_exists_in_the_contract() {
        let pool = pool().unwrap();
        for name in FREE_TEXT.iter().chain(LIST_LIMITS.iter().map(|(name, _)| name)) {
            let (message, field) = name.rsplit_once('.').unwrap();
            let descriptor = pool.get_message_by_name(message).unwrap_or_else(|| panic!("{message}"));
            assert!(descriptor.get_field_by_name(field).is_some(), "{name} is not a field of the contract");
        }
    }

    #[test]
    fn the_violations_listed_are_bounded() {
        let many = passport(v1::CommunicationNeeds {
            likes: vec!["x".repeat(limits::MAX_FREE_TEXT_BYTES + 1); 60],
            ..Default::default()
        });
        assert_eq!(check(&many).unwrap_err().len(), MAX_VIOLATIONS);
    }
}
