//! Corrections and retractions over real mutual TLS (issue 16, section 5): every agency
//! that was given an update (on a subscription, or in a profile read) is told when it is
//! retracted or corrected, an offline one when it returns, with the corrected value only
//! if it may see it at the moment of sending; the profile goes back or shows the
//! correction; bad requests are refused naming the field with nothing stored; the
//! command line corrects and retracts, and `tio subscribe` says what to do.

use tio_proto::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::records::*;
use crate::support::stream::{self, Stream};
use crate::support::{Sandbox, arg, tio_as};

use v1::Category::{CommunicationNeeds, HealthSummary};

/// The `how_i_communicate` of each communication-needs value `client` may read of Amy.
async fn communication(client: &tio_client::Client) -> Vec<String> {
    let request = v1::GetProfileRequest { child: child(AMY), categories: vec![CommunicationNeeds as i32] };
    let response = client.records().get_profile(client.request(request)).await.unwrap().into_inner();
    response
        .entries
        .into_iter()
        .filter_map(|entry| match entry.value?.value? {
            v1::category_value::Value::CommunicationNeeds(needs) => Some(needs.how_i_communicate),
            _ => None,
        })
        .collect()
}

fn how_i_communicate(delivery: &v1::Delivery) -> Option<String> {
    match delivery.value.as_ref()?.value.as_ref()? {
        v1::category_value::Value::CommunicationNeeds(needs) => Some(needs.how_i_communicate.clone()),
        _ => None,
    }
}

fn retraction(update_id: &str, reason: &str) -> v1::RetractUpdateRequest {
    v1::RetractUpdateRequest {
        child: child(AMY),
        update_id: update_id.into(),
        reason: reason.into(),
        source_reference: "EPR-42/r".into(),
    }
}

fn correction(update_id: &str, value: v1::CategoryValue) -> v1::CorrectUpdateRequest {
    v1::CorrectUpdateRequest {
        child: child(AMY),
        update_id: update_id.into(),
        category: CommunicationNeeds as i32,
        value: Some(value),
        source_reference: "EPR-42/c".into(),
        reason: "Amy signs Makaton, not BSL".into(),
    }
}

async fn retract(client: &tio_client::Client, request: v1::RetractUpdateRequest) -> Result<String, tonic::Status> {
    let response = client.records().retract_update(client.request(request)).await?;
    Ok(response.into_inner().update_id)
}

async fn correct(client: &tio_client::Client, request: v1::CorrectUpdateRequest) -> Result<String, tonic::Status> {
    let response = client.records().correct_update(client.request(request)).await?;
    Ok(response.into_inner().update_id)
}

async fn involve(client: &tio_client::Client) {
    let declare = v1::DeclareRelationshipRequest {
        child: child(AMY),
        kind: v1::RelationshipKind::Allocation as i32,
        reference: String::new(),
    };
    client.relationships().declare_relationship(client.request(declare)).await.unwrap();
}

/// The hospital, the school and the SEND team: the parent's consent to the education
/// sector for communication needs, both involved, the school subscribed to them.
async fn school_subscribed_and_send_team_involved(
    sandbox: &Sandbox,
) -> (tio_client::Client, tio_client::Client, tio_client::Client) {
    let hospital = as_professional(sandbox, "hospital").await;
    let school = as_professional(sandbox, "school").await;
    let send_team = as_professional(sandbox, "send-team").await;
    hospital.consents().record_consent(hospital.request(consent_request(&[CommunicationNeeds]))).await.unwrap();
    involve(&school).await;
    involve(&send_team).await;
    stream::create(&school, "main", &[CommunicationNeeds], None).await;
    (hospital, school, send_team)
}

#[test]
fn a_retraction_and_a_correction_reach_every_past_recipient_including_one_that_was_offline() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let (hospital, school, send_team) = school_subscribed_and_send_team_involved(&sandbox).await;

        let first = publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("BSL"), "a-1"))
            .await
            .unwrap()
            .update_id;
        let second =
            publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("Amy's brother"), "a-2"))
                .await
                .unwrap()
                .update_id;

        // The school receives both on its subscription, then goes offline.
        let mut school_stream = Stream::open(&school, "main", 0).await.unwrap();
        let delivered: Vec<_> = [school_stream.delivery().await, school_stream.delivery().await].into();
        assert_eq!(delivered.iter().map(|d| d.update_id.as_str()).collect::<Vec<_>>(), [&first, &second]);
        assert!(delivered.iter().all(|d| d.amendment.is_none()));
        school_stream.ack(&[1, 2]).await;
        school_stream.close().await;
        // The SEND team only reads the profile, which shows the second value.
        assert_eq!(communication(&send_team).await, ["Amy's brother"]);
        // Its subscription starts after both; corrections of what it read still reach it.
        stream::create(&send_team, "main", &[CommunicationNeeds], None).await;

        // The second value was about Amy's brother: retracted, the profile goes back.
        let retracted = retract(&hospital, retraction(&second, "Entered on the wrong child's record")).await.unwrap();
        assert_eq!(communication(&school).await, ["BSL"]);
        // The first was wrong too: corrected, the profile shows the correction.
        let corrected = correct(&hospital, correction(&first, communication_needs("Makaton"))).await.unwrap();
        assert_eq!(communication(&school).await, ["Makaton"]);

        // Before the school returns, the family objects to it seeing communication needs:
        // the school is still told of both, without the corrected value.
        let objection = v1::RecordObjectionRequest {
            child: child(AMY),
            giver_role: v1::ConsentGiverRole::ParentWithParentalResponsibility as i32,
            giver_name: "Anna Nowak".into(),
            categories: vec![CommunicationNeeds as i32],
            agency_ids: vec!["school".into()],
            sectors: Vec::new(),
            reason: String::new(),
            evidence: consent_request(&[]).evidence,
        };
        hospital.consents().record_objection(hospital.request(objection)).await.unwrap();

        let mut school_stream = Stream::open(&school, "main", 0).await.unwrap();
        let told = school_stream.delivery().await;
        let amendment = told.amendment.clone().expect("a retraction notice");
        assert_eq!(
            (amendment.kind(), amendment.amended_update_id.as_str(), amendment.reason.as_str()),
            (v1::AmendmentKind::Retraction, second.as_str(), "Entered on the wrong child's record")
        );
        assert_eq!((told.update_id.as_str(), told.value.is_none()), (retracted.as_str(), true));
        assert_eq!(told.child, child(AMY));
        let told = school_stream.delivery().await;
        let amendment = told.amendment.clone().expect("a correction notice");
        assert_eq!(
            (amendment.kind(), amendment.amended_update_id.as_str(), told.update_id.as_str()),
            (v1::AmendmentKind::Correction, first.as_str(), corrected.as_str())
        );
        assert_eq!(told.value, None, "the family now objects: no corrected value for the school");
        assert!(matches!(
            tio_client::DeliveryKind::of(&told),
            Some(tio_client::DeliveryKind::Correction { value: None, .. })
        ));
        school_stream.ack(&[3, 4]).await;

        // The SEND team was shown the retracted value: told. It never had the first
        // value, so the correction is an ordinary update to it, with the value.
        let mut send_stream = Stream::open(&send_team, "main", 0).await.unwrap();
        let told = send_stream.delivery().await;
        assert_eq!(
            told.amendment.as_ref().map(|a| (a.kind(), a.amended_update_id.clone())),
            Some((v1::AmendmentKind::Retraction, second.clone()))
        );
        let value = send_stream.delivery().await;
        assert_eq!((value.update_id.as_str(), value.amendment.as_ref()), (corrected.as_str(), None));
        assert_eq!(how_i_communicate(&value).as_deref(), Some("Makaton"));
        assert!(send_stream.delivery_within(std::time::Duration::from_millis(500)).await.is_none());
        send_stream.ack(&[1, 2]).await;

        // Each notification is on the record, and the report says it in plain words.
        let auditor = sandbox.client("auditor").await;
        let report = v1::SubjectAccessReportRequest { child: child(AMY), ..Default::default() };
        let lines = auditor.audit().subject_access_report(auditor.request(report)).await.unwrap().into_inner().lines;
        let said = |agency: &str, action: v1::AuditAction| {
            lines.iter().filter(|line| line.agency_id == agency && line.action() == action).count()
        };
        assert_eq!(said("hospital", v1::AuditAction::UpdateRetracted), 1, "{lines:#?}");
        assert_eq!(said("hospital", v1::AuditAction::UpdateCorrected), 1, "{lines:#?}");
        assert_eq!(said("school", v1::AuditAction::RetractionSent), 1, "{lines:#?}");
        assert_eq!(said("school", v1::AuditAction::CorrectionSent), 1, "{lines:#?}");
        assert_eq!(said("send-team", v1::AuditAction::RetractionSent), 1, "{lines:#?}");
        assert!(
            lines.iter().any(|line| line.agency_id == "school"
                && line.action() == v1::AuditAction::CorrectionSent
                && line.why
                    == "it had been given the corrected update, so it was told (not the corrected value, which it may not see now)"),
            "{lines:#?}"
        );
    });
    // The store is consistent after it all.
    let (ok, stdout, stderr) = {
        let mut sandbox = sandbox;
        sandbox.signal(nix::sys::signal::Signal::SIGTERM);
        sandbox.wait_exit(std::time::Duration::from_secs(60));
        let dir = arg(&sandbox.data_dir());
        let keys = arg(&sandbox.data_dir().join("dev-keys").join("tio.keys"));
        crate::support::run_tio(&["store", "check", "--data-dir", &dir, "--keys-file", &keys], &[])
    };
    assert!(ok.success(), "{stdout}{stderr}");
}

#[test]
fn bad_amendments_are_refused_naming_the_field_and_store_nothing() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let gp = as_professional(&sandbox, "gp").await;
        let school = as_professional(&sandbox, "school").await;
        hospital.consents().record_consent(hospital.request(consent_request(&[CommunicationNeeds]))).await.unwrap();
        involve(&school).await;
        let first = publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("BSL"), "b-1"))
            .await
            .unwrap()
            .update_id;
        let second =
            publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("Makaton"), "b-2"))
                .await
                .unwrap()
                .update_id;
        let field = |status: &tonic::Status| {
            status.get_details_bad_request().map(|bad| bad.field_violations[0].field.clone()).unwrap_or_default()
        };
        let reason =
            |status: &tonic::Status| status.get_details_error_info().map(|info| info.reason).unwrap_or_default();

        let unknown = retract(&hospital, retraction(&"0".repeat(32), "typo")).await.unwrap_err();
        assert_eq!((unknown.code(), reason(&unknown).as_str()), (Code::NotFound, "UPDATE_NOT_FOUND"), "{unknown:?}");
        let malformed = retract(&hospital, retraction("not-an-id", "typo")).await.unwrap_err();
        assert_eq!((malformed.code(), field(&malformed).as_str()), (Code::InvalidArgument, "update_id"));
        let no_reason = retract(&hospital, retraction(&second, "  ")).await.unwrap_err();
        assert_eq!((no_reason.code(), field(&no_reason).as_str()), (Code::InvalidArgument, "reason"));
        let long_reason = retract(&hospital, retraction(&second, &"x".repeat(4097))).await.unwrap_err();
        assert_eq!((long_reason.code(), field(&long_reason).as_str()), (Code::InvalidArgument, "reason"));
        let not_theirs = retract(&gp, retraction(&second, "not ours")).await.unwrap_err();
        assert_eq!((not_theirs.code(), reason(&not_theirs).as_str()), (Code::PermissionDenied, "NOT_PUBLISHER"));
        let mut other_category = correction(&second, health_summary("Epilepsy"));
        other_category.category = HealthSummary as i32;
        let status = correct(&hospital, other_category).await.unwrap_err();
        assert_eq!((status.code(), field(&status).as_str()), (Code::InvalidArgument, "category"), "{status:?}");
        let mismatched = correct(&hospital, correction(&second, health_summary("Epilepsy"))).await.unwrap_err();
        assert_eq!((mismatched.code(), field(&mismatched).as_str()), (Code::InvalidArgument, "value"));
        let superseded = correct(&hospital, correction(&first, communication_needs("Makaton"))).await.unwrap_err();
        assert_eq!(
            (superseded.code(), reason(&superseded).as_str()),
            (Code::FailedPrecondition, "UPDATE_SUPERSEDED"),
            "{superseded:?}"
        );
        // Nothing of any of that was stored.
        assert_eq!(communication(&school).await, ["Makaton"]);

        let retracted = retract(&hospital, retraction(&first, "Entered in error")).await.unwrap();
        let again = retract(&hospital, retraction(&first, "Entered in error")).await.unwrap_err();
        assert_eq!((again.code(), reason(&again).as_str()), (Code::FailedPrecondition, "UPDATE_ALREADY_AMENDED"));
        assert!(again.message().ends_with(&format!("(by update {retracted})")), "{}", again.message());
        let of_a_retraction = retract(&hospital, retraction(&retracted, "oops")).await.unwrap_err();
        assert_eq!((of_a_retraction.code(), field(&of_a_retraction).as_str()), (Code::InvalidArgument, "update_id"));
        assert_eq!(communication(&school).await, ["Makaton"], "an older value's retraction leaves the current one");
    });
}

#[test]
fn the_command_line_corrects_and_retracts_and_a_subscriber_is_told_what_to_do() {
    let sandbox = Sandbox::start();
    let published = runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let school = as_professional(&sandbox, "school").await;
        hospital.consents().record_consent(hospital.request(consent_request(&[CommunicationNeeds]))).await.unwrap();
        involve(&school).await;
        stream::create(&school, "main", &[CommunicationNeeds], None).await;
        publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("BSL"), "c-1"))
            .await
            .unwrap()
            .update_id
    });
    // The school receives the value first.
    let subscribe = ["subscribe", "--name", "main", "--count", "1", "--professional", "senco-1"];
    let (ok, stdout, stderr) = tio_as(&sandbox, "school", &subscribe);
    assert!(ok && stdout.contains(&published), "{stdout}{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("value.json");
    std::fs::write(&file, r#"{"how_i_communicate": "Makaton"}"#).unwrap();
    let file = arg(&file);
    let correct = [
        "correct",
        "--nhs-number",
        AMY,
        "--update-id",
        &published,
        "--category",
        "communication_needs",
        "--value",
        &file,
        "--reason",
        "Amy signs Makaton, not BSL",
        "--professional",
        "dr-1",
    ];
    let (ok, stdout, stderr) = tio_as(&sandbox, "hospital", &correct);
    assert!(ok && stdout.contains("\"update_id\""), "{stdout}{stderr}");
    let (ok, _, stderr) = tio_as(&sandbox, "hospital", &correct);
    assert!(!ok && stderr.contains("corrected or retracted already"), "{stderr}");

    let (ok, stdout, stderr) = tio_as(&sandbox, "school", &subscribe);
    assert!(ok && stdout.contains("AMENDMENT_KIND_CORRECTION") && stdout.contains("Makaton"), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("correction: update {published} (communication_needs) was wrong; replace it")),
        "{stderr}"
    );

    let retract =
        ["retract", "--nhs-number", AMY, "--update-id", &published, "--reason", "typo", "--professional", "dr-1"];
    let (ok, _, stderr) = tio_as(&sandbox, "gp", &retract);
    assert!(!ok && stderr.contains("only the agency that published"), "{stderr}");
}

#[test]
fn an_erasure_tells_every_past_recipient_to_erase_what_it_was_given_and_names_no_child() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let (hospital, school, send_team) = school_subscribed_and_send_team_involved(&sandbox).await;
        let mut published = Vec::new();
        for (index, text) in ["BSL", "Makaton"].into_iter().enumerate() {
            let request = publish_request(AMY, CommunicationNeeds, communication_needs(text), &format!("e-{index}"));
            published.push(publish(&hospital, request).await.unwrap().update_id);
        }
        // Never disclosed to anyone: no consent covers the health summary.
        publish(&hospital, publish_request(AMY, HealthSummary, health_summary("Epilepsy"), "e-h")).await.unwrap();
        let mut school_stream = Stream::open(&school, "main", 0).await.unwrap();
        for id in &published {
            let delivery = school_stream.delivery().await;
            assert_eq!(&delivery.update_id, id);
            school_stream.ack(&[delivery.delivery_number]).await;
        }
        // The SEND team reads the second value; its only subscription takes another
        // category, and carries the notice all the same.
        assert_eq!(communication(&send_team).await, ["Makaton"]);
        stream::create(&send_team, "main", &[HealthSummary], None).await;
        let mut send_stream = Stream::open(&send_team, "main", 0).await.unwrap();

        let admin = sandbox.client("admin").await;
        let erase = v1::EraseChildRequest {
            child: child(AMY),
            reason: "Art. 17 request from the family".into(),
            request_reference: "SAR-9".into(),
        };
        admin.admin().erase_child(admin.request(erase)).await.unwrap();

        for id in &published {
            let notice = school_stream.delivery().await;
            let amendment = notice.amendment.clone().expect("an erasure notice");
            assert_eq!((amendment.kind(), &amendment.amended_update_id), (v1::AmendmentKind::Erasure, id));
            assert_eq!((notice.child.as_ref(), notice.value.as_ref()), (None, None), "nothing readable is left");
            assert_eq!(
                tio_client::DeliveryKind::of(&notice),
                Some(tio_client::DeliveryKind::Erasure { amended_update_id: id })
            );
            school_stream.ack(&[notice.delivery_number]).await;
        }
        assert!(school_stream.delivery_within(std::time::Duration::from_millis(500)).await.is_none());
        let notice = send_stream.delivery().await;
        assert_eq!(
            notice.amendment.map(|a| (a.kind(), a.amended_update_id)),
            Some((v1::AmendmentKind::Erasure, published[1].clone())),
            "the SEND team was shown only the second value"
        );
        assert!(send_stream.delivery_within(std::time::Duration::from_millis(500)).await.is_none());

        // Each notice is audited, naming the child by blind index alone.
        let auditor = sandbox.client("auditor").await;
        let query = v1::QueryEntriesRequest { action: v1::AuditAction::ErasureSent as i32, ..Default::default() };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        let mut told: Vec<&str> = entries.iter().map(|entry| entry.recipient_agency_id.as_str()).collect();
        told.sort_unstable();
        assert_eq!(told, ["school", "school", "send-team"]);
        assert!(entries.iter().all(|entry| entry.child_sealed.is_empty() && entry.child_index.len() == 64));
    });
}

/// An identity value with a wrong date of birth makes Amy an adult, so her mother's
/// consent lapses; retracting it, or correcting the date, gives the consent back.
#[test]
fn retracting_or_correcting_a_wrong_date_of_birth_gives_a_parents_consent_back() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let school = as_professional(&sandbox, "school").await;
        hospital.consents().record_consent(hospital.request(consent_request(&[CommunicationNeeds]))).await.unwrap();
        involve(&school).await;
        publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("Makaton"), "d-1"))
            .await
            .unwrap();
        assert_eq!(communication(&school).await, ["Makaton"]);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let today = tio_core::Timestamp::from_unix_micros(now.as_micros() as i64).uk_date().unwrap();
        let born_years_ago = |years: i64| {
            let born = today.checked_sub(jiff::Span::new().years(years)).unwrap();
            identity_born(born)
        };
        let identity = v1::Category::IdentityAndContacts;

        let wrong = publish(&hospital, publish_request(AMY, identity, born_years_ago(19), "d-2")).await.unwrap();
        assert!(communication(&school).await.is_empty(), "an adult by that date: the parent's consent lapsed");
        retract(&hospital, retraction(&wrong.update_id, "Another child's date of birth")).await.unwrap();
        assert_eq!(communication(&school).await, ["Makaton"], "no date of birth stands: the consent allows again");

        let wrong = publish(&hospital, publish_request(AMY, identity, born_years_ago(19), "d-3")).await.unwrap();
        assert!(communication(&school).await.is_empty());
        let mut fix = correction(&wrong.update_id, born_years_ago(10));
        fix.category = identity as i32;
        correct(&hospital, fix).await.unwrap();
        assert_eq!(communication(&school).await, ["Makaton"], "ten by the corrected date");
    });
}
