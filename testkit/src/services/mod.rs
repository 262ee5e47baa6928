//! Real servers from the Debian packages, one private instance per call,
//! on a free loopback port in a temporary directory. Dropping the handle
//! stops the server (by PID) and removes its directory.

mod alertmanager;
mod exim;
mod postgres;
mod redis;
mod slapd;
mod victoria_metrics;

pub use alertmanager::Alertmanager;
pub use exim::{Exim, SMTP_PASSWORD, SMTP_USER};
pub use postgres::{Postgres, PostgresTls};
pub use redis::Redis;
pub use slapd::{ADMIN_DN, ADMIN_PASSWORD, BASE_DN, Slapd, SlapdTls};
pub use victoria_metrics::VictoriaMetrics;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tempfile::TempDir;

use crate::RESOURCE_PREFIX;
use crate::process::Supervised;

/// A supervised server on a loopback port and the temporary directory it
/// works in; stopped (by PID) and the directory deleted on drop. Every
/// service handle dereferences to one.
pub struct LocalServer {
    // Declared before the directory: the server stops before it is deleted.
    server: Supervised,
    port: u16,
    _dir: TempDir,
}

impl LocalServer {
    /// Starts `server`, which listens on `port` and works in `dir`.
    fn start(mut server: Supervised, port: u16, dir: TempDir) -> anyhow::Result<Self> {
        server.start()?;
        Ok(Self {
            server,
            port,
            _dir: dir,
        })
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server gracefully; what it keeps on disk stays for
    /// [`LocalServer::resume`] (Redis and Alertmanager keep nothing).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn crash(&mut self) {
        self.server.crash();
    }

    /// Starts a stopped or crashed server again on the same port and
    /// directory.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.server.start()
    }

    /// The server's process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }
}

/// `Deref`/`DerefMut` from a service handle to its [`LocalServer`].
macro_rules! local_server_handle {
    ($service:ty) => {
        impl std::ops::Deref for $service {
            type Target = $crate::services::LocalServer;
            fn deref(&self) -> &Self::Target {
                &self.server
            }
        }
        impl std::ops::DerefMut for $service {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.server
            }
        }
    };
}
use local_server_handle;

pub(crate) fn service_dir(service: &str) -> anyhow::Result<TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("{RESOURCE_PREFIX}{service}-"))
        .tempdir()?)
}

/// Sends one request over a fresh loopback connection and returns the whole
/// answer; `None` when the server does not accept or answer yet.
fn exchange(port: u16, request: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(request).ok()?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                if answer.ends_with(b"\r\n") && !request.starts_with(b"GET") {
                    break;
                }
            }
            Err(_) if !answer.is_empty() => break,
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// `GET path` over HTTP/1.0 answered with status 200.
fn http_get_ok(port: u16, path: &str) -> bool {
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    exchange(port, request.as_bytes())
        .is_some_and(|answer| answer.split_whitespace().nth(1) == Some("200"))
}
