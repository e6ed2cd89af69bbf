//! The Prometheus endpoint of a running server: counts move with traffic, and nothing
//! personal appears in it.

use std::io::{Read, Write};

use tio_proto::v1;

use crate::support::Sandbox;
use crate::support::records::*;

pub(crate) fn scrape(sandbox: &Sandbox, path: &str) -> String {
    let address = sandbox.metrics.expect("the development server serves metrics");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn metrics_count_publishes_denials_and_commits_and_hold_nothing_personal() {
    let sandbox = Sandbox::start();
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let school = as_professional(&sandbox, "school").await;
        publish(
            &hospital,
            publish_request(AMY, v1::Category::CommunicationNeeds, communication_needs("Makaton"), "m1"),
        )
        .await
        .unwrap();
        let refused = publish_request(AMY, v1::Category::HealthSummary, health_summary("Asthma"), "m2");
        publish(&school, refused).await.unwrap_err();
    });
    let text = scrape(&sandbox, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for expected in [
        "tio_publishes_total{outcome=\"allowed\"} 1",
        "tio_publishes_total{outcome=\"denied\"} 1",
        "tio_denials_total{action=\"publish\",reason=\"not_permitted_for_category\"} 1",
        "tio_commit_sync_seconds_count",
        "tio_commit_group_batches_bucket",
        "tio_open_streams 0",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    assert!(!text.contains(AMY) && !text.contains("999 007"), "an NHS number in the metrics");
    assert!(scrape(&sandbox, "/other").starts_with("HTTP/1.1 404"));
}
