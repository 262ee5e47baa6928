//! The trace thread: runs [`crate::engine::trace::Tracer`] on its own raw
//! sockets (ICMP per family, with their own identifier, which also hear
//! the routers' errors; raw TCP per family, sending only, for devices
//! checked by TCP), apart from the prober's threads, so a trace never
//! delays a probe or a DOWN. It sleeps on its request channel while no
//! trace runs.
//!
//! ```text
//!  run loop ── request(device, address, tcp port) ──▶ trace thread ── TraceResult ──▶ run loop
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::clock::Clock;
use crate::engine::trace::{TraceConfig, TraceResult, Tracer, Via};
use crate::packet::{Family, TagKey};
use crate::sys::{OpenError, TraceSocket};

/// Longest a receive waits while a trace runs.
const RECEIVE_WAIT: Duration = Duration::from_millis(10);

/// What the trace thread counted (for the heartbeat).
#[derive(Debug, Default)]
pub struct TraceStats {
    /// Traces started.
    pub started: AtomicU64,
    /// Requests answered by a trace of the same prefix.
    pub shared: AtomicU64,
    /// Requests refused: too many traces running and waiting.
    pub skipped: AtomicU64,
    /// Requests refused: no trace socket for the address's family.
    pub no_socket: AtomicU64,
    /// Trace probes the kernel refused to send, and receives that failed.
    pub io_errors: AtomicU64,
}

/// A device to trace: its id, its address, and the port of its TCP check
/// (`None`: checked by ICMP).
type Request = (u64, IpAddr, Option<u16>);

/// The thread's sockets: ICMP (sends echo requests, hears every answer),
/// raw TCP (sends SYNs only).
struct Sockets {
    icmp: Vec<TraceSocket>,
    tcp: Vec<TraceSocket>,
}

/// Why traces cannot run.
#[derive(Debug, thiserror::Error)]
pub enum TraceStartError {
    /// No family has a raw ICMP socket.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The kernel gave no randomness for the tag key.
    #[error("no randomness from the kernel for the trace tag key: {0}")]
    Random(getrandom::Error),
    /// The thread could not be started.
    #[error("starting the trace thread: {0}")]
    Thread(std::io::Error),
}

/// The running trace thread.
pub struct TraceThread {
    requests: Option<Sender<Request>>,
    stats: Arc<TraceStats>,
    thread: Option<JoinHandle<()>>,
}

impl TraceThread {
    /// Opens a trace socket per family and starts the thread; `on_done`
    /// runs on it for every finished trace. Fails when no family has a
    /// raw ICMP socket (the agent then runs without traces).
    pub fn start(
        config: TraceConfig,
        on_done: impl FnMut(TraceResult) + Send + 'static,
    ) -> Result<Self, TraceStartError> {
        let ident = fastrand::u16(..);
        let mut icmp = Vec::new();
        let mut tcp = Vec::new();
        let mut refused = None;
        for family in [Family::V4, Family::V6] {
            match TraceSocket::open(family, ident, RECEIVE_WAIT) {
                Ok(socket) => icmp.push(socket),
                Err(error) => {
                    tracing::warn!(?family, %error, "paths to this family cannot be traced");
                    refused = Some(error);
                    continue;
                }
            }
            match TraceSocket::open_tcp(family) {
                Ok(socket) => tcp.push(socket),
                Err(error) => {
                    tracing::warn!(?family, %error, "paths to devices checked by TCP are traced with ICMP");
                }
            }
        }
        if icmp.is_empty()
            && let Some(error) = refused
        {
            return Err(error.into());
        }
        let sockets = Sockets { icmp, tcp };
        let key = TagKey::random().map_err(TraceStartError::Random)?;
        let stats = Arc::new(TraceStats::default());
        let (requests, incoming) = std::sync::mpsc::channel();
        let thread = thread::Builder::new()
            .name("ward-tracer".into())
            .spawn({
                let stats = Arc::clone(&stats);
                move || {
                    let tracer = Tracer::new(config, key, ident);
                    trace_loop(tracer, &sockets, &incoming, &stats, on_done);
                }
            })
            .map_err(TraceStartError::Thread)?;
        Ok(Self {
            requests: Some(requests),
            stats,
            thread: Some(thread),
        })
    }

    /// Asks for the path to `address` for `device`, with SYNs to
    /// `tcp_port` if it is checked by TCP.
    pub fn request(&self, device: u64, address: IpAddr, tcp_port: Option<u16>) {
        if let Some(requests) = &self.requests {
            // Fails only once the thread is gone (it never ends early).
            let _ = requests.send((device, address, tcp_port));
        }
    }

    /// What it counted.
    pub fn stats(&self) -> &TraceStats {
        &self.stats
    }
}

impl Drop for TraceThread {
    fn drop(&mut self) {
        // The thread ends when its channel closes.
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn trace_loop(
    mut tracer: Tracer,
    sockets: &Sockets,
    incoming: &Receiver<Request>,
    stats: &TraceStats,
    mut on_done: impl FnMut(TraceResult),
) {
    let clock = Clock::start();
    let mut buffer = [0u8; 1500];
    loop {
        // Idle: sleep on the channel (it closes when the agent stops);
        // tracing: just look at it.
        let first = if tracer.next_wakeup().is_none() {
            match incoming.recv() {
                Ok(request) => Some(request),
                Err(_) => return,
            }
        } else {
            None
        };
        for (device, address, tcp_port) in first.into_iter().chain(incoming.try_iter()) {
            let family = Family::of(address);
            if sockets.icmp.iter().any(|socket| socket.family() == family) {
                tracer.request(device, address, sockets.via(address, tcp_port), clock.now());
            } else {
                stats.no_socket.fetch_add(1, Ordering::Relaxed);
            }
        }
        let now = clock.now();
        while let Some(probe) = tracer.poll_transmit(now, &mut buffer) {
            let family = Family::of(probe.destination);
            let on = if probe.tcp {
                &sockets.tcp
            } else {
                &sockets.icmp
            };
            let sent = on
                .iter()
                .find(|socket| socket.family() == family)
                .map(|socket| socket.send(&buffer[..probe.len], probe.destination, probe.ttl));
            if !matches!(sent, Some(Ok(()))) {
                stats.io_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        for socket in &sockets.icmp {
            loop {
                match socket.receive(&mut buffer) {
                    Ok(Some((len, source))) => {
                        tracer.handle_packet(&buffer[..len], socket.framing(), source, clock.now());
                    }
                    Ok(None) => break,
                    Err(_) => {
                        stats.io_errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        tracer.handle_timeouts(clock.now());
        while let Some(done) = tracer.poll_done() {
            on_done(done);
        }
        let counters = tracer.counters();
        stats.started.store(counters.started, Ordering::Relaxed);
        stats.shared.store(counters.shared, Ordering::Relaxed);
        stats.skipped.store(counters.skipped, Ordering::Relaxed);
    }
}

impl Sockets {
    /// How to trace `address`: SYNs to its TCP check's port where there is
    /// a raw TCP socket and a route to take the source from, else echo
    /// requests.
    fn via(&self, address: IpAddr, tcp_port: Option<u16>) -> Via {
        let family = Family::of(address);
        match tcp_port {
            Some(port) if self.tcp.iter().any(|socket| socket.family() == family) => {
                crate::prober::route_source(address)
                    .map_or(Via::Icmp, |source| Via::Tcp { port, source })
            }
            _ => Via::Icmp,
        }
    }
}
