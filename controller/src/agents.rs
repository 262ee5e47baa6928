//! Agents as the controller sees them right now: who is connected, since
//! when, their last heartbeat and counters. The inventory itself (who may
//! connect, for which site) is in the store; this is process memory, and
//! starts with every agent disconnected.
//!
//! The offline rule: when no agent of a site has been connected for its
//! grace period (3 × the longest probe interval among the site's devices,
//! at least [`MIN_GRACE`]), every device of the site becomes `unknown`
//! (see [`crate::store::plan`]), so nothing is left showing `up` that
//! nobody watches. The site's agent brings them back with its reports.
//! Connected means connected to any controller on the database: each
//! controller shares the agents it holds every second ([`share`]), and an
//! agent heard elsewhere within the grace period keeps its site watched.

use std::collections::HashMap;
use std::time::Duration;

/// The shortest grace period.
pub const MIN_GRACE: Duration = Duration::from_secs(5);

/// One agent's connection state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Presence {
    /// Holds an open link now.
    pub connected: bool,
    /// Links open now (a reconnect can overlap the old link's end).
    pub links: u32,
    /// Since when it is connected or disconnected, Unix ms (the
    /// controller's start for an agent never seen).
    pub since_ms: i64,
    /// Last heartbeat, Unix ms.
    pub last_heartbeat_ms: Option<i64>,
    /// Version from its last Hello.
    pub version: String,
    /// Boot id from its last Hello.
    pub boot_id: String,
    /// Engine and spool counters from its last heartbeat.
    pub counters: ward_proto::v1::EngineCounters,
    /// Address families it can probe (`ipv4`, `ipv6`), from its Hello.
    pub probe_families: Vec<&'static str>,
    /// Why it is blind (connected, but unable to probe some of its
    /// devices), if it is.
    pub blind: Option<String>,
    /// The other controller (its instance id) that holds its link, when
    /// it is connected there rather than here.
    pub elsewhere: Option<String>,
    /// How far its clock is behind this controller's, ms (negative:
    /// ahead), from its heartbeats on the link held here.
    pub clock_offset_ms: Option<i64>,
    /// How many devices it owns (probes for its site's group).
    pub devices: u64,
}

/// What an agent is doing, as `/api/v1/agents` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    /// Connected, and able to probe every device assigned to it.
    Online,
    /// Not connected.
    Offline,
    /// Connected, but unable to probe some of its devices.
    Blind,
}

impl AgentState {
    /// The name shown in APIs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Online => "online",
            AgentState::Offline => "offline",
            AgentState::Blind => "blind",
        }
    }
}

impl Presence {
    /// Online, offline or blind.
    pub fn state(&self) -> AgentState {
        match (self.connected, &self.blind) {
            (false, _) => AgentState::Offline,
            (true, Some(_)) => AgentState::Blind,
            (true, None) => AgentState::Online,
        }
    }
}

/// Presence of every agent seen since the controller started.
#[derive(Debug)]
pub struct Presences {
    started_ms: i64,
    agents: HashMap<String, Presence>,
    /// Sites whose devices were made `unknown` and not reported on since,
    /// with when they were found offline (Unix ms).
    forgotten_sites: HashMap<String, i64>,
    /// Links opened per site since the start: a site is marked forgotten
    /// only if none opened since it was found offline.
    site_links: HashMap<String, u64>,
}

/// A site found offline, with how many links it had seen at that moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineSite {
    /// The site.
    pub site: String,
    /// Links opened for it when it was found offline.
    links_seen: u64,
    /// When it was found offline, Unix ms.
    found_at_ms: i64,
}

impl Presences {
    /// Everyone disconnected since `started_ms`.
    pub fn new(started_ms: i64) -> Self {
        Self {
            started_ms,
            agents: HashMap::new(),
            forgotten_sites: HashMap::new(),
            site_links: HashMap::new(),
        }
    }

    /// `id`'s presence (disconnected since the start if never seen).
    pub fn get(&self, id: &str) -> Presence {
        self.agents.get(id).cloned().unwrap_or_else(|| Presence {
            since_ms: self.started_ms,
            ..Presence::default()
        })
    }

    /// A link from `id` opened.
    pub fn connected(&mut self, id: &str, site: &str, version: &str, boot_id: &str, now_ms: i64) {
        let started_ms = self.started_ms;
        let presence = self
            .agents
            .entry(id.to_owned())
            .or_insert_with(|| Presence {
                since_ms: started_ms,
                ..Presence::default()
            });
        if presence.links == 0 {
            presence.since_ms = now_ms;
        }
        presence.links += 1;
        presence.connected = true;
        presence.version = version.to_owned();
        presence.boot_id = boot_id.to_owned();
        self.forgotten_sites.remove(site);
        *self.site_links.entry(site.to_owned()).or_default() += 1;
    }

    /// A link from `id` closed.
    pub fn disconnected(&mut self, id: &str, now_ms: i64) {
        if let Some(presence) = self.agents.get_mut(id) {
            presence.links = presence.links.saturating_sub(1);
            if presence.links == 0 {
                presence.connected = false;
                presence.since_ms = now_ms;
                presence.blind = None;
            }
        }
    }

    /// What `id` can probe (its families, and why it is blind if it is).
    pub fn sight(&mut self, id: &str, probe_families: Vec<&'static str>, blind: Option<String>) {
        if let Some(presence) = self.agents.get_mut(id) {
            presence.probe_families = probe_families;
            presence.blind = blind;
        }
    }

    /// A heartbeat from `id`.
    pub fn heartbeat(
        &mut self,
        id: &str,
        counters: ward_proto::v1::EngineCounters,
        clock_offset_ms: Option<i64>,
        now_ms: i64,
    ) {
        if let Some(presence) = self.agents.get_mut(id) {
            presence.last_heartbeat_ms = Some(now_ms);
            presence.counters = counters;
            presence.clock_offset_ms = clock_offset_ms;
        }
    }

    /// Sites with no agent connected here or heard elsewhere for longer
    /// than their grace period, not made `unknown` yet. `sites` maps each
    /// site to its agents and its grace period; `elsewhere` when other
    /// controllers last heard each agent (Unix ms, this process's clock).
    /// Nothing is marked: once a site's `unknown` has committed,
    /// [`Presences::forgotten`] marks it.
    pub fn sites_to_forget(
        &self,
        sites: &HashMap<String, (Vec<String>, Duration)>,
        elsewhere: &HashMap<String, i64>,
        now_ms: i64,
    ) -> Vec<OfflineSite> {
        let mut due = Vec::new();
        for (site, (agents, grace)) in sites {
            if self.forgotten_sites.contains_key(site) {
                continue;
            }
            let presences: Vec<Presence> = agents.iter().map(|id| self.get(id)).collect();
            if presences.iter().any(|p| p.connected) {
                continue;
            }
            let heard = agents.iter().filter_map(|id| elsewhere.get(id).copied());
            let gone_since = presences
                .iter()
                .map(|p| p.since_ms)
                .chain(heard)
                .max()
                .unwrap_or(self.started_ms);
            let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
            if now_ms.saturating_sub(gone_since) >= grace_ms {
                due.push(OfflineSite {
                    site: site.clone(),
                    links_seen: self.site_links.get(site).copied().unwrap_or(0),
                    found_at_ms: now_ms,
                });
            }
        }
        due.sort_by(|a, b| a.site.cmp(&b.site));
        due
    }

    /// No agent of `offline`'s site connected here since it was found
    /// offline.
    pub fn still_offline(&self, offline: &OfflineSite) -> bool {
        self.site_links.get(&offline.site).copied().unwrap_or(0) == offline.links_seen
    }

    /// `offline`'s `unknown` has committed: the site is forgotten until an
    /// agent of it connects, unless one connected since it was found
    /// offline (its reports are the truth now). True if marked.
    pub fn forgotten(&mut self, offline: &OfflineSite) -> bool {
        if !self.still_offline(offline) {
            return false;
        }
        self.forgotten_sites
            .insert(offline.site.clone(), offline.found_at_ms)
            .is_none()
    }

    /// A forgotten site whose agent another controller heard since it was
    /// found offline is watched again (that agent's reports are the truth
    /// now): it may be forgotten again when that agent goes.
    pub fn heard_elsewhere(
        &mut self,
        sites: &HashMap<String, (Vec<String>, Duration)>,
        elsewhere: &HashMap<String, i64>,
    ) {
        self.forgotten_sites.retain(|site, found_at_ms| {
            let agents = sites.get(site).map(|(agents, _)| agents.as_slice());
            !agents.unwrap_or_default().iter().any(|agent| {
                elsewhere
                    .get(agent)
                    .is_some_and(|heard_ms| *heard_ms > *found_at_ms)
            })
        });
    }

    /// The agents whose links this controller holds now.
    pub fn connected_agents(&self) -> Vec<String> {
        self.agents
            .iter()
            .filter(|(_, presence)| presence.connected)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl Presences {
    /// True when some site of `agents` has no connected agent and was not
    /// forgotten yet (a candidate for [`Presences::sites_to_forget`]).
    pub fn any_site_unwatched(&self, agents: &[crate::store::AgentRecord]) -> bool {
        let mut watched = std::collections::HashSet::new();
        for agent in agents {
            if self.get(&agent.id).connected {
                watched.insert(agent.site.as_str());
            }
        }
        agents.iter().any(|agent| {
            !watched.contains(agent.site.as_str())
                && !self.forgotten_sites.contains_key(&agent.site)
        })
    }
}

/// How long an agent goes unheard before its devices move to the other
/// agents of its site, by default.
pub const DEFAULT_AGENT_FAILOVER_DELAY: Duration = Duration::from_secs(3);

/// The grace period for devices probed every `longest_interval`.
pub fn grace_period(longest_interval: Duration) -> Duration {
    (longest_interval * 3).max(MIN_GRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(grace_s: u64) -> HashMap<String, (Vec<String>, Duration)> {
        HashMap::from([(
            "branch-1".to_owned(),
            (
                vec!["a1".to_owned(), "a2".to_owned()],
                Duration::from_secs(grace_s),
            ),
        )])
    }

    fn due(presences: &mut Presences, grace_s: u64, now_ms: i64) -> Vec<String> {
        let due = presences.sites_to_forget(&sites(grace_s), &HashMap::new(), now_ms);
        due.iter()
            .filter(|offline| presences.forgotten(offline))
            .map(|offline| offline.site.clone())
            .collect()
    }

    #[test]
    fn a_site_is_forgotten_once_after_its_grace_with_no_agent_connected() {
        let mut presences = Presences::new(0);
        assert!(due(&mut presences, 5, 4_999).is_empty());
        assert_eq!(due(&mut presences, 5, 5_000), ["branch-1"]);
        assert!(due(&mut presences, 5, 9_000).is_empty(), "once");
        presences.connected("a1", "branch-1", "1.0", "boot", 10_000);
        assert!(presences.get("a1").connected);
        presences.disconnected("a1", 20_000);
        assert!(due(&mut presences, 5, 24_000).is_empty());
        assert_eq!(due(&mut presences, 5, 25_000), ["branch-1"]);
    }

    #[test]
    fn a_site_found_offline_stays_due_until_its_unknown_commits() {
        let presences = Presences::new(0);
        let first = presences.sites_to_forget(&sites(5), &HashMap::new(), 5_000);
        assert_eq!(first.len(), 1);
        // The apply failed: nothing was marked, the next sweep finds it again.
        assert_eq!(
            presences
                .sites_to_forget(&sites(5), &HashMap::new(), 6_000)
                .len(),
            first.len()
        );
    }

    #[test]
    fn an_agent_that_connects_while_its_site_is_being_forgotten_keeps_it_watched() {
        let mut presences = Presences::new(0);
        let offline = presences.sites_to_forget(&sites(5), &HashMap::new(), 5_000);
        presences.connected("a1", "branch-1", "1.0", "boot", 5_001);
        presences.disconnected("a1", 5_002);
        assert!(
            !presences.forgotten(&offline[0]),
            "a link opened after the site was found offline"
        );
        // Gone again: forgotten after a new grace period.
        assert!(due(&mut presences, 5, 9_000).is_empty());
        assert_eq!(due(&mut presences, 5, 10_002), ["branch-1"]);
    }

    #[test]
    fn one_connected_agent_keeps_its_site_and_overlapping_links_count() {
        let mut presences = Presences::new(0);
        presences.connected("a2", "branch-1", "1.0", "boot", 1_000);
        presences.connected("a2", "branch-1", "1.0", "boot-2", 2_000);
        presences.disconnected("a2", 3_000);
        assert!(
            presences.get("a2").connected,
            "the newer link is still open"
        );
        assert!(due(&mut presences, 5, 60_000).is_empty());
        presences.disconnected("a2", 61_000);
        assert_eq!(due(&mut presences, 5, 66_000), ["branch-1"]);
    }

    #[test]
    fn an_agent_heard_by_another_controller_keeps_its_site_watched_for_the_grace_period() {
        let mut presences = Presences::new(0);
        let heard_at = |ms: i64| HashMap::from([("a1".to_owned(), ms)]);
        assert!(
            presences
                .sites_to_forget(&sites(5), &heard_at(9_000), 10_000)
                .is_empty(),
            "heard elsewhere a second ago"
        );
        assert!(
            presences
                .sites_to_forget(&sites(5), &heard_at(9_000), 13_999)
                .is_empty(),
            "the grace counts from when it was last heard"
        );
        let offline = presences.sites_to_forget(&sites(5), &heard_at(9_000), 14_000);
        assert_eq!(offline.len(), 1);
        assert!(presences.forgotten(&offline[0]));
        // Heard again elsewhere after it was forgotten: watched again, and
        // forgotten again once that agent goes for the grace period.
        presences.heard_elsewhere(&sites(5), &heard_at(20_000));
        assert!(
            presences
                .sites_to_forget(&sites(5), &heard_at(20_000), 21_000)
                .is_empty()
        );
        assert_eq!(
            presences
                .sites_to_forget(&sites(5), &heard_at(20_000), 25_000)
                .len(),
            1
        );
    }

    #[test]
    fn grace_is_three_intervals_but_at_least_five_seconds() {
        assert_eq!(grace_period(Duration::from_secs(1)), MIN_GRACE);
        assert_eq!(
            grace_period(Duration::from_secs(10)),
            Duration::from_secs(30)
        );
    }
}
