//! A grpcurl-style client lists the controller's services through the
//! reflection API and calls the standard health check.

mod common;

use std::net::SocketAddr;

use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn start_controller() -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
) {
    let (dir, controller) = common::sqlite_controller().await;
    let listener = ward_controller::grpc::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind a loopback port");
    let address = listener.local_addr().expect("bound address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        ward_controller::grpc::serve(listener, controller, None, async {
            let _ = stopped.await;
        })
        .await
        .expect("gRPC server");
    });
    (address, stop, dir)
}

async fn channel(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .expect("endpoint URI")
        .connect()
        .await
        .expect("connect to the controller")
}

#[tokio::test]
async fn reflection_lists_services_and_health_check_answers_serving() {
    let (address, _stop, _dir) = start_controller().await;
    let channel = channel(address).await;

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection stream")
        .into_inner();
    let response = responses
        .next()
        .await
        .expect("one reflection response")
        .expect("reflection answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!(
            "expected a service list, got {:?}",
            response.message_response
        );
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "ward.v1.AgentLink",
            "ward.v1.Inventory"
        ]
    );

    let mut health = HealthClient::new(channel);
    // The server as a whole, and each service it serves, by name.
    for service in [
        "",
        "ward.v1.Inventory",
        "ward.v1.AgentLink",
        "grpc.health.v1.Health",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|error| panic!("health check of `{service}`: {error}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }

    let unknown = health
        .check(HealthCheckRequest {
            service: "ward.v1.NoSuchService".into(),
        })
        .await
        .expect_err("an unknown service is not healthy");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}
