package otp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestGenerateSecret(t *testing.T) {
	tests := []struct {
		size    int
		wantLen int
		wantErr bool
	}{
		{0, 20, false},
		{16, 16, false},
		{32, 32, false},
		{64, 64, false},
		{15, 0, true},
		{-1, 0, true},
	}
	for _, tt := range tests {
		b, err := GenerateSecret(nil, tt.size)
		if (err != nil) != tt.wantErr || len(b) != tt.wantLen {
			t.Errorf("GenerateSecret(nil, %d) = %d bytes, %v, want %d bytes, error %v", tt.size, len(b), err, tt.wantLen, tt.wantErr)
		}
	}
	// The reader is used as given.
	r := bytes.NewReader(bytes.Repeat([]byte{7}, 20))
	b, err := GenerateSecret(r, 0)
	if err != nil || !bytes.Equal(b, bytes.Repeat([]byte{7}, 20)) {
		t.Errorf("GenerateSecret(reader of 7s) = %x, %v, want 20 bytes of 07", b, err)
	}
	// A short reader is an error.
	if _, err := GenerateSecret(bytes.NewReader(make([]byte, 10)), 0); err == nil {
		t.Errorf("GenerateSecret(10 byte reader, 20): got nil error, want an error")
	}
	if _, err := GenerateSecret(errReader{}, 0); err == nil || !strings.HasPrefix(err.Error(), "otp: ") {
		t.Errorf("GenerateSecret(failing reader): got %v, want an otp: error", err)
	}
	// Two secrets from crypto/rand differ.
	a, _ := GenerateSecret(nil, 0)
	c, _ := GenerateSecret(nil, 0)
	if bytes.Equal(a, c) {
		t.Errorf("two generated secrets are equal: %x", a)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

func TestEncodeDecodeSecret(t *testing.T) {
	secret := []byte("12345678901234567890")
	const enc = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	if got := EncodeSecret(secret); got != enc {
		t.Errorf("EncodeSecret = %q, want %q", got, enc)
	}
	if got, want := EncodeSecret([]byte("hello")), "NBSWY3DP"; got != want {
		t.Errorf("EncodeSecret(hello) = %q, want %q", got, want)
	}
	if got, want := EncodeSecret([]byte("hi")), "NBUQ"; got != want {
		t.Errorf("EncodeSecret(hi) = %q, want %q (no padding)", got, want)
	}
	tests := []struct {
		in      string
		want    []byte
		wantErr bool
	}{
		{enc, secret, false},
		{strings.ToLower(enc), secret, false},
		{"gezd gnbv gy3t qojq gezd gnbv gy3t qojq", secret, false},
		{"GEZD-GNBV-GY3T-QOJQ-GEZD-GNBV-GY3T-QOJQ", secret, false},
		{" GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n", secret, false},
		{"NBUQ", []byte("hi"), false},
		{"NBUQ====", []byte("hi"), false},
		{"nbuq", []byte("hi"), false},
		{"", nil, true},
		{"  ", nil, true},
		{"====", nil, true},
		{"GEZDGNBV1", nil, true}, // 1 is not base32
		{"GEZDGNBV!", nil, true},
		{"A", nil, true}, // impossible length
		{"ÄBCD", nil, true},
		{"ABC", nil, true},       // impossible length
		{"ABCDEF", nil, true},    // impossible length
		{"AZ", []byte{6}, false}, // non-zero unused bits are tolerated
		{"MZXW6===", []byte("foo"), false},
	}
	for _, tt := range tests {
		got, err := DecodeSecret(tt.in)
		if (err != nil) != tt.wantErr || !bytes.Equal(got, tt.want) {
			t.Errorf("DecodeSecret(%q) = %q, %v, want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	// Round trip of random secrets of every length.
	for n := 1; n <= 70; n++ {
		b, err := GenerateSecret(nil, max(n, MinSecretSize))
		if err != nil {
			t.Fatal(err)
		}
		b = b[:n]
		got, err := DecodeSecret(FormatSecretGroups(strings.ToLower(EncodeSecret(b))))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("round trip of %x: got %x, %v", b, got, err)
		}
	}
}

func TestFormatSecretGroups(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"ABC", "ABC"},
		{"ABCD", "ABCD"},
		{"ABCDE", "ABCD E"},
		{"ABCDEFGH", "ABCD EFGH"},
		{"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"},
		{"AB CD EF", "ABCD EF"},
	}
	for _, tt := range tests {
		if got := FormatSecretGroups(tt.in); got != tt.want {
			t.Errorf("FormatSecretGroups(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
