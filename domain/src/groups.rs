//! Agent groups: a site may have several agents, and each device has
//! exactly one owner among them, the agent that probes it and whose
//! reports about it count. The rules, free of I/O ([`settle`]); the store
//! reads the rows and writes the moves in one transaction.
//!
//! - A device without an owner, or whose owner left the site, goes to the
//!   site's live agent with the fewest devices (any agent of the site when
//!   none is live, so it is probed as soon as one connects).
//! - An agent is live while some controller heard it within the failover
//!   delay; once it is lost its devices go to the live ones, fewest first.
//!   None live: nothing moves (the site's offline rule speaks instead).
//! - Rebalancing, with hysteresis: devices move only to an agent that has
//!   stayed live for the failover delay, only while the busiest live agent
//!   has two or more devices more than it, and then just enough of them
//!   (the highest ids of the busiest). A balanced group is a fixed point,
//!   so nothing ping-pongs; an agent that flaps never stays long enough to
//!   get any.

use std::collections::{BTreeMap, HashMap};

/// An agent of a site, as the shared presence knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The agent.
    pub id: String,
    /// Its site.
    pub site: String,
    /// How long ago some controller last heard it (the database's clock),
    /// ms; `None` if never.
    pub heard_ago_ms: Option<i64>,
    /// How long it has been heard without a gap, ms.
    pub online_for_ms: Option<i64>,
}

impl Member {
    /// Heard within the failover delay: keeps its devices.
    pub fn live(&self, failover_delay_ms: i64) -> bool {
        self.heard_ago_ms.is_some_and(|ago| ago < failover_delay_ms)
    }

    /// Live for the failover delay: may take devices from others.
    fn settled(&self, failover_delay_ms: i64) -> bool {
        self.live(failover_delay_ms)
            && self
                .online_for_ms
                .is_some_and(|online| online >= failover_delay_ms)
    }

    /// Heard once, and not within the failover delay.
    pub fn lost(&self, failover_delay_ms: i64) -> bool {
        self.heard_ago_ms.is_some() && !self.live(failover_delay_ms)
    }
}

/// A device and its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    /// The device.
    pub device_id: i64,
    /// Its site.
    pub site: String,
    /// Its owner now.
    pub agent: Option<String>,
}

/// A device given to another agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    /// The device.
    pub device_id: i64,
    /// Its owner before.
    pub from: Option<String>,
    /// Its owner from now on.
    pub to: String,
}

/// How much a settlement may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only devices without an owner of their site get one (an inventory
    /// write: a new device, a device moved to another site, a new agent).
    Orphans,
    /// Everything: lost owners replaced, groups rebalanced (the periodic
    /// settlement on one controller of the cluster).
    Everything,
}

/// The moves that settle every site of `devices` (see the module's rules).
pub fn settle(
    members: &[Member],
    devices: &[Owned],
    failover_delay_ms: i64,
    scope: Scope,
) -> Vec<Move> {
    let mut sites: BTreeMap<&str, (Vec<&Member>, Vec<&Owned>)> = BTreeMap::new();
    for device in devices {
        sites.entry(&device.site).or_default().1.push(device);
    }
    for member in members {
        if let Some((site_members, _)) = sites.get_mut(member.site.as_str()) {
            site_members.push(member);
        }
    }
    let mut moves = Vec::new();
    for (mut site_members, mut site_devices) in sites.into_values() {
        if site_members.is_empty() {
            continue;
        }
        site_members.sort_by(|a, b| a.id.cmp(&b.id));
        site_devices.sort_by_key(|device| device.device_id);
        settle_site(
            &site_members,
            &site_devices,
            failover_delay_ms,
            scope,
            &mut moves,
        );
    }
    moves
}

fn settle_site(
    members: &[&Member],
    devices: &[&Owned],
    delay_ms: i64,
    scope: Scope,
    moves: &mut Vec<Move>,
) {
    let live: Vec<&Member> = members
        .iter()
        .copied()
        .filter(|m| m.live(delay_ms))
        .collect();
    let candidates: &[&Member] = if live.is_empty() { members } else { &live };
    // What each agent that keeps its devices owns, by id (ascending).
    let keepers = if scope == Scope::Orphans {
        members
    } else {
        candidates
    };
    let mut owned: HashMap<&str, Vec<i64>> = keepers
        .iter()
        .map(|member| (member.id.as_str(), Vec::new()))
        .collect();
    // A device of no keeper (no owner, an owner that left the site, or a
    // lost one while another is live) is placed afresh, once every
    // keeper's count is known.
    let mut orphans = Vec::new();
    for device in devices {
        let list = device
            .agent
            .as_deref()
            .and_then(|agent| owned.get_mut(agent));
        match list {
            Some(list) => list.push(device.device_id),
            None => orphans.push(device.device_id),
        }
    }
    for device_id in orphans {
        if let Some(to) = fewest(candidates, &owned, |_| true) {
            owned.entry(to).or_default().push(device_id);
        }
    }
    if scope == Scope::Everything {
        for list in owned.values_mut() {
            list.sort_unstable();
        }
        rebalance(&live, &mut owned, delay_ms);
    }
    let by_id: HashMap<i64, &Owned> = devices.iter().map(|d| (d.device_id, *d)).collect();
    for (agent, ids) in owned {
        for device_id in ids {
            let Some(device) = by_id.get(&device_id) else {
                continue;
            };
            if device.agent.as_deref() != Some(agent) {
                moves.push(Move {
                    device_id,
                    from: device.agent.clone(),
                    to: agent.to_owned(),
                });
            }
        }
    }
}

/// Moves the busiest live agent's highest ids to the least busy settled
/// one until they differ by at most one.
fn rebalance<'a>(live: &[&'a Member], owned: &mut HashMap<&'a str, Vec<i64>>, delay_ms: i64) {
    loop {
        let Some(to) = fewest(live, owned, |m| m.settled(delay_ms)) else {
            return;
        };
        let Some(from) = live
            .iter()
            .max_by_key(|m| (owned.get(m.id.as_str()).map_or(0, Vec::len), &m.id))
            .map(|m| m.id.as_str())
        else {
            return;
        };
        let count = |id: &str| owned.get(id).map_or(0, Vec::len);
        if count(from) < count(to) + 2 {
            return;
        }
        let Some(device_id) = owned.get_mut(from).and_then(Vec::pop) else {
            return;
        };
        owned.entry(to).or_default().push(device_id);
    }
}

/// The eligible candidate with the fewest devices (ties: the smallest id).
fn fewest<'a>(
    candidates: &[&'a Member],
    owned: &HashMap<&str, Vec<i64>>,
    eligible: impl Fn(&Member) -> bool,
) -> Option<&'a str> {
    candidates
        .iter()
        .filter(|m| eligible(m))
        .min_by_key(|m| (owned.get(m.id.as_str()).map_or(0, Vec::len), &m.id))
        .map(|m| m.id.as_str())
}

#[cfg(test)]
mod tests;
