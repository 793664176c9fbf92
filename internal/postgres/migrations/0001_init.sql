-- twofold schema, version 1: the same tables as the SQLite backend's.
-- Times are timestamptz, written truncated to the millisecond. NULL means
-- "not yet" (pending, unused, never). Identity columns draw from sequences,
-- which never hand out a value twice, not after a DELETE nor a TRUNCATE
-- (without RESTART IDENTITY): a Service that read an ID just before a
-- replacement must not reach the replacement with it.

CREATE TABLE users (
	id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	email         text        NOT NULL UNIQUE,
	password_hash text        NOT NULL,
	created_at    timestamptz NOT NULL
);

CREATE TABLE factors (
	id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	kind         text        NOT NULL,
	secret       bytea       NOT NULL,
	last_step    bigint      NOT NULL,
	created_at   timestamptz NOT NULL,
	confirmed_at timestamptz
);
-- (user_id, id): a user's rows come out of the index in ID order, as the
-- Store lists them, with no sort.
CREATE INDEX factors_user_id ON factors (user_id, id);

CREATE TABLE backup_codes (
	id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	hash    bytea       NOT NULL,
	used_at timestamptz
);
CREATE INDEX backup_codes_user_id ON backup_codes (user_id, id);

-- id is the SHA-256 of the client's token: random, so the table is keyed on
-- it directly.
CREATE TABLE sessions (
	id           bytea       PRIMARY KEY,
	user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	level        integer     NOT NULL,
	created_at   timestamptz NOT NULL,
	last_seen_at timestamptz NOT NULL,
	expires_at   timestamptz NOT NULL,
	ip           text        NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- One row per throttle key: the consecutive failures since the last success.
-- RecordFailure locks the key's row (an upsert) for its read-decide-write,
-- so every instance sees the others' failures.
CREATE TABLE throttles (
	subject      text        NOT NULL,
	method       text        NOT NULL,
	consecutive  integer     NOT NULL,
	last_failure timestamptz,
	PRIMARY KEY (subject, method)
);

-- One row per failure still inside some key's window; RecordFailure prunes
-- the key's older rows.
CREATE TABLE throttle_failures (
	subject text        NOT NULL,
	method  text        NOT NULL,
	at      timestamptz NOT NULL
);
CREATE INDEX throttle_failures_key_at ON throttle_failures (subject, method, at);

CREATE TABLE events (
	id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	type    text        NOT NULL,
	at      timestamptz NOT NULL,
	ip      text        NOT NULL,
	detail  text        NOT NULL
);
CREATE INDEX events_user_id ON events (user_id, id DESC);
