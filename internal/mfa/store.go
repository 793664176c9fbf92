package mfa

import (
	"context"
	"time"
)

// Upgrade is the one write of a sign-in step that succeeded, which a Store
// carries out at once: the password step starts a session, the second
// factor replaces the pending one by a full one. Fields left zero are not
// done.
type Upgrade struct {
	Old   []byte   // the pending session, which must still exist; nil for none
	Next  *Session // the session started, replacing Old
	Event *Event   // recorded, its ID set

	// PasswordHash, when set, must still be Next.UserID's password hash:
	// a sign-in whose password was checked against a hash that a password
	// change has replaced since starts no session. Against a concurrent
	// ReplacePasswordHash, either the upgrade sees the new hash, or the
	// swap waits for the upgrade, whose session the change's
	// DeleteUserSessions then ends.
	PasswordHash string

	// The proof spent: a TOTP step claimed (recorded as the factor's last
	// step, which must be older), or an unused backup code marked used at
	// Next.CreatedAt. Of concurrent upgrades spending one proof, exactly one
	// succeeds.
	ClaimFactor, ClaimStep int64
	BackupCode             int64

	// The throttle key of the attempt, when Throttle.Subject is set: the
	// upgrade happens only if Admit approves the key's state (failures
	// counted since Since), read while the store holds the key's lock, and
	// it then sets the key's consecutive failures to zero; failures in the
	// window stay counted. Admit must not call the store.
	Throttle ThrottleKey
	Since    time.Time
	Admit    func(ThrottleState) bool
}

// Store keeps everything two instances of the server must agree on. Every
// method is atomic; a change that takes an *Event stores it, with its
// notice, in the change's own write, so that no change is ever made
// without its record. An event names an existing user: a write given the
// event of a user who does not exist is ErrNotFound and stores nothing,
// neither the event nor the rest of the write. So is a write, with an
// event or without, of a factor, backup codes or a session of a user who
// does not exist (UpgradeSession's u.Next included). Otherwise a missing
// row is ErrNotFound, except where a method reports success as a bool:
// then a missing row is false and a nil error, and deleting nothing is not
// an error. A taken unique value is ErrConflict. IDs are never reused, so
// a stale ID can never name a newer row. Returned times are UTC, kept to
// the millisecond. Rules do not live here: a Store only stores, and offers
// the atomic compare-and-set steps the rules need.
type Store interface {
	CreateUser(ctx context.Context, u *User) error // sets u.ID
	UserByID(ctx context.Context, id int64) (*User, error)
	UserByEmail(ctx context.Context, email string) (*User, error)
	// SignInView returns the state of key (failures counted since since),
	// and the user with that email address and the user's factors in ID
	// order, in one read: what the password step of a sign-in needs. No
	// such user is a view without one, not an error.
	SignInView(ctx context.Context, email string, key ThrottleKey, since time.Time) (*SignInView, error)
	CountUsers(ctx context.Context) (int, error)
	// ReplacePasswordHash swaps the user's password hash if it still equals
	// old, and reports whether it did: a password changed meanwhile is
	// never overwritten by a hash of the one before. When it swaps, it
	// records e (if not nil) in the same write, as AddEvent does.
	ReplacePasswordHash(ctx context.Context, userID int64, old, new string, e *Event) (bool, error)

	// Factors returns every factor of the user, pending ones included.
	Factors(ctx context.Context, userID int64) ([]Factor, error)
	// SavePendingFactor stores f (setting f.ID), replacing any pending
	// factor of the same user; confirmed factors are untouched.
	SavePendingFactor(ctx context.Context, f *Factor) error
	// ConfirmFactor marks a pending factor confirmed at the given time, with
	// step as its last used step, removes any other factor of the user,
	// replaces the user's backup codes (setting their IDs) and records e (if
	// not nil) as AddEvent does, all at once. It returns ErrNotFound, and
	// records nothing, when the factor is gone or was already confirmed.
	ConfirmFactor(ctx context.Context, factorID int64, at time.Time, step int64, codes []BackupCode, e *Event) error
	// DeleteFactors removes every factor and backup code of the user and
	// records e (if not nil) as AddEvent does, at once.
	DeleteFactors(ctx context.Context, userID int64, e *Event) error
	// FactorsAfter lists factors with ID > afterID in ID order, at most limit.
	FactorsAfter(ctx context.Context, afterID int64, limit int) ([]Factor, error)
	// ReplaceFactorSecret swaps a factor's sealed secret if it still equals
	// old, and reports whether it did.
	ReplaceFactorSecret(ctx context.Context, factorID int64, old, new []byte) (bool, error)

	// UnusedBackupCodes returns the user's backup codes not yet used.
	UnusedBackupCodes(ctx context.Context, userID int64) ([]BackupCode, error)
	// ReplaceBackupCodes deletes the user's codes, stores codes instead and
	// records e (if not nil) as AddEvent does, at once.
	ReplaceBackupCodes(ctx context.Context, userID int64, codes []BackupCode, e *Event) error
	// ReplaceBackupCodesIf does what ReplaceBackupCodes does if none of the
	// user's unused codes has an ID above newest, and reports whether it
	// did. IDs increase, so with newest the ID of the newest unused code
	// (0 for none) read before, it refuses once a set was stored since,
	// while codes used since change nothing. Of concurrent calls with the
	// same newest, at most one replaces the codes.
	ReplaceBackupCodesIf(ctx context.Context, userID, newest int64, codes []BackupCode, e *Event) (bool, error)

	CreateSession(ctx context.Context, s *Session) error
	Session(ctx context.Context, id []byte) (*Session, error)
	// SessionView returns the session with that ID, its user and the user's
	// factors in ID order, in one read: what a request with a session
	// token needs.
	SessionView(ctx context.Context, id []byte) (*SessionView, error)
	// UpgradeSession completes a sign-in step in one write: it admits the
	// attempt against its throttle key, spends the proof (claims the step,
	// or uses the backup code), clears the key's consecutive failures,
	// replaces session u.Old (if any) by u.Next and records u.Event, at
	// once. It reports false, changing nothing, when u.Old no longer exists,
	// the proof can no longer be spent (a concurrent sign-in spent it
	// first), or Admit refuses.
	UpgradeSession(ctx context.Context, u Upgrade) (bool, error)
	TouchSession(ctx context.Context, id []byte, at time.Time) error
	DeleteSession(ctx context.Context, id []byte) error
	DeleteUserSessions(ctx context.Context, userID int64) error
	// DeleteExpiredSessions removes sessions whose ExpiresAt is before t.
	DeleteExpiredSessions(ctx context.Context, t time.Time) (int, error)

	// ThrottleState returns the key's state, counting failures since since.
	ThrottleState(ctx context.Context, key ThrottleKey, since time.Time) (ThrottleState, error)
	// RecordFailure reads the key's state (failures counted since since) and,
	// if admit approves it, records one more failure at time at, at once. It
	// returns the state after the call and whether the failure was recorded.
	// When events is not nil, it is given the state with the failure counted
	// and the events it returns are stored in the same write (their Notify
	// is ignored: no notice is queued). admit and events run while the store
	// holds its lock: they must not call the store. Failures older than
	// since may be forgotten.
	RecordFailure(ctx context.Context, key ThrottleKey, at, since time.Time, admit func(ThrottleState) bool, events func(ThrottleState) []Event) (ThrottleState, bool, error)
	// ResetThrottle sets the consecutive failure count to zero and forgets
	// one failure recorded at exactly attempt (the attempt that has just
	// succeeded, recorded beforehand as a failure); other failures stay
	// counted in their window.
	ResetThrottle(ctx context.Context, key ThrottleKey, attempt time.Time) error

	// DeleteStaleThrottles forgets failures before t, and keys whose last
	// failure is before t: for them, no record is the same as the record.
	// It returns how many keys it forgot.
	DeleteStaleThrottles(ctx context.Context, t time.Time) (int, error)

	// AddEvent stores e and sets e.ID; when e.Notify is set, it queues a
	// notice of e, due at e.At, in the same write. The event of a user who
	// does not exist is ErrNotFound, and nothing is stored.
	AddEvent(ctx context.Context, e *Event) error
	// Events returns the user's newest events first, at most limit.
	Events(ctx context.Context, userID int64, limit int) ([]Event, error)
	// CountEvents counts the user's events of the given types at or after
	// since.
	CountEvents(ctx context.Context, userID int64, types []EventType, since time.Time) (int, error)

	// ClaimNotices returns at most limit queued notices due at now, the
	// earliest due first, and makes each due again at until, counting one
	// more attempt: a claim made before until, by this instance or another,
	// gets other notices.
	ClaimNotices(ctx context.Context, now, until time.Time, limit int) ([]QueuedNotice, error)
	// RescheduleNotice makes the notice of event eventID due at at. A zero
	// at takes it off the queue: delivered, or given up. A notice no longer
	// queued is not an error.
	RescheduleNotice(ctx context.Context, eventID int64, at time.Time) error
}

// A QueuedNotice is a notice waiting for delivery: its event, the address
// of the event's user, and how many times it was claimed, this claim
// included.
type QueuedNotice struct {
	Event    Event
	Email    string
	Attempts int
}
