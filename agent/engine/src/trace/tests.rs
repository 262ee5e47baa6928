use std::net::{IpAddr, Ipv4Addr};

use super::*;

const SECOND: Nanos = 1_000_000_000;
const IDENT: u16 = 0x7123;

fn address(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// A network the tests route trace probes through: `path[n]` answers TTL
/// n + 1 with a time exceeded; past the path, `end` says what happens.
struct Network {
    path: Vec<IpAddr>,
    end: End,
    /// Routers quote only the ICMP header (RFC 792), not the payload.
    short_quotes: bool,
}

#[derive(Clone, Copy)]
enum End {
    /// Nothing answers beyond the path.
    Silent,
    /// The last router answers destination unreachable for anything
    /// beyond it.
    Unreachable,
    /// The device answers.
    Reached,
}

impl Network {
    /// What comes back for one probe: (packet as a raw IPv4 socket reads
    /// it, its source).
    fn answer(&self, probe: &[u8], sent: TraceTransmit) -> Option<(Vec<u8>, IpAddr)> {
        let hop = usize::from(sent.ttl);
        if hop <= self.path.len() {
            return Some(self.error(self.path[hop - 1], (11, 0), probe, sent));
        }
        match self.end {
            End::Silent => None,
            End::Unreachable => {
                let router = *self.path.last().expect("a path");
                Some(self.error(router, (3, 1), probe, sent))
            }
            End::Reached => {
                let mut reply = probe.to_vec();
                reply[0] = 0;
                Some((ipv4(sent.destination, LOCAL, &reply), sent.destination))
            }
        }
    }

    fn error(
        &self,
        router: IpAddr,
        (icmp_type, code): (u8, u8),
        probe: &[u8],
        sent: TraceTransmit,
    ) -> (Vec<u8>, IpAddr) {
        let target = sent.destination;
        let quoted_len = if self.short_quotes { 8 } else { probe.len() };
        let protocol = if sent.tcp { 6 } else { 1 };
        let mut quoted = ipv4(LOCAL, target, &probe[..quoted_len]);
        quoted[9] = protocol;
        let mut icmp = vec![icmp_type, code, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoted);
        (ipv4(router, LOCAL, &icmp), router)
    }
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));

/// An IPv4 packet carrying ICMP `payload`.
fn ipv4(source: IpAddr, destination: IpAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(source), IpAddr::V4(destination)) = (source, destination) else {
        panic!("IPv4 only");
    };
    let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
    packet.extend_from_slice(&source.octets());
    packet.extend_from_slice(&destination.octets());
    packet.extend_from_slice(payload);
    packet
}

fn tracer() -> Tracer {
    Tracer::new(TraceConfig::default(), TagKey::from_bytes([7; 16]), IDENT)
}

/// Runs `tracer` through `network` until it has nothing to do, answering
/// every probe at once; returns the finished traces.
fn run(tracer: &mut Tracer, network: &Network, mut now: Nanos) -> Vec<TraceResult> {
    let mut buffer = [0u8; 64];
    for _ in 0..20 {
        while let Some(sent) = tracer.poll_transmit(now, &mut buffer) {
            if let Some((packet, source)) = network.answer(&buffer[..sent.len], sent) {
                tracer.handle_packet(&packet, Framing::Ipv4Header, source, now + 2_000_000);
            }
        }
        let Some(wakeup) = tracer.next_wakeup() else {
            break;
        };
        now = wakeup;
        tracer.handle_timeouts(now);
    }
    std::iter::from_fn(|| tracer.poll_done()).collect()
}

fn addresses(result: &TraceResult) -> Vec<Option<IpAddr>> {
    result.hops.iter().map(|hop| hop.address).collect()
}

fn routers(count: u8) -> Vec<IpAddr> {
    (1..=count)
        .map(|n| IpAddr::V4(Ipv4Addr::new(198, 18, 100, n)))
        .collect()
}

#[test]
fn a_silent_device_behind_three_routers_ends_at_the_third() {
    let network = Network {
        path: routers(3),
        end: End::Silent,
        short_quotes: false,
    };
    let mut tracer = tracer();
    let target = address("198.18.5.10");
    assert_eq!(tracer.request(1, target, Via::Icmp, 0), Requested::Started);
    let done = run(&mut tracer, &network, 0);
    assert_eq!(done.len(), 1, "{done:?}");
    let result = &done[0];
    assert_eq!(result.devices, [1]);
    assert!(!result.reached);
    assert_eq!(
        addresses(result),
        routers(3).into_iter().map(Some).collect::<Vec<_>>()
    );
    assert_eq!(result.hops[0].ttl, 1);
    assert_eq!(result.hops[2].rtt_ns, Some(2_000_000));
    // Three rounds: the first of all 20 TTLs, then the 17 still silent twice.
    assert_eq!(tracer.counters().probes_sent, 20 + 17 + 17);
}

#[test]
fn a_destination_unreachable_ends_the_path_at_its_router() {
    let network = Network {
        path: routers(2),
        end: End::Unreachable,
        short_quotes: false,
    };
    let mut tracer = tracer();
    tracer.request(1, address("198.18.5.10"), Via::Icmp, 0);
    let done = run(&mut tracer, &network, 0);
    let last = routers(2)[1];
    assert_eq!(
        addresses(&done[0]),
        [Some(routers(2)[0]), Some(last), Some(last)]
    );
    // The answers came before TTL 4 was due (this network answers at
    // once), and every hop up to the end answered: no second round.
    assert_eq!(tracer.counters().probes_sent, 3);
}

#[test]
fn routers_that_quote_only_the_icmp_header_are_still_matched() {
    let network = Network {
        path: routers(3),
        end: End::Silent,
        short_quotes: true,
    };
    let mut tracer = tracer();
    tracer.request(1, address("198.18.5.10"), Via::Icmp, 0);
    let done = run(&mut tracer, &network, 0);
    assert_eq!(
        addresses(&done[0]),
        routers(3).into_iter().map(Some).collect::<Vec<_>>()
    );
    assert!(done[0].hops.iter().all(|hop| hop.rtt_ns == Some(2_000_000)));
}

#[test]
fn a_reached_device_ends_its_own_trace_and_its_neighbours_get_the_path_to_it() {
    let network = Network {
        path: routers(2),
        end: End::Reached,
        short_quotes: false,
    };
    let mut tracer = tracer();
    let target = address("198.18.5.10");
    tracer.request(1, target, Via::Icmp, 0);
    assert_eq!(
        tracer.request(2, address("198.18.5.11"), Via::Icmp, 0),
        Requested::Shared
    );
    let done = run(&mut tracer, &network, 0);
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(done[0].reached);
    assert_eq!(done[0].devices, [1]);
    assert_eq!(addresses(&done[0]).last(), Some(&Some(target)));
    assert!(!done[1].reached);
    assert_eq!(done[1].devices, [2]);
    assert_eq!(
        addresses(&done[1]),
        routers(2).into_iter().map(Some).collect::<Vec<_>>()
    );
}

#[test]
fn a_forged_error_names_no_hop() {
    let mut tracer = tracer();
    let target = address("198.18.5.10");
    tracer.request(1, target, Via::Icmp, 0);
    let mut buffer = [0u8; 64];
    let sent = tracer.poll_transmit(0, &mut buffer).expect("TTL 1");
    let mut probe = buffer[..sent.len].to_vec();
    probe[30] ^= 0xff; // the tag
    let network = Network {
        path: routers(1),
        end: End::Silent,
        short_quotes: false,
    };
    let (packet, source) = network.answer(&probe, sent).expect("an answer");
    tracer.handle_packet(&packet, Framing::Ipv4Header, source, 1);
    while tracer.poll_transmit(0, &mut buffer).is_some() {}
    for round in 1..=3 {
        tracer.handle_timeouts(round * SECOND);
        while tracer.poll_transmit(round * SECOND, &mut buffer).is_some() {}
    }
    let done = tracer.poll_done().expect("finished");
    assert!(done.hops.is_empty(), "{done:?}");
}

#[test]
fn an_outage_of_thousands_of_devices_starts_a_handful_of_traces() {
    let mut tracer = tracer();
    // 2,000 devices in eight /24s: one trace per /24.
    let requested: Vec<Requested> = (0..2000u32)
        .map(|n| {
            let address = IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 8, 0)) + n));
            tracer.request(u64::from(n), address, Via::Icmp, 0)
        })
        .collect();
    let started = requested
        .iter()
        .filter(|r| **r == Requested::Started)
        .count();
    assert_eq!(started, 8);
    assert_eq!(tracer.counters().shared, 1992);
    // 100 /24s: 4 run, 16 wait, the rest are skipped and counted.
    let mut tracer = self::tracer();
    for n in 0..100u32 {
        let address = IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(198, 18, 0, 9)) + (n << 8),
        ));
        tracer.request(u64::from(n), address, Via::Icmp, 0);
    }
    let counters = tracer.counters();
    assert_eq!((counters.started, counters.skipped), (20, 80));
    // Every device of a trace hears of it: all 2,000 in the first run.
    let network = Network {
        path: routers(1),
        end: End::Silent,
        short_quotes: false,
    };
    let mut tracer = self::tracer();
    for n in 0..2000u32 {
        let address = IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 8, 0)) + n));
        tracer.request(u64::from(n), address, Via::Icmp, 0);
    }
    let done = run(&mut tracer, &network, 0);
    let told: usize = done.iter().map(|result| result.devices.len()).sum();
    assert_eq!((done.len(), told), (8, 2000));
}

#[test]
fn a_device_failing_just_after_its_neighbour_shares_the_finished_trace() {
    let network = Network {
        path: routers(2),
        end: End::Silent,
        short_quotes: false,
    };
    let mut tracer = tracer();
    tracer.request(1, address("198.18.5.10"), Via::Icmp, 0);
    let first = run(&mut tracer, &network, 0);
    let at = 10 * SECOND;
    assert_eq!(
        tracer.request(2, address("198.18.5.20"), Via::Icmp, at),
        Requested::Shared
    );
    let shared = tracer.poll_done().expect("at once");
    assert_eq!(
        (shared.devices.as_slice(), &shared.hops),
        ([2].as_slice(), &first[0].hops)
    );
    // After the sharing time, a new trace.
    let later = at + TraceConfig::default().share_for_ns;
    assert_eq!(
        tracer.request(3, address("198.18.5.30"), Via::Icmp, later),
        Requested::Started
    );
}

#[test]
fn every_echo_request_of_a_trace_is_one_flow_with_a_valid_checksum() {
    let mut tracer = tracer();
    tracer.request(1, address("198.18.5.10"), Via::Icmp, 0);
    tracer.request(2, address("198.18.6.10"), Via::Icmp, 0);
    let mut buffer = [0u8; 64];
    let mut heads = std::collections::HashSet::new();
    let mut sent = 0;
    while let Some(probe) = tracer.poll_transmit(0, &mut buffer) {
        let echo = &buffer[..probe.len];
        assert_eq!(packet::internet_checksum(echo), 0, "a valid checksum");
        heads.insert(echo[..6].to_vec());
        sent += 1;
    }
    assert_eq!(sent, 40);
    assert_eq!(heads.len(), 1, "type, code, checksum and identifier alike");
}

#[test]
fn a_tcp_checked_device_is_traced_with_syns_of_one_flow_and_short_quotes_are_authenticated() {
    let network = Network {
        path: routers(2),
        end: End::Silent,
        short_quotes: true,
    };
    let mut tracer = tracer();
    let via = Via::Tcp {
        port: 443,
        source: LOCAL,
    };
    tracer.request(1, address("198.18.5.10"), via, 0);
    let mut buffer = [0u8; 64];
    let first = tracer.poll_transmit(0, &mut buffer).expect("TTL 1");
    assert!(first.tcp);
    let flow = buffer[..4].to_vec();
    // A router quoting a SYN whose tag was tampered with names no hop.
    let mut forged = buffer[..first.len].to_vec();
    forged[7] ^= 1;
    let (packet, source) = network.answer(&forged, first).expect("an answer");
    tracer.handle_packet(&packet, Framing::Ipv4Header, source, 1);
    let (packet, source) = network
        .answer(&buffer[..first.len], first)
        .expect("an answer");
    tracer.handle_packet(&packet, Framing::Ipv4Header, source, 2);
    let mut ports = std::collections::HashSet::from([flow]);
    while let Some(sent) = tracer.poll_transmit(0, &mut buffer) {
        ports.insert(buffer[..4].to_vec());
        if let Some((packet, source)) = network.answer(&buffer[..sent.len], sent) {
            tracer.handle_packet(&packet, Framing::Ipv4Header, source, 3);
        }
    }
    assert_eq!(ports.len(), 1, "one source port, one destination port");
    let done = run(&mut tracer, &network, 0);
    assert_eq!(
        addresses(&done[0]),
        routers(2).into_iter().map(Some).collect::<Vec<_>>()
    );
    assert_eq!(done[0].hops[0].rtt_ns, Some(2), "the authentic answer's");
}
