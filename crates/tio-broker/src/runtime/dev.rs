//! Development mode's seed: the agencies, admin and auditor that `tio dev-pki` issues
//! certificates for and `tio serve --dev` registers.

use tio_core::{Category, Sector};

use crate::runtime::config::AgencyConfig;

/// One development agency.
pub(crate) struct DevAgency {
    /// Its id and certificate file name.
    pub(crate) id: &'static str,
    /// Its name.
    pub(crate) name: &'static str,
    /// Its sector.
    pub(crate) sector: Sector,
    /// What it may publish.
    pub(crate) may_publish: &'static [Category],
    /// What it may read.
    pub(crate) may_read: &'static [Category],
}

use Category::*;

/// The development agencies: two in health, two in education, one each in children's
/// and adult social care, and the integrated care board.
pub(crate) const DEV_AGENCIES: &[DevAgency] = &[
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
    DevAgency {
        id: "adult-social-care",
        name: "Council Adult Social Care (development)",
        sector: Sector::AdultSocialCare,
        may_publish: &[SocialCareInvolvement, TransitionToAdulthood],
        may_read: &Category::ALL,
    },
    DevAgency {
        id: "icb",
        name: "Integrated Care Board (development)",
        sector: Sector::Icb,
        may_publish: &[HealthSummary, TransitionToAdulthood],
        may_read: &Category::ALL,
    },
];

/// The development administrator's id.
pub(crate) const DEV_ADMIN: &str = "admin";

/// The development auditor's id.
pub(crate) const DEV_AUDITOR: &str = "auditor";

/// Returns the development agencies as configuration entries, so that they pass the
/// same validation as agencies an operator configures.
pub(crate) fn dev_agency_configs() -> Vec<AgencyConfig> {
    DEV_AGENCIES
        .iter()
        .map(|agency| AgencyConfig {
            id: agency.id.to_owned(),
            name: agency.name.to_owned(),
            sector: agency.sector.as_str().to_owned(),
            may_publish: agency.may_publish.iter().map(|category| category.as_str().to_owned()).collect(),
            may_read: agency.may_read.iter().map(|category| category.as_str().to_owned()).collect(),
            may_record_consent: true,
            // The councils' children's social care and SEND teams lead safeguarding.
            may_declare_safeguarding: matches!(agency.id, "social-care" | "send-team"),
            may_run_ehc_assessments: agency.id == "send-team",
            suspended: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_agencies_are_valid_and_cover_every_sector() {
        let mut config = crate::runtime::config::Config::load(&crate::runtime::config::ConfigSources {
            env: [("TIO_DEV".to_owned(), "true".to_owned())].into(),
            ..Default::default()
        })
        .unwrap();
        config.agencies = dev_agency_configs();
        let agencies = config.agencies().unwrap();
        assert_eq!(agencies.len(), DEV_AGENCIES.len());
        for sector in Sector::ALL {
            assert!(agencies.iter().any(|agency| agency.sector == sector), "{sector}");
        }
    }
}
