package mfa

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// LoginResult is the outcome of a sign-in step that succeeded.
type LoginResult struct {
	Token   string // the new session token: the client's cookie from now on
	Session *Session
	User    *User
	// Methods lists the ways to finish signing in while Session.Level is
	// LevelPassword.
	Methods []Method
}

// SecondFactorRequired reports whether the sign-in still waits for a second factor.
func (r *LoginResult) SecondFactorRequired() bool { return r.Session.Level == LevelPassword }

// Login checks an email address and password. With two-factor
// authentication on, the session it starts reaches nothing protected until
// VerifySecondFactor completes it; the password is never kept.
func (s *Service) Login(ctx context.Context, email, password string, c Client) (*LoginResult, error) {
	email, emailErr := NormalizeEmail(email)
	key := s.passwordKey(email)
	now := s.clock()
	// The throttle state, the user and the factors come in one read.
	view, err := s.store.SignInView(ctx, email, key, now.Add(-ThrottleWindow))
	if err != nil {
		return nil, fmt.Errorf("mfa: login: %w", err)
	}
	// No hash is spent on a locked key. Past this check, as for the second
	// factor, the outcome counts only in the one write that admits the
	// attempt: a right password starts the session, a wrong one is recorded
	// as a failure, each only if the key is not locked by then.
	if d := lockRemaining(view.Throttle, now); d > 0 {
		return nil, rateLimited(d)
	}
	u := view.User
	if emailErr != nil {
		u = nil // not an address: no account can have it
	}
	if u == nil {
		// Spend the time a real check takes, and count the failure the same way.
		if err := s.passwords.VerifyDummy(ctx, password); err != nil {
			return nil, s.hashError("login", err)
		}
		return nil, s.passwordFailed(ctx, key, 0, c)
	}
	ok, err := s.passwords.Verify(ctx, u.PasswordHash, password)
	if err != nil {
		return nil, s.hashError("login", err)
	}
	if !ok {
		return nil, s.passwordFailed(ctx, key, u.ID, c)
	}

	f := confirmedTOTPOf(view.Factors)
	level, expires, how := LevelFull, now.Add(s.absolute), "password"
	if f != nil {
		level, expires, how = LevelPassword, now.Add(s.pendingLogin), ""
	}
	token, id, err := s.newToken()
	if err != nil {
		return nil, err
	}
	up := Upgrade{
		Next:         &Session{ID: id, UserID: u.ID, Level: level, CreatedAt: now, LastSeenAt: now, ExpiresAt: expires, IP: c.IP},
		PasswordHash: u.PasswordHash,
		Throttle:     key, Since: now.Add(-ThrottleWindow), Admit: admitAt(now),
	}
	if level == LevelFull {
		up.Event = &Event{UserID: u.ID, Type: EventLoginSucceeded, At: now, IP: c.IP, Detail: how}
	}
	if err := s.startSession(ctx, u, password, up, c); err != nil {
		return nil, err
	}
	if level == LevelFull {
		if err := s.checkStillPasswordOnly(ctx, u.ID, id); err != nil {
			return nil, err
		}
	}
	s.rehash(ctx, u, password)
	res := &LoginResult{Token: token, Session: up.Next, User: u}
	if f != nil {
		res.Methods = []Method{MethodTOTP, MethodBackupCode}
	}
	return res, nil
}

// startSession writes the session of a right password, on the condition
// that u's password hash is still the one checked: a password change that
// ran while the hash was checked ends every session it finds, and a session
// written after that with the old password would outlive it. A hash that
// changed only because another sign-in rehashed the same password gets the
// session still, at the cost of one more hash; a key locked meanwhile by
// concurrent failures, or another password, gets a failure.
func (s *Service) startSession(ctx context.Context, u *User, password string, up Upgrade, c Client) error {
	for attempt := 1; ; attempt++ {
		started, err := s.store.UpgradeSession(ctx, up)
		if err != nil {
			return fmt.Errorf("mfa: start session: %w", err)
		}
		if started {
			return nil
		}
		// Refused: the key was locked, or the hash changed, meanwhile.
		fresh, err := s.store.UserByID(ctx, u.ID)
		switch {
		case errors.Is(err, ErrNotFound): // the account is gone
			return s.passwordFailed(ctx, up.Throttle, 0, c)
		case err != nil:
			return fmt.Errorf("mfa: login: %w", err)
		case fresh.PasswordHash == up.PasswordHash || attempt == maxPasswordSwaps:
			return s.passwordFailed(ctx, up.Throttle, u.ID, c)
		}
		ok, err := s.passwords.Verify(ctx, fresh.PasswordHash, password)
		if err != nil {
			return s.hashError("login", err)
		}
		if !ok {
			return s.passwordFailed(ctx, up.Throttle, u.ID, c)
		}
		u.PasswordHash = fresh.PasswordHash
		up.PasswordHash = fresh.PasswordHash
	}
}

// checkStillPasswordOnly ends the full session id, just started with the
// password alone, if two-factor authentication was turned on meanwhile:
// turning it on ends the sessions it finds, and this one may have been
// written after that, from a read of the factors made before. Read after
// the write, the factors show whether that happened.
func (s *Service) checkStillPasswordOnly(ctx context.Context, userID int64, id []byte) error {
	f, err := s.confirmedTOTP(ctx, userID)
	if err == nil && f == nil {
		return nil
	}
	if derr := s.store.DeleteSession(ctx, id); derr != nil {
		return fmt.Errorf("mfa: login: end a session that 2FA now covers: %w", derr)
	}
	if err != nil {
		return err
	}
	return ErrLoginExpired
}

// rehash stores a new hash of the user's right password when the stored
// one was made under other parameters (older defaults, or weaker ones), so
// that every account moves to the current cost at its next sign-in. It
// spends one more hash, once. A busy hasher or a failed write leaves the
// old hash, to try again at the next sign-in: the sign-in itself has
// succeeded already.
func (s *Service) rehash(ctx context.Context, u *User, password string) {
	if !s.passwords.NeedsRehash(u.PasswordHash) {
		return
	}
	phc, err := s.passwords.Hash(ctx, password)
	if err != nil {
		s.log.WarnContext(ctx, "rehash password: put off", "user_id", u.ID, "err", err)
		return
	}
	// Only over the hash just checked: a password changed meanwhile stays.
	swapped, err := s.store.ReplacePasswordHash(ctx, u.ID, u.PasswordHash, phc, nil)
	if err != nil {
		s.log.ErrorContext(ctx, "rehash password", "user_id", u.ID, "err", err)
		return
	}
	if swapped {
		u.PasswordHash = phc
	}
}

// passwordFailed records a wrong password (of a known user, when userID is
// not 0) and counts it against key, or answers rate-limited while the key
// is locked.
func (s *Service) passwordFailed(ctx context.Context, key ThrottleKey, userID int64, c Client) error {
	return s.fail(ctx, key, Event{UserID: userID, Type: EventLoginFailed, IP: c.IP, Detail: wrongPasswordDetail}, ErrInvalidCredentials)
}

// PendingLogin returns the half-finished sign-in that token belongs to.
func (s *Service) PendingLogin(ctx context.Context, token string) (*Session, *User, error) {
	v, err := s.pendingView(ctx, token)
	if err != nil {
		return nil, nil, err
	}
	return &v.Session, &v.User, nil
}

// pendingView reads the half-finished sign-in of token with the user's
// factors.
func (s *Service) pendingView(ctx context.Context, token string) (*SessionView, error) {
	v, err := s.store.SessionView(ctx, sessionID(token))
	if errors.Is(err, ErrNotFound) {
		return nil, ErrLoginExpired
	} else if err != nil {
		return nil, fmt.Errorf("mfa: pending login: %w", err)
	}
	if v.Session.Level != LevelPassword || !s.clock().Before(v.Session.ExpiresAt) {
		return nil, ErrLoginExpired
	}
	return v, nil
}

// VerifySecondFactor completes a pending sign-in with a code. On success the
// pending session is replaced by a full one under a new token.
func (s *Service) VerifySecondFactor(ctx context.Context, token string, method Method, code string, c Client) (*LoginResult, error) {
	v, err := s.pendingView(ctx, token)
	if err != nil {
		return nil, err
	}
	sess, u := &v.Session, &v.User
	if method != MethodTOTP && method != MethodBackupCode {
		return nil, ErrMethodUnavailable
	}
	// The code is checked first, and what it was counts only in the one
	// write that admits the attempt against the throttle: a right code
	// upgrades the session, a wrong one is recorded as a failure, each only
	// if the key is not locked then. A locked key answers rate-limited to
	// both, so concurrent guesses learn nothing beyond the limits, and a
	// sign-in costs one write.
	key := userKey(u.ID, method)
	now := s.clock()
	up := Upgrade{Old: sess.ID, Throttle: key, Since: now.Add(-ThrottleWindow), Admit: admitAt(now)}
	var ok, used bool
	if method == MethodTOTP {
		up.ClaimFactor, up.ClaimStep, ok, used, err = s.checkTOTP(u.ID, v.Factors, code)
	} else {
		up.BackupCode, ok, err = s.checkBackupCode(ctx, u.ID, code)
	}
	if err != nil {
		return nil, err
	}
	if used {
		return nil, s.secondFactorFailed(ctx, key, u.ID, c, string(method)+usedDetailSuffix, ErrCodeUsed)
	}
	if !ok {
		return nil, s.secondFactorFailed(ctx, key, u.ID, c, string(method), ErrInvalidCode)
	}

	newToken, id, err := s.newToken()
	if err != nil {
		return nil, err
	}
	up.Next = &Session{ID: id, UserID: u.ID, Level: LevelFull, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.absolute), IP: c.IP}
	up.Event = &Event{UserID: u.ID, Type: EventLoginSucceeded, At: now, IP: c.IP, Detail: string(method)}
	upgraded, err := s.store.UpgradeSession(ctx, up)
	if err != nil {
		return nil, fmt.Errorf("mfa: upgrade session: %w", err)
	}
	if !upgraded {
		// The sign-in was completed or ended meanwhile, or the key is
		// locked, or a concurrent request spent the code first: a replay.
		if _, err := s.store.Session(ctx, sess.ID); err != nil {
			return nil, ErrLoginExpired
		}
		// Only a TOTP code has a next one to wait for.
		spent := ErrInvalidCode
		if method == MethodTOTP {
			spent = ErrCodeUsed
		}
		return nil, s.secondFactorFailed(ctx, key, u.ID, c, string(method)+usedDetailSuffix, spent)
	}
	if method == MethodBackupCode {
		s.record(ctx, u.ID, EventBackupCodeUsed, c, "")
	}
	return &LoginResult{Token: newToken, Session: up.Next, User: u}, nil
}

// secondFactorFailed records a failed second factor, counts it against key
// and returns err, or answers rate-limited while the key is locked.
func (s *Service) secondFactorFailed(ctx context.Context, key ThrottleKey, userID int64, c Client, detail string, err error) error {
	return s.fail(ctx, key, Event{UserID: userID, Type: EventSecondFactorFailed, IP: c.IP, Detail: detail}, err)
}

// touchEvery limits session writes: LastSeenAt is refreshed at most this often.
const touchEvery = time.Minute

// Authenticate returns the fully signed-in session of token and its user,
// or ErrUnauthenticated. A session that has passed only the password is not
// authenticated.
func (s *Service) Authenticate(ctx context.Context, token string) (*Session, *User, error) {
	if token == "" {
		return nil, nil, ErrUnauthenticated
	}
	v, err := s.store.SessionView(ctx, sessionID(token))
	if errors.Is(err, ErrNotFound) {
		return nil, nil, ErrUnauthenticated
	} else if err != nil {
		return nil, nil, fmt.Errorf("mfa: authenticate: %w", err)
	}
	sess, u := &v.Session, &v.User
	now := s.clock()
	if sess.Level != LevelFull {
		return nil, nil, ErrUnauthenticated
	}
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.LastSeenAt) >= s.idle {
		if err := s.store.DeleteSession(ctx, sess.ID); err != nil {
			s.log.ErrorContext(ctx, "delete expired session", "err", err)
		}
		return nil, nil, ErrUnauthenticated
	}
	if now.Sub(sess.LastSeenAt) >= touchEvery {
		if err := s.store.TouchSession(ctx, sess.ID, now); errors.Is(err, ErrNotFound) {
			return nil, nil, ErrUnauthenticated // ended meanwhile
		} else if err != nil {
			return nil, nil, fmt.Errorf("mfa: authenticate: %w", err)
		}
		sess.LastSeenAt = now
	}
	return sess, u, nil
}

// Logout ends the session of token on the server. Ending a session that is
// already gone is not an error.
func (s *Service) Logout(ctx context.Context, token string, c Client) error {
	id := sessionID(token)
	sess, err := s.store.Session(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("mfa: logout: %w", err)
	}
	if err := s.store.DeleteSession(ctx, id); err != nil {
		return fmt.Errorf("mfa: logout: %w", err)
	}
	if sess.Level == LevelFull {
		s.record(ctx, sess.UserID, EventLogout, c, "")
	}
	return nil
}

// DeleteExpiredSessions removes sessions past their absolute end.
func (s *Service) DeleteExpiredSessions(ctx context.Context) (int, error) {
	n, err := s.store.DeleteExpiredSessions(ctx, s.clock())
	if err != nil {
		return 0, fmt.Errorf("mfa: delete expired sessions: %w", err)
	}
	return n, nil
}

// DeleteStaleThrottles forgets throttle records older than the throttle
// window: a key with none left is as if it had never failed.
func (s *Service) DeleteStaleThrottles(ctx context.Context) (int, error) {
	n, err := s.store.DeleteStaleThrottles(ctx, s.clock().Add(-ThrottleWindow))
	if err != nil {
		return 0, fmt.Errorf("mfa: delete stale throttles: %w", err)
	}
	return n, nil
}
