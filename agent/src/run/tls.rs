//! mTLS for the agent: its certificate and key prove who it is; the CA
//! proves the controller is ours.

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::config::TlsFiles;

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS file {path}: {source}")]
pub struct TlsError {
    path: String,
    source: std::io::Error,
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError {
        path: path.display().to_string(),
        source,
    })
}

/// The client side of mTLS from `files`.
pub fn client_config(files: &TlsFiles) -> Result<ClientTlsConfig, TlsError> {
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&files.ca)?))
        .identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?)))
}
