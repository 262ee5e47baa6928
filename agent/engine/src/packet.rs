//! ICMP echo probes: building them from a template and validating what
//! comes back, without any per-target state.
//!
//! An echo request carries, after the 8-byte ICMP header, a 28-byte payload:
//!
//! ```text
//!  0  magic   u32  "WARD"
//!  4  index   u32  target slot in the engine
//!  8  epoch   u16  generation of that slot (a reused slot rejects old replies)
//! 10  (zero)  u16  (a trace's checksum filler: `trace`)
//! 12  sent    u64  engine time of sending, ns
//! 20  tag     u64  SipHash-1-3(key; destination, ident, seq, index, epoch, sent)
//! ```
//!
//! The tag key is random per process, so a reply validates only if it echoes
//! a probe this process sent *to the address the reply comes from*: forged
//! replies, replies from another host and corrupted payloads all fail.
//! Multi-byte fields are big-endian.

use std::hash::Hasher as _;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

/// ICMP header plus payload of every probe, in bytes.
pub const PROBE_LEN: usize = ICMP_HEADER_LEN + PAYLOAD_LEN;
const ICMP_HEADER_LEN: usize = 8;
const PAYLOAD_LEN: usize = 28;
const MAGIC: [u8; 4] = *b"WARD";

const ICMP4_ECHO_REPLY: u8 = 0;
const ICMP4_DEST_UNREACHABLE: u8 = 3;
const ICMP4_ECHO_REQUEST: u8 = 8;
const ICMP4_TIME_EXCEEDED: u8 = 11;
const ICMP6_DEST_UNREACHABLE: u8 = 1;
const ICMP6_TIME_EXCEEDED: u8 = 3;
const ICMP6_ECHO_REQUEST: u8 = 128;
const ICMP6_ECHO_REPLY: u8 = 129;
const IPV6_HEADER_LEN: usize = 40;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
const PROTO_TCP: u8 = 6;

/// The secret that makes tags unforgeable; random per process.
#[derive(Clone, Copy)]
pub struct TagKey {
    pub(crate) k0: u64,
    pub(crate) k1: u64,
}

impl TagKey {
    /// A fresh random key from the operating system.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Self::from_bytes(bytes))
    }

    /// A fixed key, for tests and reproducible benchmarks.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let (k0, k1) = bytes.split_at(8);
        Self {
            k0: u64::from_le_bytes(k0.try_into().unwrap_or_default()),
            k1: u64::from_le_bytes(k1.try_into().unwrap_or_default()),
        }
    }

    fn tag(&self, fields: &ProbeFields, destination: IpAddr) -> u64 {
        let mut hasher = SipHasher13::new_with_keys(self.k0, self.k1);
        hasher.write(&ipv6_bytes(destination));
        hasher.write_u16(fields.ident);
        hasher.write_u16(fields.seq);
        hasher.write_u32(fields.index);
        hasher.write_u16(fields.epoch);
        hasher.write_u64(fields.sent_ns);
        hasher.finish()
    }
}

impl std::fmt::Debug for TagKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TagKey(..)")
    }
}

/// What a probe says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeFields {
    /// ICMP identifier (ours on raw sockets; 0 on datagram sockets, where
    /// the kernel owns it).
    pub ident: u16,
    /// Per-target sequence number.
    pub seq: u16,
    /// Target slot in the engine.
    pub index: u32,
    /// Generation of the slot.
    pub epoch: u16,
    /// Engine time of sending, nanoseconds.
    pub sent_ns: u64,
}

/// Address family of a socket and its packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4: ICMP.
    V4,
    /// IPv6: ICMPv6.
    V6,
}

impl Family {
    /// The family of `address`.
    pub fn of(address: IpAddr) -> Self {
        if address.is_ipv4() {
            Self::V4
        } else {
            Self::V6
        }
    }
}

/// A prebuilt echo request for one family and identifier: the constant
/// bytes, and the one's-complement sum of their 16-bit words, so each probe
/// costs a copy, a few stores and an incremental checksum.
#[derive(Clone, Copy, Debug)]
pub struct EchoTemplate {
    bytes: [u8; PROBE_LEN],
    constant_sum: u32,
    family: Family,
    ident: u16,
}

impl EchoTemplate {
    /// The template for `family`, carrying `ident` (0 on datagram sockets,
    /// where the kernel owns it).
    pub fn new(family: Family, ident: u16) -> Self {
        let mut bytes = [0u8; PROBE_LEN];
        bytes[0] = match family {
            Family::V4 => ICMP4_ECHO_REQUEST,
            Family::V6 => ICMP6_ECHO_REQUEST,
        };
        bytes[4..6].copy_from_slice(&ident.to_be_bytes());
        bytes[8..12].copy_from_slice(&MAGIC);
        Self {
            bytes,
            constant_sum: word_sum(&bytes),
            family,
            ident,
        }
    }

    /// Writes the probe described by `fields` (its `ident` is the
    /// template's) to `destination` into `out`, at least [`PROBE_LEN`]
    /// bytes, and returns its length. IPv4 gets its checksum here unless the
    /// kernel computes it (datagram sockets); for ICMPv6 the kernel always
    /// does (it covers a pseudo-header only the kernel knows).
    pub fn write(
        &self,
        out: &mut [u8],
        key: &TagKey,
        fields: &ProbeFields,
        destination: IpAddr,
        kernel_checksums: bool,
    ) -> usize {
        debug_assert_eq!(Family::of(destination), self.family);
        let fields = ProbeFields {
            ident: self.ident,
            ..*fields
        };
        let out = &mut out[..PROBE_LEN];
        out.copy_from_slice(&self.bytes);
        out[6..8].copy_from_slice(&fields.seq.to_be_bytes());
        out[12..16].copy_from_slice(&fields.index.to_be_bytes());
        out[16..18].copy_from_slice(&fields.epoch.to_be_bytes());
        out[20..28].copy_from_slice(&fields.sent_ns.to_be_bytes());
        out[28..36].copy_from_slice(&key.tag(&fields, destination).to_be_bytes());
        if self.family == Family::V4 && !kernel_checksums {
            // Incremental: the constant words were summed once.
            let variable = word_sum(&out[6..8]) + word_sum(&out[12..18]) + word_sum(&out[20..36]);
            let checksum = fold(self.constant_sum + variable);
            out[2..4].copy_from_slice(&checksum.to_be_bytes());
        }
        PROBE_LEN
    }
}

/// Sum of the big-endian 16-bit words of `data` (even length), unfolded.
fn word_sum(data: &[u8]) -> u32 {
    data.chunks_exact(2)
        .map(|word| u32::from(u16::from_be_bytes([word[0], word[1]])))
        .sum()
}

/// Folds a word sum into 16 bits and complements it.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// RFC 1071 checksum of `data` (a trailing odd byte is padded with zero).
pub fn internet_checksum(data: &[u8]) -> u16 {
    let even = data.len() & !1;
    let mut sum = word_sum(&data[..even]);
    if let Some(last) = data.get(even) {
        sum += u32::from(*last) << 8;
    }
    fold(sum)
}

/// How a received packet is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Raw IPv4 socket: the IPv4 header comes first.
    Ipv4Header,
    /// ICMPv6 raw socket, or any ICMP datagram socket: the ICMP message only.
    IcmpOnly,
}

/// A packet that passed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An echo reply to one of our probes, from the probed address.
    Reply(ProbeFields),
    /// An ICMP error (unreachable, time exceeded) quoting one of our probes.
    Error {
        /// The quoted probe.
        probe: ProbeFields,
        /// The quoted probe's destination.
        target: IpAddr,
        /// ICMP type and code of the error.
        kind: IcmpErrorKind,
        /// Who sent the error (a router, or the site).
        reporter: IpAddr,
    },
}

/// Which ICMP error ended a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpErrorKind {
    /// ICMP type (IPv4 3/11, ICMPv6 1/3).
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
}

impl IcmpErrorKind {
    /// The error in words, as an operator reads it ("ICMPv6 destination
    /// unreachable: address unreachable"), for an error of `family`.
    pub fn describe(self, family: Family) -> String {
        let (what, why) = match (family, self.icmp_type) {
            (Family::V4, 3) => ("ICMP destination unreachable", unreachable_v4(self.code)),
            (Family::V4, 11) => ("ICMP time exceeded", exceeded(self.code)),
            (Family::V6, 1) => ("ICMPv6 destination unreachable", unreachable_v6(self.code)),
            (Family::V6, 3) => ("ICMPv6 time exceeded", exceeded(self.code)),
            (Family::V4, _) => ("ICMP error", None),
            (Family::V6, _) => ("ICMPv6 error", None),
        };
        match why {
            Some(why) => format!("{what}: {why}"),
            None => format!("{what} (type {}, code {})", self.icmp_type, self.code),
        }
    }
}

impl IcmpErrorKind {
    /// A router's "TTL (hop limit) ran out here" rather than an end of
    /// the path, for an error of `family`.
    pub fn is_time_exceeded(self, family: Family) -> bool {
        match family {
            Family::V4 => self.icmp_type == ICMP4_TIME_EXCEEDED,
            Family::V6 => self.icmp_type == ICMP6_TIME_EXCEEDED,
        }
    }
}

/// What an ICMP error quotes of a probe, read from the first 8 bytes of
/// its transport header only (RFC 792 asks a router for no more; too few
/// for an echo request's tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotedProbe {
    /// An echo request.
    Echo {
        /// Its identifier.
        ident: u16,
        /// Its sequence number.
        seq: u16,
    },
    /// A TCP segment (our SYNs).
    Syn {
        /// Its source port.
        source_port: u16,
        /// Its destination port.
        port: u16,
        /// Its sequence number (a SYN's tag).
        seq: u32,
    },
}

/// An ICMP error read only as far as the quoted probe's first 8 bytes:
/// what it says, unauthenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortQuote {
    /// The quoted probe's destination.
    pub target: IpAddr,
    /// The quoted probe.
    pub probe: QuotedProbe,
    /// ICMP type and code of the error.
    pub kind: IcmpErrorKind,
    /// Who sent the error.
    pub reporter: IpAddr,
}

/// Reads an ICMP error (destination unreachable, time exceeded) that
/// quotes at least the first 8 bytes of an echo request or a TCP segment.
pub fn short_quote(packet: &[u8], framing: Framing, source: IpAddr) -> Option<ShortQuote> {
    let icmp = match framing {
        Framing::Ipv4Header => strip_ipv4_header(packet, PROTO_ICMP).ok()?.1,
        Framing::IcmpOnly => packet,
    };
    let (&icmp_type, rest) = icmp.split_first()?;
    let code = *rest.first()?;
    let quoted = icmp.get(ICMP_HEADER_LEN..)?;
    let (target, protocol, transport, echo_request) = match (Family::of(source), icmp_type) {
        (Family::V4, ICMP4_DEST_UNREACHABLE | ICMP4_TIME_EXCEEDED) => {
            let first = *quoted.first()?;
            let header_len = usize::from(first & 0x0f) * 4;
            if first >> 4 != 4 || header_len < 20 || quoted.len() < header_len {
                return None;
            }
            let target = IpAddr::from([quoted[16], quoted[17], quoted[18], quoted[19]]);
            (
                target,
                quoted[9],
                quoted.get(header_len..)?,
                ICMP4_ECHO_REQUEST,
            )
        }
        (Family::V6, ICMP6_DEST_UNREACHABLE | ICMP6_TIME_EXCEEDED) => {
            if quoted.len() < IPV6_HEADER_LEN || quoted[0] >> 4 != 6 {
                return None;
            }
            let mut target = [0u8; 16];
            target.copy_from_slice(&quoted[24..40]);
            let protocol = if quoted[6] == PROTO_ICMPV6 {
                PROTO_ICMP
            } else {
                quoted[6]
            };
            (
                IpAddr::from(target),
                protocol,
                &quoted[IPV6_HEADER_LEN..],
                ICMP6_ECHO_REQUEST,
            )
        }
        _ => return None,
    };
    let header = transport.get(..ICMP_HEADER_LEN)?;
    let be16 = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let probe = match protocol {
        PROTO_ICMP if header[0] == echo_request => QuotedProbe::Echo {
            ident: be16(4),
            seq: be16(6),
        },
        PROTO_TCP => QuotedProbe::Syn {
            source_port: be16(0),
            port: be16(2),
            seq: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
        },
        _ => return None,
    };
    Some(ShortQuote {
        target,
        probe,
        kind: IcmpErrorKind { icmp_type, code },
        reporter: source,
    })
}

/// IPv4 destination unreachable codes (RFC 792, 1122, 1812).
fn unreachable_v4(code: u8) -> Option<&'static str> {
    Some(match code {
        0 => "network unreachable",
        1 => "host unreachable",
        2 => "protocol unreachable",
        3 => "port unreachable",
        4 => "fragmentation needed",
        5 => "source route failed",
        6 => "destination network unknown",
        7 => "destination host unknown",
        9 | 10 | 13 => "administratively prohibited",
        11 => "network unreachable for the type of service",
        12 => "host unreachable for the type of service",
        14 => "host precedence violation",
        15 => "precedence cut off",
        _ => return None,
    })
}

/// ICMPv6 destination unreachable codes (RFC 4443).
fn unreachable_v6(code: u8) -> Option<&'static str> {
    Some(match code {
        0 => "no route to destination",
        1 => "administratively prohibited",
        2 => "beyond the scope of the source address",
        3 => "address unreachable",
        4 => "port unreachable",
        5 => "source address failed ingress/egress policy",
        6 => "reject route to destination",
        _ => return None,
    })
}

/// Time exceeded codes (the same in both families).
fn exceeded(code: u8) -> Option<&'static str> {
    Some(match code {
        0 => "hop limit exceeded in transit (a routing loop or a path too long)",
        1 => "fragment reassembly time exceeded",
        _ => return None,
    })
}

/// Why a packet was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not an echo reply or error at all, or not ours (another program's
    /// identifier or payload): ignored, not counted as invalid.
    NotOurs,
    /// Claims to be ours (magic present) but the tag does not validate:
    /// forged, from the wrong host, or corrupted.
    BadTag,
    /// Too short or inconsistent to parse.
    Malformed,
}

/// Validates one received packet.
///
/// `source` is the address the packet came from (for IPv4 raw sockets it
/// is also in the header; the socket address is used either way). On raw
/// sockets `ident` must match ours; on datagram sockets pass `None`, the
/// kernel has already matched it.
pub fn parse(
    packet: &[u8],
    framing: Framing,
    source: IpAddr,
    key: &TagKey,
    ident: Option<u16>,
) -> Result<Verdict, Rejection> {
    let icmp = match framing {
        Framing::Ipv4Header => strip_ipv4_header(packet, PROTO_ICMP)?.1,
        Framing::IcmpOnly => packet,
    };
    let (&icmp_type, rest) = icmp.split_first().ok_or(Rejection::Malformed)?;
    let code = *rest.first().ok_or(Rejection::Malformed)?;
    match (Family::of(source), icmp_type) {
        (Family::V4, ICMP4_ECHO_REPLY) | (Family::V6, ICMP6_ECHO_REPLY) => {
            let fields = read_probe(icmp, key, source, ident)?;
            Ok(Verdict::Reply(fields))
        }
        (Family::V4, ICMP4_DEST_UNREACHABLE | ICMP4_TIME_EXCEEDED)
        | (Family::V6, ICMP6_DEST_UNREACHABLE | ICMP6_TIME_EXCEEDED) => {
            let quoted = icmp.get(ICMP_HEADER_LEN..).ok_or(Rejection::Malformed)?;
            let (target, quoted_icmp, echo_request) = match Family::of(source) {
                Family::V4 => {
                    let (target, rest) = strip_ipv4_header(quoted, PROTO_ICMP)?;
                    (target, rest, ICMP4_ECHO_REQUEST)
                }
                Family::V6 => {
                    let (target, rest) = strip_ipv6_header(quoted)?;
                    (target, rest, ICMP6_ECHO_REQUEST)
                }
            };
            if quoted_icmp.first() != Some(&echo_request) {
                return Err(Rejection::NotOurs);
            }
            let probe = read_probe(quoted_icmp, key, target, ident)?;
            Ok(Verdict::Error {
                probe,
                target,
                kind: IcmpErrorKind { icmp_type, code },
                reporter: source,
            })
        }
        _ => Err(Rejection::NotOurs),
    }
}

/// Reads and authenticates the probe fields of an echo message that went
/// to (or came from) `peer`.
fn read_probe(
    icmp: &[u8],
    key: &TagKey,
    peer: IpAddr,
    ident: Option<u16>,
) -> Result<ProbeFields, Rejection> {
    if icmp.len() < PROBE_LEN {
        return Err(Rejection::NotOurs);
    }
    if icmp[8..12] != MAGIC {
        return Err(Rejection::NotOurs);
    }
    let be16 = |at: usize| u16::from_be_bytes([icmp[at], icmp[at + 1]]);
    let be32 = |at: usize| u32::from_be_bytes([icmp[at], icmp[at + 1], icmp[at + 2], icmp[at + 3]]);
    let be64 = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&icmp[at..at + 8]);
        u64::from_be_bytes(bytes)
    };
    let wire_ident = be16(4);
    if let Some(ours) = ident
        && wire_ident != ours
    {
        return Err(Rejection::NotOurs);
    }
    let fields = ProbeFields {
        // Datagram sockets: the kernel chose the identifier; we tagged 0.
        ident: ident.unwrap_or(0),
        seq: be16(6),
        index: be32(12),
        epoch: be16(16),
        sent_ns: be64(20),
    };
    if be64(28) != key.tag(&fields, peer) {
        return Err(Rejection::BadTag);
    }
    Ok(fields)
}

/// Returns the destination and the payload of an IPv4 packet carrying
/// `protocol`.
fn strip_ipv4_header(packet: &[u8], protocol: u8) -> Result<(IpAddr, &[u8]), Rejection> {
    let first = *packet.first().ok_or(Rejection::Malformed)?;
    if first >> 4 != 4 {
        return Err(Rejection::Malformed);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || packet.len() < header_len {
        return Err(Rejection::Malformed);
    }
    if packet[9] != protocol {
        return Err(Rejection::NotOurs);
    }
    let destination = IpAddr::from([packet[16], packet[17], packet[18], packet[19]]);
    Ok((destination, &packet[header_len..]))
}

/// Returns the destination and the ICMPv6 message of a quoted IPv6 packet
/// (no extension headers: our probes carry none).
fn strip_ipv6_header(packet: &[u8]) -> Result<(IpAddr, &[u8]), Rejection> {
    if packet.len() < IPV6_HEADER_LEN || packet[0] >> 4 != 6 {
        return Err(Rejection::Malformed);
    }
    if packet[6] != PROTO_ICMPV6 {
        return Err(Rejection::NotOurs);
    }
    let mut destination = [0u8; 16];
    destination.copy_from_slice(&packet[24..40]);
    Ok((IpAddr::from(destination), &packet[IPV6_HEADER_LEN..]))
}

/// IPv4 addresses as IPv4-mapped IPv6, so both families hash alike.
pub(crate) fn ipv6_bytes(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests;
