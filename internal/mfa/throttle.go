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

// checkThrottle answers a rate-limit error while key is locked.
func (s *Service) checkThrottle(ctx context.Context, key ThrottleKey) (ThrottleState, error) {
	now := s.clock()
	st, err := s.store.ThrottleState(ctx, key, now.Add(-ThrottleWindow))
	if err != nil {
		return st, fmt.Errorf("mfa: throttle state: %w", err)
	}
	if d := lockRemaining(st, now); d > 0 {
		return st, rateLimited(d)
	}
	return st, nil
}

// fail counts one failed attempt against key and returns the error to
// answer: failed, or rate-limited when the key was locked meanwhile. The
// check and the count are one atomic step, so concurrent attempts cannot
// overrun the ceiling. userID, when not 0, receives a throttled event at the
// failure that starts a lock.
func (s *Service) fail(ctx context.Context, key ThrottleKey, userID int64, c Client, failed error) error {
	now := s.clock()
	st, recorded, err := s.store.RecordFailure(ctx, key, now, now.Add(-ThrottleWindow),
		func(st ThrottleState) bool { return lockRemaining(st, now) == 0 })
	if err != nil {
		return fmt.Errorf("mfa: record failure: %w", err)
	}
	if !recorded {
		return rateLimited(lockRemaining(st, now))
	}
	if d := lockRemaining(st, now); d > 0 && userID != 0 {
		s.record(ctx, userID, EventThrottled, c, fmt.Sprintf("%s locked for %s", key.Method, humanDuration(d)))
	}
	return failed
}

// succeed clears the consecutive-failure count of key, if there is one.
func (s *Service) succeed(ctx context.Context, key ThrottleKey, st ThrottleState) error {
	if st.Consecutive == 0 {
		return nil
	}
	if err := s.store.ResetThrottle(ctx, key); err != nil {
		return fmt.Errorf("mfa: reset throttle: %w", err)
	}
	return nil
}
