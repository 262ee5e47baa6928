-- Which controller holds each agent's link, and when it last said so, by
-- the database's clock (each controller writes its agents every second).
-- A controller's offline rule counts an agent heard here within the grace
-- period as connected, wherever its link is.
CREATE TABLE agent_presence (
    agent_id TEXT PRIMARY KEY,
    controller TEXT NOT NULL,
    heard_at_ms INTEGER NOT NULL
);
