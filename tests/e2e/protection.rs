//! Child-protection and looked-after flags over real mutual TLS (issue 16, section 2):
//! children's social care publishes a flag with its lawful basis; the health agencies
//! involved with the child read and receive it without consent, over a family's
//! objection, with both in the audit log and the report; nobody else does; and once the
//! council publishes a lower level, the flag no longer travels without consent.

use std::time::Duration;

use tio_proto::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::Sandbox;
use crate::support::records::*;
use crate::support::stream::*;

fn involvement(level: v1::SocialCareLevel, basis: Option<v1::LawfulBasis>) -> v1::CategoryValue {
    v1::CategoryValue {
        value: Some(v1::category_value::Value::SocialCareInvolvement(v1::SocialCareInvolvement {
            level: level as i32,
            team: "Children's Services North".into(),
            lawful_basis: basis.map_or(0, |basis| basis as i32),
            special_category_condition: basis.map_or(0, |_| v1::SpecialCategoryCondition::HealthOrSocialCare as i32),
            ..Default::default()
        })),
    }
}

async fn declare(client: &tio_client::Client) {
    let declare = v1::DeclareRelationshipRequest {
        child: child(AMY),
        kind: v1::RelationshipKind::Referral as i32,
        reference: String::new(),
    };
    client.relationships().declare_relationship(client.request(declare)).await.unwrap();
}

#[test]
fn a_protection_flag_reaches_involved_health_agencies_without_consent_and_no_one_else() {
    let sandbox = Sandbox::start();
    runtime().block_on(async {
        use v1::Category::SocialCareInvolvement;
        use v1::SocialCareLevel::{ChildInNeed, ChildProtection};
        let social_care = as_professional(&sandbox, "social-care").await;
        let hospital = as_professional(&sandbox, "hospital").await;
        let send_team = as_professional(&sandbox, "send-team").await;

        // A flag must say on what basis it travels without consent.
        let unfounded = publish_request(AMY, SocialCareInvolvement, involvement(ChildProtection, None), "f-0");
        let status = publish(&social_care, unfounded).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "value.social_care_involvement.lawful_basis");
        for basis in [v1::LawfulBasis::Consent, v1::LawfulBasis::VitalInterests] {
            let wrong = publish_request(AMY, SocialCareInvolvement, involvement(ChildProtection, Some(basis)), "f-0");
            assert_eq!(publish(&social_care, wrong).await.unwrap_err().code(), Code::InvalidArgument);
        }

        declare(&hospital).await;
        declare(&send_team).await;
        create(&hospital, "flags", &[SocialCareInvolvement], None).await;
        let mut stream = Stream::open(&hospital, "flags", 8).await.unwrap();
        // The family objects to the hospital seeing anything: the flag still reaches it.
        let object = v1::RecordObjectionRequest {
            child: child(AMY),
            giver_role: v1::ConsentGiverRole::ParentWithParentalResponsibility as i32,
            giver_name: "Anna Nowak".into(),
            agency_ids: vec!["hospital".into()],
            evidence: consent_request(&[]).evidence,
            ..Default::default()
        };
        social_care.consents().record_objection(social_care.request(object)).await.unwrap();

        let flag = involvement(ChildProtection, Some(v1::LawfulBasis::PublicTask));
        let published = publish(&social_care, publish_request(AMY, SocialCareInvolvement, flag, "f-1")).await.unwrap();
        let delivery = stream.delivery().await;
        assert_eq!(delivery.update_id, published.update_id, "received without consent");
        stream.ack(&[delivery.delivery_number]).await;
        assert_eq!(profile(&hospital, AMY).await, [SocialCareInvolvement]);
        // Education is not a flag sector here: nothing without consent.
        assert_eq!(profile(&send_team, AMY).await, Vec::<v1::Category>::new());

        // Every disclosure names its basis and the objection it overrode.
        let auditor = sandbox.client("auditor").await;
        let query = v1::QueryEntriesRequest { agency_id: "hospital".into(), ..Default::default() };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        let disclosures: Vec<_> = entries
            .iter()
            .filter(|e| e.outcome() == v1::AuditOutcome::Allowed && e.categories == [SocialCareInvolvement as i32])
            .filter(|e| matches!(e.action(), v1::AuditAction::Delivery | v1::AuditAction::ProfileRead))
            .collect();
        assert_eq!(disclosures.len(), 2, "{entries:#?}");
        for entry in &disclosures {
            assert_eq!(entry.basis, "protection_flag");
            assert_eq!(entry.detail, "child_protection public_task health_or_social_care");
            assert_eq!(entry.overrides, ["o-1"]);
            assert!(entry.consent_id.is_empty() && !entry.relationship_id.is_empty(), "{entry:?}");
        }
        let report = v1::SubjectAccessReportRequest { child: child(AMY), ..Default::default() };
        let lines = auditor.audit().subject_access_report(auditor.request(report)).await.unwrap().into_inner().lines;
        assert!(
            lines.iter().any(|line| line.agency_id == "hospital"
                && line.action() == v1::AuditAction::ProfileRead
                && line.why.starts_with(
                    "allowed by the council's child-protection flag, shared without consent (public task, \
                     Art. 6(1)(e), health or social care, Art. 9(2)(h)) and care relationship"
                )
                && line.why.ends_with(
                    ", over the family's objection o-1; Council Children's Social Care (development) was told at once"
                )),
            "{lines:#?}"
        );

        // A lower level supersedes the flag: without consent, nothing travels now, and
        // the objection refuses the hospital again.
        let lower = involvement(ChildInNeed, None);
        publish(&social_care, publish_request(AMY, SocialCareInvolvement, lower, "f-2")).await.unwrap();
        assert_eq!(profile(&hospital, AMY).await, Vec::<v1::Category>::new());
        assert!(stream.delivery_within(Duration::from_secs(2)).await.is_none(), "the new value is not a flag");
    });
}
