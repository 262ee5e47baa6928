//! The `ward.v1.AgentLink` service: one bidirectional stream per agent.
//!
//! A session: the agent's `Hello` (within [`HELLO_TIMEOUT`]) is checked
//! against the inventory (and, with mTLS, the client certificate); a
//! refused agent gets a `Refusal` naming what to do, and the stream ends.
//! Otherwise the agent gets the devices it owns (of its site's, see
//! `store::groups`) as a snapshot, then an update after every inventory
//! or ownership change, on any controller. Transitions are applied in
//! stream order as they come; statistics are handed to the time-series
//! writer in the background, so a writer that is behind does not hold a
//! DOWN back. A report is acknowledged only once it and every report
//! before it are durable in the store (transitions) or held by the writer
//! (statistics), so the cumulative `Ack` is exact (`acks`). When the store fails the stream ends with
//! `UNAVAILABLE` and nothing after the last ack counts as received: the
//! agent replays it from its spool.

mod acks;
mod link;

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
    self as pb, AgentMessage, ControllerMessage, RefusalCode, agent_message, controller_message,
};

use crate::services::{AgentPresence, App, Core, Guard, Reports};
use crate::store::AgentRecord;
use crate::time::now_ms;
use link::Link;

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
    let mut clock = ward_domain::agent_clock::LinkClock::default();
    clock.sample(hello.sent_at_unix_ms, opened_ms);
    let probe_families = probe_families(hello.capabilities.as_ref());
    info!(agent = %agent.id, site = %agent.site, version = %hello.version, protocol = hello.protocol.max(1), boot = %hello.boot_id, families = ?probe_families, "agent connected");
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
        clock,
        acks: acks::AckQueue::default(),
        statistics_in_flight: None,
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

/// Refuses an agent whose agent-link protocol this controller does not
/// speak (0, before versions were announced, is version 1), saying which
/// side to upgrade.
fn protocol_spoken(hello: &pb::Hello) -> Result<(), (RefusalCode, String)> {
    use ward_proto::{OLDEST_PROTOCOL_VERSION as OLDEST, PROTOCOL_VERSION as CURRENT};
    let spoken = hello.protocol.max(1);
    if (OLDEST..=CURRENT).contains(&spoken) {
        return Ok(());
    }
    let upgrade = if spoken < OLDEST {
        "upgrade the agent (agents may be one release behind their controller)"
    } else {
        "upgrade this controller first (controllers before agents)"
    };
    Err((
        RefusalCode::UnsupportedVersion,
        format!(
            "agent `{}` (ward-agent {}) speaks agent-link protocol {spoken}; this controller \
             (ward-controller {}) speaks {OLDEST} to {CURRENT}: {upgrade}",
            hello.agent_id,
            hello.version,
            env!("CARGO_PKG_VERSION")
        ),
    ))
}

/// The agent named in `hello`, if it may connect.
async fn admit(
    services: &LinkServices,
    peer: &PeerIdentity,
    hello: &pb::Hello,
) -> Result<AgentRecord, (RefusalCode, String)> {
    identity_matches(peer, hello)?;
    protocol_spoken(hello)?;
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

/// The families an agent can probe, from its Hello: `ipv4`, `ipv6` (ICMP)
/// and `tcp/ipv4`, `tcp/ipv6` (TCP checks; an agent older than them says
/// neither). An agent that says nothing is taken at its word for all.
pub fn probe_families(capabilities: Option<&pb::Capabilities>) -> Vec<&'static str> {
    match capabilities {
        None => vec!["ipv4", "ipv6", "tcp/ipv4", "tcp/ipv6"],
        Some(capabilities) => [
            ("ipv4", capabilities.ipv4),
            ("ipv6", capabilities.ipv6),
            ("tcp/ipv4", capabilities.tcp_ipv4),
            ("tcp/ipv6", capabilities.tcp_ipv6),
        ]
        .into_iter()
        .filter(|&(_, can)| can)
        .map(|(family, _)| family)
        .collect(),
    }
}
