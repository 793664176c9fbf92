package mfatest_test

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/mfa/mfatest"
	"github.com/twofold/twofold/otp"
)

func TestMemStore(t *testing.T) {
	mfatest.TestStore(t, func(*testing.T) mfa.Store { return mfatest.NewMemStore() })
}

// TestFreshAfter uses a secret whose codes of two consecutive steps are
// equal, found by search, beside one whose codes differ.
func TestFreshAfter(t *testing.T) {
	used := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	for _, tt := range []struct {
		hexSecret string
		want      time.Duration
	}{
		{"f013561f10410441b3f18e894645372559978e0a", time.Minute},
		{"3132333435363738393031323334353637383930", 30 * time.Second},
	} {
		secret, err := hex.DecodeString(tt.hexSecret)
		if err != nil {
			t.Fatal(err)
		}
		fresh := mfatest.FreshAfter(secret, used)
		if got := fresh.Sub(used); got != tt.want {
			t.Errorf("secret %s: fresh %v after use, want %v", tt.hexSecret, got, tt.want)
		}
		// What the server does: accept the code used, then the code at
		// fresh, but not a code between them.
		code := func(at time.Time) string {
			c, err := otp.TOTP(secret, at, otp.Params{})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		claimed, ok := otp.Verify(secret, code(used), used, 0, otp.Params{})
		if !ok {
			t.Fatalf("secret %s: the code used is refused", tt.hexSecret)
		}
		if _, ok := otp.Verify(secret, code(fresh), fresh, claimed, otp.Params{}); !ok {
			t.Errorf("secret %s: the code at FreshAfter is refused", tt.hexSecret)
		}
		for at := used.Add(30 * time.Second); at.Before(fresh); at = at.Add(30 * time.Second) {
			if _, ok := otp.Verify(secret, code(at), at, claimed, otp.Params{}); ok {
				t.Errorf("secret %s: the code %v after use is accepted, FreshAfter is later than needed", tt.hexSecret, at.Sub(used))
			}
		}
	}
}
