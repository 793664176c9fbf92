package mfa

import (
	"context"
	"fmt"
	"time"
)

// ChangePassword replaces the signed-in user's password, after checking
// the current one (its failures count with those of signing in) and the
// policy. Every session of the user ends, the current one included: a
// password change is what a user does who fears someone else is signed in.
// The caller's client gets a new fully signed-in session, whose token is
// returned. Of two changes at once, one fails with ErrPasswordChanged.
func (s *Service) ChangePassword(ctx context.Context, u *User, current, next string, c Client) (token string, err error) {
	if err := s.checkPolicy(next); err != nil {
		return "", err
	}
	if err := s.Reauthenticate(ctx, u, current, c); err != nil {
		return "", err
	}
	phc, err := s.passwords.Hash(ctx, next)
	if err != nil {
		return "", s.hashError("change password", err)
	}
	e := s.changeEvent(ctx, u.ID, EventPasswordChanged, c, "")
	// Only over the hash just checked, or a rehash by a sign-in of the
	// same password meanwhile.
	err = s.replacePassword(ctx, u, phc, e, "change password", func(stored string) (bool, error) {
		return s.passwords.Verify(ctx, stored, current)
	})
	if err != nil {
		return "", err
	}
	token, err = s.startFullSession(ctx, u, c)
	if err != nil {
		return "", &Error{Kind: KindUnauthenticated, Code: "sign_in_again",
			Message: "Your password has been changed. Sign in again with the new password.",
			Err:     fmt.Errorf("mfa: change password: %w", err)}
	}
	return token, nil
}

// startFullSession starts a fully signed-in session of u for the client
// and returns its token: the caller's session after a change that ended
// every other.
func (s *Service) startFullSession(ctx context.Context, u *User, c Client) (string, error) {
	token, id, err := s.newToken()
	if err != nil {
		return "", err
	}
	now := s.clock()
	sess := &Session{ID: id, UserID: u.ID, Level: LevelFull, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.absolute), IP: c.IP}
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return "", fmt.Errorf("new session: %w", err)
	}
	return token, nil
}

// restartSessions ends every session of u and starts a new one for the
// client, whose token it returns, after a change to how the account is
// protected: a session someone else opened before the change, knowing the
// password alone, does not outlive it. The change has been made already
// and stands: a failure here is logged, not returned, so that the caller
// still shows its outcome (the backup codes, shown once). Should the
// sessions not end, the log says so; should the new session not start, the
// token is empty and the client signs in again. The sessions end even when
// the client has gone away meanwhile.
func (s *Service) restartSessions(ctx context.Context, u *User, c Client, op string) string {
	endCtx, cancel := followUp(ctx)
	defer cancel()
	if err := s.store.DeleteUserSessions(endCtx, u.ID); err != nil {
		s.log.ErrorContext(ctx, op+": other sessions not ended", "user_id", u.ID, "err", err)
	}
	token, err := s.startFullSession(ctx, u, c)
	if err != nil {
		s.log.ErrorContext(ctx, op+": the caller must sign in again", "user_id", u.ID, "err", err)
		return ""
	}
	return token
}

// SetPassword gives the account with the email a new password without the
// old one: support's answer to a forgotten password (twofold user
// set-password). Every session of the account ends; two-factor
// authentication stays as it is, so the new password alone does not sign
// in where a code is needed. The backoff of the password step ends too: the
// wrong guesses were at the old password, likely the user's own. Its
// 24-hour ceiling stays.
func (s *Service) SetPassword(ctx context.Context, email, next string, c Client) error {
	if err := s.checkPolicy(next); err != nil {
		return err
	}
	u, err := s.supportedUser(ctx, email)
	if err != nil {
		return err
	}
	phc, err := s.passwords.Hash(ctx, next)
	if err != nil {
		return s.hashError("set password", err)
	}
	e := s.changeEvent(ctx, u.ID, EventPasswordReset, c, "by an administrator")
	// Over whatever hash is stored: support's word is the last.
	err = s.replacePassword(ctx, u, phc, e, "set password", func(string) (bool, error) { return true, nil })
	if err != nil {
		return err
	}
	// The password is changed: what follows is done whatever becomes of
	// ctx, and its failure is logged, not returned, so that support is
	// not told the change failed.
	ctx, cancel := followUp(ctx)
	defer cancel()
	if err := s.store.ResetThrottle(ctx, s.passwordKey(u.Email), time.Time{}); err != nil {
		s.log.ErrorContext(ctx, "set password: the backoff of the password step stays", "user_id", u.ID, "err", err)
	}
	return nil
}

// replacePassword ends every session of u, stores phc over the hash u was
// read with, and the change's event e in the same write, and ends every
// session again: whatever fails midway, no session from before the change
// outlives it (the user is signed out and signs in with whichever password
// holds), and sign-ins that started a session with the old password
// meanwhile lose it too. If the stored hash changed since u was read,
// mayOverwrite decides from the stored hash whether to swap over it; a
// password changed meanwhile is refused with ErrPasswordChanged.
func (s *Service) replacePassword(ctx context.Context, u *User, phc string, e *Event, op string, mayOverwrite func(stored string) (bool, error)) error {
	if err := s.store.DeleteUserSessions(ctx, u.ID); err != nil {
		return fmt.Errorf("mfa: %s: end sessions: %w", op, err)
	}
	for attempt := 1; ; attempt++ {
		swapped, err := s.store.ReplacePasswordHash(ctx, u.ID, u.PasswordHash, phc, e)
		if err != nil {
			return fmt.Errorf("mfa: %s: %w", op, err)
		}
		if swapped {
			u.PasswordHash = phc
			s.eventStored(ctx, e)
			// The password is changed and stays so: the sessions that
			// sign-ins with the old one started meanwhile end even when the
			// client has gone away, and a failure to end them is logged.
			endCtx, cancel := followUp(ctx)
			defer cancel()
			if err := s.store.DeleteUserSessions(endCtx, u.ID); err != nil {
				s.log.ErrorContext(ctx, op+": sessions started meanwhile not ended", "user_id", u.ID, "err", err)
			}
			return nil
		}
		if attempt == maxPasswordSwaps {
			return ErrPasswordChanged
		}
		fresh, err := s.store.UserByID(ctx, u.ID)
		if err != nil {
			return fmt.Errorf("mfa: %s: %w", op, err)
		}
		ok, err := mayOverwrite(fresh.PasswordHash)
		if err != nil {
			return s.hashError(op, err)
		}
		if !ok {
			return ErrPasswordChanged
		}
		u.PasswordHash = fresh.PasswordHash
	}
}

// maxPasswordSwaps bounds the swaps a password change tries while sign-ins
// rehash the same password under it.
const maxPasswordSwaps = 3
