package mfatest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
)

// A change is a Store method that stores its event in the change's write.
type change struct {
	name string
	typ  mfa.EventType
	// apply makes the change to u, recording e, and returns the error of
	// the change's call; a change not made is an error.
	apply func(t *testing.T, s mfa.Store, u *mfa.User, e *mfa.Event) error
	// made reports whether the change to u is in the store.
	made func(t *testing.T, s mfa.Store, u *mfa.User) bool
	// refuse, when not nil, tries the change to u in ways that are not
	// made, recording e, and fails t unless each is refused.
	refuse func(t *testing.T, s mfa.Store, u *mfa.User, e *mfa.Event)
}

const newHash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3LWhhc2g"

var changes = []change{
	{
		name: "ConfirmFactor", typ: mfa.EventTwoFactorEnabled,
		apply: func(t *testing.T, s mfa.Store, u *mfa.User, e *mfa.Event) error {
			f := savePending(t, s, u.ID, "secret", base)
			return s.ConfirmFactor(t.Context(), f.ID, base, 7, newCodes("c", 3), e)
		},
		made: func(t *testing.T, s mfa.Store, u *mfa.User) bool {
			fs, err := s.Factors(t.Context(), u.ID)
			if err != nil {
				t.Fatal(err)
			}
			return len(fs) == 1 && fs[0].Confirmed() && len(codeHashes(t, s, u.ID)) == 3
		},
		refuse: func(t *testing.T, s mfa.Store, u *mfa.User, e *mfa.Event) {
			f := confirmed(t, s, u.ID, "secret", 7)
			for _, id := range []int64{f.ID + 1000, f.ID} { // missing; confirmed already
				if err := s.ConfirmFactor(t.Context(), id, base, 8, newCodes("c", 3), e); !errors.Is(err, mfa.ErrNotFound) {
					t.Errorf("ConfirmFactor(%d): got %v, want ErrNotFound", id, err)
				}
			}
		},
	},
	{
		name: "DeleteFactors", typ: mfa.EventTwoFactorDisabled,
		apply: func(t *testing.T, s mfa.Store, u *mfa.User, e *mfa.Event) error {
			confirmed(t, s, u.ID, "secret", 7)
			if err := s.ReplaceBackupCodes(t.Context(), u.ID, newCodes("c", 3), nil); err != nil {
				t.Fatal(err)
			}
			return s.DeleteFactors(t.Context(), u.ID, e)
		},
		made: func(t *testing.T, s mfa.Store, u *mfa.User) bool {
			return len(factorIDs(t, s, u.ID)) == 0 && len(codeHashes(t, s, u.ID)) == 0
		},
	},
	{
		name: "ReplaceBackupCodes", typ: mfa.EventBackupCodesRegenerated,
		apply: func(t *testing.T, s mfa.Store, u *mfa.User, e *mfa.Event) error {
			return s.ReplaceBackupCodes(t.Context(), u.ID, newCodes("c", 3), e)
		},
		made: func(t *testing.T, s mfa.Store, u *mfa.User) bool {
			return len(codeHashes(t, s, u.ID)) == 3
		},
		refuse: func(t *testing.T, s mfa.Store, u *mfa.User, e *mfa.Event) {
			// Codes reference their user, as events do.
			missing := u.ID + 1000
			for _, e := range []*mfa.Event{nil, e} {
				if err := s.ReplaceBackupCodes(t.Context(), missing, newCodes("c", 3), e); !errors.Is(err, mfa.ErrNotFound) {
					t.Errorf("ReplaceBackupCodes(%d) of a missing user, event %v: got %v, want ErrNotFound", missing, e != nil, err)
				}
			}
			if hs := codeHashes(t, s, missing); len(hs) != 0 {
				t.Errorf("ReplaceBackupCodes of a missing user: got %d codes, want none", len(hs))
			}
		},
	},
	{
		name: "ReplaceBackupCodesIf", typ: mfa.EventBackupCodesRegenerated,
		apply: func(t *testing.T, s mfa.Store, u *mfa.User, e *mfa.Event) error {
			ok, err := s.ReplaceBackupCodesIf(t.Context(), u.ID, 0, newCodes("c", 3), e)
			if err == nil && !ok {
				err = errors.New("not replaced")
			}
			return err
		},
		made: func(t *testing.T, s mfa.Store, u *mfa.User) bool {
			return len(codeHashes(t, s, u.ID)) == 3
		},
		refuse: func(t *testing.T, s mfa.Store, u *mfa.User, e *mfa.Event) {
			// A set stored since the newest code the call names.
			if err := s.ReplaceBackupCodes(t.Context(), u.ID, newCodes("since", 2), nil); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.ReplaceBackupCodesIf(t.Context(), u.ID, 0, newCodes("c", 3), e); ok || err != nil {
				t.Errorf("ReplaceBackupCodesIf over a set stored since: got %v, %v, want false, nil", ok, err)
			}
			if hs := codeHashes(t, s, u.ID); len(hs) != 2 {
				t.Errorf("codes after the refused replacement: got %d, want the 2 stored since", len(hs))
			}
		},
	},
	{
		name: "ReplacePasswordHash", typ: mfa.EventPasswordChanged,
		apply: func(t *testing.T, s mfa.Store, u *mfa.User, e *mfa.Event) error {
			ok, err := s.ReplacePasswordHash(t.Context(), u.ID, u.PasswordHash, newHash, e)
			if err == nil && !ok {
				err = errors.New("not swapped")
			}
			return err
		},
		made: func(t *testing.T, s mfa.Store, u *mfa.User) bool {
			got, err := s.UserByID(t.Context(), u.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got.PasswordHash == newHash
		},
		refuse: func(t *testing.T, s mfa.Store, u *mfa.User, e *mfa.Event) {
			for _, id := range []int64{u.ID, u.ID + 1000} { // a stale hash; a missing user
				if ok, err := s.ReplacePasswordHash(t.Context(), id, "$argon2id$stale", newHash, e); ok || err != nil {
					t.Errorf("ReplacePasswordHash(%d) over a stale hash: got %v, %v, want false, nil", id, ok, err)
				}
			}
		},
	},
}

// testChangeEvents checks that each change stores the event it is given
// with it: the event is listed, with its ID set, and its notice queued when
// Notify is set; a nil event stores none; a change not made stores none.
// And that a change and its event are one write: an event that cannot be
// stored (its user does not exist) fails the change with mfa.ErrNotFound,
// and the change is not made.
func testChangeEvents(t *testing.T, newStore func(t *testing.T) mfa.Store) {
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			event := func(u *mfa.User, notify bool) *mfa.Event {
				return &mfa.Event{UserID: u.ID, Type: c.typ, At: base, IP: "192.0.2.9", Detail: "détail " + u.Email, Notify: notify}
			}
			var queued []int64
			for i, notify := range []bool{true, false} {
				u := createUser(t, s, fmt.Sprintf("u%d@example.com", i))
				e := event(u, notify)
				if err := c.apply(t, s, u, e); err != nil {
					t.Fatalf("Notify %v: %s: %v", notify, c.name, err)
				}
				if !c.made(t, s, u) {
					t.Fatalf("Notify %v: the change is not made", notify)
				}
				if e.ID == 0 {
					t.Errorf("Notify %v: the event's ID is not set", notify)
				}
				evs, err := s.Events(t.Context(), u.ID, 10)
				if err != nil || len(evs) != 1 {
					t.Fatalf("Notify %v: events after the change: got %+v, %v, want the change's", notify, evs, err)
				}
				if got := evs[0]; got.ID != e.ID || got.UserID != u.ID || got.Type != e.Type || got.IP != e.IP || got.Detail != e.Detail {
					t.Errorf("Notify %v: event stored: got %+v, want %+v", notify, got, *e)
				}
				checkTime(t, "event's At", evs[0].At, e.At)
				if notify {
					queued = append(queued, e.ID)
				}
			}

			u := createUser(t, s, "nil@example.com")
			if err := c.apply(t, s, u, nil); err != nil {
				t.Fatalf("nil event: %s: %v", c.name, err)
			}
			if !c.made(t, s, u) {
				t.Error("nil event: the change is not made")
			}
			if evs, err := s.Events(t.Context(), u.ID, 10); err != nil || len(evs) != 0 {
				t.Errorf("nil event: events after the change: got %+v, %v, want none", evs, err)
			}

			if c.refuse != nil {
				u := createUser(t, s, "refused@example.com")
				e := event(u, true)
				c.refuse(t, s, u, e)
				if e.ID != 0 {
					t.Errorf("refused change: the event's ID is set to %d", e.ID)
				}
				if evs, err := s.Events(t.Context(), u.ID, 10); err != nil || len(evs) != 0 {
					t.Errorf("refused change: events: got %+v, %v, want none", evs, err)
				}
			}

			u = createUser(t, s, "orphan@example.com")
			orphan := &mfa.Event{UserID: u.ID + 1000, Type: c.typ, At: base, Notify: true}
			if err := c.apply(t, s, u, orphan); !errors.Is(err, mfa.ErrNotFound) {
				t.Errorf("%s with the event of a missing user: got %v, want ErrNotFound", c.name, err)
			}
			if c.made(t, s, u) {
				t.Errorf("%s: the change is made without its event", c.name)
			}
			checkNoEvent(t, s, "the event of a missing user", orphan)

			if got := claimIDs(t, s, base.Add(time.Minute), base.Add(time.Hour), 100); !slices.Equal(got, queued) {
				t.Errorf("notices queued: got %v, want %v (the event with Notify only)", got, queued)
			}
		})
	}
}

// checkNoEvent checks that e was not stored: its ID is not set, and its
// user has no event.
func checkNoEvent(t *testing.T, s mfa.Store, what string, e *mfa.Event) {
	t.Helper()
	if e.ID != 0 {
		t.Errorf("%s: the event's ID is set to %d", what, e.ID)
	}
	if evs, err := s.Events(t.Context(), e.UserID, 10); err != nil || len(evs) != 0 {
		t.Errorf("%s: events of user %d: got %+v, %v, want none", what, e.UserID, evs, err)
	}
}

// testOrphanEvents checks the other writes that store events: the event of
// a user who does not exist is mfa.ErrNotFound, and neither it, nor its
// notice, nor the rest of the write is stored.
func testOrphanEvents(t *testing.T, newStore func(t *testing.T) mfa.Store) {
	orphanOf := func(u *mfa.User, typ mfa.EventType) *mfa.Event {
		return &mfa.Event{UserID: u.ID + 1000, Type: typ, At: base, IP: "192.0.2.9", Notify: true}
	}
	noNotice := func(t *testing.T, s mfa.Store) {
		t.Helper()
		if got := claimIDs(t, s, base.Add(time.Minute), base.Add(time.Hour), 100); len(got) != 0 {
			t.Errorf("notices queued: got %v, want none", got)
		}
	}

	t.Run("AddEvent", func(t *testing.T) {
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		e := orphanOf(u, mfa.EventLoginFailed)
		if err := s.AddEvent(t.Context(), e); !errors.Is(err, mfa.ErrNotFound) {
			t.Errorf("AddEvent of a missing user: got %v, want ErrNotFound", err)
		}
		checkNoEvent(t, s, "AddEvent of a missing user", e)
		noNotice(t, s)
	})

	t.Run("RecordFailure", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		key := mfa.ThrottleKey{Subject: "user:orphan", Method: mfa.MethodTOTP}
		since := base.Add(-time.Hour)
		var sent []*mfa.Event
		events := func(mfa.ThrottleState) []mfa.Event {
			// The user's own event, and one of a user who does not
			// exist: neither is stored.
			own := mfa.Event{UserID: u.ID, Type: mfa.EventSecondFactorFailed, At: base}
			orphan := orphanOf(u, mfa.EventSecondFactorFailed)
			sent = append(sent, &own, orphan)
			return []mfa.Event{own, *orphan}
		}
		if _, ok, err := s.RecordFailure(ctx, key, base, since, always, events); ok || !errors.Is(err, mfa.ErrNotFound) {
			t.Errorf("RecordFailure with the event of a missing user: got %v, %v, want false, ErrNotFound", ok, err)
		}
		for _, e := range sent {
			checkNoEvent(t, s, "RecordFailure with the event of a missing user", e)
		}
		st, err := s.ThrottleState(ctx, key, since)
		if err != nil {
			t.Fatal(err)
		}
		checkThrottle(t, "after the refused RecordFailure", st, mfa.ThrottleState{})
	})

	t.Run("UpgradeSession", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		codes := newCodes("c", 1)
		if err := s.ReplaceBackupCodes(ctx, u.ID, codes, nil); err != nil {
			t.Fatal(err)
		}
		old := newSession(u.ID, 1, mfa.LevelPassword, base.Add(time.Hour))
		createSession(t, s, old)
		next := newSession(u.ID, 2, mfa.LevelFull, base.Add(time.Hour))
		e := orphanOf(u, mfa.EventLoginSucceeded)
		ok, err := s.UpgradeSession(ctx, mfa.Upgrade{Old: old.ID, Next: next, Event: e, BackupCode: codes[0].ID})
		if ok || !errors.Is(err, mfa.ErrNotFound) {
			t.Errorf("UpgradeSession with the event of a missing user: got %v, %v, want false, ErrNotFound", ok, err)
		}
		checkNoEvent(t, s, "UpgradeSession with the event of a missing user", e)
		if sessionGone(t, s, old.ID) || !sessionGone(t, s, next.ID) {
			t.Error("UpgradeSession with the event of a missing user replaced the session")
		}
		if hs := codeHashes(t, s, u.ID); len(hs) != 1 {
			t.Errorf("UpgradeSession with the event of a missing user used the backup code: %d unused, want 1", len(hs))
		}
		noNotice(t, s)
	})
}

// testMissingUser checks the writes that store a row of a user without an
// event to refuse it: a factor, a session, the session an upgrade starts.
// For a user who does not exist each is mfa.ErrNotFound, as the SQL
// stores' foreign keys make it, and stores nothing.
func testMissingUser(t *testing.T, newStore func(t *testing.T) mfa.Store) {
	t.Run("SavePendingFactor", func(t *testing.T) {
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		missing := u.ID + 1000
		f := &mfa.Factor{UserID: missing, Kind: mfa.FactorTOTP, Secret: []byte("secret"), CreatedAt: base}
		if err := s.SavePendingFactor(t.Context(), f); !errors.Is(err, mfa.ErrNotFound) {
			t.Errorf("SavePendingFactor of a missing user: got %v, want ErrNotFound", err)
		}
		if f.ID != 0 {
			t.Errorf("SavePendingFactor of a missing user: the ID is set to %d", f.ID)
		}
		if fs, err := s.FactorsAfter(t.Context(), 0, 100); err != nil || len(fs) != 0 {
			t.Errorf("factors after SavePendingFactor of a missing user: got %+v, %v, want none", fs, err)
		}
	})

	t.Run("CreateSession", func(t *testing.T) {
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		sess := newSession(u.ID+1000, 1, mfa.LevelPassword, base.Add(time.Hour))
		if err := s.CreateSession(t.Context(), sess); !errors.Is(err, mfa.ErrNotFound) {
			t.Errorf("CreateSession of a missing user: got %v, want ErrNotFound", err)
		}
		if !sessionGone(t, s, sess.ID) {
			t.Error("CreateSession of a missing user stored the session")
		}
	})

	t.Run("UpgradeSession", func(t *testing.T) {
		// A new session of a user who does not exist, without an event:
		// started, as by a password step, or replacing a session and
		// spending proofs of an existing user. Every other condition
		// holds, so that only the missing user refuses the upgrade.
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		missing := u.ID + 1000
		f := confirmed(t, s, u.ID, "s", 100)
		codes := newCodes("c", 1)
		if err := s.ReplaceBackupCodes(ctx, u.ID, codes, nil); err != nil {
			t.Fatal(err)
		}
		key := mfa.ThrottleKey{Subject: "user:u", Method: mfa.MethodTOTP}
		since := base.Add(-time.Hour)
		if _, _, err := s.RecordFailure(ctx, key, base, since, always, nil); err != nil {
			t.Fatal(err)
		}
		old := newSession(u.ID, 1, mfa.LevelPassword, base.Add(time.Hour))
		createSession(t, s, old)
		for i, up := range []mfa.Upgrade{
			{Next: newSession(missing, 2, mfa.LevelPassword, base.Add(time.Hour))},
			{Next: newSession(missing, 3, mfa.LevelPassword, base.Add(time.Hour)), Throttle: key, Since: since, Admit: always},
			{Old: old.ID, Next: newSession(missing, 4, mfa.LevelFull, base.Add(time.Hour)),
				ClaimFactor: f.ID, ClaimStep: 101, BackupCode: codes[0].ID, Throttle: key, Since: since, Admit: always},
		} {
			ok, err := s.UpgradeSession(ctx, up)
			if ok || !errors.Is(err, mfa.ErrNotFound) {
				t.Errorf("upgrade %d to a session of a missing user: got %v, %v, want false, ErrNotFound", i, ok, err)
			}
			if !sessionGone(t, s, up.Next.ID) {
				t.Errorf("upgrade %d to a session of a missing user stored the session", i)
			}
		}
		if sessionGone(t, s, old.ID) {
			t.Error("an upgrade to a session of a missing user removed the session it was to replace")
		}
		if got := factorByID(t, s, u.ID, f.ID).LastStep; got != 100 {
			t.Errorf("an upgrade to a session of a missing user claimed step %d", got)
		}
		if hs := codeHashes(t, s, u.ID); len(hs) != 1 {
			t.Errorf("an upgrade to a session of a missing user used the backup code: %d unused, want 1", len(hs))
		}
		st, err := s.ThrottleState(ctx, key, since)
		if err != nil {
			t.Fatal(err)
		}
		checkThrottle(t, "throttle after the refused upgrades", st,
			mfa.ThrottleState{Consecutive: 1, LastFailure: base, WindowCount: 1, WindowOldest: base})
	})
}
