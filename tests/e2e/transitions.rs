//! Transitions to adult services over real mutual TLS (issue 17, section 3): the SEND
//! team opens a 17-year-old's record with an owner for each milestone; adult social
//! care, consented and involved, reads it and is told, with the SEND team and the
//! owner, that the referral to adult social care is past due (the broker's duties);
//! when the owner records it done, they are told again. An agency neither owning a
//! milestone nor allowed the category may not read it; bad requests name the field.

use tio_client::Client;
use tio_proto::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::records::*;
use crate::support::{Sandbox, tio_as};

fn today() -> tio_core::Date {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    tio_core::Timestamp::from_unix_micros(now.as_micros() as i64).uk_date().unwrap()
}

fn proto_date(date: tio_core::Date) -> v1::Date {
    v1::Date { year: i32::from(date.year()), month: i32::from(date.month()), day: i32::from(date.day()) }
}

fn owners() -> Vec<v1::MilestoneOwner> {
    use v1::TransitionMilestone::*;
    [
        (PreparingForAdulthoodReview, "send-team"),
        (AnnualHealthCheck, "gp"),
        (AdultSocialCareReferral, "social-care"),
        (AdultHealthServices, "icb"),
        (PlanReviewBeforeLeaving, "send-team"),
        (PlanCeases, "send-team"),
    ]
    .into_iter()
    .map(|(milestone, agency)| v1::MilestoneOwner { milestone: milestone as i32, agency_id: agency.into() })
    .collect()
}

fn open(nhs_number: &str, owners: Vec<v1::MilestoneOwner>) -> v1::OpenTransitionRequest {
    v1::OpenTransitionRequest { child: child(nhs_number), opened_on: Some(proto_date(today())), owners }
}

async fn alerts(client: &Client, kind: &str) -> Vec<v1::Alert> {
    let request = v1::ListAlertsRequest { page: None };
    let all = client.alerts().list_alerts(client.request(request)).await.unwrap().into_inner().alerts;
    all.into_iter().filter(|alert| alert.kind == kind).collect()
}

/// Waits (at most 30 seconds) for the caller's alert of `kind` whose detail starts with
/// `about`: the broker's duties first run 5 seconds after it starts.
async fn alert(client: &Client, kind: &str, about: &str) -> v1::Alert {
    for _ in 0..300 {
        let found = alerts(client, kind)
            .await
            .into_iter()
            .find(|alert| alert.entry.as_ref().is_some_and(|entry| entry.detail.starts_with(about)));
        if let Some(alert) = found {
            return alert;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no {kind} alert about {about} within 30 seconds");
}

fn field_of(status: &tonic::Status) -> String {
    status.get_details_bad_request().map(|bad| bad.field_violations[0].field.clone()).unwrap_or_default()
}

#[test]
fn a_missed_milestone_reaches_adult_social_care_the_send_team_and_the_owner() {
    use v1::TransitionMilestone::AdultSocialCareReferral;
    let mut sandbox = Sandbox::start();
    let runtime = runtime();
    runtime.block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let send_team = as_professional(&sandbox, "send-team").await;
        let adult_social_care = as_professional(&sandbox, "adult-social-care").await;
        let school = as_professional(&sandbox, "school").await;
        // Amy is 17 and seven months: past the referral's 17 and a half.
        let born = today().checked_sub(jiff::Span::new().years(17).months(7)).unwrap();
        publish(&hospital, publish_request(AMY, v1::Category::IdentityAndContacts, identity_born(born), "id-1"))
            .await
            .unwrap();
        // Amy's own consent for adult social care to see her transition.
        let consent = v1::RecordConsentRequest {
            giver_role: v1::ConsentGiverRole::YoungPerson as i32,
            giver_name: "Amy Nowak".into(),
            recipients: Some(v1::Recipients {
                sectors: vec![v1::Sector::AdultSocialCare as i32],
                ..Default::default()
            }),
            ..consent_request(&[v1::Category::TransitionToAdulthood])
        };
        hospital.consents().record_consent(hospital.request(consent)).await.unwrap();
        let declare = v1::DeclareRelationshipRequest {
            child: child(AMY),
            kind: v1::RelationshipKind::Referral as i32,
            reference: String::new(),
        };
        adult_social_care.relationships().declare_relationship(adult_social_care.request(declare)).await.unwrap();

        // Only the SEND team opens the record, with an owner for every milestone.
        let refused = school.transitions().open_transition(school.request(open(AMY, owners()))).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        let short: Vec<_> = owners().into_iter().skip(1).collect();
        let refused = send_team.transitions().open_transition(send_team.request(open(AMY, short))).await.unwrap_err();
        assert_eq!((refused.code(), field_of(&refused).as_str()), (Code::InvalidArgument, "owners"));
        let refused =
            send_team.transitions().open_transition(send_team.request(open(BEN, owners()))).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "Ben's date of birth is not known: {refused:?}");
        let opened = send_team.transitions().open_transition(send_team.request(open(AMY, owners()))).await.unwrap();
        let referral = |record: &v1::TransitionRecord| {
            record
                .milestones
                .iter()
                .find(|milestone| milestone.milestone() == AdultSocialCareReferral)
                .cloned()
                .unwrap()
        };
        assert_eq!(referral(opened.get_ref()).status(), v1::DeadlineStatus::Missed);
        let again = send_team.transitions().open_transition(send_team.request(open(AMY, owners()))).await.unwrap_err();
        assert_eq!(again.code(), Code::AlreadyExists);

        // Adult social care, consented and involved, reads it; the school may not.
        let get = v1::GetTransitionRequest { child: child(AMY) };
        let seen =
            adult_social_care.transitions().get_transition(adult_social_care.request(get.clone())).await.unwrap();
        assert_eq!(seen.get_ref().revision, 1);
        let refused = school.transitions().get_transition(school.request(get)).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
    });

    // The broker's duties run 5 seconds after a start.
    sandbox.restart();
    runtime.block_on(async {
        let adult_social_care = as_professional(&sandbox, "adult-social-care").await;
        let social_care = as_professional(&sandbox, "social-care").await;
        let send_team = as_professional(&sandbox, "send-team").await;
        let missed = alert(&adult_social_care, "transition_milestone_missed", "adult_social_care_referral").await;
        assert_eq!(missed.addressed_to, ["adult-social-care", "send-team", "social-care"]);
        assert_eq!(missed.nhs_number, AMY);
        alert(&send_team, "transition_milestone_missed", "adult_social_care_referral").await;

        // The owner records it done; adult social care and the SEND team are told.
        let done = v1::RecordMilestoneRequest {
            child: child(AMY),
            milestone: AdultSocialCareReferral as i32,
            done_on: Some(proto_date(today())),
        };
        let refused = send_team
            .transitions()
            .record_milestone(send_team.request(v1::RecordMilestoneRequest {
                milestone: v1::TransitionMilestone::Unspecified as i32,
                ..done.clone()
            }))
            .await
            .unwrap_err();
        assert_eq!(field_of(&refused), "milestone");
        let school = as_professional(&sandbox, "school").await;
        let refused = school.transitions().record_milestone(school.request(done.clone())).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "not the owner: {refused:?}");
        let recorded =
            social_care.transitions().record_milestone(social_care.request(done)).await.unwrap().into_inner();
        let late =
            recorded.milestones.iter().find(|milestone| milestone.milestone() == AdultSocialCareReferral).unwrap();
        assert_eq!(late.status(), v1::DeadlineStatus::Late);
        let told = alert(&adult_social_care, "transition_milestone_done", "adult_social_care_referral done").await;
        assert_eq!(told.agency_id, "social-care");
        assert_eq!(told.addressed_to, ["adult-social-care", "send-team"]);
    });

    let (ok, stdout, stderr) =
        tio_as(&sandbox, "send-team", &["transition", "show", "--nhs-number", AMY, "--professional", "cw-1"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"run_by_agency_id\":\"send-team\""), "{stdout}");
    assert!(stderr.contains("adult social care referral (social-care) due"), "{stderr}");
    assert!(stderr.contains("plan review before leaving (send-team): due day not known yet"), "{stderr}");
}
