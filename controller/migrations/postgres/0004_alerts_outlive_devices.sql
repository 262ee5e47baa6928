-- Alerts are about a device (`DeviceDown`) or an agent (`AgentDown`: it is
-- offline, or connected but unable to probe some of its devices), and an
-- alert outlives its device: deleting a device that is down resolves its
-- alert and queues a `resolved` notification, which must still be
-- delivered after the device row is gone. So `alerts.device_id` no longer
-- references `devices` (identity ids are never reused) and may be empty,
-- the subject's name, address and site are kept on the alert (an agent
-- alert's site at opening, a device's when it is deleted), and a resolved
-- alert says why it was resolved.
ALTER TABLE alerts DROP CONSTRAINT alerts_device_id_fkey;
ALTER TABLE alerts ALTER COLUMN device_id DROP NOT NULL;
ALTER TABLE alerts ADD COLUMN alertname TEXT NOT NULL DEFAULT 'DeviceDown';
ALTER TABLE alerts ADD COLUMN agent_id TEXT;
ALTER TABLE alerts ADD COLUMN resolved_reason TEXT;
ALTER TABLE alerts ADD COLUMN device_name TEXT;
ALTER TABLE alerts ADD COLUMN address TEXT;
ALTER TABLE alerts ADD COLUMN site TEXT;
CREATE UNIQUE INDEX alerts_one_open_per_agent ON alerts (agent_id) WHERE resolved_at_ms IS NULL;
CREATE INDEX alerts_device ON alerts (device_id);
-- Only the oldest waiting notification of an (alert, channel) is due.
CREATE INDEX notification_outbox_alert ON notification_outbox (alert_id, channel, id);
