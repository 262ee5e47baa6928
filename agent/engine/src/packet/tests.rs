use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

const KEY: [u8; 16] = *b"0123456789abcdef";
const IDENT: u16 = 0x5741;

fn fields(seq: u16) -> ProbeFields {
    ProbeFields {
        ident: IDENT,
        seq,
        index: 70_001,
        epoch: 3,
        sent_ns: 1_234_567_890_123,
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn request(destination: IpAddr, probe: &ProbeFields) -> Vec<u8> {
    let mut out = vec![0u8; PROBE_LEN];
    let template = EchoTemplate::new(Family::of(destination), probe.ident);
    template.write(
        &mut out,
        &TagKey::from_bytes(KEY),
        probe,
        destination,
        false,
    );
    out
}

/// What the target's kernel sends back: same message, reply type.
fn echo_reply(request: &[u8], destination: IpAddr) -> Vec<u8> {
    let mut reply = request.to_vec();
    reply[0] = if destination.is_ipv4() { 0 } else { 129 };
    reply
}

fn ipv4_header(source: [u8; 4], destination: [u8; 4], protocol: u8, payload: usize) -> Vec<u8> {
    let total = u16::try_from(20 + payload).expect("small");
    let mut header = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0];
    header[2..4].copy_from_slice(&total.to_be_bytes());
    header.extend_from_slice(&source);
    header.extend_from_slice(&destination);
    header
}

fn parse_v4(packet: &[u8], source: IpAddr) -> Result<Verdict, Rejection> {
    parse(
        packet,
        Framing::Ipv4Header,
        source,
        &TagKey::from_bytes(KEY),
        Some(IDENT),
    )
}

#[test]
fn ipv4_reply_from_the_probed_host_validates() {
    let target = ip("198.18.1.7");
    let probe = fields(9);
    let reply = echo_reply(&request(target, &probe), target);
    let mut packet = ipv4_header([198, 18, 1, 7], [198, 18, 0, 1], 1, reply.len());
    packet.extend_from_slice(&reply);
    assert_eq!(parse_v4(&packet, target), Ok(Verdict::Reply(probe)));
}

#[test]
fn ipv4_request_checksum_is_valid() {
    let packet = request(ip("127.1.2.3"), &fields(1));
    assert_eq!(internet_checksum(&packet), 0);
}

#[test]
fn ipv6_reply_validates_without_ip_header() {
    let target = ip("2001:2:0:1::9");
    let probe = fields(65_535);
    let reply = echo_reply(&request(target, &probe), target);
    let verdict = parse(
        &reply,
        Framing::IcmpOnly,
        target,
        &TagKey::from_bytes(KEY),
        Some(IDENT),
    );
    assert_eq!(verdict, Ok(Verdict::Reply(probe)));
}

#[test]
fn reply_from_another_host_fails_the_tag() {
    let probed = ip("198.18.1.7");
    let reply = echo_reply(&request(probed, &fields(1)), probed);
    let mut packet = ipv4_header([198, 18, 1, 8], [198, 18, 0, 1], 1, reply.len());
    packet.extend_from_slice(&reply);
    assert_eq!(parse_v4(&packet, ip("198.18.1.8")), Err(Rejection::BadTag));
}

#[test]
fn forged_or_corrupted_payload_fails_the_tag() {
    let target = ip("198.18.1.7");
    let reply = echo_reply(&request(target, &fields(1)), target);
    for byte in [6, 12, 16, 20, 28, 35] {
        let mut forged = reply.clone();
        forged[byte] ^= 0x01;
        let mut packet = ipv4_header([198, 18, 1, 7], [198, 18, 0, 1], 1, forged.len());
        packet.extend_from_slice(&forged);
        assert_eq!(
            parse_v4(&packet, target),
            Err(Rejection::BadTag),
            "byte {byte}"
        );
    }
    let other_key = TagKey::from_bytes(*b"fedcba9876543210");
    let verdict = parse(&reply, Framing::IcmpOnly, target, &other_key, Some(IDENT));
    assert_eq!(verdict, Err(Rejection::BadTag), "another process's key");
}

#[test]
fn other_programs_echo_traffic_is_not_ours() {
    let target = ip("127.0.0.1");
    let reply = echo_reply(&request(target, &fields(1)), target);
    let mut packet = ipv4_header([127, 0, 0, 1], [127, 0, 0, 1], 1, reply.len());
    packet.extend_from_slice(&reply);
    let verdict = parse(
        &packet,
        Framing::Ipv4Header,
        target,
        &TagKey::from_bytes(KEY),
        Some(IDENT + 1),
    );
    assert_eq!(verdict, Err(Rejection::NotOurs), "another identifier");

    let mut ping = packet.clone();
    ping[20 + 8..20 + 12].copy_from_slice(b"ping");
    assert_eq!(parse_v4(&ping, target), Err(Rejection::NotOurs), "no magic");

    let mut request_seen = packet.clone();
    request_seen[20] = 8;
    assert_eq!(
        parse_v4(&request_seen, target),
        Err(Rejection::NotOurs),
        "an echo request"
    );
}

#[test]
fn truncated_and_garbage_packets_are_rejected() {
    assert_eq!(parse_v4(&[], ip("127.0.0.1")), Err(Rejection::Malformed));
    assert_eq!(
        parse_v4(&[0x45; 10], ip("127.0.0.1")),
        Err(Rejection::Malformed)
    );
    assert_eq!(
        parse_v4(&[0x60; 40], ip("127.0.0.1")),
        Err(Rejection::Malformed),
        "IPv6 on v4"
    );
    let target = ip("127.0.0.1");
    let reply = echo_reply(&request(target, &fields(1)), target);
    let mut packet = ipv4_header([127, 0, 0, 1], [127, 0, 0, 1], 1, reply.len());
    packet.extend_from_slice(&reply[..20]);
    assert_eq!(
        parse_v4(&packet, target),
        Err(Rejection::NotOurs),
        "cut payload"
    );
}

#[test]
fn ipv4_unreachable_quoting_our_probe_names_the_target() {
    let target = ip("198.18.2.9");
    let probe = fields(4);
    let sent = request(target, &probe);
    let mut quoted = ipv4_header([198, 18, 0, 1], [198, 18, 2, 9], 1, sent.len());
    quoted.extend_from_slice(&sent);
    let mut error = vec![3, 1, 0, 0, 0, 0, 0, 0];
    error.extend_from_slice(&quoted);
    let mut packet = ipv4_header([198, 18, 0, 2], [198, 18, 0, 1], 1, error.len());
    packet.extend_from_slice(&error);
    let verdict = parse_v4(&packet, ip("198.18.0.2"));
    assert_eq!(
        verdict,
        Ok(Verdict::Error {
            probe,
            target,
            kind: IcmpErrorKind {
                icmp_type: 3,
                code: 1
            },
            reporter: ip("198.18.0.2"),
        })
    );
}

#[test]
fn ipv6_unreachable_quoting_our_probe_names_the_target() {
    let target = ip("2001:2:0:2::9");
    let probe = fields(4);
    let sent = request(target, &probe);
    let mut quoted = vec![0x60, 0, 0, 0, 0, PROBE_LEN as u8, 58, 64];
    quoted.extend_from_slice(&ip6_octets("2001:2::1"));
    quoted.extend_from_slice(&ip6_octets("2001:2:0:2::9"));
    quoted.extend_from_slice(&sent);
    let mut packet = vec![1, 3, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(&quoted);
    let verdict = parse(
        &packet,
        Framing::IcmpOnly,
        ip("2001:2::2"),
        &TagKey::from_bytes(KEY),
        Some(IDENT),
    );
    assert_eq!(
        verdict,
        Ok(Verdict::Error {
            probe,
            target,
            kind: IcmpErrorKind {
                icmp_type: 1,
                code: 3
            },
            reporter: ip("2001:2::2"),
        })
    );
}

fn ip6_octets(text: &str) -> [u8; 16] {
    match ip(text) {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(_) => unreachable!("IPv6 literal"),
    }
}

#[test]
fn datagram_sockets_validate_without_our_identifier() {
    let target = ip("127.0.0.1");
    let probe = ProbeFields {
        ident: 0,
        ..fields(2)
    };
    let mut reply = echo_reply(&request(target, &probe), target);
    // The kernel replaced the identifier with the socket's port.
    reply[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    let verdict = parse(
        &reply,
        Framing::IcmpOnly,
        target,
        &TagKey::from_bytes(KEY),
        None,
    );
    assert_eq!(verdict, Ok(Verdict::Reply(probe)));
}

fn any_address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

proptest! {
    #[test]
    fn any_probe_roundtrips(
        seq: u16, index: u32, epoch: u16, sent_ns: u64, target in any_address(),
    ) {
        let probe = ProbeFields { ident: IDENT, seq, index, epoch, sent_ns };
        let reply = echo_reply(&request(target, &probe), target);
        let verdict = parse(&reply, Framing::IcmpOnly, target, &TagKey::from_bytes(KEY), Some(IDENT));
        prop_assert_eq!(verdict, Ok(Verdict::Reply(probe)));
    }

    #[test]
    fn incremental_checksum_equals_a_full_one(
        ident: u16, seq: u16, index: u32, epoch: u16, sent_ns: u64, target in any::<[u8; 4]>(),
    ) {
        let probe = ProbeFields { ident, seq, index, epoch, sent_ns };
        let packet = request(IpAddr::from(target), &probe);
        prop_assert_eq!(internet_checksum(&packet), 0);
    }

    #[test]
    fn arbitrary_bytes_never_validate(bytes in prop::collection::vec(any::<u8>(), 0..200), source in any_address()) {
        for framing in [Framing::Ipv4Header, Framing::IcmpOnly] {
            let verdict = parse(&bytes, framing, source, &TagKey::from_bytes(KEY), Some(IDENT));
            prop_assert!(verdict.is_err());
        }
    }
}

#[test]
fn icmp_errors_are_described_in_words() {
    let kind = |icmp_type, code| IcmpErrorKind { icmp_type, code };
    assert_eq!(
        kind(1, 3).describe(Family::V6),
        "ICMPv6 destination unreachable: address unreachable"
    );
    assert_eq!(
        kind(3, 1).describe(Family::V4),
        "ICMP destination unreachable: host unreachable"
    );
    assert_eq!(
        kind(3, 0).describe(Family::V6),
        "ICMPv6 time exceeded: hop limit exceeded in transit (a routing loop or a path too long)"
    );
    assert_eq!(
        kind(3, 99).describe(Family::V4),
        "ICMP destination unreachable (type 3, code 99)"
    );
    for icmp_type in 0..=u8::MAX {
        for family in [Family::V4, Family::V6] {
            let words = kind(icmp_type, 0).describe(family);
            assert!(!words.contains('{'), "{words}");
        }
    }
}
