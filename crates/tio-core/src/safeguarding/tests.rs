use proptest::prelude::*;

use super::*;

const NOW: Timestamp = Timestamp::from_unix_seconds(1_800_000_000);
const DAY: i64 = DAY_SECONDS;

fn by(agency: &str) -> Recorder {
    Recorder { agency: AgencyId::parse("id", agency).unwrap(), professional: "sw-1".into() }
}

fn new_share() -> NewShare {
    NewShare {
        reason: ShareReason::Section47Enquiry,
        reason_text: "Strategy discussion held today".into(),
        categories: [Category::HealthSummary, Category::CommunicationNeeds].into_iter().collect(),
        agencies: vec![AgencyId::parse("id", "hospital").unwrap()],
        sectors: Vec::new(),
        starts: None,
        expires: None,
        review_family_notification_by: None,
    }
}

fn agency(id: &str, sector: Sector) -> Agency {
    Agency {
        id: AgencyId::parse("id", id).unwrap(),
        name: id.into(),
        sector,
        may_publish: CategorySet::all(),
        may_read: CategorySet::all(),
        may_record_consent: false,
        may_declare_safeguarding: false,
        may_run_ehc_assessments: false,
        suspended: false,
    }
}

#[test]
fn a_share_runs_seven_days_from_now_by_default_and_covers_what_it_names_while_in_force() {
    let share = declare(new_share(), ShareId(1), by("social-care"), NOW).unwrap().share;
    assert_eq!((share.starts, share.expires), (NOW, NOW.plus_seconds(7 * DAY)));
    assert_eq!(share.declared_by.as_str(), "social-care");
    let hospital = agency("hospital", Sector::Health);
    let gp = agency("gp", Sector::Health);
    assert!(share.covers(&hospital, Category::HealthSummary, NOW));
    assert!(!share.covers(&hospital, Category::SendSupport, NOW), "a category it does not name");
    assert!(!share.covers(&gp, Category::HealthSummary, NOW), "an agency it does not name");
    assert!(share.covers(&hospital, Category::HealthSummary, NOW.plus_seconds(7 * DAY - 1)));
    assert!(!share.covers(&hospital, Category::HealthSummary, NOW.plus_seconds(7 * DAY)), "expired by the clock");
    let sector = SafeguardingShare { agencies: Vec::new(), sectors: vec![Sector::Health], ..share };
    assert!(sector.covers(&gp, Category::HealthSummary, NOW), "a sector names each of its agencies");
}

#[test]
fn each_rule_names_its_field() {
    type Change = fn(&mut NewShare);
    let cases: [(&str, Change); 8] = [
        ("reason_text", |s| {
            s.reason = ShareReason::Other;
            s.reason_text = " ".into();
        }),
        ("reason_text", |s| s.reason_text = "r".repeat(MAX_REASON_TEXT_BYTES + 1)),
        ("categories", |s| s.categories = CategorySet::EMPTY),
        ("recipients", |s| s.agencies.clear()),
        ("starts", |s| s.starts = Some(NOW.plus_seconds(-1))),
        ("expires", |s| s.expires = Some(NOW)),
        ("expires", |s| s.expires = Some(NOW.plus_seconds(30 * DAY + 1))),
        ("expires", |s| {
            s.starts = Some(NOW.plus_seconds(DAY));
            s.expires = Some(NOW.plus_seconds(DAY));
        }),
    ];
    for (field, change) in cases {
        let mut new = new_share();
        change(&mut new);
        assert_eq!(declare(new, ShareId(1), by("social-care"), NOW).unwrap_err().field, field);
    }
    let longest = NewShare { expires: Some(NOW.plus_seconds(30 * DAY)), ..new_share() };
    assert!(declare(longest, ShareId(1), by("social-care"), NOW).is_ok(), "30 days exactly");
}

#[test]
fn only_the_declaring_agency_renews_or_ends_and_only_while_in_force() {
    let declared = declare(new_share(), ShareId(1), by("social-care"), NOW).unwrap();
    let later = NOW.plus_seconds(6 * DAY);
    let renewed =
        renew(&declared, ShareReason::CourtOrder, "Interim care order", None, by("social-care"), later).unwrap();
    assert_eq!((renewed.share.revision, renewed.share.reason), (2, ShareReason::CourtOrder));
    assert_eq!(renewed.share.expires, later.plus_seconds(7 * DAY), "seven days from the renewal");
    assert_eq!(renewed.share.starts, NOW, "it started when it started");
    let too_long =
        renew(&declared, ShareReason::CourtOrder, "", Some(later.plus_seconds(31 * DAY)), by("social-care"), later);
    assert!(matches!(too_long, Err(ChangeRefused::Invalid(violation)) if violation.field == "expires"));
    assert_eq!(
        renew(&declared, ShareReason::CourtOrder, "", None, by("hospital"), later),
        Err(ChangeRefused::NotDeclarer)
    );
    let ended = end(&renewed, "Plan agreed", by("social-care"), later.plus_seconds(60)).unwrap();
    assert_eq!(ended.share.revision, 3);
    assert!(!ended.share.in_force(later.plus_seconds(60)), "in force no longer from the end");
    assert!(ended.share.in_force(later.plus_seconds(59)));
    assert_eq!(end(&ended, "", by("social-care"), later.plus_seconds(61)), Err(ChangeRefused::NotInForce));
    assert_eq!(end(&renewed, "", by("gp"), later), Err(ChangeRefused::NotDeclarer));
    let expired_at = NOW.plus_seconds(7 * DAY);
    assert_eq!(
        renew(&declared, ShareReason::Other, "late", None, by("social-care"), expired_at),
        Err(ChangeRefused::NotInForce),
        "an expired share is declared afresh, not renewed"
    );
}

#[test]
fn the_family_may_be_told_once_the_share_is_over_or_its_review_date_has_come() {
    let review = NOW.uk_date().unwrap().checked_add(jiff::Span::new().days(3)).unwrap();
    let new = NewShare { review_family_notification_by: Some(review), ..new_share() };
    let declared = declare(new, ShareId(1), by("social-care"), NOW).unwrap();
    assert!(!declared.disclosable(NOW));
    assert!(!declared.disclosable(NOW.plus_seconds(2 * DAY)));
    assert!(declared.disclosable(NOW.plus_seconds(4 * DAY)), "the review date has come");
    let silent = declare(new_share(), ShareId(2), by("social-care"), NOW).unwrap();
    assert!(!silent.disclosable(NOW.plus_seconds(6 * DAY)));
    assert!(silent.disclosable(NOW.plus_seconds(7 * DAY)), "expired");
    let ended = end(&silent, "", by("social-care"), NOW.plus_seconds(60)).unwrap();
    assert!(ended.disclosable(NOW.plus_seconds(60)), "ended");
}

#[test]
fn ids_read_back_as_written_and_nothing_else_parses() {
    for n in [1, 12, u32::MAX] {
        assert_eq!(ShareId::parse("share_id", &ShareId(n).to_string()), Ok(ShareId(n)));
    }
    for bad in ["", "s-", "s-0", "s-01", "o-1", "S-1", "s-4294967296"] {
        assert_eq!(ShareId::parse("share_id", bad).unwrap_err().field, "share_id", "{bad:?}");
    }
}

proptest! {
    /// A share is in force exactly from its start until its expiry or its end.
    #[test]
    fn in_force_exactly_between_start_and_expiry_or_end(
        start in 0i64..(10 * DAY),
        length in 1i64..(30 * DAY),
        ended in proptest::option::of(0i64..(40 * DAY)),
        at in -DAY..(45 * DAY),
    ) {
        let share = SafeguardingShare {
            id: ShareId(1),
            revision: 1,
            reason: ShareReason::RiskOfSignificantHarm,
            categories: CategorySet::all(),
            agencies: Vec::new(),
            sectors: vec![Sector::Health],
            starts: NOW.plus_seconds(start),
            expires: NOW.plus_seconds(start + length),
            declared_by: AgencyId::parse("id", "social-care").unwrap(),
            state: ended.map_or(ShareState::Active, |ended| ShareState::Ended { at: NOW.plus_seconds(ended) }),
        };
        let at = NOW.plus_seconds(at);
        let expected = share.starts <= at && at < share.expires && ended.is_none_or(|ended| at < NOW.plus_seconds(ended));
        prop_assert_eq!(share.in_force(at), expected);
    }
}
