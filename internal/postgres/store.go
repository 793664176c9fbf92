package postgres

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/twofold/twofold/internal/mfa"
)

// Every method below keeps the contract of mfa.Store. Beyond it, as the
// conformance suite checks: UpgradeSession and the Replace methods
// answer false, nil for a row that does not exist; deletes of nothing are
// not errors; TouchSession of a missing session is mfa.ErrNotFound; a user
// ID that names no user is mfa.ErrNotFound.

const (
	userColumns    = `id, email, password_hash, created_at`
	factorColumns  = `id, user_id, kind, secret, last_step, created_at, confirmed_at`
	codeColumns    = `id, user_id, hash, used_at`
	sessionColumns = `user_id, level, created_at, last_seen_at, expires_at, ip`
	eventColumns   = `id, user_id, type, at, ip, detail`

	// throttleStateSQL reads a key's row and counts its failures at or after
	// $3, in one statement. $1 is the subject, $2 the method.
	throttleStateSQL = `SELECT
	(SELECT consecutive FROM throttles WHERE subject = $1 AND method = $2),
	(SELECT last_failure FROM throttles WHERE subject = $1 AND method = $2),
	count(*), min(at)
FROM throttle_failures WHERE subject = $1 AND method = $2 AND at >= $3`
)

// CreateUser stores u and sets u.ID; a taken email is mfa.ErrConflict.
func (db *DB) CreateUser(ctx context.Context, u *mfa.User) error {
	var id int64
	err := db.pool.QueryRow(ctx, `INSERT INTO users (email, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id`,
		u.Email, u.PasswordHash, stamp(u.CreatedAt)).Scan(&id)
	if err != nil {
		return wrap("create user", err)
	}
	u.ID = id
	return nil
}

func scanUser(row pgx.Row, op string) (*mfa.User, error) {
	var u mfa.User
	if err := row.Scan(&u.ID, &u.Email, &u.PasswordHash, &u.CreatedAt); err != nil {
		return nil, wrap(op, err)
	}
	u.CreatedAt = timeOf(u.CreatedAt)
	return &u, nil
}

// UserByID returns the user with that ID.
func (db *DB) UserByID(ctx context.Context, id int64) (*mfa.User, error) {
	return scanUser(db.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id), "user by id")
}

// UserByEmail returns the user with exactly that (normalised) email address.
func (db *DB) UserByEmail(ctx context.Context, email string) (*mfa.User, error) {
	return scanUser(db.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE email = $1`, email), "user by email")
}

// CountUsers returns the number of users.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		return 0, wrap("count users", err)
	}
	return n, nil
}

func (db *DB) queryFactors(ctx context.Context, op, sql string, args ...any) ([]mfa.Factor, error) {
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var fs []mfa.Factor
	for rows.Next() {
		var (
			f         mfa.Factor
			kind      string
			confirmed pgtype.Timestamptz
		)
		if err := rows.Scan(&f.ID, &f.UserID, &kind, &f.Secret, &f.LastStep, &f.CreatedAt, &confirmed); err != nil {
			return nil, wrap(op, err)
		}
		f.Kind = mfa.FactorKind(kind)
		f.CreatedAt = timeOf(f.CreatedAt)
		f.ConfirmedAt = nullTimeOf(confirmed)
		fs = append(fs, f)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return fs, nil
}

// Factors returns every factor of the user in ID order, pending ones included.
func (db *DB) Factors(ctx context.Context, userID int64) ([]mfa.Factor, error) {
	return db.queryFactors(ctx, "factors", `SELECT `+factorColumns+` FROM factors WHERE user_id = $1 ORDER BY id`, userID)
}

// SavePendingFactor stores f, setting f.ID, and removes any other pending
// factor of the same user, in one transaction under the user's lock.
func (db *DB) SavePendingFactor(ctx context.Context, f *mfa.Factor) error {
	var id int64
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockUser, f.UserID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM factors WHERE user_id = $1 AND confirmed_at IS NULL`, f.UserID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO factors (user_id, kind, secret, last_step, created_at, confirmed_at)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			f.UserID, string(f.Kind), bytesOf(f.Secret), f.LastStep, stamp(f.CreatedAt), nullStamp(f.ConfirmedAt)).Scan(&id)
	})
	if err != nil {
		return wrap("save pending factor", err)
	}
	f.ID = id
	return nil
}

// ConfirmFactor confirms a pending factor, removes the user's other
// factors, replaces the user's backup codes and records e, in one
// transaction under the user's lock. On success it sets codes[i].ID and
// codes[i].UserID (the factor's user).
func (db *DB) ConfirmFactor(ctx context.Context, factorID int64, at time.Time, step int64, codes []mfa.BackupCode, e *mfa.Event) error {
	var (
		userID, evID int64
		ids          []int64
	)
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		// Lock the factor's user, then confirm the factor if it is still
		// pending: the UPDATE sees the newest row, so of two confirmations
		// the second finds it confirmed.
		err := tx.QueryRow(ctx, `SELECT u.id FROM factors f JOIN users u ON u.id = f.user_id
WHERE f.id = $1 FOR NO KEY UPDATE OF u`, factorID).Scan(&userID)
		if err != nil {
			return err // no row: the factor is gone
		}
		err = tx.QueryRow(ctx, `UPDATE factors SET confirmed_at = $1, last_step = $2
WHERE id = $3 AND confirmed_at IS NULL RETURNING user_id`, stamp(at), step, factorID).Scan(&userID)
		if err != nil {
			return err // no row: gone or confirmed already
		}
		if _, err := tx.Exec(ctx, `DELETE FROM factors WHERE user_id = $1 AND id <> $2`, userID, factorID); err != nil {
			return err
		}
		if ids, err = replaceCodes(ctx, tx, userID, codes); err != nil {
			return err
		}
		evID, err = addEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		return wrap("confirm factor", err)
	}
	setCodeIDs(codes, userID, ids)
	setEventID(e, evID)
	return nil
}

// DeleteFactors removes every factor and backup code of the user and
// records e, in one transaction.
func (db *DB) DeleteFactors(ctx context.Context, userID int64, e *mfa.Event) error {
	var evID int64
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockUser, userID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM factors WHERE user_id = $1`, userID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM backup_codes WHERE user_id = $1`, userID); err != nil {
			return err
		}
		var err error
		evID, err = addEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		return wrap("delete factors", err)
	}
	setEventID(e, evID)
	return nil
}

// FactorsAfter lists factors with ID > afterID in ID order, at most limit.
func (db *DB) FactorsAfter(ctx context.Context, afterID int64, limit int) ([]mfa.Factor, error) {
	if limit <= 0 {
		return nil, nil
	}
	return db.queryFactors(ctx, "factors after", `SELECT `+factorColumns+` FROM factors WHERE id > $1 ORDER BY id LIMIT $2`, afterID, limit)
}

// ReplacePasswordHash swaps the user's password hash if it still equals
// old, and then records e, in one transaction.
func (db *DB) ReplacePasswordHash(ctx context.Context, userID int64, old, new string, e *mfa.Event) (bool, error) {
	const replace = `UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3`
	if e == nil { // one statement: a sign-in's rehash
		ct, err := db.pool.Exec(ctx, replace, new, userID, old)
		if err != nil {
			return false, wrap("replace password hash", err)
		}
		return ct.RowsAffected() > 0, nil
	}
	var (
		swapped bool
		evID    int64
	)
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, replace, new, userID, old)
		if err != nil || ct.RowsAffected() == 0 {
			return err
		}
		swapped = true
		evID, err = addEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		return false, wrap("replace password hash", err)
	}
	if swapped {
		setEventID(e, evID)
	}
	return swapped, nil
}

// ReplaceFactorSecret swaps the factor's secret if it still equals old.
func (db *DB) ReplaceFactorSecret(ctx context.Context, factorID int64, old, new []byte) (bool, error) {
	ct, err := db.pool.Exec(ctx, `UPDATE factors SET secret = $1 WHERE id = $2 AND secret = $3`, bytesOf(new), factorID, bytesOf(old))
	if err != nil {
		return false, wrap("replace factor secret", err)
	}
	return ct.RowsAffected() > 0, nil
}

// UnusedBackupCodes returns the user's unused backup codes in ID order.
func (db *DB) UnusedBackupCodes(ctx context.Context, userID int64) ([]mfa.BackupCode, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+codeColumns+` FROM backup_codes WHERE user_id = $1 AND used_at IS NULL ORDER BY id`, userID)
	if err != nil {
		return nil, wrap("unused backup codes", err)
	}
	defer rows.Close()
	var cs []mfa.BackupCode
	for rows.Next() {
		var (
			c    mfa.BackupCode
			used pgtype.Timestamptz
		)
		if err := rows.Scan(&c.ID, &c.UserID, &c.Hash, &used); err != nil {
			return nil, wrap("unused backup codes", err)
		}
		c.UsedAt = nullTimeOf(used)
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("unused backup codes", err)
	}
	return cs, nil
}

// ReplaceBackupCodes deletes the user's codes, stores codes instead and
// records e, in one transaction under the user's lock. On success it sets
// codes[i].ID and codes[i].UserID.
func (db *DB) ReplaceBackupCodes(ctx context.Context, userID int64, codes []mfa.BackupCode, e *mfa.Event) error {
	_, err := db.ReplaceBackupCodesIf(ctx, userID, math.MaxInt64, codes, e) // no code is newer
	return err
}

// ReplaceBackupCodesIf does what ReplaceBackupCodes does if none of the
// user's unused codes has an ID above newest, and reports whether it did.
// The check runs under the user's lock, after any replacement that held it
// before has committed: of concurrent calls, each sees the codes of those
// before.
func (db *DB) ReplaceBackupCodesIf(ctx context.Context, userID, newest int64, codes []mfa.BackupCode, e *mfa.Event) (bool, error) {
	var (
		replaced bool
		ids      []int64
		evID     int64
	)
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		replaced = false
		if _, err := tx.Exec(ctx, lockUser, userID); err != nil {
			return err
		}
		var newer bool
		if err := tx.QueryRow(ctx, newerCodes, userID, newest).Scan(&newer); err != nil || newer {
			return err
		}
		var err error
		if ids, err = replaceCodes(ctx, tx, userID, codes); err != nil {
			return err
		}
		if evID, err = addEvent(ctx, tx, e); err != nil {
			return err
		}
		replaced = true
		return nil
	})
	if err != nil {
		return false, wrap("replace backup codes", err)
	}
	if replaced {
		setCodeIDs(codes, userID, ids)
		setEventID(e, evID)
	}
	return replaced, nil
}

// newerCodes tells whether the user $1 has an unused backup code with an
// ID above $2.
const newerCodes = `SELECT EXISTS (SELECT 1 FROM backup_codes WHERE user_id = $1 AND id > $2 AND used_at IS NULL)`

// replaceCodes replaces the user's codes inside tx and returns the new IDs.
// The caller holds the user's lock. The inserts go in one batch: one round
// trip, and their results in the order sent.
func replaceCodes(ctx context.Context, tx pgx.Tx, userID int64, codes []mfa.BackupCode) ([]int64, error) {
	if _, err := tx.Exec(ctx, `DELETE FROM backup_codes WHERE user_id = $1`, userID); err != nil {
		return nil, err
	}
	if len(codes) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(codes))
	b := &pgx.Batch{}
	for i, c := range codes {
		b.Queue(`INSERT INTO backup_codes (user_id, hash, used_at) VALUES ($1, $2, $3) RETURNING id`,
			userID, bytesOf(c.Hash), nullStamp(c.UsedAt)).QueryRow(func(row pgx.Row) error { return row.Scan(&ids[i]) })
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return ids, nil
}

func setCodeIDs(codes []mfa.BackupCode, userID int64, ids []int64) {
	for i := range ids {
		codes[i].ID, codes[i].UserID = ids[i], userID
	}
}

const insertSession = `INSERT INTO sessions (id, ` + sessionColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7)`

func sessionArgs(s *mfa.Session) []any {
	return []any{bytesOf(s.ID), s.UserID, int32(s.Level), stamp(s.CreatedAt), stamp(s.LastSeenAt), stamp(s.ExpiresAt), s.IP}
}

// CreateSession stores s; a taken ID is mfa.ErrConflict.
func (db *DB) CreateSession(ctx context.Context, s *mfa.Session) error {
	if _, err := db.pool.Exec(ctx, insertSession, sessionArgs(s)...); err != nil {
		return wrap("create session", err)
	}
	return nil
}

// Session returns the session with exactly that ID.
func (db *DB) Session(ctx context.Context, id []byte) (*mfa.Session, error) {
	var (
		s     mfa.Session
		level int32
	)
	err := db.pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id = $1`, id).
		Scan(&s.UserID, &level, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt, &s.IP)
	if err != nil {
		return nil, wrap("session", err)
	}
	s.ID = append([]byte(nil), id...)
	s.Level = mfa.Level(level)
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt = timeOf(s.CreatedAt), timeOf(s.LastSeenAt), timeOf(s.ExpiresAt)
	return &s, nil
}

// sessionViewSQL reads a session, its user and the user's factors: a row
// per factor, or one with NULL factor columns. The factors come in no
// particular order (an order would take a sort: factors_user_id does not
// order by id).
const sessionViewSQL = `SELECT s.user_id, s.level, s.created_at, s.last_seen_at, s.expires_at, s.ip,
	u.email, u.password_hash, u.created_at,
	f.id, f.kind, f.secret, f.last_step, f.created_at, f.confirmed_at
FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN factors f ON f.user_id = s.user_id
WHERE s.id = $1`

// SessionView returns the session with exactly that ID, its user and the
// user's factors, in one read.
func (db *DB) SessionView(ctx context.Context, id []byte) (*mfa.SessionView, error) {
	rows, err := db.pool.Query(ctx, sessionViewSQL, id)
	if err != nil {
		return nil, wrap("session view", err)
	}
	defer rows.Close()
	var v *mfa.SessionView
	for rows.Next() {
		var (
			s     mfa.Session
			u     mfa.User
			level int32
			f     joinedFactor
		)
		err := rows.Scan(append([]any{&s.UserID, &level, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt, &s.IP,
			&u.Email, &u.PasswordHash, &u.CreatedAt}, f.dest()...)...)
		if err != nil {
			return nil, wrap("session view", err)
		}
		if v == nil {
			s.ID = append([]byte(nil), id...)
			s.Level = mfa.Level(level)
			s.CreatedAt, s.LastSeenAt, s.ExpiresAt = timeOf(s.CreatedAt), timeOf(s.LastSeenAt), timeOf(s.ExpiresAt)
			u.ID, u.CreatedAt = s.UserID, timeOf(u.CreatedAt)
			v = &mfa.SessionView{Session: s, User: u}
		}
		v.Factors = f.appendTo(v.Factors, s.UserID)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("session view", err)
	}
	if v == nil {
		return nil, wrap("session view", pgx.ErrNoRows)
	}
	sortByID(v.Factors)
	return v, nil
}

// joinedFactor receives a factor's columns from a LEFT JOIN: all NULL when
// the user has no factor.
type joinedFactor struct {
	id, step           pgtype.Int8
	kind               pgtype.Text
	secret             []byte
	created, confirmed pgtype.Timestamptz
}

// dest lists the columns in the order the views select them.
func (f *joinedFactor) dest() []any {
	return []any{&f.id, &f.kind, &f.secret, &f.step, &f.created, &f.confirmed}
}

// appendTo appends the factor of userID to fs, if the row has one.
func (f *joinedFactor) appendTo(fs []mfa.Factor, userID int64) []mfa.Factor {
	if !f.id.Valid {
		return fs
	}
	return append(fs, mfa.Factor{ID: f.id.Int64, UserID: userID, Kind: mfa.FactorKind(f.kind.String),
		Secret: f.secret, LastStep: f.step.Int64, CreatedAt: timeOf(f.created.Time), ConfirmedAt: nullTimeOf(f.confirmed)})
}

// sortByID puts factors read by a join in ID order, which the join does
// not give without a sort in the plan (factors_user_id does not order by id).
func sortByID(fs []mfa.Factor) {
	slices.SortFunc(fs, func(a, b mfa.Factor) int { return cmp.Compare(a.ID, b.ID) })
}

// signInViewSQL reads a key's state as throttleStateSQL does, with the user
// whose email is $4 and the user's factors: a row per factor, or one with
// NULL user or factor columns; the factors in no particular order.
const signInViewSQL = `SELECT t.*, u.id, u.email, u.password_hash, u.created_at,
	f.id, f.kind, f.secret, f.last_step, f.created_at, f.confirmed_at
FROM (` + throttleStateSQL + `) t LEFT JOIN users u ON u.email = $4 LEFT JOIN factors f ON f.user_id = u.id`

// SignInView returns the key's state, counting failures at or after since,
// and the user with exactly that email and the user's factors, in one read.
func (db *DB) SignInView(ctx context.Context, email string, key mfa.ThrottleKey, since time.Time) (*mfa.SignInView, error) {
	rows, err := db.pool.Query(ctx, signInViewSQL, key.Subject, string(key.Method), stamp(since), email)
	if err != nil {
		return nil, wrap("sign-in view", err)
	}
	defer rows.Close()
	var v *mfa.SignInView
	for rows.Next() {
		var (
			t               throttleColumns
			userID          pgtype.Int8
			userEmail, hash pgtype.Text
			userCreated     pgtype.Timestamptz
			f               joinedFactor
		)
		if err := rows.Scan(append(append(t.dest(), &userID, &userEmail, &hash, &userCreated), f.dest()...)...); err != nil {
			return nil, wrap("sign-in view", err)
		}
		if v == nil {
			v = &mfa.SignInView{Throttle: t.state()}
			if userID.Valid {
				v.User = &mfa.User{ID: userID.Int64, Email: userEmail.String, PasswordHash: hash.String, CreatedAt: timeOf(userCreated.Time)}
			}
		}
		if v.User != nil {
			v.Factors = f.appendTo(v.Factors, v.User.ID)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("sign-in view", err)
	}
	if v == nil { // the aggregate always gives a row
		return nil, wrap("sign-in view", errors.New("no row"))
	}
	sortByID(v.Factors)
	return v, nil
}

const (
	insertEvent = `INSERT INTO events (user_id, type, at, ip, detail) VALUES ($1, $2, $3, $4, $5) RETURNING id`
	// insertNoticeEvent also queues the event's notice, due at its time.
	insertNoticeEvent = `WITH e AS (` + insertEvent + `),
	n AS (INSERT INTO notices (event_id, due_at) SELECT id, $3 FROM e)
SELECT id FROM e`
)

// eventInsert is the statement that stores e, returning its ID, and queues
// its notice if e.Notify; and its arguments.
func eventInsert(e *mfa.Event) (string, []any) {
	query := insertEvent
	if e.Notify {
		query = insertNoticeEvent
	}
	return query, []any{e.UserID, string(e.Type), stamp(e.At), e.IP, e.Detail}
}

// rowQuerier is a pool or a transaction.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// addEvent stores e through q, queueing its notice if e.Notify, and
// returns its ID; a nil e is no event.
func addEvent(ctx context.Context, q rowQuerier, e *mfa.Event) (int64, error) {
	if e == nil {
		return 0, nil
	}
	var id int64
	query, args := eventInsert(e)
	err := q.QueryRow(ctx, query, args...).Scan(&id)
	return id, err
}

// setEventID gives e, if not nil, the ID it was stored under, once its
// transaction is committed.
func setEventID(e *mfa.Event, id int64) {
	if e != nil {
		e.ID = id
	}
}

// clearConsecutive zeroes the consecutive failures of key ($1, $2), writing
// nothing when there are none, as for most sign-ins.
const clearConsecutive = `UPDATE throttles SET consecutive = 0 WHERE subject = $1 AND method = $2 AND consecutive <> 0`

// dropUnfailedKey deletes key's row ($1, $2) when it records no failure:
// the row UpgradeSession's lock inserted for a key without failures, which
// DeleteStaleThrottles, going by the last failure, would never remove.
const dropUnfailedKey = `DELETE FROM throttles WHERE subject = $1 AND method = $2 AND last_failure IS NULL`

// resetThrottle is ResetThrottle's statement: it clears the consecutive
// failures and forgets one failure at exactly $3. A failure row has no key:
// the one forgotten is named by its physical address. The WITH runs its
// UPDATE whatever the DELETE finds.
const resetThrottle = `WITH reset AS (` + clearConsecutive + `)
DELETE FROM throttle_failures WHERE ctid =
	(SELECT ctid FROM throttle_failures WHERE subject = $1 AND method = $2 AND at = $3 LIMIT 1)`

// UpgradeSession admits the attempt of u, spends its proof, replaces
// session u.Old by u.Next and records u.Event (setting its ID), in one
// transaction. It reports false, changing nothing, when the throttle
// refuses, the password hash changed, the step is not newer than the
// factor's last one, the backup code is used, or u.Old is gone, as when a
// concurrent sign-in spent the proof or upgraded the session first: its
// conditional UPDATE or DELETE took the row, and this one, waiting for that
// transaction, then finds the row changed.
//
// The transaction costs three round trips: BEGIN with the throttle key's
// lock and state; the writes; COMMIT, or ROLLBACK when a condition failed.
// Without a throttle key, the first two are one.
func (db *DB) UpgradeSession(ctx context.Context, u mfa.Upgrade) (bool, error) {
	var (
		evID int64
		gone bool
		st   mfa.ThrottleState
	)
	mustAffect := func(ct pgconn.CommandTag) error {
		if ct.RowsAffected() == 0 {
			gone = true
		}
		return nil
	}
	spend := &pgx.Batch{}
	// The password hash first, locked against a concurrent swap until
	// this transaction ends (see mfa.Upgrade.PasswordHash): the session's
	// foreign key alone would take a lock that an UPDATE of the hash does
	// not wait for.
	if u.PasswordHash != "" {
		spend.Queue(`SELECT FROM users WHERE id = $1 AND password_hash = $2 FOR SHARE`, u.Next.UserID, u.PasswordHash).Exec(mustAffect)
	}
	// Then the proof: of concurrent sign-ins spending it, one takes the
	// row, the others wait for its commit and then match nothing.
	if u.ClaimFactor != 0 {
		spend.Queue(`UPDATE factors SET last_step = $1 WHERE id = $2 AND last_step < $1`, u.ClaimStep, u.ClaimFactor).Exec(mustAffect)
	}
	if u.BackupCode != 0 {
		spend.Queue(`UPDATE backup_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL`, stamp(u.Next.CreatedAt), u.BackupCode).Exec(mustAffect)
	}
	if u.Old != nil {
		spend.Queue(`DELETE FROM sessions WHERE id = $1`, u.Old).Exec(mustAffect)
	}
	spend.Queue(insertSession, sessionArgs(u.Next)...)
	if u.Throttle.Subject != "" {
		spend.Queue(clearConsecutive, u.Throttle.Subject, string(u.Throttle.Method))
		spend.Queue(dropUnfailedKey, u.Throttle.Subject, string(u.Throttle.Method))
	}
	if u.Event != nil {
		query, args := eventInsert(u.Event)
		spend.Queue(query, args...).QueryRow(func(row pgx.Row) error { return row.Scan(&evID) })
	}

	begin := &pgx.Batch{}
	begin.BeginTx(pgx.TxOptions{})
	if u.Throttle.Subject != "" {
		queueThrottleLock(begin, u.Throttle, stamp(u.Since), &st)
	} else {
		begin.QueuedQueries = append(begin.QueuedQueries, spend.QueuedQueries...)
	}
	tx, err := db.beginBatch(ctx, begin)
	if err != nil {
		return false, wrap("upgrade session", err)
	}
	defer tx.Rollback(ctx) // after Commit, a no-op
	if u.Throttle.Subject != "" {
		if !u.Admit(st) {
			return false, nil
		}
		if err := tx.SendBatch(ctx, spend).Close(); err != nil {
			return false, wrap("upgrade session", err)
		}
	}
	if gone {
		return false, nil // the deferred rollback undoes the rest
	}
	if err := tx.Commit(ctx); err != nil {
		return false, wrap("upgrade session", err)
	}
	setEventID(u.Event, evID)
	return true, nil
}

// beginBatch sends b, which begins a transaction (Batch.BeginTx) and queues
// its first statements, and returns the transaction once their results are
// read. The caller defers its Rollback. On an error the transaction is
// rolled back and its connection released.
func (db *DB) beginBatch(ctx context.Context, b *pgx.Batch) (pgx.Tx, error) {
	br := db.pool.SendBatch(ctx, b)
	tx := br.Tx()
	err := br.Close()
	if tx == nil && err == nil {
		err = errors.New("batch began no transaction")
	}
	if err != nil {
		if tx != nil {
			tx.Rollback(ctx)
		}
		return nil, err
	}
	return tx, nil
}

// TouchSession sets the session's LastSeenAt; a missing session is mfa.ErrNotFound.
func (db *DB) TouchSession(ctx context.Context, id []byte, at time.Time) error {
	ct, err := db.pool.Exec(ctx, `UPDATE sessions SET last_seen_at = $1 WHERE id = $2`, stamp(at), id)
	if err != nil {
		return wrap("touch session", err)
	}
	if ct.RowsAffected() == 0 {
		return wrap("touch session", pgx.ErrNoRows)
	}
	return nil
}

// DeleteSession removes the session; removing a missing one is not an error.
func (db *DB) DeleteSession(ctx context.Context, id []byte) error {
	if _, err := db.pool.Exec(ctx, `DELETE FROM sessions WHERE id = $1`, id); err != nil {
		return wrap("delete session", err)
	}
	return nil
}

// DeleteUserSessions removes every session of the user.
func (db *DB) DeleteUserSessions(ctx context.Context, userID int64) error {
	if _, err := db.pool.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1`, userID); err != nil {
		return wrap("delete user sessions", err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions whose ExpiresAt is before t and
// returns how many it removed.
func (db *DB) DeleteExpiredSessions(ctx context.Context, t time.Time) (int, error) {
	ct, err := db.pool.Exec(ctx, `DELETE FROM sessions WHERE expires_at < $1`, stamp(t))
	if err != nil {
		return 0, wrap("delete expired sessions", err)
	}
	return int(ct.RowsAffected()), nil
}

// throttleColumns receives the columns of throttleStateSQL.
type throttleColumns struct {
	consecutive  pgtype.Int4
	last, oldest pgtype.Timestamptz
	count        int64
}

func (c *throttleColumns) dest() []any {
	return []any{&c.consecutive, &c.last, &c.count, &c.oldest}
}

func (c *throttleColumns) state() mfa.ThrottleState {
	return mfa.ThrottleState{Consecutive: int(c.consecutive.Int32), LastFailure: nullTimeOf(c.last),
		WindowCount: int(c.count), WindowOldest: nullTimeOf(c.oldest)}
}

func scanThrottle(row pgx.Row) (mfa.ThrottleState, error) {
	var c throttleColumns
	if err := row.Scan(c.dest()...); err != nil {
		return mfa.ThrottleState{}, err
	}
	return c.state(), nil
}

// ThrottleState returns the key's state, counting failures at or after since.
func (db *DB) ThrottleState(ctx context.Context, key mfa.ThrottleKey, since time.Time) (mfa.ThrottleState, error) {
	st, err := scanThrottle(db.pool.QueryRow(ctx, throttleStateSQL, key.Subject, string(key.Method), stamp(since)))
	if err != nil {
		return mfa.ThrottleState{}, wrap("throttle state", err)
	}
	return st, nil
}

// RecordFailure reads the key's state and, if admit approves it, records a
// failure at time at, and the events that events returns, in one
// transaction that holds the lock of the key's row: concurrent calls, from
// this process or another, queue on it and see each other's failures. admit
// and events run while the lock is held, so they must be quick. The key's
// failures before since are deleted on the way.
//
// It costs three round trips, events or not: BEGIN with the lock and the
// read; the write; COMMIT (or ROLLBACK, when admit refuses).
func (db *DB) RecordFailure(ctx context.Context, key mfa.ThrottleKey, at, since time.Time, admit func(mfa.ThrottleState) bool, events func(mfa.ThrottleState) []mfa.Event) (mfa.ThrottleState, bool, error) {
	subject, method, atTS, sinceTS := key.Subject, string(key.Method), stamp(at), stamp(since)
	var st mfa.ThrottleState
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	queueThrottleLock(b, key, sinceTS, &st)
	tx, err := db.beginBatch(ctx, b)
	if err != nil {
		return mfa.ThrottleState{}, false, wrap("record failure", err)
	}
	defer tx.Rollback(ctx) // after Commit, a no-op
	if !admit(st) {
		return st, false, nil
	}
	st = st.WithFailure(timeOf(atTS), timeOf(sinceTS))
	var ev eventArrays
	if events != nil {
		ev.add(events(st))
	}
	_, err = tx.Exec(ctx, `WITH
	pruned AS (DELETE FROM throttle_failures WHERE subject = $1 AND method = $2 AND at < $4),
	added AS (INSERT INTO throttle_failures (subject, method, at) VALUES ($1, $2, $3)),
	logged AS (INSERT INTO events (user_id, type, at, ip, detail)
		SELECT * FROM unnest($5::bigint[], $6::text[], $7::timestamptz[], $8::text[], $9::text[]))
UPDATE throttles SET consecutive = consecutive + 1, last_failure = $3 WHERE subject = $1 AND method = $2`,
		subject, method, atTS, sinceTS, ev.userIDs, ev.types, ev.ats, ev.ips, ev.details)
	if err != nil {
		return mfa.ThrottleState{}, false, wrap("record failure", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return mfa.ThrottleState{}, false, wrap("record failure", err)
	}
	return st, true, nil
}

// eventArrays holds events column by column, for one INSERT of them all
// through unnest. An empty set inserts nothing.
type eventArrays struct {
	userIDs             []int64
	types, ips, details []string
	ats                 []time.Time
}

func (c *eventArrays) add(events []mfa.Event) {
	for _, e := range events {
		c.userIDs = append(c.userIDs, e.UserID)
		c.types = append(c.types, string(e.Type))
		c.ats = append(c.ats, stamp(e.At))
		c.ips = append(c.ips, e.IP)
		c.details = append(c.details, e.Detail)
	}
}

// queueThrottleLock queues the statements that lock key's row and read its
// state into st, counting failures at or after since. The upsert locks the
// row, inserting it first for a new key (a transaction rolled back removes
// it again), and returns it as it is: it waits for a concurrent holder of
// the lock and then reads the row it committed. The count is a statement of
// its own: in READ COMMITTED each statement reads a snapshot taken when it
// starts, so after the lock it sees every failure committed by the lock's
// previous holder.
func queueThrottleLock(b *pgx.Batch, key mfa.ThrottleKey, since time.Time, st *mfa.ThrottleState) {
	subject, method := key.Subject, string(key.Method)
	b.Queue(`INSERT INTO throttles (subject, method, consecutive) VALUES ($1, $2, 0)
ON CONFLICT (subject, method) DO UPDATE SET consecutive = throttles.consecutive
RETURNING consecutive, last_failure`, subject, method).
		QueryRow(func(row pgx.Row) error {
			var (
				consecutive int32
				last        pgtype.Timestamptz
			)
			if err := row.Scan(&consecutive, &last); err != nil {
				return err
			}
			st.Consecutive, st.LastFailure = int(consecutive), nullTimeOf(last)
			return nil
		})
	b.Queue(`SELECT count(*), min(at) FROM throttle_failures WHERE subject = $1 AND method = $2 AND at >= $3`,
		subject, method, since).
		QueryRow(func(row pgx.Row) error {
			var (
				count  int64
				oldest pgtype.Timestamptz
			)
			if err := row.Scan(&count, &oldest); err != nil {
				return err
			}
			st.WindowCount, st.WindowOldest = int(count), nullTimeOf(oldest)
			return nil
		})
}

// ResetThrottle sets the key's consecutive failure count to zero and
// forgets one failure recorded at exactly attempt; its other failures stay
// counted in their window. An unknown key is not an error.
func (db *DB) ResetThrottle(ctx context.Context, key mfa.ThrottleKey, attempt time.Time) error {
	if _, err := db.pool.Exec(ctx, resetThrottle, key.Subject, string(key.Method), stamp(attempt)); err != nil {
		return wrap("reset throttle", err)
	}
	return nil
}

// DeleteStaleThrottles forgets failures before t and keys whose last
// failure is before t (or that record no failure: rows sign-ins left
// behind before UpgradeSession dropped them), and returns how many keys it
// forgot. It skips the rows that a RecordFailure holds locked, so it never
// waits for one: that key is in use, and two deletes of overlapping rows
// in different orders could deadlock. What it skips, a later run forgets.
func (db *DB) DeleteStaleThrottles(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, `DELETE FROM throttles WHERE (subject, method) IN (
	SELECT subject, method FROM throttles WHERE last_failure < $1 OR last_failure IS NULL FOR UPDATE SKIP LOCKED)`, stamp(t))
		if err != nil {
			return err
		}
		n = ct.RowsAffected()
		// throttle_failures has no key: its rows are named by their
		// physical address, stable while they are locked.
		_, err = tx.Exec(ctx, `DELETE FROM throttle_failures WHERE ctid = ANY (ARRAY(
	SELECT ctid FROM throttle_failures WHERE at < $1 FOR UPDATE SKIP LOCKED))`, stamp(t))
		return err
	})
	if err != nil {
		return 0, wrap("delete stale throttles", err)
	}
	return int(n), nil
}

// AddEvent stores e and sets e.ID, and queues its notice if e.Notify.
func (db *DB) AddEvent(ctx context.Context, e *mfa.Event) error {
	id, err := addEvent(ctx, db.pool, e)
	if err != nil {
		return wrap("add event", err)
	}
	e.ID = id
	return nil
}

// Events returns the user's newest events first, at most limit.
func (db *DB) Events(ctx context.Context, userID int64, limit int) ([]mfa.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE user_id = $1 ORDER BY id DESC LIMIT $2`, userID, limit)
	if err != nil {
		return nil, wrap("events", err)
	}
	defer rows.Close()
	evs := make([]mfa.Event, 0, min(limit, 64))
	for rows.Next() {
		var (
			e   mfa.Event
			typ string
		)
		if err := rows.Scan(&e.ID, &e.UserID, &typ, &e.At, &e.IP, &e.Detail); err != nil {
			return nil, wrap("events", err)
		}
		e.Type = mfa.EventType(typ)
		e.At = timeOf(e.At)
		evs = append(evs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("events", err)
	}
	return evs, nil
}

// CountEvents counts the user's events of the given types at or after since.
func (db *DB) CountEvents(ctx context.Context, userID int64, types []mfa.EventType, since time.Time) (int, error) {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = string(t)
	}
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE user_id = $1 AND at >= $2 AND type = ANY($3)`,
		userID, stamp(since), names).Scan(&n)
	if err != nil {
		return 0, wrap("count events", err)
	}
	return n, nil
}

// claimNotices locks the notices due at $1, at most $3, skipping those a
// concurrent claim holds, makes them due at $2, and returns them with their
// events and users, the earliest due first.
const claimNotices = `WITH due AS (
	SELECT event_id, due_at FROM notices WHERE due_at <= $1
	ORDER BY due_at, event_id LIMIT $3 FOR UPDATE SKIP LOCKED
), claimed AS (
	UPDATE notices n SET due_at = $2, attempts = n.attempts + 1 FROM due
	WHERE n.event_id = due.event_id RETURNING n.event_id, n.attempts
)
SELECT e.id, e.user_id, e.type, e.at, e.ip, e.detail, u.email, c.attempts
FROM claimed c JOIN due d ON d.event_id = c.event_id
	JOIN events e ON e.id = c.event_id JOIN users u ON u.id = e.user_id
ORDER BY d.due_at, d.event_id`

// ClaimNotices returns at most limit notices due at now, the earliest due
// first, and makes each due again at until. Concurrent claims, from any
// instance, skip each other's rows.
func (db *DB) ClaimNotices(ctx context.Context, now, until time.Time, limit int) ([]mfa.QueuedNotice, error) {
	rows, err := db.pool.Query(ctx, claimNotices, stamp(now), stamp(until), limit)
	if err != nil {
		return nil, wrap("claim notices", err)
	}
	defer rows.Close()
	var claimed []mfa.QueuedNotice
	for rows.Next() {
		var (
			q   mfa.QueuedNotice
			typ string
		)
		if err := rows.Scan(&q.Event.ID, &q.Event.UserID, &typ, &q.Event.At, &q.Event.IP, &q.Event.Detail, &q.Email, &q.Attempts); err != nil {
			return nil, wrap("claim notices", err)
		}
		q.Event.Type, q.Event.At = mfa.EventType(typ), timeOf(q.Event.At)
		claimed = append(claimed, q)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("claim notices", err)
	}
	return claimed, nil
}

// RescheduleNotice makes the notice of event eventID due at at; a zero at
// takes it off the queue.
func (db *DB) RescheduleNotice(ctx context.Context, eventID int64, at time.Time) error {
	var err error
	if at.IsZero() {
		_, err = db.pool.Exec(ctx, `DELETE FROM notices WHERE event_id = $1`, eventID)
	} else {
		_, err = db.pool.Exec(ctx, `UPDATE notices SET due_at = $1 WHERE event_id = $2`, stamp(at), eventID)
	}
	if err != nil {
		return wrap("reschedule notice", err)
	}
	return nil
}
