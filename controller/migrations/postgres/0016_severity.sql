-- How much a device's outage matters: `critical`, `major` (the default),
-- `minor` or `info`; notifications carry it (webhook body, Alertmanager's
-- `severity` label). An alert keeps its device's severity when the device
-- is deleted, as it keeps its name.
ALTER TABLE devices ADD COLUMN severity TEXT NOT NULL DEFAULT 'major';
ALTER TABLE alerts ADD COLUMN severity TEXT;
