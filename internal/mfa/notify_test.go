package mfa_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/otp"
)

// fakeNotifier keeps the notices handed to it; fail, when set, decides
// whether an attempt fails and with which error.
type fakeNotifier struct {
	mu        sync.Mutex
	delivered []mfa.Notice
	attempts  int
	fail      func(attempt int) error
	arrived   chan struct{}    // a value per delivery, when not nil
	clock     func() time.Time // when set, the time of each attempt goes to tried
	tried     []time.Time
}

func (n *fakeNotifier) Notify(ctx context.Context, notice mfa.Notice) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.attempts++
	if n.clock != nil {
		n.tried = append(n.tried, n.clock())
	}
	if n.fail != nil {
		if err := n.fail(n.attempts); err != nil {
			return err
		}
	}
	n.delivered = append(n.delivered, notice)
	if n.arrived != nil {
		n.arrived <- struct{}{}
	}
	return nil
}

func (n *fakeNotifier) counts() (attempts, delivered int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.attempts, len(n.delivered)
}

// newNotifyingFixture is a fixture whose Service tells n of changes.
func newNotifyingFixture(t *testing.T, n mfa.Notifier) *fixture {
	t.Helper()
	return newFixtureNotifying(t, func(s mfa.Store) mfa.Store { return s }, n)
}

// deliver runs one pass of delivery and returns how many notices it claimed.
func deliver(t *testing.T, f *fixture) int {
	t.Helper()
	n, err := f.svc.DeliverDueNotices(t.Context())
	if err != nil {
		t.Fatalf("DeliverDueNotices: %v", err)
	}
	return n
}

// TestNoticesOfChanges makes every change to an account's protection, with
// sign-ins between: each change, and only a change or the use of a backup
// code, is told to the account's address, in words that hold no secret.
func TestNoticesOfChanges(t *testing.T) {
	n := &fakeNotifier{}
	f := newNotifyingFixture(t, n)
	ctx := t.Context()
	u := f.user(t, "ann@example.com")
	f.user(t, "bob@example.com") // told nothing: nothing of his changes
	secret, codes := f.enable(t, u)
	f.pastSpentSteps(secret)

	_, _ = f.svc.Login(ctx, u.Email, "wrong password!!", client)
	res := f.login(t, u.Email)
	if _, err := f.svc.VerifySecondFactor(ctx, res.Token, mfa.MethodTOTP, f.code(t, secret, 0), client); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodBackupCode, codes[0], client); err != nil {
		t.Fatal(err)
	}
	newCodes, err := f.svc.RegenerateBackupCodes(ctx, u, testPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	const newPassword = "a new password of mine"
	if _, err := f.svc.ChangePassword(ctx, u, testPassword, newPassword, client); err != nil {
		t.Fatal(err)
	}
	if u, err = f.store.UserByID(ctx, u.ID); err != nil { // with the new hash
		t.Fatal(err)
	}
	if _, err := f.svc.DisableTwoFactor(ctx, u, newPassword, client); err != nil {
		t.Fatal(err)
	}
	f.enableWith(t, u, newPassword)
	if err := f.svc.ResetTwoFactor(ctx, u.Email, mfa.Client{}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SetPassword(ctx, u.Email, testPassword, mfa.Client{IP: "command line"}); err != nil {
		t.Fatal(err)
	}

	for deliver(t, f) > 0 {
	}
	want := []mfa.EventType{mfa.EventTwoFactorEnabled, mfa.EventBackupCodeUsed, mfa.EventBackupCodesRegenerated,
		mfa.EventPasswordChanged, mfa.EventTwoFactorDisabled, mfa.EventTwoFactorEnabled, mfa.EventTwoFactorReset,
		mfa.EventPasswordReset}
	events, err := f.store.Events(ctx, u.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int64]mfa.Event{}
	for _, e := range events {
		byID[e.ID] = e
	}
	var got []mfa.EventType
	secrets := append([]string{testPassword, newPassword, string(secret), otp.EncodeSecret(secret)}, codes...)
	secrets = append(secrets, newCodes...)
	for _, notice := range n.delivered {
		e, ok := byID[notice.EventID]
		if !ok {
			t.Errorf("notice of event %d, not one of %s's", notice.EventID, u.Email)
			continue
		}
		got = append(got, e.Type)
		if notice.To != u.Email || !notice.At.Equal(e.At) || notice.Subject != "twofold: "+e.Summary() {
			t.Errorf("notice of %s: to %q at %v, subject %q; want to %q at %v, subject %q",
				e.Type, notice.To, notice.At, notice.Subject, u.Email, e.At, "twofold: "+e.Summary())
		}
		when := e.At.Format("Mon, 2 Jan 2006 15:04 MST")
		if !strings.Contains(notice.Body, e.Summary()) || !strings.Contains(notice.Body, when) || !strings.Contains(notice.Body, u.Email) {
			t.Errorf("notice of %s: body %q lacks what happened (%q), when (%q) or the account", e.Type, notice.Body, e.Summary(), when)
		}
		wantFrom := "From IP address: " + e.IP + "\n"
		if e.IP == "" || e.IP == "command line" {
			wantFrom = "From: " + cmp.Or(e.IP, "not known") + "\n"
		}
		if !strings.Contains(notice.Body, wantFrom) {
			t.Errorf("notice of %s: body %q lacks %q", e.Type, notice.Body, wantFrom)
		}
		for _, s := range secrets {
			if strings.Contains(notice.Body, s) || strings.Contains(notice.Subject, s) {
				t.Errorf("notice of %s holds a secret %q", e.Type, s)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("notices: got %v, want %v", got, want)
	}
	if q, err := f.store.ClaimNotices(ctx, f.clock.Now().Add(100*time.Hour), f.clock.Now().Add(101*time.Hour), 100); err != nil || len(q) != 0 {
		t.Errorf("notices left queued after delivery: %d, %v", len(q), err)
	}
}

// TestNoticeRetried: a notice that could not be handed on is tried again
// after a minute, then after twice as long each time, until it goes.
func TestNoticeRetried(t *testing.T) {
	n := &fakeNotifier{fail: func(attempt int) error {
		if attempt <= 3 {
			return errors.New("451 try again later")
		}
		return nil
	}}
	f := newNotifyingFixture(t, n)
	f.enable(t, f.user(t, "ann@example.com"))

	wantAttempts := 0
	for i, wait := range []time.Duration{0, time.Minute, 2 * time.Minute, 4 * time.Minute} {
		if i > 0 {
			f.clock.Advance(wait - time.Second)
			if got := deliver(t, f); got != 0 {
				t.Fatalf("attempt %d: claimed %d notices a second before the retry is due, want 0", i+1, got)
			}
			f.clock.Advance(time.Second)
		}
		if got := deliver(t, f); got != 1 {
			t.Fatalf("attempt %d: claimed %d notices, want 1", i+1, got)
		}
		wantAttempts++
		if attempts, _ := n.counts(); attempts != wantAttempts {
			t.Fatalf("attempts: got %d, want %d", attempts, wantAttempts)
		}
	}
	if _, delivered := n.counts(); delivered != 1 {
		t.Fatalf("delivered: got %d, want 1 at the fourth attempt", delivered)
	}
	f.clock.Advance(24 * time.Hour)
	if got := deliver(t, f); got != 0 {
		t.Errorf("claimed %d notices after delivery, want none", got)
	}
}

// TestNoticeRetrySchedule: retries wait 1, 2, 4, ... minutes, never more
// than an hour, for ten attempts in all.
func TestNoticeRetrySchedule(t *testing.T) {
	n := &fakeNotifier{fail: func(int) error { return errors.New("connection refused") }}
	f := newNotifyingFixture(t, n)
	n.clock = f.clock.Now
	f.enable(t, f.user(t, "ann@example.com"))
	start := f.clock.Now()
	for range 6 * 60 {
		deliver(t, f)
		f.clock.Advance(time.Minute)
	}
	var got []time.Duration
	for _, at := range n.tried {
		got = append(got, at.Sub(start))
	}
	var want []time.Duration
	for _, m := range []int{0, 1, 3, 7, 15, 31, 63, 123, 183, 243} {
		want = append(want, time.Duration(m)*time.Minute)
	}
	if !slices.Equal(got, want) {
		t.Errorf("attempts at %v, want at %v", got, want)
	}
}

// TestNoticeGivenUp: a notice the mail server refuses for good is not
// tried again; one that keeps failing is given up after ten attempts, or
// a day after its event.
func TestNoticeGivenUp(t *testing.T) {
	for _, c := range []struct {
		name         string
		fail         error
		wait         time.Duration // between attempts
		wantAttempts int
	}{
		{"refused", fmt.Errorf("550 no such mailbox: %w", mfa.ErrNoticeRefused), time.Hour, 1},
		{"failing", errors.New("connection refused"), time.Hour, 10},
		{"late", errors.New("connection refused"), 13 * time.Hour, 2}, // the third would be 26 hours after the event
	} {
		t.Run(c.name, func(t *testing.T) {
			n := &fakeNotifier{fail: func(int) error { return c.fail }}
			f := newNotifyingFixture(t, n)
			f.enable(t, f.user(t, "ann@example.com"))
			for range 20 {
				deliver(t, f)
				f.clock.Advance(c.wait)
			}
			if attempts, _ := n.counts(); attempts != c.wantAttempts {
				t.Errorf("attempts: got %d, want %d", attempts, c.wantAttempts)
			}
		})
	}
}

// TestNoticeOfAChangeElsewhere: a change made where there is no Notifier
// (a command run by support) is told by a Service that has one, over the
// same store; a Service without one drops only notices a day overdue.
func TestNoticeOfAChangeElsewhere(t *testing.T) {
	command := newFixture(t)
	if command.svc.Notifying() {
		t.Error("Notifying: got true without a Notifier")
	}
	u := command.user(t, "ann@example.com")
	command.enable(t, u)
	if err := command.svc.ResetTwoFactor(t.Context(), u.Email, mfa.Client{}); err != nil {
		t.Fatal(err)
	}
	command.clock.Advance(noticeMaxAge - time.Second)
	if got := deliver(t, command); got != 0 {
		t.Fatalf("without a Notifier: claimed %d notices before they are a day overdue, want 0", got)
	}

	n := &fakeNotifier{}
	server, err := mfa.NewService(mfa.Config{Store: command.store, Passwords: command.hasher, Cipher: command.keys,
		CodeKey: bytes.Repeat([]byte{7}, 32), Now: command.clock.Now, Notifier: n})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := server.DeliverDueNotices(t.Context()); got != 2 || err != nil {
		t.Fatalf("with a Notifier: claimed %d, %v, want the 2 notices", got, err)
	}
	if len(n.delivered) != 2 || !strings.Contains(n.delivered[1].Subject, "reset by an administrator") {
		t.Errorf("delivered %+v, want the notices of the enable and of the reset", n.delivered)
	}

	// Another change, a day overdue: dropped by the Service without a Notifier.
	command.enable(t, u)
	command.clock.Advance(noticeMaxAge)
	if got := deliver(t, command); got != 1 {
		t.Fatalf("without a Notifier: claimed %d notices a day overdue, want 1 (dropped)", got)
	}
	if got, err := server.DeliverDueNotices(t.Context()); got != 0 || err != nil {
		t.Errorf("after the drop: a Service with a Notifier claimed %d, %v, want 0", got, err)
	}
}

// noticeMaxAge is how long a notice may wait (mfa.noticeMaxAge).
const noticeMaxAge = 24 * time.Hour

// TestDeliverNoticesWakesOnChange: the delivery loop sends a change's
// notice when the change is made, not at its next look at the queue,
// seconds away; and it stops with its context.
func TestDeliverNoticesWakesOnChange(t *testing.T) {
	n := &fakeNotifier{arrived: make(chan struct{}, 10)}
	claims := &claimCounter{first: make(chan struct{})}
	f := newFixtureNotifying(t, func(s mfa.Store) mfa.Store { claims.Store = s; return claims }, n)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { f.svc.DeliverNotices(ctx); close(done) }()
	<-claims.first // the loop has looked at the empty queue: its next look is a poll away
	f.enable(t, f.user(t, "ann@example.com"))
	select {
	case <-n.arrived:
	case <-time.After(5 * time.Second): // half the poll
		t.Fatal("no notice within 5 s of the change")
	}
	cancel()
	<-done // DeliverNotices returns
}

// claimCounter closes first after the first ClaimNotices returns.
type claimCounter struct {
	mfa.Store
	once  sync.Once
	first chan struct{}
}

func (c *claimCounter) ClaimNotices(ctx context.Context, now, until time.Time, limit int) ([]mfa.QueuedNotice, error) {
	defer c.once.Do(func() { close(c.first) })
	return c.Store.ClaimNotices(ctx, now, until, limit)
}

// TestNoticesCapped: changes beyond ten in an hour are recorded but not
// emailed, so that the server cannot be made to flood an address; an hour
// on, the account's changes are told again.
func TestNoticesCapped(t *testing.T) {
	n := &fakeNotifier{}
	f := newNotifyingFixture(t, n)
	ctx := t.Context()
	u := f.user(t, "ann@example.com")
	f.enable(t, u) // the first change
	for range 14 {
		f.clock.Advance(time.Minute)
		f.login(t, u.Email) // sign-ins between the changes do not hide them from the count
		if _, err := f.svc.RegenerateBackupCodes(ctx, u, testPassword, client); err != nil {
			t.Fatal(err)
		}
	}
	for deliver(t, f) > 0 {
	}
	if _, delivered := n.counts(); delivered != 10 {
		t.Errorf("15 changes in 15 minutes: %d notices, want 10", delivered)
	}
	events, err := f.store.Events(ctx, u.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	regenerated := 0
	for _, e := range events {
		if e.Type == mfa.EventBackupCodesRegenerated {
			regenerated++
		}
	}
	if regenerated != 14 {
		t.Errorf("events: %d of new backup codes, want all 14 recorded", regenerated)
	}

	f.clock.Advance(time.Hour)
	if _, err := f.svc.RegenerateBackupCodes(ctx, u, testPassword, client); err != nil {
		t.Fatal(err)
	}
	for deliver(t, f) > 0 {
	}
	if _, delivered := n.counts(); delivered != 11 {
		t.Errorf("a change an hour later: %d notices in all, want 11", delivered)
	}
}

// TestNoticesWhenStopping: stopped during a delivery, the loop records what
// it sent, so it is not sent again; one it could not send is due again at
// once; the rest of the batch waits for its lease to end.
func TestNoticesWhenStopping(t *testing.T) {
	for _, sent := range []bool{true, false} {
		t.Run(fmt.Sprintf("sent=%v", sent), func(t *testing.T) {
			ctx, stop := context.WithCancel(t.Context())
			n := &fakeNotifier{}
			n.fail = func(attempt int) error {
				if attempt > 1 {
					return nil
				}
				stop() // the server stops during the first delivery
				if sent {
					return nil
				}
				return context.Canceled
			}
			f := newFixtureNotifying(t, func(s mfa.Store) mfa.Store { return ctxStore{s} }, n)
			for _, email := range []string{"ann@example.com", "bob@example.com", "cy@example.com"} {
				f.enable(t, f.user(t, email))
			}
			if got, err := f.svc.DeliverDueNotices(ctx); got != 3 || err != nil {
				t.Fatalf("DeliverDueNotices: claimed %d, %v, want the 3 notices", got, err)
			}
			if attempts, _ := n.counts(); attempts != 1 {
				t.Fatalf("attempts after the stop: got %d, want 1", attempts)
			}
			wantNow := 0 // due again at once: the one not sent
			if !sent {
				wantNow = 1
			}
			if got := deliver(t, f); got != wantNow {
				t.Errorf("claimed at once after the stop: %d, want %d", got, wantNow)
			}
			f.clock.Advance(time.Hour) // the lease of the batch is over
			for deliver(t, f) > 0 {
			}
			n.mu.Lock()
			defer n.mu.Unlock()
			seen := map[int64]int{}
			for _, d := range n.delivered {
				seen[d.EventID]++
			}
			if len(seen) != 3 || len(n.delivered) != 3 {
				t.Errorf("delivered %d notices of %d events, want each of 3 once", len(n.delivered), len(seen))
			}
		})
	}
}

// ctxStore fails a write on a done context, as a database does.
type ctxStore struct{ mfa.Store }

func (s ctxStore) RescheduleNotice(ctx context.Context, eventID int64, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Store.RescheduleNotice(ctx, eventID, at)
}
