package mfatest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
)

// TestStore is the conformance suite of mfa.Store: every backend runs it.
// newStore returns a new, empty store for each subtest; it may register
// cleanups with t.
//
// Beyond the doc comments of mfa.Store, the suite pins down what the
// Service relies on:
//   - times come back in UTC and equal to what was stored, to the millisecond;
//   - IDs are never reused, not even those of deleted rows, so an ID read
//     before a concurrent replacement never names the replacement;
//   - stores copy byte slices in and out;
//   - UpgradeSession and the Replace methods answer false, nil
//     for a row that does not exist (it was deleted concurrently);
//   - a write given the event of a user who does not exist (AddEvent,
//     RecordFailure, UpgradeSession and each change that takes an event)
//     is mfa.ErrNotFound and stores nothing: neither the event nor the rest
//     of the write;
//   - so is a write, event or none, of a row that names a user who does
//     not exist: SavePendingFactor, CreateSession, the session an
//     UpgradeSession starts, ReplaceBackupCodes' codes;
//   - TouchSession of a missing session is mfa.ErrNotFound; DeleteSession,
//     DeleteUserSessions and ResetThrottle of nothing are not errors;
//   - ConfirmFactor and ReplaceBackupCodes set the IDs of the codes passed,
//     as ReplaceBackupCodesIf does when it replaces the codes;
//     UpgradeSession and the changes given an event set its ID, and store
//     it, its notice included, only when the change is made;
//   - Factors, UnusedBackupCodes and FactorsAfter list in ID order;
//   - ThrottleState and RecordFailure count failures at or after since;
//   - a claimed notice comes with its event as stored and its user's
//     address; concurrent claims never return one notice twice.
func TestStore(t *testing.T, newStore func(t *testing.T) mfa.Store) {
	t.Run("Users", func(t *testing.T) { testUsers(t, newStore(t)) })
	t.Run("Factors", func(t *testing.T) { testFactors(t, newStore) })
	t.Run("BackupCodes", func(t *testing.T) { testBackupCodes(t, newStore) })
	t.Run("Sessions", func(t *testing.T) { testSessions(t, newStore) })
	t.Run("Throttle", func(t *testing.T) { testThrottle(t, newStore) })
	t.Run("SignInView", func(t *testing.T) { testSignInView(t, newStore(t)) })
	t.Run("Events", func(t *testing.T) { testEvents(t, newStore(t)) })
	t.Run("Notices", func(t *testing.T) { testNotices(t, newStore) })
	t.Run("ChangeEvents", func(t *testing.T) { testChangeEvents(t, newStore) })
	t.Run("OrphanEvents", func(t *testing.T) { testOrphanEvents(t, newStore) })
	t.Run("MissingUser", func(t *testing.T) { testMissingUser(t, newStore) })
}

// base is the suite's clock: not on a millisecond, and not in UTC, so that a
// store that keeps the zone or sub-millisecond digits is caught.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535_897_932, time.FixedZone("UTC+5", 5*3600))

// concurrency is how many goroutines race in the concurrent subtests.
const concurrency = 20

// checkTime reports whether got is want as a store keeps it: UTC, whole milliseconds.
func checkTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if want.IsZero() {
		if !got.IsZero() {
			t.Errorf("%s: got %v, want the zero time", what, got)
		}
		return
	}
	if got.Location() != time.UTC {
		t.Errorf("%s: got location %v, want UTC", what, got.Location())
	}
	if w := want.Truncate(time.Millisecond); !got.Truncate(time.Millisecond).Equal(w) {
		t.Errorf("%s: got %v, want %v", what, got, w.UTC())
	}
}

// race runs f in n goroutines released at once and returns how many
// returned true. Errors are reported on t.
func race(t *testing.T, n int, f func(i int) (bool, error)) int {
	t.Helper()
	var (
		wins  atomic.Int32
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			ok, err := f(i)
			if err != nil {
				errs <- err
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent call: %v", err)
	}
	return int(wins.Load())
}

func createUser(t *testing.T, s mfa.Store, email string) *mfa.User {
	t.Helper()
	u := &mfa.User{Email: email, PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", CreatedAt: base}
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return u
}

func testUsers(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	if n, err := s.CountUsers(ctx); err != nil || n != 0 {
		t.Fatalf("CountUsers of an empty store: got %d, %v, want 0, nil", n, err)
	}
	a := &mfa.User{Email: "ada@example.com", PasswordHash: "$argon2id$a", CreatedAt: base}
	if err := s.CreateUser(ctx, a); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if a.ID == 0 {
		t.Fatal("CreateUser did not set the ID")
	}
	b := &mfa.User{Email: "bob@example.com", PasswordHash: "$argon2id$b", CreatedAt: base.Add(time.Second)}
	if err := s.CreateUser(ctx, b); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if b.ID == a.ID {
		t.Fatalf("two users got the same ID %d", a.ID)
	}

	t.Run("Lookups", func(t *testing.T) {
		for _, want := range []*mfa.User{a, b} {
			byID, err := s.UserByID(ctx, want.ID)
			if err != nil {
				t.Fatalf("UserByID(%d): %v", want.ID, err)
			}
			byEmail, err := s.UserByEmail(ctx, want.Email)
			if err != nil {
				t.Fatalf("UserByEmail(%q): %v", want.Email, err)
			}
			for _, got := range []*mfa.User{byID, byEmail} {
				if got.ID != want.ID || got.Email != want.Email || got.PasswordHash != want.PasswordHash {
					t.Errorf("got user %d %q %q, want %d %q %q", got.ID, got.Email, got.PasswordHash, want.ID, want.Email, want.PasswordHash)
				}
				checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
			}
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		if _, err := s.UserByID(ctx, b.ID+1000); !errors.Is(err, mfa.ErrNotFound) {
			t.Errorf("UserByID of a missing user: got %v, want ErrNotFound", err)
		}
		for _, email := range []string{"nobody@example.com", "ADA@example.com", ""} {
			if _, err := s.UserByEmail(ctx, email); !errors.Is(err, mfa.ErrNotFound) {
				t.Errorf("UserByEmail(%q): got %v, want ErrNotFound", email, err)
			}
		}
	})

	t.Run("DuplicateEmail", func(t *testing.T) {
		dup := &mfa.User{Email: a.Email, PasswordHash: "x", CreatedAt: base}
		err := s.CreateUser(ctx, dup)
		if !errors.Is(err, mfa.ErrConflict) {
			t.Fatalf("CreateUser with a taken email: got %v, want ErrConflict", err)
		}
		if k := mfa.ErrorKind(err); k != mfa.KindConflict {
			t.Errorf("ErrorKind: got %v, want KindConflict", k)
		}
		got, err := s.UserByEmail(ctx, a.Email)
		if err != nil || got.ID != a.ID || got.PasswordHash != a.PasswordHash {
			t.Errorf("after a conflict, UserByEmail: got %+v, %v, want user %d unchanged", got, err, a.ID)
		}
	})

	t.Run("Count", func(t *testing.T) {
		if n, err := s.CountUsers(ctx); err != nil || n != 2 {
			t.Errorf("CountUsers: got %d, %v, want 2, nil", n, err)
		}
	})

	t.Run("ReplacePasswordHash", func(t *testing.T) {
		for _, tc := range []struct {
			old, new string
			want     bool
			hash     string
		}{
			{"$argon2id$x", "$argon2id$y", false, b.PasswordHash}, // not the current hash
			{b.PasswordHash, "$argon2id$b2", true, "$argon2id$b2"},
			{b.PasswordHash, "$argon2id$b3", false, "$argon2id$b2"}, // changed meanwhile
			{"$argon2id$b2", "$argon2id$b3", true, "$argon2id$b3"},
		} {
			got, err := s.ReplacePasswordHash(ctx, b.ID, tc.old, tc.new, nil)
			if err != nil || got != tc.want {
				t.Errorf("ReplacePasswordHash(%q, %q): got %v, %v, want %v, nil", tc.old, tc.new, got, err, tc.want)
			}
			u, err := s.UserByEmail(ctx, b.Email)
			if err != nil || u.PasswordHash != tc.hash || u.ID != b.ID {
				t.Errorf("after ReplacePasswordHash(%q, %q): got %+v, %v, want hash %q", tc.old, tc.new, u, err, tc.hash)
			}
		}
		if u, err := s.UserByID(ctx, a.ID); err != nil || u.PasswordHash != a.PasswordHash {
			t.Errorf("ReplacePasswordHash changed another user: got %+v, %v", u, err)
		}
		if got, err := s.ReplacePasswordHash(ctx, b.ID+1000, "$argon2id$b3", "x", nil); got || err != nil {
			t.Errorf("ReplacePasswordHash of a missing user: got %v, %v, want false, nil", got, err)
		}
		b.PasswordHash = "$argon2id$b3"
	})

	t.Run("Copies", func(t *testing.T) {
		got, err := s.UserByID(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		got.Email, got.PasswordHash = "changed@example.com", "changed"
		again, err := s.UserByID(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if again.Email != a.Email || again.PasswordHash != a.PasswordHash {
			t.Errorf("changing a returned user changed the store: got %q %q", again.Email, again.PasswordHash)
		}
	})
}

// savePending stores a pending TOTP factor with the given secret.
func savePending(t *testing.T, s mfa.Store, userID int64, secret string, created time.Time) *mfa.Factor {
	t.Helper()
	f := &mfa.Factor{UserID: userID, Kind: mfa.FactorTOTP, Secret: []byte(secret), CreatedAt: created}
	if err := s.SavePendingFactor(t.Context(), f); err != nil {
		t.Fatalf("SavePendingFactor: %v", err)
	}
	if f.ID == 0 {
		t.Fatal("SavePendingFactor did not set the ID")
	}
	return f
}

// confirmed stores a pending factor and confirms it with step, without codes.
func confirmed(t *testing.T, s mfa.Store, userID int64, secret string, step int64) *mfa.Factor {
	t.Helper()
	f := savePending(t, s, userID, secret, base)
	if err := s.ConfirmFactor(t.Context(), f.ID, base.Add(time.Minute), step, nil, nil); err != nil {
		t.Fatalf("ConfirmFactor: %v", err)
	}
	return f
}

// factorIDs returns the IDs of the user's factors.
func factorIDs(t *testing.T, s mfa.Store, userID int64) []int64 {
	t.Helper()
	fs, err := s.Factors(t.Context(), userID)
	if err != nil {
		t.Fatalf("Factors: %v", err)
	}
	ids := make([]int64, len(fs))
	for i, f := range fs {
		ids[i] = f.ID
		if f.UserID != userID {
			t.Errorf("Factors(%d) returned factor %d of user %d", userID, f.ID, f.UserID)
		}
	}
	return ids
}

func factorByID(t *testing.T, s mfa.Store, userID, id int64) *mfa.Factor {
	t.Helper()
	fs, err := s.Factors(t.Context(), userID)
	if err != nil {
		t.Fatalf("Factors: %v", err)
	}
	for i := range fs {
		if fs[i].ID == id {
			return &fs[i]
		}
	}
	t.Fatalf("factor %d of user %d not found", id, userID)
	return nil
}

// codeHashes returns the hashes of the user's unused codes.
func codeHashes(t *testing.T, s mfa.Store, userID int64) []string {
	t.Helper()
	cs, err := s.UnusedBackupCodes(t.Context(), userID)
	if err != nil {
		t.Fatalf("UnusedBackupCodes: %v", err)
	}
	hs := make([]string, len(cs))
	for i, c := range cs {
		hs[i] = string(c.Hash)
		if c.UserID != userID {
			t.Errorf("UnusedBackupCodes(%d) returned code %d of user %d", userID, c.ID, c.UserID)
		}
	}
	return hs
}

func newCodes(prefix string, n int) []mfa.BackupCode {
	cs := make([]mfa.BackupCode, n)
	for i := range cs {
		cs[i].Hash = fmt.Appendf(nil, "%s-%02d\x00\xff", prefix, i)
	}
	return cs
}

func testFactors(t *testing.T, newStore func(t *testing.T) mfa.Store) {
	t.Run("SavePending", func(t *testing.T) {
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		if ids := factorIDs(t, s, u.ID); len(ids) != 0 {
			t.Fatalf("Factors of a new user: got %v, want none", ids)
		}
		secret := []byte{0, 1, 2, 0xfe, 0xff, 'x'}
		f := &mfa.Factor{UserID: u.ID, Kind: mfa.FactorTOTP, Secret: bytes.Clone(secret), LastStep: 7, CreatedAt: base}
		if err := s.SavePendingFactor(t.Context(), f); err != nil {
			t.Fatalf("SavePendingFactor: %v", err)
		}
		f.Secret[0] = 'M' // the store must have kept its own copy
		fs, err := s.Factors(t.Context(), u.ID)
		if err != nil || len(fs) != 1 {
			t.Fatalf("Factors: got %d factors, %v, want 1", len(fs), err)
		}
		got := fs[0]
		if got.ID != f.ID || got.UserID != u.ID || got.Kind != mfa.FactorTOTP || got.LastStep != 7 || !bytes.Equal(got.Secret, secret) {
			t.Errorf("got factor %d user %d kind %q step %d secret %x, want %d %d %q 7 %x",
				got.ID, got.UserID, got.Kind, got.LastStep, got.Secret, f.ID, u.ID, mfa.FactorTOTP, secret)
		}
		checkTime(t, "CreatedAt", got.CreatedAt, base)
		checkTime(t, "ConfirmedAt", got.ConfirmedAt, time.Time{})
		if got.Confirmed() {
			t.Error("a pending factor reads as confirmed")
		}
		got.Secret[1] = 'M'
		if again := factorByID(t, s, u.ID, f.ID); !bytes.Equal(again.Secret, secret) {
			t.Errorf("changing a returned secret changed the store: got %x, want %x", again.Secret, secret)
		}
	})

	t.Run("SavePendingReplacesOnlyPending", func(t *testing.T) {
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		other := createUser(t, s, "other@example.com")
		otherPending := savePending(t, s, other.ID, "other", base)
		p1 := savePending(t, s, u.ID, "p1", base)
		p2 := savePending(t, s, u.ID, "p2", base.Add(time.Second))
		if p2.ID <= p1.ID {
			t.Errorf("the replacing factor got ID %d, want one above the replaced %d", p2.ID, p1.ID)
		}
		if ids := factorIDs(t, s, u.ID); !slices.Equal(ids, []int64{p2.ID}) {
			t.Fatalf("after two SavePendingFactor: got factors %v, want [%d] (p1 %d replaced)", ids, p2.ID, p1.ID)
		}
		if err := s.ConfirmFactor(t.Context(), p2.ID, base, 1, nil, nil); err != nil {
			t.Fatalf("ConfirmFactor: %v", err)
		}
		p3 := savePending(t, s, u.ID, "p3", base)
		p4 := savePending(t, s, u.ID, "p4", base)
		if ids := factorIDs(t, s, u.ID); !slices.Equal(ids, []int64{p2.ID, p4.ID}) {
			t.Errorf("got factors %v, want the confirmed %d and the pending %d (p3 %d replaced)", ids, p2.ID, p4.ID, p3.ID)
		}
		if ids := factorIDs(t, s, other.ID); !slices.Equal(ids, []int64{otherPending.ID}) {
			t.Errorf("another user's factors: got %v, want [%d]", ids, otherPending.ID)
		}
	})

	t.Run("Confirm", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		other := createUser(t, s, "other@example.com")
		old := confirmed(t, s, u.ID, "old", 5)
		if err := s.ReplaceBackupCodes(ctx, u.ID, newCodes("old", 3), nil); err != nil {
			t.Fatal(err)
		}
		otherF := confirmed(t, s, other.ID, "other", 5)
		otherCodes := newCodes("other", 2)
		if err := s.ReplaceBackupCodes(ctx, other.ID, otherCodes, nil); err != nil {
			t.Fatal(err)
		}

		p := savePending(t, s, u.ID, "new", base)
		at := base.Add(90 * time.Second)
		codes := newCodes("new", 10)
		if err := s.ConfirmFactor(ctx, p.ID, at, 4242, codes, nil); err != nil {
			t.Fatalf("ConfirmFactor: %v", err)
		}
		if ids := factorIDs(t, s, u.ID); !slices.Equal(ids, []int64{p.ID}) {
			t.Errorf("factors after ConfirmFactor: got %v, want only [%d] (old %d removed)", ids, p.ID, old.ID)
		}
		got := factorByID(t, s, u.ID, p.ID)
		if !got.Confirmed() || got.LastStep != 4242 || string(got.Secret) != "new" {
			t.Errorf("confirmed factor: got confirmed %v step %d secret %q, want true 4242 %q", got.Confirmed(), got.LastStep, got.Secret, "new")
		}
		checkTime(t, "ConfirmedAt", got.ConfirmedAt, at)
		checkTime(t, "CreatedAt", got.CreatedAt, base)
		var want []string
		for _, c := range codes {
			want = append(want, string(c.Hash))
			if c.ID == 0 {
				t.Error("ConfirmFactor did not set the ID of a code")
			}
		}
		if got := codeHashes(t, s, u.ID); !slices.Equal(got, want) {
			t.Errorf("codes after ConfirmFactor: got %q, want %q", got, want)
		}

		// A second confirmation finds nothing pending and changes nothing.
		err := s.ConfirmFactor(ctx, p.ID, at.Add(time.Hour), 9999, newCodes("again", 10), nil)
		if !errors.Is(err, mfa.ErrNotFound) {
			t.Errorf("second ConfirmFactor: got %v, want ErrNotFound", err)
		}
		if got := factorByID(t, s, u.ID, p.ID); got.LastStep != 4242 {
			t.Errorf("second ConfirmFactor changed LastStep: got %d, want 4242", got.LastStep)
		}
		if got := codeHashes(t, s, u.ID); !slices.Equal(got, want) {
			t.Errorf("second ConfirmFactor changed the codes: got %q, want %q", got, want)
		}
		if err := s.ConfirmFactor(ctx, p.ID+1000, at, 1, nil, nil); !errors.Is(err, mfa.ErrNotFound) {
			t.Errorf("ConfirmFactor of a missing factor: got %v, want ErrNotFound", err)
		}

		// The other user is untouched.
		if ids := factorIDs(t, s, other.ID); !slices.Equal(ids, []int64{otherF.ID}) {
			t.Errorf("other user's factors: got %v, want [%d]", ids, otherF.ID)
		}
		if got := codeHashes(t, s, other.ID); len(got) != len(otherCodes) {
			t.Errorf("other user's codes: got %d, want %d", len(got), len(otherCodes))
		}
	})

	t.Run("ClaimStep", func(t *testing.T) {
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		f := confirmed(t, s, u.ID, "s", 100)
		for _, tc := range []struct {
			step int64
			want bool
			last int64
		}{
			{101, true, 101},
			{101, false, 101}, // the same step again
			{100, false, 101}, // an older step
			{-1, false, 101},
			{150, true, 150}, // a jump ahead
			{149, false, 150},
			{151, true, 151},
		} {
			got, err := spend(t, s, u.ID, base, mfa.Upgrade{ClaimFactor: f.ID, ClaimStep: tc.step})
			if err != nil || got != tc.want {
				t.Errorf("ClaimStep(%d): got %v, %v, want %v, nil", tc.step, got, err, tc.want)
			}
			if last := factorByID(t, s, u.ID, f.ID).LastStep; last != tc.last {
				t.Errorf("after ClaimStep(%d): got LastStep %d, want %d", tc.step, last, tc.last)
			}
		}
		if got, err := spend(t, s, u.ID, base, mfa.Upgrade{ClaimFactor: f.ID + 1000, ClaimStep: 1 << 40}); got || err != nil {
			t.Errorf("ClaimStep of a missing factor: got %v, %v, want false, nil", got, err)
		}
	})

	t.Run("ClaimStepConcurrent", func(t *testing.T) {
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		f := confirmed(t, s, u.ID, "s", 100)
		for _, step := range []int64{200, 201, 202} {
			wins := race(t, concurrency, func(int) (bool, error) {
				return spend(t, s, u.ID, base, mfa.Upgrade{ClaimFactor: f.ID, ClaimStep: step})
			})
			if wins != 1 {
				t.Errorf("%d concurrent ClaimStep(%d): got %d successes, want exactly 1", concurrency, step, wins)
			}
		}
		// Concurrent claims of different steps: the newest must end up stored.
		race(t, concurrency, func(i int) (bool, error) {
			return spend(t, s, u.ID, base, mfa.Upgrade{ClaimFactor: f.ID, ClaimStep: int64(300 + i)})
		})
		if last := factorByID(t, s, u.ID, f.ID).LastStep; last != 300+concurrency-1 {
			t.Errorf("after concurrent claims of steps 300..%d: got LastStep %d, want %d", 300+concurrency-1, last, 300+concurrency-1)
		}
	})

	t.Run("DeleteFactors", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		other := createUser(t, s, "other@example.com")
		confirmed(t, s, u.ID, "s", 1)
		savePending(t, s, u.ID, "p", base)
		if err := s.ReplaceBackupCodes(ctx, u.ID, newCodes("u", 10), nil); err != nil {
			t.Fatal(err)
		}
		of := confirmed(t, s, other.ID, "o", 1)
		if err := s.ReplaceBackupCodes(ctx, other.ID, newCodes("o", 10), nil); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteFactors(ctx, u.ID, nil); err != nil {
			t.Fatalf("DeleteFactors: %v", err)
		}
		if ids := factorIDs(t, s, u.ID); len(ids) != 0 {
			t.Errorf("factors after DeleteFactors: got %v, want none", ids)
		}
		if hs := codeHashes(t, s, u.ID); len(hs) != 0 {
			t.Errorf("codes after DeleteFactors: got %d, want none", len(hs))
		}
		if ids := factorIDs(t, s, other.ID); !slices.Equal(ids, []int64{of.ID}) {
			t.Errorf("other user's factors: got %v, want [%d]", ids, of.ID)
		}
		if hs := codeHashes(t, s, other.ID); len(hs) != 10 {
			t.Errorf("other user's codes: got %d, want 10", len(hs))
		}
		if err := s.DeleteFactors(ctx, u.ID, nil); err != nil {
			t.Errorf("DeleteFactors of a user without factors: %v", err)
		}
	})

	t.Run("FactorsAfter", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		var want []int64
		for i := range 7 {
			u := createUser(t, s, fmt.Sprintf("u%d@example.com", i))
			if i%2 == 0 {
				want = append(want, confirmed(t, s, u.ID, fmt.Sprint("s", i), 1).ID)
			} else {
				want = append(want, savePending(t, s, u.ID, fmt.Sprint("s", i), base).ID)
			}
		}
		for _, limit := range []int{1, 2, 3, 7, 100} {
			var got []int64
			for after, pages := int64(0), 0; ; pages++ {
				if pages > len(want) {
					t.Fatalf("limit %d: FactorsAfter does not end", limit)
				}
				fs, err := s.FactorsAfter(ctx, after, limit)
				if err != nil {
					t.Fatalf("FactorsAfter(%d, %d): %v", after, limit, err)
				}
				if len(fs) > limit {
					t.Fatalf("FactorsAfter(%d, %d): got %d factors, want at most %d", after, limit, len(fs), limit)
				}
				for _, f := range fs {
					got = append(got, f.ID)
					after = f.ID
				}
				if len(fs) < limit {
					break
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("limit %d: paging through FactorsAfter: got %v, want %v", limit, got, want)
			}
		}
		fs, err := s.FactorsAfter(ctx, want[2], 2)
		if err != nil || len(fs) != 2 || fs[0].ID != want[3] || fs[1].ID != want[4] {
			t.Errorf("FactorsAfter(%d, 2): got %d factors, %v, want %v", want[2], len(fs), err, want[3:5])
		} else if string(fs[0].Secret) != "s3" || fs[0].Kind != mfa.FactorTOTP || fs[0].UserID == 0 {
			t.Errorf("FactorsAfter: got factor secret %q kind %q user %d, want %q %q and a user", fs[0].Secret, fs[0].Kind, fs[0].UserID, "s3", mfa.FactorTOTP)
		}
		if fs, err := s.FactorsAfter(ctx, want[len(want)-1], 10); err != nil || len(fs) != 0 {
			t.Errorf("FactorsAfter the last factor: got %d factors, %v, want none", len(fs), err)
		}
	})

	t.Run("ReplaceFactorSecret", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		f := confirmed(t, s, u.ID, "sealed-1", 9)
		for _, tc := range []struct {
			old, new string
			want     bool
			secret   string
		}{
			{"sealed-0", "sealed-x", false, "sealed-1"}, // not the current secret
			{"sealed-1", "sealed-2", true, "sealed-2"},
			{"sealed-1", "sealed-3", false, "sealed-2"}, // swapped meanwhile
			{"sealed-2", "sealed-3", true, "sealed-3"},
		} {
			got, err := s.ReplaceFactorSecret(ctx, f.ID, []byte(tc.old), []byte(tc.new))
			if err != nil || got != tc.want {
				t.Errorf("ReplaceFactorSecret(%q, %q): got %v, %v, want %v, nil", tc.old, tc.new, got, err, tc.want)
			}
			g := factorByID(t, s, u.ID, f.ID)
			if string(g.Secret) != tc.secret {
				t.Errorf("after ReplaceFactorSecret(%q, %q): got secret %q, want %q", tc.old, tc.new, g.Secret, tc.secret)
			}
			if g.LastStep != 9 || !g.Confirmed() {
				t.Errorf("ReplaceFactorSecret changed more than the secret: step %d confirmed %v", g.LastStep, g.Confirmed())
			}
		}
		if got, err := s.ReplaceFactorSecret(ctx, f.ID+1000, []byte("sealed-3"), []byte("x")); got || err != nil {
			t.Errorf("ReplaceFactorSecret of a missing factor: got %v, %v, want false, nil", got, err)
		}
	})
}

func testBackupCodes(t *testing.T, newStore func(t *testing.T) mfa.Store) {
	t.Run("ReplaceAndUse", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		other := createUser(t, s, "other@example.com")
		if hs := codeHashes(t, s, u.ID); len(hs) != 0 {
			t.Fatalf("codes of a new user: got %d, want none", len(hs))
		}
		if err := s.ReplaceBackupCodes(ctx, other.ID, newCodes("other", 10), nil); err != nil {
			t.Fatal(err)
		}
		codes := newCodes("first", 3)
		if err := s.ReplaceBackupCodes(ctx, u.ID, codes, nil); err != nil {
			t.Fatalf("ReplaceBackupCodes: %v", err)
		}
		got, err := s.UnusedBackupCodes(ctx, u.ID)
		if err != nil || len(got) != 3 {
			t.Fatalf("UnusedBackupCodes: got %d codes, %v, want 3", len(got), err)
		}
		for i, c := range got {
			if c.ID == 0 || c.ID != codes[i].ID || c.UserID != u.ID || !bytes.Equal(c.Hash, codes[i].Hash) || !c.UsedAt.IsZero() {
				t.Errorf("code %d: got ID %d user %d hash %q used %v, want ID %d user %d hash %q unused",
					i, c.ID, c.UserID, c.Hash, c.UsedAt, codes[i].ID, u.ID, codes[i].Hash)
			}
		}

		at := base.Add(time.Hour)
		if ok, err := spend(t, s, u.ID, at, mfa.Upgrade{BackupCode: got[1].ID}); !ok || err != nil {
			t.Errorf("UseBackupCode: got %v, %v, want true, nil", ok, err)
		}
		if ok, err := spend(t, s, u.ID, at.Add(time.Second), mfa.Upgrade{BackupCode: got[1].ID}); ok || err != nil {
			t.Errorf("UseBackupCode a second time: got %v, %v, want false, nil", ok, err)
		}
		want := []string{string(codes[0].Hash), string(codes[2].Hash)}
		if hs := codeHashes(t, s, u.ID); !slices.Equal(hs, want) {
			t.Errorf("unused codes after one use: got %q, want %q", hs, want)
		}
		if ok, err := spend(t, s, u.ID, at, mfa.Upgrade{BackupCode: 1 << 50}); ok || err != nil {
			t.Errorf("UseBackupCode of a missing code: got %v, %v, want false, nil", ok, err)
		}

		// A new set replaces the old one, used codes included.
		fresh := newCodes("second", 10)
		if err := s.ReplaceBackupCodes(ctx, u.ID, fresh, nil); err != nil {
			t.Fatalf("ReplaceBackupCodes: %v", err)
		}
		want = nil
		for _, c := range fresh {
			want = append(want, string(c.Hash))
		}
		if hs := codeHashes(t, s, u.ID); !slices.Equal(hs, want) {
			t.Errorf("codes after replacing: got %q, want %q", hs, want)
		}
		if ok, err := spend(t, s, u.ID, at, mfa.Upgrade{BackupCode: got[0].ID}); ok || err != nil {
			t.Errorf("UseBackupCode of a replaced code: got %v, %v, want false, nil", ok, err)
		}
		if hs := codeHashes(t, s, other.ID); len(hs) != 10 {
			t.Errorf("other user's codes: got %d, want 10", len(hs))
		}
		if err := s.ReplaceBackupCodes(ctx, u.ID, nil, nil); err != nil {
			t.Fatalf("ReplaceBackupCodes(nil): %v", err)
		}
		if hs := codeHashes(t, s, u.ID); len(hs) != 0 {
			t.Errorf("codes after replacing with none: got %d, want none", len(hs))
		}
	})

	t.Run("ReplaceIf", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		other := createUser(t, s, "other@example.com")
		hashes := func(cs []mfa.BackupCode) []string {
			var hs []string
			for _, c := range cs {
				hs = append(hs, string(c.Hash))
			}
			return hs
		}
		replaceIf := func(newest int64, codes []mfa.BackupCode, want bool) {
			t.Helper()
			before := codeHashes(t, s, u.ID)
			ok, err := s.ReplaceBackupCodesIf(ctx, u.ID, newest, codes, nil)
			if ok != want || err != nil {
				t.Fatalf("ReplaceBackupCodesIf(newest %d): got %v, %v, want %v, nil", newest, ok, err, want)
			}
			switch got := codeHashes(t, s, u.ID); {
			case want && !slices.Equal(got, hashes(codes)):
				t.Errorf("codes after ReplaceBackupCodesIf(newest %d): got %q, want the new set", newest, got)
			case !want && !slices.Equal(got, before):
				t.Errorf("codes after a refused ReplaceBackupCodesIf(newest %d): got %q, want those before, %q", newest, got, before)
			}
			if set := codes[0].ID != 0; set != want {
				t.Errorf("ReplaceBackupCodesIf(newest %d) that replaced %v: the IDs of the codes are set: %v", newest, want, set)
			}
		}

		// No code yet: 0 names the empty set.
		first := newCodes("first", 3)
		replaceIf(0, first, true)
		// Sent again with what it read before: a set was stored since.
		replaceIf(0, newCodes("again", 3), false)
		replaceIf(first[2].ID-1, newCodes("again", 3), false)
		// Another user's newer codes do not count.
		if err := s.ReplaceBackupCodes(ctx, other.ID, newCodes("other", 3), nil); err != nil {
			t.Fatal(err)
		}
		second := newCodes("second", 3)
		replaceIf(first[2].ID, second, true)
		// Codes used since do not count either: the newest is used, and
		// the newest unused code is now an older one.
		if ok, err := spend(t, s, u.ID, base, mfa.Upgrade{BackupCode: second[2].ID}); !ok || err != nil {
			t.Fatalf("using a code: got %v, %v", ok, err)
		}
		third := newCodes("third", 3)
		replaceIf(second[2].ID, third, true)
		// When every code is used, none is newer than 0.
		for _, c := range third {
			if ok, err := spend(t, s, u.ID, base, mfa.Upgrade{BackupCode: c.ID}); !ok || err != nil {
				t.Fatalf("using a code: got %v, %v", ok, err)
			}
		}
		replaceIf(0, newCodes("fourth", 3), true)

		// Of concurrent replacements of one set, one replaces it.
		cs, err := s.UnusedBackupCodes(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		newest := cs[len(cs)-1].ID
		// Warm up: a store with a pool of connections opens them now,
		// so that the calls below do overlap.
		race(t, concurrency, func(int) (bool, error) {
			_, err := s.UnusedBackupCodes(ctx, u.ID)
			return false, err
		})
		wins := race(t, concurrency, func(i int) (bool, error) {
			return s.ReplaceBackupCodesIf(ctx, u.ID, newest, newCodes(fmt.Sprint("race", i), 3), nil)
		})
		if wins != 1 {
			t.Errorf("%d concurrent ReplaceBackupCodesIf of one set: got %d replacements, want exactly 1", concurrency, wins)
		}
		if hs := codeHashes(t, s, u.ID); len(hs) != 3 {
			t.Errorf("codes after the race: got %d, want 3", len(hs))
		}
	})

	t.Run("UseConcurrent", func(t *testing.T) {
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		codes := newCodes("c", 3)
		if err := s.ReplaceBackupCodes(t.Context(), u.ID, codes, nil); err != nil {
			t.Fatal(err)
		}
		for _, c := range codes {
			wins := race(t, concurrency, func(int) (bool, error) { return spend(t, s, u.ID, base, mfa.Upgrade{BackupCode: c.ID}) })
			if wins != 1 {
				t.Errorf("%d concurrent UseBackupCode: got %d successes, want exactly 1", concurrency, wins)
			}
		}
		if hs := codeHashes(t, s, u.ID); len(hs) != 0 {
			t.Errorf("unused codes after using all: got %d, want none", len(hs))
		}
	})
}

// spend spends the proof of up (a step claimed, a backup code used at at)
// through UpgradeSession, as a sign-in does, from a pending session of its
// own. It is safe to call from several goroutines.
func spend(t *testing.T, s mfa.Store, userID int64, at time.Time, up mfa.Upgrade) (bool, error) {
	newID := func() []byte {
		id := make([]byte, 32)
		_, _ = rand.Read(id)
		return id
	}
	old := &mfa.Session{ID: newID(), UserID: userID, Level: mfa.LevelPassword, CreatedAt: base, LastSeenAt: base, ExpiresAt: base.Add(time.Hour)}
	if err := s.CreateSession(t.Context(), old); err != nil {
		return false, err
	}
	up.Old = old.ID
	up.Next = &mfa.Session{ID: newID(), UserID: userID, Level: mfa.LevelFull, CreatedAt: at, LastSeenAt: at, ExpiresAt: at.Add(time.Hour)}
	return s.UpgradeSession(t.Context(), up)
}

// sessionID returns a 32-byte ID with bytes a text column would mangle.
func sessionID(n byte) []byte {
	id := make([]byte, 32)
	for i := range id {
		id[i] = byte(i*37) ^ n
	}
	id[0], id[1], id[31] = 0, 0xff, n // a NUL, an invalid UTF-8 byte
	return id
}

func newSession(userID int64, n byte, level mfa.Level, expires time.Time) *mfa.Session {
	return &mfa.Session{ID: sessionID(n), UserID: userID, Level: level,
		CreatedAt: base, LastSeenAt: base.Add(time.Second), ExpiresAt: expires, IP: "2001:db8::1"}
}

func createSession(t *testing.T, s mfa.Store, sess *mfa.Session) {
	t.Helper()
	if err := s.CreateSession(t.Context(), sess); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
}

func checkSession(t *testing.T, got, want *mfa.Session) {
	t.Helper()
	if !bytes.Equal(got.ID, want.ID) || got.UserID != want.UserID || got.Level != want.Level || got.IP != want.IP {
		t.Errorf("got session %x user %d level %d ip %q, want %x %d %d %q",
			got.ID, got.UserID, got.Level, got.IP, want.ID, want.UserID, want.Level, want.IP)
	}
	checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime(t, "LastSeenAt", got.LastSeenAt, want.LastSeenAt)
	checkTime(t, "ExpiresAt", got.ExpiresAt, want.ExpiresAt)
}

func sessionGone(t *testing.T, s mfa.Store, id []byte) bool {
	t.Helper()
	_, err := s.Session(t.Context(), id)
	if err != nil && !errors.Is(err, mfa.ErrNotFound) {
		t.Fatalf("Session: %v", err)
	}
	return err != nil
}

func testSessions(t *testing.T, newStore func(t *testing.T) mfa.Store) {
	t.Run("CreateGet", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		want := newSession(u.ID, 1, mfa.LevelPassword, base.Add(10*time.Minute))
		createSession(t, s, want)
		sent := bytes.Clone(want.ID)
		want.ID[5] ^= 0xff // the store must have kept its own copy
		want.ID = sent
		got, err := s.Session(ctx, sent)
		if err != nil {
			t.Fatalf("Session: %v", err)
		}
		checkSession(t, got, want)
		got.ID[3] ^= 0xff
		if again, err := s.Session(ctx, sent); err != nil || !bytes.Equal(again.ID, sent) {
			t.Errorf("changing a returned ID changed the store: got %x, %v", again.ID, err)
		}
		for _, id := range [][]byte{sent[:31], append(bytes.Clone(sent), 0), sessionID(2), nil} {
			if _, err := s.Session(ctx, id); !errors.Is(err, mfa.ErrNotFound) {
				t.Errorf("Session(%x): got %v, want ErrNotFound", id, err)
			}
		}
		dup := newSession(u.ID, 1, mfa.LevelFull, base)
		if err := s.CreateSession(ctx, dup); !errors.Is(err, mfa.ErrConflict) {
			t.Errorf("CreateSession with a taken ID: got %v, want ErrConflict", err)
		}
		if got, err := s.Session(ctx, sent); err != nil || got.Level != mfa.LevelPassword {
			t.Errorf("after a conflict: got %+v, %v, want the first session", got, err)
		}
	})

	t.Run("View", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		other := createUser(t, s, "other@example.com")
		sess := newSession(u.ID, 1, mfa.LevelPassword, base.Add(10*time.Minute))
		createSession(t, s, sess)
		createSession(t, s, newSession(other.ID, 2, mfa.LevelFull, base.Add(time.Hour)))
		view := func(id []byte) *mfa.SessionView {
			t.Helper()
			v, err := s.SessionView(ctx, id)
			if err != nil {
				t.Fatalf("SessionView: %v", err)
			}
			checkSession(t, &v.Session, sess)
			if v.User.ID != u.ID || v.User.Email != u.Email || v.User.PasswordHash != u.PasswordHash {
				t.Errorf("SessionView user: got %+v, want %+v", v.User, u)
			}
			checkTime(t, "user CreatedAt", v.User.CreatedAt, u.CreatedAt)
			return v
		}
		if v := view(sess.ID); len(v.Factors) != 0 {
			t.Errorf("a user without factors: got factors %+v", v.Factors)
		}

		on := confirmed(t, s, u.ID, "sealed secret", 7)
		pending := savePending(t, s, u.ID, "pending secret", base.Add(time.Hour))
		confirmed(t, s, other.ID, "other secret", 3)
		v := view(sess.ID)
		if len(v.Factors) != 2 || v.Factors[0].ID != on.ID || v.Factors[1].ID != pending.ID {
			t.Fatalf("factors: got %+v, want %d then %d", v.Factors, on.ID, pending.ID)
		}
		if f := v.Factors[0]; f.UserID != u.ID || f.Kind != mfa.FactorTOTP || string(f.Secret) != "sealed secret" ||
			f.LastStep != 7 || !f.Confirmed() {
			t.Errorf("confirmed factor: got %+v", f)
		}
		checkTime(t, "factor ConfirmedAt", v.Factors[0].ConfirmedAt, base.Add(time.Minute))
		if f := v.Factors[1]; string(f.Secret) != "pending secret" || f.Confirmed() {
			t.Errorf("pending factor: got %+v", f)
		}
		checkTime(t, "factor CreatedAt", v.Factors[1].CreatedAt, base.Add(time.Hour))
		if want := factorByID(t, s, u.ID, on.ID); !reflect.DeepEqual(v.Factors[0], *want) {
			t.Errorf("SessionView's factor %+v differs from Factors' %+v", v.Factors[0], *want)
		}

		for _, id := range [][]byte{sess.ID[:31], sessionID(3), nil} {
			if _, err := s.SessionView(ctx, id); !errors.Is(err, mfa.ErrNotFound) {
				t.Errorf("SessionView(%x): got %v, want ErrNotFound", id, err)
			}
		}
		if err := s.DeleteSession(ctx, sess.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SessionView(ctx, sess.ID); !errors.Is(err, mfa.ErrNotFound) {
			t.Errorf("SessionView of a deleted session: got %v, want ErrNotFound", err)
		}
	})

	t.Run("Upgrade", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		old := newSession(u.ID, 1, mfa.LevelPassword, base.Add(10*time.Minute))
		createSession(t, s, old)
		next := newSession(u.ID, 2, mfa.LevelFull, base.Add(12*time.Hour))
		ev := &mfa.Event{UserID: u.ID, Type: mfa.EventLoginSucceeded, At: base, IP: "192.0.2.1", Detail: "totp"}
		ok, err := s.UpgradeSession(ctx, mfa.Upgrade{Old: old.ID, Next: next, Event: ev})
		if !ok || err != nil {
			t.Fatalf("UpgradeSession: got %v, %v, want true, nil", ok, err)
		}
		if !sessionGone(t, s, old.ID) {
			t.Error("the old session is still there after UpgradeSession")
		}
		got, err := s.Session(ctx, next.ID)
		if err != nil {
			t.Fatalf("the new session: %v", err)
		}
		checkSession(t, got, next)
		evs, err := s.Events(ctx, u.ID, 10)
		if err != nil || len(evs) != 1 {
			t.Fatalf("Events after UpgradeSession: got %d, %v, want 1", len(evs), err)
		}
		if e := evs[0]; e.ID == 0 || e.ID != ev.ID || e.Type != ev.Type || e.Detail != "totp" || e.IP != ev.IP {
			t.Errorf("event: got %+v, want %+v with its ID set", e, ev)
		}

		// The same pending session cannot be upgraded twice.
		again := newSession(u.ID, 3, mfa.LevelFull, base.Add(12*time.Hour))
		ev2 := &mfa.Event{UserID: u.ID, Type: mfa.EventLoginSucceeded, At: base, IP: "192.0.2.2"}
		ok, err = s.UpgradeSession(ctx, mfa.Upgrade{Old: old.ID, Next: again, Event: ev2})
		if ok || err != nil {
			t.Errorf("second UpgradeSession: got %v, %v, want false, nil", ok, err)
		}
		if !sessionGone(t, s, again.ID) {
			t.Error("a failed UpgradeSession stored its new session")
		}
		if evs, _ := s.Events(ctx, u.ID, 10); len(evs) != 1 {
			t.Errorf("a failed UpgradeSession stored its event: got %d events, want 1", len(evs))
		}

		// Without an event.
		p := newSession(u.ID, 4, mfa.LevelPassword, base.Add(time.Hour))
		createSession(t, s, p)
		n := newSession(u.ID, 5, mfa.LevelFull, base.Add(time.Hour))
		if ok, err := s.UpgradeSession(ctx, mfa.Upgrade{Old: p.ID, Next: n}); !ok || err != nil {
			t.Errorf("UpgradeSession without event: got %v, %v, want true, nil", ok, err)
		}
		if evs, _ := s.Events(ctx, u.ID, 10); len(evs) != 1 {
			t.Errorf("UpgradeSession without event stored one: got %d events, want 1", len(evs))
		}
		if sessionGone(t, s, n.ID) || !sessionGone(t, s, p.ID) {
			t.Error("UpgradeSession without event did not replace the session")
		}

		// A new ID that is taken is a conflict, and nothing changes.
		q := newSession(u.ID, 6, mfa.LevelPassword, base.Add(time.Hour))
		createSession(t, s, q)
		ev3 := &mfa.Event{UserID: u.ID, Type: mfa.EventLoginSucceeded, At: base}
		ok, err = s.UpgradeSession(ctx, mfa.Upgrade{Old: q.ID, Next: newSession(u.ID, 5, mfa.LevelFull, base), Event: ev3})
		if ok || !errors.Is(err, mfa.ErrConflict) {
			t.Errorf("UpgradeSession to a taken ID: got %v, %v, want false, ErrConflict", ok, err)
		}
		if sessionGone(t, s, q.ID) {
			t.Error("UpgradeSession to a taken ID removed the old session")
		}
		if evs, _ := s.Events(ctx, u.ID, 10); len(evs) != 1 {
			t.Errorf("UpgradeSession to a taken ID stored its event: got %d events, want 1", len(evs))
		}
	})

	t.Run("UpgradeSpendsProof", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		f := confirmed(t, s, u.ID, "s", 100)
		if err := s.ReplaceBackupCodes(ctx, u.ID, newCodes("c", 2), nil); err != nil {
			t.Fatal(err)
		}
		codes, err := s.UnusedBackupCodes(ctx, u.ID)
		if err != nil || len(codes) != 2 {
			t.Fatalf("UnusedBackupCodes: got %d, %v", len(codes), err)
		}
		key := mfa.ThrottleKey{Subject: "user:1", Method: mfa.MethodTOTP}
		attempt := base.Add(time.Minute)
		for _, at := range []time.Time{base, attempt} {
			if _, _, err := s.RecordFailure(ctx, key, at, base.Add(-time.Hour), always, nil); err != nil {
				t.Fatal(err)
			}
		}
		pending := func(n byte) *mfa.Session {
			p := newSession(u.ID, n, mfa.LevelPassword, base.Add(10*time.Minute))
			createSession(t, s, p)
			return p
		}
		tests := []struct {
			name string
			up   mfa.Upgrade
			want bool
		}{
			{"the step last used", mfa.Upgrade{ClaimFactor: f.ID, ClaimStep: 100}, false},
			{"a newer step, the throttle refusing", mfa.Upgrade{ClaimFactor: f.ID, ClaimStep: 101, Throttle: key, Since: base.Add(-time.Hour), Admit: never}, false},
			{"a newer step", mfa.Upgrade{ClaimFactor: f.ID, ClaimStep: 101, Throttle: key, Since: base.Add(-time.Hour), Admit: always}, true},
			{"that step again", mfa.Upgrade{ClaimFactor: f.ID, ClaimStep: 101}, false},
			{"a missing factor", mfa.Upgrade{ClaimFactor: f.ID + 1000, ClaimStep: 1 << 40}, false},
			{"an unused backup code", mfa.Upgrade{BackupCode: codes[0].ID}, true},
			{"that backup code again", mfa.Upgrade{BackupCode: codes[0].ID}, false},
		}
		for i, tt := range tests {
			p := pending(byte(10 + 2*i))
			tt.up.Old, tt.up.Next = p.ID, newSession(u.ID, byte(11+2*i), mfa.LevelFull, base.Add(time.Hour))
			tt.up.Event = &mfa.Event{UserID: u.ID, Type: mfa.EventLoginSucceeded, At: base}
			ok, err := s.UpgradeSession(ctx, tt.up)
			if err != nil || ok != tt.want {
				t.Fatalf("%s: got %v, %v, want %v, nil", tt.name, ok, err, tt.want)
			}
			if sessionGone(t, s, p.ID) != tt.want || sessionGone(t, s, tt.up.Next.ID) == tt.want {
				t.Errorf("%s: the pending session should be replaced only on success", tt.name)
			}
		}
		if last := factorByID(t, s, u.ID, f.ID).LastStep; last != 101 {
			t.Errorf("LastStep: got %d, want 101", last)
		}
		if left, _ := s.UnusedBackupCodes(ctx, u.ID); len(left) != 1 || left[0].ID != codes[1].ID {
			t.Errorf("unused codes after use: got %v, want only the second", left)
		}
		st, err := s.ThrottleState(ctx, key, base.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		checkThrottle(t, "throttle after an upgrade", st,
			mfa.ThrottleState{LastFailure: attempt, WindowCount: 2, WindowOldest: base})
		evs, err := s.Events(ctx, u.ID, 100)
		if err != nil || len(evs) != 2 {
			t.Errorf("events: got %d, %v, want 2 (one per successful upgrade)", len(evs), err)
		}
	})

	t.Run("UpgradeStartsSession", func(t *testing.T) {
		// Without Old, as for a password step: Next is started if the
		// throttle admits the attempt.
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		key := mfa.ThrottleKey{Subject: "email:u", Method: mfa.MethodPassword}
		if _, _, err := s.RecordFailure(t.Context(), key, base, base.Add(-time.Hour), always, nil); err != nil {
			t.Fatal(err)
		}
		for i, admit := range []func(mfa.ThrottleState) bool{never, always} {
			next := newSession(u.ID, byte(i+1), mfa.LevelPassword, base.Add(time.Hour))
			ok, err := s.UpgradeSession(t.Context(), mfa.Upgrade{Next: next, Throttle: key, Since: base.Add(-time.Hour), Admit: admit})
			if err != nil || ok != (i == 1) || sessionGone(t, s, next.ID) == ok {
				t.Fatalf("start with admit %d: got %v, %v, session kept %v", i, ok, err, !sessionGone(t, s, next.ID))
			}
		}
		st, err := s.ThrottleState(t.Context(), key, base.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		checkThrottle(t, "throttle after a started session", st,
			mfa.ThrottleState{LastFailure: base, WindowCount: 1, WindowOldest: base})
	})

	t.Run("UpgradeNeedsThePasswordHash", func(t *testing.T) {
		// A password step checked against a hash replaced since starts no
		// session, and changes nothing else either.
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		checked := u.PasswordHash
		const replaced = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdDI$aGFzaDI"
		if ok, err := s.ReplacePasswordHash(ctx, u.ID, checked, replaced, nil); !ok || err != nil {
			t.Fatalf("ReplacePasswordHash: got %v, %v", ok, err)
		}
		key := mfa.ThrottleKey{Subject: "email:u", Method: mfa.MethodPassword}
		if _, _, err := s.RecordFailure(ctx, key, base, base.Add(-time.Hour), always, nil); err != nil {
			t.Fatal(err)
		}
		for i, hash := range []string{checked, replaced} {
			next := newSession(u.ID, byte(i+1), mfa.LevelFull, base.Add(time.Hour))
			ev := &mfa.Event{UserID: u.ID, Type: mfa.EventLoginSucceeded, At: base}
			ok, err := s.UpgradeSession(ctx, mfa.Upgrade{Next: next, Event: ev, PasswordHash: hash,
				Throttle: key, Since: base.Add(-time.Hour), Admit: always})
			if err != nil || ok != (hash == replaced) || sessionGone(t, s, next.ID) == ok {
				t.Fatalf("upgrade over hash %d: got %v, %v, session kept %v, want %v", i, ok, err, !sessionGone(t, s, next.ID), hash == replaced)
			}
			st, err := s.ThrottleState(ctx, key, base.Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			want := mfa.ThrottleState{Consecutive: 1, LastFailure: base, WindowCount: 1, WindowOldest: base}
			if ok {
				want.Consecutive = 0
			}
			checkThrottle(t, fmt.Sprintf("throttle after the upgrade over hash %d", i), st, want)
			if evs, _ := s.Events(ctx, u.ID, 10); len(evs) != i {
				t.Errorf("after the upgrade over hash %d: %d events, want %d", i, len(evs), i)
			}
		}
	})

	t.Run("UpgradeSpendsProofOnce", func(t *testing.T) {
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		f := confirmed(t, s, u.ID, "s", 100)
		olds := make([]*mfa.Session, concurrency)
		for i := range olds {
			olds[i] = newSession(u.ID, byte(i+1), mfa.LevelPassword, base.Add(10*time.Minute))
			createSession(t, s, olds[i])
		}
		wins := race(t, concurrency, func(i int) (bool, error) {
			next := newSession(u.ID, byte(100+i), mfa.LevelFull, base.Add(time.Hour))
			return s.UpgradeSession(t.Context(), mfa.Upgrade{Old: olds[i].ID, Next: next, ClaimFactor: f.ID, ClaimStep: 101})
		})
		if wins != 1 {
			t.Errorf("%d sign-ins spending one step at once: %d succeeded, want exactly 1", concurrency, wins)
		}
	})

	t.Run("UpgradeConcurrent", func(t *testing.T) {
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		old := newSession(u.ID, 0, mfa.LevelPassword, base.Add(10*time.Minute))
		createSession(t, s, old)
		nexts := make([]*mfa.Session, concurrency)
		for i := range nexts {
			nexts[i] = newSession(u.ID, byte(i+1), mfa.LevelFull, base.Add(time.Hour))
		}
		wins := race(t, concurrency, func(i int) (bool, error) {
			ev := &mfa.Event{UserID: u.ID, Type: mfa.EventLoginSucceeded, At: base, Detail: fmt.Sprint(i)}
			return s.UpgradeSession(t.Context(), mfa.Upgrade{Old: old.ID, Next: nexts[i], Event: ev})
		})
		if wins != 1 {
			t.Errorf("%d concurrent UpgradeSession: got %d successes, want exactly 1", concurrency, wins)
		}
		present := 0
		for _, n := range nexts {
			if !sessionGone(t, s, n.ID) {
				present++
			}
		}
		if present != 1 {
			t.Errorf("new sessions stored: got %d, want 1", present)
		}
		if evs, err := s.Events(t.Context(), u.ID, 100); err != nil || len(evs) != 1 {
			t.Errorf("events stored: got %d, %v, want 1", len(evs), err)
		}
	})

	t.Run("TouchDelete", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		other := createUser(t, s, "other@example.com")
		a := newSession(u.ID, 1, mfa.LevelFull, base.Add(time.Hour))
		b := newSession(u.ID, 2, mfa.LevelPassword, base.Add(time.Hour))
		c := newSession(other.ID, 3, mfa.LevelFull, base.Add(time.Hour))
		for _, sess := range []*mfa.Session{a, b, c} {
			createSession(t, s, sess)
		}
		seen := base.Add(17*time.Minute + 123*time.Millisecond + 456*time.Microsecond)
		if err := s.TouchSession(ctx, a.ID, seen); err != nil {
			t.Fatalf("TouchSession: %v", err)
		}
		got, err := s.Session(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := *a
		want.LastSeenAt = seen
		checkSession(t, got, &want)
		if err := s.TouchSession(ctx, sessionID(9), seen); !errors.Is(err, mfa.ErrNotFound) {
			t.Errorf("TouchSession of a missing session: got %v, want ErrNotFound", err)
		}

		if err := s.DeleteSession(ctx, a.ID); err != nil {
			t.Fatalf("DeleteSession: %v", err)
		}
		if !sessionGone(t, s, a.ID) || sessionGone(t, s, b.ID) {
			t.Error("DeleteSession removed the wrong sessions")
		}
		if err := s.DeleteSession(ctx, a.ID); err != nil {
			t.Errorf("DeleteSession of a missing session: got %v, want nil", err)
		}

		d := newSession(u.ID, 4, mfa.LevelFull, base.Add(time.Hour))
		createSession(t, s, d)
		if err := s.DeleteUserSessions(ctx, u.ID); err != nil {
			t.Fatalf("DeleteUserSessions: %v", err)
		}
		if !sessionGone(t, s, b.ID) || !sessionGone(t, s, d.ID) {
			t.Error("DeleteUserSessions left a session of the user")
		}
		if sessionGone(t, s, c.ID) {
			t.Error("DeleteUserSessions removed another user's session")
		}
		if err := s.DeleteUserSessions(ctx, u.ID); err != nil {
			t.Errorf("DeleteUserSessions of a user without sessions: got %v, want nil", err)
		}
	})

	t.Run("DeleteExpired", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		now := base.Add(24 * time.Hour).Truncate(time.Millisecond)
		expired := []*mfa.Session{
			newSession(u.ID, 1, mfa.LevelFull, now.Add(-time.Millisecond)),
			newSession(u.ID, 2, mfa.LevelPassword, now.Add(-time.Hour)),
			newSession(u.ID, 3, mfa.LevelFull, now.Add(-30*24*time.Hour)),
		}
		live := []*mfa.Session{
			newSession(u.ID, 4, mfa.LevelFull, now), // not before now
			newSession(u.ID, 5, mfa.LevelFull, now.Add(time.Millisecond)),
			newSession(u.ID, 6, mfa.LevelFull, now.Add(12*time.Hour)),
		}
		for _, sess := range append(slices.Clone(expired), live...) {
			createSession(t, s, sess)
		}
		n, err := s.DeleteExpiredSessions(ctx, now)
		if err != nil || n != len(expired) {
			t.Errorf("DeleteExpiredSessions: got %d, %v, want %d, nil", n, err, len(expired))
		}
		for _, sess := range expired {
			if !sessionGone(t, s, sess.ID) {
				t.Errorf("session expiring at %v is still there", sess.ExpiresAt)
			}
		}
		for _, sess := range live {
			if sessionGone(t, s, sess.ID) {
				t.Errorf("session expiring at %v was removed", sess.ExpiresAt)
			}
		}
		if n, err := s.DeleteExpiredSessions(ctx, now); err != nil || n != 0 {
			t.Errorf("DeleteExpiredSessions again: got %d, %v, want 0, nil", n, err)
		}
	})
}

func always(mfa.ThrottleState) bool { return true }

func never(mfa.ThrottleState) bool { return false }

func checkThrottle(t *testing.T, what string, got, want mfa.ThrottleState) {
	t.Helper()
	if got.Consecutive != want.Consecutive || got.WindowCount != want.WindowCount {
		t.Errorf("%s: got consecutive %d, window %d, want %d, %d", what, got.Consecutive, got.WindowCount, want.Consecutive, want.WindowCount)
	}
	checkTime(t, what+": LastFailure", got.LastFailure, want.LastFailure)
	checkTime(t, what+": WindowOldest", got.WindowOldest, want.WindowOldest)
}

func testThrottle(t *testing.T, newStore func(t *testing.T) mfa.Store) {
	key := mfa.ThrottleKey{Subject: "user:1", Method: mfa.MethodTOTP}
	longAgo := base.Add(-mfa.ThrottleWindow)

	t.Run("RecordWithEvents", func(t *testing.T) {
		// The events of a failure are stored in its write, given the state
		// with the failure counted; a refused failure stores none, and no
		// event of a failure queues a notice.
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		at := base.Add(time.Minute)
		if _, _, err := s.RecordFailure(ctx, key, base, longAgo, always, nil); err != nil {
			t.Fatal(err)
		}
		var given mfa.ThrottleState
		events := func(st mfa.ThrottleState) []mfa.Event {
			given = st
			return []mfa.Event{
				{UserID: u.ID, Type: mfa.EventSecondFactorFailed, At: at, IP: "192.0.2.1", Detail: "totp"},
				{UserID: u.ID, Type: mfa.EventThrottled, At: at, IP: "192.0.2.1", Detail: "totp locked for 30s", Notify: true},
			}
		}
		if _, ok, err := s.RecordFailure(ctx, key, at, longAgo, never, events); ok || err != nil {
			t.Fatalf("RecordFailure refused by admit: got %v, %v, want false, nil", ok, err)
		}
		if evs, err := s.Events(ctx, u.ID, 10); err != nil || len(evs) != 0 {
			t.Fatalf("events of a refused failure: got %d, %v, want none stored", len(evs), err)
		}
		st, ok, err := s.RecordFailure(ctx, key, at, longAgo, always, events)
		if !ok || err != nil {
			t.Fatalf("RecordFailure: got %v, %v, want true, nil", ok, err)
		}
		want := mfa.ThrottleState{Consecutive: 2, LastFailure: at, WindowCount: 2, WindowOldest: base}
		checkThrottle(t, "the state given to events", given, want)
		checkThrottle(t, "RecordFailure with events", st, want)
		evs, err := s.Events(ctx, u.ID, 10)
		if err != nil || len(evs) != 2 {
			t.Fatalf("events stored with the failure: got %d, %v, want 2", len(evs), err)
		}
		for i, want := range events(st) {
			got := evs[len(evs)-1-i] // newest first
			if got.ID == 0 || got.UserID != want.UserID || got.Type != want.Type || got.IP != want.IP || got.Detail != want.Detail {
				t.Errorf("event %d: got %+v, want %+v", i, got, want)
			}
			checkTime(t, fmt.Sprintf("event %d: At", i), got.At, want.At)
		}
		if ids := claimIDs(t, s, at.Add(time.Hour), at.Add(2*time.Hour), 10); len(ids) != 0 {
			t.Errorf("notices queued by a failure's events: %v, want none", ids)
		}
	})

	t.Run("Record", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		st, err := s.ThrottleState(ctx, key, longAgo)
		if err != nil {
			t.Fatalf("ThrottleState: %v", err)
		}
		checkThrottle(t, "a new key", st, mfa.ThrottleState{})

		times := []time.Time{base, base.Add(time.Minute), base.Add(2 * time.Minute)}
		for i, at := range times {
			var seen mfa.ThrottleState
			st, ok, err := s.RecordFailure(ctx, key, at, longAgo, func(st mfa.ThrottleState) bool { seen = st; return true }, nil)
			if !ok || err != nil {
				t.Fatalf("RecordFailure %d: got %v, %v, want true, nil", i, ok, err)
			}
			var before mfa.ThrottleState
			if i > 0 {
				before = mfa.ThrottleState{Consecutive: i, LastFailure: times[i-1], WindowCount: i, WindowOldest: base}
			}
			checkThrottle(t, fmt.Sprintf("admit's argument at failure %d", i+1), seen, before)
			want := mfa.ThrottleState{Consecutive: i + 1, LastFailure: at, WindowCount: i + 1, WindowOldest: base}
			checkThrottle(t, fmt.Sprintf("RecordFailure %d", i+1), st, want)
			got, err := s.ThrottleState(ctx, key, longAgo)
			if err != nil {
				t.Fatal(err)
			}
			checkThrottle(t, fmt.Sprintf("ThrottleState after failure %d", i+1), got, want)
		}

		last := times[2]
		for _, tc := range []struct {
			since  time.Time
			count  int
			oldest time.Time
		}{
			{longAgo, 3, times[0]},
			{times[0], 3, times[0]}, // at since counts
			{times[0].Add(time.Millisecond), 2, times[1]},
			{times[1], 2, times[1]},
			{times[2], 1, times[2]},
			{times[2].Add(time.Second), 0, time.Time{}},
		} {
			got, err := s.ThrottleState(ctx, key, tc.since)
			if err != nil {
				t.Fatal(err)
			}
			checkThrottle(t, fmt.Sprintf("ThrottleState since %v", tc.since.Sub(base)), got,
				mfa.ThrottleState{Consecutive: 3, LastFailure: last, WindowCount: tc.count, WindowOldest: tc.oldest})
		}

		// A refused failure records nothing.
		want := mfa.ThrottleState{Consecutive: 3, LastFailure: last, WindowCount: 3, WindowOldest: base}
		st, ok, err := s.RecordFailure(ctx, key, base.Add(time.Hour), longAgo, func(mfa.ThrottleState) bool { return false }, nil)
		if ok || err != nil {
			t.Errorf("RecordFailure refused by admit: got %v, %v, want false, nil", ok, err)
		}
		checkThrottle(t, "RecordFailure refused by admit", st, want)
		got, err := s.ThrottleState(ctx, key, longAgo)
		if err != nil {
			t.Fatal(err)
		}
		checkThrottle(t, "ThrottleState after a refused failure", got, want)

		// A reset naming no recorded attempt clears the consecutive count only.
		if err := s.ResetThrottle(ctx, key, base.Add(time.Hour)); err != nil {
			t.Fatalf("ResetThrottle: %v", err)
		}
		got, err = s.ThrottleState(ctx, key, longAgo)
		if err != nil {
			t.Fatal(err)
		}
		checkThrottle(t, "ThrottleState after ResetThrottle", got, mfa.ThrottleState{LastFailure: last, WindowCount: 3, WindowOldest: base})
		at := base.Add(3 * time.Minute)
		st, ok, err = s.RecordFailure(ctx, key, at, longAgo, always, nil)
		if !ok || err != nil {
			t.Fatalf("RecordFailure after reset: got %v, %v", ok, err)
		}
		checkThrottle(t, "RecordFailure after ResetThrottle", st, mfa.ThrottleState{Consecutive: 1, LastFailure: at, WindowCount: 4, WindowOldest: base})
		// A reset naming that attempt forgets it: it succeeded after all.
		if err := s.ResetThrottle(ctx, key, at); err != nil {
			t.Fatalf("ResetThrottle(attempt): %v", err)
		}
		got, err = s.ThrottleState(ctx, key, longAgo)
		if err != nil {
			t.Fatal(err)
		}
		checkThrottle(t, "ThrottleState after ResetThrottle of the last attempt", got, mfa.ThrottleState{LastFailure: at, WindowCount: 3, WindowOldest: base})
		if err := s.ResetThrottle(ctx, mfa.ThrottleKey{Subject: "user:404", Method: mfa.MethodTOTP}, at); err != nil {
			t.Errorf("ResetThrottle of an unknown key: got %v, want nil", err)
		}
	})

	t.Run("Window", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		for i := range 5 {
			if _, ok, err := s.RecordFailure(ctx, key, base.Add(time.Duration(i)*time.Hour), longAgo, always, nil); !ok || err != nil {
				t.Fatalf("RecordFailure: got %v, %v", ok, err)
			}
		}
		// A failure recorded with a later window counts only what is in it.
		at := base.Add(5 * time.Hour)
		since := base.Add(3 * time.Hour)
		st, ok, err := s.RecordFailure(ctx, key, at, since, always, nil)
		if !ok || err != nil {
			t.Fatalf("RecordFailure: got %v, %v", ok, err)
		}
		want := mfa.ThrottleState{Consecutive: 6, LastFailure: at, WindowCount: 3, WindowOldest: since}
		checkThrottle(t, "RecordFailure with a later window", st, want)
		got, err := s.ThrottleState(ctx, key, since)
		if err != nil {
			t.Fatal(err)
		}
		checkThrottle(t, "ThrottleState with that window", got, want)
	})

	t.Run("IndependentKeys", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		if _, _, err := s.RecordFailure(ctx, key, base, longAgo, always, nil); err != nil {
			t.Fatal(err)
		}
		for _, k := range []mfa.ThrottleKey{
			{Subject: "user:2", Method: mfa.MethodTOTP},
			{Subject: "user:1", Method: mfa.MethodBackupCode},
			{Subject: "user:10", Method: mfa.MethodTOTP},
			{Subject: "", Method: mfa.MethodTOTP},
		} {
			st, err := s.ThrottleState(ctx, k, longAgo)
			if err != nil {
				t.Fatal(err)
			}
			checkThrottle(t, fmt.Sprintf("key %+v", k), st, mfa.ThrottleState{})
		}
		other := mfa.ThrottleKey{Subject: "user:1", Method: mfa.MethodBackupCode}
		if _, _, err := s.RecordFailure(ctx, other, base, longAgo, always, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.ResetThrottle(ctx, other, base); err != nil {
			t.Fatal(err)
		}
		st, err := s.ThrottleState(ctx, key, longAgo)
		if err != nil {
			t.Fatal(err)
		}
		checkThrottle(t, "a key after another key's failure and reset", st,
			mfa.ThrottleState{Consecutive: 1, LastFailure: base, WindowCount: 1, WindowOldest: base})
	})

	t.Run("DeleteStale", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		recent := mfa.ThrottleKey{Subject: "user:2", Method: mfa.MethodTOTP}
		for _, at := range []time.Time{base, base.Add(time.Hour)} {
			if _, _, err := s.RecordFailure(ctx, recent, at, longAgo, always, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := s.RecordFailure(ctx, key, base, longAgo, always, nil); err != nil {
			t.Fatal(err)
		}
		cut := base.Add(time.Minute)
		n, err := s.DeleteStaleThrottles(ctx, cut)
		if err != nil || n != 1 {
			t.Fatalf("DeleteStaleThrottles: got %d, %v, want 1, nil", n, err)
		}
		st, err := s.ThrottleState(ctx, key, longAgo)
		if err != nil {
			t.Fatal(err)
		}
		checkThrottle(t, "a stale key", st, mfa.ThrottleState{})
		st, err = s.ThrottleState(ctx, recent, longAgo)
		if err != nil {
			t.Fatal(err)
		}
		checkThrottle(t, "a recent key", st, mfa.ThrottleState{Consecutive: 2, LastFailure: base.Add(time.Hour),
			WindowCount: 1, WindowOldest: base.Add(time.Hour)})
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := newStore(t)
		const ceiling = 10
		n := 5 * ceiling
		recorded := race(t, n, func(i int) (bool, error) {
			at := base.Add(time.Duration(i) * time.Millisecond)
			_, ok, err := s.RecordFailure(t.Context(), key, at, longAgo,
				func(st mfa.ThrottleState) bool { return st.WindowCount < ceiling }, nil)
			return ok, err
		})
		if recorded != ceiling {
			t.Errorf("%d concurrent RecordFailure admitted while WindowCount < %d: got %d recorded, want %d", n, ceiling, recorded, ceiling)
		}
		st, err := s.ThrottleState(t.Context(), key, longAgo)
		if err != nil {
			t.Fatal(err)
		}
		if st.WindowCount != ceiling || st.Consecutive != ceiling {
			t.Errorf("after the race: got window %d, consecutive %d, want %d, %d", st.WindowCount, st.Consecutive, ceiling, ceiling)
		}
	})
}

func testEvents(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	u := createUser(t, s, "u@example.com")
	other := createUser(t, s, "other@example.com")
	if evs, err := s.Events(ctx, u.ID, 10); err != nil || len(evs) != 0 {
		t.Fatalf("Events of a new user: got %d, %v, want none", len(evs), err)
	}
	types := []mfa.EventType{mfa.EventAccountCreated, mfa.EventLoginFailed, mfa.EventLoginSucceeded, mfa.EventTwoFactorEnabled, mfa.EventLogout}
	var added []mfa.Event
	for i, typ := range types {
		e := &mfa.Event{UserID: u.ID, Type: typ, At: base.Add(time.Duration(i) * time.Minute), IP: fmt.Sprintf("192.0.2.%d", i), Detail: fmt.Sprint("detail ", i)}
		if err := s.AddEvent(ctx, e); err != nil {
			t.Fatalf("AddEvent: %v", err)
		}
		if e.ID == 0 {
			t.Fatal("AddEvent did not set the ID")
		}
		added = append(added, *e)
		if err := s.AddEvent(ctx, &mfa.Event{UserID: other.ID, Type: mfa.EventLoginSucceeded, At: base}); err != nil {
			t.Fatal(err)
		}
	}
	for _, limit := range []int{1, 3, 5, 10} {
		evs, err := s.Events(ctx, u.ID, limit)
		if err != nil {
			t.Fatalf("Events: %v", err)
		}
		if want := min(limit, len(added)); len(evs) != want {
			t.Errorf("Events(limit %d): got %d events, want %d", limit, len(evs), want)
			continue
		}
		for i, got := range evs {
			want := added[len(added)-1-i]
			if got.ID != want.ID || got.UserID != u.ID || got.Type != want.Type || got.IP != want.IP || got.Detail != want.Detail {
				t.Errorf("Events(limit %d)[%d]: got %+v, want %+v", limit, i, got, want)
			}
			checkTime(t, "At", got.At, want.At)
		}
	}
	if evs, err := s.Events(ctx, other.ID, 100); err != nil || len(evs) != len(types) {
		t.Errorf("other user's events: got %d, %v, want %d", len(evs), err, len(types))
	}

	// CountEvents: of the types asked for, at or after since, the user's own.
	changes := []mfa.EventType{mfa.EventLoginFailed, mfa.EventTwoFactorEnabled, mfa.EventTwoFactorDisabled}
	for _, c := range []struct {
		userID int64
		types  []mfa.EventType
		since  time.Time
		want   int
	}{
		{u.ID, changes, base, 2},
		{u.ID, changes, base.Add(time.Minute), 2}, // at since counts
		{u.ID, changes, base.Add(time.Minute + time.Millisecond), 1},
		{u.ID, changes, base.Add(5 * time.Minute), 0},
		{u.ID, nil, base, 0},
		{u.ID, []mfa.EventType{mfa.EventLoginSucceeded}, base, 1},
		{other.ID, []mfa.EventType{mfa.EventLoginSucceeded}, base, len(types)},
		{other.ID, changes, base, 0},
	} {
		if got, err := s.CountEvents(ctx, c.userID, c.types, c.since); err != nil || got != c.want {
			t.Errorf("CountEvents(user %d, %v, since %v): got %d, %v, want %d", c.userID, c.types, c.since, got, err, c.want)
		}
	}
}

// testSignInView checks that the password step's one read finds what
// ThrottleState, UserByEmail and Factors find, each for its own key,
// address and user.
func testSignInView(t *testing.T, s mfa.Store) {
	ctx := t.Context()
	key := mfa.ThrottleKey{Subject: "email:u", Method: mfa.MethodPassword}
	otherKey := mfa.ThrottleKey{Subject: "email:other", Method: mfa.MethodPassword}
	since := base.Add(-mfa.ThrottleWindow)
	view := func(email string, key mfa.ThrottleKey) *mfa.SignInView {
		t.Helper()
		v, err := s.SignInView(ctx, email, key, since)
		if err != nil {
			t.Fatalf("SignInView(%q): %v", email, err)
		}
		return v
	}

	if v := view("nobody@example.com", key); v.User != nil || len(v.Factors) != 0 {
		t.Errorf("an unknown address: got user %+v, factors %+v", v.User, v.Factors)
	} else {
		checkThrottle(t, "a new key", v.Throttle, mfa.ThrottleState{})
	}

	u := createUser(t, s, "u@example.com")
	other := createUser(t, s, "other@example.com")
	if v := view(u.Email, key); v.User == nil || len(v.Factors) != 0 {
		t.Errorf("a user without factors: got user %+v, factors %+v", v.User, v.Factors)
	}
	on := confirmed(t, s, u.ID, "sealed secret", 7)
	pending := savePending(t, s, u.ID, "pending secret", base.Add(time.Hour))
	confirmed(t, s, other.ID, "other secret", 3)
	for _, at := range []time.Time{base.Add(-mfa.ThrottleWindow - time.Minute), base, base.Add(time.Minute)} {
		if _, ok, err := s.RecordFailure(ctx, key, at, since.Add(-time.Hour), always, nil); !ok || err != nil {
			t.Fatalf("RecordFailure: %v, %v", ok, err)
		}
	}
	if _, ok, err := s.RecordFailure(ctx, otherKey, base, since, always, nil); !ok || err != nil {
		t.Fatalf("RecordFailure: %v, %v", ok, err)
	}

	v := view(u.Email, key)
	byEmail, err := s.UserByEmail(ctx, u.Email)
	if err != nil {
		t.Fatal(err)
	}
	if v.User == nil || !reflect.DeepEqual(*v.User, *byEmail) {
		t.Errorf("user: got %+v, want %+v as UserByEmail finds it", v.User, byEmail)
	}
	fs, err := s.Factors(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Factors) != 2 || v.Factors[0].ID != on.ID || v.Factors[1].ID != pending.ID || !reflect.DeepEqual(v.Factors, fs) {
		t.Errorf("factors: got %+v, want %d then %d as Factors finds them: %+v", v.Factors, on.ID, pending.ID, fs)
	}
	// The failure before since is not counted in the window.
	checkThrottle(t, "the key's state", v.Throttle,
		mfa.ThrottleState{Consecutive: 3, LastFailure: base.Add(time.Minute), WindowCount: 2, WindowOldest: base})

	// Another address, another key: each its own.
	if v := view(other.Email, otherKey); v.User == nil || v.User.ID != other.ID || len(v.Factors) != 1 || v.Factors[0].UserID != other.ID {
		t.Errorf("the other user: got %+v, factors %+v", v.User, v.Factors)
	} else {
		checkThrottle(t, "the other key", v.Throttle, mfa.ThrottleState{Consecutive: 1, LastFailure: base, WindowCount: 1, WindowOldest: base})
	}
}
