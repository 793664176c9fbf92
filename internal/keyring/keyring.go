// Package keyring encrypts secrets at rest (such as TOTP seeds) with
// AES-256-GCM under keys kept in a file outside the database, and supports
// rotating those keys.
//
// # Key file
//
// The key file is a text file of mode 0600 in the data directory:
//
//	# twofold keyring ...
//	3f9a01c2 <base64 of 32 random bytes> primary
//	8b0e7d44 <base64 of 32 random bytes>
//
// Each key line holds a key ID (8 lower-case hex digits, i.e. 4 bytes), the
// standard base64 encoding of a 32-byte AES-256 key and, on exactly one
// line, the word "primary". The primary key seals new data; the others only
// open data sealed before a rotation. Blank lines and lines starting with
// '#' are ignored.
//
// # Sealed format
//
//	version (1 byte, 0x01) || key ID (4 bytes) || nonce (12 random bytes) || ciphertext || tag (16 bytes)
//
// The version byte and key ID are authenticated along with the caller's
// additional data, so no byte of a sealed value can change unnoticed.
// Nonces are random: each key should seal fewer than 2^32 values, far
// beyond what a key between rotations is expected to see here.
//
// # Rotation
//
// A Keyring is safe for concurrent use. Rotate and Retire change it in
// place (under a lock) after writing the key file atomically, so a program
// holding one Keyring sees the new primary key at once. Another process
// using the same file, such as a running server while an admin command
// rotates, sees the change only when it loads the file again (restart it).
// To rotate: Rotate, re-seal every stored value (values whose KeyIDOf is not
// PrimaryID), then Retire the old key.
package keyring

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// Sizes of the sealed format.
const (
	version   = 0x01
	idLen     = 4
	nonceLen  = 12
	tagLen    = 16
	headerLen = 1 + idLen
	overhead  = headerLen + nonceLen + tagLen
	keyLen    = 32
	// maxKeys bounds the keys a file may hold, against a runaway file.
	maxKeys = 1000
)

// Errors returned by Open, for errors.Is.
var (
	// ErrUnknownKey means the sealed value names a key that is not in the
	// keyring: it was retired, or the value comes from another keyring.
	ErrUnknownKey = errors.New("sealed with a key that is not in the keyring")
	// ErrMalformed means the value is not in the sealed format: too short
	// or an unknown version.
	ErrMalformed = errors.New("malformed sealed value")
	// ErrDecrypt means authentication failed: the value was tampered with,
	// or the additional data differs from the one it was sealed with.
	ErrDecrypt = errors.New("decryption failed: value tampered with or additional data does not match")
)

// key is one AES-256-GCM key.
type key struct {
	id   [idLen]byte
	raw  []byte
	aead cipher.AEAD
}

// Keyring holds AES-256-GCM keys: one primary key that seals, and older
// keys that still open. It is safe for concurrent use.
type Keyring struct {
	rand io.Reader

	mu   sync.RWMutex
	keys []*key // keys[0] is the primary key
}

// LoadOrCreate loads the key file at path, creating it with one new random
// key (mode 0600, and its directory with mode 0700 if missing) when it does
// not exist. It refuses a file that group or others may read or write.
// rand supplies keys, key IDs and the nonces of Seal, so it must be safe
// for concurrent use; nil means crypto/rand.Reader.
func LoadOrCreate(path string, rand io.Reader) (*Keyring, error) {
	r := randOrDefault(rand)
	kr, err := load(path, r)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return kr, err
	}
	k, err := newKey(r, nil)
	if err != nil {
		return nil, fmt.Errorf("keyring: create %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keyring: create %s: %w", path, err)
	}
	if err := create(path, encode([]*key{k})); err != nil {
		if errors.Is(err, os.ErrExist) { // created by someone else meanwhile
			return load(path, r)
		}
		return nil, fmt.Errorf("keyring: create %s: %w", path, err)
	}
	return &Keyring{rand: r, keys: []*key{k}}, nil
}

func randOrDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// load reads and checks the key file. A missing file gives an error
// wrapping os.ErrNotExist.
func load(path string, r io.Reader) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keyring: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("keyring: %s has mode %#o, so users other than its owner can read or change the secret keys in it; run: chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("keyring: read %s: %w", path, err)
	}
	keys, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("keyring: %s: %w", path, err)
	}
	return &Keyring{rand: r, keys: keys}, nil
}

// parse reads a key file, primary key first.
func parse(data []byte) ([]*key, error) {
	var keys []*key
	seen := make(map[[idLen]byte]int)
	primary := -1
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 || (len(f) == 3 && f[2] != "primary") {
			return nil, fmt.Errorf("line %d: want \"<key id> <base64 key>\" with \"primary\" after it on one line", n)
		}
		id, err := parseID(f[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if prev, ok := seen[id]; ok {
			return nil, fmt.Errorf("line %d: key id %s already on line %d", n, f[0], prev)
		}
		seen[id] = n
		raw, err := base64.StdEncoding.Strict().DecodeString(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: key %s is not valid base64: %w", n, f[0], err)
		}
		if len(raw) != keyLen {
			return nil, fmt.Errorf("line %d: key %s is %d bytes, want %d", n, f[0], len(raw), keyLen)
		}
		k, err := makeKey(id, raw)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(f) == 3 {
			if primary >= 0 {
				return nil, fmt.Errorf("line %d: a second key marked primary (the first is key %s)", n, hex.EncodeToString(keys[primary].id[:]))
			}
			primary = len(keys)
		}
		keys = append(keys, k)
		if len(keys) > maxKeys {
			return nil, fmt.Errorf("more than %d keys", maxKeys)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	if primary < 0 {
		return nil, errors.New("no key marked primary: add the word \"primary\" after the key that should seal new data")
	}
	// Put the primary key first.
	p := keys[primary]
	copy(keys[1:primary+1], keys[:primary])
	keys[0] = p
	return keys, nil
}

func parseID(s string) ([idLen]byte, error) {
	var id [idLen]byte
	if len(s) != 2*idLen || strings.ToLower(s) != s {
		return id, fmt.Errorf("key id %q must be %d lower-case hex digits", s, 2*idLen)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("key id %q must be %d lower-case hex digits", s, 2*idLen)
	}
	return id, nil
}

func makeKey(id [idLen]byte, raw []byte) (*key, error) {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &key{id: id, raw: raw, aead: aead}, nil
}

// newKey makes a random key whose ID differs from those of existing.
func newKey(r io.Reader, existing []*key) (*key, error) {
	var id [idLen]byte
	for tries := 0; ; tries++ {
		if tries == 100 {
			return nil, errors.New("cannot find an unused key id")
		}
		if _, err := io.ReadFull(r, id[:]); err != nil {
			return nil, fmt.Errorf("read random key id: %w", err)
		}
		if findKey(existing, id) == nil {
			break
		}
	}
	raw := make([]byte, keyLen)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("read random key: %w", err)
	}
	return makeKey(id, raw)
}

func findKey(keys []*key, id [idLen]byte) *key {
	for _, k := range keys {
		if k.id == id {
			return k
		}
	}
	return nil
}

// encode formats a key file, keys[0] being the primary key.
func encode(keys []*key) []byte {
	var b bytes.Buffer
	b.WriteString("# twofold keyring: AES-256-GCM keys for secrets stored in the database.\n")
	b.WriteString("# Keep this file secret (mode 0600) and back it up apart from the database: without it\n")
	b.WriteString("# the sealed secrets cannot be read. The \"primary\" key seals new data; the others\n")
	b.WriteString("# still open data sealed before a rotation. Line format: <key id> <base64 key> [primary]\n")
	for i, k := range keys {
		fmt.Fprintf(&b, "%s %s", hex.EncodeToString(k.id[:]), base64.StdEncoding.EncodeToString(k.raw))
		if i == 0 {
			b.WriteString(" primary")
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// create writes a new file at path with mode 0600, failing if it exists.
func create(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeAtomic replaces the file at path with data, mode 0600: it writes a
// temporary file in the same directory, syncs it and renames it over path.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a directory entry change durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// formatID is the text form of a key ID.
func formatID(id [idLen]byte) string { return hex.EncodeToString(id[:]) }

// PrimaryID returns the ID of the key that seals new data.
func (kr *Keyring) PrimaryID() string {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return formatID(kr.keys[0].id)
}

// KeyIDs returns the IDs of all keys, the primary key first.
func (kr *Keyring) KeyIDs() []string {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	ids := make([]string, len(kr.keys))
	for i, k := range kr.keys {
		ids[i] = formatID(k.id)
	}
	return ids
}

// KeyIDOf returns the ID of the key that sealed the value, without
// checking that the value is authentic or that the key is in the keyring.
// A rotation uses it to find values not yet sealed under PrimaryID.
func (kr *Keyring) KeyIDOf(sealed []byte) (string, error) {
	id, err := keyIDOf(sealed)
	if err != nil {
		return "", fmt.Errorf("keyring: key id: %w", err)
	}
	return formatID(id), nil
}

// keyIDOf checks the length and version of a sealed value and returns its
// key ID.
func keyIDOf(sealed []byte) ([idLen]byte, error) {
	if len(sealed) < overhead {
		return [idLen]byte{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrMalformed, len(sealed), overhead)
	}
	if sealed[0] != version {
		return [idLen]byte{}, fmt.Errorf("%w: unknown version %d", ErrMalformed, sealed[0])
	}
	return [idLen]byte(sealed[1:headerLen]), nil
}

// Seal encrypts and authenticates plaintext under the primary key, binding
// it to additionalData (for example "totp:<user id>"), which Open must be
// given again. The result is in the sealed format of the package comment.
func (kr *Keyring) Seal(plaintext, additionalData []byte) ([]byte, error) {
	kr.mu.RLock()
	k := kr.keys[0]
	kr.mu.RUnlock()

	out := make([]byte, headerLen+nonceLen, overhead+len(plaintext))
	out[0] = version
	copy(out[1:headerLen], k.id[:])
	if _, err := io.ReadFull(kr.rand, out[headerLen:]); err != nil {
		return nil, fmt.Errorf("keyring: seal: read random nonce: %w", err)
	}
	nonce := out[headerLen : headerLen+nonceLen]
	return k.aead.Seal(out, nonce, plaintext, aad(out[:headerLen], additionalData)), nil
}

// Open checks and decrypts a value made by Seal, with the key it names.
// It fails with ErrMalformed, ErrUnknownKey or ErrDecrypt (for a tampered
// value or different additional data).
func (kr *Keyring) Open(sealed, additionalData []byte) ([]byte, error) {
	id, err := keyIDOf(sealed)
	if err != nil {
		return nil, fmt.Errorf("keyring: open: %w", err)
	}
	kr.mu.RLock()
	k := findKey(kr.keys, id)
	kr.mu.RUnlock()
	if k == nil {
		return nil, fmt.Errorf("keyring: open: key %s: %w (retired, or from another keyring)", formatID(id), ErrUnknownKey)
	}
	nonce := sealed[headerLen : headerLen+nonceLen]
	plain, err := k.aead.Open(nil, nonce, sealed[headerLen+nonceLen:], aad(sealed[:headerLen], additionalData))
	if err != nil {
		return nil, fmt.Errorf("keyring: open: key %s: %w", formatID(id), ErrDecrypt)
	}
	return plain, nil
}

// aad is the GCM additional data: the fixed-length header, then the
// caller's additional data.
func aad(header, additionalData []byte) []byte {
	b := make([]byte, 0, len(header)+len(additionalData))
	return append(append(b, header...), additionalData...)
}

// Rotate adds a new random key as the primary key and writes the key file
// at path atomically (mode 0600). The former keys stay, so values sealed
// under them still open. It returns the new key's ID. The keyring changes
// only if the file was written.
func (kr *Keyring) Rotate(path string, rand io.Reader) (newID string, err error) {
	return kr.addKey(path, rand, "rotate", true)
}

// Add adds a new random key that opens but does not seal yet, and writes
// the key file at path atomically (mode 0600). Instances that keep copies
// of the key file get the new key this way before any value is sealed
// under it; Promote makes it the primary key later. It returns its ID.
func (kr *Keyring) Add(path string, rand io.Reader) (newID string, err error) {
	return kr.addKey(path, rand, "add", false)
}

func (kr *Keyring) addKey(path string, rand io.Reader, op string, primary bool) (string, error) {
	var k *key
	err := kr.change(path, op, func(keys []*key) ([]*key, error) {
		if len(keys) >= maxKeys {
			return nil, fmt.Errorf("already %d keys; retire unused ones first", len(keys))
		}
		var err error
		if k, err = newKey(randOrDefault(rand), keys); err != nil {
			return nil, err
		}
		if primary {
			return append([]*key{k}, keys...), nil
		}
		return append(slices.Clone(keys), k), nil
	})
	if err != nil {
		return "", err
	}
	return formatID(k.id), nil
}

// Promote makes the key keyID, already in the keyring, the primary key and
// writes the key file at path atomically (mode 0600). The former primary
// key stays, to open what it sealed.
func (kr *Keyring) Promote(path, keyID string) error {
	id, err := parseID(keyID)
	if err != nil {
		return fmt.Errorf("keyring: promote: %w", err)
	}
	return kr.change(path, "promote", func(keys []*key) ([]*key, error) {
		k := findKey(keys, id)
		if k == nil {
			return nil, fmt.Errorf("no key %s in the keyring", keyID)
		}
		return append([]*key{k}, slices.DeleteFunc(slices.Clone(keys), func(o *key) bool { return o == k })...), nil
	})
}

// Retire removes the key keyID, which must not be the primary key, and
// writes the key file at path atomically (mode 0600). Values still sealed
// under it no longer open: re-seal them first. The keyring changes only if
// the file was written.
func (kr *Keyring) Retire(path, keyID string) error {
	id, err := parseID(keyID)
	if err != nil {
		return fmt.Errorf("keyring: retire: %w", err)
	}
	return kr.change(path, "retire", func(keys []*key) ([]*key, error) {
		if keys[0].id == id {
			return nil, fmt.Errorf("key %s is the primary key; rotate first", keyID)
		}
		if findKey(keys, id) == nil {
			return nil, fmt.Errorf("no key %s in the keyring", keyID)
		}
		return slices.DeleteFunc(slices.Clone(keys), func(k *key) bool { return k.id == id }), nil
	})
}

// change replaces the keys by edit's result, writing the key file at path
// first: the keyring changes only if the file was written.
func (kr *Keyring) change(path, op string, edit func([]*key) ([]*key, error)) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	keys, err := edit(kr.keys)
	if err != nil {
		return fmt.Errorf("keyring: %s: %w", op, err)
	}
	if err := writeAtomic(path, encode(keys)); err != nil {
		return fmt.Errorf("keyring: %s: write %s: %w", op, path, err)
	}
	kr.keys = keys
	return nil
}
