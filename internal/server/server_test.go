package server_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/keyring"
	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/mfa/mfatest"
	"github.com/twofold/twofold/internal/password"
	"github.com/twofold/twofold/internal/server"
	"github.com/twofold/twofold/otp"
)

// The tests run a real Service over the in-memory store, with cheap argon2
// parameters and a clock they move by hand.

const (
	testEmail    = "ada@example.com"
	testPassword = "correct horse battery staple"
	sessionName  = "twofold_session"
)

// clock is a mfa.Config.Now the tests control.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a log destination safe for concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type env struct {
	t     *testing.T
	clock *clock
	store mfa.Store
	svc   *mfa.Service
	cfg   server.Config
	h     http.Handler
	logs  *syncBuffer

	configure []func(*server.Config)
}

type option func(*env)

// withConfig changes the server's Config before the handler is made.
func withConfig(f func(*server.Config)) option {
	return func(e *env) { e.configure = append(e.configure, f) }
}

// withUsers gives the server the store as its UserCounter.
func withUsers() option {
	return func(e *env) {
		e.configure = append(e.configure, func(c *server.Config) { c.Users = e.store })
	}
}

// withStore replaces the store (for fault injection).
func withStore(wrap func(mfa.Store) mfa.Store) option {
	return func(e *env) { e.store = wrap(e.store) }
}

func newEnv(t *testing.T, opts ...option) *env {
	t.Helper()
	e := &env{
		t:     t,
		clock: &clock{t: time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)},
		store: mfatest.NewMemStore(),
		logs:  &syncBuffer{},
	}
	for _, o := range opts {
		o(e)
	}
	keys, err := keyring.LoadOrCreate(filepath.Join(t.TempDir(), "keys"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	codeKey := make([]byte, 32)
	if _, err := rand.Read(codeKey); err != nil {
		t.Fatal(err)
	}
	// The Service and the HTTP layer log to one buffer, so that tests see
	// every line the server would write.
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := mfa.NewService(mfa.Config{
		Store:     e.store,
		Passwords: password.NewHasher(password.Options{Time: 1, MemoryKiB: 64, Threads: 1}),
		Policy:    password.Policy{},
		Cipher:    keys,
		CodeKey:   codeKey,
		Issuer:    "twofold test",
		Now:       e.clock.Now,
		Logger:    logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	e.cfg = server.Config{Service: svc, Logger: logger}
	for _, f := range e.configure {
		f(&e.cfg)
	}
	e.h = server.NewServer(e.cfg)
	return e
}

func (e *env) createUser(email, pw string) *mfa.User {
	e.t.Helper()
	u, err := e.svc.CreateUser(e.t.Context(), email, pw, mfa.Client{IP: "192.0.2.1"})
	if err != nil {
		e.t.Fatalf("create user: %v", err)
	}
	return u
}

// request is one request to the handler.
type request struct {
	method, path string
	body         any    // marshalled to JSON unless a string
	token        string // session cookie value
	header       map[string]string
	form         bool   // body is a url-encoded form (a string)
	https        bool   // the request arrives over TLS
	cookieName   string // of the token; default twofold_session
}

type response struct {
	*httptest.ResponseRecorder
}

func (e *env) do(r request) response {
	e.t.Helper()
	var body io.Reader
	switch b := r.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		body = bytes.NewReader(j)
	}
	target := r.path
	if r.https {
		target = "https://example.com" + r.path
	}
	req := httptest.NewRequest(r.method, target, body)
	switch {
	case r.form:
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	case body != nil:
		req.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		name := r.cookieName
		if name == "" {
			name = sessionName
		}
		req.AddCookie(&http.Cookie{Name: name, Value: r.token})
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return response{rec}
}

// cookie returns the session cookie the response set, if any.
func (r response) cookie(name string) *http.Cookie {
	for _, c := range r.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// token returns the new session token the response set, failing if none.
func (r response) token(t *testing.T) string {
	t.Helper()
	c := r.cookie(sessionName)
	if c == nil || c.Value == "" {
		t.Fatalf("no session cookie set; Set-Cookie: %q", r.Header().Values("Set-Cookie"))
	}
	return c.Value
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if ct := r.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("Content-Type: got %q, want application/json; charset=utf-8 (body %s)", ct, r.Body)
	}
	if err := json.Unmarshal(r.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// wantError checks an API error answer.
func (r response) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if r.Code != status {
		t.Fatalf("status: got %d, want %d (body %s)", r.Code, status, r.Body)
	}
	var e apiError
	r.json(t, &e)
	if e.Error.Code != code {
		t.Errorf("error code: got %q, want %q (body %s)", e.Error.Code, code, r.Body)
	}
	if e.Error.Message == "" {
		t.Errorf("error message is empty (body %s)", r.Body)
	}
}

func (r response) wantStatus(t *testing.T, status int) {
	t.Helper()
	if r.Code != status {
		t.Fatalf("status: got %d, want %d (body %s)", r.Code, status, r.Body)
	}
}

func (r response) wantRedirect(t *testing.T, location string) {
	t.Helper()
	if r.Code != http.StatusSeeOther {
		t.Fatalf("status: got %d, want 303 (body %s)", r.Code, r.Body)
	}
	if got := r.Header().Get("Location"); got != location {
		t.Fatalf("Location: got %q, want %q", got, location)
	}
}

type loginResponse struct {
	Status  string   `json:"status"`
	Methods []string `json:"methods"`
}

// login signs in through the API and returns the session token and status.
func (e *env) login(email, pw string) (string, string) {
	e.t.Helper()
	r := e.do(request{method: "POST", path: "/api/v1/login", body: map[string]string{"email": email, "password": pw}})
	r.wantStatus(e.t, http.StatusOK)
	var lr loginResponse
	r.json(e.t, &lr)
	return r.token(e.t), lr.Status
}

// totp returns the current code of secret.
func (e *env) totp(secret []byte) string {
	e.t.Helper()
	code, err := otp.TOTP(secret, e.clock.Now(), otp.Params{})
	if err != nil {
		e.t.Fatal(err)
	}
	return code
}

// wrongCode returns a well-formed code that no step of the window accepts.
func (e *env) wrongCode(secret []byte) string {
	e.t.Helper()
	return mfatest.WrongCode(e.t, secret, e.clock.Now())
}

type enrollment struct {
	Secret     string `json:"secret"`
	OTPAuthURI string `json:"otpauth_uri"`
	QRPNG      string `json:"qr_png"`
}

type codesResponse struct {
	BackupCodes []string `json:"backup_codes"`
}

// beginTOTP starts turning 2FA on through the API for the session token
// and returns the new key, as the QR code step shows it.
func (e *env) beginTOTP(token string) enrollment {
	e.t.Helper()
	r := e.do(request{method: "POST", path: "/api/v1/me/totp", token: token, body: map[string]string{"password": testPassword}})
	r.wantStatus(e.t, http.StatusOK)
	var enr enrollment
	r.json(e.t, &enr)
	return enr
}

// enable turns 2FA on through the API for the session token and returns
// the secret, the backup codes and the new session token (turning 2FA on
// ends every session of the account, the caller's included). The clock then moves on to a step whose
// code is not spent, so the test can send the current code next.
func (e *env) enable(token string) (secret []byte, codes []string, newToken string) {
	e.t.Helper()
	enr := e.beginTOTP(token)
	secret, err := otp.DecodeSecret(enr.Secret)
	if err != nil {
		e.t.Fatal(err)
	}
	r := e.do(request{method: "POST", path: "/api/v1/me/totp/confirm", token: token, body: map[string]string{"code": e.totp(secret)}})
	r.wantStatus(e.t, http.StatusOK)
	var cr codesResponse
	r.json(e.t, &cr)
	e.pastSpentSteps(secret)
	return secret, cr.BackupCodes, r.token(e.t)
}

// userWith2FA creates the test user with two-factor authentication on and
// signs out; it returns the secret and backup codes.
func (e *env) userWith2FA() ([]byte, []string) {
	e.t.Helper()
	e.createUser(testEmail, testPassword)
	token, _ := e.login(testEmail, testPassword)
	secret, codes, token := e.enable(token)
	e.do(request{method: "POST", path: "/api/v1/logout", token: token}).wantStatus(e.t, http.StatusNoContent)
	return secret, codes
}

// fullLogin signs in with password and TOTP and returns the full token.
func (e *env) fullLogin(secret []byte) string {
	e.t.Helper()
	half, status := e.login(testEmail, testPassword)
	if status != "second_factor_required" {
		e.t.Fatalf("login status: got %q, want second_factor_required", status)
	}
	r := e.do(request{method: "POST", path: "/api/v1/login/second-factor", token: half,
		body: map[string]string{"method": "totp", "code": e.totp(secret)}})
	r.wantStatus(e.t, http.StatusOK)
	e.pastSpentSteps(secret)
	return r.token(e.t)
}

// pastSpentSteps moves the clock on from a step whose code was just
// accepted to the first step whose code is not spent.
func (e *env) pastSpentSteps(secret []byte) {
	now := e.clock.Now()
	e.clock.Advance(mfatest.FreshAfter(secret, now).Sub(now))
}

// requireTool finds an outside program: a test that needs it skips on a
// laptop without it and fails in CI, where .ci/run installs it.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (Debian package %s); CI must have it", name, pkg)
		}
		t.Skipf("%s not found: install the Debian package %s to run this test", name, pkg)
	}
	return path
}

// zbarDecode reads a QR code from PNG bytes as a phone camera would.
func zbarDecode(t *testing.T, png []byte) string {
	t.Helper()
	zbarimg := requireTool(t, "zbarimg", "zbar-tools")
	file := filepath.Join(t.TempDir(), "qr.png")
	if err := os.WriteFile(file, png, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(zbarimg, "--raw", "-q", file).Output()
	if err != nil {
		t.Fatalf("zbarimg: %v", err)
	}
	return strings.TrimRight(string(out), "\n")
}
