//! What the broker's in-process tests share: a broker on an in-memory store with a
//! clock the test moves, two agencies (a hospital and a school), and calls as them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tio_audit::note::Signer;
use tio_audit_log::AuditLog;
use tio_core::{Agency, AgencyId, CategorySet, Identity, NhsNumberPolicy, Sector, Timestamp};
use tio_proto::v1;
use tio_store::Store;
use tio_store::keys::KeyRing;

use crate::app::broker::{Broker, Call, Clock, RequestMeta};
use crate::app::registry::{Caller, Registry};

pub(crate) const T0: i64 = 1_800_000_000;
pub(crate) const AMY: &str = "9990079196";

pub(crate) struct TestClock(pub(crate) AtomicI64);

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
        may_declare_safeguarding: false,
        may_run_ehc_assessments: false,
        suspended: false,
    }
}

pub(crate) fn broker(clock: Arc<TestClock>) -> Broker {
    broker_on(Arc::new(Store::in_memory(KeyRing::generate().unwrap()).unwrap()), clock)
}

/// Two brokers on one in-memory store that says it is shared, standing for two nodes
/// on one database whose commit notices never come: what one node keeps in memory,
/// only its own commits, its failed preconditions and time make it read again.
pub(crate) fn brokers_sharing_one_store(clock: Arc<TestClock>) -> (Broker, Broker) {
    let mut nodes = Store::in_memory_nodes(KeyRing::generate().unwrap(), 2).unwrap().into_iter().map(Arc::new);
    let (here, there) = (nodes.next().unwrap(), nodes.next().unwrap());
    (broker_on(here, clock.clone()), broker_on(there, clock))
}

fn broker_on(store: Arc<Store>, clock: Arc<TestClock>) -> Broker {
    let audit = Arc::new(AuditLog::new(store.clone(), Signer::generate("tio.test/audit").unwrap()));
    let registry = Registry::new(
        [agency("hospital", Sector::Health), agency("school", Sector::Education)],
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let sharing = crate::app::sharing::Sharing {
        flag_sectors: vec![Sector::Health],
        flag_of: crate::grpc::records::flag_of_value,
        date_of_birth_of: crate::grpc::records::date_of_birth_of_value,
    };
    Broker::new(store, audit, Arc::new(registry), NhsNumberPolicy::development(), clock, sharing)
}

pub(crate) fn call(broker: &Broker, agency: &str) -> Call {
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

pub(crate) fn child() -> Option<v1::ChildRef> {
    Some(v1::ChildRef { nhs_number: AMY.into() })
}

/// Returns Amy's NHS number, parsed.
pub(crate) fn amy(broker: &Broker) -> tio_core::NhsNumber {
    broker.parse_nhs_number("child", AMY).unwrap()
}

/// Publishes Amy's communication needs as the hospital, under idempotency `key`.
pub(crate) async fn publish_communication_needs(broker: &Broker, key: &str) {
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
        idempotency_key: key.into(),
        recorded_at: None,
    };
    let hospital = call(broker, "hospital");
    let publication = crate::grpc::records::publication_from_proto(broker, &publish).unwrap();
    broker.publisher(&hospital).await.unwrap().publish(&publication).await.unwrap();
}

/// Records, as the hospital, a parent's consent for Amy's communication needs to the
/// education sector, valid as given (from now, open-ended, if `None`).
pub(crate) async fn record_education_consent(broker: &Broker, valid: Option<v1::Validity>) -> tio_core::ConsentId {
    let consent = v1::RecordConsentRequest {
        authority: None,
        child: child(),
        giver_role: v1::ConsentGiverRole::ParentWithParentalResponsibility as i32,
        giver_name: "Anna".into(),
        categories: vec![v1::Category::CommunicationNeeds as i32],
        recipients: Some(v1::Recipients { sectors: vec![v1::Sector::Education as i32], ..Default::default() }),
        purpose: "support at school".into(),
        lawful_basis: v1::LawfulBasis::PublicTask as i32,
        special_category_condition: v1::SpecialCategoryCondition::HealthOrSocialCare as i32,
        valid,
        evidence: Some(v1::ConsentEvidence { method: v1::ConsentMethod::InPerson as i32, ..Default::default() }),
    };
    let hospital = call(broker, "hospital");
    let amy = amy(broker);
    let recorder = broker.consent_recorder(&hospital, tio_audit::entry::Action::ConsentRecorded, &amy).await.unwrap();
    let new = crate::grpc::care::new_consent_from_proto(&consent).unwrap();
    recorder.record(new).await.unwrap().consent.id
}

/// Declares the school's enrolment of Amy.
pub(crate) async fn declare_school(broker: &Broker) {
    let amy = amy(broker);
    let school = call(broker, "school");
    broker.declare_relationship(&school, &amy, Some(tio_core::RelationshipKind::Enrolment), "").await.unwrap();
}

/// Creates the school's subscription `name` to communication needs, from now on.
pub(crate) async fn subscribe_school(broker: &Broker, name: &str) {
    let school = call(broker, "school");
    let new = crate::app::subscriptions::manage::NewSubscription {
        name: name.into(),
        categories: [tio_core::Category::CommunicationNeeds].into_iter().collect(),
        max_in_flight: 0,
        start: crate::app::subscriptions::manage::Start::Live,
    };
    broker.subscriber(&school).await.unwrap().create(new).await.unwrap();
}
