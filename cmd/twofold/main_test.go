package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/otp"
)

// lockedBuffer is a bytes.Buffer safe to write from the server goroutine
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func noEnv(string) string { return "" }

// runCmd runs one twofold command in-process and returns its output.
func runCmd(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"twofold"}, args...), noEnv, strings.NewReader(stdin), &out, &errOut)
	return out.String() + errOut.String(), err
}

// startServer runs "twofold serve" on a free port until the test ends and
// returns its base URL and its output so far.
func startServer(t *testing.T, data string, extra ...string) (string, *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	done := make(chan error, 1)
	args := append([]string{"twofold", "serve", "--addr", "127.0.0.1:0", "--data", data}, extra...)
	go func() { done <- run(ctx, args, noEnv, strings.NewReader(""), out, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	re := regexp.MustCompile(`listening on (http://\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1], out
		}
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("server did not start:\n%s", out)
	return "", nil
}

type apiClient struct {
	t    *testing.T
	base string
	http *http.Client
}

func newAPIClient(t *testing.T, base string) *apiClient {
	jar, _ := cookiejar.New(nil)
	return &apiClient{t: t, base: base, http: &http.Client{Jar: jar}}
}

// post sends body as JSON and decodes the answer into a map.
func (c *apiClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

const pw = "a long passphrase of mine"

// enableTOTP turns 2FA on for the signed-in user whose password is pw, and
// returns the TOTP secret and the backup codes.
func (c *apiClient) enableTOTP() (secret []byte, backupCodes []string) {
	c.t.Helper()
	code, body := c.do("POST", "/api/v1/me/totp", map[string]string{"password": pw})
	if code != 200 {
		c.t.Fatalf("begin totp: %d %v", code, body)
	}
	secret, err := otp.DecodeSecret(body["secret"].(string))
	if err != nil {
		c.t.Fatal(err)
	}
	totp, _ := otp.TOTP(secret, time.Now(), otp.Params{})
	code, body = c.do("POST", "/api/v1/me/totp/confirm", map[string]string{"code": totp})
	if code != 200 {
		c.t.Fatalf("confirm: %d %v", code, body)
	}
	for _, bc := range body["backup_codes"].([]any) {
		backupCodes = append(backupCodes, bc.(string))
	}
	return secret, backupCodes
}

func TestServeUserAddAndSignIn(t *testing.T) {
	data := t.TempDir()
	base, out := startServer(t, data)
	if !strings.Contains(out.String(), "/setup?token=") {
		t.Errorf("no first-account link printed with no user:\n%s", out)
	}
	// user add works while the server runs.
	if msg, err := runCmd(t, pw+"\n", "user", "add", "--data", data, "ann@example.com"); err != nil {
		t.Fatalf("user add: %v: %s", err, msg)
	}
	// Flags may follow the email address too.
	if msg, err := runCmd(t, pw+"\n", "user", "add", "ann@example.com", "--data", data); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("user add twice: got %v (%s), want an error saying the account exists", err, msg)
	}
	if _, err := runCmd(t, "short\n", "user", "add", "--data", data, "bob@example.com"); err == nil || !strings.Contains(err.Error(), "12") {
		t.Fatalf("user add with a short password: got %v, want the length rule", err)
	}

	c := newAPIClient(t, base)
	if code, _ := c.do("POST", "/api/v1/login", map[string]string{"email": "ann@example.com", "password": pw}); code != 200 {
		t.Fatalf("login: status %d", code)
	}
	secret, backupCodes := c.enableTOTP()

	// Secrets at rest: the database holds no TOTP secret, backup code or
	// session token in clear, in any form a reader could use.
	token := ""
	for _, ck := range c.http.Jar.Cookies(mustURL(t, base)) {
		token = ck.Value
	}
	if token == "" {
		t.Fatal("no session cookie")
	}
	dbBytes := readAll(t, filepath.Join(data, databaseFile))
	for _, name := range []string{databaseFile + "-wal"} {
		if b, err := os.ReadFile(filepath.Join(data, name)); err == nil {
			dbBytes = append(dbBytes, b...)
		}
	}
	forbidden := map[string][]byte{
		"raw TOTP secret":    secret,
		"base32 TOTP secret": []byte(otp.EncodeSecret(secret)),
		"session token":      []byte(token),
	}
	for i, bc := range backupCodes {
		forbidden["backup code "+string(rune('0'+i))] = []byte(strings.ReplaceAll(bc, "-", ""))
		forbidden["grouped backup code "+string(rune('0'+i))] = []byte(bc)
	}
	for what, b := range forbidden {
		if bytes.Contains(dbBytes, b) {
			t.Errorf("the database file contains the %s in clear", what)
		}
	}
	for _, f := range []string{keyringFile, codeKeyFile} {
		st, err := os.Stat(filepath.Join(data, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, st.Mode().Perm(), err)
		}
	}

	// Support resets the lost phone: the next sign-in needs the password only.
	if msg, err := runCmd(t, "", "user", "reset-2fa", "--data", data, "ann@example.com"); err != nil {
		t.Fatalf("reset-2fa: %v %s", err, msg)
	}
	c2 := newAPIClient(t, base)
	if code, body := c2.do("POST", "/api/v1/login", map[string]string{"email": "ann@example.com", "password": pw}); code != 200 || body["status"] != "authenticated" {
		t.Fatalf("login after reset: %d %v", code, body)
	}
	_, ev := c2.do("GET", "/api/v1/me/events", nil)
	if !strings.Contains(jsonString(ev), "two_factor_reset") {
		t.Errorf("no two_factor_reset event: %v", ev)
	}
}

func TestKeyRotateWhileServing(t *testing.T) {
	data := t.TempDir()
	base, _ := startServer(t, data)
	if msg, err := runCmd(t, pw+"\n", "user", "add", "--data", data, "ann@example.com"); err != nil {
		t.Fatalf("user add: %v: %s", err, msg)
	}
	c := newAPIClient(t, base)
	c.do("POST", "/api/v1/login", map[string]string{"email": "ann@example.com", "password": pw})
	_, body := c.do("POST", "/api/v1/me/totp", map[string]string{"password": pw})
	secret, _ := otp.DecodeSecret(body["secret"].(string))
	now := time.Now()
	code, _ := otp.TOTP(secret, now, otp.Params{})
	if st, body := c.do("POST", "/api/v1/me/totp/confirm", map[string]string{"code": code}); st != 200 {
		t.Fatalf("confirm: %d %v", st, body)
	}
	before := readAll(t, filepath.Join(data, keyringFile))
	msg, err := runCmd(t, "", "key", "rotate", "--data", data)
	if err != nil || !strings.Contains(msg, "re-encrypted 1 secrets") {
		t.Fatalf("key rotate: %v\n%s", err, msg)
	}
	after := readAll(t, filepath.Join(data, keyringFile))
	if bytes.Equal(before, after) {
		t.Fatal("key file unchanged by rotation")
	}
	// The running server opens the re-encrypted secret with the new key.
	c2 := newAPIClient(t, base)
	c2.do("POST", "/api/v1/login", map[string]string{"email": "ann@example.com", "password": pw})
	if st, body := c2.do("POST", "/api/v1/login/second-factor", map[string]string{"method": "totp", "code": nextCode(t, secret, now)}); st != 200 {
		t.Fatalf("sign-in after rotation: %d %v", st, body)
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
		want    string
	}{
		{[]string{"version"}, false, "twofold "},
		{[]string{"help"}, false, "twofold serve"},
		{[]string{"frobnicate"}, true, "unknown command"},
		{[]string{"serve", "--help"}, false, "TWOFOLD_ADDR"},
		{[]string{"user", "add", "--help"}, false, "TWOFOLD_DATA"},
		{[]string{"user", "remove", "x@example.com"}, true, "unknown command"},
		{[]string{"user", "add"}, true, "Usage"},
		{[]string{"user", "add", "a@example.com", "--data", "DATA", "b@example.com"}, true, "Usage"},
		{[]string{"key", "spin"}, true, "Usage"},
		{[]string{"key", "rotate", "--help"}, false, "TWOFOLD_PRIMARY"},
		{[]string{"migrate", "--data", "DATA"}, false, "schema version"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.ReplaceAll(a, "DATA", t.TempDir())
			}
			out, err := runCmd(t, "", args...)
			if (err != nil) != tt.wantErr || !strings.Contains(out, tt.want) {
				t.Fatalf("got %v and output:\n%s\nwant error=%v and %q", err, out, tt.wantErr, tt.want)
			}
		})
	}
}

// TestCommandGroupHelp: "twofold user --help" (and -h) lists the group's
// commands, each with what it does, as the README promises of
// "twofold COMMAND --help"; it is no unknown command and no failure.
func TestCommandGroupHelp(t *testing.T) {
	for _, g := range []commandGroup{userCommands, keyCommands} {
		for _, help := range []string{"--help", "-h", "help"} {
			t.Run(g.name+" "+help, func(t *testing.T) {
				out, err := runCmd(t, "", g.name, help)
				if err != nil {
					t.Fatalf("got %v, want no error; output:\n%s", err, out)
				}
				if strings.Contains(out, "unknown command") {
					t.Errorf("help taken for an unknown command:\n%s", out)
				}
				for _, sub := range g.subs {
					if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(sub.name) + `\b.*` + regexp.QuoteMeta(sub.summary) + `$`).MatchString(out) {
						t.Errorf("no line for %q with its summary %q:\n%s", sub.name, sub.summary, out)
					}
				}
			})
		}
		// With no command, the same list, but as a usage error.
		if out, err := runCmd(t, "", g.name); !errors.Is(err, errUsage) || !strings.Contains(out, g.subs[0].summary) {
			t.Errorf("twofold %s: got %v, want the usage error listing its commands; output:\n%s", g.name, err, out)
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("listen: address already in use"), 1},
		{errUsage, 2},
		{usageErrorf("--log-level %q: want debug, info, warn or error", "loud"), 2},
		{fmt.Errorf("serve: %w", usageErrorf("--database %q: want postgres://", "x")), 2},
		{errors.Join(errors.New("a"), usageErrorf("b")), 2},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// TestUsageErrors: every mistake in how twofold is called is a usage error,
// for exit status 2, with its message; a command that was called rightly
// but failed is not.
func TestUsageErrors(t *testing.T) {
	// A command that wrongly got past its flags stops at once on the
	// cancelled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		args  []string
		env   map[string]string
		usage bool
		want  string // in the output or the error
	}{
		{[]string{}, nil, true, "Usage"},
		{[]string{"frobnicate"}, nil, true, "unknown command"},
		{[]string{"serve", "--no-such-flag"}, nil, true, "flag provided but not defined"},
		{[]string{"serve", "--session-idle", "soon"}, nil, true, "invalid value"},
		{[]string{"serve", "--session-idle", "0"}, nil, true, "want a positive duration"},
		{[]string{"serve"}, map[string]string{"TWOFOLD_ALLOW_SIGNUP": "maybe"}, true, "TWOFOLD_ALLOW_SIGNUP"},
		{[]string{"serve", "--log-level", "loud"}, nil, true, "--log-level"},
		{[]string{"serve", "--smtp-url", "smtp://mail.example.com"}, nil, true, "--smtp-url needs --mail-from"},
		{[]string{"serve", "--mail-from", "a@example.com"}, nil, true, "--mail-from needs --smtp-url"},
		{[]string{"serve", "--smtp-url", "ftp://mail.example.com", "--mail-from", "a@example.com"}, nil, true, "scheme"},
		{[]string{"migrate", "--database", "mysql://db.example/twofold"}, nil, true, "want postgres://"},
		{[]string{"migrate", "--from", "sqlite:x.db"}, nil, true, "go together"},
		{[]string{"migrate", "--from", "x.db", "--to", "postgres://db.example/twofold"}, nil, true, "want sqlite:PATH"},
		{[]string{"migrate", "--from", "sqlite:x.db", "--to", "x.db"}, nil, true, "want postgres://"},
		{[]string{"user"}, nil, true, "Usage"},
		{[]string{"user", "remove", "a@example.com"}, nil, true, "unknown command"},
		{[]string{"user", "add"}, nil, true, "Usage"},
		{[]string{"user", "add", "a@example.com", "b@example.com"}, nil, true, "Usage"},
		{[]string{"key", "spin"}, nil, true, "unknown command"},
		{[]string{"key", "rotate", "--primary"}, nil, true, "flag needs an argument"},
		{[]string{"loadtest", "extra"}, nil, true, "Usage"},
		// A stray word is refused, not ignored: key rotate 3fc4a205 meant
		// --primary 3fc4a205, and would otherwise retire every old key.
		{[]string{"key", "rotate", "3fc4a205"}, nil, true, `unexpected argument "3fc4a205"`},
		{[]string{"serve", "8080"}, nil, true, `unexpected argument "8080"`},
		{[]string{"migrate", "now"}, nil, true, `unexpected argument "now"`},
		{[]string{"user", "add", "a@example.com", "--", "b@example.com"}, nil, true, `unexpected argument "b@example.com"`},
		{[]string{"version", "--short"}, nil, true, `unexpected argument "--short"`},
		{[]string{"loadtest", "--instances", "2"}, nil, true, "needs --postgres"},

		{[]string{"user", "reset-2fa", "nobody@example.com"}, nil, false, "nobody@example.com"},
		{[]string{"migrate", "--from", "sqlite:" + filepath.Join(t.TempDir(), "none.db"), "--to", "postgres://db.example/twofold"}, nil, false, "no such database"},
		{[]string{"key", "rotate"}, nil, false, "holds no twofold data"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{"twofold"}, tt.args...), " "), func(t *testing.T) {
			env := map[string]string{"TWOFOLD_DATA": t.TempDir(), "TWOFOLD_ADDR": "127.0.0.1:0"}
			for k, v := range tt.env {
				env[k] = v
			}
			var out bytes.Buffer
			err := run(ctx, append([]string{"twofold"}, tt.args...), func(k string) string { return env[k] }, strings.NewReader(""), &out, &out)
			if err == nil {
				t.Fatalf("got no error, want one; output:\n%s", &out)
			}
			want := 1
			if tt.usage {
				want = 2
			}
			if got := exitCode(err); got != want {
				t.Errorf("got %v, exit status %d, want %d", err, got, want)
			}
			if !strings.Contains(out.String()+err.Error(), tt.want) {
				t.Errorf("got %v and output:\n%s\nwant %q", err, &out, tt.want)
			}
		})
	}
}

// TestExitStatus runs twofold as a process: 2 for a usage error, 1 for a
// failure, and the message of either on stderr once.
func TestExitStatus(t *testing.T) {
	data := t.TempDir()
	tests := []struct {
		args   []string
		status int
		stderr string
		env    string // one more NAME=value
	}{
		{[]string{"version"}, 0, "", ""},
		{[]string{"frobnicate"}, 2, `twofold: unknown command "frobnicate"`, ""},
		{[]string{"serve", "--no-such-flag"}, 2, "flag provided but not defined: -no-such-flag", ""},
		{[]string{"serve", "--log-level", "loud", "--data", data}, 2, `twofold: --log-level "loud"`, ""},
		{[]string{"key", "rotate", "3fc4a205", "--data", data}, 2, `unexpected argument "3fc4a205"`, ""},
		{[]string{"serve"}, 2, `twofold: TWOFOLD_ALLOW_SIGNUP`, "TWOFOLD_ALLOW_SIGNUP=maybe"},
		{[]string{"user", "reset-2fa", "nobody@example.com", "--data", data}, 1, "twofold: No account has the email address nobody@example.com.", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			// A command that wrongly got past its usage check (serve would
			// listen) is stopped, and fails the test with its status.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], tt.args...)
			cmd.Env = append(os.Environ(), runAsTwofold+"=1", "TWOFOLD_DATA="+data, "TWOFOLD_ADDR=127.0.0.1:0")
			if tt.env != "" {
				cmd.Env = append(cmd.Env, tt.env)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			status := 0
			if ee, ok := err.(*exec.ExitError); ok {
				status = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if status != tt.status {
				t.Errorf("exit status %d, want %d; stderr:\n%s", status, tt.status, &stderr)
			}
			if tt.stderr != "" && strings.Count(stderr.String(), tt.stderr) != 1 || strings.Contains(stderr.String(), "twofold: usage") {
				t.Errorf("stderr:\n%s\nwant %q, once", &stderr, tt.stderr)
			}
		})
	}
}

// TestDurationFlagsMustBePositive: a duration flag of zero or less is refused
// on the command line as its environment twin is, instead of being taken for
// the default (--session-idle 0 meant 30m) or for nothing.
func TestDurationFlagsMustBePositive(t *testing.T) {
	const want = "want a positive duration such as 30m"
	// A command that wrongly accepted the flag stops at once on the
	// cancelled context, with another error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		args []string
	}{
		{"session-idle", []string{"serve", "--addr", "127.0.0.1:0", "--session-idle", "0"}},
		{"session-idle", []string{"serve", "--addr", "127.0.0.1:0", "--session-idle=-5m"}},
		{"session-max", []string{"serve", "--addr", "127.0.0.1:0", "--session-max", "-1h"}},
		{"session-max", []string{"serve", "--addr", "127.0.0.1:0", "--session-max", "0s"}},
		{"duration", []string{"loadtest", "--users", "1", "--duration", "0"}},
		{"hash-duration", []string{"loadtest", "--users", "1", "--hash-duration", "-1s"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			args := c.args
			if args[0] == "serve" {
				args = append(args, "--data", t.TempDir())
			}
			var out bytes.Buffer
			err := run(ctx, append([]string{"twofold"}, args...), noEnv, strings.NewReader(""), &out, &out)
			if !errors.Is(err, errUsage) || !strings.Contains(out.String(), "-"+c.name) || !strings.Contains(out.String(), want) {
				t.Fatalf("got %v and output:\n%s\nwant the usage error naming -%s: %s", err, &out, c.name, want)
			}
			// The environment twin is refused with the same words.
			env := map[string]string{envName(c.name): "0", "TWOFOLD_DATA": t.TempDir()}
			err = run(ctx, []string{"twofold", args[0]}, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), envName(c.name)) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s=0: got %v, want an error naming it: %s", envName(c.name), err, want)
			}
		})
	}
	// A positive duration is still taken.
	o, err := parseLoadtestFlags([]string{"--duration", "2s", "--hash-duration=1m"}, noEnv, io.Discard)
	if err != nil || o.duration != 2*time.Second || o.hashDuration != time.Minute {
		t.Errorf("--duration 2s --hash-duration=1m: got %v, %v, %v", o.duration, o.hashDuration, err)
	}
}

func TestEnvironmentTwins(t *testing.T) {
	data := t.TempDir()
	env := map[string]string{"TWOFOLD_DATA": data}
	var out bytes.Buffer
	err := run(context.Background(), []string{"twofold", "migrate"}, func(k string) string { return env[k] }, nil, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, databaseFile)); err != nil {
		t.Fatalf("TWOFOLD_DATA ignored: %v", err)
	}
	env["TWOFOLD_ALLOW_SIGNUP"] = "maybe"
	err = run(context.Background(), []string{"twofold", "serve"}, func(k string) string { return env[k] }, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "TWOFOLD_ALLOW_SIGNUP") {
		t.Fatalf("bad TWOFOLD_ALLOW_SIGNUP: got %v, want an error naming it", err)
	}
}

func TestRefusesReadableKeyFile(t *testing.T) {
	data := t.TempDir()
	if _, err := runCmd(t, "", "migrate", "--data", data); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(data, codeKeyFile), 0o644)
	if _, err := runCmd(t, "", "migrate", "--data", data); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key file: got %v, want a chmod hint", err)
	}
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRefusesNewKeysBesideOldDatabase(t *testing.T) {
	for _, name := range []string{keyringFile, codeKeyFile} {
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			if _, err := runCmd(t, "", "migrate", "--data", data); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(data, name)); err != nil {
				t.Fatal(err)
			}
			_, err := runCmd(t, "", "migrate", "--data", data)
			if err == nil || !strings.Contains(err.Error(), "restore it from a backup") {
				t.Fatalf("%s deleted: got %v, want a refusal", name, err)
			}
			if _, statErr := os.Stat(filepath.Join(data, name)); statErr == nil {
				t.Errorf("%s was created anew", name)
			}
		})
	}
}

func TestUserSetPassword(t *testing.T) {
	data := t.TempDir()
	const old, next = "the first passphrase here", "a brand new passphrase"
	if msg, err := runCmd(t, old+"\n", "user", "add", "--data", data, "ann@example.com"); err != nil {
		t.Fatalf("user add: %v %s", err, msg)
	}
	if _, err := runCmd(t, next+"\n", "user", "set-password", "--data", data, "nobody@example.com"); err == nil || !strings.Contains(err.Error(), "No account has the email address") {
		t.Fatalf("an unknown account: got %v", err)
	}
	if _, err := runCmd(t, "short\n", "user", "set-password", "--data", data, "ann@example.com"); err == nil || !strings.Contains(err.Error(), "12 characters") {
		t.Fatalf("a weak password: got %v", err)
	}
	msg, err := runCmd(t, next+"\n", "user", "set-password", "--data", data, "ann@example.com")
	if err != nil || !strings.Contains(msg, "sessions have ended") {
		t.Fatalf("user set-password: %v %s", err, msg)
	}

	ctx := context.Background()
	a, err := openApp(ctx, Config{Data: data}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.service.Login(ctx, "ann@example.com", old, cliClient); !errors.Is(err, mfa.ErrInvalidCredentials) {
		t.Errorf("the old password: got %v, want ErrInvalidCredentials", err)
	}
	if _, err := a.service.Login(ctx, "ann@example.com", next, cliClient); err != nil {
		t.Errorf("the new password: %v", err)
	}
}

// TestServeRefusesOtherKeyFile: an installation given another's key file
// (both valid, neither missing) stops at start-up, instead of failing every
// sign-in with an authenticator app.
func TestServeRefusesOtherKeyFile(t *testing.T) {
	data, other := t.TempDir(), t.TempDir()
	ctx := context.Background()
	a, err := openApp(ctx, Config{Data: data}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	_, err = enrollUser(ctx, a.service, "ann@example.com")
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	serve := func() error {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return run(ctx, []string{"twofold", "serve", "--addr", "127.0.0.1:0", "--data", data}, noEnv, strings.NewReader(""), io.Discard, io.Discard)
	}
	// With its own key file, the check passes: serve runs until stopped.
	if _, out := startServer(t, data); strings.Contains(out.String(), "cannot open") {
		t.Fatalf("serve with its own key file:\n%s", out)
	}

	if _, err := runCmd(t, "", "migrate", "--data", other); err != nil {
		t.Fatal(err)
	}
	keys, err := os.ReadFile(filepath.Join(other, keyringFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, keyringFile), keys, 0o600); err != nil {
		t.Fatal(err)
	}
	err = serve()
	if err == nil || !strings.Contains(err.Error(), "cannot open the TOTP secrets") || !strings.Contains(err.Error(), keyringFile) {
		t.Fatalf("serve with another installation's key file: got %v, want a refusal naming %s", err, keyringFile)
	}
}

func TestDatabaseFlag(t *testing.T) {
	data := t.TempDir()
	other := filepath.Join(t.TempDir(), "elsewhere.db")
	out, err := runCmd(t, "", "migrate", "--data", data, "--database", "sqlite:"+other)
	if err != nil || !strings.Contains(out, other) {
		t.Fatalf("sqlite:PATH: %v\n%s", err, out)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("no database at the sqlite: path: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, databaseFile)); err == nil {
		t.Errorf("a database was made in --data as well")
	}

	for _, bad := range []string{"mysql://root:hunter2@db.example/twofold", "hunter2", "sqlite:"} {
		_, err := runCmd(t, "", "migrate", "--data", data, "--database", bad)
		if err == nil || !strings.Contains(err.Error(), "want postgres://") {
			t.Errorf("--database %q: got %v, want the accepted forms", bad, err)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("--database %q: the error shows the password: %v", bad, err)
		}
	}
}

// TestKeyCommandsNeedData: a key command pointed at no installation (a
// --database forgotten) must not make an empty database and rotate its keys.
func TestKeyCommandsNeedData(t *testing.T) {
	for _, sub := range []string{"add", "rotate", "retire"} {
		data := t.TempDir()
		_, err := runCmd(t, "", "key", sub, "--data", data)
		if err == nil || !strings.Contains(err.Error(), "--database") {
			t.Errorf("key %s on an empty data directory: got %v, want a refusal naming --database", sub, err)
		}
		if _, statErr := os.Stat(filepath.Join(data, databaseFile)); statErr == nil {
			t.Errorf("key %s made a database", sub)
		}
	}
}

func TestHelpHidesPasswords(t *testing.T) {
	// A password with an unescaped '/' is no URL password to url.Parse.
	for _, smtpURL := range []string{"smtp://mailer:s3cret@mail.example:587", "smtp://mailer:s3cret/x@mail.example:587"} {
		var out bytes.Buffer
		run(context.Background(), []string{"twofold", "serve", "--help"},
			func(k string) string { return map[string]string{"TWOFOLD_SMTP_URL": smtpURL}[k] }, nil, &out, &out)
		if strings.Contains(out.String(), "s3cret") || !strings.Contains(out.String(), "smtp://") {
			t.Errorf("serve --help with TWOFOLD_SMTP_URL=%s shows the password, or not the scheme:\n%s", smtpURL, &out)
		}
	}
	env := map[string]string{"TWOFOLD_DATABASE": "postgres://twofold:s3cret@db.example/twofold"}
	for _, args := range [][]string{{"serve", "--help"}, {"migrate", "--help"}, {"serve", "--no-such-flag"}} {
		var out bytes.Buffer
		run(context.Background(), append([]string{"twofold"}, args...), func(k string) string { return env[k] }, nil, &out, &out)
		if strings.Contains(out.String(), "s3cret") {
			t.Errorf("%v shows the password of TWOFOLD_DATABASE:\n%s", args, &out)
		}
		if !strings.Contains(out.String(), "db.example") {
			t.Errorf("%v does not show the default from TWOFOLD_DATABASE:\n%s", args, &out)
		}
	}
}

// TestRedactURL: messages name a database or mail server without its
// password, also one that url.Parse does not read as a password.
func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"postgres://twofold:s3cret@db.example/twofold", "postgres://twofold:xxxxx@db.example/twofold"},
		{"postgres://twofold:12/s3cret@db.example/twofold", "postgres://..."}, // port 12, path /s3cret@...
		{"smtp://mailer:s3cret/x@mail.example:587", "smtp://..."},
		{"postgres://db.example/twofold", "postgres://db.example/twofold"},
		{"sqlite:/var/lib/twofold/twofold.db", "sqlite:/var/lib/twofold/twofold.db"},
		{"s3cret", "..."},
	} {
		if got := redactURL(c.in); got != c.want {
			t.Errorf("redactURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestServeGCPercent(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	tuneGC(func(string) string { return "" })
	if got := debug.SetGCPercent(100); got != serveGCPercent {
		t.Errorf("GC percent without GOGC: got %d, want %d", got, serveGCPercent)
	}
	tuneGC(func(name string) string {
		if name == "GOGC" {
			return "100"
		}
		return ""
	})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent with GOGC=100 in the environment: got %d, want the runtime's 100 left alone", got)
	}
}
