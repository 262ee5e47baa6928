//! Address ranges, and the guard that keeps lab traffic inside the
//! benchmarking ranges 198.18.0.0/15 and 2001:2::/48.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use anyhow::{Context, bail};

/// An IPv4 or IPv6 range such as `198.18.1.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

const LAB_V4: Cidr = Cidr {
    network: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 0)),
    prefix: 15,
};
const LAB_V6: Cidr = Cidr {
    network: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0)),
    prefix: 48,
};

impl Cidr {
    /// The single-address range of `host`.
    pub fn host(host: IpAddr) -> Self {
        let prefix = if host.is_ipv4() { 32 } else { 128 };
        Self {
            network: host,
            prefix,
        }
    }

    /// First address of the range.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// Prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True when every address of `self` lies in `outer`.
    pub fn is_within(&self, outer: &Cidr) -> bool {
        // IPv4 addresses sit in the top 32 bits, so one mask fits both.
        let (inner, outer_bits) = match (self.network, outer.network) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(a.to_bits()) << 96, u128::from(b.to_bits()) << 96)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits()),
            _ => return false,
        };
        let mask = match outer.prefix {
            0 => 0,
            bits => u128::MAX << (128 - u32::from(bits)),
        };
        self.prefix >= outer.prefix && inner & mask == outer_bits & mask
    }

    /// Refuses any range outside 198.18.0.0/15 and 2001:2::/48: the lab
    /// never touches other addresses.
    pub fn require_in_lab(&self) -> anyhow::Result<()> {
        if self.is_within(&LAB_V4) || self.is_within(&LAB_V6) {
            return Ok(());
        }
        bail!("{self} is outside the lab ranges {LAB_V4} and {LAB_V6}; tests may not use it")
    }
}

impl FromStr for Cidr {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let (address, prefix) = text
            .split_once('/')
            .with_context(|| format!("`{text}`: expected ADDRESS/PREFIX"))?;
        let network: IpAddr = address
            .parse()
            .with_context(|| format!("`{text}`: `{address}` is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .with_context(|| format!("`{text}`: `{prefix}` is not a prefix length"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            bail!("`{text}`: prefix longer than {max}");
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().expect("test ranges parse")
    }

    #[test]
    fn lab_ranges_are_accepted() {
        for inside in [
            "198.18.1.0/24",
            "198.19.255.255/32",
            "2001:2:0:1::/64",
            "2001:2::/48",
        ] {
            assert!(cidr(inside).require_in_lab().is_ok(), "{inside}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for outside in [
            "198.17.255.0/24",
            "198.20.0.0/24",
            "198.18.0.0/14",
            "10.0.0.0/8",
            "192.168.1.1/32",
            "2001:3::/64",
            "2001:2::/47",
            "::1/128",
        ] {
            assert!(cidr(outside).require_in_lab().is_err(), "{outside}");
        }
    }

    #[test]
    fn malformed_ranges_name_the_problem() {
        let error = "198.18.1.0/33"
            .parse::<Cidr>()
            .expect_err("prefix too long");
        assert!(
            error.to_string().contains("prefix longer than 32"),
            "{error}"
        );
        let error = "198.18.1/24".parse::<Cidr>().expect_err("bad address");
        assert!(error.to_string().contains("not an IP address"), "{error}");
    }
}
