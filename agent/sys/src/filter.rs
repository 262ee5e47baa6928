//! Kernel-side filters so the agent only wakes up for what is its own.

use std::io;
use std::os::fd::RawFd;

use super::set_option;

// Classic BPF opcodes (linux/filter.h).
const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_IND: u16 = 0x40;
const BPF_ABS: u16 = 0x20;
const BPF_MSH: u16 = 0xa0;
const BPF_ALU: u16 = 0x04;
const BPF_IMM: u16 = 0x00;
const BPF_AND: u16 = 0x50;
const BPF_JEQ: u16 = 0x10;
const BPF_JGE: u16 = 0x30;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;

const ACCEPT: u32 = 0x0004_0000;
const REJECT: u32 = 0;

/// `ICMP6_FILTER` (linux/icmpv6.h), not exported by libc.
const ICMP6_FILTER: libc::c_int = 1;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Attaches `program` to socket `fd`.
fn attach(fd: RawFd, program: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).unwrap_or(u16::MAX),
        filter: program.as_ptr().cast_mut(),
    };
    // The kernel copies the program during the call; `program` outlives it.
    set_option(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// On a raw IPv4 ICMP socket, passes only echo replies carrying `ident`,
/// destination-unreachable and time-exceeded errors.
pub fn attach_ipv4_echo_filter(fd: RawFd, ident: u16) -> io::Result<()> {
    let program = [
        // X = IPv4 header length.
        op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0),
        // A = ICMP type.
        op(BPF_LD | BPF_B | BPF_IND, 0, 0, 0),
        op(BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 0), // echo reply → check id
        op(BPF_JMP | BPF_JEQ | BPF_K, 3, 0, 3), // unreachable → accept
        op(BPF_JMP | BPF_JEQ | BPF_K, 2, 3, 11), // time exceeded → accept, else reject
        // A = ICMP identifier.
        op(BPF_LD | BPF_H | BPF_IND, 0, 0, 4),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, u32::from(ident)),
        op(BPF_RET | BPF_K, 0, 0, ACCEPT),
        op(BPF_RET | BPF_K, 0, 0, REJECT),
    ];
    attach(fd, &program)
}

/// On a raw ICMPv6 socket (which sees the ICMPv6 message only), passes
/// only echo replies carrying `ident`, destination-unreachable and
/// time-exceeded errors.
pub fn attach_ipv6_echo_filter(fd: RawFd, ident: u16) -> io::Result<()> {
    let program = [
        // A = ICMPv6 type.
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),
        op(BPF_JMP | BPF_JEQ | BPF_K, 3, 0, 129), // echo reply → check id
        op(BPF_JMP | BPF_JEQ | BPF_K, 4, 0, 1),   // unreachable → accept
        op(BPF_JMP | BPF_JEQ | BPF_K, 3, 0, 3),   // time exceeded → accept
        op(BPF_RET | BPF_K, 0, 0, REJECT),
        // A = ICMPv6 identifier.
        op(BPF_LD | BPF_H | BPF_ABS, 0, 0, 4),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, u32::from(ident)),
        op(BPF_RET | BPF_K, 0, 0, ACCEPT),
        op(BPF_RET | BPF_K, 0, 0, REJECT),
    ];
    attach(fd, &program)
}

/// Passes nothing: for a socket that only sends (a raw TCP socket would
/// otherwise queue a copy of every TCP segment the host receives).
pub fn attach_reject_all(fd: RawFd) -> io::Result<()> {
    attach(fd, &[op(BPF_RET | BPF_K, 0, 0, REJECT)])
}

/// On a raw TCP socket, passes only what may answer a SYN probe: a
/// SYN/ACK or an RST to a port of 32768 and above (`ward_engine::tcp`).
/// An IPv4 socket sees the IP header first (`ipv4_header`), an IPv6 one
/// the TCP header.
pub fn attach_tcp_answer_filter(fd: RawFd, ipv4_header: bool) -> io::Result<()> {
    let header_length = if ipv4_header {
        // X = IPv4 header length.
        op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0)
    } else {
        op(BPF_LDX | BPF_IMM, 0, 0, 0)
    };
    let program = [
        header_length,
        // A = destination port.
        op(BPF_LD | BPF_H | BPF_IND, 0, 0, 2),
        op(BPF_JMP | BPF_JGE | BPF_K, 0, 5, 32768),
        // A = flags: RST → accept; SYN and ACK → accept; else reject.
        op(BPF_LD | BPF_B | BPF_IND, 0, 0, 13),
        op(BPF_JMP | BPF_JSET | BPF_K, 2, 0, 0x04),
        op(BPF_ALU | BPF_AND | BPF_K, 0, 0, 0x12),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0x12),
        op(BPF_RET | BPF_K, 0, 0, ACCEPT),
        op(BPF_RET | BPF_K, 0, 0, REJECT),
    ];
    attach(fd, &program)
}

/// On a raw ICMPv6 socket, passes only echo replies, destination
/// unreachable and time exceeded (no neighbour discovery, no requests).
pub fn set_icmp6_filter(fd: RawFd) -> io::Result<()> {
    // A set bit blocks that type.
    let mut blocked = [u32::MAX; 8];
    for pass in [1u8, 3, 129] {
        blocked[usize::from(pass >> 5)] &= !(1u32 << (pass & 31));
    }
    set_option(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &blocked)
}
