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
// returned.
//
// The sessions end before the swap as well as after it, so that whatever
// fails midway, no session from before the change outlives it: the user
// is then signed out and signs in again, with whichever password holds.
// The hash is swapped only over the one just checked (or a rehash of the
// same password by a sign-in meanwhile): of two changes at once, one fails
// with ErrPasswordChanged.
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
	if err := s.store.DeleteUserSessions(ctx, u.ID); err != nil {
		return "", fmt.Errorf("mfa: change password: end sessions: %w", err)
	}
	if err := s.swapPassword(ctx, u, current, phc); err != nil {
		return "", err
	}
	// Sign-ins with the old password that started a session meanwhile.
	if err := s.store.DeleteUserSessions(ctx, u.ID); err != nil {
		return "", fmt.Errorf("mfa: change password: end sessions: %w", err)
	}
	s.record(ctx, u.ID, EventPasswordChanged, c, "")
	token, id, err := s.newToken()
	if err != nil {
		return "", err
	}
	now := s.clock()
	sess := &Session{ID: id, UserID: u.ID, Level: LevelFull, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.absolute), IP: c.IP}
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return "", &Error{Kind: KindUnauthenticated, Code: "sign_in_again",
			Message: "Your password has been changed. Sign in again with the new password.",
			Err:     fmt.Errorf("mfa: change password: new session: %w", err)}
	}
	return token, nil
}

// SetPassword gives the account with the email a new password without the
// old one: support's answer to a forgotten password (twofold user
// set-password). Every session of the account ends, before the swap and
// after it as in ChangePassword; two-factor authentication stays as it is,
// so the new password alone does not sign in where a code is needed. The
// backoff of the password step ends too: the wrong guesses were at the old
// password, likely the user's own. Its 24-hour ceiling stays.
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
	if err := s.store.DeleteUserSessions(ctx, u.ID); err != nil {
		return fmt.Errorf("mfa: set password: end sessions: %w", err)
	}
	// Over whatever hash is stored: support's word is the last. A hash
	// that changes between the read and the swap is read again.
	for attempt := 0; ; attempt++ {
		swapped, err := s.store.ReplacePasswordHash(ctx, u.ID, u.PasswordHash, phc)
		if err != nil {
			return fmt.Errorf("mfa: set password: %w", err)
		}
		if swapped {
			break
		}
		if attempt == 2 {
			return ErrPasswordChanged
		}
		if u, err = s.store.UserByID(ctx, u.ID); err != nil {
			return fmt.Errorf("mfa: set password: %w", err)
		}
	}
	if err := s.store.DeleteUserSessions(ctx, u.ID); err != nil {
		return fmt.Errorf("mfa: set password: end sessions: %w", err)
	}
	if err := s.store.ResetThrottle(ctx, s.passwordKey(u.Email), time.Time{}); err != nil {
		return fmt.Errorf("mfa: set password: end backoff: %w", err)
	}
	s.record(ctx, u.ID, EventPasswordReset, c, "by an administrator")
	return nil
}

// swapPassword stores phc over the hash u was read with. If that hash has
// gone, a sign-in may have rehashed the same password meanwhile: the swap
// is retried once over the stored hash if current still opens it.
func (s *Service) swapPassword(ctx context.Context, u *User, current, phc string) error {
	for retried := false; ; retried = true {
		swapped, err := s.store.ReplacePasswordHash(ctx, u.ID, u.PasswordHash, phc)
		if err != nil {
			return fmt.Errorf("mfa: change password: %w", err)
		}
		if swapped {
			u.PasswordHash = phc
			return nil
		}
		if retried {
			return ErrPasswordChanged
		}
		fresh, err := s.store.UserByID(ctx, u.ID)
		if err != nil {
			return fmt.Errorf("mfa: change password: %w", err)
		}
		ok, err := s.passwords.Verify(ctx, fresh.PasswordHash, current)
		if err != nil {
			return s.hashError("change password", err)
		}
		if !ok {
			return ErrPasswordChanged
		}
		u.PasswordHash = fresh.PasswordHash
	}
}
