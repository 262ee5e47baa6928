//! The path to a device at the moment it failed: a traceroute the agent
//! runs when a device goes down or degraded, sans-IO like the engine.
//!
//! As mtr does, a trace sends a probe for every TTL from 1 to
//! [`TraceConfig::max_hops`] at once, one round after another (each round
//! only for the TTLs still silent), and keeps for each TTL the first
//! address that answered and its best round trip. Probes are of the
//! device's check protocol ([`Via`]), and all of a trace's probes are one
//! flow, so ECMP cannot send TTL 3 one way and TTL 4 another: echo
//! requests with one identifier and one checksum (a payload word makes up
//! for what differs, as Paris traceroute does), or SYNs from one source
//! port to the checked port.
//!
//! Echo requests carry the engine's tagged payload (the tracer's own
//! identifier, so the engine's socket ignores them): a router that quotes
//! the whole probe is authenticated by the tag; one that quotes only the
//! first 8 bytes (RFC 792) is matched by identifier, trace, TTL and round
//! in the sequence number, and the quoted destination. A SYN's sequence
//! number is its tag (as the engine's, `crate::tcp`), checked on any
//! quote; the tracer sees no SYN/ACK or RST, so a TCP trace ends at the
//! last router that answered.
//!
//! A destination unreachable ends the path at its TTL (the router that
//! said it is the last hop); an echo reply ends it at the device.
//!
//! Bounded, because a site outage fails thousands of devices at once:
//! devices in the same /24 (IPv4) or /64 (IPv6) as a trace running,
//! waiting or finished within [`TraceConfig::share_for_ns`] share that
//! trace; at most [`TraceConfig::max_running`] run at once and
//! [`TraceConfig::max_waiting`] wait; beyond that a request is skipped and
//! counted.

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::packet::{
    self, EchoTemplate, Family, Framing, IcmpErrorKind, ProbeFields, QuotedProbe, Rejection,
    ShortQuote, TagKey, Verdict,
};
use crate::{Nanos, tcp};

/// The most TTLs a trace can probe.
pub const MAX_HOPS: u8 = 30;

/// How traces run.
#[derive(Clone, Copy, Debug)]
pub struct TraceConfig {
    /// The highest TTL probed (at most [`MAX_HOPS`]).
    pub max_hops: u8,
    /// Rounds of probes per trace.
    pub rounds: u8,
    /// How long a round waits for answers, ns.
    pub round_ns: Nanos,
    /// Traces running at once, at most.
    pub max_running: usize,
    /// Traces waiting for a free place, at most.
    pub max_waiting: usize,
    /// How long a finished trace answers for devices of its prefix, ns.
    pub share_for_ns: Nanos,
}

impl Default for TraceConfig {
    /// 20 hops, 3 rounds of 1 s, 4 running, 16 waiting, shared for 60 s.
    fn default() -> Self {
        Self {
            max_hops: 20,
            rounds: 3,
            round_ns: 1_000_000_000,
            max_running: 4,
            max_waiting: 16,
            share_for_ns: 60_000_000_000,
        }
    }
}

/// What a trace probes with: the device's check protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Echo requests.
    Icmp,
    /// SYNs to `port`, from `source` (the address of the route to the
    /// device: the TCP checksum covers it).
    Tcp {
        /// The checked port.
        port: u16,
        /// The source address of the route to the device.
        source: IpAddr,
    },
}

/// The source ports of trace SYNs: below the engine's (32768 and up), so
/// its socket never counts a trace's answer as a stray one.
const FIRST_TRACE_PORT: u16 = 31744;
const TRACE_PORTS: u32 = 1024;

/// The checksum every echo request of a trace carries (any constant will
/// do: the flow is what stays the same).
const FLOW_CHECKSUM_SUM: u16 = 0x5741;

/// One TTL of a finished trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The TTL (hop limit) of the probes.
    pub ttl: u8,
    /// Who answered at this TTL (`None`: nobody did).
    pub address: Option<IpAddr>,
    /// The best round trip of its answers, ns.
    pub rtt_ns: Option<u64>,
}

/// A finished trace, for the devices that share it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceResult {
    /// The devices it answers for (their ids, as requested).
    pub devices: Vec<u64>,
    /// The address traced.
    pub target: IpAddr,
    /// TTL 1 up to the last that answered (nothing after the device, or
    /// after a destination unreachable).
    pub hops: Vec<Hop>,
    /// The traced address itself answered.
    pub reached: bool,
}

/// What became of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    /// A new trace for it (running or waiting).
    Started,
    /// It joined a trace of its prefix (running, waiting or just done).
    Shared,
    /// Too many traces already: none for it (counted).
    Skipped,
}

/// What the tracer counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceCounters {
    /// Traces started.
    pub started: u64,
    /// Requests answered by another device's trace.
    pub shared: u64,
    /// Requests refused: too many traces running and waiting.
    pub skipped: u64,
    /// Probes handed out to be sent.
    pub probes_sent: u64,
}

/// A trace probe to send now, with its TTL: the packet is in the buffer
/// given to [`Tracer::poll_transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceTransmit {
    /// Where to send it (the traced address).
    pub destination: IpAddr,
    /// The TTL (hop limit) to send it with.
    pub ttl: u8,
    /// Bytes of the packet.
    pub len: usize,
    /// A TCP SYN (for a raw TCP socket) rather than an echo request.
    pub tcp: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct HopState {
    address: Option<IpAddr>,
    rtt_ns: Option<u64>,
    /// When this round's probe for the TTL was sent (short quotes carry
    /// no send time).
    sent_at: Option<Nanos>,
}

#[derive(Debug)]
struct Trace {
    id: u32,
    target: IpAddr,
    via: Via,
    devices: Vec<u64>,
    hops: [HopState; MAX_HOPS as usize],
    /// The lowest TTL that ended the path (reply or unreachable).
    end: Option<u8>,
    reached: bool,
    round: u8,
    round_started: Nanos,
    /// The next TTL of this round to send.
    next_ttl: u8,
}

/// The traces of one agent.
pub struct Tracer {
    config: TraceConfig,
    key: TagKey,
    ident: u16,
    templates: [EchoTemplate; 2],
    running: Vec<Trace>,
    waiting: VecDeque<(IpAddr, Via, Vec<u64>)>,
    /// Finished traces that still answer for their prefix.
    recent: VecDeque<(Nanos, TraceResult)>,
    done: VecDeque<TraceResult>,
    next_id: u32,
    counters: TraceCounters,
}

impl Tracer {
    /// A tracer sending with ICMP identifier `ident` (a raw socket's).
    pub fn new(config: TraceConfig, key: TagKey, ident: u16) -> Self {
        Self {
            config: TraceConfig {
                max_hops: config.max_hops.clamp(1, MAX_HOPS),
                rounds: config.rounds.max(1),
                ..config
            },
            key,
            ident,
            templates: [
                EchoTemplate::new(Family::V4, ident),
                EchoTemplate::new(Family::V6, ident),
            ],
            running: Vec::new(),
            waiting: VecDeque::new(),
            recent: VecDeque::new(),
            done: VecDeque::new(),
            next_id: 0,
            counters: TraceCounters::default(),
        }
    }

    /// Asks for the path to `address` on behalf of `device`, probing
    /// `via` its check protocol.
    pub fn request(&mut self, device: u64, address: IpAddr, via: Via, now: Nanos) -> Requested {
        self.forget_old(now);
        let prefix = prefix_of(address);
        if let Some(trace) = self
            .running
            .iter_mut()
            .find(|trace| prefix_of(trace.target) == prefix)
        {
            trace.devices.push(device);
        } else if let Some((_, _, devices)) = self
            .waiting
            .iter_mut()
            .find(|(target, _, _)| prefix_of(*target) == prefix)
        {
            devices.push(device);
        } else if let Some((_, result)) = self
            .recent
            .iter()
            .find(|(_, result)| prefix_of(result.target) == prefix)
        {
            let shared = for_another(result, vec![device]);
            self.done.push_back(shared);
        } else if self.running.len() < self.config.max_running {
            self.counters.started += 1;
            self.begin(address, via, vec![device], now);
            return Requested::Started;
        } else if self.waiting.len() < self.config.max_waiting {
            self.counters.started += 1;
            self.waiting.push_back((address, via, vec![device]));
            return Requested::Started;
        } else {
            self.counters.skipped += 1;
            return Requested::Skipped;
        }
        self.counters.shared += 1;
        Requested::Shared
    }

    fn begin(&mut self, target: IpAddr, via: Via, devices: Vec<u64>, now: Nanos) {
        self.next_id = self.next_id.wrapping_add(1);
        self.running.push(Trace {
            id: self.next_id,
            target,
            via,
            devices,
            hops: [HopState::default(); MAX_HOPS as usize],
            end: None,
            reached: false,
            round: 0,
            round_started: now,
            next_ttl: 1,
        });
    }

    fn forget_old(&mut self, now: Nanos) {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > self.config.share_for_ns)
        {
            self.recent.pop_front();
        }
    }

    /// Writes the next trace probe into `out` (at least
    /// [`packet::PROBE_LEN`] bytes), if one is due.
    pub fn poll_transmit(&mut self, now: Nanos, out: &mut [u8]) -> Option<TraceTransmit> {
        let max_hops = self.config.max_hops;
        for trace in &mut self.running {
            while trace.next_ttl <= max_hops.min(trace.end.unwrap_or(max_hops)) {
                let ttl = trace.next_ttl;
                trace.next_ttl += 1;
                let hop = &mut trace.hops[usize::from(ttl - 1)];
                if hop.address.is_some() {
                    continue; // answered in an earlier round
                }
                hop.sent_at = Some(now);
                let fields = ProbeFields {
                    ident: self.ident,
                    seq: sequence(trace.round, ttl),
                    index: trace.id,
                    epoch: 0,
                    sent_ns: now,
                };
                let len = match trace.via {
                    Via::Icmp => {
                        let template = match Family::of(trace.target) {
                            Family::V4 => &self.templates[0],
                            Family::V6 => &self.templates[1],
                        };
                        let len = template.write(out, &self.key, &fields, trace.target, true);
                        same_checksum(&mut out[..len], Family::of(trace.target));
                        len
                    }
                    Via::Tcp { port, source } => tcp::write_syn_from(
                        out,
                        &self.key,
                        &fields,
                        (source, trace_port(trace.id)),
                        trace.target,
                        port,
                    ),
                };
                self.counters.probes_sent += 1;
                return Some(TraceTransmit {
                    destination: trace.target,
                    ttl,
                    len,
                    tcp: matches!(trace.via, Via::Tcp { .. }),
                });
            }
        }
        None
    }

    /// Takes one received packet from a socket sending with this tracer's
    /// identifier; anything not answering a trace probe is ignored.
    pub fn handle_packet(&mut self, packet: &[u8], framing: Framing, source: IpAddr, now: Nanos) {
        match packet::parse(packet, framing, source, &self.key, Some(self.ident)) {
            Ok(Verdict::Reply(probe)) => self.answered(probe.index, source, probe.seq, None, now),
            Ok(Verdict::Error {
                probe,
                target,
                kind,
                reporter,
            }) => self.answered(
                probe.index,
                target,
                probe.seq,
                Some((reporter, kind, Some(probe.sent_ns))),
                now,
            ),
            Err(Rejection::BadTag | Rejection::Malformed) => {}
            Err(Rejection::NotOurs) => {
                if let Some(quote) = packet::short_quote(packet, framing, source)
                    && let Some((id, seq)) = self.quoted_probe(&quote)
                {
                    let answer = Some((quote.reporter, quote.kind, None));
                    self.answered(id, quote.target, seq, answer, now);
                }
            }
        }
    }

    /// The trace and sequence number of a probe an ICMP error quotes only
    /// in part: an echo request by its identifier and destination, a SYN
    /// by its flow and its tag (recomputed for each TTL of the round).
    fn quoted_probe(&self, quote: &ShortQuote) -> Option<(u32, u16)> {
        let trace = self
            .running
            .iter()
            .find(|trace| trace.target == quote.target)?;
        match (quote.probe, trace.via) {
            (QuotedProbe::Echo { ident, seq }, Via::Icmp) if ident == self.ident => {
                Some((trace.id, seq))
            }
            (
                QuotedProbe::Syn {
                    source_port,
                    port,
                    seq,
                },
                Via::Tcp { port: checked, .. },
            ) if source_port == trace_port(trace.id) && port == checked => {
                (1..=self.config.max_hops).find_map(|ttl| {
                    let sent_ns = trace.hops[usize::from(ttl - 1)].sent_at?;
                    let fields = ProbeFields {
                        ident: self.ident,
                        seq: sequence(trace.round, ttl),
                        index: trace.id,
                        epoch: 0,
                        sent_ns,
                    };
                    (tcp::tag(&self.key, &fields, trace.target, port) == seq)
                        .then_some((trace.id, fields.seq))
                })
            }
            _ => None,
        }
    }

    /// Records an answer to trace `id`'s probe `seq` (to `target`): an
    /// echo reply (`error` none) or an ICMP error from a router (with the
    /// probe's send time when the router quoted it).
    fn answered(
        &mut self,
        id: u32,
        target: IpAddr,
        seq: u16,
        error: Option<(IpAddr, IcmpErrorKind, Option<Nanos>)>,
        now: Nanos,
    ) {
        let Some(trace) = self
            .running
            .iter_mut()
            .find(|trace| trace.id == id && trace.target == target)
        else {
            return;
        };
        let (round, ttl) = (seq >> 8, (seq & 0xff) as u8);
        if ttl == 0
            || ttl > MAX_HOPS
            || (error.is_some_and(|(_, _, sent)| sent.is_none()) && u16::from(trace.round) != round)
        {
            return;
        }
        let hop = &mut trace.hops[usize::from(ttl - 1)];
        let sent = error.and_then(|(_, _, sent)| sent).or(hop.sent_at);
        let rtt_ns = sent.map(|sent| now.saturating_sub(sent));
        let (address, ends) = match error {
            None => (target, true),
            Some((reporter, kind, _)) => (reporter, !kind.is_time_exceeded(Family::of(reporter))),
        };
        if hop.address.is_none() {
            hop.address = Some(address);
        }
        hop.rtt_ns = match (hop.rtt_ns, rtt_ns) {
            (Some(best), Some(this)) => Some(best.min(this)),
            (best, this) => best.or(this),
        };
        if ends && trace.end.is_none_or(|end| ttl < end) {
            trace.end = Some(ttl);
            trace.reached = error.is_none();
        }
    }

    /// Ends rounds whose wait is over, finishes traces after their last
    /// round, and starts waiting ones.
    pub fn handle_timeouts(&mut self, now: Nanos) {
        let mut index = 0;
        while index < self.running.len() {
            let trace = &mut self.running[index];
            if now < trace.round_started + self.config.round_ns {
                index += 1;
                continue;
            }
            trace.round += 1;
            let complete = trace.end.is_some_and(|end| {
                trace.hops[..usize::from(end)]
                    .iter()
                    .all(|hop| hop.address.is_some())
            });
            if trace.round < self.config.rounds && !complete {
                trace.round_started = now;
                trace.next_ttl = 1;
                index += 1;
                continue;
            }
            let trace = self.running.swap_remove(index);
            let result = finished(&trace, self.config.max_hops);
            self.recent.push_back((now, result.clone()));
            self.done.extend(split_for_sharers(result));
        }
        while self.running.len() < self.config.max_running
            && let Some((target, via, devices)) = self.waiting.pop_front()
        {
            self.begin(target, via, devices, now);
        }
    }

    /// The next finished trace, oldest first.
    pub fn poll_done(&mut self) -> Option<TraceResult> {
        self.done.pop_front()
    }

    /// When the tracer next has something to do, if it has anything.
    pub fn next_wakeup(&self) -> Option<Nanos> {
        self.running
            .iter()
            .map(|trace| trace.round_started + self.config.round_ns)
            .min()
    }

    /// Counters since start.
    pub fn counters(&self) -> TraceCounters {
        self.counters
    }

    /// The ICMP identifier of the trace probes.
    pub fn ident(&self) -> u16 {
        self.ident
    }
}

/// The one source port of trace `id`'s SYNs.
fn trace_port(id: u32) -> u16 {
    FIRST_TRACE_PORT + u16::try_from(id % TRACE_PORTS).unwrap_or(0)
}

/// Makes an echo request's checksum the same for every probe of every
/// trace (what per-flow load balancers may hash besides the addresses):
/// the payload's unused word (bytes 18 and 19) makes up for the fields that
/// differ. IPv4 gets that checksum written; for ICMPv6 the kernel computes
/// it, over a pseudo-header that is the same for every probe of a trace.
fn same_checksum(echo: &mut [u8], family: Family) {
    echo[2..4].fill(0);
    echo[18..20].fill(0);
    let sum = !packet::internet_checksum(echo);
    // One's complement: sum + filler = FLOW_CHECKSUM_SUM.
    let filler = ones_complement_add(FLOW_CHECKSUM_SUM, !sum);
    echo[18..20].copy_from_slice(&filler.to_be_bytes());
    if family == Family::V4 {
        let checksum = packet::internet_checksum(echo);
        echo[2..4].copy_from_slice(&checksum.to_be_bytes());
    }
}

fn ones_complement_add(a: u16, b: u16) -> u16 {
    let sum = u32::from(a) + u32::from(b);
    ((sum & 0xffff) + (sum >> 16)) as u16
}

/// A probe's sequence number: its round and its TTL.
fn sequence(round: u8, ttl: u8) -> u16 {
    u16::from(round) << 8 | u16::from(ttl)
}

/// The hops of a finished trace: TTL 1 up to its end, or to the highest
/// TTL that answered.
fn finished(trace: &Trace, max_hops: u8) -> TraceResult {
    let last_answered = trace
        .hops
        .iter()
        .rposition(|hop| hop.address.is_some())
        .map_or(0, |position| position + 1);
    let last = trace
        .end
        .map_or(last_answered, usize::from)
        .min(usize::from(max_hops));
    TraceResult {
        devices: trace.devices.clone(),
        target: trace.target,
        hops: (1..=last)
            .map(|ttl| {
                let hop = trace.hops[ttl - 1];
                Hop {
                    ttl: u8::try_from(ttl).unwrap_or(MAX_HOPS),
                    address: hop.address,
                    rtt_ns: hop.rtt_ns,
                }
            })
            .collect(),
        reached: trace.reached,
    }
}

/// A trace that reached its own device says nothing of the others of its
/// prefix beyond the path to it: they get it without the device's hop.
fn split_for_sharers(mut result: TraceResult) -> Vec<TraceResult> {
    if !result.reached || result.devices.len() < 2 {
        return vec![result];
    }
    let others = result.devices.split_off(1);
    let shared = for_another(&result, others);
    vec![result, shared]
}

/// `result` as it answers for `devices`, other than its own target.
fn for_another(result: &TraceResult, devices: Vec<u64>) -> TraceResult {
    let mut hops = result.hops.clone();
    if result.reached {
        hops.pop();
    }
    TraceResult {
        devices,
        target: result.target,
        hops,
        reached: false,
    }
}

/// The prefix a trace answers for: the /24 of an IPv4 address, the /64 of
/// an IPv6 one.
fn prefix_of(address: IpAddr) -> (bool, u64) {
    match address {
        IpAddr::V4(v4) => (false, u64::from(u32::from(v4) >> 8)),
        IpAddr::V6(v6) => (true, (u128::from(v6) >> 64) as u64),
    }
}

#[cfg(test)]
mod tests;
