// Package sqlite implements mfa.Store on an embedded SQLite database, with
// the pure-Go driver modernc.org/sqlite, so twofold stays one static binary.
//
// The database runs in WAL mode. A DB holds two pools: one connection for
// every write, so writers queue in Go rather than spin on SQLite's lock, and
// a pool of read connections, which WAL lets run beside the writer. Write
// transactions begin IMMEDIATE: they take the write lock at BEGIN, so a
// transaction never fails half-way on a lock another process holds.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/twofold/twofold/internal/mfa"
)

// DB is an mfa.Store on one SQLite file. It is safe for concurrent use, also
// by several processes sharing the file.
type DB struct {
	path    string
	w       *sql.DB // one connection: every write goes through it
	r       *sql.DB // read-only connections
	readers int     // r's size
	ck      *sql.DB // one connection that checkpoints the WAL beside the writer
	st      stmts

	jobs            chan writeJob // write transactions for the writer goroutine
	quit            chan struct{} // closed by Close
	writerDone      chan struct{}
	committed       chan struct{} // the writer's nudge to the checkpointer
	checkpointsDone chan struct{}
	walPages        atomic.Int64 // the WAL's size at the checkpointer's last pass
	commits         atomic.Int64 // the writer's commits so far
	passes          atomic.Int64 // the checkpointer's passes so far
}

var _ mfa.Store = (*DB)(nil)

// busyTimeout is how long a connection waits for a lock another process holds.
const busyTimeout = 10 * time.Second

// pragmas are set on every connection. synchronous=NORMAL in WAL mode keeps
// the database consistent through a crash; a power loss may undo the last
// transactions, never corrupt the file.
//
// No mmap_size: in WAL mode a connection drops its page cache, and its
// memory map, whenever another connection has committed since its last
// transaction, so under a steady stream of writes mapping costs more than
// it saves (measured: about 15% fewer verifications/s).
//
// 8 MiB of page cache per connection: the pages past it come from the
// operating system's cache, and with 16 MiB the server's memory in the
// loadtest's phase 1 grew by 15 MB, mostly in the writer's cache (readers
// drop theirs at every commit), for no more verifications/s.
var pragmas = []string{
	fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
	"foreign_keys(ON)",
	"synchronous(NORMAL)",
	"cache_size(-8192)", // KiB: 8 MiB of pages per connection
	"temp_store(MEMORY)",
}

// walBound is the WAL's size in pages at which the writer checkpoints.
// The checkpointer connection copies the WAL into the database beside the
// writer (see checkpointEvery), so that no write waits for a checkpoint's
// fsyncs. The writer's own checkpoint then finds nearly every page copied,
// so it is short, and once it has caught up the next write starts the WAL
// over, which a checkpoint beside a busy writer never manages alone (the
// WAL grew past 2 GiB that way). A variable for tests.
var walBound = 10000

// walHardBound is the WAL's size in pages at which the writer stops for a
// restarting checkpoint, which waits for the readers of older snapshots:
// under a never-ending stream of reads, some reader always holds a page of
// the WAL and the writer's own checkpoint cannot start it over.
func walHardBound() int64 { return 4 * int64(walBound) }

// writePragmas are set on the write connection. journal_mode is a property
// of the file, set once for every process. journal_size_limit truncates the
// WAL after a checkpoint, so it does not stay at its largest.
func writePragmas() []string {
	return []string{
		"journal_mode(WAL)",
		fmt.Sprintf("wal_autocheckpoint(%d)", walBound),
		"journal_size_limit(67108864)",
	}
}

// The roles of connections.
const (
	roleRead = iota
	roleWrite
	roleCheckpoint
)

// dsn returns the data source name of path for the driver: the pragmas
// for each new connection of the role, and for the writer BEGIN IMMEDIATE.
func dsn(path string, role int) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	switch role {
	case roleWrite:
		for _, p := range writePragmas() {
			q.Add("_pragma", p)
		}
		q.Set("_txlock", "immediate")
	case roleRead:
		q.Add("_pragma", "query_only(ON)")
	case roleCheckpoint:
		q.Add("_pragma", "cache_size(-256)") // a checkpoint reads the WAL, not the cache
	}
	return path + "?" + q.Encode()
}

// Open opens the SQLite database at path, creating the file if it does not
// exist, and brings its schema up to date. path must name a file: an
// in-memory database cannot be shared by the read and write connections.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: open %q: want the path of a file, without '?' or '#'", path)
	}
	db := &DB{path: path}
	var err error
	if db.w, err = sql.Open("sqlite", dsn(path, roleWrite)); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.w.SetMaxOpenConns(1)
	db.w.SetMaxIdleConns(1)
	db.w.SetConnMaxLifetime(0)
	db.w.SetConnMaxIdleTime(0)
	if err := ping(ctx, db.w); err != nil {
		db.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := db.Migrate(ctx); err != nil {
		db.w.Close()
		return nil, err
	}
	if db.ck, err = sql.Open("sqlite", dsn(path, roleCheckpoint)); err != nil {
		db.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.ck.SetMaxOpenConns(1)
	db.ck.SetConnMaxIdleTime(0)
	db.jobs, db.quit, db.writerDone = make(chan writeJob), make(chan struct{}), make(chan struct{})
	db.committed, db.checkpointsDone = make(chan struct{}, 1), make(chan struct{})
	go db.writer()
	go db.checkpointer()

	if db.r, err = sql.Open("sqlite", dsn(path, roleRead)); err != nil {
		db.Close() // stops the writer and the checkpointer too
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.readers = max(4, 2*runtime.GOMAXPROCS(0))
	db.r.SetMaxOpenConns(db.readers)
	db.r.SetMaxIdleConns(db.readers)
	db.r.SetConnMaxLifetime(0)
	db.r.SetConnMaxIdleTime(0)
	if err := ping(ctx, db.r); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := db.st.prepare(ctx, db.w, db.r); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// ping opens a connection of pool, retrying for up to busyTimeout while the
// file is busy. Switching a file to WAL mode needs a lock that SQLite does
// not wait for, so processes starting together may see SQLITE_BUSY here.
func ping(ctx context.Context, pool *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		err := pool.PingContext(ctx)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// Close optimizes the database's statistics and closes its connections.
func (db *DB) Close() error {
	var errs []error
	if db.quit != nil {
		close(db.quit)
		<-db.writerDone
		<-db.checkpointsDone
	}
	if db.ck != nil {
		errs = append(errs, db.ck.Close())
	}
	errs = append(errs, db.st.close())
	if db.r != nil {
		errs = append(errs, db.r.Close())
	}
	if db.w != nil {
		// Cheap, and it keeps the query planner's statistics fresh.
		if _, err := db.w.Exec("PRAGMA optimize"); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, db.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// wrap turns a driver error into the Store's: no row is mfa.ErrNotFound, a
// unique value taken is mfa.ErrConflict, a reference to a missing row (a
// user that does not exist) is mfa.ErrNotFound. The cause stays wrapped.
func wrap(op string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: %s: %w", op, mfa.ErrNotFound)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("sqlite: %s: %w: %w", op, mfa.ErrConflict, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("sqlite: %s: %w: %w", op, mfa.ErrNotFound, err)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// millis is t as stored: unix milliseconds.
func millis(t time.Time) int64 { return t.UnixMilli() }

// nullMillis is t as stored in a nullable column: NULL for the zero time.
func nullMillis(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

// timeOf reads a stored time back, in UTC.
func timeOf(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// nullTimeOf reads a nullable stored time back: the zero time for NULL.
func nullTimeOf(ms sql.NullInt64) time.Time {
	if !ms.Valid {
		return time.Time{}
	}
	return timeOf(ms.Int64)
}

// soloTx runs f in a write transaction of its own (BEGIN IMMEDIATE) and
// commits it if f returns nil. It rolls back on an error, and on a panic in
// f, so the one write connection is never left inside a transaction.
func (db *DB) soloTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // after Commit, a no-op
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// A writeJob is one caller's write transaction, waiting for the writer.
type writeJob struct {
	ctx  context.Context
	f    func(ctx context.Context, tx *sql.Tx) error
	done chan error
}

// maxBatch bounds how many jobs share one commit.
const maxBatch = 64

var errClosed = errors.New("database closed")

// inTx runs f as one atomic unit of writes, as if in a transaction of its
// own: it commits with f's nil, and leaves nothing written on f's error.
// Under load, the writer runs the jobs waiting at once in one transaction,
// each inside a savepoint (group commit): many sign-ins pay for one commit,
// and they queue in arrival order rather than in database/sql's random one.
//
// ctx bounds the wait for the writer. Once f starts, it runs to the end
// with the ctx it is given, which carries ctx's values but is never
// cancelled: the driver answers a cancellation by interrupting the
// connection, and SQLite then rolls back the whole transaction, the writes
// of f's batchmates too.
func (db *DB) inTx(ctx context.Context, f func(ctx context.Context, tx *sql.Tx) error) error {
	job := writeJob{ctx: ctx, f: f, done: make(chan error, 1)}
	select {
	case db.jobs <- job:
	case <-db.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-job.done
}

// exec runs one prepared write statement through the writer, like every
// write.
func (db *DB) exec(ctx context.Context, stmt *sql.Stmt, args ...any) (res sql.Result, err error) {
	err = db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err = tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
		return err
	})
	return res, err
}

// writer runs write jobs until Close.
func (db *DB) writer() {
	defer close(db.writerDone)
	batch := make([]writeJob, 0, maxBatch)
	restartAbove := walHardBound() // WAL pages
	for {
		select {
		case <-db.quit:
			return
		case job := <-db.jobs:
			batch = append(batch[:0], job)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case job := <-db.jobs:
				batch = append(batch, job)
			default:
				break drain
			}
		}
		db.runBatch(batch)
		if pages := db.walPages.Load(); pages > restartAbove {
			if db.restartWAL() {
				db.walPages.Store(0)
				restartAbove = walHardBound()
			} else { // readers still busy: try again a bound later
				restartAbove = pages + int64(walBound)
			}
		}
		select {
		case db.committed <- struct{}{}:
		default: // the checkpointer has a nudge waiting already
		}
	}
}

// checkpointEvery is how many of the writer's commits a checkpoint pass
// waits for, checkpointDelay how long at most after the first of them. A
// pass copies each page once, in its latest version, and ends with two
// fsyncs: passes over several commits copy the pages that every sign-in
// writes (the sessions, throttles and events at the end of their tables)
// once instead of once per commit, and spend fewer fsyncs. An fsync holds
// one of the process's CPUs (a Go P) until the runtime hands it on, and
// costs the kernel's flusher CPU time besides. Under load, 8 commits come
// within milliseconds; at the loadtest's phase 2 (full sign-ins, about 170
// commits/s beside argon2id) the delay decides. Four alternated runs each
// of 8 commits or 10 ms, 8 or 250 ms, and 64 or 250 ms: 85.9, 86.4 and
// 87.9 sign-ins/s on average, the CPUs idle 4.5%, 4.1% and 3.1% of the
// time. 64 commits also took 5% less CPU per verification in phase 1, but
// their larger lag raised the p99 at 3,000 verifications/s from 4-5 ms to
// 5-22 ms; with 8 it stays as it was.
//
// The lag is what the writer's own checkpoint at walBound must copy and
// fsync while every write waits: so as the WAL nears walBound the
// checkpointer passes after every commit instead (see nearBound).
// Variables for tests.
var (
	checkpointEvery int64 = 8
	checkpointDelay       = 250 * time.Millisecond
)

// nearBound reports whether the WAL, at pages after the last pass, is
// likely to reach walBound before the next gathered pass, whose commits
// added stride pages last time: then the checkpointer stops gathering, so
// that the writer's checkpoint finds almost every page copied and its
// fsyncs have little to write. A gathered pass can lag far: at low rates
// checkpointDelay gathers many commits, and under load 8 commits of large
// batches hold thousands of pages. Measured in the loadtest's phase 1 at
// 3,000 verifications/s, the slowest batch in 8 s (the one that ran the
// writer's checkpoint): 11-13 ms with passes every 8 commits or 10 ms and
// no such rule, 6.5-9.4 ms with it and the current values.
func nearBound(pages, stride int64) bool {
	return pages+stride >= int64(walBound)
}

// checkpointer copies the WAL into the database after the writer's commits,
// until Close. A passive checkpoint waits for neither readers nor the
// writer, and the writer does not wait for it.
func (db *DB) checkpointer() {
	defer close(db.checkpointsDone)
	var (
		passedAt int64 // commits at the last pass
		pages    int64 // the WAL's size at the last pass
		stride   int64 // pages the commits of the last gathered pass added
	)
	delay := time.NewTimer(0)
	for {
		select {
		case <-db.quit:
			return
		case <-db.committed:
		}
		gathered := !nearBound(pages, stride)
		if gathered {
			delay.Reset(checkpointDelay)
		gather:
			for db.commits.Load()-passedAt < checkpointEvery {
				select {
				case <-db.quit:
					return
				case <-db.committed:
				case <-delay.C:
					break gather
				}
			}
			delay.Stop()
		}
		passedAt = db.commits.Load()
		// An error (the file busy) only puts the work off to the next
		// commit; so does a busy checkpoint, such as the writer's own,
		// which reports -1 pages.
		var busy, walPages, copied int64
		err := db.ck.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &walPages, &copied)
		if err == nil && walPages >= 0 {
			if gathered {
				stride = walPages - pages
				if walPages < pages { // the WAL started over meanwhile
					stride = walPages
				}
			}
			pages = walPages
			db.walPages.Store(walPages)
		}
		db.passes.Add(1)
	}
}

// restartWAL copies the whole WAL into the database and waits until no
// reader needs it, so that the next write starts it over. It holds every
// read connection of this process meanwhile, so that none of them starts a
// read that would keep the WAL in use; readers of other processes get up
// to restartWait to finish. Reads and writes wait meanwhile: it is for a
// WAL past walHardBound only. It reports whether the WAL will start over.
func (db *DB) restartWAL() bool {
	ctx, cancel := context.WithTimeout(context.Background(), restartWait)
	defer cancel()
	for range db.readers {
		c, err := db.r.Conn(ctx)
		if err != nil {
			return false // a long read, such as an export: another time
		}
		defer c.Close()
	}
	w, err := db.w.Conn(ctx)
	if err != nil {
		return false
	}
	defer w.Close()
	if _, err := w.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", restartWait.Milliseconds())); err != nil {
		return false
	}
	defer w.ExecContext(context.Background(), fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeout.Milliseconds()))
	var busy, walPages, copied int64
	err = w.QueryRowContext(ctx, "PRAGMA wal_checkpoint(RESTART)").Scan(&busy, &walPages, &copied)
	return err == nil && busy == 0
}

// restartWait bounds a restarting checkpoint's wait for readers.
const restartWait = time.Second

// runBatch runs the jobs in one transaction, each in a savepoint that is
// rolled back if the job fails, and tells each job its outcome after the
// commit.
func (db *DB) runBatch(batch []writeJob) {
	results := make([]error, len(batch))
	err := db.soloTx(context.Background(), func(tx *sql.Tx) error {
		for i, job := range batch {
			if err := job.ctx.Err(); err != nil {
				results[i] = err // gone before its turn: nothing to write
				continue
			}
			if _, err := tx.Stmt(db.st.savepoint).Exec(); err != nil {
				return err
			}
			results[i] = runJob(job, tx)
			if results[i] != nil {
				if _, err := tx.Stmt(db.st.rollbackToSavepoint).Exec(); err != nil {
					return err
				}
			}
			if _, err := tx.Stmt(db.st.releaseSavepoint).Exec(); err != nil {
				return err
			}
		}
		return nil
	})
	// Counted before any caller learns of its write, so that a caller
	// reading commits afterwards sees its own.
	db.commits.Add(1)
	for i, job := range batch {
		if err != nil {
			job.done <- err // the commit failed: nothing of the batch is written
		} else {
			job.done <- results[i]
		}
	}
}

// runJob runs one job's writes, turning a panic into an error so the writer
// survives it.
func runJob(job writeJob, tx *sql.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in write transaction: %v", p)
		}
	}()
	return job.f(context.WithoutCancel(job.ctx), tx)
}
