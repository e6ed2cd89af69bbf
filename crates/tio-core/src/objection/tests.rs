use proptest::prelude::*;

use super::*;
use crate::ConsentMethod;

const NOW: Timestamp = Timestamp::from_unix_seconds(1_800_000_000);

fn evidence() -> ConsentEvidence {
    ConsentEvidence {
        method: ConsentMethod::InPerson,
        reference: "MEETING-3".into(),
        language: "pl".into(),
        interpreter_present: true,
        notes: String::new(),
    }
}

fn by(agency: &str) -> Recorder {
    Recorder { agency: AgencyId::parse("id", agency).unwrap(), professional: "sw-okafor".into() }
}

fn new_objection() -> NewObjection {
    NewObjection {
        giver_role: ConsentGiverRole::ParentWithParentalResponsibility,
        giver_name: "Anna Kowalska".into(),
        categories: [Category::HealthSummary].into_iter().collect(),
        agencies: vec![AgencyId::parse("id", "school").unwrap()],
        sectors: Vec::new(),
        reason: "The school does not need Amy's diagnoses".into(),
        evidence: evidence(),
    }
}

#[test]
fn a_new_objection_is_revision_one_active_from_now() {
    let revision = record(new_objection(), ObjectionId(1), by("social-care"), NOW).unwrap();
    assert_eq!((revision.objection.revision, revision.objection.state), (1, ObjectionState::Active));
    assert_eq!((revision.recorded_at, revision.objection.recorded_at), (NOW, NOW));
    assert_eq!(revision.recorded_by.as_str(), "social-care");
    assert_eq!(revision.objection.id.to_string(), "o-1");
}

#[test]
fn each_rule_names_its_field() {
    type Change = fn(&mut NewObjection);
    let cases: [(&str, Change); 6] = [
        ("giver_name", |o| o.giver_name = " ".into()),
        ("giver_name", |o| o.giver_name = "n".repeat(257)),
        ("categories", |o| {
            o.categories = CategorySet::EMPTY;
            o.agencies.clear();
        }),
        ("agency_ids", |o| o.agencies = vec![AgencyId::parse("id", "gp").unwrap(); 65]),
        ("reason", |o| o.reason = "r".repeat(MAX_PURPOSE_BYTES + 1)),
        ("evidence.language", |o| o.evidence.language = "Polish".into()),
    ];
    for (field, change) in cases {
        let mut new = new_objection();
        change(&mut new);
        assert_eq!(record(new, ObjectionId(1), by("gp"), NOW).unwrap_err().field, field);
    }
    // A category alone, an agency alone or a sector alone is enough.
    let sector_only = NewObjection {
        categories: CategorySet::EMPTY,
        agencies: Vec::new(),
        sectors: vec![Sector::Education],
        ..new_objection()
    };
    assert!(record(sector_only, ObjectionId(2), by("gp"), NOW).is_ok());
}

#[test]
fn a_withdrawal_is_the_next_revision_and_only_once() {
    let raised = record(new_objection(), ObjectionId(1), by("social-care"), NOW).unwrap();
    let later = NOW.plus_seconds(60);
    let withdrawn = withdraw(&raised, "talked it through", evidence(), by("school"), later).unwrap();
    assert_eq!(withdrawn.objection.revision, 2);
    assert_eq!(withdrawn.objection.state, ObjectionState::Withdrawn { at: later });
    assert_eq!((withdrawn.recorded_by.as_str(), withdrawn.recorded_at), ("school", later));
    // What was objected to, and when it was raised, stay as they were.
    assert_eq!(withdrawn.objection.categories, raised.objection.categories);
    assert_eq!(withdrawn.objection.recorded_at, NOW);
    assert_eq!(withdrawn.reason, raised.reason);
    assert_eq!(withdraw(&withdrawn, "", evidence(), by("school"), later), Err(WithdrawalRefused::AlreadyWithdrawn));
    let too_long = withdraw(&raised, &"r".repeat(MAX_PURPOSE_BYTES + 1), evidence(), by("gp"), later);
    assert!(matches!(too_long, Err(WithdrawalRefused::Invalid(violation)) if violation.field == "reason"));
}

#[test]
fn ids_read_back_as_written_and_nothing_else_parses() {
    for n in [1, 9, 10, 4_294_967_295] {
        let id = ObjectionId(n);
        assert_eq!(ObjectionId::parse("objection_id", &id.to_string()), Ok(id));
    }
    for bad in ["", "o-", "o-0", "o-01", "1", "c-1", "o-+1", "o- 1", "o-4294967296", "O-1"] {
        let refused = ObjectionId::parse("objection_id", bad).unwrap_err();
        assert_eq!(refused.field, "objection_id", "{bad:?}");
    }
    assert_eq!(ObjectionId(u32::MAX).next(), None);
}

proptest! {
    #[test]
    fn parsing_any_text_never_panics_and_accepts_only_canonical_ids(text in "\\PC{0,12}") {
        if let Ok(id) = ObjectionId::parse("objection_id", &text) {
            prop_assert_eq!(id.to_string(), text);
        }
    }
}
