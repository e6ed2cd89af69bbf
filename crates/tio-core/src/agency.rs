//! Agencies: the systems that connect to the broker, and what each may do.

use std::fmt;

use crate::names::stable_names;
use crate::{CategorySet, FieldViolation, limits};

/// An agency's id: 1 to 64 characters of `[a-z0-9-]`, not starting or ending with `-`.
/// It is the `<id>` of the certificate identity `urn:tio:agency:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgencyId(String);

impl AgencyId {
    /// Parses an id, naming `field` in the error.
    pub fn parse(field: &str, input: &str) -> Result<AgencyId, FieldViolation> {
        if !is_valid_name(input) {
            return Err(FieldViolation::new(
                field,
                format!(
                    "must be 1 to {} characters of a-z, 0-9 and '-', not starting or ending with '-'",
                    limits::MAX_AGENCY_ID_BYTES
                ),
            ));
        }
        Ok(AgencyId(input.to_owned()))
    }

    /// Returns the id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Returns whether `input` is a valid agency, admin or auditor name.
pub(crate) fn is_valid_name(input: &str) -> bool {
    !input.is_empty()
        && input.len() <= limits::MAX_AGENCY_ID_BYTES
        && input.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !input.starts_with('-')
        && !input.ends_with('-')
}

impl fmt::Display for AgencyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sector an agency works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sector {
    /// NHS trusts, GP practices, community health, CAMHS, and adult health providers.
    Health,
    /// Schools and the council's SEND team.
    Education,
    /// The council's children's social care.
    SocialCare,
    /// The council's adult social care, which a young person moves to from 18 (and which
    /// plans for it from 14).
    AdultSocialCare,
    /// The integrated care board: commissions health provision and, through its
    /// designated clinical officer, gives health advice on EHC needs and transitions.
    Icb,
}

stable_names!(Sector {
    Health => "health",
    Education => "education",
    SocialCare => "social_care",
    AdultSocialCare => "adult_social_care",
    Icb => "icb",
});

impl fmt::Display for Sector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of code an agency is known by outside the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrganisationCodeKind {
    /// An NHS Organisation Data Service code: 3 to 6 upper-case letters and digits
    /// (`RXX`, `RXX01`, `A12345`).
    Ods,
    /// A school's unique reference number: 6 digits.
    SchoolUrn,
    /// A council's DfE local-authority code: 3 digits.
    LocalAuthority,
}

stable_names!(OrganisationCodeKind {
    Ods => "ods",
    SchoolUrn => "school_urn",
    LocalAuthority => "local_authority",
});

impl OrganisationCodeKind {
    /// Checks that `code` has this kind's form, naming `field` if not.
    pub fn validate(self, field: &str, code: &str) -> Result<(), FieldViolation> {
        let digits = |len: usize| code.len() == len && code.bytes().all(|byte| byte.is_ascii_digit());
        let (valid, form) = match self {
            OrganisationCodeKind::Ods => (
                (3..=6).contains(&code.len())
                    && code.bytes().all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit()),
                "an ODS code is 3 to 6 upper-case letters and digits",
            ),
            OrganisationCodeKind::SchoolUrn => (digits(6), "a school URN is 6 digits"),
            OrganisationCodeKind::LocalAuthority => (digits(3), "a local-authority code is 3 digits"),
        };
        if valid { Ok(()) } else { Err(FieldViolation::new(field, form)) }
    }
}

/// A registered agency and its permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agency {
    /// The agency's id.
    pub id: AgencyId,
    /// Its name, for people (reports, the admin list).
    pub name: String,
    /// Its sector.
    pub sector: Sector,
    /// Categories it may publish.
    pub may_publish: CategorySet,
    /// Categories it may read (profile and deliveries).
    pub may_read: CategorySet,
    /// Whether its professionals may record and withdraw consent.
    pub may_record_consent: bool,
    /// Whether its professionals may declare safeguarding shares (sharing without
    /// consent where a child may be at risk). Off unless granted.
    pub may_declare_safeguarding: bool,
    /// Whether it runs EHC needs assessments (the council's SEND team): opens them,
    /// records their steps and asks for advice. Off unless granted.
    pub may_run_ehc_assessments: bool,
    /// A suspended agency is refused everywhere.
    pub suspended: bool,
}

impl Agency {
    /// Checks an agency's name, the one rule for every way an agency is registered (the
    /// configuration's first-start list and the admin service): present, not blank, at
    /// most a short string.
    pub fn check_name(field: &str, name: &str) -> Result<(), FieldViolation> {
        if name.trim().is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        limits::check_len(field, name, limits::MAX_SHORT_STRING_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agency_names_are_required_and_short() {
        assert!(Agency::check_name("name", "Meadow Primary School").is_ok());
        assert_eq!(Agency::check_name("name", "  ").unwrap_err().reason, "is required");
        assert_eq!(Agency::check_name("agency.name", &"n".repeat(257)).unwrap_err().field, "agency.name");
    }

    #[test]
    fn agency_ids() {
        for good in ["rxx", "school-100000", "a", "send-team-202"] {
            assert!(AgencyId::parse("id", good).is_ok(), "{good}");
        }
        let too_long = "a".repeat(65);
        for bad in ["", "-rxx", "rxx-", "RXX", "r x", "r_x", "rxx/1", too_long.as_str()] {
            let err = AgencyId::parse("agency.id", bad).unwrap_err();
            assert_eq!(err.field, "agency.id", "{bad}");
        }
    }

    #[test]
    fn organisation_codes_have_their_kinds_form() {
        use OrganisationCodeKind::*;
        for (kind, good) in
            [(Ods, "RXX"), (Ods, "RXX01"), (Ods, "A12345"), (SchoolUrn, "100000"), (LocalAuthority, "202")]
        {
            assert_eq!(kind.validate("code", good), Ok(()), "{good}");
        }
        for (kind, bad) in [
            (Ods, "rxx"),
            (Ods, "RX"),
            (Ods, "RXX0123"),
            (Ods, "RX-1"),
            (SchoolUrn, "10000"),
            (SchoolUrn, "10000A"),
            (LocalAuthority, "2020"),
            (LocalAuthority, ""),
        ] {
            assert_eq!(kind.validate("agency.code", bad).unwrap_err().field, "agency.code", "{bad}");
        }
    }
}
