//! An agency system receiving updates: connect over mutual TLS, make sure the
//! subscription exists, then print each delivery and acknowledge it once handled.
//!
//! Against a development server (`tio serve --dev --data-dir ./tio-dev`):
//!
//!   cargo run -p tio-client --example subscribe -- https://localhost:7443 ./tio-dev/dev-pki send-team
//!
//! It runs until interrupted; a broker restart is ridden out by reconnecting.

// An example prints what it receives.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use tio_client::{Client, ConnectionSettings, Subscriber};
use tio_proto::v1;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: subscribe SERVER_URL DEV_PKI_DIR AGENCY";
    let server = args.next().ok_or(usage)?;
    let pki = PathBuf::from(args.next().ok_or(usage)?);
    let agency = args.next().ok_or(usage)?;

    let settings = ConnectionSettings {
        professional: Some("integration-service".to_owned()),
        ..ConnectionSettings::from_dev_pki(server, &pki, &agency)
    };
    let client = Client::connect(&settings).await?;

    // Create the subscription the first time; afterwards it already exists.
    let create = v1::CreateSubscriptionRequest {
        name: "example".to_owned(),
        categories: vec![v1::Category::CommunicationNeeds as i32],
        start: Some(v1::StartFrom { from: Some(v1::start_from::From::ProfileThenLive(v1::ProfileThenLive {})) }),
        max_in_flight: 0,
    };
    match client.subscriptions().create_subscription(client.request(create)).await {
        Ok(_) => println!("created subscription `example`"),
        Err(status) if status.code() == tonic::Code::AlreadyExists => {}
        Err(status) => return Err(tio_client::describe_status(&status).into()),
    }

    let mut subscriber = Subscriber::new(client, "example");
    loop {
        let delivery = subscriber.next().await?;
        println!(
            "delivery {}: update {} about a child, category {:?}, from {}",
            delivery.delivery_number,
            delivery.update_id,
            delivery.category(),
            delivery.publisher_agency_id
        );
        // Store it in the agency's own system first; only then acknowledge it.
        subscriber.ack(delivery.delivery_number).await?;
    }
}
