// Package otp implements one-time passwords for two-factor login: HOTP
// (RFC 4226) and TOTP (RFC 6238), with SHA1, SHA256 or SHA512, 6 to 8
// digits and any whole-second period, plus secrets and key URIs
// ("otpauth://", Google's Key Uri Format) for enrolling authenticator apps.
//
// The package has no storage and no clock: the time is always an argument,
// and the caller keeps each user's secret and last used time step. There is
// no package-level state, so every function is safe for concurrent use.
// [Params] configures the algorithm, digits, period and verification
// window; its zero value means the usual defaults (SHA1, 6 digits, 30 s,
// steps T-1 to T+1).
//
// Enrolment:
//
//	secret, err := otp.GenerateSecret(nil, 0) // 20 random bytes
//	uri, err := otp.URI("Example Co", "alice@example.com", secret, otp.Params{})
//	// Show uri as a QR code, and otp.FormatSecretGroups(otp.EncodeSecret(secret))
//	// for manual entry; store secret and lastUsedStep = 0.
//
// Login:
//
//	step, ok := otp.Verify(secret, typedCode, time.Now(), lastUsedStep, otp.Params{})
//	if ok {
//		// Store step as the new lastUsedStep (atomically, e.g. with a
//		// conditional UPDATE ... WHERE last_used_step < step), then log in.
//	}
//
// [Verify] accepts a code of any step in the window strictly after
// lastUsedStep, so a code is never accepted twice, nor is a code older than
// one already used. It compares in constant time, computes every step of
// the window, and allocates nothing. Rate-limit failed attempts: a 6 digit
// code with a window of three steps is guessed with probability 3/10^6 per
// try.
package otp
