//! `/healthz` (the process answers), `/readyz` (per component, with
//! `degraded`), `/metrics` (Prometheus text).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::agents::AgentState;
use crate::state::Controller;
use crate::store::Status;
use crate::time::rfc3339;

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when every component works (or is `off`), 200
/// `degraded` when the cache, the notifier or the time-series writer fails
/// (answers come from the store; notifications wait in the outbox;
/// statistics wait in the spool), an agent is offline or blind, a
/// certificate expires soon or the directory (LDAP) does not answer, 503 when
/// the store cannot answer.
pub async fn readyz(State(controller): State<Arc<Controller>>) -> (StatusCode, Json<Value>) {
    let store = match controller.store.ping().await {
        Ok(_) => json!({ "status": "ok" }),
        Err(error) => {
            json!({ "status": "failing", "detail": controller.store_failed(error).to_string() })
        }
    };
    let cache = match controller.cache.round_trip().await {
        Ok(()) => json!({ "status": "ok", "kind": controller.cache.kind() }),
        Err(detail) => {
            json!({ "status": "failing", "kind": controller.cache.kind(), "detail": detail })
        }
    };
    let notifier = notifier_readiness(&controller).await;
    let tsdb = match &controller.tsdb {
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
    let agents = agent_readiness(&controller).await;
    let certificates = certificate_readiness(&controller);
    let ldap = match &controller.logins.directory {
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
fn certificate_readiness(controller: &Controller) -> Value {
    let now = crate::time::now_ms();
    let expiring: Vec<Value> = controller
        .certificate_expiries()
        .into_iter()
        .filter(|(_, expires_at_ms)| expires_at_ms - now < controller.certificate_warning_ms)
        .map(|(name, expires_at_ms)| json!({ "certificate": name, "expires": rfc3339(expires_at_ms) }))
        .collect();
    if expiring.is_empty() {
        return json!({ "status": "ok" });
    }
    let days = controller.certificate_warning_ms / 86_400_000;
    json!({ "status": "failing", "expiring": expiring,
            "detail": format!("certificates expire within {days} days: re-issue them (`ward-controller certs`)") })
}

/// Registered agents by state; failing while any is offline or blind.
async fn agent_readiness(controller: &Controller) -> Value {
    let agents = match controller.agents().await {
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
    if offline.is_empty() && blind.is_empty() {
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
    json!({ "status": "failing", "online": online, "offline": offline, "blind": blind,
            "detail": detail.join("; ") })
}

/// Each configured channel's last round, and the outbox depth.
async fn notifier_readiness(controller: &Controller) -> Value {
    let failing: Vec<&str> = controller
        .notification_channels
        .iter()
        .map(String::as_str)
        .filter(|&channel| controller.notifier_failing(channel))
        .collect();
    let depth = controller.store.outbox_depth().await.ok();
    if controller.notification_channels.is_empty() {
        json!({ "status": "off", "outbox_depth": depth })
    } else if failing.is_empty() {
        json!({ "status": "ok", "channels": controller.notification_channels, "outbox_depth": depth })
    } else {
        json!({ "status": "failing", "channels": controller.notification_channels, "outbox_depth": depth,
                "detail": format!("the last delivery round to {} failed; see ward_notifications_failed_total", failing.join(" and ")) })
    }
}

/// `GET /metrics`.
pub async fn metrics(State(controller): State<Arc<Controller>>) -> String {
    let cache = controller.cache.metrics();
    let counters = [
        (
            "ward_cache_hits_total",
            "Answers served from the cache.",
            &cache.hits,
        ),
        (
            "ward_cache_misses_total",
            "Answers loaded from the store into the cache.",
            &cache.misses,
        ),
        (
            "ward_cache_invalidations_total",
            "Cached answers found older than the store's data version (a commit since), replaced.",
            &cache.invalidations,
        ),
        (
            "ward_cache_errors_total",
            "Cache backend errors and timeouts.",
            &cache.errors,
        ),
        (
            "ward_store_errors_total",
            "Status database operations that failed.",
            &controller.metrics.store_errors,
        ),
        (
            "ward_transitions_applied_total",
            "Status changes committed.",
            &controller.metrics.transitions_applied,
        ),
        (
            "ward_transitions_ignored_total",
            "Reported transitions ignored (stale, unknown, unchanged, not the owner).",
            &controller.metrics.transitions_ignored,
        ),
        (
            "ward_transitions_not_owner_total",
            "Reported transitions ignored because another agent of the site owns the device.",
            &controller.metrics.transitions_not_owner,
        ),
        (
            "ward_device_owner_changes_total",
            "Devices given to another agent of their site (a lost owner, a rebalance).",
            &controller.metrics.device_owner_changes,
        ),
        (
            "ward_reports_replayed_total",
            "Agent reports received again after being applied.",
            &controller.metrics.reports_replayed,
        ),
        (
            "ward_notifications_sent_total",
            "Notifications delivered (2xx).",
            &controller.metrics.notifications_sent,
        ),
        (
            "ward_notifications_failed_total",
            "Notification delivery attempts that failed (retried).",
            &controller.metrics.notifications_failed,
        ),
        (
            "ward_notifications_held_total",
            "Notifications held back because their device was in maintenance.",
            &controller.metrics.notifications_held,
        ),
        (
            "ward_held_alerts_released_total",
            "Alerts whose maintenance ended while still open (their firing then sent).",
            &controller.metrics.held_alerts_released,
        ),
        (
            "ward_notifications_withheld_total",
            "Alert changes of flapping devices that notified nobody (their settled status is sent).",
            &controller.metrics.notifications_withheld,
        ),
        (
            "ward_flapping_settled_total",
            "Flapping devices that were stable for flap_window (their settled notification queued).",
            &controller.metrics.flapping_settled,
        ),
        (
            "ward_statistics_ignored_total",
            "Probe statistics for devices the store does not know.",
            &controller.metrics.statistics_ignored,
        ),
        (
            "ward_report_entries_rejected_total",
            "Agent report entries refused (device not assigned to it, unknown, malformed).",
            &controller.metrics.report_entries_rejected,
        ),
        (
            "ward_sites_marked_unknown_total",
            "Sites whose devices became unknown: no agent connected for the grace period.",
            &controller.metrics.sites_marked_unknown,
        ),
        (
            "ward_offline_sweep_failures_total",
            "Offline sites whose unknown could not be committed (tried again at the next sweep).",
            &controller.metrics.offline_sweep_failures,
        ),
        (
            "ward_grpc_handshake_failures_total",
            "gRPC connections whose TLS handshake failed (certificate refused by either side, no certificate, timeout).",
            &controller.metrics.grpc_handshake_failures,
        ),
        (
            "ward_https_handshake_failures_total",
            "HTTPS connections (REST, dashboard) whose TLS handshake failed.",
            &controller.metrics.https_handshake_failures,
        ),
        (
            "ward_access_refused_total",
            "Requests refused for want of a principal or a role (each one audited).",
            &controller.metrics.access_refused,
        ),
        (
            "ward_post_commit_failures_total",
            "Work after a commit that failed (live events not sent one by one; subscribers told to resync).",
            &controller.metrics.post_commit_failures,
        ),
        (
            "ward_event_subscribers_lagged_total",
            "Live-event subscribers told to resync after falling behind.",
            &controller.metrics.event_subscribers_lagged,
        ),
    ];
    let mut text = String::new();
    for (name, help, value) in counters {
        write_metric(
            &mut text,
            name,
            "counter",
            help,
            value.load(Ordering::Relaxed),
        );
    }
    let degraded = u8::from(controller.cache.is_degraded());
    write_metric(
        &mut text,
        "ward_cache_degraded",
        "gauge",
        "1 while the cache backend is failing.",
        degraded,
    );
    match controller.agents().await {
        Ok(agents) => {
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
        }
        Err(error) => {
            controller.store_failed(error);
        }
    }
    let certificates = controller.certificate_expiries();
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
    write_device_counts(&controller, &mut text).await;
    write_readiness(&controller, &mut text).await;
    controller.api_latency.write_prometheus(&mut text);
    controller.logins.write_prometheus(&mut text);
    match controller.store.outbox_depth().await {
        Ok(depth) => write_metric(
            &mut text,
            "ward_outbox_depth",
            "gauge",
            "Notifications waiting in the outbox.",
            depth,
        ),
        Err(error) => {
            controller.store_failed(error);
        }
    }
    if let Some(tsdb) = &controller.tsdb {
        let metrics = tsdb.metrics();
        for (name, kind, help, value) in [
            (
                "ward_tsdb_rows_written_total",
                "counter",
                "Time-series rows VictoriaMetrics accepted.",
                &metrics.rows_written,
            ),
            (
                "ward_tsdb_write_errors_total",
                "counter",
                "Time-series writes that failed (retried from the spool).",
                &metrics.write_errors,
            ),
            (
                "ward_tsdb_rows_dropped_total",
                "counter",
                "Time-series rows lost: spool full, or refused as malformed.",
                &metrics.rows_dropped,
            ),
            (
                "ward_tsdb_queue_full_waits_total",
                "counter",
                "Statistics reports whose acknowledgement waited for room in the writer's queue.",
                &metrics.queue_full_waits,
            ),
            (
                "ward_tsdb_spooled_rows",
                "gauge",
                "Time-series rows waiting in the spool.",
                &metrics.spooled_rows,
            ),
            (
                "ward_tsdb_spooled_bytes",
                "gauge",
                "Bytes in the time-series spool.",
                &metrics.spooled_bytes,
            ),
        ] {
            write_metric(&mut text, name, kind, help, value.load(Ordering::Relaxed));
        }
    }
    text
}

/// `ward_devices{site,status}`: enabled devices by site and status, every
/// status of every site (zeros included, so a rule sees a site recover).
/// Read from the store, so a scrape never moves the cache's counters.
async fn write_device_counts(controller: &Controller, text: &mut String) {
    let devices = match controller.store.list_devices().await {
        Ok(devices) => devices,
        Err(error) => {
            controller.store_failed(error);
            return;
        }
    };
    let mut counts: std::collections::BTreeMap<&str, [u64; 4]> = std::collections::BTreeMap::new();
    for device in devices.iter().filter(|device| device.spec.enabled) {
        let index = STATUSES
            .iter()
            .position(|status| *status == device.status)
            .unwrap_or(3);
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

const STATUSES: [Status; 4] = [
    Status::Up,
    Status::Down,
    Status::Unreachable,
    Status::Unknown,
];

/// `ward_ready` (1 while `/readyz` answers 200) and
/// `ward_component_ok{component}` (1 while a component of `/readyz` is ok
/// or off, 0 while it is failing).
async fn write_readiness(controller: &Arc<Controller>, text: &mut String) {
    let (code, Json(ready)) = readyz(State(Arc::clone(controller))).await;
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
