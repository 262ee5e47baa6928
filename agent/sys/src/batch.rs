//! `sendmmsg`/`recvmmsg` with fixed buffers allocated once: [`BATCH`]
//! packets per call, no allocation per packet. Each received packet gets a
//! [`RecvMeta`] with its source, its kernel receive time and the socket's
//! drop counter.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use super::syscall;
use ward_engine::packet::PROBE_LEN;

/// Packets per system call.
pub const BATCH: usize = 64;
/// Largest packet kept; ICMP errors quote at most 576 (IPv4) or 1280
/// (IPv6) bytes, our replies are 56.
const SLOT: usize = 1536;
/// Control space per packet: a timespec and a u32, with headers.
const CONTROL: usize = 64;

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; CONTROL]);

/// What the kernel said about one received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes received.
    pub len: usize,
    /// Sender.
    pub source: IpAddr,
    /// Kernel receive time (CLOCK_REALTIME), ns since the Unix epoch.
    pub kernel_realtime_ns: Option<u64>,
    /// Packets the kernel dropped on this socket so far (`SO_RXQ_OVFL`).
    pub drops: Option<u32>,
}

/// Receive state: buffers, addresses and control space for [`BATCH`]
/// packets. Boxed so the pointers inside stay valid; not `Send` (raw
/// pointers), so create it on the receiving thread.
pub struct RecvBatch {
    buffers: Box<[[u8; SLOT]; BATCH]>,
    names: Box<[libc::sockaddr_storage; BATCH]>,
    controls: Box<[Control; BATCH]>,
    iovecs: Box<[libc::iovec; BATCH]>,
    headers: Box<[libc::mmsghdr; BATCH]>,
    meta: [RecvMeta; BATCH],
}

impl RecvBatch {
    /// Allocates the buffers once.
    pub fn new() -> Self {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let (names, iovecs, headers) =
            unsafe { (Box::new(zeroed()), Box::new(zeroed()), Box::new(zeroed())) };
        let mut batch = Self {
            buffers: Box::new([[0; SLOT]; BATCH]),
            names,
            controls: Box::new([Control([0; CONTROL]); BATCH]),
            iovecs,
            headers,
            meta: [RecvMeta {
                len: 0,
                source: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                kernel_realtime_ns: None,
                drops: None,
            }; BATCH],
        };
        for i in 0..BATCH {
            batch.iovecs[i] = libc::iovec {
                iov_base: batch.buffers[i].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let header = &mut batch.headers[i].msg_hdr;
            header.msg_name = std::ptr::from_mut(&mut batch.names[i]).cast();
            header.msg_iov = std::ptr::from_mut(&mut batch.iovecs[i]);
            header.msg_iovlen = 1;
            header.msg_control = batch.controls[i].0.as_mut_ptr().cast();
        }
        batch
    }

    /// Receives up to [`BATCH`] packets without blocking; returns how many
    /// (0 when nothing is waiting).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for header in self.headers.iter_mut() {
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_controllen = CONTROL;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
        // `headers` holds BATCH initialised mmsghdrs whose pointers refer to
        // boxed buffers owned by `self`, alive and unaliased for the call.
        let received = match syscall!(recvmmsg(
            fd,
            self.headers.as_mut_ptr(),
            BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )) {
            Ok(count) => usize::try_from(count).unwrap_or(0),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(error) => return Err(error),
        };
        for i in 0..received {
            let header = &self.headers[i];
            self.meta[i] = RecvMeta {
                len: (header.msg_len as usize).min(SLOT),
                source: socket_address(&self.names[i]).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                ..parse_control(&header.msg_hdr)
            };
        }
        Ok(received)
    }

    /// Packet `i` of the last [`RecvBatch::recv`] and what the kernel said.
    pub fn packet(&self, i: usize) -> (&[u8], &RecvMeta) {
        let meta = &self.meta[i];
        (&self.buffers[i][..meta.len], meta)
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads the timestamp and drop counter from a received message's control
/// data.
fn parse_control(header: &libc::msghdr) -> RecvMeta {
    let mut meta = RecvMeta {
        len: 0,
        source: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        kernel_realtime_ns: None,
        drops: None,
    };
    // SAFETY: `header` was filled by recvmmsg; CMSG_FIRSTHDR/NXTHDR stay
    // within msg_control/msg_controllen, which the kernel set.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(header) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points into the control buffer.
        let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
        // SAFETY: the data of a cmsg of this level and type is the named
        // type; read_unaligned copes with any alignment.
        unsafe {
            if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
                let time: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
                let nanos = u64::try_from(time.tv_nsec).unwrap_or(0);
                meta.kernel_realtime_ns = Some(seconds * 1_000_000_000 + nanos);
            } else if level == libc::SOL_SOCKET && kind == libc::SO_RXQ_OVFL {
                meta.drops = Some(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()));
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(header, cmsg) };
    }
    meta
}

/// The IP address in a socket address filled by the kernel.
fn socket_address(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in,
            // which is smaller than sockaddr_storage and less aligned.
            let v4: &libc::sockaddr_in = unsafe { &*std::ptr::from_ref(storage).cast() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6: &libc::sockaddr_in6 = unsafe { &*std::ptr::from_ref(storage).cast() };
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

fn write_socket_address(storage: &mut libc::sockaddr_storage, address: IpAddr) -> libc::socklen_t {
    match address {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is at
            // least as aligned.
            let out: &mut libc::sockaddr_in = unsafe { &mut *std::ptr::from_mut(storage).cast() };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = 0;
            out.sin_addr = libc::in_addr {
                s_addr: u32::from(v4).to_be(),
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        IpAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let out: &mut libc::sockaddr_in6 = unsafe { &mut *std::ptr::from_mut(storage).cast() };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = 0;
            out.sin6_flowinfo = 0;
            out.sin6_scope_id = 0;
            out.sin6_addr = libc::in6_addr {
                s6_addr: v6.octets(),
            };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// What one flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Packets the kernel accepted.
    pub sent: usize,
    /// Packets the kernel refused for good (counted, not retried).
    pub failed: usize,
    /// True if the socket buffer was full and packets are still queued.
    pub blocked: bool,
}

/// Bytes of the IPv4 header written in front of each probe when the
/// socket has `IP_HDRINCL`.
const IPV4_HEADER: usize = 20;
const SEND_SLOT: usize = IPV4_HEADER + PROBE_LEN;

/// Send state: up to [`BATCH`] probes with their destinations.
pub struct SendBatch {
    buffers: Box<[[u8; SEND_SLOT]; BATCH]>,
    names: Box<[libc::sockaddr_storage; BATCH]>,
    iovecs: Box<[libc::iovec; BATCH]>,
    headers: Box<[libc::mmsghdr; BATCH]>,
    /// Write an IPv4 header before each probe (`IP_HDRINCL` sockets).
    ipv4_header: bool,
    /// IP identification of the next packet (never 0: the kernel would
    /// choose one itself, which is the cost this path avoids).
    next_ip_id: u16,
    /// Queued packets are `start..len`.
    start: usize,
    len: usize,
}

// SAFETY: the raw pointers inside point into boxes this batch owns; they
// move with it and nothing else refers to them, so the batch may be handed
// to the thread that sends (it is used by one thread at a time).
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Allocates the buffers once. With `ipv4_header`, each packet gets an
    /// IPv4 header (the kernel fills in the source and header checksum).
    pub fn new(ipv4_header: bool) -> Self {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let (names, iovecs, headers) =
            unsafe { (Box::new(zeroed()), Box::new(zeroed()), Box::new(zeroed())) };
        let mut batch = Self {
            buffers: Box::new([[0; SEND_SLOT]; BATCH]),
            names,
            iovecs,
            headers,
            ipv4_header,
            next_ip_id: 1,
            start: 0,
            len: 0,
        };
        for i in 0..BATCH {
            batch.iovecs[i] = libc::iovec {
                iov_base: batch.buffers[i].as_mut_ptr().cast(),
                iov_len: 0,
            };
            let header = &mut batch.headers[i].msg_hdr;
            header.msg_name = std::ptr::from_mut(&mut batch.names[i]).cast();
            header.msg_iov = std::ptr::from_mut(&mut batch.iovecs[i]);
            header.msg_iovlen = 1;
        }
        batch
    }

    /// True when no more packets fit.
    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.start == self.len
    }

    /// The buffer for the next packet's ICMP message; call
    /// [`SendBatch::commit`] after writing into it.
    pub fn next_buffer(&mut self) -> &mut [u8] {
        let offset = if self.ipv4_header { IPV4_HEADER } else { 0 };
        &mut self.buffers[self.len][offset..]
    }

    /// Queues the packet written into [`SendBatch::next_buffer`].
    pub fn commit(&mut self, destination: IpAddr, len: usize) {
        let i = self.len;
        let len = len.min(PROBE_LEN);
        let total = if let (true, IpAddr::V4(v4)) = (self.ipv4_header, destination) {
            let id = self.next_ip_id;
            self.next_ip_id = self.next_ip_id.checked_add(1).unwrap_or(1);
            write_ipv4_header(&mut self.buffers[i], v4, id, len);
            IPV4_HEADER + len
        } else {
            len
        };
        self.iovecs[i].iov_len = total;
        self.headers[i].msg_hdr.msg_namelen = write_socket_address(&mut self.names[i], destination);
        self.len += 1;
    }

    /// Queues the IPv4 packet written into [`SendBatch::next_buffer`] for
    /// a packet socket: the whole IP header is ours (source and checksum
    /// included) and the frame goes to `link`. Needs a batch made with
    /// `ipv4_header`.
    pub fn commit_link(
        &mut self,
        destination: Ipv4Addr,
        source: Ipv4Addr,
        link: &LinkAddress,
        len: usize,
    ) {
        let i = self.len;
        let len = len.min(PROBE_LEN);
        let id = self.next_ip_id;
        self.next_ip_id = self.next_ip_id.checked_add(1).unwrap_or(1);
        let slot = &mut self.buffers[i];
        write_ipv4_header(slot, destination, id, len);
        slot[12..16].copy_from_slice(&source.octets());
        let checksum = ipv4_header_checksum(&slot[..IPV4_HEADER]);
        slot[10..12].copy_from_slice(&checksum.to_be_bytes());
        self.iovecs[i].iov_len = IPV4_HEADER + len;
        self.headers[i].msg_hdr.msg_namelen = write_link_address(&mut self.names[i], link);
        self.len += 1;
    }

    /// Sends what is queued. Stops early (with `blocked`) when the socket
    /// buffer is full; what remains goes with the next flush.
    pub fn flush(&mut self, fd: RawFd) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        while self.start < self.len {
            let count = (self.len - self.start) as libc::c_uint;
            // The headers from `start` on are initialised and point to
            // boxed buffers owned by `self`, alive for the call.
            match syscall!(sendmmsg(
                fd,
                self.headers[self.start..].as_mut_ptr(),
                count,
                libc::MSG_DONTWAIT
            )) {
                Ok(sent) => {
                    let sent = usize::try_from(sent).unwrap_or(0);
                    outcome.sent += sent;
                    self.start += sent;
                }
                Err(error)
                    if error.kind() == io::ErrorKind::WouldBlock
                        || error.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    outcome.blocked = true;
                    return outcome;
                }
                Err(_) => {
                    // This packet cannot be sent (e.g. no route): skip it;
                    // its probe will time out as a miss.
                    outcome.failed += 1;
                    self.start += 1;
                }
            }
        }
        self.start = 0;
        self.len = 0;
        outcome
    }
}

/// Where a packet socket sends a frame: an interface and the next hop's
/// link-layer address (all zero on loopback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkAddress {
    /// Interface index.
    pub interface: u32,
    /// Next hop's MAC address.
    pub mac: [u8; 6],
}

fn write_link_address(storage: &mut libc::sockaddr_storage, link: &LinkAddress) -> libc::socklen_t {
    // SAFETY: sockaddr_ll fits in sockaddr_storage, which is at least as
    // aligned.
    let out: &mut libc::sockaddr_ll = unsafe { &mut *std::ptr::from_mut(storage).cast() };
    out.sll_family = libc::AF_PACKET as libc::sa_family_t;
    out.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    out.sll_ifindex = i32::try_from(link.interface).unwrap_or(0);
    out.sll_hatype = 0;
    out.sll_pkttype = 0;
    out.sll_halen = 6;
    out.sll_addr = [0; 8];
    out.sll_addr[..6].copy_from_slice(&link.mac);
    size_of::<libc::sockaddr_ll>() as libc::socklen_t
}

/// The IPv4 header checksum (ones' complement of the ones' complement sum
/// of the header's 16-bit words, with the checksum field zero).
fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks_exact(2)
        .map(|word| u32::from(u16::from_be_bytes([word[0], word[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header for an ICMP probe: DF, TTL 64, our id; source 0 and
/// checksum 0 are filled in by the kernel (`IP_HDRINCL`).
fn write_ipv4_header(slot: &mut [u8], destination: Ipv4Addr, id: u16, icmp_len: usize) {
    let total = u16::try_from(IPV4_HEADER + icmp_len).unwrap_or(u16::MAX);
    slot[0] = 0x45;
    slot[1] = 0;
    slot[2..4].copy_from_slice(&total.to_be_bytes());
    slot[4..6].copy_from_slice(&id.to_be_bytes());
    slot[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    slot[8] = 64;
    slot[9] = libc::IPPROTO_ICMP as u8;
    slot[10..16].fill(0);
    slot[16..20].copy_from_slice(&destination.octets());
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn ipv4_header_leaves_source_and_checksum_to_the_kernel() {
        let mut slot = [0xaa; SEND_SLOT];
        write_ipv4_header(&mut slot, Ipv4Addr::new(198, 18, 1, 7), 0x1234, PROBE_LEN);
        assert_eq!(slot[0], 0x45, "version 4, 20-byte header");
        assert_eq!(u16::from_be_bytes([slot[2], slot[3]]), 56, "total length");
        assert_eq!(
            u16::from_be_bytes([slot[4], slot[5]]),
            0x1234,
            "our non-zero id"
        );
        assert_eq!(slot[6] & 0x40, 0x40, "don't fragment");
        assert_eq!((slot[8], slot[9]), (64, 1), "TTL 64, ICMP");
        assert_eq!(&slot[10..16], &[0; 6], "checksum and source: the kernel's");
        assert_eq!(&slot[16..20], &[198, 18, 1, 7]);
    }

    #[test]
    fn link_frames_carry_our_source_and_a_valid_header_checksum() {
        let mut batch = SendBatch::new(true);
        let link = LinkAddress {
            interface: 7,
            mac: [2, 0, 0xc6, 0x12, 0, 2],
        };
        let source = Ipv4Addr::new(198, 18, 0, 1);
        batch.commit_link(Ipv4Addr::new(127, 1, 0, 9), source, &link, PROBE_LEN);
        let header = &batch.buffers[0][..IPV4_HEADER];
        assert_eq!(&header[12..16], &source.octets());
        assert_ne!(&header[10..12], &[0, 0], "checksum filled in");
        assert_eq!(
            ipv4_header_checksum(header),
            0,
            "a valid header sums to zero"
        );
        assert_eq!(batch.iovecs[0].iov_len, IPV4_HEADER + PROBE_LEN);
        // SAFETY: commit_link wrote a sockaddr_ll into this storage.
        let name: &libc::sockaddr_ll = unsafe { &*std::ptr::from_ref(&batch.names[0]).cast() };
        assert_eq!(name.sll_ifindex, 7);
        assert_eq!(&name.sll_addr[..6], &link.mac);
        assert_eq!(name.sll_protocol, (libc::ETH_P_IP as u16).to_be());
    }

    #[test]
    fn ip_ids_skip_zero() {
        let mut batch = SendBatch::new(true);
        batch.next_ip_id = u16::MAX;
        let destination = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        batch.commit(destination, PROBE_LEN);
        batch.commit(destination, PROBE_LEN);
        assert_eq!(
            u16::from_be_bytes([batch.buffers[0][4], batch.buffers[0][5]]),
            u16::MAX
        );
        assert_eq!(
            u16::from_be_bytes([batch.buffers[1][4], batch.buffers[1][5]]),
            1
        );
    }
}
