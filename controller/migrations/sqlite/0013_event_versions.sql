-- The data version of the transaction that recorded each status event
-- (stamped just before its commit, when that transaction holds the
-- data-version row): versions follow commit order, so the event stream
-- can resume after the last version a client saw (`Last-Event-ID`).
ALTER TABLE status_events ADD COLUMN version BIGINT;
UPDATE status_events SET version = 0;
CREATE INDEX status_events_by_version ON status_events (version, id);
CREATE INDEX status_events_unstamped ON status_events (id) WHERE version IS NULL;
