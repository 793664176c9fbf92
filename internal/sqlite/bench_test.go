package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
)

// benchUsers is how many users the benchmark databases hold, each with a
// confirmed TOTP factor and ten backup codes.
const benchUsers = 100_000

// benchParallelism: goroutines per GOMAXPROCS, as a busy server has many
// requests in flight.
const benchParallelism = 8

// seedDB opens a new database holding benchUsers users; factorIDs[i] is the
// factor of user userIDs[i].
func seedDB(b *testing.B) (db *DB, userIDs, factorIDs []int64) {
	b.Helper()
	db = openTest(b)
	ctx := context.Background()
	now := time.Now()
	userIDs = make([]int64, benchUsers)
	factorIDs = make([]int64, benchUsers)
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		users, err := tx.Prepare(`INSERT INTO users (email, password_hash, created_at) VALUES (?, ?, ?)`)
		if err != nil {
			return err
		}
		factors, err := tx.Prepare(`INSERT INTO factors (user_id, kind, secret, last_step, created_at, confirmed_at) VALUES (?, 'totp', ?, 0, ?, ?)`)
		if err != nil {
			return err
		}
		codes, err := tx.Prepare(`INSERT INTO backup_codes (user_id, hash) VALUES (?, ?)`)
		if err != nil {
			return err
		}
		secret := make([]byte, 48) // a sealed 160-bit secret: nonce, ciphertext, tag
		hash := make([]byte, 32)
		for i := range benchUsers {
			res, err := users.Exec(fmt.Sprintf("user%d@example.com", i), "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", millis(now))
			if err != nil {
				return err
			}
			if userIDs[i], err = res.LastInsertId(); err != nil {
				return err
			}
			binary.BigEndian.PutUint64(secret, uint64(i))
			if res, err = factors.Exec(userIDs[i], secret, millis(now), millis(now)); err != nil {
				return err
			}
			if factorIDs[i], err = res.LastInsertId(); err != nil {
				return err
			}
			for j := range 10 {
				binary.BigEndian.PutUint64(hash, uint64(i*10+j))
				if _, err := codes.Exec(userIDs[i], hash); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatalf("seed: %v", err)
	}
	if _, err := db.w.Exec(`ANALYZE`); err != nil {
		b.Fatal(err)
	}
	checkpoint(b, db)
	return db, userIDs, factorIDs
}

func sessionIDFor(n int64, salt string) []byte {
	sum := sha256.Sum256([]byte(salt + strconv.FormatInt(n, 10)))
	return sum[:]
}

// pendingSessions creates n password-level sessions, the i-th for user
// userIDs[i % len(userIDs)], and returns their IDs.
func pendingSessions(b *testing.B, db *DB, userIDs []int64, n int) [][]byte {
	b.Helper()
	ids := make([][]byte, n)
	now := time.Now()
	err := db.inTx(context.Background(), func(tx *sql.Tx) error {
		ins := tx.Stmt(db.st.insertSession)
		for i := range ids {
			ids[i] = sessionIDFor(int64(i), b.Name()+strconv.Itoa(b.N))
			s := &mfa.Session{ID: ids[i], UserID: userIDs[i%len(userIDs)], Level: mfa.LevelPassword,
				CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(10 * time.Minute), IP: "192.0.2.1"}
			if err := db.insertSession(context.Background(), ins, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatalf("pending sessions: %v", err)
	}
	checkpoint(b, db)
	return ids
}

// checkpoint moves the setup's writes from the WAL into the database file,
// so that the timed part does not pay for them.
func checkpoint(b *testing.B, db *DB) {
	b.Helper()
	if _, err := db.w.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatalf("checkpoint: %v", err)
	}
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

// BenchmarkUpgradeSession upgrades distinct pending sessions concurrently,
// each with its login event: the second write of every verification.
func BenchmarkUpgradeSession(b *testing.B) {
	db, userIDs, _ := seedDB(b)
	ctx := requestContext(b)
	old := pendingSessions(b, db, userIDs, b.N)
	now := time.Now()
	var next atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			userID := userIDs[int(i)%len(userIDs)]
			s := &mfa.Session{ID: sessionIDFor(i, "full"), UserID: userID, Level: mfa.LevelFull,
				CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(12 * time.Hour), IP: "192.0.2.1"}
			ev := &mfa.Event{UserID: userID, Type: mfa.EventLoginSucceeded, At: now, IP: "192.0.2.1", Detail: "totp"}
			ok, err := db.UpgradeSession(ctx, mfa.Upgrade{Old: old[i], Next: s, Event: ev})
			if err != nil || !ok {
				b.Errorf("UpgradeSession: got %v, %v, want true, nil", ok, err)
				return
			}
		}
	})
	reportRate(b, "upgrades/s")
}

// BenchmarkVerification makes the store calls of one second-factor
// verification by mfa.Service.VerifySecondFactor with a TOTP code, on
// benchUsers users: Session, UserByID, Factors, RecordFailure (the admitted attempt)
// and UpgradeSession claiming the step with its event. The target is 3,000 verifications/s
// on 2 cores (-cpu 2).
func BenchmarkVerification(b *testing.B) {
	db, userIDs, _ := seedDB(b)
	ctx := requestContext(b)
	old := pendingSessions(b, db, userIDs, b.N)
	now := time.Now()
	step := now.Unix() / 30
	var next atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			if err := verify(ctx, db, old[i], sessionIDFor(i, "full"), step, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, "verifications/s")
}

func verify(ctx context.Context, db *DB, oldID, newID []byte, step int64, now time.Time) error {
	sess, err := db.Session(ctx, oldID)
	if err != nil {
		return err
	}
	u, err := db.UserByID(ctx, sess.UserID)
	if err != nil {
		return err
	}
	key := mfa.ThrottleKey{Subject: "user:" + strconv.FormatInt(u.ID, 10), Method: mfa.MethodTOTP}
	admit := func(mfa.ThrottleState) bool { return true }
	if _, _, err := db.RecordFailure(ctx, key, now, now.Add(-mfa.ThrottleWindow), admit); err != nil {
		return err
	}
	fs, err := db.Factors(ctx, u.ID)
	if err != nil || len(fs) != 1 {
		return fmt.Errorf("factors: got %d, %v", len(fs), err)
	}
	// A user may sign in more than once in the benchmark: claim the newest
	// step the factor has not used, as a code of the next step would.
	next := &mfa.Session{ID: newID, UserID: u.ID, Level: mfa.LevelFull,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(12 * time.Hour), IP: "192.0.2.1"}
	ev := &mfa.Event{UserID: u.ID, Type: mfa.EventLoginSucceeded, At: now, IP: "192.0.2.1", Detail: "totp"}
	up := mfa.Upgrade{Old: oldID, Next: next, Event: ev, ClaimFactor: fs[0].ID, ClaimStep: max(step, fs[0].LastStep+1),
		Throttle: key, Attempt: now}
	if ok, err := db.UpgradeSession(ctx, up); err != nil || !ok {
		return fmt.Errorf("upgrade session: got %v, %v", ok, err)
	}
	return nil
}
