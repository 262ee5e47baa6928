-- The store deletes a device's events with the device (PostgreSQL no longer
-- checks a foreign key per event; here the cascade stays); this index finds
-- them, and serves a device's history, newest first.
CREATE INDEX status_events_device ON status_events (device_id, id);
