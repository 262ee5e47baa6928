//! The probe engine on real sockets: a receiver thread and an engine
//! (sender) thread joined by a lock-free queue.
//!
//! ```text
//!  receiver thread                      engine thread
//!  mio readiness → recvmmsg → parse  ─▶ ArrayQueue ─▶ Engine::handle_verdict
//!  (stateless tag validation)                          Engine::handle_timeouts
//!                                                      Engine::poll_transmit → sendmmsg
//! ```
//!
//! No mutex and no allocation per packet on either path. The engine thread
//! owns the engine and hands it back when the run ends.

mod engine_thread;
mod open;
pub(crate) use open::route_source;
mod packet_path;
mod receiver;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use mio::Waker;

use crate::clock::Clock;
use crate::engine::quality::{Level, Thresholds};
use crate::engine::{
    Engine, EngineConfig, PeriodStats, RttQuantiles, SpecError, Status, TargetSpec, Transition,
};
use crate::packet::{Family, TagKey};
use crate::sys::{Features, OpenError, ProbeSocket, SocketKind};
use engine_thread::{EngineShared, engine_loop};
use open::{open_sockets, opened, receiver_poll, send_path_note, with_route_source};
use packet_path::PacketPath;
pub use packet_path::PacketPathError;
use receiver::{Received, Receiver};

/// Validated packets waiting for the engine.
const QUEUE_CAPACITY: usize = 1 << 17;
/// The smallest reply queue of a count-mode run (sized by its targets: a
/// queue is initialised slot by slot, 6 ms for the largest, which a
/// one-target run should not pay).
const MIN_COUNT_MODE_QUEUE: usize = 1 << 10;
/// Longest the engine thread sleeps (it is woken for controls, for a
/// stop, and for replies as [`ProberConfig::wake_for_each_reply`] says).
const MAX_PARK: Duration = Duration::from_secs(1);
/// Longest it sleeps while the packet send path is on (the kernel's
/// routing changes are read on the engine thread).
const MAX_PARK_PACKET_PATH: Duration = Duration::from_millis(5);
/// Longest the receiver blocks before looking at the stop flag (it is
/// also woken when asked to stop).
const RECEIVE_POLL: Duration = Duration::from_secs(1);
/// The shortest linger of a count-mode run: long enough for replies
/// already in the socket to reach the engine (the receiver reads every
/// 100 µs while busy).
pub const MIN_LINGER: Duration = Duration::from_millis(1);

/// How to run the prober.
#[derive(Clone, Copy, Debug)]
pub struct ProberConfig {
    /// Rate limit, count mode and start policy (identifier and checksum
    /// policy come from the sockets).
    pub engine: EngineConfig,
    /// Receive buffer to ask the kernel for, per socket.
    pub receive_buffer: usize,
    /// Count mode: the longest the prober keeps receiving after every
    /// probe concluded, so duplicates still on the wire are counted. It
    /// waits twice the longest round trip seen (a duplicate takes about
    /// as long as the reply it repeats), at least [`MIN_LINGER`].
    pub linger: Duration,
    /// Open a socket for every address family the host supports, not just
    /// those of the first targets (targets arrive later with [`Control`]).
    pub all_families: bool,
    /// How IPv4 probes leave the host.
    pub send_path: SendPath,
    /// The receiver wakes the engine for every reply (a one-shot sweep
    /// finishes as soon as its replies are in). Otherwise it does so only
    /// while some target is not up, whose reply may bring it up; while
    /// every target is up, replies wait in the queue for the engine's
    /// next wake-up, a send or a timeout (a continuous agent: one wake-up
    /// per probe instead of three; kernel timestamps keep RTTs exact, and
    /// replies waiting are always taken in before a timeout is judged, so
    /// detection is unchanged). A queue a quarter full wakes it either
    /// way.
    pub wake_for_each_reply: bool,
}

/// How IPv4 probes leave the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SendPath {
    /// Through the kernel's IP stack (raw socket): routing, nftables
    /// `output` rules and IPsec policies apply to every probe.
    #[default]
    Ip,
    /// Through a packet socket straight to the interface, for the routes
    /// the agent can mirror exactly (default policy rules, single next
    /// hop, confirmed neighbour); faster, but nftables `output` rules and
    /// IPsec policies do not see these probes. Everything else still goes
    /// through the IP stack.
    Packet,
}

/// A change to a running prober's targets, or a request for statistics.
#[derive(Debug)]
pub enum Control {
    /// Probe `id` with `spec` (restarting its state if the spec changed).
    Upsert {
        /// The caller's id for the target (the device id).
        id: u64,
        /// How to probe it.
        spec: TargetSpec,
        /// Where a new target starts (its owner's last word on it).
        known: Status,
        /// How its loss and RTT are judged (`None`: not at all).
        quality: Option<Thresholds>,
        /// The level a new target starts degraded at (its owner's last
        /// word on it, with `known` up).
        known_level: Option<Level>,
    },
    /// Stop probing `id`.
    Remove {
        /// The id it was added with.
        id: u64,
    },
    /// Every target's statistics since the last request (then a new period).
    TakeStatistics(std::sync::mpsc::SyncSender<Vec<(u64, PeriodStats, RttQuantiles)>>),
}

/// Controls waiting for the engine thread.
const CONTROL_CAPACITY: usize = 1 << 16;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProberError {
    /// No usable ICMP socket.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A target the engine refuses.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The readiness poller could not be set up.
    #[error("setting up socket readiness (epoll): {0}")]
    Poll(std::io::Error),
    /// The kernel gave no randomness for the tag key.
    #[error("no randomness from the kernel for the probe tag key: {0}")]
    Random(getrandom::Error),
    /// A prober thread could not be started.
    #[error("starting a prober thread: {0}")]
    Thread(std::io::Error),
    /// `--send-path packet` could not be set up.
    #[error(transparent)]
    PacketPath(#[from] PacketPathError),
}

/// Counters kept outside the engine (receiver and sender side).
#[derive(Debug, Default)]
pub struct IoCounters {
    /// Packets claiming to be ours whose tag failed: forged, wrong host,
    /// corrupted.
    pub bad_tag: AtomicU64,
    /// Packets too broken to parse.
    pub malformed: AtomicU64,
    /// Valid packets dropped because the engine's queue was full as the
    /// prober stopped (while it runs the receiver waits for room).
    pub queue_overflow: AtomicU64,
    /// Packets the kernel dropped on our sockets (sum of `SO_RXQ_OVFL`).
    pub kernel_drops: AtomicU64,
    /// Receive calls that failed.
    pub receive_errors: AtomicU64,
    /// Probes the kernel refused to send.
    pub send_errors: AtomicU64,
    /// Probes handed to the kernel (for progress displays).
    pub sent: AtomicU64,
    /// Of `sent`, those that went through the packet socket.
    pub sent_packet_socket: AtomicU64,
    /// Netlink failures that turned the packet send path off.
    pub packet_path_errors: AtomicU64,
    /// Targets refused at run time (bad spec, or no socket for the family).
    pub targets_refused: AtomicU64,
    /// Targets being probed (published once per engine loop).
    pub targets: AtomicU64,
    /// The engine's own counters, published once per engine loop.
    pub engine: EngineCounters,
    /// Replies matched by the engine (published once per engine loop).
    pub matched: AtomicU64,
    /// Engine time of the first and the last probe handed to the kernel
    /// (0 = none yet), for the achieved send rate.
    pub first_send_ns: AtomicU64,
    /// See `first_send_ns`.
    pub last_send_ns: AtomicU64,
}

/// [`crate::engine::Counters`] as atomics, for readers outside the
/// engine thread.
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Authentic replies naming a probe never in flight.
    pub replies_invalid: AtomicU64,
    /// Second and later replies to one probe.
    pub replies_duplicate: AtomicU64,
    /// Replies after the probe's timeout.
    pub replies_late: AtomicU64,
    /// ICMP errors that ended a probe (late ones included).
    pub icmp_errors: AtomicU64,
    /// Probes held back by the rate limit.
    pub rate_limited: AtomicU64,
    /// Probes that timed out.
    pub timeouts: AtomicU64,
    /// TCP answers acknowledging no SYN in flight (forged, replayed, from
    /// another host).
    pub tcp_unmatched: AtomicU64,
}

impl EngineCounters {
    fn publish(&self, counters: crate::engine::Counters) {
        self.replies_invalid
            .store(counters.replies_invalid, Ordering::Relaxed);
        self.replies_duplicate
            .store(counters.replies_duplicate, Ordering::Relaxed);
        self.replies_late
            .store(counters.replies_late, Ordering::Relaxed);
        self.icmp_errors.store(
            counters.icmp_errors + counters.icmp_errors_late,
            Ordering::Relaxed,
        );
        self.rate_limited
            .store(counters.rate_limited, Ordering::Relaxed);
        self.timeouts.store(counters.timeouts, Ordering::Relaxed);
        self.tcp_unmatched
            .store(counters.tcp_unmatched, Ordering::Relaxed);
    }
}

/// A running prober.
pub struct Prober {
    stop: Arc<AtomicBool>,
    counters: Arc<IoCounters>,
    features: Vec<(Family, Features)>,
    /// The families with a raw TCP socket.
    tcp_families: Vec<Family>,
    clock: Clock,
    engine_thread: Option<JoinHandle<Engine>>,
    receiver_thread: Option<JoinHandle<()>>,
    /// Wakes the receiver out of its readiness wait to see `stop`.
    receiver_waker: Arc<Waker>,
    /// Disconnected when the engine thread ends.
    engine_done: std::sync::mpsc::Receiver<()>,
    controls: Arc<ArrayQueue<Control>>,
    send_path_note: Option<String>,
}

/// Each target's engine slot and spec, by its id.
type Slots = HashMap<u64, (u32, TargetSpec)>;

/// The engine with every target added; each target's slot and spec by
/// its id.
fn engine_with_targets(
    config: &ProberConfig,
    sockets: &[Arc<ProbeSocket>],
    key: TagKey,
    clock: &Clock,
    targets: &[(TargetSpec, u64)],
) -> Result<(Engine, Slots), ProberError> {
    let mut engine_config = config.engine;
    engine_config.ident = sockets.first().and_then(|socket| socket.ident());
    engine_config.kernel_checksums = sockets
        .first()
        .is_some_and(|socket| socket.kernel_checksums());
    let mut engine = Engine::new(engine_config, key, clock.now());
    let mut slots = HashMap::with_capacity(targets.len());
    for (spec, id) in targets {
        let spec = with_route_source(*spec);
        slots.insert(*id, (engine.add_target(spec, *id, clock.now())?, spec));
    }
    Ok((engine, slots))
}

/// The control queue and the receiver → engine queue, sized for `targets`
/// in count mode (every reply of a one-shot run may arrive at once).
fn queues(
    count_mode: bool,
    targets: usize,
) -> (Arc<ArrayQueue<Control>>, Arc<ArrayQueue<Received>>) {
    if count_mode {
        let replies = (2 * targets)
            .next_power_of_two()
            .clamp(MIN_COUNT_MODE_QUEUE, QUEUE_CAPACITY);
        (
            Arc::new(ArrayQueue::new(MIN_COUNT_MODE_QUEUE)),
            Arc::new(ArrayQueue::new(replies)),
        )
    } else {
        (
            Arc::new(ArrayQueue::new(CONTROL_CAPACITY)),
            Arc::new(ArrayQueue::new(QUEUE_CAPACITY)),
        )
    }
}

impl Prober {
    /// Opens one socket per family the targets need, adds the targets and
    /// starts both threads. `on_transition` runs on the engine thread for
    /// every state change (keep it short).
    pub fn start(
        config: ProberConfig,
        targets: &[(TargetSpec, u64)],
        on_transition: impl FnMut(&Clock, Transition) + Send + 'static,
    ) -> Result<Self, ProberError> {
        let sockets = open_sockets(&config, targets)?;
        let key = TagKey::random().map_err(ProberError::Random)?;
        let clock = Clock::start();
        let (engine, slots) = engine_with_targets(&config, &sockets, key, &clock, targets)?;
        let packet_path = open_packet_path(&config, &sockets, &slots, &clock)?;
        let send_path_note = send_path_note(packet_path.as_ref(), config.send_path);
        let (controls, queue) = queues(config.engine.probes_per_target.is_some(), targets.len());
        let (poll, receiver_waker) = receiver_poll(&sockets)?;
        let stop = Arc::new(AtomicBool::new(false));
        let wake_for_each_reply = Arc::new(AtomicBool::new(config.wake_for_each_reply));
        let counters = Arc::new(IoCounters::default());
        let (features, tcp_families) = opened(&sockets);
        let (done_sender, engine_done) = std::sync::mpsc::channel::<()>();
        let engine_thread = thread::Builder::new()
            .name("ward-engine".into())
            .spawn({
                let (sockets, queue, stop, counters, controls, wake) = (
                    sockets.clone(),
                    Arc::clone(&queue),
                    Arc::clone(&stop),
                    Arc::clone(&counters),
                    Arc::clone(&controls),
                    Arc::clone(&wake_for_each_reply),
                );
                move || {
                    // Dropped when this thread ends: `Prober::wait` sees it.
                    let _done = done_sender;
                    let shared = EngineShared {
                        sockets: &sockets,
                        queue: &queue,
                        clock: &clock,
                        stop: &stop,
                        counters: &counters,
                        linger: config.linger,
                        controls: &controls,
                        wake_for_each_reply: (config.wake_for_each_reply, &wake),
                    };
                    engine_loop(engine, slots, packet_path, &shared, on_transition)
                }
            })
            .map_err(ProberError::Thread)?;
        let receiver_thread = thread::Builder::new()
            .name("ward-receiver".into())
            .spawn({
                let (stop, counters, engine) = (
                    Arc::clone(&stop),
                    Arc::clone(&counters),
                    engine_thread.thread().clone(),
                );
                move || {
                    Receiver {
                        sockets: &sockets,
                        key,
                        clock: &clock,
                        queue: &queue,
                        engine: &engine,
                        stop: &stop,
                        counters: &counters,
                        wake_for_each_reply: &wake_for_each_reply,
                    }
                    .run(poll);
                }
            })
            .map_err(ProberError::Thread)?;
        Ok(Self {
            stop,
            counters,
            features,
            tcp_families,
            clock,
            engine_thread: Some(engine_thread),
            receiver_thread: Some(receiver_thread),
            receiver_waker,
            engine_done,
            controls,
            send_path_note,
        })
    }

    /// Hands `control` to the engine thread; gives it back when too many
    /// are waiting (try again shortly).
    pub fn control(&self, control: Control) -> Result<(), Control> {
        self.controls.push(control)?;
        if let Some(thread) = &self.engine_thread {
            thread.thread().unpark();
        }
        Ok(())
    }

    /// Address families with an open socket.
    pub fn families(&self) -> Vec<Family> {
        self.features.iter().map(|(family, _)| *family).collect()
    }

    /// The families it can probe TCP checks for (a raw TCP socket).
    pub fn tcp_families(&self) -> Vec<Family> {
        self.tcp_families.clone()
    }

    /// Sender and receiver counters.
    pub fn counters(&self) -> &IoCounters {
        &self.counters
    }

    /// What the kernel granted per socket.
    pub fn features(&self) -> &[(Family, Features)] {
        &self.features
    }

    /// With `--send-path packet`: how it started (next hops, or why the
    /// IP stack is used after all).
    pub fn send_path_note(&self) -> Option<&str> {
        self.send_path_note.as_deref()
    }

    /// The prober's clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Waits up to `timeout` for the engine thread to end (count mode
    /// finished); true if it has.
    pub fn wait(&self, timeout: Duration) -> bool {
        matches!(
            self.engine_done.recv_timeout(timeout),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        )
    }

    /// Waits for a count-mode run to finish and returns the engine with its
    /// final state. A continuous run never finishes: use [`Prober::stop`].
    pub fn finish(mut self) -> Engine {
        let engine = self.engine_thread.take().map(|thread| {
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        self.stop_receiver();
        engine.unwrap_or_else(|| unreachable!("the engine thread is joined only here"))
    }

    /// Stops a continuous run and returns the engine with its final state.
    pub fn stop(self) -> Engine {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = &self.engine_thread {
            thread.thread().unpark();
        }
        self.finish()
    }

    fn stop_receiver(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Without the wake-up it would see the flag within RECEIVE_POLL.
        let _ = self.receiver_waker.wake();
        if let Some(thread) = self.receiver_thread.take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.engine_thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
        self.stop_receiver();
    }
}

/// The packet send path, when asked for and IPv4 has a raw socket.
fn open_packet_path(
    config: &ProberConfig,
    sockets: &[Arc<ProbeSocket>],
    slots: &Slots,
    clock: &Clock,
) -> Result<Option<PacketPath>, ProberError> {
    let raw_ipv4 = sockets
        .iter()
        .any(|socket| socket.family() == Family::V4 && socket.features().kind == SocketKind::Raw);
    if config.send_path != SendPath::Packet || !raw_ipv4 {
        return Ok(None);
    }
    let mut path = PacketPath::open()?;
    path.rebuild(ipv4_targets(slots), clock.now())
        .map_err(|error| ProberError::PacketPath(PacketPathError::Open(error)))?;
    Ok(Some(path))
}

/// The IPv4 targets as `(slot, address)`.
fn ipv4_targets(slots: &Slots) -> impl Iterator<Item = (u32, Ipv4Addr)> + Clone + '_ {
    slots
        .values()
        .filter_map(|(index, spec)| match spec.address {
            IpAddr::V4(address) => Some((*index, address)),
            IpAddr::V6(_) => None,
        })
}
