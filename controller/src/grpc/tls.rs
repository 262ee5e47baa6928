//! The gRPC endpoint's mTLS, accepted here rather than inside the server:
//! a handshake that fails is logged with its cause, the name the client
//! asked for and the names this controller's certificate holds, and
//! counted; it never vanishes. A client certificate, when presented, must
//! chain to the client CA (the agent link requires one; the inventory takes
//! an API token); the connections that pass go to the server with their
//! certificates (`Request::peer_certs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};

use super::GrpcError;
use crate::state::Controller;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections waiting for the server.
const ACCEPTED_BUFFER: usize = 64;

/// The server side of the gRPC endpoint's mTLS.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    /// The names (DNS names and addresses) the controller's certificate
    /// is valid for, for the log when a client refuses it.
    names: Arc<[String]>,
    /// When the controller's certificate expires, Unix ms.
    expires_at_ms: Option<i64>,
}

impl ServerTls {
    /// Reads the controller's certificate chain and key and the client CA
    /// from `tls`'s files.
    pub fn load(tls: &crate::config::ServerTls) -> Result<Self, GrpcError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| GrpcError::TlsFile {
                path: path.display().to_string(),
                source,
            })
        };
        let invalid = |path: &std::path::Path, what: &str, error: &dyn std::fmt::Display| {
            GrpcError::Tls(format!("{}: {what}: {error}", path.display()))
        };
        let chain = CertificateDer::pem_slice_iter(&read(&tls.cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| invalid(&tls.cert, "not a PEM certificate chain", &error))?;
        let names = chain
            .first()
            .map(|leaf| crate::certs::subject_names(leaf))
            .unwrap_or_default();
        let expires_at_ms = chain
            .first()
            .and_then(|leaf| crate::certs::not_after_ms(leaf));
        let key = PrivateKeyDer::from_pem_slice(&read(&tls.key)?)
            .map_err(|error| invalid(&tls.key, "not a PEM private key", &error))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&read(&tls.client_ca)?) {
            let ca =
                ca.map_err(|error| invalid(&tls.client_ca, "not a PEM certificate", &error))?;
            roots
                .add(ca)
                .map_err(|error| invalid(&tls.client_ca, "not a CA certificate", &error))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // A client certificate is checked when presented and required by
        // the agent link; tools calling the inventory prove themselves
        // with an API token instead.
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|error| invalid(&tls.client_ca, "no usable client CA", &error))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| GrpcError::Tls(error.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|error| invalid(&tls.key, "does not fit the certificate", &error))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            names: names.into(),
            expires_at_ms,
        })
    }

    /// When the controller's certificate expires, Unix ms.
    pub fn expires_at_ms(&self) -> Option<i64> {
        self.expires_at_ms
    }
}

/// The connections on `listener` that complete the handshake, until the
/// server drops the stream. Each handshake runs in its own task, bounded
/// by [`HANDSHAKE_TIMEOUT`]; a failed one is logged and counted in
/// `ward_grpc_handshake_failures_total`.
pub fn accept(
    listener: TcpListener,
    tls: ServerTls,
    controller: Arc<Controller>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (accepted, stream) = mpsc::channel(ACCEPTED_BUFFER);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                () = accepted.closed() => return,
                connection = listener.accept() => match connection {
                    Ok(connection) => connection,
                    Err(error) => {
                        // Out of descriptors and the like: wait, not spin.
                        warn!(%error, "cannot accept a gRPC connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let (tls, controller, accepted) =
                (tls.clone(), Arc::clone(&controller), accepted.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(tcp, &tls)).await {
                    Ok(Ok(stream)) => {
                        let _ = accepted.send(Ok(stream)).await;
                    }
                    Ok(Err(failure)) => refused(&controller, peer, &tls, &failure),
                    Err(_) => refused(
                        &controller,
                        peer,
                        &tls,
                        &Failure {
                            asked_for: None,
                            error: format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
                        },
                    ),
                }
            });
        }
    });
    ReceiverStream::new(stream)
}

/// A handshake that did not complete.
struct Failure {
    /// The server name the client asked for (none when it connects by
    /// address: TLS sends no name then).
    asked_for: Option<String>,
    error: String,
}

async fn handshake(tcp: TcpStream, tls: &ServerTls) -> Result<TlsStream<TcpStream>, Failure> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), tcp)
        .await
        .map_err(|error| Failure {
            asked_for: None,
            error: error.to_string(),
        })?;
    let asked_for = start.client_hello().server_name().map(str::to_owned);
    start
        .into_stream(Arc::clone(&tls.config))
        .await
        .map_err(|error| Failure {
            asked_for,
            error: error.to_string(),
        })
}

/// Logs and counts a failed handshake. A client that refused our
/// certificate is told apart: the fix is on its side (the name it connects
/// to, or the CA it trusts) and the names we hold are what it must match.
fn refused(controller: &Controller, peer: SocketAddr, tls: &ServerTls, failure: &Failure) {
    controller
        .metrics
        .grpc_handshake_failures
        .fetch_add(1, Ordering::Relaxed);
    let asked_for = failure
        .asked_for
        .as_deref()
        .unwrap_or("none (it connects by address)");
    let names = tls.names.join(", ");
    if failure.error.contains("received fatal alert") {
        warn!(%peer, asked_for, certificate_names = %names, error = %failure.error,
            "a gRPC client refused this controller's certificate: the address or name it connects \
             to must be one of the certificate's names (re-issue with `certs init --name`), and it \
             must trust this deployment's CA");
    } else if failure.error.contains("peer sent no certificates")
        || failure.error.contains("invalid peer certificate")
    {
        warn!(%peer, asked_for, error = %failure.error,
            "a gRPC client without a valid agent certificate was refused (issue one with `certs agent ID`)");
    } else {
        info!(%peer, asked_for, error = %failure.error, "gRPC TLS handshake failed");
    }
}
