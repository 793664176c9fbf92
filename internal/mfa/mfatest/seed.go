package mfatest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/transfer"
)

// SeedEveryTable fills an empty store, through its methods only, as a few
// days of use would: two users, one with a confirmed TOTP factor, a pending
// one and regenerated backup codes of which two are used; the other with
// 2FA enabled and then disabled, so the factor and the codes with the
// highest IDs are deleted; sessions of both levels, three throttle keys
// (one with consecutive failures, one reset by a sign-in, one of the
// password step) with their failures; events of every kind the sign-ins
// wrote. Bytes include a NUL and invalid UTF-8, text non-ASCII letters.
//
// It returns what an export of the store must hold: every row as stored
// (UTC, whole milliseconds), in primary-key order, and the highest ID each
// table handed out, which for factors and backup codes is above the
// highest ID left.
func SeedEveryTable(t testing.TB, s mfa.Store) *transfer.Data {
	t.Helper()
	ctx := t.Context()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("seed: %s: %v", what, err)
		}
	}
	at := func(d time.Duration) time.Time { return base.Add(d) }
	var events []*mfa.Event
	event := func(userID int64, typ mfa.EventType, when time.Time, ip, detail string) *mfa.Event {
		e := &mfa.Event{UserID: userID, Type: typ, At: when, IP: ip, Detail: detail}
		events = append(events, e)
		return e
	}
	addEvent := func(userID int64, typ mfa.EventType, when time.Time, ip, detail string) {
		t.Helper()
		must("AddEvent", s.AddEvent(ctx, event(userID, typ, when, ip, detail)))
	}

	ada := &mfa.User{Email: "ada@example.com", PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$YWRhLXNhbHQ$YWRhLWhhc2g", CreatedAt: at(0)}
	must("CreateUser", s.CreateUser(ctx, ada))
	addEvent(ada.ID, mfa.EventAccountCreated, at(0), "192.0.2.1", "")
	bob := &mfa.User{Email: "zoë@example.com", PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$Ym9iLXNhbHQ$Ym9iLWhhc2g", CreatedAt: at(time.Minute)}
	must("CreateUser", s.CreateUser(ctx, bob))
	addEvent(bob.ID, mfa.EventAccountCreated, at(time.Minute), "2001:db8::2", "Zoë, née Müller")

	// Ada: a confirmed factor, regenerated codes, then a pending factor.
	const step = 58_000_000
	f1 := &mfa.Factor{UserID: ada.ID, Kind: mfa.FactorTOTP, Secret: []byte("sealed\x00secret\xff1"), CreatedAt: at(2 * time.Minute)}
	must("SavePendingFactor", s.SavePendingFactor(ctx, f1))
	must("ConfirmFactor", s.ConfirmFactor(ctx, f1.ID, at(3*time.Minute), step, newCodes("ada-first", 10),
		event(ada.ID, mfa.EventTwoFactorEnabled, at(3*time.Minute), "192.0.2.1", "authenticator app")))
	f1.ConfirmedAt, f1.LastStep = at(3*time.Minute), step
	adaCodes := newCodes("ada-second", 10)
	must("ReplaceBackupCodes", s.ReplaceBackupCodes(ctx, ada.ID, adaCodes,
		event(ada.ID, mfa.EventBackupCodesRegenerated, at(4*time.Minute), "192.0.2.1", "")))
	f2 := &mfa.Factor{UserID: ada.ID, Kind: mfa.FactorTOTP, Secret: []byte("sealed\x00secret\xff2"), CreatedAt: at(5 * time.Minute)}
	must("SavePendingFactor", s.SavePendingFactor(ctx, f2))

	// Bob: 2FA enabled and disabled: the newest factor and codes are gone.
	f3 := &mfa.Factor{UserID: bob.ID, Kind: mfa.FactorTOTP, Secret: []byte("sealed\x00secret\xff3"), CreatedAt: at(6 * time.Minute)}
	must("SavePendingFactor", s.SavePendingFactor(ctx, f3))
	bobCodes := newCodes("bob", 10)
	bobOn := event(bob.ID, mfa.EventTwoFactorEnabled, at(7*time.Minute), "2001:db8::2", "authenticator app")
	bobOn.Notify = true
	must("ConfirmFactor", s.ConfirmFactor(ctx, f3.ID, at(7*time.Minute), step+10, bobCodes, bobOn))
	bobOff := event(bob.ID, mfa.EventTwoFactorDisabled, at(8*time.Minute), "2001:db8::2", "")
	bobOff.Notify = true
	must("DeleteFactors", s.DeleteFactors(ctx, bob.ID, bobOff))
	// Their notices: the first claimed once and due again in an hour.
	claimed, err := s.ClaimNotices(ctx, at(7*time.Minute), at(time.Hour), 10)
	must("ClaimNotices", err)
	if len(claimed) != 1 || claimed[0].Event.ID != bobOn.ID {
		t.Fatalf("seed: ClaimNotices: got %+v, want the notice of event %d", claimed, bobOn.ID)
	}

	// Ada signs in three times: with a TOTP code after a failed one, then
	// with two backup codes.
	adaTOTP := mfa.ThrottleKey{Subject: fmt.Sprintf("user:%d", ada.ID), Method: mfa.MethodTOTP}
	since := base.Add(-24 * time.Hour)
	if _, ok, err := s.RecordFailure(ctx, adaTOTP, at(9*time.Minute), since, always, nil); err != nil || !ok {
		t.Fatalf("seed: RecordFailure: %v, %v", ok, err)
	}
	addEvent(ada.ID, mfa.EventSecondFactorFailed, at(9*time.Minute), "192.0.2.1", "totp")
	var sessions []*mfa.Session
	for i, up := range []mfa.Upgrade{
		{ClaimFactor: f1.ID, ClaimStep: step + 1, Throttle: adaTOTP, Since: since, Admit: always},
		{BackupCode: adaCodes[1].ID},
		{BackupCode: adaCodes[4].ID},
	} {
		when := at(time.Duration(10+i) * time.Minute)
		pending := &mfa.Session{ID: seedSessionID("ada pending", i), UserID: ada.ID, Level: mfa.LevelPassword,
			CreatedAt: when.Add(-time.Second), LastSeenAt: when.Add(-time.Second), ExpiresAt: when.Add(12 * time.Hour), IP: "192.0.2.1"}
		must("CreateSession", s.CreateSession(ctx, pending))
		up.Old = pending.ID
		up.Next = &mfa.Session{ID: seedSessionID("ada full", i), UserID: ada.ID, Level: mfa.LevelFull,
			CreatedAt: when, LastSeenAt: when, ExpiresAt: when.Add(12 * time.Hour), IP: "192.0.2.1"}
		typ := mfa.EventLoginSucceeded
		if up.BackupCode != 0 {
			typ = mfa.EventBackupCodeUsed
		}
		up.Event = event(ada.ID, typ, when, "192.0.2.1", "")
		ok, err := s.UpgradeSession(ctx, up)
		must("UpgradeSession", err)
		if !ok {
			t.Fatalf("seed: UpgradeSession %d: got false, want true", i)
		}
		sessions = append(sessions, up.Next)
	}
	f1.LastStep = step + 1
	adaCodes[1].UsedAt, adaCodes[4].UsedAt = at(11*time.Minute), at(12*time.Minute)
	must("TouchSession", s.TouchSession(ctx, sessions[0].ID, at(20*time.Minute)))
	sessions[0].LastSeenAt = at(20 * time.Minute)

	// Bob: signed in with his password, then three wrong codes; and a
	// wrong password for an address.
	bobPending := &mfa.Session{ID: seedSessionID("bob pending", 0), UserID: bob.ID, Level: mfa.LevelPassword,
		CreatedAt: at(21 * time.Minute), LastSeenAt: at(21 * time.Minute), ExpiresAt: at(21*time.Minute + 12*time.Hour), IP: "2001:db8::2"}
	must("CreateSession", s.CreateSession(ctx, bobPending))
	sessions = append(sessions, bobPending)
	bobTOTP := mfa.ThrottleKey{Subject: fmt.Sprintf("user:%d", bob.ID), Method: mfa.MethodTOTP}
	for i := range 3 {
		when := at(time.Duration(22+i) * time.Minute)
		_, ok, err := s.RecordFailure(ctx, bobTOTP, when, since, always, nil)
		must("RecordFailure", err)
		if !ok {
			t.Fatal("seed: RecordFailure refused a failure admit approved")
		}
		addEvent(bob.ID, mfa.EventSecondFactorFailed, when, "2001:db8::2", "totp")
	}
	emailKey := mfa.ThrottleKey{Subject: "email:9f86d081884c7d659a2feaa0c55ad015", Method: mfa.MethodPassword}
	_, _, err = s.RecordFailure(ctx, emailKey, at(25*time.Minute), since, always, nil)
	must("RecordFailure", err)
	addEvent(bob.ID, mfa.EventLoginFailed, at(25*time.Minute), "198.51.100.7", "wrong password")

	// What the store holds now, as a store keeps it.
	want := &transfer.Data{
		Users:   []mfa.User{storedUser(*ada), storedUser(*bob)},
		Factors: []mfa.Factor{copyFactor(*f1), copyFactor(*f2)},
		Throttles: []transfer.Throttle{
			{Key: adaTOTP, Consecutive: 0, LastFailure: storedTime(at(9 * time.Minute))},
			{Key: bobTOTP, Consecutive: 3, LastFailure: storedTime(at(24 * time.Minute))},
			{Key: emailKey, Consecutive: 1, LastFailure: storedTime(at(25 * time.Minute))},
		},
		ThrottleFailures: []transfer.Failure{
			{Key: adaTOTP, At: storedTime(at(9 * time.Minute))},
			{Key: bobTOTP, At: storedTime(at(22 * time.Minute))},
			{Key: bobTOTP, At: storedTime(at(23 * time.Minute))},
			{Key: bobTOTP, At: storedTime(at(24 * time.Minute))},
			{Key: emailKey, At: storedTime(at(25 * time.Minute))},
		},
		Notices: []transfer.Notice{
			{EventID: bobOn.ID, Due: storedTime(at(time.Hour)), Attempts: 1},
			{EventID: bobOff.ID, Due: storedTime(at(8 * time.Minute)), Attempts: 0},
		},
	}
	for _, c := range adaCodes {
		want.BackupCodes = append(want.BackupCodes, copyCode(c))
	}
	for _, sess := range sessions {
		want.Sessions = append(want.Sessions, copySession(*sess))
	}
	slices.SortFunc(want.Sessions, func(a, b mfa.Session) int { return bytes.Compare(a.ID, b.ID) })
	slices.SortFunc(want.Throttles, func(a, b transfer.Throttle) int { return compareKeys(a.Key, b.Key) })
	slices.SortFunc(want.ThrottleFailures, func(a, b transfer.Failure) int {
		return cmp.Or(compareKeys(a.Key, b.Key), a.At.Compare(b.At))
	})
	for _, e := range events {
		e := *e
		e.At, e.Notify = storedTime(e.At), false // Notify is not read back
		want.Events = append(want.Events, e)
	}
	slices.SortFunc(want.Events, func(a, b mfa.Event) int { return cmp.Compare(a.ID, b.ID) })
	want.Sequences = transfer.Sequences{
		Users:       bob.ID,
		Factors:     f3.ID,
		BackupCodes: bobCodes[len(bobCodes)-1].ID,
		Events:      want.Events[len(want.Events)-1].ID,
	}

	// The point of bob's deleted rows: sequences above the IDs left.
	if want.Sequences.Factors <= f2.ID || want.Sequences.BackupCodes <= adaCodes[len(adaCodes)-1].ID {
		t.Fatalf("seed: deleted IDs %d (factor), %d (code) are not above the IDs left %d, %d",
			want.Sequences.Factors, want.Sequences.BackupCodes, f2.ID, adaCodes[len(adaCodes)-1].ID)
	}
	return want
}

// seedSessionID is the SHA-256 of a made-up token, as a session ID is.
func seedSessionID(name string, i int) []byte {
	id := sha256.Sum256(fmt.Appendf(nil, "%s %d", name, i))
	return id[:]
}

func storedUser(u mfa.User) mfa.User {
	u.CreatedAt = storedTime(u.CreatedAt)
	return u
}

// compareKeys orders throttle keys as the tables' primary keys do: byte by byte.
func compareKeys(a, b mfa.ThrottleKey) int {
	return cmp.Or(strings.Compare(a.Subject, b.Subject), strings.Compare(string(a.Method), string(b.Method)))
}

// CompareData reports on t every difference between two exports, table by
// table and row by row, down to the time zone of a time and nil slices.
func CompareData(t testing.TB, got, want *transfer.Data) {
	t.Helper()
	compareRows(t, "users", got.Users, want.Users)
	compareRows(t, "factors", got.Factors, want.Factors)
	compareRows(t, "backup_codes", got.BackupCodes, want.BackupCodes)
	compareRows(t, "sessions", got.Sessions, want.Sessions)
	compareRows(t, "throttles", got.Throttles, want.Throttles)
	compareRows(t, "throttle_failures", got.ThrottleFailures, want.ThrottleFailures)
	compareRows(t, "events", got.Events, want.Events)
	compareRows(t, "notices", got.Notices, want.Notices)
	if got.Sequences != want.Sequences {
		t.Errorf("sequences: got %+v, want %+v", got.Sequences, want.Sequences)
	}
}

func compareRows[T any](t testing.TB, table string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d rows, want %d", table, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			g, w := fmt.Sprintf("%+v", got[i]), fmt.Sprintf("%+v", want[i])
			if g == w { // a difference %+v hides, such as a time's location
				g, w = fmt.Sprintf("%#v", got[i]), fmt.Sprintf("%#v", want[i])
			}
			t.Errorf("%s row %d:\ngot  %s\nwant %s", table, i, g, w)
		}
	}
}

// CreateUsersUntil creates users, each with an event, one after another
// until ctx ends, for tests of what reads while the store is written. The
// function it returns waits for the writing to stop.
func CreateUsersUntil(ctx context.Context, s mfa.Store) (wait func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			u := &mfa.User{Email: fmt.Sprintf("user%d@example.com", i), PasswordHash: "h", CreatedAt: time.Now()}
			if err := s.CreateUser(ctx, u); err != nil {
				return // cancelled
			}
			if err := s.AddEvent(ctx, &mfa.Event{UserID: u.ID, Type: mfa.EventAccountCreated, At: time.Now()}); err != nil {
				return
			}
		}
	})
	return wg.Wait
}
