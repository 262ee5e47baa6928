-- One row: which cluster this database is (shared cache keys of its
-- controllers, never another deployment's) and the version of its device
-- and alert data, moved on in every transaction that changes them. A cached
-- answer is used only when it was loaded at the version read now, so no
-- controller serves an answer from before a commit made on any other.
CREATE TABLE data_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cluster TEXT NOT NULL,
    version BIGINT NOT NULL
);
INSERT INTO data_version (id, cluster, version) VALUES (1, md5(random()::text), 0);
