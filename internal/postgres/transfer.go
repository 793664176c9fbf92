package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/transfer"
)

// Export reads every row of every table, and the highest ID each table has
// handed out, in one read-only REPEATABLE READ transaction: a consistent
// snapshot, also while servers write to the database. Rows come in
// primary-key order, text and bytes compared byte by byte (COLLATE "C"),
// as SQLite compares them.
func (db *DB) Export(ctx context.Context) (*transfer.Data, error) {
	var d *transfer.Data
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			var err error
			d, err = export(ctx, tx)
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("postgres: export: %w", err)
	}
	return d, nil
}

func export(ctx context.Context, tx pgx.Tx) (*transfer.Data, error) {
	var (
		d   transfer.Data
		err error
	)
	if d.Users, err = collect(ctx, tx, "users", `SELECT `+userColumns+` FROM users ORDER BY id`,
		func(row pgx.CollectableRow) (u mfa.User, err error) {
			err = row.Scan(&u.ID, &u.Email, &u.PasswordHash, &u.CreatedAt)
			u.CreatedAt = timeOf(u.CreatedAt)
			return u, err
		}); err != nil {
		return nil, err
	}
	if d.Factors, err = collect(ctx, tx, "factors", `SELECT `+factorColumns+` FROM factors ORDER BY id`,
		func(row pgx.CollectableRow) (f mfa.Factor, err error) {
			var (
				kind      string
				confirmed pgtype.Timestamptz
			)
			err = row.Scan(&f.ID, &f.UserID, &kind, &f.Secret, &f.LastStep, &f.CreatedAt, &confirmed)
			f.Kind, f.CreatedAt, f.ConfirmedAt = mfa.FactorKind(kind), timeOf(f.CreatedAt), nullTimeOf(confirmed)
			return f, err
		}); err != nil {
		return nil, err
	}
	if d.BackupCodes, err = collect(ctx, tx, "backup_codes", `SELECT `+codeColumns+` FROM backup_codes ORDER BY id`,
		func(row pgx.CollectableRow) (c mfa.BackupCode, err error) {
			var used pgtype.Timestamptz
			err = row.Scan(&c.ID, &c.UserID, &c.Hash, &used)
			c.UsedAt = nullTimeOf(used)
			return c, err
		}); err != nil {
		return nil, err
	}
	if d.Sessions, err = collect(ctx, tx, "sessions", `SELECT id, `+sessionColumns+` FROM sessions ORDER BY id`,
		func(row pgx.CollectableRow) (s mfa.Session, err error) {
			var level int32
			err = row.Scan(&s.ID, &s.UserID, &level, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt, &s.IP)
			s.Level = mfa.Level(level)
			s.CreatedAt, s.LastSeenAt, s.ExpiresAt = timeOf(s.CreatedAt), timeOf(s.LastSeenAt), timeOf(s.ExpiresAt)
			return s, err
		}); err != nil {
		return nil, err
	}
	if d.Throttles, err = collect(ctx, tx, "throttles", `SELECT subject, method, consecutive, last_failure FROM throttles
ORDER BY subject COLLATE "C", method COLLATE "C"`,
		func(row pgx.CollectableRow) (th transfer.Throttle, err error) {
			var (
				method      string
				consecutive int32
				last        pgtype.Timestamptz
			)
			err = row.Scan(&th.Key.Subject, &method, &consecutive, &last)
			th.Key.Method, th.Consecutive, th.LastFailure = mfa.Method(method), int(consecutive), nullTimeOf(last)
			return th, err
		}); err != nil {
		return nil, err
	}
	if d.ThrottleFailures, err = collect(ctx, tx, "throttle_failures", `SELECT subject, method, at FROM throttle_failures
ORDER BY subject COLLATE "C", method COLLATE "C", at`,
		func(row pgx.CollectableRow) (f transfer.Failure, err error) {
			var method string
			err = row.Scan(&f.Key.Subject, &method, &f.At)
			f.Key.Method, f.At = mfa.Method(method), timeOf(f.At)
			return f, err
		}); err != nil {
		return nil, err
	}
	if d.Events, err = collect(ctx, tx, "events", `SELECT `+eventColumns+` FROM events ORDER BY id`,
		func(row pgx.CollectableRow) (e mfa.Event, err error) {
			var typ string
			err = row.Scan(&e.ID, &e.UserID, &typ, &e.At, &e.IP, &e.Detail)
			e.Type, e.At = mfa.EventType(typ), timeOf(e.At)
			return e, err
		}); err != nil {
		return nil, err
	}
	if d.Notices, err = collect(ctx, tx, "notices", `SELECT event_id, due_at, attempts FROM notices ORDER BY event_id`,
		func(row pgx.CollectableRow) (n transfer.Notice, err error) {
			err = row.Scan(&n.EventID, &n.Due, &n.Attempts)
			n.Due = timeOf(n.Due)
			return n, err
		}); err != nil {
		return nil, err
	}

	// Sequences are not transactional: read after the rows, they are at
	// least every ID the snapshot holds. The max with the rows is for a
	// sequence set back by hand.
	for _, s := range sequences(&d) {
		last, err := lastHandedOut(ctx, tx, s.table)
		if err != nil {
			return nil, err
		}
		*s.seq = max(last, s.maxID)
	}
	return &d, nil
}

// collect runs a query inside tx and scans each row with scan.
func collect[T any](ctx context.Context, tx pgx.Tx, table, sql string, scan pgx.RowToFunc[T]) ([]T, error) {
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", table, err)
	}
	all, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", table, err)
	}
	return all, nil
}

// A tableSequence is a table's identity sequence as d sees it: where its
// value goes, and the largest ID among d's rows.
type tableSequence struct {
	table string
	seq   *int64
	maxID int64
}

func sequences(d *transfer.Data) []tableSequence {
	maxID := func(n int, id func(int) int64) int64 {
		var m int64
		for i := range n {
			m = max(m, id(i))
		}
		return m
	}
	return []tableSequence{
		{"users", &d.Sequences.Users, maxID(len(d.Users), func(i int) int64 { return d.Users[i].ID })},
		{"factors", &d.Sequences.Factors, maxID(len(d.Factors), func(i int) int64 { return d.Factors[i].ID })},
		{"backup_codes", &d.Sequences.BackupCodes, maxID(len(d.BackupCodes), func(i int) int64 { return d.BackupCodes[i].ID })},
		{"events", &d.Sequences.Events, maxID(len(d.Events), func(i int) int64 { return d.Events[i].ID })},
	}
}

// lastHandedOut returns the last value the identity sequence of table's id
// column handed out, 0 for none. A sequence not yet called, new or
// restarted, hands out last_value next.
func lastHandedOut(ctx context.Context, tx pgx.Tx, table string) (int64, error) {
	var name string
	if err := tx.QueryRow(ctx, `SELECT pg_get_serial_sequence($1, 'id')`, table).Scan(&name); err != nil {
		return 0, fmt.Errorf("sequence of %s: %w", table, err)
	}
	// name comes from the catalog, quoted as an identifier where needed.
	var last int64
	err := tx.QueryRow(ctx, `SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM `+name).Scan(&last)
	if err != nil {
		return 0, fmt.Errorf("sequence of %s: %w", table, err)
	}
	return max(last, 0), nil
}

// transferTables are the tables in the order Import copies them: a table's
// rows refer only to tables before it.
func transferTables() []string {
	return []string{"users", "factors", "backup_codes", "sessions", "throttles", "throttle_failures", "events", "notices"}
}

// Import copies d into the database, which must be empty: it refuses, and
// writes nothing, when any table holds a row, naming those tables. It
// copies every table in one transaction, so either all of d lands or
// nothing does, and sets each identity sequence so that the next ID is
// above d's Sequences (and above any ID the sequence handed out before): an
// ID deleted at the source is never handed out again here. Times are kept
// to the millisecond. progress, if not nil, is told of each table copied;
// the rows are committed when Import returns nil.
//
// The tables are locked against writes for the duration, and briefly
// against reads as the sequences are set.
func (db *DB) Import(ctx context.Context, d *transfer.Data, progress func(table string, rows int)) error {
	if d == nil {
		return errors.New("postgres: import: no data")
	}
	if err := db.inTx(ctx, func(tx pgx.Tx) error { return importData(ctx, tx, d, progress) }); err != nil {
		return fmt.Errorf("postgres: import: %w", err)
	}
	return nil
}

func importData(ctx context.Context, tx pgx.Tx, d *transfer.Data, progress func(string, int)) error {
	tables := transferTables()
	// EXCLUSIVE: nobody writes while the tables are checked and filled;
	// readers go on.
	if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(tables, ", ")+` IN EXCLUSIVE MODE`); err != nil {
		return err
	}
	var full []string
	for _, table := range tables {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM `+table+`)`).Scan(&exists); err != nil {
			return fmt.Errorf("%s: %w", table, err)
		}
		if exists {
			full = append(full, table)
		}
	}
	if len(full) > 0 {
		return fmt.Errorf("the database is not empty: rows in %s; import only into a new, empty database", strings.Join(full, ", "))
	}

	copies := []struct {
		table   string
		columns []string
		rows    int
		row     func(i int) []any
	}{
		{"users", []string{"id", "email", "password_hash", "created_at"}, len(d.Users), func(i int) []any {
			u := &d.Users[i]
			return []any{u.ID, u.Email, u.PasswordHash, stamp(u.CreatedAt)}
		}},
		{"factors", []string{"id", "user_id", "kind", "secret", "last_step", "created_at", "confirmed_at"}, len(d.Factors), func(i int) []any {
			f := &d.Factors[i]
			return []any{f.ID, f.UserID, string(f.Kind), bytesOf(f.Secret), f.LastStep, stamp(f.CreatedAt), nullStamp(f.ConfirmedAt)}
		}},
		{"backup_codes", []string{"id", "user_id", "hash", "used_at"}, len(d.BackupCodes), func(i int) []any {
			c := &d.BackupCodes[i]
			return []any{c.ID, c.UserID, bytesOf(c.Hash), nullStamp(c.UsedAt)}
		}},
		{"sessions", []string{"id", "user_id", "level", "created_at", "last_seen_at", "expires_at", "ip"}, len(d.Sessions), func(i int) []any {
			return sessionArgs(&d.Sessions[i])
		}},
		{"throttles", []string{"subject", "method", "consecutive", "last_failure"}, len(d.Throttles), func(i int) []any {
			th := &d.Throttles[i]
			return []any{th.Key.Subject, string(th.Key.Method), int32(th.Consecutive), nullStamp(th.LastFailure)}
		}},
		{"throttle_failures", []string{"subject", "method", "at"}, len(d.ThrottleFailures), func(i int) []any {
			f := &d.ThrottleFailures[i]
			return []any{f.Key.Subject, string(f.Key.Method), stamp(f.At)}
		}},
		{"events", []string{"id", "user_id", "type", "at", "ip", "detail"}, len(d.Events), func(i int) []any {
			e := &d.Events[i]
			return []any{e.ID, e.UserID, string(e.Type), stamp(e.At), e.IP, e.Detail}
		}},
		{"notices", []string{"event_id", "due_at", "attempts"}, len(d.Notices), func(i int) []any {
			n := &d.Notices[i]
			return []any{n.EventID, stamp(n.Due), int32(n.Attempts)}
		}},
	}
	for _, c := range copies {
		// COPY writes identity columns as given, GENERATED ALWAYS or not.
		n, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.columns,
			pgx.CopyFromSlice(c.rows, func(i int) ([]any, error) { return c.row(i), nil }))
		if err != nil {
			return fmt.Errorf("%s: %w", c.table, err)
		}
		if n != int64(c.rows) {
			return fmt.Errorf("%s: copied %d rows of %d", c.table, n, c.rows)
		}
		if progress != nil {
			progress(c.table, c.rows)
		}
	}

	// ALTER TABLE ... RESTART, unlike setval, is transactional: a failed
	// import leaves the sequences as they were.
	for _, s := range sequences(d) {
		last, err := lastHandedOut(ctx, tx, s.table)
		if err != nil {
			return err
		}
		next := max(*s.seq, s.maxID, last) + 1
		if _, err := tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN id RESTART WITH %d`, s.table, next)); err != nil {
			return fmt.Errorf("sequence of %s: %w", s.table, err)
		}
	}
	return nil
}
