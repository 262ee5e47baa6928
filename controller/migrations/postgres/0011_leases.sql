-- Jobs that must run on one controller of a cluster at a time (the
-- offline sweep, Alertmanager re-sends, audit retention): the holder
-- renews its lease each round; when it stops (it died), another takes
-- the lease once it expired, by the database's clock.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
