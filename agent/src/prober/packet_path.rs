//! The prober's packet-socket send path for IPv4 (`--send-path packet`):
//! the sockets and timers around [`PacketRoutes`], driven by the engine
//! thread. Probes with no usable hop go through the IP socket instead.

use std::io;
use std::net::Ipv4Addr;

use crate::engine::Nanos;
use crate::netlink::{self, Dump, Message};
use crate::send_path::{PacketRoutes, Unsupported};
use crate::sys::{NetlinkSocket, PacketSocket, SendBatch, SendOutcome};

/// How often the neighbour table is read.
const NEIGHBOUR_REFRESH: Nanos = 1_000_000_000;
/// How often change notifications are looked for.
const CHANGE_CHECK: Nanos = 20_000_000;
/// Least time between two rebuilds (a routing daemon may change routes
/// continuously); meanwhile every probe goes through the IP stack.
const REBUILD_GAP: Nanos = 1_000_000_000;

/// Why the packet path could not start.
#[derive(Debug, thiserror::Error)]
pub enum PacketPathError {
    /// A socket could not be opened (needs CAP_NET_RAW).
    #[error(
        "opening the packet send path (a packet socket and rtnetlink: needs CAP_NET_RAW, and \
         under systemd RestrictAddressFamilies must allow AF_PACKET and AF_NETLINK), or use \
         send_path = \"ip\": {0}"
    )]
    Open(io::Error),
}

/// Packet socket, netlink sockets, the routing model and a send batch.
pub struct PacketPath {
    socket: PacketSocket,
    queries: NetlinkSocket,
    changes: NetlinkSocket,
    routes: Result<PacketRoutes, Unsupported>,
    batch: SendBatch,
    next_neighbour_refresh: Nanos,
    next_change_check: Nanos,
    /// Routing changed since the last rebuild: nothing uses the mirror.
    stale: bool,
    last_rebuild: Option<Nanos>,
}

impl PacketPath {
    /// Opens the sockets; call [`PacketPath::rebuild`] before use.
    pub fn open() -> Result<Self, PacketPathError> {
        Ok(Self {
            socket: PacketSocket::open().map_err(PacketPathError::Open)?,
            queries: NetlinkSocket::open(0).map_err(PacketPathError::Open)?,
            changes: NetlinkSocket::open(netlink::CHANGE_GROUPS).map_err(PacketPathError::Open)?,
            routes: Ok(PacketRoutes::default()),
            next_change_check: 0,
            stale: false,
            last_rebuild: None,
            batch: SendBatch::new(true),
            next_neighbour_refresh: 0,
        })
    }

    /// Why nothing uses the packet socket, if so.
    pub fn unsupported(&self) -> Option<&Unsupported> {
        self.routes.as_ref().err()
    }

    /// Reads rules, routes, links and neighbours afresh and routes every
    /// `(slot, address)` target by them.
    pub fn rebuild(
        &mut self,
        targets: impl Iterator<Item = (u32, Ipv4Addr)> + Clone,
        now: Nanos,
    ) -> io::Result<()> {
        let rules = collect(self.queries.dump(Dump::Rules)?, |m| match m {
            Message::Rule(rule) => Some(rule),
            _ => None,
        });
        let routes = collect(self.queries.dump(Dump::Routes)?, |m| match m {
            Message::Route(route) => Some(route),
            _ => None,
        });
        let links = collect(self.queries.dump(Dump::Links)?, |m| match m {
            Message::Link(link) => Some(link),
            _ => None,
        });
        self.routes = PacketRoutes::new(&rules, &routes, &links);
        self.stale = false;
        self.last_rebuild = Some(now);
        self.check_groups(targets.clone().map(|(_, address)| address))?;
        if let Ok(routes) = &mut self.routes {
            for (slot, address) in targets {
                routes.assign(slot, address);
            }
        }
        self.refresh_neighbours(now)
    }

    /// Routes one new target (asking the kernel about its FIB entry if
    /// this is the first target in it).
    pub fn add(&mut self, slot: u32, address: Ipv4Addr) -> io::Result<()> {
        self.check_groups(std::iter::once(address))?;
        if let Ok(routes) = &mut self.routes {
            routes.assign(slot, address);
        }
        Ok(())
    }

    /// Forgets a removed target.
    pub fn remove(&mut self, slot: u32) {
        if let Ok(routes) = &mut self.routes {
            routes.unassign(slot);
        }
    }

    /// Due work: a rebuild when links, addresses, routes or rules changed
    /// (at most one a second; until then every probe goes through the IP
    /// stack), the neighbour table once a second.
    pub fn maintain(
        &mut self,
        targets: impl Iterator<Item = (u32, Ipv4Addr)> + Clone,
        now: Nanos,
    ) -> io::Result<()> {
        if now >= self.next_change_check {
            self.next_change_check = now + CHANGE_CHECK;
            self.stale |= self.changes.drain_notifications()?;
        }
        let rebuild_due = self
            .last_rebuild
            .is_none_or(|last| now >= last + REBUILD_GAP);
        if self.stale && rebuild_due {
            return self.rebuild(targets, now);
        }
        if now >= self.next_neighbour_refresh {
            self.refresh_neighbours(now)?;
        }
        Ok(())
    }

    fn check_groups(&mut self, addresses: impl Iterator<Item = Ipv4Addr>) -> io::Result<()> {
        let Ok(routes) = &mut self.routes else {
            return Ok(());
        };
        let representatives = routes.unchecked(addresses);
        if representatives.is_empty() {
            return Ok(());
        }
        let matched = self.queries.query_routes(&representatives, true)?;
        let used = self.queries.query_routes(&representatives, false)?;
        for ((representative, matched), used) in representatives.iter().zip(matched).zip(used) {
            if let (Ok(matched), Ok(used)) = (matched, used) {
                routes.check_group(*representative, &matched, &used);
            }
        }
        Ok(())
    }

    fn refresh_neighbours(&mut self, now: Nanos) -> io::Result<()> {
        self.next_neighbour_refresh = now + NEIGHBOUR_REFRESH;
        let Ok(routes) = &mut self.routes else {
            return Ok(());
        };
        let neighbours = collect(self.queries.dump(Dump::Neighbours)?, |m| match m {
            Message::Neighbour(neighbour) => Some(neighbour),
            _ => None,
        });
        routes.update_neighbours(&neighbours);
        Ok(())
    }

    /// Queues `probe` (an ICMP message) for `slot` if it has a usable hop;
    /// false: send it through the IP socket.
    pub fn queue(&mut self, slot: u32, destination: Ipv4Addr, probe: &[u8]) -> bool {
        let (false, Ok(routes)) = (self.stale, &self.routes) else {
            return false;
        };
        let Some(hop) = routes.hop(slot) else {
            return false;
        };
        self.batch.next_buffer()[..probe.len()].copy_from_slice(probe);
        self.batch
            .commit_link(destination, hop.source, &hop.link, probe.len());
        true
    }

    /// True when the batch must be flushed before more is queued.
    pub fn is_full(&self) -> bool {
        self.batch.is_full()
    }

    /// Sends what is queued.
    pub fn flush(&mut self) -> SendOutcome {
        if self.batch.is_empty() {
            return SendOutcome::default();
        }
        self.batch.flush(self.socket.raw_fd())
    }

    /// Next hops known and usable now.
    pub fn hop_counts(&self) -> (usize, usize) {
        self.routes
            .as_ref()
            .map_or((0, 0), PacketRoutes::hop_counts)
    }
}

fn collect<T>(messages: Vec<Message>, pick: impl Fn(Message) -> Option<T>) -> Vec<T> {
    messages.into_iter().filter_map(pick).collect()
}
