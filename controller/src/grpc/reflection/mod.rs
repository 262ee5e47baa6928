//! gRPC server reflection, v1 and v1alpha, over one [`Catalog`]: what
//! `grpcurl` and grpcio's reflection client need to call ward's services
//! knowing only the address. (tonic-reflection answers a file without the
//! files it imports, which those clients cannot resolve; see `catalog`.)
//! A question it cannot answer gets the protocol's error answer (`NOT_FOUND`
//! with the reason) and the stream goes on.

mod catalog;

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::{Stream, StreamExt as _};
use tonic::{Code, Request, Response, Status, Streaming};

use catalog::{Answer, Catalog, Query};

/// The reflection services of both versions, each advertising `services`
/// and itself.
pub(super) fn services(
    services: &[&str],
) -> Result<
    (
        v1::ServerReflectionServer<Reflection>,
        v1alpha::ServerReflectionServer<Reflection>,
    ),
    prost::DecodeError,
> {
    let sets = [
        ward_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let with = |itself: &str| {
        let mut names = services.to_vec();
        names.push(itself);
        Catalog::new(&sets, &names).map(|catalog| Reflection {
            catalog: Arc::new(catalog),
        })
    };
    Ok((
        v1::ServerReflectionServer::new(with("grpc.reflection.v1.ServerReflection")?),
        v1alpha::ServerReflectionServer::new(with("grpc.reflection.v1alpha.ServerReflection")?),
    ))
}

/// One version's reflection service.
pub(super) struct Reflection {
    catalog: Arc<Catalog>,
}

/// The answers to a reflection stream, one per question.
type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The same service for each version of the protocol's messages (the two
/// packages' types are alike but distinct).
macro_rules! reflection_version {
    ($version:ident) => {
        pub(super) mod $version {
            use super::*;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            pub(in crate::grpc) use tonic_reflection::pb::$version::server_reflection_server::{
                ServerReflection, ServerReflectionServer,
            };
            use tonic_reflection::pb::$version::{
                ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse,
                ListServiceResponse, ServerReflectionRequest, ServerReflectionResponse,
                ServiceResponse,
            };

            #[tonic::async_trait]
            impl ServerReflection for Reflection {
                type ServerReflectionInfoStream = Answers<ServerReflectionResponse>;

                async fn server_reflection_info(
                    &self,
                    request: Request<Streaming<ServerReflectionRequest>>,
                ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
                    let catalog = Arc::clone(&self.catalog);
                    let answers = request
                        .into_inner()
                        .map(move |question| question.map(|question| answer(&catalog, question)));
                    Ok(Response::new(Box::pin(answers)))
                }
            }

            fn answer(
                catalog: &Catalog,
                question: ServerReflectionRequest,
            ) -> ServerReflectionResponse {
                let query = match &question.message_request {
                    Some(MessageRequest::FileByFilename(name)) => Some(Query::File(name)),
                    Some(MessageRequest::FileContainingSymbol(symbol)) => {
                        Some(Query::Symbol(symbol))
                    }
                    Some(MessageRequest::FileContainingExtension(_)) => Some(Query::Extension),
                    Some(MessageRequest::AllExtensionNumbersOfType(_)) => {
                        Some(Query::ExtensionNumbers)
                    }
                    Some(MessageRequest::ListServices(_)) => Some(Query::Services),
                    None => None,
                };
                let response = match query.map(|query| catalog.answer(query)) {
                    Some(Answer::Files(files)) => {
                        MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
                            file_descriptor_proto: files,
                        })
                    }
                    Some(Answer::Services(names)) => {
                        MessageResponse::ListServicesResponse(ListServiceResponse {
                            service: names
                                .into_iter()
                                .map(|name| ServiceResponse { name })
                                .collect(),
                        })
                    }
                    Some(Answer::NoExtensionNumbers) => {
                        let base_type_name = match &question.message_request {
                            Some(MessageRequest::AllExtensionNumbersOfType(name)) => name.clone(),
                            _ => String::new(),
                        };
                        MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                            base_type_name,
                            extension_number: Vec::new(),
                        })
                    }
                    Some(Answer::NotFound(reason)) => {
                        MessageResponse::ErrorResponse(ErrorResponse {
                            error_code: Code::NotFound as i32,
                            error_message: reason,
                        })
                    }
                    None => MessageResponse::ErrorResponse(ErrorResponse {
                        error_code: Code::InvalidArgument as i32,
                        error_message: "the request names no question".into(),
                    }),
                };
                ServerReflectionResponse {
                    valid_host: question.host.clone(),
                    original_request: Some(question),
                    message_response: Some(response),
                }
            }
        }
    };
}

reflection_version!(v1);
reflection_version!(v1alpha);
