-- Active expose sessions, one row per service domain (globally unique),
-- holding the JSON of the core's session. Servers sharing a PostgreSQL
-- database keep their sessions here, so each sees, renews, stops and
-- expires the same ones. A SQLite server (alone on its database) keeps
-- its sessions in memory and never writes these tables; they exist in both
-- stores only because the migrations are shared.
CREATE TABLE expose_sessions (
    domain TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    peer_id TEXT NOT NULL,
    -- The session's deadline (ms since the epoch), also in `data`.
    deadline_ms BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX expose_sessions_peer ON expose_sessions (peer_id);
CREATE INDEX expose_sessions_account ON expose_sessions (account_id);
-- A counter per account raised by every transaction that creates or ends
-- one of its sessions (renewals do not), so a server told that the account
-- changed reloads its sessions only when they did.
CREATE TABLE expose_versions (
    account_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
