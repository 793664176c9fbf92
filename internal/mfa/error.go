package mfa

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an Error; the HTTP layer maps each Kind to one status.
type Kind int

const (
	KindInternal        Kind = iota // a fault of the server, never of the user
	KindInvalid                     // malformed or unacceptable input
	KindUnauthenticated             // no valid session, or wrong credentials
	KindForbidden                   // signed in, but not allowed
	KindNotFound
	KindConflict
	KindRateLimited // throttled; RetryAfter says for how long
	KindUnavailable // overloaded; try again shortly
)

// Error is the one error type of the domain. Code is a stable snake_case
// identifier for API clients; Message is safe to show to the user.
type Error struct {
	Kind       Kind
	Code       string
	Message    string
	RetryAfter time.Duration
	Err        error // the cause, for logs; never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind and code.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrNotFound is returned by a Store when a row does not exist.
var ErrNotFound = &Error{Kind: KindNotFound, Code: "not_found", Message: "not found"}

// ErrConflict is returned by a Store when a unique value is taken.
var ErrConflict = &Error{Kind: KindConflict, Code: "conflict", Message: "already exists"}

// The errors the Service answers most often. They are values, so callers and
// tests can compare with errors.Is.
var (
	ErrInvalidCredentials = &Error{Kind: KindUnauthenticated, Code: "invalid_credentials", Message: "The email address or password is incorrect."}
	ErrInvalidCode        = &Error{Kind: KindUnauthenticated, Code: "invalid_code", Message: "That code is not valid. Check the code and try again."}
	// ErrCodeUsed answers a code that was right once but is spent: a TOTP
	// code of a step already used (say, the one just typed to turn 2FA on).
	// For API clients it is an invalid_code like any other.
	ErrCodeUsed          = &Error{Kind: KindUnauthenticated, Code: "invalid_code", Message: "That code has been used already. Wait for the next code in your app, then enter it."}
	ErrUnauthenticated   = &Error{Kind: KindUnauthenticated, Code: "unauthenticated", Message: "Please sign in."}
	ErrLoginExpired      = &Error{Kind: KindUnauthenticated, Code: "login_expired", Message: "Your sign-in has expired. Please sign in again."}
	ErrSignupClosed      = &Error{Kind: KindForbidden, Code: "signup_disabled", Message: "Sign-up is not open on this server."}
	ErrEmailTaken        = &Error{Kind: KindConflict, Code: "email_taken", Message: "An account with this email address already exists."}
	ErrNotEnabled        = &Error{Kind: KindConflict, Code: "two_factor_not_enabled", Message: "Two-factor authentication is not enabled."}
	ErrAlreadyEnabled    = &Error{Kind: KindConflict, Code: "two_factor_already_enabled", Message: "Two-factor authentication is already enabled."}
	ErrPasswordChanged   = &Error{Kind: KindConflict, Code: "password_changed_meanwhile", Message: "Your password was changed at the same moment from elsewhere. Sign in again."}
	ErrNoEnrollment      = &Error{Kind: KindConflict, Code: "no_pending_enrollment", Message: "Start the setup again: no authenticator app is waiting for confirmation."}
	ErrMethodUnavailable = &Error{Kind: KindInvalid, Code: "method_unavailable", Message: "That sign-in method is not available for this account."}

	// ErrBackupCodesReplaced answers a request for new backup codes that
	// names a set replaced since: by the same form sent before, or by new
	// codes made elsewhere (another tab, the API).
	ErrBackupCodesReplaced = &Error{Kind: KindConflict, Code: "backup_codes_replaced",
		Message: "Your backup codes were replaced after this form was shown: it was sent twice, or new codes were made elsewhere meanwhile. Only the newest set works. If you do not have it, make a new one."}

	// ErrBackupCodesFormStale answers a request for new backup codes whose
	// form names no set of the user's: a form from before forms named their
	// set, one altered, or one shown to another account.
	ErrBackupCodesFormStale = &Error{Kind: KindInvalid, Code: "form_out_of_date",
		Message: "This form is out of date. To make new backup codes, confirm your password again."}

	// ErrInvalidSetupCode answers a wrong code at the confirmation of a new
	// authenticator app. The user is signed in, and stays so: it is a value
	// not accepted, not a failure to authenticate, which would tell an API
	// client that the session is gone. API clients see the code of
	// ErrInvalidCode.
	ErrInvalidSetupCode = &Error{Kind: KindInvalid, Code: "invalid_code",
		Message: "That code does not match the new key. Check that your app holds the key just shown and that your phone sets its time automatically, then enter the code your app shows now."}
)

// ErrorKind returns the Kind of err, KindInternal for any error that is not an *Error.
func ErrorKind(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// rateLimited returns a throttling error that says when to come back.
func rateLimited(retry time.Duration) *Error {
	if retry < time.Second {
		retry = time.Second
	}
	return &Error{Kind: KindRateLimited, Code: "rate_limited",
		Message:    fmt.Sprintf("Too many attempts. Try again in %s.", humanDuration(retry)),
		RetryAfter: retry}
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d seconds", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		m := int((d + time.Minute - 1) / time.Minute)
		if m == 1 {
			return "1 minute"
		}
		return fmt.Sprintf("%d minutes", m)
	default:
		h := int((d + time.Hour - 1) / time.Hour)
		if h == 1 {
			return "1 hour"
		}
		return fmt.Sprintf("%d hours", h)
	}
}
