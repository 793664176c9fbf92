package mfa

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// The throttling rules, shared by every method, session and instance because
// their state lives in the Store.
const (
	// FreeFailures is how many consecutive failures are allowed before backoff.
	FreeFailures = 5
	// firstBackoff doubles with each further consecutive failure, up to maxBackoff.
	firstBackoff = 30 * time.Second
	maxBackoff   = time.Hour
	// DailyFailureCeiling: never more failed attempts than this per account
	// and method in any ThrottleWindow.
	DailyFailureCeiling = 100
	ThrottleWindow      = 24 * time.Hour
)

// lockRemaining returns how long the key stays locked at now, 0 if it is not.
func lockRemaining(st ThrottleState, now time.Time) time.Duration {
	var until time.Time
	if st.Consecutive >= FreeFailures {
		backoff := firstBackoff << min(st.Consecutive-FreeFailures, 7)
		until = st.LastFailure.Add(min(backoff, maxBackoff))
	}
	if st.WindowCount >= DailyFailureCeiling {
		if end := st.WindowOldest.Add(ThrottleWindow); end.After(until) {
			until = end
		}
	}
	if d := until.Sub(now); d > 0 {
		return d
	}
	return 0
}

func userKey(userID int64, m Method) ThrottleKey {
	return ThrottleKey{Subject: "user:" + strconv.FormatInt(userID, 10), Method: m}
}

// passwordKey throttles password attempts by email address, known or not, so
// that throttling tells nobody whether an account exists.
func (s *Service) passwordKey(email string) ThrottleKey {
	return ThrottleKey{Subject: "email:" + hex.EncodeToString(s.keyedHash("throttle-email", email)), Method: MethodPassword}
}

// attempt is one admitted try against a throttle key. It is recorded as a
// failure the moment it is admitted, before the password or code is even
// looked at, and forgotten only when it succeeds: so concurrent guesses, on
// one instance or many, can never be checked beyond the limits. (The
// password and the second factor of a sign-in, the hot path, are checked
// first instead, and the attempt is admitted in the same write that acts on
// the outcome, so guesses are never answered beyond the limits; see Login
// and VerifySecondFactor.)
type attempt struct {
	key   ThrottleKey
	at    time.Time
	state ThrottleState // including this attempt
}

// begin admits one attempt against key, or answers rate-limited while the
// key is locked. The check and the count are one atomic step of the store.
// An attempt that ends in an error of the server (say, a busy password
// hasher) stays counted: only success undoes it.
func (s *Service) begin(ctx context.Context, key ThrottleKey) (*attempt, error) {
	now := s.clock()
	st, recorded, err := s.store.RecordFailure(ctx, key, now, now.Add(-ThrottleWindow), admitAt(now), nil)
	if err != nil {
		return nil, fmt.Errorf("mfa: record attempt: %w", err)
	}
	if !recorded {
		return nil, rateLimited(lockRemaining(st, now))
	}
	return &attempt{key: key, at: now, state: st}, nil
}

// admitAt is the admission rule of a store's atomic step: the key is not
// locked at now.
func admitAt(now time.Time) func(ThrottleState) bool {
	return func(st ThrottleState) bool { return lockRemaining(st, now) == 0 }
}

// failed leaves the attempt counted and returns err. userID, when not 0,
// receives a throttled event when this failure starts a lock.
func (s *Service) failed(ctx context.Context, a *attempt, userID int64, c Client, err error) error {
	if e := throttledEvent(a.key, a.state, a.at, userID, c); e != nil {
		s.save(ctx, e)
	}
	return err
}

// fail records a failed attempt against key, checked before it was
// admitted, and returns err, or rate-limited while the key is locked. The
// failure's event e (none when e.UserID is 0: an unknown address), and a
// throttled event when this failure starts a lock, are stored in the same
// write as the failure: a wrong password costs the writes of an unknown
// address, so that its timing does not tell which addresses have accounts.
func (s *Service) fail(ctx context.Context, key ThrottleKey, e Event, err error) error {
	now := s.clock()
	e.At = now
	var stored []Event
	events := func(st ThrottleState) []Event {
		stored = stored[:0] // the store may retry its write
		if e.UserID == 0 {
			return nil
		}
		stored = append(stored, e)
		if t := throttledEvent(key, st, now, e.UserID, Client{IP: e.IP}); t != nil {
			stored = append(stored, *t)
		}
		return stored
	}
	st, recorded, rerr := s.store.RecordFailure(ctx, key, now, now.Add(-ThrottleWindow), admitAt(now), events)
	if rerr != nil {
		return fmt.Errorf("mfa: record attempt: %w", rerr)
	}
	if !recorded {
		return rateLimited(lockRemaining(st, now))
	}
	for i := range stored {
		s.logEvent(ctx, &stored[i])
	}
	return err
}

// throttledEvent is the event of a failure that starts a lock on key, nil
// if it starts none or has no user: st is the key's state with the failure
// counted, made at time at.
func throttledEvent(key ThrottleKey, st ThrottleState, at time.Time, userID int64, c Client) *Event {
	d := lockRemaining(st, at)
	if d <= 0 || userID == 0 {
		return nil
	}
	return &Event{UserID: userID, Type: EventThrottled, At: at, IP: c.IP,
		Detail: fmt.Sprintf("%s locked for %s", key.Method, humanDuration(d))}
}

// succeeded forgets the attempt and clears the key's consecutive failures.
func (s *Service) succeeded(ctx context.Context, a *attempt) error {
	if err := s.store.ResetThrottle(ctx, a.key, a.at); err != nil {
		return fmt.Errorf("mfa: reset throttle: %w", err)
	}
	return nil
}
