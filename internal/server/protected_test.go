package server_test

import (
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
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
	const newPassword = "a brand new passphrase"
	// The Show Codes form as the security page shows it to the user signed
	// in: sent with that session, it would replace the codes (checked at
	// the end).
	u, err := e.store.UserByEmail(t.Context(), testEmail)
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.Status(t.Context(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	showCodes := url.Values{"password": {testPassword}, "set": {st.BackupCodeSet}}.Encode()
	api := []request{
		{method: "GET", path: "/api/v1/me"},
		{method: "GET", path: "/api/v1/me/events"},
		{method: "POST", path: "/api/v1/me/totp", body: map[string]string{"password": testPassword}},
		{method: "POST", path: "/api/v1/me/totp/confirm", body: map[string]string{"code": "123456"}},
		{method: "POST", path: "/api/v1/me/backup-codes", body: map[string]string{"password": testPassword}},
		{method: "POST", path: "/api/v1/me/two-factor/disable", body: map[string]string{"password": testPassword}},
		{method: "POST", path: "/api/v1/me/password", body: map[string]string{"current_password": testPassword, "new_password": newPassword}},
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
		{method: "POST", path: "/settings/2fa/backup-codes", form: true, body: showCodes},
		{method: "GET", path: "/settings/2fa/disable"},
		{method: "POST", path: "/settings/2fa/disable", form: true, body: "password=" + testPassword + "&understand=yes"},
		{method: "GET", path: "/settings/password"},
		{method: "POST", path: "/settings/password", form: true,
			body: "current_password=" + testPassword + "&new_password=" + newPassword + "&repeat_password=" + newPassword},
	}
	checkEveryRouteListed(t, api, pages)
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
	// Nothing changed: the password is the old one (fullLogin signs in with
	// it), and 2FA is still on with its ten codes.
	full := e.fullLogin(secret)
	var me struct {
		Enabled   bool `json:"two_factor_enabled"`
		Remaining int  `json:"backup_codes_remaining"`
	}
	e.do(request{method: "GET", path: "/api/v1/me", token: full}).json(t, &me)
	if !me.Enabled || me.Remaining != 10 {
		t.Fatalf("after the half-signed-in requests: got %+v, want 2FA on with 10 codes", me)
	}
	// The Show Codes form refused above was one that changes state.
	r := e.do(request{method: "POST", path: "/settings/2fa/backup-codes", form: true, body: showCodes, token: full})
	if r.Code != http.StatusOK || !strings.Contains(r.Body.String(), "Your new backup codes") {
		t.Fatalf("the Show Codes form, signed in: got %d, want 200 and new codes\n%s", r.Code, r.Body)
	}
}

// publicRoutes are the routes a visitor who is not fully signed in may
// reach: sign-up, sign-in and its second step, sign-out, the first
// account's setup, health and static files.
var publicRoutes = map[string]bool{
	"POST /api/v1/signup": true, "POST /api/v1/login": true, "POST /api/v1/login/second-factor": true,
	"POST /api/v1/logout": true, "GET /healthz": true, "GET /{$}": true,
	"GET /login": true, "POST /login": true, "GET /login/token": true, "POST /login/token": true,
	"POST /logout": true, "GET /signup": true, "POST /signup": true, "GET /setup": true, "POST /setup": true,
	"GET /static/": true,
}

// checkEveryRouteListed fails unless each route that routes.go registers is
// public or among the requests of the half-signed-in test, so that a new
// protected route cannot be added without being walked there.
func checkEveryRouteListed(t *testing.T, lists ...[]request) {
	t.Helper()
	src, err := os.ReadFile("routes.go")
	if err != nil {
		t.Fatal(err)
	}
	walked := map[string]bool{}
	for _, l := range lists {
		for _, r := range l {
			walked[r.method+" "+r.path] = true
		}
	}
	routes := regexp.MustCompile(`mux\.Handle\("([A-Z]+ [^"]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(routes) < 20 {
		t.Fatalf("found %d routes in routes.go; has its form changed?", len(routes))
	}
	for _, m := range routes {
		if !publicRoutes[m[1]] && !walked[m[1]] {
			t.Errorf("route %s is neither public nor walked by a half-signed-in session", m[1])
		}
	}
}
