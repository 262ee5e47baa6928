//! `ward-agent probe --tcp PORT` on real raw sockets against the kernel's
//! loopback TCP: a listening port answers with a SYN/ACK (and is never
//! connected to), a closed one with an RST (alive, unless
//! `--no-rst-alive`), both families; a /16 answers in full; forged
//! answers never make a silent target alive and are counted.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::probe;

/// A port on `address` nothing listens on (bound, then closed).
fn closed_port(address: &str) -> u16 {
    let listener = TcpListener::bind((address, 0)).expect("bind");
    listener.local_addr().expect("address").port()
}

#[allow(
    clippy::disallowed_methods,
    reason = "a test's own thread paces itself with blocking sleeps"
)]
#[test]
fn a_listening_port_answers_with_a_synack_and_is_never_connected_to() {
    ward_testkit::require_root("raw TCP sockets");
    for address in ["127.0.0.1", "::1"] {
        let listener = TcpListener::bind((address, 0)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port().to_string();
        let run = probe(&[address, "--tcp", &port, "-c", "3", "-i", "50"]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let target = run.only_target();
        assert_eq!(target["state"], "up", "{target}");
        assert_eq!(target["received"], 3, "{target}");
        assert!(target["rtt_min_ms"].as_f64().expect("rtt") > 0.0);
        // The host's kernel reset each half-open connection: nothing to
        // accept.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            listener.accept().map(|_| ()).map_err(|error| error.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "{address}: a SYN probe must never complete a connection"
        );
    }
}

#[test]
fn a_closed_port_is_alive_by_its_rst_unless_told_otherwise() {
    ward_testkit::require_root("raw TCP sockets");
    for address in ["127.0.0.1", "::1"] {
        let port = closed_port(address).to_string();
        let alive = probe(&[address, "--tcp", &port, "-c", "2", "-i", "50"]);
        assert_eq!(alive.code, Some(0), "{}", alive.stderr);
        assert_eq!(alive.only_target()["state"], "up");
        let refused = probe(&[
            address,
            "--tcp",
            &port,
            "--no-rst-alive",
            "-c",
            "2",
            "-i",
            "50",
            "-t",
            "100",
        ]);
        assert_eq!(refused.code, Some(1), "{}", refused.stderr);
        assert_eq!(refused.only_target()["state"], "down");
        assert_eq!(refused.only_target()["received"], 0);
        assert_eq!(refused.summary("closed ports"), 2, "{}", refused.stderr);
    }
}

#[test]
fn every_address_of_a_slash_16_answers_on_a_closed_port() {
    ward_testkit::require_root("raw TCP sockets");
    let run = probe(&["127.4.0.0/16", "--tcp", "443", "-c", "1"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.targets.len(), 65_534);
    let down: Vec<_> = run
        .targets
        .iter()
        .filter(|target| target["state"] != "up")
        .collect();
    assert!(down.is_empty(), "{} not up: {:?}", down.len(), down.first());
    assert_eq!(run.summary("received"), 65_534);
}

/// A SYN/ACK from `from` to `to`, acknowledging `ack` (no checksum: the
/// loopback device does not check it, and neither does the agent).
fn synack(from: SocketAddr, to: SocketAddr, ack: u32) -> Vec<u8> {
    let mut segment = vec![0u8; 20];
    segment[0..2].copy_from_slice(&from.port().to_be_bytes());
    segment[2..4].copy_from_slice(&to.port().to_be_bytes());
    segment[4..8].copy_from_slice(&7u32.to_be_bytes());
    segment[8..12].copy_from_slice(&ack.to_be_bytes());
    segment[12] = 5 << 4;
    segment[13] = 0x12;
    segment[14..16].copy_from_slice(&1024u16.to_be_bytes());
    segment
}

#[allow(
    clippy::disallowed_methods,
    reason = "a test's own thread paces itself with blocking sleeps"
)]
#[test]
fn forged_answers_never_make_a_silent_target_alive_and_are_counted() {
    ward_testkit::require_root("raw TCP sockets");
    // Below the probes' ports: the host's own RSTs to the forged SYN/ACKs
    // (to this port; on loopback the agent sees them) are not answers.
    let port = (20_000..21_000)
        .find(|port| TcpListener::bind(("127.0.0.9", *port)).is_ok())
        .expect("a free port below 32768");
    let target = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 9), port));
    // Forge, for the whole run, SYN/ACKs from the target to the first
    // ports the probes leave from, with guessed acknowledgements.
    let forger = std::thread::spawn(move || {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::TCP),
        )
        .expect("a raw TCP socket");
        // From the target's own address: only the tag can tell them apart.
        socket
            .bind(&SocketAddr::from((target.ip(), 0)).into())
            .expect("bound to the target's address");
        let started = Instant::now();
        let mut forged = 0u32;
        while started.elapsed() < Duration::from_millis(900) {
            for our_port in 32768..32772u16 {
                let to = SocketAddr::from((IpAddr::V4(Ipv4Addr::LOCALHOST), our_port));
                let packet = synack(target, to, forged.wrapping_mul(2_654_435_761));
                socket
                    .send_to(&packet, &to.into())
                    .expect("a forged answer sent");
                forged += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        forged
    });
    let run = probe(&[
        "127.0.0.9",
        "--tcp",
        &port.to_string(),
        "--no-rst-alive",
        "-c",
        "5",
        "-i",
        "150",
        "-t",
        "100",
    ]);
    let forged = forger.join().expect("forger");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.only_target()["state"], "down");
    assert_eq!(run.only_target()["received"], 0);
    let invalid = run.summary("invalid");
    assert!(
        invalid > 0 && invalid <= u64::from(forged),
        "forged {forged}, counted invalid {invalid}: {}",
        run.stderr
    );
}
