-- The devices a commit wrote the status of, one row per device with the
-- commit's data version (see the PostgreSQL migration of the same number);
-- the table holds every write of the versions after
-- `device_writes_kept.after`.
CREATE TABLE device_writes (
    version INTEGER NOT NULL,
    device_id INTEGER NOT NULL
);
CREATE INDEX device_writes_by_version ON device_writes (version);
CREATE TABLE device_writes_kept (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    after INTEGER NOT NULL
);
INSERT INTO device_writes_kept (id, after) VALUES (1, 0);
-- Only a write of the configuration, the owner or the last trace leaves
-- the row unstamped (0026); a status write is listed in device_writes.
DROP TRIGGER devices_touched;
CREATE TRIGGER devices_touched AFTER UPDATE OF name, address, site, parent_id,
    interval_ms, timeout_ms, down_after, up_after, tags, enabled, severity,
    profile, probe_check, rst_alive, agent, last_trace, created_at_ms ON devices
  FOR EACH ROW WHEN NEW.version IS OLD.version
  BEGIN UPDATE devices SET version = NULL WHERE id = NEW.id; END;
