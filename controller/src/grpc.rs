//! The controller's gRPC endpoint: standard health checking
//! (`grpc.health.v1`) and server reflection (v1 and v1alpha, for grpcurl and
//! friends). The ward services join this router as they are implemented.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;

/// Why the gRPC endpoint could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The listen address could not be bound.
    #[error(
        "cannot listen for gRPC on {address}: {source}; pick a free address with --listen-grpc"
    )]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A reflection service could not be built from the descriptor sets.
    #[error("building the gRPC reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server failed while running.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Binds `address` for [`serve`].
pub async fn bind(address: SocketAddr) -> Result<TcpListener, GrpcError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| GrpcError::Bind { address, source })
}

/// Serves health and reflection on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GrpcError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // The empty service name is the server as a whole.
    health_reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
