package otp

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"testing"
	"time"

	potp "github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

var (
	benchSecret = []byte("12345678901234567890")
	benchNow    = time.Unix(1700000000, 0)
)

// BenchmarkVerifyWrongCode is Verify of a wrong 6 digit code against the
// default window T-1..T+1 (three HMAC-SHA1 computations).
func BenchmarkVerifyWrongCode(b *testing.B) {
	wrong := wrongCode(b, benchSecret, benchNow, Params{})
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Verify(benchSecret, wrong, benchNow, 0, Params{}); ok {
			b.Fatal("wrong code accepted")
		}
	}
}

// BenchmarkHMACSHA1x3 is the baseline: three keyed HMAC-SHA1 computations
// with crypto/hmac, reusing one prepared hmac hash with Reset.
func BenchmarkHMACSHA1x3(b *testing.B) {
	mac := hmac.New(sha1.New, benchSecret)
	mac.Reset()
	var msg [8]byte
	var sum [sha1.Size]byte
	step := uint64(benchNow.Unix() / 30)
	b.ReportAllocs()
	for b.Loop() {
		for i := range uint64(3) {
			binary.BigEndian.PutUint64(msg[:], step-1+i)
			mac.Reset()
			mac.Write(msg[:])
			mac.Sum(sum[:0])
		}
	}
}

// BenchmarkPquernaValidateCustom is github.com/pquerna/otp/totp doing the
// same as BenchmarkVerifyWrongCode.
func BenchmarkPquernaValidateCustom(b *testing.B) {
	wrong := wrongCode(b, benchSecret, benchNow, Params{})
	secret := EncodeSecret(benchSecret)
	opts := totp.ValidateOpts{Period: 30, Skew: 1, Digits: potp.DigitsSix, Algorithm: potp.AlgorithmSHA1}
	// Same configuration as ours: it accepts our code of step T+1.
	right, err := TOTP(benchSecret, benchNow.Add(30*time.Second), Params{})
	if err != nil {
		b.Fatal(err)
	}
	if ok, err := totp.ValidateCustom(right, secret, benchNow, opts); !ok || err != nil {
		b.Fatalf("ValidateCustom(code of T+1) = %v, %v, want true, nil", ok, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		ok, err := totp.ValidateCustom(wrong, secret, benchNow, opts)
		if ok || err != nil {
			b.Fatalf("ValidateCustom = %v, %v, want false, nil", ok, err)
		}
	}
}
