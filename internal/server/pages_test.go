package server_test

import (
	"bytes"
	"encoding/base64"
	"html"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/server"
	"github.com/twofold/twofold/otp"
)

// browser walks the pages over a real connection, keeping cookies and
// sending the headers a browser sends with a same-origin form.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

type sameOrigin struct {
	origin string
	next   http.RoundTripper
}

func (s sameOrigin) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if r.Method == http.MethodPost {
		r.Header.Set("Origin", s.origin)
	}
	return s.next.RoundTrip(r)
}

func (e *env) browser() *browser {
	e.t.Helper()
	srv := httptest.NewServer(e.h)
	e.t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return &browser{t: e.t, base: srv.URL, c: &http.Client{
		Jar:       jar,
		Transport: sameOrigin{origin: srv.URL, next: srv.Client().Transport},
	}}
}

// page is a response, read, after any redirects.
type page struct {
	status int
	path   string // of the final URL, with its query
	header http.Header
	body   string
}

func (b *browser) read(resp *http.Response, err error) page {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return page{status: resp.StatusCode, path: resp.Request.URL.RequestURI(), header: resp.Header, body: string(body)}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	return b.read(b.c.Get(b.base + path))
}

func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	return b.read(b.c.PostForm(b.base+path, form))
}

func (p page) want(t *testing.T, status int, path string) {
	t.Helper()
	if p.status != status || p.path != path {
		t.Fatalf("got %d at %s, want %d at %s\n%s", p.status, p.path, status, path, p.body)
	}
}

func (p page) mustContain(t *testing.T, parts ...string) {
	t.Helper()
	for _, s := range parts {
		if !strings.Contains(p.body, s) {
			t.Errorf("page %s lacks %q", p.path, s)
		}
	}
}

func (p page) mustNotContain(t *testing.T, parts ...string) {
	t.Helper()
	for _, s := range parts {
		if strings.Contains(p.body, s) {
			t.Errorf("page %s holds %q", p.path, s)
		}
	}
}

var (
	qrRE   = regexp.MustCompile(`<img src="data:image/png;base64,([^"]+)"`)
	keyRE  = regexp.MustCompile(`<code class="secret-key">([A-Z2-7 ]+)</code>`)
	codeRE = regexp.MustCompile(`<li><code>([0-9a-z-]+)</code></li>`)
	setRE  = regexp.MustCompile(`<input type="hidden" name="set" value="([A-Za-z0-9_-]+)">`)
)

// showCodes is the Show Codes form of page p filled in with the password,
// as a browser sends it: with the set of codes the page was shown with.
func showCodes(t *testing.T, p page, password string) url.Values {
	t.Helper()
	return url.Values{"set": {submatch(t, setRE, p.body)}, "password": {password}}
}

func submatch(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no match of %s in\n%s", re, body)
	}
	return m[1]
}

// keyCode returns the current code of the key a page shows.
func (e *env) keyCode(key string) string {
	e.t.Helper()
	return e.totp(e.keySecret(key))
}

// keySecret decodes the key a page shows for typing into an app.
func (e *env) keySecret(key string) []byte {
	e.t.Helper()
	secret, err := otp.DecodeSecret(key)
	if err != nil {
		e.t.Fatal(err)
	}
	return secret
}

func TestLoginPageMarkup(t *testing.T) {
	e := newEnv(t)
	r := e.do(request{method: "GET", path: "/login"})
	r.wantStatus(t, http.StatusOK)
	p := page{path: "/login", body: r.Body.String()}
	p.mustContain(t,
		`<main id="main">`, `<h1>Sign in</h1>`,
		`<label for="email">Email address</label>`, `id="email" name="email" type="email" autocomplete="email"`,
		`<label for="password">Password</label>`, `autocomplete="current-password"`,
		`<form method="post" action="/login"`, `>Sign In</button>`,
		`<link rel="stylesheet" href="/static/style.css">`,
	)
	p.mustNotContain(t, "Signed in as", "/signup")
	if ct := r.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type: got %q", ct)
	}
}

func TestTokenPageMarkup(t *testing.T) {
	e := newEnv(t)
	e.userWith2FA()
	half, _ := e.login(testEmail, testPassword)

	r := e.do(request{method: "GET", path: "/login/token", token: half})
	r.wantStatus(t, http.StatusOK)
	p := page{path: "/login/token", body: r.Body.String()}
	p.mustContain(t,
		`<h1>Enter your token</h1>`, `<label for="code">Token</label>`,
		`name="code"`, `inputmode="numeric"`, `pattern="[0-9 \-]{6,9}"`, `autocomplete="one-time-code"`,
		`<input type="hidden" name="method" value="totp">`, `>Verify</button>`,
		`href="/login/token?method=backup_code"`, testEmail,
	)
	p.mustNotContain(t, "Signed in as") // half signed in is not signed in

	r = e.do(request{method: "GET", path: "/login/token?method=backup_code", token: half})
	r.wantStatus(t, http.StatusOK)
	p = page{path: "/login/token?method=backup_code", body: r.Body.String()}
	p.mustContain(t, `<label for="code">Backup code</label>`, `<input type="hidden" name="method" value="backup_code">`,
		`autocomplete="one-time-code"`, `href="/login/token"`)
	p.mustNotContain(t, `inputmode="numeric"`)

	// Without a pending sign-in, the page sends you back.
	e.do(request{method: "GET", path: "/login/token"}).wantRedirect(t, "/login?msg=expired")
	e.do(request{method: "POST", path: "/login/token", form: true, body: "method=totp&code=123456"}).wantRedirect(t, "/login?msg=expired")
}

func TestPageSignInFlow(t *testing.T) {
	e := newEnv(t)
	secret, codes := e.userWith2FA()
	b := e.browser()

	b.get("/").want(t, 200, "/login")
	p := b.post("/login", url.Values{"email": {testEmail}, "password": {testPassword}})
	p.want(t, 200, "/login/token")
	p.mustContain(t, "Enter your token")

	// Half signed in: protected pages send you to sign in.
	b.get("/dashboard").want(t, 200, "/login")

	// Which we do not: the pending sign-in is still there.
	p = b.post("/login/token", url.Values{"method": {"totp"}, "code": {e.wrongCode(secret)}})
	p.want(t, 401, "/login/token")
	p.mustContain(t, `role="alert"`, html.EscapeString(mfa.ErrInvalidCode.Message))

	code := e.totp(secret)
	p = b.post("/login/token", url.Values{"method": {"totp"}, "code": {code[:3] + " " + code[3:]}})
	p.want(t, 200, "/dashboard")
	p.mustContain(t, "Signed in as <strong>"+testEmail+"</strong>", `href="/settings/security"`,
		`<form method="post" action="/logout"`, ">Sign out</button>")
	p.mustNotContain(t, "Protect your account") // 2FA is on: no banner

	b.get("/").want(t, 200, "/dashboard")
	b.get("/login").want(t, 200, "/dashboard")

	p = b.get("/settings/security")
	p.want(t, 200, "/settings/security")
	p.mustContain(t, "Account security", "Enabled", "<strong>10</strong> unused backup codes", "Show Codes",
		"Signed in with password and authenticator app", "Two-factor authentication turned on", "<td>127.0.0.1</td>")

	p = b.post("/logout", nil)
	p.want(t, 200, "/login?msg=signed_out")
	p.mustContain(t, "You have signed out.")
	b.get("/dashboard").want(t, 200, "/login")

	// Again, with a backup code.
	e.clock.Advance(30 * time.Second)
	b.post("/login", url.Values{"email": {testEmail}, "password": {testPassword}}).want(t, 200, "/login/token")
	p = b.get("/login/token?method=backup_code")
	p.mustContain(t, "Enter a backup code")
	b.post("/login/token", url.Values{"method": {"backup_code"}, "code": {codes[0]}}).want(t, 200, "/dashboard")
	p = b.get("/settings/security")
	p.mustContain(t, "<strong>9</strong> unused backup codes", "Signed in with password and a backup code", "A backup code was used")
}

func TestPageChangePassword(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	b, elsewhere := e.browser(), e.browser()
	for _, c := range []*browser{b, elsewhere} {
		c.post("/login", url.Values{"email": {testEmail}, "password": {testPassword}}).want(t, 200, "/dashboard")
	}
	p := b.get("/settings/security")
	p.mustContain(t, `href="/settings/password"`)
	p = b.get("/settings/password")
	p.want(t, 200, "/settings/password")
	p.mustContain(t, `<label for="current_password">`, `autocomplete="current-password"`, `<label for="new_password">`,
		`autocomplete="new-password"`, `<label for="repeat_password">`)

	const next = "a brand new passphrase"
	for _, tt := range []struct {
		current, next, repeat string
		status                int
		message               string
	}{
		{testPassword, next, next + "x", 400, "The two new passwords are not the same."},
		{"wrong password here", next, next, 403, html.EscapeString(mfa.ErrWrongPassword.Message)},
		{testPassword, "short", "short", 400, "at least 12 characters"},
	} {
		p = b.post("/settings/password", url.Values{"current_password": {tt.current}, "new_password": {tt.next}, "repeat_password": {tt.repeat}})
		p.want(t, tt.status, "/settings/password")
		p.mustContain(t, `role="alert"`, tt.message)
	}
	elsewhere.get("/dashboard").want(t, 200, "/dashboard") // nothing changed yet

	p = b.post("/settings/password", url.Values{"current_password": {testPassword}, "new_password": {next}, "repeat_password": {next}})
	p.want(t, 200, "/settings/security?msg=password_changed")
	p.mustContain(t, "Your password has been changed.", "Password changed; every other session was signed out")
	b.get("/dashboard").want(t, 200, "/dashboard")     // this browser got a new session
	elsewhere.get("/dashboard").want(t, 200, "/login") // the other one is signed out
	elsewhere.post("/login", url.Values{"email": {testEmail}, "password": {testPassword}}).want(t, 401, "/login")
	elsewhere.post("/login", url.Values{"email": {testEmail}, "password": {next}}).want(t, 200, "/dashboard")
}

func TestPageLoginErrors(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	wrong := e.do(request{method: "POST", path: "/login", form: true, body: url.Values{"email": {testEmail}, "password": {"not the password"}}.Encode()})
	unknown := e.do(request{method: "POST", path: "/login", form: true, body: url.Values{"email": {"bob@example.com"}, "password": {"not the password"}}.Encode()})
	for _, r := range []response{wrong, unknown} {
		r.wantStatus(t, http.StatusUnauthorized)
		p := page{path: "/login", body: r.Body.String()}
		p.mustContain(t, `role="alert"`, html.EscapeString(mfa.ErrInvalidCredentials.Message), `autocomplete="current-password" required>`)
		p.mustNotContain(t, "not the password") // the password is never echoed
	}
	if a, b := strings.ReplaceAll(wrong.Body.String(), testEmail, "X"), strings.ReplaceAll(unknown.Body.String(), "bob@example.com", "X"); a != b {
		t.Error("unknown email and wrong password render different pages")
	}

	for range mfa.FreeFailures - 1 { // one failure for this address is counted already
		e.do(request{method: "POST", path: "/login", form: true, body: url.Values{"email": {testEmail}, "password": {"not the password"}}.Encode()})
	}
	r := e.do(request{method: "POST", path: "/login", form: true, body: url.Values{"email": {testEmail}, "password": {testPassword}}.Encode()})
	r.wantStatus(t, http.StatusTooManyRequests)
	wantRetryAfter(t, r)
	page{path: "/login", body: r.Body.String()}.mustContain(t, `role="alert"`, "Too many attempts")

	r = e.do(request{method: "POST", path: "/login", form: true, body: "email=" + strings.Repeat("a", 70<<10)})
	r.wantStatus(t, http.StatusRequestEntityTooLarge)
}

// A form posted as multipart/form-data is read like a URL-encoded one.
func TestPageMultipartForm(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, kv := range [][2]string{{"email", testEmail}, {"password", testPassword}} {
		if err := mw.WriteField(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.do(request{method: "POST", path: "/login", body: body.Bytes(), header: map[string]string{"Content-Type": mw.FormDataContentType()}})
	r.wantRedirect(t, "/dashboard")
	bad := e.do(request{method: "POST", path: "/login", body: "--x\r\nbroken", header: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}})
	bad.wantStatus(t, http.StatusBadRequest)
}

func TestProtectedPagesRedirect(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/dashboard", "/settings/security", "/settings/password", "/settings/2fa/enable", "/settings/2fa/disable"} {
		e.do(request{method: "GET", path: path}).wantRedirect(t, "/login")
		e.do(request{method: "GET", path: path, token: "forged-token"}).wantRedirect(t, "/login")
	}
	for _, path := range []string{"/settings/password", "/settings/2fa/enable", "/settings/2fa/confirm", "/settings/2fa/backup-codes", "/settings/2fa/disable"} {
		e.do(request{method: "POST", path: path, form: true, body: "password=x"}).wantRedirect(t, "/login")
	}
	e.do(request{method: "GET", path: "/"}).wantRedirect(t, "/login")
}

func TestPageEnableWizard(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	b := e.browser()
	b.post("/login", url.Values{"email": {testEmail}, "password": {testPassword}}).want(t, 200, "/dashboard")

	p := b.get("/dashboard")
	p.mustContain(t, "Protect your account with two-factor authentication", `href="/settings/2fa/enable"`)
	p = b.get("/settings/security")
	p.mustContain(t, "Disabled", `href="/settings/2fa/enable"`, ">Enable</a>")
	b.get("/settings/2fa/disable").want(t, 200, "/settings/security?msg=not_enabled")

	// Step 1: the password.
	p = b.get("/settings/2fa/enable")
	p.want(t, 200, "/settings/2fa/enable")
	p.mustContain(t, "Confirm your password", `autocomplete="current-password"`)
	p = b.post("/settings/2fa/enable", url.Values{"password": {"not my password"}})
	p.want(t, 403, "/settings/2fa/enable")
	p.mustContain(t, `role="alert"`, "The password is incorrect.")

	// Step 2: the QR code and the key.
	p = b.post("/settings/2fa/enable", url.Values{"password": {testPassword}})
	p.want(t, 200, "/settings/2fa/enable")
	if cc := p.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control of the QR page: got %q, want no-store", cc)
	}
	p.mustContain(t, "Scan the QR code", `alt="QR code that adds your twofold test account `+testEmail,
		`<label for="code">Token</label>`, `autocomplete="one-time-code"`, `inputmode="numeric"`,
		`action="/settings/2fa/confirm"`, "Turn on two-factor authentication</button>",
		"<dd>"+testEmail+"</dd>", "<dd>twofold test</dd>")
	key := submatch(t, keyRE, p.body)
	if !regexp.MustCompile(`^[A-Z2-7]{4}( [A-Z2-7]{4}){7}$`).MatchString(key) {
		t.Errorf("key: got %q, want 8 groups of four", key)
	}
	// html/template writes "+" as "&#43;" in attributes; a browser reads it back.
	pngBytes, err := base64.StdEncoding.DecodeString(html.UnescapeString(submatch(t, qrRE, p.body)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(pngBytes)); err != nil {
		t.Fatalf("the QR image is not a PNG: %v", err)
	}
	wantURI := "otpauth://totp/twofold%20test:" + url.PathEscape(testEmail) + "?secret=" + strings.ReplaceAll(key, " ", "")
	if got := zbarDecodeOrSkip(t, pngBytes); got != "" && !strings.HasPrefix(got, wantURI) {
		t.Errorf("zbarimg read %q, want a URI starting %q", got, wantURI)
	}

	// Coming back shows the same key; so does a wrong code.
	p = b.get("/settings/2fa/enable")
	if got := submatch(t, keyRE, p.body); got != key {
		t.Errorf("key on return: got %q, want %q", got, key)
	}
	p = b.post("/settings/2fa/confirm", url.Values{"code": {e.wrongCode(e.keySecret(key))}})
	p.want(t, 400, "/settings/2fa/confirm")
	p.mustContain(t, `role="alert"`, html.EscapeString(mfa.ErrInvalidSetupCode.Message))
	if got := submatch(t, keyRE, p.body); got != key {
		t.Errorf("key after a wrong code: got %q, want %q", got, key)
	}

	// Step 3: the backup codes, shown once.
	p = b.post("/settings/2fa/confirm", url.Values{"code": {e.keyCode(key)}})
	p.want(t, 200, "/settings/2fa/confirm")
	if cc := p.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control of the codes page: got %q, want no-store", cc)
	}
	codes := codeRE.FindAllStringSubmatch(p.body, -1)
	if len(codes) != 10 {
		t.Fatalf("codes on the page: got %d, want 10", len(codes))
	}
	p.mustContain(t, `download="twofold-test-backup-codes.txt"`, "Download as .txt", `href="/settings/security?msg=enabled"`, "Print")
	dl := regexp.MustCompile(`href="data:text/plain;charset=utf-8,([^"]+)"`).FindStringSubmatch(p.body)
	if dl == nil {
		t.Fatal("no download link")
	}
	text, err := url.PathUnescape(html.UnescapeString(dl[1]))
	if err != nil {
		t.Fatal(err)
	}
	if want := "twofold test backup codes for " + testEmail + "\n"; !strings.HasPrefix(text, want) {
		t.Errorf("the download begins %q, want %q", text[:min(len(text), len(want))], want)
	}
	for _, c := range codes {
		if !strings.Contains(text, c[1]+"\n") {
			t.Errorf("the download lacks code %s:\n%s", c[1], text)
		}
	}

	p = b.get("/settings/security?msg=enabled")
	p.mustContain(t, "Two-factor authentication is on.", "Enabled", "<strong>10</strong> unused backup codes")
	b.get("/settings/2fa/enable").want(t, 200, "/settings/security?msg=already_enabled")

	// Reloading the codes page sends its form again: the codes are not
	// shown twice, and the page says where to get a new set.
	p = b.post("/settings/2fa/confirm", url.Values{"code": {e.keyCode(key)}})
	p.want(t, 200, "/settings/security?msg=codes_shown_once")
	p.mustContain(t, "shown once, when you turned it on", "Show Codes", "<strong>10</strong> unused backup codes")

	// Show Codes: new codes replace the old.
	p = b.post("/settings/2fa/backup-codes", showCodes(t, p, "not my password"))
	p.want(t, 403, "/settings/2fa/backup-codes")
	p.mustContain(t, "Account security", `role="alert"`, "The password is incorrect.")
	p = b.post("/settings/2fa/backup-codes", showCodes(t, p, testPassword))
	p.want(t, 200, "/settings/2fa/backup-codes")
	p.mustContain(t, "Your new backup codes", "no longer work")
	if n := len(codeRE.FindAllString(p.body, -1)); n != 10 {
		t.Errorf("new codes: got %d, want 10", n)
	}

	// Disable: the box must be ticked.
	p = b.get("/settings/2fa/disable")
	p.mustContain(t, `type="checkbox" value="yes" required`, "I understand my account will be protected by my password only")
	p = b.post("/settings/2fa/disable", url.Values{"password": {testPassword}})
	p.want(t, 400, "/settings/2fa/disable")
	p.mustContain(t, `role="alert"`, "Tick the box")
	p = b.post("/settings/2fa/disable", url.Values{"password": {"not my password"}, "understand": {"yes"}})
	p.want(t, 403, "/settings/2fa/disable")
	p = b.post("/settings/2fa/disable", url.Values{"password": {testPassword}, "understand": {"yes"}})
	p.want(t, 200, "/settings/security?msg=disabled")
	p.mustContain(t, "Two-factor authentication is off.", "Disabled", "Two-factor authentication turned off")
}

// backupCodeWorks reports whether code completes a sign-in of the test
// user, through the API.
func (e *env) backupCodeWorks(code string) bool {
	e.t.Helper()
	half, _ := e.login(testEmail, testPassword)
	r := e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half,
		body: map[string]string{"method": "backup_code", "code": code}})
	return r.Code == http.StatusOK
}

// Show Codes sent again, by reloading the page of codes it answered (the
// browser sends the form, password and all, once more) or by a double
// click, makes no other set: the codes shown first, which the user may
// have saved by then, keep working, and the page says so, with a form
// that does make a new set.
func TestPageShowCodesSentAgain(t *testing.T) {
	e := newEnv(t)
	secret, old := e.userWith2FA()
	b := e.browser()
	e.signIn(b, secret)
	form := showCodes(t, b.get("/settings/security"), testPassword)

	p := b.post("/settings/2fa/backup-codes", form)
	p.want(t, 200, "/settings/2fa/backup-codes")
	p.mustContain(t, "Your new backup codes", "Download as .txt")
	var first []string
	for _, m := range codeRE.FindAllStringSubmatch(p.body, -1) {
		first = append(first, m[1])
	}
	if len(first) != 10 {
		t.Fatalf("codes: got %d, want 10", len(first))
	}

	for i := range 2 {
		p = b.post("/settings/2fa/backup-codes", form)
		p.want(t, 409, "/settings/2fa/backup-codes")
		p.mustContain(t, "Backup codes replaced already", `role="alert"`,
			html.EscapeString(mfa.ErrBackupCodesReplaced.Message), "Make new codes", `href="/settings/security"`)
		if n := len(codeRE.FindAllString(p.body, -1)); n != 0 {
			t.Errorf("sending %d again: %d codes shown, want none", i+1, n)
		}
	}
	u, err := e.store.UserByEmail(t.Context(), testEmail)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.store.CountEvents(t.Context(), u.ID, []mfa.EventType{mfa.EventBackupCodesRegenerated}, time.Time{}); n != 1 || err != nil {
		t.Errorf("%s events: got %d, %v, want 1", mfa.EventBackupCodesRegenerated, n, err)
	}
	if !e.backupCodeWorks(first[0]) {
		t.Error("a code shown by the first sending no longer works")
	}
	if e.backupCodeWorks(old[0]) {
		t.Error("a code of the set replaced still works")
	}

	// The form of that page, for the set now current, makes a new set.
	p = b.post("/settings/2fa/backup-codes", showCodes(t, p, testPassword))
	p.want(t, 200, "/settings/2fa/backup-codes")
	second := codeRE.FindAllStringSubmatch(p.body, -1)
	if len(second) != 10 || second[0][1] == first[0] {
		t.Fatalf("codes of the form shown afresh: got %q, want 10 new ones", second)
	}
	if e.backupCodeWorks(first[1]) {
		t.Error("a code of the first set still works after the second")
	}
	if !e.backupCodeWorks(second[0][1]) {
		t.Error("a code of the second set does not work")
	}

	// A form without its set (one cached from before) makes nothing, and
	// the page shown has the form as it is now.
	p = b.post("/settings/2fa/backup-codes", url.Values{"password": {testPassword}})
	p.want(t, 400, "/settings/2fa/backup-codes")
	p.mustContain(t, "Account security", `role="alert"`, "This form is out of date.")
	if !e.backupCodeWorks(second[1][1]) {
		t.Error("a form without its set replaced the codes")
	}
	showCodes(t, p, testPassword)
}

// A user with two-factor authentication on but no unused backup code left
// asks for a first new set like anyone else, and sending that form again
// makes no other.
func TestPageShowCodesWithoutCodes(t *testing.T) {
	e := newEnv(t)
	secret, _ := e.userWith2FA()
	u, err := e.store.UserByEmail(t.Context(), testEmail)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.ReplaceBackupCodes(t.Context(), u.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	e.signIn(b, secret)
	p := b.get("/settings/security")
	p.mustContain(t, "<strong>0</strong> unused backup codes")
	form := showCodes(t, p, testPassword)
	p = b.post("/settings/2fa/backup-codes", form)
	p.want(t, 200, "/settings/2fa/backup-codes")
	codes := codeRE.FindAllStringSubmatch(p.body, -1)
	if len(codes) != 10 {
		t.Fatalf("codes: got %d, want 10", len(codes))
	}
	b.post("/settings/2fa/backup-codes", form).want(t, 409, "/settings/2fa/backup-codes")
	if !e.backupCodeWorks(codes[0][1]) {
		t.Error("a code of the first sending no longer works")
	}
}

// The set a Show Codes form carries is sealed to its account: another
// account's, an altered one, or a bare code ID (what the form carried
// before) makes nothing, and the page shows the form as it is now.
func TestPageShowCodesForeignSet(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	secret, codes := e.userWith2FA()
	const bobEmail = "bob@example.com"
	e.createUser(bobEmail, testPassword)
	bobToken, _ := e.login(bobEmail, testPassword)
	e.enable(bobToken)
	ann, err := e.store.UserByEmail(ctx, testEmail)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := e.store.UserByEmail(ctx, bobEmail)
	if err != nil {
		t.Fatal(err)
	}
	bobStatus, err := e.svc.Status(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	annCodes, err := e.store.UnusedBackupCodes(ctx, ann.ID)
	if err != nil || len(annCodes) == 0 {
		t.Fatalf("UnusedBackupCodes: got %d, %v", len(annCodes), err)
	}

	b := e.browser()
	e.signIn(b, secret)
	own := showCodes(t, b.get("/settings/security"), testPassword)
	altered := []byte(own.Get("set"))
	if altered[0] == 'A' { // another base64url letter, in the nonce
		altered[0] = 'B'
	} else {
		altered[0] = 'A'
	}
	for _, tt := range []struct{ name, set string }{
		{"another account's", bobStatus.BackupCodeSet},
		{"altered", string(altered)},
		{"the newest code's ID", strconv.FormatInt(annCodes[len(annCodes)-1].ID, 10)},
		{"an ID above every code's", "9223372036854775807"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := b.post("/settings/2fa/backup-codes", url.Values{"password": {testPassword}, "set": {tt.set}})
			p.want(t, 400, "/settings/2fa/backup-codes")
			p.mustContain(t, "Account security", `role="alert"`, "This form is out of date.")
			if n := len(codeRE.FindAllString(p.body, -1)); n != 0 {
				t.Errorf("%d codes shown, want none", n)
			}
			showCodes(t, p, testPassword)
		})
	}
	for _, u := range []*mfa.User{ann, bob} {
		if n, err := e.store.CountEvents(ctx, u.ID, []mfa.EventType{mfa.EventBackupCodesRegenerated}, time.Time{}); n != 0 || err != nil {
			t.Errorf("%s: %s events: got %d, %v, want 0", u.Email, mfa.EventBackupCodesRegenerated, n, err)
		}
		if left, err := e.store.UnusedBackupCodes(ctx, u.ID); len(left) != 10 || err != nil {
			t.Errorf("%s: unused codes: got %d, %v, want the 10 of before", u.Email, len(left), err)
		}
	}
	if !e.backupCodeWorks(codes[0]) {
		t.Error("a code of the set no longer works")
	}
	// The user's own form does replace the codes.
	p := b.post("/settings/2fa/backup-codes", own)
	p.want(t, 200, "/settings/2fa/backup-codes")
	p.mustContain(t, "Your new backup codes")
}

// zbarDecodeOrSkip is zbarDecode, returning "" (after noting why) where
// zbarimg is missing, so the rest of a longer test still runs.
func zbarDecodeOrSkip(t *testing.T, png []byte) string {
	t.Helper()
	var got string
	t.Run("zbarimg", func(t *testing.T) { got = zbarDecode(t, png) })
	return got
}

func TestPageConfirmAfterSetupExpired(t *testing.T) {
	e := newEnv(t)
	e.createUser(testEmail, testPassword)
	b := e.browser()
	b.post("/login", url.Values{"email": {testEmail}, "password": {testPassword}}).want(t, 200, "/dashboard")
	b.post("/settings/2fa/enable", url.Values{"password": {testPassword}}).mustContain(t, "Scan the QR code")
	e.clock.Advance(16 * time.Minute) // past the 15 minutes a setup waits, within the session's idle limit
	p := b.post("/settings/2fa/confirm", url.Values{"code": {"123456"}})
	p.want(t, 409, "/settings/2fa/confirm")
	p.mustContain(t, "Confirm your password", html.EscapeString(mfa.ErrNoEnrollment.Message))
}

func TestSetupLink(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	e := newEnv(t, withConfig(func(c *server.Config) { c.SetupToken = token }), withUsers())

	for _, q := range []string{"", "?token=", "?token=wrong", "?token=" + token[:31]} {
		e.do(request{method: "GET", path: "/setup" + q}).wantStatus(t, http.StatusNotFound)
	}
	e.do(request{method: "POST", path: "/setup", form: true, body: "token=wrong&email=a%40b.c&password=" + url.QueryEscape(testPassword)}).
		wantStatus(t, http.StatusNotFound)

	r := e.do(request{method: "GET", path: "/setup?token=" + token})
	r.wantStatus(t, http.StatusOK)
	p := page{path: "/setup", body: r.Body.String()}
	p.mustContain(t, "Create the first account", `autocomplete="new-password"`, `autocomplete="email"`,
		`<input type="hidden" name="token" value="`+token+`">`)

	r = e.do(request{method: "POST", path: "/setup", form: true,
		body: url.Values{"token": {token}, "email": {testEmail}, "password": {"short"}}.Encode()})
	r.wantStatus(t, http.StatusBadRequest)
	page{path: "/setup", body: r.Body.String()}.mustContain(t, `role="alert"`, `value="`+testEmail+`"`)

	r = e.do(request{method: "POST", path: "/setup", form: true,
		body: url.Values{"token": {token}, "email": {testEmail}, "password": {testPassword}}.Encode()})
	r.wantRedirect(t, "/login?msg=account_created")
	if r.cookie(sessionName) != nil {
		t.Error("setup signed the user in")
	}
	// Once an account exists, the link is dead.
	e.do(request{method: "GET", path: "/setup?token=" + token}).wantStatus(t, http.StatusNotFound)
	e.do(request{method: "POST", path: "/setup", form: true,
		body: url.Values{"token": {token}, "email": {"eve@example.com"}, "password": {testPassword}}.Encode()}).
		wantStatus(t, http.StatusNotFound)
	_, status := e.login(testEmail, testPassword)
	if status != "authenticated" {
		t.Errorf("login: got %q, want authenticated", status)
	}

	// Without a token configured, there is no link at all.
	e2 := newEnv(t)
	e2.do(request{method: "GET", path: "/setup?token="}).wantStatus(t, http.StatusNotFound)
}

func TestSignupPage(t *testing.T) {
	e := newEnv(t, withConfig(func(c *server.Config) { c.AllowSignup = true }))
	p := page{path: "/login", body: e.do(request{method: "GET", path: "/login"}).Body.String()}
	p.mustContain(t, `href="/signup"`)
	r := e.do(request{method: "GET", path: "/signup"})
	r.wantStatus(t, http.StatusOK)
	page{path: "/signup", body: r.Body.String()}.mustContain(t, "Create an account", `autocomplete="new-password"`, `action="/signup"`)
	r = e.do(request{method: "POST", path: "/signup", form: true, body: url.Values{"email": {testEmail}, "password": {testPassword}}.Encode()})
	r.wantRedirect(t, "/login?msg=account_created")
	r = e.do(request{method: "POST", path: "/signup", form: true, body: url.Values{"email": {testEmail}, "password": {testPassword}}.Encode()})
	r.wantStatus(t, http.StatusConflict)
}

func TestFlashMessagesAreFixed(t *testing.T) {
	e := newEnv(t)
	r := e.do(request{method: "GET", path: "/login?msg=%3Cb%3Eyou+have+been+hacked%3C%2Fb%3E"})
	page{path: "/login", body: r.Body.String()}.mustNotContain(t, "hacked", `role="status"`)
	r = e.do(request{method: "GET", path: "/login?msg=expired"})
	page{path: "/login", body: r.Body.String()}.mustContain(t, `role="status"`, "Your sign-in has expired")
}

// Every page is free of script and of inline style, which the
// Content-Security-Policy would block anyway.
func TestPagesHaveNoScriptOrInlineStyle(t *testing.T) {
	e := newEnv(t, withConfig(func(c *server.Config) { c.AllowSignup = true }))
	secret, _ := e.userWith2FA()
	full := e.fullLogin(secret)
	half, _ := e.login(testEmail, testPassword)
	inline := regexp.MustCompile(`(?i)<script|<style|\sstyle=|\son[a-z]+=|javascript:`)
	for _, tt := range []struct{ path, token string }{
		{"/login", ""}, {"/signup", ""}, {"/login/token", half}, {"/login/token?method=backup_code", half},
		{"/dashboard", full}, {"/settings/security", full}, {"/settings/password", full}, {"/settings/2fa/disable", full},
	} {
		r := e.do(request{method: "GET", path: tt.path, token: tt.token})
		r.wantStatus(t, http.StatusOK)
		if m := inline.FindString(r.Body.String()); m != "" {
			t.Errorf("%s holds %q", tt.path, m)
		}
		if !strings.Contains(r.Body.String(), "<main") || !strings.Contains(r.Body.String(), "<h1") {
			t.Errorf("%s lacks <main> or <h1>", tt.path)
		}
	}
}
