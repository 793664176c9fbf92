package otp

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

var uriSecret = []byte("12345678901234567890")

const uriSecretB32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

func TestURI(t *testing.T) {
	tests := []struct {
		issuer, account string
		p               Params
		want            string
		wantErr         string
	}{
		{"Example", "alice@example.com", Params{},
			"otpauth://totp/Example:alice@example.com?secret=" + uriSecretB32 + "&issuer=Example&algorithm=SHA1&digits=6&period=30", ""},
		{"Example Co", "Alice Smith", Params{Algorithm: SHA256, Digits: 8, Period: 60 * time.Second},
			"otpauth://totp/Example%20Co:Alice%20Smith?secret=" + uriSecretB32 + "&issuer=Example%20Co&algorithm=SHA256&digits=8&period=60", ""},
		{"A&B=C+D", "x/y?z#w", Params{Algorithm: SHA512, Digits: 7},
			"otpauth://totp/A%26B%3DC%2BD:x%2Fy%3Fz%23w?secret=" + uriSecretB32 + "&issuer=A%26B%3DC%2BD&algorithm=SHA512&digits=7&period=30", ""},
		{"", "bob", Params{},
			"otpauth://totp/bob?secret=" + uriSecretB32 + "&algorithm=SHA1&digits=6&period=30", ""},
		{"Ünïcode", "jörg", Params{},
			"otpauth://totp/%C3%9Cn%C3%AFcode:j%C3%B6rg?secret=" + uriSecretB32 + "&issuer=%C3%9Cn%C3%AFcode&algorithm=SHA1&digits=6&period=30", ""},
		{"Ex:ample", "bob", Params{}, "", "otp: issuer must not contain a colon"},
		{"Example", "bo:b", Params{}, "", "otp: account must not contain a colon"},
		{"Example", "", Params{}, "", "otp: account is empty"},
		{"Example", " bob", Params{}, "", "otp: account must not start with a space"},
		{"Example", "bo\nb", Params{}, "", "otp: account must not contain control characters"},
		{"Example", "bob", Params{Digits: 9}, "", "otp: digits must be 6, 7 or 8"},
	}
	for _, tt := range tests {
		got, err := URI(tt.issuer, tt.account, uriSecret, tt.p)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tt.want || gotErr != tt.wantErr {
			t.Errorf("URI(%q, %q, %+v) = %q, %q, want %q, %q", tt.issuer, tt.account, tt.p, got, gotErr, tt.want, tt.wantErr)
		}
		if strings.Contains(got, "+") {
			t.Errorf("URI(%q, %q) = %q contains +", tt.issuer, tt.account, got)
		}
	}
	if _, err := URI("Example", "bob", nil, Params{}); err == nil {
		t.Errorf("URI with empty secret: got nil error, want an error")
	}
	hotp, err := KeyInfo{Type: TypeHOTP, Issuer: "Ex", Account: "bob", Secret: uriSecret, Counter: 42}.URI()
	want := "otpauth://hotp/Ex:bob?secret=" + uriSecretB32 + "&issuer=Ex&algorithm=SHA1&digits=6&counter=42"
	if hotp != want || err != nil {
		t.Errorf("HOTP KeyInfo.URI() = %q, %v, want %q, nil", hotp, err, want)
	}
	if _, err := (KeyInfo{Type: "motp", Account: "bob", Secret: uriSecret}).URI(); err == nil {
		t.Errorf("KeyInfo{Type: motp}.URI(): got nil error, want an error")
	}
}

func TestParseURI(t *testing.T) {
	totp := func(issuer, account string, p Params) KeyInfo {
		return KeyInfo{Type: TypeTOTP, Issuer: issuer, Account: account, Secret: uriSecret, Params: p}
	}
	def := Params{Digits: 6, Period: 30 * time.Second}
	s := "secret=" + uriSecretB32
	tests := []struct {
		in      string
		want    KeyInfo
		wantErr bool
	}{
		{"otpauth://totp/Example:alice@example.com?" + s + "&issuer=Example", totp("Example", "alice@example.com", def), false},
		{"otpauth://totp/Example%20Co:Alice%20Smith?" + s + "&issuer=Example+Co&algorithm=sha256&digits=8&period=60",
			totp("Example Co", "Alice Smith", Params{Algorithm: SHA256, Digits: 8, Period: time.Minute}), false},
		{"otpauth://totp/Example:%20%20alice?" + s, totp("Example", "alice", def), false},
		{"otpauth://totp/Example%3Aalice?" + s, totp("Example", "alice", def), false},
		{"otpauth://totp/alice?" + s + "&issuer=Example", totp("Example", "alice", def), false},
		{"otpauth://totp/alice?" + s, totp("", "alice", def), false},
		{"otpauth://totp/alice?secret=gezd%20gnbv%20gy3t%20qojq%20gezd%20gnbv%20gy3t%20qojq====", totp("", "alice", def), false},
		{"otpauth://totp/a+b?" + s, totp("", "a+b", def), false},
		{"otpauth://TOTP/alice?" + s, totp("", "alice", def), false},
		{"OTPAUTH://totp/alice?" + s, totp("", "alice", def), false},
		{"otpauth://totp/Ex:alice?" + s + "&image=https%3A%2F%2Fexample.com%2Fl.png", totp("Ex", "alice", def), false},
		{"otpauth://totp/Ex:alice?" + s + "&counter=5", totp("Ex", "alice", def), false},
		{"otpauth://totp/Ex:alice?" + s + "&digits=7&algorithm=SHA512", totp("Ex", "alice", Params{Algorithm: SHA512, Digits: 7, Period: 30 * time.Second}), false},
		{"otpauth://hotp/Ex:alice?" + s + "&counter=18446744073709551615",
			KeyInfo{Type: TypeHOTP, Issuer: "Ex", Account: "alice", Secret: uriSecret, Params: Params{Digits: 6}, Counter: 1<<64 - 1}, false},
		{"otpauth://hotp/Ex:alice?" + s + "&counter=0&period=60",
			KeyInfo{Type: TypeHOTP, Issuer: "Ex", Account: "alice", Secret: uriSecret, Params: Params{Digits: 6}}, false},

		{"", KeyInfo{}, true},
		{"otpauth://", KeyInfo{}, true},
		{"http://totp/alice?" + s, KeyInfo{}, true},
		{"otpauth:totp/alice?" + s, KeyInfo{}, true},
		{"otpauth://motp/alice?" + s, KeyInfo{}, true},
		{"otpauth://totp:80/alice?" + s, KeyInfo{}, true},
		{"otpauth://user@totp/alice?" + s, KeyInfo{}, true},
		{"otpauth://totp?" + s, KeyInfo{}, true},
		{"otpauth://totp/?" + s, KeyInfo{}, true},
		{"otpauth://totp/Example:?" + s, KeyInfo{}, true},
		{"otpauth://totp/Example:%20?" + s, KeyInfo{}, true},
		{"otpauth://totp/a:b:c?" + s, KeyInfo{}, true},
		{"otpauth://totp/%20Ex:alice?" + s, KeyInfo{}, true},
		{"otpauth://totp/alice%0A?" + s, KeyInfo{}, true},
		{"otpauth://totp/alice%FF?" + s, KeyInfo{}, true},
		{"otpauth://totp/alice%zz?" + s, KeyInfo{}, true},
		{"otpauth://totp/Ex:alice", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?secret=", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?secret=GEZDGNBV1", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&" + s, KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&issuer=Other", KeyInfo{}, true},
		{"otpauth://totp/alice?" + s + "&issuer=A%3AB", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&algorithm=MD5", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&digits=5", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&digits=9", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&digits=six", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&period=0", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&period=-30", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&period=1.5", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&period=99999999999999999999", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&period=9223372037", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + "&x=%zz", KeyInfo{}, true},
		{"otpauth://totp/Ex:alice?" + s + ";x=1", KeyInfo{}, true},
		{"otpauth://hotp/Ex:alice?" + s, KeyInfo{}, true},
		{"otpauth://hotp/Ex:alice?" + s + "&counter=-1", KeyInfo{}, true},
		{"otpauth://hotp/Ex:alice?" + s + "&counter=18446744073709551616", KeyInfo{}, true},
		{"otpauth://hotp/Ex:alice?" + s + "&counter=1&counter=2", KeyInfo{}, true},
	}
	for _, tt := range tests {
		got, err := ParseURI(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseURI(%q): got error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "otp: ") {
				t.Errorf("ParseURI(%q): got error %q, want it to start with otp: ", tt.in, err)
			}
			if !reflect.DeepEqual(got, KeyInfo{}) {
				t.Errorf("ParseURI(%q) failed but returned %+v, want zero KeyInfo", tt.in, got)
			}
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseURI(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestURIRoundTrip(t *testing.T) {
	for _, p := range []Params{{}, {Algorithm: SHA256, Digits: 7, Period: 45 * time.Second}, {Algorithm: SHA512, Digits: 8, Period: time.Second}} {
		u, err := URI("Acme Inc. (EU)", "bob+tag@example.com", uriSecret, p)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseURI(u)
		if err != nil {
			t.Fatalf("ParseURI(%q): %v", u, err)
		}
		want := KeyInfo{Type: TypeTOTP, Issuer: "Acme Inc. (EU)", Account: "bob+tag@example.com", Secret: uriSecret, Params: p}
		if want.Params.Digits == 0 {
			want.Params.Digits = 6
		}
		if want.Params.Period == 0 {
			want.Params.Period = 30 * time.Second
		}
		if !reflect.DeepEqual(k, want) {
			t.Errorf("ParseURI(URI(...)) = %+v, want %+v", k, want)
		}
	}
}

func FuzzParseURI(f *testing.F) {
	s := "secret=" + uriSecretB32
	for _, seed := range []string{
		"otpauth://totp/Example:alice@example.com?" + s + "&issuer=Example&algorithm=SHA1&digits=6&period=30",
		"otpauth://totp/Example%20Co:Alice%20Smith?" + s + "&issuer=Example+Co&algorithm=sha256&digits=8&period=60",
		"otpauth://totp/alice?" + s,
		"otpauth://totp/Ex:%20alice?" + s + "&image=x",
		"otpauth://hotp/Ex:alice?" + s + "&counter=7&algorithm=SHA512&digits=7",
		"otpauth://hotp/Ex:alice?" + s,
		"otpauth://totp/Ex:alice?secret=A",
		"otpauth://totp/a:b:c?" + s,
		"otpauth://totp/Ex:alice?" + s + "&issuer=Other",
		"otpauth://totp/Ex:alice?" + s + "&period=0&digits=9",
		"otpauth://totp/%zz?" + s,
		"otpauth://totp?x",
		"http://example.com/",
		"",
		"%",
		"otpauth://totp/\x00?" + s,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		k, err := ParseURI(in)
		if err != nil {
			return
		}
		u, err := k.URI()
		if err != nil {
			t.Fatalf("ParseURI(%q) = %+v, but its URI() failed: %v", in, k, err)
		}
		k2, err := ParseURI(u)
		if err != nil {
			t.Fatalf("ParseURI(%q) failed on URI() %q of %+v: %v", in, u, k, err)
		}
		if !reflect.DeepEqual(k, k2) {
			t.Fatalf("round trip of %q through %q: got %+v, want %+v", in, u, k2, k)
		}
	})
}
