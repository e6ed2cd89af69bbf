//! The rules for recording and withdrawing a consent: what a new consent must say, and
//! which revision a withdrawal makes. The broker parses the request into these values
//! (a field it cannot parse is its error) and stores what these functions return.

use crate::{
    AgencyId, CategorySet, Consent, ConsentEvidence, ConsentGiverRole, ConsentId, ConsentRevision, ConsentState, Date,
    FieldViolation, GiverAuthority, LawfulBasis, Recipients, SpecialCategoryCondition, Timestamp, Validity, limits,
};

/// The longest purpose, or withdrawal reason, in bytes.
pub const MAX_PURPOSE_BYTES: usize = 1024;

/// A consent as a professional asks to record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    /// Who gave it.
    pub giver_role: ConsentGiverRole,
    /// The name of the person who gave it.
    pub giver_name: String,
    /// The categories it covers: at least one.
    pub categories: CategorySet,
    /// Who may receive: at least one agency or sector.
    pub recipients: Recipients,
    /// Why, in plain words.
    pub purpose: String,
    /// The Article 6 basis.
    pub lawful_basis: LawfulBasis,
    /// The Article 9 condition: required when the categories include special-category data.
    pub special_category_condition: Option<SpecialCategoryCondition>,
    /// The first moment it applies; now if not given.
    pub valid_from: Option<Timestamp>,
    /// The first moment it no longer applies, after `valid_from`; open-ended if not given.
    pub valid_until: Option<Timestamp>,
    /// How it was given.
    pub evidence: ConsentEvidence,
    /// Who judged the child competent, or made the best-interests decision, and when:
    /// required for those roles, refused for others.
    pub authority: Option<GiverAuthority>,
}

/// Who records a revision: the agency and its professional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorder {
    /// The recording agency.
    pub agency: AgencyId,
    /// The professional, as the call named them.
    pub professional: String,
}

/// Why a withdrawal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WithdrawalRefused {
    /// A field of the request is at fault.
    #[error("{0}")]
    Invalid(FieldViolation),
    /// The latest revision (of a consent or an objection) is a withdrawal already.
    #[error("already withdrawn")]
    AlreadyWithdrawn,
}

/// Checks evidence of how an agreement or withdrawal was given (`field` names it).
pub fn check_evidence(field: &str, evidence: &ConsentEvidence) -> Result<(), FieldViolation> {
    limits::check_len(&format!("{field}.reference"), &evidence.reference, limits::MAX_SHORT_STRING_BYTES)?;
    let language = &evidence.language;
    let language_ok =
        language.is_empty() || ((2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_lowercase()));
    if !language_ok {
        return Err(FieldViolation::new(format!("{field}.language"), "must be an ISO 639 code such as pl or en"));
    }
    limits::check_len(&format!("{field}.notes"), &evidence.notes, limits::MAX_FREE_TEXT_BYTES)
}

/// Checks that `role` may speak for a child born on `born` (when known) on `today`, and
/// has the authority or evidence its role needs.
fn check_giver(
    role: ConsentGiverRole,
    authority: Option<&GiverAuthority>,
    evidence: &ConsentEvidence,
    born: Option<Date>,
    today: Option<Date>,
) -> Result<(), FieldViolation> {
    match (role.needs_authority(), authority) {
        (true, None) => {
            return Err(FieldViolation::new(
                "authority",
                "is required: who judged the child competent, or made the best-interests decision, and when",
            ));
        }
        (true, Some(authority)) => {
            if authority.by.trim().is_empty() {
                return Err(FieldViolation::new("authority.by", "is required"));
            }
            limits::check_len("authority.by", &authority.by, limits::MAX_SHORT_STRING_BYTES)?;
            if today.is_some_and(|today| authority.on > today) {
                return Err(FieldViolation::new("authority.on", "must not be in the future"));
            }
        }
        (false, Some(_)) => {
            return Err(FieldViolation::new("authority", "is only for a competent child or a best-interests decision"));
        }
        (false, None) => {}
    }
    if matches!(role, ConsentGiverRole::Deputy | ConsentGiverRole::Attorney) && evidence.reference.trim().is_empty() {
        return Err(FieldViolation::new(
            "evidence.reference",
            "is required: the Court of Protection order, or the registered power of attorney",
        ));
    }
    if let (Some(born), Some(today)) = (born, today) {
        let age = crate::age::age_on(born, today);
        let (from, until) = role.ages();
        if let Some(from) = from.and_then(|from| u32::try_from(from).ok())
            && age < from
        {
            return Err(FieldViolation::new(
                "giver_role",
                format!("{} speaks for a child of {from} or more; the child is {age}", role.as_str()),
            ));
        }
        if let Some(until) = until.and_then(|until| u32::try_from(until).ok())
            && age >= until
        {
            return Err(FieldViolation::new(
                "giver_role",
                format!("{} speaks for a child under {until}; the child is {age}", role.as_str()),
            ));
        }
    }
    Ok(())
}

/// Returns revision 1 of a new consent `id`, recorded by `by` at `now`, if `new` says
/// what a consent must. `existing` are the latest revisions of the child's other
/// consents: once the child or young person decides about a category for themselves, a
/// consent by a parent (or the local authority) naming it is refused. `born` is the
/// child's date of birth, when known: each role speaks only at the ages the law lets it.
pub fn record(
    new: NewConsent,
    id: ConsentId,
    by: Recorder,
    now: Timestamp,
    existing: &[Consent],
    born: Option<Date>,
) -> Result<ConsentRevision, FieldViolation> {
    if new.giver_name.trim().is_empty() {
        return Err(FieldViolation::new("giver_name", "is required"));
    }
    limits::check_len("giver_name", &new.giver_name, limits::MAX_SHORT_STRING_BYTES)?;
    if new.categories.is_empty() {
        return Err(FieldViolation::new("categories", "must name at least one category"));
    }
    if new.recipients.agencies.is_empty() && new.recipients.sectors.is_empty() {
        return Err(FieldViolation::new("recipients", "must name at least one agency or sector"));
    }
    if new.purpose.trim().is_empty() {
        return Err(FieldViolation::new("purpose", "is required"));
    }
    limits::check_len("purpose", &new.purpose, MAX_PURPOSE_BYTES)?;
    if new.special_category_condition.is_none() && new.categories.iter().any(|c| c.is_special_category()) {
        return Err(FieldViolation::new(
            "special_category_condition",
            "is required when the categories include health, communication or social-care information",
        ));
    }
    let from = new.valid_from.unwrap_or(now);
    if new.valid_until.is_some_and(|until| until <= from) {
        return Err(FieldViolation::new("valid.until", "must be after valid.from"));
    }
    check_evidence("evidence", &new.evidence)?;
    check_giver(new.giver_role, new.authority.as_ref(), &new.evidence, born, now.uk_date())?;
    if new.giver_role.holds_parental_responsibility()
        && let Some(decided) =
            new.categories.iter().find(|category| crate::consent::own_decision_covers(existing, *category, now))
    {
        return Err(FieldViolation::new(
            "giver_role",
            format!(
                "the child or young person now decides about {decided} for themselves; a parent's consent for it no longer applies"
            ),
        ));
    }
    Ok(ConsentRevision {
        consent: Consent {
            id,
            revision: 1,
            giver_role: new.giver_role,
            categories: new.categories,
            recipients: new.recipients,
            purpose: new.purpose,
            lawful_basis: new.lawful_basis,
            valid: Validity { from, until: new.valid_until },
            state: ConsentState::Active,
            recorded_at: now,
        },
        giver_name: new.giver_name,
        special_category_condition: new.special_category_condition,
        evidence: new.evidence,
        recorded_by: by.agency,
        recorded_by_professional: by.professional,
        recorded_at: now,
        withdrawal_reason: String::new(),
        authority: new.authority,
    })
}

/// Checks a withdrawal's reason and evidence, then that what it withdraws (a consent or
/// an objection) is not `withdrawn` already.
pub(crate) fn check_withdrawal(
    reason: &str,
    evidence: &ConsentEvidence,
    withdrawn: bool,
) -> Result<(), WithdrawalRefused> {
    limits::check_len("reason", reason, MAX_PURPOSE_BYTES).map_err(WithdrawalRefused::Invalid)?;
    check_evidence("evidence", evidence).map_err(WithdrawalRefused::Invalid)?;
    if withdrawn {
        return Err(WithdrawalRefused::AlreadyWithdrawn);
    }
    Ok(())
}

/// Returns the revision that withdraws `latest` (the consent's latest revision) at
/// `now`, recorded by `by` for `reason` with `evidence`.
pub fn withdraw(
    latest: &ConsentRevision,
    reason: &str,
    evidence: ConsentEvidence,
    by: Recorder,
    now: Timestamp,
) -> Result<ConsentRevision, WithdrawalRefused> {
    check_withdrawal(reason, &evidence, matches!(latest.consent.state, ConsentState::Withdrawn { .. }))?;
    Ok(ConsentRevision {
        consent: Consent {
            revision: latest.consent.revision + 1,
            state: ConsentState::Withdrawn { at: now },
            ..latest.consent.clone()
        },
        evidence,
        recorded_by: by.agency,
        recorded_by_professional: by.professional,
        recorded_at: now,
        withdrawal_reason: reason.to_owned(),
        ..latest.clone()
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{Category, ConsentMethod, Sector};

    const NOW: Timestamp = Timestamp::from_unix_seconds(1_800_000_000);

    fn evidence() -> ConsentEvidence {
        ConsentEvidence {
            method: ConsentMethod::SignedForm,
            reference: "FORM-7".into(),
            language: "pl".into(),
            interpreter_present: true,
            notes: String::new(),
        }
    }

    fn new_consent() -> NewConsent {
        NewConsent {
            giver_role: ConsentGiverRole::ParentWithParentalResponsibility,
            giver_name: "Anna Kowalska".into(),
            categories: [Category::CommunicationNeeds].into_iter().collect(),
            recipients: Recipients { sectors: vec![Sector::Health], ..Recipients::default() },
            purpose: "So that the hospital knows how Amy communicates".into(),
            lawful_basis: LawfulBasis::PublicTask,
            special_category_condition: Some(SpecialCategoryCondition::HealthOrSocialCare),
            valid_from: None,
            valid_until: None,
            evidence: evidence(),
            authority: None,
        }
    }

    fn by(agency: &str) -> Recorder {
        Recorder { agency: AgencyId::parse("id", agency).unwrap(), professional: "dr-jones".into() }
    }

    fn recorded() -> ConsentRevision {
        record(new_consent(), ConsentId("c-1".into()), by("send-team"), NOW, &[], None).unwrap()
    }

    #[test]
    fn a_new_consent_is_revision_one_from_now_and_active() {
        let revision = recorded();
        assert_eq!((revision.consent.revision, revision.consent.state), (1, ConsentState::Active));
        assert_eq!(revision.consent.valid, Validity { from: NOW, until: None });
        assert_eq!((revision.recorded_at, revision.consent.recorded_at), (NOW, NOW));
        assert_eq!(revision.recorded_by.as_str(), "send-team");
    }

    #[test]
    fn each_rule_names_its_field() {
        type Change = fn(&mut NewConsent);
        let cases: [(&str, Change); 10] = [
            ("giver_name", |c| c.giver_name = "  ".into()),
            ("giver_name", |c| c.giver_name = "n".repeat(257)),
            ("categories", |c| c.categories = CategorySet::EMPTY),
            ("recipients", |c| c.recipients = Recipients::default()),
            ("purpose", |c| c.purpose = String::new()),
            ("purpose", |c| c.purpose = "p".repeat(MAX_PURPOSE_BYTES + 1)),
            ("special_category_condition", |c| c.special_category_condition = None),
            ("valid.until", |c| c.valid_until = Some(NOW)),
            ("evidence.language", |c| c.evidence.language = "Polish".into()),
            ("evidence.reference", |c| c.evidence.reference = "r".repeat(257)),
        ];
        for (field, change) in cases {
            let mut new = new_consent();
            change(&mut new);
            let refused = record(new, ConsentId("c-1".into()), by("send-team"), NOW, &[], None).unwrap_err();
            assert_eq!(refused.field, field);
        }
        // Not special-category data: no Article 9 condition needed.
        let mut plain = new_consent();
        plain.categories = [Category::EducationPlacement].into_iter().collect();
        plain.special_category_condition = None;
        assert!(record(plain, ConsentId("c-2".into()), by("send-team"), NOW, &[], None).is_ok());
    }

    fn authority_for(role: ConsentGiverRole) -> Option<GiverAuthority> {
        role.needs_authority()
            .then(|| GiverAuthority { by: "Dr Lee, paediatrician".into(), on: NOW.uk_date().unwrap() })
    }

    /// Each role speaks only at the ages the law lets it, with the authority or
    /// evidence it needs.
    #[test]
    fn each_giver_role_speaks_at_its_ages_with_what_it_needs() {
        let today = NOW.uk_date().unwrap();
        let born_years_ago = |years: i16| today.checked_sub(jiff::Span::new().years(years).days(10)).unwrap();
        let ask = |role: ConsentGiverRole, age: i16, authority: Option<GiverAuthority>, reference: &str| {
            let mut new = NewConsent { giver_role: role, authority, ..new_consent() };
            new.evidence.reference = reference.into();
            record(new, ConsentId("c-9".into()), by("gp"), NOW, &[], Some(born_years_ago(age)))
        };
        use ConsentGiverRole as R;
        // (role, an age it may speak at, an age it may not)
        let cases = [
            (R::ParentWithParentalResponsibility, 10, 18),
            (R::LocalAuthority, 17, 18),
            (R::CompetentChild, 13, 16),
            (R::YoungPerson, 16, 15),
            (R::BestInterests, 19, 15),
            (R::Deputy, 16, 15),
            (R::Attorney, 18, 17),
        ];
        for (role, may, may_not) in cases {
            assert!(ask(role, may, authority_for(role), "COP-123").is_ok(), "{role:?} at {may}");
            let refused = ask(role, may_not, authority_for(role), "COP-123").unwrap_err();
            assert_eq!(refused.field, "giver_role", "{role:?} at {may_not}");
            // With no date of birth known, the age is not checked.
            let unknown = NewConsent { giver_role: role, authority: authority_for(role), ..new_consent() };
            let mut unknown = unknown;
            unknown.evidence.reference = "COP-123".into();
            assert!(record(unknown, ConsentId("c-9".into()), by("gp"), NOW, &[], None).is_ok(), "{role:?}");
        }
        // Who judged or decided, and when, for the two roles that need it, and only them.
        assert_eq!(ask(R::CompetentChild, 13, None, "").unwrap_err().field, "authority");
        assert_eq!(ask(R::BestInterests, 19, None, "").unwrap_err().field, "authority");
        let blank = Some(GiverAuthority { by: " ".into(), on: today });
        assert_eq!(ask(R::CompetentChild, 13, blank, "").unwrap_err().field, "authority.by");
        let tomorrow = Some(GiverAuthority { by: "Dr Lee".into(), on: today.tomorrow().unwrap() });
        assert_eq!(ask(R::BestInterests, 19, tomorrow, "").unwrap_err().field, "authority.on");
        let stray = Some(GiverAuthority { by: "Dr Lee".into(), on: today });
        assert_eq!(ask(R::ParentWithParentalResponsibility, 10, stray, "").unwrap_err().field, "authority");
        // A deputy's order and an attorney's power are referenced in the evidence.
        assert_eq!(ask(R::Deputy, 17, None, "").unwrap_err().field, "evidence.reference");
        assert_eq!(ask(R::Attorney, 20, None, " ").unwrap_err().field, "evidence.reference");
    }

    #[test]
    fn once_the_child_decides_about_a_category_a_parent_may_not_consent_to_it() {
        for role in [ConsentGiverRole::YoungPerson, ConsentGiverRole::CompetentChild] {
            let mut own = recorded().consent;
            own.giver_role = role;
            let refused =
                record(new_consent(), ConsentId("c-2".into()), by("gp"), NOW, &[own.clone()], None).unwrap_err();
            assert_eq!(refused.field, "giver_role");
            assert!(refused.reason.contains("communication_needs"), "{refused}");
            let theirs = NewConsent { giver_role: role, authority: authority_for(role), ..new_consent() };
            assert!(record(theirs, ConsentId("c-3".into()), by("gp"), NOW, &[own.clone()], None).is_ok());
            // The local authority holding parental responsibility gives way just as a parent does.
            let council = NewConsent { giver_role: ConsentGiverRole::LocalAuthority, ..new_consent() };
            let refused = record(council, ConsentId("c-5".into()), by("gp"), NOW, &[own.clone()], None).unwrap_err();
            assert_eq!(refused.field, "giver_role");
            // A category they have not decided about is still the parent's to consent to.
            let other =
                NewConsent { categories: [Category::EducationPlacement].into_iter().collect(), ..new_consent() };
            assert!(record(other, ConsentId("c-4".into()), by("gp"), NOW, &[own], None).is_ok());
        }
    }

    #[test]
    fn a_withdrawal_is_the_next_revision_and_only_once() {
        let later = NOW.plus_seconds(60);
        let withdrawn = withdraw(&recorded(), "moved away", evidence(), by("gp"), later).unwrap();
        assert_eq!(withdrawn.consent.revision, 2);
        assert_eq!(withdrawn.consent.state, ConsentState::Withdrawn { at: later });
        assert_eq!(withdrawn.consent.recorded_at, NOW, "the consent's first recording stays");
        assert_eq!((withdrawn.recorded_by.as_str(), withdrawn.recorded_at), ("gp", later));
        assert_eq!(withdrawn.giver_name, "Anna Kowalska");
        assert_eq!(withdraw(&withdrawn, "", evidence(), by("gp"), later), Err(WithdrawalRefused::AlreadyWithdrawn));
        let long = "r".repeat(MAX_PURPOSE_BYTES + 1);
        assert!(matches!(
            withdraw(&recorded(), &long, evidence(), by("gp"), later),
            Err(WithdrawalRefused::Invalid(violation)) if violation.field == "reason"
        ));
    }

    proptest! {
        /// A language is accepted exactly when it is empty or 2 to 3 lower-case letters.
        #[test]
        fn languages_are_iso_639_shaped(language in "[a-zA-Z0-9 ]{0,5}") {
            let ok = language.is_empty()
                || ((2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_lowercase()));
            let checked = check_evidence("evidence", &ConsentEvidence { language, ..evidence() });
            prop_assert_eq!(checked.is_ok(), ok);
        }
    }
}
