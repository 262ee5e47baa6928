//! Target lists for `ward-agent probe`: addresses, CIDR ranges and host
//! names, from arguments or files. Every bad entry is reported with where
//! it came from; a list with any bad entry is refused whole.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

/// Largest number of addresses one CIDR range may expand to.
pub const MAX_RANGE: u128 = 1 << 24;

/// Where an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin<'a> {
    /// The n-th target argument (1-based).
    Argument(usize),
    /// Line n (1-based) of a file (`-` = standard input).
    Line {
        /// File name as given.
        file: &'a str,
        /// Line number.
        line: usize,
    },
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Argument(n) => write!(f, "argument {n}"),
            Origin::Line { file, line } => write!(f, "line {line} of {file}"),
        }
    }
}

/// A bad entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: `{entry}`: {problem}")]
pub struct TargetError {
    /// Where it came from ("line 3 of hosts.txt").
    pub origin: String,
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub problem: String,
}

/// What a list of entries expanded to: the addresses of the good entries
/// in input order, and every bad entry with what is wrong with it.
#[derive(Debug, Default)]
pub struct Expanded {
    /// The addresses, in input order.
    pub addresses: Vec<IpAddr>,
    /// The entries that could not be expanded.
    pub errors: Vec<TargetError>,
}

/// Expands every entry (a bad one does not stop the others, as fping).
/// Nothing is allocated per entry but the addresses.
pub fn expand<'a>(entries: impl IntoIterator<Item = (Origin<'a>, &'a str)>) -> Expanded {
    let mut expanded = Expanded::default();
    for (origin, raw) in entries {
        let entry = raw.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        if let Err(problem) = expand_one(entry, &mut expanded.addresses) {
            expanded.errors.push(TargetError {
                origin: origin.to_string(),
                entry: entry.to_owned(),
                problem,
            });
        }
    }
    expanded
}

/// A file's lines as entries with their line numbers.
pub fn lines<'a>(file: &'a str, text: &'a str) -> impl Iterator<Item = (Origin<'a>, &'a str)> {
    text.lines()
        .enumerate()
        .map(move |(i, line)| (Origin::Line { file, line: i + 1 }, line))
}

fn expand_one(entry: &str, addresses: &mut Vec<IpAddr>) -> Result<(), String> {
    if let Ok(address) = entry.parse::<IpAddr>() {
        if let Some(problem) = crate::engine::unprobeable(address) {
            return Err(problem);
        }
        addresses.push(address);
        return Ok(());
    }
    if let Some((network, prefix)) = entry.split_once('/') {
        return expand_range(network, prefix, addresses);
    }
    let address = resolve(entry)?;
    if let Some(problem) = crate::engine::unprobeable(address) {
        return Err(format!("resolves to {address}, {problem}"));
    }
    addresses.push(address);
    Ok(())
}

fn expand_range(network: &str, prefix: &str, addresses: &mut Vec<IpAddr>) -> Result<(), String> {
    let network: IpAddr = network
        .parse()
        .map_err(|_| format!("`{network}` is not an IP address"))?;
    if let Some(problem) = crate::engine::unprobeable(network) {
        return Err(format!("a range of {problem}"));
    }
    let prefix: u32 = prefix
        .parse()
        .map_err(|_| format!("`{prefix}` is not a prefix length"))?;
    let bits = if network.is_ipv4() { 32 } else { 128 };
    if prefix > bits {
        return Err(format!("prefix /{prefix} is longer than {bits} bits"));
    }
    let size = 1u128 << (bits - prefix);
    if size > MAX_RANGE {
        return Err(format!(
            "/{prefix} has {size} addresses; ranges are limited to {MAX_RANGE} (use a longer prefix)"
        ));
    }
    let base = match network {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    } & !(size - 1);
    // As fping -g: an IPv4 range of 4 or more skips network and broadcast.
    let (first, last) = if network.is_ipv4() && size >= 4 {
        (base + 1, base + size - 2)
    } else {
        (base, base + size - 1)
    };
    addresses.extend((first..=last).map(|value| match network {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(0))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
    }));
    Ok(())
}

fn resolve(name: &str) -> Result<IpAddr, String> {
    if name.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err("not a valid IPv4 address".into());
    }
    let valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid || name.starts_with('-') {
        return Err("not an IP address, a CIDR range or a host name".into());
    }
    let mut found = (name, 0)
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve host name: {error}"))?;
    found
        .next()
        .map(|address| address.ip())
        .ok_or_else(|| "host name has no address".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments<'a>(items: &'a [&'a str]) -> impl Iterator<Item = (Origin<'a>, &'a str)> {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| (Origin::Argument(i + 1), *item))
    }

    #[test]
    fn addresses_no_probe_may_go_to_are_refused_naming_why() {
        for (entry, words) in [
            (
                "::ffff:127.20.0.10",
                "write the IPv4 address 127.20.0.10 instead",
            ),
            ("::ffff:127.20.0.0/120", "IPv4-mapped"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
        ] {
            let errors = expand(arguments(&[entry])).errors;
            assert!(
                errors[0].problem.contains(words),
                "{entry}: {}",
                errors[0].problem
            );
        }
    }

    #[test]
    fn addresses_ranges_and_names_expand_in_order() {
        let expanded = expand(arguments(&[
            "127.0.0.9",
            "127.1.0.0/30",
            "::1",
            "localhost",
        ]));
        assert!(expanded.errors.is_empty(), "{:?}", expanded.errors);
        let text: Vec<String> = expanded.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(text[..4], ["127.0.0.9", "127.1.0.1", "127.1.0.2", "::1"]);
        assert_eq!(text.len(), 5);
        assert_eq!(expand(arguments(&["127.1.0.0/16"])).addresses.len(), 65_534);
        assert_eq!(expand(arguments(&["127.1.0.8/31"])).addresses.len(), 2);
        assert_eq!(expand(arguments(&["2001:2::/126"])).addresses.len(), 4);
    }

    #[test]
    fn every_bad_entry_is_named_with_its_line() {
        let text = "# lab hosts\n198.18.1.1\n198.18.1.300\n\n198.18.1.0/33 # oops\n-rf\n";
        let expanded = expand(lines("hosts.txt", text));
        assert_eq!(
            expanded.addresses,
            [IpAddr::from([198, 18, 1, 1])],
            "the good line stays"
        );
        let errors = expanded.errors;
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(
            messages[0].starts_with("line 3 of hosts.txt: `198.18.1.300`"),
            "{}",
            messages[0]
        );
        assert!(
            messages[1].contains("line 5 of hosts.txt") && messages[1].contains("longer than 32")
        );
        assert!(messages[2].contains("line 6 of hosts.txt"));
    }

    #[test]
    fn huge_ranges_are_refused() {
        let errors = expand(arguments(&["10.0.0.0/7", "2001:2::/64"])).errors;
        assert_eq!(errors.len(), 2);
        assert!(errors[0].problem.contains("limited to"));
    }
}
