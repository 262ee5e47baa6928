-- Maintenance windows: while one is open for a device it is still probed
-- and its real status shown, but no notification is sent for it. The
-- first occurrence's instants, the time zone its local times are read in,
-- and an optional recurrence (JSON: {"every": "daily"}, {"every":
-- "weekly", "days": ["mon"]}, {"every": "monthly", "day": 15}) until an
-- optional instant. It applies to the devices listed, the devices of the
-- sites listed, and the devices carrying a tag listed (JSON arrays).
CREATE TABLE maintenance_windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    starts_at_ms BIGINT NOT NULL,
    ends_at_ms BIGINT NOT NULL,
    time_zone TEXT NOT NULL,
    recurrence TEXT,
    until_ms BIGINT,
    devices TEXT NOT NULL DEFAULT '[]',
    sites TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '[]',
    comment TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
-- A device alert whose `firing` was held back because its device was in
-- maintenance: its later notifications are held too, until the window
-- ends with the device still down (then its `firing` goes out).
ALTER TABLE alerts ADD COLUMN held BOOLEAN NOT NULL DEFAULT FALSE;
