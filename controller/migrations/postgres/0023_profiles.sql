-- Threshold profiles: a name and the thresholds (JSON of
-- ward_domain::quality::Thresholds) a device referring to it is judged by.
CREATE TABLE profiles (
    name TEXT PRIMARY KEY,
    thresholds TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
-- A device's own profile; NULL: its site's default, else the controller's
-- [degraded] table. A profile in use is never deleted (the API refuses).
ALTER TABLE devices ADD COLUMN profile TEXT;
-- A site's default profile for its devices without one of their own.
ALTER TABLE sites ADD COLUMN profile TEXT;
