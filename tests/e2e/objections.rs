//! Objections over real mutual TLS (issue 16, section 3): a family's objection refuses
//! what a consent allows, by category, agency or sector, from the moment it is raised
//! until it is withdrawn; bad requests are refused naming the field with nothing stored;
//! the subject-access report tells it in plain words; the command line records, lists
//! and withdraws them.

use tio_proto::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::records::*;
use crate::support::{Sandbox, tio_as};

fn objection_request(
    categories: &[v1::Category],
    agencies: &[&str],
    sectors: &[v1::Sector],
) -> v1::RecordObjectionRequest {
    v1::RecordObjectionRequest {
        child: child(AMY),
        giver_role: v1::ConsentGiverRole::ParentWithParentalResponsibility as i32,
        giver_name: "Anna Nowak".into(),
        categories: categories.iter().map(|c| *c as i32).collect(),
        agency_ids: agencies.iter().map(|id| (*id).to_owned()).collect(),
        sectors: sectors.iter().map(|s| *s as i32).collect(),
        reason: "The school does not need Amy's diagnoses".into(),
        evidence: consent_request(&[]).evidence,
    }
}

async fn objections(client: &tio_client::Client) -> Vec<v1::ObjectionRecord> {
    let request = v1::ListObjectionsRequest { child: child(AMY), page: None };
    client.consents().list_objections(client.request(request)).await.unwrap().into_inner().objections
}

#[test]
fn an_objection_refuses_what_a_consent_allows_until_it_is_withdrawn_and_the_report_says_so() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let school = as_professional(&sandbox, "school").await;
        let send_team = as_professional(&sandbox, "send-team").await;
        use v1::Category::{CommunicationNeeds, HealthSummary};
        publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("Makaton"), "o-k1"))
            .await
            .unwrap();
        publish(&hospital, publish_request(AMY, HealthSummary, health_summary("Epilepsy"), "o-k2")).await.unwrap();
        // The parent's consent to the education sector: the school and the SEND team.
        hospital
            .consents()
            .record_consent(hospital.request(consent_request(&[CommunicationNeeds, HealthSummary])))
            .await
            .unwrap();
        for agency in [&school, &send_team] {
            let declare = v1::DeclareRelationshipRequest {
                child: child(AMY),
                kind: v1::RelationshipKind::Allocation as i32,
                reference: String::new(),
            };
            agency.relationships().declare_relationship(agency.request(declare)).await.unwrap();
        }
        assert_eq!(profile(&school, AMY).await, [CommunicationNeeds, HealthSummary]);

        // Not the health summary to the school: the consent still says yes, the objection wins.
        let first = raise(&hospital, &objection_request(&[HealthSummary], &["school"], &[])).await;
        assert_eq!(
            (first.objection_id.as_str(), first.revision, first.state(), first.child_masked.as_str()),
            ("o-1", 1, v1::ObjectionState::Active, "*** *** 9196")
        );
        assert_eq!(profile(&school, AMY).await, [CommunicationNeeds], "effective at once");
        assert_eq!(profile(&send_team, AMY).await, [CommunicationNeeds, HealthSummary], "only the school is named");

        // Nothing at all to the education sector.
        let second = raise(&hospital, &objection_request(&[], &[], &[v1::Sector::Education])).await;
        assert_eq!(second.objection_id, "o-2");
        assert_eq!(profile(&school, AMY).await, Vec::<v1::Category>::new());
        assert_eq!(profile(&send_team, AMY).await, Vec::<v1::Category>::new());

        // An involved agency reads them, in the order they were raised.
        let listed = objections(&school).await;
        assert_eq!(listed.iter().map(|o| o.objection_id.as_str()).collect::<Vec<_>>(), ["o-1", "o-2"]);
        assert_eq!(listed[1].sectors, [v1::Sector::Education as i32]);
        assert_eq!(listed[0].reason, "The school does not need Amy's diagnoses");

        // Withdrawn: the sector objection stops refusing; the school's one still stands.
        let withdraw = v1::WithdrawObjectionRequest {
            child: child(AMY),
            objection_id: "o-2".into(),
            reason: "Talked it through with the SENCo".into(),
            evidence: consent_request(&[]).evidence,
        };
        let withdrawn = hospital.consents().withdraw_objection(hospital.request(withdraw.clone())).await.unwrap();
        assert_eq!((withdrawn.get_ref().revision, withdrawn.get_ref().state()), (2, v1::ObjectionState::Withdrawn));
        assert_eq!(profile(&school, AMY).await, [CommunicationNeeds]);
        assert_eq!(profile(&send_team, AMY).await, [CommunicationNeeds, HealthSummary]);
        let again = hospital.consents().withdraw_objection(hospital.request(withdraw)).await.unwrap_err();
        assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
        assert_eq!(again.get_details_error_info().unwrap().reason, "OBJECTION_ALREADY_WITHDRAWN");

        // The subject-access report says who recorded what, and why the school was refused.
        let auditor = sandbox.client("auditor").await;
        let report = v1::SubjectAccessReportRequest { child: child(AMY), ..Default::default() };
        let lines = auditor.audit().subject_access_report(auditor.request(report)).await.unwrap().into_inner().lines;
        assert!(
            lines.iter().any(|line| line.agency_id == "hospital"
                && line.action() == v1::AuditAction::ObjectionRaised
                && line.why == "recorded on the family's instruction (objection o-1, revision 1)"),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|line| line.agency_id == "hospital"
                && line.action() == v1::AuditAction::ObjectionWithdrawn
                && line.why == "recorded on the family's instruction (objection o-2, revision 2)"),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|line| line.agency_id == "school"
                && line.action() == v1::AuditAction::ProfileRead
                && line.why == "refused: the family objected to this agency receiving it"
                && line.categories == [HealthSummary as i32]),
            "{lines:#?}"
        );
    });
}

#[test]
fn bad_objections_are_refused_naming_the_field_and_store_nothing() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        use v1::Category::HealthSummary;
        let valid = objection_request(&[HealthSummary], &["school"], &[]);
        let cases: Vec<(&str, v1::RecordObjectionRequest)> = vec![
            ("categories", objection_request(&[], &[], &[])),
            ("agency_ids[0]", v1::RecordObjectionRequest { agency_ids: vec!["Not An Id".into()], ..valid.clone() }),
            ("sectors[0]", v1::RecordObjectionRequest { sectors: vec![99], ..valid.clone() }),
            ("giver_role", v1::RecordObjectionRequest { giver_role: 0, ..valid.clone() }),
            ("giver_name", v1::RecordObjectionRequest { giver_name: " ".into(), ..valid.clone() }),
            ("reason", v1::RecordObjectionRequest { reason: "r".repeat(1025), ..valid.clone() }),
            ("evidence", v1::RecordObjectionRequest { evidence: None, ..valid.clone() }),
            ("child.nhs_number", v1::RecordObjectionRequest { child: child("1234567890"), ..valid.clone() }),
        ];
        for (field, request) in cases {
            let status = hospital.consents().record_objection(hospital.request(request)).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
            let violations = status.get_details_bad_request().unwrap().field_violations;
            assert_eq!(violations[0].field, field, "{status:?}");
        }
        let withdraw = |objection_id: &str| v1::WithdrawObjectionRequest {
            child: child(AMY),
            objection_id: objection_id.into(),
            reason: String::new(),
            evidence: consent_request(&[]).evidence,
        };
        for (id, code) in [("c-1", Code::InvalidArgument), ("o-0", Code::InvalidArgument), ("o-9", Code::NotFound)] {
            let status = hospital.consents().withdraw_objection(hospital.request(withdraw(id))).await.unwrap_err();
            assert_eq!(status.code(), code, "{id}: {status:?}");
        }
        // Only agencies record objections, as consents.
        let auditor = sandbox.client("auditor").await;
        let status = auditor.consents().record_objection(auditor.request(valid.clone())).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(objections(&hospital).await.is_empty(), "nothing was stored");
        // The next objection is still the first.
        assert_eq!(raise(&hospital, &valid).await.objection_id, "o-1");
    });
}

#[test]
fn the_command_line_records_lists_and_withdraws_an_objection() {
    let sandbox = Sandbox::start();
    let evidence = ["--evidence-method", "in-person", "--language", "pl", "--interpreter-present"];
    let mut object = vec![
        "consent",
        "object",
        "--nhs-number",
        AMY,
        "--giver-role",
        "parent",
        "--giver-name",
        "Anna Nowak",
        "--categories",
        "health_summary",
        "--agencies",
        "school",
        "--professional",
        "sw-1",
    ];
    object.extend_from_slice(&evidence);
    let (ok, stdout, stderr) = tio_as(&sandbox, "social-care", &object);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"objection_id\":\"o-1\"") && stdout.contains("OBJECTION_STATE_ACTIVE"), "{stdout}");

    let list = ["consent", "objections", "--nhs-number", AMY, "--professional", "sw-1"];
    let (ok, stdout, stderr) = tio_as(&sandbox, "social-care", &list);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");

    let mut withdraw =
        vec!["consent", "withdraw-objection", "--nhs-number", AMY, "--objection-id", "o-1", "--professional", "sw-1"];
    withdraw.extend_from_slice(&evidence);
    let (ok, stdout, stderr) = tio_as(&sandbox, "social-care", &withdraw);
    assert!(ok && stdout.contains("OBJECTION_STATE_WITHDRAWN"), "{stdout}{stderr}");
    let (ok, _, stderr) = tio_as(&sandbox, "social-care", &withdraw);
    assert!(!ok && stderr.contains("already withdrawn"), "{stderr}");
    // Nothing named: refused by the broker, naming the field.
    let bare: Vec<&str> =
        object.iter().copied().filter(|arg| *arg != "--categories" && *arg != "health_summary").collect();
    let bare: Vec<&str> = bare.into_iter().filter(|arg| *arg != "--agencies" && *arg != "school").collect();
    let (ok, _, stderr) = tio_as(&sandbox, "social-care", &bare);
    assert!(!ok && stderr.contains("categories"), "{stderr}");
}

/// Records an objection, which must succeed.
async fn raise(client: &tio_client::Client, request: &v1::RecordObjectionRequest) -> v1::ObjectionRecord {
    client.consents().record_objection(client.request(request.clone())).await.unwrap().into_inner()
}
