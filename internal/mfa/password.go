package mfa

import (
	"context"
	"fmt"
)

// ChangePassword replaces the signed-in user's password, after checking
// the current one (its failures count with those of signing in) and the
// policy. Every session of the user ends, the current one included: a
// password change is what a user does who fears someone else is signed in.
// The caller's client gets a new fully signed-in session, whose token is
// returned.
//
// The hash is swapped only over the one just checked, so of two changes at
// once one fails with ErrPasswordChanged. Should the new session fail to
// start after the swap, the user is signed out everywhere and signs in
// again with the new password: the safe side of a half-done change.
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
	swapped, err := s.store.ReplacePasswordHash(ctx, u.ID, u.PasswordHash, phc)
	if err != nil {
		return "", fmt.Errorf("mfa: change password: %w", err)
	}
	if !swapped {
		return "", ErrPasswordChanged
	}
	u.PasswordHash = phc
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
		return "", fmt.Errorf("mfa: change password: new session: %w", err)
	}
	return token, nil
}
