use jiff::civil::date;

use super::*;

fn agency(id: &str) -> AgencyId {
    AgencyId::parse("id", id).unwrap()
}

fn recorder() -> Recorder {
    Recorder { agency: agency("send-team"), professional: "cw-1".to_owned() }
}

fn noon(day: Date) -> Timestamp {
    let seconds = day.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_second() + 12 * 3600;
    Timestamp::from_unix_seconds(seconds)
}

fn owners() -> Vec<(Milestone, AgencyId)> {
    vec![
        (Milestone::PreparingForAdulthoodReview, agency("send-team")),
        (Milestone::AnnualHealthCheck, agency("gp")),
        (Milestone::AdultSocialCareReferral, agency("social-care")),
        (Milestone::AdultHealthServices, agency("icb")),
        (Milestone::PlanReviewBeforeLeaving, agency("send-team")),
        (Milestone::PlanCeases, agency("send-team")),
    ]
}

/// Each milestone's due day, on the birthday itself, for a leap-day birth and across
/// the school year's turn on 1 September.
#[test]
fn each_milestone_falls_due_on_the_day_the_guidance_gives() {
    let cases = [
        // (born, milestone, leaving, last done, due)
        (date(2012, 3, 10), Milestone::PreparingForAdulthoodReview, None, None, Some(date(2026, 8, 31))),
        // Turning 14 on 1 September: Year 9 is the school year that starts that day.
        (date(2012, 9, 1), Milestone::PreparingForAdulthoodReview, None, None, Some(date(2027, 8, 31))),
        (date(2012, 8, 31), Milestone::PreparingForAdulthoodReview, None, None, Some(date(2026, 8, 31))),
        (date(2012, 3, 10), Milestone::AnnualHealthCheck, None, None, Some(date(2027, 3, 10))),
        (date(2012, 3, 10), Milestone::AnnualHealthCheck, None, Some(date(2027, 1, 5)), Some(date(2028, 1, 5))),
        (date(2012, 3, 10), Milestone::AdultSocialCareReferral, None, None, Some(date(2029, 9, 10))),
        (date(2012, 2, 29), Milestone::AdultSocialCareReferral, None, None, Some(date(2029, 9, 1))),
        (date(2012, 2, 29), Milestone::AdultHealthServices, None, None, Some(date(2030, 3, 1))),
        (date(2012, 3, 10), Milestone::PlanReviewBeforeLeaving, None, None, None),
        (date(2012, 3, 10), Milestone::PlanReviewBeforeLeaving, Some(date(2030, 7, 19)), None, Some(date(2030, 7, 19))),
        (date(2012, 3, 10), Milestone::PlanCeases, None, None, Some(date(2037, 3, 10))),
    ];
    for (born, milestone, leaving, last, expected) in cases {
        assert_eq!(milestone.due(born, leaving, last), expected, "{milestone} for a child born {born}");
    }
}

#[test]
fn a_record_opens_from_year_nine_with_an_owner_for_every_milestone() {
    let born = date(2012, 3, 10);
    let opened = date(2025, 9, 1);
    let transition = open(agency("send-team"), born, opened, &owners(), recorder(), noon(opened)).unwrap();
    assert_eq!(transition.milestones.len(), Milestone::ALL.len());
    assert_eq!(transition.revision, 1);

    let refused = |born: Date, on: Date, owners: &[(Milestone, AgencyId)], today: Date| match open(
        agency("send-team"),
        born,
        on,
        owners,
        recorder(),
        noon(today),
    ) {
        Err(Refused::Invalid(violations)) => (violations[0].field.clone(), violations[0].reason.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(refused(born, date(2025, 8, 31), &owners(), date(2025, 9, 1)).0, "opened_on", "the day before Year 9");
    assert_eq!(refused(born, date(2025, 9, 2), &owners(), date(2025, 9, 1)).0, "opened_on", "in the future");
    assert_eq!(refused(date(2000, 1, 1), date(2025, 9, 1), &owners(), date(2025, 9, 1)).0, "opened_on", "over 25");
    let missing: Vec<_> = owners().into_iter().skip(1).collect();
    assert_eq!(
        refused(born, opened, &missing, opened),
        ("owners".to_owned(), "names no owner for preparing_for_adulthood_review".to_owned())
    );
    let mut twice = owners();
    twice.push((Milestone::PlanCeases, agency("icb")));
    assert_eq!(refused(born, opened, &twice, opened).1, "names plan_ceases more than once");
}

#[test]
fn milestones_are_done_by_their_owner_and_stand_open_met_late_or_missed() {
    let born = date(2012, 3, 10);
    let opened = date(2025, 9, 1);
    let transition = open(agency("send-team"), born, opened, &owners(), recorder(), noon(opened)).unwrap();
    let later = noon(date(2029, 10, 1));
    assert_eq!(
        transition.done(Milestone::AdultSocialCareReferral, date(2029, 9, 1), &agency("school"), recorder(), later),
        Err(Refused::NotTheOwner)
    );
    let referred = transition
        .done(Milestone::AdultSocialCareReferral, date(2029, 9, 20), &agency("social-care"), recorder(), later)
        .unwrap();
    let checked = referred
        .done(Milestone::AnnualHealthCheck, date(2027, 2, 1), &agency("gp"), recorder(), later)
        .and_then(|next| next.done(Milestone::AnnualHealthCheck, date(2028, 2, 1), &agency("gp"), recorder(), later))
        .unwrap();
    let states = checked.milestones(born, date(2029, 10, 1));
    let state = |milestone: Milestone| states.iter().find(|state| state.milestone == milestone).unwrap().clone();
    assert_eq!(
        state(Milestone::AdultSocialCareReferral).state,
        Some(DeadlineState::Late { on: date(2029, 9, 20), days_late: 10 }),
        "due at 17 and a half, 10 September"
    );
    assert_eq!(state(Milestone::AnnualHealthCheck).due, Some(date(2029, 2, 1)), "a year after the last check");
    assert_eq!(state(Milestone::AnnualHealthCheck).state, Some(DeadlineState::Missed { days_over: 242 }));
    assert_eq!(state(Milestone::PreparingForAdulthoodReview).state, Some(DeadlineState::Missed { days_over: 1127 }));
    assert_eq!(state(Milestone::AdultHealthServices).state, Some(DeadlineState::Open { days_left: 160 }));
    assert_eq!(state(Milestone::PlanReviewBeforeLeaving).state, None, "no leaving day yet");
    let leaving = checked.leaving_on(date(2030, 7, 19), recorder(), later).unwrap();
    let states = leaving.milestones(born, date(2029, 10, 1));
    assert_eq!(states[4].due, Some(date(2030, 7, 19)));

    let refusal_field = |refused: Result<Transition, Refused>| match refused {
        Err(Refused::Invalid(violations)) => violations[0].field.clone(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refusal_field(checked.done(Milestone::AnnualHealthCheck, date(2028, 2, 1), &agency("gp"), recorder(), later)),
        "done_on",
        "not after the last check"
    );
    assert_eq!(
        refusal_field(referred.done(
            Milestone::AdultSocialCareReferral,
            date(2029, 9, 25),
            &agency("social-care"),
            recorder(),
            later
        )),
        "milestone",
        "done once"
    );
    assert_eq!(
        refusal_field(transition.done(
            Milestone::PlanCeases,
            date(2029, 10, 2),
            &agency("send-team"),
            recorder(),
            later
        )),
        "done_on",
        "in the future"
    );
    assert_eq!(
        refusal_field(transition.done(
            Milestone::PlanCeases,
            date(2025, 8, 1),
            &agency("send-team"),
            recorder(),
            later
        )),
        "done_on",
        "before the record"
    );
}
