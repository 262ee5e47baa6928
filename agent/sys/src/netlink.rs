//! An rtnetlink socket: requests out, parsed answers in. Messages are
//! built and read by `ward_engine::netlink`; this file only moves bytes.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::syscall;
use ward_engine::netlink::{self, Answer, Message};

/// Answers read per `recv`.
const RECEIVE_BUFFER: usize = 1 << 16;
/// Route queries written per `send` (the kernel answers each in turn).
const QUERIES_PER_SEND: usize = 128;
/// The longest a request socket waits for the kernel's next answer: the
/// engine thread that asks must never stall on a missing one.
pub const ANSWER_TIMEOUT_MS: i64 = 250;

/// A `NETLINK_ROUTE` socket.
#[derive(Debug)]
pub struct NetlinkSocket {
    fd: OwnedFd,
    next_seq: u32,
    buffer: Vec<u8>,
}

impl NetlinkSocket {
    /// Opens a socket for requests (`groups` 0) or one that receives the
    /// change notifications of `groups` (non-blocking).
    pub fn open(groups: u32) -> io::Result<Self> {
        let flags = libc::SOCK_CLOEXEC | if groups == 0 { 0 } else { libc::SOCK_NONBLOCK };
        let raw = syscall!(socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | flags,
            libc::NETLINK_ROUTE
        ))?;
        // SAFETY: `raw` is a descriptor we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: all-zero is a valid sockaddr_nl.
        let mut address: libc::sockaddr_nl = unsafe { zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        address.nl_groups = groups;
        // `address` is a live sockaddr_nl of the length given.
        syscall!(bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&address).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t
        ))?;
        if groups == 0 {
            let timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: (ANSWER_TIMEOUT_MS * 1_000) as libc::suseconds_t,
            };
            super::set_option(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout,
            )?;
        }
        Ok(Self {
            fd,
            next_seq: 1,
            buffer: vec![0; RECEIVE_BUFFER],
        })
    }

    /// Every message of a dump.
    pub fn dump(&mut self, what: netlink::Dump) -> io::Result<Vec<Message>> {
        let seq = self.seq();
        self.send(&netlink::dump_request(what, seq))?;
        let mut messages = Vec::new();
        loop {
            for answer in self.receive()? {
                if answer.seq != seq {
                    continue;
                }
                match answer.message.map_err(io::Error::other)? {
                    Message::Done => return Ok(messages),
                    message => messages.push(message),
                }
            }
        }
    }

    /// The kernel's answer to a route query for each destination, in
    /// order (`Err` where it has none, e.g. no route).
    pub fn query_routes(
        &mut self,
        destinations: &[std::net::Ipv4Addr],
        fib_match: bool,
    ) -> io::Result<Vec<Result<netlink::Route, netlink::NetlinkError>>> {
        let mut answers = Vec::with_capacity(destinations.len());
        for chunk in destinations.chunks(QUERIES_PER_SEND) {
            let first = self.next_seq;
            let mut request = Vec::with_capacity(chunk.len() * 40);
            for destination in chunk {
                let seq = self.seq();
                request.extend(netlink::route_query(*destination, fib_match, seq));
            }
            self.send(&request)?;
            let mut pending: Vec<Option<Result<netlink::Route, netlink::NetlinkError>>> =
                vec![None; chunk.len()];
            let mut missing = chunk.len();
            while missing > 0 {
                for answer in self.receive()? {
                    let Some(slot) = answer
                        .seq
                        .checked_sub(first)
                        .and_then(|i| pending.get_mut(i as usize))
                    else {
                        continue;
                    };
                    let result = match answer.message {
                        Ok(Message::Route(route)) => Ok(route),
                        Ok(_) => continue,
                        Err(error) => Err(error),
                    };
                    if slot.replace(result).is_none() {
                        missing -= 1;
                    }
                }
            }
            answers.extend(pending.into_iter().flatten());
        }
        Ok(answers)
    }

    /// True if at least one notification arrived since the last call
    /// (non-blocking sockets only). A lost notification (`ENOBUFS`) also
    /// counts: something changed.
    pub fn drain_notifications(&mut self) -> io::Result<bool> {
        let mut any = false;
        loop {
            match self.receive_raw() {
                Ok(_) => any = true,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(any),
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => any = true,
                Err(error) => return Err(error),
            }
        }
    }

    fn seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        seq
    }

    fn send(&self, request: &[u8]) -> io::Result<()> {
        // `request` is a live buffer of the length given.
        syscall!(send(
            self.fd.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0
        ))?;
        Ok(())
    }

    /// The next answers to a request; an answer that does not come within
    /// [`ANSWER_TIMEOUT_MS`] is an error (the caller stops trusting netlink).
    fn receive(&mut self) -> io::Result<Vec<Answer>> {
        let len = self.receive_raw().map_err(|error| {
            if error.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the kernel did not answer a netlink request within {ANSWER_TIMEOUT_MS} ms"
                    ),
                )
            } else {
                error
            }
        })?;
        netlink::parse(&self.buffer[..len]).map_err(io::Error::other)
    }

    fn receive_raw(&mut self) -> io::Result<usize> {
        // `buffer` is owned by `self` and writable for its whole length.
        let len = syscall!(recv(
            self.fd.as_raw_fd(),
            self.buffer.as_mut_ptr().cast(),
            self.buffer.len(),
            0
        ))?;
        Ok(usize::try_from(len).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_socket_gives_up_on_an_answer_that_never_comes() {
        let mut socket = NetlinkSocket::open(0).expect("a netlink socket");
        let (done, outcome) = std::sync::mpsc::channel();
        // Nothing was asked, so nothing will come: without a receive
        // timeout this waits forever, as the engine thread would.
        std::thread::spawn(move || {
            let _ = done.send(
                socket
                    .receive()
                    .map(|_| ())
                    .map_err(|error| error.to_string()),
            );
        });
        let outcome = outcome
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the wait ends instead of stalling its thread");
        let error = outcome.expect_err("no answer");
        assert!(error.contains("did not answer"), "{error}");
    }
}
