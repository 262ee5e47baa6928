-- Availability reports count a device only while it existed, from the
-- recorded changes: each device's creation time (backfilled from its first
-- change), a tombstone for each deleted device (its name, site and tags
-- as they were), and its changes kept after it is deleted (until
-- `history_retention`): the events table is rebuilt without its cascading
-- foreign key. The index finds a device's status at an instant.
ALTER TABLE devices ADD COLUMN created_at_ms INTEGER;
UPDATE devices SET created_at_ms = COALESCE(
    (SELECT MIN(e.at_ms) FROM status_events e WHERE e.device_id = devices.id),
    status_changed_at_ms);
CREATE TABLE deleted_devices (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    site TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    deleted_at_ms INTEGER NOT NULL
);
CREATE TABLE status_events_kept (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id INTEGER NOT NULL,
    previous TEXT NOT NULL,
    status TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    version BIGINT
);
INSERT INTO status_events_kept (id, device_id, previous, status, at_ms, agent_id, reason, version)
    SELECT id, device_id, previous, status, at_ms, agent_id, reason, version FROM status_events;
DROP TABLE status_events;
ALTER TABLE status_events_kept RENAME TO status_events;
CREATE INDEX status_events_device ON status_events (device_id, id);
CREATE INDEX status_events_by_version ON status_events (version, id);
CREATE INDEX status_events_unstamped ON status_events (id) WHERE version IS NULL;
CREATE INDEX status_events_at ON status_events (at_ms, id);
CREATE INDEX status_events_device_at ON status_events (device_id, at_ms, id);
