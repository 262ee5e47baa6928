//! `/healthz` (the process answers), `/readyz` (per component, with
//! `degraded`), `/metrics` (Prometheus text).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::agents::{AgentState, Presence};
use crate::services::App;
use crate::store::{AgentRecord, Status};
use crate::time::{now_ms, rfc3339};

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when every component works (or is `off`), 200
/// `degraded` when the cache, the notifier or the time-series writer fails
/// or no notification receiver is configured
/// (answers come from the store; notifications wait in the outbox;
/// statistics wait in the spool), an agent is offline or blind, a
/// certificate expires soon or the directory (LDAP) does not answer, 503 when
/// the store cannot answer.
pub async fn readyz(State(app): State<App>) -> (StatusCode, Json<Value>) {
    let store = match app.core.store.ping().await {
        Ok(_) => json!({ "status": "ok" }),
        Err(error) => {
            json!({ "status": "failing", "detail": error.to_string() })
        }
    };
    let cache = match app.core.cache.round_trip().await {
        Ok(()) => json!({ "status": "ok", "kind": app.core.cache.kind() }),
        Err(detail) => {
            json!({ "status": "failing", "kind": app.core.cache.kind(), "detail": detail })
        }
    };
    let notifier = notifier_readiness(&app).await;
    let tsdb = match &app.reports.tsdb {
        None => json!({ "status": "off" }),
        Some(tsdb) => {
            let metrics = tsdb.metrics();
            let spooled = metrics.spooled_rows.load(Ordering::Relaxed);
            if metrics.failing.load(Ordering::Relaxed) {
                json!({ "status": "failing", "spooled_rows": spooled,
                        "detail": format!("VictoriaMetrics at {} does not take writes; rows wait in the spool", tsdb.url()) })
            } else {
                json!({ "status": "ok", "spooled_rows": spooled })
            }
        }
    };
    let agents = agent_readiness(&app).await;
    let certificates = certificate_readiness(&app);
    let ldap = match &app.guard.logins.directory {
        None => json!({ "status": "off" }),
        Some(directory) => match directory.check().await {
            Ok(()) => json!({ "status": "ok", "url": directory.url() }),
            Err(error) => json!({ "status": "failing", "url": directory.url(),
                "detail": format!("{error}; directory users cannot log in, local users can") }),
        },
    };
    let degraded = [&cache, &notifier, &tsdb, &agents, &certificates, &ldap]
        .iter()
        .any(|component| component["status"] == "failing");
    let (code, overall) = match (store["status"] == "ok", degraded) {
        (true, false) => (StatusCode::OK, "ok"),
        (true, true) => (StatusCode::OK, "degraded"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "failing"),
    };
    (
        code,
        Json(json!({
            "status": overall,
            "components": { "store": store, "cache": cache, "notifier": notifier, "tsdb": tsdb,
                            "agents": agents, "certificates": certificates, "ldap": ldap },
        })),
    )
}

/// The certificates in use; failing while any expires within the
/// warning period (or has expired).
fn certificate_readiness(app: &App) -> Value {
    let now = crate::time::now_ms();
    let expiring: Vec<Value> = app
        .guard
        .certificate_expiries()
        .into_iter()
        .filter(|(_, expires_at_ms)| expires_at_ms - now < app.guard.certificate_warning_ms)
        .map(|(name, expires_at_ms)| json!({ "certificate": name, "expires": rfc3339(expires_at_ms) }))
        .collect();
    if expiring.is_empty() {
        return json!({ "status": "ok" });
    }
    let days = app.guard.certificate_warning_ms / 86_400_000;
    json!({ "status": "failing", "expiring": expiring,
            "detail": format!("certificates expire within {days} days: re-issue them (`ward-controller certs`)") })
}

/// An agent clock further off than this, either way, turns `/readyz`
/// `degraded`.
const CLOCK_OFFSET_WARNING_MS: i64 = 2_000;

/// Registered agents by state; failing while any is offline or blind or
/// its clock is off by more than [`CLOCK_OFFSET_WARNING_MS`].
async fn agent_readiness(app: &App) -> Value {
    let agents = match app.presence.agents().await {
        Ok(agents) => agents,
        Err(error) => return json!({ "status": "failing", "detail": error.to_string() }),
    };
    let named = |state: AgentState| -> Vec<&str> {
        agents
            .iter()
            .filter(|(_, presence)| presence.state() == state)
            .map(|(agent, _)| agent.id.as_str())
            .collect()
    };
    let (offline, blind) = (named(AgentState::Offline), named(AgentState::Blind));
    let online = agents.len() - offline.len() - blind.len();
    let clocks_off: Vec<String> = agents
        .iter()
        .filter_map(|(agent, presence)| {
            let offset_ms = presence.clock_offset_ms?;
            (offset_ms.abs() > CLOCK_OFFSET_WARNING_MS).then(|| {
                let seconds = offset_ms as f64 / 1_000.0;
                format!("{} ({seconds:+.1} s)", agent.id)
            })
        })
        .collect();
    if offline.is_empty() && blind.is_empty() && clocks_off.is_empty() {
        return json!({ "status": "ok", "online": online });
    }
    let mut detail = Vec::new();
    if !offline.is_empty() {
        detail.push(format!("offline: {}", offline.join(", ")));
    }
    if !blind.is_empty() {
        detail.push(format!(
            "blind (cannot probe some of their devices): {}",
            blind.join(", ")
        ));
    }
    if !clocks_off.is_empty() {
        detail.push(format!(
            "clock off from this controller's by more than {} s (set up NTP; their reports are \
             dated in the controller's time meanwhile): {}",
            CLOCK_OFFSET_WARNING_MS / 1_000,
            clocks_off.join(", ")
        ));
    }
    json!({ "status": "failing", "online": online, "offline": offline, "blind": blind, "clocks_off": clocks_off,
            "detail": detail.join("; ") })
}

/// What `/readyz` says while no receiver is configured.
pub const NO_RECEIVER: &str = "alerts go nowhere: no receiver is configured \
     (set `webhook`, `alertmanager` or `[[receivers]]` in the configuration); they are only listed at /api/v1/alerts";

/// The receivers, and the outbox depth; failing while no receiver is
/// configured, or while one has failed every delivery for
/// `receiver_failing_after` (named, with since when).
async fn notifier_readiness(app: &App) -> Value {
    let failing = app.notifications.failing_too_long(now_ms());
    let depth = app.core.store.outbox_depth().await.ok();
    let channels = app.notifications.channels();
    if channels.is_empty() {
        // Alerts are decided and kept (the alert list, the dashboard), but
        // nobody is told: a monitoring system in that state is not ready.
        json!({ "status": "failing", "channels": [], "outbox_depth": depth,
                "detail": NO_RECEIVER })
    } else if failing.is_empty() {
        json!({ "status": "ok", "channels": channels, "outbox_depth": depth })
    } else {
        let named: Vec<String> = failing
            .iter()
            .map(|(name, since)| format!("{name} (since {})", rfc3339(*since)))
            .collect();
        json!({ "status": "failing", "channels": channels, "outbox_depth": depth,
                "detail": format!(
                    "every delivery to {} has failed: their notifications wait in the outbox, in order; \
                     see ward_notifications_total{{outcome=\"failed\"}} and the log",
                    named.join(" and ")) })
    }
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<App>) -> String {
    let mut text = String::new();
    let store = [(
        "ward_store_errors_total",
        "Status database operations that failed.",
        app.core.store.failures(),
    )];
    let counters = app.core.cache.metrics().exported();
    for (name, help, value) in store
        .into_iter()
        .chain(counters)
        .chain(app.core.metrics.exported())
    {
        write_metric(
            &mut text,
            name,
            "counter",
            help,
            value.load(Ordering::Relaxed),
        );
    }
    let degraded = u8::from(app.core.cache.is_degraded());
    write_metric(
        &mut text,
        "ward_cache_degraded",
        "gauge",
        "1 while the cache backend is failing.",
        degraded,
    );
    write_agents(&app, &mut text).await;
    write_certificates(&app, &mut text);
    write_device_counts(&app, &mut text).await;
    write_readiness(&app, &mut text).await;
    app.core.metrics.api_latency.write_prometheus(&mut text);
    app.guard.logins.write_prometheus(&mut text);
    write_outbox(&app, &mut text).await;
    app.notifications.write_prometheus(&mut text);
    write_tsdb(&app, &mut text);
    text
}

/// `ward_agents{state}`: registered agents by state.
async fn write_agents(app: &App, text: &mut String) {
    // A failed read is counted and logged by the store; the gauge is left out.
    if let Ok(agents) = app.presence.agents().await {
        let _ = writeln!(
            text,
            "# HELP ward_agents Registered agents by state (online, offline, blind: connected but unable to probe some of its devices).\n# TYPE ward_agents gauge"
        );
        for state in [AgentState::Online, AgentState::Offline, AgentState::Blind] {
            let count = agents
                .iter()
                .filter(|(_, presence)| presence.state() == state)
                .count();
            let _ = writeln!(text, "ward_agents{{state=\"{}\"}} {count}", state.as_str());
        }
        write_agent_traces(&agents, text);
        let offsets: Vec<(&str, i64)> = agents
            .iter()
            .filter_map(|(agent, presence)| Some((agent.id.as_str(), presence.clock_offset_ms?)))
            .collect();
        if !offsets.is_empty() {
            let _ = writeln!(
                text,
                "# HELP ward_agent_clock_offset_seconds How far an agent's clock is behind this controller's (negative: ahead), from its heartbeats.\n# TYPE ward_agent_clock_offset_seconds gauge"
            );
            for (agent, offset_ms) in offsets {
                let seconds = offset_ms as f64 / 1_000.0;
                let _ = writeln!(
                    text,
                    "ward_agent_clock_offset_seconds{{agent=\"{agent}\"}} {seconds}"
                );
            }
        }
    }
}

/// `ward_agent_traces_total{agent,outcome}`: each connected agent's
/// traces of failed devices, from its heartbeats: `started`, `shared` (a
/// device answered by a trace of its prefix), `skipped` (too many at once,
/// or no raw socket to trace on).
fn write_agent_traces(agents: &[(AgentRecord, Presence)], text: &mut String) {
    let _ = writeln!(
        text,
        "# HELP ward_agent_traces_total Paths to failed devices an agent traced (started), answered with a trace of the same prefix (shared) or could not trace (skipped), from its heartbeats.\n# TYPE ward_agent_traces_total counter"
    );
    for (agent, presence) in agents {
        let counters = &presence.counters;
        for (outcome, count) in [
            ("started", counters.traces_started),
            ("shared", counters.traces_shared),
            ("skipped", counters.traces_skipped),
        ] {
            let _ = writeln!(
                text,
                "ward_agent_traces_total{{agent=\"{}\",outcome=\"{outcome}\"}} {count}",
                agent.id
            );
        }
    }
}

/// `ward_certificate_expiry_seconds{certificate}`.
fn write_certificates(app: &App, text: &mut String) {
    let certificates = app.guard.certificate_expiries();
    if !certificates.is_empty() {
        let _ = writeln!(
            text,
            "# HELP ward_certificate_expiry_seconds Seconds until a certificate in use expires (the controller's; each agent's as last presented).\n# TYPE ward_certificate_expiry_seconds gauge"
        );
        let now = crate::time::now_ms();
        for (name, expires_at_ms) in &certificates {
            let seconds = (expires_at_ms - now) / 1_000;
            let _ = writeln!(
                text,
                "ward_certificate_expiry_seconds{{certificate=\"{name}\"}} {seconds}"
            );
        }
    }
}

/// `ward_outbox_depth`.
async fn write_outbox(app: &App, text: &mut String) {
    // A failed read is counted and logged by the store; the gauge is left out.
    if let Ok(depth) = app.core.store.outbox_depth().await {
        write_metric(
            text,
            "ward_outbox_depth",
            "gauge",
            "Notifications waiting in the outbox.",
            depth,
        );
    }
}

/// The time-series writer's counters, when VictoriaMetrics is configured.
fn write_tsdb(app: &App, text: &mut String) {
    if let Some(tsdb) = &app.reports.tsdb {
        for (name, kind, help, value) in tsdb.metrics().exported() {
            write_metric(text, name, kind, help, value.load(Ordering::Relaxed));
        }
    }
}

/// `ward_devices{site,status}`: enabled devices by site and status, every
/// status of every site (zeros included, so a rule sees a site recover).
/// Read from the store, so a scrape never moves the cache's counters.
async fn write_device_counts(app: &App, text: &mut String) {
    let devices = match app.core.store.list_devices().await {
        Ok(devices) => devices,
        Err(_) => return,
    };
    let mut counts: std::collections::BTreeMap<&str, [u64; STATUSES.len()]> =
        std::collections::BTreeMap::new();
    for device in devices.iter().filter(|device| device.spec.enabled) {
        let index = STATUSES
            .iter()
            .position(|status| *status == device.status)
            .unwrap_or(STATUSES.len() - 1);
        counts.entry(device.spec.site.as_str()).or_default()[index] += 1;
    }
    let _ = writeln!(
        text,
        "# HELP ward_devices Enabled devices by site and status.\n# TYPE ward_devices gauge"
    );
    for (site, by_status) in counts {
        let site = label_value(site);
        for (status, count) in STATUSES.iter().zip(by_status) {
            let _ = writeln!(
                text,
                "ward_devices{{site=\"{site}\",status=\"{}\"}} {count}",
                status.as_str()
            );
        }
    }
}

const STATUSES: [Status; 5] = [
    Status::Up,
    Status::Degraded,
    Status::Down,
    Status::Unreachable,
    Status::Unknown,
];

/// `ward_ready` (1 while `/readyz` answers 200) and
/// `ward_component_ok{component}` (1 while a component of `/readyz` is ok
/// or off, 0 while it is failing).
async fn write_readiness(app: &App, text: &mut String) {
    let (code, Json(ready)) = readyz(State(app.clone())).await;
    write_metric(
        text,
        "ward_ready",
        "gauge",
        "1 while /readyz answers 200 (the status database answers).",
        u8::from(code == StatusCode::OK),
    );
    let _ = writeln!(
        text,
        "# HELP ward_component_ok 1 while a /readyz component is ok (or off), 0 while it is failing.\n# TYPE ward_component_ok gauge"
    );
    if let Some(components) = ready["components"].as_object() {
        for (name, component) in components {
            let ok = u8::from(component["status"] != "failing");
            let _ = writeln!(text, "ward_component_ok{{component=\"{name}\"}} {ok}");
        }
    }
}

/// `text` as a Prometheus label value (backslash, quote and newline
/// escaped).
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn write_metric(
    text: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    let _ = writeln!(
        text,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}
