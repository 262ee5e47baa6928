//! Network lab: a "site" namespace joined to a "client" namespace by a veth
//! pair. The site answers echo for whole ranges (`ip route add local RANGE
//! dev lo`), single hosts are taken down with an nftables drop set, ranges
//! can be made unreachable (the site answers with ICMP destination
//! unreachable), and `tc netem` impairs the link.
//!
//! ```text
//!  client ns  wc0 198.18.0.1/30 ─── veth ─── ws0 198.18.0.2/30  site ns
//!             2001:2::1/64                   2001:2::2/64       (lo: answering ranges)
//! ```
//!
//! With [`SiteConfig::behind_router`], the site is also a router: a third
//! "hosts" namespace, linked to the site, answers those ranges, so a path
//! has a hop before its hosts and the link beyond the router can be cut
//! ([`Lab::cut_behind_router`]) while the router still answers.
//!
//! ```text
//!  site ns  wr0 198.18.0.5/30 ─── veth ─── wb0 198.18.0.6/30  hosts ns
//!           2001:2:0:fe::1/64              2001:2:0:fe::2/64  (lo: ranges behind the router)
//! ```
//!
//! The test probes from the client namespace (`client_command`, or
//! `run_in_client` to open sockets there). Only 198.18.0.0/15 and
//! 2001:2::/48 are accepted, and both namespaces are deleted on drop.

mod cidr;
mod impair;
mod links;
mod router;
mod stale;

pub use stale::remove_stale_labs;

pub use cidr::Cidr;

use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};
use nix::sched::{CloneFlags, setns};

use crate::RESOURCE_PREFIX;

const CLIENT_LINK: &str = "wc0";
const SITE_LINK: &str = "ws0";
const CLIENT_V4: &str = "198.18.0.1/30";
const SITE_V4: &str = "198.18.0.2/30";
const SITE_V4_GATEWAY: &str = "198.18.0.2";
const CLIENT_V6: &str = "2001:2::1/64";
const SITE_V6: &str = "2001:2::2/64";
const SITE_V6_GATEWAY: &str = "2001:2::2";
const CLIENT_HOST_V4: &str = "198.18.0.1/32";
const CLIENT_HOST_V6: &str = "2001:2::1/128";
const CLIENT_MAC: &str = "02:00:c6:12:00:01";
const SITE_MAC: &str = "02:00:c6:12:00:02";

/// The client namespace routes these through the site.
const LAB_V4: &str = "198.18.0.0/15";
const LAB_V6: &str = "2001:2::/48";

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Stale labs are looked for once per process, before its first lab.
static STALE_LABS_REMOVED: std::sync::Once = std::sync::Once::new();

/// Namespaces of every live lab, for [`remove_labs_on_signal`].
static LIVE_NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn live_namespaces() -> std::sync::MutexGuard<'static, Vec<String>> {
    LIVE_NAMESPACES
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// For long-running programs (benchmarks): on SIGINT or SIGTERM, delete the
/// namespaces of every live lab, then exit with 130. The signals are caught
/// by a handler (not blocked), so the processes the program starts get the
/// default disposition back when they exec and still stop on SIGTERM.
pub fn remove_labs_on_signal() -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    std::thread::Builder::new()
        .name("lab-signals".into())
        .spawn(move || {
            let signal = signals
                .forever()
                .next()
                .map_or_else(|| "signal".to_owned(), |signal| format!("signal {signal}"));
            for namespace in live_namespaces().drain(..) {
                if let Err(error) = ip(&["netns", "del", &namespace]) {
                    eprintln!("lab: deleting namespace {namespace}: {error}");
                }
            }
            eprintln!("lab: {signal}: lab namespaces removed, exiting");
            std::process::exit(130);
        })?;
    Ok(())
}

/// What a site answers for and what it reports unreachable.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// Ranges whose every address answers echo (IPv4 and IPv6 mixed).
    pub answering: Vec<Cidr>,
    /// Ranges for which the site returns ICMP destination unreachable.
    pub unreachable: Vec<Cidr>,
    /// Route 127.0.0.0/8 (all but 127.0.0.1) from the client through the
    /// site, which answers it: loopback-sized target sets over a real link,
    /// the same path for every tool (zmap cannot receive on `lo`).
    pub loopback_via_site: bool,
    /// Ranges answered by a hosts namespace behind the site, which routes
    /// them: the site is the router on their path (see the module doc).
    pub behind_router: Vec<Cidr>,
    /// A second link, from the client namespace to this (the host's)
    /// namespace, so a process in the client (an agent) reaches a server
    /// on the host (a controller) at [`Lab::host_address`].
    pub host_link: bool,
}

impl Default for SiteConfig {
    /// 198.18.1.0/24 and 2001:2:0:1::/64 answer; 198.18.2.0/24 and
    /// 2001:2:0:2::/64 are unreachable.
    fn default() -> Self {
        let cidr = |text: &str| text.parse().expect("default lab ranges are valid");
        Self {
            answering: vec![cidr("198.18.1.0/24"), cidr("2001:2:0:1::/64")],
            unreachable: vec![cidr("198.18.2.0/24"), cidr("2001:2:0:2::/64")],
            behind_router: Vec::new(),
            loopback_via_site: false,
            host_link: false,
        }
    }
}

/// Impairments applied to everything the site sends back over the link.
#[derive(Clone, Copy, Debug, Default)]
pub struct Netem {
    /// Added one-way delay, milliseconds.
    pub delay_ms: u32,
    /// Random variation of the delay, milliseconds.
    pub jitter_ms: u32,
    /// Packets dropped, percent.
    pub loss_percent: f32,
    /// Packets sent twice, percent.
    pub duplicate_percent: f32,
}

/// A client namespace and a site namespace; both deleted on drop.
pub struct Lab {
    client: String,
    site: String,
    /// The namespace behind the router, with [`SiteConfig::behind_router`].
    hosts: Option<String>,
    /// The host's end of the host link, if any: address and interface.
    host_address: Option<IpAddr>,
    /// The host's IPv6 address on the host link.
    host_address_v6: Option<IpAddr>,
    /// `/etc/netns/<client>`, when [`Lab::name_in_client`] made it.
    client_etc: Option<std::path::PathBuf>,
    host_link: Option<String>,
    /// Present once an impairment was set (see `impair`).
    relay: Option<impair::Relay>,
}

impl Lab {
    /// Creates the namespaces, the link, addresses, routes and the drop set.
    pub fn start(config: &SiteConfig) -> anyhow::Result<Self> {
        crate::require_root("the network lab");
        let ranges = config
            .answering
            .iter()
            .chain(&config.unreachable)
            .chain(&config.behind_router);
        for range in ranges {
            range.require_in_lab()?;
        }
        STALE_LABS_REMOVED.call_once(stale::remove_stale_labs);
        let id = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let base = format!("{RESOURCE_PREFIX}{}-{id}", std::process::id());
        let mut lab = Self {
            client: format!("{base}-client"),
            site: format!("{base}-site"),
            hosts: (!config.behind_router.is_empty()).then(|| format!("{base}-hosts")),
            host_address: None,
            host_address_v6: None,
            client_etc: None,
            host_link: None,
            relay: None,
        };
        // From here on `lab` is dropped (namespaces deleted) on any error.
        for namespace in [Some(&lab.client), Some(&lab.site), lab.hosts.as_ref()]
            .into_iter()
            .flatten()
        {
            live_namespaces().push(namespace.clone());
            ip(&["netns", "add", namespace])?;
        }
        lab.wire()?;
        if let Some(hosts) = &lab.hosts {
            lab.wire_hosts(hosts, &config.behind_router)?;
        }
        lab.route(config)?;
        lab.install_rules(config)?;
        if config.host_link {
            lab.link_to_host(id)?;
        }
        Ok(lab)
    }

    /// The host's IPv6 address on the host link.
    pub fn host_address_v6(&self) -> Option<IpAddr> {
        self.host_address_v6
    }

    /// Makes `name` resolve to `addresses` for programs run in the client
    /// namespace ([`Lab::client_command`]: `ip netns exec` mounts
    /// `/etc/netns/<client>/hosts` over `/etc/hosts`); removed with the
    /// lab.
    pub fn name_in_client(&mut self, name: &str, addresses: &[IpAddr]) -> anyhow::Result<()> {
        let dir = std::path::Path::new("/etc/netns").join(&self.client);
        std::fs::create_dir_all(&dir)?;
        self.client_etc = Some(dir.clone());
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for address in addresses {
            Cidr::host(*address).require_in_lab()?;
            hosts.push_str(&format!("{address} {name}\n"));
        }
        std::fs::write(dir.join("hosts"), hosts)?;
        Ok(())
    }

    /// The host's address on the host link ([`SiteConfig::host_link`]).
    pub fn host_address(&self) -> Option<IpAddr> {
        self.host_address
    }

    fn route(&self, config: &SiteConfig) -> anyhow::Result<()> {
        let (c, s) = (self.client.as_str(), self.site.as_str());
        ip(&["-n", c, "route", "add", LAB_V4, "via", SITE_V4_GATEWAY])?;
        ip(&[
            "-n",
            c,
            "-6",
            "route",
            "add",
            LAB_V6,
            "via",
            SITE_V6_GATEWAY,
        ])?;
        for range in &config.answering {
            let range = range.to_string();
            ip(&["-n", s, "route", "add", "local", &range, "dev", "lo"])?;
        }
        // Unreachable ranges are forwarded back out of the link, where the
        // site's `forward` chain rejects them (`install_rules`). An
        // `unreachable` route would answer through the kernel's route-error
        // limiter (`ip_error`: five, then one a second per sender, and not
        // adjustable inside a namespace), which lost errors to quick
        // re-probes. Without the rule the site would only ARP in vain.
        for range in &config.unreachable {
            ip(&[
                "-n",
                s,
                "route",
                "add",
                &range.to_string(),
                "dev",
                SITE_LINK,
            ])?;
        }
        if config.loopback_via_site {
            self.route_loopback_via_site()?;
        }
        // Forwarding makes the site answer unreachable ranges with ICMP
        // errors; no per-host ICMP rate limit, so every probe gets its
        // answer.
        sysctl(
            s,
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.icmp_ratelimit=0",
                "net.ipv6.icmp.ratelimit=0",
            ],
        )
    }

    fn route_loopback_via_site(&self) -> anyhow::Result<()> {
        let (c, s) = (self.client.as_str(), self.site.as_str());
        // 127/8 may cross the link, in both directions, in both namespaces.
        for (ns, link) in [(c, CLIENT_LINK), (s, SITE_LINK)] {
            sysctl(
                ns,
                &[
                    "net.ipv4.conf.all.route_localnet=1",
                    &format!("net.ipv4.conf.{link}.route_localnet=1"),
                    "net.ipv4.conf.all.rp_filter=0",
                    &format!("net.ipv4.conf.{link}.rp_filter=0"),
                ],
            )?;
        }
        // The client keeps only 127.0.0.1 for itself.
        ip(&[
            "-n",
            c,
            "route",
            "del",
            "local",
            "127.0.0.0/8",
            "dev",
            "lo",
            "table",
            "local",
        ])?;
        ip(&[
            "-n",
            c,
            "route",
            "add",
            "127.0.0.0/8",
            "via",
            SITE_V4_GATEWAY,
        ])
    }

    /// The drop sets (`take_down`) and the rejection of unreachable ranges.
    fn install_rules(&self, config: &SiteConfig) -> anyhow::Result<()> {
        let rejections: String = config
            .unreachable
            .iter()
            .map(|range| {
                if range.network().is_ipv4() {
                    format!("ip daddr {range} reject with icmp type host-unreachable\n")
                } else {
                    format!("ip6 daddr {range} reject with icmpv6 type no-route\n")
                }
            })
            .collect();
        nft(
            &self.site,
            &format!(
                "table inet ward_lab {{\n\
                   set down_v4 {{ type ipv4_addr; }}\n\
                   set down_v6 {{ type ipv6_addr; }}\n\
                   chain input {{\n\
                     type filter hook input priority 0; policy accept;\n\
                     ip daddr @down_v4 drop\n\
                     ip6 daddr @down_v6 drop\n\
                   }}\n\
                   chain forward {{\n\
                     type filter hook forward priority 0; policy accept;\n\
                     {rejections}\
                   }}\n\
                 }}\n"
            ),
        )
    }

    /// Name of the namespace tests probe from.
    pub fn client_namespace(&self) -> &str {
        &self.client
    }

    /// Name of the namespace that plays the site.
    pub fn site_namespace(&self) -> &str {
        &self.site
    }

    /// `program` prepared to run inside the client namespace.
    pub fn client_command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.client, program]);
        command
    }

    /// `program` prepared to run inside the site namespace.
    pub fn site_command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.site, program]);
        command
    }

    /// Runs `work` on a thread that has entered the client namespace, so the
    /// sockets it opens live there (and keep living there when handed back).
    pub fn run_in_client<T: Send>(&self, work: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        run_in(&self.client, work)
    }

    /// Runs `work` on a thread that has entered the site namespace (to
    /// play an attacker or a misbehaving host there).
    pub fn run_in_site<T: Send>(&self, work: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        run_in(&self.site, work)
    }

    /// Makes `host` stop answering anything (nftables drop in the site).
    pub fn take_down(&self, host: IpAddr) -> anyhow::Result<()> {
        self.edit_drop_set("add", host)
    }

    /// Makes a host taken down answer again.
    pub fn bring_up(&self, host: IpAddr) -> anyhow::Result<()> {
        self.edit_drop_set("delete", host)
    }

    /// Partitions the client namespace from TCP port `port` (on the
    /// host link): its packets to that port are dropped silently, as a
    /// broken WAN would, until [`Lab::heal`]. Removed with the lab.
    pub fn partition_from_port(&self, port: u16) -> anyhow::Result<()> {
        nft(
            &self.client,
            &format!(
                "table inet ward_partition {{\n\
                 chain out {{ type filter hook output priority 0; tcp dport {port} drop; }}\n\
                 chain in {{ type filter hook input priority 0; tcp sport {port} drop; }}\n}}\n"
            ),
        )
    }

    /// Ends a partition made by [`Lab::partition_from_port`].
    pub fn heal(&self) -> anyhow::Result<()> {
        nft(&self.client, "delete table inet ward_partition\n")
    }

    fn edit_drop_set(&self, verb: &str, host: IpAddr) -> anyhow::Result<()> {
        Cidr::host(host).require_in_lab()?;
        let set = if host.is_ipv4() { "down_v4" } else { "down_v6" };
        nft(
            &self.site,
            &format!("{verb} element inet ward_lab {set} {{ {host} }}\n"),
        )
    }

    /// Drops `percent` of the echo requests to `hosts` (one host, or a
    /// range) at random (nftables `numgen random`), as a lossy link to them
    /// would; the rest of the site is untouched. Gone with the lab.
    pub fn lose_requests(&self, hosts: Cidr, percent: u8) -> anyhow::Result<()> {
        let chance = if percent >= 100 {
            String::new()
        } else {
            format!("numgen random mod 100 < {percent} ")
        };
        self.drop_requests(hosts, &chance)
    }

    /// Drops the first `dropped` of every `every` echo requests to `hosts`,
    /// in turn (nftables `numgen inc`): a loss of `dropped / every` that
    /// never loses more than `dropped` in a row (to one host).
    pub fn lose_requests_in_turn(&self, hosts: Cidr, dropped: u8, every: u8) -> anyhow::Result<()> {
        self.drop_requests(hosts, &format!("numgen inc mod {every} < {dropped} "))
    }

    fn drop_requests(&self, hosts: Cidr, condition: &str) -> anyhow::Result<()> {
        hosts.require_in_lab()?;
        let (family, echo) = if hosts.network().is_ipv4() {
            ("ip", "icmp type echo-request")
        } else {
            ("ip6", "icmpv6 type echo-request")
        };
        nft(
            &self.site,
            &format!(
                "add rule inet ward_lab input {family} daddr {hosts} {echo} {condition}drop\n"
            ),
        )
    }

    /// Impairs everything the site sends back (echo replies, ICMP errors)
    /// as `tc netem` on the site's link would. The kernel here has no netem,
    /// so a relay thread applies it (see `impair`).
    pub fn set_netem(&mut self, netem: Netem) -> anyhow::Result<()> {
        if let Some(relay) = &self.relay {
            relay.set(netem);
        } else {
            let site_tun = run_in(&self.site, impair::open_tun)??;
            let client_tun = run_in(&self.client, impair::open_tun)??;
            // Replies now arrive on the tun, not on the link the requests
            // left by: no reverse-path filtering in the client.
            sysctl(
                &self.client,
                &[
                    "net.ipv4.conf.all.rp_filter=0",
                    &format!("net.ipv4.conf.{}.rp_filter=0", impair::TUN),
                ],
            )?;
            self.relay = Some(impair::Relay::start(site_tun, client_tun, netem));
        }
        let s = self.site.as_str();
        ip(&[
            "-n",
            s,
            "route",
            "replace",
            CLIENT_HOST_V4,
            "dev",
            impair::TUN,
        ])?;
        ip(&[
            "-n",
            s,
            "-6",
            "route",
            "replace",
            CLIENT_HOST_V6,
            "dev",
            impair::TUN,
        ])
    }

    /// Removes any impairment: replies take the veth again.
    pub fn clear_netem(&mut self) -> anyhow::Result<()> {
        if self.relay.is_none() {
            return Ok(());
        }
        let s = self.site.as_str();
        ip(&["-n", s, "route", "del", CLIENT_HOST_V4, "dev", impair::TUN])?;
        ip(&[
            "-n",
            s,
            "-6",
            "route",
            "del",
            CLIENT_HOST_V6,
            "dev",
            impair::TUN,
        ])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Stop the relay before its devices disappear with the namespaces.
        drop(self.relay.take());
        // The namespace's deletion would take the pair along, but only
        // eventually: remove the host's end now.
        if let Some(link) = self.host_link.take()
            && let Err(error) = ip(&["link", "del", &link])
        {
            eprintln!("lab: deleting host link {link}: {error}");
        }
        if let Some(dir) = self.client_etc.take() {
            if let Err(error) = std::fs::remove_dir_all(&dir) {
                eprintln!("lab: deleting {}: {error}", dir.display());
            }
            // `/etc/netns` itself, unless another lab still uses it.
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        for namespace in [Some(&self.client), Some(&self.site), self.hosts.as_ref()]
            .into_iter()
            .flatten()
        {
            live_namespaces().retain(|live| live != namespace);
            if let Err(error) = ip(&["netns", "del", namespace]) {
                eprintln!("lab: deleting namespace {namespace}: {error}");
            }
        }
    }
}

/// Runs `work` on a thread that has entered `namespace`.
fn run_in<T: Send>(namespace: &str, work: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let path = format!("/run/netns/{namespace}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering {path}"))?;
                Ok(work())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args, None)
}

fn sysctl(namespace: &str, settings: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["netns", "exec", namespace, "sysctl", "-q", "-w"];
    args.extend_from_slice(settings);
    run("ip", &args, None)
}

fn nft(namespace: &str, script: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &["netns", "exec", namespace, "nft", "-f", "-"],
        Some(script),
    )
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("running {program}: install the Debian packages iproute2 and nftables")
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
