//! The controller's TLS, for gRPC (mTLS: agents present a client
//! certificate) and HTTPS (REST and the dashboard), from one certificate
//! and key. Connections are accepted here rather than inside the servers:
//! a handshake that fails is logged with its cause, the name the client
//! asked for and the names this controller's certificate holds, and
//! counted; it never vanishes. The files are read again on `SIGHUP`
//! ([`ServerTls::reload`]): new connections get the new certificate,
//! connections already up (agents' streams) keep going.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{info, warn};

use crate::services::Core;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections waiting for the server.
const ACCEPTED_BUFFER: usize = 64;

/// The TLS files do not make a usable server configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is not what it should be.
    #[error("TLS: {0}")]
    Invalid(String),
    /// A file cannot be read.
    #[error("TLS file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Which endpoint a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// gRPC: HTTP/2, a client certificate checked when presented.
    Grpc,
    /// REST and the dashboard: HTTP/1.1 or HTTP/2, no client certificate.
    Https,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Endpoint::Grpc => "gRPC",
            Endpoint::Https => "HTTPS",
        }
    }
}

/// One reading of the TLS files.
struct Loaded {
    grpc: Arc<rustls::ServerConfig>,
    https: Arc<rustls::ServerConfig>,
    /// The names (DNS names and addresses) the controller's certificate
    /// is valid for, for the log when a client refuses it.
    names: Arc<[String]>,
    /// When the controller's certificate expires, Unix ms.
    expires_at_ms: Option<i64>,
}

/// The controller's server TLS, re-readable while serving.
#[derive(Clone)]
pub struct ServerTls {
    files: crate::config::ServerTls,
    current: Arc<watch::Sender<Arc<Loaded>>>,
}

impl ServerTls {
    /// Reads the controller's certificate chain and key and the client CA
    /// from `files`.
    pub fn load(files: &crate::config::ServerTls) -> Result<Self, TlsError> {
        let loaded = read(files)?;
        Ok(Self {
            files: files.clone(),
            current: Arc::new(watch::channel(Arc::new(loaded)).0),
        })
    }

    /// Reads the files again: new connections get what they hold now. On
    /// an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = read(&self.files)?;
        self.current.send_replace(Arc::new(loaded));
        Ok(())
    }

    /// When the controller's certificate expires, Unix ms.
    pub fn expires_at_ms(&self) -> Option<i64> {
        self.current.borrow().expires_at_ms
    }

    fn loaded(&self) -> Arc<Loaded> {
        Arc::clone(&self.current.borrow())
    }
}

fn read(files: &crate::config::ServerTls) -> Result<Loaded, TlsError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| TlsError::File {
            path: path.display().to_string(),
            source,
        })
    };
    let invalid = |path: &std::path::Path, what: &str, error: &dyn std::fmt::Display| {
        TlsError::Invalid(format!("{}: {what}: {error}", path.display()))
    };
    let chain = CertificateDer::pem_slice_iter(&read(&files.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(&files.cert, "not a PEM certificate chain", &error))?;
    let names = chain
        .first()
        .map(|leaf| crate::certs::subject_names(leaf))
        .unwrap_or_default();
    let expires_at_ms = chain
        .first()
        .and_then(|leaf| crate::certs::not_after_ms(leaf));
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|error| invalid(&files.key, "not a PEM private key", &error))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&read(&files.client_ca)?) {
        let ca = ca.map_err(|error| invalid(&files.client_ca, "not a PEM certificate", &error))?;
        roots
            .add(ca)
            .map_err(|error| invalid(&files.client_ca, "not a CA certificate", &error))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // A client certificate is checked when presented and required by
    // the agent link; tools calling the inventory prove themselves
    // with an API token instead.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|error| invalid(&files.client_ca, "no usable client CA", &error))?;
    let builder = || {
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Invalid(error.to_string()))
    };
    let mut grpc = builder()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|error| invalid(&files.key, "does not fit the certificate", &error))?;
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    let mut https = builder()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| invalid(&files.key, "does not fit the certificate", &error))?;
    https.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded {
        grpc: Arc::new(grpc),
        https: Arc::new(https),
        names: names.into(),
        expires_at_ms,
    })
}

/// The connections on `listener` that complete the handshake for
/// `endpoint`, with their peers, until the receiver is dropped. Each
/// handshake runs in its own task, bounded by [`HANDSHAKE_TIMEOUT`], with
/// the certificate current when it starts; a failed one is logged and
/// counted (`ward_grpc_handshake_failures_total`,
/// `ward_https_handshake_failures_total`).
pub fn accept(
    listener: TcpListener,
    tls: ServerTls,
    endpoint: Endpoint,
    core: Arc<Core>,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (accepted, stream) = mpsc::channel(ACCEPTED_BUFFER);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                () = accepted.closed() => return,
                connection = listener.accept() => match connection {
                    Ok(connection) => connection,
                    Err(error) => {
                        // Out of descriptors and the like: wait, not spin.
                        warn!(%error, endpoint = endpoint.as_str(), "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let (loaded, core, accepted) = (tls.loaded(), Arc::clone(&core), accepted.clone());
            tokio::spawn(async move {
                let config = match endpoint {
                    Endpoint::Grpc => Arc::clone(&loaded.grpc),
                    Endpoint::Https => Arc::clone(&loaded.https),
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(tcp, config)).await {
                    Ok(Ok(stream)) => {
                        let _ = accepted.send((stream, peer)).await;
                    }
                    Ok(Err(failure)) => refused(&core, endpoint, peer, &loaded, &failure),
                    Err(_) => refused(
                        &core,
                        endpoint,
                        peer,
                        &loaded,
                        &Failure {
                            asked_for: None,
                            error: format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
                        },
                    ),
                }
            });
        }
    });
    stream
}

/// REST and the dashboard's connections over TLS, for `axum::serve`.
pub struct HttpsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl HttpsListener {
    /// Serves HTTPS on `listener` with `tls`.
    pub fn new(listener: TcpListener, tls: ServerTls, core: Arc<Core>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            accepted: accept(listener, tls, Endpoint::Https, core),
            local,
        })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task ends only when this receiver is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A handshake that did not complete.
struct Failure {
    /// The server name the client asked for (none when it connects by
    /// address: TLS sends no name then).
    asked_for: Option<String>,
    error: String,
}

async fn handshake(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> Result<TlsStream<TcpStream>, Failure> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), tcp)
        .await
        .map_err(|error| Failure {
            asked_for: None,
            error: error.to_string(),
        })?;
    let asked_for = start.client_hello().server_name().map(str::to_owned);
    start.into_stream(config).await.map_err(|error| Failure {
        asked_for,
        error: error.to_string(),
    })
}

/// Logs and counts a failed handshake. A client that refused our
/// certificate is told apart: the fix is on its side (the name it connects
/// to, or the CA it trusts) and the names we hold are what it must match.
fn refused(core: &Core, endpoint: Endpoint, peer: SocketAddr, tls: &Loaded, failure: &Failure) {
    let counter = match endpoint {
        Endpoint::Grpc => &core.metrics.grpc_handshake_failures,
        Endpoint::Https => &core.metrics.https_handshake_failures,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let endpoint = endpoint.as_str();
    let asked_for = failure
        .asked_for
        .as_deref()
        .unwrap_or("none (it connects by address)");
    let names = tls.names.join(", ");
    if failure.error.contains("received fatal alert") {
        warn!(endpoint, %peer, asked_for, certificate_names = %names, error = %failure.error,
            "a client refused this controller's certificate: the address or name it connects \
             to must be one of the certificate's names (re-issue with `certs init --name`), and it \
             must trust this deployment's CA");
    } else if failure.error.contains("peer sent no certificates")
        || failure.error.contains("invalid peer certificate")
    {
        warn!(endpoint, %peer, asked_for, error = %failure.error,
            "a gRPC client without a valid agent certificate was refused (issue one with `certs agent ID`)");
    } else {
        info!(endpoint, %peer, asked_for, error = %failure.error, "TLS handshake failed");
    }
}
