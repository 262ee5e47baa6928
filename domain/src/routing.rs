//! Which receivers get an alert's notifications: routes in order, each
//! matching on the alert's site (a glob), a tag of its device, its
//! severity and its name, Alertmanager's flat route list as operators
//! know it. A matching route adds its receivers; matching goes on to the
//! next route only where the route says `continue`. Nothing is dropped for
//! want of a route: an alert that no route matches (or any alert, with no
//! routes) goes to every receiver; a last route without `match` chooses
//! where instead.

use crate::model::{Alert, AlertName};

/// Severities a route may match: a device's, and a degraded level.
pub const SEVERITIES: [&str; 5] = ["critical", "major", "minor", "info", "warning"];
/// Alert names a route may match.
pub const ALERT_NAMES: [&str; 3] = ["DeviceDown", "DeviceDegraded", "AgentDown"];

/// What routes match on: an alert's labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// `DeviceDown`, `DeviceDegraded`, `AgentDown`.
    pub alertname: String,
    /// The site.
    pub site: String,
    /// The device's tags (none for an agent).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The name of the device's parent (its site's router), if any.
    #[serde(default)]
    pub parent: Option<String>,
    /// The alert's severity as notifications say it.
    pub severity: String,
}

impl Labels {
    /// The first label no alert can have, as (key, why).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        known_alertname(&self.alertname)?;
        known_severity(&self.severity)
    }

    /// `alert`'s labels.
    pub fn of(alert: &Alert) -> Self {
        Self {
            alertname: alert.alertname.as_str().to_owned(),
            site: alert.site.clone(),
            tags: alert.tags.clone(),
            parent: alert.parent.clone(),
            severity: alert.severity_label().to_owned(),
        }
    }
}

/// A route's conditions; every one optional, all of them must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Match {
    /// The site, a glob (`*` any run of characters, `?` one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// A tag the device carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The device's parent's name, a glob (the devices behind a router).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The severity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The alert's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alertname: Option<String>,
}

impl Match {
    /// Alerts of the sites `glob` matches.
    pub fn site(glob: &str) -> Self {
        Self {
            site: Some(glob.to_owned()),
            ..Self::default()
        }
    }

    /// Alerts of devices tagged `tag`.
    pub fn tag(tag: &str) -> Self {
        Self {
            tag: Some(tag.to_owned()),
            ..Self::default()
        }
    }

    /// Whether `labels` meet every condition.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.site
            .as_deref()
            .is_none_or(|pattern| glob(pattern, &labels.site))
            && self
                .tag
                .as_deref()
                .is_none_or(|tag| labels.tags.iter().any(|t| t == tag))
            && self.parent.as_deref().is_none_or(|pattern| {
                labels
                    .parent
                    .as_deref()
                    .is_some_and(|parent| glob(pattern, parent))
            })
            && self
                .severity
                .as_deref()
                .is_none_or(|severity| severity == labels.severity)
            && self
                .alertname
                .as_deref()
                .is_none_or(|name| name == labels.alertname)
    }

    /// The first condition that can never hold, as (key, why).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(severity) = &self.severity {
            known_severity(severity)?;
        }
        if let Some(name) = &self.alertname {
            known_alertname(name)?;
        }
        Ok(())
    }
}

fn known_severity(severity: &str) -> Result<(), (&'static str, String)> {
    if SEVERITIES.contains(&severity) {
        Ok(())
    } else {
        Err((
            "severity",
            format!("`{severity}` is not one of {}", SEVERITIES.join(", ")),
        ))
    }
}

fn known_alertname(name: &str) -> Result<(), (&'static str, String)> {
    match name.parse::<AlertName>() {
        Ok(_) => Ok(()),
        Err(_) => Err((
            "alertname",
            format!("`{name}` is not one of {}", ALERT_NAMES.join(", ")),
        )),
    }
}

/// One route.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    /// What it matches.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// Who gets what it matches.
    pub receivers: Vec<String>,
    /// Whether matching goes on to the next route after this one matched.
    #[serde(rename = "continue")]
    pub keep_matching: bool,
    /// While an alert it matches is open and not acknowledged, its
    /// receivers are reminded this often (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_every_ms: Option<i64>,
    /// Who is told when such an alert is still not acknowledged this long
    /// after it opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
}

/// A route's escalation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Escalation {
    /// How long after the alert opened, ms.
    pub after_ms: i64,
    /// The receivers told then (and of the alert's end).
    pub to: Vec<String>,
}

/// What a reminder round may do for one open alert and one route that
/// matches it: remind its receivers, escalate, or both (whether either is
/// due again is the store's to say: each happens once per period across
/// every controller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chase<'a> {
    /// The route, numbered from 1.
    pub route: usize,
    /// Remind the route's receivers, if the last reminder (or the alert's
    /// opening) is older than this time, Unix ms.
    pub remind_if_before_ms: Option<i64>,
    /// Its receivers.
    pub receivers: &'a [String],
    /// Escalate to these receivers, if not done yet.
    pub escalate_to: Option<&'a [String]>,
}

/// Where an alert goes, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Routing {
    /// Its receivers, each once.
    pub receivers: Vec<String>,
    /// The routes that matched, numbered from 1 in their order; none:
    /// every receiver.
    pub matched: Vec<usize>,
}

impl Route {
    /// What `matcher` matches to `receivers`; later routes tried too when
    /// `keep_matching`.
    pub fn new<S: Into<String>>(
        matcher: Match,
        receivers: impl IntoIterator<Item = S>,
        keep_matching: bool,
    ) -> Self {
        Self {
            matcher,
            receivers: receivers.into_iter().map(Into::into).collect(),
            keep_matching,
            repeat_every_ms: None,
            escalation: None,
        }
    }

    /// The same, reminding every `repeat_every_ms`.
    pub fn repeating(mut self, repeat_every_ms: i64) -> Self {
        self.repeat_every_ms = Some(repeat_every_ms);
        self
    }

    /// The same, escalating `after_ms` after the alert opened to `to`.
    pub fn escalating<S: Into<String>>(
        mut self,
        after_ms: i64,
        to: impl IntoIterator<Item = S>,
    ) -> Self {
        self.escalation = Some(Escalation {
            after_ms,
            to: to.into_iter().map(Into::into).collect(),
        });
        self
    }
}

/// The routes, in order, over the receivers they may name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    routes: Vec<Route>,
    receivers: Vec<String>,
}

impl Routes {
    /// `routes` over `receivers` (every configured receiver, in order).
    pub fn new(routes: Vec<Route>, receivers: Vec<String>) -> Self {
        Self { routes, receivers }
    }

    /// The routes, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Who gets notifications of an alert with `labels`, each once, in the
    /// order the matching routes name them.
    pub fn receivers_for(&self, labels: &Labels) -> Vec<String> {
        self.explain(labels).receivers
    }

    /// Who gets an alert with `labels`, and why.
    pub fn explain(&self, labels: &Labels) -> Routing {
        let mut receivers: Vec<String> = Vec::new();
        let mut matched = Vec::new();
        for (index, route) in self.routes.iter().enumerate() {
            if !route.matcher.matches(labels) {
                continue;
            }
            matched.push(index + 1);
            for receiver in &route.receivers {
                if !receivers.contains(receiver) {
                    receivers.push(receiver.clone());
                }
            }
            if !route.keep_matching {
                break;
            }
        }
        if matched.is_empty() {
            receivers = self.receivers.clone();
        }
        Routing { receivers, matched }
    }

    /// Whether any route reminds or escalates.
    pub fn chases(&self) -> bool {
        self.routes
            .iter()
            .any(|route| route.repeat_every_ms.is_some() || route.escalation.is_some())
    }

    /// What is due at `now_ms` for an open alert with `labels`, opened at
    /// `opened_at_ms`, not acknowledged: for each matching route that
    /// reminds or escalates, once its first period has passed.
    pub fn chase(&self, labels: &Labels, opened_at_ms: i64, now_ms: i64) -> Vec<Chase<'_>> {
        let open_for = now_ms - opened_at_ms;
        self.explain(labels)
            .matched
            .into_iter()
            .filter_map(|number| {
                let route = &self.routes[number - 1];
                let remind_if_before_ms = route
                    .repeat_every_ms
                    .filter(|&every| open_for >= every)
                    .map(|every| now_ms - every);
                let escalate_to = route
                    .escalation
                    .as_ref()
                    .filter(|escalation| open_for >= escalation.after_ms)
                    .map(|escalation| escalation.to.as_slice());
                (remind_if_before_ms.is_some() || escalate_to.is_some()).then_some(Chase {
                    route: number,
                    remind_if_before_ms,
                    receivers: &route.receivers,
                    escalate_to,
                })
            })
            .collect()
    }

    /// Whether `receiver` gets notifications of an alert with `labels`.
    pub fn sends_to(&self, labels: &Labels, receiver: &str) -> bool {
        self.receivers_for(labels).iter().any(|r| r == receiver)
    }
}

/// Whether `text` matches `pattern`: `*` any run of characters (none
/// too), `?` exactly one, everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // The classic two-pointer match with one backtrack point: the last
    // `*` seen and the text position it was tried at.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(alertname: &str, site: &str, tags: &[&str], severity: &str) -> Labels {
        Labels {
            alertname: alertname.into(),
            site: site.into(),
            tags: tags.iter().map(|&t| t.to_owned()).collect(),
            parent: None,
            severity: severity.into(),
        }
    }

    #[test]
    fn a_route_on_the_parent_matches_the_devices_behind_it() {
        let behind_core = Match {
            parent: Some("core-rtr-*".into()),
            ..Match::default()
        };
        let mut atm = labels("DeviceDown", "north-1", &[], "major");
        assert!(!behind_core.matches(&atm), "no parent");
        atm.parent = Some("core-rtr-2".into());
        assert!(behind_core.matches(&atm));
        atm.parent = Some("branch-rtr-2".into());
        assert!(!behind_core.matches(&atm));
    }

    /// A bank's routes: the ATM vendor sees its ATMs and the region's team
    /// too (continue); the north's sites go to their team; critical pages
    /// the night shift; the rest to the NOC.
    fn bank() -> Routes {
        let every = ["north", "vendor", "night", "noc", "core"];
        Routes::new(
            vec![
                Route::new(Match::tag("atm"), ["vendor"], true),
                Route::new(Match::site("north-*"), ["north"], false),
                Route::new(
                    Match {
                        severity: Some("critical".into()),
                        alertname: Some("DeviceDown".into()),
                        ..Match::default()
                    },
                    ["night", "noc"],
                    false,
                ),
                Route::new(Match::default(), ["noc"], false),
            ],
            every.iter().map(|&r| r.to_owned()).collect(),
        )
    }

    #[test]
    fn routes_choose_receivers_in_order_and_continue_only_where_told() {
        let table: [(Labels, &[&str]); 7] = [
            // tag matches and continues; site stops.
            (
                labels("DeviceDown", "north-0421", &["atm"], "critical"),
                &["vendor", "north"],
            ),
            // tag matches, continues, then critical DeviceDown.
            (
                labels("DeviceDown", "south-7", &["atm", "lobby"], "critical"),
                &["vendor", "night", "noc"],
            ),
            // site glob; stops there (not paged to night).
            (labels("DeviceDown", "north-1", &[], "critical"), &["north"]),
            // critical but degraded, not DeviceDown: the catch-all.
            (
                labels("DeviceDegraded", "south-7", &[], "critical"),
                &["noc"],
            ),
            // the glob needs the dash.
            (labels("DeviceDown", "northwest", &[], "major"), &["noc"]),
            // an agent alert has no tags.
            (labels("AgentDown", "north-9", &[], "major"), &["north"]),
            (labels("AgentDown", "core-dc", &[], "major"), &["noc"]),
        ];
        let routes = bank();
        for (labels, expected) in table {
            assert_eq!(routes.receivers_for(&labels), expected, "{labels:?}");
            for receiver in ["north", "vendor", "night", "noc", "core"] {
                assert_eq!(
                    routes.sends_to(&labels, receiver),
                    expected.contains(&receiver),
                    "{labels:?} {receiver}"
                );
            }
        }
    }

    #[test]
    fn without_a_matching_route_every_receiver_is_told() {
        let receivers = vec!["a".to_owned(), "b".to_owned()];
        let none = Routes::new(vec![], receivers.clone());
        let alert = labels("DeviceDown", "x", &[], "major");
        assert_eq!(none.receivers_for(&alert), receivers);
        let only_atms = Routes::new(
            vec![Route::new(Match::tag("atm"), ["a"], false)],
            receivers.clone(),
        );
        assert_eq!(only_atms.receivers_for(&alert), receivers);
    }

    #[test]
    fn a_receiver_named_by_two_matching_routes_is_told_once() {
        let routes = Routes::new(
            vec![
                Route::new(Match::default(), ["a", "b"], true),
                Route::new(Match::default(), ["b", "c"], false),
            ],
            vec!["a".into(), "b".into(), "c".into()],
        );
        assert_eq!(
            routes.receivers_for(&labels("AgentDown", "s", &[], "major")),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn reminders_and_escalations_come_due_after_their_first_period() {
        const MINUTE: i64 = 60_000;
        let routes = Routes::new(
            vec![
                Route::new(Match::tag("atm"), ["vendor"], true).repeating(10 * MINUTE),
                Route::new(Match::default(), ["noc"], false)
                    .repeating(30 * MINUTE)
                    .escalating(15 * MINUTE, ["boss"]),
            ],
            vec!["vendor".into(), "noc".into(), "boss".into()],
        );
        assert!(routes.chases());
        let atm = labels("DeviceDown", "s", &["atm"], "critical");
        assert!(routes.chase(&atm, 0, 9 * MINUTE).is_empty());
        let at_ten = routes.chase(&atm, 0, 10 * MINUTE);
        assert_eq!(at_ten.len(), 1);
        assert_eq!(
            (at_ten[0].route, at_ten[0].remind_if_before_ms),
            (1, Some(0))
        );
        let at_twenty = routes.chase(&atm, 0, 20 * MINUTE);
        assert_eq!(at_twenty.len(), 2);
        assert_eq!(at_twenty[1].route, 2);
        assert_eq!(at_twenty[1].remind_if_before_ms, None, "30 min not passed");
        assert_eq!(at_twenty[1].escalate_to, Some(&["boss".to_owned()][..]));
        let router = labels("DeviceDown", "s", &[], "critical");
        let at_forty = routes.chase(&router, 0, 40 * MINUTE);
        assert_eq!(at_forty.len(), 1);
        assert_eq!(at_forty[0].remind_if_before_ms, Some(10 * MINUTE));
        assert!(!Routes::new(vec![Route::new(Match::default(), ["a"], false)], vec![]).chases());
    }

    #[test]
    fn globs_match_runs_and_single_characters() {
        for (pattern, text, expected) in [
            ("north-*", "north-0421", true),
            ("north-*", "north-", true),
            ("north-*", "north", false),
            ("*-04??", "north-0421", true),
            ("*-04??", "north-042", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("branch-0421", "branch-0421", true),
            ("branch-0421", "branch-04210", false),
            ("*a", "banana", true),
        ] {
            assert_eq!(glob(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn a_condition_that_can_never_hold_is_named() {
        let bad_severity = Match {
            severity: Some("urgent".into()),
            ..Match::default()
        };
        assert_eq!(bad_severity.check().unwrap_err().0, "severity");
        let bad_name = Match {
            alertname: Some("DeviceUp".into()),
            ..Match::default()
        };
        assert_eq!(bad_name.check().unwrap_err().0, "alertname");
        assert!(Match::default().check().is_ok());
    }
}
