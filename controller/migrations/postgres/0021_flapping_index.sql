-- The flap sweep (every half second, one controller) reads only the
-- flapping devices: a partial index keeps it from scanning every device.
CREATE INDEX devices_flapping ON devices (id) WHERE flapping;
