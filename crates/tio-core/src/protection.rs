//! Child-protection and looked-after flags: what CP-IS (child protection information
//! sharing) does between councils and NHS unscheduled care.
//!
//! When a council's children's social care publishes a child's involvement at the level
//! of a child protection plan or looked after, the fact is shared with the health
//! agencies involved with the child without the family's consent, on the lawful basis
//! the council records with it (UK GDPR Art. 6(1)(e) public task, or (c) legal
//! obligation; Art. 9(2)(h) health or social care, or (g) substantial public interest,
//! DPA 2018 Sch. 1 para 18 "safeguarding of children"). Which sectors receive it is the
//! deployment's choice (health by default). A family's objection does not stop it; the
//! override is recorded. Only the child's current social-care value carries the flag:
//! once the council publishes a lower level, the older value is shared on consent alone.

use crate::names::stable_names;
use crate::{AgencyId, FieldViolation, LawfulBasis, Sector, SpecialCategoryCondition};

/// The levels of social-care involvement that are flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagLevel {
    /// A child protection plan (after a section 47 enquiry).
    ChildProtection,
    /// Looked after: section 20 accommodation or a section 31 care order.
    LookedAfter,
}

stable_names!(FlagLevel {
    ChildProtection => "child_protection",
    LookedAfter => "looked_after",
});

/// What a flagged value says of itself: its level and the basis its publisher recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagValue {
    /// The level flagged.
    pub level: FlagLevel,
    /// The Article 6 basis the publisher recorded.
    pub lawful_basis: LawfulBasis,
    /// The Article 9 condition the publisher recorded.
    pub condition: SpecialCategoryCondition,
}

/// A flag as one published value carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionFlag {
    /// The level flagged.
    pub level: FlagLevel,
    /// The agency that published it.
    pub publisher: AgencyId,
    /// The publisher's sector as registered now: only children's social care flags.
    pub publisher_sector: Sector,
    /// The Article 6 basis the publisher recorded.
    pub lawful_basis: LawfulBasis,
    /// The Article 9 condition the publisher recorded.
    pub condition: SpecialCategoryCondition,
}

impl ProtectionFlag {
    /// Returns the flag `value` carries as published by `publisher` of `sector`.
    pub fn new(value: FlagValue, publisher: AgencyId, publisher_sector: Sector) -> Self {
        ProtectionFlag {
            level: value.level,
            publisher,
            publisher_sector,
            lawful_basis: value.lawful_basis,
            condition: value.condition,
        }
    }
}

/// One flagged value put to [`crate::decide`]: the flag, whether the value is still the
/// child's current social-care value, and the sectors this deployment shares flags with.
#[derive(Debug, Clone, Copy)]
pub struct FlagShare<'a> {
    /// The flag the value carries.
    pub flag: &'a ProtectionFlag,
    /// Whether the value is the child's latest of its category.
    pub current: bool,
    /// The sectors flags are shared with (`sharing.child_protection_flag_sectors`).
    pub to_sectors: &'a [Sector],
}

impl FlagShare<'_> {
    /// Returns whether this flag is shared with an agency of `sector` other than its
    /// publisher `agency` without consent.
    pub(crate) fn reaches(&self, agency: &AgencyId, sector: Sector) -> bool {
        self.current
            && self.flag.publisher_sector == Sector::SocialCare
            && self.to_sectors.contains(&sector)
            && &self.flag.publisher != agency
    }
}

/// Checks the lawful basis a publisher records with a flag (`field` names the value's
/// message): public task or legal obligation, with the Article 9(2)(h) or (g)
/// condition. Both are required, since the flag is shared without consent.
pub fn check_basis(
    field: &str,
    lawful_basis: Option<LawfulBasis>,
    condition: Option<SpecialCategoryCondition>,
) -> Result<(LawfulBasis, SpecialCategoryCondition), FieldViolation> {
    let lawful_basis = match lawful_basis {
        Some(basis @ (LawfulBasis::PublicTask | LawfulBasis::LegalObligation)) => basis,
        _ => {
            return Err(FieldViolation::new(
                format!("{field}.lawful_basis"),
                "a child-protection or looked-after flag is shared without consent: its basis must be public task or legal obligation",
            ));
        }
    };
    let condition = match condition {
        Some(
            condition @ (SpecialCategoryCondition::HealthOrSocialCare
            | SpecialCategoryCondition::SubstantialPublicInterest),
        ) => condition,
        _ => {
            return Err(FieldViolation::new(
                format!("{field}.special_category_condition"),
                "a child-protection or looked-after flag is shared without consent: its condition must be health or social care, or substantial public interest",
            ));
        }
    };
    Ok((lawful_basis, condition))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(sector: Sector) -> ProtectionFlag {
        ProtectionFlag {
            level: FlagLevel::ChildProtection,
            publisher: AgencyId::parse("id", "social-care").unwrap(),
            publisher_sector: sector,
            lawful_basis: LawfulBasis::PublicTask,
            condition: SpecialCategoryCondition::HealthOrSocialCare,
        }
    }

    #[test]
    fn a_flag_reaches_the_configured_sectors_while_current_and_only_from_social_care() {
        let hospital = AgencyId::parse("id", "hospital").unwrap();
        let social_care = flag(Sector::SocialCare);
        let share = FlagShare { flag: &social_care, current: true, to_sectors: &[Sector::Health] };
        assert!(share.reaches(&hospital, Sector::Health));
        assert!(!share.reaches(&hospital, Sector::Education), "not a configured sector");
        assert!(!share.reaches(&social_care.publisher, Sector::Health), "not back to its publisher");
        assert!(!FlagShare { current: false, ..share }.reaches(&hospital, Sector::Health), "superseded");
        let from_school = flag(Sector::Education);
        let share = FlagShare { flag: &from_school, current: true, to_sectors: &[Sector::Health] };
        assert!(!share.reaches(&hospital, Sector::Health), "only social care flags");
        let none = FlagShare { flag: &social_care, current: true, to_sectors: &[] };
        assert!(!none.reaches(&hospital, Sector::Health), "a deployment may share flags with nobody");
    }

    #[test]
    fn the_basis_is_public_task_or_legal_obligation_with_9_2_h_or_g() {
        use LawfulBasis as B;
        use SpecialCategoryCondition as C;
        let field = "value.social_care_involvement";
        for basis in [B::PublicTask, B::LegalObligation] {
            for condition in [C::HealthOrSocialCare, C::SubstantialPublicInterest] {
                assert_eq!(check_basis(field, Some(basis), Some(condition)), Ok((basis, condition)));
            }
        }
        for basis in [None, Some(B::Consent), Some(B::VitalInterests)] {
            let refused = check_basis(field, basis, Some(C::HealthOrSocialCare)).unwrap_err();
            assert_eq!(refused.field, "value.social_care_involvement.lawful_basis");
        }
        for condition in [None, Some(C::ExplicitConsent), Some(C::VitalInterests)] {
            let refused = check_basis(field, Some(B::PublicTask), condition).unwrap_err();
            assert_eq!(refused.field, "value.social_care_involvement.special_category_condition");
        }
    }
}
