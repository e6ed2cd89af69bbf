use jiff::civil::date;
use proptest::prelude::*;

use super::*;

fn due(clock: Clock, starts: Date) -> Date {
    Deadline::of(clock, starts).unwrap().due
}

/// Every clock from its start, including across a year end and over 29 February.
#[test]
fn each_clock_falls_due_on_the_day_the_regulations_give() {
    let cases = [
        // (clock, starts, due)
        (Clock::DecisionWhetherToAssess, date(2026, 3, 2), date(2026, 4, 13)),
        (Clock::DecisionNotToIssue, date(2026, 3, 2), date(2026, 6, 22)),
        (Clock::FinalPlan, date(2026, 3, 2), date(2026, 7, 20)),
        (Clock::Advice, date(2026, 2, 27), date(2026, 4, 10)),
        (Clock::DraftComments, date(2026, 6, 1), date(2026, 6, 16)),
        // Across a year end.
        (Clock::DecisionWhetherToAssess, date(2026, 12, 10), date(2027, 1, 21)),
        (Clock::DecisionNotToIssue, date(2026, 12, 10), date(2027, 4, 1)),
        (Clock::FinalPlan, date(2026, 12, 10), date(2027, 4, 29)),
        (Clock::DraftComments, date(2026, 12, 24), date(2027, 1, 8)),
        // Over 29 February, and the same dates a year without one.
        (Clock::Advice, date(2028, 1, 20), date(2028, 3, 2)),
        (Clock::Advice, date(2027, 1, 20), date(2027, 3, 3)),
        (Clock::DraftComments, date(2028, 2, 20), date(2028, 3, 6)),
        (Clock::DraftComments, date(2027, 2, 20), date(2027, 3, 7)),
        (Clock::FinalPlan, date(2027, 11, 1), date(2028, 3, 20)),
    ];
    for (clock, starts, expected) in cases {
        assert_eq!(due(clock, starts), expected, "{} from {starts}", clock.as_str());
    }
}

#[test]
fn a_deadline_is_open_through_its_due_day_then_met_late_or_missed() {
    let deadline = Deadline::of(Clock::Advice, date(2026, 2, 27)).unwrap();
    let due_day = date(2026, 4, 10);
    let next_day = date(2026, 4, 11);
    let none: &[ClockException] = &[];
    assert_eq!(deadline.state(None, none, date(2026, 4, 3)), DeadlineState::Open { days_left: 7 });
    assert_eq!(deadline.state(None, none, due_day), DeadlineState::Open { days_left: 0 });
    assert_eq!(deadline.state(None, none, next_day), DeadlineState::Missed { days_over: 1 });
    assert_eq!(deadline.state(Some(due_day), none, next_day), DeadlineState::Met { on: due_day });
    assert_eq!(
        deadline.state(Some(date(2026, 4, 20)), none, date(2026, 5, 1)),
        DeadlineState::Late { on: date(2026, 4, 20), days_late: 10 }
    );
}

/// An exception excuses a clock it covers and overlaps, and never moves the due date;
/// one that does not cover the clock, or lies outside its run, leaves it missed.
#[test]
fn each_exception_excuses_only_the_clocks_it_covers_while_they_run() {
    let request = date(2026, 3, 2);
    let after = date(2026, 9, 1);
    let exception = |code, from, until| ClockException { code, from, until, recorded_on: from };
    let final_plan = Deadline::of(Clock::FinalPlan, request).unwrap();
    let advice = Deadline::of(Clock::Advice, date(2026, 4, 20)).unwrap();
    let comments = Deadline::of(Clock::DraftComments, date(2026, 6, 1)).unwrap();
    let cases = [
        // (deadline, exception, excused)
        (final_plan, exception(ExceptionCode::SchoolClosure, date(2026, 7, 10), Some(date(2026, 9, 4))), true),
        (final_plan, exception(ExceptionCode::ExceptionalPersonalCircumstances, date(2026, 4, 1), None), true),
        (final_plan, exception(ExceptionCode::AbsenceFromArea, date(2026, 3, 20), Some(date(2026, 4, 30))), true),
        (final_plan, exception(ExceptionCode::MissedAppointment, date(2026, 4, 1), None), false),
        // Begun after the due date: too late to excuse it.
        (final_plan, exception(ExceptionCode::ExceptionalPersonalCircumstances, date(2026, 7, 21), None), false),
        (advice, exception(ExceptionCode::MissedAppointment, date(2026, 5, 1), Some(date(2026, 5, 1))), true),
        (advice, exception(ExceptionCode::AbsenceFromArea, date(2026, 4, 1), Some(date(2026, 5, 10))), true),
        (advice, exception(ExceptionCode::SchoolClosure, date(2026, 4, 20), Some(date(2026, 6, 1))), false),
        // Over before the advice was asked for.
        (
            advice,
            exception(ExceptionCode::ExceptionalPersonalCircumstances, date(2026, 3, 1), Some(date(2026, 4, 19))),
            false,
        ),
        (comments, exception(ExceptionCode::ExceptionalPersonalCircumstances, date(2026, 6, 1), None), false),
    ];
    for (deadline, exception, excused) in cases {
        let state = deadline.state(None, &[exception], after);
        let expected = if excused {
            DeadlineState::Excused { code: exception.code, done_on: None }
        } else {
            DeadlineState::Missed { days_over: days_between(deadline.due, after) }
        };
        assert_eq!(state, expected, "{} with {}", deadline.clock.as_str(), exception.code.as_str());
        if excused {
            let done = deadline.due.checked_add(Span::new().days(3)).unwrap();
            assert_eq!(
                deadline.state(Some(done), &[exception], after),
                DeadlineState::Excused { code: exception.code, done_on: Some(done) }
            );
            // Met on time is met, whatever was recorded.
            assert_eq!(
                deadline.state(Some(deadline.due), &[exception], after),
                DeadlineState::Met { on: deadline.due }
            );
        }
    }
}

#[test]
fn an_assessment_shows_the_clocks_that_still_apply() {
    let request = date(2026, 3, 2);
    let today = date(2026, 3, 30);
    let mut dates = AssessmentDates { request_received: Some(request), ..AssessmentDates::default() };
    let clocks = |dates: &AssessmentDates, today| {
        dates.deadlines(today).into_iter().map(|(deadline, state)| (deadline.clock, state)).collect::<Vec<_>>()
    };
    assert_eq!(
        clocks(&dates, today),
        [
            (Clock::DecisionWhetherToAssess, DeadlineState::Open { days_left: 14 }),
            (Clock::DecisionNotToIssue, DeadlineState::Open { days_left: 84 }),
            (Clock::FinalPlan, DeadlineState::Open { days_left: 112 }),
        ]
    );
    // A decision not to assess ends the assessment's other clocks.
    dates.decision = Some((AssessDecision::DoNotAssess, date(2026, 4, 10)));
    assert_eq!(clocks(&dates, today), [(Clock::DecisionWhetherToAssess, DeadlineState::Met { on: date(2026, 4, 10) })]);
    // Assessing, a draft, and the final plan after the family's 15 days.
    dates.decision = Some((AssessDecision::Assess, date(2026, 4, 10)));
    dates.draft_sent = Some(date(2026, 6, 1));
    assert_eq!(
        clocks(&dates, date(2026, 6, 5)),
        [
            (Clock::DecisionWhetherToAssess, DeadlineState::Met { on: date(2026, 4, 10) }),
            (Clock::DraftComments, DeadlineState::Open { days_left: 11 }),
            (Clock::FinalPlan, DeadlineState::Open { days_left: 45 }),
        ]
    );
    dates.final_plan_issued = Some(date(2026, 7, 24));
    assert_eq!(dates.check(date(2026, 8, 1)), Ok(()));
    assert_eq!(
        clocks(&dates, date(2026, 8, 1)),
        [
            (Clock::DecisionWhetherToAssess, DeadlineState::Met { on: date(2026, 4, 10) }),
            (Clock::DraftComments, DeadlineState::Met { on: date(2026, 6, 16) }),
            (Clock::FinalPlan, DeadlineState::Late { on: date(2026, 7, 24), days_late: 4 }),
        ]
    );
    // A refusal to issue a plan keeps the 16 weeks and drops the 20.
    let refused = AssessmentDates {
        request_received: Some(request),
        decision: Some((AssessDecision::Assess, date(2026, 4, 10))),
        no_plan_notified: Some(date(2026, 6, 19)),
        ..AssessmentDates::default()
    };
    assert_eq!(refused.check(date(2026, 7, 1)), Ok(()));
    assert_eq!(
        clocks(&refused, date(2026, 7, 1)),
        [
            (Clock::DecisionWhetherToAssess, DeadlineState::Met { on: date(2026, 4, 10) }),
            (Clock::DecisionNotToIssue, DeadlineState::Met { on: date(2026, 6, 19) }),
        ]
    );
}

/// Dates out of order, a step without the one it needs, a future date, a plan both
/// issued and refused, and a short exception: each named by its field.
#[test]
fn bad_dates_are_refused_naming_the_field() {
    let today = date(2026, 9, 1);
    let good = AssessmentDates {
        request_received: Some(date(2026, 3, 2)),
        decision: Some((AssessDecision::Assess, date(2026, 4, 10))),
        draft_sent: Some(date(2026, 6, 1)),
        final_plan_issued: Some(date(2026, 6, 17)),
        ..AssessmentDates::default()
    };
    assert_eq!(good.check(today), Ok(()));
    let absence = |from, until| ClockException { code: ExceptionCode::AbsenceFromArea, from, until, recorded_on: from };
    let cases: Vec<(&str, AssessmentDates, &str, &str)> = vec![
        ("no request", AssessmentDates { request_received: None, ..good.clone() }, "request_received", "is required"),
        (
            "decided before the request",
            AssessmentDates { decision: Some((AssessDecision::Assess, date(2026, 3, 1))), ..good.clone() },
            "decision.notified_on",
            "must not be before the request was received",
        ),
        (
            "a draft without a decision to assess",
            AssessmentDates { decision: Some((AssessDecision::DoNotAssess, date(2026, 4, 10))), ..good.clone() },
            "draft_sent",
            "needs a decision to assess first",
        ),
        (
            "a draft before the decision",
            AssessmentDates { draft_sent: Some(date(2026, 4, 9)), final_plan_issued: None, ..good.clone() },
            "draft_sent",
            "must not be before the decision to assess",
        ),
        (
            "a final plan within the family's 15 days",
            AssessmentDates { final_plan_issued: Some(date(2026, 6, 16)), ..good.clone() },
            "final_plan_issued",
            "must be after the family's 15 days to comment on the draft",
        ),
        (
            "a final plan without a draft",
            AssessmentDates { draft_sent: None, ..good.clone() },
            "final_plan_issued",
            "needs a draft plan first",
        ),
        (
            "a final plan in the future",
            AssessmentDates { final_plan_issued: Some(date(2026, 9, 2)), ..good.clone() },
            "final_plan_issued",
            "must not be in the future",
        ),
        (
            "a plan both issued and refused",
            AssessmentDates { no_plan_notified: Some(date(2026, 6, 10)), ..good.clone() },
            "no_plan_notified",
            "cannot be recorded with a draft or final plan",
        ),
        (
            "an absence of less than 4 weeks",
            AssessmentDates { exceptions: vec![absence(date(2026, 5, 4), Some(date(2026, 5, 30)))], ..good.clone() },
            "exceptions[0].until",
            "must be at least 4 weeks after `from` for this exception",
        ),
        (
            "an exception ending before it starts",
            AssessmentDates { exceptions: vec![absence(date(2026, 5, 4), Some(date(2026, 5, 3)))], ..good.clone() },
            "exceptions[0].until",
            "must not be before `from`",
        ),
        (
            "an exception recorded in the future",
            AssessmentDates {
                exceptions: vec![ClockException { recorded_on: date(2026, 9, 2), ..absence(date(2026, 5, 4), None) }],
                ..good.clone()
            },
            "exceptions[0].recorded_on",
            "must not be in the future",
        ),
        (
            "an exception before the request",
            AssessmentDates { exceptions: vec![absence(date(2026, 3, 1), None)], ..good.clone() },
            "exceptions[0].from",
            "must not be before the request was received",
        ),
    ];
    for (name, dates, field, reason) in cases {
        let violations = dates.check(today).expect_err(name);
        assert!(
            violations.contains(&FieldViolation::new(field, reason)),
            "{name}: expected {field}: {reason}, got {violations:?}"
        );
    }
    // Exactly four weeks, counted inclusively, is enough.
    let four_weeks = AssessmentDates { exceptions: vec![absence(date(2026, 5, 4), Some(date(2026, 5, 31)))], ..good };
    assert_eq!(four_weeks.check(today), Ok(()));
}

#[test]
fn working_days_skip_weekends_and_the_holidays_given() {
    let christmas = [date(2026, 12, 25), date(2026, 12, 28), date(2027, 1, 1)];
    // Friday 18 December to Friday 1 January: 21-24, 29-31 December.
    assert_eq!(working_days_between(date(2026, 12, 18), date(2027, 1, 1), &christmas), 7);
    assert_eq!(working_days_between(date(2026, 12, 18), date(2027, 1, 1), &[]), 10);
    assert_eq!(working_days_between(date(2027, 1, 1), date(2026, 12, 18), &[]), 0);
    let deadline = Deadline { clock: Clock::FinalPlan, starts: date(2026, 8, 14), due: date(2027, 1, 1) };
    assert!(!is_due_soon(&deadline, date(2026, 12, 14), 10, &christmas));
    assert!(is_due_soon(&deadline, date(2026, 12, 15), 10, &christmas));
    assert!(!is_due_soon(&deadline, date(2027, 1, 2), 10, &christmas), "past due is not coming");
}

fn arb_date() -> impl Strategy<Value = Date> {
    (2000i16..2100, 1i8..=12, 1i8..=31)
        .prop_filter_map("a real date", |(year, month, day)| Date::new(year, month, day).ok())
}

fn arb_exception() -> impl Strategy<Value = ClockException> {
    (proptest::sample::select(ExceptionCode::ALL.to_vec()), arb_date(), proptest::option::of(0i64..400)).prop_map(
        |(code, from, length)| ClockException {
            code,
            from,
            until: length.map(|days| from.checked_add(Span::new().days(days)).unwrap()),
            recorded_on: from,
        },
    )
}

proptest! {
    /// No deadline falls before its start, and no exception moves one.
    #[test]
    fn no_deadline_is_before_its_start_and_exceptions_never_move_one(
        request in arb_date(),
        decided in 0i64..200,
        exceptions in proptest::collection::vec(arb_exception(), 0..3),
        today in arb_date(),
    ) {
        let dates = AssessmentDates {
            request_received: Some(request),
            decision: Some((AssessDecision::Assess, request.checked_add(Span::new().days(decided)).unwrap())),
            exceptions,
            ..AssessmentDates::default()
        };
        for (deadline, state) in dates.deadlines(today) {
            prop_assert!(deadline.due > deadline.starts);
            prop_assert_eq!(deadline.due, due(deadline.clock, deadline.starts));
            if let DeadlineState::Excused { code, .. } = state {
                prop_assert!(deadline.clock.excused_by(code));
                let done_late = matches!(state, DeadlineState::Excused { done_on: Some(_), .. });
                prop_assert!(today > deadline.due || done_late);
            }
        }
    }

    /// Met means done by the due date, whatever the exceptions; late or missed never
    /// comes with an exception that covers the clock and overlapped its run.
    #[test]
    fn states_agree_with_the_dates(
        clock in proptest::sample::select(Clock::ALL.to_vec()),
        starts in arb_date(),
        done_after in proptest::option::of(0i64..300),
        exception in proptest::option::of(arb_exception()),
        today_after in 0i64..400,
    ) {
        let deadline = Deadline::of(clock, starts).unwrap();
        let done = done_after.map(|days| starts.checked_add(Span::new().days(days)).unwrap());
        let today = starts.checked_add(Span::new().days(today_after)).unwrap();
        let exceptions: Vec<ClockException> = exception.into_iter().collect();
        let state = deadline.state(done, &exceptions, today);
        let covering = exceptions.iter().any(|exception| {
            clock.excused_by(exception.code)
                && exception.from <= deadline.due
                && exception.until.is_none_or(|until| until >= starts)
        });
        match state {
            DeadlineState::Met { on } => prop_assert!(Some(on) == done && on <= deadline.due),
            DeadlineState::Open { days_left } => prop_assert!(done.is_none() && today <= deadline.due && days_left >= 0),
            DeadlineState::Late { .. } | DeadlineState::Missed { .. } => prop_assert!(!covering),
            DeadlineState::Excused { .. } => prop_assert!(covering),
        }
    }
}
