-- twofold schema, version 1.
-- Times are INTEGER unix milliseconds, UTC. NULL means "not yet" (pending,
-- unused, never). AUTOINCREMENT where a deleted row's ID must never come
-- back: a Service that read an ID just before a replacement must not reach
-- the replacement with it.

CREATE TABLE users (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	email         TEXT    NOT NULL UNIQUE,
	password_hash TEXT    NOT NULL,
	created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE factors (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	kind         TEXT    NOT NULL,
	secret       BLOB    NOT NULL,
	last_step    INTEGER NOT NULL,
	created_at   INTEGER NOT NULL,
	confirmed_at INTEGER
) STRICT;
CREATE INDEX factors_user_id ON factors (user_id);

CREATE TABLE backup_codes (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	hash    BLOB    NOT NULL,
	used_at INTEGER
) STRICT;
CREATE INDEX backup_codes_user_id ON backup_codes (user_id);

-- id is the SHA-256 of the client's token: random, so the table is keyed on
-- it directly.
CREATE TABLE sessions (
	id           BLOB    NOT NULL PRIMARY KEY,
	user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	level        INTEGER NOT NULL,
	created_at   INTEGER NOT NULL,
	last_seen_at INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	ip           TEXT    NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- One row per throttle key: the consecutive failures since the last success.
CREATE TABLE throttles (
	subject      TEXT    NOT NULL,
	method       TEXT    NOT NULL,
	consecutive  INTEGER NOT NULL,
	last_failure INTEGER,
	PRIMARY KEY (subject, method)
) STRICT, WITHOUT ROWID;

-- One row per failure still inside some key's window; RecordFailure prunes
-- the key's older rows.
CREATE TABLE throttle_failures (
	subject TEXT    NOT NULL,
	method  TEXT    NOT NULL,
	at      INTEGER NOT NULL
) STRICT;
CREATE INDEX throttle_failures_key_at ON throttle_failures (subject, method, at);

-- Events are never deleted, so plain rowids are never reused.
CREATE TABLE events (
	id      INTEGER PRIMARY KEY,
	user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	type    TEXT    NOT NULL,
	at      INTEGER NOT NULL,
	ip      TEXT    NOT NULL,
	detail  TEXT    NOT NULL
) STRICT;
CREATE INDEX events_user_id ON events (user_id, id DESC);
