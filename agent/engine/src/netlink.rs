//! rtnetlink messages, built and parsed without I/O: the few requests the
//! packet send path needs (routes, rules, neighbours, links) and the
//! fields it reads from the answers. The socket is in `sys::netlink`.

use std::net::Ipv4Addr;

const HEADER: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const RTM_NEWRULE: u16 = 32;
const RTM_GETRULE: u16 = 34;

const AF_INET: u8 = 2;
/// `rtm_flags`: answer with the FIB entry that matched, not the /32.
const RTM_F_FIB_MATCH: u32 = 0x2000;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;
const RTA_NH_ID: u16 = 30;

const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;

const FRA_PRIORITY: u16 = 6;
const FRA_SUPPRESS_IFGROUP: u16 = 13;
const FRA_SUPPRESS_PREFIXLEN: u16 = 14;
const FRA_TABLE: u16 = 15;
const FRA_PAD: u16 = 18;
const FRA_PROTOCOL: u16 = 21;
const FR_ACT_TO_TBL: u8 = 1;

/// The kernel's `local` routing table.
pub const TABLE_LOCAL: u32 = 255;
/// The `main` routing table.
pub const TABLE_MAIN: u32 = 254;
/// The `default` routing table.
pub const TABLE_DEFAULT: u32 = 253;

/// Multicast groups (`nl_groups` bits) whose messages mean "routing may
/// have changed": links, IPv4 addresses, routes and rules.
pub const CHANGE_GROUPS: u32 = 0x1 | 0x10 | 0x40 | 0x80;

/// A dump request for IPv4 routes, rules or neighbours, or for links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dump {
    /// Every IPv4 route of every table.
    Routes,
    /// The IPv4 policy rules.
    Rules,
    /// The IPv4 neighbour (ARP) table.
    Neighbours,
    /// Every network interface.
    Links,
}

/// The bytes of a dump request.
pub fn dump_request(what: Dump, seq: u32) -> Vec<u8> {
    let (kind, body): (u16, &[u8]) = match what {
        Dump::Routes => (RTM_GETROUTE, &[AF_INET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Dump::Rules => (RTM_GETRULE, &[AF_INET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Dump::Neighbours => (RTM_GETNEIGH, &[AF_INET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Dump::Links => (RTM_GETLINK, &[0; 16]),
    };
    message(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, body)
}

/// The bytes of a route query for `destination`: the route the kernel
/// would use (`fib_match` false: oif, gateway, source) or the FIB entry
/// that matched (`fib_match` true: table, prefix).
pub fn route_query(destination: Ipv4Addr, fib_match: bool, seq: u32) -> Vec<u8> {
    let flags = if fib_match { RTM_F_FIB_MATCH } else { 0 };
    let mut body = vec![AF_INET, 32, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&flags.to_ne_bytes());
    body.extend_from_slice(&8u16.to_ne_bytes());
    body.extend_from_slice(&RTA_DST.to_ne_bytes());
    body.extend_from_slice(&destination.octets());
    message(RTM_GETROUTE, NLM_F_REQUEST, seq, &body)
}

fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(HEADER + body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(body);
    out
}

/// Why a netlink answer could not be used.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetlinkError {
    /// A message is shorter than its header says, or than its kind needs.
    #[error("truncated netlink message ({0} bytes)")]
    Truncated(usize),
    /// The kernel answered with an error (a negative errno).
    #[error("the kernel refused the request: errno {0}")]
    Kernel(i32),
}

/// One message of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A route (dump entry or query answer).
    Route(Route),
    /// A policy rule.
    Rule(Rule),
    /// A neighbour entry.
    Neighbour(Neighbour),
    /// A network interface.
    Link(Link),
    /// The end of a dump.
    Done,
    /// An acknowledgement, or a kind this module does not read.
    Other,
}

/// A parsed message and the sequence number of the request it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The request's sequence number.
    pub seq: u32,
    /// What it says; `Err` when the kernel refused the request.
    pub message: Result<Message, NetlinkError>,
}

/// An IPv4 route: a FIB entry, or the kernel's answer to a route query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Routing table id.
    pub table: u32,
    /// `RTN_*` type (1 unicast, 2 local, …).
    pub kind: u8,
    /// Destination prefix.
    pub destination: Ipv4Addr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Type-of-service selector (0: any).
    pub tos: u8,
    /// Output interface.
    pub output_interface: Option<u32>,
    /// Next-hop gateway (absent: the destination is on the link).
    pub gateway: Option<Ipv4Addr>,
    /// Preferred source address.
    pub preferred_source: Option<Ipv4Addr>,
    /// Metric: of two entries for one prefix the lower wins.
    pub priority: u32,
    /// Several next hops, a nexthop object or an `RTA_VIA`: not modelled.
    pub complex_next_hop: bool,
}

/// `RTN_UNICAST`.
pub const ROUTE_UNICAST: u8 = 1;

/// An IPv4 policy rule, reduced to whether it is one of the kernel's
/// three defaults (`0: lookup local`, `32766: lookup main`, `32767:
/// lookup default`) and nothing more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Priority.
    pub priority: u32,
    /// Table looked up.
    pub table: u32,
    /// No selector and no action other than "look up the table".
    pub plain: bool,
}

impl Rule {
    /// One of the kernel's default rules.
    pub fn is_default(&self) -> bool {
        self.plain
            && matches!(
                (self.priority, self.table),
                (0, TABLE_LOCAL) | (32766, TABLE_MAIN) | (32767, TABLE_DEFAULT)
            )
    }
}

/// An entry of the IPv4 neighbour table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Interface.
    pub interface: u32,
    /// Its IPv4 address.
    pub address: Ipv4Addr,
    /// Its link-layer (MAC) address, when known.
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` state bits.
    pub state: u16,
}

impl Neighbour {
    /// The kernel holds this entry as confirmed: reachable, permanent or
    /// not needing resolution. Stale or probing entries are not trusted.
    pub fn is_confirmed(&self) -> bool {
        const NUD_REACHABLE: u16 = 0x02;
        const NUD_NOARP: u16 = 0x40;
        const NUD_PERMANENT: u16 = 0x80;
        self.state & (NUD_REACHABLE | NUD_NOARP | NUD_PERMANENT) != 0
    }
}

/// A network interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Index.
    pub index: u32,
    /// `ARPHRD_*` hardware type (1 Ethernet, 772 loopback).
    pub hardware: u16,
    /// Administratively up.
    pub up: bool,
}

/// `ARPHRD_ETHER`.
pub const HARDWARE_ETHERNET: u16 = 1;

/// Parses every message in a buffer read from a netlink socket.
pub fn parse(mut buffer: &[u8]) -> Result<Vec<Answer>, NetlinkError> {
    let mut answers = Vec::new();
    while buffer.len() >= HEADER {
        let len = read_u32(buffer, 0) as usize;
        if len < HEADER || len > buffer.len() {
            return Err(NetlinkError::Truncated(buffer.len()));
        }
        let kind = read_u16(buffer, 4);
        let seq = read_u32(buffer, 8);
        let body = &buffer[HEADER..len];
        answers.push(Answer {
            seq,
            message: parse_body(kind, body),
        });
        buffer = &buffer[align(len).min(buffer.len())..];
    }
    Ok(answers)
}

fn parse_body(kind: u16, body: &[u8]) -> Result<Message, NetlinkError> {
    let need = |size: usize| {
        if body.len() < size {
            Err(NetlinkError::Truncated(body.len()))
        } else {
            Ok(())
        }
    };
    match kind {
        NLMSG_DONE => Ok(Message::Done),
        NLMSG_ERROR => {
            need(4)?;
            match i32::from_ne_bytes([body[0], body[1], body[2], body[3]]) {
                0 => Ok(Message::Other),
                errno => Err(NetlinkError::Kernel(errno)),
            }
        }
        RTM_NEWROUTE => {
            need(12)?;
            Ok(Message::Route(parse_route(body)))
        }
        RTM_NEWRULE => {
            need(12)?;
            Ok(Message::Rule(parse_rule(body)))
        }
        RTM_NEWNEIGH => {
            need(12)?;
            Ok(Message::Neighbour(parse_neighbour(body)))
        }
        RTM_NEWLINK => {
            need(16)?;
            Ok(Message::Link(Link {
                index: read_u32(body, 4),
                hardware: read_u16(body, 2),
                up: read_u32(body, 8) & 1 != 0,
            }))
        }
        _ => Ok(Message::Other),
    }
}

fn parse_route(body: &[u8]) -> Route {
    let mut route = Route {
        table: u32::from(body[4]),
        kind: body[7],
        destination: Ipv4Addr::UNSPECIFIED,
        prefix_len: body[1],
        tos: body[3],
        output_interface: None,
        gateway: None,
        preferred_source: None,
        priority: 0,
        complex_next_hop: false,
    };
    for (kind, value) in attributes(&body[12..]) {
        match kind {
            RTA_DST => route.destination = ipv4(value).unwrap_or(Ipv4Addr::UNSPECIFIED),
            RTA_OIF => route.output_interface = value.get(..4).map(|_| read_u32(value, 0)),
            RTA_GATEWAY => route.gateway = ipv4(value),
            RTA_PREFSRC => route.preferred_source = ipv4(value),
            RTA_PRIORITY if value.len() >= 4 => route.priority = read_u32(value, 0),
            RTA_TABLE if value.len() >= 4 => route.table = read_u32(value, 0),
            RTA_MULTIPATH | RTA_VIA | RTA_NH_ID => route.complex_next_hop = true,
            _ => {}
        }
    }
    route
}

fn parse_rule(body: &[u8]) -> Rule {
    let selectors_empty = body[1] == 0 && body[2] == 0 && body[3] == 0;
    let mut rule = Rule {
        priority: 0,
        table: u32::from(body[4]),
        plain: selectors_empty && body[7] == FR_ACT_TO_TBL,
    };
    for (kind, value) in attributes(&body[12..]) {
        match kind {
            FRA_PRIORITY if value.len() >= 4 => rule.priority = read_u32(value, 0),
            FRA_TABLE if value.len() >= 4 => rule.table = read_u32(value, 0),
            // "Suppress nothing" (-1) is what every default rule carries.
            FRA_SUPPRESS_PREFIXLEN | FRA_SUPPRESS_IFGROUP
                if value.len() >= 4 && read_u32(value, 0) == u32::MAX => {}
            FRA_PROTOCOL | FRA_PAD => {}
            _ => rule.plain = false,
        }
    }
    rule
}

fn parse_neighbour(body: &[u8]) -> Neighbour {
    let mut neighbour = Neighbour {
        interface: read_u32(body, 4),
        address: Ipv4Addr::UNSPECIFIED,
        mac: None,
        state: read_u16(body, 8),
    };
    for (kind, value) in attributes(&body[12..]) {
        match kind {
            NDA_DST => neighbour.address = ipv4(value).unwrap_or(Ipv4Addr::UNSPECIFIED),
            NDA_LLADDR => neighbour.mac = value.try_into().ok(),
            _ => {}
        }
    }
    neighbour
}

/// The `(type, value)` pairs of a run of route attributes.
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let len = usize::from(read_u16(bytes, 0));
        if len < 4 || len > bytes.len() {
            return None;
        }
        let item = (read_u16(bytes, 2) & 0x3fff, &bytes[4..len]);
        bytes = &bytes[align(len).min(bytes.len())..];
        Some(item)
    })
}

fn ipv4(value: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(value).ok().map(Ipv4Addr::from)
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests;
