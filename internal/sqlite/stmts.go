package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// stmts are the DB's statements, prepared once at Open. A statement of the
// write pool runs inside a transaction through tx.StmtContext, which reuses
// the statement already prepared on the one write connection.
type stmts struct {
	// read pool
	userByID, userByEmail, countUsers  *sql.Stmt
	factors, factorsAfter, unusedCodes *sql.Stmt
	session, sessionView, signInView   *sql.Stmt
	throttleState, events              *sql.Stmt
	// write connection
	insertUser, replacePassword                     *sql.Stmt
	deletePending, insertFactor, confirmFactor      *sql.Stmt
	deleteOtherFactors, deleteFactors, claimStep    *sql.Stmt
	replaceSecret, deleteCodes, insertCode, useCode *sql.Stmt
	newerCodes                                      *sql.Stmt
	insertSession, replaceSession, deleteSession    *sql.Stmt
	touchSession, deleteUserSessions, deleteExpired *sql.Stmt
	throttleStateW, pruneFailures, insertFailure    *sql.Stmt
	upsertThrottle, clearConsecutive, insertEvent   *sql.Stmt
	forgetFailure, passwordHeld, queueNotice        *sql.Stmt
	// the writer's savepoint around each job of a batch
	savepoint, releaseSavepoint, rollbackToSavepoint *sql.Stmt

	all []*sql.Stmt
}

const (
	// newerCodesSQL finds an unused backup code of the user ?1 with an ID
	// above ?2: a row if there is one, none otherwise.
	newerCodesSQL = `SELECT 1 FROM backup_codes WHERE user_id = ? AND id > ? AND used_at IS NULL LIMIT 1`

	userColumns    = `id, email, password_hash, created_at`
	factorColumns  = `id, user_id, kind, secret, last_step, created_at, confirmed_at`
	codeColumns    = `id, user_id, hash, used_at`
	sessionColumns = `user_id, level, created_at, last_seen_at, expires_at, ip`
	eventColumns   = `id, user_id, type, at, ip, detail`

	// sessionViewSQL reads a session, its user and the user's factors: a
	// row per factor, or one with NULL factor columns. The factors come in
	// no particular order: an ORDER BY would sort them in a temporary
	// B-tree on every request, where Go sorts them for less (see sortByID).
	sessionViewSQL = `SELECT s.user_id, s.level, s.created_at, s.last_seen_at, s.expires_at, s.ip,
	u.email, u.password_hash, u.created_at,
	f.id, f.kind, f.secret, f.last_step, f.created_at, f.confirmed_at
FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN factors f ON f.user_id = s.user_id
WHERE s.id = ?`

	// throttleStateSQL reads a key's row and counts its failures at or after
	// ?3, in one statement. ?1 is the subject, ?2 the method.
	throttleStateSQL = `SELECT
	(SELECT consecutive FROM throttles WHERE subject = ?1 AND method = ?2),
	(SELECT last_failure FROM throttles WHERE subject = ?1 AND method = ?2),
	count(*), min(at)
FROM throttle_failures WHERE subject = ?1 AND method = ?2 AND at >= ?3`

	// signInViewSQL reads a key's state as throttleStateSQL does, with the
	// user whose email is ?4 and the user's factors: a row per factor, or
	// one with NULL user or factor columns; the factors in no particular
	// order, as in sessionViewSQL.
	signInViewSQL = `SELECT t.*, u.id, u.email, u.password_hash, u.created_at,
	f.id, f.kind, f.secret, f.last_step, f.created_at, f.confirmed_at
FROM (` + throttleStateSQL + `) t LEFT JOIN users u ON u.email = ?4 LEFT JOIN factors f ON f.user_id = u.id`
)

func (s *stmts) prepare(ctx context.Context, w, r *sql.DB) error {
	for _, p := range []struct {
		stmt **sql.Stmt
		db   *sql.DB
		sql  string
	}{
		{&s.userByID, r, `SELECT ` + userColumns + ` FROM users WHERE id = ?`},
		{&s.userByEmail, r, `SELECT ` + userColumns + ` FROM users WHERE email = ?`},
		{&s.countUsers, r, `SELECT count(*) FROM users`},
		{&s.factors, r, `SELECT ` + factorColumns + ` FROM factors WHERE user_id = ? ORDER BY id`},
		{&s.factorsAfter, r, `SELECT ` + factorColumns + ` FROM factors WHERE id > ? ORDER BY id LIMIT ?`},
		{&s.unusedCodes, r, `SELECT ` + codeColumns + ` FROM backup_codes WHERE user_id = ? AND used_at IS NULL ORDER BY id`},
		{&s.session, r, `SELECT ` + sessionColumns + ` FROM sessions WHERE id = ?`},
		{&s.sessionView, r, sessionViewSQL},
		{&s.throttleState, r, throttleStateSQL},
		{&s.signInView, r, signInViewSQL},
		{&s.events, r, `SELECT ` + eventColumns + ` FROM events WHERE user_id = ? ORDER BY id DESC LIMIT ?`},

		{&s.insertUser, w, `INSERT INTO users (email, password_hash, created_at) VALUES (?, ?, ?)`},
		{&s.deletePending, w, `DELETE FROM factors WHERE user_id = ? AND confirmed_at IS NULL`},
		{&s.insertFactor, w, `INSERT INTO factors (user_id, kind, secret, last_step, created_at, confirmed_at) VALUES (?, ?, ?, ?, ?, ?)`},
		{&s.confirmFactor, w, `UPDATE factors SET confirmed_at = ?, last_step = ? WHERE id = ? AND confirmed_at IS NULL RETURNING user_id`},
		{&s.deleteOtherFactors, w, `DELETE FROM factors WHERE user_id = ? AND id <> ?`},
		{&s.deleteFactors, w, `DELETE FROM factors WHERE user_id = ?`},
		{&s.claimStep, w, `UPDATE factors SET last_step = ?1 WHERE id = ?2 AND last_step < ?1`},
		{&s.replacePassword, w, `UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?`},
		{&s.passwordHeld, w, `SELECT 1 FROM users WHERE id = ? AND password_hash = ?`},
		{&s.replaceSecret, w, `UPDATE factors SET secret = ? WHERE id = ? AND secret = ?`},
		{&s.deleteCodes, w, `DELETE FROM backup_codes WHERE user_id = ?`},
		{&s.insertCode, w, `INSERT INTO backup_codes (user_id, hash, used_at) VALUES (?, ?, ?)`},
		{&s.useCode, w, `UPDATE backup_codes SET used_at = ? WHERE id = ? AND used_at IS NULL`},
		{&s.newerCodes, w, newerCodesSQL},
		{&s.insertSession, w, `INSERT INTO sessions (id, ` + sessionColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?)`},
		// One statement for the delete and insert of a session's rotation.
		{&s.replaceSession, w, `UPDATE sessions SET id = ?, user_id = ?, level = ?, created_at = ?, last_seen_at = ?, expires_at = ?, ip = ? WHERE id = ?`},
		{&s.deleteSession, w, `DELETE FROM sessions WHERE id = ?`},
		{&s.touchSession, w, `UPDATE sessions SET last_seen_at = ? WHERE id = ?`},
		{&s.deleteUserSessions, w, `DELETE FROM sessions WHERE user_id = ?`},
		{&s.deleteExpired, w, `DELETE FROM sessions WHERE expires_at < ?`},
		{&s.throttleStateW, w, throttleStateSQL},
		{&s.pruneFailures, w, `DELETE FROM throttle_failures WHERE subject = ? AND method = ? AND at < ?`},
		{&s.insertFailure, w, `INSERT INTO throttle_failures (subject, method, at) VALUES (?, ?, ?)`},
		{&s.upsertThrottle, w, `INSERT INTO throttles (subject, method, consecutive, last_failure) VALUES (?1, ?2, 1, ?3)
ON CONFLICT (subject, method) DO UPDATE SET consecutive = consecutive + 1, last_failure = ?3`},
		{&s.clearConsecutive, w, `UPDATE throttles SET consecutive = 0 WHERE subject = ? AND method = ? AND consecutive <> 0`},
		{&s.forgetFailure, w, `DELETE FROM throttle_failures WHERE rowid =
	(SELECT rowid FROM throttle_failures WHERE subject = ?1 AND method = ?2 AND at = ?3 LIMIT 1)`},
		{&s.insertEvent, w, `INSERT INTO events (user_id, type, at, ip, detail) VALUES (?, ?, ?, ?, ?)`},
		{&s.queueNotice, w, `INSERT INTO notices (event_id, due_at) VALUES (?, ?)`},
		{&s.savepoint, w, `SAVEPOINT job`},
		{&s.releaseSavepoint, w, `RELEASE job`},
		{&s.rollbackToSavepoint, w, `ROLLBACK TO job`},
	} {
		st, err := p.db.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.sql, err)
		}
		*p.stmt = st
		s.all = append(s.all, st)
	}
	return nil
}

func (s *stmts) close() error {
	var errs []error
	for _, st := range s.all {
		errs = append(errs, st.Close())
	}
	s.all = nil
	return errors.Join(errs...)
}
