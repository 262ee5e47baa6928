//! systemd's notify protocol (`Type=notify`, `WatchdogSec=`): `READY=1`
//! once probing, `WATCHDOG=1` from the run loop while it turns (at most
//! every half watchdog period), `STOPPING=1` on the way out. A datagram
//! to `$NOTIFY_SOCKET`; nothing happens without it.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use super::Supervisor;

/// Talks to systemd when it supervises us.
pub struct Systemd {
    socket: UnixDatagram,
    address: std::os::unix::net::SocketAddr,
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Systemd {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC`; `None` outside systemd.
    pub fn from_environment() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_str()?;
        let address = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(path).ok()?,
        };
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|&usec| usec > 0)
            .map(Duration::from_micros);
        Some(Self {
            socket: UnixDatagram::unbound().ok()?,
            address,
            watchdog,
            last_ping: None,
        })
    }

    fn notify(&self, state: &str) {
        if let Err(error) = self.socket.send_to_addr(state.as_bytes(), &self.address) {
            tracing::warn!(%error, state, "cannot notify systemd");
        }
    }
}

impl Supervisor for Systemd {
    fn ready(&mut self) {
        self.notify("READY=1\nSTATUS=probing");
    }

    fn alive(&mut self) {
        let Some(watchdog) = self.watchdog else {
            return;
        };
        if self
            .last_ping
            .is_none_or(|last| last.elapsed() >= watchdog / 2)
        {
            self.notify("WATCHDOG=1");
            self.last_ping = Some(Instant::now());
        }
    }

    fn stopping(&mut self) {
        self.notify("STOPPING=1");
    }
}

/// Systemd when present, else nothing.
pub enum MaybeSystemd {
    /// Under systemd.
    Present(Systemd),
    /// Not.
    Absent,
}

impl MaybeSystemd {
    /// Looks at the environment.
    pub fn detect() -> Self {
        Systemd::from_environment().map_or(Self::Absent, Self::Present)
    }
}

impl Supervisor for MaybeSystemd {
    fn ready(&mut self) {
        if let Self::Present(systemd) = self {
            systemd.ready();
        }
    }

    fn alive(&mut self) {
        if let Self::Present(systemd) = self {
            systemd.alive();
        }
    }

    fn stopping(&mut self) {
        if let Self::Present(systemd) = self {
            systemd.stopping();
        }
    }
}
