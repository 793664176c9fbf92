-- Notices of events queued for delivery to their user: a row per notice
-- not yet delivered nor given up.
CREATE TABLE notices (
	event_id bigint PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
	due_at   timestamptz NOT NULL,
	attempts integer NOT NULL DEFAULT 0
);
CREATE INDEX notices_due_at ON notices (due_at, event_id);
