package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/keyring"
	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/mfa/mfatest"
	"github.com/twofold/twofold/internal/postgres/pgtest"
	"github.com/twofold/twofold/otp"
)

// runAsTwofold, set in a child's environment, makes this test binary run as
// the twofold command itself, so that tests can start real server processes.
const runAsTwofold = "TWOFOLD_TEST_RUN_AS_TWOFOLD"

func TestMain(m *testing.M) {
	if os.Getenv(runAsTwofold) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startProcess runs "twofold serve" as a process of its own until the test
// ends and returns its base URL.
func startProcess(t *testing.T, data string, extra ...string) string {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runAsTwofold+"=1")
	watch := newListenWatcher(io.Discard)
	cmd.Stdout = watch
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start server process: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("server process %d: %v\n%s", cmd.Process.Pid, err, stderr)
		}
	})
	select {
	case base := <-watch.url:
		return base
	case <-time.After(30 * time.Second):
		t.Fatalf("server process did not start within 30 s:\n%s", stderr)
		return ""
	}
}

// enrollTOTP signs email in with the password and turns TOTP on, confirming
// with the code of step at. It returns the secret and the backup codes.
func (c *apiClient) enrollTOTP(email string, at time.Time) ([]byte, []any) {
	c.t.Helper()
	if st, body := c.do("POST", "/api/v1/login", map[string]string{"email": email, "password": pw}); st != 200 {
		c.t.Fatalf("login of %s: %d %v", email, st, body)
	}
	_, body := c.do("POST", "/api/v1/me/totp", map[string]string{"password": pw})
	secret, err := otp.DecodeSecret(fmt.Sprint(body["secret"]))
	if err != nil {
		c.t.Fatalf("begin TOTP for %s: %v %v", email, err, body)
	}
	code, _ := otp.TOTP(secret, at, otp.Params{})
	st, body := c.do("POST", "/api/v1/me/totp/confirm", map[string]string{"code": code})
	if st != 200 {
		c.t.Fatalf("confirm TOTP for %s: %d %v", email, st, body)
	}
	codes, _ := body["backup_codes"].([]any)
	return secret, codes
}

// nextCode returns the code of secret that a server takes after it took the
// code of used's step: the next step's, or in the rare case that spends
// that step too (see mfatest.FreshAfter) the one after, once the server's
// window reaches it.
func nextCode(t *testing.T, secret []byte, used time.Time) string {
	t.Helper()
	fresh := mfatest.FreshAfter(secret, used)
	time.Sleep(time.Until(fresh.Add(-30 * time.Second))) // the window takes one step ahead
	code, err := otp.TOTP(secret, fresh, otp.Params{})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// on returns a client that sends c's cookies to another instance.
func (c *apiClient) on(base string) *apiClient {
	return &apiClient{t: c.t, base: base, http: c.http}
}

// simultaneously runs f(i) for i in [0, n) released at once, and returns
// how many of the calls answered each status.
func simultaneously(n int, f func(i int) int) map[int]int {
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		ready    sync.WaitGroup
		done     sync.WaitGroup
		start    = make(chan struct{})
	)
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			status := f(i)
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	return statuses
}

// TestTwoInstancesOnePostgres starts two server processes on one PostgreSQL
// database with the same key files, and proves that the database decides
// every race between them: a TOTP code or a backup code sent to both at
// once is accepted once, and failures sent to either count toward one
// backoff and one daily ceiling.
func TestTwoInstancesOnePostgres(t *testing.T) {
	database := pgtest.NewDatabase(t)
	data := t.TempDir()
	if msg, err := runCmd(t, "", "migrate", "--data", data, "--database", database); err != nil {
		t.Fatalf("migrate: %v\n%s", err, msg)
	}
	instances := []string{
		startProcess(t, data, "--database", database),
		startProcess(t, data, "--database", database),
	}
	const email = "ann@example.com"
	if msg, err := runCmd(t, pw+"\n", "user", "add", "--data", data, "--database", database, email); err != nil {
		t.Fatalf("user add: %v\n%s", err, msg)
	}

	// Enrolled on the first instance.
	now := time.Now()
	secret, backupCodes := newAPIClient(t, instances[0]).enrollTOTP(email, now)

	// pendingSignIns signs in n clients with the password, alternately on
	// each instance; each will send its second factor to the other one.
	pendingSignIns := func(n int) []*apiClient {
		clients := make([]*apiClient, n)
		for i := range clients {
			c := newAPIClient(t, instances[i%2])
			if st, body := c.do("POST", "/api/v1/login", map[string]string{"email": email, "password": pw}); st != 200 || body["status"] != "second_factor_required" {
				t.Fatalf("login %d: %d %v", i, st, body)
			}
			clients[i] = c.on(instances[(i+1)%2])
		}
		return clients
	}
	// As many racers as the backoff lets through: each attempt is counted
	// as a failure until it succeeds.
	const racers = mfa.FreeFailures
	race := func(method, code string) map[int]int {
		clients := pendingSignIns(racers)
		return simultaneously(racers, func(i int) int {
			st, _ := clients[i].do("POST", "/api/v1/login/second-factor", map[string]string{"method": method, "code": code})
			return st
		})
	}

	t.Run("same TOTP code accepted once", func(t *testing.T) {
		// The confirmation spent the current step; the next one is in the window.
		got := race("totp", nextCode(t, secret, now))
		if got[http.StatusOK] != 1 || got[http.StatusUnauthorized] != racers-1 {
			t.Errorf("statuses %v: want one 200 and %d × 401", got, racers-1)
		}
	})
	t.Run("same backup code accepted once", func(t *testing.T) {
		got := race("backup_code", fmt.Sprint(backupCodes[0]))
		if got[http.StatusOK] != 1 || got[http.StatusUnauthorized] != racers-1 {
			t.Errorf("statuses %v: want one 200 and %d × 401", got, racers-1)
		}
	})
	// The password step, by accounts of their own: a wrong password is
	// cheaper to send than a code, and the races above left failures on
	// the first account's code methods.
	for _, other := range []string{"bob@example.com", "cy@example.com"} {
		if msg, err := runCmd(t, pw+"\n", "user", "add", "--data", data, "--database", database, other); err != nil {
			t.Fatalf("user add: %v\n%s", err, msg)
		}
	}
	// login sends a password for email to instance i%2.
	login := func(i int, email, password string) int {
		c := newAPIClient(t, instances[i%2])
		st, _ := c.do("POST", "/api/v1/login", map[string]string{"email": email, "password": password})
		return st
	}
	const wrongPassword = "not the password at all"
	t.Run("backoff shared", func(t *testing.T) {
		for i := range mfa.FreeFailures {
			if st := login(i, "bob@example.com", wrongPassword); st != http.StatusUnauthorized {
				t.Fatalf("wrong password %d: status %d, want 401", i+1, st)
			}
		}
		// Either instance now refuses: each saw only part of the failures.
		for i := range 2 {
			if st := login(i, "bob@example.com", pw); st != http.StatusTooManyRequests {
				t.Errorf("instance %d after %d failures over both: right password answered %d, want 429", i+1, mfa.FreeFailures, st)
			}
		}
	})
	t.Run("daily ceiling shared", func(t *testing.T) {
		// A right password after each run of wrong ones ends the backoff,
		// so only the daily ceiling can stop the run.
		failures := 0
		for i := 0; failures < mfa.DailyFailureCeiling; i++ {
			if i%mfa.FreeFailures == mfa.FreeFailures-1 {
				if st := login(i, "cy@example.com", pw); st != http.StatusOK {
					t.Fatalf("right password after %d failures: status %d, want 200", failures, st)
				}
				continue
			}
			if st := login(i, "cy@example.com", wrongPassword); st != http.StatusUnauthorized {
				t.Fatalf("wrong password %d: status %d, want 401", failures+1, st)
			}
			failures++
		}
		for i := range 2 {
			if st := login(i, "cy@example.com", pw); st != http.StatusTooManyRequests {
				t.Errorf("instance %d after %d failures over both: right password answered %d, want 429", i+1, failures, st)
			}
		}
	})
}

// TestPostgresRefusesNewKeys: an instance whose data directory lacks the key
// files must not make new ones for a database that already holds accounts.
func TestPostgresRefusesNewKeys(t *testing.T) {
	database := pgtest.NewDatabase(t)
	first := t.TempDir()
	if msg, err := runCmd(t, pw+"\n", "user", "add", "--data", first, "--database", database, "ann@example.com"); err != nil {
		t.Fatalf("user add: %v\n%s", err, msg)
	}
	second := t.TempDir()
	_, err := runCmd(t, "", "migrate", "--data", second, "--database", database)
	if err == nil || !strings.Contains(err.Error(), "copy it from another instance") {
		t.Fatalf("new data directory on a database with accounts: got %v, want a refusal", err)
	}
	for _, name := range []string{keyringFile, codeKeyFile} {
		if _, statErr := os.Stat(filepath.Join(second, name)); statErr == nil {
			t.Errorf("%s was created anew", name)
		}
	}
}

// keyIDsOf lists the key IDs of a data directory's key file.
func keyIDsOf(t *testing.T, data string) []string {
	t.Helper()
	kr, err := keyring.LoadOrCreate(filepath.Join(data, keyringFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	return kr.KeyIDs()
}

// copyKeyFiles copies the key files of one data directory to another, as
// an operator distributes them to instances.
func copyKeyFiles(t *testing.T, from, to string) {
	t.Helper()
	for _, name := range []string{keyringFile, codeKeyFile} {
		b := readAll(t, filepath.Join(from, name))
		if err := os.WriteFile(filepath.Join(to, name)+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(to, name)+".tmp", filepath.Join(to, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKeyRotationAcrossInstances walks the rotation of docs/deploy.md for
// instances with key files of their own: key add, copy, key rotate
// --primary --keep-old, copy, key retire, copy. Every instance opens every
// secret at every step.
func TestKeyRotationAcrossInstances(t *testing.T) {
	database := pgtest.NewDatabase(t)
	dataA, dataB := t.TempDir(), t.TempDir()
	emails := []string{"ann@example.com", "bob@example.com"}
	for _, email := range emails {
		if msg, err := runCmd(t, pw+"\n", "user", "add", "--data", dataA, "--database", database, email); err != nil {
			t.Fatalf("user add: %v\n%s", err, msg)
		}
	}
	copyKeyFiles(t, dataA, dataB)
	instances := []string{startProcess(t, dataA, "--database", database), startProcess(t, dataB, "--database", database)}

	now := time.Now()
	secrets := make([][]byte, len(emails))
	for i, email := range emails {
		secrets[i], _ = newAPIClient(t, instances[i%2]).enrollTOTP(email, now)
	}

	// opensEverySecret signs in on both instances and sends a wrong code:
	// 401 means the instance opened the secret to compare (it would fail
	// with 500 otherwise). Each user meets one instance per step, staying
	// under the backoff.
	step := 0
	opensEverySecret := func(when string) {
		t.Helper()
		for i, email := range emails {
			c := newAPIClient(t, instances[(i+step)%2])
			c.do("POST", "/api/v1/login", map[string]string{"email": email, "password": pw})
			if st, body := c.do("POST", "/api/v1/login/second-factor", map[string]string{"method": "totp", "code": mfatest.WrongCode(t, secrets[i], time.Now())}); st != http.StatusUnauthorized {
				t.Fatalf("%s: instance %d answered a wrong code for %s with %d %v, want 401", when, (i+step)%2+1, email, st, body)
			}
		}
		step++
	}
	key := func(args ...string) string {
		t.Helper()
		msg, err := runCmd(t, "", append(append([]string{"key"}, args...), "--data", dataA, "--database", database)...)
		if err != nil {
			t.Fatalf("key %v: %v\n%s", args, err, msg)
		}
		return msg
	}

	msg := key("add")
	id := regexp.MustCompile(`added key ([0-9a-f]{8})`).FindStringSubmatch(msg)
	if id == nil {
		t.Fatalf("key add printed no key ID:\n%s", msg)
	}
	opensEverySecret("after key add")
	copyKeyFiles(t, dataA, dataB)
	if msg := key("rotate", "--primary", id[1], "--keep-old"); !strings.Contains(msg, "re-encrypted 2 secrets") {
		t.Fatalf("key rotate --keep-old:\n%s", msg)
	}
	opensEverySecret("after key rotate, before the copy") // B knows the new key already
	// B still seals under the old primary key until it gets the new file:
	// key retire must re-seal this secret before retiring that key.
	lateEmail := "cy@example.com"
	if msg, err := runCmd(t, pw+"\n", "user", "add", "--data", dataB, "--database", database, lateEmail); err != nil {
		t.Fatalf("user add: %v\n%s", err, msg)
	}
	lateSecret, _ := newAPIClient(t, instances[1]).enrollTOTP(lateEmail, now)
	emails, secrets = append(emails, lateEmail), append(secrets, lateSecret)
	copyKeyFiles(t, dataA, dataB)
	opensEverySecret("after the copy")
	if msg := key("retire"); !strings.Contains(msg, "retired old key") {
		t.Fatalf("key retire:\n%s", msg)
	}
	opensEverySecret("after key retire, before the copy")
	copyKeyFiles(t, dataA, dataB)
	if ids := keyIDsOf(t, dataB); len(ids) != 1 || ids[0] != id[1] {
		t.Fatalf("key file of B after the rotation holds %v, want only %s", ids, id[1])
	}

	// And a real sign-in on each instance, with the next step's code.
	for i, email := range emails {
		c := newAPIClient(t, instances[i%2])
		c.do("POST", "/api/v1/login", map[string]string{"email": email, "password": pw})
		if st, body := c.do("POST", "/api/v1/login/second-factor", map[string]string{"method": "totp", "code": nextCode(t, secrets[i], now)}); st != 200 {
			t.Errorf("sign-in of %s on instance %d after the rotation: %d %v", email, i%2+1, st, body)
		}
	}
}

// TestMigrateSQLiteToPostgres moves an installation with an enrolled user to
// PostgreSQL and signs in there with the same key files. (Table by table,
// field by field, the copy is checked in internal/postgres.)
func TestMigrateSQLiteToPostgres(t *testing.T) {
	database := pgtest.NewDatabase(t)
	data := t.TempDir()
	ctx := context.Background()
	a, err := openApp(ctx, Config{Data: data}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	user, err := enrollUser(ctx, a.service, "ann@example.com")
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	sqlitePath := filepath.Join(data, databaseFile)

	for _, bad := range [][]string{
		{"--from", "sqlite:" + sqlitePath},                 // no --to
		{"--from", sqlitePath, "--to", database},           // no sqlite: prefix
		{"--from", "sqlite:" + sqlitePath, "--to", "x.db"}, // not PostgreSQL
		{"--from", "sqlite:/no/such.db", "--to", database}, // nothing to copy
	} {
		if msg, err := runCmd(t, "", append([]string{"migrate", "--data", data}, bad...)...); err == nil {
			t.Errorf("migrate %v: accepted, want an error\n%s", bad, msg)
		}
	}
	msg, err := runCmd(t, "", "migrate", "--data", data, "--from", "sqlite:"+sqlitePath, "--to", database)
	if err != nil {
		t.Fatalf("migrate --from --to: %v\n%s", err, msg)
	}
	for _, want := range []string{"users", "factors", "backup_codes", "events", "copied"} {
		if !strings.Contains(msg, want) {
			t.Errorf("migrate output lacks %q:\n%s", want, msg)
		}
	}
	if msg, err := runCmd(t, "", "migrate", "--data", data, "--from", "sqlite:"+sqlitePath, "--to", database); err == nil {
		t.Errorf("second copy into the same database: accepted, want a refusal\n%s", msg)
	}

	base := startProcess(t, data, "--database", database)
	c := newAPIClient(t, base)
	if st, body := c.do("POST", "/api/v1/login", map[string]string{"email": user.email, "password": ltPassword}); st != 200 || body["status"] != "second_factor_required" {
		t.Fatalf("login on PostgreSQL: %d %v", st, body)
	}
	if st, body := c.do("POST", "/api/v1/login/second-factor", map[string]string{"method": "totp", "code": user.code(time.Now())}); st != 200 {
		t.Fatalf("TOTP sign-in on PostgreSQL: %d %v", st, body)
	}
	st, me := c.do("GET", "/api/v1/me", nil)
	if st != 200 || me["backup_codes_remaining"] != float64(10) {
		t.Errorf("me on PostgreSQL: %d %v, want 10 backup codes", st, me)
	}
	_, events := c.do("GET", "/api/v1/me/events", nil)
	if !strings.Contains(jsonString(events), "two_factor_enabled") {
		t.Errorf("events not copied: %v", events)
	}
}
