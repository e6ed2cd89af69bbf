//! The broker in process, on an in-memory store and an injected clock: consent validity
//! is enforced by the clock at every decision, never by a cleanup job.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tio_audit::note::Signer;
use tio_audit_log::AuditLog;
use tio_core::{Agency, AgencyId, CategorySet, Identity, NhsNumberPolicy, Sector, Timestamp};
use tio_proto::v1;
use tio_store::Store;
use tio_store::keys::KeyRing;

use super::*;
use crate::app::broker::RequestMeta;
use crate::app::registry::{Caller, Registry};
use crate::grpc::convert::timestamp_to_proto;

const T0: i64 = 1_800_000_000;
const AMY: &str = "9990079196";

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_seconds(self.0.load(Ordering::SeqCst))
    }
}

fn agency(id: &str, sector: Sector) -> Agency {
    Agency {
        id: AgencyId::parse("id", id).unwrap(),
        name: id.to_owned(),
        sector,
        may_publish: CategorySet::all(),
        may_read: CategorySet::all(),
        may_record_consent: true,
        suspended: false,
    }
}

fn broker(clock: Arc<TestClock>) -> Broker {
    let store = Arc::new(Store::in_memory(KeyRing::generate().unwrap()).unwrap());
    let audit = Arc::new(AuditLog::new(store.clone(), Signer::generate("tio.test/audit").unwrap()));
    let registry = Registry::new(
        [agency("hospital", Sector::Health), agency("school", Sector::Education)],
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    Broker::new(store, audit, Arc::new(registry), NhsNumberPolicy::development(), clock)
}

fn call(broker: &Broker, agency: &str) -> Call {
    Call {
        caller: Caller {
            identity: Identity::agency(agency),
            certificate_fingerprint: "00".repeat(32),
            professional_id: Some(format!("{agency}-1")),
        },
        meta: RequestMeta { request_id: "req".into(), trace_id: String::new() },
        now: broker.now(),
    }
}

fn child() -> Option<v1::ChildRef> {
    Some(v1::ChildRef { nhs_number: AMY.into() })
}

async fn school_sees(broker: &Broker) -> usize {
    let school = call(broker, "school");
    let amy = broker.parse_nhs_number("child", AMY).unwrap();
    let reader = broker.profile_reader(&school).await.unwrap();
    reader.profile(&amy, CategorySet::EMPTY).await.unwrap().len()
}

#[tokio::test]
async fn consent_validity_is_enforced_by_the_clock_at_every_decision() {
    let clock = Arc::new(TestClock(AtomicI64::new(T0)));
    let broker = broker(clock.clone());
    let value = v1::CategoryValue {
        value: Some(v1::category_value::Value::CommunicationNeeds(v1::CommunicationNeeds {
            how_i_communicate: "Makaton".into(),
            ..Default::default()
        })),
    };
    let publish = v1::PublishRequest {
        child: child(),
        category: v1::Category::CommunicationNeeds as i32,
        value: Some(value),
        source_reference: String::new(),
        idempotency_key: "k1".into(),
        recorded_at: None,
    };
    let hospital = call(&broker, "hospital");
    let publication = crate::grpc::records::publication_from_proto(&broker, &publish).unwrap();
    broker.publisher(&hospital).await.unwrap().publish(&publication).await.unwrap();
    let amy = broker.parse_nhs_number("child", AMY).unwrap();
    let consent = v1::RecordConsentRequest {
        child: child(),
        giver_role: v1::ConsentGiverRole::ParentWithParentalResponsibility as i32,
        giver_name: "Anna".into(),
        categories: vec![v1::Category::CommunicationNeeds as i32],
        recipients: Some(v1::Recipients { sectors: vec![v1::Sector::Education as i32], ..Default::default() }),
        purpose: "support at school".into(),
        lawful_basis: v1::LawfulBasis::PublicTask as i32,
        special_category_condition: v1::SpecialCategoryCondition::HealthOrSocialCare as i32,
        valid: Some(v1::Validity {
            from: Some(timestamp_to_proto(Timestamp::from_unix_seconds(T0 + 3_600))),
            until: Some(timestamp_to_proto(Timestamp::from_unix_seconds(T0 + 7_200))),
        }),
        evidence: Some(v1::ConsentEvidence { method: v1::ConsentMethod::InPerson as i32, ..Default::default() }),
    };
    let recorder = broker.consent_recorder(&hospital, Action::ConsentRecorded, &amy).await.unwrap();
    recorder.record(crate::grpc::care::new_consent_from_proto(&consent).unwrap()).await.unwrap();
    broker
        .declare_relationship(&call(&broker, "school"), &amy, Some(tio_core::RelationshipKind::Enrolment), "")
        .await
        .unwrap();

    // Before, during and after the validity period: no job runs in between, only the clock moves.
    assert_eq!(school_sees(&broker).await, 0, "not yet valid");
    clock.0.store(T0 + 3_600, Ordering::SeqCst);
    assert_eq!(school_sees(&broker).await, 1, "valid from its first moment");
    clock.0.store(T0 + 7_199, Ordering::SeqCst);
    assert_eq!(school_sees(&broker).await, 1);
    clock.0.store(T0 + 7_200, Ordering::SeqCst);
    assert_eq!(school_sees(&broker).await, 0, "expired at its end");

    let reasons: Vec<String> = broker
        .audit()
        .entries(0, 1_000)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.action == "profile_read" && entry.outcome == "denied")
        .map(|entry| entry.reason)
        .collect();
    assert_eq!(reasons, ["consent_not_yet_valid", "consent_expired"]);
}
