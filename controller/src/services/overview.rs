//! What a NOC screen shows at a glance, computed by the controller from the
//! device list it holds, in one pass: the counts, every site's tally (the
//! heat map), the problems worst first (at most a screenful, with how many
//! there are) and how many devices match the screen's filters. The
//! dashboard asks for this instead of loading the whole inventory: at
//! 200,000 devices the answer is a few hundred rows, not tens of
//! megabytes.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use super::inventory::{DeviceFilter, Inventory, Summary};
use crate::store::{Device, Status, StoreError};
use ward_domain::maintenance::OpenWindow;

/// Problems shown when the caller does not say.
pub const PROBLEMS_DEFAULT: usize = 500;
/// Problems shown at most.
pub const PROBLEMS_MAX: usize = 1_000;

/// One site's enabled devices by status.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SiteTally {
    /// The site.
    pub name: String,
    /// Up.
    pub up: u64,
    /// Degraded.
    pub degraded: u64,
    /// Down.
    pub down: u64,
    /// Unreachable.
    pub unreachable: u64,
    /// Unknown.
    pub unknown: u64,
    /// Problems among them ([`is_problem`]).
    pub problems: u64,
    /// The worst status with a device in it (`unknown` for none).
    pub worst: &'static str,
}

/// The overview.
#[derive(Debug)]
pub struct Overview {
    /// Every enabled device by status (as `/api/v1/summary`).
    pub counts: Summary,
    /// Devices matching the filters.
    pub matching: u64,
    /// Problems matching the filters.
    pub problem_total: u64,
    /// The first of them, worst first ([`problem_order`]).
    pub problems: Vec<Arc<Device>>,
    /// Every site, by name in natural order.
    pub sites: Vec<SiteTally>,
}

/// Worst first: the order of the problems and of a site's colour.
const WORST_FIRST: [Status; 5] = [
    Status::Down,
    Status::Unreachable,
    Status::Degraded,
    Status::Unknown,
    Status::Up,
];

fn rank(status: Status) -> usize {
    WORST_FIRST
        .iter()
        .position(|worst| *worst == status)
        .unwrap_or(WORST_FIRST.len())
}

/// Not plainly up: an enabled device down, unreachable, degraded, unknown,
/// flapping or in maintenance.
pub fn is_problem(device: &Device, open: &[OpenWindow]) -> bool {
    device.spec.enabled
        && (device.status != Status::Up
            || device.flapping
            || open.iter().any(|open| open.window.spec.covers(device)))
}

/// Problems: the worst status first, then the worst severity, then the
/// newest, then by name in natural order.
pub fn problem_order(a: &Device, b: &Device) -> Ordering {
    let since = |d: &Device| d.down_since_ms.unwrap_or(d.status_changed_at_ms);
    rank(a.status)
        .cmp(&rank(b.status))
        .then(a.spec.severity.cmp(&b.spec.severity))
        .then(since(b).cmp(&since(a)))
        .then_with(|| ward_domain::natural::cmp(&a.spec.name, &b.spec.name))
}

impl SiteTally {
    fn count(&mut self, device: &Device, problem: bool) {
        match device.status {
            Status::Up => self.up += 1,
            Status::Degraded => self.degraded += 1,
            Status::Down => self.down += 1,
            Status::Unreachable => self.unreachable += 1,
            Status::Unknown => self.unknown += 1,
        }
        self.problems += u64::from(problem);
    }

    fn of(&self, status: Status) -> u64 {
        match status {
            Status::Up => self.up,
            Status::Degraded => self.degraded,
            Status::Down => self.down,
            Status::Unreachable => self.unreachable,
            Status::Unknown => self.unknown,
        }
    }
}

impl Inventory {
    /// The overview as of the store's data version now: `filter` narrows
    /// the problems and the matching count, never the counts or the sites;
    /// at most `shown` problems are returned.
    pub async fn overview(
        &self,
        filter: &DeviceFilter<'_>,
        shown: usize,
    ) -> Result<Overview, StoreError> {
        let (devices, open) = self.devices_now().await?;
        let matcher = filter.matcher();
        let mut counts = Summary::default();
        let mut sites: HashMap<&str, SiteTally> = HashMap::new();
        let mut matching = 0;
        let mut problems = Vec::new();
        for device in devices.iter() {
            let site = sites.entry(&device.spec.site).or_default();
            if !device.spec.enabled {
                matching += u64::from(matcher.matches(device));
                continue;
            }
            let problem = is_problem(device, &open);
            counts.count(device, &open);
            site.count(device, problem);
            if matcher.matches(device) {
                matching += 1;
                if problem {
                    problems.push(Arc::clone(device));
                }
            }
        }
        let problem_total = problems.len() as u64;
        if problems.len() > shown && shown > 0 {
            problems.select_nth_unstable_by(shown - 1, |a, b| problem_order(a, b));
        }
        problems.truncate(shown);
        problems.sort_by(|a, b| problem_order(a, b));
        let mut sites: Vec<SiteTally> = sites
            .into_iter()
            .map(|(name, mut tally)| {
                tally.name = name.to_owned();
                tally.worst = WORST_FIRST
                    .into_iter()
                    .find(|status| tally.of(*status) > 0)
                    .unwrap_or(Status::Unknown)
                    .as_str();
                tally
            })
            .collect();
        sites.sort_by(|a, b| ward_domain::natural::cmp(&a.name, &b.name));
        Ok(Overview {
            counts,
            matching,
            problem_total,
            problems,
            sites,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeviceSpec, Severity};

    fn device(id: i64, status: Status, severity: Severity, since: i64) -> Device {
        let mut spec = DeviceSpec::new(
            format!("dev-{id}"),
            "198.18.0.1".parse().expect("address"),
            "site".into(),
        );
        spec.severity = severity;
        Device {
            id,
            spec,
            status,
            down_since_ms: None,
            status_changed_at_ms: since,
            last_rtt_us: None,
            agent: None,
            flapping: false,
            degraded: None,
        }
    }

    #[test]
    fn problems_are_worst_status_then_severity_then_newest_then_name() {
        let mut devices = [
            device(1, Status::Unknown, Severity::Critical, 50),
            device(2, Status::Down, Severity::Minor, 90),
            device(3, Status::Down, Severity::Critical, 10),
            device(4, Status::Down, Severity::Critical, 20),
            device(10, Status::Down, Severity::Critical, 20),
            device(5, Status::Degraded, Severity::Critical, 99),
        ];
        devices.sort_by(problem_order);
        let ids: Vec<i64> = devices.iter().map(|d| d.id).collect();
        assert_eq!(ids, [4, 10, 3, 2, 5, 1]);
    }

    #[test]
    fn a_flapping_or_maintained_up_device_is_a_problem_a_disabled_one_never() {
        let mut up = device(1, Status::Up, Severity::Major, 0);
        assert!(!is_problem(&up, &[]));
        up.flapping = true;
        assert!(is_problem(&up, &[]));
        let mut down = device(2, Status::Down, Severity::Major, 0);
        assert!(is_problem(&down, &[]));
        down.spec.enabled = false;
        assert!(!is_problem(&down, &[]));
    }
}
