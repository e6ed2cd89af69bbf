//! EHC needs assessments over real mutual TLS (issue 17, section 2): the SEND team opens
//! one, decides to assess, asks three advisers; the hospital's health summary given
//! before is recorded as advice already given with the three agreements (the family is
//! not asked again), the school answers with new advice, social care answers late; the
//! draft and the final plan follow on a server whose clock the test moves on. Every
//! clock is in each reply. Bad requests are refused naming the field, with nothing
//! stored.

use tio_client::Client;
use tio_proto::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::records::*;
use crate::support::{Sandbox, tio_as};

/// The server's day: today, moved on by the days the test moved its clock.
fn day(ahead: i64) -> v1::Date {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let today = tio_core::Timestamp::from_unix_micros(now.as_micros() as i64).uk_date().unwrap();
    let date = today.checked_add(jiff::Span::new().days(ahead)).unwrap();
    v1::Date { year: i32::from(date.year()), month: i32::from(date.month()), day: i32::from(date.day()) }
}

fn step(step: v1::record_assessment_step_request::Step) -> v1::RecordAssessmentStepRequest {
    v1::RecordAssessmentStepRequest { child: child(AMY), assessment_id: "ehc-1".into(), step: Some(step) }
}

fn ask(adviser: v1::AdviserType, agency: &str) -> v1::RequestAdviceRequest {
    v1::RequestAdviceRequest {
        child: child(AMY),
        assessment_id: "ehc-1".into(),
        adviser_type: adviser as i32,
        agency_id: agency.into(),
        asked_on: Some(day(0)),
    }
}

fn answer(adviser: v1::AdviserType, update_id: &str) -> v1::AnswerAdviceRequestRequest {
    v1::AnswerAdviceRequestRequest {
        child: child(AMY),
        assessment_id: "ehc-1".into(),
        adviser_type: adviser as i32,
        update_id: update_id.into(),
        answer: Some(v1::answer_advice_request_request::Answer::NewAdvice(v1::NewAdvice {})),
    }
}

fn deadline(
    assessment: &v1::EhcAssessment,
    clock: v1::AssessmentClock,
    adviser: v1::AdviserType,
) -> &v1::AssessmentDeadline {
    assessment
        .deadlines
        .iter()
        .find(|deadline| deadline.clock() == clock && deadline.adviser_type() == adviser)
        .unwrap_or_else(|| panic!("no {clock:?} deadline for {adviser:?}: {assessment:#?}"))
}

/// The caller's alerts of `kind`.
async fn alerts(client: &Client, kind: &str) -> Vec<v1::Alert> {
    let request = v1::ListAlertsRequest { page: None };
    let all = client.alerts().list_alerts(client.request(request)).await.unwrap().into_inner().alerts;
    all.into_iter().filter(|alert| alert.kind == kind).collect()
}

/// Waits (at most 30 seconds) for the caller's first alert of `kind`: alerts are
/// sequenced within half a second, and the broker's duties first run 5 seconds after
/// it starts.
async fn alert(client: &Client, kind: &str) -> v1::Alert {
    for _ in 0..300 {
        if let Some(alert) = alerts(client, kind).await.into_iter().next() {
            return alert;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no {kind} alert within 30 seconds");
}

async fn get(client: &Client) -> Result<v1::EhcAssessment, tonic::Status> {
    let request = v1::GetAssessmentRequest { child: child(AMY), assessment_id: "ehc-1".into() };
    client.ehc().get_assessment(client.request(request)).await.map(tonic::Response::into_inner)
}

fn field_of(status: &tonic::Status) -> String {
    status.get_details_bad_request().map(|bad| bad.field_violations[0].field.clone()).unwrap_or_default()
}

#[test]
fn an_assessment_runs_from_request_to_final_plan_and_advice_given_before_is_not_asked_again() {
    use v1::AdviserType::{Educational, MedicalHealth, SocialCare};
    use v1::AssessmentClock::{Advice, DecisionWhetherToAssess, FinalPlan};
    use v1::record_assessment_step_request::Step;
    let mut sandbox = Sandbox::start();
    let runtime = runtime();
    runtime.block_on(async {
        let send_team = as_professional(&sandbox, "send-team").await;
        let hospital = as_professional(&sandbox, "hospital").await;
        let school = as_professional(&sandbox, "school").await;
        // The hospital's summary, written for its own clinic before any assessment.
        let summary =
            publish(&hospital, publish_request(AMY, v1::Category::HealthSummary, health_summary("Epilepsy"), "h-1"))
                .await
                .unwrap()
                .update_id;

        // Only the SEND team opens an assessment.
        let open = v1::OpenAssessmentRequest {
            child: child(AMY),
            request_received: Some(day(0)),
            requested_by: v1::AssessmentRequester::Agency as i32,
            requested_by_agency_id: "school".into(),
        };
        let refused = school.ehc().open_assessment(school.request(open.clone())).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        let opened = send_team.ehc().open_assessment(send_team.request(open)).await.unwrap().into_inner();
        assert_eq!((opened.assessment_id.as_str(), opened.revision), ("ehc-1", 1));
        assert_eq!(
            deadline(&opened, DecisionWhetherToAssess, v1::AdviserType::Unspecified).status(),
            v1::DeadlineStatus::Open
        );
        assert_eq!(deadline(&opened, FinalPlan, v1::AdviserType::Unspecified).days, 140, "20 weeks");

        let decision = Step::Decision(v1::AssessmentDecision {
            decision: v1::AssessDecision::Assess as i32,
            notified_on: Some(day(0)),
        });
        send_team.ehc().record_assessment_step(send_team.request(step(decision))).await.unwrap();
        for (adviser, agency) in [(MedicalHealth, "hospital"), (Educational, "school"), (SocialCare, "social-care")] {
            send_team.ehc().request_advice(send_team.request(ask(adviser, agency))).await.unwrap();
        }
        // Each adviser is told, with its due day.
        let asked = alert(&hospital, "ehc_advice_requested").await;
        let due = day(42);
        let due = format!("{:04}-{:02}-{:02}", due.year, due.month, due.day);
        assert_eq!(asked.entry.as_ref().unwrap().detail, format!("advice_requested:medical_health due {due}"));
        assert_eq!(asked.nhs_number, AMY, "the agency asked is told which child");
        // The SEND team is offered what the hospital already gave.
        let seen = get(&send_team).await.unwrap();
        let health = seen.advice.iter().find(|request| request.adviser_type() == MedicalHealth).unwrap();
        assert_eq!(
            health.already_given.iter().map(|offer| offer.update_id.as_str()).collect::<Vec<_>>(),
            [summary.as_str()]
        );
        // ... and records it, with the three agreements: the family is not asked again.
        let reuse = v1::AnswerAdviceRequestRequest {
            answer: Some(v1::answer_advice_request_request::Answer::AlreadyGiven(v1::ReuseAgreements {
                authority: Some(day(0)),
                adviser: Some(day(0)),
                family: None,
            })),
            ..answer(MedicalHealth, &summary)
        };
        let refused = send_team.ehc().answer_advice_request(send_team.request(reuse.clone())).await.unwrap_err();
        assert_eq!((refused.code(), field_of(&refused).as_str()), (Code::InvalidArgument, "agreements.family"));
        let agreed = v1::AnswerAdviceRequestRequest {
            answer: Some(v1::answer_advice_request_request::Answer::AlreadyGiven(v1::ReuseAgreements {
                authority: Some(day(0)),
                adviser: Some(day(0)),
                family: Some(day(0)),
            })),
            ..reuse
        };
        send_team.ehc().answer_advice_request(send_team.request(agreed)).await.unwrap();

        // The school answers with new advice; an agency not asked cannot.
        let advice = publish(&school, publish_request(AMY, v1::Category::SendSupport, send_support(), "s-1"))
            .await
            .unwrap()
            .update_id;
        let gp = as_professional(&sandbox, "gp").await;
        let refused = gp.ehc().answer_advice_request(gp.request(answer(Educational, &advice))).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        let answered = school.ehc().answer_advice_request(school.request(answer(Educational, &advice))).await.unwrap();
        let answered = answered.into_inner();
        assert_eq!(deadline(&answered, Advice, Educational).status(), v1::DeadlineStatus::Met);
        assert_eq!(deadline(&answered, Advice, MedicalHealth).status(), v1::DeadlineStatus::Met);
        let received = alert(&send_team, "ehc_advice_received").await;
        assert_eq!(received.agency_id, "school");
        assert!(alerts(&send_team, "ehc_advice_received").await.len() == 1, "advice already given is not announced");
        // The school, asked for advice, reads the assessment; the GP, neither asked nor
        // involved, may not.
        assert_eq!(get(&school).await.unwrap().revision, answered.revision);
        assert_eq!(get(&gp).await.unwrap_err().code(), Code::PermissionDenied);
    });

    // Fifty days on: social care's six weeks are past.
    sandbox.restart_days_ahead(50);
    runtime.block_on(async {
        let send_team = as_professional(&sandbox, "send-team").await;
        let social_care = as_professional(&sandbox, "social-care").await;
        let seen = get(&send_team).await.unwrap();
        let late = deadline(&seen, Advice, SocialCare);
        assert_eq!((late.status(), late.days), (v1::DeadlineStatus::Missed, 8), "{late:?}");
        // The broker's duties tell social care and the SEND team, once.
        let missed = alert(&social_care, "ehc_deadline_missed").await;
        assert!(missed.entry.as_ref().unwrap().detail.starts_with("advice (social_care) due"), "{missed:?}");
        assert_eq!(missed.addressed_to, ["send-team", "social-care"]);
        assert_eq!(alert(&send_team, "ehc_deadline_missed").await.leaf_index, missed.leaf_index);
        let advice =
            publish(&social_care, publish_request(AMY, v1::Category::SocialCareInvolvement, early_help(), "c-1"))
                .await
                .unwrap()
                .update_id;
        let answered =
            social_care.ehc().answer_advice_request(social_care.request(answer(SocialCare, &advice))).await.unwrap();
        let late = deadline(answered.get_ref(), Advice, SocialCare);
        assert_eq!((late.status(), late.days), (v1::DeadlineStatus::Late, 8));
        // A final plan before the draft is refused naming the field; the draft goes.
        let refused = send_team
            .ehc()
            .record_assessment_step(send_team.request(step(Step::FinalPlanIssued(day(50)))))
            .await
            .unwrap_err();
        assert_eq!((refused.code(), field_of(&refused).as_str()), (Code::InvalidArgument, "final_plan_issued"));
        send_team.ehc().record_assessment_step(send_team.request(step(Step::DraftSent(day(50))))).await.unwrap();
    });

    // Seventy days on: the family's 15 days on the draft have passed.
    sandbox.restart_days_ahead(70);
    runtime.block_on(async {
        let send_team = as_professional(&sandbox, "send-team").await;
        let issued = send_team
            .ehc()
            .record_assessment_step(send_team.request(step(Step::FinalPlanIssued(day(70)))))
            .await
            .unwrap()
            .into_inner();
        assert!(issued.closed);
        let hospital = as_professional(&sandbox, "hospital").await;
        assert_eq!(alert(&hospital, "ehc_plan_issued").await.addressed_to, ["hospital", "school", "social-care"]);

        // The plan, published as the child's SEND support, says whose advice it was
        // written from, and carries section A in the family's words.
        let plan = |advice: Vec<v1::AdviceReference>| v1::CategoryValue {
            value: Some(v1::category_value::Value::SendSupport(v1::SendSupport {
                provision: v1::SenProvision::EhcPlan as i32,
                ehc_plan: Some(v1::EhcPlan {
                    final_issued_on: Some(day(70)),
                    section_a: "Amelia loves trains and wants to be a driver; her mum wants her to have friends".into(),
                    advice,
                    ..Default::default()
                }),
                ..Default::default()
            })),
        };
        let references: Vec<v1::AdviceReference> = issued
            .advice
            .iter()
            .map(|request| v1::AdviceReference {
                adviser_type: request.adviser_type,
                assessment_id: issued.assessment_id.clone(),
                update_id: request.update_id.clone(),
                agency_id: request.agency_id.clone(),
                given_on: request.given_on,
            })
            .collect();
        assert_eq!(references.len(), 3);
        let bad = vec![v1::AdviceReference { update_id: "not-an-update".into(), ..references[0].clone() }];
        let status = publish(&send_team, publish_request(AMY, v1::Category::SendSupport, plan(bad), "plan-0"))
            .await
            .unwrap_err();
        assert_eq!(field_of(&status), "value.send_support.ehc_plan.advice[0].update_id");
        publish(&send_team, publish_request(AMY, v1::Category::SendSupport, plan(references), "plan-1")).await.unwrap();
        assert_eq!(deadline(&issued, FinalPlan, v1::AdviserType::Unspecified).status(), v1::DeadlineStatus::Met);
        let again = send_team
            .ehc()
            .request_advice(
                send_team
                    .request(v1::RequestAdviceRequest { asked_on: Some(day(70)), ..ask(v1::AdviserType::Other, "gp") }),
            )
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::FailedPrecondition, "closed: {again:?}");

        // Every change and read is audited under the assessment's id.
        let auditor = sandbox.client("auditor").await;
        let query =
            v1::QueryEntriesRequest { action: v1::AuditAction::EhcAssessmentRecorded as i32, ..Default::default() };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        let steps: Vec<&str> = entries
            .iter()
            .filter(|entry| entry.outcome() == v1::AuditOutcome::Allowed)
            .map(|entry| entry.detail.split(" due ").next().unwrap_or_default())
            .collect();
        assert_eq!(
            steps,
            [
                "opened",
                "decision_to_assess",
                "advice_requested:medical_health",
                "advice_requested:educational",
                "advice_requested:social_care",
                "advice_already_given:medical_health",
                "advice_given:educational",
                "advice_given:social_care",
                "draft_sent",
                "final_plan_issued",
            ]
        );
    });

    // The command line prints the clocks in words.
    let (ok, stdout, stderr) = tio_as(
        &sandbox,
        "send-team",
        &["ehc", "show", "--nhs-number", AMY, "--assessment-id", "ehc-1", "--professional", "cw-1"],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"assessment_id\":\"ehc-1\""), "{stdout}");
    assert!(stderr.contains("assessment ehc-1 (revision 10), closed:"), "{stderr}");
    assert!(stderr.contains("advice (social care): from"), "{stderr}");
    assert!(stderr.contains("met 8 days late"), "{stderr}");
}

/// Bad requests are refused naming the field, and nothing is stored.
#[test]
fn bad_requests_name_the_field_and_store_nothing() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let send_team = as_professional(&sandbox, "send-team").await;
        let open = |received: Option<v1::Date>, requested_by: v1::AssessmentRequester| v1::OpenAssessmentRequest {
            child: child(AMY),
            request_received: received,
            requested_by: requested_by as i32,
            requested_by_agency_id: String::new(),
        };
        let cases = [
            (open(None, v1::AssessmentRequester::Parent), "request_received"),
            (open(Some(day(1)), v1::AssessmentRequester::Parent), "request_received"),
            (open(Some(day(0)), v1::AssessmentRequester::Unspecified), "requested_by"),
            (open(Some(day(0)), v1::AssessmentRequester::Agency), "requested_by_agency_id"),
            (
                v1::OpenAssessmentRequest {
                    request_received: Some(v1::Date { year: 2026, month: 2, day: 30 }),
                    ..open(None, v1::AssessmentRequester::Parent)
                },
                "request_received",
            ),
        ];
        for (request, field) in cases {
            let status = send_team.ehc().open_assessment(send_team.request(request)).await.unwrap_err();
            assert_eq!((status.code(), field_of(&status).as_str()), (Code::InvalidArgument, field), "{status:?}");
        }
        let list = v1::ListAssessmentsRequest { child: child(AMY) };
        let listed = send_team.ehc().list_assessments(send_team.request(list.clone())).await.unwrap().into_inner();
        assert!(listed.assessments.is_empty(), "nothing stored");

        send_team
            .ehc()
            .open_assessment(send_team.request(open(Some(day(-10)), v1::AssessmentRequester::Parent)))
            .await
            .unwrap();
        use v1::record_assessment_step_request::Step;
        let early = Step::Decision(v1::AssessmentDecision {
            decision: v1::AssessDecision::Assess as i32,
            notified_on: Some(day(-11)),
        });
        let status = send_team.ehc().record_assessment_step(send_team.request(step(early))).await.unwrap_err();
        assert_eq!((status.code(), field_of(&status).as_str()), (Code::InvalidArgument, "decision.notified_on"));
        let status = send_team
            .ehc()
            .request_advice(send_team.request(v1::RequestAdviceRequest {
                asked_on: Some(day(-5)),
                ..ask(v1::AdviserType::Educational, "school")
            }))
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), field_of(&status).as_str()),
            (Code::InvalidArgument, "asked_on"),
            "before a decision"
        );
        let status = send_team
            .ehc()
            .get_assessment(
                send_team.request(v1::GetAssessmentRequest { child: child(AMY), assessment_id: "ehc-9".into() }),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let listed = send_team.ehc().list_assessments(send_team.request(list)).await.unwrap().into_inner();
        assert_eq!(listed.assessments.iter().map(|a| a.revision).collect::<Vec<_>>(), [1], "only the opening");
    });
}
