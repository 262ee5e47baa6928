-- Dashboard sessions: the cookie's secret is kept only as its SHA-256
-- digest. A session carries the role its user had at login (an LDAP user's
-- role comes from its groups and is not kept anywhere else); a local
-- user's session also follows its user (disabled: refused). `csrf` must
-- come back in the X-Ward-CSRF header of every change made with the cookie.
CREATE TABLE sessions (
    digest TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    origin TEXT NOT NULL CHECK (origin IN ('local', 'ldap')),
    csrf TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER
);
CREATE INDEX sessions_expiry ON sessions (expires_at_ms);
-- A login name locked out after too many wrong passwords, until when.
CREATE TABLE login_lockouts (
    name TEXT PRIMARY KEY,
    until_ms INTEGER NOT NULL
);
-- Failed logins are counted from the audit log, by login name.
CREATE INDEX audit_log_action_object ON audit_log (action, object, at_ms);
