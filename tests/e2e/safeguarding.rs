//! Safeguarding shares over real mutual TLS (issue 16, section 1): declared by a
//! permitted agency, they let the named recipients involved with the child read without
//! consent until they end; every declaration, renewal, end and use is an alert to the
//! declaring agency; the family's report leaves them out until they are over; bad
//! requests are refused naming the field, with nothing stored.

use tio_client::Client;
use tio_proto::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::records::*;
use crate::support::{Sandbox, tio_as};

fn declaration() -> v1::DeclareSafeguardingShareRequest {
    v1::DeclareSafeguardingShareRequest {
        child: child(AMY),
        reason: v1::SafeguardingReason::Section47Enquiry as i32,
        reason_text: "Strategy discussion this morning".into(),
        categories: vec![v1::Category::HealthSummary as i32],
        agency_ids: vec!["hospital".into()],
        ..Default::default()
    }
}

async fn alerts(client: &Client) -> Vec<v1::Alert> {
    let request = v1::ListAlertsRequest { page: None };
    client.alerts().list_alerts(client.request(request)).await.unwrap().into_inner().alerts
}

async fn report(auditor: &Client) -> Vec<v1::SubjectAccessLine> {
    let request = v1::SubjectAccessReportRequest { child: child(AMY), ..Default::default() };
    auditor.audit().subject_access_report(auditor.request(request)).await.unwrap().into_inner().lines
}

fn end(share_id: &str) -> v1::EndSafeguardingShareRequest {
    v1::EndSafeguardingShareRequest { child: child(AMY), share_id: share_id.into(), reason: "Plan agreed".into() }
}

#[test]
fn a_share_lets_named_recipients_read_without_consent_until_it_ends_and_is_never_silent() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        use v1::Category::HealthSummary;
        let social_care = as_professional(&sandbox, "social-care").await;
        let send_team = as_professional(&sandbox, "send-team").await;
        let hospital = as_professional(&sandbox, "hospital").await;
        let gp = as_professional(&sandbox, "gp").await;
        let auditor = sandbox.client("auditor").await;
        publish(&gp, publish_request(AMY, HealthSummary, health_summary("Epilepsy"), "s-k1")).await.unwrap();
        let declare = v1::DeclareRelationshipRequest {
            child: child(AMY),
            kind: v1::RelationshipKind::Referral as i32,
            reference: String::new(),
        };
        hospital.relationships().declare_relationship(hospital.request(declare)).await.unwrap();
        assert_eq!(profile(&hospital, AMY).await, Vec::<v1::Category>::new(), "no consent");

        // The hospital may not declare one; the council's social care may.
        let status =
            hospital.safeguarding().declare_safeguarding_share(hospital.request(declaration())).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(status.get_details_error_info().unwrap().reason, "MAY_NOT_DECLARE_SAFEGUARDING");
        let share = social_care
            .safeguarding()
            .declare_safeguarding_share(social_care.request(declaration()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((share.share_id.as_str(), share.revision), ("s-1", 1));
        assert_eq!(share.state(), v1::SafeguardingShareState::Active);
        let starts = share.starts.unwrap().seconds;
        assert_eq!(share.expires.unwrap().seconds - starts, 7 * 24 * 3600, "seven days by default");

        assert_eq!(profile(&hospital, AMY).await, [HealthSummary], "without consent, while the share is in force");
        assert_eq!(profile(&gp, AMY).await, Vec::<v1::Category>::new(), "the share does not name the GP");

        // Every step is told to the declaring agency.
        let told: Vec<(String, String)> = {
            let mut told = Vec::new();
            for _ in 0..100 {
                told = alerts(&social_care).await.iter().map(|a| (a.kind.clone(), a.agency_id.clone())).collect();
                if told.len() >= 2 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            told
        };
        assert_eq!(
            told,
            [
                ("safeguarding_declared".to_owned(), "social-care".to_owned()),
                ("safeguarding_share_used".to_owned(), "hospital".to_owned())
            ]
        );
        // The family's report says nothing of it while it is in force.
        let lines = report(&auditor).await;
        assert!(!lines.iter().any(|line| line.why.contains("safeguarding")), "{lines:#?}");
        assert!(!lines.iter().any(|line| line.agency_id == "hospital" && line.outcome() == v1::AuditOutcome::Allowed
            && line.action() == v1::AuditAction::ProfileRead));

        // Only the declaring agency renews or ends it.
        let status = send_team.safeguarding().end_safeguarding_share(send_team.request(end("s-1"))).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(status.get_details_error_info().unwrap().reason, "NOT_THE_DECLARING_AGENCY");
        let renew = v1::RenewSafeguardingShareRequest {
            child: child(AMY),
            share_id: "s-1".into(),
            reason: v1::SafeguardingReason::CourtOrder as i32,
            reason_text: "Interim care order granted".into(),
            expires: None,
        };
        let renewed = social_care.safeguarding().renew_safeguarding_share(social_care.request(renew)).await.unwrap();
        assert_eq!((renewed.get_ref().revision, renewed.get_ref().reason()), (2, v1::SafeguardingReason::CourtOrder));
        let ended = social_care.safeguarding().end_safeguarding_share(social_care.request(end("s-1"))).await.unwrap();
        assert_eq!(ended.get_ref().state(), v1::SafeguardingShareState::Ended);
        assert_eq!(profile(&hospital, AMY).await, Vec::<v1::Category>::new(), "ended at once");
        let again = social_care.safeguarding().end_safeguarding_share(social_care.request(end("s-1"))).await.unwrap_err();
        assert_eq!(again.get_details_error_info().unwrap().reason, "SHARE_NOT_IN_FORCE");

        // Over, it is in the report in plain words.
        let lines = report(&auditor).await;
        assert!(
            lines.iter().any(|line| line.agency_id == "social-care"
                && line.action() == v1::AuditAction::SafeguardingDeclared
                && line.why == "recorded for the child's safety without the family's consent (safeguarding share s-1, revision 1: section 47 enquiry)"),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|line| line.agency_id == "hospital"
                && line.action() == v1::AuditAction::ProfileRead
                && line.why.starts_with("allowed by safeguarding share s-1 (revision 1), without consent and care relationship")),
            "{lines:#?}"
        );
        let listed = social_care
            .safeguarding()
            .list_safeguarding_shares(social_care.request(v1::ListSafeguardingSharesRequest { child: child(AMY) }))
            .await
            .unwrap()
            .into_inner()
            .shares;
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].revision, listed[0].end_reason.as_str()), (3, "Plan agreed"));
    });
}

#[test]
fn bad_shares_are_refused_naming_the_field_and_store_nothing() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let social_care = as_professional(&sandbox, "social-care").await;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let at = |seconds: i64| Some(prost_types::Timestamp { seconds: now + seconds, nanos: 0 });
        let valid = declaration();
        let cases: Vec<(&str, v1::DeclareSafeguardingShareRequest)> = vec![
            ("reason", v1::DeclareSafeguardingShareRequest { reason: 0, ..valid.clone() }),
            ("reason", v1::DeclareSafeguardingShareRequest { reason: 99, ..valid.clone() }),
            (
                "reason_text",
                v1::DeclareSafeguardingShareRequest {
                    reason: v1::SafeguardingReason::Other as i32,
                    reason_text: String::new(),
                    ..valid.clone()
                },
            ),
            ("reason_text", v1::DeclareSafeguardingShareRequest { reason_text: "r".repeat(4097), ..valid.clone() }),
            ("categories", v1::DeclareSafeguardingShareRequest { categories: Vec::new(), ..valid.clone() }),
            ("recipients", v1::DeclareSafeguardingShareRequest { agency_ids: Vec::new(), ..valid.clone() }),
            (
                "agency_ids[0]",
                v1::DeclareSafeguardingShareRequest { agency_ids: vec!["No Such".into()], ..valid.clone() },
            ),
            ("starts", v1::DeclareSafeguardingShareRequest { starts: at(-3600), ..valid.clone() }),
            ("expires", v1::DeclareSafeguardingShareRequest { expires: at(-60), ..valid.clone() }),
            ("expires", v1::DeclareSafeguardingShareRequest { expires: at(31 * 24 * 3600), ..valid.clone() }),
            (
                "review_family_notification_by",
                v1::DeclareSafeguardingShareRequest {
                    review_family_notification_by: Some(v1::Date { year: 2027, month: 2, day: 30 }),
                    ..valid.clone()
                },
            ),
        ];
        for (field, request) in cases {
            let status =
                social_care.safeguarding().declare_safeguarding_share(social_care.request(request)).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
            assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, field, "{status:?}");
        }
        for (id, code) in [("o-1", Code::InvalidArgument), ("s-0", Code::InvalidArgument), ("s-7", Code::NotFound)] {
            let status =
                social_care.safeguarding().end_safeguarding_share(social_care.request(end(id))).await.unwrap_err();
            assert_eq!(status.code(), code, "{id}: {status:?}");
        }
        let request = v1::ListSafeguardingSharesRequest { child: child(AMY) };
        let listed = social_care.safeguarding().list_safeguarding_shares(social_care.request(request)).await.unwrap();
        assert!(listed.into_inner().shares.is_empty(), "nothing was stored");
    });

    // The command line declares and lists.
    let declare = [
        "safeguarding",
        "declare",
        "--nhs-number",
        AMY,
        "--reason",
        "risk-of-significant-harm",
        "--categories",
        "health_summary",
        "--sectors",
        "health",
        "--professional",
        "sw-1",
    ];
    let (ok, stdout, stderr) = tio_as(&sandbox, "social-care", &declare);
    assert!(ok && stdout.contains("\"share_id\":\"s-1\""), "{stdout}{stderr}");
    let (ok, stdout, stderr) =
        tio_as(&sandbox, "social-care", &["safeguarding", "list", "--nhs-number", AMY, "--professional", "sw-1"]);
    assert!(ok && stdout.lines().count() == 1, "{stdout}{stderr}");
}
