-- Agent groups: a site may have several agents; each device has one
-- owner among them (the agent that probes it and whose reports count),
-- moved to another agent of the site when its owner is lost. NULL: none
-- yet (its site has no agent).
ALTER TABLE devices ADD COLUMN agent TEXT;
-- Since when an agent has been heard without a gap (the database's
-- clock): a returning agent gets devices back only once it has stayed.
ALTER TABLE agent_presence ADD COLUMN online_since_ms BIGINT;
