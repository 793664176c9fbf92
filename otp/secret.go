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
// ignores case, white space, hyphens and "=" padding. Unused low bits of
// the last character need not be zero (some generators pick random
// characters rather than random bytes), but a length that no byte string
// encodes to (1, 3 or 6 characters modulo 8) is rejected, as is an empty
// secret.
func DecodeSecret(s string) ([]byte, error) {
	out := make([]byte, 0, len(s)*5/8)
	var acc uint32 // pending bits, the low nbits of which are valid
	nbits, nchars := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var v byte
		switch {
		case c >= 'A' && c <= 'Z':
			v = c - 'A'
		case c >= 'a' && c <= 'z':
			v = c - 'a'
		case c >= '2' && c <= '7':
			v = c - '2' + 26
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '-' || c == '=':
			continue
		default:
			return nil, errors.New("otp: secret is not valid base32")
		}
		nchars++
		acc = acc<<5 | uint32(v)
		nbits += 5
		if nbits >= 8 {
			nbits -= 8
			out = append(out, byte(acc>>nbits))
			acc &= 1<<nbits - 1
		}
	}
	switch nchars % 8 {
	case 1, 3, 6:
		return nil, errors.New("otp: secret is not valid base32 (wrong length)")
	}
	if len(out) == 0 {
		return nil, errors.New("otp: secret is empty")
	}
	return out, nil
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
