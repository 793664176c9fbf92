package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/twofold/twofold/internal/keyring"
)

// liveKeyring is the key file as it is now: it reloads the file when it has
// changed, so a running server follows a "twofold key rotate" made by
// another process, sealing under the new key and opening with it.
type liveKeyring struct {
	path string

	mu      sync.Mutex
	kr      *keyring.Keyring
	modTime time.Time
	size    int64
}

func openLiveKeyring(path string) (*liveKeyring, error) {
	lk := &liveKeyring{path: path}
	if err := lk.reload(); err != nil {
		return nil, err
	}
	return lk, nil
}

// reload reads the key file again if its modification time or size changed.
func (lk *liveKeyring) reload() error {
	st, err := os.Stat(lk.path)
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if err != nil && (lk.kr != nil || !errors.Is(err, os.ErrNotExist)) {
		// A key file gone while serving is never replaced by a new one.
		return fmt.Errorf("key file: %w", err)
	}
	if lk.kr != nil && st != nil && st.ModTime().Equal(lk.modTime) && st.Size() == lk.size {
		return nil
	}
	kr, err := keyring.LoadOrCreate(lk.path, rand.Reader)
	if err != nil {
		return err
	}
	if st, err = os.Stat(lk.path); err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	lk.kr, lk.modTime, lk.size = kr, st.ModTime(), st.Size()
	return nil
}

func (lk *liveKeyring) current() *keyring.Keyring {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.kr
}

// Seal seals under the newest primary key: sealing is rare (an enrollment),
// so it checks the file first.
func (lk *liveKeyring) Seal(plaintext, ad []byte) ([]byte, error) {
	if err := lk.reload(); err != nil {
		return nil, err
	}
	return lk.current().Seal(plaintext, ad)
}

// Open opens with the key the value names, reloading the file once if that
// key is new to this process.
func (lk *liveKeyring) Open(sealed, ad []byte) ([]byte, error) {
	plain, err := lk.current().Open(sealed, ad)
	if errors.Is(err, keyring.ErrUnknownKey) {
		if rerr := lk.reload(); rerr != nil {
			return nil, rerr
		}
		return lk.current().Open(sealed, ad)
	}
	return plain, err
}
