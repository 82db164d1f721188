-- Node settings that must survive a restart (maintenance mode): one row per key, last write wins.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;
