//! Subscriptions over real mutual TLS: live delivery in order with acks and credit,
//! redelivery after a reconnect, a withdrawal stopping queued deliveries, a profile
//! then live without a gap or a duplicate, one copy per agency, and a suspension
//! closing the stream.

use std::time::Duration;

use tio_client::Client;
use tio_proto::v1;
use tonic::Code;

use crate::support::Sandbox;
use crate::support::records::*;
use crate::support::stream::*;

/// Consent for the education sector to see communication needs and health, and the
/// SEND team involved.
async fn consent_and_involve(hospital: &Client, send_team: &Client) -> v1::ConsentRecord {
    let consent = hospital
        .consents()
        .record_consent(
            hospital.request(consent_request(&[v1::Category::CommunicationNeeds, v1::Category::HealthSummary])),
        )
        .await
        .unwrap()
        .into_inner();
    let declare = v1::DeclareRelationshipRequest {
        child: child(AMY),
        kind: v1::RelationshipKind::Allocation as i32,
        reference: "caseworker".into(),
    };
    send_team.relationships().declare_relationship(send_team.request(declare)).await.unwrap();
    consent
}

/// The hospital, and the SEND team consented and involved with a stream open on its
/// subscription `main` to communication needs.
async fn send_team_streaming(sandbox: &Sandbox) -> (Client, Client, Stream) {
    let hospital = as_professional(sandbox, "hospital").await;
    let send_team = as_professional(sandbox, "send-team").await;
    consent_and_involve(&hospital, &send_team).await;
    create(&send_team, "main", &[v1::Category::CommunicationNeeds], None).await;
    let stream = Stream::open(&send_team, "main", 0).await.unwrap();
    (hospital, send_team, stream)
}

/// The server's count of durable syncs so far, from its metrics.
fn syncs(sandbox: &Sandbox) -> u64 {
    let text = crate::metrics::scrape(sandbox, "/metrics");
    let line = text.lines().find(|line| line.starts_with("tio_commit_sync_seconds_count")).expect(&text);
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Issue 14: a subscriber that has read everything gets each new update with no sync of
/// its own: its delivery (audit entry, unacked record, cursor) commits with the publish.
#[test]
fn a_caught_up_subscriber_is_delivered_each_update_in_its_publishs_own_sync() {
    const PUBLISHES: u64 = 20;
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let (hospital, _send_team, mut stream) = send_team_streaming(&sandbox).await;
        let needs = |text: &str, key: &str| {
            publish_request(AMY, v1::Category::CommunicationNeeds, communication_needs(text), key)
        };
        publish(&hospital, needs("first", "s0")).await.unwrap();
        assert_eq!(stream.delivery().await.delivery_number, 1);

        let before = syncs(&sandbox);
        for n in 1..=PUBLISHES {
            let published = publish(&hospital, needs(&format!("v{n}"), &format!("s{n}"))).await.unwrap();
            let delivery = stream.delivery().await;
            assert_eq!((delivery.delivery_number, delivery.update_id), (n + 1, published.update_id));
        }
        let spent = syncs(&sandbox) - before;
        // Two syncs a delivery (the publish's, then the delivery's own) would be 40; a
        // few more are the server's own (audit checkpoints).
        assert!(spent < PUBLISHES * 3 / 2, "{spent} syncs for {PUBLISHES} publishes and their deliveries");
    });
}

#[test]
fn live_deliveries_arrive_in_order_and_unacked_ones_come_again_after_a_reconnect() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let send_team = as_professional(&sandbox, "send-team").await;
        publish(&hospital, publish_request(AMY, v1::Category::CommunicationNeeds, communication_needs("before"), "k0"))
            .await
            .unwrap();
        consent_and_involve(&hospital, &send_team).await;
        create(&send_team, "main", &[v1::Category::CommunicationNeeds, v1::Category::HealthSummary], None).await;
        let mut stream = Stream::open(&send_team, "main", 0).await.unwrap();

        let first =
            publish(&hospital, publish_request(AMY, v1::Category::HealthSummary, health_summary("Epilepsy"), "k1"))
                .await
                .unwrap();
        publish(&hospital, publish_request(AMY, v1::Category::CommunicationNeeds, communication_needs("after"), "k2"))
            .await
            .unwrap();
        let one = stream.delivery().await;
        assert_eq!(
            (one.delivery_number, one.redelivery, one.update_id.as_str()),
            (1, false, first.update_id.as_str()),
            "the first delivery is the first update published after the subscription began: {:?} {:?}",
            one.category(),
            one.value
        );
        assert_eq!(one.child.as_ref().unwrap().nhs_number, AMY, "the recipient is entitled to the number");
        assert_eq!(one.category(), v1::Category::HealthSummary);
        assert_eq!(one.source_reference, "EPR-42");
        let two = stream.delivery().await;
        assert_eq!(two.delivery_number, 2);
        match two.value.unwrap().value.unwrap() {
            v1::category_value::Value::CommunicationNeeds(needs) => assert_eq!(needs.how_i_communicate, "after"),
            other => panic!("wrong value {other:?}"),
        }
        stream.ack(&[1]).await;

        // A second stream on the same subscription is refused while the first is open.
        let mut second = Stream::open(&send_team, "main", 0).await.unwrap();
        assert_eq!(second.end().await.code(), Code::FailedPrecondition);

        let status_request = || send_team.request(v1::GetSubscriptionStatusRequest { name: "main".into() });
        let mut status =
            send_team.subscriptions().get_subscription_status(status_request()).await.unwrap().into_inner();
        for _ in 0..100 {
            if status.last_acked_number == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            status = send_team.subscriptions().get_subscription_status(status_request()).await.unwrap().into_inner();
        }
        assert_eq!(
            (status.last_delivered_number, status.last_acked_number, status.unacked, status.open),
            (2, 1, 1, true)
        );

        // Reconnect: the unacked delivery comes again, with its number. The server may
        // take a moment to see the old stream go; until then the subscription is busy.
        drop(stream);
        let mut again = None;
        for _ in 0..100 {
            let mut stream = Stream::open(&send_team, "main", 0).await.unwrap();
            match tokio::time::timeout(WAIT, stream.responses.message()).await.expect("an answer in time") {
                Ok(Some(v1::SubscribeResponse { message: Some(v1::subscribe_response::Message::Delivery(d)) })) => {
                    again = Some((stream, d));
                    break;
                }
                Err(status) if status.code() == Code::FailedPrecondition => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let (stream, redelivered) = again.expect("the unacked delivery again");
        assert_eq!((redelivered.delivery_number, redelivered.redelivery), (2, true));
        stream.ack(&[2]).await;
        let mut stream = stream;
        publish(&hospital, publish_request(AMY, v1::Category::HealthSummary, health_summary("Asthma"), "k3"))
            .await
            .unwrap();
        assert_eq!(stream.delivery().await.delivery_number, 3);
    });
}

#[test]
fn a_withdrawal_stops_deliveries_already_queued_and_the_skips_are_audited() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let send_team = as_professional(&sandbox, "send-team").await;
        let consent = consent_and_involve(&hospital, &send_team).await;
        create(&send_team, "main", &[v1::Category::CommunicationNeeds], None).await;
        // One credit: one delivery in flight, the rest queued in the store.
        let mut stream = Stream::open(&send_team, "main", 1).await.unwrap();
        for index in 0..5 {
            let value = communication_needs(&format!("note {index}"));
            publish(&hospital, publish_request(AMY, v1::Category::CommunicationNeeds, value, &format!("q{index}")))
                .await
                .unwrap();
        }
        let first = stream.delivery().await;
        assert_eq!(first.delivery_number, 1);
        let withdraw = v1::WithdrawConsentRequest {
            child: child(AMY),
            consent_id: consent.consent_id.clone(),
            reason: "Parent withdrew".into(),
            evidence: consent_request(&[]).evidence,
        };
        hospital.consents().withdraw_consent(hospital.request(withdraw)).await.unwrap();
        stream.ack(&[1]).await;
        assert!(stream.delivery_within(Duration::from_secs(2)).await.is_none(), "nothing after the withdrawal");

        // The four queued updates were skipped, each on the record with its reason.
        let auditor = sandbox.client("auditor").await;
        let mut skipped = Vec::new();
        for _ in 0..100 {
            let query = v1::QueryEntriesRequest {
                action: v1::AuditAction::DeliverySkipped as i32,
                agency_id: "send-team".into(),
                ..Default::default()
            };
            skipped = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
            if skipped.len() == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(skipped.len(), 4);
        assert!(skipped.iter().all(|entry| entry.reason == "consent_withdrawn"));
        let query = v1::QueryEntriesRequest { action: v1::AuditAction::Delivery as i32, ..Default::default() };
        let delivered = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        assert_eq!(delivered.len(), 1);
        assert_eq!((delivered[0].consent_id.as_str(), delivered[0].consent_revision), (consent.consent_id.as_str(), 1));
        assert!(!delivered[0].relationship_id.is_empty());
        assert_eq!(delivered[0].recipient_agency_id, "send-team");
    });
}

#[test]
fn a_profile_then_live_start_has_no_gap_and_no_duplicate_and_each_agency_gets_one_copy() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let send_team = as_professional(&sandbox, "send-team").await;
        consent_and_involve(&hospital, &send_team).await;
        publish(&hospital, publish_request(AMY, v1::Category::CommunicationNeeds, communication_needs("old"), "p1"))
            .await
            .unwrap();
        let latest_comms = publish(
            &hospital,
            publish_request(AMY, v1::Category::CommunicationNeeds, communication_needs("new"), "p2"),
        )
        .await
        .unwrap();
        let health =
            publish(&hospital, publish_request(AMY, v1::Category::HealthSummary, health_summary("Epilepsy"), "p3"))
                .await
                .unwrap();
        // Ben has no consent: nothing of his is sent.
        publish(&hospital, publish_request(BEN, v1::Category::CommunicationNeeds, communication_needs("ben"), "p4"))
            .await
            .unwrap();
        let start = v1::start_from::From::ProfileThenLive(v1::ProfileThenLive {});
        create(&send_team, "a-profile", &[v1::Category::CommunicationNeeds, v1::Category::HealthSummary], Some(start))
            .await;
        // A second subscription taking health summaries too: the earlier name delivers them.
        create(&send_team, "b-health", &[v1::Category::HealthSummary], None).await;
        let mut stream = Stream::open(&send_team, "a-profile", 0).await.unwrap();
        let mut profile = [stream.delivery().await, stream.delivery().await];
        profile.sort_by_key(|delivery| delivery.category);
        assert!(profile.iter().all(|delivery| delivery.from_profile));
        assert_eq!(profile[0].update_id, latest_comms.update_id, "the current value, not its history");
        assert_eq!(profile[1].update_id, health.update_id);
        let live =
            publish(&hospital, publish_request(AMY, v1::Category::HealthSummary, health_summary("Asthma"), "p5"))
                .await
                .unwrap();
        let next = stream.delivery().await;
        assert_eq!(
            (next.update_id.as_str(), next.from_profile, next.delivery_number),
            (live.update_id.as_str(), false, 3)
        );
        assert!(stream.delivery_within(Duration::from_millis(500)).await.is_none(), "no duplicate at the seam");
        let mut other = Stream::open(&send_team, "b-health", 0).await.unwrap();
        assert!(other.delivery_within(Duration::from_millis(700)).await.is_none(), "one copy per agency");
    });
}

#[test]
fn suspending_an_agency_closes_its_open_stream() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let send_team = as_professional(&sandbox, "send-team").await;
        create(&send_team, "main", &[v1::Category::SendSupport], None).await;
        let mut stream = Stream::open(&send_team, "main", 0).await.unwrap();
        let admin = sandbox.client("admin").await;
        let suspend = v1::SuspendAgencyRequest { agency_id: "send-team".into(), reason: "test".into() };
        admin.admin().suspend_agency(admin.request(suspend)).await.unwrap();
        let status = stream.end().await;
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("suspended"), "{status:?}");
        // A new call gets the same code as the open stream did (issue 12, item 6).
        let request = send_team.request(v1::ListSubscriptionsRequest {});
        let status = send_team.subscriptions().list_subscriptions(request).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    });
}

/// Issue 12, item 10: an ack of a number never sent and a credit of 0 were silently
/// ignored; each now ends the stream with INVALID_ARGUMENT naming its field, while an
/// ack repeated after a reconnect is still fine.
#[test]
fn an_ack_never_sent_and_a_zero_credit_are_refused_and_repeated_acks_are_not() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        use tonic_types::StatusExt;
        let (hospital, send_team, mut stream) = send_team_streaming(&sandbox).await;
        publish(&hospital, publish_request(AMY, v1::Category::CommunicationNeeds, communication_needs("one"), "k1"))
            .await
            .unwrap();
        let delivery = stream.delivery().await;
        assert_eq!(delivery.delivery_number, 1);
        stream.ack(&[1]).await;
        stream.ack(&[1]).await;
        stream.ack(&[2]).await;
        let status = stream.end().await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "ack.delivery_numbers");
        assert!(status.message().contains("never sent"), "{status:?}");

        let mut stream = Stream::open(&send_team, "main", 0).await.unwrap();
        let credit = v1::Credit { additional: 0 };
        stream
            .requests
            .send(v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Credit(credit)) })
            .await
            .unwrap();
        let status = stream.end().await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "credit.additional");
    });
}

/// The children of the crash test: test-range NHS numbers.
const CHILDREN: [&str; 4] = [AMY, BEN, "9990316767", "9990395950"];

#[test]
fn after_a_sigkill_during_a_bulk_load_every_acknowledged_update_is_delivered_in_order_and_the_log_verifies() {
    let mut sandbox = Sandbox::start();
    let runtime = runtime();
    let acknowledged = runtime.block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let send_team = as_professional(&sandbox, "send-team").await;
        for nhs_number in CHILDREN {
            let consent = v1::RecordConsentRequest {
                authority: None,
                child: child(nhs_number),
                ..consent_request(&[v1::Category::CommunicationNeeds])
            };
            hospital.consents().record_consent(hospital.request(consent)).await.unwrap();
            let declare = v1::DeclareRelationshipRequest {
                child: child(nhs_number),
                kind: v1::RelationshipKind::Allocation as i32,
                reference: String::new(),
            };
            send_team.relationships().declare_relationship(send_team.request(declare)).await.unwrap();
        }
        create(&send_team, "main", &[v1::Category::CommunicationNeeds], None).await;

        // A bulk load that is still running when the server is killed.
        let items: Vec<v1::PublishRequest> = (0..2000)
            .map(|index| {
                publish_request(
                    CHILDREN[index % CHILDREN.len()],
                    v1::Category::CommunicationNeeds,
                    communication_needs(&format!("note {index}")),
                    &format!("bulk-{index}"),
                )
            })
            .collect();
        let mut results =
            hospital.records().publish_stream(hospital.request(tokio_stream::iter(items))).await.unwrap().into_inner();
        let mut acknowledged = Vec::new();
        while let Ok(Some(result)) = results.message().await {
            if let Some(v1::publish_stream_result::Outcome::Published(published)) = result.outcome {
                acknowledged.push(published.update_id);
            }
            if acknowledged.len() == 150 {
                sandbox.crash_and_restart();
            }
        }
        acknowledged
    });
    assert!(acknowledged.len() >= 150, "the kill came after {} acks", acknowledged.len());

    runtime.block_on(async {
        let send_team = as_professional(&sandbox, "send-team").await;
        let mut subscriber = tio_client::Subscriber::new(send_team, "main");
        let mut seen = std::collections::HashSet::new();
        let mut last_position: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
        let wanted: std::collections::HashSet<String> = acknowledged.iter().cloned().collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while !wanted.is_subset(&seen) {
            let delivery =
                tokio::time::timeout_at(deadline, subscriber.next()).await.expect("deliveries in time").unwrap();
            let child = delivery.child.clone().unwrap().nhs_number;
            let position = delivery.position.clone().unwrap().token;
            if !delivery.redelivery {
                let previous = last_position.insert(child.clone(), position.clone());
                assert!(previous.is_none_or(|previous| previous < position), "per-child order broken for a child");
            }
            seen.insert(delivery.update_id.clone());
            subscriber.ack(delivery.delivery_number).await.unwrap();
        }
    });

    // The audit log survived the kill whole.
    let work = tempfile::tempdir().unwrap();
    let export = work.path().join("export");
    let server = format!("https://localhost:{}", sandbox.address.port());
    let pki = crate::support::arg(&sandbox.pki.dir);
    let (status, _, stderr) = crate::support::run_tio(
        &[
            "audit",
            "export",
            "--out",
            &crate::support::arg(&export),
            "--server",
            &server,
            "--dev-pki",
            &pki,
            "--as",
            "auditor",
        ],
        &[],
    );
    assert!(status.success(), "{stderr}");
    let keys = sandbox.data_dir().join("dev-keys").join("tio.keys");
    let (_, public_key, _) =
        crate::support::run_tio(&["audit", "public-key", "--keys-file", &crate::support::arg(&keys)], &[]);
    let key_file = work.path().join("audit.pub");
    std::fs::write(&key_file, public_key).unwrap();
    let (status, stdout, stderr) = crate::support::run_tio(
        &["audit", "verify", &crate::support::arg(&export), "--public-key", &crate::support::arg(&key_file)],
        &[],
    );
    assert!(status.success(), "{stdout}{stderr}");
}

/// A small deterministic generator, so a failing interleaving can be replayed by seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// What a race test does to stop deliveries while they are in flight and queued.
#[derive(Clone, Copy)]
enum Stop {
    /// The round's consent is withdrawn.
    WithdrawConsent,
    /// The family objects to the SEND team receiving the category (issue 16).
    RaiseObjection,
    /// The round's deliveries rest on a safeguarding share, which its declaring agency
    /// ends (issue 16).
    EndShare,
    /// The publisher retracts the round's last update (issue 16): no delivery of it
    /// may come after the retraction.
    Retract,
}

#[test]
fn a_withdrawal_raced_against_queued_deliveries_always_comes_after_every_delivery_it_allowed() {
    race_a_stop_against_queued_deliveries(Stop::WithdrawConsent);
}

#[test]
fn an_objection_raced_against_queued_deliveries_always_comes_after_every_delivery_made_before_it() {
    race_a_stop_against_queued_deliveries(Stop::RaiseObjection);
}

#[test]
fn a_safeguarding_share_ended_against_queued_deliveries_always_comes_after_every_delivery_it_allowed() {
    race_a_stop_against_queued_deliveries(Stop::EndShare);
}

#[test]
fn a_retraction_raced_against_queued_deliveries_always_comes_after_every_delivery_of_the_update() {
    race_a_stop_against_queued_deliveries(Stop::Retract);
}

/// The same races with two broker nodes on one PostgreSQL database: the subscriber on
/// one node, and the consent, the objection, the share and the publishes on the other.
#[test]
fn across_two_nodes_a_withdrawal_raced_against_queued_deliveries_always_comes_after_every_delivery_it_allowed() {
    race_across_nodes(Stop::WithdrawConsent);
}

#[test]
fn across_two_nodes_an_objection_raced_against_queued_deliveries_always_comes_after_every_delivery_made_before_it() {
    race_across_nodes(Stop::RaiseObjection);
}

#[test]
fn across_two_nodes_a_safeguarding_share_ended_against_queued_deliveries_always_comes_after_every_delivery_it_allowed()
{
    race_across_nodes(Stop::EndShare);
}

#[test]
fn across_two_nodes_a_retraction_raced_against_queued_deliveries_always_comes_after_every_delivery_of_the_update() {
    race_across_nodes(Stop::Retract);
}

fn race_across_nodes(stop: Stop) {
    let server = tio_pgtest::TestPostgres::start().expect("a test PostgreSQL starts (tests/run installs it)");
    let options = crate::support::Options {
        env: vec![
            ("TIO_STORE_ENGINE".into(), "postgres".into()),
            ("TIO_STORE_POSTGRES_URL".into(), server.create_database().unwrap()),
        ],
        ..Default::default()
    };
    let sandbox = Sandbox::start_with(options);
    let other = sandbox.start_peer("other-node");
    race_a_stop(stop, &sandbox, Some(&other));
}

fn race_a_stop_against_queued_deliveries(stop: Stop) {
    race_a_stop(stop, &Sandbox::start(), None);
}

/// Stops deliveries by `stop` at a random moment while some are in flight and more are
/// queued, twelve times over, and checks in the audit log that every delivery the
/// consent allowed comes before the stop, and none after it. With `other`, everyone
/// but the subscriber and the auditor calls that node.
fn race_a_stop(stop: Stop, sandbox: &Sandbox, other: Option<&crate::support::Peer>) {
    let professional = |name: &str| {
        let settings = match other {
            Some(node) => node.settings(name),
            None => sandbox.settings(name),
        };
        tio_client::ConnectionSettings { professional: Some(format!("{name}-staff-1")), ..settings }
    };
    runtime().block_on(async {
        let hospital = Client::connect(&professional("hospital")).await.unwrap();
        let send_team = as_professional(sandbox, "send-team").await;
        let social_care = Client::connect(&professional("social-care")).await.unwrap();
        let auditor = sandbox.client("auditor").await;
        let declare = v1::DeclareRelationshipRequest {
            child: child(AMY),
            kind: v1::RelationshipKind::Allocation as i32,
            reference: String::new(),
        };
        send_team.relationships().declare_relationship(send_team.request(declare)).await.unwrap();
        let mut delivered_in_all = 0;
        for seed in 0..12u64 {
            let mut random = Lcg(seed);
            // What allows the round's deliveries: a new consent, or a new share.
            let (consent_id, share_id) = match stop {
                Stop::EndShare => {
                    let share = v1::DeclareSafeguardingShareRequest {
                        child: child(AMY),
                        reason: v1::SafeguardingReason::RiskOfSignificantHarm as i32,
                        categories: vec![v1::Category::CommunicationNeeds as i32],
                        agency_ids: vec!["send-team".into()],
                        ..Default::default()
                    };
                    let mut service = social_care.safeguarding();
                    let share = service.declare_safeguarding_share(social_care.request(share)).await.unwrap();
                    (String::new(), share.into_inner().share_id)
                }
                _ => {
                    let consent = hospital
                        .consents()
                        .record_consent(hospital.request(consent_request(&[v1::Category::CommunicationNeeds])))
                        .await
                        .unwrap()
                        .into_inner();
                    (consent.consent_id, String::new())
                }
            };
            let allowed_here = |entry: &v1::AuditEntry| match stop {
                Stop::EndShare => {
                    entry.basis == "safeguarding_share" && entry.detail.split(' ').next() == Some(share_id.as_str())
                }
                _ => entry.consent_id == consent_id,
            };
            let name = format!("race-{seed}");
            create(&send_team, &name, &[v1::Category::CommunicationNeeds], None).await;
            let credit = 1 + random.next(4) as u32;
            let mut stream = Stream::open(&send_team, &name, credit).await.unwrap();
            let updates = 3 + random.next(6);
            let mut published = Vec::new();
            for index in 0..updates {
                let value = communication_needs(&format!("seed {seed} note {index}"));
                let key = format!("race-{seed}-{index}");
                let request = publish_request(AMY, v1::Category::CommunicationNeeds, value, &key);
                published.push(publish(&hospital, request).await.unwrap().update_id);
            }
            // Withdraw while deliveries are in flight and queued, after a random pause,
            // acking a random number of deliveries meanwhile.
            let acks = random.next(updates);
            for _ in 0..acks {
                match stream.delivery_within(Duration::from_millis(300)).await {
                    Some(delivery) => stream.ack(&[delivery.delivery_number]).await,
                    None => break,
                }
            }
            tokio::time::sleep(Duration::from_millis(random.next(30))).await;
            let (stop_action, stop_id) = match stop {
                Stop::WithdrawConsent => {
                    let withdraw = v1::WithdrawConsentRequest {
                        child: child(AMY),
                        consent_id: consent_id.clone(),
                        reason: "race".into(),
                        evidence: consent_request(&[]).evidence,
                    };
                    hospital.consents().withdraw_consent(hospital.request(withdraw)).await.unwrap();
                    (v1::AuditAction::ConsentWithdrawn, consent_id.clone())
                }
                Stop::EndShare => {
                    let end = v1::EndSafeguardingShareRequest {
                        child: child(AMY),
                        share_id: share_id.clone(),
                        reason: "race".into(),
                    };
                    social_care.safeguarding().end_safeguarding_share(social_care.request(end)).await.unwrap();
                    (v1::AuditAction::SafeguardingEnded, share_id.clone())
                }
                Stop::Retract => {
                    let retracted = published.last().cloned().unwrap_or_default();
                    let retract = v1::RetractUpdateRequest {
                        child: child(AMY),
                        update_id: retracted.clone(),
                        reason: "race".into(),
                        source_reference: String::new(),
                    };
                    hospital.records().retract_update(hospital.request(retract)).await.unwrap();
                    (v1::AuditAction::UpdateRetracted, retracted)
                }
                Stop::RaiseObjection => {
                    let object = v1::RecordObjectionRequest {
                        child: child(AMY),
                        giver_role: v1::ConsentGiverRole::ParentWithParentalResponsibility as i32,
                        giver_name: "Anna Nowak".into(),
                        categories: vec![v1::Category::CommunicationNeeds as i32],
                        agency_ids: vec!["send-team".into()],
                        evidence: consent_request(&[]).evidence,
                        ..Default::default()
                    };
                    let raised = hospital.consents().record_objection(hospital.request(object)).await.unwrap();
                    (v1::AuditAction::ObjectionRaised, raised.into_inner().objection_id)
                }
            };
            while let Some(delivery) = stream.delivery_within(Duration::from_millis(300)).await {
                stream.ack(&[delivery.delivery_number]).await;
            }
            // One copy per agency: the next round's subscription would be shadowed by this one.
            drop(stream);
            delete_when_closed(&send_team, &name).await;
            if let Stop::RaiseObjection = stop {
                // The next round starts with nothing objected to (and nothing streaming now).
                let withdraw = v1::WithdrawObjectionRequest {
                    child: child(AMY),
                    objection_id: stop_id.clone(),
                    reason: "race over".into(),
                    evidence: consent_request(&[]).evidence,
                };
                hospital.consents().withdraw_objection(hospital.request(withdraw)).await.unwrap();
            }

            // In the log, every delivery this consent allowed comes before its withdrawal.
            let query = v1::QueryEntriesRequest {
                child: child(AMY),
                page: Some(v1::PageRequest { page_size: 500, page_token: String::new() }),
                ..Default::default()
            };
            let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
            let amends = format!("amends {stop_id}");
            let withdrawn_at = entries
                .iter()
                .find(|e| e.action() == stop_action && (e.consent_id == stop_id || e.detail == amends))
                .expect("the stop is logged")
                .leaf_index;
            let allowed: Vec<_> =
                entries.iter().filter(|e| e.action() == v1::AuditAction::Delivery && allowed_here(e)).collect();
            // What the stop stops: all the round allowed, or the retracted update alone.
            let stopped = |entry: &&&v1::AuditEntry| match stop {
                Stop::Retract => entry.update_id == stop_id,
                _ => true,
            };
            for entry in allowed.iter().filter(stopped) {
                assert!(entry.leaf_index < withdrawn_at, "seed {seed}: a delivery it allowed came after the stop");
            }
            delivered_in_all += allowed.len();
        }
        assert!(delivered_in_all >= 12, "the rounds must deliver something to race against: {delivered_in_all}");
    });
}

#[test]
fn replay_from_a_position_or_a_time_sends_exactly_the_updates_after_it() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let send_team = as_professional(&sandbox, "send-team").await;
        consent_and_involve(&hospital, &send_team).await;
        let mut published = Vec::new();
        for index in 0..6 {
            let value = communication_needs(&format!("note {index}"));
            let key = format!("replay-{index}");
            published.push(
                publish(&hospital, publish_request(AMY, v1::Category::CommunicationNeeds, value, &key)).await.unwrap(),
            );
            if index == 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let after = published[1].position.clone().unwrap();
        create(
            &send_team,
            "from-position",
            &[v1::Category::CommunicationNeeds],
            Some(v1::start_from::From::AfterPosition(after)),
        )
        .await;
        let since = published[3].committed_at.unwrap();
        create(&send_team, "from-time", &[v1::Category::CommunicationNeeds], Some(v1::start_from::From::Since(since)))
            .await;
        for (name, first) in [("from-position", 2usize), ("from-time", 3)] {
            let mut stream = Stream::open(&send_team, name, 0).await.unwrap();
            let mut received = Vec::new();
            for _ in first..published.len() {
                received.push(stream.delivery().await.update_id);
            }
            let expected: Vec<String> = published[first..].iter().map(|p| p.update_id.clone()).collect();
            assert_eq!(received, expected, "{name}: no gap, in order");
            assert!(stream.delivery_within(Duration::from_millis(500)).await.is_none(), "{name}: no duplicate");
            // One copy per agency: while this subscription exists, the next (later name,
            // same category) would receive nothing. Delete it once its stream is seen closed.
            drop(stream);
            delete_when_closed(&send_team, name).await;
        }
    });
}
