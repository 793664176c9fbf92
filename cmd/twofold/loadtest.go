package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/password"
	"github.com/twofold/twofold/internal/postgres/pgadmin"
	"github.com/twofold/twofold/otp"
)

// The loadtest command measures a scratch copy of twofold on this machine:
// it seeds a fresh data directory, starts the real server on it as a child
// process, and drives it over HTTP from this process. It never opens a real
// installation: it takes no --data flag, and --reuse accepts only a
// directory that an earlier loadtest kept.

// Targets, from the project's performance issue.
const (
	targetVerifyRate   = 3000                  // second-factor verifications per second
	targetVerifyP99    = 20 * time.Millisecond // their 99th percentile latency
	targetVerifyRSSKiB = 64 << 10              // server RSS during them
	targetSigninRatio  = 0.95                  // full sign-ins/s over raw argon2id hashes/s
	targetFloodRSSKiB  = 400 << 10             // server RSS during the login flood
	ltUsersFile        = "loadtest-users.tsv"  // marks a kept scratch directory; email and TOTP secret per user
	ltSeededDB         = "loadtest-seeded.db"  // the database as seeded, which --reuse starts from
	ltServerLog        = "server.log"          // the server's stdout and stderr
	ltPassword         = "loadtest passphrase, not a real one"
	ltWrongPassword    = "loadtest wrong passphrase, on purpose"
	ltSessionCookie    = "twofold_session"
	ltCheapTime        = 1  // argon2id iterations of the seeded phase-1 users
	ltCheapMemoryKiB   = 64 // and their memory
)

var ltClient = mfa.Client{IP: "loadtest"}

// loadtestOptions are the flags of "twofold loadtest".
type loadtestOptions struct {
	users        int
	duration     time.Duration
	concurrency  int
	rate         int
	fullSignins  int
	signinConns  int
	flood        int
	pending      int
	hashDuration time.Duration
	keep         bool
	reuse        string
	serverBinary string
	postgres     string // server URL; a scratch database is made there
	instances    int
	jsonOut      bool
	args         []string // as given, for the report

	// startServer starts the server under test; nil runs serverBinary (by
	// default this very executable) as a child process. Tests set it.
	startServer serverStarter
}

func cmdLoadtest(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseLoadtestFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	return runLoadtest(ctx, o, stdout, stderr)
}

func parseLoadtestFlags(args []string, getenv func(string) string, stderr io.Writer) (loadtestOptions, error) {
	o := loadtestOptions{args: args}
	fs := newFlagSet("loadtest", "loadtest [flags]", getenv, stderr)
	intFlag(fs, &o.users, "users", 100000, "users enrolled with TOTP in the scratch database")
	fs.durationVar(&o.duration, "duration", 10*time.Second, "how long phase 1 (second-factor requests) runs")
	intFlag(fs, &o.concurrency, "concurrency", 32, "client connections of phase 1's throughput part")
	intFlag(fs, &o.rate, "rate", targetVerifyRate, "second-factor requests per second that phase 1's latency part starts, at fixed intervals")
	intFlag(fs, &o.fullSignins, "full-signins", 1000, "users of phase 2, hashed with the default argon2id parameters, each signing in (password + code) once at most")
	intFlag(fs, &o.signinConns, "signin-concurrency", 2*runtime.NumCPU(), "client connections of phase 2")
	intFlag(fs, &o.flood, "flood", 200, "concurrent password logins of phase 3")
	intFlag(fs, &o.pending, "pending", 0, "pending sign-ins prepared for phase 1 (0: the smaller of --users and (8000 + --rate) per second of --duration)")
	fs.durationVar(&o.hashDuration, "hash-duration", 10*time.Second, "how long phase 2 runs raw argon2id hashing, over all its rounds of about 1s; the full sign-ins run as long, or until their users run out")
	fs.boolVar(&o.keep, "keep", false, "keep the scratch data directory, so --reuse can run on it again")
	fs.stringVar(&o.reuse, "reuse", "", "run on a scratch directory kept by an earlier --keep run instead of seeding a new one")
	fs.stringVar(&o.postgres, "postgres", "", "run on PostgreSQL: the URL of a server where loadtest creates a scratch database (its user needs CREATEDB), dropped at the end")
	intFlag(fs, &o.instances, "instances", 1, "server instances, sharing the --postgres database; connections go to them in turn")
	fs.stringVar(&o.serverBinary, "server-binary", "", "twofold binary to measure (default: this one)")
	fs.boolVar(&o.jsonOut, "json", false, "print the report as JSON")
	if err := fs.parse(args, 0); err != nil {
		return o, err
	}
	switch {
	case o.users < 1:
		return o, usageErrorf("loadtest: --users must be at least 1")
	case o.concurrency < 1 || o.signinConns < 1 || o.rate < 1:
		return o, usageErrorf("loadtest: --concurrency, --signin-concurrency and --rate must be at least 1")
	case o.fullSignins < 1:
		return o, usageErrorf("loadtest: --full-signins must be at least 1")
	case o.instances < 1:
		return o, usageErrorf("loadtest: --instances must be at least 1")
	case o.instances > 1 && o.postgres == "":
		return o, usageErrorf("loadtest: --instances above 1 needs --postgres: instances share a PostgreSQL database")
	case o.flood < 0 || o.pending < 0:
		return o, usageErrorf("loadtest: --flood and --pending must not be negative")
	}
	return o, nil
}

// intFlag adds an int flag with its environment twin, like flagSet's own
// stringVar and durationVar.
func intFlag(fs *flagSet, p *int, name string, def int, help string) {
	if v := fs.getenv(envName(name)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s=%q: want a whole number", envName(name), v))
		}
		def = n
	}
	fs.IntVar(p, name, def, fs.describe(name, help))
}

// argsWithoutPasswords is args with the password of any URL hidden, for the
// report.
func argsWithoutPasswords(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if name, value, ok := strings.Cut(a, "="); ok && strings.HasPrefix(name, "-") {
			out[i] = name + "=" + hidePassword(value)
		} else {
			out[i] = hidePassword(a)
		}
	}
	return out
}

// ltUser is a seeded user as the load generator knows it: it holds the
// TOTP secret, as the user's phone would.
type ltUser struct {
	email  string
	secret []byte
}

// code is the user's current TOTP code.
func (u ltUser) code(t time.Time) string {
	c, err := otp.TOTP(u.secret, t, otp.Params{})
	if err != nil {
		panic(err) // a 20-byte secret and the default parameters cannot fail
	}
	return c
}

// ltReport is everything measured, printed as text or JSON.
type ltReport struct {
	Command      string   `json:"command"`
	Database     string   `json:"database"` // sqlite or postgresql
	Instances    int      `json:"instances"`
	CPUs         int      `json:"cpus"`
	CPUModel     string   `json:"cpu_model"`
	GoVersion    string   `json:"go_version"`
	GoEnv        []string `json:"go_env"` // the Go runtime's variables set in the environment, as NAME=value
	DataDir      string   `json:"data_dir"`
	Seed         ltSeed   `json:"seed"`
	Verify       ltVerify `json:"second_factor"`         // the throughput
	VerifyAtRate ltVerify `json:"second_factor_at_rate"` // the latency at the target rate
	Signin       ltSignin `json:"full_signin"`
	Flood        ltFlood  `json:"flood"`
	ServerLog    ltLog    `json:"server_log"`
	Targets      []ltGoal `json:"targets"`
	TargetsMet   int      `json:"targets_met"`
	Failures     int      `json:"failures"` // requests answered wrongly or not at all, over all phases
}

type ltSeed struct {
	Users           int     `json:"users"`
	Reused          bool    `json:"reused"`
	Seconds         float64 `json:"seconds"`
	UsersPerSecond  float64 `json:"users_per_second"`
	FullUsers       int     `json:"full_users"`
	FullSeconds     float64 `json:"full_users_seconds"`
	Pending         int     `json:"pending"`
	PendingSeconds  float64 `json:"pending_seconds"`
	DatabaseMB      float64 `json:"database_mb"`
	ServerStartSecs float64 `json:"server_start_seconds"`
}

type ltLatency struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

type ltVerify struct {
	Connections      int            `json:"connections,omitempty"`        // the throughput part's
	OfferedPerSecond int            `json:"offered_per_second,omitempty"` // the fixed-rate part's
	MaxInFlight      int            `json:"max_in_flight"`
	Requests         int            `json:"requests"`
	OK               int            `json:"ok"`
	Errors           int            `json:"errors"`
	Statuses         map[string]int `json:"statuses"`
	ErrorSamples     []string       `json:"error_samples,omitempty"`
	Seconds          float64        `json:"seconds"`
	PoolUsedUp       bool           `json:"pool_used_up"`
	PerSecond        float64        `json:"per_second"`
	Latency          ltLatency      `json:"latency"`
	ServerPeakMB     float64        `json:"server_peak_rss_mb"`
	ServerCPUSecs    float64        `json:"server_cpu_seconds"`
	ClientCPUSecs    float64        `json:"loadtest_cpu_seconds"`
	ServerCPUShare   float64        `json:"server_cpu_share"` // of all cores over the phase
}

type ltSignin struct {
	Rounds          int            `json:"rounds"`     // planned
	RoundsRun       int            `json:"rounds_run"` // fewer when the users ran out
	HashGoroutines  int            `json:"hash_goroutines"`
	HashesAll       int            `json:"hashes_all"`   // every hash of the rounds
	Hashes          int            `json:"hashes"`       // those counted in the steady-state windows
	HashSeconds     float64        `json:"hash_seconds"` // the windows' length
	HashesPerSecond float64        `json:"hashes_per_second"`
	HashCPUMs       float64        `json:"hash_cpu_ms"`   // this process's CPU time per hash of the rounds
	WarmupLogins    int            `json:"warmup_logins"` // untimed, before the first round
	Connections     int            `json:"connections"`
	Signins         int            `json:"signins"`
	OK              int            `json:"ok"`
	Counted         int            `json:"counted"` // successful sign-ins counted in the steady-state windows
	Errors          int            `json:"errors"`
	ErrorSamples    []string       `json:"error_samples,omitempty"`
	Statuses        map[string]int `json:"statuses"`
	Seconds         float64        `json:"seconds"` // the windows' length
	PerSecond       float64        `json:"per_second"`
	Latency         ltLatency      `json:"latency"`
	Ratio           float64        `json:"ratio"`
	RoundRatios     []float64      `json:"round_ratios"` // each round's own, to show the drift
	ServerPeakMB    float64        `json:"server_peak_rss_mb"`
	ServerCPUSecs   float64        `json:"server_cpu_seconds"`   // during the sign-ins
	ClientCPUSecs   float64        `json:"loadtest_cpu_seconds"` // during the sign-ins
	ServerCPUMs     float64        `json:"server_cpu_ms_per_signin"`
	// The server's CPU time while this process hashed: work that the
	// sign-ins left behind (a checkpoint) and that slowed the raw hashing.
	ServerCPUHashingSecs float64 `json:"server_cpu_seconds_while_hashing"`
	ClientCPUMs          float64 `json:"loadtest_cpu_ms_per_signin"`
	// The machine's CPU time, in percent, that was idle or stolen by the
	// hypervisor during the raw hashing and during the sign-ins, pipelines
	// filling and draining included: steal slows whichever part it falls
	// in, and so moves the ratio.
	HashIdlePct  float64 `json:"hash_idle_percent"`
	HashStealPct float64 `json:"hash_steal_percent"`
	SignIdlePct  float64 `json:"signin_idle_percent"`
	SignStealPct float64 `json:"signin_steal_percent"`
}

type ltFlood struct {
	Requests         int            `json:"requests"`
	Statuses         map[string]int `json:"statuses"`
	Answered         int            `json:"answered"` // 200, 401, or 429/503 with Retry-After
	Busy             int            `json:"busy"`     // 429 or 503 with Retry-After
	Failures         int            `json:"failures"`
	FailureSamples   []string       `json:"failure_samples,omitempty"`
	WrongOutcome     int            `json:"wrong_outcome"` // e.g. 200 for a wrong password
	AllAnsweredSecs  float64        `json:"all_answered_seconds"`
	Latency          ltLatency      `json:"latency"`
	ServerPeakMB     float64        `json:"server_peak_rss_mb"`
	ServerAfterMB    float64        `json:"server_rss_after_mb"`
	RightPasswords   int            `json:"right_passwords"`
	WrongPasswords   int            `json:"wrong_passwords"`
	UnknownAddresses int            `json:"unknown_addresses"`
}

type ltLog struct {
	Errors   int      `json:"errors"`
	Warnings int      `json:"warnings"`
	Samples  []string `json:"samples,omitempty"`
}

type ltGoal struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// runLoadtest runs the three phases and prints the report. A missed target
// is reported, not an error: the error is for a run that could not measure,
// or requests answered wrongly or not at all.
func runLoadtest(ctx context.Context, o loadtestOptions, stdout, stderr io.Writer) (err error) {
	progress := func(format string, args ...any) {
		fmt.Fprintf(stderr, "loadtest: "+format+"\n", args...)
	}
	rep := &ltReport{
		Command:   strings.TrimSpace("twofold loadtest " + strings.Join(argsWithoutPasswords(o.args), " ")),
		CPUs:      runtime.NumCPU(),
		CPUModel:  cpuModel(),
		GoVersion: runtime.Version(),
		GoEnv:     goRuntimeEnv(os.Getenv),
		Database:  "sqlite",
	}

	// The scratch directory.
	dir := o.reuse
	if dir == "" {
		if dir, err = os.MkdirTemp("", "twofold-loadtest-"); err != nil {
			return fmt.Errorf("loadtest: %w", err)
		}
		if o.keep {
			progress("scratch data directory %s (kept: run again with --reuse %s)", dir, dir)
		} else {
			defer func() {
				if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
					err = fmt.Errorf("loadtest: remove scratch directory: %w", rerr)
				}
			}()
			progress("scratch data directory %s (removed at the end)", dir)
		}
	} else {
		for _, f := range []string{ltUsersFile, ltSeededDB} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				return fmt.Errorf("loadtest: --reuse %s: not a directory kept by twofold loadtest --keep (no %s); loadtest never runs on a real installation", dir, f)
			}
		}
	}
	rep.DataDir = dir

	// The scratch PostgreSQL database, new in every run.
	database := ""
	if o.postgres != "" {
		name := "twofold_loadtest_" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if database, err = pgadmin.Create(ctx, o.postgres, name); err != nil {
			return fmt.Errorf("loadtest: --postgres: %w", err)
		}
		defer func() {
			// With a context of its own: the run's may have ended.
			dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if derr := pgadmin.Drop(dctx, o.postgres, name); derr != nil && err == nil {
				err = fmt.Errorf("loadtest: %w", derr)
			}
		}()
		progress("scratch PostgreSQL database %s (dropped at the end)", name)
		rep.Database = "postgresql"
	}
	rep.Instances = o.instances

	users, full, pending, err := prepareData(ctx, o, dir, database, rep, progress)
	if err != nil {
		return err
	}

	// The server, as a separate process.
	logf, err := os.OpenFile(filepath.Join(dir, ltServerLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("loadtest: server log: %w", err)
	}
	defer logf.Close()
	logStart, _ := logf.Seek(0, io.SeekEnd)
	start := o.startServer
	if start == nil {
		bin := o.serverBinary
		if bin == "" {
			if bin, err = os.Executable(); err != nil {
				return fmt.Errorf("loadtest: find the twofold binary: %w (use --server-binary)", err)
			}
		}
		start = childServer(bin)
	}
	t0 := time.Now()
	var srv ltCluster
	stopped := false
	defer func() {
		if !stopped {
			for _, s := range srv {
				s.stop()
			}
		}
	}()
	for range o.instances {
		s, err := start(ctx, dir, database, logf)
		if err != nil {
			return fmt.Errorf("loadtest: start server: %w (its log: %s)", err, filepath.Join(dir, ltServerLog))
		}
		srv = append(srv, s)
		progress("server pid %d listening on %s", s.pid, s.url)
	}
	rep.Seed.ServerStartSecs = time.Since(t0).Seconds()

	// Phase 1: the second factor.
	if err := phaseVerify(ctx, o, srv, users, pending, rep, progress); err != nil {
		return err
	}
	// Phase 2: full sign-ins against raw argon2id.
	if err := phaseSignin(ctx, o, srv, full, &rep.Signin, progress); err != nil {
		return err
	}
	// Phase 3: the login flood.
	if o.flood > 0 {
		if err := phaseFlood(ctx, o, srv, full, &rep.Flood, progress); err != nil {
			return err
		}
	}

	stopped = true
	for _, s := range srv {
		if err := s.stop(); err != nil {
			progress("server pid %d stopped with an error: %v", s.pid, err)
			rep.ServerLog.Errors++
			rep.ServerLog.Samples = append(rep.ServerLog.Samples, "exit: "+err.Error())
		}
	}
	rep.ServerLog = readServerLog(filepath.Join(dir, ltServerLog), logStart, rep.ServerLog)

	rep.judge(o)
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.print(stdout, o)
	}
	if rep.Failures > 0 {
		return fmt.Errorf("loadtest: %d requests were answered wrongly or not at all (see the report and %s)", rep.Failures, filepath.Join(dir, ltServerLog))
	}
	return nil
}

// prepareData seeds (or, with --reuse, restores) the phase-1 users, seeds
// the phase-2 users with the default hasher and creates the pending
// sign-ins of phase 1, through the Service over the scratch directory, then
// closes it so that the server has the database to itself.
func prepareData(ctx context.Context, o loadtestOptions, dir, database string, rep *ltReport, progress func(string, ...any)) (users, full []ltUser, pending []ltPending, err error) {
	usersPath, seededPath := filepath.Join(dir, ltUsersFile), filepath.Join(dir, ltSeededDB)
	if o.reuse != "" {
		if users, err = readUsers(usersPath); err != nil {
			return nil, nil, nil, err
		}
		// Every run on a kept directory starts from the database as it was
		// seeded: sessions and used TOTP steps of earlier runs would
		// otherwise pile up and change the figures.
		if err := restoreDB(seededPath, dir); err != nil {
			return nil, nil, nil, err
		}
		rep.Seed.Reused = true
		progress("reusing the %d enrolled users of %s, as seeded", len(users), dir)
	} else {
		if users, err = seedPhase1(ctx, o, dir, rep, progress); err != nil {
			return nil, nil, nil, err
		}
		if o.keep {
			if err := writeUsers(usersPath, users); err != nil {
				return nil, nil, nil, err
			}
			if err := copyFile(filepath.Join(dir, databaseFile), seededPath); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	rep.Seed.Users = len(users)
	if database != "" {
		if err := copyToPostgres(ctx, filepath.Join(dir, databaseFile), database, progress); err != nil {
			return nil, nil, nil, err
		}
	}

	a, cheap, err := openScratch(ctx, dir, database)
	if err != nil {
		return nil, nil, nil, err
	}
	defer func() {
		if cerr := a.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("loadtest: %w", cerr)
		}
	}()

	// Phase-2 users, new in every run, hashed as a real installation does.
	progress("seeding %d users with the default argon2id parameters (t=%d m=%d KiB)...", o.fullSignins, password.DefaultTime, password.DefaultMemoryKiB)
	t0 := time.Now()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	full, err = seedUsers(ctx, a.service, o.fullSignins, 2*runtime.NumCPU(), func(i int) string {
		return fmt.Sprintf("full-%s-%05d@loadtest.invalid", run, i)
	}, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	rep.Seed.FullUsers = len(full)
	rep.Seed.FullSeconds = time.Since(t0).Seconds()

	// Pending sign-ins, right before phase 1: they last 10 minutes.
	// maxThroughput is the rate of the throughput part they suffice for by
	// default (this machine has reached 6,900 verifications/s).
	const maxThroughput = 8000
	n := o.pending
	if n == 0 {
		n = int(float64(maxThroughput+o.rate) * o.duration.Seconds())
	}
	n = max(1, min(n, len(users)))
	progress("creating %d pending sign-ins (password passed, code due)...", n)
	t0 = time.Now()
	pending, err = createPending(ctx, cheap, users, n, 4*runtime.NumCPU(), func(done int) {
		if done%10000 == 0 {
			progress("  %d/%d pending sign-ins", done, n)
		}
	})
	if err != nil {
		return nil, nil, nil, err
	}
	rep.Seed.Pending = len(pending)
	rep.Seed.PendingSeconds = time.Since(t0).Seconds()
	rep.Seed.DatabaseMB = dirMB(dir, databaseFile)
	return users, full, pending, nil
}

// openScratch opens the scratch directory as the server will (openApp wires
// the very key files it loads; its Service hashes with the default
// parameters) and returns beside it a Service with a cheap hasher, for the
// many phase-1 users: their PHC strings record these cheap parameters, so
// the server verifies them with these too.
func openScratch(ctx context.Context, dir, database string) (*app, *mfa.Service, error) {
	a, err := openApp(ctx, Config{Data: dir, Database: database}, discardLogger())
	if err != nil {
		return nil, nil, fmt.Errorf("loadtest: %w", err)
	}
	codeKey, err := loadOrCreateCodeKey(filepath.Join(dir, codeKeyFile))
	if err != nil {
		a.Close()
		return nil, nil, fmt.Errorf("loadtest: %w", err)
	}
	cheap, err := mfa.NewService(mfa.Config{
		Store:     a.db,
		Passwords: password.NewHasher(password.Options{Time: ltCheapTime, MemoryKiB: ltCheapMemoryKiB, MaxConcurrent: 4 * runtime.NumCPU()}),
		Cipher:    a.keys,
		CodeKey:   codeKey,
	})
	if err != nil {
		a.Close()
		return nil, nil, fmt.Errorf("loadtest: %w", err)
	}
	return a, cheap, nil
}

// seedPhase1 enrolls the --users users with the cheap hasher.
func seedPhase1(ctx context.Context, o loadtestOptions, dir string, rep *ltReport, progress func(string, ...any)) (users []ltUser, err error) {
	a, cheap, err := openScratch(ctx, dir, "")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := a.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("loadtest: %w", cerr)
		}
	}()
	progress("seeding %d users with TOTP confirmed (argon2id t=%d m=%d KiB for speed)...", o.users, ltCheapTime, ltCheapMemoryKiB)
	t0 := time.Now()
	users, err = seedUsers(ctx, cheap, o.users, 4*runtime.NumCPU(), func(i int) string {
		return fmt.Sprintf("user%07d@loadtest.invalid", i)
	}, func(done int) {
		if done%10000 == 0 || done == o.users {
			el := time.Since(t0)
			progress("  %d/%d users (%s, %.0f users/s)", done, o.users, round(el), float64(done)/el.Seconds())
		}
	})
	if err != nil {
		return nil, err
	}
	rep.Seed.Seconds = time.Since(t0).Seconds()
	rep.Seed.UsersPerSecond = float64(len(users)) / rep.Seed.Seconds
	return users, nil
}

// copyFile copies a closed database file.
func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	_, cerr := io.Copy(dst, src)
	// Synced, so that its writing back does not slow the phases down.
	if err := errors.Join(cerr, dst.Sync(), dst.Close()); err != nil {
		return fmt.Errorf("loadtest: copy %s: %w", from, err)
	}
	return nil
}

// restoreDB puts the seeded copy back as the scratch directory's database.
func restoreDB(seeded, dir string) error {
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(filepath.Join(dir, databaseFile+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("loadtest: %w", err)
		}
	}
	return copyFile(seeded, filepath.Join(dir, databaseFile))
}

// enrollUser creates a user and turns TOTP on, as a person does with the
// enable wizard, and returns the secret the phone would hold.
func enrollUser(ctx context.Context, svc *mfa.Service, email string) (ltUser, error) {
	u, err := svc.CreateUser(ctx, email, ltPassword, ltClient)
	if err != nil {
		return ltUser{}, fmt.Errorf("loadtest: create %s: %w", email, err)
	}
	e, err := svc.BeginTOTP(ctx, u, ltPassword, ltClient)
	if err != nil {
		return ltUser{}, fmt.Errorf("loadtest: begin totp for %s: %w", email, err)
	}
	secret, err := otp.DecodeSecret(e.Secret)
	if err != nil {
		return ltUser{}, fmt.Errorf("loadtest: totp secret of %s: %w", email, err)
	}
	lu := ltUser{email: u.Email, secret: secret}
	// Confirm with the code of the previous step: the factor's last used
	// step is then one before the current one, so a sign-in right after
	// (as in a short run) can use the current code. A step boundary passed
	// between making and checking the code makes it too old: try again.
	for try := 0; ; try++ {
		_, _, err = svc.ConfirmTOTP(ctx, u, lu.code(time.Now().Add(-otp.DefaultPeriod)), ltClient)
		if err == nil || !errors.Is(err, mfa.ErrInvalidSetupCode) || try == 2 {
			break
		}
	}
	if err != nil {
		return ltUser{}, fmt.Errorf("loadtest: confirm totp for %s: %w", email, err)
	}
	return lu, nil
}

// seedUsers enrolls n users from workers goroutines; progress, if not nil,
// is called after each user with the number done.
func seedUsers(ctx context.Context, svc *mfa.Service, n, workers int, email func(int) string, progress func(int)) ([]ltUser, error) {
	users := make([]ltUser, n)
	err := parallel(ctx, n, workers, func(ctx context.Context, i int) error {
		u, err := enrollUser(ctx, svc, email(i))
		users[i] = u
		return err
	}, progress)
	return users, err
}

// ltPending is a sign-in that has passed the password step.
type ltPending struct {
	token string
	user  int
}

// createPending signs n distinct users, in random order (spread over the
// database), in with their password, so that phase 1 sends only the second
// step.
func createPending(ctx context.Context, svc *mfa.Service, users []ltUser, n, workers int, progress func(int)) ([]ltPending, error) {
	pick := rand.Perm(len(users))[:n]
	pending := make([]ltPending, n)
	err := parallel(ctx, n, workers, func(ctx context.Context, i int) error {
		u := users[pick[i]]
		res, err := svc.Login(ctx, u.email, ltPassword, ltClient)
		if err != nil {
			return fmt.Errorf("loadtest: sign in %s: %w", u.email, err)
		}
		if !res.SecondFactorRequired() {
			return fmt.Errorf("loadtest: sign in %s: no second factor asked for", u.email)
		}
		pending[i] = ltPending{token: res.Token, user: pick[i]}
		return nil
	}, progress)
	return pending, err
}

// parallel runs f(0..n-1) on workers goroutines and stops at the first error.
func parallel(ctx context.Context, n, workers int, f func(context.Context, int) error, progress func(int)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
				if d := done.Add(1); progress != nil {
					progress(int(d))
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// writeUsers saves the users and their TOTP secrets, so that --reuse can
// run on a kept directory.
func writeUsers(path string, users []ltUser) error {
	var b bytes.Buffer
	for _, u := range users {
		b.WriteString(u.email)
		b.WriteByte('\t')
		b.WriteString(otp.EncodeSecret(u.secret))
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	return nil
}

func readUsers(path string) ([]ltUser, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	var users []ltUser
	for line := range strings.Lines(string(data)) {
		email, sec, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if !ok {
			continue
		}
		secret, err := otp.DecodeSecret(sec)
		if err != nil {
			return nil, fmt.Errorf("loadtest: %s: %w", path, err)
		}
		users = append(users, ltUser{email: email, secret: secret})
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("loadtest: %s holds no user", path)
	}
	return users, nil
}

// ltServer is the server under test.
type ltServer struct {
	url  string // http://127.0.0.1:PORT
	pid  int    // whose /proc entry tells its memory and CPU time
	stop func() error
}

// serverStarter starts "twofold serve" on a free loopback port over the data
// directory dir and the database (empty: SQLite in dir), writing its output
// to log.
type serverStarter func(ctx context.Context, dir, database string, log io.Writer) (*ltServer, error)

// ltCluster is the servers under test: one, or several instances sharing one
// PostgreSQL database. Requests go to them in turn.
type ltCluster []*ltServer

// url is the base URL of the instance that the i-th connection or request uses.
func (c ltCluster) url(i int) string { return c[i%len(c)].url }

// cpu is the CPU time all instances have used.
func (c ltCluster) cpu() time.Duration {
	var d time.Duration
	for _, s := range c {
		d += procCPU(s.pid)
	}
	return d
}

// watchMemory watches each instance's peak resident memory.
func (c ltCluster) watchMemory() clusterMem {
	m := make(clusterMem, len(c))
	for i, s := range c {
		m[i] = watchMemory(s.pid)
	}
	return m
}

// rssKiB is the resident memory of the largest instance now.
func (c ltCluster) rssKiB() int64 {
	var most int64
	for _, s := range c {
		kib, _ := procStatusKiB(s.pid, "VmRSS")
		most = max(most, kib)
	}
	return most
}

// clusterMem watches the memory of every instance.
type clusterMem []*memWatch

// stop ends the watch and returns the peak of the largest instance in KiB:
// the target is per instance, each being a server of its own.
func (m clusterMem) stop() int64 {
	var most int64
	for _, w := range m {
		most = max(most, w.stop())
	}
	return most
}

var listeningRE = regexp.MustCompile(`listening on (http://\S+)`)

// childServer runs binary as a separate process, as an installation does,
// without the TWOFOLD_* variables of this environment (a --secure-cookies
// there, for one, would rename the cookie).
func childServer(binary string) serverStarter {
	return func(ctx context.Context, dir, database string, log io.Writer) (*ltServer, error) {
		cmd := exec.Command(binary, "serve", "--addr", "127.0.0.1:0", "--data", dir)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "TWOFOLD_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		if database != "" {
			// In the environment, not the command line that ps shows.
			cmd.Env = append(cmd.Env, "TWOFOLD_DATABASE="+database)
		}
		watch := newListenWatcher(log)
		cmd.Stdout = watch
		cmd.Stderr = log
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stop := func() error {
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				return <-exited
			}
			select {
			case err := <-exited:
				return err
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-exited
				return errors.New("did not stop within 20 s of SIGTERM: killed")
			}
		}
		select {
		case url := <-watch.url:
			return &ltServer{url: url, pid: cmd.Process.Pid, stop: stop}, nil
		case err := <-exited:
			return nil, fmt.Errorf("server exited: %v", err)
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		case <-time.After(60 * time.Second):
			stop()
			return nil, errors.New("no \"listening on\" line within 60 s")
		}
	}
}

// listenWatcher passes the server's stdout on to a log and sends the URL of
// its "listening on" line.
type listenWatcher struct {
	log  io.Writer
	url  chan string
	mu   sync.Mutex
	line []byte
	sent bool
}

func newListenWatcher(log io.Writer) *listenWatcher {
	return &listenWatcher{log: log, url: make(chan string, 1)}
}

func (w *listenWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.sent {
		w.line = append(w.line, p...)
		if m := listeningRE.FindSubmatch(w.line); m != nil {
			w.url <- string(m[1])
			w.sent, w.line = true, nil
		} else if i := bytes.LastIndexByte(w.line, '\n'); i >= 0 {
			w.line = w.line[i+1:]
		}
	}
	return w.log.Write(p)
}

// httpTransport is a keep-alive transport for n connections to the server,
// with no proxy.
func httpTransport(n int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        n,
		MaxIdleConnsPerHost: n,
		MaxConnsPerHost:     n,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// ltResponse is what the load generator reads of an answer.
type ltResponse struct {
	status     int
	retryAfter string // the Retry-After header
	session    string // the session cookie set, if any
	body       []byte
}

// postJSON posts body, with the session cookie if one is given, and reads
// the answer.
func postJSON(ctx context.Context, c *http.Client, url, body string, cookie string) (ltResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return ltResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", ltSessionCookie+"="+cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return ltResponse{}, err
	}
	defer resp.Body.Close()
	r := ltResponse{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	for _, ck := range resp.Cookies() {
		if ck.Name == ltSessionCookie {
			r.session = ck.Value
		}
	}
	r.body, err = io.ReadAll(resp.Body)
	return r, err
}

func ltJSONString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// sampler collects up to 5 error messages for the report.
type sampler struct {
	mu      sync.Mutex
	samples []string
}

func (s *sampler) add(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) < 5 {
		s.samples = append(s.samples, fmt.Sprintf(format, args...))
	}
}

// statusCounter counts answers by status ("200", "401", "error").
type statusCounter struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *statusCounter) add(status int, err error) {
	k := strconv.Itoa(status)
	if err != nil {
		k = "error"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
}

// verifier sends second-factor requests, each for its own pending sign-in
// with the user's current code, and collects their outcomes.
type verifier struct {
	users    []ltUser
	pending  []ltPending
	next     atomic.Int64 // the next of pending to use
	usedUp   atomic.Bool
	statuses statusCounter
	samples  sampler
	mu       sync.Mutex
	lat      []time.Duration
	inFlight atomic.Int64
	most     atomic.Int64 // the most requests in flight at once
}

// send completes the next pending sign-in at base and records its latency
// from scheduled on. It reports false, sending nothing, when every pending
// sign-in is used.
func (v *verifier) send(ctx context.Context, client *http.Client, base string, scheduled time.Time) bool {
	i := int(v.next.Add(1) - 1)
	if i >= len(v.pending) {
		v.usedUp.Store(true)
		return false
	}
	p := v.pending[i]
	n := v.inFlight.Add(1)
	for m := v.most.Load(); n > m && !v.most.CompareAndSwap(m, n); m = v.most.Load() {
	}
	body := `{"method":"totp","code":"` + v.users[p.user].code(time.Now()) + `"}`
	resp, err := postJSON(ctx, client, base+"/api/v1/login/second-factor", body, p.token)
	latency := time.Since(scheduled)
	v.inFlight.Add(-1)
	v.statuses.add(resp.status, err)
	switch {
	case err != nil:
		v.samples.add("%v", err)
	case resp.status != http.StatusOK || !bytes.Contains(resp.body, []byte(`"authenticated"`)):
		v.samples.add("%d %s", resp.status, bytes.TrimSpace(resp.body))
	}
	v.mu.Lock()
	v.lat = append(v.lat, latency)
	v.mu.Unlock()
	return true
}

// measure runs load against srv, watching the server's CPU and memory, and
// fills r with what v collected.
func (v *verifier) measure(ctx context.Context, srv ltCluster, r *ltVerify, load func()) error {
	mem := srv.watchMemory()
	cpu0, self0 := srv.cpu(), selfCPU()
	start := time.Now()
	load()
	elapsed := time.Since(start)
	r.ServerCPUSecs = (srv.cpu() - cpu0).Seconds()
	r.ClientCPUSecs = (selfCPU() - self0).Seconds()
	r.ServerCPUShare = r.ServerCPUSecs / (elapsed.Seconds() * float64(runtime.NumCPU()))
	r.ServerPeakMB = mb(mem.stop())
	if err := ctx.Err(); err != nil {
		return err
	}
	r.Requests = len(v.lat)
	r.Statuses = v.statuses.m
	r.OK = r.Statuses["200"]
	r.ErrorSamples = v.samples.samples
	r.Errors = r.Requests - r.OK
	r.Seconds = elapsed.Seconds()
	r.PoolUsedUp = v.usedUp.Load()
	r.PerSecond = float64(r.OK) / elapsed.Seconds()
	r.Latency = latencyOf(v.lat)
	r.MaxInFlight = int(v.most.Load())
	return nil
}

// phaseVerify measures the second factor twice, each part on pending
// sign-ins of its own. First the throughput: o.concurrency connections
// each send the next request as soon as the last is answered, for
// o.duration. The latency there is set by the number of connections
// (Little's law: connections = rate x mean latency), not by the server.
// Then the latency at the target rate: requests start at fixed intervals,
// o.rate per second for o.duration, each on a free connection, whether or
// not the earlier ones are answered, as independent users arrive. Each
// latency runs from the request's scheduled start, so a server (or load
// generator) that falls behind is charged for the wait as well.
func phaseVerify(ctx context.Context, o loadtestOptions, srv ltCluster, users []ltUser, pending []ltPending, rep *ltReport, progress func(string, ...any)) error {
	needed := int(math.Ceil(float64(o.rate) * o.duration.Seconds()))
	atRate := min(len(pending)/2, needed)
	busy := &verifier{users: users, pending: pending[:len(pending)-atRate]}
	paced := &verifier{users: users, pending: pending[len(pending)-atRate:]}
	paced.usedUp.Store(atRate < needed) // it will run short of o.duration

	progress("phase 1: second-factor requests from %d connections for %s (%d pending sign-ins)...", o.concurrency, o.duration, len(busy.pending))
	r := &rep.Verify
	r.Connections = o.concurrency
	client := &http.Client{Transport: httpTransport(o.concurrency), Timeout: time.Minute}
	defer client.CloseIdleConnections()
	err := busy.measure(ctx, srv, r, func() {
		deadline := time.Now().Add(o.duration)
		var wg sync.WaitGroup
		for conn := range o.concurrency {
			wg.Go(func() {
				for ctx.Err() == nil && time.Now().Before(deadline) && busy.send(ctx, client, srv.url(conn), time.Now()) {
				}
			})
		}
		wg.Wait()
	})
	if err != nil {
		return err
	}
	progress("phase 1: %d verifications in %.1f s: %.0f/s, p99 %.1f ms", r.OK, r.Seconds, r.PerSecond, r.Latency.P99)

	progress("phase 1: second-factor requests at %d/s for %s (%d pending sign-ins)...", o.rate, o.duration, len(paced.pending))
	r = &rep.VerifyAtRate
	r.OfferedPerSecond = o.rate
	// No bound on connections: a request never waits for another's answer.
	tr := httpTransport(0)
	tr.MaxIdleConnsPerHost = 1024
	pacedClient := &http.Client{Transport: tr, Timeout: time.Minute}
	defer pacedClient.CloseIdleConnections()
	err = paced.measure(ctx, srv, r, func() {
		start := time.Now()
		var wg sync.WaitGroup
		for k := 0; k < len(paced.pending) && ctx.Err() == nil; k++ {
			at := start.Add(time.Duration(k) * time.Second / time.Duration(o.rate))
			// Requests whose time has come start at once: a late wake-up
			// delays them, and their latencies say so.
			time.Sleep(time.Until(at))
			wg.Go(func() { paced.send(ctx, pacedClient, srv.url(k), at) })
		}
		wg.Wait()
	})
	if err != nil {
		return err
	}
	progress("phase 1: %d verifications at %d/s offered: p99 %.1f ms, at most %d in flight", r.OK, o.rate, r.Latency.P99, r.MaxInFlight)
	return nil
}

// signinRoundLength is the time that each side of a phase-2 round, raw
// hashing and sign-ins, aims at. This machine's speed drifts over seconds
// (a shared host): many short rounds let the drift weigh on both rates
// alike, where a few long ones let it favour either side by 10%.
const signinRoundLength = time.Second

// completions records when each worker (a hashing goroutine, or a client
// connection) of one side of a round completed its units of work (hashes,
// or sign-ins), to measure the side's rate in steady state.
type completions struct {
	mu    sync.Mutex
	times [][]time.Time // by worker
}

func newCompletions(workers int) *completions {
	return &completions{times: make([][]time.Time, workers)}
}

func (c *completions) add(worker int, t time.Time) {
	c.mu.Lock()
	c.times[worker] = append(c.times[worker], t)
	c.mu.Unlock()
}

// window returns the side's rate in steady state: the sum over workers of
// each one's units per second between its first completion and its last
// one at or before end, during which it was busy without a break. This
// leaves out the pipeline filling at the start, when the first units are
// still running, and draining at the end, when the last ones finish with
// CPUs falling idle. Counted per worker, since workers that start together
// finish their first units together: from the first completion of all,
// that first burst would count work done before the window opened. n is
// the units counted (each worker's first is not), d the time that n takes
// at that rate.
func (c *completions) window(end time.Time) (n int, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var perSecond float64
	for _, times := range c.times {
		k := 0 // a worker completes its units in order
		for k < len(times) && !times[k].After(end) {
			k++
		}
		if k < 2 || !times[k-1].After(times[0]) {
			continue
		}
		n += k - 1
		perSecond += float64(k-1) / times[k-1].Sub(times[0]).Seconds()
	}
	if n == 0 {
		return 0, 0
	}
	return n, time.Duration(float64(n) / perSecond * float64(time.Second))
}

// phaseSignin compares full sign-ins over HTTP with raw argon2id hashing in
// this process while the server is idle. The two alternate in rounds of
// about signinRoundLength each, and each rate is measured in steady state
// (see completions.window).
func phaseSignin(ctx context.Context, o loadtestOptions, srv ltCluster, full []ltUser, r *ltSignin, progress func(string, ...any)) error {
	// Raw argon2id: Verify, what a sign-in runs, with the default
	// parameters, from as many goroutines as CPUs.
	r.HashGoroutines = runtime.NumCPU()
	r.Connections = o.signinConns
	r.Rounds = max(1, int((o.hashDuration+signinRoundLength/2)/signinRoundLength))
	slice := o.hashDuration / time.Duration(r.Rounds)
	progress("phase 2: %d rounds of raw argon2id verifications (%d goroutines) and full sign-ins over HTTP (%d connections), %s each, %d users in all...",
		r.Rounds, r.HashGoroutines, r.Connections, slice, len(full))
	h := password.NewHasher(password.Options{})
	phc, err := h.Hash(ctx, ltPassword)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	hashUntil := func(deadline time.Time, done *completions) (int, error) {
		var (
			hashes atomic.Int64
			herr   error
			once   sync.Once
			wg     sync.WaitGroup
		)
		for w := range r.HashGoroutines {
			wg.Go(func() {
				for ctx.Err() == nil && time.Now().Before(deadline) {
					ok, err := h.Verify(ctx, phc, ltPassword)
					if err != nil || !ok {
						once.Do(func() { herr = fmt.Errorf("loadtest: argon2id verify: ok=%v, %w", ok, err) })
						return
					}
					done.add(w, time.Now())
					hashes.Add(1)
				}
			})
		}
		wg.Wait()
		return int(hashes.Load()), cmp.Or(herr, ctx.Err())
	}
	// Untimed first, on both sides: the first hashes of a process are
	// slower while its heap grows to hold argon2's memory. Each new page is
	// faulted in twice (argon2 reads a block before writing it), and in a
	// VM each second fault interrupts the other CPU; this costs the raw
	// hashing a third of its rate in its first 2 s, and the server, which
	// hashed no password in phase 1, as much.
	if _, err := hashUntil(time.Now().Add(o.hashDuration/3), newCompletions(r.HashGoroutines)); err != nil {
		return err
	}
	tr := httpTransport(r.Connections)
	defer tr.CloseIdleConnections()
	if r.WarmupLogins, err = warmHasher(ctx, tr, srv, r.Connections, o.hashDuration/3); err != nil {
		return err
	}

	// Full sign-ins: password, then code, until the round's time is up or
	// the users are used up.
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	var (
		statuses statusCounter
		samples  sampler
		mu       sync.Mutex
		lat      []time.Duration
		next     atomic.Int64

		hashCPU, hashTime, signTime time.Duration
		hashMachine, signMachine    machineTicks // summed over the rounds
	)
	// signins returns when the users ran out, if they did before d.
	signins := func(d time.Duration, done *completions) (usedUp time.Time) {
		deadline := time.Now().Add(d)
		var once sync.Once
		var wg sync.WaitGroup
		for w := range r.Connections {
			wg.Go(func() {
				for ctx.Err() == nil && time.Now().Before(deadline) {
					i := int(next.Add(1) - 1)
					if i >= len(full) {
						once.Do(func() { usedUp = time.Now() })
						return
					}
					t0 := time.Now()
					err := fullSignin(ctx, client, srv.url(i), full[i], &statuses)
					t1 := time.Now()
					mu.Lock()
					lat = append(lat, t1.Sub(t0))
					if err == nil {
						r.OK++
					}
					mu.Unlock()
					if err != nil {
						samples.add("%s: %v", full[i].email, err)
					} else {
						done.add(w, t1)
					}
				}
			})
		}
		wg.Wait()
		if usedUp.IsZero() {
			return deadline
		}
		return usedUp
	}
	mem := srv.watchMemory()
	for round := 0; round < r.Rounds && int(next.Load()) < len(full); round++ {
		m0, cpu0 := readMachineTicks(), selfCPU()
		hashed := newCompletions(r.HashGoroutines)
		srvIdle0 := srv.cpu()
		deadline := time.Now().Add(slice)
		n, err := hashUntil(deadline, hashed)
		if err != nil {
			mem.stop()
			return err
		}
		r.HashesAll += n
		hashCPU += selfCPU() - cpu0
		r.ServerCPUHashingSecs += (srv.cpu() - srvIdle0).Seconds()
		k, d := hashed.window(deadline)
		r.Hashes += k
		hashTime += d
		roundHashRate := rate(k, d)
		m1 := readMachineTicks()
		hashMachine.addSpan(m0, m1)

		signed := newCompletions(r.Connections)
		srvCPU0, self0 := srv.cpu(), selfCPU()
		end := signins(slice, signed)
		k, d = signed.window(end)
		r.Counted += k
		signTime += d
		if k > 0 && roundHashRate > 0 {
			r.RoundRatios = append(r.RoundRatios, math.Round(1000*rate(k, d)/roundHashRate)/1000)
		}
		r.ServerCPUSecs += (srv.cpu() - srvCPU0).Seconds()
		r.ClientCPUSecs += (selfCPU() - self0).Seconds()
		signMachine.addSpan(m1, readMachineTicks())
		r.RoundsRun++
	}
	if r.RoundsRun < r.Rounds {
		progress("phase 2: the %d users ran out after %d of %d rounds: raise --full-signins", len(full), r.RoundsRun, r.Rounds)
	}
	r.HashIdlePct, r.HashStealPct = hashMachine.percent()
	r.SignIdlePct, r.SignStealPct = signMachine.percent()
	r.ServerPeakMB = mb(mem.stop())
	if err := ctx.Err(); err != nil {
		return err
	}
	r.HashSeconds = hashTime.Seconds()
	r.HashesPerSecond = rate(r.Hashes, hashTime)
	r.Signins = len(lat)
	r.Errors = r.Signins - r.OK
	r.Statuses = statuses.m
	r.ErrorSamples = samples.samples
	r.Seconds = signTime.Seconds()
	r.PerSecond = rate(r.Counted, signTime)
	r.Latency = latencyOf(lat)
	if r.HashesAll > 0 && r.OK > 0 {
		r.HashCPUMs = ms(hashCPU) / float64(r.HashesAll)
		r.ServerCPUMs = 1000 * r.ServerCPUSecs / float64(r.OK)
		r.ClientCPUMs = 1000 * r.ClientCPUSecs / float64(r.OK)
	}
	if r.HashesPerSecond > 0 {
		r.Ratio = r.PerSecond / r.HashesPerSecond
	}
	progress("phase 2: %.1f argon2id hashes/s, %.1f full sign-ins/s: ratio %.3f", r.HashesPerSecond, r.PerSecond, r.Ratio)
	return nil
}

// joinFloats lists xs with three decimals.
func joinFloats(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 3, 64)
	}
	return strings.Join(parts, " ")
}

// rate is n per second of d, 0 for no time.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// warmHasher sends password logins for unknown addresses, each answered
// 401 after one full argon2id run, from conns connections for d, so that
// every server's heap holds argon2's memory before phase 2 measures it. It
// returns how many were answered.
func warmHasher(ctx context.Context, tr http.RoundTripper, srv ltCluster, conns int, d time.Duration) (int, error) {
	c := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	deadline := time.Now().Add(d)
	var (
		next, answered atomic.Int64
		once           sync.Once
		werr           error
		wg             sync.WaitGroup
	)
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				body := `{"email":"warm-up-` + strconv.Itoa(i) + `@loadtest.invalid","password":` + ltJSONString(ltPassword) + `}`
				resp, err := postJSON(ctx, c, srv.url(i)+"/api/v1/login", body, "")
				if err == nil && resp.status != http.StatusUnauthorized {
					err = fmt.Errorf("got %d, want 401: %s", resp.status, bytes.TrimSpace(resp.body))
				}
				if err != nil {
					once.Do(func() { werr = fmt.Errorf("loadtest: warming the server's hasher: %w", err) })
					return
				}
				answered.Add(1)
			}
		})
	}
	wg.Wait()
	return int(answered.Load()), cmp.Or(werr, ctx.Err())
}

// fullSignin signs u in with password and code, as a browser-less client
// does: it sends the session cookie that the password step sets. c keeps
// no cookies of its own, so that connections can be shared.
func fullSignin(ctx context.Context, c *http.Client, base string, u ltUser, statuses *statusCounter) error {
	resp, err := postJSON(ctx, c, base+"/api/v1/login", `{"email":`+ltJSONString(u.email)+`,"password":`+ltJSONString(ltPassword)+`}`, "")
	statuses.add(resp.status, err)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if resp.status != http.StatusOK || !bytes.Contains(resp.body, []byte(`"second_factor_required"`)) || resp.session == "" {
		return fmt.Errorf("login: %d %s (session cookie set: %v)", resp.status, bytes.TrimSpace(resp.body), resp.session != "")
	}
	pending := resp.session
	resp, err = postJSON(ctx, c, base+"/api/v1/login/second-factor", `{"method":"totp","code":"`+u.code(time.Now())+`"}`, pending)
	statuses.add(resp.status, err)
	if err != nil {
		return fmt.Errorf("second factor: %w", err)
	}
	if resp.status != http.StatusOK || !bytes.Contains(resp.body, []byte(`"authenticated"`)) {
		return fmt.Errorf("second factor: %d %s", resp.status, bytes.TrimSpace(resp.body))
	}
	if resp.session == "" || resp.session == pending {
		return errors.New("second factor: the session was not rotated")
	}
	return nil
}

// phaseFlood sends o.flood password logins at once: a third with the right
// password, a third with a wrong one, a third for unknown addresses.
func phaseFlood(ctx context.Context, o loadtestOptions, srv ltCluster, full []ltUser, r *ltFlood, progress func(string, ...any)) error {
	progress("phase 3: %d concurrent password logins...", o.flood)
	client := &http.Client{Transport: httpTransport(o.flood), Timeout: 2 * time.Minute}
	defer client.CloseIdleConnections()
	r.Requests = o.flood
	var (
		statuses statusCounter
		samples  sampler
		mu       sync.Mutex
		lat      []time.Duration
		wg       sync.WaitGroup
		answered atomic.Int64
		busy     atomic.Int64
		wrong    atomic.Int64
	)
	mem := srv.watchMemory()
	go0 := make(chan struct{})
	for i := range o.flood {
		email, pw, want := "", ltPassword, http.StatusOK
		switch u := full[(i/3)%len(full)]; i % 3 {
		case 0:
			email = u.email
			r.RightPasswords++
		case 1:
			email, pw, want = u.email, ltWrongPassword, http.StatusUnauthorized
			r.WrongPasswords++
		default:
			email, want = fmt.Sprintf("nobody-%d@loadtest.invalid", i), http.StatusUnauthorized
			r.UnknownAddresses++
		}
		body := `{"email":` + ltJSONString(email) + `,"password":` + ltJSONString(pw) + `}`
		url := srv.url(i) + "/api/v1/login"
		wg.Go(func() {
			<-go0
			t0 := time.Now()
			resp, err := postJSON(ctx, client, url, body, "")
			status, retry, b := resp.status, resp.retryAfter, resp.body
			d := time.Since(t0)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
			statuses.add(status, err)
			switch {
			case err != nil:
				samples.add("%v", err)
			case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
				if retry == "" {
					samples.add("%d without Retry-After: %s", status, bytes.TrimSpace(b))
					return
				}
				answered.Add(1)
				busy.Add(1)
			case status == http.StatusOK || status == http.StatusUnauthorized:
				answered.Add(1)
				if status != want {
					wrong.Add(1)
					samples.add("%s: got %d, want %d: %s", email, status, want, bytes.TrimSpace(b))
				}
			default:
				samples.add("%d %s", status, bytes.TrimSpace(b))
			}
		})
	}
	start := time.Now()
	close(go0)
	wg.Wait()
	elapsed := time.Since(start)
	r.ServerPeakMB = mb(mem.stop())
	r.ServerAfterMB = mb(srv.rssKiB())
	if err := ctx.Err(); err != nil {
		return err
	}
	r.Statuses = statuses.m
	r.Answered = int(answered.Load())
	r.Busy = int(busy.Load())
	r.WrongOutcome = int(wrong.Load())
	r.Failures = r.Requests - r.Answered + r.WrongOutcome
	r.FailureSamples = samples.samples
	r.AllAnsweredSecs = elapsed.Seconds()
	r.Latency = latencyOf(lat)
	progress("phase 3: %d of %d answered in %s", r.Answered, r.Requests, round(elapsed))
	return nil
}

// memWatch samples a process's resident memory every 50 ms.
type memWatch struct {
	pid      int
	reset    bool // VmHWM was reset at the start
	done     chan struct{}
	finished chan struct{}
	peak     int64 // KiB
}

// watchMemory starts watching pid's peak resident memory: it resets the
// kernel's high-water mark (VmHWM) where allowed, and samples VmRSS where
// not. The kernel's mark, read at the end, is exact; sampling, every 50 ms,
// may miss a peak, and costs CPU that the phases measure.
func watchMemory(pid int) *memWatch {
	m := &memWatch{pid: pid, done: make(chan struct{}), finished: make(chan struct{})}
	m.reset = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	if m.reset {
		close(m.finished)
		return m
	}
	go func() {
		defer close(m.finished)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if kib, err := procStatusKiB(pid, "VmRSS"); err == nil {
				m.peak = max(m.peak, kib)
			}
			select {
			case <-m.done:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// stop ends the watch and returns the peak in KiB.
func (m *memWatch) stop() int64 {
	close(m.done)
	<-m.finished
	if m.reset {
		if hwm, err := procStatusKiB(m.pid, "VmHWM"); err == nil {
			m.peak = max(m.peak, hwm)
		}
	}
	return m.peak
}

// procStatusKiB reads a "kB" field of /proc/PID/status.
func procStatusKiB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// procCPU is the user and system CPU time pid has used, from /proc/PID/stat
// (in clock ticks of 1/100 s, as on every Linux that Go runs on).
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// machineTicks is the whole machine's CPU time from the first line of
// /proc/stat, in clock ticks summed over CPUs: steal is time the
// hypervisor gave the CPUs to other machines, idle includes waiting for
// I/O. A machine without /proc/stat reads as all zero.
type machineTicks struct{ all, idle, steal int64 }

func readMachineTicks() machineTicks {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineTicks{}
	}
	return parseMachineTicks(data)
}

func parseMachineTicks(data []byte) machineTicks {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return machineTicks{}
	}
	var t machineTicks
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		n, _ := strconv.ParseInt(v, 10, 64)
		t.all += n
		switch i {
		case 3, 4:
			t.idle += n
		case 7:
			t.steal += n
		}
	}
	return t
}

// addSpan adds the ticks from one reading to a later one, so that m sums
// several stretches of a part.
func (m *machineTicks) addSpan(from, to machineTicks) {
	m.all += to.all - from.all
	m.idle += to.idle - from.idle
	m.steal += to.steal - from.steal
}

// percent returns the idle and stolen shares in percent, 0 when nothing was read.
func (m machineTicks) percent() (idle, steal float64) {
	if m.all <= 0 {
		return 0, 0
	}
	return 100 * float64(m.idle) / float64(m.all), 100 * float64(m.steal) / float64(m.all)
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func latencyOf(d []time.Duration) ltLatency {
	if len(d) == 0 {
		return ltLatency{}
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(q*float64(len(d))+0.999999) - 1
		return ms(d[max(0, min(i, len(d)-1))])
	}
	return ltLatency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func mb(kib int64) float64 { return float64(kib) / 1024 }

func round(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// dirMB is the size of the database file and its WAL, in MiB.
func dirMB(dir, db string) float64 {
	var n int64
	for _, suffix := range []string{"", "-wal"} {
		if st, err := os.Stat(filepath.Join(dir, db+suffix)); err == nil {
			n += st.Size()
		}
	}
	return float64(n) / (1 << 20)
}

// goRuntimeVars are the environment variables that tune Go's runtime. The
// servers inherit the loadtest's environment, so these shape both sides of
// every comparison, and the report names them.
var goRuntimeVars = []string{"GOGC", "GOMEMLIMIT", "GODEBUG", "GOMAXPROCS"}

// goRuntimeEnv returns the goRuntimeVars that getenv sets, as NAME=value.
func goRuntimeEnv(getenv func(string) string) []string {
	env := []string{}
	for _, name := range goRuntimeVars {
		if v := getenv(name); v != "" {
			env = append(env, name+"="+v)
		}
	}
	return env
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// readServerLog counts the error and warning lines the server wrote from
// offset on.
func readServerLog(path string, offset int64, l ltLog) ltLog {
	f, err := os.Open(path)
	if err != nil {
		return l
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return l
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "level=ERROR"):
			l.Errors++
			if len(l.Samples) < 5 {
				l.Samples = append(l.Samples, line)
			}
		case strings.Contains(line, "level=WARN"):
			l.Warnings++
		}
	}
	return l
}

// judge sets the targets and the failure count.
func (r *ltReport) judge(o loadtestOptions) {
	goal := func(name, want, got string, met bool) {
		r.Targets = append(r.Targets, ltGoal{Name: name, Want: want, Got: got, Met: met})
		if met {
			r.TargetsMet++
		}
	}
	v := r.Verify
	goal("second-factor verifications/s", fmt.Sprintf("≥ %d", targetVerifyRate), fmt.Sprintf("%.0f", v.PerSecond),
		v.PerSecond >= targetVerifyRate && v.Errors == 0)
	a := r.VerifyAtRate
	goal(fmt.Sprintf("second-factor p99 at %d/s", a.OfferedPerSecond), fmt.Sprintf("< %d ms", targetVerifyP99.Milliseconds()), fmt.Sprintf("%.1f ms", a.Latency.P99),
		a.Requests > 0 && !a.PoolUsedUp && a.Errors == 0 && a.Latency.P99 < ms(targetVerifyP99))
	peak := max(v.ServerPeakMB, a.ServerPeakMB)
	goal("server RSS during phase 1", fmt.Sprintf("< %d MB", targetVerifyRSSKiB>>10), fmt.Sprintf("%.1f MB", peak),
		peak > 0 && peak < mb(targetVerifyRSSKiB))
	s := r.Signin
	goal("full sign-ins/s ÷ argon2id hashes/s", fmt.Sprintf("≥ %.2f", targetSigninRatio), fmt.Sprintf("%.3f", s.Ratio),
		s.Ratio >= targetSigninRatio && s.Errors == 0)
	if o.flood > 0 {
		f := r.Flood
		goal("login flood answered", "all", fmt.Sprintf("%d of %d", f.Answered-f.WrongOutcome, f.Requests), f.Failures == 0)
		goal("server RSS during the flood", fmt.Sprintf("< %d MB", targetFloodRSSKiB>>10), fmt.Sprintf("%.1f MB", f.ServerPeakMB),
			f.ServerPeakMB > 0 && f.ServerPeakMB < mb(targetFloodRSSKiB))
	}
	r.Failures = v.Errors + a.Errors + s.Errors + r.Flood.Failures
}

// printRequests prints the requests of a part of phase 1 and their errors.
func (v ltVerify) printRequests(p func(string, ...any), pending int) {
	p("  requests      %d in %.2f s (%s)", v.Requests, v.Seconds, statusList(v.Statuses))
	if v.PoolUsedUp {
		p("  (this part's share of the %d pending sign-ins was used up: raise --pending)", pending)
	}
	for _, s := range v.ErrorSamples {
		p("  error         %s", s)
	}
}

// printUse prints the server's memory and CPU time, and the load generator's, in a part of phase 1.
func (v ltVerify) printUse(p func(string, ...any), cpus int) {
	p("  server RSS    peak %.1f MB", v.ServerPeakMB)
	p("  CPU time      server %.1f s (%.0f%% of %d CPUs), load generator %.1f s", v.ServerCPUSecs, 100*v.ServerCPUShare, cpus, v.ClientCPUSecs)
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func statusList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func (l ltLatency) String() string {
	return fmt.Sprintf("p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms", l.P50, l.P90, l.P99, l.Max)
}

func (r *ltReport) print(w io.Writer, o loadtestOptions) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	met := func(i int) string { return passMiss(r.Targets[i].Met) }
	p("twofold loadtest")
	p("  command       %s", r.Command)
	p("  machine       %d CPUs, %s; %s %s/%s", r.CPUs, r.CPUModel, r.GoVersion, runtime.GOOS, runtime.GOARCH)
	if len(r.GoEnv) == 0 {
		p("  go runtime    defaults: none of %s in the environment (serve sets GOGC=%d itself)",
			strings.Join(goRuntimeVars, ", "), serveGCPercent)
	} else {
		p("  go runtime    %s, from the environment, in the load generator and the servers", strings.Join(r.GoEnv, " "))
	}
	p("  data          %s", r.DataDir)
	p("  servers       %d instance(s) on %s; RSS figures are of the largest instance", r.Instances, r.Database)
	p("")
	p("Seeding (through mfa.Service, before the server starts)")
	if r.Seed.Reused {
		p("  users         %d enrolled users reused from a kept directory (its database restored as seeded)", r.Seed.Users)
	} else {
		p("  users         %d with TOTP confirmed in %.1f s: %.0f users/s (argon2id t=%d m=%d KiB)",
			r.Seed.Users, r.Seed.Seconds, r.Seed.UsersPerSecond, ltCheapTime, ltCheapMemoryKiB)
	}
	p("  full users    %d with TOTP confirmed in %.1f s (default argon2id t=%d m=%d KiB p=%d)",
		r.Seed.FullUsers, r.Seed.FullSeconds, password.DefaultTime, password.DefaultMemoryKiB, password.DefaultThreads)
	p("  pending       %d sign-ins past the password step in %.1f s", r.Seed.Pending, r.Seed.PendingSeconds)
	p("  database      %.1f MiB of SQLite (copied to PostgreSQL when --postgres); servers started in %.2f s", r.Seed.DatabaseMB, r.Seed.ServerStartSecs)
	p("")
	v, a := r.Verify, r.VerifyAtRate
	p("Phase 1: second factor, POST /api/v1/login/second-factor, in two parts of %s", o.duration)
	p(" Throughput: %d connections, each sending its next request when the last is answered", v.Connections)
	v.printRequests(p, r.Seed.Pending)
	p("  throughput    %.0f verifications/s          target ≥ %d/s    %s", v.PerSecond, targetVerifyRate, met(0))
	p("  latency       %s (set by the connections' number: not judged)", v.Latency)
	v.printUse(p, r.CPUs)
	p(" Latency at %d/s: requests started at fixed intervals, each timed from its scheduled start", a.OfferedPerSecond)
	a.printRequests(p, r.Seed.Pending)
	p("  answered      %.0f verifications/s, at most %d requests in flight", a.PerSecond, a.MaxInFlight)
	p("  latency       %s", a.Latency)
	p("                p99 target < %d ms                          %s", targetVerifyP99.Milliseconds(), met(1))
	a.printUse(p, r.CPUs)
	p("  server RSS    target < %d MB over both parts                  %s", targetVerifyRSSKiB>>10, met(2))
	p("")
	s := r.Signin
	p("Phase 2: full sign-in (password + code) against raw argon2id, in %d alternating rounds (%d planned)", s.RoundsRun, s.Rounds)
	p("  warm-up       %d password logins for unknown addresses (401), untimed", s.WarmupLogins)
	p("  raw argon2id  %d Verify calls from %d goroutines, %d of them in %.2f s of steady state: %.1f hashes/s (server idle)",
		s.HashesAll, s.HashGoroutines, s.Hashes, s.HashSeconds, s.HashesPerSecond)
	p("  sign-ins      %d over HTTP from %d connections (%s), %d of them in %.2f s of steady state: %.1f sign-ins/s",
		s.Signins, s.Connections, statusList(s.Statuses), s.Counted, s.Seconds, s.PerSecond)
	p("  latency       %s", s.Latency)
	p("  ratio         %.3f                              target ≥ %.2f     %s", s.Ratio, targetSigninRatio, met(3))
	p("  each round    %s", joinFloats(s.RoundRatios))
	p("  server RSS    peak %.1f MB", s.ServerPeakMB)
	p("  CPU time      %.2f ms per raw hash; per sign-in, %.2f ms in the server and %.2f ms in the load generator",
		s.HashCPUMs, s.ServerCPUMs, s.ClientCPUMs)
	p("                the server's while the raw hashing ran: %.2f s", s.ServerCPUHashingSecs)
	p("  machine       idle %.1f%% and stolen by the hypervisor %.1f%% during the raw hashing, %.1f%% and %.1f%% during the sign-ins",
		s.HashIdlePct, s.HashStealPct, s.SignIdlePct, s.SignStealPct)
	for _, e := range s.ErrorSamples {
		p("  error         %s", e)
	}
	if o.flood > 0 {
		p("")
		f := r.Flood
		p("Phase 3: flood of %d concurrent POST /api/v1/login (%d right passwords, %d wrong, %d unknown addresses)",
			f.Requests, f.RightPasswords, f.WrongPasswords, f.UnknownAddresses)
		p("  answered      %d of %d in %.2f s (%s); %d busy with Retry-After", f.Answered, f.Requests, f.AllAnsweredSecs, statusList(f.Statuses), f.Busy)
		p("  failures      %d (%d with the wrong outcome)                         %s", f.Failures, f.WrongOutcome, met(4))
		p("  latency       %s", f.Latency)
		p("  server RSS    peak %.1f MB, %.1f MB after    target < %d MB   %s", f.ServerPeakMB, f.ServerAfterMB, targetFloodRSSKiB>>10, met(5))
		for _, e := range f.FailureSamples {
			p("  failure       %s", e)
		}
	}
	p("")
	p("Server log: %d errors, %d warnings", r.ServerLog.Errors, r.ServerLog.Warnings)
	for _, l := range r.ServerLog.Samples {
		p("  %s", l)
	}
	p("")
	p("Targets: %d of %d met", r.TargetsMet, len(r.Targets))
	for _, t := range r.Targets {
		p("  %-4s %-38s want %-9s got %s", passMiss(t.Met), t.Name, t.Want, t.Got)
	}
}
