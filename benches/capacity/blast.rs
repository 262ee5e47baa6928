//! `ward-capacity blast FILE`: the ceiling the kernel allows. One thread
//! sends an ICMP echo request to every IPv4 address in FILE (one per line)
//! with `sendmmsg` on a raw socket, draining replies between batches with
//! `recvmmsg`, then waits for the rest: no scheduling, no per-target
//! state, no tags, no output but a count. It uses ward's syscall layer
//! (`ward_agent::sys`: the same socket options and batches the agent
//! uses), so what it measures is the kernel's send and reply path.
//!
//! Prints `blast: targets N, sent N, received N, send rate R probes/s` on
//! standard error.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::Context;
use ward_agent::packet::{Family, PROBE_LEN, internet_checksum};
use ward_agent::sys::{ProbeSocket, RecvBatch, SendBatch};

/// Gives up on missing replies this long after the last one arrived.
const QUIET: Duration = Duration::from_secs(1);
const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;

pub fn run(file: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    let targets = text
        .lines()
        .map(|line| line.trim().parse::<Ipv4Addr>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{file}: one IPv4 address per line"))?;
    let ident = u16::try_from(std::process::id() & 0xffff).unwrap_or(1);
    let socket = ProbeSocket::open(Family::V4, ident, 32 << 20)?;
    let fd = socket.raw_fd();
    let mut batch = SendBatch::new(socket.features().header_included);
    let mut replies = RecvBatch::new();
    let mut received = 0usize;
    let drain = |replies: &mut RecvBatch| -> anyhow::Result<usize> {
        let count = replies.recv(fd)?;
        Ok((0..count)
            .filter(|&i| is_echo_reply(replies.packet(i).0))
            .count())
    };
    let started = Instant::now();
    for (seq, target) in targets.iter().enumerate() {
        let packet = &mut batch.next_buffer()[..PROBE_LEN];
        packet.fill(0);
        packet[0] = ECHO_REQUEST;
        packet[4..6].copy_from_slice(&ident.to_be_bytes());
        packet[6..8].copy_from_slice(&(seq as u16).to_be_bytes());
        let checksum = internet_checksum(packet);
        packet[2..4].copy_from_slice(&checksum.to_be_bytes());
        batch.commit(IpAddr::V4(*target), PROBE_LEN);
        if batch.is_full() {
            while batch.flush(fd).blocked {
                received += drain(&mut replies)?;
            }
            received += drain(&mut replies)?;
        }
    }
    while batch.flush(fd).blocked {
        received += drain(&mut replies)?;
    }
    let send_phase = started.elapsed();
    let mut last_reply = Instant::now();
    while received < targets.len() && last_reply.elapsed() < QUIET {
        match drain(&mut replies)? {
            0 => std::thread::sleep(Duration::from_micros(100)),
            more => {
                received += more;
                last_reply = Instant::now();
            }
        }
    }
    eprintln!(
        "blast: targets {}, sent {}, received {received}, send rate {:.0} probes/s",
        targets.len(),
        targets.len(),
        targets.len() as f64 / send_phase.as_secs_f64().max(1e-9)
    );
    Ok(())
}

/// An IPv4 packet (header included, as raw sockets deliver it) carrying
/// an ICMP echo reply.
fn is_echo_reply(packet: &[u8]) -> bool {
    let header = usize::from(packet.first().map_or(0, |byte| byte & 0x0f)) * 4;
    packet.get(header) == Some(&ECHO_REPLY)
}
