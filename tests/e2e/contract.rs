//! The contract's promises that an outside integrator checks by sending good and bad
//! requests from its own client (issue 12): every refusal has the documented status
//! and names its field or reason, and nothing refused is stored.

use std::time::Duration;

use prost::Message;
use tio_client::Client;
use tio_proto::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::Sandbox;
use crate::support::records::*;

/// A `PublishRequest` whose `value` (field 3) is raw bytes, as a client with a broken
/// encoder, or a hand-made frame, would send it.
#[derive(Clone, PartialEq, Message)]
struct RawPublishRequest {
    #[prost(message, optional, tag = "1")]
    child: Option<v1::ChildRef>,
    #[prost(int32, tag = "2")]
    category: i32,
    #[prost(bytes = "vec", tag = "3")]
    value: Vec<u8>,
    #[prost(string, tag = "5")]
    idempotency_key: String,
}

async fn publish_raw(client: &Client, value: Vec<u8>) -> tonic::Status {
    let request = RawPublishRequest {
        child: child(AMY),
        category: v1::Category::CommunicationNeeds as i32,
        value,
        idempotency_key: "raw-1".into(),
    };
    let mut grpc = tonic::client::Grpc::new(client.channel());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<RawPublishRequest, v1::PublishResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/tio.v1.RecordService/Publish");
    grpc.unary(client.request(request), path, codec).await.expect_err("the value does not decode")
}

fn field_of(status: &tonic::Status) -> String {
    let bad = status.get_details_bad_request().unwrap_or_else(|| panic!("no BadRequest in {status:?}"));
    bad.field_violations[0].field.clone()
}

fn reason_of(status: &tonic::Status) -> String {
    let info = status.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "tio.v1");
    info.reason
}

fn identity_with_birth(year: i32, month: i32, day: i32) -> v1::CategoryValue {
    v1::CategoryValue {
        value: Some(v1::category_value::Value::IdentityAndContacts(v1::IdentityAndContacts {
            given_name: "Amelia".into(),
            date_of_birth: Some(v1::Date { year, month, day }),
            ..Default::default()
        })),
    }
}

/// Issue 12, items 1, 2 and 3: a value that does not decode, a date that is not a
/// date and a request over the size limit are refused as the contract says, and
/// none of them is stored or audited as a publish.
#[test]
fn undecodable_values_impossible_dates_and_oversized_requests_are_refused_as_documented() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        // communication_needs (CategoryValue field 2) holding how_i_communicate that is not UTF-8.
        let not_utf8 = vec![2 << 3 | 2, 4, 1 << 3 | 2, 2, 0xff, 0xfe];
        let cases = [
            (not_utf8, "value.communication_needs.how_i_communicate"),
            (vec![0xff, 0xff, 0xff], "value"),
            // communication_needs sent as a varint: a wrong wire type.
            (vec![2 << 3, 1], "value"),
        ];
        for (bytes, field) in cases {
            let status = publish_raw(&hospital, bytes).await;
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert_eq!(field_of(&status), field, "{status:?}");
        }

        let category = v1::Category::IdentityAndContacts;
        for ((year, month, day), field) in [
            ((2016, 13, 1), "value.identity_and_contacts.date_of_birth.month"),
            ((2017, 2, 29), "value.identity_and_contacts.date_of_birth.day"),
            ((2016, 1, 32), "value.identity_and_contacts.date_of_birth.day"),
            // A calendar date, but not a child's: in the future, or more than 26 years ago.
            ((2099, 1, 1), "value.identity_and_contacts.date_of_birth"),
            ((1990, 1, 1), "value.identity_and_contacts.date_of_birth"),
        ] {
            let request = publish_request(AMY, category, identity_with_birth(year, month, day), "date-1");
            let status = publish(&hospital, request).await.unwrap_err();
            assert_eq!((status.code(), field_of(&status).as_str()), (Code::InvalidArgument, field), "{status:?}");
        }
        let mut request = publish_request(AMY, category, identity_with_birth(2016, 2, 29), "date-1");
        request.recorded_at = Some(prost_types::Timestamp { seconds: 0, nanos: -1 });
        let status = publish(&hospital, request).await.unwrap_err();
        assert_eq!(field_of(&status), "recorded_at.nanos");

        // Over the 4 MiB message limit: unary, then as an item of a bulk stream.
        let mut huge = publish_request(AMY, category, identity_with_birth(2016, 2, 29), "huge");
        huge.source_reference = "x".repeat(5 * 1024 * 1024);
        let status = publish(&hospital, huge.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let mut results = hospital
            .records()
            .publish_stream(hospital.request(tokio_stream::iter(vec![huge])))
            .await
            .unwrap()
            .into_inner();
        let status = loop {
            match results.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without refusing the oversized item"),
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

        // Nothing above was stored: the good date is this child's first identity value.
        let good = publish_request(AMY, category, identity_with_birth(2016, 2, 29), "date-1");
        assert!(!publish(&hospital, good).await.unwrap().duplicate);
        let auditor = sandbox.client("auditor").await;
        let query = v1::QueryEntriesRequest {
            action: v1::AuditAction::Publish as i32,
            child: child(AMY),
            ..Default::default()
        };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        assert_eq!(entries.len(), 1, "{entries:#?}");
    });
}

/// Issue 12, items 4 and 5: a page token or a position the broker did not issue,
/// and a page size outside 1 to 500, are INVALID_ARGUMENT; real tokens page through.
#[test]
fn tokens_and_positions_the_broker_did_not_issue_are_refused() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let published = publish(
            &hospital,
            publish_request(AMY, v1::Category::CommunicationNeeds, communication_needs("Signs"), "p-1"),
        )
        .await
        .unwrap();
        for key in ["c-1", "c-2", "c-3"] {
            let mut request = consent_request(&[v1::Category::CommunicationNeeds]);
            request.purpose = format!("consent {key}");
            hospital.consents().record_consent(hospital.request(request)).await.unwrap();
        }
        let list = |page_size: u32, page_token: &str| v1::ListConsentsRequest {
            child: child(AMY),
            page: Some(v1::PageRequest { page_size, page_token: page_token.into() }),
        };
        // Two pages of two and one.
        let first = hospital.consents().list_consents(hospital.request(list(2, ""))).await.unwrap().into_inner();
        assert_eq!(first.consents.len(), 2);
        let token = first.page.unwrap().next_page_token;
        assert!(!token.is_empty());
        let second = hospital.consents().list_consents(hospital.request(list(2, &token))).await.unwrap().into_inner();
        assert_eq!(second.consents.len(), 1);
        assert!(second.page.unwrap().next_page_token.is_empty());
        // Garbage, a number, a token of another query, and page sizes out of range.
        for (request, field) in [
            (list(2, "garbage"), "page.page_token"),
            (list(2, "2"), "page.page_token"),
            (v1::ListConsentsRequest { child: child(BEN), ..list(2, &token) }, "page.page_token"),
            (list(501, ""), "page.page_size"),
        ] {
            let status = hospital.consents().list_consents(hospital.request(request)).await.unwrap_err();
            assert_eq!((status.code(), field_of(&status).as_str()), (Code::InvalidArgument, field), "{status:?}");
        }

        let auditor = sandbox.client("auditor").await;
        let query = |page_size: u32, page_token: &str| v1::QueryEntriesRequest {
            page: Some(v1::PageRequest { page_size, page_token: page_token.into() }),
            ..Default::default()
        };
        let page = auditor.audit().query_entries(auditor.request(query(1, ""))).await.unwrap().into_inner();
        let token = page.page.unwrap().next_page_token;
        auditor.audit().query_entries(auditor.request(query(1, &token))).await.unwrap();
        for (request, field) in [(query(501, ""), "page.page_size"), (query(1, "7"), "page.page_token")] {
            let status = auditor.audit().query_entries(auditor.request(request)).await.unwrap_err();
            assert_eq!((status.code(), field_of(&status).as_str()), (Code::InvalidArgument, field), "{status:?}");
        }

        // Start positions: garbage and too long are refused and store nothing.
        let school = as_professional(&sandbox, "school").await;
        let subscription = |name: &str, token: Vec<u8>| v1::CreateSubscriptionRequest {
            name: name.into(),
            categories: vec![v1::Category::CommunicationNeeds as i32],
            start: Some(v1::StartFrom { from: Some(v1::start_from::From::AfterPosition(v1::Position { token })) }),
            max_in_flight: 0,
        };
        for token in [b"garbage".to_vec(), vec![7; 65], vec![0xff; 8]] {
            let request = subscription("bad-start", token);
            let status = school.subscriptions().create_subscription(school.request(request)).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert_eq!(field_of(&status), "start.after_position.token");
        }
        let listed = school
            .subscriptions()
            .list_subscriptions(school.request(v1::ListSubscriptionsRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.subscriptions.is_empty(), "{listed:?}");
        let issued = published.position.unwrap().token;
        school.subscriptions().create_subscription(school.request(subscription("good-start", issued))).await.unwrap();
    });
}

/// Issue 12, items 8 and 9: a duplicate publish repeats the original's commit time,
/// and refusals carry their reason and what they are about.
#[test]
fn duplicates_repeat_the_original_and_refusals_carry_details() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let request = publish_request(AMY, v1::Category::CommunicationNeeds, communication_needs("Signs"), "dup-1");
        let original = publish(&hospital, request.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let again = publish(&hospital, request.clone()).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(
            (again.update_id.as_str(), again.position.as_ref(), again.committed_at.as_ref()),
            (original.update_id.as_str(), original.position.as_ref(), original.committed_at.as_ref())
        );
        // A different recorded_at is still the same content; a different source reference is not.
        let later = v1::PublishRequest { recorded_at: Some(prost_types::Timestamp::default()), ..request.clone() };
        assert!(publish(&hospital, later).await.unwrap().duplicate);
        let other = v1::PublishRequest { source_reference: "EPR-43".into(), ..request.clone() };
        let status = publish(&hospital, other).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(reason_of(&status), "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(status.get_details_resource_info().unwrap().resource_name, "idempotency_key");
        // Padding in a client's key is refused, not stored as another key.
        let padded = v1::PublishRequest { idempotency_key: "dup-1 ".into(), ..request };
        assert_eq!(field_of(&publish(&hospital, padded).await.unwrap_err()), "idempotency_key");

        let school = as_professional(&sandbox, "school").await;
        let status =
            publish(&school, publish_request(AMY, v1::Category::HealthSummary, health_summary("Asthma"), "s-1"))
                .await
                .unwrap_err();
        assert_eq!(
            (status.code(), reason_of(&status).as_str()),
            (Code::PermissionDenied, "NOT_PERMITTED_FOR_CATEGORY")
        );

        let status = school
            .subscriptions()
            .get_subscription_status(school.request(v1::GetSubscriptionStatusRequest { name: "nope".into() }))
            .await
            .unwrap_err();
        assert_eq!((status.code(), reason_of(&status).as_str()), (Code::NotFound, "SUBSCRIPTION_NOT_FOUND"));
        let resource = status.get_details_resource_info().unwrap();
        assert_eq!((resource.resource_type.as_str(), resource.resource_name.as_str()), ("tio.v1.Subscription", "nope"));

        let consent = hospital
            .consents()
            .record_consent(hospital.request(consent_request(&[v1::Category::CommunicationNeeds])))
            .await
            .unwrap()
            .into_inner();
        let withdraw = v1::WithdrawConsentRequest {
            child: child(AMY),
            consent_id: consent.consent_id.clone(),
            reason: "changed her mind".into(),
            evidence: consent_request(&[]).evidence,
        };
        hospital.consents().withdraw_consent(hospital.request(withdraw.clone())).await.unwrap();
        let status = hospital.consents().withdraw_consent(hospital.request(withdraw)).await.unwrap_err();
        assert_eq!(
            (status.code(), reason_of(&status).as_str()),
            (Code::FailedPrecondition, "CONSENT_ALREADY_WITHDRAWN")
        );
        let failure = status.get_details_precondition_failure().unwrap();
        assert_eq!(failure.violations[0].subject, format!("consent/{}", consent.consent_id));

        let status = hospital
            .consents()
            .get_consent(hospital.request(v1::GetConsentRequest { child: child(AMY), consent_id: "c-none".into() }))
            .await
            .unwrap_err();
        assert_eq!((status.code(), reason_of(&status).as_str()), (Code::NotFound, "CONSENT_NOT_FOUND"));
    });
}

/// Issue 12, items 7 and 10: an oversized professional id is refused on its own call
/// without closing the connection, and a relationship may be declared for a child the
/// broker has not heard of, saying so when it is declared again.
#[test]
fn an_oversized_professional_id_fails_alone_and_declarations_say_when_they_repeat() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let school = as_professional(&sandbox, "school").await;
        let declare = v1::DeclareRelationshipRequest {
            child: child(BEN),
            kind: v1::RelationshipKind::Enrolment as i32,
            reference: "roll-7".into(),
        };
        let first = school.relationships().declare_relationship(school.request(declare.clone())).await.unwrap();
        assert!(!first.get_ref().already_active);
        let again = school.relationships().declare_relationship(school.request(declare.clone())).await.unwrap();
        assert!(again.get_ref().already_active);
        assert_eq!(again.get_ref().relationship_id, first.get_ref().relationship_id);
        let padded = v1::DeclareRelationshipRequest { reference: " roll-7".into(), ..declare };
        let status = school.relationships().declare_relationship(school.request(padded)).await.unwrap_err();
        assert_eq!(field_of(&status), "reference");

        // A bulk stream stays open on the hospital's connection throughout.
        let hospital = as_professional(&sandbox, "hospital").await;
        let (items, receiver) = tokio::sync::mpsc::channel(4);
        let mut results = hospital
            .records()
            .publish_stream(hospital.request(tokio_stream::wrappers::ReceiverStream::new(receiver)))
            .await
            .unwrap()
            .into_inner();
        for (index, size) in [20 * 1024, 100 * 1024].into_iter().enumerate() {
            let mut request =
                tonic::Request::new(v1::ListRelationshipsRequest { child: child(BEN), include_ended: false });
            request.metadata_mut().insert("x-tio-professional", "p".repeat(size).parse().unwrap());
            let status = hospital.relationships().list_relationships(request).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{size}: {status:?}");
            assert_eq!(field_of(&status), "x-tio-professional");
            // The open stream on the same connection still answers.
            let key = format!("stream-{index}");
            let item = publish_request(BEN, v1::Category::CommunicationNeeds, communication_needs("Signs"), &key);
            items.send(item).await.unwrap();
            let result = tokio::time::timeout(Duration::from_secs(15), results.message())
                .await
                .expect("an answer in time")
                .expect("the stream survived the bad call")
                .expect("the stream is open");
            assert!(matches!(result.outcome, Some(v1::publish_stream_result::Outcome::Published(_))), "{result:?}");
        }
    });
}
