package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/mfa/mfatest"
)

// openTest opens a new database in a temporary directory, closed at the end of the test.
func openTest(t testing.TB) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "twofold.db"))
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

func TestStore(t *testing.T) {
	mfatest.TestStore(t, func(t *testing.T) mfa.Store { return openTest(t) })
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
	db := openTest(t)
	want := latestVersion(t)
	if want < 1 {
		t.Fatalf("got %d embedded migrations, want at least 1", want)
	}
	got, err := db.SchemaVersion(t.Context())
	if err != nil || got != want {
		t.Errorf("SchemaVersion: got %d, %v, want %d, nil", got, err, want)
	}
	for _, table := range []string{"users", "factors", "backup_codes", "sessions", "throttles", "throttle_failures", "events", "schema_migrations"} {
		var n int
		if err := db.r.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, table).Scan(&n); err != nil || n != 1 {
			t.Errorf("table %s: got %d, %v, want it to exist", table, n, err)
		}
	}
	var mode string
	if err := db.r.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode: got %q, %v, want wal", mode, err)
	}
	var fk int
	if err := db.w.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys: got %d, %v, want 1", fk, err)
	}
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "twofold.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	u := &mfa.User{Email: "ada@example.com", PasswordHash: "h", CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	for range 2 {
		db, err = Open(ctx, path)
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
		if err := db.r.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != latestVersion(t) {
			t.Errorf("schema_migrations rows: got %d, %v, want %d", n, err, latestVersion(t))
		}
		got, err := db.UserByEmail(ctx, u.Email)
		if err != nil || got.ID != u.ID {
			t.Errorf("UserByEmail after reopening: got %+v, %v, want user %d", got, err, u.ID)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

// TestOpenConcurrent opens one new file from several DBs at once, as
// several processes starting together would: each must migrate or find
// the migration done, and none may fail.
func TestOpenConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "twofold.db")
	const n = 8
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = Open(t.Context(), path) })
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
	path := filepath.Join(t.TempDir(), "twofold.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future.sql', 0)`, latestVersion(t)+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err := Open(ctx, path); err == nil {
		db.Close()
		t.Error("Open of a database newer than the program: got nil error, want one")
	}
}

func TestOpenBadPath(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:x.db", filepath.Join(t.TempDir(), "a?b.db")} {
		if db, err := Open(t.Context(), path); err == nil {
			db.Close()
			t.Errorf("Open(%q): got nil error, want one", path)
		}
	}
}

func TestErrors(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	// A reference to a user that does not exist is ErrNotFound.
	err := db.CreateSession(ctx, &mfa.Session{ID: []byte("x"), UserID: 404, Level: mfa.LevelFull})
	if !errors.Is(err, mfa.ErrNotFound) {
		t.Errorf("CreateSession for a missing user: got %v, want ErrNotFound", err)
	}
	u := &mfa.User{Email: "a@example.com", PasswordHash: "h"}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	err = db.CreateUser(ctx, &mfa.User{Email: "a@example.com", PasswordHash: "h"})
	if !errors.Is(err, mfa.ErrConflict) || errors.Is(err, mfa.ErrNotFound) {
		t.Errorf("CreateUser with a taken email: got %v, want ErrConflict", err)
	}
	if got, want := err.Error(), "sqlite: create user: conflict: already exists: "; !strings.HasPrefix(got, want) {
		t.Errorf("error text: got %q, want it to start with %q", got, want)
	}
	if _, err := db.UserByID(ctx, 404); !errors.Is(err, mfa.ErrNotFound) || errors.Is(err, sql.ErrNoRows) {
		t.Errorf("UserByID of a missing user: got %v, want ErrNotFound only", err)
	}
}

func TestRecordFailurePrunes(t *testing.T) {
	db := openTest(t)
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
	if err := db.r.QueryRow(`SELECT count(*) FROM throttle_failures`).Scan(&n); err != nil || n != 5 {
		t.Errorf("failure rows kept: got %d, %v, want 5 (hours 6 to 9, and 30)", n, err)
	}
}

// TestQueryPlans checks that every lookup uses an index, not a table scan.
func TestQueryPlans(t *testing.T) {
	db := openTest(t)
	for _, q := range []string{
		`SELECT * FROM users WHERE email = 'x'`,
		`SELECT * FROM factors WHERE user_id = 1 ORDER BY id`,
		`SELECT * FROM backup_codes WHERE user_id = 1 AND used_at IS NULL ORDER BY id`,
		strings.NewReplacer("?", "1").Replace(newerCodesSQL),
		`DELETE FROM sessions WHERE user_id = 1`,
		`DELETE FROM sessions WHERE expires_at < 1`,
		`SELECT * FROM events WHERE user_id = 1 ORDER BY id DESC LIMIT 10`,
		throttleStateSQL,
		`DELETE FROM throttle_failures WHERE subject = 'a' AND method = 'b' AND at < 1`,
	} {
		var args []any
		if q == throttleStateSQL {
			args = []any{"s", "m", 0}
		}
		rows, err := db.r.Query(`EXPLAIN QUERY PLAN `+q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(detail, "SCAN") || strings.Contains(detail, "TEMP B-TREE") {
				t.Errorf("%s: plan %q, want an index search", q, detail)
			}
		}
		rows.Close()
	}
}

// A lone commit, short of the checkpointEvery a pass waits for, still
// reaches the database file itself within checkpointDelay or so.
func TestCheckpointerCopiesLoneCommit(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	u := &mfa.User{Email: "ann@example.com", PasswordHash: "h", CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	// Wait until the checkpointer has passed over the CreateUser, then
	// write once more: the one commit to watch.
	waitFor(t, func() bool { return db.walPages.Load() > 0 })
	marker := "lone-commit-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := db.AddEvent(ctx, &mfa.Event{UserID: u.ID, Type: mfa.EventLogout, At: time.Now(), Detail: marker}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		b, err := os.ReadFile(db.path)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Contains(b, []byte(marker))
	})
}

// Under a stream of commits, a pass waits for checkpointEvery of them: with
// the delay out of reach, one commit short brings no pass, and Close stops
// the waiting checkpointer; the last commit brings the pass.
func TestCheckpointerWaitsForCommits(t *testing.T) {
	defer func(d time.Duration) { checkpointDelay = d }(checkpointDelay)
	checkpointDelay = time.Hour
	ctx := context.Background()
	commitUpTo := func(db *DB, n int64) {
		t.Helper()
		for i := 0; db.commits.Load() < n; i++ {
			u := &mfa.User{Email: "u" + strconv.Itoa(i) + "@example.com", PasswordHash: "h", CreatedAt: time.Now()}
			if err := db.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
	}

	db, err := Open(ctx, filepath.Join(t.TempDir(), "twofold.db"))
	if err != nil {
		t.Fatal(err)
	}
	commitUpTo(db, checkpointEvery-1)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if n := db.passes.Load(); n != 0 {
		t.Fatalf("%d passes after %d commits, want none before %d", n, db.commits.Load(), checkpointEvery)
	}

	db = openTest(t)
	commitUpTo(db, checkpointEvery)
	waitFor(t, func() bool { return db.passes.Load() == 1 })
}

// Near walBound the checkpointer stops gathering commits: once a pass
// finds the WAL within one gathered pass's growth of the bound, a lone
// commit brings the next pass, so that the writer's own checkpoint at the
// bound, which every write waits for, finds almost everything copied.
func TestCheckpointerPassesEachCommitNearBound(t *testing.T) {
	defer func(b int, e int64, d time.Duration) {
		walBound, checkpointEvery, checkpointDelay = b, e, d
	}(walBound, checkpointEvery, checkpointDelay)
	walBound, checkpointEvery, checkpointDelay = 400, 4, time.Hour
	db := openTest(t)
	ctx := context.Background()
	u := &mfa.User{Email: "ann@example.com", PasswordHash: "h", CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	// A reader's snapshot keeps the WAL from starting over, as a busy
	// writer does: a pass alone would catch up with these lone commits.
	snapshot, err := db.r.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer snapshot.Rollback()
	var n int
	if err := snapshot.QueryRow(`SELECT count(*) FROM users`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	detail := strings.Repeat("x", 3000) // a page of its own for each event
	var passedAt, pages, stride int64   // as the checkpointer sees them
	for range 4 * walBound {
		passes := db.passes.Load()
		if err := db.AddEvent(ctx, &mfa.Event{UserID: u.ID, Type: mfa.EventLoginFailed, At: time.Now(), Detail: detail}); err != nil {
			t.Fatal(err)
		}
		commits := db.commits.Load()
		switch {
		case nearBound(pages, stride):
			// Without the rule, this commit alone would wait an hour.
			waitFor(t, func() bool { return db.passes.Load() == passes+1 })
			if pages >= int64(walBound) {
				t.Fatalf("the WAL reached %d pages before the checkpointer passed after each commit (bound %d)", pages, walBound)
			}
			t.Logf("a pass after a lone commit at %d pages, %d a gathered pass before (bound %d)", pages, stride, walBound)
			return
		case commits-passedAt == checkpointEvery:
			waitFor(t, func() bool { return db.passes.Load() == passes+1 })
			walPages := db.walPages.Load()
			stride, pages, passedAt = walPages-pages, walPages, commits
		case db.passes.Load() != passes:
			t.Fatalf("a pass after %d commits, want one every %d", commits-passedAt, checkpointEvery)
		}
	}
	t.Fatalf("the WAL never came near its bound: %d pages after the last pass", pages)
}

// waitFor polls cond for up to 10 s, generous for a loaded machine: the
// checkpointer acts within milliseconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the checkpointer did not copy the commit into the database file within 10 s")
		}
	}
}

// TestWALStartsOver keeps the writer busy with readers beside it and checks
// that the WAL still starts over near its bound instead of growing with
// every write: the checkpointer copies beside the writer, and the writer's
// own checkpoint at the bound lets the next write start the WAL over.
func TestWALStartsOver(t *testing.T) {
	defer func(b int) { walBound = b }(walBound)
	walBound = 100
	db := openTest(t)
	ctx := context.Background()
	u := &mfa.User{Email: "ann@example.com", PasswordHash: "h", CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	const writers, readers, events = 8, 4, 8000
	detail := strings.Repeat("x", 3000) // a page of its own for each event
	var (
		wg      sync.WaitGroup
		written atomic.Int64
		errs    = make(chan error, writers+readers)
	)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for written.Add(1) <= events {
				if err := db.AddEvent(ctx, &mfa.Event{UserID: u.ID, Type: mfa.EventLoginFailed, At: time.Now(), Detail: detail}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for written.Load() < events {
				if _, err := db.Events(ctx, u.ID, 5); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fi, err := os.Stat(db.path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	// Without starting over, the WAL would hold every page written: over
	// 8,000 pages, 32 MiB. The bound is 100 pages, the hard bound 400, but
	// on a loaded machine the checkpointer reports the WAL's size late, so
	// the test asks only for less than half of what was written.
	if limit := int64(events / 2 * 4096); fi.Size() > limit {
		t.Fatalf("WAL of %d bytes after %d writes, want at most %d: it does not start over", fi.Size(), events, limit)
	}
	t.Logf("WAL of %d bytes after %d writes of 3 KB", fi.Size(), events)
}

// TestBatchIsolatesJobs: in one group commit, a job that fails or panics
// after writing leaves none of its writes, and its batchmates keep theirs.
func TestBatchIsolatesJobs(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	errFail := errors.New("job fails after writing")
	email := func(i int) string { return "u" + strconv.Itoa(i) + "@example.com" }
	batch := make([]writeJob, 6)
	for i := range batch {
		batch[i] = writeJob{ctx: ctx, done: make(chan error, 1), f: func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.Exec(`INSERT INTO users (email, password_hash, created_at) VALUES (?, 'h', 0)`, email(i)); err != nil {
				return err
			}
			switch i {
			case 1, 3:
				return errFail
			case 5:
				panic("job panics after writing")
			}
			return nil
		}}
	}
	db.runBatch(batch)
	for i, job := range batch {
		err := <-job.done
		_, uerr := db.UserByEmail(ctx, email(i))
		failing := i%2 == 1
		switch {
		case failing && err == nil:
			t.Errorf("job %d: no error", i)
		case !failing && err != nil:
			t.Errorf("job %d: %v", i, err)
		case failing && !errors.Is(uerr, mfa.ErrNotFound):
			t.Errorf("job %d failed, yet its user is there (lookup: %v)", i, uerr)
		case !failing && uerr != nil:
			t.Errorf("job %d succeeded, yet its user is missing: %v", i, uerr)
		}
	}
}

// TestBatchOutlivesCancelledCaller: a caller that goes away (its context
// cancelled) while its job runs must not cost its batchmates their writes.
// The driver answers a cancelled context by interrupting the connection,
// and SQLite rolls back the whole transaction of an interrupted write.
func TestBatchOutlivesCancelledCaller(t *testing.T) {
	db := openTest(t)
	email := func(i int) string { return "u" + strconv.Itoa(i) + "@example.com" }
	batch := make([]writeJob, 3)
	for i := range batch {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		batch[i] = writeJob{ctx: ctx, done: make(chan error, 1), f: func(ctx context.Context, tx *sql.Tx) error {
			n := 1
			if i == 1 {
				// The client hangs up while its job runs a statement
				// long enough for the driver to notice.
				time.AfterFunc(10*time.Millisecond, cancel)
				n = 500_000
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO users (email, password_hash, created_at)
				SELECT ?, 'h', max(x) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT x FROM c)`, email(i), n)
			return err
		}}
	}
	db.runBatch(batch)
	for i, job := range batch {
		if err := <-job.done; err != nil {
			t.Errorf("job %d: %v", i, err)
		}
		if _, err := db.UserByEmail(t.Context(), email(i)); err != nil {
			t.Errorf("user of job %d: %v", i, err)
		}
	}
}
