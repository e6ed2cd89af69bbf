//! Who the child is in time: a date of birth, and the ages the law counts from it.
//!
//! Two thresholds at 16 that the law keeps apart:
//! - the Mental Capacity Act 2005 applies from the 16th birthday, presuming capacity;
//! - under the Children and Families Act 2014 SEND decisions pass to the young person
//!   once they are over compulsory school age (section 83(2)), which ends on the school
//!   leaving date (the last Friday in June, Education (School Leaving Date) Order 1997)
//!   of the school year in which they turn 16 (Education Act 1996, section 8(3)).
//!
//! Every function takes the date it is asked about: nothing here reads a clock.

use jiff::civil::{Date, Weekday};

use crate::{ConsentGiverRole, FieldViolation};

/// How far back a date of birth may be: the broker serves children and young people up
/// to 25, and a plan may cease at 25, so a little over that.
pub const MAX_AGE_YEARS: i16 = 26;

/// Checks a date of birth against `today`: not in the future, and not more than
/// [`MAX_AGE_YEARS`] years ago. The reason never names the date itself.
pub fn check_date_of_birth(field: &str, date_of_birth: Date, today: Date) -> Result<(), FieldViolation> {
    if date_of_birth > today {
        return Err(FieldViolation::new(field, "must not be in the future"));
    }
    let earliest = today.checked_sub(jiff::Span::new().years(MAX_AGE_YEARS)).ok();
    if earliest.is_none_or(|earliest| date_of_birth < earliest) {
        return Err(FieldViolation::new(field, format!("must be at most {MAX_AGE_YEARS} years ago")));
    }
    Ok(())
}

/// Returns the age in whole years on `on` (0 before the first birthday; 0 for a date
/// before birth). The age changes at the start of the anniversary of the birth (Family
/// Law Reform Act 1969, section 9); for a birth on 29 February this takes 1 March in a
/// year without one, the usual reading in England.
pub fn age_on(date_of_birth: Date, on: Date) -> u32 {
    if on < date_of_birth {
        return 0;
    }
    let years = i32::from(on.year()) - i32::from(date_of_birth.year());
    let before_birthday = (on.month(), on.day()) < (date_of_birth.month(), date_of_birth.day());
    u32::try_from(years - i32::from(before_birthday)).unwrap_or(0)
}

/// Returns the date of the `years`th birthday (1 March for a 29 February birth in a
/// year without one), or `None` past the calendar's end.
pub fn birthday(date_of_birth: Date, years: i16) -> Option<Date> {
    let year = date_of_birth.year().checked_add(years)?;
    match Date::new(year, date_of_birth.month(), date_of_birth.day()) {
        Ok(date) => Some(date),
        // Only 29 February can be missing from a year.
        Err(_) => Date::new(year, 3, 1).ok(),
    }
}

/// Returns the school leaving date of `year`: the last Friday in June.
pub fn school_leaving_date(year: i16) -> Option<Date> {
    Date::new(year, 6, 1).ok()?.nth_weekday_of_month(-1, Weekday::Friday).ok()
}

/// Returns the first day on which the person is over compulsory school age, and so a
/// "young person" who makes their own SEND decisions: the day after the school leaving
/// date of the school year (1 September to 31 August) in which they turn 16. A summer
/// birthday after that Friday still counts in the school year it falls in, so the day
/// can come before the 16th birthday (Education Act 1996, section 8(3)(a)).
pub fn young_person_from(date_of_birth: Date) -> Option<Date> {
    let sixteenth = birthday(date_of_birth, 16)?;
    // The school year that holds the birthday ends in June of the birthday's year if
    // the birthday falls before 1 September, and of the next year otherwise.
    let year = if sixteenth.month() < 9 { sixteenth.year() } else { sixteenth.year().checked_add(1)? };
    school_leaving_date(year)?.tomorrow().ok()
}

/// Returns whether the Mental Capacity Act's presumption of capacity applies on `on`:
/// from the 16th birthday.
pub fn capacity_presumed(date_of_birth: Date, on: Date) -> bool {
    age_on(date_of_birth, on) >= 16
}

/// Returns whether SEND decisions are the young person's own on `on` (see
/// [`young_person_from`]).
pub fn is_young_person(date_of_birth: Date, on: Date) -> bool {
    young_person_from(date_of_birth).is_some_and(|from| on >= from)
}

/// Returns the day a parent's consent stops allowing anything: the 18th birthday, when
/// parental responsibility ends.
pub fn parental_consent_lapses_on(date_of_birth: Date) -> Option<Date> {
    birthday(date_of_birth, 18)
}

/// Returns whether a consent given by `role` is marked "to review" on `today`: a
/// parent's (or the local authority's under a care order), once the child (by `date_of_birth`, if known) is 16 and may decide for
/// themselves; from 18 it allows nothing, and stays marked.
pub fn consent_to_review(role: ConsentGiverRole, date_of_birth: Option<Date>, today: Date) -> bool {
    role.holds_parental_responsibility()
        && date_of_birth.and_then(|born| birthday(born, 16)).is_some_and(|sixteenth| today >= sixteenth)
}

/// Returns the days on which the agencies that recorded a parent's consents are told to
/// review them: 90 days before the 16th birthday (from which the consent is marked "to
/// review") and 90 days before the 18th (when it lapses).
pub fn consent_review_alerts(date_of_birth: Date) -> Option<[Date; 2]> {
    let before = |years| birthday(date_of_birth, years)?.checked_sub(jiff::Span::new().days(90)).ok();
    Some([before(16)?, before(18)?])
}

/// Returns the birthday (16 or 18) whose review alert is due on `today`: from 90 days
/// before it until the day before it. `None` outside both windows.
pub fn consent_review_due(date_of_birth: Date, today: Date) -> Option<i16> {
    let alerts = consent_review_alerts(date_of_birth)?;
    [16, 18].into_iter().zip(alerts).find_map(|(age, from)| {
        let until = birthday(date_of_birth, age)?;
        (from <= today && today < until).then_some(age)
    })
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ages_change_on_the_birthday_itself_and_29_february_counts_from_1_march() {
        let cases = [
            // (born, on, age)
            (date(2010, 5, 17), date(2026, 5, 16), 15),
            (date(2010, 5, 17), date(2026, 5, 17), 16),
            (date(2010, 5, 17), date(2010, 5, 17), 0),
            (date(2010, 5, 17), date(2009, 1, 1), 0),
            (date(2010, 12, 31), date(2028, 12, 31), 18),
            (date(2010, 12, 31), date(2028, 12, 30), 17),
            (date(2010, 1, 1), date(2027, 12, 31), 17),
            (date(2008, 2, 29), date(2026, 2, 28), 17),
            (date(2008, 2, 29), date(2026, 3, 1), 18),
            (date(2008, 2, 29), date(2024, 2, 29), 16),
            (date(2008, 2, 29), date(2024, 2, 28), 15),
        ];
        for (born, on, age) in cases {
            assert_eq!(age_on(born, on), age, "born {born}, on {on}");
        }
        assert_eq!(birthday(date(2008, 2, 29), 18), Some(date(2026, 3, 1)));
        assert_eq!(birthday(date(2008, 2, 29), 16), Some(date(2024, 2, 29)));
        assert_eq!(parental_consent_lapses_on(date(2010, 5, 17)), Some(date(2028, 5, 17)));
    }

    #[test]
    fn the_school_leaving_date_is_the_last_friday_in_june() {
        for (year, day) in [(2024, 28), (2025, 27), (2026, 26), (2027, 25), (2028, 30), (2029, 29)] {
            let leaving = school_leaving_date(year).unwrap();
            assert_eq!(leaving, date(year, 6, day), "{year}");
            assert_eq!(leaving.weekday(), Weekday::Friday);
        }
    }

    /// The two thresholds at 16 are different days: capacity on the birthday, SEND
    /// decisions after the school leaving date of the school year of the birthday.
    #[test]
    fn send_decisions_pass_after_the_school_leaving_date_of_the_year_the_child_turns_16() {
        let cases = [
            // (born, first day as a young person): 16th birthday in the autumn term
            // (school year 2025-26, leaving date 26 June 2026) ...
            (date(2009, 10, 3), date(2026, 6, 27)),
            // ... on 31 August, the last day of school year 2025-26 ...
            (date(2010, 8, 31), date(2026, 6, 27)),
            // ... on the leaving date itself ...
            (date(2010, 6, 26), date(2026, 6, 27)),
            // ... in July, after the leaving date: still 2025-26, so before the birthday;
            (date(2010, 7, 20), date(2026, 6, 27)),
            // on 1 September: school year 2026-27, leaving date 25 June 2027;
            (date(2010, 9, 1), date(2027, 6, 26)),
            // 29 February (16 years on is always a leap year before 2100): school year
            // 2023-24.
            (date(2008, 2, 29), date(2024, 6, 29)),
        ];
        for (born, from) in cases {
            assert_eq!(young_person_from(born), Some(from), "born {born}");
            assert!(!is_young_person(born, from.yesterday().unwrap()), "born {born}");
            assert!(is_young_person(born, from), "born {born}");
        }
        let born = date(2010, 7, 20);
        assert!(is_young_person(born, date(2026, 7, 1)) && !capacity_presumed(born, date(2026, 7, 1)));
        let born = date(2009, 10, 3);
        assert!(capacity_presumed(born, date(2025, 10, 3)) && !is_young_person(born, date(2025, 10, 3)));
    }

    #[test]
    fn review_alerts_come_90_days_before_the_16th_and_18th_birthdays() {
        assert_eq!(consent_review_alerts(date(2010, 5, 17)), Some([date(2026, 2, 16), date(2028, 2, 17)]));
        // Across a year end.
        assert_eq!(consent_review_alerts(date(2010, 1, 15)), Some([date(2025, 10, 17), date(2027, 10, 17)]));
    }

    #[test]
    fn a_parents_consent_is_to_review_from_the_16th_birthday() {
        let born = date(2010, 5, 17);
        let parent = ConsentGiverRole::ParentWithParentalResponsibility;
        assert!(!consent_to_review(parent, Some(born), date(2026, 5, 16)));
        assert!(consent_to_review(parent, Some(born), date(2026, 5, 17)));
        assert!(consent_to_review(parent, Some(born), date(2030, 1, 1)), "still marked after 18");
        assert!(!consent_to_review(parent, None, date(2030, 1, 1)), "no date of birth, nothing to count from");
        for own in [ConsentGiverRole::YoungPerson, ConsentGiverRole::CompetentChild] {
            assert!(!consent_to_review(own, Some(born), date(2030, 1, 1)));
        }
    }

    #[test]
    fn a_date_of_birth_is_refused_in_the_future_or_more_than_26_years_ago() {
        let today = date(2026, 11, 30);
        assert!(check_date_of_birth("child.date_of_birth", today, today).is_ok());
        assert!(check_date_of_birth("child.date_of_birth", date(2000, 11, 30), today).is_ok());
        assert!(check_date_of_birth("child.date_of_birth", date(2000, 11, 29), today).is_err());
        let future = check_date_of_birth("child.date_of_birth", date(2026, 12, 1), today).unwrap_err();
        assert_eq!(future, FieldViolation::new("child.date_of_birth", "must not be in the future"));
        let old = check_date_of_birth("child.date_of_birth", date(1999, 6, 1), today).unwrap_err();
        assert_eq!(old.field, "child.date_of_birth");
        assert!(!old.reason.contains("1999"), "{old}");
    }

    fn arb_date() -> impl Strategy<Value = Date> {
        (1990i16..2030, 1i8..=12, 1i8..=31)
            .prop_filter_map("a real date", |(year, month, day)| Date::new(year, month, day).ok())
    }

    proptest! {
        /// Ages never go down, move by at most one a day, and change only on a birthday.
        #[test]
        fn ages_step_up_by_one_on_birthdays_only(born in arb_date(), on in arb_date()) {
            let next = on.tomorrow().unwrap();
            let (today, tomorrow) = (age_on(born, on), age_on(born, next));
            prop_assert!(tomorrow == today || tomorrow == today + 1);
            if tomorrow == today + 1 && next > born {
                prop_assert_eq!(Some(next), birthday(born, i16::try_from(tomorrow).unwrap()));
            }
        }

        /// A young person is at least 15 and at most 16 on the day the decisions pass,
        /// and that day is always the Saturday after a last Friday in June.
        #[test]
        fn decisions_pass_between_15_and_16_on_a_saturday_in_late_june(born in arb_date()) {
            let from = young_person_from(born).unwrap();
            prop_assert!((15..=16).contains(&age_on(born, from)), "born {born}, from {from}");
            prop_assert_eq!(from.weekday(), Weekday::Saturday);
            prop_assert!(from.month() == 6 || (from.month() == 7 && from.day() == 1));
            prop_assert!(from.yesterday().unwrap() == school_leaving_date(from.year()).unwrap());
        }
    }

    #[test]
    fn a_review_is_due_in_the_90_days_before_the_16th_and_the_18th_birthdays() {
        let born = date(2010, 5, 17);
        assert_eq!(consent_review_due(born, date(2026, 2, 15)), None, "91 days before the 16th");
        assert_eq!(consent_review_due(born, date(2026, 2, 16)), Some(16), "90 days before");
        assert_eq!(consent_review_due(born, date(2026, 5, 16)), Some(16), "the day before");
        assert_eq!(consent_review_due(born, date(2026, 5, 17)), None, "the birthday itself: marked to review");
        assert_eq!(consent_review_due(born, date(2028, 3, 1)), Some(18));
        assert_eq!(consent_review_due(born, date(2028, 5, 17)), None);
        assert_eq!(consent_review_due(born, date(2020, 1, 1)), None);
    }
}
