-- A report's events are inserted in one statement; checking the foreign key
-- to `devices` row by row cost more than the insert itself (a 10,000-device
-- outage: ~55 of ~85 ms). The store deletes a device's events with the
-- device (ids are identities, never reused), found through this index,
-- which also serves a device's history, newest first.
ALTER TABLE status_events DROP CONSTRAINT status_events_device_id_fkey;
CREATE INDEX status_events_device ON status_events (device_id, id);
-- A device's status columns change on every transition: room left on each
-- page lets PostgreSQL update the row in place (a HOT update) without
-- touching its three indexes.
ALTER TABLE devices SET (fillfactor = 70);
