//! What an agent can probe: given the address families it opened ICMP
//! sockets for, and raw TCP sockets for TCP checks (its `Hello`'s
//! capabilities), the assigned devices it cannot probe with them, and the
//! words that say so. The agent link applies it.

use std::net::IpAddr;

use crate::check::Check;
use crate::model::{Device, Status};

/// What probing `device` needs, as an agent's families are named: `ipv4`
/// or `ipv6` (ICMP), `tcp/ipv4` or `tcp/ipv6` (a TCP check, also with
/// ICMP: its SYNs need the raw TCP socket).
fn family(device: &Device) -> &'static str {
    match (device.spec.check, device.spec.address) {
        (Check::Icmp, IpAddr::V4(_)) => "ipv4",
        (Check::Icmp, IpAddr::V6(_)) => "ipv6",
        (_, IpAddr::V4(_)) => "tcp/ipv4",
        (_, IpAddr::V6(_)) => "tcp/ipv6",
    }
}

/// What an agent cannot see among the devices assigned to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blindness {
    /// The devices it cannot probe, by id, with their status now.
    pub devices: Vec<(i64, Status)>,
    /// The families it lacks for them.
    pub families: Vec<&'static str>,
}

impl Blindness {
    /// The assigned devices (by id) that `families` cannot reach.
    pub fn of<'a>(assigned: impl Iterator<Item = &'a Device>, families: &[&str]) -> Self {
        let mut blindness = Blindness::default();
        for device in assigned {
            let needed = family(device);
            if !families.contains(&needed) {
                blindness.devices.push((device.id, device.status));
                if !blindness.families.contains(&needed) {
                    blindness.families.push(needed);
                }
            }
        }
        blindness.devices.sort_unstable_by_key(|&(id, _)| id);
        blindness.families.sort_unstable();
        blindness
    }

    /// Why the agent is blind, or `None` when it sees everything.
    pub fn reason(&self, agent_id: &str) -> Option<String> {
        if self.devices.is_empty() {
            return None;
        }
        let (tcp, icmp): (Vec<&str>, Vec<&str>) = self
            .families
            .iter()
            .partition(|family| family.starts_with("tcp/"));
        let mut why = Vec::new();
        if !icmp.is_empty() {
            why.push(format!(
                "{}: it could not open an ICMP socket for that family; grant it CAP_NET_RAW or \
                 widen net.ipv4.ping_group_range, and check the host has that family",
                icmp.join(" and ")
            ));
        }
        if !tcp.is_empty() {
            why.push(format!(
                "{} (devices checked by TCP): it has no raw TCP socket; grant it CAP_NET_RAW, \
                 or upgrade an agent older than TCP checks",
                tcp.join(" and ")
            ));
        }
        Some(format!(
            "agent {agent_id} cannot probe {} ({} assigned devices): {}",
            self.families.join(" and "),
            self.devices.len(),
            why.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeviceSpec;

    fn device(id: i64, address: &str) -> Device {
        Device {
            id,
            spec: DeviceSpec::new(
                format!("d{id}"),
                address.parse().expect("address"),
                "s".into(),
            ),
            status: Status::Up,
            down_since_ms: None,
            status_changed_at_ms: 0,
            last_rtt_us: None,
            agent: Some("a1".into()),
            flapping: false,
            degraded: None,
        }
    }

    #[test]
    fn an_agent_without_ipv6_is_blind_to_its_ipv6_devices_only() {
        let devices = [device(1, "198.18.0.1"), device(2, "2001:2::1")];
        let families = ["ipv4"];
        let blindness = Blindness::of(devices.iter(), &families);
        assert_eq!(blindness.devices, [(2, Status::Up)]);
        let reason = blindness.reason("a1").expect("blind");
        assert!(
            reason.contains("cannot probe ipv6 (1 assigned devices)"),
            "{reason}"
        );
        assert_eq!(
            Blindness::of(devices[..1].iter(), &families).reason("a1"),
            None
        );
    }

    #[test]
    fn an_agent_without_a_raw_tcp_socket_is_blind_to_its_tcp_checked_devices() {
        let mut firewall = device(3, "198.18.0.3");
        firewall.spec.check = Check::Tcp(443);
        let devices = [device(1, "198.18.0.1"), firewall];
        let blindness = Blindness::of(devices.iter(), &["ipv4", "ipv6"]);
        assert_eq!(blindness.devices, [(3, Status::Up)]);
        let reason = blindness.reason("a1").expect("blind");
        assert!(
            reason.contains("cannot probe tcp/ipv4 (1 assigned devices)")
                && reason.contains("no raw TCP socket"),
            "{reason}"
        );
        assert_eq!(
            Blindness::of(devices.iter(), &["ipv4", "tcp/ipv4"]).reason("a1"),
            None
        );
    }
}
