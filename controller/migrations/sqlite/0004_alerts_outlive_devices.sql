-- Alerts are about a device (`DeviceDown`) or an agent (`AgentDown`: it is
-- offline, or connected but unable to probe some of its devices), and an
-- alert outlives its device: deleting a device that is down resolves its
-- alert and queues a `resolved` notification, which must still be
-- delivered after the device row is gone. So `alerts.device_id` no longer
-- references `devices` (the id is never reused: AUTOINCREMENT) and may be
-- empty, the subject's name, address and site are kept on the alert (an
-- agent alert's site at opening, a device's when it is deleted), and a
-- resolved alert says why it was resolved.
-- (The controller runs SQLite migrations with foreign keys off and checks
-- them before committing, as SQLite's ALTER TABLE documentation asks.)
CREATE TABLE alerts_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alertname TEXT NOT NULL DEFAULT 'DeviceDown',
    device_id INTEGER,
    agent_id TEXT,
    opened_at_ms INTEGER NOT NULL,
    resolved_at_ms INTEGER,
    resolved_reason TEXT,
    device_name TEXT,
    address TEXT,
    site TEXT
);
INSERT INTO alerts_new (id, device_id, opened_at_ms, resolved_at_ms)
    SELECT id, device_id, opened_at_ms, resolved_at_ms FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_new RENAME TO alerts;
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_id) WHERE resolved_at_ms IS NULL;
CREATE UNIQUE INDEX alerts_one_open_per_agent ON alerts (agent_id) WHERE resolved_at_ms IS NULL;
CREATE INDEX alerts_device ON alerts (device_id);
-- Only the oldest waiting notification of an (alert, channel) is due.
CREATE INDEX notification_outbox_alert ON notification_outbox (alert_id, channel, id);
