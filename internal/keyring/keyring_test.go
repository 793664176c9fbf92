package keyring_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/twofold/twofold/internal/keyring"
)

// newRing creates a keyring in a new temporary directory.
func newRing(t *testing.T) (*keyring.Keyring, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "keys")
	kr, err := keyring.LoadOrCreate(path, nil)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	return kr, path
}

func TestRoundTrip(t *testing.T) {
	kr, _ := newRing(t)
	tests := []struct {
		name      string
		plaintext []byte
		ad        []byte
	}{
		{"totp secret", []byte("JBSWY3DPEHPK3PXP"), []byte("totp:42")},
		{"empty plaintext", []byte{}, []byte("totp:42")},
		{"nil additional data", []byte("secret"), nil},
		{"binary", bytes.Repeat([]byte{0, 255, 7}, 1000), []byte("blob:1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := kr.Seal(tt.plaintext, tt.ad)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if got, want := len(sealed), 1+4+12+len(tt.plaintext)+16; got != want {
				t.Errorf("len(sealed) = %d, want %d", got, want)
			}
			if len(tt.plaintext) > 4 && bytes.Contains(sealed, tt.plaintext) {
				t.Errorf("sealed value contains the plaintext")
			}
			got, err := kr.Open(sealed, tt.ad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("Open = %q, want %q", got, tt.plaintext)
			}
		})
	}
}

func TestAdditionalDataMismatch(t *testing.T) {
	kr, _ := newRing(t)
	sealed, err := kr.Seal([]byte("JBSWY3DPEHPK3PXP"), []byte("totp:1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range []string{"totp:2", "totp:10", "totp:", "", "TOTP:1", "totp:1 "} {
		if _, err := kr.Open(sealed, []byte(ad)); !errors.Is(err, keyring.ErrDecrypt) {
			t.Errorf("Open with additional data %q: got %v, want ErrDecrypt", ad, err)
		}
	}
}

func TestTamperAnyBit(t *testing.T) {
	kr, _ := newRing(t)
	ad := []byte("totp:7")
	sealed, err := kr.Seal([]byte("JBSWY3DPEHPK3PXP"), ad)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		for bit := range 8 {
			c := bytes.Clone(sealed)
			c[i] ^= 1 << bit
			if got, err := kr.Open(c, ad); err == nil {
				t.Errorf("Open with byte %d bit %d flipped = %q, nil; want an error", i, bit, got)
			}
		}
	}
	// Truncated and extended values fail too.
	for _, c := range [][]byte{sealed[:len(sealed)-1], append(bytes.Clone(sealed), 0), sealed[:20], nil} {
		if _, err := kr.Open(c, ad); err == nil {
			t.Errorf("Open(%d bytes): got nil error, want one", len(c))
		}
	}
}

func TestOpenErrors(t *testing.T) {
	kr, _ := newRing(t)
	other, _ := newRing(t)
	sealed, err := kr.Seal([]byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	badVersion := bytes.Clone(sealed)
	badVersion[0] = 2
	fromOther, err := other.Seal([]byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		sealed []byte
		want   error
	}{
		{"empty", nil, keyring.ErrMalformed},
		{"too short", sealed[:32], keyring.ErrMalformed},
		{"unknown version", badVersion, keyring.ErrMalformed},
		{"other keyring", fromOther, keyring.ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := kr.Open(tt.sealed, nil); !errors.Is(err, tt.want) {
				t.Errorf("Open: got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNoncesDiffer(t *testing.T) {
	kr, _ := newRing(t)
	a, err := kr.Seal([]byte("same"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := kr.Seal([]byte("same"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[5:17], b[5:17]) {
		t.Errorf("nonces of two seals are equal (%x), want different", a[5:17])
	}
	if bytes.Equal(a, b) {
		t.Errorf("two seals of the same plaintext are equal, want different")
	}
}

func TestSealRandFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	// 4 bytes of key id and 32 of key, then nothing for the nonce.
	kr, err := keyring.LoadOrCreate(path, bytes.NewReader(make([]byte, 36)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Seal([]byte("x"), nil); err == nil {
		t.Errorf("Seal with exhausted rand: got nil error, want one")
	}
}

func TestCreateFileModes(t *testing.T) {
	kr, path := newRing(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %#o, want 0600", got)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("created directory mode = %#o, want 0700", got)
	}
	if got := kr.KeyIDs(); len(got) != 1 || got[0] != kr.PrimaryID() {
		t.Errorf("KeyIDs = %v, want [%s]", got, kr.PrimaryID())
	}

	// Loading again gives the same key.
	sealed, err := kr.Seal([]byte("kept"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := keyring.LoadOrCreate(path, nil)
	if err != nil {
		t.Fatalf("LoadOrCreate existing: %v", err)
	}
	if again.PrimaryID() != kr.PrimaryID() {
		t.Errorf("reloaded PrimaryID = %s, want %s", again.PrimaryID(), kr.PrimaryID())
	}
	if got, err := again.Open(sealed, []byte("ad")); err != nil || string(got) != "kept" {
		t.Errorf("reloaded Open = %q, %v; want \"kept\", nil", got, err)
	}
}

func TestRefuseLoosePermissions(t *testing.T) {
	_, path := newRing(t)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o602, 0o620} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := keyring.LoadOrCreate(path, nil)
		if err == nil {
			t.Errorf("LoadOrCreate of a %#o file: got nil error, want a refusal", mode)
			continue
		}
		if !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("LoadOrCreate of a %#o file: error %q, want it to tell to run chmod 600 %s", mode, err, path)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.LoadOrCreate(path, nil); err != nil {
		t.Errorf("LoadOrCreate of a 0400 file: got %v, want nil", err)
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.LoadOrCreate(dir, nil); err == nil {
		t.Errorf("LoadOrCreate(directory): got nil error, want one")
	}
}

func TestRotateAndRetire(t *testing.T) {
	kr, path := newRing(t)
	oldID := kr.PrimaryID()
	ad := []byte("totp:5")
	oldSealed, err := kr.Seal([]byte("old secret"), ad)
	if err != nil {
		t.Fatal(err)
	}

	newID, err := kr.Rotate(path, nil)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if newID == oldID {
		t.Fatalf("Rotate returned the old id %s", newID)
	}
	if got := kr.PrimaryID(); got != newID {
		t.Errorf("PrimaryID after Rotate = %s, want %s", got, newID)
	}
	if got := kr.KeyIDs(); len(got) != 2 || got[0] != newID || got[1] != oldID {
		t.Errorf("KeyIDs after Rotate = %v, want [%s %s]", got, newID, oldID)
	}
	if got, err := kr.Open(oldSealed, ad); err != nil || string(got) != "old secret" {
		t.Errorf("Open(old value) after Rotate = %q, %v; want \"old secret\", nil", got, err)
	}
	newSealed, err := kr.Seal([]byte("new secret"), ad)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		sealed []byte
		want   string
	}{{oldSealed, oldID}, {newSealed, newID}} {
		if got, err := kr.KeyIDOf(tt.sealed); err != nil || got != tt.want {
			t.Errorf("KeyIDOf = %q, %v; want %q, nil", got, err, tt.want)
		}
	}
	if _, err := kr.KeyIDOf([]byte{1, 2}); !errors.Is(err, keyring.ErrMalformed) {
		t.Errorf("KeyIDOf(short) error = %v, want ErrMalformed", err)
	}

	// The file was replaced atomically: mode 0600, no temporary files left,
	// and a fresh load sees both keys.
	assertMode(t, path, 0o600)
	assertOnlyFile(t, path)
	loaded, err := keyring.LoadOrCreate(path, nil)
	if err != nil {
		t.Fatalf("LoadOrCreate after Rotate: %v", err)
	}
	if got := loaded.PrimaryID(); got != newID {
		t.Errorf("reloaded PrimaryID = %s, want %s", got, newID)
	}
	if _, err := loaded.Open(oldSealed, ad); err != nil {
		t.Errorf("reloaded Open(old value): %v", err)
	}

	// The primary key cannot be retired; unknown and invalid ids are errors.
	if err := kr.Retire(path, newID); err == nil {
		t.Errorf("Retire(primary): got nil error, want one")
	}
	if err := kr.Retire(path, "00000000"); err == nil && oldID != "00000000" {
		t.Errorf("Retire(unknown id): got nil error, want one")
	}
	if err := kr.Retire(path, "not-an-id"); err == nil {
		t.Errorf("Retire(invalid id): got nil error, want one")
	}

	if err := kr.Retire(path, oldID); err != nil {
		t.Fatalf("Retire(%s): %v", oldID, err)
	}
	_, err = kr.Open(oldSealed, ad)
	if !errors.Is(err, keyring.ErrUnknownKey) {
		t.Errorf("Open(old value) after Retire: got %v, want ErrUnknownKey", err)
	}
	if err != nil && !strings.Contains(err.Error(), oldID) {
		t.Errorf("Open(old value) after Retire: error %q, want it to name key %s", err, oldID)
	}
	if got, err := kr.Open(newSealed, ad); err != nil || string(got) != "new secret" {
		t.Errorf("Open(new value) after Retire = %q, %v; want \"new secret\", nil", got, err)
	}
	assertMode(t, path, 0o600)
	assertOnlyFile(t, path)
	loaded, err = keyring.LoadOrCreate(path, nil)
	if err != nil {
		t.Fatalf("LoadOrCreate after Retire: %v", err)
	}
	if got := loaded.KeyIDs(); len(got) != 1 || got[0] != newID {
		t.Errorf("reloaded KeyIDs after Retire = %v, want [%s]", got, newID)
	}
}

func TestRotateWriteFailureKeepsKeyring(t *testing.T) {
	kr, _ := newRing(t)
	before := kr.PrimaryID()
	bad := filepath.Join(t.TempDir(), "missing-dir", "keys")
	if _, err := kr.Rotate(bad, nil); err == nil {
		t.Fatalf("Rotate to an unwritable path: got nil error, want one")
	}
	if got := kr.PrimaryID(); got != before {
		t.Errorf("PrimaryID after failed Rotate = %s, want %s", got, before)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %#o, want %#o", path, got, want)
	}
}

func assertOnlyFile(t *testing.T, path string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != filepath.Base(path) {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only %s", names, filepath.Base(path))
	}
}

func TestMalformedFile(t *testing.T) {
	const (
		k1 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" // 32 bytes
		k2 = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=" // 32 bytes
	)
	tests := []struct {
		name    string
		content string
		wantErr string // substring; "" means the file loads
	}{
		{"valid", "# comment\n\n0a0b0c0d " + k1 + " primary\n01020304 " + k2 + "\n", ""},
		{"primary not first", "01020304 " + k2 + "\n0a0b0c0d " + k1 + " primary\n", ""},
		{"crlf line ends", "0a0b0c0d " + k1 + " primary\r\n", ""},
		{"empty", "", "no keys"},
		{"comments only", "# nothing\n", "no keys"},
		{"no primary", "0a0b0c0d " + k1 + "\n", "no key marked primary"},
		{"two primaries", "0a0b0c0d " + k1 + " primary\n01020304 " + k2 + " primary\n", "line 2: a second key marked primary"},
		{"one field", "0a0b0c0d\n", "line 1: want"},
		{"four fields", "0a0b0c0d " + k1 + " primary extra\n", "line 1: want"},
		{"bad marker", "0a0b0c0d " + k1 + " current\n", "line 1: want"},
		{"short id", "0a0b0c " + k1 + " primary\n", "line 1: key id \"0a0b0c\" must be 8 lower-case hex digits"},
		{"upper-case id", "0A0B0C0D " + k1 + " primary\n", "must be 8 lower-case hex digits"},
		{"non-hex id", "0a0b0c0g " + k1 + " primary\n", "must be 8 lower-case hex digits"},
		{"duplicate id", "0a0b0c0d " + k1 + " primary\n0a0b0c0d " + k2 + "\n", "line 2: key id 0a0b0c0d already on line 1"},
		{"bad base64", "# c\n0a0b0c0d not*base64 primary\n", "line 2: key 0a0b0c0d is not valid base64"},
		{"short key", "0a0b0c0d AAECAwQFBgcICQoLDA0ODw== primary\n", "line 1: key 0a0b0c0d is 16 bytes, want 32"},
		{"long key", "0a0b0c0d " + strings.Repeat("A", 60) + " primary\n", "is 45 bytes, want 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			kr, err := keyring.LoadOrCreate(path, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadOrCreate: got %v, want nil", err)
				}
				if got := kr.PrimaryID(); got != "0a0b0c0d" {
					t.Errorf("PrimaryID = %s, want 0a0b0c0d", got)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadOrCreate: got nil error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LoadOrCreate: error %q, want it to contain %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("LoadOrCreate: error %q, want it to name the file", err)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	kr, path := newRing(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			ad := []byte{byte(g)}
			for range 200 {
				sealed, err := kr.Seal([]byte("concurrent"), ad)
				if err != nil {
					t.Errorf("Seal: %v", err)
					return
				}
				if got, err := kr.Open(sealed, ad); err != nil || string(got) != "concurrent" {
					t.Errorf("Open = %q, %v; want \"concurrent\", nil", got, err)
					return
				}
				_ = kr.PrimaryID()
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if _, err := kr.Rotate(path, nil); err != nil {
				t.Errorf("Rotate: %v", err)
				return
			}
		}
	})
	wg.Wait()
	if got := len(kr.KeyIDs()); got != 6 {
		t.Errorf("keys after 5 rotations = %d, want 6", got)
	}
}

// TestAddThenPromote: a key added opens at once but seals only once promoted,
// so copies of the key file can learn it before anything is sealed under it.
func TestAddThenPromote(t *testing.T) {
	kr, path := newRing(t)
	oldID := kr.PrimaryID()
	ad := []byte("totp:7")

	addedID, err := kr.Add(path, nil)
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if got := kr.KeyIDs(); len(got) != 2 || got[0] != oldID || got[1] != addedID {
		t.Fatalf("KeyIDs after Add = %v, want [%s %s]", got, oldID, addedID)
	}
	sealed, err := kr.Seal([]byte("secret"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := kr.KeyIDOf(sealed); id != oldID {
		t.Errorf("sealed under %s after Add, want the primary %s", id, oldID)
	}

	if err := kr.Promote(path, "0000000g"); err == nil {
		t.Error("Promote(invalid id): got nil error, want one")
	}
	if err := kr.Promote(path, addedID); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	loaded, err := keyring.LoadOrCreate(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*keyring.Keyring{kr, loaded} {
		if got := k.KeyIDs(); len(got) != 2 || got[0] != addedID || got[1] != oldID {
			t.Errorf("KeyIDs after Promote = %v, want [%s %s]", got, addedID, oldID)
		}
		if got, err := k.Open(sealed, ad); err != nil || string(got) != "secret" {
			t.Errorf("Open(value of the former primary) = %q, %v", got, err)
		}
	}
	resealed, _ := kr.Seal([]byte("secret"), ad)
	if id, _ := kr.KeyIDOf(resealed); id != addedID {
		t.Errorf("sealed under %s after Promote, want %s", id, addedID)
	}
	assertMode(t, path, 0o600)
	assertOnlyFile(t, path)
}
