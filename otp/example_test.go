package otp_test

import (
	"fmt"
	"time"

	"github.com/twofold/twofold/otp"
)

func Example_verify() {
	// Enrolment: make a secret and the URI to show as a QR code. A fixed
	// secret keeps this example's output stable; use
	// otp.GenerateSecret(nil, 0) in real code.
	secret := []byte("12345678901234567890")
	uri, err := otp.URI("Example Co", "alice@example.com", secret, otp.Params{})
	if err != nil {
		panic(err)
	}
	fmt.Println(uri)
	fmt.Println(otp.FormatSecretGroups(otp.EncodeSecret(secret)))

	// The app computes the code for the current time...
	now := time.Unix(1111111109, 0)
	code, err := otp.TOTP(secret, now, otp.Params{})
	if err != nil {
		panic(err)
	}
	fmt.Println("code:", code)

	// ...and the server verifies it, storing the step it returns.
	var lastUsedStep int64 // 0: never used
	step, ok := otp.Verify(secret, code[:3]+" "+code[3:], now.Add(20*time.Second), lastUsedStep, otp.Params{})
	fmt.Println("accepted:", ok)
	lastUsedStep = step

	// The same code is not accepted twice.
	_, ok = otp.Verify(secret, code, now.Add(25*time.Second), lastUsedStep, otp.Params{})
	fmt.Println("replay accepted:", ok)

	// Output:
	// otpauth://totp/Example%20Co:alice@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Co&algorithm=SHA1&digits=6&period=30
	// GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ
	// code: 081804
	// accepted: true
	// replay accepted: false
}
