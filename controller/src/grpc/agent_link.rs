//! The `ward.v1.AgentLink` service: one bidirectional stream per agent.
//!
//! A session: the agent's `Hello` (within [`HELLO_TIMEOUT`]) is checked
//! against the inventory (and, with mTLS, the client certificate); a
//! refused agent gets a `Refusal` naming what to do, and the stream ends.
//! Otherwise the agent gets the devices it owns (of its site's, see
//! `store::groups`) as a snapshot, then an update after every inventory
//! or ownership change, on any controller. Reports are handled in stream
//! order; a batch is acknowledged only after it is durable in the store
//! (transitions) or handed to the time-series writer (statistics), so the
//! cumulative `Ack` is exact. When the store fails the stream ends with
//! `UNAVAILABLE` and nothing after the last ack counts as received: the
//! agent replays it from its spool.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status as GrpcStatus, Streaming};
use tracing::{info, warn};
use ward_proto::v1::agent_link_server::AgentLink;
use ward_proto::v1::{
    self as pb, AgentMessage, ControllerMessage, DeviceState, RefusalCode, RejectionReason,
    agent_message, controller_message,
};

use crate::services::{AgentPresence, App, Core, Guard, Reports};
use crate::store::{AgentRecord, Device, ReportedTransition, Status, TransitionReport};
use crate::time::now_ms;
use crate::tsdb::{DeviceLabels, DeviceStatistics, StatisticsReport};
use ward_domain::sight::Blindness;

/// How long a new stream may take to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A link with no message for this long is dead (agents heartbeat every
/// second).
const SILENCE_LIMIT: Duration = Duration::from_secs(15);
/// Handling one agent message slower than this is logged.
const SLOW_MESSAGE: Duration = Duration::from_millis(250);
/// Messages buffered towards one agent.
const OUTBOUND_BUFFER: usize = 64;

/// Who the transport says the peer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerIdentity {
    /// Plaintext (loopback only, when configured): trust the Hello.
    Unauthenticated,
    /// The client certificate: the identity it names, when it expires
    /// (Unix ms), its SHA-256 fingerprint.
    Certificate {
        /// Its common name.
        name: String,
        /// When it expires.
        expires_at_ms: Option<i64>,
        /// How it is known when revoked.
        fingerprint: String,
    },
    /// TLS without a client certificate: not an agent.
    NoCertificate,
}

/// Finds the identity of a request's peer; set by the TLS layer.
pub type IdentifyPeer =
    Arc<dyn Fn(&Request<Streaming<AgentMessage>>) -> PeerIdentity + Send + Sync>;

/// The services an agent link uses.
#[derive(Clone)]
struct LinkServices {
    core: Arc<Core>,
    reports: Arc<Reports>,
    presence: Arc<AgentPresence>,
    guard: Arc<Guard>,
}

/// The service.
pub struct AgentLinkService {
    services: LinkServices,
    identify: IdentifyPeer,
}

impl AgentLinkService {
    /// Links agents to `app`'s services; `identify` names each peer.
    pub fn new(app: &App, identify: IdentifyPeer) -> Self {
        Self {
            services: LinkServices {
                core: Arc::clone(&app.core),
                reports: Arc::clone(&app.reports),
                presence: Arc::clone(&app.presence),
                guard: Arc::clone(&app.guard),
            },
            identify,
        }
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<ControllerMessage, GrpcStatus>> + Send>>;

#[tonic::async_trait]
impl AgentLink for AgentLinkService {
    type ConnectStream = Outbound;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Outbound>, GrpcStatus> {
        let peer = (self.identify)(&request);
        let inbound = request.into_inner();
        let (outbound, receiver) = mpsc::channel(OUTBOUND_BUFFER);
        tokio::spawn(session(self.services.clone(), peer, inbound, outbound));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

type Sender = mpsc::Sender<Result<ControllerMessage, GrpcStatus>>;

fn message(kind: controller_message::Kind) -> Result<ControllerMessage, GrpcStatus> {
    Ok(ControllerMessage { kind: Some(kind) })
}

async fn refuse(outbound: &Sender, code: RefusalCode, text: String) {
    warn!(?code, reason = %text, "agent refused");
    let _ = outbound
        .send(message(controller_message::Kind::Refusal(pb::Refusal {
            code: code.into(),
            message: text,
        })))
        .await;
}

/// The agent's Hello, the stream's first message within
/// [`HELLO_TIMEOUT`]; `None` once the agent was refused or went away.
async fn hello(inbound: &mut Streaming<AgentMessage>, outbound: &Sender) -> Option<pb::Hello> {
    let refusal = match tokio::time::timeout(HELLO_TIMEOUT, inbound.next()).await {
        Ok(Some(Ok(AgentMessage {
            kind: Some(agent_message::Kind::Hello(hello)),
        }))) => return Some(hello),
        Ok(Some(Ok(_))) => "the first message must be Hello".to_owned(),
        Ok(Some(Err(status))) => {
            warn!(%status, "agent stream failed before Hello");
            return None;
        }
        Ok(None) => return None,
        Err(_) => format!("no Hello within {HELLO_TIMEOUT:?}"),
    };
    refuse(outbound, RefusalCode::ProtocolError, refusal).await;
    None
}

/// One agent's stream, from Hello to the end.
async fn session(
    services: LinkServices,
    peer: PeerIdentity,
    mut inbound: Streaming<AgentMessage>,
    outbound: Sender,
) {
    let Some(hello) = hello(&mut inbound, &outbound).await else {
        return;
    };
    let agent = match admit(&services, &peer, &hello).await {
        Ok(agent) => agent,
        // The inventory cannot be read: not the agent's fault, so no
        // refusal; the stream ends and the agent retries soon.
        Err((RefusalCode::Unspecified, text)) => {
            warn!(agent = %hello.agent_id, reason = %text, "agent not admitted for now");
            let _ = outbound.send(Err(GrpcStatus::unavailable(text))).await;
            return;
        }
        Err((code, text)) => return refuse(&outbound, code, text).await,
    };
    let opened_ms = now_ms();
    services
        .presence
        .link_opened(&agent, &hello.version, &hello.boot_id, opened_ms);
    if let PeerIdentity::Certificate {
        expires_at_ms: Some(expires_at_ms),
        ..
    } = peer
    {
        services
            .guard
            .note_certificate(&format!("agent {}", agent.id), expires_at_ms);
    }
    let probe_families = probe_families(hello.capabilities.as_ref());
    info!(agent = %agent.id, site = %agent.site, version = %hello.version, boot = %hello.boot_id, families = ?probe_families, "agent connected");
    let mut link = Link {
        services: services.clone(),
        sight_reports: format!("agent-sight:{}:{}:{opened_ms}", agent.id, hello.boot_id),
        agent,
        probe_families,
        blindness: None,
        boot_id: hello.boot_id,
        assigned: HashMap::new(),
        labels: HashMap::new(),
        generation: 0,
        outbound,
        fingerprint: match &peer {
            PeerIdentity::Certificate { fingerprint, .. } => Some(fingerprint.clone()),
            _ => None,
        },
    };
    let ended = link.run(&mut inbound).await;
    services.presence.link_closed(&link.agent.id, now_ms());
    match ended {
        Ok(()) => info!(agent = %link.agent.id, "agent disconnected"),
        Err(status) => {
            warn!(agent = %link.agent.id, %status, "agent link closed by the controller");
            let _ = link.outbound.send(Err(status)).await;
        }
    }
}

/// The refusal of agent `id`'s revoked certificate.
fn revoked_refusal(id: &str, fingerprint: &str, revoked_at_ms: i64) -> (RefusalCode, String) {
    (
        RefusalCode::Revoked,
        format!(
            "the certificate of agent `{id}` (SHA-256 {fingerprint}) was revoked at {}: \
             issue a new one with `ward-controller certs agent {id}`",
            crate::time::rfc3339(revoked_at_ms)
        ),
    )
}

/// The Hello names an agent and a boot, and the client certificate (when
/// the link is over mTLS) is that agent's.
fn identity_matches(peer: &PeerIdentity, hello: &pb::Hello) -> Result<(), (RefusalCode, String)> {
    if hello.agent_id.is_empty() || hello.boot_id.is_empty() {
        return Err((
            RefusalCode::ProtocolError,
            "Hello needs an agent_id and a boot_id".into(),
        ));
    }
    if *peer == PeerIdentity::NoCertificate {
        return Err((
            RefusalCode::IdentityMismatch,
            format!(
                "agent `{}` presented no client certificate: agents prove who they are with \
                 theirs (`ward-controller certs agent {}`, the agent's --tls-cert and --tls-key)",
                hello.agent_id, hello.agent_id
            ),
        ));
    }
    if let PeerIdentity::Certificate { name, .. } = peer
        && *name != hello.agent_id
    {
        return Err((
            RefusalCode::IdentityMismatch,
            format!(
                "the client certificate is for `{name}`, but the agent says it is `{}`: \
                 give each agent its own certificate (`ward-controller certs agent {}`)",
                hello.agent_id, hello.agent_id
            ),
        ));
    }
    Ok(())
}

/// The agent named in `hello`, if it may connect.
async fn admit(
    services: &LinkServices,
    peer: &PeerIdentity,
    hello: &pb::Hello,
) -> Result<AgentRecord, (RefusalCode, String)> {
    identity_matches(peer, hello)?;
    let agent = services
        .presence
        .agent(&hello.agent_id)
        .await
        .map_err(|error| {
            (
                RefusalCode::Unspecified,
                format!("the controller cannot read its inventory: {error}"),
            )
        })?
        .ok_or_else(|| {
            (
                RefusalCode::UnknownAgent,
                format!(
                    "agent `{}` is not registered: run `ward-controller agents add {} --site {}` \
                     or POST /api/v1/agents",
                    hello.agent_id,
                    hello.agent_id,
                    if hello.site.is_empty() {
                        "SITE"
                    } else {
                        &hello.site
                    }
                ),
            )
        })?;
    if let PeerIdentity::Certificate { fingerprint, .. } = peer {
        let revoked = services
            .core
            .store
            .certificate_presented(fingerprint, &agent.id, now_ms())
            .await
            .map_err(|error| {
                (
                    RefusalCode::Unspecified,
                    format!("the controller cannot check the certificate: {error}"),
                )
            })?;
        if let Some(revoked_at_ms) = revoked {
            return Err(revoked_refusal(&agent.id, fingerprint, revoked_at_ms));
        }
    }
    if !hello.site.is_empty() && hello.site != agent.site {
        return Err((
            RefusalCode::ProtocolError,
            format!(
                "agent `{}` is registered for site `{}`, not `{}`: fix the agent's --site",
                agent.id, agent.site, hello.site
            ),
        ));
    }
    Ok(agent)
}

struct Link {
    services: LinkServices,
    agent: AgentRecord,
    /// The families it opened ICMP sockets for.
    probe_families: Vec<&'static str>,
    /// What it could not probe when last settled (`None`: not yet).
    blindness: Option<Blindness>,
    /// The boot id of the controller's reports about this link's sight.
    sight_reports: String,
    boot_id: String,
    /// What the agent was told to probe, by device id.
    assigned: HashMap<i64, pb::ProbeTarget>,
    /// Their time-series labels; `up` follows this link's reports.
    labels: HashMap<i64, DeviceLabels>,
    generation: u64,
    outbound: Sender,
    /// The fingerprint of its client certificate (none in plaintext).
    fingerprint: Option<String>,
}

impl Link {
    async fn run(&mut self, inbound: &mut Streaming<AgentMessage>) -> Result<(), GrpcStatus> {
        let mut inventory = self.services.core.live.inventory_changes();
        inventory.mark_unchanged();
        let mut revocations = self.services.core.live.revocations();
        revocations.mark_unchanged();
        let stopped = self.services.core.live.stopped();
        tokio::pin!(stopped);
        self.send_assignment().await?;
        loop {
            tokio::select! {
                () = &mut stopped => {
                    return Err(GrpcStatus::unavailable("the controller is shutting down; reconnect shortly"));
                }
                next = tokio::time::timeout(SILENCE_LIMIT, inbound.next()) => match next {
                    Err(_) => return Err(GrpcStatus::deadline_exceeded(format!("no message from the agent for {SILENCE_LIMIT:?}"))),
                    Ok(None) => return Ok(()),
                    Ok(Some(Err(status))) => {
                        warn!(agent = %self.agent.id, %status, "agent stream failed");
                        return Ok(());
                    }
                    Ok(Some(Ok(message))) => self.handle(message).await?,
                },
                changed = inventory.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    self.send_assignment().await?;
                }
                changed = revocations.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if let Some((code, text)) = self.revoked().await {
                        refuse(&self.outbound, code, text).await;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The refusal to end this link with, if its certificate was revoked.
    async fn revoked(&self) -> Option<(RefusalCode, String)> {
        let fingerprint = self.fingerprint.as_deref()?;
        match self
            .services
            .core
            .store
            .certificate_presented(fingerprint, &self.agent.id, now_ms())
            .await
        {
            Ok(revoked_at_ms) => {
                revoked_at_ms.map(|at| revoked_refusal(&self.agent.id, fingerprint, at))
            }
            // Counted by the store; checked again at the next revocation,
            // and the link stays.
            Err(_) => None,
        }
    }

    async fn send(&self, kind: controller_message::Kind) -> Result<(), GrpcStatus> {
        self.outbound
            .send(message(kind))
            .await
            .map_err(|_| GrpcStatus::cancelled("the agent went away"))
    }

    /// The first call sends a snapshot; later calls send what changed.
    async fn send_assignment(&mut self) -> Result<(), GrpcStatus> {
        let devices = self.services.core.devices().await.map_err(|error| {
            GrpcStatus::unavailable(format!("the status database is not answering: {error}"))
        })?;
        let wanted: HashMap<i64, pb::ProbeTarget> = devices
            .iter()
            .filter(|device| {
                device.agent.as_deref() == Some(self.agent.id.as_str()) && device.spec.enabled
            })
            .map(|device| (device.id, probe_target(device)))
            .collect();
        let first = self.generation == 0;
        self.generation += 1;
        if first {
            let mut targets: Vec<pb::ProbeTarget> = wanted.values().cloned().collect();
            targets.sort_by_key(|target| target.device_id);
            info!(agent = %self.agent.id, devices = targets.len(), "assignment sent");
            self.send(controller_message::Kind::Snapshot(pb::AssignmentSnapshot {
                generation: self.generation,
                targets,
            }))
            .await?;
        } else {
            let mut upserts: Vec<pb::ProbeTarget> = wanted
                .iter()
                .filter(|(id, target)| self.assigned.get(id) != Some(target))
                .map(|(_, target)| target.clone())
                .collect();
            upserts.sort_by_key(|target| target.device_id);
            let mut removed: Vec<u64> = self
                .assigned
                .keys()
                .filter(|id| !wanted.contains_key(id))
                .filter_map(|&id| u64::try_from(id).ok())
                .collect();
            removed.sort_unstable();
            if upserts.is_empty() && removed.is_empty() {
                self.generation -= 1;
                return Ok(());
            }
            self.send(controller_message::Kind::Update(pb::AssignmentUpdate {
                generation: self.generation,
                upserts,
                removed_device_ids: removed,
            }))
            .await?;
        }
        self.assigned = wanted;
        self.labels = devices
            .iter()
            .filter(|device| self.assigned.contains_key(&device.id))
            .map(|device| (device.id, DeviceLabels::of(device)))
            .collect();
        let assigned = devices
            .iter()
            .filter(|device| self.assigned.contains_key(&device.id));
        self.settle_sight(Blindness::of(assigned, &self.probe_families))
            .await
    }

    /// Once per change of what the agent cannot probe (and at the start,
    /// which resolves an `AgentDown` from its absence): the devices it
    /// cannot probe become `unknown`, and its `AgentDown` alert is open
    /// while it is blind, in one transaction.
    async fn settle_sight(&mut self, blindness: Blindness) -> Result<(), GrpcStatus> {
        let unchanged = self.blindness.as_ref().is_some_and(|last| {
            last.families == blindness.families
                && last.devices.len() == blindness.devices.len()
                && last
                    .devices
                    .iter()
                    .zip(&blindness.devices)
                    .all(|(a, b)| a.0 == b.0)
        });
        if unchanged {
            return Ok(());
        }
        let reason = blindness.reason(&self.agent.id);
        if let Some(reason) = &reason {
            warn!(agent = %self.agent.id, %reason, "agent is blind to some of its devices");
        }
        self.services
            .presence
            .agent_sight(
                &self.agent,
                &self.probe_families,
                &blindness,
                (&self.sight_reports, self.generation),
                now_ms(),
            )
            .await
            .map_err(|error| {
                GrpcStatus::unavailable(format!("the status database is not answering: {error}"))
            })?;
        self.blindness = Some(blindness);
        Ok(())
    }

    async fn handle(&mut self, message: AgentMessage) -> Result<(), GrpcStatus> {
        let started = std::time::Instant::now();
        let kind = match &message.kind {
            Some(agent_message::Kind::Transitions(_)) => "transitions",
            Some(agent_message::Kind::Statistics(_)) => "statistics",
            Some(agent_message::Kind::Heartbeat(_)) => "heartbeat",
            _ => "other",
        };
        let handled = self.dispatch(message).await;
        let elapsed = started.elapsed();
        if elapsed > SLOW_MESSAGE {
            warn!(agent = %self.agent.id, kind, elapsed_ms = elapsed.as_millis(), "slow agent message: reports behind it wait");
        }
        handled
    }

    async fn dispatch(&mut self, message: AgentMessage) -> Result<(), GrpcStatus> {
        match message.kind {
            Some(agent_message::Kind::Transitions(batch)) => self.transitions(batch).await,
            Some(agent_message::Kind::Statistics(batch)) => self.statistics(batch).await,
            Some(agent_message::Kind::Heartbeat(heartbeat)) => {
                let counters = heartbeat.counters.unwrap_or_default();
                self.services
                    .presence
                    .heartbeat(&self.agent.id, counters, now_ms());
                Ok(())
            }
            Some(agent_message::Kind::Hello(_)) | None => Err(GrpcStatus::invalid_argument(
                "Hello is only the first message; every message needs a kind",
            )),
        }
    }

    /// Splits a report into what this agent may report and what it may not.
    fn screen(&self, device_id: u64) -> Result<i64, RejectionReason> {
        let id = i64::try_from(device_id).map_err(|_| RejectionReason::UnknownDevice)?;
        if self.assigned.contains_key(&id) {
            Ok(id)
        } else {
            Err(RejectionReason::NotAssigned)
        }
    }

    async fn transitions(&mut self, batch: pb::TransitionBatch) -> Result<(), GrpcStatus> {
        let mut rejected = Vec::new();
        let mut transitions = Vec::with_capacity(batch.transitions.len());
        for transition in batch.transitions {
            let status = match DeviceState::try_from(transition.state) {
                Ok(DeviceState::Up) => Status::Up,
                Ok(DeviceState::Down) => Status::Down,
                Ok(DeviceState::Unreachable) => Status::Unreachable,
                _ => {
                    rejected.push(rejection(transition.device_id, RejectionReason::Malformed));
                    continue;
                }
            };
            match self.screen(transition.device_id) {
                Ok(device_id) => transitions.push(ReportedTransition {
                    device_id,
                    status,
                    probed_at_ms: transition.probed_at_unix_us.div_euclid(1_000),
                    last_rtt_us: transition.last_rtt_us,
                    reason: if transition.detail.is_empty() {
                        reason_text(transition.reason)
                    } else {
                        transition.detail
                    },
                }),
                Err(reason) => rejected.push(rejection(transition.device_id, reason)),
            }
        }
        for transition in &transitions {
            if let Some(labels) = self.labels.get_mut(&transition.device_id) {
                labels.up = transition.status == Status::Up;
            }
        }
        let report = TransitionReport {
            agent_alerts: Vec::new(),
            agent_id: self.agent.id.clone(),
            boot_id: self.boot_id.clone(),
            seq: batch.seq,
            transitions,
        };
        self.services
            .reports
            .apply_report(&report, now_ms())
            .await
            .map_err(|error| {
                GrpcStatus::unavailable(format!(
                    "the status database is not answering: {error}; replay from your spool"
                ))
            })?;
        self.ack(batch.seq, rejected).await
    }

    async fn statistics(&mut self, batch: pb::StatisticsBatch) -> Result<(), GrpcStatus> {
        let mut rejected = Vec::new();
        let mut devices = Vec::with_capacity(batch.devices.len());
        for entry in batch.devices {
            match self.screen(entry.device_id) {
                Ok(device_id) => devices.push(DeviceStatistics {
                    device_id,
                    sent: entry.sent,
                    received: entry.received,
                    rtt_min_us: entry.rtt_min_us,
                    rtt_avg_us: entry.rtt_avg_us,
                    rtt_max_us: entry.rtt_max_us,
                    jitter_us: entry.jitter_us,
                    rtt_quantiles_us: entry.rtt_p50_us.zip(entry.rtt_p90_us),
                }),
                Err(reason) => rejected.push(rejection(entry.device_id, reason)),
            }
        }
        let report = StatisticsReport {
            agent_id: self.agent.id.clone(),
            period_end_ms: batch.period_start_unix_ms + i64::from(batch.period_ms),
            devices,
        };
        // Labelled from this link's own map: no device list per report.
        // Acknowledged only once the writer holds them (it waits while the
        // writer's queue is full): nothing acknowledged is dropped.
        self.services
            .reports
            .record_statistics_with(&report, |id| self.labels.get(&id).cloned())
            .await
            .map_err(|stopped| GrpcStatus::unavailable(stopped.to_string()))?;
        self.ack(batch.seq, rejected).await
    }

    async fn ack(&self, seq: u64, rejected: Vec<pb::RejectedEntry>) -> Result<(), GrpcStatus> {
        if !rejected.is_empty() {
            warn!(agent = %self.agent.id, seq, rejected = rejected.len(), "report entries refused");
            self.services
                .core
                .metrics
                .report_entries_rejected
                .fetch_add(rejected.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        self.send(controller_message::Kind::Ack(pb::Ack {
            acked_seq: seq,
            rejected,
        }))
        .await
    }
}

fn rejection(device_id: u64, reason: RejectionReason) -> pb::RejectedEntry {
    pb::RejectedEntry {
        device_id,
        reason: reason.into(),
    }
}

fn reason_text(reason: i32) -> String {
    match pb::TransitionReason::try_from(reason) {
        Ok(pb::TransitionReason::Replies) => "replies".into(),
        Ok(pb::TransitionReason::Timeouts) => "timeouts".into(),
        Ok(pb::TransitionReason::IcmpUnreachable) => "ICMP unreachable".into(),
        _ => "unspecified".into(),
    }
}

fn probe_target(device: &Device) -> pb::ProbeTarget {
    pb::ProbeTarget {
        device_id: u64::try_from(device.id).unwrap_or_default(),
        address: device.spec.address.to_string(),
        interval_ms: device.spec.interval_ms,
        timeout_ms: device.spec.timeout_ms,
        down_after: u32::from(device.spec.down_after),
        up_after: u32::from(device.spec.up_after),
    }
}

/// The families an agent can probe, from its Hello (an agent that says
/// nothing is taken at its word for both).
pub fn probe_families(capabilities: Option<&pb::Capabilities>) -> Vec<&'static str> {
    match capabilities {
        None => vec!["ipv4", "ipv6"],
        Some(capabilities) => [("ipv4", capabilities.ipv4), ("ipv6", capabilities.ipv6)]
            .into_iter()
            .filter(|&(_, can)| can)
            .map(|(family, _)| family)
            .collect(),
    }
}
