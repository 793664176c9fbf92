package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/password"
	"github.com/twofold/twofold/internal/sqlite"
)

// Files of the data directory.
const (
	databaseFile = "twofold.db"
	keyringFile  = "secret.keys" // AES-256-GCM keys sealing TOTP secrets
	codeKeyFile  = "code.key"    // HMAC key of backup-code hashes; never rotated
)

// app is what every command works on: the store and the Service over it.
type app struct {
	db      *sqlite.DB
	keys    *liveKeyring
	service *mfa.Service
	users   *password.Hasher
}

// openApp opens (creating on first use) the data directory of cfg.
func openApp(ctx context.Context, cfg Config, log *slog.Logger) (*app, error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	// The database holds emails, password hashes and IPs: for our eyes only.
	if err := os.Chmod(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := requireKeysWithDatabase(cfg.Data); err != nil {
		return nil, err
	}
	keys, err := openLiveKeyring(filepath.Join(cfg.Data, keyringFile))
	if err != nil {
		return nil, err
	}
	codeKey, err := loadOrCreateCodeKey(filepath.Join(cfg.Data, codeKeyFile))
	if err != nil {
		return nil, err
	}
	db, err := sqlite.Open(ctx, filepath.Join(cfg.Data, databaseFile))
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
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &app{db: db, keys: keys, service: svc, users: hasher}, nil
}

func (a *app) Close() error { return a.db.Close() }

// requireKeysWithDatabase refuses to make new key files beside an existing
// database: new keys would silently make every TOTP secret or backup code
// in it useless. Lost key files must come back from a backup.
func requireKeysWithDatabase(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, databaseFile)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	for _, name := range []string{keyringFile, codeKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s is missing beside the existing database %s: restore it from a backup; without it the stored secrets cannot be used",
				filepath.Join(dir, name), filepath.Join(dir, databaseFile))
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
