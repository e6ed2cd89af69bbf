//! `tio ehc` and `tio transition`: EHC needs assessments and transitions to adult
//! services. Each command prints the record as a JSON line on standard output and its
//! clocks or milestones in words on standard error, so that a caseworker sees what is
//! due while a script reads the JSON.

use std::io::Write;

use tio_client::ClientError;
use tio_proto::v1;

use crate::cli::{AssessmentArgs, ChildArgs, EhcCommand, MetricsFormat, ReportCommand, TransitionCommand};
use crate::client_commands::{child, date_value, named, print_json};
use crate::connection::UsageError;

fn adviser(text: &str) -> Result<v1::AdviserType, UsageError> {
    named(
        "--adviser",
        text,
        "ADVISER_TYPE_",
        v1::AdviserType::from_str_name,
        v1::AdviserType::Unspecified,
        "parent-views, young-person-views, educational, medical-health, psychological, social-care, \
         preparing-for-adulthood or other",
    )
}

fn step(
    text: &str,
    on: v1::Date,
    code: Option<&str>,
    until: Option<&str>,
) -> Result<v1::record_assessment_step_request::Step, UsageError> {
    use v1::record_assessment_step_request::Step;
    let decision = |decision: v1::AssessDecision| {
        Step::Decision(v1::AssessmentDecision { decision: decision as i32, notified_on: Some(on) })
    };
    if code.is_some() != (text == "exception") {
        return Err(UsageError::new("--code is given with --step exception, and only then"));
    }
    Ok(match text {
        "assess" => decision(v1::AssessDecision::Assess),
        "do-not-assess" => decision(v1::AssessDecision::DoNotAssess),
        "draft-sent" => Step::DraftSent(on),
        "final-plan-issued" => Step::FinalPlanIssued(on),
        "no-plan-notified" => Step::NoPlanNotified(on),
        "exception" => {
            let code = named(
                "--code",
                code.unwrap_or_default(),
                "CLOCK_EXCEPTION_CODE_",
                v1::ClockExceptionCode::from_str_name,
                v1::ClockExceptionCode::Unspecified,
                "school-closure, exceptional-personal-circumstances, absence-from-area or missed-appointment",
            )?;
            let until = until.map(|text| date_value("--until", text)).transpose()?;
            Step::Exception(v1::ClockException { code: code as i32, from: Some(on), until })
        }
        other => {
            return Err(UsageError::new(format!(
                "--step `{other}`: expected assess, do-not-assess, draft-sent, final-plan-issued, no-plan-notified \
                 or exception"
            )));
        }
    })
}

/// `tio ehc`.
pub(crate) async fn ehc(command: EhcCommand) -> anyhow::Result<()> {
    let assessment = match command {
        EhcCommand::Open { request_received, requested_by, child: ChildArgs { nhs_number, connection } } => {
            let (requester, agency) = match requested_by.as_str() {
                "parent" => (v1::AssessmentRequester::Parent, String::new()),
                "young-person" => (v1::AssessmentRequester::YoungPerson, String::new()),
                agency => (v1::AssessmentRequester::Agency, agency.to_owned()),
            };
            let request = v1::OpenAssessmentRequest {
                child: child(&nhs_number)?,
                request_received: Some(date_value("--request-received", &request_received)?),
                requested_by: requester as i32,
                requested_by_agency_id: agency,
            };
            let client = connection.connect_agency().await?;
            let response = client.ehc().open_assessment(client.request(request)).await;
            response.map_err(ClientError::from)?.into_inner()
        }
        EhcCommand::Step { step: name, on, code, until, assessment } => {
            let on = date_value("--on", &on)?;
            let AssessmentArgs { nhs_number, assessment_id, connection } = assessment;
            let request = v1::RecordAssessmentStepRequest {
                child: child(&nhs_number)?,
                assessment_id,
                step: Some(step(&name, on, code.as_deref(), until.as_deref())?),
            };
            let client = connection.connect_agency().await?;
            let response = client.ehc().record_assessment_step(client.request(request)).await;
            response.map_err(ClientError::from)?.into_inner()
        }
        EhcCommand::Ask { adviser: kind, agency, asked_on, assessment } => {
            let AssessmentArgs { nhs_number, assessment_id, connection } = assessment;
            let request = v1::RequestAdviceRequest {
                child: child(&nhs_number)?,
                assessment_id,
                adviser_type: adviser(&kind)? as i32,
                agency_id: agency,
                asked_on: Some(date_value("--asked-on", &asked_on)?),
            };
            let client = connection.connect_agency().await?;
            let response = client.ehc().request_advice(client.request(request)).await;
            response.map_err(ClientError::from)?.into_inner()
        }
        EhcCommand::Answer { adviser: kind, update_id, assessment } => {
            let answer = v1::answer_advice_request_request::Answer::NewAdvice(v1::NewAdvice {});
            answer_advice(assessment, &kind, update_id, answer).await?
        }
        EhcCommand::Reuse { adviser: kind, update_id, authority_agreed, adviser_agreed, family_agreed, assessment } => {
            let agreements = v1::ReuseAgreements {
                authority: Some(date_value("--authority-agreed", &authority_agreed)?),
                adviser: Some(date_value("--adviser-agreed", &adviser_agreed)?),
                family: Some(date_value("--family-agreed", &family_agreed)?),
            };
            let answer = v1::answer_advice_request_request::Answer::AlreadyGiven(agreements);
            answer_advice(assessment, &kind, update_id, answer).await?
        }
        EhcCommand::Show { assessment } => {
            let AssessmentArgs { nhs_number, assessment_id, connection } = assessment;
            let request = v1::GetAssessmentRequest { child: child(&nhs_number)?, assessment_id };
            let client = connection.connect_agency().await?;
            let response = client.ehc().get_assessment(client.request(request)).await;
            response.map_err(ClientError::from)?.into_inner()
        }
        EhcCommand::List { child: ChildArgs { nhs_number, connection } } => {
            let request = v1::ListAssessmentsRequest { child: child(&nhs_number)? };
            let client = connection.connect_agency().await?;
            let response = client.ehc().list_assessments(client.request(request)).await;
            for assessment in &response.map_err(ClientError::from)?.into_inner().assessments {
                print_assessment(assessment)?;
            }
            return Ok(());
        }
    };
    print_assessment(&assessment)
}

async fn answer_advice(
    assessment: AssessmentArgs,
    kind: &str,
    update_id: String,
    answer: v1::answer_advice_request_request::Answer,
) -> anyhow::Result<v1::EhcAssessment> {
    let AssessmentArgs { nhs_number, assessment_id, connection } = assessment;
    let request = v1::AnswerAdviceRequestRequest {
        child: child(&nhs_number)?,
        assessment_id,
        adviser_type: adviser(kind)? as i32,
        update_id,
        answer: Some(answer),
    };
    let client = connection.connect_agency().await?;
    let response = client.ehc().answer_advice_request(client.request(request)).await;
    Ok(response.map_err(ClientError::from)?.into_inner())
}

/// Prints the assessment as JSON, and its clocks in words on standard error.
fn print_assessment(assessment: &v1::EhcAssessment) -> anyhow::Result<()> {
    print_json("tio.v1.EhcAssessment", assessment)?;
    let mut err = std::io::stderr().lock();
    writeln!(err, "{}", tio_client::describe_clocks(assessment))?;
    Ok(())
}

fn milestone(flag: &str, text: &str) -> Result<v1::TransitionMilestone, UsageError> {
    named(
        flag,
        text,
        "TRANSITION_MILESTONE_",
        v1::TransitionMilestone::from_str_name,
        v1::TransitionMilestone::Unspecified,
        "preparing-for-adulthood-review, annual-health-check, adult-social-care-referral, adult-health-services, \
         plan-review-before-leaving or plan-ceases",
    )
}

/// `tio transition`.
pub(crate) async fn transition(command: TransitionCommand) -> anyhow::Result<()> {
    let record = match command {
        TransitionCommand::Open { opened_on, owners, young_person } => {
            let owners = owners
                .iter()
                .map(|pair| {
                    let (kind, agency) = pair
                        .split_once('=')
                        .ok_or_else(|| UsageError::new(format!("--owner `{pair}`: expected MILESTONE=AGENCY")))?;
                    Ok(v1::MilestoneOwner {
                        milestone: milestone("--owner", kind)? as i32,
                        agency_id: agency.to_owned(),
                    })
                })
                .collect::<Result<Vec<_>, UsageError>>()?;
            let ChildArgs { nhs_number, connection } = young_person;
            let request = v1::OpenTransitionRequest {
                child: child(&nhs_number)?,
                opened_on: Some(date_value("--opened-on", &opened_on)?),
                owners,
            };
            let client = connection.connect_agency().await?;
            let response = client.transitions().open_transition(client.request(request)).await;
            response.map_err(ClientError::from)?.into_inner()
        }
        TransitionCommand::Done { milestone: kind, on, young_person } => {
            let ChildArgs { nhs_number, connection } = young_person;
            let request = v1::RecordMilestoneRequest {
                child: child(&nhs_number)?,
                milestone: milestone("--milestone", &kind)? as i32,
                done_on: Some(date_value("--on", &on)?),
            };
            let client = connection.connect_agency().await?;
            let response = client.transitions().record_milestone(client.request(request)).await;
            response.map_err(ClientError::from)?.into_inner()
        }
        TransitionCommand::Leaving { on, young_person } => {
            let ChildArgs { nhs_number, connection } = young_person;
            let request = v1::RecordLeavingDateRequest {
                child: child(&nhs_number)?,
                leaving_education: Some(date_value("--on", &on)?),
            };
            let client = connection.connect_agency().await?;
            let response = client.transitions().record_leaving_date(client.request(request)).await;
            response.map_err(ClientError::from)?.into_inner()
        }
        TransitionCommand::Show { young_person } => {
            let ChildArgs { nhs_number, connection } = young_person;
            let request = v1::GetTransitionRequest { child: child(&nhs_number)? };
            let client = connection.connect_agency().await?;
            let response = client.transitions().get_transition(client.request(request)).await;
            response.map_err(ClientError::from)?.into_inner()
        }
    };
    print_json("tio.v1.TransitionRecord", &record)?;
    writeln!(std::io::stderr().lock(), "{}", tio_client::describe_milestones(&record))?;
    Ok(())
}

/// `tio report`.
pub(crate) async fn report(command: ReportCommand) -> anyhow::Result<()> {
    let ReportCommand::Send { from, to, run_by, format, connection } = command;
    let request = v1::GetSendMetricsRequest {
        from_month: from.unwrap_or_default(),
        to_month: to.unwrap_or_default(),
        run_by_agency_id: run_by.unwrap_or_default(),
    };
    let client = connection.connect().await?;
    let response = client.reporting().get_send_metrics(client.request(request)).await;
    let metrics = response.map_err(ClientError::from)?.into_inner();
    let text = match format {
        MetricsFormat::Table => metrics_table(&metrics),
        MetricsFormat::Csv => metrics_csv(&metrics),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A figure as printed: the count, or `<5` where withheld.
fn shown(figure: Option<&v1::Figure>) -> String {
    match figure {
        Some(figure) if figure.suppressed => "<5".to_owned(),
        Some(figure) => figure.value.to_string(),
        None => "0".to_owned(),
    }
}

fn adviser_words(row: &v1::AdviceTurnaround) -> String {
    if row.agency_id.is_empty() {
        row.adviser_type().as_str_name().trim_start_matches("ADVISER_TYPE_").to_lowercase()
    } else {
        format!("agency {}", row.agency_id)
    }
}

fn metrics_table(metrics: &v1::SendMetrics) -> String {
    let mut lines = vec![format!(
        "{:<8} {:>7} {:>9} {:>9} {:>7} {:>10}  {}",
        "MONTH", "OPENED", "DECISIONS", "IN 6 WKS", "PLANS", "IN 20 WKS", "EXCEPTIONS"
    )];
    for month in &metrics.months {
        let exceptions: Vec<String> = month
            .exceptions
            .iter()
            .map(|exception| {
                let code = exception.code().as_str_name().trim_start_matches("CLOCK_EXCEPTION_CODE_").to_lowercase();
                format!("{code} {}", shown(exception.children.as_ref()))
            })
            .collect();
        lines.push(format!(
            "{:<8} {:>7} {:>9} {:>9} {:>7} {:>10}  {}",
            month.month,
            shown(month.opened.as_ref()),
            shown(month.decisions.as_ref()),
            shown(month.decisions_within_6_weeks.as_ref()),
            shown(month.plans_issued.as_ref()),
            shown(month.plans_within_20_weeks.as_ref()),
            if exceptions.is_empty() { "-".to_owned() } else { exceptions.join(", ") }
        ));
    }
    if !metrics.turnaround.is_empty() {
        lines.push(String::new());
        lines.push(format!("{:<8} {:<32} {:>7} {:>12}", "MONTH", "ADVICE FROM", "ADVICE", "MEDIAN DAYS"));
        for row in &metrics.turnaround {
            lines.push(format!(
                "{:<8} {:<32} {:>7} {:>12}",
                row.month,
                adviser_words(row),
                shown(row.advice.as_ref()),
                row.median_days.map_or_else(|| "-".to_owned(), |days| days.to_string())
            ));
        }
    }
    lines.push(String::new());
    lines.push(format!(
        "young people aged 17 to 24 with no referral to adult social care recorded: {}",
        shown(metrics.aged_17_without_referral.as_ref())
    ));
    lines.push("(counts of children; <5: withheld, fewer than 5 children)".to_owned());
    lines.join("\n") + "\n"
}

/// One row per figure: measure, month, breakdown, value (`<5` where withheld). No cell
/// starts with a character a spreadsheet reads as a formula.
fn metrics_csv(metrics: &v1::SendMetrics) -> String {
    let mut rows = vec!["measure,month,breakdown,value".to_owned()];
    for month in &metrics.months {
        for (measure, figure) in [
            ("opened", &month.opened),
            ("decisions", &month.decisions),
            ("decisions_within_6_weeks", &month.decisions_within_6_weeks),
            ("plans_issued", &month.plans_issued),
            ("plans_within_20_weeks", &month.plans_within_20_weeks),
        ] {
            rows.push(format!("{measure},{},,{}", month.month, shown(figure.as_ref())));
        }
        for exception in &month.exceptions {
            let code = exception.code().as_str_name().trim_start_matches("CLOCK_EXCEPTION_CODE_").to_lowercase();
            rows.push(format!("exceptions,{},{code},{}", month.month, shown(exception.children.as_ref())));
        }
    }
    for row in &metrics.turnaround {
        let breakdown = adviser_words(row).replace(' ', "_");
        rows.push(format!("advice,{},{breakdown},{}", row.month, shown(row.advice.as_ref())));
        let median = row.median_days.map_or_else(|| "withheld".to_owned(), |days| days.to_string());
        rows.push(format!("median_advice_days,{},{breakdown},{median}", row.month));
    }
    rows.push(format!("aged_17_without_referral,,,{}", shown(metrics.aged_17_without_referral.as_ref())));
    rows.join("\n") + "\n"
}
