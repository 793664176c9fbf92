package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/twofold/twofold/internal/mfa"
)

// Every method below keeps the contract of mfa.Store. Beyond it, as the
// conformance suite checks: UpgradeSession and the Replace methods
// answer false, nil for a row that does not exist; deletes of nothing are
// not errors; TouchSession of a missing session is mfa.ErrNotFound; a user
// ID that names no user is mfa.ErrNotFound.

// CreateUser stores u and sets u.ID; a taken email is mfa.ErrConflict.
func (db *DB) CreateUser(ctx context.Context, u *mfa.User) error {
	res, err := db.exec(ctx, db.st.insertUser, u.Email, u.PasswordHash, millis(u.CreatedAt))
	if err != nil {
		return wrap("create user", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return wrap("create user", err)
	}
	u.ID = id
	return nil
}

func scanUser(row *sql.Row, op string) (*mfa.User, error) {
	var (
		u       mfa.User
		created int64
	)
	if err := row.Scan(&u.ID, &u.Email, &u.PasswordHash, &created); err != nil {
		return nil, wrap(op, err)
	}
	u.CreatedAt = timeOf(created)
	return &u, nil
}

// UserByID returns the user with that ID.
func (db *DB) UserByID(ctx context.Context, id int64) (*mfa.User, error) {
	return scanUser(db.st.userByID.QueryRowContext(ctx, id), "user by id")
}

// UserByEmail returns the user with exactly that (normalised) email address.
func (db *DB) UserByEmail(ctx context.Context, email string) (*mfa.User, error) {
	return scanUser(db.st.userByEmail.QueryRowContext(ctx, email), "user by email")
}

// CountUsers returns the number of users.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := db.st.countUsers.QueryRowContext(ctx).Scan(&n); err != nil {
		return 0, wrap("count users", err)
	}
	return n, nil
}

func scanFactors(rows *sql.Rows, err error, op string) ([]mfa.Factor, error) {
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var fs []mfa.Factor
	for rows.Next() {
		var (
			f         mfa.Factor
			kind      string
			created   int64
			confirmed sql.NullInt64
		)
		if err := rows.Scan(&f.ID, &f.UserID, &kind, &f.Secret, &f.LastStep, &created, &confirmed); err != nil {
			return nil, wrap(op, err)
		}
		f.Kind = mfa.FactorKind(kind)
		f.CreatedAt = timeOf(created)
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
	rows, err := db.st.factors.QueryContext(ctx, userID)
	return scanFactors(rows, err, "factors")
}

// SavePendingFactor stores f, setting f.ID, and removes any other pending
// factor of the same user, in one transaction.
func (db *DB) SavePendingFactor(ctx context.Context, f *mfa.Factor) error {
	var id int64
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.StmtContext(ctx, db.st.deletePending).ExecContext(ctx, f.UserID); err != nil {
			return err
		}
		secret := f.Secret
		if secret == nil {
			secret = []byte{} // the column is NOT NULL
		}
		res, err := tx.StmtContext(ctx, db.st.insertFactor).ExecContext(ctx,
			f.UserID, string(f.Kind), secret, f.LastStep, millis(f.CreatedAt), nullMillis(f.ConfirmedAt))
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return wrap("save pending factor", err)
	}
	f.ID = id
	return nil
}

// ConfirmFactor confirms a pending factor, removes the user's other factors,
// replaces the user's backup codes and records e, in one transaction. On
// success it sets codes[i].ID and codes[i].UserID (the factor's user).
func (db *DB) ConfirmFactor(ctx context.Context, factorID int64, at time.Time, step int64, codes []mfa.BackupCode, e *mfa.Event) error {
	var (
		userID, evID int64
		ids          []int64
	)
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		err := tx.StmtContext(ctx, db.st.confirmFactor).QueryRowContext(ctx, millis(at), step, factorID).Scan(&userID)
		if err != nil {
			return err // no row: gone or confirmed already
		}
		if _, err := tx.StmtContext(ctx, db.st.deleteOtherFactors).ExecContext(ctx, userID, factorID); err != nil {
			return err
		}
		if ids, err = db.replaceCodes(ctx, tx, userID, codes); err != nil {
			return err
		}
		evID, err = db.insertEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		return wrap("confirm factor", err)
	}
	setCodeIDs(codes, userID, ids)
	setEventID(e, evID)
	return nil
}

// affected reports whether a conditional statement changed a row.
func affected(res sql.Result, op string) (bool, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return false, wrap(op, err)
	}
	return n > 0, nil
}

// DeleteFactors removes every factor and backup code of the user and
// records e, in one transaction.
func (db *DB) DeleteFactors(ctx context.Context, userID int64, e *mfa.Event) error {
	var evID int64
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.StmtContext(ctx, db.st.deleteFactors).ExecContext(ctx, userID); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, db.st.deleteCodes).ExecContext(ctx, userID); err != nil {
			return err
		}
		var err error
		evID, err = db.insertEvent(ctx, tx, e)
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
	rows, err := db.st.factorsAfter.QueryContext(ctx, afterID, limit)
	return scanFactors(rows, err, "factors after")
}

// ReplacePasswordHash swaps the user's password hash if it still equals
// old, and then records e, in one transaction.
func (db *DB) ReplacePasswordHash(ctx context.Context, userID int64, old, new string, e *mfa.Event) (bool, error) {
	var (
		swapped bool
		evID    int64
	)
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, db.st.replacePassword).ExecContext(ctx, new, userID, old)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		swapped = true
		evID, err = db.insertEvent(ctx, tx, e)
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
	if old == nil {
		old = []byte{}
	}
	if new == nil {
		new = []byte{}
	}
	res, err := db.exec(ctx, db.st.replaceSecret, new, factorID, old)
	if err != nil {
		return false, wrap("replace factor secret", err)
	}
	return affected(res, "replace factor secret")
}

// UnusedBackupCodes returns the user's unused backup codes in ID order.
func (db *DB) UnusedBackupCodes(ctx context.Context, userID int64) ([]mfa.BackupCode, error) {
	rows, err := db.st.unusedCodes.QueryContext(ctx, userID)
	if err != nil {
		return nil, wrap("unused backup codes", err)
	}
	defer rows.Close()
	var cs []mfa.BackupCode
	for rows.Next() {
		var (
			c    mfa.BackupCode
			used sql.NullInt64
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
// records e, in one transaction. On success it sets codes[i].ID and
// codes[i].UserID.
func (db *DB) ReplaceBackupCodes(ctx context.Context, userID int64, codes []mfa.BackupCode, e *mfa.Event) error {
	_, err := db.ReplaceBackupCodesIf(ctx, userID, math.MaxInt64, codes, e) // no code is newer
	return err
}

// ReplaceBackupCodesIf does what ReplaceBackupCodes does if none of the
// user's unused codes has an ID above newest, and reports whether it did.
// The check and the replacement are one write transaction: of concurrent
// calls, each sees the codes of those before.
func (db *DB) ReplaceBackupCodesIf(ctx context.Context, userID, newest int64, codes []mfa.BackupCode, e *mfa.Event) (bool, error) {
	var (
		replaced bool
		ids      []int64
		evID     int64
	)
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		replaced = false
		var newer int
		err := tx.StmtContext(ctx, db.st.newerCodes).QueryRowContext(ctx, userID, newest).Scan(&newer)
		if err == nil || !errors.Is(err, sql.ErrNoRows) {
			return err // nil: a newer code, and nothing to write
		}
		if ids, err = db.replaceCodes(ctx, tx, userID, codes); err != nil {
			return err
		}
		if evID, err = db.insertEvent(ctx, tx, e); err != nil {
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

// replaceCodes replaces the user's codes inside tx and returns the new IDs.
func (db *DB) replaceCodes(ctx context.Context, tx *sql.Tx, userID int64, codes []mfa.BackupCode) ([]int64, error) {
	if _, err := tx.StmtContext(ctx, db.st.deleteCodes).ExecContext(ctx, userID); err != nil {
		return nil, err
	}
	if len(codes) == 0 {
		return nil, nil
	}
	ins := tx.StmtContext(ctx, db.st.insertCode)
	ids := make([]int64, len(codes))
	for i, c := range codes {
		hash := c.Hash
		if hash == nil {
			hash = []byte{}
		}
		res, err := ins.ExecContext(ctx, userID, hash, nullMillis(c.UsedAt))
		if err != nil {
			return nil, err
		}
		if ids[i], err = res.LastInsertId(); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func setCodeIDs(codes []mfa.BackupCode, userID int64, ids []int64) {
	for i := range ids {
		codes[i].ID, codes[i].UserID = ids[i], userID
	}
}

// sessionArgs are s's columns in the order of insertSession and replaceSession.
func sessionArgs(s *mfa.Session) []any {
	return []any{s.ID, s.UserID, int64(s.Level), millis(s.CreatedAt), millis(s.LastSeenAt), millis(s.ExpiresAt), s.IP}
}

func (db *DB) insertSession(ctx context.Context, ins *sql.Stmt, s *mfa.Session) error {
	_, err := ins.ExecContext(ctx, sessionArgs(s)...)
	return err
}

// CreateSession stores s; a taken ID is mfa.ErrConflict.
func (db *DB) CreateSession(ctx context.Context, s *mfa.Session) error {
	if err := db.insertSession(ctx, db.st.insertSession, s); err != nil {
		return wrap("create session", err)
	}
	return nil
}

// Session returns the session with exactly that ID.
func (db *DB) Session(ctx context.Context, id []byte) (*mfa.Session, error) {
	var (
		s                      mfa.Session
		level                  int64
		created, seen, expires int64
	)
	err := db.st.session.QueryRowContext(ctx, id).Scan(&s.UserID, &level, &created, &seen, &expires, &s.IP)
	if err != nil {
		return nil, wrap("session", err)
	}
	s.ID = append([]byte(nil), id...)
	s.Level = mfa.Level(level)
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt = timeOf(created), timeOf(seen), timeOf(expires)
	return &s, nil
}

// SessionView returns the session with exactly that ID, its user and the
// user's factors, in one read.
func (db *DB) SessionView(ctx context.Context, id []byte) (*mfa.SessionView, error) {
	rows, err := db.st.sessionView.QueryContext(ctx, id)
	if err != nil {
		return nil, wrap("session view", err)
	}
	defer rows.Close()
	var v *mfa.SessionView
	for rows.Next() {
		var (
			s                      mfa.Session
			u                      mfa.User
			level                  int64
			created, seen, expires int64
			userCreated            int64
			f                      joinedFactor
		)
		err := rows.Scan(append([]any{&s.UserID, &level, &created, &seen, &expires, &s.IP,
			&u.Email, &u.PasswordHash, &userCreated}, f.dest()...)...)
		if err != nil {
			return nil, wrap("session view", err)
		}
		if v == nil {
			s.ID = append([]byte(nil), id...)
			s.Level = mfa.Level(level)
			s.CreatedAt, s.LastSeenAt, s.ExpiresAt = timeOf(created), timeOf(seen), timeOf(expires)
			u.ID, u.CreatedAt = s.UserID, timeOf(userCreated)
			v = &mfa.SessionView{Session: s, User: u}
		}
		v.Factors = f.appendTo(v.Factors, s.UserID)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("session view", err)
	}
	if v == nil {
		return nil, wrap("session view", sql.ErrNoRows)
	}
	sortByID(v.Factors)
	return v, nil
}

// joinedFactor receives a factor's columns from a LEFT JOIN: all NULL when
// the user has no factor.
type joinedFactor struct {
	id, step, created, confirmed sql.NullInt64
	kind                         sql.NullString
	secret                       []byte
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
		Secret: f.secret, LastStep: f.step.Int64, CreatedAt: timeOf(f.created.Int64), ConfirmedAt: nullTimeOf(f.confirmed)})
}

// sortByID puts the factors a view read in ID order.
func sortByID(fs []mfa.Factor) {
	slices.SortFunc(fs, func(a, b mfa.Factor) int { return cmp.Compare(a.ID, b.ID) })
}

// SignInView returns the key's state, counting failures at or after since,
// and the user with exactly that email and the user's factors, in one read.
func (db *DB) SignInView(ctx context.Context, email string, key mfa.ThrottleKey, since time.Time) (*mfa.SignInView, error) {
	rows, err := db.st.signInView.QueryContext(ctx, key.Subject, string(key.Method), millis(since), email)
	if err != nil {
		return nil, wrap("sign-in view", err)
	}
	defer rows.Close()
	var v *mfa.SignInView
	for rows.Next() {
		var (
			t                   throttleColumns
			userID, userCreated sql.NullInt64
			userEmail, hash     sql.NullString
			f                   joinedFactor
		)
		if err := rows.Scan(append(append(t.dest(), &userID, &userEmail, &hash, &userCreated), f.dest()...)...); err != nil {
			return nil, wrap("sign-in view", err)
		}
		if v == nil {
			v = &mfa.SignInView{Throttle: t.state()}
			if userID.Valid {
				v.User = &mfa.User{ID: userID.Int64, Email: userEmail.String, PasswordHash: hash.String, CreatedAt: timeOf(userCreated.Int64)}
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

// errGone ends UpgradeSession's transaction when the old session is gone,
// its proof was spent already, the throttle refuses the attempt, or the
// user's password hash is no longer the one checked.
var errGone = errors.New("session gone")

// UpgradeSession admits the attempt, spends the proof, replaces session
// u.Old by u.Next and records u.Event (setting its ID), in one write
// transaction. It reports false, changing nothing, when the throttle
// refuses, the proof was spent, u.Old no longer exists or the password hash
// changed.
func (db *DB) UpgradeSession(ctx context.Context, u mfa.Upgrade) (bool, error) {
	var evID int64
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// The throttle, then the proof: of concurrent sign-ins, one spends
		// it, and the others write nothing.
		var throttle mfa.ThrottleState
		if u.Throttle.Subject != "" {
			var err error
			throttle, err = scanThrottle(tx.StmtContext(ctx, db.st.throttleStateW).QueryRowContext(ctx,
				u.Throttle.Subject, string(u.Throttle.Method), millis(u.Since)))
			if err != nil {
				return err
			}
			if !u.Admit(throttle) {
				return errGone
			}
		}
		if u.PasswordHash != "" {
			var held int
			err := tx.StmtContext(ctx, db.st.passwordHeld).QueryRowContext(ctx, u.Next.UserID, u.PasswordHash).Scan(&held)
			if errors.Is(err, sql.ErrNoRows) {
				return errGone
			} else if err != nil {
				return err
			}
		}
		if u.ClaimFactor != 0 {
			if err := mustAffect(tx.StmtContext(ctx, db.st.claimStep).ExecContext(ctx, u.ClaimStep, u.ClaimFactor)); err != nil {
				return err
			}
		}
		if u.BackupCode != 0 {
			if err := mustAffect(tx.StmtContext(ctx, db.st.useCode).ExecContext(ctx, millis(u.Next.CreatedAt), u.BackupCode)); err != nil {
				return err
			}
		}
		if u.Old != nil {
			args := append(sessionArgs(u.Next), u.Old)
			if err := mustAffect(tx.StmtContext(ctx, db.st.replaceSession).ExecContext(ctx, args...)); err != nil {
				return err
			}
		} else if err := db.insertSession(ctx, tx.StmtContext(ctx, db.st.insertSession), u.Next); err != nil {
			return err
		}
		if throttle.Consecutive != 0 { // read above, in this transaction
			if _, err := tx.StmtContext(ctx, db.st.clearConsecutive).ExecContext(ctx, u.Throttle.Subject, string(u.Throttle.Method)); err != nil {
				return err
			}
		}
		var err error
		evID, err = db.insertEvent(ctx, tx, u.Event)
		return err
	})
	if errors.Is(err, errGone) {
		return false, nil
	} else if err != nil {
		return false, wrap("upgrade session", err)
	}
	setEventID(u.Event, evID)
	return true, nil
}

// mustAffect turns a statement that changed no row into errGone.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return errGone
	}
	return nil
}

// TouchSession sets the session's LastSeenAt; a missing session is mfa.ErrNotFound.
func (db *DB) TouchSession(ctx context.Context, id []byte, at time.Time) error {
	res, err := db.exec(ctx, db.st.touchSession, millis(at), id)
	if err != nil {
		return wrap("touch session", err)
	}
	if ok, err := affected(res, "touch session"); err != nil {
		return err
	} else if !ok {
		return wrap("touch session", sql.ErrNoRows)
	}
	return nil
}

// DeleteSession removes the session; removing a missing one is not an error.
func (db *DB) DeleteSession(ctx context.Context, id []byte) error {
	if _, err := db.exec(ctx, db.st.deleteSession, id); err != nil {
		return wrap("delete session", err)
	}
	return nil
}

// DeleteUserSessions removes every session of the user.
func (db *DB) DeleteUserSessions(ctx context.Context, userID int64) error {
	if _, err := db.exec(ctx, db.st.deleteUserSessions, userID); err != nil {
		return wrap("delete user sessions", err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions whose ExpiresAt is before t and
// returns how many it removed.
func (db *DB) DeleteExpiredSessions(ctx context.Context, t time.Time) (int, error) {
	res, err := db.exec(ctx, db.st.deleteExpired, millis(t))
	if err != nil {
		return 0, wrap("delete expired sessions", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrap("delete expired sessions", err)
	}
	return int(n), nil
}

// throttleColumns receives the columns of throttleStateSQL.
type throttleColumns struct {
	consecutive, last, oldest sql.NullInt64
	count                     int
}

func (c *throttleColumns) dest() []any {
	return []any{&c.consecutive, &c.last, &c.count, &c.oldest}
}

func (c *throttleColumns) state() mfa.ThrottleState {
	return mfa.ThrottleState{Consecutive: int(c.consecutive.Int64), LastFailure: nullTimeOf(c.last),
		WindowCount: c.count, WindowOldest: nullTimeOf(c.oldest)}
}

func scanThrottle(row *sql.Row) (mfa.ThrottleState, error) {
	var c throttleColumns
	if err := row.Scan(c.dest()...); err != nil {
		return mfa.ThrottleState{}, err
	}
	return c.state(), nil
}

// ThrottleState returns the key's state, counting failures at or after since.
func (db *DB) ThrottleState(ctx context.Context, key mfa.ThrottleKey, since time.Time) (mfa.ThrottleState, error) {
	st, err := scanThrottle(db.st.throttleState.QueryRowContext(ctx, key.Subject, string(key.Method), millis(since)))
	if err != nil {
		return mfa.ThrottleState{}, wrap("throttle state", err)
	}
	return st, nil
}

// RecordFailure reads the key's state and, if admit approves it, records a
// failure at time at, and the events that events returns, in one write
// transaction: concurrent calls, from this process or another, see each
// other's failures. admit and events run while the database's write lock
// is held, so they must be quick, and they must not call the store: the one
// write connection is busy, a write would wait forever. The key's failures
// before since are deleted on the way.
func (db *DB) RecordFailure(ctx context.Context, key mfa.ThrottleKey, at, since time.Time, admit func(mfa.ThrottleState) bool, events func(mfa.ThrottleState) []mfa.Event) (mfa.ThrottleState, bool, error) {
	var (
		st       mfa.ThrottleState
		recorded bool
	)
	subject, method, atMs, sinceMs := key.Subject, string(key.Method), millis(at), millis(since)
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		recorded = false
		st, err = scanThrottle(tx.StmtContext(ctx, db.st.throttleStateW).QueryRowContext(ctx, subject, method, sinceMs))
		if err != nil || !admit(st) {
			return err
		}
		st = st.WithFailure(timeOf(atMs), timeOf(sinceMs))
		if _, err := tx.StmtContext(ctx, db.st.pruneFailures).ExecContext(ctx, subject, method, sinceMs); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, db.st.insertFailure).ExecContext(ctx, subject, method, atMs); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, db.st.upsertThrottle).ExecContext(ctx, subject, method, atMs); err != nil {
			return err
		}
		if events != nil {
			for _, e := range events(st) {
				e.Notify = false
				if _, err := db.insertEvent(ctx, tx, &e); err != nil {
					return err
				}
			}
		}
		recorded = true
		return nil
	})
	if err != nil {
		return mfa.ThrottleState{}, false, wrap("record failure", err)
	}
	return st, recorded, nil
}

// ResetThrottle sets the key's consecutive failure count to zero and
// forgets the failure recorded at attempt; its other
// failures stay counted in their window. An unknown key is not an error.
func (db *DB) ResetThrottle(ctx context.Context, key mfa.ThrottleKey, attempt time.Time) error {
	subject, method := key.Subject, string(key.Method)
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.StmtContext(ctx, db.st.clearConsecutive).ExecContext(ctx, subject, method); err != nil {
			return err
		}
		_, err := tx.StmtContext(ctx, db.st.forgetFailure).ExecContext(ctx, subject, method, millis(attempt))
		return err
	})
	if err != nil {
		return wrap("reset throttle", err)
	}
	return nil
}

// DeleteStaleThrottles forgets failures before t and keys whose last
// failure is before t, and returns how many keys it forgot.
func (db *DB) DeleteStaleThrottles(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM throttle_failures WHERE at < ?`, millis(t)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM throttles WHERE last_failure < ?`, millis(t))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, wrap("delete stale throttles", err)
	}
	return int(n), nil
}

// insertEvent stores e, and queues its notice if e.Notify; a nil e is no
// event.
func (db *DB) insertEvent(ctx context.Context, tx *sql.Tx, e *mfa.Event) (int64, error) {
	if e == nil {
		return 0, nil
	}
	res, err := tx.StmtContext(ctx, db.st.insertEvent).ExecContext(ctx, e.UserID, string(e.Type), millis(e.At), e.IP, e.Detail)
	if err != nil {
		return 0, err
	}
	id, err := res.LastInsertId()
	if err != nil || !e.Notify {
		return id, err
	}
	_, err = tx.StmtContext(ctx, db.st.queueNotice).ExecContext(ctx, id, millis(e.At))
	return id, err
}

// setEventID gives e, if not nil, the ID it was stored under, once its
// transaction is committed.
func setEventID(e *mfa.Event, id int64) {
	if e != nil {
		e.ID = id
	}
}

// AddEvent stores e and sets e.ID, and queues its notice if e.Notify.
func (db *DB) AddEvent(ctx context.Context, e *mfa.Event) error {
	var id int64
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) (err error) {
		id, err = db.insertEvent(ctx, tx, e)
		return err
	})
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
	rows, err := db.st.events.QueryContext(ctx, userID, limit)
	if err != nil {
		return nil, wrap("events", err)
	}
	defer rows.Close()
	evs := make([]mfa.Event, 0, min(limit, 64))
	for rows.Next() {
		var (
			e   mfa.Event
			typ string
			at  int64
		)
		if err := rows.Scan(&e.ID, &e.UserID, &typ, &at, &e.IP, &e.Detail); err != nil {
			return nil, wrap("events", err)
		}
		e.Type = mfa.EventType(typ)
		e.At = timeOf(at)
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
	list, err := json.Marshal(names)
	if err != nil {
		return 0, wrap("count events", err)
	}
	var n int
	err = db.r.QueryRowContext(ctx, `SELECT count(*) FROM events
WHERE user_id = ? AND at >= ? AND type IN (SELECT value FROM json_each(?))`, userID, millis(since), string(list)).Scan(&n)
	if err != nil {
		return 0, wrap("count events", err)
	}
	return n, nil
}

// ClaimNotices returns at most limit notices due at now, the earliest due
// first, and makes each due again at until. The single writer makes the
// claim atomic.
func (db *DB) ClaimNotices(ctx context.Context, now, until time.Time, limit int) ([]mfa.QueuedNotice, error) {
	var claimed []mfa.QueuedNotice
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT e.id, e.user_id, e.type, e.at, e.ip, e.detail, u.email, n.attempts + 1
FROM notices n JOIN events e ON e.id = n.event_id JOIN users u ON u.id = e.user_id
WHERE n.due_at <= ? ORDER BY n.due_at, n.event_id LIMIT ?`, millis(now), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				q   mfa.QueuedNotice
				typ string
				at  int64
			)
			if err := rows.Scan(&q.Event.ID, &q.Event.UserID, &typ, &at, &q.Event.IP, &q.Event.Detail, &q.Email, &q.Attempts); err != nil {
				return err
			}
			q.Event.Type, q.Event.At = mfa.EventType(typ), timeOf(at)
			claimed = append(claimed, q)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, q := range claimed {
			if _, err := tx.ExecContext(ctx, `UPDATE notices SET due_at = ?, attempts = ? WHERE event_id = ?`,
				millis(until), q.Attempts, q.Event.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("claim notices", err)
	}
	return claimed, nil
}

// RescheduleNotice makes the notice of event eventID due at at; a zero at
// takes it off the queue.
func (db *DB) RescheduleNotice(ctx context.Context, eventID int64, at time.Time) error {
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if at.IsZero() {
			_, err := tx.ExecContext(ctx, `DELETE FROM notices WHERE event_id = ?`, eventID)
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE notices SET due_at = ? WHERE event_id = ?`, millis(at), eventID)
		return err
	})
	if err != nil {
		return wrap("reschedule notice", err)
	}
	return nil
}
