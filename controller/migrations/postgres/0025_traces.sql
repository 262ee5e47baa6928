-- The path to a device when it failed (ward_domain::trace::Trace as JSON):
-- on the alert it was traced for, and the device's last one.
ALTER TABLE alerts ADD COLUMN trace TEXT;
ALTER TABLE devices ADD COLUMN last_trace TEXT;
