-- A commit stamps its status events with its data version inside the
-- section commits run one at a time in. It found them through a partial
-- index on `id` of the unstamped rows, which keeps an entry for every row
-- ever unstamped until vacuum: after a 200,000-device cold start the
-- stamp read 200,000 dead entries (19-43 ms) in every commit, which held
-- the whole fleet's commits below 50 a second. A commit now looks only at
-- the devices whose status it wrote (every event goes with its device's
-- status write): the index is keyed by device.
DROP INDEX status_events_unstamped;
CREATE INDEX status_events_unstamped_by_device ON status_events (device_id) WHERE version IS NULL;
