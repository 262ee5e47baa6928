//! `ward-sys`: the agent's only contact with the kernel, and the only
//! `unsafe` in ward: ICMP sockets (raw, or unprivileged datagram as a
//! fallback), their options, batched `sendmmsg`/`recvmmsg`, the packet
//! socket and rtnetlink. Nothing here decides anything; the engine does.
//! Every kernel feature that is missing is recorded in [`Features`] and
//! reported, never silently assumed.
//!
//! Invariants: every `unsafe` block has a `// SAFETY:` comment saying why
//! it holds (`clippy::undocumented_unsafe_blocks` is denied); fixed
//! buffers, no allocation per packet; every syscall's failure becomes an
//! `io::Error` (EINTR retried in one helper).
#![allow(
    unsafe_code,
    reason = "the syscall layer: every block says why it holds"
)]

mod batch;
mod filter;
mod netlink;
mod trace_socket;

pub use batch::{BATCH, LinkAddress, RecvBatch, RecvMeta, SendBatch, SendOutcome};
pub use netlink::NetlinkSocket;
pub use trace_socket::TraceSocket;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use ward_engine::packet::{Family, Framing};

/// Runs a libc call and turns `-1` into the OS error. EINTR is retried.
macro_rules! syscall {
    ($name:ident ( $($arg:expr),* $(,)? )) => {{
        loop {
            // SAFETY: every use passes arguments that are valid for the
            // call as documented at the call site.
            let result = unsafe { libc::$name($($arg),*) };
            if result == -1 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                break Err(error);
            }
            break Ok(result);
        }
    }};
}
pub(crate) use syscall;

/// Send buffer asked for (`SO_SNDBUFFORCE`), bytes.
const SEND_BUFFER: libc::c_int = 8 << 20;

/// Whether a socket is raw (needs `CAP_NET_RAW`) or an unprivileged ICMP
/// datagram socket (needs the group in `net.ipv4.ping_group_range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    /// `SOCK_RAW`: we own the ICMP identifier and see every ICMP packet.
    Raw,
    /// `SOCK_DGRAM` ICMP: the kernel owns the identifier and the checksum,
    /// and ICMP errors are not delivered as packets.
    Datagram,
}

/// What the kernel granted on a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Raw or datagram.
    pub kind: SocketKind,
    /// `SO_TIMESTAMPNS` works: RTTs use kernel receive times.
    pub kernel_timestamps: bool,
    /// A kernel filter (BPF on IPv4, `ICMP6_FILTER` on IPv6) is attached.
    pub kernel_filter: bool,
    /// `SO_RXQ_OVFL` works: kernel drops on this socket are counted.
    pub drop_counter: bool,
    /// Receive buffer the kernel actually gave, bytes.
    pub receive_buffer: usize,
    /// IPv4 probes are sent with our own IP header (`IP_HDRINCL`).
    pub header_included: bool,
}

/// Why no ICMP socket could be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Neither a raw nor a datagram ICMP socket is allowed.
    #[error(
        "cannot open an ICMP socket for {family:?}: raw sockets need CAP_NET_RAW \
         (run as root, `setcap cap_net_raw+ep {binary}`, or AmbientCapabilities=CAP_NET_RAW \
         under systemd), and unprivileged ICMP sockets are not allowed for this user's \
         group (net.ipv4.ping_group_range is `{ping_group_range}`; e.g. \
         `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`)"
    )]
    NoPermission {
        /// The address family.
        family: Family,
        /// Path of this program, for the setcap hint.
        binary: String,
        /// Current value of the sysctl.
        ping_group_range: String,
    },
    /// TCP checks need a raw TCP socket, and it is not allowed.
    #[error(
        "cannot open a raw TCP socket for {family:?} (TCP checks send SYNs on one): it needs \
         CAP_NET_RAW (run as root, `setcap cap_net_raw+ep {binary}`, or \
         AmbientCapabilities=CAP_NET_RAW under systemd); there is no unprivileged fallback"
    )]
    NoRawTcp {
        /// The address family.
        family: Family,
        /// Path of this program, for the setcap hint.
        binary: String,
    },
    /// Traces need a raw ICMP socket, and it is not allowed.
    #[error(
        "cannot open a raw ICMP socket for {family:?} to trace paths on (a trace sets the TTL \
         of each probe and hears the routers' errors): it needs CAP_NET_RAW (run as root, \
         `setcap cap_net_raw+ep {binary}`, or AmbientCapabilities=CAP_NET_RAW under systemd)"
    )]
    NoRawTrace {
        /// The address family.
        family: Family,
        /// Path of this program, for the setcap hint.
        binary: String,
    },
    /// Another socket error.
    #[error("opening a probe socket for {family:?}: {source}")]
    Io {
        /// The address family.
        family: Family,
        /// What the kernel said.
        source: io::Error,
    },
}

/// One probe socket for one address family: ICMP, or raw TCP for SYN
/// probes.
#[derive(Debug)]
pub struct ProbeSocket {
    socket: Socket,
    family: Family,
    features: Features,
    ident: Option<u16>,
    tcp: bool,
}

fn this_binary() -> String {
    std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "ward-agent".into())
}

impl ProbeSocket {
    /// Opens a raw TCP socket for SYN probes (`ward_engine::tcp`): the
    /// kernel builds the IP header, a kernel filter passes only SYN/ACKs
    /// and RSTs to the probes' ports. Needs `CAP_NET_RAW`.
    pub fn open_tcp(family: Family, receive_buffer: usize) -> Result<Self, OpenError> {
        let socket = raw_socket(
            family,
            Type::RAW.nonblocking().cloexec(),
            Protocol::TCP,
            |binary| OpenError::NoRawTcp { family, binary },
        )?;
        let fd = socket.as_raw_fd();
        let receive_buffer = set_receive_buffer(&socket, receive_buffer);
        let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SEND_BUFFER);
        Ok(Self {
            family,
            features: Features {
                kind: SocketKind::Raw,
                kernel_timestamps: set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).is_ok(),
                kernel_filter: filter::attach_tcp_answer_filter(fd, family == Family::V4).is_ok(),
                drop_counter: set_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1).is_ok(),
                receive_buffer,
                header_included: false,
            },
            socket,
            ident: None,
            tcp: true,
        })
    }

    /// A raw TCP socket (SYN probes) rather than an ICMP one.
    pub fn is_tcp(&self) -> bool {
        self.tcp
    }

    /// Opens a raw socket, or a datagram socket when raw sockets are not
    /// permitted. `ident` is the ICMP identifier for raw sockets; the
    /// receive buffer is asked for with `SO_RCVBUFFORCE`, then `SO_RCVBUF`.
    pub fn open(family: Family, ident: u16, receive_buffer: usize) -> Result<Self, OpenError> {
        let (domain, protocol) = match family {
            Family::V4 => (Domain::IPV4, Protocol::ICMPV4),
            Family::V6 => (Domain::IPV6, Protocol::ICMPV6),
        };
        let io_error = |source| OpenError::Io { family, source };
        let (socket, kind) =
            match Socket::new(domain, Type::RAW.nonblocking().cloexec(), Some(protocol)) {
                Ok(socket) => (socket, SocketKind::Raw),
                Err(raw_error) if is_permission(&raw_error) => {
                    match Socket::new(domain, Type::DGRAM.nonblocking().cloexec(), Some(protocol)) {
                        Ok(socket) => (socket, SocketKind::Datagram),
                        Err(error) if is_permission(&error) => {
                            return Err(OpenError::NoPermission {
                                family,
                                binary: this_binary(),
                                ping_group_range: std::fs::read_to_string(
                                    "/proc/sys/net/ipv4/ping_group_range",
                                )
                                .map(|text| text.split_whitespace().collect::<Vec<_>>().join(" "))
                                .unwrap_or_else(|_| "unreadable".into()),
                            });
                        }
                        Err(error) => return Err(io_error(error)),
                    }
                }
                Err(error) => return Err(io_error(error)),
            };
        let fd = socket.as_raw_fd();
        let receive_buffer = set_receive_buffer(&socket, receive_buffer);
        // A deep send buffer lets a whole burst of batches queue without
        // EAGAIN; without CAP_NET_ADMIN the default stays (not an error).
        let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SEND_BUFFER);
        // Raw IPv4: we write the IP header (IP_HDRINCL), which skips the
        // kernel's per-packet header building and id selection. Without
        // it, don't-fragment probes still take the cheaper id path; either
        // failing only costs speed.
        let header_included = kind == SocketKind::Raw
            && family == Family::V4
            && set_int(fd, libc::IPPROTO_IP, libc::IP_HDRINCL, 1).is_ok();
        if family == Family::V4 && !header_included {
            let _ = set_int(
                fd,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            );
        }
        let kernel_timestamps = set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).is_ok();
        let drop_counter = set_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1).is_ok();
        let kernel_filter = match (kind, family) {
            (SocketKind::Raw, Family::V4) => filter::attach_ipv4_echo_filter(fd, ident).is_ok(),
            (SocketKind::Raw, Family::V6) => filter::set_icmp6_filter(fd).is_ok(),
            // The kernel already demultiplexes datagram sockets by identifier.
            (SocketKind::Datagram, _) => true,
        };
        Ok(Self {
            socket,
            family,
            features: Features {
                kind,
                kernel_timestamps,
                kernel_filter,
                drop_counter,
                receive_buffer,
                header_included,
            },
            ident: (kind == SocketKind::Raw).then_some(ident),
            tcp: false,
        })
    }

    /// What the kernel granted.
    pub fn features(&self) -> Features {
        self.features
    }

    /// The address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The identifier replies must carry (`None`: the kernel matched it).
    pub fn ident(&self) -> Option<u16> {
        self.ident
    }

    /// How received packets are laid out.
    pub fn framing(&self) -> Framing {
        match (self.features.kind, self.family) {
            (SocketKind::Raw, Family::V4) => Framing::Ipv4Header,
            _ => Framing::IcmpOnly,
        }
    }

    /// The kernel computes ICMP checksums on this socket.
    pub fn kernel_checksums(&self) -> bool {
        self.features.kind == SocketKind::Datagram
    }

    /// The raw descriptor, for readiness registration.
    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// A packet socket that only sends (`AF_PACKET`, `SOCK_DGRAM`, protocol
/// 0 so the kernel never queues received frames on it): IPv4 packets go
/// straight to an interface, past the IP output path (routing, netfilter
/// `output`, IPsec policies) — the caller picked the interface and the
/// next hop's address. Needs `CAP_NET_RAW`.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens it, non-blocking, with a deep send buffer and the queueing
    /// discipline bypassed where the kernel allows.
    pub fn open() -> io::Result<Self> {
        let raw = syscall!(socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0
        ))?;
        // SAFETY: `raw` is a descriptor we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Both only cost speed when refused.
        let _ = set_int(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            SEND_BUFFER,
        );
        let _ = set_int(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            1,
        );
        Ok(Self { fd })
    }

    /// The descriptor, for [`SendBatch::flush`].
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A raw socket of `family` and `kind` for `protocol`; a refusal for want
/// of permission is `refused` (given this program's path, for the setcap
/// hint).
pub(crate) fn raw_socket(
    family: Family,
    kind: Type,
    protocol: Protocol,
    refused: impl FnOnce(String) -> OpenError,
) -> Result<Socket, OpenError> {
    let domain = match family {
        Family::V4 => Domain::IPV4,
        Family::V6 => Domain::IPV6,
    };
    Socket::new(domain, kind, Some(protocol)).map_err(|error| {
        if is_permission(&error) {
            refused(this_binary())
        } else {
            OpenError::Io {
                family,
                source: error,
            }
        }
    })
}

fn is_permission(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// Asks for `bytes` of receive buffer, beyond `rmem_max` if permitted;
/// returns what the kernel granted (it reports double the usable size).
fn set_receive_buffer(socket: &Socket, bytes: usize) -> usize {
    let fd = socket.as_raw_fd();
    let wanted = i32::try_from(bytes).unwrap_or(i32::MAX);
    if set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, wanted).is_err() {
        // Without CAP_NET_ADMIN: capped at net.core.rmem_max.
        let _ = socket.set_recv_buffer_size(bytes);
    }
    socket.recv_buffer_size().unwrap_or(0)
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    set_option(fd, level, name, &value)
}

/// `setsockopt` with a typed value.
pub(crate) fn set_option<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let length = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // `value` points to a live `T` of `length` bytes for the whole call.
    syscall!(setsockopt(
        fd,
        level,
        name,
        std::ptr::from_ref(value).cast(),
        length
    ))?;
    Ok(())
}
