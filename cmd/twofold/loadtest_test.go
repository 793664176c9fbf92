package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twofold/twofold/internal/postgres/pgtest"
)

// inProcessServer runs "twofold serve" in this process: a test binary cannot
// be started as "twofold serve". Its memory and CPU figures are the test
// process's, which is all right for a test that checks figures exist.
func inProcessServer(ctx context.Context, dir, database string, log io.Writer) (*ltServer, error) {
	ctx, cancel := context.WithCancel(ctx)
	watch := newListenWatcher(log)
	done := make(chan error, 1)
	args := []string{"twofold", "serve", "--addr", "127.0.0.1:0", "--data", dir}
	go func() {
		getenv := func(k string) string {
			if k == "TWOFOLD_DATABASE" {
				return database
			}
			return ""
		}
		done <- run(ctx, args, getenv, strings.NewReader(""), watch, log)
	}()
	select {
	case url := <-watch.url:
		return &ltServer{url: url, pid: os.Getpid(), stop: func() error { cancel(); return <-done }}, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("serve stopped: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		return nil, fmt.Errorf("serve did not start within 30 s")
	}
}

// runJSONLoadtest runs a loadtest made with --json and returns its report
// and its two outputs.
func runJSONLoadtest(t *testing.T, o loadtestOptions) (ltReport, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := runLoadtest(context.Background(), o, &out, &errOut); err != nil {
		t.Fatalf("loadtest: %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
	var rep ltReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, &out)
	}
	return rep, &out, &errOut
}

// TestLoadtestSmall runs every phase end to end with tiny numbers. It checks
// that each phase measured something and that no request failed, never a
// speed: test machines are shared and noisy.
func TestLoadtestSmall(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // the scratch directory goes here
	o, err := parseLoadtestFlags([]string{
		"--users", "40", "--duration", "500ms", "--concurrency", "4", "--rate", "20",
		"--full-signins", "4", "--flood", "12", "--hash-duration", "2s", "--signin-concurrency", "1", "--json",
	}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o.startServer = inProcessServer
	rep, out, errOut := runJSONLoadtest(t, o)
	checks := []struct {
		name string
		ok   bool
	}{
		{"40 users seeded", rep.Seed.Users == 40},
		{"40 pending sign-ins", rep.Seed.Pending == 40},
		{"phase 1 verified codes", rep.Verify.OK > 0 && rep.Verify.PerSecond > 0},
		{"phase 1 without errors", rep.Verify.Errors == 0 && rep.Verify.Requests == rep.Verify.OK},
		{"phase 1 latency", rep.Verify.Latency.P99 > 0 && rep.Verify.Latency.Max >= rep.Verify.Latency.P99},
		{"phase 1 server memory", rep.Verify.ServerPeakMB > 0},
		{"phase 1 at 20/s: 10 requests, all verified", rep.VerifyAtRate.OfferedPerSecond == 20 &&
			rep.VerifyAtRate.Requests == 10 && rep.VerifyAtRate.OK == 10 && !rep.VerifyAtRate.PoolUsedUp},
		{"phase 1 at 20/s: paced over the duration", rep.VerifyAtRate.Seconds >= 0.45},
		{"phase 1 at 20/s: latency", rep.VerifyAtRate.Latency.P99 > 0 && rep.VerifyAtRate.MaxInFlight >= 1},
		{"raw argon2id rate", rep.Signin.Hashes > 0 && rep.Signin.HashesPerSecond > 0},
		{"server warmed up before phase 2", rep.Signin.WarmupLogins > 0},
		{"4 full sign-ins", rep.Signin.OK == 4 && rep.Signin.Errors == 0},
		{"2 rounds planned", rep.Signin.Rounds == 2 && rep.Signin.RoundsRun >= 1},
		// One connection: the first sign-in of each round starts its window.
		{"sign-ins counted in steady state", rep.Signin.Counted >= 1 && rep.Signin.Counted < rep.Signin.OK},
		{"sign-in ratio", rep.Signin.Ratio > 0},
		{"CPU per hash and per sign-in", rep.Signin.HashCPUMs > 0 && rep.Signin.ServerCPUMs > 0 && rep.Signin.ClientCPUMs > 0},
		{"flood all answered", rep.Flood.Requests == 12 && rep.Flood.Answered == 12 && rep.Flood.Failures == 0},
		{"flood server memory", rep.Flood.ServerPeakMB > 0},
		{"no server errors", rep.ServerLog.Errors == 0},
		{"six targets judged", len(rep.Targets) == 6},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: no\n%s", c.name, out)
		}
	}
	if !strings.Contains(errOut.String(), "phase 3") {
		t.Errorf("no progress on stderr:\n%s", errOut)
	}
	// The scratch directory is gone.
	if _, err := os.Stat(rep.DataDir); !os.IsNotExist(err) {
		t.Errorf("scratch directory %s left behind: %v", rep.DataDir, err)
	}
}

// TestLoadtestKeepReuse checks the human report of a run kept with --keep,
// then a second run on that directory with --reuse.
func TestLoadtestKeepReuse(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	for _, name := range goRuntimeVars {
		t.Setenv(name, "")
	}
	t.Setenv("GOMEMLIMIT", "1GiB") // read by the runtime at start only: the report names it
	args := []string{"--users", "10", "--duration", "200ms", "--concurrency", "2",
		"--full-signins", "2", "--flood", "3", "--hash-duration", "100ms"}
	runText := func(extra ...string) (string, string) {
		t.Helper()
		o, err := parseLoadtestFlags(append(args, extra...), func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		o.startServer = inProcessServer
		var out, errOut bytes.Buffer
		if err := runLoadtest(context.Background(), o, &out, &errOut); err != nil {
			t.Fatalf("loadtest %v: %v\nstdout:\n%s\nstderr:\n%s", extra, err, &out, &errOut)
		}
		return out.String(), errOut.String()
	}
	out, errOut := runText("--keep")
	for _, want := range []string{"Phase 1", "verifications/s", "p99", "Phase 2", "ratio", "Phase 3", "Targets:",
		"go runtime    GOMEMLIMIT=1GiB, from the environment"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	i := strings.Index(errOut, "--reuse ")
	if i < 0 {
		t.Fatalf("kept directory not named:\n%s", errOut)
	}
	dir := strings.TrimSuffix(strings.Fields(errOut[i+len("--reuse "):])[0], ")")
	out, _ = runText("--reuse", dir)
	if !strings.Contains(out, "10 enrolled users reused") {
		t.Errorf("second run did not reuse the users:\n%s", out)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("kept directory removed: %v", err)
	}
}

// TestCompletionsWindow checks the steady-state window of phase 2: each
// worker's units from its first completion to its last one at or before
// the end, the first not counted.
func TestCompletionsWindow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(workers ...[]int) *completions {
		c := newCompletions(len(workers))
		for w, ms := range workers {
			for _, m := range ms {
				c.add(w, t0.Add(time.Duration(m)*time.Millisecond))
			}
		}
		return c
	}
	for _, tc := range []struct {
		name  string
		c     *completions
		end   int // ms after t0
		wantN int
		wantD time.Duration
	}{
		{"none", at(nil), 100, 0, 0},
		{"one", at([]int{10}), 100, 0, 0},
		{"the last after the end", at([]int{10, 20, 30, 50}), 40, 2, 20 * time.Millisecond},
		{"a completion at the end counts", at([]int{10, 20, 40}), 40, 2, 30 * time.Millisecond},
		{"all after the end", at([]int{50, 60}), 40, 0, 0},
		// Two workers that start together and take 20 ms a unit finish in
		// pairs: 100 units/s. Counted from the first pair on their own, they
		// are 6 units in 40 ms, 150/s; per worker, 2 units in 40 ms each.
		{"bursts", at([]int{20, 40, 60}, []int{20, 40, 60}), 100, 4, 40 * time.Millisecond},
		{"a worker with one unit adds nothing", at([]int{20, 40, 60}, []int{30}), 100, 2, 40 * time.Millisecond},
	} {
		n, d := tc.c.window(t0.Add(time.Duration(tc.end) * time.Millisecond))
		if n != tc.wantN || d != tc.wantD {
			t.Errorf("%s: got %d in %v, want %d in %v", tc.name, n, d, tc.wantN, tc.wantD)
		}
	}
}

func TestGoRuntimeEnv(t *testing.T) {
	env := map[string]string{"GOGC": "300", "GODEBUG": "madvdontneed=0", "TWOFOLD_DATA": "/x", "GOPATH": "/go"}
	got := strings.Join(goRuntimeEnv(func(k string) string { return env[k] }), " ")
	if want := "GOGC=300 GODEBUG=madvdontneed=0"; got != want {
		t.Errorf("goRuntimeEnv: got %q, want %q", got, want)
	}
	if got := goRuntimeEnv(func(string) string { return "" }); got == nil || len(got) != 0 {
		t.Errorf("goRuntimeEnv of an empty environment: got %#v, want an empty list (JSON [])", got)
	}
}

func TestLoadtestRefusesRealData(t *testing.T) {
	dir := t.TempDir() // a data directory that loadtest did not make
	err := cmdLoadtest(context.Background(), []string{"--reuse", dir}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "never runs on a real installation") {
		t.Fatalf("got %v, want a refusal", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("loadtest wrote into %s: %v", dir, entries)
	}
}

func TestLoadtestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--users", "0"},
		{"--concurrency", "-1"},
		{"--rate", "0"},
		{"--full-signins", "0"},
		{"--flood", "-3"},
		{"--instances", "0"},
		{"--instances", "2"}, // without --postgres
		{"stray"},
	} {
		if _, err := parseLoadtestFlags(args, func(string) string { return "" }, io.Discard); exitCode(err) != 2 {
			t.Errorf("%q: got %v (exit status %d), want a usage error (2)", args, err, exitCode(err))
		}
	}
	o, err := parseLoadtestFlags(nil, func(k string) string {
		if k == "TWOFOLD_USERS" {
			return "123"
		}
		return ""
	}, io.Discard)
	if err != nil || o.users != 123 || o.duration != 10*time.Second || o.flood != 200 {
		t.Errorf("defaults with TWOFOLD_USERS=123: got %+v, %v", o, err)
	}
}

// TestLoadtestPostgresTwoInstances runs every phase on a scratch PostgreSQL
// database with two server instances, and checks that the database is gone
// afterwards.
func TestLoadtestPostgresTwoInstances(t *testing.T) {
	server := pgtest.Server(t)
	t.Setenv("TMPDIR", t.TempDir())
	o, err := parseLoadtestFlags([]string{
		"--postgres", server, "--instances", "2",
		"--users", "30", "--duration", "500ms", "--concurrency", "4",
		"--full-signins", "4", "--flood", "9", "--hash-duration", "2s", "--json",
	}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	o.startServer = func(ctx context.Context, dir, database string, log io.Writer) (*ltServer, error) {
		s, err := inProcessServer(ctx, dir, database, log)
		if err == nil {
			urls = append(urls, s.url)
			if !strings.HasPrefix(database, "postgres") {
				t.Errorf("server started on database %q, want the scratch PostgreSQL one", database)
			}
		}
		return s, err
	}
	rep, _, errOut := runJSONLoadtest(t, o)
	if rep.Database != "postgresql" || rep.Instances != 2 || len(urls) != 2 || urls[0] == urls[1] {
		t.Errorf("database %q, %d instances, servers %v: want postgresql and two servers", rep.Database, rep.Instances, urls)
	}
	if rep.Verify.OK == 0 || rep.Verify.Errors != 0 || rep.Signin.OK != 4 || rep.Flood.Answered != 9 || rep.Failures != 0 {
		t.Errorf("phases: %+v %+v %+v failures %d\n%s", rep.Verify, rep.Signin, rep.Flood, rep.Failures, errOut)
	}
	name := regexp.MustCompile(`scratch PostgreSQL database (\S+)`).FindStringSubmatch(errOut.String())
	if name == nil {
		t.Fatalf("no scratch database named:\n%s", errOut)
	}
	conn, err := pgx.Connect(context.Background(), server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var left int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", name[1]).Scan(&left); err != nil || left != 0 {
		t.Errorf("scratch database %s: %d left, %v; want it dropped", name[1], left, err)
	}
}

func TestLoadtestReportHidesPasswords(t *testing.T) {
	got := strings.Join(argsWithoutPasswords([]string{
		"--postgres", "postgres://u:s3cret@db/x", "--postgres=postgres://u:s3cret@db/x", "--users", "10",
	}), " ")
	if strings.Contains(got, "s3cret") || !strings.Contains(got, "--users 10") || strings.Count(got, "postgres://u:xxxxx@db/x") != 2 {
		t.Errorf("report command %q: want the passwords hidden, the rest kept", got)
	}
}

// TestMachineShares reads idle and stolen time from /proc/stat's first line
// and adds them up over stretches.
func TestMachineShares(t *testing.T) {
	before := parseMachineTicks([]byte("cpu  100 5 20 300 10 1 2 7 0 0\ncpu0 50 2 10 150 5 0 1 3 0 0\n"))
	if want := (machineTicks{all: 445, idle: 310, steal: 7}); before != want {
		t.Fatalf("parsed %+v, want %+v", before, want)
	}
	after := parseMachineTicks([]byte("cpu  180 5 30 310 10 1 2 27 0 0\n"))
	var m machineTicks
	m.addSpan(before, after) // 120 ticks: 10 idle, 20 stolen
	m.addSpan(after, after)
	if idle, steal := m.percent(); math.Abs(idle-100.0/12) > 1e-9 || math.Abs(steal-100.0/6) > 1e-9 {
		t.Errorf("idle %.3f%%, steal %.3f%%; want 8.333%% and 16.667%%", idle, steal)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu 1 2 3\n"} {
		if got := parseMachineTicks([]byte(bad)); got != (machineTicks{}) {
			t.Errorf("parseMachineTicks(%q) = %+v, want zero", bad, got)
		}
	}
	if idle, steal := (machineTicks{}).percent(); idle != 0 || steal != 0 {
		t.Errorf("nothing read: %v%% idle, %v%% steal", idle, steal)
	}
}
