-- Who may do what. A user has one role (viewer < operator < admin); its
-- password (Argon2id, PHC string) is empty for users who log in through
-- LDAP or only use tokens. An API token belongs to a user and has its
-- role; only its SHA-256 digest is kept, with an optional expiry, and a
-- revoked token stays listed.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name TEXT NOT NULL REFERENCES users(name),
    label TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
);
-- Every change and every refusal: when, who (user, token, agent), from
-- where, what, the outcome, and the object before and after (JSON). Rows
-- are only ever inserted.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    principal TEXT NOT NULL,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    outcome TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
