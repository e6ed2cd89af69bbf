//! An EHC needs assessment's clocks, and a transition's milestones, in words, as a
//! caseworker reads them: what the command line prints beside the JSON, and what
//! `tio demo` shows.

use tio_proto::v1;

fn day(date: Option<&v1::Date>) -> String {
    date.map_or_else(|| "?".to_owned(), |date| format!("{:04}-{:02}-{:02}", date.year, date.month, date.day))
}

fn words(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase().replace('_', " ")
}

/// The assessment's clocks in words, one line each, as a caseworker reads them.
pub fn describe_clocks(assessment: &v1::EhcAssessment) -> String {
    let mut lines = vec![format!(
        "assessment {} (revision {}){}:",
        assessment.assessment_id,
        assessment.revision,
        if assessment.closed { ", closed" } else { "" }
    )];
    for deadline in &assessment.deadlines {
        let clock = words(deadline.clock().as_str_name(), "ASSESSMENT_CLOCK_");
        let whose = match deadline.adviser_type() {
            v1::AdviserType::Unspecified => String::new(),
            adviser => format!(" ({})", words(adviser.as_str_name(), "ADVISER_TYPE_")),
        };
        let state = match deadline.status() {
            v1::DeadlineStatus::Open => format!("open, {} days left", deadline.days),
            v1::DeadlineStatus::Met => format!("met on {}", day(deadline.done_on.as_ref())),
            v1::DeadlineStatus::Late => {
                format!("met {} days late, on {}", deadline.days, day(deadline.done_on.as_ref()))
            }
            v1::DeadlineStatus::Missed => format!("MISSED, {} days over", deadline.days),
            v1::DeadlineStatus::Excused => {
                format!("excused ({})", words(deadline.excused_by().as_str_name(), "CLOCK_EXCEPTION_CODE_"))
            }
            v1::DeadlineStatus::Unspecified => "unknown".to_owned(),
        };
        lines.push(format!(
            "  {clock}{whose}: from {} due {}: {state} [{}]",
            day(deadline.starts.as_ref()),
            day(deadline.due.as_ref()),
            deadline.regulation
        ));
    }
    for request in assessment.advice.iter().filter(|request| !request.already_given.is_empty()) {
        lines.push(format!(
            "  already given by {} ({}): {} value(s) the family need not give again, e.g. update {}",
            request.agency_id,
            words(request.adviser_type().as_str_name(), "ADVISER_TYPE_"),
            request.already_given.len(),
            request.already_given[0].update_id
        ));
    }
    lines.join("\n")
}

/// A transition record's milestones in words, one line each.
pub fn describe_milestones(record: &v1::TransitionRecord) -> String {
    let mut lines =
        vec![format!("transition record (revision {}), kept by {}:", record.revision, record.run_by_agency_id)];
    for milestone in &record.milestones {
        let what = words(milestone.milestone().as_str_name(), "TRANSITION_MILESTONE_");
        let state = match milestone.status() {
            v1::DeadlineStatus::Open => format!("open, {} days left", milestone.days),
            v1::DeadlineStatus::Met => format!("done on {}", day(milestone.done_on.as_ref())),
            v1::DeadlineStatus::Late => {
                format!("done {} days late, on {}", milestone.days, day(milestone.done_on.as_ref()))
            }
            v1::DeadlineStatus::Missed => format!("OVERDUE, {} days", milestone.days),
            v1::DeadlineStatus::Excused | v1::DeadlineStatus::Unspecified => "due day not known yet".to_owned(),
        };
        let due = milestone.due.as_ref().map_or_else(String::new, |due| format!(" due {}", day(Some(due))));
        lines.push(format!("  {what} ({}){due}: {state}", milestone.owner_agency_id));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: i32, day: i32) -> Option<v1::Date> {
        Some(v1::Date { year, month, day })
    }

    #[test]
    fn each_clock_is_one_line_in_words_with_its_regulation() {
        let assessment = v1::EhcAssessment {
            assessment_id: "ehc-2".into(),
            revision: 5,
            deadlines: vec![
                v1::AssessmentDeadline {
                    clock: v1::AssessmentClock::Advice as i32,
                    adviser_type: v1::AdviserType::MedicalHealth as i32,
                    starts: date(2026, 12, 1),
                    due: date(2027, 1, 12),
                    status: v1::DeadlineStatus::Met as i32,
                    done_on: date(2026, 12, 1),
                    regulation: "SEND Regulations 2014, regulation 8(1)".into(),
                    ..Default::default()
                },
                v1::AssessmentDeadline {
                    clock: v1::AssessmentClock::FinalPlan as i32,
                    starts: date(2026, 12, 1),
                    due: date(2027, 4, 20),
                    status: v1::DeadlineStatus::Missed as i32,
                    days: 3,
                    regulation: "SEND Regulations 2014, regulation 13(2)".into(),
                    ..Default::default()
                },
            ],
            advice: vec![v1::AdviceRequest {
                adviser_type: v1::AdviserType::Educational as i32,
                agency_id: "school".into(),
                already_given: vec![v1::OfferedAdvice { update_id: "ab12".into(), ..Default::default() }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = describe_clocks(&assessment);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "assessment ehc-2 (revision 5):");
        assert_eq!(
            lines[1],
            "  advice (medical health): from 2026-12-01 due 2027-01-12: met on 2026-12-01 \
             [SEND Regulations 2014, regulation 8(1)]"
        );
        assert_eq!(
            lines[2],
            "  final plan: from 2026-12-01 due 2027-04-20: MISSED, 3 days over [SEND Regulations 2014, regulation 13(2)]"
        );
        assert!(lines[3].contains("already given by school (educational): 1 value(s)"), "{}", lines[3]);
    }
}
