-- One row per stored resource, kept as the JSON of its core model type.
-- The same SQL runs on SQLite and PostgreSQL.
CREATE TABLE objects (
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, id)
);

-- Hashes of secrets (personal access tokens, setup keys) -> the owning row,
-- so a presented secret is found with one indexed lookup.
CREATE TABLE secrets (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    account_id TEXT NOT NULL,
    id TEXT NOT NULL
);
CREATE INDEX secrets_owner ON secrets (account_id, kind, id);

-- The audit log, numbered per account in commit order.
CREATE TABLE events (
    account_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (account_id, seq)
);
