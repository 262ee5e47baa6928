//! Which IPv4 probes may leave through a packet socket, and to which
//! interface and next-hop MAC (no I/O: the prober feeds in what the
//! kernel said over netlink).
//!
//! The kernel stays the authority: a packet-socket path is used only when
//! the routing is the plain kind this module can mirror exactly, and
//! everything else goes through the raw IP socket as before.
//!
//! - Policy rules must be the kernel's three defaults; otherwise (VRFs,
//!   marks, source routing) nothing uses the packet socket.
//! - Targets are grouped by the FIB entry a longest-prefix match over the
//!   `local`, `main` and `default` tables gives; each group is checked
//!   against the kernel once (`RTM_F_FIB_MATCH` must name the same entry)
//!   and takes the kernel's own answer for interface, gateway and source.
//!   Only unicast routes with a single next hop on an Ethernet interface
//!   qualify: the host's own addresses stay on the IP stack (a frame
//!   looped back through `lo` from a packet socket carries a local source
//!   address, which the kernel's input path drops).
//! - A next hop is used while the kernel's neighbour entry for it is
//!   confirmed (reachable, permanent or no-ARP). Stale or unknown entries
//!   send through the IP socket, which makes the kernel revalidate them.
//! - Any change to links, addresses, routes or rules makes the prober
//!   rebuild this from scratch.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::netlink::{
    HARDWARE_ETHERNET, Link, Neighbour, ROUTE_UNICAST, Route, Rule, TABLE_DEFAULT, TABLE_LOCAL,
    TABLE_MAIN,
};
use crate::sys::LinkAddress;

/// Why the packet socket is not used at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// Rules other than the kernel's defaults decide routing.
    #[error(
        "policy routing rules other than the kernel's defaults are present (priority {priority}, \
         table {table}); IPv4 probes go through the IP stack"
    )]
    PolicyRules {
        /// The first such rule's priority.
        priority: u32,
        /// The table it looks up.
        table: u32,
    },
}

/// A FIB entry: table, prefix, prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryKey {
    table: u32,
    prefix: u32,
    len: u8,
}

/// One routing table as longest-prefix-match maps, longest first.
#[derive(Debug, Default)]
struct Table {
    by_len: Vec<(u8, HashMap<u32, Route>)>,
}

impl Table {
    fn insert(&mut self, route: Route) {
        let len = route.prefix_len.min(32);
        let prefix = u32::from(route.destination) & mask(len);
        let position = match self.by_len.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(position) => position,
            Err(position) => {
                self.by_len.insert(position, (len, HashMap::new()));
                position
            }
        };
        let entries = &mut self.by_len[position].1;
        // Of two entries for one prefix the kernel uses the lower metric.
        match entries.get(&prefix) {
            Some(existing) if existing.priority <= route.priority => {}
            _ => {
                entries.insert(prefix, route);
            }
        }
    }

    fn lookup(&self, address: u32) -> Option<(u8, u32, &Route)> {
        self.by_len.iter().find_map(|(len, entries)| {
            let prefix = address & mask(*len);
            entries.get(&prefix).map(|route| (*len, prefix, route))
        })
    }
}

fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// How the kernel routes one FIB entry's destinations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GroupRoute {
    interface: u32,
    gateway: Option<Ipv4Addr>,
    source: Ipv4Addr,
}

/// Where one probe goes on the packet path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// Interface and next-hop MAC.
    pub link: LinkAddress,
    /// Source address.
    pub source: Ipv4Addr,
    neighbour: Ipv4Addr,
    usable: bool,
}

const NO_HOP: u32 = u32::MAX;

/// The packet-path routing of every target slot.
#[derive(Debug, Default)]
pub struct PacketRoutes {
    tables: [Table; 3],
    links: HashMap<u32, Link>,
    /// Checked groups; `None`: the kernel disagreed or the route does not
    /// qualify, so the group goes through the IP socket.
    groups: HashMap<EntryKey, Option<GroupRoute>>,
    hops: Vec<Hop>,
    hop_ids: HashMap<(u32, Ipv4Addr, Ipv4Addr), u32>,
    slot_hops: Vec<u32>,
}

impl PacketRoutes {
    /// A model of the kernel's IPv4 routing from its rules, routes and
    /// links; fails when the rules are not the defaults.
    pub fn new(rules: &[Rule], routes: &[Route], links: &[Link]) -> Result<Self, Unsupported> {
        if let Some(rule) = rules.iter().find(|rule| !rule.is_default()) {
            return Err(Unsupported::PolicyRules {
                priority: rule.priority,
                table: rule.table,
            });
        }
        let mut tables: [Table; 3] = Default::default();
        for route in routes {
            // Our probes carry TOS 0: TOS-selective entries never match.
            if route.tos != 0 {
                continue;
            }
            let index = match route.table {
                TABLE_LOCAL => 0,
                TABLE_MAIN => 1,
                TABLE_DEFAULT => 2,
                _ => continue,
            };
            tables[index].insert(*route);
        }
        Ok(Self {
            tables,
            links: links.iter().map(|link| (link.index, *link)).collect(),
            groups: HashMap::new(),
            hops: Vec::new(),
            hop_ids: HashMap::new(),
            slot_hops: Vec::new(),
        })
    }

    /// The FIB entry the kernel would use for `address`, if any.
    fn entry(&self, address: Ipv4Addr) -> Option<(EntryKey, &Route)> {
        let address = u32::from(address);
        self.tables.iter().find_map(|table| {
            table.lookup(address).map(|(len, prefix, route)| {
                let key = EntryKey {
                    table: route.table,
                    prefix,
                    len,
                };
                (key, route)
            })
        })
    }

    /// Of `addresses`, one per FIB entry not checked yet: the destinations
    /// to ask the kernel about (see [`PacketRoutes::check_group`]).
    pub fn unchecked(&self, addresses: impl IntoIterator<Item = Ipv4Addr>) -> Vec<Ipv4Addr> {
        let mut seen = HashMap::new();
        for address in addresses {
            if let Some((key, _)) = self.entry(address)
                && !self.groups.contains_key(&key)
            {
                seen.entry(key).or_insert(address);
            }
        }
        seen.into_values().collect()
    }

    /// Records the kernel's answers for `representative`: the FIB entry
    /// it matched and the route it would use.
    pub fn check_group(&mut self, representative: Ipv4Addr, fib_match: &Route, route: &Route) {
        let Some((key, entry)) = self.entry(representative) else {
            return;
        };
        // The kernel merges `local` into `main` while the rules are the
        // defaults and then reports `main` for both: compare the entry by
        // prefix and type.
        let same_entry = u32::from(fib_match.destination) == key.prefix
            && fib_match.prefix_len == key.len
            && fib_match.kind == entry.kind;
        let link = route
            .output_interface
            .and_then(|index| self.links.get(&index))
            .filter(|link| link.up && link.hardware == HARDWARE_ETHERNET);
        let qualifies = same_entry
            && entry.kind == ROUTE_UNICAST
            && !entry.complex_next_hop
            && !route.complex_next_hop;
        let group = match (link, route.preferred_source) {
            (Some(link), Some(source)) if qualifies => Some(GroupRoute {
                interface: link.index,
                gateway: route.gateway,
                source,
            }),
            _ => None,
        };
        self.groups.insert(key, group);
    }

    /// Routes target slot `slot` (probing `address`) by its checked group;
    /// slots whose group is unknown or does not qualify use the IP socket.
    pub fn assign(&mut self, slot: u32, address: Ipv4Addr) {
        let slot = slot as usize;
        if self.slot_hops.len() <= slot {
            self.slot_hops.resize(slot + 1, NO_HOP);
        }
        let group = self
            .entry(address)
            .and_then(|(key, _)| self.groups.get(&key).copied().flatten());
        self.slot_hops[slot] = match group {
            Some(group) => self.hop_id(group, address),
            None => NO_HOP,
        };
    }

    /// Forgets a removed slot.
    pub fn unassign(&mut self, slot: u32) {
        if let Some(hop) = self.slot_hops.get_mut(slot as usize) {
            *hop = NO_HOP;
        }
    }

    fn hop_id(&mut self, group: GroupRoute, destination: Ipv4Addr) -> u32 {
        let neighbour = group.gateway.unwrap_or(destination);
        let key = (group.interface, neighbour, group.source);
        if let Some(id) = self.hop_ids.get(&key) {
            return *id;
        }
        let id = u32::try_from(self.hops.len()).unwrap_or(NO_HOP);
        self.hops.push(Hop {
            link: LinkAddress {
                interface: group.interface,
                mac: [0; 6],
            },
            source: group.source,
            neighbour,
            usable: false,
        });
        self.hop_ids.insert(key, id);
        id
    }

    /// Takes in the kernel's neighbour table: a next hop is usable while
    /// its entry is confirmed, with the MAC the entry names.
    pub fn update_neighbours(&mut self, neighbours: &[Neighbour]) {
        let confirmed: HashMap<(u32, Ipv4Addr), [u8; 6]> = neighbours
            .iter()
            .filter(|neighbour| neighbour.is_confirmed())
            .filter_map(|n| n.mac.map(|mac| ((n.interface, n.address), mac)))
            .collect();
        for hop in &mut self.hops {
            match confirmed.get(&(hop.link.interface, hop.neighbour)) {
                Some(mac) => {
                    hop.link.mac = *mac;
                    hop.usable = true;
                }
                None => hop.usable = false,
            }
        }
    }

    /// The packet-path hop of `slot`, if it has a usable one.
    pub fn hop(&self, slot: u32) -> Option<&Hop> {
        let id = *self.slot_hops.get(slot as usize)?;
        self.hops.get(id as usize).filter(|hop| hop.usable)
    }

    /// Next hops known, and how many of them are usable now.
    pub fn hop_counts(&self) -> (usize, usize) {
        let usable = self.hops.iter().filter(|hop| hop.usable).count();
        (self.hops.len(), usable)
    }
}

#[cfg(test)]
mod tests;
