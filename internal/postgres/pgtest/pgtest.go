// Package pgtest gives tests a PostgreSQL database of their own on the
// server named by TWOFOLD_TEST_POSTGRES.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/postgres/pgadmin"
)

// ServerEnv names the variable that holds the URL of the PostgreSQL server
// the tests run on. They create databases of their own there, and drop them.
const ServerEnv = "TWOFOLD_TEST_POSTGRES"

// Server returns the URL of the test server. Without one, the test skips,
// except in CI (CI=true), where it fails: CI must test PostgreSQL.
func Server(t testing.TB) string {
	t.Helper()
	u := os.Getenv(ServerEnv)
	if u == "" {
		msg := ServerEnv + " is not set: set it to a PostgreSQL server's URL, such as " +
			"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable, to run the PostgreSQL tests"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return u
}

// NewDatabase creates an empty database with a random name on the test
// server, dropped at the end of the test, and returns its connection string.
func NewDatabase(t testing.TB) string {
	t.Helper()
	server := Server(t)
	var r [8]byte
	rand.Read(r[:])
	name := "twofold_test_" + hex.EncodeToString(r[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, err := pgadmin.Create(ctx, server, name)
	if err != nil {
		t.Fatalf("%s: %v", ServerEnv, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pgadmin.Drop(ctx, server, name); err != nil {
			t.Errorf("%s: %v", ServerEnv, err)
		}
	})
	return url
}
