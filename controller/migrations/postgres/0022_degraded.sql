-- A degraded device's level and figures, as its agent last reported them
-- (JSON: {"level":"warning","loss_permille":300,"rtt_us":160000}); NULL
-- unless the report was `degraded`. Written with reported_status.
ALTER TABLE devices ADD COLUMN degraded TEXT;
