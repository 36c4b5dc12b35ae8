-- Active expose sessions, one row per service domain (globally unique),
-- holding the JSON of the core's session. Kept in the database so every
-- server sharing it sees, renews, stops and expires the same sessions; a
-- SQLite server empties the table when it starts (a restart clears all
-- sessions there).
CREATE TABLE expose_sessions (
    domain TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    peer_id TEXT NOT NULL,
    -- The session's deadline (ms since the epoch), also in `data`: the
    -- reaper asks for the sessions due.
    deadline_ms BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX expose_sessions_peer ON expose_sessions (peer_id);
CREATE INDEX expose_sessions_deadline ON expose_sessions (account_id, deadline_ms);
-- A counter per account raised by every transaction that creates or ends
-- one of its sessions (renewals do not), so a server told that the account
-- changed reloads its sessions only when they did.
CREATE TABLE expose_versions (
    account_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
