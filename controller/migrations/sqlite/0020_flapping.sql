-- Flap detection: whether the device is flapping now, when its latest
-- flapping episode began (kept after it settles, for the notification that
-- says so), and the times (Unix ms, a JSON array) of its latest outage
-- starts and ends within `flap_window`.
ALTER TABLE devices ADD COLUMN flapping BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE devices ADD COLUMN flap_started_at_ms INTEGER;
ALTER TABLE devices ADD COLUMN recent_changes TEXT NOT NULL DEFAULT '[]';
