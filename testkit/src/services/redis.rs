//! A private Redis server without persistence.

use std::process::Command;

use super::{LocalServer, exchange, local_server_handle, service_dir};
use crate::ports::free_loopback_port;
use crate::process::Supervised;

/// A running Redis server; stopped and deleted on drop.
pub struct Redis {
    server: LocalServer,
}

local_server_handle!(Redis);

impl Redis {
    /// Starts a fresh, empty server.
    pub fn start() -> anyhow::Result<Self> {
        let dir = service_dir("redis")?;
        let port = free_loopback_port()?;
        let data = dir.path().to_path_buf();
        let server = Supervised::new(
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
        Ok(Self {
            server: LocalServer::start(server, port, dir)?,
        })
    }

    /// URL for the `redis` crate / the controller.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port())
    }
}
