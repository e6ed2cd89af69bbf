//! Building requests of the broker flows, shared by the end-to-end tests.

use tio_client::{Client, ConnectionSettings};
use tio_proto::v1;

use super::Sandbox;

/// Test-range NHS numbers.
pub(crate) const AMY: &str = "9990079196";
pub(crate) const BEN: &str = "9990237573";

pub(crate) async fn as_professional(sandbox: &Sandbox, name: &str) -> Client {
    let settings = ConnectionSettings { professional: Some(format!("{name}-staff-1")), ..sandbox.settings(name) };
    Client::connect(&settings).await.unwrap()
}

/// Connects to another node (`peer`) as a professional of agency `name`.
pub(crate) async fn as_professional_on(peer: &super::Peer, name: &str) -> Client {
    let settings = ConnectionSettings { professional: Some(format!("{name}-staff-1")), ..peer.settings(name) };
    Client::connect(&settings).await.unwrap()
}

/// Declares `client`'s agency involved with Amy (an allocation to a caseworker).
pub(crate) async fn declare_allocation(client: &Client) {
    let declare = v1::DeclareRelationshipRequest {
        child: child(AMY),
        kind: v1::RelationshipKind::Allocation as i32,
        reference: "caseworker".into(),
    };
    client.relationships().declare_relationship(client.request(declare)).await.unwrap();
}

pub(crate) fn child(nhs_number: &str) -> Option<v1::ChildRef> {
    Some(v1::ChildRef { nhs_number: nhs_number.into() })
}

pub(crate) fn communication_needs(text: &str) -> v1::CategoryValue {
    v1::CategoryValue {
        value: Some(v1::category_value::Value::CommunicationNeeds(v1::CommunicationNeeds {
            how_i_communicate: text.into(),
            things_you_must_know: vec!["Family speaks Polish; book an interpreter".into()],
            ..Default::default()
        })),
    }
}

/// An identity value stating the date of birth `born`.
pub(crate) fn identity_born(born: tio_core::Date) -> v1::CategoryValue {
    v1::CategoryValue {
        value: Some(v1::category_value::Value::IdentityAndContacts(v1::IdentityAndContacts {
            given_name: "Amelia".into(),
            date_of_birth: Some(v1::Date {
                year: i32::from(born.year()),
                month: i32::from(born.month()),
                day: i32::from(born.day()),
            }),
            ..Default::default()
        })),
    }
}

/// A SEND support value: SEN support for speech, language and communication needs.
pub(crate) fn send_support() -> v1::CategoryValue {
    v1::CategoryValue {
        value: Some(v1::category_value::Value::SendSupport(v1::SendSupport {
            provision: v1::SenProvision::SenSupport as i32,
            primary_need: v1::SenNeed::Slcn as i32,
            ..Default::default()
        })),
    }
}

/// A social care involvement value at early help.
pub(crate) fn early_help() -> v1::CategoryValue {
    v1::CategoryValue {
        value: Some(v1::category_value::Value::SocialCareInvolvement(v1::SocialCareInvolvement {
            level: v1::SocialCareLevel::EarlyHelp as i32,
            team: "Family support".into(),
            ..Default::default()
        })),
    }
}

pub(crate) fn health_summary(condition: &str) -> v1::CategoryValue {
    v1::CategoryValue {
        value: Some(v1::category_value::Value::HealthSummary(v1::HealthSummary {
            conditions: vec![v1::Condition { description: condition.into(), ..Default::default() }],
            ..Default::default()
        })),
    }
}

pub(crate) fn publish_request(
    nhs_number: &str,
    category: v1::Category,
    value: v1::CategoryValue,
    key: &str,
) -> v1::PublishRequest {
    v1::PublishRequest {
        child: child(nhs_number),
        category: category as i32,
        value: Some(value),
        source_reference: "EPR-42".into(),
        idempotency_key: key.into(),
        recorded_at: None,
    }
}

pub(crate) async fn publish(
    client: &Client,
    request: v1::PublishRequest,
) -> Result<v1::PublishResponse, tonic::Status> {
    client.records().publish(client.request(request)).await.map(tonic::Response::into_inner)
}

pub(crate) async fn profile(client: &Client, nhs_number: &str) -> Vec<v1::Category> {
    let request = v1::GetProfileRequest { child: child(nhs_number), categories: Vec::new() };
    let response = client.records().get_profile(client.request(request)).await.unwrap().into_inner();
    response.entries.iter().map(|entry| entry.category()).collect()
}

pub(crate) fn consent_request(categories: &[v1::Category]) -> v1::RecordConsentRequest {
    v1::RecordConsentRequest {
        authority: None,
        child: child(AMY),
        giver_role: v1::ConsentGiverRole::ParentWithParentalResponsibility as i32,
        giver_name: "Anna Nowak".into(),
        categories: categories.iter().map(|c| *c as i32).collect(),
        recipients: Some(v1::Recipients { sectors: vec![v1::Sector::Education as i32], ..Default::default() }),
        purpose: "So that school and the SEND team know how to support Amy".into(),
        lawful_basis: v1::LawfulBasis::PublicTask as i32,
        special_category_condition: v1::SpecialCategoryCondition::HealthOrSocialCare as i32,
        valid: None,
        evidence: Some(v1::ConsentEvidence {
            method: v1::ConsentMethod::InPerson as i32,
            reference: "form-7".into(),
            language: "pl".into(),
            interpreter_present: true,
            notes: String::new(),
        }),
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}
