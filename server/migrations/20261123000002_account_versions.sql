-- A counter per account, raised by every write transaction that changes
-- the account's objects (in the same transaction), so a server can tell
-- whether an account it decoded earlier is still current with one indexed
-- read, whichever server instance wrote last.
CREATE TABLE account_versions (
    account_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
