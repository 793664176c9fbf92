package mfatest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
)

// addNoticeEvent stores an event of u at at, with a notice queued if notify.
func addNoticeEvent(t *testing.T, s mfa.Store, u *mfa.User, at time.Time, notify bool) mfa.Event {
	t.Helper()
	e := &mfa.Event{UserID: u.ID, Type: mfa.EventTwoFactorEnabled, At: at, IP: "192.0.2.7", Detail: "authenticator app", Notify: notify}
	if err := s.AddEvent(t.Context(), e); err != nil {
		t.Fatalf("AddEvent: %v", err)
	}
	return *e
}

// claimIDs claims notices and returns their event IDs in the order given.
func claimIDs(t *testing.T, s mfa.Store, now, until time.Time, limit int) []int64 {
	t.Helper()
	qs, err := s.ClaimNotices(t.Context(), now, until, limit)
	if err != nil {
		t.Fatalf("ClaimNotices: %v", err)
	}
	ids := make([]int64, len(qs))
	for i, q := range qs {
		ids[i] = q.Event.ID
	}
	return ids
}

func testNotices(t *testing.T, newStore func(t *testing.T) mfa.Store) {
	t.Run("Claim", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		u := createUser(t, s, "u@example.com")
		addNoticeEvent(t, s, u, base, false)
		e := addNoticeEvent(t, s, u, base.Add(time.Second), true)
		if got := claimIDs(t, s, base.Add(time.Second-time.Millisecond), base.Add(time.Hour), 10); len(got) != 0 {
			t.Errorf("claim before the event: got %v, want none", got)
		}
		qs, err := s.ClaimNotices(ctx, base.Add(time.Minute), base.Add(time.Hour), 10)
		if err != nil || len(qs) != 1 {
			t.Fatalf("ClaimNotices: got %d notices, %v, want 1 (the event without Notify queues none)", len(qs), err)
		}
		q := qs[0]
		if q.Event.ID != e.ID || q.Event.UserID != u.ID || q.Event.Type != e.Type || q.Event.IP != e.IP ||
			q.Event.Detail != e.Detail || q.Email != u.Email || q.Attempts != 1 {
			t.Errorf("claimed: got %+v, want event %+v of %s, attempt 1", q, e, u.Email)
		}
		checkTime(t, "claimed event's At", q.Event.At, e.At)

		// Claimed until an hour from now: nobody gets it before.
		if got := claimIDs(t, s, base.Add(time.Hour-time.Millisecond), base.Add(2*time.Hour), 10); len(got) != 0 {
			t.Errorf("claim within the first claim's lease: got %v, want none", got)
		}
		qs, err = s.ClaimNotices(ctx, base.Add(time.Hour), base.Add(2*time.Hour), 10)
		if err != nil || len(qs) != 1 || qs[0].Attempts != 2 {
			t.Fatalf("claim after the lease: got %+v, %v, want the notice at attempt 2", qs, err)
		}

		// Rescheduled earlier than the lease: due then.
		if err := s.RescheduleNotice(ctx, e.ID, base.Add(90*time.Minute)); err != nil {
			t.Fatalf("RescheduleNotice: %v", err)
		}
		if got := claimIDs(t, s, base.Add(90*time.Minute-time.Millisecond), base.Add(3*time.Hour), 10); len(got) != 0 {
			t.Errorf("claim before the rescheduled time: got %v, want none", got)
		}
		if got := claimIDs(t, s, base.Add(90*time.Minute), base.Add(3*time.Hour), 10); !slices.Equal(got, []int64{e.ID}) {
			t.Errorf("claim at the rescheduled time: got %v, want [%d]", got, e.ID)
		}

		// Taken off the queue: never again, and again is not an error.
		for range 2 {
			if err := s.RescheduleNotice(ctx, e.ID, time.Time{}); err != nil {
				t.Fatalf("RescheduleNotice(zero): %v", err)
			}
		}
		if got := claimIDs(t, s, base.Add(100*time.Hour), base.Add(101*time.Hour), 10); len(got) != 0 {
			t.Errorf("claim after the notice was taken off: got %v, want none", got)
		}
		if evs, err := s.Events(ctx, u.ID, 10); err != nil || len(evs) != 2 {
			t.Errorf("events after the notice was taken off: got %d, %v, want both kept", len(evs), err)
		}
	})

	t.Run("Order", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		ada, bob := createUser(t, s, "ada@example.com"), createUser(t, s, "bob@example.com")
		var ids []int64
		for i := range 5 {
			u := ada
			if i%2 == 1 {
				u = bob
			}
			ids = append(ids, addNoticeEvent(t, s, u, base.Add(time.Duration(i)*time.Second), true).ID)
		}
		// The first one put off: the others are due before it.
		if err := s.RescheduleNotice(ctx, ids[0], base.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		now, until := base.Add(time.Hour), base.Add(2*time.Hour)
		qs, err := s.ClaimNotices(ctx, now, until, 3)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, q := range qs {
			got = append(got, q.Event.ID)
			if want := map[int64]string{ada.ID: ada.Email, bob.ID: bob.Email}[q.Event.UserID]; q.Email != want {
				t.Errorf("notice of event %d: address %q, want %q", q.Event.ID, q.Email, want)
			}
		}
		if want := ids[1:4]; !slices.Equal(got, want) {
			t.Errorf("claim of 3: got %v, want %v (the earliest due first)", got, want)
		}
		if got, want := claimIDs(t, s, now, until, 3), []int64{ids[4], ids[0]}; !slices.Equal(got, want) {
			t.Errorf("next claim: got %v, want %v", got, want)
		}
	})

	t.Run("UpgradeQueues", func(t *testing.T) {
		s := newStore(t)
		u := createUser(t, s, "u@example.com")
		ev := &mfa.Event{UserID: u.ID, Type: mfa.EventLoginSucceeded, At: base, Notify: true}
		if ok, err := spend(t, s, u.ID, base, mfa.Upgrade{Event: ev}); !ok || err != nil {
			t.Fatalf("UpgradeSession: got %v, %v, want true", ok, err)
		}
		if got := claimIDs(t, s, base.Add(time.Minute), base.Add(time.Hour), 10); !slices.Equal(got, []int64{ev.ID}) {
			t.Errorf("claim after an upgrade whose event notifies: got %v, want [%d]", got, ev.ID)
		}
	})

	t.Run("ConcurrentClaims", func(t *testing.T) {
		s := newStore(t)
		const notices = 3 * concurrency
		var want []int64
		for i := range notices {
			u := createUser(t, s, fmt.Sprintf("u%d@example.com", i))
			want = append(want, addNoticeEvent(t, s, u, base, true).ID)
		}
		var (
			mu  sync.Mutex
			got []int64
		)
		now, until := base.Add(time.Minute), base.Add(time.Hour)
		race(t, concurrency, func(int) (bool, error) {
			qs, err := s.ClaimNotices(t.Context(), now, until, 4)
			mu.Lock()
			defer mu.Unlock()
			for _, q := range qs {
				got = append(got, q.Event.ID)
			}
			return len(qs) > 0, err
		})
		slices.Sort(got)
		// Claims of up to 4 each take all 60 between them, each exactly once:
		// a claim that finds fewer than 4 found the rest held by others.
		if !slices.Equal(got, want) {
			t.Errorf("concurrent claims returned %d notices (%v), want each of %d exactly once", len(got), got, notices)
		}
	})
}
