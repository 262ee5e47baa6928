//! Real servers from the Debian packages, one private instance per call,
//! on a free loopback port in a temporary directory. Dropping the handle
//! stops the server (by PID) and removes its directory.

mod alertmanager;
mod postgres;
mod redis;
mod victoria_metrics;

pub use alertmanager::Alertmanager;
pub use postgres::Postgres;
pub use redis::Redis;
pub use victoria_metrics::VictoriaMetrics;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tempfile::TempDir;

use crate::RESOURCE_PREFIX;

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
