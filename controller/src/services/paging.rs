//! Pages of the device list: the list's natural order (site, then name;
//! [`ward_domain::natural`]) is total, so a page ends at a (site, name)
//! and the next starts after it. A device created or deleted between two
//! pages moves no other: every device that exists throughout is on exactly
//! one page, and each page is read at the store's data version like any
//! other read.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::store::Device;

/// Devices on a page when no `limit` is given.
pub const DEVICE_PAGE_DEFAULT: usize = 500;

/// The most devices on one page.
pub const DEVICE_PAGE_MAX: usize = 5_000;

/// The most devices an unpaged list answers with; a call matching more is
/// refused, naming `limit` (at 200,000 devices an unpaged answer is a
/// hundred megabytes).
pub const UNPAGED_MAX: usize = 20_000;

/// Where a page of the device list ended: its last device's site and name,
/// written as the hex of each, joined by `.` (opaque to clients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCursor {
    site: String,
    name: String,
}

impl DeviceCursor {
    /// The cursor just after `device`.
    pub fn after(device: &Device) -> Self {
        Self {
            site: device.spec.site.clone(),
            name: device.spec.name.clone(),
        }
    }

    /// `device` against the cursor's position, in the list's order.
    fn order(&self, device: &Device) -> Ordering {
        ward_domain::natural::cmp(&device.spec.site, &self.site)
            .then_with(|| ward_domain::natural::cmp(&device.spec.name, &self.name))
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

impl fmt::Display for DeviceCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", hex(&self.site), hex(&self.name))
    }
}

impl FromStr for DeviceCursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split_once('.')
            .and_then(|(site, name)| {
                Some(Self {
                    site: unhex(site)?,
                    name: unhex(name)?,
                })
            })
            .ok_or_else(|| {
                format!("`{text}` is not a cursor of the device list: pass `next_cursor` as given")
            })
    }
}

/// One page of `devices` (in the list's order): at most `limit` after
/// `after`, and the cursor of the next page unless it is the last.
pub fn page(
    devices: Vec<Arc<Device>>,
    after: Option<&DeviceCursor>,
    limit: usize,
) -> (Vec<Arc<Device>>, Option<DeviceCursor>) {
    let start = after.map_or(0, |cursor| {
        devices.partition_point(|device| cursor.order(device) != Ordering::Greater)
    });
    let rest = devices.len().saturating_sub(start);
    let page: Vec<Arc<Device>> = devices.into_iter().skip(start).take(limit).collect();
    let next = (rest > limit)
        .then(|| page.last().map(|device| DeviceCursor::after(device)))
        .flatten();
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Status;

    fn device(id: i64, site: &str, name: &str) -> Arc<Device> {
        Arc::new(crate::services::test_device(id, site, name, Status::Up))
    }

    #[test]
    fn pages_follow_the_natural_order_and_end_with_no_cursor() {
        let all = vec![
            device(1, "b-2", "atm-2"),
            device(2, "b-2", "atm-10"),
            device(3, "b-10", "atm-1"),
        ];
        let (first, next) = page(all.clone(), None, 2);
        assert_eq!(first.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 2]);
        let next = next.expect("more");
        let parsed: DeviceCursor = next.to_string().parse().expect("round trip");
        assert_eq!(parsed, next);
        let (second, last) = page(all.clone(), Some(&parsed), 2);
        assert_eq!(second.iter().map(|d| d.id).collect::<Vec<_>>(), [3]);
        assert_eq!(last, None);
        // A page that ends exactly at the end says so.
        assert_eq!(page(all, None, 3).1, None);
    }

    #[test]
    fn a_cursor_whose_device_is_gone_still_finds_its_place() {
        let cursor = DeviceCursor::after(&device(9, "b-2", "atm-5"));
        let rest = vec![device(1, "b-2", "atm-2"), device(2, "b-2", "atm-10")];
        let (page, _) = page(rest, Some(&cursor), 10);
        assert_eq!(page.iter().map(|d| d.id).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_bad_cursor_is_refused() {
        for bad in ["", "zz.00", "6162", "616.62", "ff.ff"] {
            assert!(bad.parse::<DeviceCursor>().is_err(), "{bad}");
        }
    }
}
