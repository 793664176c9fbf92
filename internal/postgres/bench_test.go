package postgres

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/mfa/mfatest"
)

// The benchmarks mirror internal/sqlite's, so that their figures compare:
//
//	go test ./internal/sqlite ./internal/postgres -run '^$' -bench . -cpu 2
//
// with TWOFOLD_TEST_POSTGRES set. Their database is new for each run of a
// benchmark function and seeded in the server with generate_series.

// seedDB opens a new database holding mfatest.BenchUsers users and returns
// their IDs.
func seedDB(b *testing.B) (db *DB, userIDs []int64) {
	b.Helper()
	db = openTest(b, newDatabase(b))
	ctx := context.Background()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO users (email, password_hash, created_at)
	SELECT 'user' || i || '@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g', now()
	FROM generate_series(0, $1 - 1) AS i`, []any{mfatest.BenchUsers}},
		// A sealed 160-bit secret is 48 bytes: nonce, ciphertext, tag.
		{`INSERT INTO factors (user_id, kind, secret, last_step, created_at, confirmed_at)
	SELECT id, 'totp', int8send(id) || sha256(int8send(id)) || int8send(-id), 0, now(), now() FROM users ORDER BY id`, nil},
		{`INSERT INTO backup_codes (user_id, hash)
	SELECT id, sha256(int8send(id * 10 + j)) FROM users, generate_series(0, 9) AS j ORDER BY id, j`, nil},
		{`VACUUM ANALYZE`, nil},
	} {
		if _, err := db.pool.Exec(ctx, q.sql, q.args...); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
	rows, err := db.pool.Query(ctx, `SELECT id FROM users ORDER BY id`)
	if err != nil {
		b.Fatal(err)
	}
	userIDs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(userIDs) != mfatest.BenchUsers {
		b.Fatalf("seed: got %d users, %v", len(userIDs), err)
	}
	return db, userIDs
}

// pendingSessions creates n password-level sessions, the i-th for user
// userIDs[i % len(userIDs)], and returns their IDs.
func pendingSessions(b *testing.B, db *DB, userIDs []int64, n int) [][]byte {
	b.Helper()
	ids := make([][]byte, n)
	now := stamp(time.Now())
	rows := make([][]any, n)
	for i := range ids {
		ids[i] = mfatest.SessionIDFor(int64(i), b.Name()+strconv.Itoa(b.N))
		rows[i] = []any{ids[i], userIDs[i%len(userIDs)], int32(mfa.LevelPassword), now, now, now.Add(10 * time.Minute), "192.0.2.1"}
	}
	ctx := context.Background()
	_, err := db.pool.CopyFrom(ctx, pgx.Identifier{"sessions"},
		[]string{"id", "user_id", "level", "created_at", "last_seen_at", "expires_at", "ip"}, pgx.CopyFromRows(rows))
	if err != nil {
		b.Fatalf("pending sessions: %v", err)
	}
	if _, err := db.pool.Exec(ctx, `VACUUM ANALYZE sessions`); err != nil {
		b.Fatal(err)
	}
	return ids
}

func BenchmarkUpgradeSession(b *testing.B) {
	db, userIDs := seedDB(b)
	mfatest.BenchmarkUpgradeSession(b, db, userIDs, pendingSessions(b, db, userIDs, b.N))
}

func BenchmarkVerification(b *testing.B) {
	db, userIDs := seedDB(b)
	mfatest.BenchmarkVerification(b, db, pendingSessions(b, db, userIDs, b.N))
}

func BenchmarkPasswordStepRead(b *testing.B) {
	db, _ := seedDB(b)
	mfatest.BenchmarkPasswordStepRead(b, db)
}
