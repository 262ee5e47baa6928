-- Every client certificate an agent presented, by SHA-256 fingerprint, and
-- whether it was revoked (`ward-controller agents revoke ID`): a revoked
-- certificate is refused at once and on every reconnect; a new one issued
-- with `certs agent ID` works. Rows are never deleted.
CREATE TABLE agent_certificates (
    fingerprint TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE INDEX agent_certificates_agent ON agent_certificates (agent_id);
