package otp

import (
	"errors"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Key types of a key URI.
const (
	TypeTOTP = "totp"
	TypeHOTP = "hotp"
)

// KeyInfo is the content of a key URI ("otpauth://...", Google's Key Uri
// Format), as shown to authenticator apps in a QR code.
type KeyInfo struct {
	// Type is TypeTOTP or TypeHOTP.
	Type string
	// Issuer names the service ("Example Co"); it may be empty.
	Issuer string
	// Account names the user ("alice@example.com"); it is required.
	Account string
	// Secret is the shared secret (not encoded).
	Secret []byte
	// Params holds the algorithm, digits and (for TOTP) period. ParseURI
	// fills in the defaults, leaves Skew zero and, for HOTP, Period zero.
	Params Params
	// Counter is the initial HOTP counter; it is zero for TOTP.
	Counter uint64
}

// URI returns the key URI of a TOTP key:
//
//	otpauth://totp/Issuer:account?secret=...&issuer=Issuer&algorithm=SHA1&digits=6&period=30
//
// Spaces are encoded as %20, never "+". Neither issuer nor account may
// contain a colon or control characters; account must be non-empty and
// must not start with a space. An empty issuer is left out.
func URI(issuer, account string, secret []byte, p Params) (string, error) {
	return KeyInfo{Type: TypeTOTP, Issuer: issuer, Account: account, Secret: secret, Params: p}.URI()
}

// URI returns the key URI of k, with the same rules as the function [URI];
// for HOTP keys it has a counter parameter instead of a period.
func (k KeyInfo) URI() (string, error) {
	if k.Type != TypeTOTP && k.Type != TypeHOTP {
		return "", errors.New("otp: key type must be totp or hotp")
	}
	if err := checkName("issuer", k.Issuer); err != nil {
		return "", err
	}
	if err := checkName("account", k.Account); err != nil {
		return "", err
	}
	if k.Account == "" {
		return "", errors.New("otp: account is empty")
	}
	if len(k.Secret) == 0 {
		return "", errors.New("otp: secret is empty")
	}
	c, err := k.Params.config()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("otpauth://")
	b.WriteString(k.Type)
	b.WriteByte('/')
	if k.Issuer != "" {
		b.WriteString(escape(k.Issuer))
		b.WriteByte(':')
	}
	b.WriteString(escape(k.Account))
	b.WriteString("?secret=")
	b.WriteString(EncodeSecret(k.Secret))
	if k.Issuer != "" {
		b.WriteString("&issuer=")
		b.WriteString(escape(k.Issuer))
	}
	b.WriteString("&algorithm=")
	b.WriteString(c.alg.String())
	b.WriteString("&digits=")
	b.WriteString(strconv.Itoa(c.digits))
	if k.Type == TypeTOTP {
		b.WriteString("&period=")
		b.WriteString(strconv.FormatInt(c.period, 10))
	} else {
		b.WriteString("&counter=")
		b.WriteString(strconv.FormatUint(k.Counter, 10))
	}
	return b.String(), nil
}

// CheckIssuer reports whether URI accepts issuer as the name of the
// service, so that a server can refuse a bad name when it starts rather
// than at each enrollment.
func CheckIssuer(issuer string) error { return checkName("issuer", issuer) }

// checkName validates an issuer or account name.
func checkName(what, s string) error {
	if !utf8.ValidString(s) {
		return errors.New("otp: " + what + " is not valid UTF-8")
	}
	if strings.HasPrefix(s, " ") {
		return errors.New("otp: " + what + " must not start with a space")
	}
	for _, r := range s {
		if r == ':' {
			return errors.New("otp: " + what + " must not contain a colon")
		}
		if unicode.IsControl(r) {
			return errors.New("otp: " + what + " must not contain control characters")
		}
	}
	return nil
}

// escape percent-encodes s for a key URI label or query value: everything
// but unreserved characters and "@" is encoded, so spaces become %20.
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '@' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// ParseURI parses and validates a key URI. It accepts what URI produces and
// the common variations of other generators: lower-case or padded secrets,
// "+" for spaces in query values, an issuer given only in the label or only
// as a parameter, spaces after the label's colon, and parameters it does
// not know (such as image), which it ignores. It rejects, with an error,
// anything else: another scheme or type, a missing label, account or
// secret, an issuer parameter that differs from the label's, repeated
// parameters, and out-of-range algorithm, digits, period or counter.
func ParseURI(s string) (KeyInfo, error) {
	k, err := parseURI(s)
	if err != nil {
		return KeyInfo{}, err
	}
	return k, nil
}

func parseURI(s string) (KeyInfo, error) {
	var k KeyInfo
	u, err := url.Parse(s)
	if err != nil {
		return k, errors.New("otp: malformed key URI")
	}
	if !strings.EqualFold(u.Scheme, "otpauth") || u.Opaque != "" || u.User != nil {
		return k, errors.New("otp: key URI must start with otpauth://")
	}
	k.Type = strings.ToLower(u.Host)
	if k.Type != TypeTOTP && k.Type != TypeHOTP {
		return k, errors.New("otp: key URI type must be totp or hotp")
	}
	label, ok := strings.CutPrefix(u.Path, "/")
	if !ok || label == "" {
		return k, errors.New("otp: key URI has no label")
	}
	issuer, account, hasIssuer := strings.Cut(label, ":")
	if !hasIssuer {
		issuer, account = "", label
	}
	account = strings.TrimLeft(account, " ")
	if account == "" {
		return k, errors.New("otp: account is empty")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return k, errors.New("otp: malformed key URI query")
	}
	get := func(name string) (string, bool, error) {
		v := q[name]
		if len(v) > 1 {
			return "", false, errors.New("otp: key URI parameter " + name + " is repeated")
		}
		if len(v) == 0 {
			return "", false, nil
		}
		return v[0], true, nil
	}

	v, ok, err := get("secret")
	if err != nil {
		return k, err
	}
	if !ok {
		return k, errors.New("otp: key URI has no secret")
	}
	if k.Secret, err = DecodeSecret(v); err != nil {
		return k, err
	}

	v, ok, err = get("issuer")
	if err != nil {
		return k, err
	}
	if ok && v != "" {
		if hasIssuer && issuer != "" && issuer != v {
			return k, errors.New("otp: key URI issuer parameter differs from label")
		}
		issuer = v
	}
	if err := checkName("issuer", issuer); err != nil {
		return k, err
	}
	if err := checkName("account", account); err != nil {
		return k, err
	}
	k.Issuer, k.Account = issuer, account

	v, ok, err = get("algorithm")
	if err != nil {
		return k, err
	}
	if ok {
		if k.Params.Algorithm, err = ParseAlgorithm(v); err != nil {
			return k, err
		}
	}

	k.Params.Digits = DefaultDigits
	v, ok, err = get("digits")
	if err != nil {
		return k, err
	}
	if ok {
		if k.Params.Digits, err = strconv.Atoi(v); err != nil || k.Params.Digits < 6 || k.Params.Digits > 8 {
			return k, errors.New("otp: digits must be 6, 7 or 8")
		}
	}

	v, ok, err = get("period")
	if err != nil {
		return k, err
	}
	if k.Type == TypeTOTP {
		k.Params.Period = DefaultPeriod
		if ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 || n > math.MaxInt64/int64(time.Second) {
				return k, errors.New("otp: period must be a positive whole number of seconds")
			}
			k.Params.Period = time.Duration(n) * time.Second
		}
	}

	v, ok, err = get("counter")
	if err != nil {
		return k, err
	}
	if k.Type == TypeHOTP {
		if !ok {
			return k, errors.New("otp: hotp key URI has no counter")
		}
		if k.Counter, err = strconv.ParseUint(v, 10, 64); err != nil {
			return k, errors.New("otp: counter must be a non-negative integer")
		}
	}
	return k, nil
}
