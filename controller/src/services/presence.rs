//! Which agents are connected, here and on the other controllers of the
//! cluster: links opened and closed, heartbeats, what each can probe, the
//! presence shared on the database, agent groups (a lost agent's devices
//! to the others of its site) and the offline rule (a site with no agent
//! for its grace period has its devices made `unknown`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::cluster::Cluster;
use super::core::Core;
use super::reports::Reports;
use crate::agents::{Presence, Presences, grace_period};
use crate::store::{
    Actor, AgentAlertChange, AgentRecord, CONTROLLER_REPORTS, Device, ReportedTransition, Status,
    StoreError, TransitionReport,
};

/// The agents' presence.
pub struct AgentPresence {
    core: Arc<Core>,
    reports: Arc<Reports>,
    cluster: Arc<Cluster>,
    /// Which agents are connected, with heartbeats and counters.
    #[allow(
        clippy::disallowed_types,
        reason = "short critical sections on link events, never on the probe path"
    )]
    presences: std::sync::Mutex<Presences>,
    /// How long an agent goes unheard before its devices move
    /// (`agent_failover_delay`).
    agent_failover_delay: Duration,
    /// Lost agents whose group covers for them and whose `AgentDown` was
    /// opened in this absence.
    #[allow(
        clippy::disallowed_types,
        reason = "touched by one task twice a second"
    )]
    lost_agents: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl AgentPresence {
    /// No agent connected yet; an agent unheard for
    /// `agent_failover_delay` is lost.
    pub fn new(
        core: Arc<Core>,
        reports: Arc<Reports>,
        cluster: Arc<Cluster>,
        agent_failover_delay: Duration,
    ) -> Self {
        Self {
            core,
            reports,
            cluster,
            #[allow(clippy::disallowed_types, reason = "see the field")]
            presences: std::sync::Mutex::new(Presences::new(crate::time::now_ms())),
            agent_failover_delay,
            #[allow(clippy::disallowed_types, reason = "see the field")]
            lost_agents: std::sync::Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// Registers agent `id` for `site` (idempotent).
    pub async fn register_agent(
        &self,
        id: &str,
        site: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<AgentRecord, StoreError> {
        self.core
            .store
            .register_agent(id, site, actor, now_ms)
            .await
    }

    /// Every registered agent with its presence.
    pub async fn agents(&self) -> Result<Vec<(AgentRecord, Presence)>, StoreError> {
        let agents = self.core.store.list_agents().await?;
        let now = crate::time::now_ms();
        let recently = now - i64::try_from(crate::store::HEARD_RECENTLY.as_millis()).unwrap_or(0);
        let heard: HashMap<String, (String, i64)> = self
            .core
            .store
            .heard_agents()
            .await?
            .into_iter()
            .filter(|heard| heard.controller != self.cluster.instance)
            .map(|heard| {
                (
                    heard.agent_id,
                    (heard.controller, now - heard.age_ms.max(0)),
                )
            })
            .collect();
        let presences = self.lock_presences();
        Ok(agents
            .into_iter()
            .map(|agent| {
                let mut presence = presences.get(&agent.id);
                // Linked to another controller of the cluster: connected.
                if let Some((controller, heard_ms)) = heard.get(&agent.id)
                    && !presence.connected
                    && *heard_ms >= recently
                {
                    presence.connected = true;
                    presence.last_heartbeat_ms = Some(*heard_ms);
                    presence.elsewhere = Some(controller.clone());
                }
                (agent, presence)
            })
            .collect())
    }

    /// Every registered agent with its presence and how many devices it
    /// owns (what `/api/v1/agents` and `ListAgents` show).
    pub async fn agents_with_devices(&self) -> Result<Vec<(AgentRecord, Presence)>, StoreError> {
        let mut owned: HashMap<String, u64> = HashMap::new();
        for device in self.core.devices().await?.iter() {
            if let Some(agent) = &device.agent {
                *owned.entry(agent.clone()).or_default() += 1;
            }
        }
        let mut agents = self.agents().await?;
        for (agent, presence) in &mut agents {
            presence.devices = owned.get(&agent.id).copied().unwrap_or(0);
        }
        Ok(agents)
    }

    /// The registered agent `id`, if any.
    pub async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        Ok(self
            .core
            .store
            .list_agents()
            .await?
            .into_iter()
            .find(|agent| agent.id == id))
    }

    /// An agent's link opened.
    pub fn link_opened(&self, agent: &AgentRecord, version: &str, boot_id: &str, now_ms: i64) {
        self.lock_presences()
            .connected(&agent.id, &agent.site, version, boot_id, now_ms);
    }

    /// Settles the agent groups (see `store::groups`): the devices of lost
    /// agents go to the live agents of their site, groups rebalance, and
    /// agent links on every controller learn what they own now. A lost
    /// agent whose group covers for it gets its `AgentDown` all the same,
    /// once per absence.
    pub async fn settle_groups(self: &Arc<Self>, now_ms: i64) -> Result<(), StoreError> {
        let delay_ms = i64::try_from(self.agent_failover_delay.as_millis()).unwrap_or(i64::MAX);
        let settlement = self.core.store.settle_groups(delay_ms).await?;
        if !settlement.moves.is_empty() {
            self.core.live.inventory_changed();
            self.core
                .metrics
                .device_owner_changes
                .fetch_add(settlement.moves.len() as u64, Ordering::Relaxed);
            let mut moved: std::collections::BTreeMap<(Option<&str>, &str), usize> =
                std::collections::BTreeMap::new();
            for m in &settlement.moves {
                *moved.entry((m.from.as_deref(), &m.to)).or_default() += 1;
            }
            for ((from, to), devices) in moved {
                tracing::info!(
                    from = from.unwrap_or("none"),
                    to,
                    devices,
                    "devices given to another agent of their site"
                );
            }
        }
        let covered: std::collections::HashSet<&str> = settlement
            .members
            .iter()
            .filter(|m| m.live(delay_ms))
            .map(|m| m.site.as_str())
            .collect();
        let lost: Vec<&crate::store::groups::Member> = settlement
            .members
            .iter()
            .filter(|m| m.lost(delay_ms) && covered.contains(m.site.as_str()))
            .collect();
        let newly_lost: Vec<&crate::store::groups::Member> = {
            let mut known = self
                .lost_agents
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            known.retain(|id| lost.iter().any(|m| m.id == *id));
            lost.into_iter()
                .filter(|m| !known.contains(&m.id))
                .collect()
        };
        if newly_lost.is_empty() {
            return Ok(());
        }
        let agent_alerts = newly_lost
            .iter()
            .map(|m| AgentAlertChange {
                agent_id: m.id.clone(),
                site: m.site.clone(),
                open: true,
                at_ms: now_ms,
                reason: format!(
                    "agent {} not heard for {:?}; the other agents of site {} probe its devices",
                    m.id, self.agent_failover_delay, m.site
                ),
            })
            .collect();
        let report = TransitionReport {
            agent_alerts,
            agent_id: CONTROLLER_REPORTS.into(),
            boot_id: format!("agent-lost:{}", self.cluster.instance),
            seq: u64::try_from(now_ms).unwrap_or(0),
            transitions: Vec::new(),
        };
        self.reports.apply_report(&report, now_ms).await?;
        for m in newly_lost {
            tracing::warn!(agent = %m.id, site = %m.site, "agent lost; its group covers for it");
            self.lost_agents
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(m.id.clone());
        }
        Ok(())
    }

    /// Tells the other controllers on the database which agents this one
    /// holds now (the database's clock times it).
    pub async fn share_presence(&self) -> Result<(), StoreError> {
        self.core
            .store
            .controller_alive(
                &self.cluster.instance,
                env!("CARGO_PKG_VERSION"),
                self.cluster.started_ms,
            )
            .await?;
        let agents = self.lock_presences().connected_agents();
        self.core.store.heard(&self.cluster.instance, &agents).await
    }

    /// When other controllers last heard each agent, on this process's
    /// clock (`now_ms` minus the age the database's clock gives).
    async fn heard_elsewhere(&self, now_ms: i64) -> Result<HashMap<String, i64>, StoreError> {
        let heard = self.core.store.heard_agents().await?;
        Ok(heard
            .into_iter()
            .filter(|agent| agent.controller != self.cluster.instance)
            .map(|agent| (agent.agent_id, now_ms - agent.age_ms.max(0)))
            .collect())
    }

    /// An agent's link closed.
    pub fn link_closed(&self, agent_id: &str, now_ms: i64) {
        self.lock_presences().disconnected(agent_id, now_ms);
    }

    /// A heartbeat arrived on an agent's link; its clock is
    /// `clock_offset_ms` behind ours (as measured so far).
    pub fn heartbeat(
        &self,
        agent_id: &str,
        counters: ward_proto::v1::EngineCounters,
        clock_offset_ms: Option<i64>,
        now_ms: i64,
    ) {
        self.lock_presences()
            .heartbeat(agent_id, counters, clock_offset_ms, now_ms);
    }

    /// Settles what a connected agent can probe, in one transaction: the
    /// devices it cannot probe become `unknown` (the reason names the
    /// family), and its `AgentDown` alert is open while it is blind and
    /// resolved otherwise (it is back). `report` names this settlement
    /// (boot id and sequence of a controller report).
    pub async fn agent_sight(
        self: &Arc<Self>,
        agent: &AgentRecord,
        probe_families: &[&'static str],
        blindness: &ward_domain::sight::Blindness,
        report: (&str, u64),
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let blind = blindness.reason(&agent.id);
        let transitions = blindness
            .devices
            .iter()
            .filter(|(_, status)| *status != Status::Unknown)
            .map(|&(device_id, _)| ReportedTransition {
                device_id,
                status: Status::Unknown,
                probed_at_ms: now_ms,
                last_rtt_us: None,
                degraded: None,
                reason: format!(
                    "agent {} cannot probe {}",
                    agent.id,
                    blindness.families.join(" and ")
                ),
            })
            .collect();
        let report = TransitionReport {
            agent_id: CONTROLLER_REPORTS.into(),
            boot_id: report.0.to_owned(),
            seq: report.1,
            transitions,
            agent_alerts: vec![AgentAlertChange {
                agent_id: agent.id.clone(),
                site: agent.site.clone(),
                open: blind.is_some(),
                at_ms: now_ms,
                reason: blind.clone().unwrap_or_else(|| {
                    format!(
                        "agent {} is connected and probes every device assigned to it",
                        agent.id
                    )
                }),
            }],
        };
        self.reports.apply_report(&report, now_ms).await?;
        self.lock_presences()
            .sight(&agent.id, probe_families.to_vec(), blind);
        Ok(())
    }

    fn lock_presences(&self) -> std::sync::MutexGuard<'_, Presences> {
        self.presences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes every device of each site whose agents have all been gone for
    /// the grace period `unknown` (once per absence). Returns the sites.
    ///
    /// Exact: agent reports wait while a site's `unknown` commits (the
    /// offline gate, taken per site: a thousand sites found offline at
    /// once held every report back for 20 s), and a site whose agent
    /// connected since it was found is passed over, so an agent that comes
    /// back has its reports applied after the `unknown`, never under it; a
    /// site counts as forgotten only once its `unknown` committed and no
    /// agent of it connected since; a site whose apply failed is counted
    /// and tried again at the next sweep.
    pub async fn forget_offline_sites(
        self: &Arc<Self>,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let agents = self.core.store.list_agents().await?;
        // The usual case, every site with a connected agent (or already
        // forgotten), needs no device list.
        if !self.lock_presences().any_site_unwatched(&agents) {
            return Ok(Vec::new());
        }
        let devices = self.core.devices().await?;
        let sites = sites_with_grace(agents, &devices);
        let elsewhere = self.heard_elsewhere(now_ms).await?;
        let offline = {
            let mut presences = self.lock_presences();
            presences.heard_elsewhere(&sites, &elsewhere);
            presences.sites_to_forget(&sites, &elsewhere, now_ms)
        };
        let mut forgotten = Vec::new();
        let mut failure = None;
        for site in offline {
            let _gate = self.reports.hold_back().await;
            if !self.lock_presences().still_offline(&site) {
                continue;
            }
            let name = &site.site;
            let agents = sites
                .get(name)
                .map(|(agents, _)| agents.as_slice())
                .unwrap_or_default();
            let boot_id = format!("agent-offline:{name}:{}", self.cluster.started_ms);
            let report = offline_report(name, agents, &devices, boot_id, now_ms);
            let marked = report.transitions.len();
            if let Err(error) = self.reports.commit_report(&report, now_ms).await {
                self.core
                    .metrics
                    .offline_sweep_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(site = %name, %error, "could not mark an offline site's devices unknown; trying again at the next sweep");
                failure = Some(error);
                continue;
            }
            if self.lock_presences().forgotten(&site) {
                self.core
                    .metrics
                    .sites_marked_unknown
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(site = %name, devices = marked, "no agent of the site connected for its grace period; its devices are unknown");
                forgotten.push(site.site);
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(forgotten),
        }
    }
}

/// The agents of each site, and the site's grace period (from its
/// devices' longest interval).
fn sites_with_grace(
    agents: Vec<AgentRecord>,
    devices: &[Arc<Device>],
) -> HashMap<String, (Vec<String>, Duration)> {
    let mut sites: HashMap<String, (Vec<String>, Duration)> = HashMap::new();
    for agent in agents {
        sites
            .entry(agent.site)
            .or_insert_with(|| (Vec::new(), Duration::ZERO))
            .0
            .push(agent.id);
    }
    for device in devices {
        if let Some((_, longest)) = sites.get_mut(&device.spec.site) {
            *longest = (*longest).max(Duration::from_millis(u64::from(device.spec.interval_ms)));
        }
    }
    for (_, longest) in sites.values_mut() {
        *longest = grace_period(*longest);
    }
    sites
}

/// The controller's report for site `name` gone offline: its devices not
/// `unknown` yet become `unknown`, and each of its `agents` gets an open
/// `AgentDown`.
fn offline_report(
    name: &str,
    agents: &[String],
    devices: &[Arc<Device>],
    boot_id: String,
    now_ms: i64,
) -> TransitionReport {
    let transitions = devices
        .iter()
        .filter(|d| d.spec.site == name && d.status != Status::Unknown)
        .map(|d| ReportedTransition {
            device_id: d.id,
            status: Status::Unknown,
            probed_at_ms: now_ms,
            last_rtt_us: None,
            degraded: None,
            reason: format!("no agent of site {name} connected"),
        })
        .collect();
    let gone = format!("no agent of site {name} connected for its grace period");
    let agent_alerts = agents
        .iter()
        .map(|agent_id| AgentAlertChange {
            agent_id: agent_id.clone(),
            site: name.to_owned(),
            open: true,
            at_ms: now_ms,
            reason: gone.clone(),
        })
        .collect();
    TransitionReport {
        agent_alerts,
        agent_id: CONTROLLER_REPORTS.into(),
        boot_id,
        seq: u64::try_from(now_ms).unwrap_or(0),
        transitions,
    }
}
