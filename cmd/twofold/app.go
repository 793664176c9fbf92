package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/password"
	"github.com/twofold/twofold/internal/postgres"
	"github.com/twofold/twofold/internal/sqlite"
)

// Files of the data directory.
const (
	databaseFile = "twofold.db"
	keyringFile  = "secret.keys" // AES-256-GCM keys sealing TOTP secrets
	codeKeyFile  = "code.key"    // HMAC key of backup-code hashes; never rotated
)

// database is a Store with the upkeep every backend offers.
type database interface {
	mfa.Store
	SchemaVersion(ctx context.Context) (int, error)
	Close() error
}

// app is what every command works on: the store and the Service over it.
type app struct {
	db       database
	location databaseLocation
	keys     *liveKeyring
	service  *mfa.Service
	users    *password.Hasher
}

// databaseLocation is where cfg's database lives: a postgres:// URL, or
// sqlite:PATH (the file in the data directory unless --database names one).
type databaseLocation struct {
	postgresURL string
	sqlitePath  string
}

func locateDatabase(cfg Config) (databaseLocation, error) {
	switch d := cfg.Database; {
	case d == "":
		return databaseLocation{sqlitePath: filepath.Join(cfg.Data, databaseFile)}, nil
	case isPostgresURL(d):
		return databaseLocation{postgresURL: d}, nil
	case strings.HasPrefix(d, "sqlite:") && len(d) > len("sqlite:"):
		return databaseLocation{sqlitePath: strings.TrimPrefix(d, "sqlite:")}, nil
	default:
		return databaseLocation{}, usageErrorf("--database %q: want postgres://USER@HOST/DB or sqlite:PATH (empty: %s)",
			redactURL(d), filepath.Join(cfg.Data, databaseFile))
	}
}

// isPostgresURL reports whether s is a PostgreSQL URL rather than a path.
func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// hidePassword hides the password of a URL, leaving other text as it is.
func hidePassword(s string) string {
	if strings.Contains(s, "://") {
		return redactURL(s)
	}
	return s
}

// String names the database without its password, for messages.
func (l databaseLocation) String() string {
	if l.postgresURL != "" {
		return redactURL(l.postgresURL)
	}
	return l.sqlitePath
}

// redactURL hides the password of a URL; text that is no URL is hidden whole
// past its scheme, as it may be a password mistyped.
func redactURL(s string) string {
	u, err := url.Parse(s)
	// An '@' that url.Parse did not take for the end of the credentials,
	// as after a password with an unescaped '/', may follow a password.
	if err == nil && u.Scheme != "" && (u.User != nil || !strings.Contains(s, "@")) {
		return u.Redacted()
	}
	if scheme, _, ok := strings.Cut(s, "://"); ok {
		return scheme + "://..."
	}
	if i := strings.Index(s, ":"); i > 0 {
		return s[:i+1] + "..."
	}
	return "..."
}

// openDatabase opens the database at loc and reports whether it held data
// before: accounts in PostgreSQL, the file for SQLite. It creates the
// database on first use, unless mustHaveData: then a database without data
// is an error, as it would be for a command that works on an installation's
// data (a --database forgotten would otherwise make an empty one).
func openDatabase(ctx context.Context, loc databaseLocation, mustHaveData bool) (db database, hadData bool, err error) {
	noData := fmt.Errorf("%s holds no twofold data: name the installation's database with --database (TWOFOLD_DATABASE)", loc)
	if loc.postgresURL != "" {
		pg, err := postgres.Open(ctx, loc.postgresURL)
		if err != nil {
			return nil, false, err
		}
		n, err := pg.CountUsers(ctx)
		if err == nil && n == 0 && mustHaveData {
			err = noData
		}
		if err != nil {
			pg.Close()
			return nil, false, err
		}
		return pg, n > 0, nil
	}
	_, err = os.Stat(loc.sqlitePath)
	hadData = !errors.Is(err, fs.ErrNotExist)
	if !hadData && mustHaveData {
		return nil, false, noData
	}
	var created os.FileInfo
	if !hadData {
		// SQLite gives the -wal and -shm files the mode of the database
		// file: it is 0600 from the start, not from after the migration.
		if created, err = createPrivateFile(loc.sqlitePath); err != nil {
			return nil, false, fmt.Errorf("database %s: %w", loc, err)
		}
	}
	lite, err := sqlite.Open(ctx, loc.sqlitePath)
	if err != nil {
		// An empty file left behind would pass for a database with data;
		// one that another process has begun to fill is left alone.
		if fi, serr := os.Stat(loc.sqlitePath); created != nil && serr == nil && os.SameFile(fi, created) && fi.Size() == 0 {
			os.Remove(loc.sqlitePath)
		}
		return nil, false, err
	}
	return lite, hadData, nil
}

// createPrivateFile creates the empty file path with mode 0600 and returns
// its FileInfo; it fails if path exists.
func createPrivateFile(path string) (os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	return fi, errors.Join(err, f.Close())
}

// openApp opens (creating on first use) the data directory and the database
// of cfg.
func openApp(ctx context.Context, cfg Config, log *slog.Logger) (*app, error) {
	loc, err := locateDatabase(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	// The database holds emails, password hashes and IPs, the key files what
	// opens its secrets: for our eyes only.
	if err := os.Chmod(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	db, hadData, err := openDatabase(ctx, loc, cfg.requireData)
	if err != nil {
		return nil, err
	}
	a, err := openAppOn(db, hadData, loc, cfg, log)
	if err != nil {
		db.Close()
		return nil, err
	}
	return a, nil
}

// openAppOn loads the key files of cfg's data directory and builds the
// Service over db.
func openAppOn(db database, hadData bool, loc databaseLocation, cfg Config, log *slog.Logger) (*app, error) {
	if hadData {
		if err := requireKeyFiles(cfg.Data, loc); err != nil {
			return nil, err
		}
	}
	keys, err := openLiveKeyring(filepath.Join(cfg.Data, keyringFile))
	if err != nil {
		return nil, err
	}
	codeKey, err := loadOrCreateCodeKey(filepath.Join(cfg.Data, codeKeyFile))
	if err != nil {
		return nil, err
	}
	hasher := password.NewHasher(password.Options{})
	svc, err := mfa.NewService(mfa.Config{
		Store:           db,
		Passwords:       hasher,
		Policy:          password.Policy{Blocklist: password.LoadBlocklist()},
		Cipher:          keys,
		CodeKey:         codeKey,
		Issuer:          cfg.Issuer,
		Logger:          log,
		SessionIdle:     cfg.SessionIdle,
		SessionAbsolute: cfg.SessionMax,
		Notifier:        cfg.notifier,
	})
	if err != nil {
		return nil, err
	}
	return &app{db: db, location: loc, keys: keys, service: svc, users: hasher}, nil
}

func (a *app) Close() error { return a.db.Close() }

// requireKeyFiles refuses to make new key files for a database that holds
// data: new keys would silently make every TOTP secret or backup code in it
// useless. Lost key files must come back from a backup, or from another
// instance sharing the database.
func requireKeyFiles(dir string, loc databaseLocation) error {
	for _, name := range []string{keyringFile, codeKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s is missing for the existing database %s: restore it from a backup or copy it from another instance; without it the stored secrets cannot be used",
				filepath.Join(dir, name), loc)
		}
	}
	return nil
}

// loadOrCreateCodeKey reads the 32-byte hex key at path, creating it (mode
// 0600) on first use. A key readable by others is refused.
func loadOrCreateCodeKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
		_, werr := f.WriteString(hex.EncodeToString(key) + "\n")
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
		return key, nil
	} else if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by other users: run chmod 600 %s", path, path)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("%s: want at least 32 bytes as hex", path)
	}
	return key, nil
}
