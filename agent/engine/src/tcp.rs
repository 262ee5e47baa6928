//! Liveness without ICMP: a TCP SYN to a port, answered by a SYN/ACK (the
//! port listens) or an RST (it is closed, but the host is there). Never a
//! connection: the engine sends a bare SYN on a raw socket and the host's
//! kernel answers the SYN/ACK with an RST, as a SYN scanner does.
//!
//! Validation is stateless on the wire, as zmap's: the SYN's sequence
//! number is a tag, SipHash-1-3 under the process's key over the
//! destination, its port, the target's slot, epoch, probe number and send
//! time, and its source port is `32768 + slot mod 32768`. An answer
//! acknowledges `tag + 1` to that port: the engine recomputes the tag of
//! the probe in flight of the slots that port can name and accepts the
//! answer only if one matches. A forged answer (no key), a replayed one
//! (another probe's tag) or one from another host fails, and is counted.
//!
//! A SYN is 24 bytes: the 20-byte header and an MSS option (some
//! firewalls drop SYNs without one); its checksum covers a pseudo-header
//! with the source address, which the caller found for the target
//! ([`TargetSpec::source`]).

use std::hash::Hasher as _;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

use crate::packet::{ProbeFields, Rejection, TagKey, internet_checksum, ipv6_bytes};
use crate::target::{Check, Pending, Target, TargetSpec};
use crate::{Engine, Nanos};

/// Bytes of a SYN probe.
pub const SYN_LEN: usize = 24;

/// Source ports of SYN probes: 32768 and above, the slot modulo 32768.
const FIRST_PORT: u16 = 32768;
const PORT_SLOTS: u32 = 32768;
const PROTO_TCP: u8 = 6;
const FLAG_RST: u8 = 0x04;
const FLAG_SYN: u8 = 0x02;
const FLAG_ACK: u8 = 0x10;
/// The window a SYN offers (nmap's).
const WINDOW: u16 = 1024;
/// The MSS a SYN announces.
const MSS: u16 = 1460;

/// A TCP segment that may answer one of our SYNs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpAnswer {
    /// Who sent it (the probed host).
    pub peer: IpAddr,
    /// Its source port (the probed port).
    pub peer_port: u16,
    /// Its destination port (our SYN's source port).
    pub our_port: u16,
    /// Its acknowledgement number (our tag + 1).
    pub ack: u32,
    /// An RST (the port is closed) rather than a SYN/ACK.
    pub rst: bool,
}

/// The source port of the SYNs of slot `index`.
fn source_port(index: u32) -> u16 {
    FIRST_PORT + u16::try_from(index % PORT_SLOTS).unwrap_or(0)
}

/// The tag a SYN of `fields` to `destination`:`port` carries as its
/// sequence number.
pub(crate) fn tag(key: &TagKey, fields: &ProbeFields, destination: IpAddr, port: u16) -> u32 {
    let mut hasher = SipHasher13::new_with_keys(key.k0, key.k1);
    hasher.write(b"tcp");
    hasher.write(&ipv6_bytes(destination));
    hasher.write_u16(port);
    hasher.write_u32(fields.index);
    hasher.write_u16(fields.epoch);
    hasher.write_u16(fields.seq);
    hasher.write_u64(fields.sent_ns);
    hasher.finish() as u32
}

/// Writes the SYN of `fields` from `source` to `destination`:`port` into
/// `out` (at least [`SYN_LEN`] bytes), checksum included; its length.
pub fn write_syn(
    out: &mut [u8],
    key: &TagKey,
    fields: &ProbeFields,
    source: IpAddr,
    destination: IpAddr,
    port: u16,
) -> usize {
    let from = (source, source_port(fields.index));
    write_syn_from(out, key, fields, from, destination, port)
}

/// [`write_syn`] from a given source port (a trace's one flow).
pub(crate) fn write_syn_from(
    out: &mut [u8],
    key: &TagKey,
    fields: &ProbeFields,
    (source, source_port): (IpAddr, u16),
    destination: IpAddr,
    port: u16,
) -> usize {
    let out = &mut out[..SYN_LEN];
    out.fill(0);
    out[0..2].copy_from_slice(&source_port.to_be_bytes());
    out[2..4].copy_from_slice(&port.to_be_bytes());
    out[4..8].copy_from_slice(&tag(key, fields, destination, port).to_be_bytes());
    // Header length 6 words (with the option), flags SYN.
    out[12] = 6 << 4;
    out[13] = FLAG_SYN;
    out[14..16].copy_from_slice(&WINDOW.to_be_bytes());
    out[20..24].copy_from_slice(&[2, 4, (MSS >> 8) as u8, MSS as u8]);
    let checksum = checksum(source, destination, out);
    out[16..18].copy_from_slice(&checksum.to_be_bytes());
    SYN_LEN
}

/// The TCP checksum of `segment` (its checksum field zero) between
/// `source` and `destination`.
fn checksum(source: IpAddr, destination: IpAddr, segment: &[u8]) -> u16 {
    // Pseudo-header, then the segment: at most 40 + 24 bytes here.
    let mut summed = [0u8; 40 + SYN_LEN];
    let length = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    let pseudo = match (source, destination) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => {
            summed[0..4].copy_from_slice(&source.octets());
            summed[4..8].copy_from_slice(&destination.octets());
            summed[9] = PROTO_TCP;
            summed[10..12].copy_from_slice(&length.to_be_bytes());
            12
        }
        _ => {
            summed[0..16].copy_from_slice(&ipv6_bytes(source));
            summed[16..32].copy_from_slice(&ipv6_bytes(destination));
            summed[34..36].copy_from_slice(&length.to_be_bytes());
            summed[39] = PROTO_TCP;
            40
        }
    };
    let end = pseudo + segment.len().min(SYN_LEN);
    summed[pseudo..end].copy_from_slice(&segment[..end - pseudo]);
    internet_checksum(&summed[..end])
}

/// Reads a TCP segment from `source` (after its IPv4 header when
/// `ipv4_header`: raw IPv4 sockets see it, IPv6 ones do not). Only a
/// SYN/ACK or an RST to a port our SYNs leave from may be ours.
pub fn parse(packet: &[u8], ipv4_header: bool, source: IpAddr) -> Result<TcpAnswer, Rejection> {
    let segment = if ipv4_header {
        let first = *packet.first().ok_or(Rejection::Malformed)?;
        let header_len = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header_len < 20 || packet.len() < header_len {
            return Err(Rejection::Malformed);
        }
        if packet[9] != PROTO_TCP {
            return Err(Rejection::NotOurs);
        }
        &packet[header_len..]
    } else {
        packet
    };
    if segment.len() < 20 {
        return Err(Rejection::Malformed);
    }
    let be16 = |at: usize| u16::from_be_bytes([segment[at], segment[at + 1]]);
    let our_port = be16(2);
    let flags = segment[13];
    let synack = flags & (FLAG_SYN | FLAG_ACK) == FLAG_SYN | FLAG_ACK;
    let rst = flags & FLAG_RST != 0;
    if our_port < FIRST_PORT || !(synack || rst) {
        return Err(Rejection::NotOurs);
    }
    Ok(TcpAnswer {
        peer: source,
        peer_port: be16(0),
        our_port,
        ack: u32::from_be_bytes([segment[8], segment[9], segment[10], segment[11]]),
        rst,
    })
}

/// The port a target's check probes over TCP, and whether an RST means
/// alive; `None` for ICMP only.
pub(crate) fn tcp_port(spec: &TargetSpec) -> Option<(u16, bool)> {
    match spec.check {
        Check::Icmp => None,
        Check::Tcp { port, rst_alive } | Check::IcmpOrTcp { port, rst_alive } => {
            Some((port, rst_alive))
        }
    }
}

impl Engine {
    /// Writes the SYN of slot `index`'s probe in flight (`fields`) into
    /// `out`; `None` if it has no TCP check or no source.
    pub(crate) fn write_syn_of(
        &self,
        index: u32,
        fields: &ProbeFields,
        out: &mut [u8],
    ) -> Option<usize> {
        let spec = &self.targets.get(index as usize)?.spec;
        let (port, _) = tcp_port(spec)?;
        let source = spec.source?;
        Some(write_syn(
            out,
            &self.key,
            fields,
            source,
            spec.address,
            port,
        ))
    }

    /// Applies a TCP answer: it concludes the probe in flight of the slot
    /// whose tag it acknowledges (an RST only where `rst_alive`), or is
    /// counted (`tcp_unmatched`: from an address and port we probe but
    /// forged or replayed; a refused RST; a second answer). Segments from
    /// anywhere else are the host's own traffic (its connections'
    /// SYN/ACKs and RSTs to ephemeral ports, which raw sockets see too)
    /// and are not counted.
    pub fn handle_tcp(&mut self, answer: TcpAnswer, received_at: Nanos, now: Nanos) {
        let first = u32::from(answer.our_port - FIRST_PORT);
        let slots = u32::try_from(self.targets.len()).unwrap_or(u32::MAX);
        let mut candidates = (first..slots).step_by(PORT_SLOTS as usize);
        let matched = candidates
            .clone()
            .find(|&index| self.acknowledges(index, &answer));
        let Some(index) = matched else {
            if candidates.any(|index| self.probes(index, &answer).is_some()) {
                self.counters.tcp_unmatched += 1;
            }
            return;
        };
        let target = &self.targets[index as usize];
        let rst_alive = tcp_port(&target.spec).is_some_and(|(_, alive)| alive);
        if answer.rst && !rst_alive {
            // The port is closed and that is not alive: the probe times out.
            self.counters.tcp_refused += 1;
            return;
        }
        if target.pending != Pending::Timeout {
            self.counters.replies_duplicate += 1;
            return;
        }
        self.answer_in_flight(index, received_at, now);
    }

    /// True if `answer` acknowledges the last SYN slot `index` sent.
    /// Slot `index`'s target and port when `answer` comes from the
    /// address and port it probes.
    fn probes(&self, index: u32, answer: &TcpAnswer) -> Option<(&Target, u16)> {
        let target = self.targets.get(index as usize)?;
        let (port, _) = tcp_port(&target.spec)?;
        (target.spec.address == answer.peer && port == answer.peer_port).then_some((target, port))
    }

    fn acknowledges(&self, index: u32, answer: &TcpAnswer) -> bool {
        let Some((target, port)) = self.probes(index, answer) else {
            return false;
        };
        let fields = ProbeFields {
            ident: 0,
            seq: target.seq,
            index,
            epoch: target.epoch,
            sent_ns: target.sent_at,
        };
        answer.ack == tag(&self.key, &fields, target.spec.address, port).wrapping_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Family;

    fn key() -> TagKey {
        TagKey::from_bytes([7; 16])
    }

    fn fields() -> ProbeFields {
        ProbeFields {
            ident: 0,
            seq: 3,
            index: 40_000,
            epoch: 1,
            sent_ns: 123_456,
        }
    }

    #[test]
    fn a_syn_checksums_and_carries_its_tag_from_a_port_of_its_slot() {
        for (source, destination) in [("127.0.0.1", "127.0.5.9"), ("::1", "::1")] {
            let source: IpAddr = source.parse().expect("source");
            let destination: IpAddr = destination.parse().expect("destination");
            let mut out = [0u8; 64];
            let len = write_syn(&mut out, &key(), &fields(), source, destination, 443);
            assert_eq!(len, SYN_LEN);
            let syn = &out[..len];
            // The checksum over the pseudo-header and segment folds to 0.
            assert_eq!(checksum(source, destination, syn), 0, "{destination}");
            assert_eq!(u16::from_be_bytes([syn[0], syn[1]]), 40_000);
            assert_eq!(u16::from_be_bytes([syn[2], syn[3]]), 443);
            assert_eq!(syn[13], FLAG_SYN);
            let sequence = u32::from_be_bytes([syn[4], syn[5], syn[6], syn[7]]);
            assert_eq!(sequence, tag(&key(), &fields(), destination, 443));
            assert_eq!(Family::of(source), Family::of(destination));
        }
    }

    fn answer(flags: u8, our_port: u16, ack: u32) -> Vec<u8> {
        let mut segment = vec![0u8; 20];
        segment[0..2].copy_from_slice(&443u16.to_be_bytes());
        segment[2..4].copy_from_slice(&our_port.to_be_bytes());
        segment[8..12].copy_from_slice(&ack.to_be_bytes());
        segment[12] = 5 << 4;
        segment[13] = flags;
        segment
    }

    #[test]
    fn only_a_synack_or_an_rst_to_our_ports_is_read() {
        let peer: IpAddr = "::1".parse().expect("peer");
        let read = parse(&answer(FLAG_SYN | FLAG_ACK, 40_000, 9), false, peer).expect("synack");
        assert_eq!(
            read,
            TcpAnswer {
                peer,
                peer_port: 443,
                our_port: 40_000,
                ack: 9,
                rst: false
            }
        );
        assert!(
            parse(&answer(FLAG_RST | FLAG_ACK, 40_000, 9), false, peer)
                .expect("rst")
                .rst
        );
        assert_eq!(
            parse(&answer(FLAG_ACK, 40_000, 9), false, peer),
            Err(Rejection::NotOurs)
        );
        assert_eq!(
            parse(&answer(FLAG_SYN | FLAG_ACK, 22, 9), false, peer),
            Err(Rejection::NotOurs)
        );
        assert_eq!(parse(&[0; 10], false, peer), Err(Rejection::Malformed));
        // Behind an IPv4 header that says TCP.
        let mut ipv4 = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, PROTO_TCP];
        ipv4.resize(20, 0);
        ipv4.extend(answer(FLAG_RST, 40_000, 9));
        assert!(parse(&ipv4, true, "127.0.0.1".parse().expect("peer")).is_ok());
        ipv4[9] = 17;
        assert_eq!(
            parse(&ipv4, true, "127.0.0.1".parse().expect("peer")),
            Err(Rejection::NotOurs)
        );
    }

    const MS: Nanos = 1_000_000;

    fn engine_with(check: Check) -> (Engine, u32, IpAddr) {
        let address: IpAddr = "127.0.0.2".parse().expect("address");
        let config = crate::EngineConfig {
            start: crate::Start::Immediately,
            ..crate::EngineConfig::default()
        };
        let mut engine = Engine::new(config, key(), 0);
        let spec = TargetSpec {
            check,
            source: Some("127.0.0.1".parse().expect("source")),
            up_after: 1,
            ..TargetSpec::with_defaults(address)
        };
        let index = engine.add_target(spec, 1, 0).expect("a TCP target");
        (engine, index, address)
    }

    #[test]
    fn an_answer_counts_only_if_it_acknowledges_the_syn_in_flight() {
        let (mut engine, index, address) = engine_with(Check::Tcp {
            port: 443,
            rst_alive: false,
        });
        let mut out = [0u8; 64];
        let sent = engine.poll_transmit(0, &mut out).expect("a SYN");
        assert!(sent.tcp);
        assert_eq!(sent.len, SYN_LEN);
        let seq = u32::from_be_bytes([out[4], out[5], out[6], out[7]]);
        let port = u16::from_be_bytes([out[0], out[1]]);
        let answer = |peer: IpAddr, ack: u32, rst: bool| TcpAnswer {
            peer,
            peer_port: 443,
            our_port: port,
            ack,
            rst,
        };
        // Forged (without the key, the tag is a guess) from the target's
        // address and port: counted. From elsewhere, or from another port
        // of the target (the host's own connections): not ours.
        engine.handle_tcp(answer(address, seq, false), MS, MS);
        let elsewhere = "127.0.0.3".parse().expect("address");
        engine.handle_tcp(answer(elsewhere, seq.wrapping_add(1), false), MS, MS);
        engine.handle_tcp(
            TcpAnswer {
                peer_port: 8443,
                ..answer(address, seq.wrapping_add(1), false)
            },
            MS,
            MS,
        );
        assert_eq!(engine.counters().tcp_unmatched, 1);
        // A closed port's RST where that is not alive.
        engine.handle_tcp(answer(address, seq.wrapping_add(1), true), MS, MS);
        assert_eq!(engine.counters().tcp_refused, 1);
        assert_eq!(engine.counters().replies_matched, 0);
        // The SYN/ACK.
        engine.handle_tcp(answer(address, seq.wrapping_add(1), false), 2 * MS, 2 * MS);
        assert_eq!(engine.counters().replies_matched, 1);
        assert_eq!(engine.status(index), Some(crate::Status::Up));
        // The same answer again once the next SYN is in flight: replayed.
        engine.handle_timeouts(1_000 * MS);
        let next = engine
            .poll_transmit(1_000 * MS, &mut out)
            .expect("the next SYN");
        assert!(next.tcp);
        engine.handle_tcp(
            answer(address, seq.wrapping_add(1), false),
            1_001 * MS,
            1_001 * MS,
        );
        assert_eq!(engine.counters().tcp_unmatched, 2);
        assert_eq!(engine.counters().replies_matched, 1);
    }

    #[test]
    fn icmp_or_tcp_sends_an_echo_request_then_a_syn_for_each_probe() {
        let (mut engine, _, _) = engine_with(Check::IcmpOrTcp {
            port: 22,
            rst_alive: true,
        });
        let mut out = [0u8; 64];
        let first = engine.poll_transmit(0, &mut out).expect("the echo request");
        let second = engine.poll_transmit(0, &mut out).expect("the SYN");
        assert_eq!((first.tcp, second.tcp), (false, true));
        assert_eq!(engine.poll_transmit(0, &mut out), None);
        assert_eq!(engine.counters().probes_sent, 1);
    }

    #[test]
    fn a_tcp_check_needs_a_source_of_its_family() {
        let config = crate::EngineConfig::default();
        let mut engine = Engine::new(config, key(), 0);
        let address: IpAddr = "::1".parse().expect("address");
        for source in [None, Some("127.0.0.1".parse().expect("source"))] {
            let spec = TargetSpec {
                check: Check::Tcp {
                    port: 443,
                    rst_alive: true,
                },
                source,
                ..TargetSpec::with_defaults(address)
            };
            assert_eq!(
                engine.add_target(spec, 1, 0),
                Err(crate::SpecError::NoSource { address })
            );
        }
    }
}
