-- Notices of events queued for delivery to their user: a row per notice
-- not yet delivered nor given up.
CREATE TABLE notices (
	event_id INTEGER PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
	due_at   INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX notices_due_at ON notices (due_at, event_id);
