//! The closed set of record categories.

use std::fmt;

use crate::names::stable_names;

/// A class of data about a child. Permissions, consent and subscriptions are all
/// expressed in these; each has a typed value in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Name, date of birth, contacts, preferred language and interpreter need.
    IdentityAndContacts,
    /// "Things to know about me": the heart of a hospital passport.
    CommunicationNeeds,
    /// Conditions, medications, allergies, key clinicians.
    HealthSummary,
    /// SEN support or EHC plan status and dates.
    SendSupport,
    /// School, year group and type of provision.
    EducationPlacement,
    /// The fact and level of social-care involvement, and a contact.
    SocialCareInvolvement,
    /// Preparing for adulthood and the hand-over to adult services.
    TransitionToAdulthood,
}

stable_names!(Category {
    IdentityAndContacts => "identity_and_contacts",
    CommunicationNeeds => "communication_needs",
    HealthSummary => "health_summary",
    SendSupport => "send_support",
    EducationPlacement => "education_placement",
    SocialCareInvolvement => "social_care_involvement",
    TransitionToAdulthood => "transition_to_adulthood",
});

impl Category {
    /// Returns whether values of this category are special-category (health or social
    /// care) data under UK GDPR Article 9.
    pub const fn is_special_category(self) -> bool {
        matches!(self, Category::HealthSummary | Category::CommunicationNeeds | Category::SocialCareInvolvement)
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of categories.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CategorySet(u8);

impl CategorySet {
    /// The empty set.
    pub const EMPTY: CategorySet = CategorySet(0);

    /// Returns the set of every category.
    pub fn all() -> Self {
        Category::ALL.into_iter().collect()
    }

    /// Returns whether `category` is in the set.
    pub const fn contains(self, category: Category) -> bool {
        self.0 & category.bit() != 0
    }

    /// Adds `category`.
    pub fn insert(&mut self, category: Category) {
        self.0 |= category.bit();
    }

    /// Returns whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Returns the members in contract order.
    pub fn iter(self) -> impl Iterator<Item = Category> {
        Category::ALL.into_iter().filter(move |category| self.contains(*category))
    }
}

impl FromIterator<Category> for CategorySet {
    fn from_iter<I: IntoIterator<Item = Category>>(iter: I) -> Self {
        let mut set = CategorySet::EMPTY;
        for category in iter {
            set.insert(category);
        }
        set
    }
}

impl fmt::Debug for CategorySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for category in Category::ALL {
            assert_eq!(Category::from_name(category.as_str()), Some(category));
        }
        assert_eq!(Category::from_name("case_notes"), None);
    }

    #[test]
    fn set_membership() {
        let set: CategorySet = [Category::HealthSummary, Category::SendSupport].into_iter().collect();
        assert!(set.contains(Category::HealthSummary));
        assert!(!set.contains(Category::IdentityAndContacts));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![Category::HealthSummary, Category::SendSupport]);
        assert_eq!(CategorySet::all().iter().count(), Category::ALL.len());
        assert!(CategorySet::EMPTY.is_empty());
    }
}
