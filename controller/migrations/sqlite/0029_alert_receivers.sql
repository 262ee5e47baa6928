-- Routes choose which receivers get an alert's notifications. Each
-- receiver's choice for an alert is made at its first notification and
-- kept: the alert's resolution, acknowledgement and settling go exactly
-- where its firing went, even when its labels changed since (a degraded
-- alert's severity falls back to warning as it clears).
CREATE TABLE alert_receivers (
    alert_id INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    receiver TEXT NOT NULL,
    routed INTEGER NOT NULL,
    PRIMARY KEY (alert_id, receiver)
);
