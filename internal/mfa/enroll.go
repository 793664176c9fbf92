package mfa

import (
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/twofold/twofold/otp"
)

// totpParams are what every authenticator app reads: SHA1, 6 digits, 30 s,
// and one step of clock drift either way.
var totpParams = otp.Params{}

// Enrollment is a TOTP secret waiting for the user to confirm it with a code.
type Enrollment struct {
	Secret string // base32, as typed into an app
	URI    string // otpauth:// key URI, for the QR code
}

// Status is the two-factor state of an account.
type Status struct {
	TwoFactorEnabled     bool
	BackupCodesRemaining int
	PendingSetup         bool // a QR code was shown and waits for its code

	// BackupCodeSet names the current set of backup codes, for a form
	// that replaces it to carry: see RegenerateBackupCodesOnce. It is
	// opaque: the ID of the newest unused code (0 when there is none) and
	// the user's ID, sealed, so that it tells nothing of how many codes the
	// server has made, and can be neither altered nor used by another
	// account. Each Status seals it afresh. Empty while two-factor
	// authentication is off.
	BackupCodeSet string
}

// totpAD binds a sealed TOTP secret to its user.
func totpAD(userID int64) []byte { return []byte("totp:user:" + strconv.FormatInt(userID, 10)) }

// confirmedTOTP returns the user's confirmed TOTP factor, nil if none.
func (s *Service) confirmedTOTP(ctx context.Context, userID int64) (*Factor, error) {
	fs, err := s.store.Factors(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("mfa: factors: %w", err)
	}
	return confirmedTOTPOf(fs), nil
}

// confirmedTOTPOf returns the confirmed TOTP factor among fs, or nil.
func confirmedTOTPOf(fs []Factor) *Factor {
	for i := range fs {
		if fs[i].Kind == FactorTOTP && fs[i].Confirmed() {
			return &fs[i]
		}
	}
	return nil
}

// Status returns the two-factor state of the user.
func (s *Service) Status(ctx context.Context, userID int64) (Status, error) {
	var st Status
	fs, err := s.store.Factors(ctx, userID)
	if err != nil {
		return st, fmt.Errorf("mfa: status: %w", err)
	}
	for _, f := range fs {
		if f.Kind != FactorTOTP {
			continue
		}
		if f.Confirmed() {
			st.TwoFactorEnabled = true
		} else if s.clock().Sub(f.CreatedAt) < s.pendingSetup {
			st.PendingSetup = true
		}
	}
	if st.TwoFactorEnabled {
		codes, err := s.store.UnusedBackupCodes(ctx, userID)
		if err != nil {
			return st, fmt.Errorf("mfa: status: %w", err)
		}
		st.BackupCodesRemaining = len(codes)
		newest := int64(0)
		if len(codes) > 0 {
			newest = codes[len(codes)-1].ID // in ID order
		}
		if st.BackupCodeSet, err = s.sealCodeSet(userID, newest); err != nil {
			return st, fmt.Errorf("mfa: status: %w", err)
		}
	}
	return st, nil
}

// ErrWrongPassword answers a re-authentication with the wrong password.
var ErrWrongPassword = &Error{Kind: KindForbidden, Code: "invalid_password", Message: "The password is incorrect."}

// Reauthenticate checks the signed-in user's password again before a
// sensitive change. Its failures count with those of signing in.
func (s *Service) Reauthenticate(ctx context.Context, u *User, password string, c Client) error {
	a, err := s.begin(ctx, s.passwordKey(u.Email))
	if err != nil {
		return err
	}
	ok, err := s.passwords.Verify(ctx, u.PasswordHash, password)
	if err != nil {
		return s.hashError("reauthenticate", err)
	}
	if !ok {
		s.record(ctx, u.ID, EventLoginFailed, c, confirmChangeDetail)
		return s.failed(ctx, a, u.ID, c, ErrWrongPassword)
	}
	return s.succeeded(ctx, a)
}

// BeginTOTP checks the password and creates a pending TOTP factor with a new
// 160-bit secret. Two-factor authentication is on only after ConfirmTOTP.
func (s *Service) BeginTOTP(ctx context.Context, u *User, password string, c Client) (*Enrollment, error) {
	if err := s.Reauthenticate(ctx, u, password, c); err != nil {
		return nil, err
	}
	if f, err := s.confirmedTOTP(ctx, u.ID); err != nil {
		return nil, err
	} else if f != nil {
		return nil, ErrAlreadyEnabled
	}
	secret, err := otp.GenerateSecret(s.rand, 0)
	if err != nil {
		return nil, fmt.Errorf("mfa: begin totp: %w", err)
	}
	enr, err := s.enrollment(u, secret) // before saving: a secret nobody can scan is useless
	if err != nil {
		return nil, err
	}
	sealed, err := s.cipher.Seal(secret, totpAD(u.ID))
	if err != nil {
		return nil, fmt.Errorf("mfa: begin totp: %w", err)
	}
	f := &Factor{UserID: u.ID, Kind: FactorTOTP, Secret: sealed, CreatedAt: s.clock()}
	if err := s.store.SavePendingFactor(ctx, f); err != nil {
		return nil, fmt.Errorf("mfa: begin totp: %w", err)
	}
	return enr, nil
}

func (s *Service) enrollment(u *User, secret []byte) (*Enrollment, error) {
	uri, err := otp.URI(s.issuer, u.Email, secret, totpParams)
	if err != nil {
		return nil, fmt.Errorf("mfa: key uri: %w", err)
	}
	return &Enrollment{Secret: otp.EncodeSecret(secret), URI: uri}, nil
}

// PendingTOTP returns the enrollment still waiting for its code, so a page
// can show the same QR code again; ErrNoEnrollment when there is none, and
// ErrAlreadyEnabled when the user's 2FA is on.
func (s *Service) PendingTOTP(ctx context.Context, u *User) (*Enrollment, error) {
	_, secret, err := s.pendingFactor(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	return s.enrollment(u, secret)
}

// pendingFactor returns the user's pending TOTP factor, still in time, with
// its secret, or ErrAlreadyEnabled when a TOTP factor is confirmed.
func (s *Service) pendingFactor(ctx context.Context, userID int64) (*Factor, []byte, error) {
	fs, err := s.store.Factors(ctx, userID)
	if err != nil {
		return nil, nil, fmt.Errorf("mfa: factors: %w", err)
	}
	if confirmedTOTPOf(fs) != nil {
		// A confirmation sent twice (a reloaded page): the first one
		// turned 2FA on, and its codes were shown then.
		return nil, nil, ErrAlreadyEnabled
	}
	for i := range fs {
		f := &fs[i]
		if f.Kind != FactorTOTP || f.Confirmed() || s.clock().Sub(f.CreatedAt) >= s.pendingSetup {
			continue
		}
		secret, err := s.cipher.Open(f.Secret, totpAD(userID))
		if err != nil {
			return nil, nil, fmt.Errorf("mfa: open totp secret: %w", err)
		}
		return f, secret, nil
	}
	return nil, nil, ErrNoEnrollment
}

// ConfirmTOTP turns two-factor authentication on once the user proves, with a
// code, that the app holds the secret. It returns the new backup codes,
// which are shown this once and never again, and the caller's new session
// token: every session of the user ends, as with ChangePassword. The token
// is empty when that session could not be started: the codes are shown
// still, and the user signs in again, now with a code.
func (s *Service) ConfirmTOTP(ctx context.Context, u *User, code string, c Client) (codes []string, token string, err error) {
	f, secret, err := s.pendingFactor(ctx, u.ID)
	if err != nil {
		return nil, "", err
	}
	a, err := s.begin(ctx, userKey(u.ID, MethodTOTP))
	if err != nil {
		return nil, "", err
	}
	step, ok := otp.Verify(secret, code, s.clock(), 0, totpParams)
	if !ok {
		s.record(ctx, u.ID, EventSecondFactorFailed, c, setupDetail)
		return nil, "", s.failed(ctx, a, u.ID, c, ErrInvalidSetupCode)
	}
	if err := s.succeeded(ctx, a); err != nil {
		return nil, "", err
	}
	codes, stored, err := s.newBackupCodes(u.ID)
	if err != nil {
		return nil, "", err
	}
	e := s.changeEvent(ctx, u.ID, EventTwoFactorEnabled, c, "authenticator app")
	if err := s.store.ConfirmFactor(ctx, f.ID, e.At, step, stored, e); err != nil {
		if errors.Is(err, ErrNotFound) {
			// Gone meanwhile: confirmed by a request sent twice (a
			// double click), or replaced by a new setup.
			if on, err := s.confirmedTOTP(ctx, u.ID); err == nil && on != nil {
				return nil, "", ErrAlreadyEnabled
			}
			return nil, "", ErrNoEnrollment
		}
		return nil, "", fmt.Errorf("mfa: confirm totp: %w", err)
	}
	s.eventStored(ctx, e)
	return codes, s.restartSessions(ctx, u, c, "confirm totp"), nil
}

// checkTOTP checks a code against the user's confirmed factor, refusing
// the step last used and any earlier one. It returns the factor and step to
// claim; the claim itself is part of completing the sign-in. A code refused
// only because its step is spent is reported as used.
func (s *Service) checkTOTP(userID int64, factors []Factor, code string) (factorID, step int64, ok, used bool, err error) {
	f := confirmedTOTPOf(factors)
	if f == nil {
		return 0, 0, false, false, nil
	}
	secret, err := s.cipher.Open(f.Secret, totpAD(userID))
	if err != nil {
		return 0, 0, false, false, fmt.Errorf("mfa: open totp secret: %w", err)
	}
	now := s.clock()
	step, ok = otp.Verify(secret, code, now, f.LastStep, totpParams)
	if !ok && f.LastStep > 0 {
		_, used = otp.Verify(secret, code, now, 0, totpParams)
	}
	return f.ID, step, ok, used, nil
}

// RegenerateBackupCodes replaces the user's backup codes ("Show Codes"):
// the old set stops working.
func (s *Service) RegenerateBackupCodes(ctx context.Context, u *User, password string, c Client) ([]string, error) {
	return s.regenerateBackupCodes(ctx, u, password, c, func(stored []BackupCode, e *Event) (bool, error) {
		return true, s.store.ReplaceBackupCodes(ctx, u.ID, stored, e)
	})
}

// RegenerateBackupCodesOnce replaces the set of backup codes that set
// names (Status.BackupCodeSet, read when the form asking for it was shown)
// as RegenerateBackupCodes does. A form sent twice (a reloaded page, a
// double click) replaces that set once: when the set was replaced since,
// by the form's first sending or otherwise, no new set is made, and the
// answer is ErrBackupCodesReplaced; codes of the set used since change
// nothing. The password is checked first, in either case. A set that
// does not open as one of the user's (missing, altered, or sealed for
// another account) is ErrBackupCodesFormStale, before the password is
// checked.
func (s *Service) RegenerateBackupCodesOnce(ctx context.Context, u *User, password, set string, c Client) ([]string, error) {
	newest, ok := s.openCodeSet(u.ID, set)
	if !ok {
		return nil, ErrBackupCodesFormStale
	}
	return s.regenerateBackupCodes(ctx, u, password, c, func(stored []BackupCode, e *Event) (bool, error) {
		return s.store.ReplaceBackupCodesIf(ctx, u.ID, newest, stored, e)
	})
}

// A sealed code set is a random nonce, then the newest ID as 8 bytes
// sealed by codeSets (AES-256-GCM under a key of its own, derived from the
// code key) with the user's ID as additional data, in unpadded base64url.
// The form carries the ID without showing it, and the tag makes an altered
// set, or one sealed for another user, fail to open.
const codeSetNonce = 12

func codeSetAD(userID int64) []byte {
	return []byte("backup-code-set:user:" + strconv.FormatInt(userID, 10))
}

// sealCodeSet seals newest, the ID of the user's newest unused backup code
// (0 for none), for a form to carry.
func (s *Service) sealCodeSet(userID, newest int64) (string, error) {
	buf := make([]byte, codeSetNonce, codeSetNonce+8+s.codeSets.Overhead())
	if _, err := io.ReadFull(s.rand, buf); err != nil {
		return "", fmt.Errorf("seal backup code set: %w", err)
	}
	buf = s.codeSets.Seal(buf, buf, binary.BigEndian.AppendUint64(nil, uint64(newest)), codeSetAD(userID))
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// openCodeSet returns the newest ID that set, sealed by sealCodeSet for
// the user, holds. It reports false for anything else.
func (s *Service) openCodeSet(userID int64, set string) (int64, bool) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(set)
	if err != nil || len(raw) != codeSetNonce+8+s.codeSets.Overhead() {
		return 0, false
	}
	plain, err := s.codeSets.Open(nil, raw[:codeSetNonce], raw[codeSetNonce:], codeSetAD(userID))
	if err != nil {
		return 0, false
	}
	newest := int64(binary.BigEndian.Uint64(plain))
	return newest, newest >= 0
}

// regenerateBackupCodes checks the password and makes a new set of backup
// codes, which replace stores with its event. replace reports false when it
// stored nothing: then the answer is ErrBackupCodesReplaced.
func (s *Service) regenerateBackupCodes(ctx context.Context, u *User, password string, c Client, replace func(stored []BackupCode, e *Event) (bool, error)) ([]string, error) {
	if err := s.requireEnabled(ctx, u, password, c); err != nil {
		return nil, err
	}
	codes, stored, err := s.newBackupCodes(u.ID)
	if err != nil {
		return nil, err
	}
	e := s.changeEvent(ctx, u.ID, EventBackupCodesRegenerated, c, "")
	ok, err := replace(stored, e)
	if err != nil {
		return nil, fmt.Errorf("mfa: regenerate backup codes: %w", err)
	}
	if !ok {
		return nil, ErrBackupCodesReplaced
	}
	s.eventStored(ctx, e)
	return codes, nil
}

// DisableTwoFactor removes every factor and backup code of the user. Every
// session of the user ends, and the caller's new session token is
// returned, as with ConfirmTOTP.
func (s *Service) DisableTwoFactor(ctx context.Context, u *User, password string, c Client) (token string, err error) {
	if err := s.requireEnabled(ctx, u, password, c); err != nil {
		return "", err
	}
	e := s.changeEvent(ctx, u.ID, EventTwoFactorDisabled, c, "")
	if err := s.store.DeleteFactors(ctx, u.ID, e); err != nil {
		return "", fmt.Errorf("mfa: disable: %w", err)
	}
	s.eventStored(ctx, e)
	return s.restartSessions(ctx, u, c, "disable"), nil
}

func (s *Service) requireEnabled(ctx context.Context, u *User, password string, c Client) error {
	if err := s.Reauthenticate(ctx, u, password, c); err != nil {
		return err
	}
	f, err := s.confirmedTOTP(ctx, u.ID)
	if err != nil {
		return err
	}
	if f == nil {
		return ErrNotEnabled
	}
	return nil
}

// ResetTwoFactor is what support does for a user who lost the phone: every
// factor, backup code and session of the account is removed, so the next
// sign-in needs only the password, and the backoff of wrong codes ends.
func (s *Service) ResetTwoFactor(ctx context.Context, email string, c Client) error {
	u, err := s.supportedUser(ctx, email)
	if err != nil {
		return err
	}
	e := s.changeEvent(ctx, u.ID, EventTwoFactorReset, c, "by an administrator")
	if err := s.store.DeleteFactors(ctx, u.ID, e); err != nil {
		return fmt.Errorf("mfa: reset: %w", err)
	}
	s.eventStored(ctx, e)
	// The factors are gone: the rest follows, whatever becomes of ctx.
	ctx, cancel := followUp(ctx)
	defer cancel()
	var sessionsErr error
	if err := s.store.DeleteUserSessions(ctx, u.ID); err != nil {
		sessionsErr = fmt.Errorf("mfa: reset: two-factor authentication is off, but the sessions of the account did not end: %w", err)
	}
	// The backoff of wrong codes ends with the factor they were tried
	// against, or the user could not confirm a new app for up to an hour.
	// The 24-hour ceiling stays, as after SetPassword.
	for _, m := range []Method{MethodTOTP, MethodBackupCode} {
		if err := s.store.ResetThrottle(ctx, userKey(u.ID, m), time.Time{}); err != nil {
			s.log.ErrorContext(ctx, "reset: the backoff of wrong codes stays", "user_id", u.ID, "method", string(m), "err", err)
		}
	}
	return sessionsErr
}

// Backup codes: BackupCodeCount codes of 12 characters from a 32-symbol
// alphabet (Crockford's base32, lower case): 60 bits each.
const (
	BackupCodeCount  = 10
	backupCodeLength = 12
	backupAlphabet   = "0123456789abcdefghjkmnpqrstvwxyz"
)

// supportedUser finds the account a support command names by email.
func (s *Service) supportedUser(ctx context.Context, email string) (*User, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return nil, err
	}
	u, err := s.store.UserByEmail(ctx, email)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(KindNotFound, "user_not_found", "No account has the email address %s.", email)
	} else if err != nil {
		return nil, fmt.Errorf("mfa: find user: %w", err)
	}
	return u, nil
}

// newBackupCodes returns fresh codes for display (grouped "xxxx-xxxx-xxxx")
// and their keyed hashes for the store.
func (s *Service) newBackupCodes(userID int64) ([]string, []BackupCode, error) {
	codes := make([]string, BackupCodeCount)
	stored := make([]BackupCode, BackupCodeCount)
	buf := make([]byte, backupCodeLength)
	for i := range codes {
		if _, err := io.ReadFull(s.rand, buf); err != nil {
			return nil, nil, fmt.Errorf("mfa: backup codes: %w", err)
		}
		for j, b := range buf {
			buf[j] = backupAlphabet[b&31] // 256 is a multiple of 32: no bias
		}
		raw := string(buf)
		codes[i] = raw[0:4] + "-" + raw[4:8] + "-" + raw[8:12]
		stored[i] = BackupCode{UserID: userID, Hash: s.backupHash(userID, raw)}
	}
	return codes, stored, nil
}

func (s *Service) backupHash(userID int64, normalized string) []byte {
	return s.keyedHash("backup-code", strconv.FormatInt(userID, 10), normalized)
}

// normalizeBackupCode lower-cases a typed code, drops spaces and hyphens and
// reads the letters people confuse with digits as those digits.
func normalizeBackupCode(code string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.ToLower(code) {
		switch r {
		case ' ', '-', '\t':
			continue
		case 'o':
			r = '0'
		case 'i', 'l':
			r = '1'
		}
		if !strings.ContainsRune(backupAlphabet, r) {
			return "", false
		}
		b.WriteRune(r)
	}
	return b.String(), b.Len() == backupCodeLength
}

// checkBackupCode finds code among the user's unused backup codes and
// returns its ID; using it is part of completing the sign-in.
func (s *Service) checkBackupCode(ctx context.Context, userID int64, code string) (int64, bool, error) {
	normalized, ok := normalizeBackupCode(code)
	if !ok {
		return 0, false, nil
	}
	want := s.backupHash(userID, normalized)
	codes, err := s.store.UnusedBackupCodes(ctx, userID)
	if err != nil {
		return 0, false, fmt.Errorf("mfa: backup codes: %w", err)
	}
	match := int64(0)
	for _, bc := range codes { // every hash compared, in constant time
		if hmac.Equal(bc.Hash, want) {
			match = bc.ID
		}
	}
	return match, match != 0, nil
}

// CheckSecrets opens the oldest stored TOTP secret, so that a server
// started with key files other than those that sealed its database (an
// instance given another's files, a wrong backup) stops at start-up with a
// clear error instead of failing every sign-in with an authenticator app.
// A database without factors passes.
func (s *Service) CheckSecrets(ctx context.Context) error {
	fs, err := s.store.FactorsAfter(ctx, 0, 1)
	if err != nil {
		return fmt.Errorf("mfa: check secrets: %w", err)
	}
	if len(fs) == 0 {
		return nil
	}
	if _, err := s.cipher.Open(fs[0].Secret, totpAD(fs[0].UserID)); err != nil {
		return fmt.Errorf("the key file cannot open the TOTP secrets stored in the database (factor %d): %w", fs[0].ID, err)
	}
	return nil
}

// ResealSecrets re-encrypts every TOTP secret under the Cipher's current
// key, for key rotation. progress, if not nil, is called after each batch.
// Secrets still sealed under an old key keep working throughout.
func (s *Service) ResealSecrets(ctx context.Context, progress func(done int)) (int, error) {
	const batch = 500
	done := 0
	for after := int64(0); ; {
		fs, err := s.store.FactorsAfter(ctx, after, batch)
		if err != nil {
			return done, fmt.Errorf("mfa: reseal: %w", err)
		}
		for _, f := range fs {
			after = f.ID
			ad := totpAD(f.UserID)
			plain, err := s.cipher.Open(f.Secret, ad)
			if err != nil {
				return done, fmt.Errorf("mfa: reseal factor %d: %w", f.ID, err)
			}
			sealed, err := s.cipher.Seal(plain, ad)
			if err != nil {
				return done, fmt.Errorf("mfa: reseal factor %d: %w", f.ID, err)
			}
			// A factor deleted or re-enrolled meanwhile needs nothing.
			if _, err := s.store.ReplaceFactorSecret(ctx, f.ID, f.Secret, sealed); err != nil {
				return done, fmt.Errorf("mfa: reseal factor %d: %w", f.ID, err)
			}
			done++
		}
		if progress != nil && len(fs) > 0 {
			progress(done)
		}
		if len(fs) < batch {
			return done, nil
		}
	}
}
