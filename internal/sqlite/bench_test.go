package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/mfa/mfatest"
)

// seedDB opens a new database holding mfatest.BenchUsers users and returns
// their IDs.
func seedDB(b *testing.B) (db *DB, userIDs []int64) {
	b.Helper()
	db = openTest(b)
	ctx := context.Background()
	now := time.Now()
	userIDs = make([]int64, mfatest.BenchUsers)
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
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
		for i := range mfatest.BenchUsers {
			res, err := users.Exec(mfatest.BenchEmail(i), "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", millis(now))
			if err != nil {
				return err
			}
			if userIDs[i], err = res.LastInsertId(); err != nil {
				return err
			}
			binary.BigEndian.PutUint64(secret, uint64(i))
			if _, err = factors.Exec(userIDs[i], secret, millis(now), millis(now)); err != nil {
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
	return db, userIDs
}

// pendingSessions creates n password-level sessions, the i-th for user
// userIDs[i % len(userIDs)], and returns their IDs.
func pendingSessions(b *testing.B, db *DB, userIDs []int64, n int) [][]byte {
	b.Helper()
	ids := make([][]byte, n)
	now := time.Now()
	err := db.inTx(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
		ins := tx.Stmt(db.st.insertSession)
		for i := range ids {
			ids[i] = mfatest.SessionIDFor(int64(i), b.Name()+strconv.Itoa(b.N))
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
