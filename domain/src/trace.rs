//! The path to a device at the moment it failed, as its agent traced it
//! (TTL-limited probes; see the agent's `ward_engine::trace`), attached to
//! the device's open alert and kept as the device's last trace.

use serde::{Deserialize, Serialize};

/// One TTL of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceHop {
    /// The TTL (hop limit) of its probes.
    pub ttl: u8,
    /// Who answered (`None`: nobody did).
    pub address: Option<String>,
    /// The best round trip of its answers, µs.
    pub rtt_us: Option<u32>,
}

/// A finished trace, as stored and shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// When the agent finished it, Unix ms.
    pub traced_at_ms: i64,
    /// The address traced (the device's, or another device's of the same
    /// prefix when they failed together and share one trace).
    pub target: String,
    /// The traced address itself answered.
    pub reached: bool,
    /// TTL 1 up to the last that answered.
    pub hops: Vec<TraceHop>,
    /// The last hop that answered: where the path ends now.
    pub last_hop: Option<String>,
    /// The device whose address the last hop is, if one is.
    pub last_hop_device: Option<String>,
}

impl Trace {
    /// A trace of `hops`; `last_hop` is the highest TTL that answered,
    /// `last_hop_device` is left for the caller to look up.
    pub fn new(traced_at_ms: i64, target: String, reached: bool, hops: Vec<TraceHop>) -> Self {
        let last_hop = hops.iter().rev().find_map(|hop| hop.address.clone());
        Self {
            traced_at_ms,
            target,
            reached,
            hops,
            last_hop,
            last_hop_device: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(ttl: u8, address: Option<&str>) -> TraceHop {
        TraceHop {
            ttl,
            address: address.map(str::to_owned),
            rtt_us: address.map(|_| 400),
        }
    }

    #[test]
    fn the_last_hop_is_the_highest_ttl_that_answered() {
        let trace = Trace::new(
            1,
            "198.18.40.7".into(),
            false,
            vec![
                hop(1, Some("198.18.0.2")),
                hop(2, None),
                hop(3, Some("198.18.0.6")),
            ],
        );
        assert_eq!(trace.last_hop.as_deref(), Some("198.18.0.6"));
        let nothing = Trace::new(1, "198.18.40.7".into(), false, vec![hop(1, None)]);
        assert_eq!(nothing.last_hop, None);
    }
}
