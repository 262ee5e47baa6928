-- Availability reports count a device only while it existed, from the
-- recorded changes: each device's creation time (backfilled from its first
-- change), a tombstone for each deleted device (its name, site and tags
-- as they were), and its changes kept after it is deleted (until
-- `history_retention`). The index finds a device's status at an instant.
ALTER TABLE devices ADD COLUMN created_at_ms BIGINT;
UPDATE devices SET created_at_ms = COALESCE(
    (SELECT MIN(e.at_ms) FROM status_events e WHERE e.device_id = devices.id),
    status_changed_at_ms);
CREATE TABLE deleted_devices (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    site TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    deleted_at_ms BIGINT NOT NULL
);
CREATE INDEX status_events_device_at ON status_events (device_id, at_ms, id);
