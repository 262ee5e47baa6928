-- What answers for a device's liveness: 'icmp', 'tcp:443', 'icmp+tcp:443'
-- (ward_domain::check), and whether a TCP check's RST means alive.
ALTER TABLE devices ADD COLUMN probe_check TEXT NOT NULL DEFAULT 'icmp';
ALTER TABLE devices ADD COLUMN rst_alive INTEGER NOT NULL DEFAULT 1;
