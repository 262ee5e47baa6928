-- The change history (`GET /api/v1/history`) is read newest first by the
-- time of the change, and pruned past `history_retention` by that time.
CREATE INDEX status_events_at ON status_events (at_ms, id);
