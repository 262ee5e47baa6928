//! What the store holds, independent of the database behind it.

pub use crate::field::FieldError;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The one truth about a device. `Down` and `Unreachable` carry a
/// `down_since`; `Up`, `Degraded` and `Unknown` never do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Answers probes.
    Up,
    /// Answers probes, but its loss or RTT over its profile's window
    /// crosses a threshold (see [`Degradation`]). Not an outage.
    Degraded,
    /// Missed its probes.
    Down,
    /// Not reachable (ICMP unreachable, or its parent is down).
    Unreachable,
    /// Nobody can tell (never probed, or its agent is offline).
    Unknown,
}

impl Status {
    /// The name stored in the database and shown in APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Degraded => "degraded",
            Status::Down => "down",
            Status::Unreachable => "unreachable",
            Status::Unknown => "unknown",
        }
    }

    /// True for the states that carry a `down_since` and an alert.
    pub fn is_outage(self) -> bool {
        matches!(self, Status::Down | Status::Unreachable)
    }

    /// True for the states in which the device answers.
    pub fn answers(self) -> bool {
        matches!(self, Status::Up | Status::Degraded)
    }
}

/// How bad a degradation is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DegradedLevel {
    /// A warning threshold is crossed.
    Warning,
    /// A critical threshold is crossed.
    Critical,
}

impl DegradedLevel {
    /// The name shown in APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            DegradedLevel::Warning => "warning",
            DegradedLevel::Critical => "critical",
        }
    }
}

/// A degraded device's level and the figures over its window that decided
/// it, as its agent measured them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Degradation {
    /// The level crossed.
    pub level: DegradedLevel,
    /// The window's loss, tenths of a percent.
    pub loss_permille: u16,
    /// The window's RTT as the thresholds compare it, µs (none when
    /// nothing answered).
    pub rtt_us: Option<u32>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "up" => Ok(Status::Up),
            "degraded" => Ok(Status::Degraded),
            "down" => Ok(Status::Down),
            "unreachable" => Ok(Status::Unreachable),
            "unknown" => Ok(Status::Unknown),
            other => Err(format!("unknown status `{other}`")),
        }
    }
}

/// How much a device's outage matters: ordered from the worst.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Page someone now (a branch's router, its ATMs).
    Critical,
    /// The default.
    #[default]
    Major,
    /// Look at it today.
    Minor,
    /// Only for the record.
    Info,
}

impl Severity {
    /// Every severity, worst first.
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::Major,
        Severity::Minor,
        Severity::Info,
    ];

    /// The name stored in the database and shown in APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Info => "info",
        }
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Severity::ALL
            .into_iter()
            .find(|severity| severity.as_str() == text)
            .ok_or_else(|| format!("`{text}`: use critical, major, minor or info"))
    }
}

/// What an operator configures on a device.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceSpec {
    /// Unique within its site.
    pub name: String,
    /// Where to probe it.
    pub address: IpAddr,
    /// Its site (created on first use).
    pub site: String,
    /// The device it is reached through.
    pub parent_id: Option<i64>,
    /// Probe interval, ms.
    pub interval_ms: u32,
    /// Probe timeout, ms.
    pub timeout_ms: u32,
    /// Misses before DOWN.
    pub down_after: u8,
    /// Replies before UP.
    pub up_after: u8,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// Disabled devices are kept but not probed.
    pub enabled: bool,
    /// How much its outage matters (notifications carry it).
    #[serde(default)]
    pub severity: Severity,
    /// The threshold profile it is judged by, if not its site's default
    /// (see [`crate::quality::ProfileBook`]).
    #[serde(default)]
    pub profile: Option<String>,
    /// What answers for its liveness ([`crate::check`]).
    #[serde(default)]
    pub check: crate::check::Check,
    /// With a TCP check: an RST (a closed port, the device there) means
    /// alive.
    #[serde(default = "alive_by_rst")]
    pub rst_alive: bool,
}

fn alive_by_rst() -> bool {
    true
}

/// Why no probe may go to `address`, if none may (the agent's engine
/// refuses the same): the unspecified address, multicast, IPv4 broadcast,
/// and IPv4-mapped IPv6 addresses, which would be probed over IPv6
/// towards the IPv6 default route.
pub fn unprobeable(address: IpAddr) -> Option<String> {
    if let IpAddr::V6(v6) = address
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Some(format!(
            "is an IPv4-mapped IPv6 address: write the IPv4 address {v4} instead"
        ));
    }
    if address.is_unspecified() {
        return Some("is the unspecified address: give the device's own address".into());
    }
    if address.is_multicast() {
        return Some("is a multicast address: give one device's unicast address".into());
    }
    if let IpAddr::V4(v4) = address
        && v4.is_broadcast()
    {
        return Some("is the broadcast address: give one device's address".into());
    }
    None
}

impl DeviceSpec {
    /// Device `name` at `address` of `site` with every other field as the
    /// API defaults it: ICMP probed every second (500 ms timeout, down
    /// after 3 misses, up after 2 replies), enabled, no parent, tags or
    /// profile.
    pub fn new(name: String, address: IpAddr, site: String) -> Self {
        Self {
            rst_alive: true,
            check: crate::check::Check::default(),
            profile: None,
            name,
            address,
            site,
            parent_id: None,
            interval_ms: 1000,
            timeout_ms: Self::default_timeout_ms(1000),
            down_after: 3,
            up_after: 2,
            tags: vec![],
            enabled: true,
            severity: Severity::default(),
        }
    }

    /// The probe timeout when none is given: 500 ms, or half the interval
    /// when that is shorter (a probe must end before the next one).
    pub fn default_timeout_ms(interval_ms: u32) -> u32 {
        500.min(interval_ms / 2).max(1)
    }

    /// Checks every field; the first problem is named.
    pub fn validate(&self) -> Result<(), FieldError> {
        let error = |field, message: &str| {
            Err(FieldError {
                field,
                message: message.to_owned(),
            })
        };
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return error("name", "must be 1 to 200 characters");
        }
        if self.site.trim().is_empty() || self.site.len() > 200 {
            return error("site", "must be 1 to 200 characters");
        }
        if self.tags.len() > 50 {
            return error("tags", "at most 50 tags");
        }
        if self
            .tags
            .iter()
            .any(|tag| tag.trim().is_empty() || tag.len() > 200)
        {
            return error("tags", "each tag must be 1 to 200 characters");
        }
        if !(10..=3_600_000).contains(&self.interval_ms) {
            return error("interval_ms", "must be between 10 and 3600000");
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return error("timeout_ms", "must be between 1 and 60000");
        }
        if self.timeout_ms >= self.interval_ms {
            return error(
                "timeout_ms",
                "must be shorter than interval_ms (a probe must end before the next one)",
            );
        }
        if !(1..=100).contains(&self.down_after) {
            return error("down_after", "must be between 1 and 100");
        }
        if !(1..=100).contains(&self.up_after) {
            return error("up_after", "must be between 1 and 100");
        }
        if let Some(problem) = unprobeable(self.address) {
            return Err(FieldError {
                field: "address",
                message: problem,
            });
        }
        if let Some(profile) = &self.profile {
            crate::quality::check_profile_name("profile", profile)?;
        }
        Ok(())
    }
}

/// A device with its current status.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Device {
    /// Store-assigned id.
    pub id: i64,
    /// Its configuration.
    pub spec: DeviceSpec,
    /// Current status.
    pub status: Status,
    /// When the current outage began (probe time), Unix ms.
    pub down_since_ms: Option<i64>,
    /// When `status` last changed, Unix ms.
    pub status_changed_at_ms: i64,
    /// RTT of the last reply reported, µs.
    pub last_rtt_us: Option<u32>,
    /// The agent of its site that probes it (see `store::groups`); `None`
    /// while its site has no agent.
    pub agent: Option<String>,
    /// Its outage began or ended too often lately (see `store::flap`):
    /// its alert changes notify nobody until it is stable.
    pub flapping: bool,
    /// How it is degraded, while its status is `Degraded` (since
    /// `status_changed_at_ms`: a change of level is a change).
    pub degraded: Option<Degradation>,
}

impl Device {
    /// Its round-trip time now: the last reply's while it is up, none
    /// while it is not (a down device has no current RTT).
    pub fn current_rtt_us(&self) -> Option<u32> {
        self.last_rtt_us.filter(|_| self.status.answers())
    }
}

/// One state change reported by an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedTransition {
    /// The device.
    pub device_id: i64,
    /// Up, Degraded, Down or Unreachable.
    pub status: Status,
    /// Send time of the probe that decided it, Unix ms.
    pub probed_at_ms: i64,
    /// RTT of the device's last reply, µs.
    pub last_rtt_us: Option<u32>,
    /// With `Degraded`: its level and figures.
    pub degraded: Option<Degradation>,
    /// Why (for the event log).
    pub reason: String,
}

/// A batch of transitions as one agent report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionReport {
    /// Reporting agent.
    pub agent_id: String,
    /// The agent process's boot id.
    pub boot_id: String,
    /// The report's sequence number within that boot.
    pub seq: u64,
    /// The changes, in the order the agent decided them.
    pub transitions: Vec<ReportedTransition>,
    /// Agent alerts opened or resolved with it (controller reports only).
    pub agent_alerts: Vec<AgentAlertChange>,
}

/// Why a reported transition was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// No such device.
    UnknownDevice,
    /// Older than the device's last change.
    Stale,
    /// The device already has that status.
    NoChange,
    /// The device is disabled: nobody should be probing it.
    Disabled,
    /// The reporting agent does not own the device (another agent of its
    /// site does).
    NotOwner,
}

/// Who the controller's own reports (offline sites, blind agents) come
/// from.
pub const CONTROLLER_REPORTS: &str = "ward-controller";

/// What applying a report did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Applied now: the devices whose status changed, and what was ignored.
    Applied {
        /// Devices whose status changed, at which data version.
        changes: StatusChanges,
        /// Entries not applied, with the reason.
        ignored: Vec<(i64, Ignored)>,
    },
    /// This (agent, boot, seq) was applied before; nothing was written.
    AlreadyApplied,
}

/// The devices whose effective status a write changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusChanges {
    /// Devices whose status changed, in order of first change.
    pub changed: Vec<i64>,
    /// Their status before, in the order of `changed`.
    pub previous: Vec<Status>,
    /// The data version they were committed at (commit order; the event
    /// stream's ids), once committed.
    pub version: Option<i64>,
    /// Alert changes whose notification was withheld (flapping devices).
    pub withheld: u64,
    /// The changed devices as this write committed them (read in its
    /// transaction, by id; a device it deleted is absent): what live
    /// events show, even when a later commit changed a device again
    /// before they were sent.
    pub devices: Vec<Device>,
}

impl StatusChanges {
    /// Adds the changes of a later write of the same transaction: a device
    /// keeps its first `previous`; the version is the later one's.
    pub fn merge(&mut self, later: StatusChanges) {
        for (id, previous) in later.changed.into_iter().zip(later.previous) {
            if !self.changed.contains(&id) {
                self.changed.push(id);
                self.previous.push(previous);
            }
        }
        self.version = later.version.or(self.version);
        self.withheld += later.withheld;
        for device in later.devices {
            match self.devices.iter_mut().find(|kept| kept.id == device.id) {
                Some(kept) => *kept = device,
                None => self.devices.push(device),
            }
        }
    }
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AlertName {
    /// A device is down (its own outage, not its parent's).
    DeviceDown,
    /// A device answers, but its loss or RTT crosses its thresholds
    /// (severity: the level crossed).
    DeviceDegraded,
    /// An agent is offline, or connected but unable to probe some of its
    /// devices (blind).
    AgentDown,
}

impl AlertName {
    /// True for the alerts about a device.
    pub fn is_device(self) -> bool {
        matches!(self, AlertName::DeviceDown | AlertName::DeviceDegraded)
    }

    /// The name stored, sent as Alertmanager's `alertname` and shown in
    /// APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertName::DeviceDown => "DeviceDown",
            AlertName::DeviceDegraded => "DeviceDegraded",
            AlertName::AgentDown => "AgentDown",
        }
    }
}

impl FromStr for AlertName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "DeviceDown" => Ok(AlertName::DeviceDown),
            "DeviceDegraded" => Ok(AlertName::DeviceDegraded),
            "AgentDown" => Ok(AlertName::AgentDown),
            other => Err(format!("unknown alertname `{other}`")),
        }
    }
}

/// An alert, with what its messages need about its subject.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    /// Alert id.
    pub id: i64,
    /// What it is about.
    pub alertname: AlertName,
    /// The device (`DeviceDown`, `DeviceDegraded`; kept after the device
    /// is deleted).
    pub device_id: Option<i64>,
    /// The agent (`AgentDown`).
    pub agent_id: Option<String>,
    /// The device's name, or the agent's id.
    pub name: String,
    /// The device's address (empty for an agent).
    pub address: String,
    /// The site.
    pub site: String,
    /// The device's severity (an agent alert's: `major`).
    pub severity: Severity,
    /// The device's tags (none for an agent, or a deleted device).
    pub tags: Vec<String>,
    /// The name of the device's parent (its site's router), if it has one.
    #[serde(default)]
    pub parent: Option<String>,
    /// Who took it, when, and what they said; `None` until someone does.
    pub acknowledged: Option<Acknowledgement>,
    /// Its notifications are held back: its `firing` came due while its
    /// device was in maintenance (see `store::held`).
    pub held: bool,
    /// Its device is flapping now (see `store::flap`).
    pub flapping: bool,
    /// When its device's latest flapping episode began, Unix ms.
    pub flap_started_at_ms: Option<i64>,
    /// Its device's status now (`None` for an agent, or a deleted device).
    pub device_status: Option<Status>,
    /// How its device is degraded now, if it is.
    pub degraded: Option<Degradation>,
    /// The path to its device when it failed, once the agent traced it.
    pub trace: Option<crate::trace::Trace>,
    /// Opened (outage start), Unix ms.
    pub opened_at_ms: i64,
    /// Resolved, Unix ms; `None` while open.
    pub resolved_at_ms: Option<i64>,
    /// Why it was resolved: the deciding report's reason, the agent's
    /// return, or the inventory change (device disabled, deleted, address
    /// changed).
    pub resolved_reason: Option<String>,
}

impl Alert {
    /// Its severity as notifications and APIs say it: a `DeviceDegraded`
    /// alert's is the level its device crossed (`warning` or `critical`;
    /// `warning` once the device no longer is degraded), every other
    /// alert's its device's severity.
    pub fn severity_label(&self) -> &'static str {
        match self.alertname {
            AlertName::DeviceDegraded => self
                .degraded
                .map_or(DegradedLevel::Warning, |degraded| degraded.level)
                .as_str(),
            _ => self.severity.as_str(),
        }
    }
}

/// An operator's "I have this one" on an open alert.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Acknowledgement {
    /// The principal (e.g. `user alice (session)`).
    pub by: String,
    /// When, Unix ms.
    pub at_ms: i64,
    /// What they said.
    pub comment: String,
}

/// An agent alert to open or resolve with a controller report, in the same
/// transaction as the `unknown` it causes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentAlertChange {
    /// The agent.
    pub agent_id: String,
    /// Its site.
    pub site: String,
    /// Open (true) or resolve (false).
    pub open: bool,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Why.
    pub reason: String,
}

/// A notification waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Outbox row id.
    pub id: i64,
    /// The alert it is about.
    pub alert_id: i64,
    /// `firing`, `resolved`, `acknowledged`, `flapping` or `settled`.
    pub kind: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Where it goes (`webhook`, `alertmanager`).
    pub channel: String,
}

/// A notification due for delivery, with what its message needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueNotification {
    /// Outbox row id (also the message's idempotency key).
    pub id: i64,
    /// `firing`, `resolved`, `acknowledged`, `flapping` or `settled`.
    pub kind: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The alert as it is now.
    pub alert: Alert,
}

/// An agent in the inventory: allowed to connect and probe its site.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentRecord {
    /// Its identity (host name by default; the certificate's name with mTLS).
    pub id: String,
    /// The site whose devices it probes.
    pub site: String,
    /// Registered, Unix ms.
    pub created_at_ms: i64,
}

impl AgentRecord {
    /// Checks an agent id and site before they are stored.
    pub fn validate(id: &str, site: &str) -> Result<(), FieldError> {
        let id_ok = (1..=200).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !id_ok {
            return Err(FieldError {
                field: "id",
                message: "must be 1 to 200 letters, digits, '.', '-' or '_'".into(),
            });
        }
        if site.trim().is_empty() || site.len() > 200 {
            return Err(FieldError {
                field: "site",
                message: "must be 1 to 200 characters".into(),
            });
        }
        Ok(())
    }
}

/// Which database this is and how far its device and alert data have
/// moved: every transaction changing them moves `version` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataVersion {
    /// A random id of the database, the same for every controller on it.
    pub cluster: String,
    /// Moves on with every committed change to devices or alerts.
    pub version: i64,
}
