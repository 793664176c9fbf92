package mfatest_test

import (
	"testing"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/mfa/mfatest"
)

func TestMemStore(t *testing.T) {
	mfatest.TestStore(t, func(*testing.T) mfa.Store { return mfatest.NewMemStore() })
}
