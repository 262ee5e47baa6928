-- An alert outlives its device: deleting a device that is down resolves
-- its alert and queues a `resolved` notification, which must still be
-- delivered after the device row is gone. So `alerts.device_id` no longer
-- references `devices` (identity ids are never reused), the device's name,
-- address and site are kept on the alert when the device is deleted, and a
-- resolved alert says why it was resolved.
ALTER TABLE alerts DROP CONSTRAINT alerts_device_id_fkey;
ALTER TABLE alerts ADD COLUMN resolved_reason TEXT;
ALTER TABLE alerts ADD COLUMN device_name TEXT;
ALTER TABLE alerts ADD COLUMN address TEXT;
ALTER TABLE alerts ADD COLUMN site TEXT;
CREATE INDEX alerts_device ON alerts (device_id);
-- Only the oldest waiting notification of an (alert, channel) is due.
CREATE INDEX notification_outbox_alert ON notification_outbox (alert_id, channel, id);
