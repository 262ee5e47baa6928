//! When a device that answers is `degraded`: the thresholds its agent
//! judges its loss and RTT by over a window (see the agent engine's
//! `quality` module for how they are measured). A threshold of 0 is off.
//!
//! The defaults follow the stock Zabbix ICMP template: a warning above 20 %
//! loss or 150 ms (median) over 5 minutes. Zabbix has no critical level;
//! ward's is above 50 % loss (half the packets of a transaction resent:
//! card payments and voice fail) or 500 ms (interactive sessions and
//! terminal emulators time out), both over the same window. A level is
//! lowered only after 5 minutes below it.

use std::collections::HashMap;

use crate::field::FieldError;

/// A device's loss and RTT thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Thresholds {
    /// The window loss and RTT are measured over, ms.
    pub window_ms: u32,
    /// How long a device stays below a level before it is lowered, ms.
    pub clear_window_ms: u32,
    /// Loss above this, tenths of a percent, is a warning.
    pub loss_warn_permille: u16,
    /// Loss above this is critical.
    pub loss_crit_permille: u16,
    /// RTT above this, ms, is a warning.
    pub rtt_warn_ms: u32,
    /// RTT above this is critical.
    pub rtt_crit_ms: u32,
    /// Compare the window's 90th percentile instead of its median.
    pub rtt_p90: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            window_ms: 5 * 60_000,
            clear_window_ms: 5 * 60_000,
            loss_warn_permille: 200,
            loss_crit_permille: 500,
            rtt_warn_ms: 150,
            rtt_crit_ms: 500,
            rtt_p90: false,
        }
    }
}

/// The shortest window: about three report periods, so a window holds
/// enough probes to measure a loss.
pub const SHORTEST_WINDOW_MS: u32 = 10_000;

/// The longest window or clear window: a day.
pub const LONGEST_WINDOW_MS: u32 = 24 * 3_600_000;

impl Thresholds {
    /// Checks the thresholds, naming the first field that is wrong.
    pub fn validate(&self) -> Result<(), FieldError> {
        let wrong = |field: &'static str, message: String| Err(FieldError { field, message });
        let windows = [
            ("window", self.window_ms, SHORTEST_WINDOW_MS),
            ("clear_window", self.clear_window_ms, 0),
        ];
        for (field, ms, shortest) in windows {
            if !(shortest..=LONGEST_WINDOW_MS).contains(&ms) {
                return wrong(
                    field,
                    format!(
                        "must be from {}s to 24h, not {}",
                        shortest / 1000,
                        seconds(ms)
                    ),
                );
            }
        }
        for (field, permille) in [
            ("loss_warn_pct", self.loss_warn_permille),
            ("loss_crit_pct", self.loss_crit_permille),
        ] {
            if permille > 1000 {
                return wrong(
                    field,
                    format!("must be from 0 to 100, not {}", pct(permille)),
                );
            }
        }
        let ordered = |warn: u32, crit: u32| warn == 0 || crit == 0 || warn <= crit;
        if !ordered(
            self.loss_warn_permille.into(),
            self.loss_crit_permille.into(),
        ) {
            return wrong(
                "loss_crit_pct",
                format!(
                    "must be at least loss_warn_pct ({}), not {}",
                    pct(self.loss_warn_permille),
                    pct(self.loss_crit_permille)
                ),
            );
        }
        if !ordered(self.rtt_warn_ms, self.rtt_crit_ms) {
            return wrong(
                "rtt_crit_ms",
                format!(
                    "must be at least rtt_warn_ms ({}), not {}",
                    self.rtt_warn_ms, self.rtt_crit_ms
                ),
            );
        }
        Ok(())
    }
}

/// A named set of thresholds that devices and sites refer to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    /// Letters, digits, '.', '-' or '_'; unique.
    pub name: String,
    /// What it judges by.
    pub thresholds: Thresholds,
}

impl Profile {
    /// Checks the name and the thresholds, naming the first field that is
    /// wrong.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_profile_name("name", &self.name)?;
        self.thresholds.validate()
    }
}

/// Refuses a profile name other than 1 to 64 letters, digits, '.', '-' or
/// '_' (names appear in CSV files and URLs); `field` is where it was given.
pub fn check_profile_name(field: &'static str, name: &str) -> Result<(), FieldError> {
    let fine = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if fine {
        Ok(())
    } else {
        Err(FieldError {
            field,
            message: format!(
                "`{name}` is not a profile name: 1 to 64 letters, digits, '.', '-' or '_'"
            ),
        })
    }
}

/// Every profile's thresholds by name, and the profile each site defaults
/// to: what decides which thresholds judge a device.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProfileBook {
    /// Thresholds by profile name.
    pub profiles: HashMap<String, Thresholds>,
    /// A site's default profile, by site.
    pub site_defaults: HashMap<String, String>,
}

impl ProfileBook {
    /// The thresholds a device of `site` with profile `profile` is judged
    /// by: its own profile's, else its site's default profile's, else
    /// `default` (the controller's `[degraded]` table) — as a device's own
    /// interval comes before the default one.
    pub fn thresholds_for(
        &self,
        profile: Option<&str>,
        site: &str,
        default: Thresholds,
    ) -> Thresholds {
        profile
            .or_else(|| self.site_defaults.get(site).map(String::as_str))
            .and_then(|name| self.profiles.get(name))
            .copied()
            .unwrap_or(default)
    }
}

/// Tenths of a percent as a percent.
pub fn pct(permille: u16) -> f64 {
    f64::from(permille) / 10.0
}

/// A percent as tenths of one (rounded; `None` outside 0..=100).
pub fn permille(pct: f64) -> Option<u16> {
    (0.0..=100.0)
        .contains(&pct)
        .then(|| (pct * 10.0).round() as u16)
}

fn seconds(ms: u32) -> String {
    format!("{}s", f64::from(ms) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_follow_zabbix() {
        let defaults = Thresholds::default();
        assert_eq!(defaults.validate(), Ok(()));
        assert_eq!(
            (defaults.loss_warn_permille, defaults.rtt_warn_ms),
            (200, 150)
        );
        assert_eq!(defaults.window_ms, 300_000);
    }

    #[test]
    fn each_refusal_names_its_field() {
        let field = |thresholds: Thresholds| thresholds.validate().unwrap_err().field;
        let base = Thresholds::default();
        assert_eq!(
            field(Thresholds {
                window_ms: 1000,
                ..base
            }),
            "window"
        );
        assert_eq!(
            field(Thresholds {
                clear_window_ms: u32::MAX,
                ..base
            }),
            "clear_window"
        );
        assert_eq!(
            field(Thresholds {
                loss_warn_permille: 1001,
                ..base
            }),
            "loss_warn_pct"
        );
        assert_eq!(
            field(Thresholds {
                loss_crit_permille: 100,
                ..base
            }),
            "loss_crit_pct"
        );
        assert_eq!(
            field(Thresholds {
                rtt_crit_ms: 100,
                ..base
            }),
            "rtt_crit_ms"
        );
        // A threshold that is off is never out of order.
        assert_eq!(
            Thresholds {
                rtt_crit_ms: 0,
                ..base
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn a_device_profile_comes_before_its_site_default_which_comes_before_the_default() {
        let strict = Thresholds {
            loss_warn_permille: 50,
            ..Thresholds::default()
        };
        let lenient = Thresholds {
            loss_warn_permille: 400,
            ..Thresholds::default()
        };
        let book = ProfileBook {
            profiles: HashMap::from([("strict".into(), strict), ("dsl".into(), lenient)]),
            site_defaults: HashMap::from([("branch-7".into(), "dsl".into())]),
        };
        let default = Thresholds::default();
        assert_eq!(
            book.thresholds_for(Some("strict"), "branch-7", default),
            strict
        );
        assert_eq!(book.thresholds_for(None, "branch-7", default), lenient);
        assert_eq!(book.thresholds_for(None, "branch-8", default), default);
    }

    #[test]
    fn a_profile_name_is_short_and_plain() {
        assert_eq!(check_profile_name("profile", "dsl-4g_2.0"), Ok(()));
        for wrong in ["", "with space", "x".repeat(65).as_str(), "a/b"] {
            assert_eq!(
                check_profile_name("profile", wrong).unwrap_err().field,
                "profile"
            );
        }
    }

    #[test]
    fn percents_and_tenths() {
        assert_eq!(permille(20.0), Some(200));
        assert_eq!(permille(2.55), Some(26));
        assert_eq!(permille(100.5), None);
        assert_eq!(pct(305), 30.5);
    }
}
