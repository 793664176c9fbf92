package otp

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"strings"
	"testing"
	"time"
)

func TestHOTPRFC4226(t *testing.T) {
	secret := []byte("12345678901234567890")
	// RFC 4226 Appendix D.
	want := []string{"755224", "287082", "359152", "969429", "338314",
		"254676", "287922", "162583", "399871", "520489"}
	for counter, w := range want {
		got, err := HOTP(secret, uint64(counter), Params{})
		if err != nil {
			t.Fatalf("HOTP(counter %d): %v", counter, err)
		}
		if got != w {
			t.Errorf("HOTP(counter %d) = %q, want %q", counter, got, w)
		}
	}
}

func TestTOTPRFC6238(t *testing.T) {
	seeds := map[Algorithm][]byte{
		SHA1:   []byte("12345678901234567890"),
		SHA256: []byte("12345678901234567890123456789012"),
		SHA512: []byte("1234567890123456789012345678901234567890123456789012345678901234"),
	}
	// RFC 6238 Appendix B.
	tests := []struct {
		unix int64
		alg  Algorithm
		want string
	}{
		{59, SHA1, "94287082"},
		{59, SHA256, "46119246"},
		{59, SHA512, "90693936"},
		{1111111109, SHA1, "07081804"},
		{1111111109, SHA256, "68084774"},
		{1111111109, SHA512, "25091201"},
		{1111111111, SHA1, "14050471"},
		{1111111111, SHA256, "67062674"},
		{1111111111, SHA512, "99943326"},
		{1234567890, SHA1, "89005924"},
		{1234567890, SHA256, "91819424"},
		{1234567890, SHA512, "93441116"},
		{2000000000, SHA1, "69279037"},
		{2000000000, SHA256, "90698825"},
		{2000000000, SHA512, "38618901"},
		{20000000000, SHA1, "65353130"},
		{20000000000, SHA256, "77737706"},
		{20000000000, SHA512, "47863826"},
	}
	for _, tt := range tests {
		p := Params{Algorithm: tt.alg, Digits: 8}
		got, err := TOTP(seeds[tt.alg], time.Unix(tt.unix, 0), p)
		if err != nil {
			t.Fatalf("TOTP(%v, %d): %v", tt.alg, tt.unix, err)
		}
		if got != tt.want {
			t.Errorf("TOTP(%v, %d) = %q, want %q", tt.alg, tt.unix, got, tt.want)
		}
		// Verify must accept the same code at that time.
		step, ok := Verify(seeds[tt.alg], tt.want, time.Unix(tt.unix, 0), 0, p)
		wantStep := tt.unix / 30
		if !ok || step != wantStep {
			t.Errorf("Verify(%v, %d, %q) = %d, %v, want %d, true", tt.alg, tt.unix, tt.want, step, ok, wantStep)
		}
	}
}

func TestLongKeyIsHashed(t *testing.T) {
	// Keys longer than the block size are hashed first (RFC 2104); compare
	// the fast paths with crypto/hmac through the generic path.
	for _, alg := range []Algorithm{SHA1, SHA256, SHA512} {
		for _, n := range []int{1, 63, 64, 65, 127, 128, 129, 300} {
			key := []byte(strings.Repeat("k", n))
			for counter := int64(0); counter < 3; counter++ {
				fast := window{first: counter, n: 1, last: counter, mod: 1}
				fast.run(alg, key)
				slow := window{first: counter, n: 1, last: counter, mod: 1}
				switch alg {
				case SHA1:
					slow.generic(sha1.New, key)
				case SHA256:
					slow.generic(sha256.New, key)
				case SHA512:
					slow.generic(sha512.New, key)
				}
				if fast.value != slow.value {
					t.Errorf("%v key of %d bytes, counter %d: got %d, want %d", alg, n, counter, fast.value, slow.value)
				}
			}
		}
	}
}

func TestParams(t *testing.T) {
	tests := []struct {
		p       Params
		wantErr string
	}{
		{Params{}, ""},
		{Params{Algorithm: SHA512, Digits: 8, Period: 60 * time.Second, Skew: 2}, ""},
		{Params{Digits: 7}, ""},
		{Params{Skew: NoSkew}, ""},
		{Params{Skew: MaxSkew}, ""},
		{Params{Period: time.Second}, ""},
		{Params{Algorithm: 3}, "otp: algorithm must be SHA1, SHA256 or SHA512"},
		{Params{Algorithm: -1}, "otp: algorithm must be SHA1, SHA256 or SHA512"},
		{Params{Digits: 5}, "otp: digits must be 6, 7 or 8"},
		{Params{Digits: 9}, "otp: digits must be 6, 7 or 8"},
		{Params{Period: -time.Second}, "otp: period must be a positive whole number of seconds"},
		{Params{Period: 1500 * time.Millisecond}, "otp: period must be a positive whole number of seconds"},
		{Params{Period: time.Millisecond}, "otp: period must be a positive whole number of seconds"},
		{Params{Skew: -2}, "otp: skew must be between -1 and 10"},
		{Params{Skew: MaxSkew + 1}, "otp: skew must be between -1 and 10"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.wantErr {
			t.Errorf("%+v.Validate() = %q, want %q", tt.p, got, tt.wantErr)
		}
	}
	if _, err := HOTP(nil, 0, Params{}); err == nil || err.Error() != "otp: secret is empty" {
		t.Errorf("HOTP(nil secret): got %v, want otp: secret is empty", err)
	}
	if _, err := TOTP([]byte("x"), time.Unix(-31, 0), Params{}); err == nil {
		t.Errorf("TOTP before 1970: got nil error, want an error")
	}
	if _, err := TOTP([]byte("x"), time.Now(), Params{Digits: 9}); err == nil {
		t.Errorf("TOTP(digits 9): got nil error, want an error")
	}
}

func TestAlgorithm(t *testing.T) {
	for _, a := range []Algorithm{SHA1, SHA256, SHA512} {
		for _, s := range []string{a.String(), strings.ToLower(a.String())} {
			got, err := ParseAlgorithm(s)
			if err != nil || got != a {
				t.Errorf("ParseAlgorithm(%q) = %v, %v, want %v, nil", s, got, err, a)
			}
		}
	}
	for _, s := range []string{"", "MD5", "SHA-1", "sha384"} {
		if _, err := ParseAlgorithm(s); err == nil {
			t.Errorf("ParseAlgorithm(%q): got nil error, want an error", s)
		}
	}
	if got, want := Algorithm(7).String(), "Algorithm(7)"; got != want {
		t.Errorf("Algorithm(7).String() = %q, want %q", got, want)
	}
}

func TestStep(t *testing.T) {
	tests := []struct {
		unix   int64
		period time.Duration
		want   int64
	}{
		{0, 0, 0},
		{29, 0, 0},
		{30, 0, 1},
		{59, 0, 1},
		{1111111109, 0, 37037036},
		{59, 60 * time.Second, 0},
		{60, 60 * time.Second, 1},
		{7, time.Second, 7},
		{-1, 0, -1},
		{-30, 0, -1},
		{-31, 0, -2},
	}
	for _, tt := range tests {
		got, err := Step(time.Unix(tt.unix, 0), Params{Period: tt.period})
		if err != nil || got != tt.want {
			t.Errorf("Step(%d, period %v) = %d, %v, want %d, nil", tt.unix, tt.period, got, err, tt.want)
		}
	}
	if _, err := Step(time.Now(), Params{Period: -1}); err == nil {
		t.Errorf("Step(period -1): got nil error, want an error")
	}
}

func TestFormatCode(t *testing.T) {
	tests := []struct {
		v      uint32
		digits int
		want   string
	}{
		{0, 6, "000000"},
		{42, 6, "000042"},
		{123456, 6, "123456"},
		{1234567, 7, "1234567"},
		{7, 8, "00000007"},
		{42, 0, "000042"},
	}
	for _, tt := range tests {
		if got := FormatCode(tt.v, tt.digits); got != tt.want {
			t.Errorf("FormatCode(%d, %d) = %q, want %q", tt.v, tt.digits, got, tt.want)
		}
	}
}

func TestVerify(t *testing.T) {
	secret := []byte("12345678901234567890")
	now := time.Unix(1700000000, 0)
	p := Params{}
	T, _ := Step(now, p)
	code := func(step int64) string {
		c, err := HOTP(secret, uint64(step), p)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The codes of T-2..T+2 must differ for the window tests to mean
	// anything.
	seen := map[string]bool{}
	for s := T - 2; s <= T+2; s++ {
		if seen[code(s)] {
			t.Fatalf("codes of steps around %d collide; pick another time", T)
		}
		seen[code(s)] = true
	}
	wrong := "000000"
	for seen[wrong] {
		wrong = "000001"
	}

	tests := []struct {
		name     string
		code     string
		last     int64
		p        Params
		wantStep int64
		wantOK   bool
	}{
		{"current step", code(T), 0, p, T, true},
		{"previous step", code(T - 1), 0, p, T - 1, true},
		{"next step", code(T + 1), 0, p, T + 1, true},
		{"two steps back", code(T - 2), 0, p, 0, false},
		{"two steps ahead", code(T + 2), 0, p, 0, false},
		{"two steps back, skew 2", code(T - 2), 0, Params{Skew: 2}, T - 2, true},
		{"previous step, no skew", code(T - 1), 0, Params{Skew: NoSkew}, 0, false},
		{"current step, no skew", code(T), 0, Params{Skew: NoSkew}, T, true},
		{"wrong code", wrong, 0, p, 0, false},
		{"replay of same step", code(T), T, p, 0, false},
		{"earlier step after later used", code(T - 1), T, p, 0, false},
		{"earlier step after next used", code(T), T + 1, p, 0, false},
		{"later step after earlier used", code(T + 1), T, p, T + 1, true},
		{"current after previous used", code(T), T - 1, p, T, true},
		{"spaces", code(T)[:3] + " " + code(T)[3:], 0, p, T, true},
		{"hyphen", code(T)[:3] + "-" + code(T)[3:], 0, p, T, true},
		{"leading and trailing spaces", " " + code(T) + " ", 0, p, T, true},
		{"letters", "12a456", 0, p, 0, false},
		{"too short", code(T)[:5], 0, p, 0, false},
		{"too long", code(T) + "0", 0, p, 0, false},
		{"empty", "", 0, p, 0, false},
		{"only separators", " - ", 0, p, 0, false},
		{"plus sign", "+" + code(T)[1:], 0, p, 0, false},
		{"unicode digit", "١٢٣٤٥٦", 0, p, 0, false},
		{"very long", strings.Repeat(" ", 1000) + code(T), 0, p, 0, false},
		{"invalid params", code(T), 0, Params{Digits: 4}, 0, false},
		{"8 digit code for 6 digit params", "12345678", 0, p, 0, false},
	}
	for _, tt := range tests {
		step, ok := Verify(secret, tt.code, now, tt.last, tt.p)
		if step != tt.wantStep || ok != tt.wantOK {
			t.Errorf("%s: Verify(%q, last %d) = %d, %v, want %d, %v", tt.name, tt.code, tt.last, step, ok, tt.wantStep, tt.wantOK)
		}
	}
	if _, ok := Verify(nil, code(T), now, 0, p); ok {
		t.Errorf("Verify with empty secret: got ok, want rejection")
	}
}

func TestVerifyAllAlgorithms(t *testing.T) {
	secret := []byte("an example secret of some length")
	now := time.Unix(1234567890, 0)
	for _, alg := range []Algorithm{SHA1, SHA256, SHA512} {
		for _, digits := range []int{6, 7, 8} {
			p := Params{Algorithm: alg, Digits: digits, Period: 45 * time.Second}
			T, _ := Step(now, p)
			for d := int64(-1); d <= 1; d++ {
				c, err := HOTP(secret, uint64(T+d), p)
				if err != nil {
					t.Fatal(err)
				}
				if len(c) != digits {
					t.Errorf("%v/%d: code %q has %d digits, want %d", alg, digits, c, len(c), digits)
				}
				step, ok := Verify(secret, c, now, 0, p)
				if !ok || step != T+d {
					t.Errorf("%v/%d: Verify(code of T%+d) = %d, %v, want %d, true", alg, digits, d, step, ok, T+d)
				}
			}
		}
	}
}

// TestVerifyBeforeEpoch checks the window is clipped at step 0 rather than
// wrapping to huge counters.
func TestVerifyBeforeEpoch(t *testing.T) {
	secret := []byte("12345678901234567890")
	c0, _ := HOTP(secret, 0, Params{})
	step, ok := Verify(secret, c0, time.Unix(-1, 0), -100, Params{})
	if !ok || step != 0 {
		t.Errorf("Verify(code of step 0 at unix -1) = %d, %v, want 0, true", step, ok)
	}
	if _, ok := Verify(secret, c0, time.Unix(-61, 0), -100, Params{}); ok {
		t.Errorf("Verify(code of step 0 at unix -61): got ok, want rejection")
	}
}

func TestVerifyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates; run without -race")
	}
	secret := []byte("12345678901234567890")
	now := time.Unix(1700000000, 0)
	for _, alg := range []Algorithm{SHA1, SHA256, SHA512} {
		p := Params{Algorithm: alg}
		wrong := wrongCode(t, secret, now, p)
		allocs := testing.AllocsPerRun(100, func() {
			if _, ok := Verify(secret, wrong, now, 0, p); ok {
				t.Fatal("wrong code accepted")
			}
		})
		if allocs != 0 {
			t.Errorf("%v: Verify of a wrong code allocates %v times per call, want 0", alg, allocs)
		}
		allocs = testing.AllocsPerRun(100, func() {
			if _, err := HOTPValue(secret, 1, p); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: HOTPValue allocates %v times per call, want 0", alg, allocs)
		}
	}
}

// wrongCode returns a 6 digit code that matches no step of the default
// window around now.
func wrongCode(tb testing.TB, secret []byte, now time.Time, p Params) string {
	tb.Helper()
	T, err := Step(now, p)
	if err != nil {
		tb.Fatal(err)
	}
	used := map[string]bool{}
	for s := T - 1; s <= T+1; s++ {
		c, err := HOTP(secret, uint64(s), p)
		if err != nil {
			tb.Fatal(err)
		}
		used[c] = true
	}
	for i := 0; ; i++ {
		c := FormatCode(uint32(i), 6)
		if !used[c] {
			return c
		}
	}
}
