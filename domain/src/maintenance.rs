//! Maintenance windows' schedules, free of I/O: when a window is open.
//!
//! A window is its first occurrence (`starts_at`, `ends_at`) read in its
//! named time zone, and optionally a recurrence: daily, weekly on given
//! days, or monthly on a day of the month, until an optional instant.
//! Each occurrence keeps the first one's local wall-clock times (a branch
//! closed 22:00–06:00 is closed 22:00–06:00 local on either side of a DST
//! change); a local time that does not exist or exists twice on a DST day
//! is read as the later offset for a gap and the earlier for a fold
//! (jiff's "compatible" rule, as RFC 5545).

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::model::{Device, DueNotification, FieldError};

/// How a window repeats.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "every", rename_all = "lowercase", deny_unknown_fields)]
pub enum Every {
    /// Every day.
    Daily,
    /// On these days of the week (`["mon", "fri"]`).
    Weekly {
        /// The days.
        days: Vec<Day>,
    },
    /// On this day of the month (a month without it is skipped).
    Monthly {
        /// 1 to 31.
        day: u8,
    },
}

/// A day of the week as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl std::str::FromStr for Day {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, ScheduleError> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
            invalid(
                "recurrence.days",
                format!("`{text}`: use mon, tue, wed, thu, fri, sat or sun"),
            )
        })
    }
}

impl Every {
    /// The recurrence `every` names: `daily`; `weekly` with `days`;
    /// `monthly` with `day`.
    pub fn named(
        every: &str,
        days: Option<Vec<Day>>,
        day: Option<u8>,
    ) -> Result<Self, ScheduleError> {
        match (every, days, day) {
            ("daily", None, None) => Ok(Every::Daily),
            ("weekly", Some(days), None) => Ok(Every::Weekly { days }),
            ("monthly", None, Some(day)) => Ok(Every::Monthly { day }),
            ("daily" | "weekly" | "monthly", _, _) => Err(invalid(
                "recurrence",
                "weekly takes `days`, monthly takes `day`, daily neither",
            )),
            (other, _, _) => Err(invalid(
                "recurrence.every",
                format!("`{other}`: use daily, weekly or monthly"),
            )),
        }
    }
}

impl Day {
    fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Monday,
            Day::Tue => Weekday::Tuesday,
            Day::Wed => Weekday::Wednesday,
            Day::Thu => Weekday::Thursday,
            Day::Fri => Weekday::Friday,
            Day::Sat => Weekday::Saturday,
            Day::Sun => Weekday::Sunday,
        }
    }
}

/// Why a schedule cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    /// The field at fault, as the API names it.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ScheduleError {
    ScheduleError {
        field,
        message: message.into(),
    }
}

/// The longest a window (one occurrence) may last.
const MAX_LENGTH_MS: i64 = 366 * 86_400_000;

/// What an operator sets on a window.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MaintenanceSpec {
    /// What it is for ("branch closed at night").
    pub name: String,
    /// The first occurrence, Unix ms.
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    /// The IANA time zone its local times are read in.
    pub time_zone: String,
    /// How it repeats; `None`: once.
    pub every: Option<Every>,
    /// No occurrence starts after this, Unix ms.
    pub until_ms: Option<i64>,
    /// The devices it applies to …
    pub devices: Vec<i64>,
    /// … and every device of these sites …
    pub sites: Vec<String>,
    /// … and every device carrying one of these tags.
    pub tags: Vec<String>,
    /// Why, who to call.
    pub comment: String,
}

impl MaintenanceSpec {
    /// Its schedule; a bad one names its field.
    pub fn schedule(&self) -> Result<Schedule, FieldError> {
        Schedule::new(
            self.starts_at_ms,
            self.ends_at_ms,
            &self.time_zone,
            self.every.clone(),
            self.until_ms,
        )
        .map_err(|error| FieldError {
            field: error.field,
            message: error.message,
        })
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
        if self.devices.is_empty() && self.sites.is_empty() && self.tags.is_empty() {
            return error(
                "devices",
                "name the devices, sites or tags the window applies to",
            );
        }
        if self.comment.len() > 2000 {
            return error("comment", "at most 2000 characters");
        }
        self.schedule().map(drop)
    }

    /// Whether the window applies to `device` (when it is open).
    pub fn covers(&self, device: &Device) -> bool {
        self.covers_subject(device.id, &device.spec.site, &device.spec.tags)
    }

    /// Whether the window applies to device `id` of `site` with `tags`.
    pub fn covers_subject(&self, id: i64, site: &str, tags: &[String]) -> bool {
        self.devices.contains(&id)
            || self.sites.iter().any(|covered| covered == site)
            || tags.iter().any(|tag| self.tags.contains(tag))
    }
}

/// A stored window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceWindow {
    pub id: i64,
    pub spec: MaintenanceSpec,
    /// Who created it, when (Unix ms).
    pub created_by: String,
    pub created_at_ms: i64,
}

/// A window open now, with its occurrence's bounds (Unix ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenWindow {
    pub window: MaintenanceWindow,
    pub starts_ms: i64,
    pub ends_ms: i64,
}

/// The windows of `windows` open at `at_ms` (a stored window whose
/// schedule no longer reads, e.g. a time zone gone from the database, is
/// left out and logged).
pub fn open_at(windows: Vec<MaintenanceWindow>, at_ms: i64) -> Vec<OpenWindow> {
    windows
        .into_iter()
        .filter_map(|window| {
            let schedule = window
                .spec
                .schedule()
                .inspect_err(|error| {
                    tracing::warn!(window = window.id, %error, "maintenance window ignored: its schedule does not read");
                })
                .ok()?;
            let (starts_ms, ends_ms) = schedule.open_at(at_ms)?;
            Some(OpenWindow {
                window,
                starts_ms,
                ends_ms,
            })
        })
        .collect()
}

/// The ids of the open windows that apply to `device`.
pub fn covering(open: &[OpenWindow], device: &Device) -> Vec<i64> {
    open.iter()
        .filter(|open| open.window.spec.covers(device))
        .map(|open| open.window.id)
        .collect()
}

/// Whether maintenance holds `notification` back: a device alert's
/// `firing` (or `flapping`) while a window of `open` covers the device, or
/// any later notification of an alert whose `firing` was held.
pub fn holds_back(open: &[OpenWindow], notification: &DueNotification) -> bool {
    let alert = &notification.alert;
    let Some(device) = alert.device_id.filter(|_| alert.alertname.is_device()) else {
        return false;
    };
    alert.held
        || (matches!(notification.kind.as_str(), "firing" | "flapping")
            && open.iter().any(|open| {
                open.window
                    .spec
                    .covers_subject(device, &alert.site, &alert.tags)
            }))
}

/// When a window is open.
#[derive(Clone, Debug)]
pub struct Schedule {
    zone: TimeZone,
    /// The first occurrence's start and end, local.
    start: DateTime,
    end: DateTime,
    /// How many local days the end is after the start.
    days_long: i32,
    every: Option<Every>,
    until_ms: Option<i64>,
}

impl Schedule {
    /// The schedule of a window first open `starts_ms`..`ends_ms` (Unix
    /// ms), read in `time_zone` (an IANA name, e.g. `Asia/Tbilisi`).
    pub fn new(
        starts_ms: i64,
        ends_ms: i64,
        time_zone: &str,
        every: Option<Every>,
        until_ms: Option<i64>,
    ) -> Result<Self, ScheduleError> {
        let zone = TimeZone::get(time_zone).map_err(|_| {
            invalid(
                "time_zone",
                format!(
                    "`{time_zone}` is not a time zone: use an IANA name, e.g. Asia/Tbilisi or UTC"
                ),
            )
        })?;
        if ends_ms <= starts_ms {
            return Err(invalid("ends_at", "must be after starts_at"));
        }
        if ends_ms - starts_ms > MAX_LENGTH_MS {
            return Err(invalid("ends_at", "a window lasts at most 366 days"));
        }
        if until_ms.is_some_and(|until| until < starts_ms) {
            return Err(invalid("recurrence.until", "must not be before starts_at"));
        }
        match &every {
            Some(Every::Weekly { days }) if days.is_empty() => {
                return Err(invalid("recurrence.days", "name at least one day"));
            }
            Some(Every::Monthly { day }) if !(1..=31).contains(day) => {
                return Err(invalid("recurrence.day", "must be between 1 and 31"));
            }
            _ => {}
        }
        let local = |ms: i64, field| -> Result<DateTime, ScheduleError> {
            Timestamp::from_millisecond(ms)
                .map(|at| at.to_zoned(zone.clone()).datetime())
                .map_err(|_| invalid(field, "out of range"))
        };
        let (start, end) = (local(starts_ms, "starts_at")?, local(ends_ms, "ends_at")?);
        let days_long = end
            .date()
            .since(start.date())
            .map(|span| span.get_days())
            .map_err(|_| invalid("ends_at", "out of range"))?;
        Ok(Self {
            zone,
            start,
            end,
            days_long,
            every,
            until_ms,
        })
    }

    /// Whether an occurrence may start on local date `date`.
    fn starts_on(&self, date: Date) -> bool {
        if date < self.start.date() {
            return false;
        }
        match &self.every {
            None => date == self.start.date(),
            Some(Every::Daily) => true,
            Some(Every::Weekly { days }) => days.iter().any(|day| day.weekday() == date.weekday()),
            Some(Every::Monthly { day }) => i16::from(date.day()) == i16::from(*day),
        }
    }

    /// The occurrence starting on local date `date`, Unix ms.
    fn occurrence(&self, date: Date) -> Option<(i64, i64)> {
        let instant = |date: Date, at: DateTime| -> Option<i64> {
            self.zone
                .to_zoned(date.to_datetime(at.time()))
                .ok()
                .map(|zoned: Zoned| zoned.timestamp().as_millisecond())
        };
        let end_date = date
            .checked_add(jiff::Span::new().days(self.days_long))
            .ok()?;
        let start = instant(date, self.start)?;
        if self.until_ms.is_some_and(|until| start > until) {
            return None;
        }
        Some((start, instant(end_date, self.end)?))
    }

    /// Every occurrence overlapping `from_ms..to_ms`, in order, Unix ms.
    pub fn occurrences(&self, from_ms: i64, to_ms: i64) -> Vec<(i64, i64)> {
        let local = |ms: i64| {
            Timestamp::from_millisecond(ms)
                .ok()
                .map(|at| at.to_zoned(self.zone.clone()).date())
        };
        let (Some(mut date), Some(last)) = (local(from_ms), local(to_ms)) else {
            return Vec::new();
        };
        // An occurrence overlapping the start began up to its length (and
        // a day, for a DST shift) before.
        for _ in 0..=self.days_long.saturating_add(1) {
            match date.yesterday() {
                Ok(earlier) => date = earlier,
                Err(_) => break,
            }
        }
        let mut found = Vec::new();
        while date <= last {
            if self.starts_on(date)
                && let Some((start, end)) = self.occurrence(date)
                && start < to_ms
                && end > from_ms
            {
                found.push((start, end));
            }
            let Ok(next) = date.tomorrow() else { break };
            date = next;
        }
        found
    }

    /// The occurrence open at `at_ms` (start inclusive, end exclusive),
    /// Unix ms.
    pub fn open_at(&self, at_ms: i64) -> Option<(i64, i64)> {
        let today = Timestamp::from_millisecond(at_ms)
            .ok()?
            .to_zoned(self.zone.clone())
            .date();
        // An occurrence open now started today or up to its length (plus
        // one day, for a DST shift) before.
        let mut date = today;
        for _ in 0..=self.days_long.saturating_add(1) {
            if self.starts_on(date)
                && let Some((start, end)) = self.occurrence(date)
                && start <= at_ms
                && at_ms < end
            {
                return Some((start, end));
            }
            date = date.yesterday().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>()
            .expect("RFC 3339")
            .as_millisecond()
    }

    #[test]
    fn a_daily_window_keeps_its_local_time_across_a_dst_change() {
        // Berlin: 02:00 → 03:00 on 2026-03-29 (UTC+1 → UTC+2).
        let schedule = Schedule::new(
            ms("2026-03-27T22:00:00+01:00"),
            ms("2026-03-28T06:00:00+01:00"),
            "Europe/Berlin",
            Some(Every::Daily),
            None,
        )
        .expect("schedule");
        // Before the change: 22:00 local is 21:00 UTC.
        assert_eq!(
            schedule.open_at(ms("2026-03-27T21:00:00Z")),
            Some((ms("2026-03-27T21:00:00Z"), ms("2026-03-28T05:00:00Z")))
        );
        assert_eq!(schedule.open_at(ms("2026-03-27T20:59:59Z")), None);
        // The night of the change: opens 22:00 UTC+1, closes 06:00 UTC+2.
        assert_eq!(
            schedule.open_at(ms("2026-03-29T03:59:59Z")),
            Some((ms("2026-03-28T21:00:00Z"), ms("2026-03-29T04:00:00Z")))
        );
        assert_eq!(schedule.open_at(ms("2026-03-29T04:00:00Z")), None);
        // After it: 22:00 local is 20:00 UTC.
        assert_eq!(schedule.open_at(ms("2026-03-29T19:59:59Z")), None);
        assert_eq!(
            schedule.open_at(ms("2026-03-29T20:00:00Z")),
            Some((ms("2026-03-29T20:00:00Z"), ms("2026-03-30T04:00:00Z")))
        );
    }

    #[test]
    fn a_window_opening_in_a_dst_gap_opens_at_the_later_offset() {
        // 02:30 does not exist in Berlin on 2026-03-29: 03:30 CEST.
        let schedule = Schedule::new(
            ms("2026-03-28T02:30:00+01:00"),
            ms("2026-03-28T04:00:00+01:00"),
            "Europe/Berlin",
            Some(Every::Daily),
            None,
        )
        .expect("schedule");
        let (start, end) = schedule
            .open_at(ms("2026-03-29T01:45:00Z"))
            .expect("open on the day of the change");
        assert_eq!(
            (start, end),
            (
                ms("2026-03-29T03:30:00+02:00"),
                ms("2026-03-29T04:00:00+02:00")
            )
        );
    }

    #[test]
    fn weekly_monthly_one_off_and_until_open_only_when_they_should() {
        let weekly = Schedule::new(
            ms("2026-11-30T09:00:00+04:00"), // a Monday in Tbilisi
            ms("2026-11-30T10:00:00+04:00"),
            "Asia/Tbilisi",
            Some(Every::Weekly {
                days: vec![Day::Mon, Day::Thu],
            }),
            Some(ms("2026-12-10T00:00:00+04:00")),
        )
        .expect("weekly");
        let at = |text| weekly.open_at(ms(text)).is_some();
        assert!(at("2026-11-30T09:30:00+04:00"));
        assert!(!at("2026-12-01T09:30:00+04:00"), "Tuesday");
        assert!(at("2026-12-03T09:59:59+04:00"), "Thursday");
        assert!(!at("2026-12-03T10:00:00+04:00"), "the end is exclusive");
        assert!(at("2026-12-07T09:00:00+04:00"));
        assert!(!at("2026-12-14T09:30:00+04:00"), "after until");
        assert!(!at("2026-11-23T09:30:00+04:00"), "before the first");

        let monthly = Schedule::new(
            ms("2026-01-31T01:00:00Z"),
            ms("2026-01-31T02:00:00Z"),
            "UTC",
            Some(Every::Monthly { day: 31 }),
            None,
        )
        .expect("monthly");
        assert!(monthly.open_at(ms("2026-03-31T01:30:00Z")).is_some());
        assert!(
            monthly.open_at(ms("2026-02-28T01:30:00Z")).is_none(),
            "February has no 31st"
        );

        let once = Schedule::new(
            ms("2026-11-30T22:00:00Z"),
            ms("2026-12-02T06:00:00Z"),
            "UTC",
            None,
            None,
        )
        .expect("one-off");
        assert!(
            once.open_at(ms("2026-12-01T12:00:00Z")).is_some(),
            "day two of three"
        );
        assert!(once.open_at(ms("2026-12-02T06:00:00Z")).is_none());
    }

    #[test]
    fn occurrences_are_listed_across_a_range_and_agree_with_open_at() {
        let schedule = Schedule::new(
            ms("2026-03-27T22:00:00+01:00"),
            ms("2026-03-28T06:00:00+01:00"),
            "Europe/Berlin",
            Some(Every::Daily),
            Some(ms("2026-03-30T00:00:00Z")),
        )
        .expect("schedule");
        let found = schedule.occurrences(ms("2026-03-28T00:00:00Z"), ms("2026-04-02T00:00:00Z"));
        assert_eq!(
            found,
            [
                (ms("2026-03-27T21:00:00Z"), ms("2026-03-28T05:00:00Z")),
                (ms("2026-03-28T21:00:00Z"), ms("2026-03-29T04:00:00Z")),
                (ms("2026-03-29T20:00:00Z"), ms("2026-03-30T04:00:00Z")),
            ],
            "three, the last before until"
        );
        for (start, end) in found {
            assert_eq!(schedule.open_at(start), Some((start, end)));
            assert_eq!(schedule.open_at(end - 1), Some((start, end)));
        }
    }

    #[test]
    fn bad_schedules_name_their_field() {
        let error = |every, zone, until| {
            Schedule::new(
                ms("2026-11-30T10:00:00Z"),
                ms("2026-11-30T11:00:00Z"),
                zone,
                every,
                until,
            )
            .expect_err("refused")
            .field
        };
        assert_eq!(error(None, "Mars/Olympus", None), "time_zone");
        assert_eq!(
            error(Some(Every::Weekly { days: vec![] }), "UTC", None),
            "recurrence.days"
        );
        assert_eq!(
            error(Some(Every::Monthly { day: 32 }), "UTC", None),
            "recurrence.day"
        );
        assert_eq!(
            error(Some(Every::Daily), "UTC", Some(ms("2026-11-01T00:00:00Z"))),
            "recurrence.until"
        );
        let backwards = Schedule::new(
            ms("2026-11-30T11:00:00Z"),
            ms("2026-11-30T10:00:00Z"),
            "UTC",
            None,
            None,
        );
        assert_eq!(backwards.expect_err("refused").field, "ends_at");
    }
}
