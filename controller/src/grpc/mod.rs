//! The controller's gRPC endpoint: `ward.v1.Inventory`, standard health
//! checking (`grpc.health.v1`) and server reflection (v1 and v1alpha, for
//! grpcurl and friends), which advertises exactly the services served.

mod agent_link;
mod convert;
mod inventory;
mod inventory_access;
mod inventory_profiles;
mod reflection;

pub use agent_link::{AgentLinkService, IdentifyPeer, PeerIdentity};
pub use inventory::InventoryService;
pub use inventory_access::INVENTORY_ACCESS;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::services::App;

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
    Reflection(#[from] prost::DecodeError),
    /// The server failed while running.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS files do not make a usable server configuration.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// The agent identity in a request's client certificate (its common name).
fn certificate_identity<T>(request: &tonic::Request<T>) -> PeerIdentity {
    let chain = request.peer_certs();
    let Some(leaf) = chain.as_ref().and_then(|chain| chain.first()) else {
        return PeerIdentity::NoCertificate;
    };
    // The handshake checked the chain; a certificate without a name
    // identifies nobody.
    PeerIdentity::Certificate {
        name: crate::certs::common_name(leaf).unwrap_or_default(),
        expires_at_ms: crate::certs::not_after_ms(leaf),
        fingerprint: crate::certs::fingerprint(leaf),
    }
}

/// Binds `address` for [`serve`].
pub async fn bind(address: SocketAddr) -> Result<TcpListener, GrpcError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| GrpcError::Bind { address, source })
}

/// Services served (and advertised by reflection) besides reflection itself.
const SERVED: &[&str] = &[
    "grpc.health.v1.Health",
    "ward.v1.AgentLink",
    "ward.v1.Inventory",
];

/// Serves the agent link and the inventory over `app`'s services, health and
/// reflection on `listener` until `shutdown` completes; over mTLS when
/// `tls` is given (the client certificate names the agent).
pub async fn serve(
    listener: TcpListener,
    app: App,
    tls: Option<crate::tls::ServerTls>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GrpcError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // The empty service name is the server as a whole; each served
    // service answers for itself too.
    for service in std::iter::once("").chain(SERVED.iter().copied()) {
        health_reporter
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    let (reflection_v1, reflection_v1alpha) = reflection::services(SERVED)?;
    let identify: IdentifyPeer = if tls.is_some() {
        Arc::new(certificate_identity)
    } else {
        Arc::new(|_| PeerIdentity::Unauthenticated)
    };
    let router = Server::builder()
        .add_service(ward_proto::v1::agent_link_server::AgentLinkServer::new(
            AgentLinkService::new(&app, identify),
        ))
        .add_service(ward_proto::v1::inventory_server::InventoryServer::new(
            InventoryService::new(app.clone()),
        ))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(
                    ReceiverStream::new(crate::tls::accept(
                        listener,
                        tls,
                        crate::tls::Endpoint::Grpc,
                        Arc::clone(&app.core),
                    ))
                    .map(|(stream, _peer)| Ok::<_, std::io::Error>(stream)),
                    shutdown,
                )
                .await?;
        }
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await?;
        }
    }
    Ok(())
}
