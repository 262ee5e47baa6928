//! Hosts behind a router: with `SiteConfig::behind_router`, a third
//! namespace linked to the site answers those ranges, so the site is a
//! router on their path, and the link beyond it can be cut while the
//! router still answers (see the module doc of `lab`).

use std::net::IpAddr;

use anyhow::Context as _;

use super::links::{End, wire_pair};
use super::{Cidr, Lab, ip, nft};

const ROUTER_LINK: &str = "wr0";
const HOSTS_LINK: &str = "wb0";
const ROUTER_V4: &str = "198.18.0.5/30";
const HOSTS_V4: &str = "198.18.0.6/30";
const ROUTER_V6: &str = "2001:2:0:fe::1/64";
const HOSTS_V6: &str = "2001:2:0:fe::2/64";
const ROUTER_V4_PEER: &str = "198.18.0.5";
const ROUTER_V6_PEER: &str = "2001:2:0:fe::1";
const HOSTS_V4_PEER: &str = "198.18.0.6";
const HOSTS_V6_PEER: &str = "2001:2:0:fe::2";
const ROUTER_MAC: &str = "02:00:c6:12:00:05";
const HOSTS_MAC: &str = "02:00:c6:12:00:06";

impl Lab {
    /// The hosts namespace behind the site: its link, the ranges it
    /// answers, and the site's routes to them.
    pub(super) fn wire_hosts(&self, hosts: &str, ranges: &[Cidr]) -> anyhow::Result<()> {
        let s = self.site.as_str();
        wire_pair(
            &End {
                namespace: s,
                link: ROUTER_LINK,
                mac: ROUTER_MAC,
                v4: ROUTER_V4,
                v6: ROUTER_V6,
            },
            &End {
                namespace: hosts,
                link: HOSTS_LINK,
                mac: HOSTS_MAC,
                v4: HOSTS_V4,
                v6: HOSTS_V6,
            },
        )?;
        ip(&[
            "-n",
            hosts,
            "route",
            "add",
            "default",
            "via",
            ROUTER_V4_PEER,
        ])?;
        ip(&[
            "-n",
            hosts,
            "-6",
            "route",
            "add",
            "default",
            "via",
            ROUTER_V6_PEER,
        ])?;
        for range in ranges {
            let range = range.to_string();
            ip(&["-n", hosts, "route", "add", "local", &range, "dev", "lo"])?;
            let via = if range.contains(':') {
                HOSTS_V6_PEER
            } else {
                HOSTS_V4_PEER
            };
            ip(&["-n", s, "route", "add", &range, "via", via])?;
        }
        Ok(())
    }

    /// Cuts the link beyond the router: the hosts namespace drops
    /// everything it receives, silently, while the router (the site) still
    /// answers, with time exceeded, for what expires there.
    pub fn cut_behind_router(&self) -> anyhow::Result<()> {
        let hosts = self
            .hosts
            .as_deref()
            .context("this lab has no hosts behind a router (SiteConfig::behind_router)")?;
        nft(
            hosts,
            "table inet ward_cut {\n chain input { type filter hook input priority 0; policy drop; }\n}\n",
        )
    }

    /// Mends a link cut by [`Lab::cut_behind_router`].
    pub fn mend_behind_router(&self) -> anyhow::Result<()> {
        let hosts = self
            .hosts
            .as_deref()
            .context("this lab has no hosts behind a router (SiteConfig::behind_router)")?;
        nft(hosts, "delete table inet ward_cut\n")
    }

    /// The router's address as the client sees it (the site's end of the
    /// client link): the hop before the hosts behind it.
    pub fn router_address(&self) -> IpAddr {
        // SITE_V4_GATEWAY
        IpAddr::from([198, 18, 0, 2])
    }
}
