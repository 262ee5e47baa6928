-- The devices a commit wrote the status of (reports, and the status
-- changes inventory changes make), one row per device, with the commit's
-- data version: written once per commit in its serialized section instead
-- of a version stamp on each device row (which wrote every index of
-- `devices` again). A controller's device list reads these with the rows
-- stamped since its version (services::device_table). Pruned by
-- `device_writes_kept`: the table holds every write of the versions after
-- `after`; a list older than that loads the whole list again.
CREATE TABLE device_writes (
    version BIGINT NOT NULL,
    device_id BIGINT NOT NULL
);
CREATE INDEX device_writes_by_version ON device_writes (version);
CREATE TABLE device_writes_kept (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    after BIGINT NOT NULL
);
INSERT INTO device_writes_kept (id, after) VALUES (1, 0);
-- A write of the configuration, the owner or the last trace still leaves
-- the row unstamped (0026) for its commit to stamp; a status write no
-- longer does (its commit lists it in device_writes). Keep this column list
-- and the status columns in `store::device_writes` covering every column.
DROP TRIGGER devices_touched ON devices;
CREATE TRIGGER devices_touched BEFORE UPDATE OF name, address, site, parent_id,
    interval_ms, timeout_ms, down_after, up_after, tags, enabled, severity,
    profile, probe_check, rst_alive, agent, last_trace, created_at_ms ON devices
  FOR EACH ROW EXECUTE FUNCTION devices_touched();
