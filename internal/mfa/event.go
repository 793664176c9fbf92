package mfa

import "strings"

// Summary says in words what the event means to the account's owner: on
// the security page, and as the subject of a notice.
func (e Event) Summary() string {
	switch e.Type {
	case EventAccountCreated:
		return "Account created"
	case EventLoginSucceeded:
		switch Method(e.Detail) {
		case MethodTOTP:
			return "Signed in with password and authenticator app"
		case MethodBackupCode:
			return "Signed in with password and a backup code"
		case MethodPassword:
			return "Signed in with password only"
		}
		return "Signed in"
	case EventLoginFailed:
		if e.Detail == confirmChangeDetail {
			return "Wrong password when confirming a change"
		}
		return "Failed sign-in: wrong password"
	case EventSecondFactorFailed:
		if e.Detail == setupDetail {
			return "Wrong code while setting up the authenticator app"
		}
		if m, ok := strings.CutSuffix(e.Detail, usedDetailSuffix); ok {
			return "Failed sign-in: " + codeName(m) + " already used"
		}
		if e.Detail != "" {
			return "Failed sign-in: wrong " + codeName(e.Detail)
		}
		return "Failed sign-in: wrong code"
	case EventBackupCodeUsed:
		return "A backup code was used (it no longer works)"
	case EventThrottled:
		if e.Detail != "" {
			return "Too many failed attempts: " + throttleDetail(e.Detail)
		}
		return "Too many failed attempts: sign-in paused"
	case EventLogout:
		return "Signed out"
	case EventTwoFactorEnabled:
		return "Two-factor authentication turned on"
	case EventTwoFactorDisabled:
		return "Two-factor authentication turned off"
	case EventTwoFactorReset:
		return "Two-factor authentication reset by an administrator"
	case EventBackupCodesRegenerated:
		return "New backup codes created; the old ones no longer work"
	case EventPasswordChanged:
		return "Password changed; every other session was signed out"
	case EventPasswordReset:
		return "Password set by an administrator; every session was signed out"
	}
	if e.Detail != "" {
		return string(e.Type) + ": " + e.Detail
	}
	return string(e.Type)
}

// throttleDetail rewords the Service's "totp locked for 30 seconds".
func throttleDetail(detail string) string {
	m, rest, ok := strings.Cut(detail, " locked for ")
	if !ok {
		return detail
	}
	return methodName(m) + " paused for " + rest
}

// Details of failure events, which Summary rewords.
const (
	wrongPasswordDetail = "wrong password"
	confirmChangeDetail = "wrong password to confirm a change"
	setupDetail         = "setup"
	usedDetailSuffix    = " already used" // after the method
)

// codeName names the code of a Method, given as a string, for people.
func codeName(m string) string {
	if Method(m) == MethodBackupCode {
		return methodName(m) // names a code already
	}
	return methodName(m) + " code"
}

// methodName names a Method, given as a string, for people.
func methodName(m string) string {
	switch Method(m) {
	case MethodTOTP:
		return "authenticator app"
	case MethodBackupCode:
		return "backup code"
	case MethodPassword:
		return "password"
	}
	return m
}
