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
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Netem;

/// Name of the tun device on both sides.
pub(super) const TUN: &str = "wi0";

/// Longest a relay waits before looking at the stop flag again.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// A running relay; stopped and joined on drop.
pub(super) struct Relay {
    settings: Arc<Mutex<Netem>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Relays packets from `from` (site side) to `to` (client side).
    pub(super) fn start(from: tun::Device, to: tun::Device, netem: Netem) -> Self {
        let settings = Arc::new(Mutex::new(netem));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("lab-impair".into())
            .spawn({
                let (settings, stop) = (Arc::clone(&settings), Arc::clone(&stop));
                move || relay(from, to, &settings, &stop)
            })
            .expect("spawning the lab relay thread");
        Self {
            settings,
            stop,
            thread: Some(thread),
        }
    }

    /// Changes the impairment for packets read from now on.
    pub(super) fn set(&self, netem: Netem) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = netem;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("lab: the impairment relay thread panicked");
        }
    }
}

/// Opens a tun device named [`TUN`], up, in the calling thread's namespace.
pub(super) fn open_tun() -> anyhow::Result<tun::Device> {
    let mut config = tun::Configuration::default();
    config.tun_name(TUN).up();
    tun::create(&config).context("creating the lab's tun device (CONFIG_TUN)")
}

fn relay(from: tun::Device, mut to: tun::Device, settings: &Mutex<Netem>, stop: &AtomicBool) {
    // Packets waiting for their release time, earliest first; the counter
    // keeps equal release times in arrival order.
    let mut pending: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut arrivals = 0u64;
    let mut buffer = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while pending
            .peek()
            .is_some_and(|Reverse((due, _, _))| *due <= now)
        {
            if let Some(Reverse((_, _, packet))) = pending.pop()
                && let Err(error) = to.write_all(&packet)
            {
                eprintln!("lab relay: writing a packet: {error}");
            }
        }
        let wait = pending
            .peek()
            .map_or(IDLE_WAIT, |Reverse((due, _, _))| {
                due.saturating_duration_since(now)
            })
            .min(IDLE_WAIT);
        let length = match from.recv_timeout(&mut buffer, wait) {
            Ok(length) => length,
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(error) => {
                eprintln!("lab relay: reading a packet: {error}");
                continue;
            }
        };
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
            arrivals += 1;
            let due = Instant::now() + delay(netem);
            pending.push(Reverse((due, arrivals, buffer[..length].to_vec())));
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
