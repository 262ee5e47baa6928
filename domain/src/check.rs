//! What answers for a device's liveness: an ICMP echo reply (the
//! default), a TCP SYN/ACK or RST from a port (for devices that drop
//! ICMP: firewalls, some ATMs and cameras), or either (Checkmk's smart
//! ping). Written `icmp`, `tcp:443`, `icmp+tcp:443` in every interface.

use std::fmt;
use std::str::FromStr;

/// A device's liveness check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Check {
    /// An ICMP echo reply.
    #[default]
    Icmp,
    /// A TCP SYN/ACK (or, unless `rst_alive` is false, an RST) from a
    /// port.
    Tcp(u16),
    /// Either an ICMP echo reply or a TCP answer from a port.
    IcmpOrTcp(u16),
}

impl Check {
    /// The port it probes over TCP, if any.
    pub fn tcp_port(self) -> Option<u16> {
        match self {
            Check::Icmp => None,
            Check::Tcp(port) | Check::IcmpOrTcp(port) => Some(port),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Icmp => f.write_str("icmp"),
            Check::Tcp(port) => write!(f, "tcp:{port}"),
            Check::IcmpOrTcp(port) => write!(f, "icmp+tcp:{port}"),
        }
    }
}

impl FromStr for Check {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let port = |port: &str| {
            port.parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| format!("`{port}` is not a TCP port (1 to 65535)"))
        };
        match text.split_once(':') {
            None if text == "icmp" => Ok(Check::Icmp),
            Some(("tcp", number)) => Ok(Check::Tcp(port(number)?)),
            Some(("icmp+tcp", number)) => Ok(Check::IcmpOrTcp(port(number)?)),
            _ => Err(format!(
                "`{text}` is not a check: use icmp, tcp:PORT or icmp+tcp:PORT"
            )),
        }
    }
}

impl serde::Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Check {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_read_as_written() {
        for (text, check) in [
            ("icmp", Check::Icmp),
            ("tcp:443", Check::Tcp(443)),
            ("icmp+tcp:22", Check::IcmpOrTcp(22)),
        ] {
            assert_eq!(text.parse::<Check>(), Ok(check));
            assert_eq!(check.to_string(), text);
        }
        for wrong in [
            "",
            "tcp",
            "tcp:0",
            "tcp:65536",
            "udp:53",
            "icmp:1",
            "tcp:https",
        ] {
            assert!(wrong.parse::<Check>().is_err(), "{wrong}");
        }
        assert_eq!(Check::IcmpOrTcp(22).tcp_port(), Some(22));
        assert_eq!(Check::Icmp.tcp_port(), None);
    }
}
