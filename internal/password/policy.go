package password

import (
	"fmt"
	"unicode/utf8"
)

// Default length limits of a Policy, in Unicode code points.
const (
	DefaultMinLength = 12
	DefaultMaxLength = 128
)

// Policy says which new passwords are acceptable. Following NIST SP 800-63B
// it has no composition rules: only a length range, counted in Unicode code
// points, and a blocklist of commonly used passwords. Passwords are never
// truncated. The zero value checks length only, with the default limits.
type Policy struct {
	// MinLength is the fewest code points allowed; 0 or less means
	// DefaultMinLength. The embedded blocklist holds only entries of 12 code
	// points or more, so a lower minimum lets shorter common passwords in.
	MinLength int
	// MaxLength is the most code points allowed; 0 or less means
	// DefaultMaxLength.
	MaxLength int
	// Blocklist, if not nil, rejects commonly used passwords.
	Blocklist *Blocklist
}

// PolicyError is returned by Policy.Check for an unacceptable password. Its
// Reason is meant to be shown to the user as is.
type PolicyError struct {
	// Reason explains, in a sentence for the user, what is wrong.
	Reason string
}

// Error returns the Reason.
func (e *PolicyError) Error() string { return e.Reason }

// Check returns nil if password is acceptable and a *PolicyError saying why
// not otherwise.
func (p Policy) Check(password string) error {
	minLen, maxLen := p.MinLength, p.MaxLength
	if minLen <= 0 {
		minLen = DefaultMinLength
	}
	if maxLen <= 0 {
		maxLen = DefaultMaxLength
	}
	if !utf8.ValidString(password) {
		return &PolicyError{Reason: "The password contains characters that are not valid text (it is not UTF-8)."}
	}
	n := utf8.RuneCountInString(password)
	if n < minLen {
		return &PolicyError{Reason: fmt.Sprintf("The password must be at least %d characters long.", minLen)}
	}
	if n > maxLen {
		return &PolicyError{Reason: fmt.Sprintf("The password must be at most %d characters long.", maxLen)}
	}
	if p.Blocklist.Contains(password) {
		return &PolicyError{Reason: "This password is among the most commonly used passwords. Choose another."}
	}
	return nil
}
