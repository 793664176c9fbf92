// Package postgres implements mfa.Store on PostgreSQL with pgx's native
// interface and its connection pool, for twofold instances that share one
// database behind a load balancer.
//
// Every race the Store's contract settles is settled by the database, so
// any number of instances may run against it: the compare-and-set methods
// are single conditional UPDATEs; multi-statement methods run in one READ
// COMMITTED transaction; RecordFailure locks the throttle key's row for its
// read-decide-write; changes to a user's factors and backup codes lock the
// user's row first, so that two of them for one user never interleave.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/twofold/twofold/internal/mfa"
)

// DB is an mfa.Store on a PostgreSQL database. It is safe for concurrent
// use, also by several processes sharing the database.
type DB struct {
	pool *pgxpool.Pool
}

var _ mfa.Store = (*DB)(nil)

// Open connects to the database at url, a postgres:// URL or a libpq
// keyword/value string, and brings its schema up to date. pgx's own
// parameters work in either, such as pool_max_conns (default: the larger of
// 4 and the number of CPUs) or search_path to keep the tables in a schema
// of their own.
func Open(ctx context.Context, url string) (*DB, error) {
	if url == "" {
		return nil, errors.New("postgres: open: want a postgres:// URL")
	}
	// The errors of pgx name the host, user and database, never the password.
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	db := &DB{pool: pool}
	if err := db.Migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the DB's connections, waiting for those in use to be
// released. It never fails; it returns an error to match the other stores.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// PostgreSQL's SQLSTATE codes that the Store maps to its own errors.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
)

// wrap turns a driver error into the Store's: no row is mfa.ErrNotFound, a
// unique value taken is mfa.ErrConflict, a reference to a missing row (a
// user that does not exist) is mfa.ErrNotFound. The cause stays wrapped.
func wrap(op string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: %s: %w", op, mfa.ErrNotFound)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case codeUniqueViolation:
			return fmt.Errorf("postgres: %s: %w: %w", op, mfa.ErrConflict, err)
		case codeForeignKeyViolation:
			return fmt.Errorf("postgres: %s: %w: %w", op, mfa.ErrNotFound, err)
		}
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// stamp is t as stored: truncated to the millisecond. timestamptz keeps
// microseconds, so the truncation is ours; the zone does not matter, as
// timestamptz is an instant.
func stamp(t time.Time) time.Time { return t.Truncate(time.Millisecond) }

// nullStamp is t as stored in a nullable column: NULL for the zero time.
func nullStamp(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: stamp(t), Valid: true}
}

// timeOf reads a stored time back in UTC (pgx hands it over in time.Local).
func timeOf(t time.Time) time.Time { return t.UTC() }

// nullTimeOf reads a nullable stored time back: the zero time for NULL.
func nullTimeOf(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// bytesOf is b for a NOT NULL bytea column: pgx sends a nil slice as NULL.
func bytesOf(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// inTx runs f in a transaction and commits it if f returns nil; it rolls
// back on an error or a panic.
func (db *DB) inTx(ctx context.Context, f func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.pool, f)
}

// lockUser locks the user's row against other changes of the user's factors
// and backup codes until tx ends. FOR NO KEY UPDATE does not block the
// foreign-key checks of new sessions and events, so sign-ins go on. A
// missing user locks nothing; the statements that follow find it missing.
const lockUser = `SELECT FROM users WHERE id = $1 FOR NO KEY UPDATE`
