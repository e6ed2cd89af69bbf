//! The broker in process, on an in-memory store and an injected clock: consent validity
//! is enforced by the clock at every decision, never by a cleanup job.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tio_core::{CategorySet, Timestamp};
use tio_proto::v1;

use super::*;
use crate::app::test_support::{
    AMY, T0, TestClock, broker, call, declare_school, publish_communication_needs, record_education_consent,
};
use crate::grpc::convert::timestamp_to_proto;

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
    publish_communication_needs(&broker, "k1").await;
    record_education_consent(
        &broker,
        Some(v1::Validity {
            from: Some(timestamp_to_proto(Timestamp::from_unix_seconds(T0 + 3_600))),
            until: Some(timestamp_to_proto(Timestamp::from_unix_seconds(T0 + 7_200))),
        }),
    )
    .await;
    declare_school(&broker).await;

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
