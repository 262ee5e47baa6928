-- Each device row carries the data version of the commit that last wrote
-- it (NULL until that commit stamps it), and so does a deleted device's
-- tombstone (0019): a controller keeps the device list in
-- memory and reads only what changed since the version it holds
-- (services::device_table).
ALTER TABLE devices ADD COLUMN version BIGINT;
CREATE INDEX devices_unstamped ON devices (id) WHERE version IS NULL;
CREATE INDEX devices_by_version ON devices (version);
ALTER TABLE deleted_devices ADD COLUMN version BIGINT;
CREATE INDEX deleted_devices_unstamped ON deleted_devices (id) WHERE version IS NULL;
CREATE INDEX deleted_devices_by_version ON deleted_devices (version);
CREATE FUNCTION devices_touched() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.version IS NOT DISTINCT FROM OLD.version THEN
    NEW.version := NULL;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER devices_touched BEFORE UPDATE ON devices
  FOR EACH ROW EXECUTE FUNCTION devices_touched();
