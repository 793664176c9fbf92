package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/server"
	"github.com/twofold/twofold/otp"
)

func TestAPILoginWithoutTwoFactor(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)

	r := e.do(request{method: "POST", path: "/api/v1/login", body: map[string]string{"email": " Ada@Example.com ", "password": testPassword}})
	r.wantStatus(t, http.StatusOK)
	var lr loginResponse
	r.json(t, &lr)
	if lr.Status != "authenticated" || lr.Methods != nil {
		t.Errorf("login: got %+v, want status authenticated and no methods", lr)
	}
	c := r.cookie(sessionName)
	if c == nil {
		t.Fatal("no session cookie")
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure {
		t.Errorf("cookie: got HttpOnly=%v SameSite=%v Path=%q Secure=%v, want HttpOnly, Lax, /, not Secure over plain HTTP",
			c.HttpOnly, c.SameSite, c.Path, c.Secure)
	}
	if b, err := hex.DecodeString(c.Value); err != nil || len(b) != 8+32 {
		t.Errorf("token %q: want in hex a start time (8 bytes) and 256 random bits", c.Value)
	}

	r = e.do(request{method: "GET", path: "/api/v1/me", token: c.Value})
	r.wantStatus(t, http.StatusOK)
	var me struct {
		Email                string `json:"email"`
		TwoFactorEnabled     bool   `json:"two_factor_enabled"`
		BackupCodesRemaining int    `json:"backup_codes_remaining"`
	}
	r.json(t, &me)
	if me.Email != testEmail || me.TwoFactorEnabled || me.BackupCodesRemaining != 0 {
		t.Errorf("me: got %+v, want %s without 2FA", me, testEmail)
	}
}

func TestAPILoginWithTwoFactor(t *testing.T) {
	e := newEnv(t)
	secret, _ := e.userWith2FA()

	r := e.do(request{method: "POST", path: "/api/v1/login", body: map[string]string{"email": testEmail, "password": testPassword}})
	r.wantStatus(t, http.StatusOK)
	var lr loginResponse
	r.json(t, &lr)
	if lr.Status != "second_factor_required" || strings.Join(lr.Methods, ",") != "totp,backup_code" {
		t.Fatalf("login: got %+v, want second_factor_required with totp,backup_code", lr)
	}
	half := r.token(t)

	// Half signed in reaches nothing protected.
	e.do(request{method: "GET", path: "/api/v1/me", token: half}).wantError(t, http.StatusUnauthorized, "unauthenticated")
	e.do(request{method: "GET", path: "/api/v1/me/events", token: half}).wantError(t, http.StatusUnauthorized, "unauthenticated")
	e.do(request{method: "POST", path: "/api/v1/me/totp", token: half, body: map[string]string{"password": testPassword}}).
		wantError(t, http.StatusUnauthorized, "unauthenticated")
	e.do(request{method: "GET", path: "/dashboard", token: half}).wantRedirect(t, "/login")
	e.do(request{method: "GET", path: "/settings/security", token: half}).wantRedirect(t, "/login")

	code := e.totp(secret)
	r = e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "totp", "code": code[:3] + " " + code[3:]}})
	r.wantStatus(t, http.StatusOK)
	r.json(t, &lr)
	if lr.Status != "authenticated" {
		t.Errorf("second factor: got status %q, want authenticated", lr.Status)
	}
	full := r.token(t)
	if full == half {
		t.Fatal("the token did not change when the session became fully signed in")
	}
	e.do(request{method: "GET", path: "/api/v1/me", token: full}).wantStatus(t, http.StatusOK)
	e.do(request{method: "GET", path: "/dashboard", token: full}).wantStatus(t, http.StatusOK)

	// The half token is gone: neither a second factor nor /me takes it.
	e.do(request{method: "GET", path: "/api/v1/me", token: half}).wantError(t, http.StatusUnauthorized, "unauthenticated")
	e.clock.Advance(30 * time.Second)
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "totp", "code": e.totp(secret)}}).
		wantError(t, http.StatusUnauthorized, "login_expired")
}

func TestAPISessionTokenRotatesAtEachLogin(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	first, _ := e.login(testEmail, testPassword)
	r := e.do(request{method: "POST", path: "/api/v1/login", token: first, body: map[string]string{"email": testEmail, "password": testPassword}})
	r.wantStatus(t, http.StatusOK)
	second := r.token(t)
	if second == first {
		t.Fatal("a new login kept the old token")
	}
	e.do(request{method: "GET", path: "/api/v1/me", token: second}).wantStatus(t, http.StatusOK)
	e.do(request{method: "GET", path: "/api/v1/me", token: first}).wantError(t, http.StatusUnauthorized, "unauthenticated")
}

func TestAPITOTPCodeReplayRefused(t *testing.T) {
	e := newEnv(t)
	secret, _ := e.userWith2FA()
	half, _ := e.login(testEmail, testPassword)
	code := e.totp(secret)
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "totp", "code": code}}).
		wantStatus(t, http.StatusOK)

	// Another sign-in, in the same 30 seconds, with the same code.
	half2, _ := e.login(testEmail, testPassword)
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half2, body: map[string]string{"method": "totp", "code": code}}).
		wantError(t, http.StatusUnauthorized, "invalid_code")
}

func TestAPIPendingLoginExpires(t *testing.T) {
	e := newEnv(t)
	secret, _ := e.userWith2FA()
	half, _ := e.login(testEmail, testPassword)
	e.clock.Advance(11 * time.Minute)
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "totp", "code": e.totp(secret)}}).
		wantError(t, http.StatusUnauthorized, "login_expired")
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", body: map[string]string{"method": "totp", "code": e.totp(secret)}}).
		wantError(t, http.StatusUnauthorized, "login_expired")
	e.do(request{method: "GET", path: "/login/token", token: half}).wantRedirect(t, "/login?msg=expired")
}

func TestAPIUnknownEmailAnswersLikeWrongPassword(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	wrong := e.do(request{method: "POST", path: "/api/v1/login", body: map[string]string{"email": testEmail, "password": "not the password at all"}})
	unknown := e.do(request{method: "POST", path: "/api/v1/login", body: map[string]string{"email": "nobody@example.com", "password": "not the password at all"}})
	wrong.wantError(t, http.StatusUnauthorized, "invalid_credentials")
	if unknown.Code != wrong.Code || unknown.Body.String() != wrong.Body.String() {
		t.Errorf("unknown email: got %d %s, want the answer to a wrong password: %d %s", unknown.Code, unknown.Body, wrong.Code, wrong.Body)
	}
	if unknown.cookie(sessionName) != nil || wrong.cookie(sessionName) != nil {
		t.Error("a failed login set a session cookie")
	}
}

func TestAPIPasswordThrottled(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	for i := range mfa.FreeFailures {
		r := e.do(request{method: "POST", path: "/api/v1/login", body: map[string]string{"email": testEmail, "password": "wrong password " + strconv.Itoa(i)}})
		r.wantError(t, http.StatusUnauthorized, "invalid_credentials")
	}
	r := e.do(request{method: "POST", path: "/api/v1/login", body: map[string]string{"email": testEmail, "password": testPassword}})
	r.wantError(t, http.StatusTooManyRequests, "rate_limited")
	wantRetryAfter(t, r)
}

func wantRetryAfter(t *testing.T, r response) {
	t.Helper()
	ra := r.Header().Get("Retry-After")
	if n, err := strconv.Atoi(ra); err != nil || n < 1 {
		t.Errorf("Retry-After: got %q, want a positive number of seconds", ra)
	}
}

func TestAPISecondFactorThrottled(t *testing.T) {
	e := newEnv(t)
	secret, codes := e.userWith2FA()
	half, _ := e.login(testEmail, testPassword)
	wrong := e.wrongCode(secret)
	for range mfa.FreeFailures {
		e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "totp", "code": wrong}}).
			wantError(t, http.StatusUnauthorized, "invalid_code")
	}
	// Now even the right code is refused, with a time to come back.
	r := e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "totp", "code": e.totp(secret)}})
	r.wantError(t, http.StatusTooManyRequests, "rate_limited")
	wantRetryAfter(t, r)

	// A backup code still works while TOTP is throttled.
	r = e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "backup_code", "code": codes[0]}})
	r.wantStatus(t, http.StatusOK)
	e.do(request{method: "GET", path: "/api/v1/me", token: r.token(t)}).wantStatus(t, http.StatusOK)
}

// A request that leaves out the code is malformed: it is answered 400 and
// not counted against the throttle as a wrong code would be.
func TestAPISecondFactorMissingCode(t *testing.T) {
	e := newEnv(t)
	secret, _ := e.userWith2FA()
	half, _ := e.login(testEmail, testPassword)
	for _, body := range []string{`{"method":"totp"}`, `{"method":"totp","code":null}`, `{"code":"123456"}`} {
		for range mfa.FreeFailures {
			r := e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: body,
				header: map[string]string{"Content-Type": "application/json"}})
			r.wantError(t, http.StatusBadRequest, "invalid_request")
			if !strings.Contains(r.Body.String(), "is missing") {
				t.Errorf("%s: the message does not name the missing field: %s", body, r.Body)
			}
		}
	}
	r := e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "totp", "code": e.totp(secret)}})
	r.wantStatus(t, http.StatusOK)
}

func TestAPISecondFactorBadMethod(t *testing.T) {
	e := newEnv(t)
	e.userWith2FA()
	half, _ := e.login(testEmail, testPassword)
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "sms", "code": "123456"}}).
		wantError(t, http.StatusBadRequest, "method_unavailable")
}

func TestAPIEnableFlow(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	token, _ := e.login(testEmail, testPassword)
	other, _ := e.login(testEmail, testPassword) // signed in elsewhere

	e.do(request{method: "POST", path: "/api/v1/me/totp", body: map[string]string{"password": testPassword}}).
		wantError(t, http.StatusUnauthorized, "unauthenticated")
	e.do(request{method: "POST", path: "/api/v1/me/totp", token: token, body: map[string]string{"password": "wrong password here"}}).
		wantError(t, http.StatusForbidden, "invalid_password")
	e.do(request{method: "POST", path: "/api/v1/me/totp/confirm", token: token, body: map[string]string{"code": "123456"}}).
		wantError(t, http.StatusConflict, "no_pending_enrollment")

	enr := e.beginTOTP(token)
	if len(enr.Secret) != 32 {
		t.Errorf("secret: got %d base32 characters, want 32 (160 bits)", len(enr.Secret))
	}
	if !strings.HasPrefix(enr.OTPAuthURI, "otpauth://totp/") || !strings.Contains(enr.OTPAuthURI, "secret="+enr.Secret) {
		t.Errorf("otpauth_uri: got %q, want a totp key URI holding the secret", enr.OTPAuthURI)
	}
	pngBytes, err := base64.StdEncoding.DecodeString(enr.QRPNG)
	if err != nil {
		t.Fatalf("qr_png is not base64: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(pngBytes))
	if err != nil {
		t.Fatalf("qr_png is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != b.Dy() || b.Dx() < 150 || b.Dx() > 300 {
		t.Errorf("QR image: got %dx%d, want a square of about 256 px", b.Dx(), b.Dy())
	}

	// Still off until confirmed.
	var me struct {
		TwoFactorEnabled     bool `json:"two_factor_enabled"`
		BackupCodesRemaining int  `json:"backup_codes_remaining"`
	}
	e.do(request{method: "GET", path: "/api/v1/me", token: token}).json(t, &me)
	if me.TwoFactorEnabled {
		t.Error("two_factor_enabled before confirmation")
	}

	secret := decodeSecret(t, enr.Secret)
	e.do(request{method: "POST", path: "/api/v1/me/totp/confirm", token: token, body: map[string]string{"code": e.wrongCode(secret)}}).
		wantError(t, http.StatusBadRequest, "invalid_code")
	r := e.do(request{method: "POST", path: "/api/v1/me/totp/confirm", token: token, body: map[string]string{"code": e.totp(secret)}})
	r.wantStatus(t, http.StatusOK)
	// Every session from before ends, the caller's included; the caller
	// gets a new one.
	for _, old := range []string{token, other} {
		e.do(request{method: "GET", path: "/api/v1/me", token: old}).wantError(t, http.StatusUnauthorized, "unauthenticated")
	}
	token = r.token(t)
	var cr codesResponse
	r.json(t, &cr)
	if len(cr.BackupCodes) != 10 {
		t.Fatalf("backup codes: got %d, want 10", len(cr.BackupCodes))
	}
	seen := map[string]bool{}
	for _, c := range cr.BackupCodes {
		if seen[c] || len(c) < 12 {
			t.Errorf("backup code %q: repeated or too short", c)
		}
		seen[c] = true
	}

	e.do(request{method: "GET", path: "/api/v1/me", token: token}).json(t, &me)
	if !me.TwoFactorEnabled || me.BackupCodesRemaining != 10 {
		t.Errorf("me: got %+v, want two_factor_enabled true and 10 backup codes", me)
	}
	// Enabling twice is a conflict, not a fault.
	e.do(request{method: "POST", path: "/api/v1/me/totp", token: token, body: map[string]string{"password": testPassword}}).
		wantError(t, http.StatusConflict, "two_factor_already_enabled")
	// So is confirming twice: the codes are not made or shown again.
	e.do(request{method: "POST", path: "/api/v1/me/totp/confirm", token: token, body: map[string]string{"code": e.totp(secret)}}).
		wantError(t, http.StatusConflict, "two_factor_already_enabled")
	e.do(request{method: "GET", path: "/api/v1/me", token: token}).json(t, &me)
	if me.BackupCodesRemaining != 10 {
		t.Errorf("backup codes after a second confirmation: got %d, want the 10 of the first", me.BackupCodesRemaining)
	}
}

// TestAPIWrongCodeOrPasswordKeepsSession: a signed-in user who types a
// wrong code or password is answered with an error that does not say the
// session is gone (401 does, and a client would sign the user out), and
// stays signed in; guessing is throttled all the same. A wrong code at
// sign-in is still 401.
func TestAPIWrongCodeOrPasswordKeepsSession(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	token, _ := e.login(testEmail, testPassword)
	secret := decodeSecret(t, e.beginTOTP(token).Secret)

	for range mfa.FreeFailures {
		r := e.do(request{method: "POST", path: "/api/v1/me/totp/confirm", token: token, body: map[string]string{"code": e.wrongCode(secret)}})
		r.wantError(t, http.StatusBadRequest, "invalid_code")
		var body apiError
		r.json(t, &body)
		if body.Error.Message != mfa.ErrInvalidSetupCode.Message {
			t.Errorf("message: got %q, want %q", body.Error.Message, mfa.ErrInvalidSetupCode.Message)
		}
		e.do(request{method: "GET", path: "/api/v1/me", token: token}).wantStatus(t, http.StatusOK)
	}
	// Throttled like a wrong code at sign-in: even the right code waits.
	r := e.do(request{method: "POST", path: "/api/v1/me/totp/confirm", token: token, body: map[string]string{"code": e.totp(secret)}})
	r.wantError(t, http.StatusTooManyRequests, "rate_limited")
	wantRetryAfter(t, r)
	e.clock.Advance(time.Minute) // past the lock, within the 15 minutes of the setup
	r = e.do(request{method: "POST", path: "/api/v1/me/totp/confirm", token: token, body: map[string]string{"code": e.totp(secret)}})
	r.wantStatus(t, http.StatusOK)
	token = r.token(t)
	e.pastSpentSteps(secret)

	// A wrong password to confirm a change is 403, and the session stays.
	for _, path := range []string{"/api/v1/me/backup-codes", "/api/v1/me/two-factor/disable"} {
		e.do(request{method: "POST", path: path, token: token, body: map[string]string{"password": "wrong password here"}}).
			wantError(t, http.StatusForbidden, "invalid_password")
		e.do(request{method: "GET", path: "/api/v1/me", token: token}).wantStatus(t, http.StatusOK)
	}
	e.do(request{method: "POST", path: "/api/v1/me/password", token: token,
		body: map[string]string{"current_password": "wrong password here", "new_password": "a brand new passphrase"}}).
		wantError(t, http.StatusForbidden, "invalid_password")
	e.do(request{method: "GET", path: "/api/v1/me", token: token}).wantStatus(t, http.StatusOK)

	// At sign-in, a wrong code is a failure to authenticate: 401.
	half, _ := e.login(testEmail, testPassword)
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "totp", "code": e.wrongCode(secret)}}).
		wantError(t, http.StatusUnauthorized, "invalid_code")
}

func TestAPIQRCodeScans(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	token, _ := e.login(testEmail, testPassword)
	enr := e.beginTOTP(token)
	pngBytes, err := base64.StdEncoding.DecodeString(enr.QRPNG)
	if err != nil {
		t.Fatal(err)
	}
	if got := zbarDecode(t, pngBytes); got != enr.OTPAuthURI {
		t.Errorf("zbarimg read %q, want the otpauth URI %q", got, enr.OTPAuthURI)
	}
}

func TestAPIBackupCodeSingleUse(t *testing.T) {
	e := newEnv(t)
	_, codes := e.userWith2FA()
	half, _ := e.login(testEmail, testPassword)
	r := e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half,
		body: map[string]string{"method": "backup_code", "code": strings.ToUpper(codes[3])}})
	r.wantStatus(t, http.StatusOK)
	full := r.token(t)
	var me struct {
		BackupCodesRemaining int `json:"backup_codes_remaining"`
	}
	e.do(request{method: "GET", path: "/api/v1/me", token: full}).json(t, &me)
	if me.BackupCodesRemaining != 9 {
		t.Errorf("backup_codes_remaining: got %d, want 9", me.BackupCodesRemaining)
	}

	half, _ = e.login(testEmail, testPassword)
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "backup_code", "code": codes[3]}}).
		wantError(t, http.StatusUnauthorized, "invalid_code")
}

func TestAPIRegenerateBackupCodes(t *testing.T) {
	e := newEnv(t)
	secret, old := e.userWith2FA()
	full := e.fullLogin(secret)

	e.do(request{method: "POST", path: "/api/v1/me/backup-codes", token: full, body: map[string]string{"password": "wrong password here"}}).
		wantError(t, http.StatusForbidden, "invalid_password")
	r := e.do(request{method: "POST", path: "/api/v1/me/backup-codes", token: full, body: map[string]string{"password": testPassword}})
	r.wantStatus(t, http.StatusOK)
	var cr codesResponse
	r.json(t, &cr)
	if len(cr.BackupCodes) != 10 {
		t.Fatalf("backup codes: got %d, want 10", len(cr.BackupCodes))
	}

	half, _ := e.login(testEmail, testPassword)
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "backup_code", "code": old[0]}}).
		wantError(t, http.StatusUnauthorized, "invalid_code")
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "backup_code", "code": cr.BackupCodes[0]}}).
		wantStatus(t, http.StatusOK)
}

func TestAPIDisableTwoFactor(t *testing.T) {
	e := newEnv(t)
	secret, _ := e.userWith2FA()
	full := e.fullLogin(secret)

	e.do(request{method: "POST", path: "/api/v1/me/two-factor/disable", token: full, body: map[string]string{"password": "wrong password here"}}).
		wantError(t, http.StatusForbidden, "invalid_password")
	other := e.fullLogin(secret) // signed in elsewhere
	r := e.do(request{method: "POST", path: "/api/v1/me/two-factor/disable", token: full, body: map[string]string{"password": testPassword}})
	r.wantStatus(t, http.StatusNoContent)
	if r.Body.Len() != 0 {
		t.Errorf("204 body: got %q, want none", r.Body)
	}
	// Every session from before ends; the caller gets a new one.
	for _, old := range []string{full, other} {
		e.do(request{method: "GET", path: "/api/v1/me", token: old}).wantError(t, http.StatusUnauthorized, "unauthenticated")
	}
	e.do(request{method: "POST", path: "/api/v1/me/two-factor/disable", token: r.token(t), body: map[string]string{"password": testPassword}}).
		wantError(t, http.StatusConflict, "two_factor_not_enabled")

	_, status := e.login(testEmail, testPassword)
	if status != "authenticated" {
		t.Errorf("login after disable: got %q, want authenticated", status)
	}
}

func TestAPIChangePassword(t *testing.T) {
	e := newEnv(t)
	secret, _ := e.userWith2FA()
	full := e.fullLogin(secret)
	other := e.fullLogin(secret)
	const next = "a brand new passphrase"
	change := func(current, next string) response {
		return e.do(request{method: "POST", path: "/api/v1/me/password", token: full,
			body: map[string]string{"current_password": current, "new_password": next}})
	}

	change("wrong password here", next).wantError(t, http.StatusForbidden, "invalid_password")
	change(testPassword, "short").wantError(t, http.StatusBadRequest, "weak_password")
	e.do(request{method: "POST", path: "/api/v1/me/password", body: map[string]string{"current_password": testPassword, "new_password": next}}).
		wantError(t, http.StatusUnauthorized, "unauthenticated")

	r := change(testPassword, next)
	r.wantStatus(t, http.StatusNoContent)
	c := r.cookie(sessionName)
	if c == nil || c.Value == "" || c.Value == full || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Fatalf("cookie after the change: got %+v, want a new HttpOnly, SameSite=Lax session", c)
	}
	for _, old := range []string{full, other} {
		e.do(request{method: "GET", path: "/api/v1/me", token: old}).wantError(t, http.StatusUnauthorized, "unauthenticated")
	}
	e.do(request{method: "GET", path: "/api/v1/me", token: c.Value}).wantStatus(t, http.StatusOK)
	if _, status := e.login(testEmail, next); status != "second_factor_required" {
		t.Errorf("login with the new password: got %q, want second_factor_required", status)
	}
	e.do(request{method: "POST", path: "/api/v1/login", body: map[string]string{"email": testEmail, "password": testPassword}}).
		wantError(t, http.StatusUnauthorized, "invalid_credentials")
}

// Guessing the current password to change it is throttled as signing in is.
func TestAPIChangePasswordThrottled(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	token, _ := e.login(testEmail, testPassword)
	change := func(current string) response {
		return e.do(request{method: "POST", path: "/api/v1/me/password", token: token,
			body: map[string]string{"current_password": current, "new_password": "a brand new passphrase"}})
	}
	for i := range mfa.FreeFailures {
		change("wrong password "+strconv.Itoa(i)).wantError(t, http.StatusForbidden, "invalid_password")
	}
	r := change(testPassword)
	r.wantError(t, http.StatusTooManyRequests, "rate_limited")
	wantRetryAfter(t, r)
	e.do(request{method: "GET", path: "/api/v1/me", token: token}).wantStatus(t, http.StatusOK) // nothing changed
}

func TestAPILogout(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	token, _ := e.login(testEmail, testPassword)
	r := e.do(request{method: "POST", path: "/api/v1/logout", token: token})
	r.wantStatus(t, http.StatusNoContent)
	if c := r.cookie(sessionName); c == nil || c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("logout cookie: got %+v, want it cleared", c)
	}
	e.do(request{method: "GET", path: "/api/v1/me", token: token}).wantError(t, http.StatusUnauthorized, "unauthenticated")
	// Logging out without a session is not an error.
	e.do(request{method: "POST", path: "/api/v1/logout"}).wantStatus(t, http.StatusNoContent)
	// Logout is a POST: GET changes nothing.
	e.do(request{method: "GET", path: "/api/v1/logout"}).wantStatus(t, http.StatusMethodNotAllowed)
	e.do(request{method: "GET", path: "/logout"}).wantStatus(t, http.StatusMethodNotAllowed)
}

// A request no route takes is answered like every other error: JSON under
// /api/, an error page elsewhere; a wrong method says which are allowed.
func TestUnmatchedRoutes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/api/v1/nope", 404, "not_found", ""},
		{"DELETE", "/api/v1/login", 405, "method_not_allowed", "POST"},
		{"GET", "/nope", 404, "not_found", ""},
		{"PUT", "/login", 405, "method_not_allowed", "GET, HEAD, POST"},
	}
	for _, tt := range tests {
		r := e.do(request{method: tt.method, path: tt.path})
		if got := r.Header().Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
		if isAPIPath := strings.HasPrefix(tt.path, "/api/"); isAPIPath {
			r.wantError(t, tt.status, tt.code)
			continue
		}
		r.wantStatus(t, tt.status)
		if ct := r.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("%s %s: Content-Type %q, want an HTML page", tt.method, tt.path, ct)
		}
		page{path: tt.path, body: r.Body.String()}.mustContain(t, "<main", `href="/static/style.css"`)
	}
}

func TestAPIEvents(t *testing.T) {
	e := newEnv(t)
	secret, codes := e.userWith2FA()
	half, _ := e.login(testEmail, testPassword)
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "totp", "code": e.wrongCode(secret)}})
	r := e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half, body: map[string]string{"method": "backup_code", "code": codes[0]}})
	full := r.token(t)

	r = e.do(request{method: "GET", path: "/api/v1/me/events", token: full})
	r.wantStatus(t, http.StatusOK)
	var got struct {
		Events []struct {
			Type   string `json:"type"`
			At     string `json:"at"`
			IP     string `json:"ip"`
			Detail string `json:"detail"`
		} `json:"events"`
	}
	r.json(t, &got)
	var types []string
	for _, ev := range got.Events {
		types = append(types, ev.Type)
		at, err := time.Parse(time.RFC3339, ev.At)
		if err != nil || !strings.HasSuffix(ev.At, "Z") || at.Location() != time.UTC {
			t.Errorf("event at: got %q, want RFC 3339 in UTC", ev.At)
		}
		if ev.IP != "192.0.2.1" {
			t.Errorf("event %s ip: got %q, want 192.0.2.1", ev.Type, ev.IP)
		}
	}
	want := "backup_code_used login_succeeded second_factor_failed logout two_factor_enabled login_succeeded account_created"
	if g := strings.Join(types, " "); g != want {
		t.Errorf("event types, newest first:\n got %s\nwant %s", g, want)
	}
}

func TestClientIP(t *testing.T) {
	tests := []struct {
		name  string
		trust bool
		xff   string
		want  string
	}{
		{"peer address", false, "", "192.0.2.1"},
		{"header ignored unless trusted", false, "203.0.113.9", "192.0.2.1"},
		{"trusted proxy", true, "203.0.113.9", "203.0.113.9"},
		{"entry the proxy added", true, "10.1.1.1, 203.0.113.9", "203.0.113.9"},
		{"garbage falls back to the peer", true, "not-an-ip", "192.0.2.1"},
		{"no header falls back to the peer", true, "", "192.0.2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withConfig(func(c *server.Config) { c.TrustProxyHeaders = tt.trust }))
			e.createUser(testEmail, testPassword)
			h := map[string]string{}
			if tt.xff != "" {
				h["X-Forwarded-For"] = tt.xff
			}
			r := e.do(request{method: "POST", path: "/api/v1/login", header: h, body: map[string]string{"email": testEmail, "password": testPassword}})
			r.wantStatus(t, http.StatusOK)
			var got struct {
				Events []struct {
					Type string `json:"type"`
					IP   string `json:"ip"`
				} `json:"events"`
			}
			e.do(request{method: "GET", path: "/api/v1/me/events", token: r.token(t)}).json(t, &got)
			if len(got.Events) == 0 || got.Events[0].Type != "login_succeeded" || got.Events[0].IP != tt.want {
				t.Errorf("newest event: got %+v, want login_succeeded from %s", got.Events, tt.want)
			}
		})
	}
}

func TestAPISignup(t *testing.T) {
	t.Run("closed", func(t *testing.T) {
		e := newEnv(t)
		e.do(request{method: "POST", path: "/api/v1/signup", body: map[string]string{"email": testEmail, "password": testPassword}}).
			wantError(t, http.StatusForbidden, "signup_disabled")
		e.do(request{method: "GET", path: "/signup"}).wantStatus(t, http.StatusNotFound)
	})
	t.Run("open", func(t *testing.T) {
		e := newEnv(t, withConfig(func(c *server.Config) { c.AllowSignup = true }))
		r := e.do(request{method: "POST", path: "/api/v1/signup", body: map[string]string{"email": "Ada@Example.com", "password": testPassword}})
		r.wantStatus(t, http.StatusCreated)
		var got struct {
			Email string `json:"email"`
		}
		r.json(t, &got)
		if got.Email != testEmail {
			t.Errorf("email: got %q, want %q", got.Email, testEmail)
		}
		if r.cookie(sessionName) != nil {
			t.Error("sign-up signed the user in; it should not")
		}
		e.do(request{method: "POST", path: "/api/v1/signup", body: map[string]string{"email": testEmail, "password": testPassword}}).
			wantError(t, http.StatusConflict, "email_taken")
		e.do(request{method: "POST", path: "/api/v1/signup", body: map[string]string{"email": "bob@example.com", "password": "short"}}).
			wantError(t, http.StatusBadRequest, "weak_password")
		e.do(request{method: "POST", path: "/api/v1/signup", body: map[string]string{"email": "not an email", "password": testPassword}}).
			wantError(t, http.StatusBadRequest, "invalid_email")
		_, status := e.login(testEmail, testPassword)
		if status != "authenticated" {
			t.Errorf("login after sign-up: got %q, want authenticated", status)
		}
	})
	t.Run("probing taken addresses is throttled", func(t *testing.T) {
		// The answer tells whether an address is taken, so a client that
		// keeps naming taken ones is slowed down like a password guesser,
		// and then even a free address waits.
		e := newEnv(t, withConfig(func(c *server.Config) { c.AllowSignup, c.TrustProxyHeaders = true, true }))
		e.createUser(testEmail, testPassword)
		signup := func(email, ip string) response {
			return e.do(request{method: "POST", path: "/api/v1/signup", header: map[string]string{"X-Forwarded-For": ip},
				body: map[string]string{"email": email, "password": testPassword}})
		}
		for range mfa.FreeFailures {
			signup(testEmail, "203.0.113.9").wantError(t, http.StatusConflict, "email_taken")
		}
		r := signup("free@example.com", "203.0.113.9")
		r.wantError(t, http.StatusTooManyRequests, "rate_limited")
		wantRetryAfter(t, r)
		signup("free@example.com", "198.51.100.4").wantStatus(t, http.StatusCreated) // another client

		// An IPv6 client is one /64: another address of it waits too.
		for i := range mfa.FreeFailures {
			signup(testEmail, fmt.Sprintf("2001:db8:1:2::%x", i+1)).wantError(t, http.StatusConflict, "email_taken")
		}
		signup("other@example.com", "2001:db8:1:2:ffff::9").wantError(t, http.StatusTooManyRequests, "rate_limited")
		signup("other@example.com", "2001:db8:1:3::1").wantStatus(t, http.StatusCreated)
	})
}

func TestAPIMalformedRequests(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		code        string
	}{
		{"truncated", "application/json", `{"email":`, 400, "invalid_request"},
		{"not an object", "application/json", `["a"]`, 400, "invalid_request"},
		{"wrong type", "application/json", `{"email": 42, "password": "x"}`, 400, "invalid_request"},
		{"empty", "application/json", ``, 400, "invalid_request"},
		{"two objects", "application/json", `{"email":"a@b.c"}{"email":"d@e.f"}`, 400, "invalid_request"},
		{"garbage", "application/json; charset=utf-8", `<html>`, 400, "invalid_request"},
		{"missing field", "application/json", `{"email":"a@b.c"}`, 400, "invalid_request"},
		{"null field", "application/json", `{"email":"a@b.c","password":null}`, 400, "invalid_request"},
		{"form body", "application/x-www-form-urlencoded", `email=a&password=b`, 415, "unsupported_media_type"},
		{"no content type", "", `{"email":"a@b.c","password":"x"}`, 415, "unsupported_media_type"},
		{"too large", "application/json", `{"email":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "request_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(request{method: "POST", path: "/api/v1/login", body: tt.body, header: map[string]string{"Content-Type": tt.contentType}})
			r.wantError(t, tt.status, tt.code)
		})
	}
	if strings.Contains(e.logs.String(), "level=ERROR") {
		t.Errorf("a client's mistake was logged as a server error:\n%s", e.logs)
	}
}

func TestCrossOriginPostRejected(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	evil := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
	r := e.do(request{method: "POST", path: "/api/v1/login", header: evil, body: map[string]string{"email": testEmail, "password": testPassword}})
	r.wantError(t, http.StatusForbidden, "cross_origin_request")
	if r.cookie(sessionName) != nil {
		t.Error("a cross-origin login set a session cookie")
	}
	r = e.do(request{method: "POST", path: "/login", header: evil, form: true, body: "email=" + testEmail + "&password=" + testPassword})
	r.wantStatus(t, http.StatusForbidden)
	if r.cookie(sessionName) != nil {
		t.Error("a cross-origin form login set a session cookie")
	}
	// Only an Origin header (an older browser): still refused.
	r = e.do(request{method: "POST", path: "/api/v1/logout", header: map[string]string{"Origin": "https://evil.example"}})
	r.wantStatus(t, http.StatusForbidden)

	// The same origin passes.
	same := map[string]string{"Origin": "http://example.com", "Sec-Fetch-Site": "same-origin"}
	e.do(request{method: "POST", path: "/api/v1/login", header: same, body: map[string]string{"email": testEmail, "password": testPassword}}).
		wantStatus(t, http.StatusOK)
	// A cross-site GET is allowed: it changes nothing.
	e.do(request{method: "GET", path: "/login", header: evil}).wantStatus(t, http.StatusOK)
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	token, _ := e.login(testEmail, testPassword)
	const csp = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	tests := []struct {
		method, path string
		token        string
		noStore      bool
	}{
		{"GET", "/login", "", true},
		{"GET", "/dashboard", token, true},
		{"GET", "/settings/security", token, true},
		{"GET", "/dashboard", "", true}, // a redirect
		{"GET", "/api/v1/me", token, true},
		{"GET", "/api/v1/me", "", true}, // an error
		{"POST", "/api/v1/login", "", true},
		{"GET", "/healthz", "", true},
		{"GET", "/no/such/page", "", true},
		{"GET", "/static/style.css", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := e.do(request{method: tt.method, path: tt.path, token: tt.token})
			h := r.Header()
			if got := h.Get("Content-Security-Policy"); got != csp {
				t.Errorf("Content-Security-Policy: got %q, want %q", got, csp)
			}
			if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options: got %q, want nosniff", got)
			}
			if got := h.Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("Referrer-Policy: got %q, want no-referrer", got)
			}
			if got := h.Get("Cache-Control"); (got == "no-store") != tt.noStore {
				t.Errorf("Cache-Control: got %q, want no-store: %v", got, tt.noStore)
			}
		})
	}
}

func TestStaticFiles(t *testing.T) {
	e := newEnv(t)
	r := e.do(request{method: "GET", path: "/static/style.css"})
	r.wantStatus(t, http.StatusOK)
	if ct := r.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/css") {
		t.Errorf("Content-Type: got %q, want text/css", ct)
	}
	if !strings.Contains(r.Body.String(), "@media print") {
		t.Error("the stylesheet has no print rules")
	}
	e.do(request{method: "GET", path: "/static/"}).wantStatus(t, http.StatusNotFound)
	e.do(request{method: "GET", path: "/static/nope.css"}).wantStatus(t, http.StatusNotFound)
}

func TestHealthz(t *testing.T) {
	e := newEnv(t)
	r := e.do(request{method: "GET", path: "/healthz"})
	r.wantStatus(t, http.StatusOK)
	if r.Body.String() != "ok" {
		t.Errorf("body: got %q, want ok", r.Body)
	}
}

func TestSecureCookies(t *testing.T) {
	const hostName = "__Host-" + sessionName
	tests := []struct {
		name   string
		config bool // SecureCookies
		https  bool // the request arrives over TLS
		proxy  bool // TrustProxyHeaders, and the proxy says X-Forwarded-Proto: https
	}{
		{"configured, behind a TLS proxy", true, false, false},
		{"request over TLS", false, true, false},
		{"trusted proxy says https", false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withConfig(func(c *server.Config) { c.SecureCookies = tt.config; c.TrustProxyHeaders = tt.proxy }))
			var header map[string]string
			if tt.proxy {
				header = map[string]string{"X-Forwarded-Proto": "https"}
			}
			e.createUser(testEmail, testPassword)
			r := e.do(request{method: "POST", path: "/api/v1/login", https: tt.https, header: header, body: map[string]string{"email": testEmail, "password": testPassword}})
			r.wantStatus(t, http.StatusOK)
			c := r.cookie(hostName)
			if c == nil {
				t.Fatalf("no %s cookie; Set-Cookie: %q", hostName, r.Header().Values("Set-Cookie"))
			}
			if !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("cookie: got %+v, want Secure, HttpOnly, Path=/, no Domain, SameSite=Lax", c)
			}
			e.do(request{method: "GET", path: "/api/v1/me", https: tt.https, header: header, token: c.Value, cookieName: hostName}).wantStatus(t, http.StatusOK)
			// The plain name is not read when cookies are secure.
			e.do(request{method: "GET", path: "/api/v1/me", https: tt.https, header: header, token: c.Value}).wantError(t, http.StatusUnauthorized, "unauthenticated")
		})
	}
}

// failingStore fails or panics on SignInView, the password step's read, to
// see how faults are answered.
type failingStore struct {
	mfa.Store
	panic bool
}

func (s failingStore) SignInView(ctx context.Context, email string, key mfa.ThrottleKey, since time.Time) (*mfa.SignInView, error) {
	if s.panic {
		panic("store exploded")
	}
	return nil, errors.New("disk on fire: secret detail")
}

func TestInternalErrorsAreGeneric(t *testing.T) {
	for _, panics := range []bool{false, true} {
		t.Run("panic="+strconv.FormatBool(panics), func(t *testing.T) {
			e := newEnv(t, withStore(func(s mfa.Store) mfa.Store { return failingStore{Store: s, panic: panics} }))
			r := e.do(request{method: "POST", path: "/api/v1/login", body: map[string]string{"email": testEmail, "password": testPassword}})
			r.wantError(t, http.StatusInternalServerError, "internal_error")
			if strings.Contains(r.Body.String(), "fire") || strings.Contains(r.Body.String(), "exploded") {
				t.Errorf("the client was told the cause: %s", r.Body)
			}
			want := "disk on fire"
			if panics {
				want = "store exploded"
			}
			if !strings.Contains(e.logs.String(), want) {
				t.Errorf("log does not hold the cause %q:\n%s", want, e.logs)
			}
			if r.Header().Get("Content-Security-Policy") == "" {
				t.Error("a 500 answer lacks the security headers")
			}

			r = e.do(request{method: "POST", path: "/login", form: true, body: "email=a%40b.c&password=whatever+it+is"})
			r.wantStatus(t, http.StatusInternalServerError)
			if strings.Contains(r.Body.String(), "fire") || strings.Contains(r.Body.String(), "exploded") {
				t.Errorf("the page told the cause: %s", r.Body)
			}
		})
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	e := newEnv(t)
	secret, codes := e.userWith2FA()
	const wrongPassword = "not the password at all"
	e.do(request{method: "POST", path: "/api/v1/login", body: map[string]string{"email": testEmail, "password": wrongPassword}}).
		wantStatus(t, http.StatusUnauthorized)
	half, _ := e.login(testEmail, testPassword)
	wrong := e.wrongCode(secret)
	e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half,
		body: map[string]string{"method": "totp", "code": wrong}}).wantStatus(t, http.StatusUnauthorized)
	right := e.totp(secret)
	full := e.fullLogin(secret)
	half2, _ := e.login(testEmail, testPassword)
	r := e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half2,
		body: map[string]string{"method": "backup_code", "code": codes[0]}})
	r.wantStatus(t, http.StatusOK)
	full2 := r.token(t)
	e.do(request{method: "GET", path: "/setup?token=verysecrettoken"})

	logs := e.logs.String()
	for _, line := range []string{"event=login_failed", "event=second_factor_failed", "event=backup_code_used"} {
		if !strings.Contains(logs, line) { // the Service's own lines reach this log
			t.Fatalf("the log has no %q line, so it proves nothing:\n%s", line, logs)
		}
	}
	for _, s := range append([]string{testPassword, wrongPassword, otp.EncodeSecret(secret),
		half, full, half2, full2, "verysecrettoken"}, codes...) {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds a secret %q", s)
		}
	}
	// Six digits may stand inside longer numbers by chance; a code stands alone.
	for _, code := range []string{wrong, right} {
		if regexp.MustCompile(`(^|[^0-9])` + code + `($|[^0-9])`).MatchString(logs) {
			t.Errorf("the log holds the code %q", code)
		}
	}
}

func decodeSecret(t *testing.T, s string) []byte {
	t.Helper()
	b, err := otp.DecodeSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
