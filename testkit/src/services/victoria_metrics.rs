//! A private single-node VictoriaMetrics.

use std::process::Command;

use super::{LocalServer, http_get_ok, local_server_handle, service_dir};
use crate::ports::free_loopback_port;
use crate::process::Supervised;

const BINARY: &str = "/usr/bin/victoria-metrics";

/// A running VictoriaMetrics; stopped and deleted on drop.
pub struct VictoriaMetrics {
    server: LocalServer,
}

local_server_handle!(VictoriaMetrics);

impl VictoriaMetrics {
    /// Starts a fresh server with 100 years of retention, so samples with
    /// any recent timestamp are kept.
    pub fn start() -> anyhow::Result<Self> {
        let dir = service_dir("victoria-metrics")?;
        let port = free_loopback_port()?;
        let data = dir.path().join("data");
        let server = Supervised::new(
            "victoria-metrics",
            dir.path().join("victoria-metrics.log"),
            move || {
                let mut command = Command::new(BINARY);
                command
                    .arg(format!("-storageDataPath={}", data.display()))
                    .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                    .args(["-retentionPeriod=100y", "-loggerLevel=WARN"])
                    // Exports see samples as soon as they are flushed.
                    .arg("-search.latencyOffset=0s");
                command
            },
            move || http_get_ok(port, "/health"),
        );
        Ok(Self {
            server: LocalServer::start(server, port, dir)?,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:8428`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }
}
