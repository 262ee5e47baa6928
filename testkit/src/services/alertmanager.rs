//! A private Prometheus Alertmanager, clustering off, that forwards every
//! notification (firing and resolved) to a webhook of the test's.

use std::process::Command;

use super::{LocalServer, http_get_ok, local_server_handle, service_dir};
use crate::ports::free_loopback_port;
use crate::process::Supervised;

const BINARY: &str = "/usr/bin/prometheus-alertmanager";

/// A running Alertmanager; stopped and deleted on drop.
pub struct Alertmanager {
    server: LocalServer,
}

local_server_handle!(Alertmanager);

impl Alertmanager {
    /// Starts a fresh Alertmanager whose one route sends every group to
    /// `webhook_url` at once (no group wait, 1 s group interval), resolved
    /// notifications included.
    pub fn start(webhook_url: &str) -> anyhow::Result<Self> {
        let dir = service_dir("alertmanager")?;
        let port = free_loopback_port()?;
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: test\n  group_by: ['...']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: test\n    webhook_configs:\n      - url: '{webhook_url}'\n        send_resolved: true\n"
            ),
        )?;
        let storage = dir.path().join("data");
        let server = Supervised::new(
            "alertmanager",
            dir.path().join("alertmanager.log"),
            move || {
                let mut command = Command::new(BINARY);
                command
                    .arg(format!("--config.file={}", config.display()))
                    .arg(format!("--storage.path={}", storage.display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    // An empty address turns clustering (and its port) off.
                    .arg("--cluster.listen-address=")
                    .arg("--log.level=warn");
                command
            },
            move || http_get_ok(port, "/-/ready"),
        );
        Ok(Self {
            server: LocalServer::start(server, port, dir)?,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:9093`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }
}
