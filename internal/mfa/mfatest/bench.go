package mfatest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
)

// The store benchmarks of every backend, so that their figures compare:
//
//	go test ./internal/sqlite ./internal/postgres -run '^$' -bench . -cpu 2
//
// Each backend seeds its own database in bulk (its fastest way), then runs
// the same timed part here.

// BenchUsers is how many users a benchmark database holds, each with a
// confirmed TOTP factor and ten backup codes.
const BenchUsers = 100_000

// benchParallelism: goroutines per GOMAXPROCS, as a busy server has many
// requests in flight.
const benchParallelism = 8

// SessionIDFor is the n-th session ID of a benchmark, distinct per salt.
// Like the IDs of mfa.Service's tokens, it starts with a time (here n) and
// ends with a hash, so IDs sort in the order the sessions start.
func SessionIDFor(n int64, salt string) []byte {
	sum := sha256.Sum256([]byte(salt + strconv.FormatInt(n, 10)))
	return append(binary.BigEndian.AppendUint64(nil, uint64(n)), sum[:]...)
}

// BenchmarkUpgradeSession upgrades the distinct pending sessions pending
// (at least b.N, one per user of userIDs in turn) concurrently, each with
// its login event: the write that completes every sign-in.
func BenchmarkUpgradeSession(b *testing.B, s mfa.Store, userIDs []int64, pending [][]byte) {
	now := time.Now()
	runEach(b, "upgrades/s", func(ctx context.Context, i int64) error {
		userID := userIDs[int(i)%len(userIDs)]
		full := &mfa.Session{ID: SessionIDFor(i, "full"), UserID: userID, Level: mfa.LevelFull,
			CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(12 * time.Hour), IP: "192.0.2.1"}
		ev := &mfa.Event{UserID: userID, Type: mfa.EventLoginSucceeded, At: now, IP: "192.0.2.1", Detail: "totp"}
		ok, err := s.UpgradeSession(ctx, mfa.Upgrade{Old: pending[i], Next: full, Event: ev})
		if err != nil || !ok {
			return fmt.Errorf("UpgradeSession: got %v, %v, want true, nil", ok, err)
		}
		return nil
	})
}

// BenchmarkVerification makes, for each of the pending sessions (at least
// b.N), the store calls of one second-factor verification by
// mfa.Service.VerifySecondFactor with a right TOTP code: SessionView, and
// UpgradeSession admitting the attempt and claiming the step, with its
// event. The target is 3,000 verifications/s on 2 cores (-cpu 2).
func BenchmarkVerification(b *testing.B, s mfa.Store, pending [][]byte) {
	now := time.Now()
	step := now.Unix() / 30
	runEach(b, "verifications/s", func(ctx context.Context, i int64) error {
		return verify(ctx, s, pending[i], SessionIDFor(i, "full"), step, now)
	})
}

// runEach runs f for i = 0, 1, ... b.N-1 from concurrent goroutines, each i
// once, and reports the rate in unit.
func runEach(b *testing.B, unit string, f func(ctx context.Context, i int64) error) {
	ctx := requestContext(b)
	var next atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := f(ctx, next.Add(1)-1); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, unit)
}

// BenchEmail is the address of the i-th user of a benchmark database.
func BenchEmail(i int) string { return fmt.Sprintf("user%d@example.com", i) }

// BenchmarkPasswordStepRead makes the reads of mfa.Service.Login before it
// hashes the password, for the users of the benchmark database in turn:
// "one view" as Login makes them now (SignInView), "three reads" as it made
// them before (ThrottleState, UserByEmail, Factors).
func BenchmarkPasswordStepRead(b *testing.B, s mfa.Store) {
	since := time.Now().Add(-mfa.ThrottleWindow)
	key := func(email string) mfa.ThrottleKey {
		return mfa.ThrottleKey{Subject: "email:" + email, Method: mfa.MethodPassword}
	}
	b.Run("one view", func(b *testing.B) {
		runEach(b, "reads/s", func(ctx context.Context, i int64) error {
			email := BenchEmail(int(i % BenchUsers))
			v, err := s.SignInView(ctx, email, key(email), since)
			if err == nil && (v.User == nil || len(v.Factors) != 1) {
				err = fmt.Errorf("%s: got user %v and %d factors, want a user with 1", email, v.User, len(v.Factors))
			}
			return err
		})
	})
	b.Run("three reads", func(b *testing.B) {
		runEach(b, "reads/s", func(ctx context.Context, i int64) error {
			email := BenchEmail(int(i % BenchUsers))
			if _, err := s.ThrottleState(ctx, key(email), since); err != nil {
				return err
			}
			u, err := s.UserByEmail(ctx, email)
			if err != nil {
				return err
			}
			fs, err := s.Factors(ctx, u.ID)
			if err == nil && len(fs) != 1 {
				err = fmt.Errorf("%s: got %d factors, want 1", email, len(fs))
			}
			return err
		})
	})
}

func verify(ctx context.Context, s mfa.Store, oldID, newID []byte, step int64, now time.Time) error {
	v, err := s.SessionView(ctx, oldID)
	if err != nil {
		return err
	}
	u, fs := &v.User, v.Factors
	if len(fs) != 1 {
		return fmt.Errorf("factors: got %d, want 1", len(fs))
	}
	key := mfa.ThrottleKey{Subject: "user:" + strconv.FormatInt(u.ID, 10), Method: mfa.MethodTOTP}
	// A user may sign in more than once in the benchmark: claim the newest
	// step the factor has not used, as a code of the next step would.
	next := &mfa.Session{ID: newID, UserID: u.ID, Level: mfa.LevelFull,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(12 * time.Hour), IP: "192.0.2.1"}
	ev := &mfa.Event{UserID: u.ID, Type: mfa.EventLoginSucceeded, At: now, IP: "192.0.2.1", Detail: "totp"}
	up := mfa.Upgrade{Old: oldID, Next: next, Event: ev, ClaimFactor: fs[0].ID, ClaimStep: max(step, fs[0].LastStep+1),
		Throttle: key, Since: now.Add(-mfa.ThrottleWindow), Admit: func(mfa.ThrottleState) bool { return true }}
	if ok, err := s.UpgradeSession(ctx, up); err != nil || !ok {
		return fmt.Errorf("upgrade session: got %v, %v", ok, err)
	}
	return nil
}

// requestContext is a context like an HTTP request's: cancelable.
func requestContext(b *testing.B) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	return ctx
}

func reportRate(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}
