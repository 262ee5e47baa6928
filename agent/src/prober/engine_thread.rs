//! The engine thread: controls applied, replies fed to the engine, due
//! probes sent in batches (through the packet path when it holds), and
//! transitions handed out; it parks when there is nothing to do.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use super::Slots;
use super::packet_path::PacketPath;
use super::receiver::{Answer, Received};
use super::{Control, IoCounters, MAX_PARK, MAX_PARK_PACKET_PATH, MIN_LINGER, ipv4_targets};
use crate::clock::Clock;
use crate::engine::{Check, Engine, Nanos, Transition};
use crate::packet::{Family, PROBE_LEN};
use crate::sys::{ProbeSocket, SendBatch, SendOutcome};

/// What the engine thread shares with the rest of the prober.
pub(super) struct EngineShared<'a> {
    pub(super) sockets: &'a [Arc<ProbeSocket>],
    pub(super) queue: &'a ArrayQueue<Received>,
    pub(super) clock: &'a Clock,
    pub(super) stop: &'a AtomicBool,
    pub(super) counters: &'a IoCounters,
    pub(super) linger: Duration,
    pub(super) controls: &'a ArrayQueue<Control>,
    /// Whether the receiver wakes the engine for every reply always (as
    /// configured), and the flag it reads, kept up to date here: also
    /// while some target is not up.
    pub(super) wake_for_each_reply: (bool, &'a AtomicBool),
}

/// Applies one [`Control`]; `slots` maps ids to engine slots and specs.
fn apply_control(
    engine: &mut Engine,
    slots: &mut Slots,
    packet_path: &mut Option<PacketPath>,
    control: Control,
    shared: &EngineShared<'_>,
) {
    let now = shared.clock.now();
    match control {
        Control::Upsert {
            id,
            spec,
            known,
            quality,
            known_level,
        } => {
            let spec = super::open::with_route_source(spec);
            if let Some((index, current)) = slots.get(&id)
                && *current == spec
            {
                // Only how it is judged changed: its probing goes on.
                engine.judge_quality(*index, quality, None);
                return;
            }
            if let Some((index, _)) = slots.remove(&id) {
                engine.remove_target(index);
                if let Some(path) = packet_path {
                    path.remove(index);
                }
            }
            let family = Family::of(spec.address);
            let tcp = spec.check != Check::Icmp;
            if !shared
                .sockets
                .iter()
                .any(|socket| socket.family() == family && socket.is_tcp() == tcp)
            {
                shared
                    .counters
                    .targets_refused
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            match engine.add_known_target(spec, id, known, now) {
                Ok(index) => {
                    engine.judge_quality(index, quality, known_level);
                    slots.insert(id, (index, spec));
                    if let (Some(path), IpAddr::V4(address)) = (packet_path.as_mut(), spec.address)
                    {
                        let added = path.add(index, address);
                        check_packet_path(packet_path, added, shared.counters);
                    }
                }
                Err(_) => {
                    shared
                        .counters
                        .targets_refused
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Control::Remove { id } => {
            if let Some((index, _)) = slots.remove(&id) {
                engine.remove_target(index);
                if let Some(path) = packet_path {
                    path.remove(index);
                }
            }
        }
        Control::TakeStatistics(reply) => {
            let mut statistics = Vec::with_capacity(slots.len());
            engine.take_period_stats(|id, _, stats, quantiles| {
                statistics.push((id, stats, quantiles));
            });
            // The asker may have given up waiting; nothing is lost but its
            // period, which it asked to end.
            let _ = reply.send(statistics);
        }
    }
}

/// Turns the packet path off (everything through the IP stack) when its
/// netlink side failed; counted and logged.
fn check_packet_path(
    packet_path: &mut Option<PacketPath>,
    result: std::io::Result<()>,
    counters: &IoCounters,
) {
    if let Err(error) = result {
        counters.packet_path_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, "packet send path turned off: reading the kernel's routing failed; IPv4 probes go through the IP stack");
        *packet_path = None;
    }
}

pub(super) fn engine_loop(
    mut engine: Engine,
    mut slots: Slots,
    mut packet_path: Option<PacketPath>,
    shared: &EngineShared<'_>,
    mut on_transition: impl FnMut(&Clock, Transition),
) -> Engine {
    let EngineShared {
        sockets,
        queue,
        clock,
        stop,
        counters,
        linger,
        controls,
        wake_for_each_reply,
    } = *shared;
    let mut batches: Vec<(Family, bool, SendBatch)> = sockets
        .iter()
        .map(|s| {
            let batch = SendBatch::new(s.features().header_included);
            (s.family(), s.is_tcp(), batch)
        })
        .collect();
    let mut scratch = [0u8; PROBE_LEN];
    let mut linger_until: Option<Nanos> = None;
    loop {
        while let Some(control) = controls.pop() {
            apply_control(&mut engine, &mut slots, &mut packet_path, control, shared);
        }
        let now = clock.now();
        if let Some(path) = &mut packet_path {
            let maintained = path.maintain(ipv4_targets(&slots), now);
            check_packet_path(&mut packet_path, maintained, counters);
        }
        while let Some(received) = queue.pop() {
            match received.answer {
                Answer::Icmp(verdict) => engine.handle_verdict(verdict, received.at, now),
                Answer::Tcp(answer) => engine.handle_tcp(answer, received.at, now),
            }
        }
        engine.handle_timeouts(now);
        let blocked = send_due(
            &mut engine,
            &mut batches,
            &mut packet_path,
            &mut scratch,
            shared,
        );
        while let Some(transition) = engine.poll_transition() {
            on_transition(clock, transition);
        }
        publish_counters(&engine, counters);
        let (always, wake) = wake_for_each_reply;
        wake.store(always || engine.has_targets_not_up(), Ordering::Relaxed);
        if stop.load(Ordering::Relaxed) {
            return engine;
        }
        if engine.is_finished() && queue.is_empty() {
            let linger = (2 * engine.longest_rtt()).clamp(MIN_LINGER, linger.max(MIN_LINGER));
            let linger = u64::try_from(linger.as_nanos()).unwrap_or(u64::MAX);
            let deadline = *linger_until.get_or_insert(clock.now() + linger);
            if clock.now() >= deadline {
                return engine;
            }
        }
        let wait = if blocked {
            Duration::from_micros(50)
        } else {
            sleep_for(
                &mut engine,
                packet_path.is_some(),
                linger_until,
                clock.now(),
            )
        };
        if !wait.is_zero() && queue.is_empty() && controls.is_empty() {
            thread::park_timeout(wait);
        }
    }
}

/// How long the engine thread may sleep at `now`: until the engine's next
/// event or the end of a count-mode linger, at most [`MAX_PARK`]
/// ([`MAX_PARK_PACKET_PATH`] while the packet path is on).
fn sleep_for(
    engine: &mut Engine,
    packet_path: bool,
    linger_until: Option<Nanos>,
    now: Nanos,
) -> Duration {
    let max_park = if packet_path {
        MAX_PARK_PACKET_PATH
    } else {
        MAX_PARK
    };
    let until = |at: Nanos| Duration::from_nanos(at.saturating_sub(now));
    let lingering = linger_until.map_or(max_park, until);
    engine
        .next_wakeup(now)
        .map_or(max_park, until)
        .min(lingering)
        .min(max_park)
}

/// Sends every probe due now: through the packet path where it takes
/// it, else batched per family on the sockets. True if a socket buffer
/// was full or replies are piling up (what is left is sent on the next
/// turn, after the replies).
fn send_due(
    engine: &mut Engine,
    batches: &mut [(Family, bool, SendBatch)],
    packet_path: &mut Option<PacketPath>,
    scratch: &mut [u8; PROBE_LEN],
    shared: &EngineShared<'_>,
) -> bool {
    let EngineShared {
        sockets,
        queue,
        clock,
        counters,
        ..
    } = *shared;
    let mut blocked = false;
    loop {
        // Replies waiting half fill their queue: take them in before
        // sending more, so the receiver never finds it full (a reply it
        // could not hand over would count as a loss).
        if queue.len() >= queue.capacity() / 2 {
            blocked = true;
            break;
        }
        if batches.iter().any(|(_, _, batch)| batch.is_full())
            || packet_path.as_ref().is_some_and(PacketPath::is_full)
        {
            blocked |= flush(batches, packet_path.as_mut(), sockets, clock, counters);
            if blocked {
                break;
            }
        }
        let Some(transmit) = engine.poll_transmit(clock.now(), scratch) else {
            break;
        };
        let probe = &scratch[..transmit.len];
        if let (Some(path), IpAddr::V4(destination)) = (packet_path.as_mut(), transmit.destination)
            && !transmit.tcp
            && path.queue(transmit.index, destination, probe)
        {
            continue;
        }
        let family = Family::of(transmit.destination);
        if let Some((_, _, batch)) = batches
            .iter_mut()
            .find(|(f, tcp, _)| *f == family && *tcp == transmit.tcp)
        {
            batch.next_buffer()[..transmit.len].copy_from_slice(&scratch[..transmit.len]);
            batch.commit(transmit.destination, transmit.len);
        }
    }
    blocked | flush(batches, packet_path.as_mut(), sockets, clock, counters)
}

/// The engine's counters where the other threads read them.
fn publish_counters(engine: &Engine, counters: &IoCounters) {
    counters
        .matched
        .store(engine.counters().replies_matched, Ordering::Relaxed);
    counters
        .targets
        .store(engine.target_count() as u64, Ordering::Relaxed);
    counters.engine.publish(engine.counters());
}

/// Flushes every batch; true if a socket buffer was full.
fn flush(
    batches: &mut [(Family, bool, SendBatch)],
    packet_path: Option<&mut PacketPath>,
    sockets: &[Arc<ProbeSocket>],
    clock: &Clock,
    counters: &IoCounters,
) -> bool {
    let mut blocked = false;
    if let Some(path) = packet_path {
        let outcome = path.flush();
        counters
            .sent_packet_socket
            .fetch_add(outcome.sent as u64, Ordering::Relaxed);
        blocked |= count_sent(outcome, clock, counters);
    }
    for ((_, _, batch), socket) in batches.iter_mut().zip(sockets) {
        if batch.is_empty() {
            continue;
        }
        blocked |= count_sent(batch.flush(socket.raw_fd()), clock, counters);
    }
    blocked
}

/// Counts one flush's outcome; true if the socket buffer was full.
fn count_sent(outcome: SendOutcome, clock: &Clock, counters: &IoCounters) -> bool {
    if outcome.sent > 0 {
        let now = clock.now().max(1);
        let _first_already_set =
            counters
                .first_send_ns
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        counters.last_send_ns.store(now, Ordering::Relaxed);
    }
    counters
        .sent
        .fetch_add(outcome.sent as u64, Ordering::Relaxed);
    counters
        .send_errors
        .fetch_add(outcome.failed as u64, Ordering::Relaxed);
    outcome.blocked
}
