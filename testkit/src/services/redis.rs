//! A private Redis server without persistence.

use std::process::Command;

use tempfile::TempDir;

use super::{exchange, service_dir};
use crate::ports::free_loopback_port;
use crate::process::Supervised;

/// A running Redis server; stopped and deleted on drop.
pub struct Redis {
    server: Supervised,
    port: u16,
    _dir: TempDir,
}

impl Redis {
    /// Starts a fresh, empty server.
    pub fn start() -> anyhow::Result<Self> {
        let dir = service_dir("redis")?;
        let port = free_loopback_port()?;
        let data = dir.path().to_path_buf();
        let mut server = Supervised::new(
            "redis-server",
            dir.path().join("redis.log"),
            move || {
                let mut command = Command::new("redis-server");
                command
                    .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                    .arg("--dir")
                    .arg(&data);
                command
            },
            move || exchange(port, b"PING\r\n").is_some_and(|answer| answer == "+PONG\r\n"),
        );
        server.start()?;
        Ok(Self {
            server,
            port,
            _dir: dir,
        })
    }

    /// URL for the `redis` crate / the controller.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (its in-memory data is gone).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts a stopped server again on the same port, empty.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.server.start()
    }
}
