package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/mfa/mfatest"
	"github.com/twofold/twofold/internal/sqlite"
	"github.com/twofold/twofold/internal/transfer"
)

// seededSQLite returns a SQLite database in a temporary directory, seeded
// in every table, with a user deleted besides so that every sequence but
// the events' is above the highest ID left, and its export.
func seededSQLite(t *testing.T) (*sqlite.DB, *transfer.Data) {
	t.Helper()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "twofold.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	want := mfatest.SeedEveryTable(t, db)

	// The Store deletes no user: delete one by hand, on a connection of
	// its own.
	carol := &mfa.User{Email: "carol@example.com", PasswordHash: "h", CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, carol); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	raw, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer raw.Close()
	if _, err := raw.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, carol.ID); err != nil {
		t.Fatalf("delete carol: %v", err)
	}
	want.Sequences.Users = carol.ID

	got, err := db.Export(ctx)
	if err != nil {
		t.Fatalf("sqlite Export: %v", err)
	}
	mfatest.CompareData(t, got, want)
	if t.Failed() {
		t.FailNow()
	}
	return db, got
}

// importTest imports d into db and returns the progress reported.
func importTest(t *testing.T, db *DB, d *transfer.Data) ([]transfer.Count, error) {
	t.Helper()
	var progress []transfer.Count
	err := db.Import(t.Context(), d, func(table string, rows int) {
		progress = append(progress, transfer.Count{Table: table, Rows: rows})
	})
	return progress, err
}

func exportTest(t *testing.T, db *DB) *transfer.Data {
	t.Helper()
	d, err := db.Export(t.Context())
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	return d
}

// TestTransferFromSQLite moves a SQLite installation to PostgreSQL: every
// row arrives, field for field; the Store answers on PostgreSQL as it did
// on SQLite; and no ID SQLite ever handed out is handed out again.
func TestTransferFromSQLite(t *testing.T) {
	ctx := t.Context()
	sq, src := seededSQLite(t)
	pg := openTest(t, newDatabase(t))

	progress, err := importTest(t, pg, src)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if want := src.Counts(); !slices.Equal(progress, want) {
		t.Errorf("progress: got %v, want %v", progress, want)
	}
	mfatest.CompareData(t, exportTest(t, pg), src)

	t.Run("SameAnswers", func(t *testing.T) {
		stores := []struct {
			name string
			s    mfa.Store
		}{{"sqlite", sq}, {"postgres", pg}}
		// same calls f on both stores and reports different answers. It
		// returns SQLite's answer.
		same := func(what string, f func(s mfa.Store) (any, error)) any {
			t.Helper()
			var answers [2]any
			for i, st := range stores {
				v, err := f(st.s)
				if err != nil {
					t.Fatalf("%s on %s: %v", what, st.name, err)
				}
				answers[i] = v
			}
			if !reflect.DeepEqual(answers[0], answers[1]) {
				t.Errorf("%s:\nsqlite   %+v\npostgres %+v", what, answers[0], answers[1])
			}
			return answers[0]
		}
		var unused, factors, events int
		for _, u := range src.Users {
			same("UserByEmail "+u.Email, func(s mfa.Store) (any, error) { return s.UserByEmail(ctx, u.Email) })
			same(fmt.Sprint("UserByID ", u.ID), func(s mfa.Store) (any, error) { return s.UserByID(ctx, u.ID) })
			v := same(fmt.Sprint("UnusedBackupCodes ", u.ID), func(s mfa.Store) (any, error) { return s.UnusedBackupCodes(ctx, u.ID) })
			unused += len(v.([]mfa.BackupCode))
			v = same(fmt.Sprint("Factors ", u.ID), func(s mfa.Store) (any, error) { return s.Factors(ctx, u.ID) })
			factors += len(v.([]mfa.Factor))
			v = same(fmt.Sprint("Events ", u.ID), func(s mfa.Store) (any, error) { return s.Events(ctx, u.ID, 100) })
			events += len(v.([]mfa.Event))
		}
		same("CountUsers", func(s mfa.Store) (any, error) { return s.CountUsers(ctx) })
		for _, sess := range src.Sessions {
			same(fmt.Sprintf("Session %x", sess.ID[:4]), func(s mfa.Store) (any, error) { return s.Session(ctx, sess.ID) })
		}
		// Each key's state counted from the epoch and from each of its
		// failures: windows of every size.
		var consecutive int
		for _, th := range src.Throttles {
			sinces := []time.Time{time.Unix(0, 0)}
			for _, f := range src.ThrottleFailures {
				if f.Key == th.Key {
					sinces = append(sinces, f.At)
				}
			}
			for _, since := range sinces {
				v := same(fmt.Sprintf("ThrottleState %v since %v", th.Key, since), func(s mfa.Store) (any, error) {
					return s.ThrottleState(ctx, th.Key, since)
				})
				consecutive = max(consecutive, v.(mfa.ThrottleState).Consecutive)
			}
		}

		// The answers compared must not be empty ones.
		var wantUnused int
		for _, c := range src.BackupCodes {
			if c.UsedAt.IsZero() {
				wantUnused++
			}
		}
		if unused != wantUnused || factors != len(src.Factors) || events != len(src.Events) || consecutive == 0 {
			t.Errorf("answers: got %d unused codes, %d factors, %d events, consecutive failures up to %d; want %d, %d, %d, more than 0",
				unused, factors, events, consecutive, wantUnused, len(src.Factors), len(src.Events))
		}
	})

	t.Run("NewIDs", func(t *testing.T) {
		seq := src.Sequences
		u := &mfa.User{Email: "new@example.com", PasswordHash: "h", CreatedAt: time.Now()}
		if err := pg.CreateUser(ctx, u); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		f := &mfa.Factor{UserID: u.ID, Kind: mfa.FactorTOTP, Secret: []byte("s"), CreatedAt: time.Now()}
		if err := pg.SavePendingFactor(ctx, f); err != nil {
			t.Fatalf("SavePendingFactor: %v", err)
		}
		codes := []mfa.BackupCode{{Hash: []byte("c")}}
		if err := pg.ReplaceBackupCodes(ctx, u.ID, codes, nil); err != nil {
			t.Fatalf("ReplaceBackupCodes: %v", err)
		}
		e := &mfa.Event{UserID: u.ID, Type: mfa.EventAccountCreated, At: time.Now()}
		if err := pg.AddEvent(ctx, e); err != nil {
			t.Fatalf("AddEvent: %v", err)
		}
		for _, c := range []struct {
			table   string
			got, at int64
		}{
			{"user", u.ID, seq.Users},
			{"factor", f.ID, seq.Factors},
			{"backup code", codes[0].ID, seq.BackupCodes},
			{"event", e.ID, seq.Events},
		} {
			if c.got != c.at+1 {
				t.Errorf("new %s: got ID %d, want %d, the first above the %d SQLite handed out", c.table, c.got, c.at+1, c.at)
			}
		}
	})
}

// TestImportRefusesNonEmpty imports into databases that hold a row: the
// error names the tables that do, and nothing is written, sequences
// included.
func TestImportRefusesNonEmpty(t *testing.T) {
	_, src := seededSQLite(t)
	for _, c := range []struct {
		name   string
		fill   func(t *testing.T, db *DB)
		tables []string
	}{
		{"User", func(t *testing.T, db *DB) {
			u := &mfa.User{Email: "someone@example.com", PasswordHash: "h", CreatedAt: time.Now()}
			if err := db.CreateUser(t.Context(), u); err != nil {
				t.Fatalf("CreateUser: %v", err)
			}
		}, []string{"users"}},
		{"Throttle", func(t *testing.T, db *DB) {
			key := mfa.ThrottleKey{Subject: "email:00", Method: mfa.MethodPassword}
			if _, _, err := db.RecordFailure(t.Context(), key, time.Now(), time.Now().Add(-time.Hour), func(mfa.ThrottleState) bool { return true }, nil); err != nil {
				t.Fatalf("RecordFailure: %v", err)
			}
		}, []string{"throttles", "throttle_failures"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := openTest(t, newDatabase(t))
			c.fill(t, db)
			before := exportTest(t, db)

			progress, err := importTest(t, db, src)
			if err == nil {
				t.Fatal("Import into a database with rows: got nil, want an error")
			}
			for _, table := range transferTables() {
				if named, want := strings.Contains(err.Error(), " "+table), slices.Contains(c.tables, table); named != want {
					t.Errorf("error %q: names table %s: got %v, want %v", err, table, named, want)
				}
			}
			if len(progress) != 0 {
				t.Errorf("progress: got %v, want none", progress)
			}
			mfatest.CompareData(t, exportTest(t, db), before)
		})
	}
}

// TestImportAllOrNothing fails an import at its last table: nothing of it
// remains, sequences included, and the import then succeeds.
func TestImportAllOrNothing(t *testing.T) {
	_, src := seededSQLite(t)
	db := openTest(t, newDatabase(t))
	empty := exportTest(t, db)

	bad := *src
	bad.Notices = slices.Clone(src.Notices)
	bad.Notices[len(bad.Notices)-1].EventID = 1 << 40 // no such event
	progress, err := importTest(t, db, &bad)
	if err == nil || !strings.Contains(err.Error(), "notices") {
		t.Fatalf("Import of a notice of no event: got %v, want an error about notices", err)
	}
	// Every table before the notices was copied, then rolled back.
	if want := src.Counts()[:len(src.Counts())-1]; !slices.Equal(progress, want) {
		t.Errorf("progress: got %v, want %v", progress, want)
	}
	mfatest.CompareData(t, exportTest(t, db), empty)

	if _, err := importTest(t, db, src); err != nil {
		t.Fatalf("Import after a failed one: %v", err)
	}
	mfatest.CompareData(t, exportTest(t, db), src)
}

// TestImportKeepsHigherSequences imports into a database emptied after
// use: its sequences, above the source's, are not set back.
func TestImportKeepsHigherSequences(t *testing.T) {
	_, src := seededSQLite(t)
	db := openTest(t, newDatabase(t))
	ctx := t.Context()
	var last *mfa.User
	for i := range int(src.Sequences.Users) + 5 {
		last = &mfa.User{Email: fmt.Sprintf("u%d@example.com", i), PasswordHash: "h", CreatedAt: time.Now()}
		if err := db.CreateUser(ctx, last); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
	}
	if _, err := db.pool.Exec(ctx, `TRUNCATE `+strings.Join(transferTables(), ", ")); err != nil {
		t.Fatalf("TRUNCATE: %v", err)
	}
	if _, err := importTest(t, db, src); err != nil {
		t.Fatalf("Import: %v", err)
	}
	got := exportTest(t, db)
	if got.Sequences.Users != last.ID {
		t.Errorf("users' sequence: got %d, want %d, the last ID handed out before the import", got.Sequences.Users, last.ID)
	}
	u := &mfa.User{Email: "new@example.com", PasswordHash: "h", CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if u.ID != last.ID+1 {
		t.Errorf("new user: got ID %d, want %d", u.ID, last.ID+1)
	}
}

func TestExportEmpty(t *testing.T) {
	got := exportTest(t, openTest(t, newDatabase(t)))
	mfatest.CompareData(t, got, &transfer.Data{})
}

// TestExportWhileWriting exports while users and their events are being
// created: each export must be one moment of the database, in which every
// event's user exists and the sequences are at least the IDs exported.
func TestExportWhileWriting(t *testing.T) {
	db := openTest(t, newDatabase(t))
	ctx, cancel := context.WithCancel(t.Context())
	defer mfatest.CreateUsersUntil(ctx, db)()
	defer cancel()

	for range 50 {
		d := exportTest(t, db)
		users := make(map[int64]bool)
		for _, u := range d.Users {
			users[u.ID] = true
			if u.ID > d.Sequences.Users {
				t.Fatalf("user %d above the users' sequence %d", u.ID, d.Sequences.Users)
			}
		}
		for _, e := range d.Events {
			if !users[e.UserID] {
				t.Fatalf("event %d of user %d, who is not among the %d users exported", e.ID, e.UserID, len(d.Users))
			}
		}
		if !slices.IsSortedFunc(d.Events, func(a, b mfa.Event) int { return int(a.ID - b.ID) }) {
			t.Fatal("events not in ID order")
		}
	}
}
