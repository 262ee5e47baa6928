//! The lab's links: veth pairs between its namespaces (client and site,
//! and the host link to this namespace).

use super::{
    CLIENT_LINK, CLIENT_MAC, CLIENT_V4, CLIENT_V6, Lab, SITE_LINK, SITE_MAC, SITE_V4, SITE_V6, ip,
};

impl Lab {
    pub(super) fn wire(&self) -> anyhow::Result<()> {
        wire_pair(
            &End {
                namespace: &self.client,
                link: CLIENT_LINK,
                mac: CLIENT_MAC,
                v4: CLIENT_V4,
                v6: CLIENT_V6,
            },
            &End {
                namespace: &self.site,
                link: SITE_LINK,
                mac: SITE_MAC,
                v4: SITE_V4,
                v6: SITE_V6,
            },
        )
    }

    /// A veth pair from the client namespace to the host's, on the /30
    /// number `id` of 198.19.0.0/16 (the host end is `.1`, the client end
    /// `.2`) and 2001:2:0:8000+`id`::/64 (`::1`, `::2`).
    /// Deleting the client namespace deletes both ends.
    pub(super) fn link_to_host(&mut self, id: u32) -> anyhow::Result<()> {
        let base = 4 * (id % (1 << 14));
        let (third, fourth) = (base / 256, base % 256);
        let host = format!("198.19.{third}.{}", fourth + 1);
        let client = format!("198.19.{third}.{}", fourth + 2);
        let host_link = format!("wh{}-{id}", std::process::id() % 100_000);
        // Recorded before it exists, so that any failure below removes it.
        self.host_link = Some(host_link.clone());
        ip(&[
            "-n",
            &self.client,
            "link",
            "add",
            "wx0",
            "type",
            "veth",
            "peer",
            "name",
            &host_link,
            "netns",
            "1",
        ])?;
        ip(&[
            "-n",
            &self.client,
            "addr",
            "add",
            &format!("{client}/30"),
            "dev",
            "wx0",
        ])?;
        ip(&["-n", &self.client, "link", "set", "wx0", "up"])?;
        ip(&["addr", "add", &format!("{host}/30"), "dev", &host_link])?;
        let net6 = format!("2001:2:0:{:x}", 0x8000 + id % 0x8000);
        ip(&[
            "-n",
            &self.client,
            "addr",
            "add",
            &format!("{net6}::2/64"),
            "dev",
            "wx0",
            "nodad",
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{net6}::1/64"),
            "dev",
            &host_link,
            "nodad",
        ])?;
        ip(&["link", "set", &host_link, "up"])?;
        self.host_address = Some(host.parse()?);
        self.host_address_v6 = Some(format!("{net6}::1").parse()?);
        Ok(())
    }
}

/// One end of a two-node veth link: its namespace, interface, MAC and
/// addresses (with their prefix lengths).
pub(super) struct End<'a> {
    pub(super) namespace: &'a str,
    pub(super) link: &'a str,
    pub(super) mac: &'a str,
    pub(super) v4: &'a str,
    pub(super) v6: &'a str,
}

/// A veth pair from `a`'s namespace to `b`'s, addressed, up, each end with
/// permanent neighbour entries for the other (IPv6 neighbour discovery
/// otherwise needs about two seconds after link-up before the first packet
/// goes through).
pub(super) fn wire_pair(a: &End<'_>, b: &End<'_>) -> anyhow::Result<()> {
    ip(&[
        "-n",
        a.namespace,
        "link",
        "add",
        a.link,
        "address",
        a.mac,
        "type",
        "veth",
        "peer",
        "name",
        b.link,
        "address",
        b.mac,
        "netns",
        b.namespace,
    ])?;
    let address = |cidr: &str| cidr.split('/').next().unwrap_or_default().to_owned();
    for (end, peer) in [(a, b), (b, a)] {
        let ns = end.namespace;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "addr", "add", end.v4, "dev", end.link])?;
        ip(&[
            "-n", ns, "-6", "addr", "add", end.v6, "dev", end.link, "nodad",
        ])?;
        ip(&["-n", ns, "link", "set", end.link, "up"])?;
        for peer_address in [address(peer.v4), address(peer.v6)] {
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                &peer_address,
                "lladdr",
                peer.mac,
                "dev",
                end.link,
                "nud",
                "permanent",
            ])?;
        }
    }
    Ok(())
}
