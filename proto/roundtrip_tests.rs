//! Every `AgentLink` message kind survives encode → decode unchanged.
//!
//! `agent_kinds` and `controller_kinds` match on every oneof variant without
//! a wildcard, so adding a message kind without a round-trip sample here is
//! a compile error.

use proptest::prelude::*;
use prost::Message;

use crate::v1::{
    Ack, AgentMessage, AssignmentSnapshot, AssignmentUpdate, Capabilities, ControllerMessage,
    DeviceState, DeviceStatistics, EngineCounters, Heartbeat, Hello, ProbeTarget, Refusal,
    RefusalCode, RejectedEntry, RejectionReason, StatisticsBatch, Trace, TraceHop, Transition,
    TransitionBatch, TransitionReason, agent_message, controller_message,
};

fn target(device_id: u64, address: &str) -> ProbeTarget {
    ProbeTarget {
        tcp: None,
        quality: None,
        known_level: 0,
        device_id,
        address: address.to_owned(),
        interval_ms: 1000,
        timeout_ms: 500,
        down_after: 3,
        up_after: 2,
        known_state: DeviceState::Up as i32,
    }
}

fn agent_kinds() -> Vec<agent_message::Kind> {
    use agent_message::Kind;
    let samples = vec![
        Kind::Hello(Hello {
            agent_id: "branch-0421".into(),
            site: "branch-0421".into(),
            version: "0.1.0".into(),
            boot_id: "5f0c2a9e-boot".into(),
            capabilities: Some(Capabilities {
                tcp_ipv6: false,
                tcp_ipv4: false,
                raw_sockets: true,
                ipv4: true,
                ipv6: true,
                kernel_timestamps: true,
                kernel_filter: false,
            }),
            last_acked_seq: 41,
            assignment_generation: 7,
            protocol: crate::PROTOCOL_VERSION,
            sent_at_unix_ms: 1_796_560_000_000,
        }),
        Kind::Transitions(TransitionBatch {
            seq: 42,
            transitions: vec![
                Transition {
                    degraded: None,
                    device_id: 9,
                    state: DeviceState::Down.into(),
                    probed_at_unix_us: 1_795_000_000_123_456,
                    last_rtt_us: Some(812),
                    reason: TransitionReason::Timeouts.into(),
                    detail: String::new(),
                },
                Transition {
                    degraded: None,
                    device_id: 10,
                    state: DeviceState::Unreachable.into(),
                    probed_at_unix_us: 1_795_000_000_223_456,
                    last_rtt_us: None,
                    reason: TransitionReason::IcmpUnreachable.into(),
                    detail: "host unreachable from 198.18.0.2".into(),
                },
            ],
            traces: vec![Trace {
                device_ids: vec![9, 10],
                target: "198.18.1.10".into(),
                hops: vec![
                    TraceHop {
                        ttl: 1,
                        address: "198.18.0.1".into(),
                        rtt_us: Some(310),
                    },
                    TraceHop {
                        ttl: 2,
                        address: String::new(),
                        rtt_us: None,
                    },
                ],
                reached: false,
                traced_at_unix_ms: 1_795_000_003_000,
            }],
        }),
        Kind::Statistics(StatisticsBatch {
            seq: 43,
            period_start_unix_ms: 1_795_000_000_000,
            period_ms: 10_000,
            devices: vec![DeviceStatistics {
                device_id: 9,
                sent: 10,
                received: 9,
                rtt_min_us: 40_100,
                rtt_avg_us: 40_350,
                rtt_max_us: 41_020,
                jitter_us: 210,
                rtt_p50_us: Some(400),
                rtt_p90_us: Some(900),
            }],
        }),
        Kind::Heartbeat(Heartbeat {
            sent_at_unix_ms: 1_795_000_001_000,
            counters: Some(EngineCounters {
                probes_sent: 1_000_000,
                send_errors: 1,
                replies_matched: 999_990,
                replies_invalid: 2,
                replies_duplicate: 3,
                replies_late: 4,
                icmp_errors: 5,
                rx_kernel_drops: 6,
                rate_limited: 7,
                spool_records: 8,
                spool_statistics_dropped: 9,
                targets: 100_000,
                traces_started: 10,
                traces_shared: 11,
                traces_skipped: 12,
            }),
        }),
    ];
    for kind in &samples {
        // No wildcard: a new variant must get a sample above.
        match kind {
            Kind::Hello(_) | Kind::Transitions(_) | Kind::Statistics(_) | Kind::Heartbeat(_) => {}
        }
    }
    samples
}

fn controller_kinds() -> Vec<controller_message::Kind> {
    use controller_message::Kind;
    let samples = vec![
        Kind::Snapshot(AssignmentSnapshot {
            generation: 3,
            targets: vec![target(1, "198.18.1.1"), target(2, "2001:2:0:1::2")],
            controller_protocol: crate::PROTOCOL_VERSION,
        }),
        Kind::Update(AssignmentUpdate {
            generation: 4,
            upserts: vec![target(3, "198.18.1.3")],
            removed_device_ids: vec![1],
        }),
        Kind::Ack(Ack {
            acked_seq: 43,
            rejected: vec![RejectedEntry {
                device_id: 77,
                reason: RejectionReason::NotAssigned.into(),
            }],
        }),
        Kind::Refusal(Refusal {
            code: RefusalCode::UnknownAgent.into(),
            message: "agent 'branch-7' is not registered".into(),
        }),
    ];
    for kind in &samples {
        match kind {
            Kind::Snapshot(_) | Kind::Update(_) | Kind::Ack(_) | Kind::Refusal(_) => {}
        }
    }
    samples
}

fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let bytes = message.encode_to_vec();
    let decoded = M::decode(bytes.as_slice()).expect("a message we encoded must decode");
    assert_eq!(&decoded, message);
}

#[test]
fn every_agent_message_kind_roundtrips() {
    let kinds = agent_kinds();
    assert_eq!(kinds.len(), 4);
    for kind in kinds {
        roundtrip(&AgentMessage { kind: Some(kind) });
    }
}

#[test]
fn every_controller_message_kind_roundtrips() {
    let kinds = controller_kinds();
    assert_eq!(kinds.len(), 4);
    for kind in kinds {
        roundtrip(&ControllerMessage { kind: Some(kind) });
    }
}

#[test]
fn truncated_message_is_an_error_not_a_default() {
    let bytes = AgentMessage {
        kind: Some(agent_kinds().swap_remove(1)),
    }
    .encode_to_vec();
    let cut = &bytes[..bytes.len() - 3];
    assert!(AgentMessage::decode(cut).is_err());
}

proptest! {
    #[test]
    fn transition_batches_roundtrip(
        seq: u64,
        entries in prop::collection::vec(
            (any::<u64>(), 0i32..4, any::<i64>(), any::<Option<u32>>(), 0i32..4, ".{0,40}"),
            0..50,
        ),
    ) {
        let transitions = entries
            .into_iter()
            .map(|(device_id, state, probed_at_unix_us, last_rtt_us, reason, detail)| Transition {
                degraded: None,
                device_id,
                state,
                probed_at_unix_us,
                last_rtt_us,
                reason,
                detail,
            })
            .collect();
        roundtrip(&AgentMessage {
            kind: Some(agent_message::Kind::Transitions(TransitionBatch {
                seq,
                transitions,
                traces: Vec::new(),
            })),
        });
    }
}
