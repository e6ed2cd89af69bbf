//! Server reflection, v1 and v1alpha, as off-the-shelf tools (grpcurl, Postman) use it.

use tokio_stream::StreamExt;
use tonic_reflection::pb::{v1, v1alpha};

use crate::support::Sandbox;

fn assert_lists_every_tio_service(names: &[String]) {
    for service in tio_proto::SERVICE_NAMES {
        assert!(names.iter().any(|name| name == service), "{service} missing from {names:?}");
    }
    assert!(names.iter().any(|name| name == "grpc.health.v1.Health"), "{names:?}");
}

#[tokio::test]
async fn reflection_v1_lists_every_service() {
    let sandbox = Sandbox::start();
    let client = sandbox.client("hospital").await;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut responses = v1::server_reflection_client::ServerReflectionClient::new(client.channel())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.expect("one response").unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) = response.message_response
    else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    assert_lists_every_tio_service(&names);
}

#[tokio::test]
async fn reflection_v1alpha_lists_every_service_and_serves_their_files() {
    let sandbox = Sandbox::start();
    let client = sandbox.client("school").await;
    let list = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let file = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "tio.v1.RecordService".into(),
        )),
    };
    let mut responses = v1alpha::server_reflection_client::ServerReflectionClient::new(client.channel())
        .server_reflection_info(tokio_stream::iter([list, file]))
        .await
        .unwrap()
        .into_inner();
    let first = responses.next().await.expect("list response").unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) = first.message_response
    else {
        panic!("unexpected reflection response {first:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    assert_lists_every_tio_service(&names);

    let second = responses.next().await.expect("file response").unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        second.message_response
    else {
        panic!("unexpected reflection response {second:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}
