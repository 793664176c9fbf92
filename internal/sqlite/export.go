package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/transfer"
)

// Export reads every row of every table, and the highest ID each table has
// handed out, in one read transaction: a consistent snapshot, also while
// servers write to the database. Rows come in primary-key order.
func (db *DB) Export(ctx context.Context) (*transfer.Data, error) {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: export: %w", err)
	}
	defer tx.Rollback() // read only: nothing to commit
	d, err := export(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: export: %w", err)
	}
	return d, nil
}

func export(ctx context.Context, tx *sql.Tx) (*transfer.Data, error) {
	var (
		d   transfer.Data
		err error
	)
	if d.Users, err = queryAll(ctx, tx, "users", `SELECT `+userColumns+` FROM users ORDER BY id`,
		func(rows *sql.Rows) (u mfa.User, err error) {
			var created int64
			err = rows.Scan(&u.ID, &u.Email, &u.PasswordHash, &created)
			u.CreatedAt = timeOf(created)
			return u, err
		}); err != nil {
		return nil, err
	}
	if d.Factors, err = queryAll(ctx, tx, "factors", `SELECT `+factorColumns+` FROM factors ORDER BY id`,
		func(rows *sql.Rows) (f mfa.Factor, err error) {
			var (
				kind      string
				created   int64
				confirmed sql.NullInt64
			)
			err = rows.Scan(&f.ID, &f.UserID, &kind, &f.Secret, &f.LastStep, &created, &confirmed)
			f.Kind, f.CreatedAt, f.ConfirmedAt = mfa.FactorKind(kind), timeOf(created), nullTimeOf(confirmed)
			return f, err
		}); err != nil {
		return nil, err
	}
	if d.BackupCodes, err = queryAll(ctx, tx, "backup_codes", `SELECT `+codeColumns+` FROM backup_codes ORDER BY id`,
		func(rows *sql.Rows) (c mfa.BackupCode, err error) {
			var used sql.NullInt64
			err = rows.Scan(&c.ID, &c.UserID, &c.Hash, &used)
			c.UsedAt = nullTimeOf(used)
			return c, err
		}); err != nil {
		return nil, err
	}
	if d.Sessions, err = queryAll(ctx, tx, "sessions", `SELECT id, `+sessionColumns+` FROM sessions ORDER BY id`,
		func(rows *sql.Rows) (s mfa.Session, err error) {
			var level, created, seen, expires int64
			err = rows.Scan(&s.ID, &s.UserID, &level, &created, &seen, &expires, &s.IP)
			s.Level = mfa.Level(level)
			s.CreatedAt, s.LastSeenAt, s.ExpiresAt = timeOf(created), timeOf(seen), timeOf(expires)
			return s, err
		}); err != nil {
		return nil, err
	}
	if d.Throttles, err = queryAll(ctx, tx, "throttles", `SELECT subject, method, consecutive, last_failure FROM throttles ORDER BY subject, method`,
		func(rows *sql.Rows) (th transfer.Throttle, err error) {
			var (
				method string
				last   sql.NullInt64
			)
			err = rows.Scan(&th.Key.Subject, &method, &th.Consecutive, &last)
			th.Key.Method, th.LastFailure = mfa.Method(method), nullTimeOf(last)
			return th, err
		}); err != nil {
		return nil, err
	}
	if d.ThrottleFailures, err = queryAll(ctx, tx, "throttle_failures", `SELECT subject, method, at FROM throttle_failures ORDER BY subject, method, at`,
		func(rows *sql.Rows) (f transfer.Failure, err error) {
			var (
				method string
				at     int64
			)
			err = rows.Scan(&f.Key.Subject, &method, &at)
			f.Key.Method, f.At = mfa.Method(method), timeOf(at)
			return f, err
		}); err != nil {
		return nil, err
	}
	if d.Events, err = queryAll(ctx, tx, "events", `SELECT `+eventColumns+` FROM events ORDER BY id`,
		func(rows *sql.Rows) (e mfa.Event, err error) {
			var (
				typ string
				at  int64
			)
			err = rows.Scan(&e.ID, &e.UserID, &typ, &at, &e.IP, &e.Detail)
			e.Type, e.At = mfa.EventType(typ), timeOf(at)
			return e, err
		}); err != nil {
		return nil, err
	}
	if d.Notices, err = queryAll(ctx, tx, "notices", `SELECT event_id, due_at, attempts FROM notices ORDER BY event_id`,
		func(rows *sql.Rows) (n transfer.Notice, err error) {
			var due int64
			err = rows.Scan(&n.EventID, &due, &n.Attempts)
			n.Due = timeOf(due)
			return n, err
		}); err != nil {
		return nil, err
	}

	// sqlite_sequence holds the largest ID an AUTOINCREMENT table has ever
	// handed out; a table that never had a row has no entry. Events use
	// plain rowids, which follow the largest ID present.
	for _, s := range []struct {
		table string
		seq   *int64
	}{
		{"users", &d.Sequences.Users},
		{"factors", &d.Sequences.Factors},
		{"backup_codes", &d.Sequences.BackupCodes},
		{"events", &d.Sequences.Events},
	} {
		err := tx.QueryRowContext(ctx, `SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?1), 0),
	coalesce((SELECT max(id) FROM `+s.table+`), 0))`, s.table).Scan(s.seq)
		if err != nil {
			return nil, fmt.Errorf("sequence of %s: %w", s.table, err)
		}
	}
	return &d, nil
}

// queryAll runs a query inside tx and scans each row with scan.
func queryAll[T any](ctx context.Context, tx *sql.Tx, table, query string, scan func(*sql.Rows) (T, error)) ([]T, error) {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", table, err)
	}
	defer rows.Close()
	var all []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", table, err)
		}
		all = append(all, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", table, err)
	}
	return all, nil
}
