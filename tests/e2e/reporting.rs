//! The partnership's SEND measures over real mutual TLS (issue 17, section 4): counts
//! only, by month, for admins, auditors and SEND teams; a figure resting on 1 to 4
//! children is withheld; the command line prints a table or CSV.

use tio_core::{NhsNumber, NhsNumberPolicy};
use tio_proto::v1;
use tonic::Code;

use crate::support::records::*;
use crate::support::{Sandbox, tio_as};

/// Test-range NHS numbers with valid check digits.
fn children(count: usize) -> Vec<String> {
    let policy = NhsNumberPolicy::development();
    (0..10_000u32)
        .flat_map(|n| (0..10).map(move |digit| format!("999{n:06}{digit}")))
        .filter(|digits| NhsNumber::parse(digits, &policy).is_ok())
        .take(count)
        .collect()
}

fn today() -> v1::Date {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let date = tio_core::Timestamp::from_unix_micros(now.as_micros() as i64).uk_date().unwrap();
    v1::Date { year: i32::from(date.year()), month: i32::from(date.month()), day: i32::from(date.day()) }
}

fn figure(value: u64) -> Option<v1::Figure> {
    Some(v1::Figure { value, suppressed: false })
}

fn withheld() -> Option<v1::Figure> {
    Some(v1::Figure { value: 0, suppressed: true })
}

#[test]
fn the_send_measures_count_children_by_month_and_withhold_small_numbers() {
    let sandbox = Sandbox::start();
    let month = format!("{:04}-{:02}", today().year, today().month);
    runtime().block_on(async {
        let send_team = as_professional(&sandbox, "send-team").await;
        let school = as_professional(&sandbox, "school").await;
        let hospital = as_professional(&sandbox, "hospital").await;
        for (index, nhs_number) in children(6).iter().enumerate() {
            let open = v1::OpenAssessmentRequest {
                child: child(nhs_number),
                request_received: Some(today()),
                requested_by: v1::AssessmentRequester::Parent as i32,
                requested_by_agency_id: String::new(),
            };
            let opened = send_team.ehc().open_assessment(send_team.request(open)).await.unwrap().into_inner();
            let decision = v1::record_assessment_step_request::Step::Decision(v1::AssessmentDecision {
                decision: v1::AssessDecision::Assess as i32,
                notified_on: Some(today()),
            });
            let step = v1::RecordAssessmentStepRequest {
                child: child(nhs_number),
                assessment_id: opened.assessment_id.clone(),
                step: Some(decision),
            };
            send_team.ehc().record_assessment_step(send_team.request(step)).await.unwrap();
            // Five children's educational advice, and three children's medical advice.
            let mut advisers = vec![(v1::AdviserType::Educational, "school", &school)];
            if index < 3 {
                advisers.push((v1::AdviserType::MedicalHealth, "hospital", &hospital));
            }
            for (adviser, agency, client) in advisers {
                if adviser == v1::AdviserType::Educational && index == 5 {
                    continue;
                }
                let ask = v1::RequestAdviceRequest {
                    child: child(nhs_number),
                    assessment_id: opened.assessment_id.clone(),
                    adviser_type: adviser as i32,
                    agency_id: agency.into(),
                    asked_on: Some(today()),
                };
                send_team.ehc().request_advice(send_team.request(ask)).await.unwrap();
                let (category, value) = match adviser {
                    v1::AdviserType::Educational => (v1::Category::SendSupport, send_support()),
                    _ => (v1::Category::HealthSummary, health_summary("Asthma")),
                };
                let key = format!("advice-{index}-{agency}");
                let update_id =
                    publish(client, publish_request(nhs_number, category, value, &key)).await.unwrap().update_id;
                let answer = v1::AnswerAdviceRequestRequest {
                    child: child(nhs_number),
                    assessment_id: opened.assessment_id.clone(),
                    adviser_type: adviser as i32,
                    update_id,
                    answer: Some(v1::answer_advice_request_request::Answer::NewAdvice(v1::NewAdvice {})),
                };
                client.ehc().answer_advice_request(client.request(answer)).await.unwrap();
            }
        }

        let request =
            v1::GetSendMetricsRequest { from_month: month.clone(), to_month: month.clone(), ..Default::default() };
        let metrics = send_team.reporting().get_send_metrics(send_team.request(request.clone())).await.unwrap();
        let metrics = metrics.into_inner();
        let this_month = &metrics.months[0];
        assert_eq!(this_month.month, month);
        assert_eq!(
            (this_month.opened, this_month.decisions, this_month.decisions_within_6_weeks, this_month.plans_issued),
            (figure(6), figure(6), figure(6), figure(0))
        );
        let row = |adviser: v1::AdviserType| {
            metrics.turnaround.iter().find(|row| row.adviser_type() == adviser && row.agency_id.is_empty()).unwrap()
        };
        assert_eq!(
            (row(v1::AdviserType::Educational).advice, row(v1::AdviserType::Educational).median_days),
            (figure(5), Some(0))
        );
        assert_eq!(
            (row(v1::AdviserType::MedicalHealth).advice, row(v1::AdviserType::MedicalHealth).median_days),
            (withheld(), None),
            "three children: withheld"
        );
        assert_eq!(metrics.aged_17_without_referral, figure(0));

        // Auditors and admins too; not an agency that does not run assessments.
        let auditor = sandbox.client("auditor").await;
        let seen = auditor.reporting().get_send_metrics(auditor.request(request.clone())).await.unwrap().into_inner();
        assert_eq!(seen.months[0].opened, figure(6));
        let admin = sandbox.client("admin").await;
        let other = v1::GetSendMetricsRequest { run_by_agency_id: "school".into(), ..request.clone() };
        let none = admin.reporting().get_send_metrics(admin.request(other.clone())).await.unwrap().into_inner();
        assert_eq!(none.months[0].opened, figure(0), "the school runs no assessment");
        let refused = school.reporting().get_send_metrics(school.request(request.clone())).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        let refused = send_team.reporting().get_send_metrics(send_team.request(other)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "a SEND team sees its own: {refused:?}");
        let backwards = v1::GetSendMetricsRequest {
            from_month: "2026-05".into(),
            to_month: "2026-04".into(),
            ..Default::default()
        };
        let refused = auditor.reporting().get_send_metrics(auditor.request(backwards)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
    });

    let (ok, csv, stderr) =
        tio_as(&sandbox, "auditor", &["report", "send", "--from", &month, "--to", &month, "--format", "csv"]);
    assert!(ok, "{stderr}");
    assert!(csv.starts_with("measure,month,breakdown,value\n"), "{csv}");
    assert!(csv.contains(&format!("opened,{month},,6\n")), "{csv}");
    assert!(csv.contains(&format!("advice,{month},medical_health,<5\n")), "{csv}");
    assert!(csv.contains(&format!("median_advice_days,{month},educational,0\n")), "{csv}");
    let (ok, table, _) = tio_as(&sandbox, "auditor", &["report", "send"]);
    assert!(ok && table.contains("MONTH") && table.contains("no referral to adult social care recorded: 0"), "{table}");
}
