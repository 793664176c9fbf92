package otp

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"io"
	"strings"
)

// MinSecretSize is the smallest size GenerateSecret accepts: 16 bytes
// (128 bits), the minimum of RFC 4226 section 4.
const MinSecretSize = 16

// GenerateSecret returns size random bytes read from r, for use as a shared
// secret. A nil r means crypto/rand.Reader; size 0 means DefaultSecretSize
// (20 bytes, 160 bits). Sizes below MinSecretSize are rejected.
func GenerateSecret(r io.Reader, size int) ([]byte, error) {
	if size == 0 {
		size = DefaultSecretSize
	}
	if size < MinSecretSize {
		return nil, errors.New("otp: secret size must be at least 16 bytes")
	}
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, errors.New("otp: reading random secret: " + err.Error())
	}
	return b, nil
}

func b32() *base32.Encoding { return base32.StdEncoding.WithPadding(base32.NoPadding) }

// EncodeSecret encodes a secret as upper-case base32 without padding, the
// form authenticator apps and key URIs use.
func EncodeSecret(secret []byte) string {
	return b32().EncodeToString(secret)
}

// DecodeSecret decodes a base32 secret as typed or pasted by a person: it
// ignores case, white space, hyphens and "=" padding. An empty secret is an
// error.
func DecodeSecret(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '-' || r == '=':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
	if clean == "" {
		return nil, errors.New("otp: secret is empty")
	}
	b, err := b32().DecodeString(clean)
	if err != nil {
		return nil, errors.New("otp: secret is not valid base32")
	}
	return b, nil
}

// FormatSecretGroups splits an encoded secret into groups of four
// characters separated by spaces ("ABCD EFGH IJ"), for a person to read or
// type. White space already in s is dropped first.
func FormatSecretGroups(s string) string {
	s = strings.Join(strings.Fields(s), "")
	var b strings.Builder
	b.Grow(len(s) + len(s)/4)
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}
