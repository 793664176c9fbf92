package password

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Limits on the parameters Verify accepts from a stored hash. They are far
// above any sensible setting and only keep a corrupted row from demanding
// gigabytes of memory or minutes of CPU.
const (
	maxTime      = 1000
	maxMemoryKiB = 1 << 20 // 1 GiB
	minSaltLen   = 8
	maxSaltLen   = 1024
	minKeyLen    = 4
	maxKeyLen    = 1024
)

// encodePHC formats a hash as $argon2id$v=19$m=..,t=..,p=..$salt$key.
func encodePHC(p params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// decodePHC parses a PHC string made by encodePHC or by another argon2id
// implementation. Errors wrap ErrMalformedHash.
func decodePHC(phc string) (p params, salt, key []byte, err error) {
	fail := func(format string, a ...any) (params, []byte, []byte, error) {
		return params{}, nil, nil, fmt.Errorf("%w: %s", ErrMalformedHash, fmt.Sprintf(format, a...))
	}
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	f := strings.Split(phc, "$")
	if len(f) != 6 || f[0] != "" {
		return fail("want 5 fields separated by '$', got %d", len(f)-1)
	}
	if f[1] != "argon2id" {
		return fail("algorithm %q is not argon2id", f[1])
	}
	v, ok := strings.CutPrefix(f[2], "v=")
	if !ok {
		return fail("version field %q does not start with v=", f[2])
	}
	if n, err := strconv.ParseUint(v, 10, 32); err != nil || n != argon2.Version {
		return fail("unsupported argon2 version %q, want %d", v, argon2.Version)
	}
	ps := strings.Split(f[3], ",")
	if len(ps) != 3 {
		return fail("parameters %q: want m=<KiB>,t=<iterations>,p=<threads>", f[3])
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		s, ok := strings.CutPrefix(ps[i], name+"=")
		if !ok {
			return fail("parameters %q: want m=<KiB>,t=<iterations>,p=<threads>", f[3])
		}
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fail("parameter %s=%q is not a number", name, s)
		}
		vals[i] = n
	}
	m, t, th := vals[0], vals[1], vals[2]
	switch {
	case th < 1 || th > 255:
		return fail("p=%d out of range 1..255", th)
	case t < 1 || t > maxTime:
		return fail("t=%d out of range 1..%d", t, maxTime)
	case m < 8*th || m > maxMemoryKiB:
		return fail("m=%d out of range %d..%d", m, 8*th, maxMemoryKiB)
	}
	salt, err = base64.RawStdEncoding.Strict().DecodeString(f[4])
	if err != nil {
		return fail("salt is not unpadded base64: %v", err)
	}
	if len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return fail("salt is %d bytes, want %d..%d", len(salt), minSaltLen, maxSaltLen)
	}
	key, err = base64.RawStdEncoding.Strict().DecodeString(f[5])
	if err != nil {
		return fail("hash is not unpadded base64: %v", err)
	}
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return fail("hash is %d bytes, want %d..%d", len(key), minKeyLen, maxKeyLen)
	}
	p = params{time: uint32(t), memory: uint32(m), threads: uint8(th), saltLen: len(salt), keyLen: len(key)}
	return p, salt, key, nil
}
