//! The engine under a virtual clock, against a simulated network that
//! answers with real reply bytes (validated by `packet::parse`).

use std::collections::HashMap;
use std::net::IpAddr;

use super::*;
use crate::packet::{Framing, PROBE_LEN};

const MS: Nanos = 1_000_000;
const S: Nanos = 1_000 * MS;
const KEY: [u8; 16] = *b"virtual-clock-ky";
const IDENT: u16 = 77;

/// How a simulated host treats echo requests.
#[derive(Clone, Copy, Debug)]
enum Host {
    Answers { rtt: Nanos },
    Duplicates { rtt: Nanos },
    Silent,
    Unreachable { rtt: Nanos },
}

struct Sim {
    engine: Engine,
    now: Nanos,
    hosts: HashMap<IpAddr, Host>,
    /// (deliver at, packet bytes, source).
    wire: Vec<(Nanos, Vec<u8>, IpAddr)>,
    sent: Vec<(Nanos, IpAddr)>,
    transitions: Vec<Transition>,
}

impl Sim {
    fn new(config: EngineConfig) -> Self {
        Self {
            engine: Engine::new(config, TagKey::from_bytes(KEY), 0),
            now: 0,
            hosts: HashMap::new(),
            wire: Vec::new(),
            sent: Vec::new(),
            transitions: Vec::new(),
        }
    }

    fn add(&mut self, address: &str, host: Host) -> u32 {
        let address: IpAddr = address.parse().expect("address");
        self.hosts.insert(address, host);
        let spec = TargetSpec::with_defaults(address);
        let id = u64::try_from(self.hosts.len()).expect("small");
        self.engine
            .add_target(spec, id, self.now)
            .expect("valid spec")
    }

    fn set(&mut self, address: &str, host: Host) {
        self.hosts.insert(address.parse().expect("address"), host);
    }

    fn run_until(&mut self, until: Nanos) {
        let mut buffer = [0u8; PROBE_LEN];
        while self.now <= until {
            self.deliver();
            self.engine.handle_timeouts(self.now);
            while let Some(transmit) = self.engine.poll_transmit(self.now, &mut buffer) {
                self.sent.push((self.now, transmit.destination));
                self.respond(&buffer[..transmit.len], transmit.destination);
            }
            while let Some(transition) = self.engine.poll_transition() {
                self.transitions.push(transition);
            }
            let next_packet = self.wire.iter().map(|(at, _, _)| *at).min();
            let next = [
                next_packet,
                self.engine.next_wakeup(self.now),
                Some(until + 1),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(until + 1);
            self.now = next.max(self.now + 1_000);
        }
    }

    fn respond(&mut self, request: &[u8], destination: IpAddr) {
        let mut reply = request.to_vec();
        reply[0] = if destination.is_ipv4() { 0 } else { 129 };
        match self.hosts[&destination] {
            Host::Answers { rtt } => self.wire.push((self.now + rtt, reply, destination)),
            Host::Duplicates { rtt } => {
                self.wire.push((self.now + rtt, reply.clone(), destination));
                self.wire
                    .push((self.now + rtt + 10_000, reply, destination));
            }
            Host::Silent => {}
            Host::Unreachable { rtt } => {
                // IPv4 header + our request, inside a host-unreachable error.
                let octets = match destination {
                    IpAddr::V4(v4) => v4.octets(),
                    IpAddr::V6(_) => unreachable!("IPv4 only here"),
                };
                let mut error = vec![
                    3, 1, 0, 0, 0, 0, 0, 0, 0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0,
                ];
                error.extend_from_slice(&[198, 18, 0, 1]);
                error.extend_from_slice(&octets);
                error.extend_from_slice(request);
                let router: IpAddr = "198.18.0.2".parse().expect("address");
                self.wire.push((self.now + rtt, error, router));
            }
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|(at, _, _)| *at <= now);
        self.wire = later;
        for (at, packet, source) in due {
            let verdict = crate::packet::parse(
                &packet,
                Framing::IcmpOnly,
                source,
                &TagKey::from_bytes(KEY),
                Some(IDENT),
            )
            .expect("the simulated network only sends valid replies");
            self.engine.handle_verdict(verdict, at, now);
        }
    }

    fn transitions_of(&self, index: u32) -> Vec<(Status, Nanos)> {
        self.transitions
            .iter()
            .filter(|t| t.index == index)
            .map(|t| (t.status, t.probed_at))
            .collect()
    }
}

fn config(start: Start) -> EngineConfig {
    EngineConfig {
        ident: Some(IDENT),
        start,
        ..EngineConfig::default()
    }
}

#[test]
fn a_dead_host_is_down_after_exactly_down_after_misses_within_the_bound() {
    let mut sim = Sim::new(config(Start::Immediately));
    let index = sim.add("198.18.1.1", Host::Answers { rtt: MS });
    sim.run_until(5 * S);
    assert_eq!(sim.engine.status(index), Some(Status::Up));
    let probes_before = sim.sent.len();
    let died_at = sim.now;
    sim.set("198.18.1.1", Host::Silent);
    sim.run_until(10 * S);
    let down = sim
        .transitions
        .iter()
        .find(|t| t.status == Status::Down)
        .expect("went down");
    assert_eq!(down.previous, Status::Up);
    assert_eq!(down.cause, Cause::Timeouts);
    let probes_until_down = sim
        .sent
        .iter()
        .filter(|(at, _)| *at > died_at && *at <= down.probed_at)
        .count();
    assert_eq!(probes_until_down, 3, "down after exactly 3 missed probes");
    // Interval + 3 timeouts, plus the wheel's resolution per timeout.
    let decided_at = down.probed_at + 500 * MS;
    assert!(
        decided_at - died_at <= S + 3 * 500 * MS + 3 * wheel::RESOLUTION_NS,
        "{}",
        decided_at - died_at
    );
    assert!(probes_before >= 5, "it was probed every second while up");
}

#[test]
fn a_down_host_is_up_after_exactly_up_after_replies() {
    let mut sim = Sim::new(config(Start::Immediately));
    let index = sim.add("198.18.1.2", Host::Silent);
    sim.run_until(4 * S);
    assert_eq!(sim.engine.status(index), Some(Status::Down));
    let revived_at = sim.now;
    sim.set("198.18.1.2", Host::Answers { rtt: 2 * MS });
    sim.run_until(8 * S);
    let up = sim
        .transitions
        .iter()
        .find(|t| t.status == Status::Up)
        .expect("came back");
    assert_eq!(up.previous, Status::Down);
    let replies_until_up = sim
        .sent
        .iter()
        .filter(|(at, _)| *at > revived_at && *at <= up.probed_at)
        .count();
    assert_eq!(replies_until_up, 2, "up after exactly 2 replies");
    assert_eq!(up.last_rtt_us, Some(2000));
}

/// The engine says whether any target is not up (the prober then hands
/// it every reply at once, so an UP is not held back until the next
/// timeout): undecided and down targets count, up and removed ones not.
#[test]
fn it_says_while_some_target_is_not_up() {
    let mut sim = Sim::new(config(Start::Immediately));
    assert!(!sim.engine.has_targets_not_up(), "no targets");
    let live = sim.add("198.18.1.1", Host::Answers { rtt: MS });
    assert!(sim.engine.has_targets_not_up(), "undecided");
    sim.run_until(3 * S);
    assert_eq!(sim.engine.status(live), Some(Status::Up));
    assert!(!sim.engine.has_targets_not_up(), "every target up");
    sim.set("198.18.1.1", Host::Silent);
    sim.run_until(6 * S);
    assert_eq!(sim.engine.status(live), Some(Status::Down));
    assert!(sim.engine.has_targets_not_up(), "one down");
    sim.set("198.18.1.1", Host::Answers { rtt: MS });
    sim.run_until(9 * S);
    assert_eq!(sim.engine.status(live), Some(Status::Up));
    assert!(!sim.engine.has_targets_not_up(), "up again");
    let dead = sim.add("198.18.1.2", Host::Silent);
    sim.run_until(12 * S);
    assert_eq!(sim.engine.status(dead), Some(Status::Down));
    assert!(sim.engine.has_targets_not_up(), "a dead one");
    sim.engine.remove_target(dead);
    sim.engine.remove_target(dead);
    assert!(
        !sim.engine.has_targets_not_up(),
        "the dead one removed (once)"
    );
}

/// A target handed over as UP (another agent of its group probed it) is
/// not reported UP again; one handed over as DOWN stays down until
/// `up_after` replies; a dead one handed over as UP is DOWN as fast as an
/// undecided one would be.
#[test]
fn a_target_handed_over_starts_from_what_its_previous_prober_knew() {
    let mut sim = Sim::new(config(Start::Immediately));
    let add_known = |sim: &mut Sim, address: &str, host: Host, known: Status| {
        let address: IpAddr = address.parse().expect("address");
        sim.hosts.insert(address, host);
        let id = u64::try_from(sim.hosts.len()).expect("small");
        sim.engine
            .add_known_target(TargetSpec::with_defaults(address), id, known, sim.now)
            .expect("valid spec")
    };
    let live = add_known(
        &mut sim,
        "198.18.1.1",
        Host::Answers { rtt: MS },
        Status::Up,
    );
    let back = add_known(
        &mut sim,
        "198.18.1.2",
        Host::Answers { rtt: MS },
        Status::Down,
    );
    let dead = add_known(&mut sim, "198.18.1.3", Host::Silent, Status::Up);
    let fresh = sim.add("198.18.1.4", Host::Silent);
    sim.run_until(5 * S);

    assert_eq!(sim.engine.status(live), Some(Status::Up));
    let of = |sim: &Sim, index: u32| -> Vec<(Status, Status, Nanos)> {
        let id = u64::from(index) + 1;
        sim.transitions
            .iter()
            .filter(|t| t.id == id)
            .map(|t| (t.previous, t.status, t.probed_at))
            .collect()
    };
    assert!(of(&sim, live).is_empty(), "{:?}", of(&sim, live));
    let came_back = of(&sim, back);
    assert_eq!(
        came_back.iter().map(|t| (t.0, t.1)).collect::<Vec<_>>(),
        [(Status::Down, Status::Up)]
    );
    let replies_until_up = sim
        .sent
        .iter()
        .filter(|(at, to)| *to == "198.18.1.2".parse::<IpAddr>().unwrap() && *at <= came_back[0].2)
        .count();
    assert_eq!(replies_until_up, 2, "up_after replies, not the first one");
    let went_down = of(&sim, dead);
    let fresh_down = of(&sim, fresh);
    assert_eq!(
        went_down.iter().map(|t| (t.0, t.1)).collect::<Vec<_>>(),
        [(Status::Up, Status::Down)]
    );
    assert_eq!(
        went_down[0].2, fresh_down[0].2,
        "as fast as an undecided one"
    );
}

#[test]
fn duplicates_are_counted_and_never_as_success() {
    let mut sim = Sim::new(config(Start::Immediately));
    let index = sim.add("198.18.1.3", Host::Duplicates { rtt: MS });
    sim.run_until(10 * S + 100 * MS);
    let counters = sim.engine.counters();
    assert_eq!(counters.probes_sent, 11);
    assert_eq!(counters.replies_matched, 11);
    assert_eq!(counters.replies_duplicate, 11);
    let stats = sim.engine.period_stats(index).expect("target");
    assert_eq!((stats.sent, stats.received), (11, 11));
}

#[test]
fn replies_after_the_timeout_are_late_and_the_host_is_down() {
    let mut sim = Sim::new(config(Start::Immediately));
    let index = sim.add("198.18.1.4", Host::Answers { rtt: 700 * MS });
    sim.run_until(10 * S);
    let counters = sim.engine.counters();
    assert_eq!(counters.replies_matched, 0);
    assert!(counters.replies_late >= 3, "{counters:?}");
    assert_eq!(sim.engine.status(index), Some(Status::Down));
    assert!(sim.transitions.iter().all(|t| t.status != Status::Up));
}

#[test]
fn icmp_unreachable_decides_well_before_the_timeout() {
    let mut sim = Sim::new(config(Start::Immediately));
    let index = sim.add("198.18.2.9", Host::Unreachable { rtt: MS });
    sim.run_until(S);
    let transitions = sim.transitions_of(index);
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    let (status, probed_at) = transitions[0];
    assert_eq!(status, Status::Unreachable);
    assert!(probed_at + MS < 10 * MS, "decided after {probed_at} ns");
    assert_eq!(sim.engine.counters().icmp_errors, 3);
}

#[test]
fn targets_are_spread_evenly_over_the_interval() {
    let mut sim = Sim::new(config(Start::Spread));
    for i in 0..10_000u32 {
        let address = format!("198.18.{}.{}", 10 + i / 250, 1 + i % 250);
        sim.add(&address, Host::Answers { rtt: MS });
    }
    sim.run_until(3 * S);
    // Second 2: ten windows of 100 ms, each should carry about 1,000 probes.
    for window in 0..10 {
        let start = 2 * S + window * 100 * MS;
        let count = sim
            .sent
            .iter()
            .filter(|(at, _)| (start..start + 100 * MS).contains(at))
            .count();
        assert!(
            (850..=1150).contains(&count),
            "window {window}: {count} probes"
        );
    }
}

#[test]
fn a_small_agent_sends_an_intervals_probes_in_one_wake_up_and_still_detects_in_time() {
    let mut sim = Sim::new(config(Start::Spread));
    let mut indexes = Vec::new();
    for i in 0..20u32 {
        indexes.push(sim.add(&format!("198.18.3.{}", 1 + i), Host::Answers { rtt: MS }));
    }
    sim.run_until(3 * S);
    let mut instants: Vec<Nanos> = sim
        .sent
        .iter()
        .filter(|(at, _)| (2 * S..3 * S).contains(at))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(instants.len(), 20, "each target once a second");
    instants.dedup();
    assert_eq!(instants.len(), 1, "one send slot: {instants:?}");
    // A target that dies is down within the same bound as when alone:
    // interval + 3 timeouts (and the wheel's resolution per timeout).
    sim.set("198.18.3.8", Host::Silent);
    let died = sim.now;
    sim.run_until(died + 5 * S);
    let transitions = sim.transitions_of(indexes[7]);
    let (status, probed_at) = *transitions.last().expect("a transition");
    assert_eq!(status, Status::Down);
    let decided_after = probed_at + 500 * MS - died;
    assert!(
        decided_after <= S + 3 * 500 * MS + 3 * wheel::RESOLUTION_NS,
        "decided {} ms after it died",
        decided_after / MS
    );
}

#[test]
fn the_rate_limit_caps_probes_and_counts_held_back_ones() {
    let mut config = config(Start::Immediately);
    config.rate = Some(1000);
    config.probes_per_target = Some(1);
    let mut sim = Sim::new(config);
    for i in 0..5_000u32 {
        sim.add(
            &format!("198.18.{}.{}", 10 + i / 250, 1 + i % 250),
            Host::Answers { rtt: MS },
        );
    }
    sim.run_until(S);
    let sent = sim.engine.counters().probes_sent;
    assert!(
        (1000..=1002).contains(&sent),
        "{sent} probes in 1 s at 1000/s"
    );
    assert!(sim.engine.counters().rate_limited > 0);
    sim.engine.set_rate(None, sim.now);
    sim.run_until(2 * S);
    assert_eq!(sim.engine.counters().probes_sent, 5_000);
    assert!(sim.engine.is_finished());
}

#[test]
fn a_reused_slot_rejects_replies_meant_for_its_previous_target() {
    let mut sim = Sim::new(config(Start::Immediately));
    let old = sim.add("198.18.1.5", Host::Answers { rtt: 300 * MS });
    sim.run_until(MS);
    sim.engine.remove_target(old);
    let new = sim.add("198.18.1.6", Host::Silent);
    assert_eq!(old, new, "the slot is reused");
    sim.run_until(400 * MS);
    let counters = sim.engine.counters();
    assert_eq!(counters.replies_invalid, 1, "{counters:?}");
    assert_eq!(counters.replies_matched, 0);
}

#[test]
fn count_mode_sends_exactly_count_probes_and_finishes() {
    let mut config = config(Start::Immediately);
    config.probes_per_target = Some(3);
    let mut sim = Sim::new(config);
    sim.add("198.18.1.7", Host::Answers { rtt: MS });
    sim.add("198.18.1.8", Host::Silent);
    sim.run_until(5 * S);
    assert!(sim.engine.is_finished());
    assert_eq!(sim.engine.counters().probes_sent, 6);
}

#[test]
fn per_target_state_is_under_256_bytes() {
    let bytes = Engine::bytes_per_target();
    assert!(bytes < 256, "{bytes} bytes per target");
}

#[test]
fn each_periods_median_and_90th_percentile_are_exact_from_its_replies() {
    let mut sim = Sim::new(EngineConfig {
        quantile_period_ms: Some(10_000),
        ..config(Start::Immediately)
    });
    sim.add("198.18.1.9", Host::Answers { rtt: 2 * MS });
    sim.run_until(5 * S + 500 * MS);
    sim.set("198.18.1.9", Host::Answers { rtt: 9 * MS });
    sim.run_until(10 * S + 500 * MS);
    let mut taken = Vec::new();
    sim.engine
        .take_period_stats(|_, _, stats, quantiles| taken.push((stats.received, quantiles)));
    // Six replies of 2 ms, then five of 9 ms: the 6th and 10th of 11.
    assert_eq!(taken, [(11, Some((2_000, 9_000)))]);
    sim.engine
        .take_period_stats(|_, _, stats, quantiles| taken.push((stats.received, quantiles)));
    assert_eq!(taken[1], (0, None), "a new period, no reply yet");
}
