//! Development mode's seed: the agencies, admin and auditor that `tio dev-pki` issues
//! certificates for and `tio serve --dev` registers.

use tio_core::{Agency, AgencyId, Category, CategorySet, Sector};

/// One development agency.
pub struct DevAgency {
    /// Its id and certificate file name.
    pub id: &'static str,
    /// Its name.
    pub name: &'static str,
    /// Its sector.
    pub sector: Sector,
    /// What it may publish.
    pub may_publish: &'static [Category],
    /// What it may read.
    pub may_read: &'static [Category],
}

use Category::*;

/// The development agencies: two in health, two in education, one in social care.
pub const DEV_AGENCIES: &[DevAgency] = &[
    DevAgency {
        id: "hospital",
        name: "Riverside Children's Hospital (development)",
        sector: Sector::Health,
        may_publish: &[IdentityAndContacts, CommunicationNeeds, HealthSummary],
        may_read: &Category::ALL,
    },
    DevAgency {
        id: "gp",
        name: "Parkside Surgery (development)",
        sector: Sector::Health,
        may_publish: &[IdentityAndContacts, CommunicationNeeds, HealthSummary],
        may_read: &Category::ALL,
    },
    DevAgency {
        id: "school",
        name: "Meadow Primary School (development)",
        sector: Sector::Education,
        may_publish: &[CommunicationNeeds, EducationPlacement, SendSupport],
        may_read: &[IdentityAndContacts, CommunicationNeeds, HealthSummary, SendSupport, EducationPlacement],
    },
    DevAgency {
        id: "send-team",
        name: "Council SEND Team (development)",
        sector: Sector::Education,
        may_publish: &[SendSupport, EducationPlacement, TransitionToAdulthood],
        may_read: &Category::ALL,
    },
    DevAgency {
        id: "social-care",
        name: "Council Children's Social Care (development)",
        sector: Sector::SocialCare,
        may_publish: &[IdentityAndContacts, SocialCareInvolvement, TransitionToAdulthood],
        may_read: &Category::ALL,
    },
];

/// The development administrator's id.
pub const DEV_ADMIN: &str = "admin";

/// The development auditor's id.
pub const DEV_AUDITOR: &str = "auditor";

/// Returns the development agencies as domain values.
pub fn dev_agencies() -> Vec<Agency> {
    DEV_AGENCIES
        .iter()
        .map(|agency| Agency {
            id: AgencyId::parse("id", agency.id).unwrap_or_else(|_| unreachable!("development ids are valid")),
            name: agency.name.to_owned(),
            sector: agency.sector,
            may_publish: agency.may_publish.iter().copied().collect::<CategorySet>(),
            may_read: agency.may_read.iter().copied().collect::<CategorySet>(),
            may_record_consent: true,
            suspended: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_agencies_are_valid_and_cover_every_sector() {
        let agencies = dev_agencies();
        assert_eq!(agencies.len(), DEV_AGENCIES.len());
        for sector in [Sector::Health, Sector::Education, Sector::SocialCare] {
            assert!(agencies.iter().any(|agency| agency.sector == sector), "{sector}");
        }
    }
}
