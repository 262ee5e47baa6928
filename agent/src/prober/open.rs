//! Opening what the prober runs on: one ICMP socket per family needed
//! (and a raw TCP one where targets are checked by TCP, with the source
//! address of the route to each), the receiver's readiness, and the note
//! on the send path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Poll, Token, Waker};

use super::packet_path::PacketPath;
use super::{ProberConfig, ProberError, SendPath};
use crate::engine::{Check, TargetSpec};
use crate::packet::Family;
use crate::sys::{Features, ProbeSocket};

/// One socket per family the targets need (every family with
/// `all_families`); a family the host lacks is fine until a target needs
/// it (the agent tells its controller which families it has), but probing
/// nothing at all is never a working prober.
pub(super) fn open_sockets(
    config: &ProberConfig,
    targets: &[(TargetSpec, u64)],
) -> Result<Vec<Arc<ProbeSocket>>, ProberError> {
    let ident = random_ident();
    let mut sockets = Vec::new();
    let mut refused = None;
    for family in [Family::V4, Family::V6] {
        let needed = targets
            .iter()
            .any(|(spec, _)| Family::of(spec.address) == family);
        if !needed && !config.all_families {
            continue;
        }
        match ProbeSocket::open(family, ident, config.receive_buffer) {
            Ok(socket) => sockets.push(Arc::new(socket)),
            Err(error) if !needed => {
                tracing::warn!(?family, %error, "this family cannot be probed");
                refused = Some(error);
            }
            Err(error) => return Err(error.into()),
        }
    }
    if sockets.is_empty()
        && let Some(error) = refused
    {
        return Err(error.into());
    }
    // After the ICMP ones (the engine takes its identifier from the first).
    // A family without ICMP has none; where TCP checks are not needed yet,
    // one that cannot be opened leaves them refused later (counted).
    for family in [Family::V4, Family::V6] {
        if !sockets.iter().any(|socket| socket.family() == family) {
            continue;
        }
        let needed = targets
            .iter()
            .any(|(spec, _)| Family::of(spec.address) == family && spec.check != Check::Icmp);
        if !needed && !config.all_families {
            continue;
        }
        match ProbeSocket::open_tcp(family, config.receive_buffer) {
            Ok(socket) => sockets.push(Arc::new(socket)),
            Err(error) if !needed => {
                tracing::warn!(?family, %error, "devices checked by TCP cannot be probed");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(sockets)
}

/// What was opened, as the agent tells its controller: what its ICMP
/// sockets were granted, by family, and the families with a raw TCP socket
/// (only where that family's ICMP socket is).
pub(super) fn opened(sockets: &[Arc<ProbeSocket>]) -> (Vec<(Family, Features)>, Vec<Family>) {
    let (tcp, icmp): (Vec<_>, Vec<_>) = sockets.iter().partition(|socket| socket.is_tcp());
    (
        icmp.iter()
            .map(|socket| (socket.family(), socket.features()))
            .collect(),
        tcp.iter().map(|socket| socket.family()).collect(),
    )
}

/// `spec` with the source address of the route to it when its check
/// sends SYNs (their checksum covers it): what a UDP socket connected to
/// it is bound to (connecting sends nothing). Unchanged otherwise, or
/// when there is no route (the engine then refuses it, saying so).
pub(super) fn with_route_source(spec: TargetSpec) -> TargetSpec {
    if spec.check == Check::Icmp || spec.source.is_some() {
        return spec;
    }
    TargetSpec {
        source: route_source(spec.address),
        ..spec
    }
}

/// The source address of the route to `address` (what the kernel would
/// bind a connection to it to), if there is a route.
pub(crate) fn route_source(address: IpAddr) -> Option<IpAddr> {
    let unspecified = match address {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    UdpSocket::bind((unspecified, 0))
        .and_then(|socket| {
            socket.connect((address, 9))?;
            socket.local_addr()
        })
        .map(|bound| bound.ip())
        .ok()
}

/// The receiver thread's readiness: every socket registered, and a waker
/// (the token after them) to stop it.
pub(super) fn receiver_poll(
    sockets: &[Arc<ProbeSocket>],
) -> Result<(Poll, Arc<Waker>), ProberError> {
    let poll = Poll::new().map_err(ProberError::Poll)?;
    for (i, socket) in sockets.iter().enumerate() {
        poll.registry()
            .register(
                &mut SourceFd(&socket.raw_fd()),
                Token(i),
                Interest::READABLE,
            )
            .map_err(ProberError::Poll)?;
    }
    let waker = Waker::new(poll.registry(), Token(sockets.len())).map_err(ProberError::Poll)?;
    Ok((poll, Arc::new(waker)))
}

/// What the operator is told of the send path asked for.
pub(super) fn send_path_note(packet_path: Option<&PacketPath>, asked: SendPath) -> Option<String> {
    match (packet_path, asked) {
        (Some(path), _) => Some(describe_packet_path(path)),
        (None, SendPath::Packet) => Some(
            "the packet send path needs a raw IPv4 socket (CAP_NET_RAW) and IPv4 targets; \
             probes go through the IP stack"
                .to_owned(),
        ),
        (None, SendPath::Ip) => None,
    }
}

/// What the packet send path does, in words.
fn describe_packet_path(path: &PacketPath) -> String {
    match path.unsupported() {
        Some(reason) => reason.to_string(),
        None => {
            let (known, usable) = path.hop_counts();
            format!("IPv4 probes through a packet socket: {known} next hops, {usable} usable now")
        }
    }
}

fn random_ident() -> u16 {
    let mut bytes = [0u8; 2];
    // A fixed identifier would still work (tags carry the key); randomness
    // only keeps two agents on one host apart.
    if getrandom::fill(&mut bytes).is_err() {
        return u16::try_from(std::process::id() & 0xffff).unwrap_or(0);
    }
    u16::from_ne_bytes(bytes)
}
