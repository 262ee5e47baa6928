-- ward status database, PostgreSQL. Times are Unix epoch milliseconds.
CREATE TABLE sites (
    name TEXT PRIMARY KEY
);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL REFERENCES sites(name),
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE devices (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    site TEXT NOT NULL REFERENCES sites(name),
    parent_id BIGINT REFERENCES devices(id) ON DELETE SET NULL,
    interval_ms INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    down_after INTEGER NOT NULL,
    up_after INTEGER NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    status TEXT NOT NULL DEFAULT 'unknown',
    down_since_ms BIGINT,
    status_changed_at_ms BIGINT NOT NULL,
    last_rtt_us INTEGER,
    UNIQUE (site, name)
);

CREATE TABLE alerts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    opened_at_ms BIGINT NOT NULL,
    resolved_at_ms BIGINT
);
-- At most one open alert per device.
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_id) WHERE resolved_at_ms IS NULL;

CREATE TABLE status_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    previous TEXT NOT NULL,
    status TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    agent_id TEXT NOT NULL,
    reason TEXT NOT NULL
);

-- Every applied report, so a replay is applied once.
CREATE TABLE applied_reports (
    agent_id TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    applied_at_ms BIGINT NOT NULL,
    PRIMARY KEY (agent_id, boot_id, seq)
);

CREATE TABLE notification_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id BIGINT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    last_error TEXT
);
