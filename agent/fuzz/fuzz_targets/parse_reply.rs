//! Feeds arbitrary bytes to the reply parser as every framing and family:
//! it must never panic, and nothing forged without the key validates.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use ward_agent::packet::{Framing, TagKey, parse};

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
            assert!(parse(packet, framing, source, &key, ident).is_err());
        }
    }
});
