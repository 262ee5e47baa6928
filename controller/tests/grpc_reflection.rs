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

/// Asks reflection `$version` for the file defining `symbol`; returns the
/// files answered, decoded.
macro_rules! files_for_symbol {
    ($version:ident, $channel:expr, $symbol:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol($symbol.into())),
        };
        let response = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection stream")
            .into_inner()
            .next()
            .await
            .expect("an answer")
            .expect("reflection answer");
        let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
            panic!("files expected, got {:?}", response.message_response);
        };
        files
            .file_descriptor_proto
            .iter()
            .map(|bytes| {
                <prost_types::FileDescriptorProto as prost::Message>::decode(bytes.as_slice())
                    .expect("a file descriptor")
            })
            .collect::<Vec<prost_types::FileDescriptorProto>>()
    }};
}

/// What a reflection client does before it can call a method: every file
/// imported is among those answered, and every message type a field or a
/// method names is defined in them.
fn resolve_everything(files: &[prost_types::FileDescriptorProto]) -> Result<(), String> {
    let names: Vec<&str> = files.iter().map(|file| file.name()).collect();
    let mut defined = std::collections::HashSet::new();
    for file in files {
        for import in &file.dependency {
            if !names.contains(&import.as_str()) {
                return Err(format!("{} imports {import}, not answered", file.name()));
            }
        }
        for message in &file.message_type {
            defined.insert(format!(".{}.{}", file.package(), message.name()));
        }
        for enumeration in &file.enum_type {
            defined.insert(format!(".{}.{}", file.package(), enumeration.name()));
        }
    }
    for file in files {
        let methods = file.service.iter().flat_map(|service| &service.method);
        for method in methods {
            for type_name in [method.input_type(), method.output_type()] {
                if !defined.contains(type_name) {
                    return Err(format!("{} names {type_name}", method.name()));
                }
            }
        }
        for message in &file.message_type {
            for field in &message.field {
                let name = field.type_name();
                let nested = name.starts_with(&format!(".{}.{}.", file.package(), message.name()));
                if !name.is_empty() && !nested && !defined.contains(name) {
                    return Err(format!("{}.{} names {name}", message.name(), field.name()));
                }
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_client_resolves_a_method_from_reflection_alone_in_v1_and_v1alpha() {
    let (address, _stop, _dir) = start_controller().await;
    let channel = channel(address).await;
    for symbol in ["ward.v1.Inventory", "ward.v1.AgentLink.Connect"] {
        let v1 = files_for_symbol!(v1, channel.clone(), symbol);
        let v1alpha = files_for_symbol!(v1alpha, channel.clone(), symbol);
        assert_eq!(v1, v1alpha, "{symbol}: the same files in both versions");
        let names: Vec<&str> = v1.iter().map(|file| file.name()).collect();
        assert!(
            names.contains(&"ward/v1/common.proto"),
            "{symbol}: {names:?}"
        );
        resolve_everything(&v1).unwrap_or_else(|error| panic!("{symbol}: {error}"));
    }
}
