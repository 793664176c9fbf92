package otp

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the HMAC hash function used to compute codes. The zero value
// is SHA1, the default of RFC 4226, RFC 6238 and every authenticator app.
type Algorithm int

// Supported algorithms.
const (
	SHA1 Algorithm = iota
	SHA256
	SHA512
)

// String returns the name used in key URIs: "SHA1", "SHA256" or "SHA512".
func (a Algorithm) String() string {
	switch a {
	case SHA1:
		return "SHA1"
	case SHA256:
		return "SHA256"
	case SHA512:
		return "SHA512"
	}
	return "Algorithm(" + strconv.Itoa(int(a)) + ")"
}

// ParseAlgorithm parses an algorithm name as used in key URIs ("SHA1",
// "SHA256", "SHA512"), ignoring case.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToUpper(s) {
	case "SHA1":
		return SHA1, nil
	case "SHA256":
		return SHA256, nil
	case "SHA512":
		return SHA512, nil
	}
	return 0, errors.New("otp: algorithm must be SHA1, SHA256 or SHA512")
}

// Defaults: the first three replace zero fields of [Params], the last is
// the secret size [GenerateSecret] uses when given size 0.
const (
	DefaultDigits     = 6
	DefaultPeriod     = 30 * time.Second
	DefaultSkew       = 1
	DefaultSecretSize = 20 // bytes (160 bits), as recommended by RFC 4226
)

// NoSkew, as Params.Skew, makes [Verify] accept only the current time step.
const NoSkew = -1

// MaxSkew is the largest Params.Skew accepted.
const MaxSkew = 10

// Params configures code generation and verification. The zero value means
// the defaults used by authenticator apps: SHA1, 6 digits, a 30 second
// period and a verification window of one step either side of the current one.
type Params struct {
	// Algorithm is the HMAC hash function; the zero value is SHA1.
	Algorithm Algorithm
	// Digits is the code length: 6, 7 or 8; 0 means 6.
	Digits int
	// Period is the TOTP time step: a positive whole number of seconds;
	// 0 means 30 s. HOTP ignores it.
	Period time.Duration
	// Skew is how many steps before and after the current one Verify
	// accepts, at most MaxSkew; 0 means 1 (steps T-1, T and T+1) and
	// NoSkew means none (step T only).
	Skew int
}

// config is a validated Params with the defaults applied.
type config struct {
	alg    Algorithm
	digits int
	mod    uint32 // 10^digits
	period int64  // seconds
	skew   int
}

func (p Params) config() (config, error) {
	c := config{alg: p.Algorithm, digits: p.Digits, skew: p.Skew}
	if c.alg != SHA1 && c.alg != SHA256 && c.alg != SHA512 {
		return c, errors.New("otp: algorithm must be SHA1, SHA256 or SHA512")
	}
	switch c.digits {
	case 0:
		c.digits = DefaultDigits
	case 6, 7, 8:
	default:
		return c, errors.New("otp: digits must be 6, 7 or 8")
	}
	c.mod = pow10(c.digits)
	period := p.Period
	if period == 0 {
		period = DefaultPeriod
	}
	if period < time.Second || period%time.Second != 0 {
		return c, errors.New("otp: period must be a positive whole number of seconds")
	}
	c.period = int64(period / time.Second)
	switch {
	case c.skew == 0:
		c.skew = DefaultSkew
	case c.skew == NoSkew:
		c.skew = 0
	case c.skew < 0 || c.skew > MaxSkew:
		return c, errors.New("otp: skew must be between -1 and " + strconv.Itoa(MaxSkew))
	}
	return c, nil
}

func pow10(n int) uint32 {
	m := uint32(1)
	for range n {
		m *= 10
	}
	return m
}

// Validate reports whether p is usable, with a descriptive error if not.
// Servers should call it once when loading their configuration, because
// [Verify] does not report errors: it rejects every code if p is invalid.
func (p Params) Validate() error {
	_, err := p.config()
	return err
}

// step is floor(unix / period), the RFC 6238 time step with T0 = 0.
func (c *config) step(t time.Time) int64 {
	u := t.Unix()
	s := u / c.period
	if u%c.period < 0 {
		s--
	}
	return s
}

// Step returns the RFC 6238 time step T = floor(unix(t) / period) that
// contains t. It fails only if p is invalid.
func Step(t time.Time, p Params) (int64, error) {
	c, err := p.config()
	if err != nil {
		return 0, err
	}
	return c.step(t), nil
}

// HOTPValue returns the RFC 4226 one-time password of secret for counter as
// an integer below 10^digits. It does not allocate; [FormatCode] turns the
// value into the string a user types.
func HOTPValue(secret []byte, counter uint64, p Params) (uint32, error) {
	c, err := p.config()
	if err != nil {
		return 0, err
	}
	if len(secret) == 0 {
		return 0, errors.New("otp: secret is empty")
	}
	return hotpValue(c.alg, secret, counter) % c.mod, nil
}

// HOTP returns the RFC 4226 one-time password of secret for counter, as a
// string of p.Digits decimal digits.
func HOTP(secret []byte, counter uint64, p Params) (string, error) {
	v, err := HOTPValue(secret, counter, p)
	if err != nil {
		return "", err
	}
	return FormatCode(v, p.Digits), nil
}

// TOTP returns the RFC 6238 one-time password of secret at time t, as a
// string of p.Digits decimal digits. Times before 1970 are rejected.
func TOTP(secret []byte, t time.Time, p Params) (string, error) {
	c, err := p.config()
	if err != nil {
		return "", err
	}
	s := c.step(t)
	if s < 0 {
		return "", errors.New("otp: time is before the Unix epoch")
	}
	return HOTP(secret, uint64(s), p)
}

// FormatCode formats a code value as returned by [HOTPValue] as exactly
// digits decimal digits, with leading zeros; digits 0 means 6.
func FormatCode(value uint32, digits int) string {
	if digits <= 0 {
		digits = DefaultDigits
	}
	var b [10]byte // uint32 has at most 10 digits
	if digits > len(b) {
		digits = len(b)
	}
	for i := digits - 1; i >= 0; i-- {
		b[i] = byte('0' + value%10)
		value /= 10
	}
	return string(b[:digits])
}

// parseCode normalises a code typed by a user: it drops spaces and hyphens
// ("123 456", "123-456") and requires exactly digits ASCII digits.
func parseCode(code string, digits int) (uint32, bool) {
	if len(code) > 2*digits+2 { // generous bound on separators; stops long input early
		return 0, false
	}
	var v uint32
	n := 0
	for i := 0; i < len(code); i++ {
		ch := code[i]
		switch {
		case ch == ' ' || ch == '-':
			continue
		case ch >= '0' && ch <= '9':
			n++
			if n > digits {
				return 0, false
			}
			v = v*10 + uint32(ch-'0')
		default:
			return 0, false
		}
	}
	return v, n == digits
}

// Verify checks a TOTP code typed by a user at time t.
//
// The code may contain spaces and hyphens ("123 456", "123-456"); anything
// else that is not exactly p.Digits decimal digits is rejected before any
// HMAC is computed. Otherwise the code is compared in constant time with
// the codes of every step from T-Skew to T+Skew, where T = Step(t, p), and
// it is accepted only for a step strictly greater than lastUsedStep.
//
// On success Verify returns the matching step (the highest one, should
// several match), which the caller must store and pass as lastUsedStep next
// time: this way neither that code nor any code of an earlier step is ever
// accepted again. Pass 0 for a secret never used before (step 0 is the
// first period of 1970, never in the window).
//
// Verify fails closed: it returns false if p is invalid (see
// [Params.Validate]) or the secret is empty. It does not allocate.
func Verify(secret []byte, code string, t time.Time, lastUsedStep int64, p Params) (step int64, ok bool) {
	c, err := p.config()
	if err != nil || len(secret) == 0 {
		return 0, false
	}
	want, valid := parseCode(code, c.digits)
	if !valid {
		return 0, false
	}
	now := c.step(t)
	if now > 1<<62 {
		return 0, false // absurd time: avoid overflow below
	}
	first := max(now-int64(c.skew), 0) // no step before 1970
	n := now + int64(c.skew) - first + 1
	if n <= 0 {
		return 0, false // the whole window is before 1970
	}
	w := window{first: first, n: int(n), last: lastUsedStep, want: want, mod: c.mod}
	w.run(c.alg, secret)
	return w.match, w.matched == 1
}
