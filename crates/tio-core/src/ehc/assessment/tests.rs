use jiff::civil::date;
use proptest::prelude::*;

use super::*;
use crate::ehc::ExceptionCode;

fn agency(id: &str) -> AgencyId {
    AgencyId::parse("id", id).unwrap()
}

fn recorder() -> Recorder {
    Recorder { agency: agency("send-team"), professional: "caseworker-1".to_owned() }
}

/// Noon UK time (GMT in winter, BST in summer: noon UTC is the same day either way).
fn noon(day: Date) -> Timestamp {
    let seconds = day.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_second() + 12 * 3600;
    Timestamp::from_unix_seconds(seconds)
}

fn opened(request: Date) -> Assessment {
    open(AssessmentId(1), agency("send-team"), RequestedBy::Parent, request, recorder(), noon(request)).unwrap()
}

fn deciding(request: Date, decided: Date) -> Assessment {
    opened(request).record(Step::Decision(AssessDecision::Assess, decided), recorder(), noon(decided)).unwrap()
}

fn update(id: &str, category: Category, publisher: &str, published_on: Date) -> OfferedUpdate {
    OfferedUpdate { update_id: id.to_owned(), category, publisher: agency(publisher), published_on }
}

fn field_of(refused: Refused) -> String {
    match refused {
        Refused::Invalid(violations) => violations.iter().map(|v| v.field.as_str()).collect::<Vec<_>>().join(","),
        other => format!("{other:?}"),
    }
}

#[test]
fn ids_parse_as_the_contract_writes_them() {
    assert_eq!(AssessmentId::parse("id", "ehc-3"), Ok(AssessmentId(3)));
    assert_eq!(AssessmentId(3).to_string(), "ehc-3");
    assert_eq!(AssessmentId::parse("assessment_id", "e-3").unwrap_err().field, "assessment_id");
    assert_eq!(AssessmentId(u32::MAX).next(), None);
}

/// From request to final plan: three advisers, one answering with new advice, one with
/// advice it gave before (the three agreements recorded), one late; the clocks as they
/// stand at the end.
#[test]
fn an_assessment_runs_from_request_to_final_plan() {
    let request = date(2026, 1, 5);
    let assessment = deciding(request, date(2026, 2, 2));
    assert_eq!(assessment.revision, 2);
    let asked = date(2026, 2, 3);
    let mut assessment = assessment;
    for (adviser, asked_of) in [
        (AdviserType::MedicalHealth, "hospital"),
        (AdviserType::Educational, "school"),
        (AdviserType::Psychological, "ep-service"),
    ] {
        assessment = assessment.ask(adviser, agency(asked_of), asked, recorder(), noon(asked)).unwrap();
    }
    // The hospital's summary from last year answers the health request: Tell It Once.
    let agreed = Agreements { authority: date(2026, 2, 4), adviser: date(2026, 2, 5), family: date(2026, 2, 6) };
    let existing = update("u-health", Category::HealthSummary, "hospital", date(2025, 11, 20));
    let send_team = agency("send-team");
    assessment = assessment
        .answer(AdviserType::MedicalHealth, &send_team, &existing, Some(agreed), recorder(), noon(date(2026, 2, 6)))
        .unwrap();
    let new = update("u-school", Category::SendSupport, "school", date(2026, 3, 2));
    assessment = assessment
        .answer(AdviserType::Educational, &agency("school"), &new, None, recorder(), noon(date(2026, 3, 2)))
        .unwrap();
    let late = update("u-ep", Category::SendSupport, "ep-service", date(2026, 3, 20));
    assessment = assessment
        .answer(AdviserType::Psychological, &agency("ep-service"), &late, None, recorder(), noon(date(2026, 3, 20)))
        .unwrap();
    assessment = assessment.record(Step::DraftSent(date(2026, 4, 20)), recorder(), noon(date(2026, 4, 20))).unwrap();
    assessment =
        assessment.record(Step::FinalPlanIssued(date(2026, 5, 18)), recorder(), noon(date(2026, 5, 18))).unwrap();
    assert!(assessment.is_closed());
    assert_eq!(assessment.revision, 10);

    let clocks = assessment.clocks(date(2026, 6, 1));
    let find = |clock: Clock, adviser: Option<AdviserType>| {
        clocks.iter().find(|state| state.deadline.clock == clock && state.adviser == adviser).unwrap().state
    };
    assert_eq!(find(Clock::DecisionWhetherToAssess, None), DeadlineState::Met { on: date(2026, 2, 2) });
    assert_eq!(find(Clock::FinalPlan, None), DeadlineState::Met { on: date(2026, 5, 18) }, "within 20 weeks");
    assert_eq!(find(Clock::Advice, Some(AdviserType::MedicalHealth)), DeadlineState::Met { on: date(2026, 2, 6) });
    assert_eq!(find(Clock::Advice, Some(AdviserType::Educational)), DeadlineState::Met { on: date(2026, 3, 2) });
    assert_eq!(
        find(Clock::Advice, Some(AdviserType::Psychological)),
        DeadlineState::Late { on: date(2026, 3, 20), days_late: 3 },
        "due 17 March, six weeks after 3 February"
    );
    assert!(clocks.windows(2).all(|pair| pair[0].deadline.due <= pair[1].deadline.due), "in the order they fall due");
    assert_eq!(
        assessment
            .record(Step::Exception(exception(date(2026, 5, 1))), recorder(), noon(date(2026, 6, 1)))
            .map(|a| a.revision),
        Ok(11),
        "an exception may still be recorded after the plan"
    );
    assert_eq!(
        assessment.ask(
            AdviserType::SocialCare,
            agency("social-care"),
            date(2026, 5, 20),
            recorder(),
            noon(date(2026, 5, 20))
        ),
        Err(Refused::Closed)
    );
}

fn exception(from: Date) -> ClockException {
    ClockException { code: ExceptionCode::ExceptionalPersonalCircumstances, from, until: None, recorded_on: from }
}

/// Each refusal names the field at fault or says why; nothing else changes.
#[test]
fn bad_steps_are_refused_naming_the_field() {
    let request = date(2026, 1, 5);
    let open = opened(request);
    let today = noon(date(2026, 3, 1));
    let cases: Vec<(&str, Result<Assessment, Refused>, &str)> = vec![
        (
            "a decision before the request",
            open.record(Step::Decision(AssessDecision::Assess, date(2026, 1, 4)), recorder(), today),
            "decision.notified_on",
        ),
        (
            "a draft without a decision to assess",
            open.record(Step::DraftSent(date(2026, 2, 1)), recorder(), today),
            "draft_sent",
        ),
        (
            "advice asked before the decision",
            open.ask(AdviserType::Educational, agency("school"), date(2026, 2, 1), recorder(), today),
            "asked_on",
        ),
        (
            "a step in the future",
            open.record(Step::Decision(AssessDecision::Assess, date(2026, 3, 2)), recorder(), today),
            "decision.notified_on",
        ),
    ];
    for (what, outcome, field) in cases {
        assert_eq!(field_of(outcome.unwrap_err()), field, "{what}");
    }
    let decided = deciding(request, date(2026, 2, 2));
    assert_eq!(
        decided.record(Step::Decision(AssessDecision::Assess, date(2026, 2, 3)), recorder(), today),
        Err(Refused::AlreadyRecorded("decision"))
    );
    let draft = decided.record(Step::DraftSent(date(2026, 2, 20)), recorder(), today).unwrap();
    assert_eq!(
        field_of(draft.record(Step::FinalPlanIssued(date(2026, 3, 1)), recorder(), today).unwrap_err()),
        "final_plan_issued",
        "within the family's 15 days on the draft"
    );
    assert_eq!(
        field_of(decided.record(Step::FinalPlanIssued(date(2026, 3, 1)), recorder(), today).unwrap_err()),
        "final_plan_issued",
        "a final plan without a draft"
    );
    let refused = opened(request)
        .record(Step::Decision(AssessDecision::DoNotAssess, date(2026, 2, 1)), recorder(), today)
        .unwrap();
    assert_eq!(refused.record(Step::DraftSent(date(2026, 2, 20)), recorder(), today), Err(Refused::Closed));

    let asked =
        decided.ask(AdviserType::MedicalHealth, agency("hospital"), date(2026, 2, 3), recorder(), today).unwrap();
    assert_eq!(
        asked.ask(AdviserType::MedicalHealth, agency("gp"), date(2026, 2, 4), recorder(), today),
        Err(Refused::AlreadyRecorded("adviser_type"))
    );
    let fresh = update("u-1", Category::HealthSummary, "hospital", date(2026, 2, 10));
    let answers: Vec<(&str, Result<Assessment, Refused>, &str)> = vec![
        (
            "advice from an agency that was not asked",
            asked.answer(AdviserType::MedicalHealth, &agency("gp"), &fresh, None, recorder(), today),
            "NotAsked",
        ),
        (
            "advice nobody asked for",
            asked.answer(AdviserType::SocialCare, &agency("hospital"), &fresh, None, recorder(), today),
            "adviser_type",
        ),
        (
            "advice in another category",
            asked.answer(
                AdviserType::MedicalHealth,
                &agency("hospital"),
                &update("u-2", Category::SendSupport, "hospital", date(2026, 2, 10)),
                None,
                recorder(),
                today,
            ),
            "update_id",
        ),
        (
            "advice another agency published",
            asked.answer(
                AdviserType::MedicalHealth,
                &agency("hospital"),
                &update("u-3", Category::HealthSummary, "gp", date(2026, 2, 10)),
                None,
                recorder(),
                today,
            ),
            "update_id",
        ),
        (
            "old advice passed off as new",
            asked.answer(
                AdviserType::MedicalHealth,
                &agency("hospital"),
                &update("u-4", Category::HealthSummary, "hospital", date(2025, 12, 1)),
                None,
                recorder(),
                today,
            ),
            "update_id",
        ),
        (
            "reuse recorded by the adviser rather than the authority",
            asked.answer(
                AdviserType::MedicalHealth,
                &agency("hospital"),
                &update("u-5", Category::HealthSummary, "hospital", date(2025, 12, 1)),
                Some(Agreements { authority: date(2026, 2, 4), adviser: date(2026, 2, 4), family: date(2026, 2, 4) }),
                recorder(),
                today,
            ),
            "NotAsked",
        ),
        (
            "an agreement in the future",
            asked.answer(
                AdviserType::MedicalHealth,
                &agency("send-team"),
                &update("u-6", Category::HealthSummary, "hospital", date(2025, 12, 1)),
                Some(Agreements { authority: date(2026, 2, 4), adviser: date(2026, 2, 4), family: date(2026, 3, 9) }),
                recorder(),
                today,
            ),
            "agreements.family",
        ),
    ];
    for (what, outcome, field) in answers {
        assert_eq!(field_of(outcome.unwrap_err()), field, "{what}");
    }
    let answered =
        asked.answer(AdviserType::MedicalHealth, &agency("hospital"), &fresh, None, recorder(), today).unwrap();
    assert_eq!(
        answered.answer(AdviserType::MedicalHealth, &agency("hospital"), &fresh, None, recorder(), today),
        Err(Refused::AlreadyRecorded("adviser_type"))
    );
}

/// An unanswered request is missed the day after its six weeks, unless an exception
/// that the regulations let excuse an adviser's time limit covers it.
#[test]
fn unanswered_advice_is_missed_or_excused() {
    let asked_on = date(2026, 2, 3);
    let asked = deciding(date(2026, 1, 5), date(2026, 2, 2))
        .ask(AdviserType::Educational, agency("school"), asked_on, recorder(), noon(asked_on))
        .unwrap();
    let advice_state = |assessment: &Assessment, today: Date| {
        assessment.clocks(today).into_iter().find(|clock| clock.adviser.is_some()).unwrap().state
    };
    assert_eq!(advice_state(&asked, date(2026, 3, 17)), DeadlineState::Open { days_left: 0 });
    assert_eq!(advice_state(&asked, date(2026, 3, 18)), DeadlineState::Missed { days_over: 1 });
    let school_closed = ClockException {
        code: ExceptionCode::SchoolClosure,
        from: date(2026, 3, 1),
        until: None,
        recorded_on: date(2026, 3, 18),
    };
    let closed = asked.record(Step::Exception(school_closed), recorder(), noon(date(2026, 3, 18))).unwrap();
    assert_eq!(
        advice_state(&closed, date(2026, 3, 18)),
        DeadlineState::Missed { days_over: 1 },
        "a school closure excuses the authority's clocks, not an adviser's"
    );
    let circumstances = exception(date(2026, 3, 1));
    let excused = asked.record(Step::Exception(circumstances), recorder(), noon(date(2026, 3, 18))).unwrap();
    assert_eq!(
        advice_state(&excused, date(2026, 3, 18)),
        DeadlineState::Excused { code: ExceptionCode::ExceptionalPersonalCircumstances, done_on: None }
    );
}

proptest! {
    /// However advice is asked and answered, no deadline falls due before it starts,
    /// each adviser's is six weeks from the day it was asked, and the clocks come in
    /// the order they fall due.
    #[test]
    fn no_deadline_falls_due_before_it_starts(
        request_day in 0i64..3_000,
        decision_after in 0i64..60,
        asks in proptest::collection::vec((0usize..8, 0i64..120, proptest::option::of(0i64..90)), 0..8),
        today_after in 0i64..400,
    ) {
        let base = date(2020, 1, 1);
        let day = |offset: i64| base.checked_add(jiff::Span::new().days(offset)).unwrap();
        let request = day(request_day);
        let decided = day(request_day + decision_after);
        let mut assessment = deciding(request, decided);
        for (index, after, answered_after) in asks {
            let adviser = AdviserType::ALL[index];
            let asked_on = day(request_day + decision_after + after);
            let Ok(next) = assessment.ask(adviser, agency("adviser"), asked_on, recorder(), noon(asked_on)) else { continue };
            assessment = next;
            if let Some(answered_after) = answered_after {
                let on = day(request_day + decision_after + after + answered_after);
                let given = update("u", adviser.categories()[0], "adviser", on);
                if let Ok(next) = assessment.answer(adviser, &agency("adviser"), &given, None, recorder(), noon(on)) {
                    assessment = next;
                }
            }
        }
        let clocks = assessment.clocks(day(request_day + today_after));
        for clock in &clocks {
            prop_assert!(clock.deadline.due >= clock.deadline.starts);
            if let Some(adviser) = clock.adviser {
                let request = assessment.advice.iter().find(|request| request.adviser == adviser).unwrap();
                prop_assert_eq!(clock.deadline.starts, request.asked_on);
                prop_assert_eq!(clock.deadline.due, request.asked_on.checked_add(jiff::Span::new().weeks(6)).unwrap());
            }
        }
        prop_assert!(clocks.windows(2).all(|pair| pair[0].deadline.due <= pair[1].deadline.due));
    }
}
