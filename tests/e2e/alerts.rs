//! Alerts over real mutual TLS (issue 16, sections 2 and 4): a hospital's read or
//! receipt of a child-protection flag alerts the social-care agency that published it,
//! on a durable watch with credit and acks; only whom an alert is for sees it (auditors
//! every one); the command line lists them.

use std::time::{Duration, Instant};

use tio_client::Client;
use tio_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::records::*;
use crate::support::stream::*;
use crate::support::{Sandbox, tio_as};

/// An open alert stream, as a client holds it.
struct Watch {
    requests: mpsc::Sender<v1::WatchAlertsRequest>,
    responses: tonic::Streaming<v1::WatchAlertsResponse>,
}

impl Watch {
    async fn open(client: &Client, from: Option<u64>) -> Result<Watch, tonic::Status> {
        let (requests, receiver) = mpsc::channel(16);
        let open = v1::OpenAlertWatch { credit: 8, from_leaf_index: from };
        let message = Some(v1::watch_alerts_request::Message::Open(open));
        requests.send(v1::WatchAlertsRequest { message }).await.unwrap();
        let responses = client.alerts().watch_alerts(client.request(ReceiverStream::new(receiver))).await?;
        Ok(Watch { requests, responses: responses.into_inner() })
    }

    /// The next alert, skipping heartbeats; panics after `WAIT`.
    async fn alert(&mut self) -> v1::Alert {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.responses.message())
                .await
                .expect("an alert in time")
                .expect("the stream is healthy")
                .expect("the stream is open");
            if let Some(v1::watch_alerts_response::Message::Alert(alert)) = message.message {
                return alert;
            }
        }
    }

    /// Whether an alert arrives within `wait`.
    async fn alert_within(&mut self, wait: Duration) -> Option<v1::Alert> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.responses.message()).await.ok()?;
            if let Some(v1::watch_alerts_response::Message::Alert(alert)) = message.expect("healthy")?.message {
                return Some(alert);
            }
        }
    }

    async fn ack(&self, through: u64) {
        let ack = v1::AlertAck { through_leaf_index: through };
        let message = Some(v1::watch_alerts_request::Message::Ack(ack));
        self.requests.send(v1::WatchAlertsRequest { message }).await.unwrap();
    }

    /// Closes the stream once the server has read everything sent on it.
    async fn close(mut self) {
        drop(self.requests);
        while let Ok(Some(_)) = self.responses.message().await {}
    }
}

async fn list(client: &Client) -> Vec<v1::Alert> {
    let request = v1::ListAlertsRequest { page: None };
    client.alerts().list_alerts(client.request(request)).await.unwrap().into_inner().alerts
}

#[test]
fn a_hospitals_read_of_a_flag_alerts_the_social_care_agency_that_published_it() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        use v1::Category::SocialCareInvolvement;
        let social_care = as_professional(&sandbox, "social-care").await;
        let hospital = as_professional(&sandbox, "hospital").await;
        let send_team = as_professional(&sandbox, "send-team").await;
        let auditor = sandbox.client("auditor").await;
        let mut watch = Watch::open(&social_care, None).await.unwrap();
        let second = Watch::open(&social_care, None).await.map(|_| ()).unwrap_err();
        assert_eq!(second.code(), Code::FailedPrecondition, "{second:?}");
        assert_eq!(second.get_details_error_info().unwrap().reason, "STREAM_ALREADY_OPEN");

        let flag = v1::CategoryValue {
            value: Some(v1::category_value::Value::SocialCareInvolvement(v1::SocialCareInvolvement {
                level: v1::SocialCareLevel::LookedAfter as i32,
                lawful_basis: v1::LawfulBasis::PublicTask as i32,
                special_category_condition: v1::SpecialCategoryCondition::SubstantialPublicInterest as i32,
                ..Default::default()
            })),
        };
        publish(&social_care, publish_request(AMY, SocialCareInvolvement, flag, "a-1")).await.unwrap();
        let declare = v1::DeclareRelationshipRequest {
            child: child(AMY),
            kind: v1::RelationshipKind::Referral as i32,
            reference: "ED attendance".into(),
        };
        hospital.relationships().declare_relationship(hospital.request(declare)).await.unwrap();

        let read_at = Instant::now();
        assert_eq!(profile(&hospital, AMY).await, [SocialCareInvolvement]);
        let alert = watch.alert().await;
        eprintln!("the access alert arrived {} ms after the read's reply", read_at.elapsed().as_millis());
        assert_eq!(alert.kind, "protection_flag_access");
        assert_eq!((alert.agency_id.as_str(), alert.professional_id.as_str()), ("hospital", "hospital-staff-1"));
        assert_eq!(alert.action(), v1::AuditAction::ProfileRead);
        assert_eq!(alert.categories, [SocialCareInvolvement as i32]);
        assert_eq!((alert.nhs_number.as_str(), alert.child_masked.as_str()), (AMY, "*** *** 9196"));
        assert_eq!(alert.addressed_to, ["social-care"]);
        let entry = alert.entry.clone().unwrap();
        assert_eq!((entry.leaf_index, entry.basis.as_str()), (alert.leaf_index, "protection_flag"));

        // A delivery of the flag alerts too.
        create(
            &hospital,
            "ed",
            &[SocialCareInvolvement],
            Some(v1::start_from::From::ProfileThenLive(v1::ProfileThenLive {})),
        )
        .await;
        let mut deliveries = Stream::open(&hospital, "ed", 4).await.unwrap();
        let delivered = deliveries.delivery().await;
        deliveries.ack(&[delivered.delivery_number]).await;
        let received = watch.alert().await;
        assert_eq!(received.action(), v1::AuditAction::Delivery);
        assert!(received.leaf_index > alert.leaf_index);

        // Durable: acked through the first, the next watch starts at the second.
        watch.ack(alert.leaf_index).await;
        watch.close().await;
        let mut again = Watch::open(&social_care, None).await.unwrap();
        assert_eq!(again.alert().await.leaf_index, received.leaf_index, "the unacked alert comes again");
        assert!(again.alert_within(Duration::from_secs(1)).await.is_none(), "and nothing else");
        let status = {
            again.ack(received.leaf_index + 1_000).await;
            loop {
                match again.responses.message().await {
                    Err(status) => break status,
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("ended without a status"),
                }
            }
        };
        assert_eq!(status.code(), Code::InvalidArgument, "an ack of what was never sent: {status:?}");
        let mut replay = Watch::open(&social_care, Some(0)).await.unwrap();
        assert_eq!(replay.alert().await.leaf_index, alert.leaf_index, "from a leaf index, again");
        replay.close().await;

        // Only whom an alert is for sees it; auditors see every one, the child masked.
        assert!(list(&send_team).await.is_empty());
        assert_eq!(list(&social_care).await.len(), 2);
        let everyone = list(&auditor).await;
        assert_eq!(everyone.iter().map(|a| a.leaf_index).collect::<Vec<_>>(), [alert.leaf_index, received.leaf_index]);
        assert!(everyone.iter().all(|a| a.nhs_number.is_empty() && a.child_masked == "*** *** 9196"));
        // Reading alerts is audited.
        let query = v1::QueryEntriesRequest {
            agency_id: "social-care".into(),
            action: v1::AuditAction::AuditRead as i32,
            ..Default::default()
        };
        let reads = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        assert!(reads.iter().any(|entry| entry.detail.starts_with("alerts ")), "{reads:#?}");
    });

    let (ok, stdout, stderr) = tio_as(&sandbox, "social-care", &["alerts", "list", "--professional", "sw-1"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.contains("\"kind\":\"protection_flag_access\""), "{stdout}");
    let (ok, stdout, stderr) =
        tio_as(&sandbox, "social-care", &["alerts", "watch", "--from", "0", "--count", "1", "--professional", "sw-1"]);
    assert!(ok && stdout.lines().count() == 1, "{stdout}{stderr}");
}

/// Issue 17, section 1: 90 days before the 16th birthday, the agency that recorded a
/// parent's consent is told to review it with the young person; once, across restarts.
#[test]
fn a_parents_consent_raises_a_review_alert_before_the_16th_birthday_once() {
    let mut sandbox = Sandbox::start();
    let runtime = runtime();
    let reviews = |client: Client| async move {
        let alerts = list(&client).await;
        alerts.into_iter().filter(|alert| alert.kind == "consent_review").collect::<Vec<_>>()
    };
    runtime.block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        hospital
            .consents()
            .record_consent(hospital.request(consent_request(&[v1::Category::CommunicationNeeds])))
            .await
            .unwrap();
        // Sixteen in 30 days.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let today = tio_core::Timestamp::from_unix_micros(now.as_micros() as i64).uk_date().unwrap();
        let born =
            today.checked_sub(jiff::Span::new().years(16)).unwrap().checked_add(jiff::Span::new().days(30)).unwrap();
        let identity = identity_born(born);
        publish(&hospital, publish_request(AMY, v1::Category::IdentityAndContacts, identity, "dob")).await.unwrap();

        // The first pass of the broker's duties runs five seconds after start.
        let started = Instant::now();
        let alert = loop {
            if let Some(alert) = reviews(hospital.clone()).await.pop() {
                break alert;
            }
            assert!(started.elapsed() < WAIT, "no review alert reached the hospital");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(alert.addressed_to, ["hospital"]);
        assert_eq!(alert.agency_id, "consent-review");
        assert_eq!(alert.action(), v1::AuditAction::ConsentReviewDue);
        assert_eq!(alert.nhs_number, AMY, "the agency it is for knows the child");
        let detail = alert.entry.as_ref().map(|entry| entry.detail.clone()).unwrap_or_default();
        assert!(detail.starts_with("the child turns 16 within 90 days"), "{detail}");
        let school = as_professional(&sandbox, "school").await;
        assert!(reviews(school).await.is_empty(), "only the recording agency is told");
    });
    // A restart runs the duties again: the alert is not raised twice.
    sandbox.restart();
    runtime.block_on(async {
        tokio::time::sleep(Duration::from_secs(7)).await;
        let hospital = as_professional(&sandbox, "hospital").await;
        assert_eq!(reviews(hospital).await.len(), 1);
    });
}
