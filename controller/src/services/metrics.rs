//! The controller's own counters, exported at `/metrics`: each is counted
//! where its event happens, in the service that owns it.

use std::sync::atomic::AtomicU64;

/// Controller-wide counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Status changes committed.
    pub transitions_applied: AtomicU64,
    /// Reports that were replays of applied ones.
    pub reports_replayed: AtomicU64,
    /// Transactions that committed agents' reports.
    pub report_commits: AtomicU64,
    /// Reports those transactions committed (several each under load:
    /// group commit).
    pub reports_committed: AtomicU64,
    /// Live-event subscribers that fell behind and were told to resync.
    pub event_subscribers_lagged: AtomicU64,
    /// Notifications delivered (2xx).
    pub notifications_sent: AtomicU64,
    /// Notification delivery attempts that failed.
    pub notifications_failed: AtomicU64,
    /// Notifications held back (dropped) because their device was in
    /// maintenance.
    pub notifications_held: AtomicU64,
    /// Reminders queued for open alerts nobody acknowledged.
    pub reminders_queued: AtomicU64,
    /// Alerts escalated to further receivers.
    pub escalations_queued: AtomicU64,
    /// SIGHUP reloads refused (a bad receiver or route, an unreadable
    /// file): the configuration in force stayed.
    pub config_reloads_refused: AtomicU64,
    /// Held alerts released when their maintenance ended (their `firing`
    /// queued).
    pub held_alerts_released: AtomicU64,
    /// Alert changes of flapping devices whose notification was withheld
    /// (their settled status is sent once they are stable).
    pub notifications_withheld: AtomicU64,
    /// Flapping devices that settled (their `settled` queued).
    pub flapping_settled: AtomicU64,
    /// Report entries ignored (stale, unknown device, no change, not the
    /// owner).
    pub transitions_ignored: AtomicU64,
    /// Of those, reported by an agent that does not own the device.
    pub transitions_not_owner: AtomicU64,
    /// Devices given to another agent of their site (lost owner,
    /// rebalance).
    pub device_owner_changes: AtomicU64,
    /// Statistics entries for devices the store does not know.
    pub statistics_ignored: AtomicU64,
    /// Report entries refused on an agent link (not assigned, unknown,
    /// malformed).
    pub report_entries_rejected: AtomicU64,
    /// Traces of failed devices received from agents.
    pub traces_received: AtomicU64,
    /// Of those, traces that found no open alert of their devices to
    /// attach to (kept as the devices' last trace all the same).
    pub traces_without_alert: AtomicU64,
    /// Sites whose devices were made `unknown` because no agent was
    /// connected for the grace period.
    pub sites_marked_unknown: AtomicU64,
    /// Work after a commit that failed (reading changed devices back for
    /// live events); the write itself stood, subscribers were told to
    /// resync.
    pub post_commit_failures: AtomicU64,
    /// Offline sites whose `unknown` could not be committed (tried again
    /// at the next sweep).
    pub offline_sweep_failures: AtomicU64,
    /// gRPC connections whose TLS handshake failed (a refused or missing
    /// certificate, a client that gave up).
    pub grpc_handshake_failures: AtomicU64,
    /// HTTPS connections whose TLS handshake failed.
    pub https_handshake_failures: AtomicU64,
    /// Requests refused for want of a principal or a role (audited).
    pub access_refused: AtomicU64,
    /// REST latency per route.
    pub api_latency: super::latency::ApiLatency,
    /// Reads of the device list served from the list held in memory.
    pub device_list_held: AtomicU64,
    /// Reads that patched the list held with what changed since.
    pub device_list_patched: AtomicU64,
    /// Reads that loaded the whole list (the first, or another database).
    pub device_list_loaded: AtomicU64,
}

impl Metrics {
    /// Every counter with its Prometheus name and help, as `/metrics`
    /// exports it.
    pub fn exported(&self) -> [(&'static str, &'static str, &AtomicU64); 30] {
        [
            (
                "ward_device_list_held_total",
                "Device list reads served from the list held in memory (no commit since).",
                &self.device_list_held,
            ),
            (
                "ward_device_list_patched_total",
                "Device list reads that patched the list held with the devices written since.",
                &self.device_list_patched,
            ),
            (
                "ward_device_list_loaded_total",
                "Device list reads that loaded the whole list.",
                &self.device_list_loaded,
            ),
            (
                "ward_transitions_applied_total",
                "Status changes committed.",
                &self.transitions_applied,
            ),
            (
                "ward_transitions_ignored_total",
                "Reported transitions ignored (stale, unknown, unchanged, not the owner).",
                &self.transitions_ignored,
            ),
            (
                "ward_transitions_not_owner_total",
                "Reported transitions ignored because another agent of the site owns the device.",
                &self.transitions_not_owner,
            ),
            (
                "ward_device_owner_changes_total",
                "Devices given to another agent of their site (a lost owner, a rebalance).",
                &self.device_owner_changes,
            ),
            (
                "ward_report_commits_total",
                "Transactions that committed agents' reports (several reports each while reports arrive faster than commits: group commit).",
                &self.report_commits,
            ),
            (
                "ward_reports_committed_total",
                "Agent reports those transactions committed.",
                &self.reports_committed,
            ),
            (
                "ward_reports_replayed_total",
                "Agent reports received again after being applied.",
                &self.reports_replayed,
            ),
            (
                "ward_notifications_sent_total",
                "Notifications delivered (2xx).",
                &self.notifications_sent,
            ),
            (
                "ward_notifications_failed_total",
                "Notification delivery attempts that failed (retried).",
                &self.notifications_failed,
            ),
            (
                "ward_notification_reminders_total",
                "Reminders queued for open alerts nobody acknowledged (one per route and repeat_every).",
                &self.reminders_queued,
            ),
            (
                "ward_notification_escalations_total",
                "Alerts escalated to further receivers, not acknowledged within escalate_after.",
                &self.escalations_queued,
            ),
            (
                "ward_config_reloads_refused_total",
                "SIGHUP reloads of the receivers and routes refused (the configuration in force stayed; the log names why).",
                &self.config_reloads_refused,
            ),
            (
                "ward_notifications_held_total",
                "Notifications held back because their device was in maintenance.",
                &self.notifications_held,
            ),
            (
                "ward_held_alerts_released_total",
                "Alerts whose maintenance ended while still open (their firing then sent).",
                &self.held_alerts_released,
            ),
            (
                "ward_notifications_withheld_total",
                "Alert changes of flapping devices that notified nobody (their settled status is sent).",
                &self.notifications_withheld,
            ),
            (
                "ward_flapping_settled_total",
                "Flapping devices that were stable for flap_window (their settled notification queued).",
                &self.flapping_settled,
            ),
            (
                "ward_statistics_ignored_total",
                "Probe statistics for devices the store does not know.",
                &self.statistics_ignored,
            ),
            (
                "ward_report_entries_rejected_total",
                "Agent report entries refused (device not assigned to it, unknown, malformed).",
                &self.report_entries_rejected,
            ),
            (
                "ward_traces_received_total",
                "Traces of failed devices received from agents (each kept as its devices' last trace).",
                &self.traces_received,
            ),
            (
                "ward_traces_without_alert_total",
                "Traces that found no open alert of their devices to attach to (the devices had recovered, or had none).",
                &self.traces_without_alert,
            ),
            (
                "ward_sites_marked_unknown_total",
                "Sites whose devices became unknown: no agent connected for the grace period.",
                &self.sites_marked_unknown,
            ),
            (
                "ward_offline_sweep_failures_total",
                "Offline sites whose unknown could not be committed (tried again at the next sweep).",
                &self.offline_sweep_failures,
            ),
            (
                "ward_grpc_handshake_failures_total",
                "gRPC connections whose TLS handshake failed (certificate refused by either side, no certificate, timeout).",
                &self.grpc_handshake_failures,
            ),
            (
                "ward_https_handshake_failures_total",
                "HTTPS connections (REST, dashboard) whose TLS handshake failed.",
                &self.https_handshake_failures,
            ),
            (
                "ward_access_refused_total",
                "Requests refused for want of a principal or a role (each one audited).",
                &self.access_refused,
            ),
            (
                "ward_post_commit_failures_total",
                "Work after a commit that failed (live events not sent one by one; subscribers told to resync).",
                &self.post_commit_failures,
            ),
            (
                "ward_event_subscribers_lagged_total",
                "Live-event subscribers told to resync after falling behind.",
                &self.event_subscribers_lagged,
            ),
        ]
    }
}
