//! Stable names for the domain's closed enums: one `snake_case` name per value, used in
//! configuration, stored records and the audit log, and never changed once released.

/// Gives a closed enum `ALL` (every value, in contract order), `as_str` (the value's
/// stable name) and `from_name` (its inverse), from one table of values and names.
macro_rules! stable_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in contract order.
            pub const ALL: [$ty; [$(stringify!($variant)),+].len()] = [$($ty::$variant),+];

            /// Returns the value's stable `snake_case` name (configuration, stored
            /// records, the audit log). Never change one: stored data names it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// Parses a name produced by `as_str`.
            pub fn from_name(name: &str) -> Option<$ty> {
                $ty::ALL.into_iter().find(|value| value.as_str() == name)
            }
        }
    };
}

pub(crate) use stable_names;

#[cfg(test)]
mod tests {
    use crate::{
        Category, ConsentGiverRole, ConsentMethod, LawfulBasis, OrganisationCodeKind, RelationshipKind, Sector,
        SpecialCategoryCondition,
    };

    /// Every named enum: each name parses back to its value, names are distinct, and a
    /// near miss (another case, padding) parses to nothing.
    #[test]
    fn names_round_trip_and_near_misses_do_not_parse() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            name: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            let mut names: Vec<&str> = all.iter().map(|value| name(*value)).collect();
            for value in all {
                assert_eq!(parse(name(*value)), Some(*value));
                assert_eq!(parse(&name(*value).to_uppercase()), None);
                assert_eq!(parse(&format!(" {}", name(*value))), None);
            }
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), all.len(), "names are distinct");
        }
        check(&Category::ALL, Category::as_str, Category::from_name);
        check(&Sector::ALL, Sector::as_str, Sector::from_name);
        check(&OrganisationCodeKind::ALL, OrganisationCodeKind::as_str, OrganisationCodeKind::from_name);
        check(&ConsentGiverRole::ALL, ConsentGiverRole::as_str, ConsentGiverRole::from_name);
        check(&LawfulBasis::ALL, LawfulBasis::as_str, LawfulBasis::from_name);
        check(&SpecialCategoryCondition::ALL, SpecialCategoryCondition::as_str, SpecialCategoryCondition::from_name);
        check(&ConsentMethod::ALL, ConsentMethod::as_str, ConsentMethod::from_name);
        check(&RelationshipKind::ALL, RelationshipKind::as_str, RelationshipKind::from_name);
        check(&crate::ehc::Clock::ALL, crate::ehc::Clock::as_str, crate::ehc::Clock::from_name);
        check(&crate::ehc::ExceptionCode::ALL, crate::ehc::ExceptionCode::as_str, crate::ehc::ExceptionCode::from_name);
        check(&crate::ehc::AdviserType::ALL, crate::ehc::AdviserType::as_str, crate::ehc::AdviserType::from_name);
    }
}
