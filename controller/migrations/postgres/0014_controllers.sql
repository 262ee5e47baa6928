-- Membership: each controller of the cluster heartbeats its row every
-- second, timed by the database's clock (rows unheard for a day go).
CREATE TABLE controllers (
    instance TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    heard_at_ms BIGINT NOT NULL
);
