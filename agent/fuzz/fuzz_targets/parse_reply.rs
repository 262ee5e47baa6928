//! Feeds arbitrary bytes to the reply parser as every framing and family.
//! It must never panic, and whatever it accepts must be self-consistent.
//!
//! (It may accept: the key is fixed here and libFuzzer's comparison tracing
//! sees the expected tag at the comparison, so it can splice in a valid one.
//! An attacker on the network sees no such comparison; the unforgeability
//! of tags is covered by the unit and lab tests.)
#![no_main]
#![forbid(unsafe_code)]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use ward_engine::packet::{Framing, TagKey, Verdict, parse};

fuzz_target!(|data: &[u8]| {
    let key = TagKey::from_bytes(*b"fuzzing-key-0001");
    let (header, packet) = data.split_at(data.len().min(17));
    let source = match header {
        [0, rest @ ..] if rest.len() >= 4 => IpAddr::from([rest[0], rest[1], rest[2], rest[3]]),
        [_, rest @ ..] if rest.len() == 16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(rest);
            IpAddr::from(octets)
        }
        _ => IpAddr::from([127, 0, 0, 1]),
    };
    for framing in [Framing::Ipv4Header, Framing::IcmpOnly] {
        for ident in [Some(0x5741), None] {
            match parse(packet, framing, source, &key, ident) {
                Ok(Verdict::Reply(fields)) => assert_eq!(fields.ident, ident.unwrap_or(0)),
                Ok(Verdict::Error { probe, target, .. }) => {
                    assert_eq!(probe.ident, ident.unwrap_or(0));
                    assert_eq!(target.is_ipv4(), source.is_ipv4());
                }
                Err(_) => {}
            }
        }
    }
});
