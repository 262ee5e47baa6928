//! `ward-agent run`: the agent as a daemon. It probes what the controller
//! assigns, and reports over the `AgentLink` stream.
//!
//! ```text
//!  engine thread ── transitions ──▶ spool (fsync) ──▶ link ──▶ controller
//!  statistics timer ─ TakeStatistics ▶ spool ──────────▶ link
//!  controller ── snapshot / update ──▶ prober controls
//!  controller ── ack(seq) ──▶ spool drops everything ≤ seq
//! ```
//!
//! Every report is spooled before it is sent, and replayed in order after
//! a reconnect or a restart until acknowledged. After each (re)connect the
//! agent also re-sends the latest state of every device it decided
//! (a resync batch), so a controller that marked them `unknown` while the
//! agent was away learns them again. Reconnects back off with jitter.

pub mod config;
mod convert;
mod failover;
pub mod link;
mod messages;
mod redial;
pub mod systemd;
mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};
use ward_proto::v1::{self as pb};

use crate::engine::quality::Thresholds;
use crate::engine::trace::{TraceConfig, TraceResult};
use crate::engine::{EngineConfig, TargetSpec};
use crate::prober::{Prober, ProberConfig, ProberError};
use crate::spool::{Spool, SpoolConfig, SpoolError};
use crate::tracer::TraceThread;
pub use config::RunSettings;
use link::Link;
use redial::Redial;

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const LAST_BACKOFF: Duration = Duration::from_secs(30);
/// After a refusal, the operator has to act: retry slowly.
const REFUSED_BACKOFF: Duration = Duration::from_secs(30);
/// Sending one message may take this long before the link counts as dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Spooling and sending a transition batch slower than this is logged.
const SLOW_REPORT: Duration = Duration::from_millis(50);
/// Finished traces wait at most this long for a transition batch to
/// ride on.
const TRACE_REPORT_DELAY: Duration = Duration::from_secs(2);
/// Transitions put into one batch, at most.
const MAX_BATCH: usize = 10_000;
/// How long a stopping agent waits for the controller to end the link.
const LINK_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The spool is unusable.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The spool failed while running.
    #[error("writing the spool: {0}; the agent stops rather than lose reports")]
    SpoolWrite(std::io::Error),
    /// Probing cannot start.
    #[error(transparent)]
    Prober(#[from] ProberError),
}

/// Counters of the run loop, for logs and tests.
#[derive(Debug, Default)]
pub struct RunCounters {
    /// Links opened.
    pub links_opened: AtomicU64,
    /// Targets the controller sent that could not be probed.
    pub targets_refused: AtomicU64,
    /// Report entries the controller refused.
    pub entries_rejected: AtomicU64,
}

/// Lifecycle events for a supervisor (systemd).
pub trait Supervisor: Send {
    /// The agent is probing and spooling.
    fn ready(&mut self) {}
    /// The loop is alive (called at every heartbeat tick).
    fn alive(&mut self) {}
    /// The agent is stopping.
    fn stopping(&mut self) {}
}

struct Agent {
    settings: RunSettings,
    spool: Spool,
    prober: Prober,
    /// Traces the path to a device that went down or degraded (`None`: no
    /// raw ICMP socket to trace on).
    tracer: Option<TraceThread>,
    /// Finished traces (and when, Unix ms) not reported yet: they ride on
    /// the next transition
    /// batch, or leave by themselves at `traces_due` (each report is a
    /// spool sync here and a commit at the controller, which transitions
    /// behind it would wait for).
    traced: Vec<(TraceResult, i64)>,
    traces_due: Option<Instant>,
    /// What the controller assigned, by device id: how to probe it, how
    /// to judge its loss and RTT.
    assigned: HashMap<u64, (TargetSpec, Option<Thresholds>)>,
    generation: u64,
    /// The latest transition of every device, for resyncs.
    latest: HashMap<u64, pb::Transition>,
    outbound: Option<mpsc::Sender<pb::AgentMessage>>,
    /// Set when the link must be dropped (send failed, protocol problem).
    link_broken: bool,
    last_acked_seq: u64,
    period_start_ms: i64,
    counters: std::sync::Arc<RunCounters>,
}

/// Runs spool I/O (writes, `fdatasync`, directory syncs) where it cannot
/// hold up the async workers: on a multi-threaded runtime the worker hands
/// its other tasks on for the duration (`block_in_place`).
fn off_the_workers<T>(io: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(io),
        _ => io(),
    }
}

impl Agent {
    /// Opens the spool (cutting a corrupt tail, reported) and starts the
    /// prober; the engine's transitions arrive on the receiver returned.
    fn start(
        settings: RunSettings,
        counters: std::sync::Arc<RunCounters>,
    ) -> Result<(Self, Reports), RunError> {
        let (spool, corrupt) = off_the_workers(|| {
            Spool::open(
                &settings.spool_dir,
                SpoolConfig {
                    statistics_max_bytes: settings.spool_statistics_max_bytes,
                },
                new_boot_id,
            )
        })?;
        for tail in &corrupt {
            error!(file = %tail.file.display(), offset = tail.offset, bytes = tail.bytes_dropped,
                "corrupt spool tail cut off; the records before it are kept");
        }
        info!(spool = %settings.spool_dir.display(), boot = spool.boot_id(), waiting = spool.records(), "spool open");
        let (transition_sender, transitions) = mpsc::unbounded_channel();
        let prober = Prober::start(
            ProberConfig {
                wake_for_each_reply: false,
                engine: EngineConfig {
                    rate: settings.rate,
                    quantile_period_ms: Some(
                        u32::try_from(settings.report_period.as_millis()).unwrap_or(u32::MAX),
                    ),
                    ..EngineConfig::default()
                },
                receive_buffer: 32 << 20,
                linger: Duration::ZERO,
                all_families: true,
                send_path: settings.send_path,
            },
            &[],
            move |clock, transition| {
                // Fails only when the run loop is gone.
                let _ = transition_sender.send(convert::transition(clock, &transition));
            },
        )?;
        info!(families = ?prober.families(), "probing");
        let (trace_sender, traces) = mpsc::unbounded_channel();
        let tracer = TraceThread::start(TraceConfig::default(), move |trace| {
            // Fails only when the run loop is gone.
            let _ = trace_sender.send(trace);
        })
        .inspect_err(|error| warn!(%error, "paths to failed devices will not be traced"))
        .ok();
        if let Some(note) = prober.send_path_note() {
            info!(send_path = "packet", "{note}");
        }
        let agent = Agent {
            settings,
            spool,
            prober,
            tracer,
            traced: Vec::new(),
            traces_due: None,
            assigned: HashMap::new(),
            generation: 0,
            latest: HashMap::new(),
            outbound: None,
            link_broken: false,
            last_acked_seq: 0,
            period_start_ms: now_ms(),
            counters,
        };
        Ok((
            agent,
            Reports {
                transitions,
                traces,
            },
        ))
    }
}

/// What the agent's threads hand the run loop to report.
struct Reports {
    transitions: mpsc::UnboundedReceiver<pb::Transition>,
    traces: mpsc::UnboundedReceiver<TraceResult>,
}

/// Runs until `shutdown` completes.
pub async fn run(
    settings: RunSettings,
    counters: std::sync::Arc<RunCounters>,
    mut supervisor: impl Supervisor,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let (mut agent, mut reports) = Agent::start(settings, counters)?;
    supervisor.ready();
    tokio::pin!(shutdown);
    let mut inbound: Option<tokio::sync::mpsc::UnboundedReceiver<link::Inbound>> = None;
    let mut connecting: Option<Connecting> = None;
    let mut redial = Redial::new(agent.settings.controllers.len());
    let mut statistics_tick = tokio::time::interval(agent.settings.report_period);
    statistics_tick.tick().await;
    let mut heartbeat_tick = tokio::time::interval(agent.settings.heartbeat_interval);
    let result = loop {
        if inbound.is_none() && connecting.is_none() && Instant::now() >= redial.reconnect_at {
            connecting = Some(agent.connect(redial.failover.current()));
        }
        let step = tokio::select! {
            () = &mut shutdown => break Ok(()),
            Some(first) = reports.transitions.recv() => {
                agent.report_transitions(batch_after(first, &mut reports.transitions)).await
            }
            Some(trace) = reports.traces.recv() => {
                agent.hold_trace(trace);
                Ok(())
            }
            () = sleep_until_some(agent.traces_due), if agent.traces_due.is_some() => {
                agent.report_traces().await
            }
            _ = statistics_tick.tick() => agent.report_statistics().await,
            _ = heartbeat_tick.tick() => {
                supervisor.alive();
                agent.heartbeat().await;
                Ok(())
            }
            opened = pending_unless_some(&mut connecting) => {
                connecting = None;
                match opened {
                    Ok(link) => {
                        redial.failover.linked();
                        inbound = Some(agent.linked(link, redial.failover.current()));
                        agent.replay().await
                    }
                    Err(error) => {
                        redial.unreachable(&error, &agent.settings.controllers);
                        Ok(())
                    }
                }
            }
            message = next_message(&mut inbound) => match message {
                Some(Ok(message)) => agent.handle(message, &mut redial.backoff, &mut redial.reconnect_at).await,
                Some(Err(status)) => {
                    warn!(%status, "link to the controller failed");
                    agent.link_broken = true;
                    Ok(())
                }
                None => {
                    warn!("the controller closed the link");
                    agent.link_broken = true;
                    Ok(())
                }
            },
            () = tokio::time::sleep_until(redial.reconnect_at), if inbound.is_none() && connecting.is_none() => Ok(()),
        };
        if let Err(error) = step {
            break Err(error);
        }
        if agent.link_broken {
            agent.link_broken = false;
            agent.outbound = None;
            inbound = None;
            redial.lost();
        }
    };
    supervisor.stopping();
    agent.stop(inbound).await;
    result
}

impl Agent {
    /// Opens a link to controller `index` of the settings.
    fn connect(&self, index: usize) -> Connecting {
        let settings = self.settings.clone();
        let url = settings.controllers[index].clone();
        let hello = self.hello();
        Box::pin(async move { link::open(&settings, &url, hello).await })
    }

    /// The link to controller `index` is open: reports go out on it; its
    /// messages come in on the receiver returned.
    fn linked(&mut self, link: Link, index: usize) -> mpsc::UnboundedReceiver<link::Inbound> {
        info!(controller = %self.settings.controllers[index], "linked to the controller");
        self.counters.links_opened.fetch_add(1, Ordering::Relaxed);
        self.outbound = Some(link.outbound);
        self.link_broken = false;
        link.inbound
    }

    /// Ends the link cleanly (the controller sees its end, not a reset,
    /// and has a moment to end its side), then stops the prober.
    async fn stop(mut self, inbound: Option<mpsc::UnboundedReceiver<link::Inbound>>) {
        info!(waiting = self.spool.records(), "stopping");
        // End the stream cleanly (the controller sees its end, not a reset)
        // and give the controller a moment to end its side.
        self.outbound = None;
        if let Some(mut inbound) = inbound {
            let _ = tokio::time::timeout(LINK_CLOSE_WAIT, async {
                while let Some(Some(Ok(_))) = inbound.recv().await {}
            })
            .await;
        }
        let (prober, tracer) = (self.prober, self.tracer);
        // Joining the prober and trace threads blocks briefly.
        let _ = tokio::task::spawn_blocking(move || {
            drop(tracer);
            prober.stop()
        })
        .await;
    }
}

/// `first` and the transitions waiting after it, at most [`MAX_BATCH`].
fn batch_after(
    first: pb::Transition,
    transitions: &mut mpsc::UnboundedReceiver<pb::Transition>,
) -> Vec<pb::Transition> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match transitions.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    batch
}

/// Sleeps until `at` (only polled while it is `Some`).
async fn sleep_until_some(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// A connection attempt in progress.
type Connecting = std::pin::Pin<Box<dyn Future<Output = Result<Link, link::LinkError>> + Send>>;

/// Pends forever while nothing is connecting.
async fn pending_unless_some(future: &mut Option<Connecting>) -> Result<Link, link::LinkError> {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// The next controller message; pends forever without a link.
async fn next_message(
    inbound: &mut Option<tokio::sync::mpsc::UnboundedReceiver<link::Inbound>>,
) -> link::Inbound {
    match inbound {
        Some(messages) => messages.recv().await.flatten(),
        None => std::future::pending().await,
    }
}

/// `base` ± 50 %, so agents of many sites do not reconnect in step.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.5 + fastrand::f64())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// A random boot id (hex).
fn new_boot_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = now_ms().to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn spool_io_lets_the_other_tasks_of_its_worker_run() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let heard = runtime.block_on(async {
            let (tell, told) = std::sync::mpsc::channel();
            let (started, running) = tokio::sync::oneshot::channel();
            // The only worker blocks in "spool I/O" until another task of
            // the runtime has run: without handing that task on, it never
            // would (the wait gives up after 10 s instead of hanging).
            let io = tokio::spawn(async move {
                let _ = started.send(());
                super::off_the_workers(|| told.recv_timeout(Duration::from_secs(10)))
            });
            running.await.expect("the I/O task started");
            tokio::spawn(async move {
                let _ = tell.send(());
            });
            io.await.expect("the I/O task")
        });
        assert_eq!(heard, Ok(()), "another task ran during the spool I/O");
    }
}
