//! Availability, computed exactly from the recorded status changes, free
//! of I/O. For one device over a range: how long it was up, down,
//! unreachable or unknown, how long it was in maintenance (that time in no
//! status bucket), its outages (maximal stretches down or unreachable;
//! their time in maintenance does not count, and a stretch wholly in
//! maintenance is no outage), and availability = up / (up + down +
//! unreachable). Only the time the device existed counts; its status at
//! the start is that of the last change before it (`unknown` before its
//! first).

use crate::maintenance::{MaintenanceSpec, MaintenanceWindow};
use crate::model::Status;

/// Half-open interval of Unix ms.
pub type Span = (i64, i64);

/// A device as a report counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedDevice {
    pub id: i64,
    pub name: String,
    pub site: String,
    pub tags: Vec<String>,
    /// Created, and deleted (`i64::MAX` while it exists), Unix ms.
    pub existed: (i64, i64),
    /// Its status at the range's start: that of its last change before
    /// it, `unknown` before its first.
    pub initial: Status,
}

/// A report's range when its start is not given: the 30 days before its
/// end.
pub const DEFAULT_RANGE_MS: i64 = 30 * 86_400_000;

/// What one device (or a group of them) did over a range, ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub up_ms: i64,
    /// Time it answered while degraded (available, counted apart).
    pub degraded_ms: i64,
    pub down_ms: i64,
    pub unreachable_ms: i64,
    pub unknown_ms: i64,
    pub maintenance_ms: i64,
    /// Outages with time outside maintenance.
    pub outages: u64,
    /// Their time outside maintenance, summed and longest.
    pub outage_ms: i64,
    pub longest_outage_ms: i64,
}

impl Totals {
    /// Adds another device's totals (a site's or tag's row).
    pub fn add(&mut self, other: &Totals) {
        self.up_ms += other.up_ms;
        self.degraded_ms += other.degraded_ms;
        self.down_ms += other.down_ms;
        self.unreachable_ms += other.unreachable_ms;
        self.unknown_ms += other.unknown_ms;
        self.maintenance_ms += other.maintenance_ms;
        self.outages += other.outages;
        self.outage_ms += other.outage_ms;
        self.longest_outage_ms = self.longest_outage_ms.max(other.longest_outage_ms);
    }

    /// (up + degraded) / (up + degraded + down + unreachable): a degraded
    /// device answers; `None` when that is zero.
    pub fn availability(&self) -> Option<f64> {
        let answered = self.up_ms + self.degraded_ms;
        let counted = answered + self.down_ms + self.unreachable_ms;
        (counted > 0).then(|| answered as f64 / counted as f64)
    }

    /// Mean outage time outside maintenance; `None` without outages.
    pub fn mttr_ms(&self) -> Option<f64> {
        (self.outages > 0).then(|| self.outage_ms as f64 / self.outages as f64)
    }
}

/// One device's history as the store has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// When it existed: created, and deleted (`i64::MAX` if it still is).
    pub existed: Span,
    /// Its status at the start of the range (the last change before it).
    pub initial: Status,
    /// Its changes inside the range, in order: (when, to what).
    pub changes: Vec<(i64, Status)>,
    /// The maintenance occurrences that covered it (may overlap).
    pub maintenance: Vec<Span>,
}

/// The length of `span` not covered by `covered` (sorted, disjoint).
fn uncovered(span: Span, covered: &[Span]) -> i64 {
    let inside: i64 = covered
        .iter()
        .map(|&(start, end)| (end.min(span.1) - start.max(span.0)).max(0))
        .sum();
    (span.1 - span.0) - inside
}

/// `spans` clipped to `range`, sorted and merged.
fn merged(spans: &[Span], range: Span) -> Vec<Span> {
    let mut clipped: Vec<Span> = spans
        .iter()
        .map(|&(start, end)| (start.max(range.0), end.min(range.1)))
        .filter(|(start, end)| start < end)
        .collect();
    clipped.sort_unstable();
    let mut out: Vec<Span> = Vec::with_capacity(clipped.len());
    for (start, end) in clipped {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// `timeline` accounted over `range`.
pub fn account(timeline: &Timeline, range: Span) -> Totals {
    let range = (
        range.0.max(timeline.existed.0),
        range.1.min(timeline.existed.1),
    );
    let mut totals = Totals::default();
    if range.0 >= range.1 {
        return totals;
    }
    let maintenance = merged(&timeline.maintenance, range);
    totals.maintenance_ms = maintenance.iter().map(|(start, end)| end - start).sum();
    // Stretches of one status: (start, end, status).
    let mut stretches = Vec::with_capacity(timeline.changes.len() + 1);
    let (mut at, mut status) = (range.0, timeline.initial);
    for &(when, next) in &timeline.changes {
        let when = when.clamp(range.0, range.1);
        if when > at {
            stretches.push((at, when, status));
            at = when;
        }
        status = next;
    }
    stretches.push((at, range.1, status));
    let mut outage: Option<i64> = None;
    let end_outage = |outage: &mut Option<i64>, totals: &mut Totals| {
        if let Some(time) = outage.take()
            && time > 0
        {
            totals.outages += 1;
            totals.outage_ms += time;
            totals.longest_outage_ms = totals.longest_outage_ms.max(time);
        }
    };
    for (start, end, status) in stretches {
        let time = uncovered((start, end), &maintenance);
        match status {
            Status::Up => totals.up_ms += time,
            Status::Degraded => totals.degraded_ms += time,
            Status::Down => totals.down_ms += time,
            Status::Unreachable => totals.unreachable_ms += time,
            Status::Unknown => totals.unknown_ms += time,
        }
        if status.is_outage() {
            *outage.get_or_insert(0) += time;
        } else {
            end_outage(&mut outage, &mut totals);
        }
    }
    end_outage(&mut outage, &mut totals);
    totals
}

/// The definition in its plainest form, second by second (times in whole
/// seconds): what [`account`] must equal. The property tests (here, and
/// through both store backends) compare the two.
pub fn second_by_second(timeline: &Timeline, range: Span) -> Totals {
    let mut totals = Totals::default();
    let mut outage: i64 = 0;
    let mut previous_outage = false;
    let close = |outage: &mut i64, totals: &mut Totals| {
        if *outage > 0 {
            totals.outages += 1;
            totals.outage_ms += *outage;
            totals.longest_outage_ms = totals.longest_outage_ms.max(*outage);
        }
        *outage = 0;
    };
    let mut second = range.0;
    while second < range.1 {
        let exists = timeline.existed.0 <= second && second < timeline.existed.1;
        if exists {
            let status = timeline
                .changes
                .iter()
                .rev()
                .find(|(at, _)| *at <= second)
                .map_or(timeline.initial, |(_, status)| *status);
            let in_maintenance = timeline
                .maintenance
                .iter()
                .any(|(start, end)| *start <= second && second < *end);
            if status.is_outage() != previous_outage && !status.is_outage() {
                close(&mut outage, &mut totals);
            }
            previous_outage = status.is_outage();
            if in_maintenance {
                totals.maintenance_ms += 1000;
            } else {
                match status {
                    Status::Up => totals.up_ms += 1000,
                    Status::Degraded => totals.degraded_ms += 1000,
                    Status::Down => totals.down_ms += 1000,
                    Status::Unreachable => totals.unreachable_ms += 1000,
                    Status::Unknown => totals.unknown_ms += 1000,
                }
                if status.is_outage() {
                    outage += 1000;
                }
            }
        }
        second += 1000;
    }
    close(&mut outage, &mut totals);
    totals
}

/// How report rows are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Device,
    Site,
    /// A device counts in each of its tags' rows.
    Tag,
}

/// Which devices a report counts; `None` does not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportFilter {
    pub site: Option<String>,
    pub tag: Option<String>,
    pub device: Option<i64>,
}

/// What a row is about. Rows are in natural order ([`crate::natural`]):
/// devices by site then name, then sites, then tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowKey {
    Device { site: String, name: String, id: i64 },
    Site(String),
    Tag(String),
}

impl Ord for RowKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use crate::natural::cmp as natural;
        match (self, other) {
            (
                RowKey::Device { site, name, id },
                RowKey::Device {
                    site: other_site,
                    name: other_name,
                    id: other_id,
                },
            ) => natural(site, other_site)
                .then_with(|| natural(name, other_name))
                .then_with(|| id.cmp(other_id)),
            (RowKey::Site(a), RowKey::Site(b)) | (RowKey::Tag(a), RowKey::Tag(b)) => natural(a, b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl PartialOrd for RowKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl RowKey {
    /// Devices first, then sites, then tags.
    fn rank(&self) -> u8 {
        match self {
            RowKey::Device { .. } => 0,
            RowKey::Site(_) => 1,
            RowKey::Tag(_) => 2,
        }
    }
}

/// The rows of a report over `range`, in key order: each device (after
/// `filter`) accounted from its changes and the maintenance occurrences
/// that covered it, then grouped `by`.
pub fn report(
    devices: &[ReportedDevice],
    changes: &[(i64, i64, Status)],
    windows: &[MaintenanceWindow],
    range: Span,
    by: By,
    filter: &ReportFilter,
) -> Vec<(RowKey, Totals)> {
    let occurrences: Vec<(&MaintenanceSpec, Vec<Span>)> = windows
        .iter()
        .filter_map(|window| {
            let schedule = window.spec.schedule().ok()?;
            Some((&window.spec, schedule.occurrences(range.0, range.1)))
        })
        .collect();
    let mut by_device: std::collections::HashMap<i64, Vec<(i64, Status)>> =
        std::collections::HashMap::new();
    for &(device, at, status) in changes {
        by_device.entry(device).or_default().push((at, status));
    }
    let mut rows: std::collections::BTreeMap<RowKey, Totals> = std::collections::BTreeMap::new();
    for device in devices {
        let wanted = filter.site.as_ref().is_none_or(|site| *site == device.site)
            && filter
                .tag
                .as_ref()
                .is_none_or(|tag| device.tags.contains(tag))
            && filter.device.is_none_or(|id| id == device.id);
        if !wanted {
            continue;
        }
        let timeline = Timeline {
            existed: device.existed,
            initial: device.initial,
            changes: by_device.remove(&device.id).unwrap_or_default(),
            maintenance: occurrences
                .iter()
                .filter(|(spec, _)| spec.covers_subject(device.id, &device.site, &device.tags))
                .flat_map(|(_, spans)| spans.iter().copied())
                .collect(),
        };
        let totals = account(&timeline, range);
        let keys = match by {
            By::Device => vec![RowKey::Device {
                site: device.site.clone(),
                name: device.name.clone(),
                id: device.id,
            }],
            By::Site => vec![RowKey::Site(device.site.clone())],
            By::Tag => device.tags.iter().cloned().map(RowKey::Tag).collect(),
        };
        for key in keys {
            rows.entry(key).or_default().add(&totals);
        }
    }
    rows.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rows_are_in_natural_order() {
        let device = |site: &str, name: &str| RowKey::Device {
            site: site.into(),
            name: name.into(),
            id: 1,
        };
        let mut keys = vec![
            RowKey::Tag("atm".into()),
            RowKey::Site("branch-10".into()),
            device("branch-2", "lo-10"),
            RowKey::Site("branch-9".into()),
            device("branch-2", "lo-9"),
            device("branch-10", "lo-1"),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                device("branch-2", "lo-9"),
                device("branch-2", "lo-10"),
                device("branch-10", "lo-1"),
                RowKey::Site("branch-9".into()),
                RowKey::Site("branch-10".into()),
                RowKey::Tag("atm".into()),
            ]
        );
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Up),
            Just(Status::Degraded),
            Just(Status::Down),
            Just(Status::Unreachable),
            Just(Status::Unknown)
        ]
    }

    /// Whole seconds within 0..600 s, as ms.
    fn second() -> impl Strategy<Value = i64> {
        (0i64..600).prop_map(|s| s * 1000)
    }

    prop_compose! {
        fn timeline_and_range()(
            created in second(),
            lifetime in prop::option::of(1i64..600),
            initial in status(),
            mut changes in prop::collection::vec((second(), status()), 0..12),
            maintenance in prop::collection::vec((second(), 1i64..200), 0..4),
            from in second(),
            length in 1i64..600,
        ) -> (Timeline, Span) {
            changes.sort_by_key(|(at, _)| *at);
            let timeline = Timeline {
                existed: (created, lifetime.map_or(i64::MAX, |s| created + s * 1000)),
                initial,
                // Changes before the range start are folded into `initial`
                // by the store; the oracle sees the same list.
                changes: changes.into_iter().filter(|(at, _)| *at >= from).collect(),
                maintenance: maintenance
                    .into_iter()
                    .map(|(start, length)| (start, start + length * 1000))
                    .collect(),
            };
            (timeline, (from, from + length * 1000))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]
        #[test]
        fn exact_totals_match_a_second_by_second_count((timeline, range) in timeline_and_range()) {
            prop_assert_eq!(account(&timeline, range), second_by_second(&timeline, range));
        }
    }

    #[test]
    fn a_range_starting_mid_outage_counts_the_outage_and_excludes_maintenance() {
        let timeline = Timeline {
            existed: (0, i64::MAX),
            initial: Status::Down,
            changes: vec![(10_000, Status::Unreachable), (30_000, Status::Up)],
            maintenance: vec![(20_000, 25_000)],
        };
        let totals = account(&timeline, (5_000, 40_000));
        assert_eq!(
            totals,
            Totals {
                up_ms: 10_000,
                degraded_ms: 0,
                down_ms: 5_000,
                unreachable_ms: 15_000,
                unknown_ms: 0,
                maintenance_ms: 5_000,
                outages: 1,
                outage_ms: 20_000,
                longest_outage_ms: 20_000,
            }
        );
        assert_eq!(totals.availability(), Some(10.0 / 30.0));
        assert_eq!(totals.mttr_ms(), Some(20_000.0));
    }
}
