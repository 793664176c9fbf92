package password_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/twofold/twofold/internal/password"
)

const (
	reasonShort  = "The password must be at least 12 characters long."
	reasonLong   = "The password must be at most 128 characters long."
	reasonCommon = "This password is among the most commonly used passwords. Choose another."
)

func TestPolicyCheck(t *testing.T) {
	p := password.Policy{Blocklist: password.LoadBlocklist()}
	tests := []struct {
		name     string
		password string
		reason   string // "" means accepted
	}{
		{"empty", "", reasonShort},
		{"11 chars", "kq8#vLm2pWz", reasonShort},
		{"12 chars", "kq8#vLm2pWzT", ""},
		{"64 chars", strings.Repeat("Zt7!", 16), ""},
		{"128 chars", strings.Repeat("Zt7!", 32), ""},
		{"129 chars", strings.Repeat("Zt7!", 32) + "q", reasonLong},
		{"11 emoji", strings.Repeat("🔐", 11), reasonShort},
		{"12 emoji (48 bytes)", strings.Repeat("🔐", 12), ""},
		{"128 emoji (512 bytes)", strings.Repeat("🔐", 128), ""},
		{"129 emoji", strings.Repeat("🔐", 129), reasonLong},
		{"12 accented letters", "ééééééççççàà", ""},
		{"spaces count", "a b c d e f ", ""},
		{"invalid UTF-8", "valid prefix\xff\xfe then junk", "The password contains characters that are not valid text (it is not UTF-8)."},
		{"no composition rules: all lower case", "tangerine velvet orbit", ""},
		{"common", "baseball2000", reasonCommon},
		{"common, most common entry", "123qweasdzxc", reasonCommon},
		{"common, upper case", "BASEBALL2000", reasonCommon},
		{"common, entry with upper case in the list", "williamluke03188baseballluva18", reasonCommon},
		{"common with a suffix is not on the list", "baseball2000!", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Check(tt.password)
			if tt.reason == "" {
				if err != nil {
					t.Errorf("Check(%q) = %v, want nil", tt.password, err)
				}
				return
			}
			var pe *password.PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("Check(%q) = %v, want a *PolicyError", tt.password, err)
			}
			if pe.Reason != tt.reason || err.Error() != tt.reason {
				t.Errorf("Check(%q) reason = %q, want %q", tt.password, pe.Reason, tt.reason)
			}
		})
	}
}

func TestPolicyCustomLimits(t *testing.T) {
	p := password.Policy{MinLength: 8, MaxLength: 10}
	tests := []struct {
		password string
		reason   string
	}{
		{"1234567", "The password must be at least 8 characters long."},
		{"12345678", ""},
		{"1234567890", ""},
		{"12345678901", "The password must be at most 10 characters long."},
	}
	for _, tt := range tests {
		err := p.Check(tt.password)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.reason {
			t.Errorf("Check(%q) = %q, want %q", tt.password, got, tt.reason)
		}
	}
}

func TestPolicyZeroValueNoBlocklist(t *testing.T) {
	if err := (password.Policy{}).Check("baseball2000"); err != nil {
		t.Errorf("Check without blocklist = %v, want nil", err)
	}
	if got := (*password.Blocklist)(nil).Contains("baseball2000"); got {
		t.Errorf("nil Blocklist Contains = true, want false")
	}
}

func TestLoadBlocklist(t *testing.T) {
	b := password.LoadBlocklist()
	// 44,150 lines, of which 43,940 differ after lower-casing.
	if got := b.Len(); got != 43940 {
		t.Errorf("Len = %d, want 43940", got)
	}
	tests := []struct {
		password string
		want     bool
	}{
		{"123qweasdzxc", true},
		{"1qaz2wsx3edc", true},
		{"baseball2000", true},
		{"Baseball2000", true},
		{"bAsEbAlL2000", true},
		{"echsbaseball", true},
		{"WilliamLuke03188Baseballluva18", true},
		{"williamluke03188baseballluva18", true},
		{"baseball", false}, // in the source list, but shorter than 12
		{"password", false},
		{"", false},
		{"Tq4v-mizzle-Orb8-Krant", false}, // a random 20+ character passphrase
		{"123qweasdzxc ", false},          // whole password only
	}
	for _, tt := range tests {
		if got := b.Contains(tt.password); got != tt.want {
			t.Errorf("Contains(%q) = %v, want %v", tt.password, got, tt.want)
		}
	}
}

// Every entry of the list is found, in any case, and nothing next to one:
// a longer or shorter string, or one that sorts between two entries.
func TestBlocklistFindsEveryEntry(t *testing.T) {
	data, err := os.ReadFile("common-passwords.txt")
	if err != nil {
		t.Fatal(err)
	}
	b := password.LoadBlocklist()
	entries := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	listed := make(map[string]bool, len(entries))
	for _, e := range entries {
		listed[strings.ToLower(e)] = true
	}
	for _, e := range entries {
		for _, p := range []string{e, strings.ToUpper(e)} {
			if !b.Contains(p) {
				t.Fatalf("Contains(%q) = false for an entry of the list", p)
			}
		}
		lower := strings.ToLower(e)
		for _, p := range []string{lower + "\x00", lower[:len(lower)-1] + "\x7f", lower[1:]} {
			if b.Contains(p) != listed[p] {
				t.Fatalf("Contains(%q) = %v, near the entry %q; listed: %v", p, !listed[p], e, listed[p])
			}
		}
	}
}

func TestRandomPassphraseAccepted(t *testing.T) {
	p := password.Policy{Blocklist: password.LoadBlocklist()}
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	// A fixed pseudo-random 20-character passphrase.
	var sb strings.Builder
	x := uint32(2463534242)
	for range 20 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		sb.WriteByte(alphabet[x%uint32(len(alphabet))])
	}
	if err := p.Check(sb.String()); err != nil {
		t.Errorf("Check(%q) = %v, want nil", sb.String(), err)
	}
}

func TestNewBlocklist(t *testing.T) {
	b := password.NewBlocklist([]string{"Hunter2Hunter2", "", "letmeinletmein\r"})
	tests := []struct {
		password string
		want     bool
	}{
		{"hunter2hunter2", true},
		{"HUNTER2HUNTER2", true},
		{"letmeinletmein", true},
		{"", false},
	}
	for _, tt := range tests {
		if got := b.Contains(tt.password); got != tt.want {
			t.Errorf("Contains(%q) = %v, want %v", tt.password, got, tt.want)
		}
	}
	if got := b.Len(); got != 2 {
		t.Errorf("Len = %d, want 2", got)
	}
}

func BenchmarkLoadBlocklist(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = password.LoadBlocklist()
	}
}
