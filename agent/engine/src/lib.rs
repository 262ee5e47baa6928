//! `ward-engine`: the agent's probe engine, sans-IO. It decides what to
//! send and when, validates what came back against what is in flight, and
//! runs each target's state machine; [`packet`] is the probe format and
//! the stateless reply validation, [`netlink`] the rtnetlink messages the
//! agent's send path asks the kernel. Nothing here opens a socket or reads
//! a clock: the caller passes `now` (engine time, ns on a monotonic clock)
//! and buffers, so everything here runs under a virtual clock in tests.
//!
//! Invariants: no I/O crate among its dependencies (no socket2, mio,
//! tokio or libc; `getrandom` seeds the tag key); no `unsafe`; no
//! allocation per packet.
//!
//! Per target there is exactly one pending event: a probe waiting to be
//! sent (in the ready queue or the wheel) or the timeout of the probe in
//! flight. After a miss the target is re-probed at once while its state
//! machine is confirming a change; otherwise probes follow the target's
//! grid (interval, with a per-target phase so load is spread evenly).

#![forbid(unsafe_code)]

mod answers;
mod confirm;
pub mod netlink;
pub mod packet;
pub mod quality;
mod quantiles;
mod rate;
mod target;
pub mod tcp;
pub mod trace;
mod wheel;

pub use target::{Check, Miss, PeriodStats, RttQuantiles, Status, TargetSpec};

use std::collections::VecDeque;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::IpAddr;
use std::time::Duration;

use crate::packet::{EchoTemplate, Family, IcmpErrorKind, ProbeFields, TagKey};
use rate::TokenBucket;
use target::{Pending, Target};
use wheel::{Entry, Wheel};

/// Engine time: nanoseconds on a monotonic clock chosen by the caller.
pub type Nanos = u64;

/// Spread targets are sent on a grid of send slots (their phase within
/// their interval rounded down to a slot), so an agent wakes once per slot
/// that has probes rather than once per target. A slot is as wide as
/// [`PROBES_PER_SLOT`] probes on average take at the agent's rate, at
/// least this and at most the interval: a small agent sends everything
/// in one wake-up an interval (20 targets at 1 s: one), a large one stays
/// spread evenly (10,000 at 1 s: a slot of 10 ms).
const SEND_SLOT_NS: Nanos = 10_000_000;

/// Probes one send slot holds on average (see [`SEND_SLOT_NS`]).
const PROBES_PER_SLOT: u64 = 32;

/// How the engine sends.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// ICMP identifier written into probes and expected in replies (raw
    /// sockets). `None` on datagram sockets, where the kernel owns it.
    pub ident: Option<u16>,
    /// The kernel computes ICMP checksums (datagram sockets).
    pub kernel_checksums: bool,
    /// Global cap, probes per second (`None` = unlimited).
    pub rate: Option<u32>,
    /// Probes per target, then stop (`None` = forever).
    pub probes_per_target: Option<u32>,
    /// Where a new target's first probe goes.
    pub start: Start,
    /// The report period, ms: each period's RTT median and 90th
    /// percentile are kept exactly (see `quantiles`); `None` keeps none.
    pub quantile_period_ms: Option<u32>,
}

impl Default for EngineConfig {
    /// A continuous agent: no rate limit, no probe count, spread start,
    /// checksums and identifier as on a raw socket with identifier 0.
    fn default() -> Self {
        Self {
            ident: None,
            kernel_checksums: false,
            rate: None,
            probes_per_target: None,
            start: Start::Spread,
            quantile_period_ms: None,
        }
    }
}

/// When a newly added target is first probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At its phase within its interval (a hash of its address): a large
    /// assignment is spread evenly instead of sent as a burst.
    Spread,
    /// At once (subject to the rate limit): for one-shot sweeps.
    Immediately,
}

/// A target specification the engine cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// A zero interval or timeout.
    #[error(
        "{address}: interval and timeout must be at least 1 ms (interval {interval_ms} ms, timeout {timeout_ms} ms)"
    )]
    ZeroTime {
        /// The target.
        address: IpAddr,
        /// The interval given.
        interval_ms: u32,
        /// The timeout given.
        timeout_ms: u32,
    },
    /// A zero threshold.
    #[error("{address}: down_after and up_after must be at least 1")]
    ZeroThreshold {
        /// The target.
        address: IpAddr,
    },
    /// An address no probe should go to.
    #[error("{address}: {problem}")]
    Address {
        /// The target.
        address: IpAddr,
        /// What is wrong with it ([`unprobeable`]).
        problem: String,
    },
    /// A TCP check without the address its probes leave from.
    #[error("{address}: a TCP check needs the source address of the route to it")]
    NoSource {
        /// The target.
        address: IpAddr,
    },
    /// More targets than slots.
    #[error("more than {} targets", u32::MAX)]
    Full,
}

/// Why no probe may go to `address`, if none may: the unspecified
/// address, multicast, IPv4 broadcast, and IPv4-mapped IPv6 addresses
/// (they would leave over IPv6, towards the IPv6 default route, for a
/// device that has an IPv4 address).
pub fn unprobeable(address: IpAddr) -> Option<String> {
    if let IpAddr::V6(v6) = address
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Some(format!(
            "an IPv4-mapped IPv6 address: write the IPv4 address {v4} instead"
        ));
    }
    if address.is_unspecified() {
        return Some("the unspecified address: name a device's own address".into());
    }
    if address.is_multicast() {
        return Some("a multicast address: name one device's unicast address".into());
    }
    if let IpAddr::V4(v4) = address
        && v4.is_broadcast()
    {
        return Some("the broadcast address: name one device's address".into());
    }
    None
}

/// Why a target's state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Consecutive valid replies.
    Replies,
    /// Consecutive timeouts.
    Timeouts,
    /// The loss or RTT over a window of report periods crossed a level
    /// (see [`quality`]).
    Quality,
    /// Consecutive ICMP errors quoting the probes.
    IcmpError {
        /// The last error.
        kind: IcmpErrorKind,
        /// Who sent it.
        reporter: IpAddr,
    },
}

/// A state change, to be reported at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Target slot.
    pub index: u32,
    /// The id the target was added with.
    pub id: u64,
    /// The target's address.
    pub address: IpAddr,
    /// State before.
    pub previous: Status,
    /// State now.
    pub status: Status,
    /// Send time of the probe that decided it.
    pub probed_at: Nanos,
    /// RTT of the target's last valid reply, µs.
    pub last_rtt_us: Option<u32>,
    /// How degraded an `Up` target is from now on (`None`: healthy, and
    /// always for the other states).
    pub degraded: Option<quality::Degradation>,
    /// Why.
    pub cause: Cause,
}

/// A probe to send now: the packet is in the buffer given to
/// [`Engine::poll_transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Target slot.
    pub index: u32,
    /// Where to send it.
    pub destination: IpAddr,
    /// Bytes of the packet.
    pub len: usize,
    /// An ICMP echo request, or a TCP SYN (for a raw TCP socket).
    pub tcp: bool,
}

/// What the engine counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Probes handed out to be sent.
    pub probes_sent: u64,
    /// Replies that matched the probe in flight, in time.
    pub replies_matched: u64,
    /// Authentic replies naming a slot, epoch or sequence never in flight.
    pub replies_invalid: u64,
    /// Second and later replies to an answered probe.
    pub replies_duplicate: u64,
    /// Replies to a probe already counted as missed.
    pub replies_late: u64,
    /// ICMP errors that ended the probe in flight.
    pub icmp_errors: u64,
    /// ICMP errors quoting a probe no longer in flight.
    pub icmp_errors_late: u64,
    /// Probes the rate limit held back past their due time.
    pub rate_limited: u64,
    /// Probes that timed out.
    pub timeouts: u64,
    /// TCP answers that acknowledge no SYN in flight: forged, replayed,
    /// from another host, or to a probe already answered by ICMP.
    pub tcp_unmatched: u64,
    /// RSTs from a closed port where an RST does not mean alive.
    pub tcp_refused: u64,
}

/// The probe engine.
pub struct Engine {
    config: EngineConfig,
    key: TagKey,
    /// Prebuilt echo requests, IPv4 then IPv6.
    templates: [EchoTemplate; 2],
    targets: Vec<Target>,
    free_slots: Vec<u32>,
    live_targets: usize,
    /// Live targets whose status is not `Up` (their replies may change
    /// it: see [`Engine::has_targets_not_up`]).
    not_up_targets: usize,
    /// Targets whose pending event is not `Nothing` (count mode is done at 0).
    scheduled_targets: usize,
    wheel: Wheel,
    /// Reused buffer for expired wheel entries.
    expired: Vec<Entry>,
    ready: VecDeque<Entry>,
    /// The ready entry already counted as held back by the rate limit.
    held_back: Option<Entry>,
    bucket: TokenBucket,
    transitions: VecDeque<Transition>,
    counters: Counters,
    /// The longest round trip of a matched reply since start, µs.
    longest_rtt_us: u32,
    phase_hasher: std::hash::RandomState,
    /// Each target's replies this period, for its quantiles.
    samples: quantiles::RttSamples,
    /// The windows of the targets judged for degradation.
    windows: quality::Windows,
    /// The SYN still to send of a target checked by ICMP or TCP, after
    /// its echo request.
    owed_syn: Option<(u32, ProbeFields)>,
}

impl Engine {
    /// An engine with no targets, at `now`.
    pub fn new(config: EngineConfig, key: TagKey, now: Nanos) -> Self {
        let ident = config.ident.unwrap_or(0);
        Self {
            config,
            key,
            templates: [
                EchoTemplate::new(Family::V4, ident),
                EchoTemplate::new(Family::V6, ident),
            ],
            targets: Vec::new(),
            free_slots: Vec::new(),
            live_targets: 0,
            not_up_targets: 0,
            scheduled_targets: 0,
            wheel: Wheel::new(now),
            expired: Vec::new(),
            ready: VecDeque::new(),
            held_back: None,
            bucket: TokenBucket::new(config.rate, now),
            transitions: VecDeque::new(),
            counters: Counters::default(),
            longest_rtt_us: 0,
            phase_hasher: std::hash::RandomState::new(),
            samples: quantiles::RttSamples::new(config.quantile_period_ms),
            windows: quality::Windows::default(),
            owed_syn: None,
        }
    }

    /// Starts probing a target, undecided; returns its slot.
    pub fn add_target(&mut self, spec: TargetSpec, id: u64, now: Nanos) -> Result<u32, SpecError> {
        self.add_known_target(spec, id, Status::Unknown, now)
    }

    /// Starts probing a target whose status is `known` already (`Up` or
    /// `Down`, as its previous prober left it; anything else starts
    /// undecided): no transition is reported until it changes from there.
    pub fn add_known_target(
        &mut self,
        spec: TargetSpec,
        id: u64,
        known: Status,
        now: Nanos,
    ) -> Result<u32, SpecError> {
        if let Some(problem) = unprobeable(spec.address) {
            return Err(SpecError::Address {
                address: spec.address,
                problem,
            });
        }
        if spec.interval_ms == 0 || spec.timeout_ms == 0 {
            return Err(SpecError::ZeroTime {
                address: spec.address,
                interval_ms: spec.interval_ms,
                timeout_ms: spec.timeout_ms,
            });
        }
        if spec.down_after == 0 || spec.up_after == 0 {
            return Err(SpecError::ZeroThreshold {
                address: spec.address,
            });
        }
        if tcp::tcp_port(&spec).is_some()
            && spec
                .source
                .is_none_or(|source| Family::of(source) != Family::of(spec.address))
        {
            return Err(SpecError::NoSource {
                address: spec.address,
            });
        }
        let interval_ns = u64::from(spec.interval_ms) * 1_000_000;
        let phase_ns = match self.config.start {
            Start::Spread => {
                let mut hasher = self.phase_hasher.build_hasher();
                hasher.write(&address_bytes(spec.address));
                // Rounded to a send slot when scheduled (`slot_ns`): the
                // targets of one slot go out in one wake-up (and their
                // replies come back together).
                hasher.finish() % interval_ns
            }
            Start::Immediately => now % interval_ns,
        };
        let probes = self.config.probes_per_target.unwrap_or(u32::MAX);
        let interval_ms = spec.interval_ms;
        let index = match self.free_slots.pop() {
            Some(index) => {
                let epoch = self.targets[index as usize].epoch.wrapping_add(1);
                self.targets[index as usize] = Target::new(spec, id, phase_ns, epoch, probes);
                index
            }
            None => {
                let index = u32::try_from(self.targets.len()).map_err(|_| SpecError::Full)?;
                self.targets
                    .push(Target::new(spec, id, phase_ns, 0, probes));
                index
            }
        };
        if matches!(known, Status::Up | Status::Down) {
            self.targets[index as usize].status = known;
        }
        self.live_targets += 1;
        if known != Status::Up {
            self.not_up_targets += 1;
        }
        self.samples.reset(index, interval_ms);
        let first = match self.config.start {
            Start::Spread => {
                let slot = self.slot_ns(interval_ms);
                self.targets[index as usize].next_grid_point(now, slot)
            }
            Start::Immediately => now,
        };
        self.schedule(index, first, Pending::Probe, now);
        Ok(index)
    }

    /// Stops probing a target; replies to its probes become invalid.
    pub fn remove_target(&mut self, index: u32) {
        let Some(target) = self.targets.get_mut(index as usize) else {
            return;
        };
        if target.removed {
            return;
        }
        target.removed = true;
        if target.pending != Pending::Nothing {
            self.scheduled_targets -= 1;
        }
        target.token = target.token.wrapping_add(1);
        target.pending = Pending::Nothing;
        target.probes_left = 0;
        target.epoch = target.epoch.wrapping_add(1);
        self.free_slots.push(index);
        self.live_targets -= 1;
        if target.status != Status::Up {
            self.not_up_targets -= 1;
        }
        self.windows.set(index, None);
    }

    /// Changes the global rate limit.
    pub fn set_rate(&mut self, rate: Option<u32>, now: Nanos) {
        self.bucket.set_rate(rate, now);
    }

    /// Expires timeouts and moves due probes to the ready queue.
    pub fn handle_timeouts(&mut self, now: Nanos) {
        let mut expired = std::mem::take(&mut self.expired);
        self.wheel.expire(now, &mut expired);
        for entry in expired.drain(..) {
            let target = &self.targets[entry.index as usize];
            if target.token != entry.token {
                continue; // rescheduled or removed since
            }
            if target.event_at > now {
                self.wheel.insert(target.event_at, entry); // beyond the wheel's span
                continue;
            }
            match target.pending {
                Pending::Nothing => {}
                Pending::Probe => self.ready.push_back(entry),
                Pending::Timeout => {
                    self.counters.timeouts += 1;
                    self.conclude_probe(entry.index, Err(Miss::Timeout), Cause::Timeouts, now);
                }
            }
        }
        self.expired = expired;
    }

    /// Writes the next due probe into `out` (at least
    /// [`crate::packet::PROBE_LEN`] bytes), if the rate limit allows one now.
    /// A target checked by ICMP or TCP sends its echo request, then its SYN
    /// at the next call.
    pub fn poll_transmit(&mut self, now: Nanos, out: &mut [u8]) -> Option<Transmit> {
        if let Some((index, fields)) = self.owed_syn.take()
            && let Some(len) = self.write_syn_of(index, &fields, out)
        {
            return Some(Transmit {
                index,
                destination: self.targets[index as usize].spec.address,
                len,
                tcp: true,
            });
        }
        while let Some(&entry) = self.ready.front() {
            let target = &self.targets[entry.index as usize];
            if target.token != entry.token || target.pending != Pending::Probe {
                self.ready.pop_front();
                continue;
            }
            if !self.bucket.try_take(now) {
                if self.held_back != Some(entry) {
                    self.held_back = Some(entry);
                    self.counters.rate_limited += 1;
                }
                return None;
            }
            self.ready.pop_front();
            let index = entry.index;
            let target = &mut self.targets[index as usize];
            target.record_sent(now);
            let fields = ProbeFields {
                ident: self.config.ident.unwrap_or(0),
                seq: target.seq,
                index,
                epoch: target.epoch,
                sent_ns: now,
            };
            let destination = target.spec.address;
            let check = target.spec.check;
            let deadline = now + target.timeout_ns();
            self.counters.probes_sent += 1;
            self.schedule(index, deadline, Pending::Timeout, now);
            if let Check::Tcp { .. } = check {
                let len = self.write_syn_of(index, &fields, out)?;
                return Some(Transmit {
                    index,
                    destination,
                    len,
                    tcp: true,
                });
            }
            if let Check::IcmpOrTcp { .. } = check {
                self.owed_syn = Some((index, fields));
            }
            let template = match Family::of(destination) {
                Family::V4 => &self.templates[0],
                Family::V6 => &self.templates[1],
            };
            let len = template.write(
                out,
                &self.key,
                &fields,
                destination,
                self.config.kernel_checksums,
            );
            return Some(Transmit {
                index,
                destination,
                len,
                tcp: false,
            });
        }
        None
    }

    /// Records the outcome of the probe in flight and schedules the next.
    fn conclude_probe(&mut self, index: u32, outcome: Result<u32, Miss>, cause: Cause, now: Nanos) {
        let target = &mut self.targets[index as usize];
        let previous = target.status;
        let changed = match outcome {
            Ok(rtt_us) => {
                self.samples.record(index, rtt_us);
                target.record_reply(rtt_us)
            }
            Err(miss) => target.record_miss(miss),
        };
        if let Some(status) = changed {
            match (previous == Status::Up, status == Status::Up) {
                (true, false) => self.not_up_targets += 1,
                (false, true) => self.not_up_targets -= 1,
                _ => {}
            }
            self.windows.forget(index);
            self.transitions.push_back(Transition {
                index,
                id: target.id,
                address: target.spec.address,
                previous,
                status,
                probed_at: target.sent_at,
                last_rtt_us: target.last_rtt_us,
                degraded: None,
                cause,
            });
        }
        let (at, pending) = if target.probes_left == 0 {
            (now, Pending::Nothing)
        } else if target.confirming() {
            (now, Pending::Probe)
        } else {
            let interval_ms = target.spec.interval_ms;
            let slot = self.slot_ns(interval_ms);
            (
                self.targets[index as usize].next_grid_point(now, slot),
                Pending::Probe,
            )
        };
        self.schedule(index, at, pending, now);
    }

    /// The send slot of a target probed every `interval_ms` (see
    /// [`SEND_SLOT_NS`]); 1 ns (no rounding) when targets start
    /// immediately.
    fn slot_ns(&self, interval_ms: u32) -> Nanos {
        let interval_ns = u64::from(interval_ms) * 1_000_000;
        match self.config.start {
            Start::Spread => {
                let targets = u64::try_from(self.live_targets.max(1)).unwrap_or(u64::MAX);
                let wide = (interval_ns.saturating_mul(PROBES_PER_SLOT) / targets).min(interval_ns)
                    / SEND_SLOT_NS
                    * SEND_SLOT_NS;
                wide.max(SEND_SLOT_NS)
            }
            Start::Immediately => 1,
        }
    }

    fn schedule(&mut self, index: u32, at: Nanos, pending: Pending, now: Nanos) {
        let target = &mut self.targets[index as usize];
        match (
            target.pending == Pending::Nothing,
            pending == Pending::Nothing,
        ) {
            (true, false) => self.scheduled_targets += 1,
            (false, true) => self.scheduled_targets -= 1,
            _ => {}
        }
        target.token = target.token.wrapping_add(1);
        target.event_at = at;
        target.pending = pending;
        let entry = Entry {
            index,
            token: target.token,
        };
        match pending {
            Pending::Nothing => {}
            Pending::Probe if at <= now => self.ready.push_back(entry),
            Pending::Probe | Pending::Timeout => self.wheel.insert(at, entry),
        }
    }

    /// The next state change to report, oldest first.
    pub fn poll_transition(&mut self) -> Option<Transition> {
        self.transitions.pop_front()
    }

    /// When the engine next has something to do (send or expire), if
    /// ever; events left behind by rescheduled targets (the timeout of an
    /// answered probe) are dropped, not waited for.
    pub fn next_wakeup(&mut self, now: Nanos) -> Option<Nanos> {
        let ready = (!self.ready.is_empty()).then(|| self.bucket.next_token_at(now));
        let targets = &self.targets;
        let wheel = self.wheel.next_due(|entry| {
            let target = &targets[entry.index as usize];
            (target.token == entry.token).then_some(target.event_at)
        });
        match (ready, wheel) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Count mode only: true when no target has anything left to send or
    /// wait for. A continuous engine never finishes, not even while it has
    /// no targets (they may come later).
    pub fn is_finished(&self) -> bool {
        self.config.probes_per_target.is_some() && self.scheduled_targets == 0
    }

    /// The longest round trip of a matched reply since start (zero before
    /// the first): how long a duplicate of any answered probe may still
    /// be on its way.
    pub fn longest_rtt(&self) -> Duration {
        Duration::from_micros(u64::from(self.longest_rtt_us))
    }

    /// Counters since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// True while some target is not `Up`: a reply may bring it up, so
    /// replies are worth handling as they come (an idle, healthy engine
    /// takes them in at its next send or timeout).
    pub fn has_targets_not_up(&self) -> bool {
        self.not_up_targets > 0
    }

    /// Targets being probed.
    pub fn target_count(&self) -> usize {
        self.live_targets
    }

    /// Current state of a target slot.
    pub fn status(&self, index: u32) -> Option<Status> {
        self.targets.get(index as usize).map(|target| target.status)
    }

    /// Statistics of a target's current period.
    pub fn period_stats(&self, index: u32) -> Option<PeriodStats> {
        self.targets.get(index as usize).map(|target| target.stats)
    }

    /// Bytes of per-target state the engine keeps (target record plus one
    /// wheel or ready-queue entry).
    pub const fn bytes_per_target() -> usize {
        std::mem::size_of::<Target>() + std::mem::size_of::<Entry>()
    }
}

fn address_bytes(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests;
