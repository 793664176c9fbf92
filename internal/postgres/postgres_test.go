package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/mfa/mfatest"
	"github.com/twofold/twofold/internal/postgres/pgtest"
)

// newDatabase creates an empty database of the test's own.
func newDatabase(t testing.TB) string { return pgtest.NewDatabase(t) }

// openTest opens the database at url, closed at the end of the test.
func openTest(t testing.TB, url string) *DB {
	t.Helper()
	db, err := Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// TestStore runs the conformance suite on one database, emptied before
// each subtest. TRUNCATE without RESTART IDENTITY leaves the sequences as
// they are, so IDs are not reused across subtests either.
func TestStore(t *testing.T) {
	db := openTest(t, newDatabase(t))
	mfatest.TestStore(t, func(t *testing.T) mfa.Store {
		if _, err := db.pool.Exec(t.Context(), "TRUNCATE "+strings.Join(transferTables(), ", ")); err != nil {
			t.Fatalf("TRUNCATE: %v", err)
		}
		return db
	})
}

func latestVersion(t *testing.T) int {
	t.Helper()
	ms, err := migrations()
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	return len(ms)
}

func TestSchemaVersion(t *testing.T) {
	db := openTest(t, newDatabase(t))
	want := latestVersion(t)
	if want < 1 {
		t.Fatalf("got %d embedded migrations, want at least 1", want)
	}
	got, err := db.SchemaVersion(t.Context())
	if err != nil || got != want {
		t.Errorf("SchemaVersion: got %d, %v, want %d, nil", got, err, want)
	}
	// Every table is one that a migration between stores copies.
	rows, err := db.pool.Query(t.Context(), `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	tables := append(transferTables(), "schema_migrations")
	slices.Sort(tables)
	if !slices.Equal(names, tables) {
		t.Errorf("tables: got %v, want %v", names, tables)
	}
}

// TestReopen opens a database again, and migrates it again: nothing
// changes, nothing is lost.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	url := newDatabase(t)
	db, err := Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	u := &mfa.User{Email: "ada@example.com", PasswordHash: "h", CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	db.Close()

	for range 2 {
		db, err = Open(ctx, url)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Errorf("Migrate again: %v", err)
		}
		if v, err := db.SchemaVersion(ctx); err != nil || v != latestVersion(t) {
			t.Errorf("SchemaVersion after reopening: got %d, %v, want %d", v, err, latestVersion(t))
		}
		var n int
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != latestVersion(t) {
			t.Errorf("schema_migrations rows: got %d, %v, want %d", n, err, latestVersion(t))
		}
		got, err := db.UserByEmail(ctx, u.Email)
		if err != nil || got.ID != u.ID {
			t.Errorf("UserByEmail after reopening: got %+v, %v, want user %d", got, err, u.ID)
		}
		db.Close()
	}
}

// TestOpenConcurrent opens one new database from several DBs at once, as
// several instances starting together would: each must migrate or find
// the migration done, and none may fail.
func TestOpenConcurrent(t *testing.T) {
	url := newDatabase(t)
	const n = 8
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = Open(t.Context(), url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		if v, err := dbs[i].SchemaVersion(t.Context()); err != nil || v != latestVersion(t) {
			t.Errorf("SchemaVersion %d: got %d, %v, want %d", i, v, err, latestVersion(t))
		}
		dbs[i].Close()
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := t.Context()
	url := newDatabase(t)
	db, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, 'future.sql')`, latestVersion(t)+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(ctx, url)
	if err == nil {
		db.Close()
		t.Fatal("Open of a database newer than the program: got nil error, want one")
	}
	if !strings.Contains(err.Error(), "newer than this program") {
		t.Errorf("Open of a database newer than the program: got %q, want it to say so", err)
	}
}

func TestOpenBadURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, u := range []string{
		"",
		"postgres://%zz",
		"postgres://nobody:sekrit@127.0.0.1:1/twofold?sslmode=disable&connect_timeout=2", // nothing listens on port 1
	} {
		db, err := Open(ctx, u)
		if err == nil {
			db.Close()
			t.Errorf("Open(%q): got nil error, want one", u)
			continue
		}
		if strings.Contains(err.Error(), "sekrit") {
			t.Errorf("Open(%q): the error %q shows the password", u, err)
		}
	}
}

func TestErrors(t *testing.T) {
	db := openTest(t, newDatabase(t))
	ctx := t.Context()
	// A reference to a user that does not exist is ErrNotFound.
	err := db.CreateSession(ctx, &mfa.Session{ID: []byte("x"), UserID: 404, Level: mfa.LevelFull})
	if !errors.Is(err, mfa.ErrNotFound) {
		t.Errorf("CreateSession for a missing user: got %v, want ErrNotFound", err)
	}
	if err := db.ReplaceBackupCodes(ctx, 404, make([]mfa.BackupCode, 2), nil); !errors.Is(err, mfa.ErrNotFound) {
		t.Errorf("ReplaceBackupCodes for a missing user: got %v, want ErrNotFound", err)
	}
	u := &mfa.User{Email: "a@example.com", PasswordHash: "h"} // the zero time is stored too
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if got, err := db.UserByID(ctx, u.ID); err != nil || !got.CreatedAt.IsZero() {
		t.Errorf("a user created at the zero time: got %v, %v, want the zero time", got.CreatedAt, err)
	}
	err = db.CreateUser(ctx, &mfa.User{Email: "a@example.com", PasswordHash: "h"})
	if !errors.Is(err, mfa.ErrConflict) || errors.Is(err, mfa.ErrNotFound) {
		t.Errorf("CreateUser with a taken email: got %v, want ErrConflict", err)
	}
	if got, want := err.Error(), "postgres: create user: conflict: already exists: "; !strings.HasPrefix(got, want) {
		t.Errorf("error text: got %q, want it to start with %q", got, want)
	}
	if _, err := db.UserByID(ctx, 404); !errors.Is(err, mfa.ErrNotFound) || errors.Is(err, pgx.ErrNoRows) {
		t.Errorf("UserByID of a missing user: got %v, want ErrNotFound only", err)
	}
}

func TestRecordFailurePrunes(t *testing.T) {
	db := openTest(t, newDatabase(t))
	ctx := t.Context()
	key := mfa.ThrottleKey{Subject: "user:1", Method: mfa.MethodTOTP}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	admit := func(mfa.ThrottleState) bool { return true }
	for i := range 10 {
		at := base.Add(time.Duration(i) * time.Hour)
		if _, _, err := db.RecordFailure(ctx, key, at, at.Add(-mfa.ThrottleWindow), admit, nil); err != nil {
			t.Fatal(err)
		}
	}
	at := base.Add(30 * time.Hour)
	if _, _, err := db.RecordFailure(ctx, key, at, at.Add(-mfa.ThrottleWindow), admit, nil); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM throttle_failures`).Scan(&n); err != nil || n != 5 {
		t.Errorf("failure rows kept: got %d, %v, want 5 (hours 6 to 9, and 30)", n, err)
	}
	// A refused first failure of a new key leaves no row behind.
	other := mfa.ThrottleKey{Subject: "user:2", Method: mfa.MethodTOTP}
	if _, ok, err := db.RecordFailure(ctx, other, at, base, func(mfa.ThrottleState) bool { return false }, nil); ok || err != nil {
		t.Fatalf("refused RecordFailure: got %v, %v", ok, err)
	}
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM throttles WHERE subject = $1`, other.Subject).Scan(&n); err != nil || n != 0 {
		t.Errorf("throttle rows of a key whose only failure was refused: got %d, %v, want 0", n, err)
	}
}

// TestSignInLeavesNoThrottleRow: the lock UpgradeSession takes on a key
// without failures inserts its row; a sign-in that succeeds must not leave
// that row behind, or every user who ever signed in would keep one that
// DeleteStaleThrottles (which goes by the last failure) never removes.
func TestSignInLeavesNoThrottleRow(t *testing.T) {
	db := openTest(t, newDatabase(t))
	ctx := t.Context()
	now := time.Now()
	u := &mfa.User{Email: "ada@example.com", PasswordHash: "h", CreatedAt: now}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	key := mfa.ThrottleKey{Subject: "email:ada@example.com", Method: mfa.MethodPassword}
	next := &mfa.Session{ID: []byte("full-session-id-0123456789abcdef"), UserID: u.ID, Level: mfa.LevelFull,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
	ok, err := db.UpgradeSession(ctx, mfa.Upgrade{Next: next, Throttle: key, Since: now.Add(-mfa.ThrottleWindow),
		Admit: func(mfa.ThrottleState) bool { return true }})
	if err != nil || !ok {
		t.Fatalf("UpgradeSession: got %v, %v, want true, nil", ok, err)
	}
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM throttles`).Scan(&n); err != nil || n != 0 {
		t.Errorf("throttle rows after a sign-in without failures: got %d, %v, want 0", n, err)
	}

	// A key with a failure keeps its row (the failure still counts in its
	// window), with the consecutive count cleared.
	at := now.Add(-time.Minute)
	if _, _, err := db.RecordFailure(ctx, key, at, at.Add(-mfa.ThrottleWindow), func(mfa.ThrottleState) bool { return true }, nil); err != nil {
		t.Fatal(err)
	}
	next.ID = []byte("full-session-id-abcdef0123456789")
	ok, err = db.UpgradeSession(ctx, mfa.Upgrade{Next: next, Throttle: key, Since: now.Add(-mfa.ThrottleWindow),
		Admit: func(mfa.ThrottleState) bool { return true }})
	if err != nil || !ok {
		t.Fatalf("UpgradeSession after a failure: got %v, %v, want true, nil", ok, err)
	}
	var consecutive int
	if err := db.pool.QueryRow(ctx, `SELECT consecutive FROM throttles WHERE subject = $1`, key.Subject).Scan(&consecutive); err != nil || consecutive != 0 {
		t.Errorf("the key with a failure: got consecutive %d, %v, want its row with 0", consecutive, err)
	}

	// Such a row left by an earlier version goes at the next pruning; the
	// key with a recent failure stays.
	if _, err := db.pool.Exec(ctx, `INSERT INTO throttles (subject, method, consecutive) VALUES ('user:9', 'totp', 0)`); err != nil {
		t.Fatal(err)
	}
	if n, err := db.DeleteStaleThrottles(ctx, now.Add(-time.Hour)); err != nil || n != 1 {
		t.Errorf("DeleteStaleThrottles: got %d, %v, want 1 (the row without a failure)", n, err)
	}
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM throttles`).Scan(&n); err != nil || n != 1 {
		t.Errorf("throttle rows after pruning: got %d, %v, want 1 (the key with a failure)", n, err)
	}
}

// A password step's upgrade over a hash that a concurrent swap is
// replacing waits for the swap, then starts no session: had it read the
// old hash without waiting, its session could be written after the
// change's DeleteUserSessions and outlive the change.
func TestUpgradeWaitsForPasswordSwap(t *testing.T) {
	db := openTest(t, newDatabase(t))
	ctx := t.Context()
	now := time.Now()
	u := &mfa.User{Email: "ada@example.com", PasswordHash: "old", CreatedAt: now}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	swap, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer swap.Rollback(ctx)
	if _, err := swap.Exec(ctx, `UPDATE users SET password_hash = 'new' WHERE id = $1`, u.ID); err != nil {
		t.Fatal(err)
	}
	next := &mfa.Session{ID: []byte("full-session-id-0123456789abcdef"), UserID: u.ID, Level: mfa.LevelFull,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
	type outcome struct {
		ok  bool
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		ok, err := db.UpgradeSession(ctx, mfa.Upgrade{Next: next, PasswordHash: "old"})
		done <- outcome{ok, err}
	}()
	// The upgrade must wait for the swap's row lock.
	for waiting := false; !waiting; {
		select {
		case o := <-done:
			t.Fatalf("UpgradeSession did not wait for the swap: got %v, %v", o.ok, o.err)
		case <-time.After(10 * time.Millisecond):
		}
		if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_locks WHERE NOT granted)`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := swap.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if o := <-done; o.ok || o.err != nil {
		t.Fatalf("UpgradeSession over the replaced hash: got %v, %v, want false, nil", o.ok, o.err)
	}
	if _, err := db.Session(ctx, next.ID); !errors.Is(err, mfa.ErrNotFound) {
		t.Errorf("the session of the refused upgrade: got %v, want ErrNotFound", err)
	}
}

// TestInstances races two DBs on one database, as two server instances
// behind a load balancer: the throttle ceiling and the single use of a
// proof hold across them.
func TestInstances(t *testing.T) {
	url := newDatabase(t)
	a, b := openTest(t, url), openTest(t, url)
	instances := []*DB{a, b}
	ctx := t.Context()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

	const ceiling, n = 10, 60
	key := mfa.ThrottleKey{Subject: "user:1", Method: mfa.MethodTOTP}
	var recorded atomic.Int32
	race(t, n, func(i int) error {
		_, ok, err := instances[i%2].RecordFailure(ctx, key, base.Add(time.Duration(i)*time.Millisecond), base.Add(-time.Hour),
			func(st mfa.ThrottleState) bool { return st.WindowCount < ceiling }, nil)
		if ok {
			recorded.Add(1)
		}
		return err
	})
	if got := recorded.Load(); got != ceiling {
		t.Errorf("%d RecordFailure from two instances admitted while WindowCount < %d: got %d recorded, want %d", n, ceiling, got, ceiling)
	}

	u := &mfa.User{Email: "u@example.com", PasswordHash: "h", CreatedAt: base}
	if err := a.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	f := &mfa.Factor{UserID: u.ID, Kind: mfa.FactorTOTP, Secret: []byte("s"), CreatedAt: base}
	if err := a.SavePendingFactor(ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := a.ConfirmFactor(ctx, f.ID, base, 100, nil, nil); err != nil {
		t.Fatal(err)
	}
	olds := make([][]byte, n)
	for i := range olds {
		olds[i] = fmt.Appendf(nil, "pending-%d", i)
		s := &mfa.Session{ID: olds[i], UserID: u.ID, Level: mfa.LevelPassword, CreatedAt: base, LastSeenAt: base, ExpiresAt: base.Add(time.Hour)}
		if err := a.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var upgraded atomic.Int32
	race(t, n, func(i int) error {
		next := &mfa.Session{ID: fmt.Appendf(nil, "full-%d", i), UserID: u.ID, Level: mfa.LevelFull, CreatedAt: base, LastSeenAt: base, ExpiresAt: base.Add(time.Hour)}
		ok, err := instances[i%2].UpgradeSession(ctx, mfa.Upgrade{Old: olds[i], Next: next, ClaimFactor: f.ID, ClaimStep: 101,
			Event: &mfa.Event{UserID: u.ID, Type: mfa.EventLoginSucceeded, At: base}})
		if ok {
			upgraded.Add(1)
		}
		return err
	})
	if got := upgraded.Load(); got != 1 {
		t.Errorf("%d sign-ins from two instances spending one step: got %d upgraded, want 1", n, got)
	}
	if evs, err := b.Events(ctx, u.ID, 100); err != nil || len(evs) != 1 {
		t.Errorf("events: got %d, %v, want 1", len(evs), err)
	}
}

// race runs f in n goroutines released at once and reports their errors.
func race(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}

// TestConcurrentReplaceCodes replaces one user's backup codes from many
// goroutines at once: the user's lock makes each replacement whole, so one
// set of codes is left, never a mix or a union.
func TestConcurrentReplaceCodes(t *testing.T) {
	db := openTest(t, newDatabase(t))
	ctx := t.Context()
	u := &mfa.User{Email: "u@example.com", PasswordHash: "h"}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	race(t, 20, func(i int) error {
		codes := make([]mfa.BackupCode, 10)
		for j := range codes {
			codes[j].Hash = fmt.Appendf(nil, "%d-%d", i, j)
		}
		return db.ReplaceBackupCodes(ctx, u.ID, codes, nil)
	})
	cs, err := db.UnusedBackupCodes(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 10 {
		t.Fatalf("codes after concurrent replacements: got %d, want 10", len(cs))
	}
	set, _, _ := strings.Cut(string(cs[0].Hash), "-")
	for _, c := range cs {
		if s, _, _ := strings.Cut(string(c.Hash), "-"); s != set {
			t.Errorf("codes after concurrent replacements: a mix of sets %s and %s", set, s)
		}
	}
}

// TestDeleteStaleWhileRecording runs DeleteStaleThrottles while failures
// are recorded on keys it deletes: neither may fail or deadlock.
func TestDeleteStaleWhileRecording(t *testing.T) {
	db := openTest(t, newDatabase(t))
	ctx := t.Context()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	always := func(mfa.ThrottleState) bool { return true }
	const keys = 20
	for i := range keys {
		key := mfa.ThrottleKey{Subject: fmt.Sprint("user:", i), Method: mfa.MethodTOTP}
		for j := range 5 {
			if _, _, err := db.RecordFailure(ctx, key, base.Add(time.Duration(j)*time.Minute), base.Add(-time.Hour), always, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	later := base.Add(48 * time.Hour)
	race(t, 2*keys, func(i int) error {
		if i%2 == 0 {
			_, err := db.DeleteStaleThrottles(ctx, later.Add(-time.Hour))
			return err
		}
		key := mfa.ThrottleKey{Subject: fmt.Sprint("user:", i/2), Method: mfa.MethodTOTP}
		_, _, err := db.RecordFailure(ctx, key, later, later.Add(-24*time.Hour), always, nil)
		return err
	})
	for i := range keys {
		key := mfa.ThrottleKey{Subject: fmt.Sprint("user:", i), Method: mfa.MethodTOTP}
		st, err := db.ThrottleState(ctx, key, later.Add(-24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if st.WindowCount != 1 || !st.LastFailure.Equal(later) {
			t.Errorf("%s: got window %d, last failure %v, want 1, %v", key.Subject, st.WindowCount, st.LastFailure, later)
		}
	}
}

// TestQueryPlans checks that every lookup can use an index that also
// yields its order: with sequential scans, bitmap scans and sorts priced
// out (which the planner still uses when there is no other way), no plan
// scans a table or sorts.
func TestQueryPlans(t *testing.T) {
	db := openTest(t, newDatabase(t))
	ctx := t.Context()
	args := strings.NewReplacer("$1", "'s'", "$2", "'m'", "$3", "now()")
	for _, q := range []string{
		`SELECT ` + userColumns + ` FROM users WHERE id = 1`,
		`SELECT ` + userColumns + ` FROM users WHERE email = 'x'`,
		`SELECT ` + factorColumns + ` FROM factors WHERE user_id = 1 ORDER BY id`,
		`SELECT ` + factorColumns + ` FROM factors WHERE id > 1 ORDER BY id LIMIT 10`,
		`SELECT ` + codeColumns + ` FROM backup_codes WHERE user_id = 1 AND used_at IS NULL ORDER BY id`,
		`DELETE FROM backup_codes WHERE user_id = 1`,
		strings.NewReplacer("$1", "1", "$2", "1").Replace(newerCodes),
		`SELECT ` + sessionColumns + ` FROM sessions WHERE id = '\x00'`,
		strings.ReplaceAll(sessionViewSQL, "$1", `'\x00'`),
		`DELETE FROM sessions WHERE user_id = 1`,
		`DELETE FROM sessions WHERE expires_at < now()`,
		`SELECT ` + eventColumns + ` FROM events WHERE user_id = 1 ORDER BY id DESC LIMIT 10`,
		args.Replace(throttleStateSQL),
		strings.ReplaceAll(args.Replace(signInViewSQL), "$4", "'x'"),
		args.Replace(resetThrottle),
		`SELECT FROM throttles WHERE subject = 's' AND method = 'm' FOR UPDATE`,
		`DELETE FROM throttle_failures WHERE subject = 's' AND method = 'm' AND at < now()`,
	} {
		err := db.inTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off`); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `EXPLAIN `+q)
			if err != nil {
				return err
			}
			plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			// An index scan without an Index Cond reads the whole index.
			text := strings.Join(plan, "\n")
			if strings.Contains(text, "Seq Scan") || strings.Contains(text, "Sort") ||
				strings.Count(text, "Index Scan")+strings.Count(text, "Index Only Scan") > strings.Count(text, "Index Cond") {
				t.Errorf("%s: plan\n%s\nwant index searches only", q, text)
			}
			return errors.New("rollback")
		})
		if err != nil && err.Error() != "rollback" {
			t.Fatalf("%s: %v", q, err)
		}
	}
}
