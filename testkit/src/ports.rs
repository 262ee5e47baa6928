//! Free loopback TCP ports, never handed out twice in one test process.
//!
//! Ports come from below the kernel's ephemeral range
//! (`net.ipv4.ip_local_port_range`): a port picked there could be taken,
//! between the pick and the server's bind, by an outgoing connection (a
//! controller's to PostgreSQL) that the kernel gave that same port.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The lowest port picked.
const LOWEST: u16 = 10_000;

/// The first port of the kernel's ephemeral range (32768 if unreadable).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A loopback port that was free a moment ago, outside the ephemeral
/// range, and that no other caller in this process has received.
pub fn free_loopback_port() -> anyhow::Result<u16> {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let end = ephemeral_start();
    anyhow::ensure!(
        end > LOWEST + 1_000,
        "the ephemeral port range starts at {end}: leave 10000-{} for test servers \
         (net.ipv4.ip_local_port_range)",
        LOWEST + 1_000
    );
    for _ in 0..256 {
        let port = fastrand::u16(LOWEST..end);
        if handed_out.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        handed_out.insert(port);
        return Ok(port);
    }
    anyhow::bail!("no free loopback TCP port in {LOWEST}-{end} after 256 attempts")
}
