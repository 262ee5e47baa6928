//! The socket traces go out on: raw ICMP, one per family, with its own
//! identifier and the TTL (hop limit) set per probe. Traces are a few
//! dozen packets each, so plain `sendto`/`recvfrom` with a short receive
//! timeout is enough; the prober's batched sockets stay untouched.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Protocol, SockAddr, Socket, Type};

use ward_engine::packet::{Family, Framing};

use super::{OpenError, filter, raw_socket};

/// A raw ICMP socket for trace probes.
#[derive(Debug)]
pub struct TraceSocket {
    socket: Socket,
    family: Family,
}

impl TraceSocket {
    /// Opens it for `family`, passing only echo replies carrying `ident`
    /// and ICMP errors; a receive waits at most `wait`. Needs
    /// `CAP_NET_RAW` (a datagram ICMP socket cannot set a TTL per probe
    /// and hears no router's errors).
    pub fn open(family: Family, ident: u16, wait: Duration) -> Result<Self, OpenError> {
        let protocol = match family {
            Family::V4 => Protocol::ICMPV4,
            Family::V6 => Protocol::ICMPV6,
        };
        let socket = raw_socket(family, Type::RAW.cloexec(), protocol, |binary| {
            OpenError::NoRawTrace { family, binary }
        })?;
        let io_error = |source| OpenError::Io { family, source };
        socket.set_read_timeout(Some(wait)).map_err(io_error)?;
        let fd = socket.as_raw_fd();
        match family {
            Family::V4 => filter::attach_ipv4_echo_filter(fd, ident),
            Family::V6 => filter::set_icmp6_filter(fd)
                .and_then(|()| filter::attach_ipv6_echo_filter(fd, ident)),
        }
        .map_err(io_error)?;
        Ok(Self { socket, family })
    }

    /// Opens a raw TCP socket that only sends a trace's SYNs (it reads
    /// nothing: a kernel filter drops every segment). Needs `CAP_NET_RAW`.
    pub fn open_tcp(family: Family) -> Result<Self, OpenError> {
        let socket = raw_socket(family, Type::RAW.cloexec(), Protocol::TCP, |binary| {
            OpenError::NoRawTrace { family, binary }
        })?;
        filter::attach_reject_all(socket.as_raw_fd())
            .map_err(|source| OpenError::Io { family, source })?;
        Ok(Self { socket, family })
    }

    /// Sends `packet` (an echo request, or a SYN on a TCP socket) to
    /// `destination` with TTL `ttl`.
    pub fn send(&self, packet: &[u8], destination: IpAddr, ttl: u8) -> io::Result<()> {
        match self.family {
            Family::V4 => self.socket.set_ttl_v4(u32::from(ttl))?,
            Family::V6 => self.socket.set_unicast_hops_v6(u32::from(ttl))?,
        }
        self.socket
            .send_to(packet, &SockAddr::from(SocketAddr::new(destination, 0)))?;
        Ok(())
    }

    /// Receives one packet into `buffer`: its length and source, or `None`
    /// when nothing came within the wait.
    pub fn receive(&self, buffer: &mut [u8]) -> io::Result<Option<(usize, IpAddr)>> {
        let mut bytes = [MaybeUninit::<u8>::uninit(); 1500];
        let (len, from) = match self.socket.recv_from(&mut bytes) {
            Ok(received) => received,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let len = len.min(buffer.len()).min(bytes.len());
        for (to, from) in buffer[..len].iter_mut().zip(&bytes[..len]) {
            // SAFETY: the kernel wrote the first `len` bytes of `bytes`
            // (recvfrom returned that many, and never more than the buffer).
            *to = unsafe { from.assume_init() };
        }
        let source = from
            .as_socket()
            .map(|address| address.ip())
            .ok_or_else(|| io::Error::other("a packet from a non-IP address"))?;
        Ok(Some((len, source)))
    }

    /// How received packets are laid out.
    pub fn framing(&self) -> Framing {
        match self.family {
            Family::V4 => Framing::Ipv4Header,
            Family::V6 => Framing::IcmpOnly,
        }
    }

    /// The address family.
    pub fn family(&self) -> Family {
        self.family
    }
}
