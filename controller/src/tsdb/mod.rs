//! Time series: probe statistics written to VictoriaMetrics through its
//! import API (`POST /api/v1/import`, JSON lines), batched (at most
//! [`FLUSH_INTERVAL`] or [`MAX_BATCH_ROWS`] rows), gzip-compressed, with
//! millisecond timestamps, up to [`POSTS_IN_FLIGHT`] at once (the next
//! batch is encoded while VictoriaMetrics parses the last ones, in
//! parallel). A write that gets no answer or a non-2xx answer has failed:
//! its body goes to a bounded on-disk spool that is replayed, oldest
//! first, in the same POST slots, after an exponential backoff. A body
//! that finds every slot taken (VictoriaMetrics behind, or stuck) waits
//! in the spool too: the writer never waits on VictoriaMetrics, so the
//! agents' reports never wait on it either (at 200,000 devices, a writer
//! waiting for a POST slot held changes back more than a minute). Rows
//! dropped because the spool is full, or refused by VictoriaMetrics as
//! malformed, are counted and logged; nothing else is ever dropped.

mod encode;
pub mod history;
pub mod recent;
mod spool;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use encode::Rows;
pub use encode::{LOSS, RTT, SENT, UP};
use spool::{OffWorker, Spool};

/// A batch is sent at most this long after its first row arrived.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// A batch is sent as soon as it holds this many rows.
pub const MAX_BATCH_ROWS: u64 = 10_000;
/// The most rows one device's sample becomes (six RTT statistics: min,
/// avg, max, jitter, p50, p90; loss, sent, up).
const MAX_ROWS_PER_SAMPLE: u64 = 9;
/// Reports queued for the writer (encoding them) before the next one
/// waits for room (counted).
const QUEUE_DEPTH: usize = 1_024;
/// A write slower than this has failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// POSTs in flight at once (one at a time held a 200,000-device fleet's
/// statistics back: encoding waited for each answer).
pub const POSTS_IN_FLIGHT: usize = 4;
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// One device's probe statistics over a reporting period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStatistics {
    /// The device.
    pub device_id: i64,
    /// Probes sent.
    pub sent: u32,
    /// Replies received.
    pub received: u32,
    /// Fastest reply, µs.
    pub rtt_min_us: u32,
    /// Mean reply time, µs.
    pub rtt_avg_us: u32,
    /// Slowest reply, µs.
    pub rtt_max_us: u32,
    /// Mean absolute difference between consecutive replies, µs.
    pub jitter_us: u32,
    /// The period's median and 90th percentile reply time, µs (exact, from
    /// the agent); `None` from an agent that does not send them.
    pub rtt_quantiles_us: Option<(u32, u32)>,
}

/// Statistics from one agent for one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatisticsReport {
    /// The reporting agent.
    pub agent_id: String,
    /// End of the period, Unix ms: the samples' timestamp.
    pub period_end_ms: i64,
    /// Per device.
    pub devices: Vec<DeviceStatistics>,
}

/// What a device's series are labelled with, and whether it is up.
/// Cheap to clone: one per device per report period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLabels {
    /// `device` label.
    pub name: Arc<str>,
    /// `address` label.
    pub address: Arc<str>,
    /// `site` label.
    pub site: Arc<str>,
    /// `ward_device_up`.
    pub up: bool,
}

impl DeviceLabels {
    /// `device`'s labels and status.
    pub fn of(device: &crate::store::Device) -> Self {
        Self {
            name: device.spec.name.as_str().into(),
            address: device.spec.address.to_string().into(),
            site: device.spec.site.as_str().into(),
            up: device.status == crate::store::Status::Up,
        }
    }
}

/// A device's statistics with the labels its series carry.
#[derive(Clone, Debug)]
pub struct DeviceSample {
    /// The device's id (keys the sent counter).
    pub device_id: i64,
    /// Its labels and status.
    pub labels: DeviceLabels,
    /// The numbers.
    pub statistics: DeviceStatistics,
}

/// What the writer receives: one agent's samples for one period.
#[derive(Debug)]
pub struct SampleBatch {
    /// `agent` label.
    pub agent_id: String,
    /// Timestamp of every row, Unix ms.
    pub at_ms: i64,
    /// The devices.
    pub samples: Vec<DeviceSample>,
}

/// Where and how to write.
#[derive(Clone, Debug)]
pub struct TsdbConfig {
    /// VictoriaMetrics base URL, e.g. `http://127.0.0.1:8428`.
    pub url: String,
    /// Directory of the spool.
    pub spool_dir: PathBuf,
    /// Most bytes (compressed) the spool holds.
    pub spool_max_bytes: u64,
}

/// Writer counters, for `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct TsdbMetrics {
    /// Rows VictoriaMetrics accepted.
    pub rows_written: AtomicU64,
    /// Writes that failed (no answer or not 2xx).
    pub write_errors: AtomicU64,
    /// Rows lost: spool full, or refused as malformed.
    pub rows_dropped: AtomicU64,
    /// Statistics reports that waited for room in the writer's queue (their
    /// acknowledgement waited with them): the writer's encoding was behind.
    pub queue_full_waits: AtomicU64,
    /// Rows waiting in the spool.
    pub spooled_rows: AtomicU64,
    /// Bytes in the spool.
    pub spooled_bytes: AtomicU64,
    /// The last write failed.
    pub failing: AtomicBool,
}

impl TsdbMetrics {
    /// Every counter and gauge with its Prometheus name, type and help, as
    /// `/metrics` exports it.
    pub fn exported(&self) -> [(&'static str, &'static str, &'static str, &AtomicU64); 6] {
        [
            (
                "ward_tsdb_rows_written_total",
                "counter",
                "Time-series rows VictoriaMetrics accepted.",
                &self.rows_written,
            ),
            (
                "ward_tsdb_write_errors_total",
                "counter",
                "Time-series writes that failed (retried from the spool).",
                &self.write_errors,
            ),
            (
                "ward_tsdb_rows_dropped_total",
                "counter",
                "Time-series rows lost: spool full, or refused as malformed.",
                &self.rows_dropped,
            ),
            (
                "ward_tsdb_queue_full_waits_total",
                "counter",
                "Statistics reports whose acknowledgement waited for room in the writer's queue.",
                &self.queue_full_waits,
            ),
            (
                "ward_tsdb_spooled_rows",
                "gauge",
                "Time-series rows waiting in the spool.",
                &self.spooled_rows,
            ),
            (
                "ward_tsdb_spooled_bytes",
                "gauge",
                "Bytes in the time-series spool.",
                &self.spooled_bytes,
            ),
        ]
    }
}

/// Why the writer cannot start.
#[derive(Debug, thiserror::Error)]
#[error("time-series spool directory {dir}: {source}; set tsdb.spool_dir to a writable directory")]
pub struct TsdbError {
    dir: String,
    source: std::io::Error,
}

/// The handle the controller holds: hands batches to the writer task.
pub struct Tsdb {
    queue: mpsc::Sender<SampleBatch>,
    metrics: Arc<TsdbMetrics>,
    url: String,
}

impl Tsdb {
    /// Opens the spool and starts the writer, which runs until `shutdown`
    /// completes, then writes (or spools) what it holds and ends.
    pub fn start(
        config: TsdbConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), TsdbError> {
        let spool =
            Spool::open(&config.spool_dir, config.spool_max_bytes).map_err(|source| TsdbError {
                dir: config.spool_dir.display().to_string(),
                source,
            })?;
        let metrics = Arc::new(TsdbMetrics::default());
        let (queue, batches) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            poster: Poster {
                import_url: format!("{}/api/v1/import", config.url.trim_end_matches('/')),
                http: reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .build()
                    .unwrap_or_else(|_| reqwest::Client::new()),
            },
            posts: tokio::task::JoinSet::new(),
            retry_at: None,
            spool: OffWorker::new(spool),
            metrics: Arc::clone(&metrics),
            pending: Rows::default(),
            sent_totals: HashMap::new(),
            backoff: FIRST_RETRY,
        };
        writer.publish_spool();
        let task = tokio::spawn(writer.run(batches, shutdown));
        Ok((
            Self {
                queue,
                metrics,
                url: config.url,
            },
            task,
        ))
    }

    /// Hands `batch` to the writer, waiting while its queue is full: the
    /// caller acknowledges the statistics only once this returns, so
    /// nothing acknowledged is ever dropped here. Fails only when the
    /// writer has stopped (the controller is shutting down): then nothing
    /// may be acknowledged, and the agent keeps the batch.
    pub async fn write(&self, batch: SampleBatch) -> Result<(), WriterStopped> {
        if self.queue.capacity() == 0 {
            self.metrics
                .queue_full_waits
                .fetch_add(1, Ordering::Relaxed);
        }
        self.queue.send(batch).await.map_err(|_| WriterStopped)
    }

    /// The counters.
    pub fn metrics(&self) -> &TsdbMetrics {
        &self.metrics
    }

    /// VictoriaMetrics base URL (for reading history back).
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The writer task has ended: statistics can no longer be taken.
#[derive(Debug, thiserror::Error)]
#[error("the time-series writer has stopped; the agent keeps its statistics and sends them again")]
pub struct WriterStopped;

/// Why a write did not land.
enum WriteFailure {
    /// Try again later: no answer, 5xx, 408, 429.
    Unavailable(String),
    /// The body itself was refused: trying again cannot help.
    Refused(String),
}

struct Writer {
    poster: Poster,
    /// The POSTs in flight.
    posts: tokio::task::JoinSet<Posted>,
    spool: OffWorker,
    metrics: Arc<TsdbMetrics>,
    pending: Rows,
    sent_totals: HashMap<(i64, String), u64>,
    /// Spooled bodies wait until then (the backoff after a failed
    /// write); `None`: they are sent whenever a POST slot is free.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Writer {
    async fn run(
        mut self,
        mut batches: mpsc::Receiver<SampleBatch>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut flush_at: Option<Instant> = None;
        loop {
            self.replay_waiting().await;
            let far = Instant::now() + Duration::from_secs(3_600);
            tokio::select! {
                batch = batches.recv() => {
                    let Some(batch) = batch else { break };
                    self.add(batch).await;
                    flush_at.get_or_insert_with(|| Instant::now() + FLUSH_INTERVAL);
                    if self.pending.count >= MAX_BATCH_ROWS {
                        self.flush().await;
                        flush_at = None;
                    }
                }
                () = tokio::time::sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => {
                    self.flush().await;
                    flush_at = None;
                }
                () = tokio::time::sleep_until(self.retry_at.unwrap_or(far)), if self.retry_at.is_some() => {
                    self.retry_at = None;
                }
                Some(posted) = self.posts.join_next(), if !self.posts.is_empty() => {
                    self.posted(posted).await;
                }
                () = &mut shutdown => break,
            }
        }
        while let Ok(batch) = batches.try_recv() {
            self.add(batch).await;
        }
        self.flush().await;
        while let Some(posted) = self.posts.join_next().await {
            self.posted(posted).await;
        }
        if !self.spool.get().is_empty() {
            info!(
                rows = self.spool.get().rows(),
                "time-series rows left in the spool for the next start"
            );
        }
    }

    /// Encodes `batch` into the pending rows, off the async workers (a
    /// period of a large site is hundreds of thousands of rows), flushing
    /// whenever the next sample could take a POST past [`MAX_BATCH_ROWS`]:
    /// however large the report, no POST is.
    async fn add(&mut self, batch: SampleBatch) {
        let mut rest = Some(batch);
        while let Some(batch) = rest.take() {
            let mut pending = std::mem::take(&mut self.pending);
            let mut sent_totals = std::mem::take(&mut self.sent_totals);
            let encoded = tokio::task::spawn_blocking(move || {
                let mut batch = batch;
                let room = MAX_BATCH_ROWS.saturating_sub(pending.count) / MAX_ROWS_PER_SAMPLE;
                let fits = usize::try_from(room).unwrap_or(usize::MAX);
                let rest = (batch.samples.len() > fits).then(|| SampleBatch {
                    agent_id: batch.agent_id.clone(),
                    at_ms: batch.at_ms,
                    samples: batch.samples.split_off(fits),
                });
                for sample in &batch.samples {
                    pending.push_sample(sample, &batch.agent_id, batch.at_ms, &mut sent_totals);
                }
                (pending, sent_totals, rest)
            })
            .await;
            match encoded {
                Ok((pending, sent_totals, left)) => {
                    self.pending = pending;
                    self.sent_totals = sent_totals;
                    rest = left;
                }
                Err(error) => {
                    error!(%error, "encoding time-series rows failed; the batch is lost");
                    return;
                }
            }
            if rest.is_some() {
                self.flush().await;
            }
        }
    }

    /// Writes the pending rows, or spools them behind what already waits
    /// or when every POST slot is taken.
    async fn flush(&mut self) {
        if self.pending.count == 0 {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        let Ok((body, rows)) = tokio::task::spawn_blocking(move || pending.take_gzip()).await
        else {
            error!("compressing time-series rows failed; the batch is lost");
            return;
        };
        if self.spool.get().is_empty() && self.posts.len() < POSTS_IN_FLIGHT {
            let poster = self.poster.clone();
            self.posts.spawn(async move {
                let outcome = poster.post(body.clone()).await;
                Posted {
                    body: Body::Fresh(body),
                    rows,
                    outcome,
                }
            });
            return;
        }
        self.spool_body(body, rows).await;
    }

    /// Sends spooled bodies, oldest first, in the free POST slots, unless
    /// a backoff holds them.
    async fn replay_waiting(&mut self) {
        while self.retry_at.is_none()
            && self.posts.len() < POSTS_IN_FLIGHT
            && self.spool.get().has_waiting()
        {
            let Some((seq, rows, body)) = self.spool.run(Spool::take_oldest).await else {
                break;
            };
            let body = match body {
                Ok(body) => body,
                Err(error) => {
                    self.refused(Body::Spooled(seq), rows, &format!("unreadable: {error}"))
                        .await;
                    continue;
                }
            };
            let poster = self.poster.clone();
            self.posts.spawn(async move {
                Posted {
                    outcome: poster.post(body).await,
                    body: Body::Spooled(seq),
                    rows,
                }
            });
        }
        self.publish_spool();
    }

    /// A POST ended: counted as written (a spooled body removed), or its
    /// body spooled behind what waits (no answer: replays back off), or
    /// dropped and counted (refused).
    async fn posted(&mut self, posted: Result<Posted, tokio::task::JoinError>) {
        let Posted {
            body,
            rows,
            outcome,
        } = match posted {
            Ok(posted) => posted,
            Err(error) => {
                error!(%error, "a time-series POST task failed; its rows are not counted");
                return;
            }
        };
        match (outcome, body) {
            (Ok(()), body) => {
                self.written(rows);
                self.retry_at = None;
                self.backoff = FIRST_RETRY;
                if let Body::Spooled(seq) = body
                    && let Err(error) = self.spool.run(move |spool| spool.sent(seq)).await
                {
                    error!(%error, "cannot remove a written body from the time-series spool");
                }
            }
            (Err(WriteFailure::Unavailable(reason)), body) => {
                self.failed(&reason);
                match body {
                    Body::Fresh(body) => self.spool_body(body, rows).await,
                    Body::Spooled(seq) => self.spool.run(move |spool| spool.unsent(seq)).await,
                }
                if self.retry_at.is_none() {
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(LAST_RETRY);
                }
            }
            (Err(WriteFailure::Refused(reason)), body) => self.refused(body, rows, &reason).await,
        }
        self.publish_spool();
    }

    /// VictoriaMetrics refused `body` (or it cannot be read): its rows are
    /// dropped and counted; a spooled one is set aside for an operator.
    async fn refused(&mut self, body: Body, rows: u64, reason: &str) {
        self.metrics.rows_dropped.fetch_add(rows, Ordering::Relaxed);
        let Body::Spooled(seq) = body else {
            error!(rows, %reason, "VictoriaMetrics refused a batch; rows dropped");
            return;
        };
        match self.spool.run(move |spool| spool.reject(seq)).await {
            Ok(Some((_, path))) => {
                error!(rows, %reason, file = %path.display(), "spooled time-series body refused; set aside, rows dropped");
            }
            Ok(None) => {}
            Err(error) => {
                error!(rows, %reason, %error, "spooled time-series body refused and cannot be set aside; rows dropped");
            }
        }
    }

    /// Puts `body` in the spool, behind what waits.
    async fn spool_body(&mut self, body: Vec<u8>, rows: u64) {
        match self.spool.run(move |spool| spool.push(&body, rows)).await {
            Ok(0) => {}
            Ok(dropped) => {
                self.metrics
                    .rows_dropped
                    .fetch_add(dropped, Ordering::Relaxed);
                warn!(dropped, "time-series spool full; oldest rows dropped");
            }
            Err(error) => {
                self.metrics.rows_dropped.fetch_add(rows, Ordering::Relaxed);
                error!(rows, %error, "cannot write the time-series spool; rows dropped");
            }
        }
        self.publish_spool();
    }

    fn written(&self, rows: u64) {
        self.metrics.rows_written.fetch_add(rows, Ordering::Relaxed);
        self.metrics.failing.store(false, Ordering::Relaxed);
    }

    fn failed(&self, reason: &str) {
        self.metrics.write_errors.fetch_add(1, Ordering::Relaxed);
        if !self.metrics.failing.swap(true, Ordering::Relaxed) {
            warn!(%reason, "VictoriaMetrics write failed; spooling and retrying");
        }
    }

    fn publish_spool(&self) {
        self.metrics
            .spooled_rows
            .store(self.spool.get().rows(), Ordering::Relaxed);
        self.metrics
            .spooled_bytes
            .store(self.spool.get().bytes(), Ordering::Relaxed);
    }
}

/// Where and how rows are POSTed (shared by the POSTs in flight).
#[derive(Clone)]
struct Poster {
    import_url: String,
    http: reqwest::Client,
}

/// What a POST sent.
enum Body {
    /// Rows just encoded (spooled if the POST fails).
    Fresh(Vec<u8>),
    /// The spooled body of this sequence number.
    Spooled(u64),
}

/// A POST's body, its rows and how it ended.
struct Posted {
    body: Body,
    rows: u64,
    outcome: Result<(), WriteFailure>,
}

impl Poster {
    async fn post(&self, body: Vec<u8>) -> Result<(), WriteFailure> {
        let response = self
            .http
            .post(&self.import_url)
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(body)
            .send()
            .await
            .map_err(|error| {
                WriteFailure::Unavailable(format!(
                    "POST {}: {}",
                    ward_settings::redact_secrets(&self.import_url),
                    error.without_url()
                ))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = response.text().await.unwrap_or_default();
        let reason = format!(
            "POST {}: HTTP {status}: {}",
            ward_settings::redact_secrets(&self.import_url),
            detail.trim()
        );
        if status.is_client_error()
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(WriteFailure::Refused(reason))
        } else {
            Err(WriteFailure::Unavailable(reason))
        }
    }
}
