package mfatest

import (
	"testing"
	"time"

	"github.com/twofold/twofold/otp"
)

// FreshAfter returns the time from which the code of the then-current TOTP
// step of secret is accepted, once the code of used's step was.
//
// It is 30 s after used, or 60 s when the next step's code is the same as
// the one used (about once in a million secrets): the server claims the
// highest step of its window whose code matches, so accepting that code
// spent the next step too. A test that sends "the next code" without this
// fails that rarely.
func FreshAfter(secret []byte, used time.Time) time.Time {
	next := used.Add(30 * time.Second)
	a, errA := otp.TOTP(secret, used, otp.Params{})
	b, errB := otp.TOTP(secret, next, otp.Params{})
	if errA == nil && errB == nil && a == b {
		return used.Add(time.Minute)
	}
	return next
}

// WrongCode returns a well-formed code that no step within two of at's
// accepts: a literal such as "000000" is the right code of some secrets.
func WrongCode(t testing.TB, secret []byte, at time.Time) string {
	t.Helper()
	near := map[string]bool{}
	for d := -2; d <= 2; d++ {
		c, err := otp.TOTP(secret, at.Add(time.Duration(d)*30*time.Second), otp.Params{})
		if err != nil {
			t.Fatal(err)
		}
		near[c] = true
	}
	for _, c := range []string{"000000", "111111", "222222", "333333", "444444", "555555"} {
		if !near[c] {
			return c
		}
	}
	panic("unreachable: five steps have at most five codes")
}
