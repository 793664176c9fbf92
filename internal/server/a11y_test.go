package server_test

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/twofold/twofold/internal/server"
)

var (
	inputTagRE = regexp.MustCompile(`<input\b[^>]*>`)
	attrRE     = regexp.MustCompile(`([A-Za-z][A-Za-z0-9-]*)(?:\s*=\s*"([^"]*)")?`)
)

// inputTags returns the attributes of each <input> in html, in order; an
// attribute without a value (required, autofocus) maps to "".
func inputTags(html string) []map[string]string {
	var tags []map[string]string
	for _, tag := range inputTagRE.FindAllString(html, -1) {
		attrs := make(map[string]string)
		inner := strings.TrimSuffix(strings.TrimPrefix(tag, "<input"), ">")
		for _, m := range attrRE.FindAllStringSubmatch(inner, -1) {
			attrs[strings.ToLower(m[1])] = m[2]
		}
		tags = append(tags, attrs)
	}
	return tags
}

// inputByID returns the attributes of the one <input> of p with the id.
func (p page) inputByID(t *testing.T, id string) map[string]string {
	t.Helper()
	var found []map[string]string
	for _, a := range inputTags(p.body) {
		if a["id"] == id {
			found = append(found, a)
		}
	}
	if len(found) != 1 {
		t.Fatalf("page %s has %d inputs with id %q, want 1\n%s", p.path, len(found), id, p.body)
	}
	return found[0]
}

// signIn signs the browser in with the test account, through the second
// factor when secret is not nil.
func (e *env) signIn(b *browser, secret []byte) {
	e.t.Helper()
	if secret == nil {
		b.post("/login", url.Values{"email": {testEmail}, "password": {testPassword}}).want(e.t, 200, "/dashboard")
		return
	}
	b.post("/login", url.Values{"email": {testEmail}, "password": {testPassword}}).want(e.t, 200, "/login/token")
	b.post("/login/token", url.Values{"method": {"totp"}, "code": {e.totp(secret)}}).want(e.t, 200, "/dashboard")
	e.pastSpentSteps(secret)
}

// A form shown again with an error ties the error to the field that has
// the focus: the field is described by the role="alert" element (after
// its own hint, if any), so a screen reader announces what went wrong when
// it reads the field. The field is not marked invalid: the error may be
// about another field (a new password too short). Without an error the
// field does not point at a missing element.
func TestFormErrorDescribesField(t *testing.T) {
	const setupToken = "0123456789abcdef0123456789abcdef"
	for _, tt := range []struct {
		name  string
		id    string   // of the input the error must describe
		hints []string // its own aria-describedby ids, which stay
		// pages returns the form as first shown and as shown again
		// after a failed submission.
		pages func(t *testing.T) (clean, failed page)
	}{
		{"login", "email", nil, func(t *testing.T) (page, page) {
			e := newEnv(t)
			e.createUser(testEmail, testPassword)
			b := e.browser()
			clean := b.get("/login")
			failed := b.post("/login", url.Values{"email": {testEmail}, "password": {"not the password"}})
			failed.want(t, 401, "/login")
			return clean, failed
		}},
		{"token", "code", []string{"code-hint"}, func(t *testing.T) (page, page) {
			e := newEnv(t)
			secret, _ := e.userWith2FA()
			b := e.browser()
			clean := b.post("/login", url.Values{"email": {testEmail}, "password": {testPassword}})
			clean.want(t, 200, "/login/token")
			failed := b.post("/login/token", url.Values{"method": {"totp"}, "code": {e.wrongCode(secret)}})
			failed.want(t, 401, "/login/token")
			failed.mustContain(t, "Enter your token")
			return clean, failed
		}},
		{"token backup code", "code", []string{"code-hint"}, func(t *testing.T) (page, page) {
			e := newEnv(t)
			e.userWith2FA()
			b := e.browser()
			b.post("/login", url.Values{"email": {testEmail}, "password": {testPassword}}).want(t, 200, "/login/token")
			clean := b.get("/login/token?method=backup_code")
			failed := b.post("/login/token", url.Values{"method": {"backup_code"}, "code": {"aaaa-bbbb-cccc"}})
			failed.want(t, 401, "/login/token")
			failed.mustContain(t, "Enter a backup code")
			return clean, failed
		}},
		{"enable_password", "password", nil, func(t *testing.T) (page, page) {
			e := newEnv(t)
			e.createUser(testEmail, testPassword)
			b := e.browser()
			e.signIn(b, nil)
			clean := b.get("/settings/2fa/enable")
			failed := b.post("/settings/2fa/enable", url.Values{"password": {"not my password"}})
			failed.want(t, 403, "/settings/2fa/enable")
			failed.mustContain(t, "Confirm your password")
			return clean, failed
		}},
		{"enable_scan", "code", []string{"code-hint"}, func(t *testing.T) (page, page) {
			e := newEnv(t)
			e.createUser(testEmail, testPassword)
			b := e.browser()
			e.signIn(b, nil)
			clean := b.post("/settings/2fa/enable", url.Values{"password": {testPassword}})
			clean.want(t, 200, "/settings/2fa/enable")
			secret := e.keySecret(submatch(t, keyRE, clean.body))
			failed := b.post("/settings/2fa/confirm", url.Values{"code": {e.wrongCode(secret)}})
			failed.want(t, 400, "/settings/2fa/confirm")
			failed.mustContain(t, "Scan the QR code")
			return clean, failed
		}},
		{"disable", "password", nil, func(t *testing.T) (page, page) {
			e := newEnv(t)
			secret, _ := e.userWith2FA()
			b := e.browser()
			e.signIn(b, secret)
			clean := b.get("/settings/2fa/disable")
			failed := b.post("/settings/2fa/disable", url.Values{"password": {testPassword}})
			failed.want(t, 400, "/settings/2fa/disable")
			return clean, failed
		}},
		{"show codes", "codes-password", nil, func(t *testing.T) (page, page) {
			e := newEnv(t)
			secret, _ := e.userWith2FA()
			b := e.browser()
			e.signIn(b, secret)
			clean := b.get("/settings/security")
			failed := b.post("/settings/2fa/backup-codes", showCodes(t, clean, "not the password"))
			failed.want(t, 403, "/settings/2fa/backup-codes")
			return clean, failed
		}},
		{"show codes sent again", "codes-password", nil, func(t *testing.T) (page, page) {
			e := newEnv(t)
			secret, _ := e.userWith2FA()
			b := e.browser()
			e.signIn(b, secret)
			clean := b.get("/settings/security")
			form := showCodes(t, clean, testPassword)
			b.post("/settings/2fa/backup-codes", form).want(t, 200, "/settings/2fa/backup-codes")
			failed := b.post("/settings/2fa/backup-codes", form)
			failed.want(t, 409, "/settings/2fa/backup-codes")
			return clean, failed
		}},
		{"password", "current_password", nil, func(t *testing.T) (page, page) {
			e := newEnv(t)
			e.createUser(testEmail, testPassword)
			b := e.browser()
			e.signIn(b, nil)
			clean := b.get("/settings/password")
			const next = "a brand new passphrase"
			failed := b.post("/settings/password", url.Values{"current_password": {testPassword}, "new_password": {next}, "repeat_password": {next + "x"}})
			failed.want(t, 400, "/settings/password")
			return clean, failed
		}},
		{"account signup", "email", nil, func(t *testing.T) (page, page) {
			e := newEnv(t, withConfig(func(c *server.Config) { c.AllowSignup = true }))
			b := e.browser()
			clean := b.get("/signup")
			failed := b.post("/signup", url.Values{"email": {testEmail}, "password": {"short"}})
			failed.want(t, 400, "/signup")
			return clean, failed
		}},
		{"account setup", "email", nil, func(t *testing.T) (page, page) {
			e := newEnv(t, withConfig(func(c *server.Config) { c.SetupToken = setupToken }), withUsers())
			b := e.browser()
			clean := b.get("/setup?token=" + setupToken)
			failed := b.post("/setup", url.Values{"token": {setupToken}, "email": {testEmail}, "password": {"short"}})
			failed.want(t, 400, "/setup")
			return clean, failed
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clean, failed := tt.pages(t)

			// As first shown: the hints only.
			if clean.status != 200 {
				t.Fatalf("%s: got %d, want 200\n%s", clean.path, clean.status, clean.body)
			}
			clean.mustNotContain(t, `id="form-error"`, `aria-invalid`)
			a := clean.inputByID(t, tt.id)
			if got := strings.Fields(a["aria-describedby"]); !slices.Equal(got, tt.hints) {
				t.Errorf("%s: aria-describedby of #%s without an error: got %q, want %q", clean.path, tt.id, got, tt.hints)
			}

			// After the error: the hints and the error.
			if n := strings.Count(failed.body, `id="form-error"`); n != 1 {
				t.Fatalf("%s: %d elements with id form-error, want 1\n%s", failed.path, n, failed.body)
			}
			failed.mustContain(t, `<p class="form-error" role="alert" id="form-error">`)
			a = failed.inputByID(t, tt.id)
			want := append(slices.Clone(tt.hints), "form-error")
			if got := strings.Fields(a["aria-describedby"]); !slices.Equal(got, want) {
				t.Errorf("%s: aria-describedby of #%s: got %q, want %q", failed.path, tt.id, got, want)
			}
			for _, id := range strings.Fields(a["aria-describedby"]) {
				if !strings.Contains(failed.body, `id="`+id+`"`) {
					t.Errorf("%s: aria-describedby names #%s, which is not on the page", failed.path, id)
				}
			}
			// The field wired is the one with the focus.
			for _, other := range inputTags(failed.body) {
				if other["id"] == tt.id {
					continue
				}
				if _, ok := other["autofocus"]; ok {
					t.Errorf("%s: #%s has the focus, not #%s", failed.path, other["id"], tt.id)
				}
			}
		})
	}
}

// Browsers cut typed and pasted text at maxlength, counted in UTF-16 code
// units, without a word. On a password field that makes an account whose
// password is a prefix of the one its owner pasted, who is then locked out
// at sign-in. The server's policy says when a password is too long.
func TestPasswordInputsHaveNoMaxlength(t *testing.T) {
	const setupToken = "0123456789abcdef0123456789abcdef"
	check := func(t *testing.T, p page, want int) {
		t.Helper()
		n := 0
		for _, a := range inputTags(p.body) {
			if a["type"] != "password" {
				continue
			}
			n++
			if v, ok := a["maxlength"]; ok {
				t.Errorf("%s: password input #%s has maxlength=%q", p.path, a["id"], v)
			}
		}
		if n != want {
			t.Errorf("%s: %d password inputs, want %d\n%s", p.path, n, want, p.body)
		}
	}

	t.Run("signed out", func(t *testing.T) {
		e := newEnv(t, withConfig(func(c *server.Config) {
			c.AllowSignup = true
			c.SetupToken = setupToken
		}), withUsers())
		b := e.browser()
		check(t, b.get("/setup?token="+setupToken), 1)
		p := b.post("/setup", url.Values{"token": {setupToken}, "email": {testEmail}, "password": {"short"}})
		p.want(t, 400, "/setup")
		check(t, p, 1)
		check(t, b.get("/signup"), 1)
		p = b.post("/signup", url.Values{"email": {testEmail}, "password": {"short"}})
		p.want(t, 400, "/signup")
		check(t, p, 1)
		check(t, b.get("/login"), 1)
	})

	t.Run("signed in", func(t *testing.T) {
		e := newEnv(t)
		secret, _ := e.userWith2FA()
		b := e.browser()
		e.signIn(b, secret)
		check(t, b.get("/settings/password"), 3)
		p := b.post("/settings/password", url.Values{"current_password": {testPassword}, "new_password": {"short"}, "repeat_password": {"short"}})
		p.want(t, 400, "/settings/password")
		check(t, p, 3)
		p = b.get("/settings/security")
		check(t, p, 1) // Show Codes
		form := showCodes(t, p, testPassword)
		b.post("/settings/2fa/backup-codes", form).want(t, 200, "/settings/2fa/backup-codes")
		p = b.post("/settings/2fa/backup-codes", form) // sent again
		p.want(t, 409, "/settings/2fa/backup-codes")
		check(t, p, 1)
		check(t, b.get("/settings/2fa/disable"), 1)

		e2 := newEnv(t)
		e2.createUser(testEmail, testPassword)
		b2 := e2.browser()
		e2.signIn(b2, nil)
		check(t, b2.get("/settings/2fa/enable"), 1)
	})

	// And in the templates themselves, so that a page the walk above
	// misses is covered too.
	t.Run("templates", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join("templates", "*.html"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatal("no templates found")
		}
		n := 0
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range inputTags(string(src)) {
				if a["type"] != "password" {
					continue
				}
				n++
				if v, ok := a["maxlength"]; ok {
					t.Errorf("%s: password input #%s has maxlength=%q", f, a["id"], v)
				}
			}
		}
		if n == 0 {
			t.Error("no password inputs found in the templates")
		}
	})
}
