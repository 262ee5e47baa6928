//! The receiver thread: readiness, `recvmmsg`, stateless validation, and
//! the hand-off to the engine thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use mio::{Events, Poll};

use super::{IoCounters, RECEIVE_POLL};
use crate::clock::Clock;
use crate::engine::Nanos;
use crate::engine::tcp::{self, TcpAnswer};
use crate::packet::{self, Family, Rejection, TagKey, Verdict};
use crate::sys::{ProbeSocket, RecvBatch};

/// While replies keep arriving, the receiver reads every this long
/// instead of being woken for each packet (kernel timestamps keep RTTs
/// exact; a verdict waits at most this much longer).
const BUSY_READ_INTERVAL: Duration = Duration::from_micros(100);

/// A read that found at least this many packets keeps the receiver
/// reading on its short timer; fewer, and it waits for readiness again.
const BUSY_READ_MIN: usize = 2;

/// How long the receiver waits for room in a full queue before it looks
/// again (the engine is woken at once).
const QUEUE_FULL_WAIT: Duration = Duration::from_micros(50);

/// What a packet may answer: an ICMP probe (validated here), or a SYN
/// (read here, validated by the engine, which knows what is in flight).
pub(super) enum Answer {
    Icmp(Verdict),
    Tcp(TcpAnswer),
}

/// A packet for the engine, with its kernel receive time.
pub(super) struct Received {
    pub answer: Answer,
    pub at: Nanos,
}

/// What the receiver thread works with.
pub(super) struct Receiver<'a> {
    pub sockets: &'a [Arc<ProbeSocket>],
    pub key: TagKey,
    pub clock: &'a Clock,
    pub queue: &'a ArrayQueue<Received>,
    pub engine: &'a thread::Thread,
    pub stop: &'a AtomicBool,
    pub counters: &'a IoCounters,
    /// Wake the engine for every batch read, not only when the queue
    /// fills: set by the engine thread (see
    /// [`super::ProberConfig::wake_for_each_reply`]).
    pub wake_for_each_reply: &'a AtomicBool,
}

impl Receiver<'_> {
    /// Runs until `stop`: waits for readiness, then reads on a short
    /// timer for as long as packets keep coming.
    pub fn run(&self, mut poll: Poll) {
        let mut events = Events::with_capacity(self.sockets.len() + 1);
        let mut batch = RecvBatch::new();
        let mut drops_per_socket = vec![0u64; self.sockets.len()];
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(error) = poll.poll(&mut events, Some(RECEIVE_POLL)) {
                if error.kind() != std::io::ErrorKind::Interrupted {
                    self.counters.receive_errors.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            let mut received: usize = events
                .iter()
                // The other token is the stop waker.
                .filter(|event| event.token().0 < self.sockets.len())
                .map(|event| {
                    let index = event.token().0;
                    self.drain(index, &mut batch, &mut drops_per_socket[index])
                })
                .sum();
            // Busy reading pays off only while replies come faster than
            // one per wake-up.
            while received >= BUSY_READ_MIN && !self.stop.load(Ordering::Relaxed) {
                thread::park_timeout(BUSY_READ_INTERVAL);
                received = (0..self.sockets.len())
                    .map(|index| self.drain(index, &mut batch, &mut drops_per_socket[index]))
                    .sum();
            }
        }
    }

    /// Hands `received` to the engine thread, waiting while the queue is
    /// full (the engine takes replies in before it sends more; meanwhile
    /// the socket's buffer holds what comes). Dropped, and counted, only
    /// when the prober stops.
    fn hand_over(&self, received: Received) {
        let mut received = received;
        loop {
            match self.queue.push(received) {
                Ok(()) => return,
                Err(back) => received = back,
            }
            if self.stop.load(Ordering::Relaxed) {
                self.counters.queue_overflow.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.engine.unpark();
            thread::park_timeout(QUEUE_FULL_WAIT);
        }
    }

    /// Reads socket `index` until it is empty; returns how many packets.
    fn drain(&self, index: usize, batch: &mut RecvBatch, drops_so_far: &mut u64) -> usize {
        let socket = &self.sockets[index];
        let counters = self.counters;
        let mut total = 0;
        loop {
            let received = match batch.recv(socket.raw_fd()) {
                Ok(0) => return total,
                Ok(received) => received,
                Err(_) => {
                    counters.receive_errors.fetch_add(1, Ordering::Relaxed);
                    return total;
                }
            };
            total += received;
            let offset = self.clock.realtime_offset();
            for i in 0..received {
                let (bytes, meta) = batch.packet(i);
                if let Some(drops) = meta.drops.map(u64::from)
                    && drops > *drops_so_far
                {
                    counters
                        .kernel_drops
                        .fetch_add(drops - *drops_so_far, Ordering::Relaxed);
                    *drops_so_far = drops;
                }
                let at = meta.kernel_realtime_ns.map_or_else(
                    || self.clock.now(),
                    |realtime| Clock::from_realtime(realtime, offset),
                );
                let read = if socket.is_tcp() {
                    tcp::parse(bytes, socket.family() == Family::V4, meta.source).map(Answer::Tcp)
                } else {
                    packet::parse(
                        bytes,
                        socket.framing(),
                        meta.source,
                        &self.key,
                        socket.ident(),
                    )
                    .map(Answer::Icmp)
                };
                match read {
                    Ok(answer) => self.hand_over(Received { answer, at }),
                    Err(Rejection::BadTag) => {
                        counters.bad_tag.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Rejection::Malformed) => {
                        counters.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Rejection::NotOurs) => {}
                }
            }
            if self.wake_for_each_reply.load(Ordering::Relaxed)
                || self.queue.len() >= self.queue.capacity() / 4
            {
                self.engine.unpark();
            }
        }
    }
}
