package otp

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// oathtool returns the path of the oathtool binary (Debian package
// oathtool), skipping the test if it is missing, or failing it under CI.
func oathtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("oathtool")
	if err != nil {
		msg := "oathtool not found on PATH; install it with: apt-get install -y oathtool"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

func runOathtool(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("oathtool %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestOathtoolTOTP(t *testing.T) {
	path := oathtool(t)
	rng := rand.New(rand.NewPCG(1, 2)) // fixed seed: failures are reproducible
	for _, alg := range []Algorithm{SHA1, SHA256, SHA512} {
		for i := range 50 {
			size := MinSecretSize + rng.IntN(64-MinSecretSize+1)
			secret := make([]byte, size)
			for j := range secret {
				secret[j] = byte(rng.Uint32())
			}
			digits := 6 + rng.IntN(3)
			period := time.Duration(1+rng.IntN(120)) * time.Second
			if i%3 == 0 {
				period = 30 * time.Second
			}
			unix := rng.Int64N(4102444800) // up to 2100
			p := Params{Algorithm: alg, Digits: digits, Period: period}
			got, err := TOTP(secret, time.Unix(unix, 0), p)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{
				"--totp=" + alg.String(),
				"--digits=" + strconv.Itoa(digits),
				"--time-step-size=" + strconv.Itoa(int(period/time.Second)) + "s",
				"--now=@" + strconv.FormatInt(unix, 10),
				"-b", EncodeSecret(secret),
			}
			want := runOathtool(t, path, args...)
			if got != want {
				t.Errorf("TOTP(%x, %d, %+v) = %q, want %q (oathtool %s)", secret, unix, p, got, want, strings.Join(args, " "))
			}
			// Our verifier accepts oathtool's code.
			if _, ok := Verify(secret, want, time.Unix(unix, 0), 0, p); !ok {
				t.Errorf("Verify(%x, %q, %d, %+v) rejected oathtool's code", secret, want, unix, p)
			}
		}
	}
}

func TestOathtoolHOTP(t *testing.T) {
	path := oathtool(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 50 {
		secret := make([]byte, MinSecretSize+rng.IntN(49))
		for j := range secret {
			secret[j] = byte(rng.Uint32())
		}
		digits := 6 + rng.IntN(3)
		counter := rng.Uint64()
		if i%2 == 0 {
			counter = rng.Uint64N(1000)
		}
		got, err := HOTP(secret, counter, Params{Digits: digits})
		if err != nil {
			t.Fatal(err)
		}
		// Hex key (oathtool's default) here, base32 in the TOTP test.
		args := []string{"--hotp", "--digits=" + strconv.Itoa(digits), "-c", strconv.FormatUint(counter, 10), hexString(secret)}
		want := runOathtool(t, path, args...)
		if got != want {
			t.Errorf("HOTP(%x, %d, %d digits) = %q, want %q", secret, counter, digits, got, want)
		}
	}
}

func hexString(b []byte) string {
	const hex = "0123456789abcdef"
	s := make([]byte, 0, 2*len(b))
	for _, c := range b {
		s = append(s, hex[c>>4], hex[c&15])
	}
	return string(s)
}
