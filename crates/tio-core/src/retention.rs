//! How long a child's record is kept: a retention rule per category, and the day a
//! child's record is due for erasure.
//!
//! The NHS Records Management Code of Practice keeps children's records until the 25th
//! birthday (26th if the young person was 17 when care ended), and many local-authority
//! schedules count years from the last entry. A deployment says which per category.
//! While the date of birth is not known, a birthday rule falls back to a number of
//! years after the category's last update, so that nothing is kept for ever for want
//! of a date.
//!
//! Each category has a key of its own, so a category past its retention is erased on
//! its own while the others are kept ([`ChildRetention::due`]); once every category
//! is past it (or nothing is left), the whole record goes, the child's NHS number,
//! date of birth, consents and relationships with it, which the rules above need for
//! as long as any value is kept.

use std::collections::BTreeMap;
use std::fmt;

use crate::Date;
use crate::{Category, Timestamp};

/// How long one category is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionRule {
    /// Until the child's birthday of this age (kept through the day before it).
    UntilBirthday(u8),
    /// This many years after the category's last update.
    YearsAfterLastUpdate(u16),
}

impl RetentionRule {
    /// Parses "25th birthday" or "8 years after last update" (case and spacing free).
    pub fn parse(text: &str) -> Option<RetentionRule> {
        let words: Vec<String> = text.split_whitespace().map(str::to_ascii_lowercase).collect();
        match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            [ordinal, "birthday"] => {
                let digits = ordinal.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let age: u8 = digits.parse().ok()?;
                (ordinal_suffix(age) == &ordinal[digits.len()..] && (1..=120).contains(&age))
                    .then_some(RetentionRule::UntilBirthday(age))
            }
            [years, "years" | "year", "after", "last", "update"] => {
                let years: u16 = years.parse().ok()?;
                (1..=200).contains(&years).then_some(RetentionRule::YearsAfterLastUpdate(years))
            }
            _ => None,
        }
    }
}

/// The English ordinal suffix of `n` (1st, 2nd, 3rd, 11th, 25th).
fn ordinal_suffix(n: u8) -> &'static str {
    match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

impl fmt::Display for RetentionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetentionRule::UntilBirthday(age) => write!(f, "{age}{} birthday", ordinal_suffix(*age)),
            RetentionRule::YearsAfterLastUpdate(years) => write!(f, "{years} years after last update"),
        }
    }
}

/// A deployment's retention: a rule per category, and the years after the last update
/// that stand in for a birthday rule while the date of birth is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// The rule of each category; a category without one is ruled by `fallback_years`.
    pub rules: BTreeMap<Category, RetentionRule>,
    /// Years after the last update, for categories without a rule and for birthday
    /// rules while the date of birth is unknown.
    pub fallback_years: u16,
}

impl Default for RetentionPolicy {
    /// The NHS code's children's rule for every category (the 25th birthday), with 8
    /// years after the last update while the date of birth is unknown.
    fn default() -> Self {
        RetentionPolicy {
            rules: Category::ALL.into_iter().map(|category| (category, RetentionRule::UntilBirthday(25))).collect(),
            fallback_years: 8,
        }
    }
}

/// Why a category is kept until the day it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptBy {
    /// The rule, applied as written.
    Rule(RetentionRule),
    /// A birthday rule without a known date of birth: the fallback years after the
    /// last update.
    FallbackWithoutDateOfBirth(u16),
}

impl fmt::Display for KeptBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeptBy::Rule(rule) => write!(f, "{rule}"),
            KeptBy::FallbackWithoutDateOfBirth(years) => {
                write!(f, "{years} years after last update (date of birth unknown)")
            }
        }
    }
}

/// One category's retention for one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CategoryRetention {
    /// The category.
    pub category: Category,
    /// Its last update.
    pub last_update: Date,
    /// The first day it is no longer kept.
    pub expires_on: Date,
    /// By which rule.
    pub kept_by: KeptBy,
}

/// A child's retention: each category's, and the day the whole record is due for
/// erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRetention {
    /// Each category the child has a value of, in category order.
    pub categories: Vec<CategoryRetention>,
    /// The first day every category is past its retention (the latest expiry); `None`
    /// for a child with no values.
    pub erase_on: Option<Date>,
    /// The categories erased before, on their own, in category order.
    pub erased: Vec<Category>,
}

/// What retention asks of one child on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionDue {
    /// Nothing is due.
    Nothing,
    /// These categories are past their retention, and others are not: erase these.
    Categories(Vec<CategoryRetention>),
    /// Every category is past its retention, or every value was erased before: erase
    /// the whole record.
    Child,
}

impl ChildRetention {
    /// Whether the whole record is due for erasure on `today`.
    pub fn is_due(&self, today: Date) -> bool {
        matches!(self.due(today), RetentionDue::Child)
    }

    /// What is due on `today`.
    pub fn due(&self, today: Date) -> RetentionDue {
        if self.categories.is_empty() {
            // A child whose values were all erased holds nothing retention keeps it for;
            // one that never had a value (a consent recorded ahead) is not ruled on.
            return if self.erased.is_empty() { RetentionDue::Nothing } else { RetentionDue::Child };
        }
        if self.erase_on.is_some_and(|day| day <= today) {
            return RetentionDue::Child;
        }
        let expired: Vec<CategoryRetention> =
            self.categories.iter().filter(|category| category.expires_on <= today).copied().collect();
        if expired.is_empty() { RetentionDue::Nothing } else { RetentionDue::Categories(expired) }
    }
}

/// Adds `years` to `date`; 29 February becomes 1 March in a common year (as an age is
/// counted, `crate::age`).
fn plus_years(date: Date, years: i32) -> Date {
    let year = i32::from(date.year()) + years;
    let year = i16::try_from(year).unwrap_or(i16::MAX).min(9999);
    Date::new(year, date.month(), date.day()).unwrap_or_else(|_| {
        // Only 29 February can be missing in the target year.
        Date::new(year, 3, 1).unwrap_or(date)
    })
}

/// Works out a child's retention under `policy`, from its date of birth (if known), the
/// day of each category's last update, and the categories erased before.
pub fn child_retention(
    policy: &RetentionPolicy,
    date_of_birth: Option<Date>,
    last_updates: &[(Category, Timestamp)],
    erased: &[Category],
) -> ChildRetention {
    let mut categories: Vec<CategoryRetention> = last_updates
        .iter()
        .filter_map(|(category, at)| {
            let last_update = at.uk_date()?;
            let rule = policy
                .rules
                .get(category)
                .copied()
                .unwrap_or(RetentionRule::YearsAfterLastUpdate(policy.fallback_years));
            let (expires_on, kept_by) = match (rule, date_of_birth) {
                (RetentionRule::UntilBirthday(age), Some(born)) => {
                    (plus_years(born, i32::from(age)), KeptBy::Rule(rule))
                }
                (RetentionRule::UntilBirthday(_), None) => (
                    plus_years(last_update, i32::from(policy.fallback_years)),
                    KeptBy::FallbackWithoutDateOfBirth(policy.fallback_years),
                ),
                (RetentionRule::YearsAfterLastUpdate(years), _) => {
                    (plus_years(last_update, i32::from(years)), KeptBy::Rule(rule))
                }
            };
            Some(CategoryRetention { category: *category, last_update, expires_on, kept_by })
        })
        .collect();
    categories.sort_by_key(|retention| retention.category);
    let erase_on = categories.iter().map(|retention| retention.expires_on).max();
    let mut erased = erased.to_vec();
    erased.sort();
    erased.dedup();
    ChildRetention { categories, erase_on, erased }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn date(y: i16, m: i8, d: i8) -> Date {
        Date::new(y, m, d).unwrap()
    }

    fn noon(y: i16, m: i8, d: i8) -> Timestamp {
        let seconds = date(y, m, d).to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_second() + 12 * 3600;
        Timestamp::from_unix_seconds(seconds)
    }

    #[test]
    fn rules_parse_from_what_a_schedule_says_and_print_back() {
        assert_eq!(RetentionRule::parse("25th birthday"), Some(RetentionRule::UntilBirthday(25)));
        assert_eq!(RetentionRule::parse(" 21ST  Birthday "), Some(RetentionRule::UntilBirthday(21)));
        assert_eq!(RetentionRule::parse("8 years after last update"), Some(RetentionRule::YearsAfterLastUpdate(8)));
        assert_eq!(RetentionRule::parse("1 year after last update"), Some(RetentionRule::YearsAfterLastUpdate(1)));
        for bad in
            ["25 birthday", "25nd birthday", "0th birthday", "birthday", "8 years", "0 years after last update", ""]
        {
            assert_eq!(RetentionRule::parse(bad), None, "{bad}");
        }
        for rule in
            [RetentionRule::UntilBirthday(22), RetentionRule::UntilBirthday(13), RetentionRule::YearsAfterLastUpdate(8)]
        {
            assert_eq!(RetentionRule::parse(&rule.to_string()), Some(rule));
        }
    }

    #[test]
    fn a_birthday_rule_counts_from_the_date_of_birth_and_falls_back_without_one() {
        let policy = RetentionPolicy::default();
        let updates = [(Category::HealthSummary, noon(2020, 5, 1))];
        let known = child_retention(&policy, Some(date(2012, 2, 29)), &updates, &[]);
        assert_eq!(known.categories[0].expires_on, date(2037, 3, 1), "25th birthday of a leap-day child");
        assert_eq!(known.categories[0].kept_by, KeptBy::Rule(RetentionRule::UntilBirthday(25)));
        assert!(!known.is_due(date(2037, 2, 28)));
        assert!(known.is_due(date(2037, 3, 1)));

        let unknown = child_retention(&policy, None, &updates, &[]);
        assert_eq!(unknown.categories[0].expires_on, date(2028, 5, 1));
        assert_eq!(unknown.categories[0].kept_by, KeptBy::FallbackWithoutDateOfBirth(8));
    }

    #[test]
    fn a_record_is_due_only_once_every_category_is_past_its_retention() {
        let mut policy = RetentionPolicy::default();
        policy.rules.insert(Category::EducationPlacement, RetentionRule::YearsAfterLastUpdate(3));
        let updates = [(Category::EducationPlacement, noon(2020, 1, 10)), (Category::HealthSummary, noon(2021, 6, 1))];
        let retention = child_retention(&policy, None, &updates, &[]);
        assert_eq!(retention.categories[0].category, Category::HealthSummary, "in category order");
        assert_eq!(retention.erase_on, Some(date(2029, 6, 1)));
        assert!(!retention.is_due(date(2025, 1, 1)), "education is past its three years, health is not");
        assert_eq!(retention.due(date(2023, 1, 9)), RetentionDue::Nothing, "the day before education expires");
        let RetentionDue::Categories(due) = retention.due(date(2023, 1, 10)) else { panic!("education is due") };
        assert_eq!(due.iter().map(|c| c.category).collect::<Vec<_>>(), [Category::EducationPlacement]);
        assert_eq!(retention.due(date(2029, 6, 1)), RetentionDue::Child, "every category is past its retention");
        assert_eq!(child_retention(&policy, None, &[], &[]).erase_on, None);
        assert!(!child_retention(&policy, None, &[], &[]).is_due(date(2999, 1, 1)));
    }

    #[test]
    fn a_child_whose_values_were_all_erased_is_erased_and_one_that_never_had_any_is_not() {
        let policy = RetentionPolicy::default();
        let emptied = child_retention(&policy, None, &[], &[Category::HealthSummary, Category::HealthSummary]);
        assert_eq!(emptied.erased, [Category::HealthSummary]);
        assert_eq!(emptied.due(date(2020, 1, 1)), RetentionDue::Child);
        assert_eq!(child_retention(&policy, None, &[], &[]).due(date(2999, 1, 1)), RetentionDue::Nothing);
        // Values kept after an earlier erasure are ruled on as usual.
        let kept =
            child_retention(&policy, None, &[(Category::SendSupport, noon(2020, 1, 1))], &[Category::HealthSummary]);
        assert_eq!(kept.due(date(2027, 12, 31)), RetentionDue::Nothing);
        assert_eq!(kept.due(date(2028, 1, 1)), RetentionDue::Child);
    }

    proptest! {
        /// The record is never due before any one of its categories has expired, and
        /// always due once all have.
        #[test]
        fn erasure_waits_for_the_last_category(
            born in proptest::option::of(0i64..9_000),
            days in proptest::collection::vec((0usize..7, 0i64..9_000), 0..7),
            years in 1u16..30,
        ) {
            let base = date(2000, 1, 1);
            let policy = RetentionPolicy { rules: BTreeMap::new(), fallback_years: years };
            let updates: Vec<(Category, Timestamp)> = days
                .iter()
                .map(|(index, day)| {
                    let day = base.checked_add(jiff::Span::new().days(*day)).unwrap();
                    (Category::ALL[*index], noon(day.year(), day.month(), day.day()))
                })
                .collect();
            let born = born.map(|day| base.checked_add(jiff::Span::new().days(day)).unwrap());
            let retention = child_retention(&policy, born, &updates, &[]);
            for category in &retention.categories {
                prop_assert!(retention.erase_on.is_some_and(|day| day >= category.expires_on));
                prop_assert!(category.expires_on > category.last_update);
            }
            if let Some(day) = retention.erase_on {
                prop_assert!(retention.is_due(day));
                prop_assert!(!retention.is_due(day.yesterday().unwrap()));
            }
            // On any day, exactly the categories past their retention are due, and the
            // whole record only once all are.
            for offset in [0i64, 365, 3_000, 9_000, 20_000] {
                let today = base.checked_add(jiff::Span::new().days(offset)).unwrap();
                let expired: Vec<Category> = retention
                    .categories
                    .iter()
                    .filter(|category| category.expires_on <= today)
                    .map(|category| category.category)
                    .collect();
                match retention.due(today) {
                    RetentionDue::Nothing => prop_assert!(expired.is_empty()),
                    RetentionDue::Categories(due) => {
                        prop_assert_eq!(due.iter().map(|c| c.category).collect::<Vec<_>>(), expired.clone());
                        prop_assert!(expired.len() < retention.categories.len());
                    }
                    RetentionDue::Child => prop_assert_eq!(expired.len(), retention.categories.len()),
                }
            }
        }
    }
}
