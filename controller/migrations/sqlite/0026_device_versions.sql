-- Each device row carries the data version of the commit that last wrote
-- it (NULL until that commit stamps it), and so does a deleted device's
-- tombstone (0019): a controller keeps the device list in
-- memory and reads only what changed since the version it holds
-- (services::device_table).
ALTER TABLE devices ADD COLUMN version INTEGER;
CREATE INDEX devices_unstamped ON devices (id) WHERE version IS NULL;
CREATE INDEX devices_by_version ON devices (version);
ALTER TABLE deleted_devices ADD COLUMN version INTEGER;
CREATE INDEX deleted_devices_unstamped ON deleted_devices (id) WHERE version IS NULL;
CREATE INDEX deleted_devices_by_version ON deleted_devices (version);
CREATE TRIGGER devices_touched AFTER UPDATE ON devices
  FOR EACH ROW WHEN NEW.version IS OLD.version
  BEGIN UPDATE devices SET version = NULL WHERE id = NEW.id; END;
