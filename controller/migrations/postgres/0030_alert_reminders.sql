-- Reminders and escalations of open, unacknowledged alerts, per alert and
-- route (numbered from 1 in the configuration's order): when its
-- receivers were last reminded (the alert's opening until the first), and
-- whether it has escalated. Each is updated only when due, in the
-- transaction that queues the notification, so two controllers running
-- the same round queue it once.
CREATE TABLE alert_reminders (
    alert_id BIGINT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    route INTEGER NOT NULL,
    reminded_at_ms BIGINT NOT NULL,
    escalated BOOLEAN NOT NULL,
    PRIMARY KEY (alert_id, route)
);
