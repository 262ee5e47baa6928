//! The `[degraded]` table: the thresholds every device is judged by
//! (see `ward_domain::quality`), each key optional over the defaults.

use std::time::Duration;

use serde::Deserialize;
use ward_domain::quality::{Thresholds, permille};
use ward_settings::ConfigError;

/// `[degraded]`: `window = "5m"`, `clear_window = "5m"`,
/// `loss_warn_pct = 20`, `loss_crit_pct = 50`, `rtt_warn_ms = 150`,
/// `rtt_crit_ms = 500`, `rtt_percentile = 50` (or 90). A threshold of 0 is
/// off.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DegradedTable {
    #[serde(default, with = "ward_settings::duration")]
    window: Option<Duration>,
    #[serde(default, with = "ward_settings::duration")]
    clear_window: Option<Duration>,
    loss_warn_pct: Option<f64>,
    loss_crit_pct: Option<f64>,
    rtt_warn_ms: Option<u32>,
    rtt_crit_ms: Option<u32>,
    rtt_percentile: Option<u8>,
}

impl DegradedTable {
    /// The `[degraded]` table of the overrides, else of the file, else the
    /// defaults.
    pub fn resolve(
        overrides: Option<&Self>,
        file: Option<&Self>,
    ) -> Result<Thresholds, ConfigError> {
        overrides
            .or(file)
            .map_or(Ok(Thresholds::default()), Self::thresholds)
    }

    /// The thresholds, over the defaults; a wrong key is named.
    pub fn thresholds(&self) -> Result<Thresholds, ConfigError> {
        let defaults = Thresholds::default();
        let ms = |duration: Option<Duration>, default: u32| {
            duration.map_or(default, |d| {
                u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
            })
        };
        let loss = |key: &'static str, pct: Option<f64>, default: u16| match pct {
            None => Ok(default),
            Some(pct) => permille(pct).ok_or_else(|| ConfigError::Invalid {
                key,
                message: format!("must be a percent from 0 to 100, not {pct}"),
            }),
        };
        let rtt_p90 = match self.rtt_percentile {
            None | Some(50) => false,
            Some(90) => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "degraded.rtt_percentile",
                    message: format!("must be 50 (the median) or 90, not {other}"),
                });
            }
        };
        let thresholds = Thresholds {
            window_ms: ms(self.window, defaults.window_ms),
            clear_window_ms: ms(self.clear_window, defaults.clear_window_ms),
            loss_warn_permille: loss(
                "degraded.loss_warn_pct",
                self.loss_warn_pct,
                defaults.loss_warn_permille,
            )?,
            loss_crit_permille: loss(
                "degraded.loss_crit_pct",
                self.loss_crit_pct,
                defaults.loss_crit_permille,
            )?,
            rtt_warn_ms: self.rtt_warn_ms.unwrap_or(defaults.rtt_warn_ms),
            rtt_crit_ms: self.rtt_crit_ms.unwrap_or(defaults.rtt_crit_ms),
            rtt_p90,
        };
        thresholds
            .validate()
            .map_err(|error| ConfigError::Invalid {
                key: match error.field {
                    "window" => "degraded.window",
                    "clear_window" => "degraded.clear_window",
                    "loss_warn_pct" => "degraded.loss_warn_pct",
                    "loss_crit_pct" => "degraded.loss_crit_pct",
                    _ => "degraded.rtt_crit_ms",
                },
                message: error.message,
            })?;
        Ok(thresholds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Thresholds, ConfigError> {
        let file = super::super::FileConfig::parse(&format!("[degraded]\n{text}"), "ward.toml")
            .expect("the table parses");
        file.degraded.unwrap_or_default().thresholds()
    }

    #[test]
    fn keys_over_the_defaults() {
        assert_eq!(parsed("").unwrap(), Thresholds::default());
        let thresholds =
            parsed("window = \"30s\"\nloss_warn_pct = 12.5\nrtt_percentile = 90\n").unwrap();
        assert_eq!(thresholds.window_ms, 30_000);
        assert_eq!(thresholds.loss_warn_permille, 125);
        assert!(thresholds.rtt_p90);
        assert_eq!(thresholds.rtt_warn_ms, 150);
    }

    #[test]
    fn a_wrong_key_is_named() {
        let key = |text: &str| match parsed(text) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key("window = \"1s\"\n"), "degraded.window");
        assert_eq!(key("loss_warn_pct = 120\n"), "degraded.loss_warn_pct");
        assert_eq!(key("loss_crit_pct = 10\n"), "degraded.loss_crit_pct");
        assert_eq!(key("rtt_warn_ms = 900\n"), "degraded.rtt_crit_ms");
        assert_eq!(key("rtt_percentile = 75\n"), "degraded.rtt_percentile");
    }
}
