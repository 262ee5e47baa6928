//! Link impairment in user space. This kernel has no `sch_netem`
//! (`CONFIG_NET_SCH_NETEM` unset), so delay, jitter, loss and duplication
//! are applied by a relay thread instead:
//!
//! ```text
//!  site ns: route to the client via tun "wi0" ──▶ relay thread (delay,
//!  jitter, loss, duplicate) ──▶ tun "wi0" in the client ns ──▶ client stack
//! ```
//!
//! Requests still reach the site over the veth; only what the site sends
//! back (echo replies, ICMP errors) takes the impaired path, which is where
//! `tc netem` on the site's link would have acted. Clearing the impairment
//! routes replies over the veth again.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Netem;

/// Name of the tun device on both sides.
pub(super) const TUN: &str = "wi0";

/// Longest the reader waits before looking at the stop flag again.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// A running relay (a reader and a writer thread); stopped and joined on
/// drop.
pub(super) struct Relay {
    settings: Arc<Mutex<Netem>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Relays packets from `from` (site side) to `to` (client side).
    pub(super) fn start(from: tun::Device, to: tun::Device, netem: Netem) -> Self {
        let settings = Arc::new(Mutex::new(netem));
        let stop = Arc::new(AtomicBool::new(false));
        let (queue, released) = mpsc::channel::<(Instant, Vec<u8>)>();
        let reader = std::thread::Builder::new()
            .name("lab-impair-read".into())
            .spawn({
                let (settings, stop) = (Arc::clone(&settings), Arc::clone(&stop));
                move || read(&from, &queue, &settings, &stop)
            })
            .expect("spawning the lab relay reader");
        let writer = std::thread::Builder::new()
            .name("lab-impair-write".into())
            .spawn(move || write(&to, &released))
            .expect("spawning the lab relay writer");
        Self {
            settings,
            stop,
            threads: vec![reader, writer],
        }
    }

    /// Changes the impairment for packets read from now on.
    pub(super) fn set(&self, netem: Netem) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = netem;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The reader sees the flag within IDLE_WAIT; its channel closing
        // then ends the writer.
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                eprintln!("lab: an impairment relay thread panicked");
            }
        }
    }
}

/// Opens a tun device named [`TUN`], up, in the calling thread's namespace.
pub(super) fn open_tun() -> anyhow::Result<tun::Device> {
    let mut config = tun::Configuration::default();
    config.tun_name(TUN).up();
    tun::create(&config).context("creating the lab's tun device (CONFIG_TUN)")
}

/// Reads packets as they arrive, applies loss and duplication, and hands
/// each to the writer with its release time (arrival + delay ± jitter).
fn read(
    from: &tun::Device,
    queue: &mpsc::Sender<(Instant, Vec<u8>)>,
    settings: &Mutex<Netem>,
    stop: &AtomicBool,
) {
    let mut buffer = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let length = match from.recv_timeout(&mut buffer, IDLE_WAIT) {
            Ok(length) => length,
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(error) => {
                eprintln!("lab relay: reading a packet: {error}");
                continue;
            }
        };
        let arrived = Instant::now();
        let netem = *settings.lock().unwrap_or_else(|p| p.into_inner());
        if fastrand::f32() * 100.0 < netem.loss_percent {
            continue;
        }
        let copies = if fastrand::f32() * 100.0 < netem.duplicate_percent {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if queue
                .send((arrived + delay(netem), buffer[..length].to_vec()))
                .is_err()
            {
                return;
            }
        }
    }
}

/// Releases packets at their time, earliest first; the channel's timeout
/// has nanosecond resolution, so release is as precise as the scheduler.
fn write(to: &tun::Device, released: &mpsc::Receiver<(Instant, Vec<u8>)>) {
    // Earliest first; the counter keeps equal times in arrival order.
    let mut pending: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut arrivals = 0u64;
    loop {
        let now = Instant::now();
        while pending
            .peek()
            .is_some_and(|Reverse((due, _, _))| *due <= now)
        {
            if let Some(Reverse((_, _, packet))) = pending.pop()
                && let Err(error) = to.send(&packet)
            {
                eprintln!("lab relay: writing a packet: {error}");
            }
        }
        let wait = pending.peek().map_or(IDLE_WAIT, |Reverse((due, _, _))| {
            due.saturating_duration_since(now)
        });
        match released.recv_timeout(wait) {
            Ok((due, packet)) => {
                arrivals += 1;
                pending.push(Reverse((due, arrivals, packet)));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) if pending.is_empty() => return,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(wait);
            }
        }
    }
}

/// The delay for one packet: `delay ± jitter`, uniformly, never negative.
fn delay(netem: Netem) -> Duration {
    let delay_us = i64::from(netem.delay_ms) * 1000;
    let jitter_us = i64::from(netem.jitter_ms) * 1000;
    let offset = if jitter_us > 0 {
        fastrand::i64(-jitter_us..=jitter_us)
    } else {
        0
    };
    Duration::from_micros(u64::try_from(delay_us + offset).unwrap_or(0))
}
