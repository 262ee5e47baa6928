//! TLS to PostgreSQL, as libpq's connection parameters say it, with
//! rustls (tokio-postgres itself knows `sslmode` disable, prefer and
//! require, and no certificate files):
//!
//! - `sslmode=disable`: never; `prefer` (the default): when the server
//!   offers it, the server not checked (libpq's);
//! - `require`: always; the server checked against `sslrootcert` when
//!   one is given (then as `verify-ca`, as libpq does), else not;
//! - `verify-ca`: the server's chain against `sslrootcert`;
//! - `verify-full`: that, and its name against the host connected to;
//! - `sslcert` and `sslkey`: the client certificate (PEM, with its
//!   intermediates) for PostgreSQL's `cert` authentication or
//!   `clientcert=verify-full`.
//!
//! Channel binding is not offered (SCRAM without it; libpq's `prefer`).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::StoreError;

/// How the server is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS parameters of a `postgres://` URL, taken out of it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TlsParameters {
    mode: Mode,
    root: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// The URL without ward's TLS parameters (with the `sslmode`
/// tokio-postgres knows in their place), and them.
pub(super) fn split(url: &str) -> Result<(String, TlsParameters), StoreError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut mode = None;
    let (mut root, mut cert, mut key) = (None, None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let path = || PathBuf::from(percent_decoded(value));
        match name {
            "sslmode" => mode = Some(parse_mode(&percent_decoded(value))?),
            "sslrootcert" => root = Some(path()),
            "sslcert" => cert = Some(path()),
            "sslkey" => key = Some(path()),
            _ => kept.push(pair),
        }
    }
    let mode = match (mode.unwrap_or(Mode::Prefer), &root) {
        (Mode::Require, Some(_)) => Mode::VerifyCa,
        (Mode::VerifyCa | Mode::VerifyFull, None) => {
            return Err(StoreError::Tls(
                "sslmode=verify-ca and verify-full need sslrootcert=FILE: the CA (PEM) that signed the server's certificate".into(),
            ));
        }
        (mode, _) => mode,
    };
    if cert.is_some() != key.is_some() {
        return Err(StoreError::Tls(
            "sslcert and sslkey go together: the client certificate (PEM) and its private key"
                .into(),
        ));
    }
    kept.push(match mode {
        Mode::Disable => "sslmode=disable",
        Mode::Prefer => "sslmode=prefer",
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => "sslmode=require",
    });
    let parameters = TlsParameters {
        mode,
        root,
        cert,
        key,
    };
    Ok((format!("{base}?{}", kept.join("&")), parameters))
}

fn parse_mode(value: &str) -> Result<Mode, StoreError> {
    Ok(match value {
        "disable" => Mode::Disable,
        "prefer" => Mode::Prefer,
        "require" => Mode::Require,
        "verify-ca" => Mode::VerifyCa,
        "verify-full" => Mode::VerifyFull,
        other => {
            return Err(StoreError::Tls(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            )));
        }
    })
}

/// `%2F` → `/` (a URL's parameter values are percent-encoded).
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The connector for `parameters`: its files read now, so a missing or
/// bad one stops the start with its name.
pub(super) fn connector(parameters: &TlsParameters) -> Result<RustlsConnector, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| StoreError::Tls(error.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (&parameters.root, parameters.mode) {
        (Some(root), Mode::VerifyCa | Mode::VerifyFull) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates(root)? {
                roots
                    .add(certificate)
                    .map_err(|error| file_error(root, &error))?;
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(roots.into(), Arc::clone(&provider))
                    .build()
                    .map_err(|error| file_error(root, &error))?;
            if parameters.mode == Mode::VerifyFull {
                webpki
            } else {
                Arc::new(NameUnchecked {
                    chain: Some(webpki),
                    provider,
                })
            }
        }
        _ => Arc::new(NameUnchecked {
            chain: None,
            provider,
        }),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&parameters.cert, &parameters.key) {
        (Some(cert), Some(key)) => {
            let private =
                PrivateKeyDer::from_pem_file(key).map_err(|error| file_error(key, &error))?;
            builder
                .with_client_auth_cert(certificates(cert)?, private)
                .map_err(|error| file_error(cert, &error))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(RustlsConnector(Arc::new(config)))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| file_error(path, &error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error(path, &error))?;
    if certificates.is_empty() {
        return Err(file_error(path, &"no PEM certificate in it"));
    }
    Ok(certificates)
}

fn file_error(path: &Path, error: &dyn std::fmt::Display) -> StoreError {
    StoreError::Tls(format!("{}: {error}", path.display()))
}

/// `verify-ca` (`chain`: the chain checked, the name not) and `prefer` or
/// `require` without `sslrootcert` (no `chain`: encrypted, the server's
/// certificate not checked). The handshake's signatures are checked
/// either way.
#[derive(Debug)]
struct NameUnchecked {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NameUnchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            checked => checked,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// tokio-postgres' TLS over rustls.
#[derive(Clone)]
pub(super) struct RustlsConnector(Arc<rustls::ClientConfig>);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MakeTlsConnect<S> for RustlsConnector {
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: Arc::clone(&self.0),
            server: ServerName::try_from(host.to_owned())?,
        })
    }
}

/// One connection's handshake, to `server`.
pub(super) struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    server: ServerName<'static>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> TlsConnect<S> for RustlsConnect {
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            Ok(RustlsStream(connector.connect(self.server, stream).await?))
        })
    }
}

/// An encrypted connection to PostgreSQL.
pub(super) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buffer)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, buffer)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "postgres://ward@db.bank.example:5432/ward";

    #[test]
    fn ward_takes_its_tls_parameters_out_and_leaves_the_rest() {
        let (url, parameters) = split(&format!(
            "{BASE}?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fetc%2Fward%2Fpg-ca.pem&sslcert=/etc/ward/pg.pem&sslkey=/etc/ward/pg.key"
        ))
        .unwrap();
        assert_eq!(url, format!("{BASE}?connect_timeout=5&sslmode=require"));
        assert_eq!(
            parameters,
            TlsParameters {
                mode: Mode::VerifyFull,
                root: Some("/etc/ward/pg-ca.pem".into()),
                cert: Some("/etc/ward/pg.pem".into()),
                key: Some("/etc/ward/pg.key".into()),
            }
        );
        let (url, parameters) = split(BASE).unwrap();
        assert_eq!(url, format!("{BASE}?sslmode=prefer"), "libpq's default");
        assert_eq!(parameters.mode, Mode::Prefer);
        let (url, _) = split(&format!("{BASE}?sslmode=disable")).unwrap();
        assert_eq!(url, format!("{BASE}?sslmode=disable"));
    }

    #[test]
    fn require_with_a_root_certificate_checks_the_chain_as_libpq_does() {
        let (_, parameters) = split(&format!("{BASE}?sslmode=require&sslrootcert=ca.pem")).unwrap();
        assert_eq!(parameters.mode, Mode::VerifyCa);
    }

    #[test]
    fn bad_tls_parameters_say_what_to_write() {
        let refused = |query: &str| split(&format!("{BASE}?{query}")).unwrap_err().to_string();
        assert!(refused("sslmode=verify").contains("not one of disable, prefer"));
        assert!(refused("sslmode=verify-full").contains("need sslrootcert=FILE"));
        assert!(refused("sslmode=verify-ca").contains("need sslrootcert=FILE"));
        assert!(refused("sslcert=client.pem").contains("sslcert and sslkey go together"));
        let parameters = split(&format!(
            "{BASE}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
        ))
        .unwrap()
        .1;
        let error = connector(&parameters).err().expect("refused").to_string();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
