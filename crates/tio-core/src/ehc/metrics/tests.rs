use jiff::civil::date;

use super::*;
use crate::Timestamp;
use crate::consent::recording::Recorder;
use crate::ehc::assessment::{Advice, AdviceRequest, AssessmentId, RequestedBy};
use crate::ehc::{AssessDecision, AssessmentDates, ClockException};
use crate::transition::MilestoneRecord;

fn agency(id: &str) -> AgencyId {
    AgencyId::parse("id", id).unwrap()
}

/// An assessment requested on `request`, decided on `decided`, its plan issued on
/// `issued`, with the school's advice given `advice_days` after it was asked.
fn assessment(request: Date, decided: Date, issued: Option<Date>, advice_days: i64) -> Assessment {
    let asked = decided;
    let given = asked.checked_add(jiff::Span::new().days(advice_days)).unwrap();
    Assessment {
        id: AssessmentId(1),
        revision: 1,
        run_by: agency("send-team"),
        requested_by: RequestedBy::Parent,
        dates: AssessmentDates {
            request_received: Some(request),
            decision: Some((AssessDecision::Assess, decided)),
            draft_sent: None,
            no_plan_notified: None,
            final_plan_issued: issued,
            exceptions: vec![ClockException {
                code: ExceptionCode::AbsenceFromArea,
                from: decided,
                until: None,
                recorded_on: decided,
            }],
        },
        advice: vec![AdviceRequest {
            adviser: AdviserType::Educational,
            agency: agency("school"),
            asked_on: asked,
            answer: Some(Advice {
                update_id: "u".into(),
                category: crate::Category::SendSupport,
                given_on: given,
                reuse: None,
            }),
        }],
        recorded_by: Recorder { agency: agency("send-team"), professional: "cw".into() },
        recorded_at: Timestamp::from_unix_seconds(0),
    }
}

const MARCH: Month = Month { year: 2026, month: 3 };
const APRIL: Month = Month { year: 2026, month: 4 };

#[test]
fn figures_count_children_by_month_and_withhold_those_under_five() {
    // Five children requested in March, decided in April: four within 6 weeks.
    let records: Vec<Vec<Assessment>> = (0..5)
        .map(|n| {
            let decided = if n == 0 { date(2026, 4, 30) } else { date(2026, 4, 2) };
            vec![assessment(date(2026, 3, 2), decided, None, 30 + n)]
        })
        .collect();
    let children: Vec<ChildRecords<'_>> = records
        .iter()
        .enumerate()
        .map(|(ordinal, assessments)| ChildRecords { ordinal, date_of_birth: None, assessments, transition: None })
        .collect();
    let report = send_metrics(&children, MARCH, APRIL, date(2026, 5, 1));
    assert_eq!(report.months.len(), 2);
    let (march, april) = (&report.months[0], &report.months[1]);
    assert_eq!((march.month, march.opened, march.decisions), (MARCH, Figure::Shown(5), Figure::Shown(0)));
    assert_eq!(april.decisions, Figure::Shown(5));
    assert_eq!(april.decisions_within_6_weeks, Figure::Suppressed, "four children: withheld");
    assert_eq!(april.exceptions, [(ExceptionCode::AbsenceFromArea, Figure::Shown(5))]);
    assert!(report.turnaround.is_empty(), "the advice was given in May, after the months asked for");
    let may = Month { year: 2026, month: 5 };
    let report = send_metrics(&children, MARCH, may, date(2026, 6, 1));
    let row = |adviser: Adviser| report.turnaround.iter().find(|row| row.adviser == adviser).unwrap().clone();
    let by_type = row(Adviser::Type(AdviserType::Educational));
    assert_eq!(
        (by_type.month, by_type.advice, by_type.median_days),
        (may, Figure::Shown(5), Some(32)),
        "30 to 34 days"
    );
    assert_eq!(row(Adviser::Agency(agency("school"))).median_days, Some(32));
    assert!(matches!(report.turnaround[0].adviser, Adviser::Type(_)), "by type first, then by agency");
}

#[test]
fn a_child_with_two_assessments_counts_once_and_medians_need_five_children() {
    let two = vec![
        assessment(date(2026, 3, 2), date(2026, 3, 20), Some(date(2026, 3, 30)), 10),
        assessment(date(2026, 3, 9), date(2026, 3, 20), None, 20),
    ];
    let children = [ChildRecords { ordinal: 0, date_of_birth: None, assessments: &two, transition: None }];
    let report = send_metrics(&children, MARCH, MARCH, date(2026, 4, 1));
    assert_eq!(report.months[0].opened, Figure::Suppressed, "one child, not two records");
    assert_eq!(report.months[0].plans_issued, Figure::Suppressed);
    assert!(report.turnaround.iter().all(|row| row.median_days.is_none() && row.advice == Figure::Suppressed));
    assert_eq!(report.months[0].plans_within_20_weeks, Figure::Suppressed);
}

#[test]
fn young_people_of_17_to_24_without_a_referral_are_counted_today() {
    let today = date(2026, 12, 1);
    let transition = |referred: bool| Transition {
        revision: 1,
        run_by: agency("send-team"),
        opened_on: date(2024, 9, 1),
        leaving_education: None,
        milestones: vec![MilestoneRecord {
            milestone: Milestone::AdultSocialCareReferral,
            owner: agency("social-care"),
            done_on: referred.then(|| date(2026, 1, 1)),
        }],
        recorded_by: Recorder { agency: agency("send-team"), professional: "cw".into() },
        recorded_at: Timestamp::from_unix_seconds(0),
    };
    let (unreferred, referred) = (transition(false), transition(true));
    let mut children = Vec::new();
    for ordinal in 0..5 {
        children.push(ChildRecords {
            ordinal,
            date_of_birth: Some(date(2009, 1, 1)),
            assessments: &[],
            transition: Some(&unreferred),
        });
    }
    // Referred, too young, or with nothing recorded: not counted.
    children.push(ChildRecords {
        ordinal: 5,
        date_of_birth: Some(date(2009, 1, 1)),
        assessments: &[],
        transition: Some(&referred),
    });
    children.push(ChildRecords {
        ordinal: 6,
        date_of_birth: Some(date(2010, 1, 1)),
        assessments: &[],
        transition: Some(&unreferred),
    });
    children.push(ChildRecords {
        ordinal: 7,
        date_of_birth: Some(date(2009, 1, 1)),
        assessments: &[],
        transition: None,
    });
    children.push(ChildRecords {
        ordinal: 8,
        date_of_birth: Some(date(2000, 1, 1)),
        assessments: &[],
        transition: Some(&unreferred),
    });
    let report = send_metrics(&children, MARCH, MARCH, today);
    assert_eq!(report.aged_17_without_referral, Figure::Shown(5));
    let report = send_metrics(&children[1..], MARCH, MARCH, today);
    assert_eq!(report.aged_17_without_referral, Figure::Suppressed);
}
