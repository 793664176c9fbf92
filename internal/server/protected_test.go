package server_test

import (
	"net/http"
	"testing"
)

// TestHalfSignedInReachesNothingProtected walks every protected route with
// a session that has passed only the password: the API answers 401, a page
// sends the person back to sign in, and nothing changes.
func TestHalfSignedInReachesNothingProtected(t *testing.T) {
	e := newEnv(t)
	secret, _ := e.userWith2FA()
	half, status := e.login(testEmail, testPassword)
	if status != "second_factor_required" {
		t.Fatalf("login status: got %q, want second_factor_required", status)
	}
	api := []request{
		{method: "GET", path: "/api/v1/me"},
		{method: "GET", path: "/api/v1/me/events"},
		{method: "POST", path: "/api/v1/me/totp", body: map[string]string{"password": testPassword}},
		{method: "POST", path: "/api/v1/me/totp/confirm", body: map[string]string{"code": "123456"}},
		{method: "POST", path: "/api/v1/me/backup-codes", body: map[string]string{"password": testPassword}},
		{method: "POST", path: "/api/v1/me/two-factor/disable", body: map[string]string{"password": testPassword}},
	}
	for _, r := range api {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			r.token = half
			e.do(r).wantError(t, http.StatusUnauthorized, "unauthenticated")
		})
	}
	pages := []request{
		{method: "GET", path: "/dashboard"},
		{method: "GET", path: "/settings/security"},
		{method: "GET", path: "/settings/2fa/enable"},
		{method: "POST", path: "/settings/2fa/enable", form: true, body: "password=" + testPassword},
		{method: "POST", path: "/settings/2fa/confirm", form: true, body: "code=123456"},
		{method: "POST", path: "/settings/2fa/backup-codes", form: true, body: "password=" + testPassword},
		{method: "GET", path: "/settings/2fa/disable"},
		{method: "POST", path: "/settings/2fa/disable", form: true, body: "password=" + testPassword + "&confirm=on"},
	}
	for _, r := range pages {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			r.token = half
			got := e.do(r)
			if got.Code != http.StatusSeeOther && got.Code != http.StatusFound {
				t.Fatalf("status %d, want a redirect to sign in", got.Code)
			}
			if loc := got.Header().Get("Location"); len(loc) < 6 || loc[:6] != "/login" {
				t.Fatalf("redirect to %q, want /login", loc)
			}
		})
	}
	// Nothing changed: 2FA is still on with its ten codes.
	full := e.fullLogin(secret)
	var me struct {
		Enabled   bool `json:"two_factor_enabled"`
		Remaining int  `json:"backup_codes_remaining"`
	}
	e.do(request{method: "GET", path: "/api/v1/me", token: full}).json(t, &me)
	if !me.Enabled || me.Remaining != 10 {
		t.Fatalf("after the half-signed-in requests: got %+v, want 2FA on with 10 codes", me)
	}
}
