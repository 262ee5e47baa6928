-- What the agent last reported, apart from the effective status: a device
-- whose parent is down shows `unreachable`, and returns to its reported
-- status when the parent recovers.
ALTER TABLE devices ADD COLUMN reported_status TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE devices ADD COLUMN reported_at_ms INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET reported_status = status, reported_at_ms = status_changed_at_ms;
CREATE INDEX devices_parent ON devices (parent_id);
