package sqlite

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/mfa/mfatest"
	"github.com/twofold/twofold/internal/transfer"
)

// TestExport seeds every table through the Store and checks that Export
// gives back every row, field for field, and sequences that count the
// deleted rows too.
func TestExport(t *testing.T) {
	ctx := t.Context()
	db := openTest(t)
	want := mfatest.SeedEveryTable(t, db)

	// A user deleted by hand (the Store deletes none): the users' sequence
	// is then above every user ID left.
	carol := &mfa.User{Email: "carol@example.com", PasswordHash: "h", CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, carol); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	err := db.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, carol.ID)
		return err
	})
	if err != nil {
		t.Fatalf("delete carol: %v", err)
	}
	want.Sequences.Users = carol.ID

	got, err := db.Export(ctx)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	mfatest.CompareData(t, got, want)
}

func TestExportEmpty(t *testing.T) {
	got, err := openTest(t).Export(t.Context())
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	for _, c := range got.Counts() {
		if c.Rows != 0 {
			t.Errorf("%s: got %d rows, want 0", c.Table, c.Rows)
		}
	}
	if got.Sequences != (transfer.Sequences{}) {
		t.Errorf("sequences: got %+v, want zero", got.Sequences)
	}
}

// TestExportWhileWriting exports while users and their events are being
// created: each export must be one moment of the database, in which every
// event's user exists and the users' sequence is the newest user.
func TestExportWhileWriting(t *testing.T) {
	db := openTest(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer mfatest.CreateUsersUntil(ctx, db)()
	defer cancel()

	for range 50 {
		d, err := db.Export(t.Context())
		if err != nil {
			t.Fatalf("Export: %v", err)
		}
		checkSnapshot(t, d)
	}
}

// checkSnapshot reports an export that no single moment of a database
// without deleted users can have produced.
func checkSnapshot(t *testing.T, d *transfer.Data) {
	t.Helper()
	users := make(map[int64]bool)
	var maxUser int64
	for _, u := range d.Users {
		users[u.ID] = true
		maxUser = max(maxUser, u.ID)
	}
	for _, e := range d.Events {
		if !users[e.UserID] {
			t.Fatalf("event %d of user %d, who is not among the %d users exported", e.ID, e.UserID, len(d.Users))
		}
	}
	if d.Sequences.Users != maxUser {
		t.Fatalf("users' sequence %d, newest user exported %d", d.Sequences.Users, maxUser)
	}
	if n := len(d.Events); n > 0 && d.Sequences.Events != d.Events[n-1].ID {
		t.Fatalf("events' sequence %d, newest event exported %d", d.Sequences.Events, d.Events[n-1].ID)
	}
}
