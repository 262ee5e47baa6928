-- An operator's acknowledgement of an open alert: who, when, what they
-- said (all empty until someone takes it; withdrawn by clearing them).
ALTER TABLE alerts ADD COLUMN ack_by TEXT;
ALTER TABLE alerts ADD COLUMN ack_at_ms BIGINT;
ALTER TABLE alerts ADD COLUMN ack_comment TEXT;
