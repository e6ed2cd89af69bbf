//! The broker flows over real mutual TLS: publish (idempotent, in bulk), consent and
//! care relationships, and profile reads decided at the moment of reading, every step
//! in the audit log; and a table of bad input, each refused with its status and field
//! and nothing written.

use tio_proto::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::Sandbox;
use crate::support::records::*;

#[test]
fn told_once_read_by_the_involved_and_consented_only_and_every_step_audited() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let school = as_professional(&sandbox, "school").await;
        let social_care = as_professional(&sandbox, "social-care").await;
        use v1::Category::{CommunicationNeeds, HealthSummary};

        // Publish, and replay: the same key and content gives the same update.
        let first = publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("Makaton"), "k1"))
            .await
            .unwrap();
        assert!(!first.duplicate);
        let again = publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("Makaton"), "k1"))
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(
            (again.update_id.as_str(), again.position.clone()),
            (first.update_id.as_str(), first.position.clone())
        );
        let status = publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("PECS"), "k1"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

        // The publisher sees its own update: it became involved; a consent is still needed.
        assert_eq!(profile(&hospital, AMY).await, Vec::<v1::Category>::new());
        // Nobody else sees anything yet: no involvement, no consent.
        assert_eq!(profile(&school, AMY).await, Vec::<v1::Category>::new());

        // The parent's consent, recorded by the hospital, to the education sector.
        let consent = hospital
            .consents()
            .record_consent(hospital.request(consent_request(&[CommunicationNeeds, HealthSummary])))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((consent.revision, consent.child_masked.as_str()), (1, "*** *** 9196"));
        // Consented but not involved: still nothing.
        assert_eq!(profile(&school, AMY).await, Vec::<v1::Category>::new());
        let declare = v1::DeclareRelationshipRequest {
            child: child(AMY),
            kind: v1::RelationshipKind::Enrolment as i32,
            reference: "roll-2026".into(),
        };
        let enrolment = school.relationships().declare_relationship(school.request(declare.clone())).await.unwrap();
        let enrolment = enrolment.into_inner();
        let repeated = school.relationships().declare_relationship(school.request(declare)).await.unwrap();
        assert_eq!(repeated.into_inner().relationship_id, enrolment.relationship_id, "declaring again changes nothing");
        assert_eq!(profile(&school, AMY).await, [CommunicationNeeds]);
        publish(&hospital, publish_request(AMY, HealthSummary, health_summary("Epilepsy"), "k2")).await.unwrap();
        assert_eq!(profile(&school, AMY).await, [CommunicationNeeds, HealthSummary]);
        // Social care, neither involved nor consented, sees nothing.
        assert_eq!(profile(&social_care, AMY).await, Vec::<v1::Category>::new());

        // The parent withdraws, and consents again without the health summary.
        let withdraw = v1::WithdrawConsentRequest {
            child: child(AMY),
            consent_id: consent.consent_id.clone(),
            reason: "Parent asked that school not see health details".into(),
            evidence: consent_request(&[]).evidence,
        };
        let withdrawn = hospital.consents().withdraw_consent(hospital.request(withdraw.clone())).await.unwrap();
        assert_eq!((withdrawn.get_ref().revision, withdrawn.get_ref().state()), (2, v1::ConsentState::Withdrawn));
        assert_eq!(profile(&school, AMY).await, Vec::<v1::Category>::new(), "effective at once");
        let status = hospital.consents().withdraw_consent(hospital.request(withdraw)).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        hospital.consents().record_consent(hospital.request(consent_request(&[CommunicationNeeds]))).await.unwrap();
        assert_eq!(profile(&school, AMY).await, [CommunicationNeeds]);

        // Revisions are kept; only agencies that may record consent or are involved read them.
        let history = v1::ListConsentRevisionsRequest { child: child(AMY), consent_id: consent.consent_id.clone() };
        let revisions = school.consents().list_consent_revisions(school.request(history.clone())).await.unwrap();
        let states: Vec<v1::ConsentState> = revisions.into_inner().revisions.iter().map(|r| r.state()).collect();
        assert_eq!(states, [v1::ConsentState::Active, v1::ConsentState::Withdrawn]);

        // Ending the enrolment stops the school's reads at once.
        let end = v1::EndRelationshipRequest {
            child: child(AMY),
            relationship_id: enrolment.relationship_id.clone(),
            reason: "left the school".into(),
        };
        school.relationships().end_relationship(school.request(end.clone())).await.unwrap();
        assert_eq!(profile(&school, AMY).await, Vec::<v1::Category>::new());
        let status = school.relationships().end_relationship(school.request(end)).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let list = v1::ListRelationshipsRequest { child: child(AMY), include_ended: true };
        let mine = school.relationships().list_relationships(school.request(list)).await.unwrap().into_inner();
        assert_eq!(mine.relationships.len(), 1);
        assert!(mine.relationships[0].ended_at.is_some());

        // The subject-access report tells the story: who read what, why, and what was refused.
        let auditor = sandbox.client("auditor").await;
        let report = v1::SubjectAccessReportRequest { child: child(AMY), ..Default::default() };
        let lines = auditor.audit().subject_access_report(auditor.request(report)).await.unwrap().into_inner().lines;
        let school_reads: Vec<&v1::SubjectAccessLine> = lines
            .iter()
            .filter(|line| line.agency_id == "school" && line.action() == v1::AuditAction::ProfileRead)
            .collect();
        assert!(
            school_reads.iter().any(|line| line.outcome() == v1::AuditOutcome::Allowed
                && line.why.starts_with(&format!(
                    "allowed by consent {} (revision 1) and care relationship",
                    consent.consent_id
                ))
                && line.categories.len() == 2),
            "{school_reads:#?}"
        );
        assert!(school_reads.iter().any(|line| line.why == "refused: the consent was withdrawn"), "{school_reads:#?}");
        assert!(
            lines.iter().any(|line| line.agency_id == "school"
                && line.action() == v1::AuditAction::RelationshipRead
                && line.why == "the agency's own records of its involvement"),
            "listing its own relationships is in the report: {lines:#?}"
        );
        assert!(
            lines.iter().any(|line| line.agency_id == "social-care"
                && line.why == "refused: the agency is not involved in the child's care"),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|line| line.agency_id == "hospital" && line.action() == v1::AuditAction::ConsentWithdrawn)
        );
        assert!(lines.iter().all(|line| !line.professional_id.is_empty() || line.agency_id == "auditor"));
    });
}

/// Issue 17: a parent's consent stops allowing on the child's 18th birthday, counted from
/// the date of birth in the child's latest identity value and decided by the clock, not
/// by a job: the server is restarted with its clock moved on past the birthday
/// (development mode's `dev_clock_offset_days`; a day's margin, so that midnight cannot
/// fall between the test's clock and the server's), and the refusal is audited with its
/// reason.
#[test]
fn a_parents_consent_stops_allowing_once_the_child_is_18() {
    use v1::Category::{CommunicationNeeds, IdentityAndContacts};
    let mut sandbox = Sandbox::start();
    let runtime = runtime();
    runtime.block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let school = as_professional(&sandbox, "school").await;
        publish(&hospital, publish_request(AMY, CommunicationNeeds, communication_needs("Makaton"), "n-1"))
            .await
            .unwrap();
        hospital.consents().record_consent(hospital.request(consent_request(&[CommunicationNeeds]))).await.unwrap();
        let declare = v1::DeclareRelationshipRequest {
            child: child(AMY),
            kind: v1::RelationshipKind::Enrolment as i32,
            reference: "roll-2026".into(),
        };
        school.relationships().declare_relationship(school.request(declare)).await.unwrap();
        // No date of birth yet: the parent's consent allows, and is not marked to review.
        assert_eq!(profile(&school, AMY).await, [CommunicationNeeds]);
        let to_review = || async {
            let request = v1::ListConsentsRequest { child: child(AMY), page: None };
            let consents = hospital.consents().list_consents(hospital.request(request)).await.unwrap().into_inner();
            consents.consents.iter().map(|consent| consent.to_review).collect::<Vec<_>>()
        };
        assert_eq!(to_review().await, [false]);

        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let today = tio_core::Timestamp::from_unix_micros(now.as_micros() as i64).uk_date().unwrap();
        let identity = identity_born;
        let eighteen_ago = today.checked_sub(jiff::Span::new().years(18)).unwrap();
        let turns_18_in_two_days = eighteen_ago.checked_add(jiff::Span::new().days(2)).unwrap();
        let value = identity(turns_18_in_two_days);
        publish(&hospital, publish_request(AMY, IdentityAndContacts, value, "id-1")).await.unwrap();
        assert_eq!(profile(&school, AMY).await, [CommunicationNeeds], "17: the parent still decides");
        assert_eq!(to_review().await, [true], "over 16: the parent's consent is to review with the young person");
    });

    // Three days on, by the clock alone: 18 since yesterday.
    sandbox.restart_days_ahead(3);
    runtime.block_on(async {
        let school = as_professional(&sandbox, "school").await;
        assert_eq!(profile(&school, AMY).await, Vec::<v1::Category>::new(), "18: the parent's consent has lapsed");

        let auditor = sandbox.client("auditor").await;
        let query = v1::QueryEntriesRequest {
            agency_id: "school".into(),
            action: v1::AuditAction::ProfileRead as i32,
            outcome: v1::AuditOutcome::Denied as i32,
            child: child(AMY),
            ..Default::default()
        };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        assert!(
            entries
                .iter()
                .any(|entry| entry.reason == "consent_lapsed" && entry.categories == [CommunicationNeeds as i32]),
            "{entries:?}"
        );
    });
}

/// Issue 17: each consent giver role speaks only at the ages the law lets it, by the
/// published date of birth, with the authority its role needs (Gillick: who judged
/// competence and when), and a wrong one is refused naming the field, storing nothing.
#[test]
fn giver_roles_speak_at_their_ages_with_the_authority_they_need() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        use v1::Category::{CommunicationNeeds, EducationPlacement, IdentityAndContacts};
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let today = tio_core::Timestamp::from_unix_micros(now.as_micros() as i64).uk_date().unwrap();
        let born = today.checked_sub(jiff::Span::new().years(13).days(20)).unwrap();
        publish(&hospital, publish_request(AMY, IdentityAndContacts, identity_born(born), "roles-1")).await.unwrap();
        let as_role = |role: v1::ConsentGiverRole, authority: Option<v1::GiverAuthority>| v1::RecordConsentRequest {
            giver_role: role as i32,
            authority,
            ..consent_request(&[CommunicationNeeds])
        };
        let judged = Some(v1::GiverAuthority {
            by: "Dr Lee, community paediatrician".into(),
            on: Some(v1::Date {
                year: i32::from(today.year()),
                month: i32::from(today.month()),
                day: i32::from(today.day()),
            }),
        });
        let refused = [
            ("authority", as_role(v1::ConsentGiverRole::CompetentChild, None)),
            ("giver_role", as_role(v1::ConsentGiverRole::Attorney, None)),
            ("giver_role", as_role(v1::ConsentGiverRole::YoungPerson, None)),
            ("authority", as_role(v1::ConsentGiverRole::ParentWithParentalResponsibility, judged.clone())),
        ];
        for (field, request) in refused {
            let status = hospital.consents().record_consent(hospital.request(request)).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, field, "{status:?}");
        }
        let list = v1::ListConsentsRequest { child: child(AMY), page: None };
        let none = hospital.consents().list_consents(hospital.request(list.clone())).await.unwrap();
        assert!(none.into_inner().consents.is_empty(), "nothing was stored");

        // Amelia, judged competent, decides for herself; the council, holding parental
        // responsibility, may still consent for what she has not decided about.
        let own = as_role(v1::ConsentGiverRole::CompetentChild, judged.clone());
        let own = hospital.consents().record_consent(hospital.request(own)).await.unwrap().into_inner();
        assert_eq!(own.authority, judged);
        let council = v1::RecordConsentRequest {
            giver_role: v1::ConsentGiverRole::LocalAuthority as i32,
            ..consent_request(&[EducationPlacement])
        };
        hospital.consents().record_consent(hospital.request(council)).await.unwrap();
        let over_her = as_role(v1::ConsentGiverRole::LocalAuthority, None);
        let status = hospital.consents().record_consent(hospital.request(over_her)).await.unwrap_err();
        assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "giver_role");
    });
}

#[test]
fn bad_input_is_refused_with_its_status_and_field_and_writes_nothing() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let good = || publish_request(BEN, v1::Category::CommunicationNeeds, communication_needs("Signs"), "key-1");
        type Change = fn(&mut v1::PublishRequest);
        let cases: Vec<(&str, Change, &str)> = vec![
            ("bad check digit", |r| r.child = child("9990079197"), "child.nhs_number"),
            ("no child", |r| r.child = None, "child.nhs_number"),
            ("unknown category", |r| r.category = 99, "category"),
            ("mismatched category", |r| r.category = v1::Category::HealthSummary as i32, "value"),
            ("no value", |r| r.value = None, "value"),
            ("oversize value", |r| r.value = Some(communication_needs(&"x".repeat(70 * 1024))), "value"),
            (
                "long free text",
                |r| r.value = Some(communication_needs(&"x".repeat(5000))),
                "value.communication_needs.how_i_communicate",
            ),
            (
                "too many entries",
                |r| {
                    let Some(v1::CategoryValue { value: Some(v1::category_value::Value::CommunicationNeeds(needs)) }) =
                        &mut r.value
                    else {
                        unreachable!("the good request holds communication needs")
                    };
                    needs.likes = vec!["trains".into(); 65];
                },
                "value.communication_needs.likes",
            ),
            (
                "wrong UPN check letter",
                |r| {
                    r.category = v1::Category::IdentityAndContacts as i32;
                    let identity = v1::IdentityAndContacts { upn: "B801200005002".into(), ..Default::default() };
                    r.value = Some(v1::CategoryValue {
                        value: Some(v1::category_value::Value::IdentityAndContacts(identity)),
                    });
                },
                "value.identity_and_contacts.upn",
            ),
            ("no idempotency key", |r| r.idempotency_key.clear(), "idempotency_key"),
            ("long source reference", |r| r.source_reference = "r".repeat(300), "source_reference"),
        ];
        for (name, change, field) in cases {
            let mut request = good();
            change(&mut request);
            let status = publish(&hospital, request).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
            let violation = &status.get_details_bad_request().expect(name).field_violations[0];
            assert_eq!(violation.field, field, "{name}");
        }
        // The school may not publish health summaries: refused and audited.
        let school = as_professional(&sandbox, "school").await;
        let request = publish_request(BEN, v1::Category::HealthSummary, health_summary("Asthma"), "s-1");
        let status = publish(&school, request).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "this agency may not publish health_summary: not_permitted_for_category");
        // Wrong role, and no professional named.
        let auditor = sandbox.client("auditor").await;
        let status = publish(&auditor, good()).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        let anonymous = sandbox.client("hospital").await;
        let status = publish(&anonymous, good()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().contains("x-tio-professional"), "{status:?}");

        // Nothing was written: the good request is the first publish for this child.
        let published = publish(&hospital, good()).await.unwrap();
        assert!(!published.duplicate);
        let auditor = sandbox.client("auditor").await;
        let query = v1::QueryEntriesRequest {
            action: v1::AuditAction::Publish as i32,
            child: child(BEN),
            ..Default::default()
        };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        let outcomes: Vec<(String, v1::AuditOutcome)> =
            entries.iter().map(|e| (e.actor.clone().unwrap().id, e.outcome())).collect();
        assert_eq!(
            outcomes,
            [("school".to_owned(), v1::AuditOutcome::Denied), ("hospital".to_owned(), v1::AuditOutcome::Allowed)]
        );
    });
}

#[test]
fn a_bulk_stream_answers_every_item_in_order_and_a_bad_item_fails_alone() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        let school = as_professional(&sandbox, "school").await;
        let numbers = [AMY, BEN, "9990079197", "9990316767", "9990395950"];
        let requests: Vec<v1::PublishRequest> = numbers
            .iter()
            .enumerate()
            .map(|(index, number)| v1::PublishRequest {
                child: child(number),
                category: v1::Category::CommunicationNeeds as i32,
                value: Some(communication_needs("Uses a communication book")),
                source_reference: format!("roll-{index}"),
                idempotency_key: format!("roll-2026-{index}"),
                recorded_at: None,
            })
            .collect();
        let mut results =
            school.records().publish_stream(school.request(tokio_stream::iter(requests))).await.unwrap().into_inner();
        let mut seen = Vec::new();
        while let Some(result) = results.message().await.unwrap() {
            seen.push(result);
        }
        let indexes: Vec<u64> = seen.iter().map(|result| result.index).collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4]);
        for result in &seen {
            match (&result.outcome, result.index) {
                (Some(v1::publish_stream_result::Outcome::Error(error)), 2) => {
                    assert_eq!(error.code, Code::InvalidArgument as i32);
                    assert_eq!(error.field_violations[0].field, "child.nhs_number");
                }
                (Some(v1::publish_stream_result::Outcome::Published(published)), _) => {
                    assert!(!published.update_id.is_empty());
                }
                other => panic!("unexpected result {other:?}"),
            }
        }
    });
}
