//! One agent link driven by a test: its Hello, heartbeats, reports and
//! the controller's answers, one message at a time.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use ward_proto::v1::{self as pb, agent_message, controller_message};

/// An agent of site `branch-7`, its clock `skew_ms` off ours.
pub struct ScriptedAgent {
    outbound: mpsc::Sender<pb::AgentMessage>,
    inbound: tonic::Streaming<pb::ControllerMessage>,
    seq: u64,
    pub skew_ms: i64,
}

impl ScriptedAgent {
    /// Agent `branch-7-agent` linked to `url` with boot id `boot`.
    pub async fn link(url: &str, boot: &str, skew_ms: i64) -> Self {
        Self::link_as(url, "branch-7-agent", boot, skew_ms).await
    }

    /// Agent `agent` of site `branch-7` linked to `url`.
    pub async fn link_as(url: &str, agent: &str, boot: &str, skew_ms: i64) -> Self {
        let (outbound, messages) = mpsc::channel(16);
        let clock = ward_controller::time::now_ms() + skew_ms;
        // The Hello first: the controller answers once it has read it.
        let hello = pb::Hello {
            agent_id: agent.into(),
            site: "branch-7".into(),
            version: "test".into(),
            boot_id: boot.into(),
            capabilities: Some(pb::Capabilities {
                ipv4: true,
                ipv6: true,
                ..pb::Capabilities::default()
            }),
            sent_at_unix_ms: clock,
            ..pb::Hello::default()
        };
        outbound
            .send(pb::AgentMessage {
                kind: Some(agent_message::Kind::Hello(hello)),
            })
            .await
            .expect("queued");
        let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let inbound = pb::agent_link_client::AgentLinkClient::new(channel)
            .connect(ReceiverStream::new(messages))
            .await
            .expect("link")
            .into_inner();
        Self {
            outbound,
            inbound,
            seq: 0,
            skew_ms,
        }
    }

    /// Its wall clock now, Unix ms.
    pub fn clock(&self) -> i64 {
        ward_controller::time::now_ms() + self.skew_ms
    }

    async fn send(&self, kind: agent_message::Kind) {
        self.outbound
            .send(pb::AgentMessage { kind: Some(kind) })
            .await
            .expect("the link is open");
    }

    pub async fn heartbeat(&self) {
        self.send(agent_message::Kind::Heartbeat(pb::Heartbeat {
            sent_at_unix_ms: self.clock(),
            counters: None,
        }))
        .await;
    }

    /// The controller's next message, within 10 s.
    async fn next(&mut self) -> pb::ControllerMessage {
        tokio::time::timeout(Duration::from_secs(10), self.inbound.next())
            .await
            .expect("a message within 10 s")
            .expect("the link is open")
            .expect("a message")
    }

    /// Waits until its assignment names `device`.
    pub async fn assigned(&mut self, device: i64) {
        let device = u64::try_from(device).expect("id");
        loop {
            let targets = match self.next().await.kind {
                Some(controller_message::Kind::Snapshot(snapshot)) => snapshot.targets,
                Some(controller_message::Kind::Update(update)) => update.upserts,
                _ => continue,
            };
            if targets.iter().any(|target| target.device_id == device) {
                return;
            }
        }
    }

    /// Reports `device` `state`, decided by a probe 300 ms ago by its
    /// clock, and waits for the controller's ack.
    pub async fn report(&mut self, device: i64, state: pb::DeviceState) {
        let seq = self.send_transition(device, state).await;
        let ack = self.acked(seq).await;
        assert!(ack.rejected.is_empty(), "{:?}", ack.rejected);
    }

    /// Sends `device` `state` (as [`ScriptedAgent::report`]) without
    /// waiting; its sequence number.
    pub async fn send_transition(&mut self, device: i64, state: pb::DeviceState) -> u64 {
        self.seq += 1;
        let probed_at_ms = self.clock() - 300;
        self.send(agent_message::Kind::Transitions(pb::TransitionBatch {
            traces: Vec::new(),
            seq: self.seq,
            transitions: vec![pb::Transition {
                degraded: None,
                device_id: u64::try_from(device).expect("id"),
                state: state as i32,
                probed_at_unix_us: probed_at_ms * 1_000,
                last_rtt_us: None,
                reason: pb::TransitionReason::Timeouts as i32,
                detail: String::new(),
            }],
        }))
        .await;
        self.seq
    }

    /// Sends a period of statistics of `device` (10 probes, 9 answered)
    /// without waiting; its sequence number.
    pub async fn send_statistics(&mut self, device: i64) -> u64 {
        self.seq += 1;
        self.send(agent_message::Kind::Statistics(pb::StatisticsBatch {
            seq: self.seq,
            period_start_unix_ms: self.clock() - 10_000,
            period_ms: 10_000,
            devices: vec![pb::DeviceStatistics {
                device_id: u64::try_from(device).expect("id"),
                sent: 10,
                received: 9,
                rtt_min_us: 800,
                rtt_avg_us: 1_000,
                rtt_max_us: 1_500,
                jitter_us: 90,
                ..pb::DeviceStatistics::default()
            }],
        }))
        .await;
        self.seq
    }

    /// Waits for an acknowledgement covering `seq`; it.
    pub async fn acked(&mut self, seq: u64) -> pb::Ack {
        loop {
            if let Some(controller_message::Kind::Ack(ack)) = self.next().await.kind
                && ack.acked_seq >= seq
            {
                return ack;
            }
        }
    }

    /// The acknowledgements the controller sends within `within`, highest
    /// sequence number first (none: `None`).
    pub async fn acked_within(&mut self, within: Duration) -> Option<u64> {
        let until = tokio::time::Instant::now() + within;
        let mut highest = None;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, self.inbound.next()).await
        {
            if let Some(controller_message::Kind::Ack(ack)) = message.kind {
                highest = highest.max(Some(ack.acked_seq));
            }
        }
        highest
    }
}
