// Package transfer holds the contents of a twofold database in a form that
// belongs to no backend: every row of every table as the domain's types,
// and the highest ID each table has ever handed out. It is the form in
// which `twofold migrate --from/--to` moves an installation from one store
// to another: the source exports a Data, the target imports it.
//
// Times are as the stores keep them: UTC, whole milliseconds; the zero
// time stands for NULL ("not yet", "never").
package transfer

import (
	"time"

	"github.com/twofold/twofold/internal/mfa"
)

// Data is the contents of a database. Each table's rows are in the order
// of its primary key (byte order for text and blobs).
type Data struct {
	Users            []mfa.User
	Factors          []mfa.Factor
	BackupCodes      []mfa.BackupCode
	Sessions         []mfa.Session
	Throttles        []Throttle
	ThrottleFailures []Failure // by key, then time
	Events           []mfa.Event
	Notices          []Notice // by event
	Sequences        Sequences
}

// Throttle is a throttle key's row: its consecutive failures since the
// last success and the time of its last failure.
type Throttle struct {
	Key         mfa.ThrottleKey
	Consecutive int
	LastFailure time.Time // zero: none recorded
}

// Failure is one failed attempt still counted in a key's window.
type Failure struct {
	Key mfa.ThrottleKey
	At  time.Time
}

// Notice is a notice of an event queued for delivery: when it is due, and
// how many times it was claimed.
type Notice struct {
	EventID  int64
	Due      time.Time
	Attempts int
}

// Sequences are the highest IDs each table has ever handed out, at least
// the highest ID present, 0 for none. A target hands out only IDs above
// them, so an ID deleted at the source never names a new row. SQLite keeps
// no sequence for events, which are never deleted: there it is the highest
// event ID present.
type Sequences struct {
	Users, Factors, BackupCodes, Events int64
}

// Count is how many rows a table holds.
type Count struct {
	Table string
	Rows  int
}

// Counts returns the number of rows of each table, in the order an import
// copies them: a table's rows refer only to tables before it.
func (d *Data) Counts() []Count {
	return []Count{
		{"users", len(d.Users)},
		{"factors", len(d.Factors)},
		{"backup_codes", len(d.BackupCodes)},
		{"sessions", len(d.Sessions)},
		{"throttles", len(d.Throttles)},
		{"throttle_failures", len(d.ThrottleFailures)},
		{"events", len(d.Events)},
		{"notices", len(d.Notices)},
	}
}
