//! Retention over a real server and store (issue 16, section 6): `tio store retention
//! --dry-run` lists each child's retention category by category and changes nothing;
//! without it, the records due are erased on the stopped store and past recipients are
//! told when the server runs again; the server's own sweeper erases a record once it is
//! due, and the agency that was given it is told; a category past its retention is
//! erased on its own while the rest of the record is kept.

use std::time::Duration;

use nix::sys::signal::Signal;
use tio_proto::v1;

use crate::support::records::*;
use crate::support::stream::{self, Stream};
use crate::support::{Options, Sandbox, arg, run_tio};

use v1::Category::{CommunicationNeeds, IdentityAndContacts};

/// A third test-range child, with no date of birth published.
const CARL: &str = "9990316767";

/// The dates the test turns on, from today's: Amy turned 25 thirty days ago (due under
/// the 25th-birthday rule), Ben is 11, and Carl (no date of birth) is kept 8 years.
struct Dates {
    amy_born: tio_core::Date,
    amy_due: tio_core::Date,
    ben_born: tio_core::Date,
    ben_kept_until: tio_core::Date,
    /// A day by which Carl's 8 years after his last update (today) have run out.
    after_carl: tio_core::Date,
}

fn dates() -> Dates {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let today = tio_core::Timestamp::from_unix_micros(now.as_micros() as i64).uk_date().unwrap();
    let thirty_days_ago = today.checked_sub(jiff::Span::new().days(30)).unwrap();
    let amy_born = thirty_days_ago.checked_sub(jiff::Span::new().years(25)).unwrap();
    // As the broker counts it (a 29 February birthday falls on 1 March).
    let amy_due = tio_core::age::birthday(amy_born, 25).unwrap();
    let ben_born = today.checked_sub(jiff::Span::new().years(11)).unwrap();
    let ben_kept_until = tio_core::age::birthday(ben_born, 25).unwrap();
    let after_carl = today.checked_add(jiff::Span::new().years(8).days(2)).unwrap();
    Dates { amy_born, amy_due, ben_born, ben_kept_until, after_carl }
}

/// Publishes Amy (25 for thirty days: due under the 25th-birthday rule), Ben (11)
/// and Carl (no date of birth: 8 years after his last update), and lets the school
/// receive Amy's communication needs. Returns that update's id.
async fn populate(sandbox: &Sandbox) -> String {
    let hospital = as_professional(sandbox, "hospital").await;
    // Amy is an adult: her own consent, not her mother's (which lapsed at 18).
    let consent = v1::RecordConsentRequest {
        giver_role: v1::ConsentGiverRole::YoungPerson as i32,
        giver_name: "Amy Nowak".into(),
        ..consent_request(&[CommunicationNeeds])
    };
    involve_school(sandbox, consent).await;
    publish(&hospital, publish_request(AMY, IdentityAndContacts, identity_born(dates().amy_born), "r-a1"))
        .await
        .unwrap();
    let needs = publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("Makaton"), "r-a2"))
        .await
        .unwrap()
        .update_id;
    publish(&hospital, publish_request(BEN, IdentityAndContacts, identity_born(dates().ben_born), "r-b1"))
        .await
        .unwrap();
    publish(&hospital, publish_request(CARL, CommunicationNeeds, communication_needs("BSL"), "r-c1")).await.unwrap();
    school_receives(sandbox, &needs).await;
    needs
}

/// Records `consent` (by the hospital), declares the school's enrolment of its child,
/// and gives the school a subscription to communication needs.
async fn involve_school(sandbox: &Sandbox, consent: v1::RecordConsentRequest) {
    let hospital = as_professional(sandbox, "hospital").await;
    let school = as_professional(sandbox, "school").await;
    let declare = v1::DeclareRelationshipRequest {
        child: consent.child.clone(),
        kind: v1::RelationshipKind::Enrolment as i32,
        reference: String::new(),
    };
    hospital.consents().record_consent(hospital.request(consent)).await.unwrap();
    school.relationships().declare_relationship(school.request(declare)).await.unwrap();
    stream::create(&school, "main", &[CommunicationNeeds], None).await;
}

/// Waits for the school to be given update `update_id`, and acks it.
async fn school_receives(sandbox: &Sandbox, update_id: &str) {
    let school = as_professional(sandbox, "school").await;
    let mut stream = Stream::open(&school, "main", 0).await.unwrap();
    let delivery = stream.delivery().await;
    assert_eq!(delivery.update_id, update_id);
    stream.ack(&[delivery.delivery_number]).await;
    stream.close().await;
}

/// Waits for the school's erasure notice of `update_id` on its subscription.
async fn school_is_told_of_erasure(sandbox: &Sandbox, update_id: &str) {
    let school = as_professional(sandbox, "school").await;
    let mut stream = Stream::open(&school, "main", 0).await.unwrap();
    let notice = stream.delivery().await;
    let amendment = notice.amendment.expect("an erasure notice");
    assert_eq!((amendment.kind(), amendment.amended_update_id.as_str()), (v1::AmendmentKind::Erasure, update_id));
    assert_eq!(notice.child, None);
}

#[test]
fn the_dry_run_lists_what_is_due_and_the_command_erases_it_on_a_stopped_store() {
    let options =
        Options { args: vec!["--set".into(), "retention.sweep_every_minutes=0".into()], ..Options::default() };
    let mut sandbox = Sandbox::start_with(options);
    let runtime = runtime();
    let needs = runtime.block_on(populate(&sandbox));
    sandbox.signal(Signal::SIGTERM);
    assert!(sandbox.wait_exit(Duration::from_secs(30)).success());
    let data = arg(&sandbox.data_dir());
    let keys = arg(&sandbox.data_dir().join("dev-keys").join("tio.keys"));
    let retention = |extra: &[&str]| {
        let mut args = vec!["store", "retention", "--data-dir", &data, "--keys-file", &keys];
        args.extend_from_slice(extra);
        run_tio(&args, &[])
    };

    let (status, stdout, stderr) = retention(&["--dry-run"]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("3 children; due for erasure on"), "{stdout}");
    assert!(stdout.contains("whole records 1, single categories 0"), "{stdout}");
    let dates = dates();
    assert!(stdout.contains(&format!("due for erasure since {}", dates.amy_due)), "{stdout}");
    assert!(stdout.contains(&format!("kept until {} (25th birthday)", dates.ben_kept_until)), "Ben: {stdout}");
    assert!(stdout.contains("(8 years after last update (date of birth unknown))"), "Carl: {stdout}");
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    // Looking ahead: Carl's fallback has run out eight years on.
    let ahead = dates.after_carl.to_string();
    let (status, stdout, _) = retention(&["--dry-run", "--on", &ahead]);
    let summary = format!("3 children; due for erasure on {ahead}: whole records 2, single categories 0");
    assert!(status.success() && stdout.contains(&summary), "{stdout}");
    // Erasing ahead of time is refused by the command line itself.
    let (status, _, stderr) = retention(&["--on", &ahead]);
    assert!(!status.success() && stderr.contains("--dry-run"), "{stderr}");

    let (status, stdout, stderr) = retention(&[]);
    assert!(status.success() && stdout.contains("erased whole records 1, single categories 0"), "{stdout}{stderr}");
    let (status, stdout, _) = retention(&["--dry-run"]);
    assert!(status.success() && stdout.contains("whole records 0, single categories 0"), "{stdout}");
    assert!(stdout.contains("2 children;"), "{stdout}");
    let (status, report, stderr) = run_tio(&["store", "check", "--data-dir", &data, "--keys-file", &keys], &[]);
    assert!(status.success(), "the store checks clean after the sweep: {report}{stderr}");

    sandbox.start_stopped();
    runtime.block_on(async {
        school_is_told_of_erasure(&sandbox, &needs).await;
        let school = as_professional(&sandbox, "school").await;
        assert_eq!(profile(&school, AMY).await, Vec::<v1::Category>::new(), "nothing of Amy can be read");
        // The erasure is audited as the sweep's, naming the rule.
        let auditor = sandbox.client("auditor").await;
        let query = v1::QueryEntriesRequest { action: v1::AuditAction::Admin as i32, ..Default::default() };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        let sweep =
            entries.iter().find(|entry| entry.detail.starts_with(&format!("erase_child retention-{}", dates.amy_due)));
        let sweep = sweep.expect("audited");
        let rule = format!("identity_and_contacts until {} (25th birthday)", dates.amy_due);
        assert!(sweep.detail.contains(&rule), "{}", sweep.detail);
        assert_eq!(
            sweep.actor.as_ref().map(|actor| (actor.role(), actor.id.as_str())),
            Some((v1::Role::Broker, "retention"))
        );
    });
}

#[test]
fn the_servers_sweeper_erases_a_record_once_it_is_due_and_the_past_recipient_is_told() {
    let options =
        Options { args: vec!["--set".into(), "retention.sweep_every_minutes=1".into()], ..Options::default() };
    let sandbox = Sandbox::start_with(options);
    runtime().block_on(async {
        let needs = populate(&sandbox).await;
        school_is_told_of_erasure(&sandbox, &needs).await;
        // Amy alone was due: one erasure, by the sweeper; Ben and Carl are kept.
        let auditor = sandbox.client("auditor").await;
        let query = v1::QueryEntriesRequest { action: v1::AuditAction::Admin as i32, ..Default::default() };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        let sweeps: Vec<_> =
            entries.iter().filter(|entry| entry.detail.starts_with("erase_child retention-")).collect();
        assert_eq!(sweeps.len(), 1, "{sweeps:#?}");
    });
}

/// Retention per category: Ben's communication needs are kept until his 10th birthday
/// (past: he is 11), his identity until his 25th. The sweeper erases the first alone:
/// the school that was given it is told, and its profile read shows only his identity; the erasure is audited naming the category, and the store checks clean.
#[test]
fn a_category_past_its_retention_is_erased_on_its_own_and_the_rest_is_kept() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[retention]\nsweep_every_minutes = 1\n[retention.categories]\ncommunication_needs = \"10th birthday\"\n\
         identity_and_contacts = \"25th birthday\"\n",
    )
    .unwrap();
    let options = Options { args: vec!["--config".into(), arg(config.path())], ..Options::default() };
    let mut sandbox = Sandbox::start_with(options);
    let runtime = runtime();
    runtime.block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let school = as_professional(&sandbox, "school").await;
        let consent = v1::RecordConsentRequest {
            child: child(BEN),
            ..consent_request(&[CommunicationNeeds, IdentityAndContacts])
        };
        involve_school(&sandbox, consent).await;
        publish(&hospital, publish_request(BEN, IdentityAndContacts, identity_born(dates().ben_born), "r-b1"))
            .await
            .unwrap();
        let needs = publish(&hospital, publish_request(BEN, CommunicationNeeds, communication_needs("PECS"), "r-b2"))
            .await
            .unwrap()
            .update_id;
        school_receives(&sandbox, &needs).await;
        school_is_told_of_erasure(&sandbox, &needs).await;
        assert_eq!(profile(&school, BEN).await, vec![IdentityAndContacts], "his identity is kept");
        let auditor = sandbox.client("auditor").await;
        let query = v1::QueryEntriesRequest { action: v1::AuditAction::Admin as i32, ..Default::default() };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        let sweeps: Vec<_> = entries.iter().filter(|entry| entry.detail.starts_with("erase_")).collect();
        assert_eq!(sweeps.len(), 1, "{sweeps:#?}");
        let born = dates().ben_born;
        let tenth = tio_core::age::birthday(born, 10).unwrap();
        assert!(
            sweeps[0].detail.starts_with(&format!("erase_category communication_needs retention-{tenth}")),
            "{}",
            sweeps[0].detail
        );
        assert_eq!(sweeps[0].categories, [CommunicationNeeds as i32]);
    });
    sandbox.signal(Signal::SIGTERM);
    assert!(sandbox.wait_exit(Duration::from_secs(30)).success());
    let data = arg(&sandbox.data_dir());
    let keys = arg(&sandbox.data_dir().join("dev-keys").join("tio.keys"));
    let (status, report, stderr) = run_tio(&["store", "check", "--data-dir", &data, "--keys-file", &keys], &[]);
    assert!(status.success(), "the store checks clean after the category's erasure: {report}{stderr}");
    let config = arg(config.path());
    let (status, stdout, stderr) = run_tio(
        &["store", "retention", "--dry-run", "--data-dir", &data, "--keys-file", &keys, "--config", &config],
        &[],
    );
    assert!(status.success(), "{stderr}");
    let erased = stdout.lines().find(|line| line.trim_start().starts_with("communication_needs"));
    assert!(erased.is_some_and(|line| line.ends_with("erased before")), "{stdout}");
    assert!(stdout.contains("whole records 0, single categories 0"), "{stdout}");
}
