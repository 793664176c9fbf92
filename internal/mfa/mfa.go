// Package mfa holds twofold's domain: users, their second factors, sessions,
// security events, and the Service that enforces every rule of signing in
// with a password and a second factor. Storage, HTTP and outside services are
// reached only through the interfaces declared here.
package mfa

import (
	"time"
)

// User is a person who signs in with an email address and a password.
type User struct {
	ID           int64
	Email        string // normalised: trimmed, lower case
	PasswordHash string // argon2id PHC string
	CreatedAt    time.Time
}

// FactorKind names a kind of second factor.
type FactorKind string

// FactorTOTP is an authenticator app (RFC 6238).
const FactorTOTP FactorKind = "totp"

// Factor is a second factor of a user. A TOTP factor is pending until the
// user proves, with a code, that the app holds the secret.
type Factor struct {
	ID          int64
	UserID      int64
	Kind        FactorKind
	Secret      []byte    // sealed by the Cipher, never in clear
	LastStep    int64     // the newest TOTP step accepted; codes of this step or earlier are refused
	CreatedAt   time.Time // when enrollment began
	ConfirmedAt time.Time // zero while pending
}

// Confirmed reports whether the user has proven the factor with a code.
func (f *Factor) Confirmed() bool { return !f.ConfirmedAt.IsZero() }

// BackupCode is one single-use code, stored only as a keyed hash.
type BackupCode struct {
	ID     int64
	UserID int64
	Hash   []byte
	UsedAt time.Time // zero while unused
}

// Level is how far a session has authenticated.
type Level int

const (
	// LevelPassword: the password was right and a second factor is still due.
	// Such a session reaches nothing protected.
	LevelPassword Level = 1
	// LevelFull: fully signed in.
	LevelFull Level = 2
)

// Session is a server-side session. Its ID is derived from the token the
// client holds by a hash (see sessionID), so the database never holds a
// usable token.
type Session struct {
	ID         []byte
	UserID     int64
	Level      Level
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time // absolute end, whatever the activity
	IP         string
}

// A SessionView is a session with its user and the user's factors, pending
// ones included, as one read finds them.
type SessionView struct {
	Session Session
	User    User
	Factors []Factor
}

// A SignInView is what the password step of a sign-in reads, as one read
// finds it: the state of its throttle key, and the user with the email
// address, if there is one, with the user's factors, pending ones included.
type SignInView struct {
	Throttle ThrottleState
	User     *User // nil when no user has the address
	Factors  []Factor
}

// Method is a way to pass the second step of a sign-in.
type Method string

const (
	MethodPassword   Method = "password" // the first step, throttled like the others
	MethodTOTP       Method = "totp"
	MethodBackupCode Method = "backup_code"
	// MethodSignup is no way to sign in: it is the throttle of public
	// sign-ups that name an address already taken (see SignUp).
	MethodSignup Method = "signup"
)

// EventType names a security event.
type EventType string

const (
	EventAccountCreated         EventType = "account_created"
	EventLoginSucceeded         EventType = "login_succeeded"
	EventLoginFailed            EventType = "login_failed"
	EventSecondFactorFailed     EventType = "second_factor_failed"
	EventBackupCodeUsed         EventType = "backup_code_used"
	EventThrottled              EventType = "throttled"
	EventLogout                 EventType = "logout"
	EventTwoFactorEnabled       EventType = "two_factor_enabled"
	EventTwoFactorDisabled      EventType = "two_factor_disabled"
	EventTwoFactorReset         EventType = "two_factor_reset"
	EventBackupCodesRegenerated EventType = "backup_codes_regenerated"
	EventPasswordChanged        EventType = "password_changed"
	EventPasswordReset          EventType = "password_reset"
)

// Event is a security event of a user's account, shown to that user.
type Event struct {
	ID     int64
	UserID int64
	Type   EventType
	At     time.Time // UTC
	IP     string
	Detail string // never a secret, code, token or full phone number

	// Notify, when an event is stored, queues a notice of it to the user.
	// It is not read back.
	Notify bool
}

// ThrottleKey names what a throttle counts: a subject ("user:42", or a keyed
// hash of an email address for the password step, so that an unknown address
// is throttled exactly like a known one) and a method.
type ThrottleKey struct {
	Subject string
	Method  Method
}

// ThrottleState is what the store knows of a throttle key.
type ThrottleState struct {
	Consecutive  int       // failures since the last success
	LastFailure  time.Time // zero when there was none
	WindowCount  int       // failures since the start of the window asked for
	WindowOldest time.Time // the oldest failure in that window
}

// WithFailure returns the state once one more failure, at time at, is
// counted; failures before since fall outside the window.
func (st ThrottleState) WithFailure(at, since time.Time) ThrottleState {
	st.Consecutive++
	st.LastFailure = at
	if !at.Before(since) {
		st.WindowCount++
		if st.WindowOldest.IsZero() || at.Before(st.WindowOldest) {
			st.WindowOldest = at
		}
	}
	return st
}

// Client describes where a request came from, for events and throttling.
type Client struct {
	IP string
}
