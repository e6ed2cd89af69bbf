use proptest::prelude::*;

use super::*;
use crate::{
    AgencyId, CategorySet, ConsentGiverRole, Date, LawfulBasis, Objection, Recipients, RelationshipKind, Sector,
    Validity, WithoutConsent,
};

const T0: Timestamp = Timestamp::from_unix_seconds(1_800_000_000);

fn agency(id: &str, sector: Sector) -> Agency {
    Agency {
        id: AgencyId::parse("id", id).unwrap(),
        name: id.to_owned(),
        sector,
        may_publish: CategorySet::all(),
        may_read: CategorySet::all(),
        may_record_consent: true,
        may_declare_safeguarding: false,
        may_run_ehc_assessments: false,
        suspended: false,
    }
}

fn relationship(agency_id: &str, started: i64, ended: Option<i64>) -> CareRelationship {
    CareRelationship {
        id: RelationshipId(format!("rel-{agency_id}-{started}")),
        agency: AgencyId::parse("id", agency_id).unwrap(),
        kind: RelationshipKind::Enrolment,
        started_at: T0.plus_seconds(started),
        ended_at: ended.map(|seconds| T0.plus_seconds(seconds)),
    }
}

fn consent(id: &str, categories: &[Category], recipients: Recipients) -> Consent {
    Consent {
        id: ConsentId(id.to_owned()),
        revision: 1,
        giver_role: ConsentGiverRole::ParentWithParentalResponsibility,
        categories: categories.iter().copied().collect(),
        recipients,
        purpose: "coordinating support".to_owned(),
        lawful_basis: LawfulBasis::PublicTask,
        valid: Validity { from: T0, until: None },
        state: ConsentState::Active,
        recorded_at: T0,
    }
}

fn to_agencies(ids: &[&str]) -> Recipients {
    Recipients { agencies: ids.iter().map(|id| AgencyId::parse("id", id).unwrap()).collect(), ..Recipients::default() }
}

fn read(agency: &Agency, category: Category, facts: &Facts<'_>, now: Timestamp) -> Decision {
    decide(&AccessRequest { agency, action: Action::Read, category, flag: None }, facts, now)
}

#[test]
fn allows_with_permission_involvement_and_consent_and_names_both() {
    let school = agency("school", Sector::Education);
    let relationships = [relationship("school", 0, None)];
    let consents = [consent("c1", &[Category::CommunicationNeeds], to_agencies(&["school"]))];
    let facts =
        Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections: &[], shares: &[] };
    let decision = read(&school, Category::CommunicationNeeds, &facts, T0.plus_seconds(10));
    assert_eq!(
        decision,
        Decision::Allow(Grant {
            consent: Some((ConsentId("c1".into()), 1)),
            relationship: Some(RelationshipId("rel-school-0".into())),
            ..Grant::default()
        })
    );
}

#[test]
fn each_missing_condition_has_its_reason() {
    let school = agency("school", Sector::Education);
    let active = [relationship("school", 0, None)];
    let later = T0.plus_seconds(100);
    let covering = |edit: &dyn Fn(&mut Consent)| {
        let mut c = consent("c1", &[Category::HealthSummary], to_agencies(&["school"]));
        edit(&mut c);
        c
    };
    struct Case(&'static str, Agency, Vec<CareRelationship>, Vec<Consent>, DenyReason);
    let cases: Vec<Case> = vec![
        Case(
            "suspended",
            Agency { suspended: true, ..school.clone() },
            active.to_vec(),
            vec![covering(&|_| {})],
            DenyReason::AgencySuspended,
        ),
        Case(
            "not permitted",
            Agency { may_read: CategorySet::EMPTY, ..school.clone() },
            active.to_vec(),
            vec![covering(&|_| {})],
            DenyReason::NotPermittedForCategory,
        ),
        Case("no relationship", school.clone(), vec![], vec![covering(&|_| {})], DenyReason::NotInvolved),
        Case(
            "ended relationship",
            school.clone(),
            vec![relationship("school", 0, Some(50))],
            vec![covering(&|_| {})],
            DenyReason::NotInvolved,
        ),
        Case(
            "another agency's relationship",
            school.clone(),
            vec![relationship("gp", 0, None)],
            vec![covering(&|_| {})],
            DenyReason::NotInvolved,
        ),
        Case("no consent at all", school.clone(), active.to_vec(), vec![], DenyReason::NoConsent),
        Case(
            "consent for another category",
            school.clone(),
            active.to_vec(),
            vec![covering(&|c| c.categories = [Category::SendSupport].into_iter().collect())],
            DenyReason::NoConsent,
        ),
        Case(
            "consent for another agency",
            school.clone(),
            active.to_vec(),
            vec![covering(&|c| c.recipients = to_agencies(&["gp"]))],
            DenyReason::NoConsent,
        ),
        Case(
            "withdrawn",
            school.clone(),
            active.to_vec(),
            vec![covering(&|c| c.state = ConsentState::Withdrawn { at: T0.plus_seconds(60) })],
            DenyReason::ConsentWithdrawn,
        ),
        Case(
            "expired",
            school.clone(),
            active.to_vec(),
            vec![covering(&|c| c.valid.until = Some(T0.plus_seconds(100)))],
            DenyReason::ConsentExpired,
        ),
        Case(
            "not yet valid",
            school.clone(),
            active.to_vec(),
            vec![covering(&|c| c.valid.from = T0.plus_seconds(101))],
            DenyReason::ConsentNotYetValid,
        ),
        Case(
            "sector consent with the agency excluded",
            school.clone(),
            active.to_vec(),
            vec![covering(&|c| {
                c.recipients = Recipients {
                    sectors: vec![Sector::Education],
                    excluded: vec![AgencyId::parse("id", "school").unwrap()],
                    ..Recipients::default()
                }
            })],
            DenyReason::RecipientExcluded,
        ),
    ];
    for Case(name, agency, relationships, consents, expected) in cases {
        let facts = Facts {
            relationships: &relationships,
            consents: &consents,
            date_of_birth: None,
            objections: &[],
            shares: &[],
        };
        assert_eq!(read(&agency, Category::HealthSummary, &facts, later), Decision::Deny(expected), "{name}");
    }
}

#[test]
fn a_sector_consent_covers_every_agency_of_the_sector() {
    let gp = agency("gp", Sector::Health);
    let relationships = [relationship("gp", 0, None)];
    let consents = [consent(
        "c1",
        &[Category::HealthSummary],
        Recipients { sectors: vec![Sector::Health], ..Recipients::default() },
    )];
    let facts =
        Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections: &[], shares: &[] };
    assert!(read(&gp, Category::HealthSummary, &facts, T0).is_allowed());
    let school = agency("school", Sector::Education);
    let relationships = [relationship("school", 0, None)];
    let facts =
        Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections: &[], shares: &[] };
    assert_eq!(read(&school, Category::HealthSummary, &facts, T0), Decision::Deny(DenyReason::NoConsent));
}

/// The integrated care board and adult social care are sectors of their own: a consent
/// for health providers or children's social care does not reach them, and one naming
/// them reaches no one else.
#[test]
fn the_icb_and_adult_social_care_are_reached_only_by_consents_naming_them() {
    let for_sectors = |sectors: Vec<Sector>| {
        [consent("c1", &[Category::HealthSummary], Recipients { sectors, ..Recipients::default() })]
    };
    let decide_for = |id: &str, sector: Sector, consents: &[Consent]| {
        let relationships = [relationship(id, 0, None)];
        let facts =
            Facts { relationships: &relationships, consents, date_of_birth: None, objections: &[], shares: &[] };
        read(&agency(id, sector), Category::HealthSummary, &facts, T0)
    };
    let health_and_children = for_sectors(vec![Sector::Health, Sector::SocialCare]);
    assert_eq!(decide_for("icb", Sector::Icb, &health_and_children), Decision::Deny(DenyReason::NoConsent));
    assert_eq!(
        decide_for("adult-social-care", Sector::AdultSocialCare, &health_and_children),
        Decision::Deny(DenyReason::NoConsent)
    );
    let adult_services = for_sectors(vec![Sector::Icb, Sector::AdultSocialCare]);
    assert!(decide_for("icb", Sector::Icb, &adult_services).is_allowed());
    assert!(decide_for("adult-social-care", Sector::AdultSocialCare, &adult_services).is_allowed());
    assert_eq!(decide_for("gp", Sector::Health, &adult_services), Decision::Deny(DenyReason::NoConsent));
    assert_eq!(decide_for("social-care", Sector::SocialCare, &adult_services), Decision::Deny(DenyReason::NoConsent));
}

/// Parental responsibility ends at 18: from the 18th birthday (as a date in the UK) a
/// parent's consent allows nothing, while the young person's own still does. Without
/// a date of birth nothing lapses.
#[test]
fn a_parents_consent_lapses_on_the_18th_birthday() {
    // T0 is 15 January 2027, 08:00 UTC.
    let school = agency("school", Sector::Education);
    let relationships = [relationship("school", 0, None)];
    let parents = [consent("c1", &[Category::SendSupport], to_agencies(&["school"]))];
    let decide_on = |consents: &[Consent], born: Option<Date>, now: Timestamp| {
        let facts =
            Facts { relationships: &relationships, consents, date_of_birth: born, objections: &[], shares: &[] };
        read(&school, Category::SendSupport, &facts, now)
    };
    let eighteen_today = jiff::civil::date(2009, 1, 15);
    let eighteen_tomorrow = jiff::civil::date(2009, 1, 16);
    assert_eq!(decide_on(&parents, Some(eighteen_today), T0), Decision::Deny(DenyReason::ConsentLapsed));
    assert!(decide_on(&parents, Some(eighteen_tomorrow), T0).is_allowed());
    assert_eq!(
        decide_on(&parents, Some(eighteen_tomorrow), T0.plus_seconds(86_400)),
        Decision::Deny(DenyReason::ConsentLapsed)
    );
    assert!(decide_on(&parents, None, T0).is_allowed());
    // The young person's own consent is theirs whatever their age.
    let mut own = consent("c2", &[Category::SendSupport], to_agencies(&["school"]));
    own.giver_role = ConsentGiverRole::YoungPerson;
    let both = [parents[0].clone(), own];
    let Decision::Allow(grant) = decide_on(&both, Some(eighteen_today), T0) else {
        panic!("the young person's consent allows")
    };
    assert_eq!(grant.consent, Some((ConsentId("c2".to_owned()), 1)));
}

#[test]
fn validity_bounds_are_inclusive_from_and_exclusive_until() {
    let school = agency("school", Sector::Education);
    let relationships = [relationship("school", 0, None)];
    let mut bounded = consent("c1", &[Category::SendSupport], to_agencies(&["school"]));
    bounded.valid = Validity { from: T0.plus_seconds(10), until: Some(T0.plus_seconds(20)) };
    let consents = [bounded];
    let facts =
        Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections: &[], shares: &[] };
    let at = |seconds| read(&school, Category::SendSupport, &facts, T0.plus_seconds(seconds));
    assert_eq!(at(9), Decision::Deny(DenyReason::ConsentNotYetValid));
    assert!(at(10).is_allowed());
    assert!(at(19).is_allowed());
    assert_eq!(at(20), Decision::Deny(DenyReason::ConsentExpired));
}

/// The child's or young person's own decision supersedes a parent's for the categories
/// it covers, and only those: given, or since withdrawn, it is theirs.
#[test]
fn an_own_decision_supersedes_a_parents_for_the_categories_it_covers() {
    let gp = agency("gp", Sector::Health);
    let relationships = [relationship("gp", 0, None)];
    let parent = consent("parent", &[Category::HealthSummary, Category::CommunicationNeeds], to_agencies(&["gp"]));
    for role in [ConsentGiverRole::YoungPerson, ConsentGiverRole::CompetentChild] {
        let mut own = consent("own", &[Category::HealthSummary, Category::SendSupport], to_agencies(&["school"]));
        own.giver_role = role;
        own.recorded_at = T0.plus_seconds(50);
        let consents = [parent.clone(), own.clone()];
        let facts = Facts {
            relationships: &relationships,
            consents: &consents,
            date_of_birth: None,
            objections: &[],
            shares: &[],
        };
        // Before they decided, the parent's consent applies.
        assert!(read(&gp, Category::HealthSummary, &facts, T0.plus_seconds(10)).is_allowed(), "{role:?}");
        // After, not for what they decided about (they named the school, not the GP) ...
        assert_eq!(
            read(&gp, Category::HealthSummary, &facts, T0.plus_seconds(60)),
            Decision::Deny(DenyReason::ConsentSuperseded),
            "{role:?}"
        );
        // ... and still for what they did not.
        assert!(read(&gp, Category::CommunicationNeeds, &facts, T0.plus_seconds(60)).is_allowed(), "{role:?}");
        // A withdrawn decision is still theirs.
        own.state = ConsentState::Withdrawn { at: T0.plus_seconds(55) };
        let consents = [parent.clone(), own];
        let facts = Facts {
            relationships: &relationships,
            consents: &consents,
            date_of_birth: None,
            objections: &[],
            shares: &[],
        };
        assert_eq!(
            read(&gp, Category::HealthSummary, &facts, T0.plus_seconds(60)),
            Decision::Deny(DenyReason::ConsentSuperseded),
            "{role:?}"
        );
    }
}

#[test]
fn publish_needs_permission_only() {
    let hospital =
        Agency { may_publish: [Category::HealthSummary].into_iter().collect(), ..agency("hospital", Sector::Health) };
    let facts = Facts::default();
    let publish = |agency: &Agency, category| {
        decide(&AccessRequest { agency, action: Action::Publish, category, flag: None }, &facts, T0)
    };
    assert_eq!(publish(&hospital, Category::HealthSummary), Decision::Allow(Grant::default()));
    assert_eq!(publish(&hospital, Category::SendSupport), Decision::Deny(DenyReason::NotPermittedForCategory));
    let suspended = Agency { suspended: true, ..hospital };
    assert_eq!(publish(&suspended, Category::HealthSummary), Decision::Deny(DenyReason::AgencySuspended));
}

#[test]
fn of_several_covering_consents_the_latest_recorded_is_named() {
    let school = agency("school", Sector::Education);
    let relationships = [relationship("school", 0, None)];
    let older = consent("a-older", &[Category::SendSupport], to_agencies(&["school"]));
    let mut newer = consent("b-newer", &[Category::SendSupport], to_agencies(&["school"]));
    newer.recorded_at = T0.plus_seconds(5);
    newer.revision = 3;
    let consents = [newer, older];
    let facts =
        Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections: &[], shares: &[] };
    let Decision::Allow(grant) = read(&school, Category::SendSupport, &facts, T0.plus_seconds(10)) else {
        panic!("expected allow");
    };
    assert_eq!(grant.consent, Some((ConsentId("b-newer".into()), 3)));
}

#[test]
fn reason_codes_are_distinct_snake_case() {
    let all = DenyReason::ALL;
    let codes: std::collections::HashSet<_> = all.iter().map(|reason| reason.code()).collect();
    assert_eq!(codes.len(), all.len());
    assert!(codes.iter().all(|code| code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
}

fn objection(id: u32, categories: &[Category], agencies: &[&str], sectors: &[Sector]) -> Objection {
    Objection {
        id: crate::ObjectionId(id),
        revision: 1,
        giver_role: ConsentGiverRole::ParentWithParentalResponsibility,
        categories: categories.iter().copied().collect(),
        agencies: agencies.iter().map(|id| AgencyId::parse("id", id).unwrap()).collect(),
        sectors: sectors.to_vec(),
        state: crate::ObjectionState::Active,
        recorded_at: T0.plus_seconds(5),
    }
}

#[test]
fn an_objection_refuses_what_a_consent_allows_from_the_moment_it_is_raised_until_withdrawn() {
    let school = agency("school", Sector::Education);
    let relationships = [relationship("school", 0, None)];
    let consents = [consent("c1", &[Category::CommunicationNeeds, Category::HealthSummary], to_agencies(&["school"]))];
    let objections = [objection(1, &[Category::HealthSummary], &["school"], &[])];
    let facts = Facts {
        relationships: &relationships,
        consents: &consents,
        date_of_birth: None,
        objections: &objections,
        shares: &[],
    };
    // Before it was raised, the consent allows.
    assert!(read(&school, Category::HealthSummary, &facts, T0.plus_seconds(4)).is_allowed());
    assert_eq!(
        read(&school, Category::HealthSummary, &facts, T0.plus_seconds(5)),
        Decision::Deny(DenyReason::Objection)
    );
    // A category it does not name still flows.
    assert!(read(&school, Category::CommunicationNeeds, &facts, T0.plus_seconds(5)).is_allowed());
    // Withdrawn, it refuses nothing from the withdrawal on.
    let mut withdrawn = objections.clone();
    withdrawn[0].state = crate::ObjectionState::Withdrawn { at: T0.plus_seconds(20) };
    let facts = Facts { objections: &withdrawn, shares: &[], ..facts };
    assert_eq!(
        read(&school, Category::HealthSummary, &facts, T0.plus_seconds(19)),
        Decision::Deny(DenyReason::Objection)
    );
    assert!(read(&school, Category::HealthSummary, &facts, T0.plus_seconds(20)).is_allowed());
}

#[test]
fn an_objection_names_categories_agencies_or_sectors_and_empty_lists_mean_every_one() {
    let school = agency("school", Sector::Education);
    let hospital = agency("hospital", Sector::Health);
    let relationships = [relationship("school", 0, None), relationship("hospital", 0, None)];
    let consents = [consent(
        "c1",
        &[Category::CommunicationNeeds],
        Recipients { sectors: vec![Sector::Education, Sector::Health], ..Recipients::default() },
    )];
    let now = T0.plus_seconds(10);
    let outcomes = |objections: &[Objection]| {
        let facts =
            Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections, shares: &[] };
        [&school, &hospital].map(|agency| read(agency, Category::CommunicationNeeds, &facts, now).is_allowed())
    };
    assert_eq!(outcomes(&[]), [true, true]);
    // To one sector, every category.
    assert_eq!(outcomes(&[objection(1, &[], &[], &[Sector::Health])]), [true, false]);
    // To one agency by name.
    assert_eq!(outcomes(&[objection(1, &[], &["school"], &[])]), [false, true]);
    // To one category, every recipient.
    assert_eq!(outcomes(&[objection(1, &[Category::CommunicationNeeds], &[], &[])]), [false, false]);
    // To another category: nothing changes.
    assert_eq!(outcomes(&[objection(1, &[Category::HealthSummary], &[], &[])]), [true, true]);
}

#[test]
fn an_objection_is_the_reason_given_even_when_no_consent_covers_either() {
    let school = agency("school", Sector::Education);
    let relationships = [relationship("school", 0, None)];
    let objections = [objection(1, &[], &["school"], &[])];
    let facts = Facts {
        relationships: &relationships,
        consents: &[],
        date_of_birth: None,
        objections: &objections,
        shares: &[],
    };
    assert_eq!(
        read(&school, Category::HealthSummary, &facts, T0.plus_seconds(10)),
        Decision::Deny(DenyReason::Objection)
    );
    // Publishing shares with the broker alone, so an objection does not stop it.
    let publish =
        AccessRequest { agency: &school, action: Action::Publish, category: Category::HealthSummary, flag: None };
    assert!(decide(&publish, &facts, T0.plus_seconds(10)).is_allowed());
}

fn cp_flag() -> crate::protection::ProtectionFlag {
    crate::protection::ProtectionFlag {
        level: crate::protection::FlagLevel::ChildProtection,
        publisher: AgencyId::parse("id", "social-care").unwrap(),
        publisher_sector: Sector::SocialCare,
        lawful_basis: LawfulBasis::PublicTask,
        condition: crate::SpecialCategoryCondition::HealthOrSocialCare,
    }
}

#[test]
fn a_current_flag_reaches_involved_health_agencies_without_consent_and_overrides_an_objection() {
    use crate::protection::FlagShare;
    let hospital = agency("hospital", Sector::Health);
    let school = agency("school", Sector::Education);
    let relationships = [relationship("hospital", 0, None), relationship("school", 0, None)];
    let objections = [objection(1, &[], &["hospital"], &[])];
    let flag = cp_flag();
    let share = FlagShare { flag: &flag, current: true, to_sectors: &[Sector::Health] };
    let now = T0.plus_seconds(10);
    let ask = |agency: &Agency, facts: &Facts<'_>, share: FlagShare<'_>| {
        let request = AccessRequest {
            agency,
            action: Action::Receive,
            category: Category::SocialCareInvolvement,
            flag: Some(share),
        };
        decide(&request, facts, now)
    };
    let facts = Facts {
        relationships: &relationships,
        consents: &[],
        date_of_birth: None,
        objections: &objections,
        shares: &[],
    };
    assert_eq!(
        ask(&hospital, &facts, share),
        Decision::Allow(Grant {
            consent: None,
            relationship: Some(RelationshipId("rel-hospital-0".into())),
            without_consent: Some(WithoutConsent::ProtectionFlag {
                level: crate::protection::FlagLevel::ChildProtection,
                lawful_basis: LawfulBasis::PublicTask,
                condition: crate::SpecialCategoryCondition::HealthOrSocialCare,
            }),
            overridden: vec![crate::ObjectionId(1)],
        })
    );
    // Not to a sector the deployment does not share flags with, nor once superseded,
    // nor to an agency not involved, nor without the permission to read the category.
    assert_eq!(ask(&school, &facts, share), Decision::Deny(DenyReason::NoConsent));
    assert_eq!(ask(&hospital, &facts, FlagShare { current: false, ..share }), Decision::Deny(DenyReason::Objection));
    let uninvolved = Facts { relationships: &[], ..facts };
    assert_eq!(ask(&hospital, &uninvolved, share), Decision::Deny(DenyReason::NotInvolved));
    let unpermitted = Agency { may_read: CategorySet::EMPTY, ..hospital.clone() };
    assert_eq!(ask(&unpermitted, &facts, share), Decision::Deny(DenyReason::NotPermittedForCategory));
}

#[test]
fn a_share_in_force_allows_its_recipients_without_consent_until_it_expires_or_ends() {
    use crate::safeguarding::{SafeguardingShare, ShareId, ShareReason, ShareState};
    let hospital = agency("hospital", Sector::Health);
    let gp = agency("gp", Sector::Health);
    let relationships = [relationship("hospital", 0, None), relationship("gp", 0, None)];
    let objections = [objection(1, &[], &["hospital"], &[])];
    let share = SafeguardingShare {
        id: ShareId(1),
        revision: 2,
        reason: ShareReason::Section47Enquiry,
        categories: [Category::HealthSummary].into_iter().collect(),
        agencies: vec![hospital.id.clone()],
        sectors: Vec::new(),
        starts: T0,
        expires: T0.plus_seconds(100),
        declared_by: AgencyId::parse("id", "social-care").unwrap(),
        state: ShareState::Active,
    };
    let shares = [share.clone()];
    let facts = Facts {
        relationships: &relationships,
        consents: &[],
        date_of_birth: None,
        objections: &objections,
        shares: &shares,
    };
    assert_eq!(
        read(&hospital, Category::HealthSummary, &facts, T0.plus_seconds(10)),
        Decision::Allow(Grant {
            consent: None,
            relationship: Some(RelationshipId("rel-hospital-0".into())),
            without_consent: Some(WithoutConsent::SafeguardingShare {
                id: ShareId(1),
                revision: 2,
                declared_by: AgencyId::parse("id", "social-care").unwrap(),
            }),
            overridden: vec![crate::ObjectionId(1)],
        })
    );
    assert_eq!(read(&gp, Category::HealthSummary, &facts, T0.plus_seconds(10)), Decision::Deny(DenyReason::NoConsent));
    assert_eq!(
        read(&hospital, Category::SendSupport, &facts, T0.plus_seconds(10)),
        Decision::Deny(DenyReason::Objection)
    );
    assert_eq!(
        read(&hospital, Category::HealthSummary, &facts, T0.plus_seconds(100)),
        Decision::Deny(DenyReason::Objection),
        "expired"
    );
    let ended = [SafeguardingShare { state: ShareState::Ended { at: T0.plus_seconds(20) }, ..share }];
    let facts = Facts { shares: &ended, ..facts };
    assert_eq!(
        read(&hospital, Category::HealthSummary, &facts, T0.plus_seconds(20)),
        Decision::Deny(DenyReason::Objection),
        "ended"
    );
    let uninvolved = Facts { relationships: &[], ..facts };
    assert_eq!(
        read(&hospital, Category::HealthSummary, &uninvolved, T0.plus_seconds(10)),
        Decision::Deny(DenyReason::NotInvolved)
    );
}

// ---- properties ----

const AGENCIES: [(&str, Sector); 6] = [
    ("hospital", Sector::Health),
    ("gp", Sector::Health),
    ("school", Sector::Education),
    ("social-care", Sector::SocialCare),
    ("adult-social-care", Sector::AdultSocialCare),
    ("icb", Sector::Icb),
];

fn arb_agency_id() -> impl Strategy<Value = AgencyId> {
    (0..AGENCIES.len()).prop_map(|index| AgencyId::parse("id", AGENCIES[index].0).unwrap())
}

fn arb_category_set() -> impl Strategy<Value = CategorySet> {
    proptest::collection::vec(0..Category::ALL.len(), 0..4)
        .prop_map(|indexes| indexes.into_iter().map(|i| Category::ALL[i]).collect())
}

fn arb_agency() -> impl Strategy<Value = Agency> {
    (0..AGENCIES.len(), arb_category_set(), any::<bool>()).prop_map(|(index, may_read, suspended)| Agency {
        may_read,
        suspended,
        ..agency(AGENCIES[index].0, AGENCIES[index].1)
    })
}

fn arb_relationship() -> impl Strategy<Value = CareRelationship> {
    (arb_agency_id(), 0i64..100, proptest::option::of(0i64..100)).prop_map(|(agency_id, started, ended)| {
        CareRelationship {
            id: RelationshipId(format!("rel-{agency_id}-{started}")),
            agency: agency_id,
            kind: RelationshipKind::Referral,
            started_at: T0.plus_seconds(started),
            ended_at: ended.map(|seconds| T0.plus_seconds(started + seconds)),
        }
    })
}

fn arb_consent() -> impl Strategy<Value = Consent> {
    let recipients = (
        proptest::collection::vec(arb_agency_id(), 0..3),
        proptest::collection::vec(proptest::sample::select(Sector::ALL.to_vec()), 0..2),
        proptest::collection::vec(arb_agency_id(), 0..2),
    )
        .prop_map(|(agencies, sectors, excluded)| Recipients { agencies, sectors, excluded });
    let role = proptest::sample::select(ConsentGiverRole::ALL.to_vec());
    (
        0u32..1000,
        arb_category_set(),
        recipients,
        role,
        0i64..100,
        proptest::option::of(0i64..100),
        proptest::option::of(0i64..100),
        0i64..100,
    )
        .prop_map(|(id, categories, recipients, giver_role, from, length, withdrawn, recorded)| Consent {
            id: ConsentId(format!("c{id}")),
            revision: 1,
            giver_role,
            categories,
            recipients,
            purpose: String::new(),
            lawful_basis: LawfulBasis::PublicTask,
            valid: Validity { from: T0.plus_seconds(from), until: length.map(|length| T0.plus_seconds(from + length)) },
            state: withdrawn.map_or(ConsentState::Active, |at| ConsentState::Withdrawn { at: T0.plus_seconds(at) }),
            recorded_at: T0.plus_seconds(recorded),
        })
}

fn arb_case() -> impl Strategy<Value = (Agency, Vec<CareRelationship>, Vec<Consent>, usize, i64, bool)> {
    (
        arb_agency(),
        proptest::collection::vec(arb_relationship(), 0..4),
        proptest::collection::vec(arb_consent(), 0..5),
        0..Category::ALL.len(),
        0i64..200,
        any::<bool>(),
    )
}

proptest! {
    /// Nothing is read or received without permission, involvement and a named consent
    /// that is active, current, and covers the category and the agency.
    #[test]
    fn nothing_allowed_without_permission_involvement_and_covering_consent(
        (agency, relationships, consents, category_index, now, receive) in arb_case()
    ) {
        let category = Category::ALL[category_index];
        let now = T0.plus_seconds(now);
        let action = if receive { Action::Receive } else { Action::Read };
        let facts = Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections: &[], shares: &[] };
        if let Decision::Allow(grant) = decide(&AccessRequest { agency: &agency, action, category, flag: None }, &facts, now) {
            prop_assert!(!agency.suspended);
            prop_assert!(agency.may_read.contains(category));
            let relationship_id = grant.relationship.expect("a read names its relationship");
            prop_assert!(relationships.iter().any(|r| r.id == relationship_id && r.agency == agency.id && r.is_active_at(now)));
            let (consent_id, revision) = grant.consent.expect("a read names its consent");
            let consent = consents.iter().find(|c| c.id == consent_id && c.revision == revision).expect("named consent exists");
            prop_assert!(consent.categories.contains(category));
            prop_assert!(!consent.recipients.excluded.contains(&agency.id));
            prop_assert!(consent.recipients.agencies.contains(&agency.id) || consent.recipients.sectors.contains(&agency.sector));
            let withdrawn = matches!(consent.state, ConsentState::Withdrawn { at } if at <= now);
            prop_assert!(!withdrawn);
            prop_assert!(consent.valid.from <= now);
            prop_assert!(consent.valid.until.is_none_or(|until| now < until));
        }
    }

    /// Withdrawing a consent, making it expire, or ending a relationship can only turn
    /// allow into deny, never deny into allow.
    #[test]
    fn withdrawal_expiry_and_ending_only_turn_allow_into_deny(
        (agency, relationships, consents, category_index, now, receive) in arb_case(),
        pick in any::<prop::sample::Index>(),
        change in 0u8..3,
    ) {
        let category = Category::ALL[category_index];
        let now = T0.plus_seconds(now);
        let action = if receive { Action::Receive } else { Action::Read };
        let request = AccessRequest { agency: &agency, action, category, flag: None };
        let before = decide(&request, &Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections: &[], shares: &[] }, now);

        let mut consents_after = consents.clone();
        let mut relationships_after = relationships.clone();
        match change {
            0 if !consents_after.is_empty() => {
                let index = pick.index(consents_after.len());
                consents_after[index].state = ConsentState::Withdrawn { at: now };
            }
            1 if !consents_after.is_empty() => {
                let index = pick.index(consents_after.len());
                consents_after[index].valid.until = Some(now);
            }
            _ if !relationships_after.is_empty() => {
                let index = pick.index(relationships_after.len());
                relationships_after[index].ended_at = Some(now);
            }
            _ => {}
        }
        let after = decide(&request, &Facts { relationships: &relationships_after, consents: &consents_after, date_of_birth: None, objections: &[], shares: &[] }, now);
        prop_assert!(!after.is_allowed() || before.is_allowed(), "a restriction allowed what was denied: {:?} -> {:?}", before, after);
    }

    /// Once the child is 18, whatever else is true, nothing is allowed on a parent's
    /// consent, or the local authority's under a care order.
    #[test]
    fn a_lapsed_parental_consent_never_allows_anything(
        (agency, relationships, consents, category_index, now, receive) in arb_case(),
        years_past_eighteen in 0i16..8,
        day_of_year in 0i64..365,
    ) {
        let category = Category::ALL[category_index];
        let now = T0.plus_seconds(now);
        let today = now.uk_date().unwrap();
        let born = today
            .checked_sub(jiff::Span::new().years(18 + years_past_eighteen).days(day_of_year))
            .unwrap();
        let action = if receive { Action::Receive } else { Action::Read };
        let facts = Facts { relationships: &relationships, consents: &consents, date_of_birth: Some(born), objections: &[], shares: &[] };
        if let Decision::Allow(grant) = decide(&AccessRequest { agency: &agency, action, category, flag: None }, &facts, now) {
            let (consent_id, revision) = grant.consent.expect("a read names its consent");
            let consent = consents.iter().find(|c| c.id == consent_id && c.revision == revision).expect("named consent exists");
            prop_assert!(!consent.giver_role.holds_parental_responsibility(), "{:?}", consent.giver_role);
        }
    }

    /// Once the child or young person has decided about a category themselves, nothing
    /// of it is allowed on a parent's (or the local authority's) consent.
    #[test]
    fn an_own_decision_leaves_no_parent_consent_effective_for_its_categories(
        (agency, relationships, consents, category_index, now, receive) in arb_case()
    ) {
        let category = Category::ALL[category_index];
        let now = T0.plus_seconds(now);
        let action = if receive { Action::Receive } else { Action::Read };
        let facts = Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections: &[], shares: &[] };
        let decided = crate::consent::own_decision_covers(&consents, category, now);
        if let (true, Decision::Allow(grant)) = (decided, decide(&AccessRequest { agency: &agency, action, category, flag: None }, &facts, now)) {
            let (consent_id, revision) = grant.consent.expect("a read names its consent");
            let consent = consents.iter().find(|c| c.id == consent_id && c.revision == revision).expect("named consent exists");
            prop_assert!(!consent.giver_role.holds_parental_responsibility(), "{:?}", consent.giver_role);
        }
    }

    /// Without any consent, or without any relationship, nothing is ever read.
    #[test]
    fn default_deny((agency, relationships, consents, category_index, now, _receive) in arb_case()) {
        let category = Category::ALL[category_index];
        let now = T0.plus_seconds(now);
        let request = AccessRequest { agency: &agency, action: Action::Read, category, flag: None };
        let without_consent = Facts { relationships: &relationships, consents: &[], date_of_birth: None, objections: &[], shares: &[] };
        let without_relationship = Facts { relationships: &[], consents: &consents, date_of_birth: None, objections: &[], shares: &[] };
        prop_assert!(!decide(&request, &without_consent, now).is_allowed());
        prop_assert!(!decide(&request, &without_relationship, now).is_allowed());
    }
}

fn arb_objection() -> impl Strategy<Value = Objection> {
    (
        1u32..20,
        arb_category_set(),
        proptest::collection::vec(arb_agency_id(), 0..2),
        proptest::collection::vec(proptest::sample::select(Sector::ALL.to_vec()), 0..2),
        0i64..150,
        proptest::option::of(0i64..150),
    )
        .prop_map(|(id, categories, agencies, sectors, recorded, withdrawn)| Objection {
            id: crate::ObjectionId(id),
            revision: if withdrawn.is_some() { 2 } else { 1 },
            giver_role: ConsentGiverRole::ParentWithParentalResponsibility,
            categories,
            agencies,
            sectors,
            state: withdrawn.map_or(crate::ObjectionState::Active, |after| crate::ObjectionState::Withdrawn {
                at: T0.plus_seconds(recorded + after),
            }),
            recorded_at: T0.plus_seconds(recorded),
        })
}

proptest! {
    /// Objections only narrow: whatever is allowed with them is allowed without them,
    /// by the same consent and relationship, and nothing a standing objection covers
    /// is ever allowed.
    #[test]
    fn an_objection_never_widens_access(
        (agency, relationships, consents, category_index, now, receive) in arb_case(),
        objections in proptest::collection::vec(arb_objection(), 0..4),
    ) {
        let category = Category::ALL[category_index];
        let now = T0.plus_seconds(now);
        let action = if receive { Action::Receive } else { Action::Read };
        let request = AccessRequest { agency: &agency, action, category, flag: None };
        let without = decide(&request, &Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections: &[], shares: &[] }, now);
        let with = decide(&request, &Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections: &objections, shares: &[] }, now);
        if with.is_allowed() {
            prop_assert_eq!(&with, &without);
        }
        let covered = objections.iter().any(|objection| objection.covers(&agency, category, now));
        if covered {
            prop_assert!(!with.is_allowed());
        }
        // Where no objection covers the access, objections change nothing at all.
        if !covered {
            prop_assert_eq!(with, without);
        }
    }
}

fn arb_share() -> impl Strategy<Value = crate::safeguarding::SafeguardingShare> {
    (
        1u32..5,
        arb_category_set(),
        proptest::collection::vec(arb_agency_id(), 0..2),
        proptest::collection::vec(proptest::sample::select(Sector::ALL.to_vec()), 0..2),
        0i64..150,
        1i64..100,
        proptest::option::of(0i64..200),
    )
        .prop_map(|(id, categories, agencies, sectors, starts, length, ended)| {
            crate::safeguarding::SafeguardingShare {
                id: crate::safeguarding::ShareId(id),
                revision: 1,
                reason: crate::safeguarding::ShareReason::RiskOfSignificantHarm,
                categories,
                agencies,
                sectors,
                starts: T0.plus_seconds(starts),
                expires: T0.plus_seconds(starts + length),
                declared_by: AgencyId::parse("id", "social-care").unwrap(),
                state: ended.map_or(crate::safeguarding::ShareState::Active, |at| {
                    crate::safeguarding::ShareState::Ended { at: T0.plus_seconds(at) }
                }),
            }
        })
}

proptest! {
    /// Nothing is allowed without one of a covering consent or a current flag shared
    /// with the agency's sector; a flag allows exactly that, with a relationship, never
    /// to its publisher, and names every objection it overrides.
    #[test]
    fn nothing_is_allowed_without_a_consent_a_share_in_force_or_a_current_flag(
        (agency, relationships, consents, category_index, now, receive) in arb_case(),
        objections in proptest::collection::vec(arb_objection(), 0..3),
        shares in proptest::collection::vec(arb_share(), 0..3),
        flagged in any::<bool>(),
        current in any::<bool>(),
        publisher_index in 0..AGENCIES.len(),
        to_sectors in proptest::collection::vec(proptest::sample::select(Sector::ALL.to_vec()), 0..3),
    ) {
        let category = Category::ALL[category_index];
        let now = T0.plus_seconds(now);
        let action = if receive { Action::Receive } else { Action::Read };
        let (publisher, publisher_sector) = AGENCIES[publisher_index];
        let flag = crate::protection::ProtectionFlag {
            publisher: AgencyId::parse("id", publisher).unwrap(),
            publisher_sector,
            ..cp_flag()
        };
        let share = flagged.then_some(crate::protection::FlagShare { flag: &flag, current, to_sectors: &to_sectors });
        let facts = Facts { relationships: &relationships, consents: &consents, date_of_birth: None, objections: &objections, shares: &shares };
        let decision = decide(&AccessRequest { agency: &agency, action, category, flag: share }, &facts, now);
        let Decision::Allow(grant) = decision else { return Ok(()) };
        prop_assert!(grant.relationship.is_some());
        let covering: Vec<_> = objections.iter().filter(|o| o.covers(&agency, category, now)).map(|o| o.id).collect();
        match grant.without_consent {
            Some(WithoutConsent::SafeguardingShare { id, revision, .. }) => {
                let used = shares.iter().find(|s| s.id == id && s.revision == revision).expect("the share named exists");
                prop_assert!(used.in_force(now));
                prop_assert!(used.categories.contains(category));
                prop_assert!(used.agencies.contains(&agency.id) || used.sectors.contains(&agency.sector));
                prop_assert!(grant.consent.is_none());
                prop_assert_eq!(grant.overridden, covering);
            }
            Some(WithoutConsent::ProtectionFlag { .. }) => {
                prop_assert!(!shares.iter().any(|s| s.covers(&agency, category, now)), "a share comes first");
                prop_assert!(flagged && current);
                prop_assert_eq!(publisher_sector, Sector::SocialCare);
                prop_assert!(to_sectors.contains(&agency.sector));
                prop_assert_ne!(agency.id.as_str(), publisher);
                prop_assert!(grant.consent.is_none());
                prop_assert_eq!(grant.overridden, covering);
            }
            None => {
                // Allowed by a consent: exactly what it would be without the flag or shares.
                let without_shares = Facts { shares: &[], ..facts };
                let without = decide(&AccessRequest { agency: &agency, action, category, flag: None }, &without_shares, now);
                prop_assert_eq!(Decision::Allow(grant), without);
            }
        }
    }
}
