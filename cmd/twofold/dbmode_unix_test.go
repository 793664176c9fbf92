//go:build unix

package main

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestDatabaseOutsideDataIsPrivate: a database named by --database outside
// the data directory (mode 0700) holds emails and password hashes, and so do
// its -wal and -shm files, which SQLite creates with the database file's mode
// at that moment: all are 0600 from the start, whatever the umask.
func TestDatabaseOutsideDataIsPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	elsewhere := t.TempDir()
	if err := os.Chmod(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	checkModes := func(path string, mustExist ...string) {
		t.Helper()
		for _, suffix := range []string{"", "-wal", "-shm"} {
			st, err := os.Stat(path + suffix)
			if os.IsNotExist(err) && !slices.Contains(mustExist, suffix) {
				continue
			}
			if err != nil {
				t.Errorf("%s%s: %v", path, suffix, err)
			} else if st.Mode().Perm() != 0o600 {
				t.Errorf("%s%s: mode %v, want 0600", path, suffix, st.Mode().Perm())
			}
		}
	}

	migrated := filepath.Join(elsewhere, "migrated.db")
	if out, err := runCmd(t, "", "migrate", "--data", t.TempDir(), "--database", "sqlite:"+migrated); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	checkModes(migrated, "")

	// While serving, the -wal and -shm files are there.
	served := filepath.Join(elsewhere, "served.db")
	startServer(t, t.TempDir(), "--database", "sqlite:"+served)
	checkModes(served, "", "-wal", "-shm")
}
