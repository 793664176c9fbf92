package mfa_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/keyring"
	"github.com/twofold/twofold/internal/mfa"
	"github.com/twofold/twofold/internal/mfa/mfatest"
	"github.com/twofold/twofold/internal/password"
	"github.com/twofold/twofold/otp"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// countingHasher counts the argon2id computations behind every call.
type countingHasher struct {
	*password.Hasher
	verifies atomic.Int64
}

func (h *countingHasher) Verify(ctx context.Context, phc, pw string) (bool, error) {
	h.verifies.Add(1)
	return h.Hasher.Verify(ctx, phc, pw)
}

func (h *countingHasher) VerifyDummy(ctx context.Context, pw string) error {
	h.verifies.Add(1)
	return h.Hasher.VerifyDummy(ctx, pw)
}

type fixture struct {
	svc     *mfa.Service
	store   *mfatest.MemStore
	clock   *clock
	hasher  *countingHasher
	keys    *keyring.Keyring
	keyFile string
	logs    *bytes.Buffer // the Service's log
}

const testPassword = "correct horse battery staple"

var client = mfa.Client{IP: "192.0.2.1"}

// barrierStore holds every UpgradeSession call of a second factor until n callers have arrived
// (or a second has passed), so concurrent sign-ins all check the code before
// any of them spends it: the race the store must decide.
type barrierStore struct {
	mfa.Store
	n       int
	mu      sync.Mutex
	arrived int
	all     chan struct{}
}

func (b *barrierStore) UpgradeSession(ctx context.Context, u mfa.Upgrade) (bool, error) {
	if u.Old == nil { // a password step, not a second factor
		return b.Store.UpgradeSession(ctx, u)
	}
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
	case <-time.After(time.Second):
	}
	return b.Store.UpgradeSession(ctx, u)
}

func newFixture(t *testing.T) *fixture {
	return newFixtureWith(t, func(s mfa.Store) mfa.Store { return s })
}

func newFixtureWith(t *testing.T, wrap func(mfa.Store) mfa.Store) *fixture {
	t.Helper()
	return newFixtureNotifying(t, wrap, nil)
}

// newFixtureNotifying is newFixtureWith whose Service tells n of changes.
func newFixtureNotifying(t *testing.T, wrap func(mfa.Store) mfa.Store, n mfa.Notifier) *fixture {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "keys")
	kr, err := keyring.LoadOrCreate(keyFile, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		store:   mfatest.NewMemStore(),
		clock:   &clock{t: time.Date(2026, 11, 23, 12, 0, 10, 0, time.UTC)},
		hasher:  &countingHasher{Hasher: password.NewHasher(password.Options{Time: 1, MemoryKiB: 64})},
		keys:    kr,
		keyFile: keyFile,
		logs:    &bytes.Buffer{},
	}
	f.svc, err = mfa.NewService(mfa.Config{
		Store: wrap(f.store), Passwords: f.hasher, Policy: password.Policy{}, Cipher: kr,
		CodeKey: bytes.Repeat([]byte{7}, 32), Now: f.clock.Now, Notifier: n,
		Logger: slog.New(slog.NewTextHandler(f.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) user(t *testing.T, email string) *mfa.User {
	t.Helper()
	u, err := f.svc.CreateUser(context.Background(), email, testPassword, client)
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return u
}

// enable turns 2FA on for u and returns the TOTP secret and backup codes.
func (f *fixture) enable(t *testing.T, u *mfa.User) ([]byte, []string) {
	t.Helper()
	return f.enableWith(t, u, testPassword)
}

// enableWith is enable for a user whose password is password.
func (f *fixture) enableWith(t *testing.T, u *mfa.User, password string) ([]byte, []string) {
	t.Helper()
	secret := f.beginTOTP(t, u, password)
	codes, _, err := f.svc.ConfirmTOTP(context.Background(), u, f.code(t, secret, 0), client)
	if err != nil {
		t.Fatalf("ConfirmTOTP: %v", err)
	}
	return secret, codes
}

// beginTOTP starts the setup of an authenticator app for u and returns the
// secret to confirm it with.
func (f *fixture) beginTOTP(t *testing.T, u *mfa.User, password string) []byte {
	t.Helper()
	enr, err := f.svc.BeginTOTP(context.Background(), u, password, client)
	if err != nil {
		t.Fatalf("BeginTOTP: %v", err)
	}
	secret, err := otp.DecodeSecret(enr.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// pastSpentSteps moves the clock on from a step whose code was just
// accepted to the first step whose code is not spent.
func (f *fixture) pastSpentSteps(secret []byte) {
	now := f.clock.Now()
	f.clock.Advance(mfatest.FreshAfter(secret, now).Sub(now))
}

// code is the TOTP code of the step offset steps from now.
func (f *fixture) code(t *testing.T, secret []byte, offset int) string {
	t.Helper()
	c, err := otp.TOTP(secret, f.clock.Now().Add(time.Duration(offset)*30*time.Second), otp.Params{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// userWithWeakerHash stores a user whose testPassword hash was made under
// parameters other than the fixture hasher's, as an older version would.
func (f *fixture) userWithWeakerHash(t *testing.T, email string) *mfa.User {
	t.Helper()
	phc, err := password.NewHasher(password.Options{Time: 1, MemoryKiB: 32}).Hash(context.Background(), testPassword)
	if err != nil {
		t.Fatal(err)
	}
	u := &mfa.User{Email: email, PasswordHash: phc, CreatedAt: f.clock.Now()}
	if err := f.store.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

func (f *fixture) login(t *testing.T, email string) *mfa.LoginResult {
	t.Helper()
	res, err := f.svc.Login(context.Background(), email, testPassword, client)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	return res
}

func wantErr(t *testing.T, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("got error %v, want %v", got, want)
	}
}

func TestLoginWithoutTwoFactor(t *testing.T) {
	f := newFixture(t)
	f.user(t, "Ann@Example.com ")
	res := f.login(t, "ann@example.com")
	if res.SecondFactorRequired() {
		t.Fatal("second factor required without 2FA")
	}
	if _, u, err := f.svc.Authenticate(context.Background(), res.Token); err != nil || u.Email != "ann@example.com" {
		t.Fatalf("Authenticate: got %v, %v; want ann@example.com", u, err)
	}
}

// A hash made under other parameters is replaced at the next right
// password, and only then.
func TestLoginRehashesOtherParameters(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.userWithWeakerHash(t, "ann@example.com")
	old := u.PasswordHash
	stored := func() string {
		t.Helper()
		got, err := f.store.UserByID(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.PasswordHash
	}

	_, err := f.svc.Login(ctx, u.Email, "not the password at all", client)
	wantErr(t, err, mfa.ErrInvalidCredentials)
	if stored() != old {
		t.Fatal("a wrong password replaced the hash")
	}

	f.login(t, u.Email)
	rehashed := stored()
	if rehashed == old || f.hasher.NeedsRehash(rehashed) {
		t.Fatalf("after a right password: hash %q, want one under the hasher's parameters", rehashed)
	}
	if ok, err := f.hasher.Hasher.Verify(ctx, rehashed, testPassword); err != nil || !ok {
		t.Fatalf("the new hash does not verify the password: %v, %v", ok, err)
	}
	f.login(t, u.Email)
	if stored() != rehashed {
		t.Error("a current hash was replaced again")
	}
}

// writeCounter counts the store's writes of a failed sign-in.
type writeCounter struct {
	mfa.Store
	writes atomic.Int64
}

func (w *writeCounter) AddEvent(ctx context.Context, e *mfa.Event) error {
	w.writes.Add(1)
	return w.Store.AddEvent(ctx, e)
}

func (w *writeCounter) RecordFailure(ctx context.Context, key mfa.ThrottleKey, at, since time.Time, admit func(mfa.ThrottleState) bool, events func(mfa.ThrottleState) []mfa.Event) (mfa.ThrottleState, bool, error) {
	w.writes.Add(1)
	return w.Store.RecordFailure(ctx, key, at, since, admit, events)
}

func (w *writeCounter) UpgradeSession(ctx context.Context, u mfa.Upgrade) (bool, error) {
	w.writes.Add(1)
	return w.Store.UpgradeSession(ctx, u)
}

// An unknown address gets the answer of a wrong password, after the same
// work: one password hash and the same writes, up to and including the
// failure that locks the address (whose events a known account gets in
// that same write), so that neither the answer nor its timing tells which
// addresses have accounts.
func TestUnknownEmailLooksLikeWrongPassword(t *testing.T) {
	wc := &writeCounter{}
	f := newFixtureWith(t, func(s mfa.Store) mfa.Store { wc.Store = s; return wc })
	u := f.user(t, "ann@example.com")
	ctx := context.Background()
	try := func(email, password string) (error, int64, int64) {
		hashes, writes := f.hasher.verifies.Load(), wc.writes.Load()
		_, err := f.svc.Login(ctx, email, password, client)
		return err, f.hasher.verifies.Load() - hashes, wc.writes.Load() - writes
	}
	for i := range mfa.FreeFailures {
		errUnknown, unknownHashes, unknownWrites := try("nobody@example.com", testPassword)
		errWrong, wrongHashes, wrongWrites := try("ann@example.com", "wrong password!!")
		wantErr(t, errUnknown, mfa.ErrInvalidCredentials)
		wantErr(t, errWrong, mfa.ErrInvalidCredentials)
		if errUnknown.Error() != errWrong.Error() {
			t.Errorf("failure %d: unknown email: %q; wrong password: %q; want the same", i+1, errUnknown, errWrong)
		}
		if unknownHashes != 1 || wrongHashes != 1 {
			t.Errorf("failure %d: password hashes: unknown email %d, wrong password %d; want 1 each", i+1, unknownHashes, wrongHashes)
		}
		if unknownWrites != 1 || wrongWrites != 1 {
			t.Errorf("failure %d: store writes: unknown email %d, wrong password %d; want 1 each", i+1, unknownWrites, wrongWrites)
		}
	}
	// The known account's failures are recorded all the same, the last
	// with the lock it started.
	evs, err := f.svc.Events(ctx, u.ID, 50)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[mfa.EventType]int{}
	for _, e := range evs {
		counts[e.Type]++
	}
	if counts[mfa.EventLoginFailed] != mfa.FreeFailures || counts[mfa.EventThrottled] != 1 {
		t.Errorf("events of the known account: %v, want %d %s and 1 %s", counts, mfa.FreeFailures, mfa.EventLoginFailed, mfa.EventThrottled)
	}
}

func TestPasswordStepThrottledForUnknownEmailToo(t *testing.T) {
	for _, email := range []string{"ann@example.com", "nobody@example.com"} {
		t.Run(email, func(t *testing.T) {
			f := newFixture(t)
			f.user(t, "ann@example.com")
			ctx := context.Background()
			for range mfa.FreeFailures {
				_, err := f.svc.Login(ctx, email, "wrong password!!", client)
				wantErr(t, err, mfa.ErrInvalidCredentials)
			}
			before := f.hasher.verifies.Load()
			_, err := f.svc.Login(ctx, email, testPassword, client)
			var e *mfa.Error
			if !errors.As(err, &e) || e.Kind != mfa.KindRateLimited || e.RetryAfter <= 0 {
				t.Fatalf("after %d failures: got %v, want rate limited with a RetryAfter", mfa.FreeFailures, err)
			}
			// A locked key costs no password hash: guesses cannot make it work.
			if n := f.hasher.verifies.Load() - before; n != 0 {
				t.Errorf("a sign-in on a locked key hashed %d times, want 0", n)
			}
		})
	}
}

func TestTwoFactorLogin(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	secret, _ := f.enable(t, u)
	f.pastSpentSteps(secret)

	pending := f.login(t, u.Email)
	if !pending.SecondFactorRequired() {
		t.Fatal("login with 2FA on: second factor not required")
	}
	if _, _, err := f.svc.Authenticate(ctx, pending.Token); !errors.Is(err, mfa.ErrUnauthenticated) {
		t.Fatalf("half-signed-in session: Authenticate got %v, want ErrUnauthenticated", err)
	}
	full, err := f.svc.VerifySecondFactor(ctx, pending.Token, mfa.MethodTOTP, f.code(t, secret, 0), client)
	if err != nil {
		t.Fatalf("VerifySecondFactor: %v", err)
	}
	if full.Token == pending.Token {
		t.Fatal("session token not rotated at the second factor")
	}
	if _, _, err := f.svc.Authenticate(ctx, full.Token); err != nil {
		t.Fatalf("Authenticate after second factor: %v", err)
	}
	if _, _, err := f.svc.PendingLogin(ctx, pending.Token); !errors.Is(err, mfa.ErrLoginExpired) {
		t.Fatalf("old pending token still valid: %v", err)
	}
	if err := f.svc.Logout(ctx, full.Token, client); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.Authenticate(ctx, full.Token); !errors.Is(err, mfa.ErrUnauthenticated) {
		t.Fatalf("after logout: got %v, want ErrUnauthenticated", err)
	}
}

func TestTOTPWindowAndReplay(t *testing.T) {
	tests := []struct {
		name   string
		offset int
		ok     bool
	}{
		{"T-2", -2, false}, {"T-1", -1, true}, {"T", 0, true}, {"T+1", 1, true}, {"T+2", 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			u := f.user(t, "ann@example.com")
			secret, _ := f.enable(t, u)
			f.clock.Advance(5 * time.Minute)
			code := f.code(t, secret, tt.offset)
			_, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodTOTP, code, client)
			if tt.ok != (err == nil) {
				t.Fatalf("code of step %s: got %v, want ok=%v", tt.name, err, tt.ok)
			}
			if !tt.ok {
				return
			}
			// The same code, or a code of an earlier step, is never accepted
			// again: within the window it is answered as used.
			for _, replay := range []int{tt.offset, tt.offset - 1} {
				_, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodTOTP, f.code(t, secret, replay), client)
				want := mfa.ErrCodeUsed
				if replay < -1 {
					want = mfa.ErrInvalidCode
				}
				wantErr(t, err, want)
			}
		})
	}
}

func TestTOTPReplayConcurrent(t *testing.T) {
	const n = 10
	f := newFixtureWith(t, func(s mfa.Store) mfa.Store {
		return &barrierStore{Store: s, n: n, all: make(chan struct{})}
	})
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	secret, _ := f.enable(t, u) // confirms without UpgradeSession: the barrier is untouched
	f.clock.Advance(time.Minute)
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = f.login(t, u.Email).Token
	}
	code := f.code(t, secret, 0)
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for _, tok := range tokens {
		wg.Go(func() {
			if _, err := f.svc.VerifySecondFactor(ctx, tok, mfa.MethodTOTP, code, client); err == nil {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if got := accepted.Load(); got != 1 {
		t.Fatalf("one code sent by %d sign-ins at once: accepted %d times, want 1", n, got)
	}
}

func TestCodeWithSpacesAccepted(t *testing.T) {
	f := newFixture(t)
	u := f.user(t, "ann@example.com")
	secret, _ := f.enable(t, u)
	f.clock.Advance(time.Minute)
	c := f.code(t, secret, 0)
	if _, err := f.svc.VerifySecondFactor(context.Background(), f.login(t, u.Email).Token, mfa.MethodTOTP, c[:3]+" "+c[3:], client); err != nil {
		t.Fatalf("code %q: %v", c[:3]+" "+c[3:], err)
	}
}

func rateLimited(t *testing.T, err error) *mfa.Error {
	t.Helper()
	var e *mfa.Error
	if !errors.As(err, &e) || e.Kind != mfa.KindRateLimited || e.RetryAfter <= 0 {
		t.Fatalf("got %v, want rate limited with a RetryAfter", err)
	}
	return e
}

func TestSecondFactorThrottling(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	secret, codes := f.enable(t, u)
	f.clock.Advance(time.Minute)
	token := f.login(t, u.Email).Token
	for range mfa.FreeFailures {
		_, err := f.svc.VerifySecondFactor(ctx, token, mfa.MethodTOTP, mfatest.WrongCode(t, secret, f.clock.Now()), client)
		wantErr(t, err, mfa.ErrInvalidCode)
	}
	// Locked: even the right code is refused, from any session.
	_, err := f.svc.VerifySecondFactor(ctx, token, mfa.MethodTOTP, f.code(t, secret, 0), client)
	e := rateLimited(t, err)
	_, err = f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodTOTP, f.code(t, secret, 0), client)
	rateLimited(t, err)

	// A backup code still works while TOTP is throttled.
	if _, err := f.svc.VerifySecondFactor(ctx, token, mfa.MethodBackupCode, codes[0], client); err != nil {
		t.Fatalf("backup code while TOTP throttled: %v", err)
	}
	// After the backoff, TOTP works again and the count starts over.
	f.clock.Advance(e.RetryAfter)
	if _, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodTOTP, f.code(t, secret, 0), client); err != nil {
		t.Fatalf("TOTP after the backoff: %v", err)
	}
	var throttled int
	events, _ := f.svc.Events(ctx, u.ID, 200)
	for _, ev := range events {
		if ev.Type == mfa.EventThrottled {
			throttled++
		}
	}
	if throttled != 1 {
		t.Errorf("throttled events: got %d, want 1", throttled)
	}
}

func TestBackoffDoubles(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	secret, _ := f.enable(t, u)
	tok := f.login(t, u.Email).Token
	wrong := func() error {
		_, err := f.svc.VerifySecondFactor(ctx, tok, mfa.MethodTOTP, mfatest.WrongCode(t, secret, f.clock.Now()), client)
		return err
	}
	for range mfa.FreeFailures {
		wantErr(t, wrong(), mfa.ErrInvalidCode)
	}
	for _, want := range []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute} {
		e := rateLimited(t, wrong())
		if e.RetryAfter != want {
			t.Fatalf("retry after %v, want %v", e.RetryAfter, want)
		}
		f.clock.Advance(e.RetryAfter)
		wantErr(t, wrong(), mfa.ErrInvalidCode) // one more try, then a longer wait
	}
}

func TestDailyCeilingWithResets(t *testing.T) {
	// A success resets the backoff, not the 24-hour count.
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	secret, _ := f.enable(t, u)
	failures := 0
	for round := 0; failures < mfa.DailyFailureCeiling; round++ {
		for range mfa.FreeFailures - 1 {
			_, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodTOTP, mfatest.WrongCode(t, secret, f.clock.Now()), client)
			wantErr(t, err, mfa.ErrInvalidCode)
			failures++
		}
		if failures == mfa.DailyFailureCeiling {
			break
		}
		f.pastSpentSteps(secret)
		if _, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodTOTP, f.code(t, secret, 0), client); err != nil {
			t.Fatalf("round %d: right code: %v", round, err)
		}
	}
	_, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodTOTP, mfatest.WrongCode(t, secret, f.clock.Now()), client)
	e := rateLimited(t, err)
	if e.RetryAfter < time.Hour {
		t.Errorf("after %d failures in a day: retry after %v, want the rest of the window", failures, e.RetryAfter)
	}
}

func TestBackupCodes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	_, codes := f.enable(t, u)
	if len(codes) != mfa.BackupCodeCount {
		t.Fatalf("got %d backup codes, want %d", len(codes), mfa.BackupCodeCount)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) != 14 || seen[c] {
			t.Fatalf("backup code %q: want 12 symbols in three groups, all distinct", c)
		}
		seen[c] = true
	}
	if _, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodBackupCode, " "+codes[3]+" ", client); err != nil {
		t.Fatalf("backup code: %v", err)
	}
	_, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodBackupCode, codes[3], client)
	wantErr(t, err, mfa.ErrInvalidCode)
	st, _ := f.svc.Status(ctx, u.ID)
	if st.BackupCodesRemaining != mfa.BackupCodeCount-1 {
		t.Errorf("remaining: got %d, want %d", st.BackupCodesRemaining, mfa.BackupCodeCount-1)
	}

	// "Show Codes" makes a new set; the old one stops working.
	fresh, err := f.svc.RegenerateBackupCodes(ctx, u, testPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodBackupCode, codes[4], client)
	wantErr(t, err, mfa.ErrInvalidCode)
	if _, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodBackupCode, fresh[0], client); err != nil {
		t.Fatalf("new backup code: %v", err)
	}
}

// A Show Codes form names the set it was shown with: sent again (a reload
// of the page of codes, a double click), it makes no other set, and the
// codes its first sending made keep working.
func TestRegenerateBackupCodesOnce(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	u := f.user(t, "ann@example.com")
	_, old := f.enable(t, u)
	set := func() string {
		t.Helper()
		st, err := f.svc.Status(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		return st.BackupCodeSet
	}
	works := func(code string) bool {
		t.Helper()
		_, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodBackupCode, code, client)
		return err == nil
	}
	regenerated := func() int {
		t.Helper()
		n, err := f.store.CountEvents(ctx, u.ID, []mfa.EventType{mfa.EventBackupCodesRegenerated}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	shown := set()
	if shown == "" {
		t.Fatal(`Status.BackupCodeSet of a user with codes: got ""`)
	}
	first, err := f.svc.RegenerateBackupCodesOnce(ctx, u, testPassword, shown, client)
	if err != nil || len(first) != mfa.BackupCodeCount {
		t.Fatalf("RegenerateBackupCodesOnce: got %d codes, %v", len(first), err)
	}
	for range 2 {
		again, err := f.svc.RegenerateBackupCodesOnce(ctx, u, testPassword, shown, client)
		if !errors.Is(err, mfa.ErrBackupCodesReplaced) || again != nil {
			t.Fatalf("sent again: got %d codes, %v, want none, ErrBackupCodesReplaced", len(again), err)
		}
	}
	// The password is checked first, as for any change.
	_, err = f.svc.RegenerateBackupCodesOnce(ctx, u, "not my password", shown, client)
	wantErr(t, err, mfa.ErrWrongPassword)
	if n := regenerated(); n != 1 {
		t.Errorf("%s events: got %d, want 1", mfa.EventBackupCodesRegenerated, n)
	}
	if !works(first[0]) {
		t.Error("a code of the first sending no longer works")
	}
	if works(old[1]) {
		t.Error("a code of the set replaced still works")
	}

	// A code used since does not make the set another: the form shown
	// before the use still replaces it.
	shown = set()
	if !works(first[mfa.BackupCodeCount-1]) { // the newest
		t.Fatal("the newest code of the set does not work")
	}
	second, err := f.svc.RegenerateBackupCodesOnce(ctx, u, testPassword, shown, client)
	if err != nil {
		t.Fatalf("after a code was used: %v", err)
	}
	if works(first[1]) || !works(second[0]) {
		t.Error("the form shown before a code was used did not replace the set")
	}

	// No unused code left: the set is named all the same, and replaced.
	if err := f.store.ReplaceBackupCodes(ctx, u.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	shown = set()
	if shown == "" {
		t.Fatal(`Status.BackupCodeSet without codes: got ""`)
	}
	third, err := f.svc.RegenerateBackupCodesOnce(ctx, u, testPassword, shown, client)
	if err != nil || !works(third[0]) {
		t.Fatalf("without codes: got %d codes, %v", len(third), err)
	}
	_, err = f.svc.RegenerateBackupCodesOnce(ctx, u, testPassword, shown, client)
	wantErr(t, err, mfa.ErrBackupCodesReplaced)

	// Sent several times at once: one set.
	shown, before := set(), regenerated()
	var made atomic.Int32
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			_, err := f.svc.RegenerateBackupCodesOnce(ctx, u, testPassword, shown, client)
			switch {
			case err == nil:
				made.Add(1)
			case !errors.Is(err, mfa.ErrBackupCodesReplaced):
				t.Errorf("sent at once: %v", err)
			}
		})
	}
	wg.Wait()
	if made.Load() != 1 || regenerated() != before+1 {
		t.Errorf("one form sent 5 times at once: %d sets made, %d events, want 1", made.Load(), regenerated()-before)
	}
}

// The set a Show Codes form carries is sealed, afresh each time it is
// shown, and bound to its user: a set of another account, an altered one,
// one sealed under another code key, or a bare code ID (what a form
// carried before) is refused as out of date, before the password is
// checked, and replaces nothing.
func TestRegenerateBackupCodesOnceForeignSet(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	ann, bob := f.user(t, "ann@example.com"), f.user(t, "bob@example.com")
	_, annCodes := f.enable(t, ann)
	_, bobCodes := f.enable(t, bob)
	status := func(u *mfa.User) mfa.Status {
		t.Helper()
		st, err := f.svc.Status(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	annSet, bobSet := status(ann).BackupCodeSet, status(bob).BackupCodeSet
	if again := status(ann).BackupCodeSet; again == annSet {
		t.Errorf("two Status of one set: got the same BackupCodeSet %q twice, want each sealed afresh", annSet)
	}
	codes, err := f.store.UnusedBackupCodes(ctx, ann.ID)
	if err != nil || len(codes) == 0 {
		t.Fatalf("UnusedBackupCodes: got %d, %v", len(codes), err)
	}
	newest := codes[len(codes)-1].ID

	// Another instance of the server, with the same store and the same
	// code key, opens the set: every instance shares the key file.
	other, err := mfa.NewService(mfa.Config{Store: f.store, Passwords: f.hasher, Cipher: f.keys,
		CodeKey: bytes.Repeat([]byte{7}, 32), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	otherSet := func(key byte) string {
		t.Helper()
		svc, err := mfa.NewService(mfa.Config{Store: f.store, Passwords: f.hasher, Cipher: f.keys,
			CodeKey: bytes.Repeat([]byte{key}, 32), Now: f.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		st, err := svc.Status(ctx, ann.ID)
		if err != nil {
			t.Fatal(err)
		}
		return st.BackupCodeSet
	}
	altered := []byte(annSet)
	i := len(altered) / 2 // another base64url letter, in the sealed ID or the tag
	if altered[i] == 'A' {
		altered[i] = 'B'
	} else {
		altered[i] = 'A'
	}
	for _, tt := range []struct{ name, set string }{
		{"another user's", bobSet},
		{"altered", string(altered)},
		{"cut short", annSet[:len(annSet)-2]},
		{"sealed under another code key", otherSet(8)},
		{"the newest ID", strconv.FormatInt(newest, 10)},
		{"an ID above every code's", "9223372036854775807"},
		{"empty", ""},
		{"not base64url", annSet[:len(annSet)-1] + "="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			verifies := f.hasher.verifies.Load()
			got, err := f.svc.RegenerateBackupCodesOnce(ctx, ann, testPassword, tt.set, client)
			if !errors.Is(err, mfa.ErrBackupCodesFormStale) || got != nil {
				t.Fatalf("got %d codes, %v, want none, ErrBackupCodesFormStale", len(got), err)
			}
			if n := f.hasher.verifies.Load() - verifies; n != 0 {
				t.Errorf("the password was checked (%d verifies) for a set refused", n)
			}
		})
	}
	for _, u := range []*mfa.User{ann, bob} {
		n, err := f.store.CountEvents(ctx, u.ID, []mfa.EventType{mfa.EventBackupCodesRegenerated}, time.Time{})
		if n != 0 || err != nil {
			t.Errorf("%s: %s events: got %d, %v, want 0", u.Email, mfa.EventBackupCodesRegenerated, n, err)
		}
	}
	for u, code := range map[*mfa.User]string{ann: annCodes[0], bob: bobCodes[0]} {
		if _, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodBackupCode, code, client); err != nil {
			t.Errorf("%s: a code after the refused sets: %v", u.Email, err)
		}
	}

	// The sets refused are not so by mistake: each user's own, opened by
	// this instance or another, replaces the codes.
	if _, err := other.RegenerateBackupCodesOnce(ctx, ann, testPassword, annSet, client); err != nil {
		t.Errorf("ann's own set, at another instance: %v", err)
	}
	if _, err := f.svc.RegenerateBackupCodesOnce(ctx, bob, testPassword, bobSet, client); err != nil {
		t.Errorf("bob's own set: %v", err)
	}
}

func TestBackupCodeConcurrentUse(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	_, codes := f.enable(t, u)
	var wg sync.WaitGroup
	var accepted atomic.Int64
	tokens := []string{f.login(t, u.Email).Token, f.login(t, u.Email).Token, f.login(t, u.Email).Token}
	for _, tok := range tokens {
		wg.Go(func() {
			if _, err := f.svc.VerifySecondFactor(ctx, tok, mfa.MethodBackupCode, codes[0], client); err == nil {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if accepted.Load() != 1 {
		t.Fatalf("one backup code used at once by %d sign-ins: accepted %d, want 1", len(tokens), accepted.Load())
	}
}

func TestSensitiveChangesNeedPassword(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	if _, err := f.svc.BeginTOTP(ctx, u, "not my password", client); !errors.Is(err, mfa.ErrWrongPassword) {
		t.Fatalf("BeginTOTP with a wrong password: got %v", err)
	}
	f.enable(t, u)
	if _, err := f.svc.RegenerateBackupCodes(ctx, u, "not my password", client); !errors.Is(err, mfa.ErrWrongPassword) {
		t.Fatalf("RegenerateBackupCodes with a wrong password: got %v", err)
	}
	if _, err := f.svc.DisableTwoFactor(ctx, u, "not my password", client); !errors.Is(err, mfa.ErrWrongPassword) {
		t.Fatalf("DisableTwoFactor with a wrong password: got %v", err)
	}
	if st, _ := f.svc.Status(ctx, u.ID); !st.TwoFactorEnabled {
		t.Fatal("2FA turned off by a wrong password")
	}
}

func TestChangePassword(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	stale := *u // as a request read it before the change below
	here, elsewhere := f.login(t, u.Email), f.login(t, u.Email)
	const next = "a new passphrase of several words"

	signedIn := func(s *mfa.LoginResult) bool {
		_, _, err := f.svc.Authenticate(ctx, s.Token)
		return err == nil
	}
	unchanged := func(t *testing.T) {
		t.Helper()
		got, err := f.store.UserByID(ctx, u.ID)
		if err != nil || got.PasswordHash != stale.PasswordHash {
			t.Fatalf("password hash changed: %v", err)
		}
		if !signedIn(here) || !signedIn(elsewhere) {
			t.Fatal("a session ended")
		}
	}
	if _, err := f.svc.ChangePassword(ctx, u, "not my password", next, client); !errors.Is(err, mfa.ErrWrongPassword) {
		t.Fatalf("with a wrong current password: got %v, want ErrWrongPassword", err)
	}
	unchanged(t)
	if _, err := f.svc.ChangePassword(ctx, u, testPassword, "short", client); mfa.ErrorKind(err) != mfa.KindInvalid {
		t.Fatalf("with a weak new password: got %v, want a KindInvalid error", err)
	}
	unchanged(t)

	token, err := f.svc.ChangePassword(ctx, u, testPassword, next, client)
	if err != nil {
		t.Fatalf("ChangePassword: %v", err)
	}
	if signedIn(here) || signedIn(elsewhere) {
		t.Error("a session from before the change still works")
	}
	if sess, got, err := f.svc.Authenticate(ctx, token); err != nil || got.ID != u.ID || sess.Level != mfa.LevelFull {
		t.Fatalf("the new session: got %+v, %+v, %v, want user %d fully signed in", sess, got, err, u.ID)
	}
	if _, err := f.svc.Login(ctx, u.Email, testPassword, client); !errors.Is(err, mfa.ErrInvalidCredentials) {
		t.Errorf("the old password: got %v, want ErrInvalidCredentials", err)
	}
	if _, err := f.svc.Login(ctx, u.Email, next, client); err != nil {
		t.Errorf("the new password: %v", err)
	}
	evs, err := f.svc.Events(ctx, u.ID, 10)
	if err != nil || !slices.ContainsFunc(evs, func(e mfa.Event) bool { return e.Type == mfa.EventPasswordChanged }) {
		t.Errorf("events: got %+v, %v, want a password_changed event", evs, err)
	}

	// A request that read the user before the change, and knows the old
	// password, does not overwrite the new one.
	if _, err := f.svc.ChangePassword(ctx, &stale, testPassword, "yet another passphrase here", client); !errors.Is(err, mfa.ErrPasswordChanged) {
		t.Fatalf("over a changed password: got %v, want ErrPasswordChanged", err)
	}
	if _, err := f.svc.Login(ctx, u.Email, next, client); err != nil {
		t.Errorf("after the refused change, the new password: %v", err)
	}
}

func TestSetPassword(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	secret, _ := f.enable(t, u)
	before := f.login(t, u.Email)
	const next = "a new passphrase of several words"

	if err := f.svc.SetPassword(ctx, "nobody@example.com", next, client); mfa.ErrorKind(err) != mfa.KindNotFound {
		t.Fatalf("an unknown account: got %v, want KindNotFound", err)
	}
	if err := f.svc.SetPassword(ctx, u.Email, "short", client); mfa.ErrorKind(err) != mfa.KindInvalid {
		t.Fatalf("a weak password: got %v, want KindInvalid", err)
	}
	// The user forgot the password and tried until the backoff.
	for i := range mfa.FreeFailures {
		if _, err := f.svc.Login(ctx, u.Email, "a guess "+strconv.Itoa(i), client); !errors.Is(err, mfa.ErrInvalidCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if _, err := f.svc.Login(ctx, u.Email, testPassword, client); mfa.ErrorKind(err) != mfa.KindRateLimited {
		t.Fatalf("after %d wrong passwords: got %v, want rate limited", mfa.FreeFailures, err)
	}
	if err := f.svc.SetPassword(ctx, " ANN@example.com", next, client); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	if _, _, err := f.svc.PendingLogin(ctx, before.Token); err == nil {
		t.Error("a session from before the new password still works")
	}
	if _, err := f.svc.Login(ctx, u.Email, testPassword, client); !errors.Is(err, mfa.ErrInvalidCredentials) {
		t.Errorf("the old password: got %v, want ErrInvalidCredentials", err)
	}
	res, err := f.svc.Login(ctx, u.Email, next, client)
	if err != nil || !res.SecondFactorRequired() {
		t.Fatalf("the new password: got %+v, %v, want the second factor still asked for", res, err)
	}
	f.pastSpentSteps(secret)
	if _, err := f.svc.VerifySecondFactor(ctx, res.Token, mfa.MethodTOTP, f.code(t, secret, 0), client); err != nil {
		t.Fatalf("the authenticator after the new password: %v", err)
	}
	evs, err := f.svc.Events(ctx, u.ID, 20)
	if err != nil || !slices.ContainsFunc(evs, func(e mfa.Event) bool { return e.Type == mfa.EventPasswordReset }) {
		t.Errorf("events: got %+v, %v, want a password_reset event", evs, err)
	}
}

// A change read before a sign-in rehashed the same password still goes
// through: the password did not change.
func TestChangePasswordAfterRehash(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.userWithWeakerHash(t, "ann@example.com")
	stale := *u
	f.login(t, u.Email) // rehashes
	const next = "a new passphrase of several words"
	if _, err := f.svc.ChangePassword(ctx, &stale, testPassword, next, client); err != nil {
		t.Fatalf("ChangePassword after a rehash: %v", err)
	}
	if _, err := f.svc.Login(ctx, u.Email, next, client); err != nil {
		t.Errorf("the new password: %v", err)
	}
}

// hookStore runs hook once, around the first UpgradeSession of a password
// step: before the session is written, or after.
type hookStore struct {
	mfa.Store
	after bool
	once  sync.Once
	hook  func()
}

func (h *hookStore) UpgradeSession(ctx context.Context, u mfa.Upgrade) (bool, error) {
	if u.Old != nil {
		return h.Store.UpgradeSession(ctx, u)
	}
	if !h.after {
		h.once.Do(h.hook)
	}
	ok, err := h.Store.UpgradeSession(ctx, u)
	if h.after {
		h.once.Do(h.hook)
	}
	return ok, err
}

// A sign-in whose password was right when checked, but changed before its
// session was written (or right after), gets no session that outlives the
// change.
func TestSignInRacingPasswordChange(t *testing.T) {
	for _, after := range []bool{false, true} {
		t.Run(map[bool]string{false: "ChangeBeforeSessionWritten", true: "ChangeAfterSessionWritten"}[after], func(t *testing.T) {
			hs := &hookStore{after: after}
			f := newFixtureWith(t, func(s mfa.Store) mfa.Store { hs.Store = s; return hs })
			ctx := context.Background()
			u := f.user(t, "ann@example.com")
			const next = "a new passphrase of several words"
			var changed string
			hs.hook = func() {
				var err error
				if changed, err = f.svc.ChangePassword(ctx, u, testPassword, next, client); err != nil {
					t.Errorf("ChangePassword: %v", err)
				}
			}
			res, err := f.svc.Login(ctx, u.Email, testPassword, client)
			if err == nil {
				if _, _, aerr := f.svc.Authenticate(ctx, res.Token); aerr == nil {
					t.Fatal("a sign-in with the old password kept a session past the change")
				}
			} else if !errors.Is(err, mfa.ErrInvalidCredentials) {
				t.Fatalf("the racing sign-in: got %v, want ErrInvalidCredentials", err)
			}
			if _, _, err := f.svc.Authenticate(ctx, changed); err != nil {
				t.Errorf("the session of the change: %v", err)
			}
		})
	}
}

// A sign-in whose hash was replaced, between its check and its session,
// by a new hash of the same password (another sign-in's rehash) still
// signs in: the password holds.
func TestSignInRacingRehash(t *testing.T) {
	hs := &hookStore{}
	f := newFixtureWith(t, func(s mfa.Store) mfa.Store { hs.Store = s; return hs })
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	hs.hook = func() {
		rehashed, err := f.hasher.Hash(ctx, testPassword)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := hs.Store.ReplacePasswordHash(ctx, u.ID, u.PasswordHash, rehashed, nil); !ok || err != nil {
			t.Fatalf("ReplacePasswordHash: got %v, %v", ok, err)
		}
	}
	res, err := f.svc.Login(ctx, u.Email, testPassword, client)
	if err != nil {
		t.Fatalf("the sign-in racing a rehash: %v", err)
	}
	if _, _, err := f.svc.Authenticate(ctx, res.Token); err != nil {
		t.Errorf("its session: %v", err)
	}
}

// failSecondDelete fails the second DeleteUserSessions of a user: a
// password change that fails after its swap.
type failSecondDelete struct {
	mfa.Store
	calls atomic.Int64
}

func (s *failSecondDelete) DeleteUserSessions(ctx context.Context, userID int64) error {
	if s.calls.Add(1) == 2 {
		return errors.New("disk gone")
	}
	return s.Store.DeleteUserSessions(ctx, userID)
}

// A change whose store fails after the swap leaves no session from before
// it, and is reported as made, which it is: the new password is the one
// that works. The failure is logged.
func TestChangePasswordFailingMidwayEndsSessions(t *testing.T) {
	fs := &failSecondDelete{}
	f := newFixtureWith(t, func(s mfa.Store) mfa.Store { fs.Store = s; return fs })
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	intruder := f.login(t, u.Email)
	const next = "a new passphrase of several words"
	if _, err := f.svc.ChangePassword(ctx, u, testPassword, next, client); err != nil {
		t.Fatalf("ChangePassword: %v", err)
	}
	if _, _, err := f.svc.Authenticate(ctx, intruder.Token); err == nil {
		t.Error("a session from before the change still works")
	}
	if !strings.Contains(f.logs.String(), "sessions started meanwhile not ended") {
		t.Errorf("the failure is not logged:\n%s", f.logs)
	}
	if n, err := f.store.CountEvents(ctx, u.ID, []mfa.EventType{mfa.EventPasswordChanged}, time.Time{}); n != 1 || err != nil {
		t.Errorf("password_changed events: got %d, %v, want 1", n, err)
	}
	if _, err := f.svc.Login(ctx, u.Email, next, client); err != nil {
		t.Errorf("signing in with the new password: %v", err)
	}
}

func TestEnrollment(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	enr, err := f.svc.BeginTOTP(ctx, u, testPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := otp.DecodeSecret(enr.Secret)
	if len(secret) != 20 {
		t.Errorf("secret: %d bytes, want 20 (160 bits)", len(secret))
	}
	info, err := otp.ParseURI(enr.URI)
	if err != nil || !bytes.Equal(info.Secret, secret) {
		t.Fatalf("URI %q: %v", enr.URI, err)
	}
	// Pending: not enabled, sign-in needs no code yet.
	if st, _ := f.svc.Status(ctx, u.ID); st.TwoFactorEnabled || !st.PendingSetup {
		t.Fatalf("status while pending: %+v", st)
	}
	if f.login(t, u.Email).SecondFactorRequired() {
		t.Fatal("pending enrollment already requires a code")
	}
	// The secret is sealed at rest.
	fs, _ := f.store.Factors(ctx, u.ID)
	if len(fs) != 1 || bytes.Contains(fs[0].Secret, secret) {
		t.Fatal("TOTP secret stored in clear")
	}
	// A wrong code from the signed-in user is a value not accepted, not a
	// failure to authenticate.
	if _, _, err := f.svc.ConfirmTOTP(ctx, u, mfatest.WrongCode(t, secret, f.clock.Now()), client); !errors.Is(err, mfa.ErrInvalidSetupCode) || mfa.ErrorKind(err) != mfa.KindInvalid {
		t.Fatalf("confirm with a wrong code: got %v, want ErrInvalidSetupCode, of KindInvalid", err)
	}
	if _, _, err := f.svc.ConfirmTOTP(ctx, u, f.code(t, secret, 0), client); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.BeginTOTP(ctx, u, testPassword, client); !errors.Is(err, mfa.ErrAlreadyEnabled) {
		t.Fatalf("BeginTOTP when enabled: %v", err)
	}
	// The code that confirmed enrollment cannot sign in, and the user is
	// told why.
	_, err = f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodTOTP, f.code(t, secret, 0), client)
	wantErr(t, err, mfa.ErrCodeUsed)
}

func TestEnrollmentExpires(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	enr, _ := f.svc.BeginTOTP(ctx, u, testPassword, client)
	secret, _ := otp.DecodeSecret(enr.Secret)
	f.clock.Advance(16 * time.Minute)
	if _, _, err := f.svc.ConfirmTOTP(ctx, u, f.code(t, secret, 0), client); !errors.Is(err, mfa.ErrNoEnrollment) {
		t.Fatalf("confirm after 16 minutes: got %v, want ErrNoEnrollment", err)
	}
}

func TestSessionLifetimes(t *testing.T) {
	tests := []struct {
		name  string
		steps []time.Duration // time passing between uses
		ok    bool
	}{
		{"active", []time.Duration{29 * time.Minute}, true},
		{"idle 30 minutes", []time.Duration{30 * time.Minute}, false},
		{"busy 11h59", repeat(11*time.Hour+59*time.Minute, 20*time.Minute), true},
		{"busy 12h", repeat(12*time.Hour, 20*time.Minute), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.user(t, "ann@example.com")
			tok := f.login(t, "ann@example.com").Token
			var err error
			for _, d := range tt.steps {
				f.clock.Advance(d)
				_, _, err = f.svc.Authenticate(context.Background(), tok)
			}
			if (err == nil) != tt.ok {
				t.Fatalf("got %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// repeat splits total into uses every step.
func repeat(total, step time.Duration) []time.Duration {
	var out []time.Duration
	for ; total > step; total -= step {
		out = append(out, step)
	}
	return append(out, total)
}

// Session IDs sort by the time their session started, whatever the random
// part of their tokens; a token whose time or random part is altered
// reaches nothing; a token of the earlier form, stored as its SHA-256,
// still works.
func TestSessionTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	var prev *mfa.LoginResult
	for i := range 50 {
		res := f.login(t, "ann@example.com")
		if prev != nil && bytes.Compare(prev.Session.ID, res.Session.ID) >= 0 {
			t.Fatalf("sign-in %d: session ID %x does not sort after the earlier %x", i, res.Session.ID, prev.Session.ID)
		}
		prev = res
		f.clock.Advance(time.Microsecond)
	}
	tok := prev.Token
	for _, altered := range []string{flipHexDigit(tok, 0), flipHexDigit(tok, 15), flipHexDigit(tok, 16), flipHexDigit(tok, len(tok)-1), tok[:len(tok)-1], "zz" + tok[2:]} {
		if _, _, err := f.svc.Authenticate(ctx, altered); !errors.Is(err, mfa.ErrUnauthenticated) {
			t.Errorf("Authenticate(%q): got %v, want ErrUnauthenticated", altered, err)
		}
	}
	if _, _, err := f.svc.Authenticate(ctx, tok); err != nil {
		t.Fatalf("Authenticate(the token itself): %v", err)
	}

	legacy := strings.Repeat("5e", 32)
	sum := sha256.Sum256([]byte(legacy))
	now := f.clock.Now()
	if err := f.store.CreateSession(ctx, &mfa.Session{ID: sum[:], UserID: u.ID, Level: mfa.LevelFull,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour), IP: client.IP}); err != nil {
		t.Fatal(err)
	}
	if _, got, err := f.svc.Authenticate(ctx, legacy); err != nil || got.ID != u.ID {
		t.Fatalf("Authenticate(a token of the earlier form): got %v, %v; want user %d", got, err, u.ID)
	}
}

// flipHexDigit returns s with its i-th hex digit changed to another one.
func flipHexDigit(s string, i int) string {
	d := byte('0')
	if s[i] == '0' {
		d = '1'
	}
	return s[:i] + string(d) + s[i+1:]
}

func TestPendingLoginExpires(t *testing.T) {
	f := newFixture(t)
	u := f.user(t, "ann@example.com")
	secret, _ := f.enable(t, u)
	tok := f.login(t, u.Email).Token
	f.clock.Advance(10 * time.Minute)
	_, err := f.svc.VerifySecondFactor(context.Background(), tok, mfa.MethodTOTP, f.code(t, secret, 0), client)
	wantErr(t, err, mfa.ErrLoginExpired)
}

// Turning 2FA on or off ends every session of the account, full or half
// signed in: one opened before the change with the password alone does not
// outlive it. The caller gets a new full session.
func TestTwoFactorChangesEndOtherSessions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	full := f.login(t, u.Email).Token
	secret := f.beginTOTP(t, u, testPassword)
	_, token, err := f.svc.ConfirmTOTP(ctx, u, f.code(t, secret, 0), client)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.Authenticate(ctx, full); !errors.Is(err, mfa.ErrUnauthenticated) {
		t.Errorf("a session from before 2FA was turned on: got %v, want ErrUnauthenticated", err)
	}
	if _, _, err := f.svc.Authenticate(ctx, token); err != nil {
		t.Errorf("the caller's new session after turning 2FA on: %v", err)
	}

	f.pastSpentSteps(secret)
	half := f.login(t, u.Email).Token
	token, err = f.svc.DisableTwoFactor(ctx, u, testPassword, client)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.PendingLogin(ctx, half); !errors.Is(err, mfa.ErrLoginExpired) {
		t.Errorf("a half-finished sign-in from before 2FA was turned off: got %v, want ErrLoginExpired", err)
	}
	if _, _, err := f.svc.Authenticate(ctx, token); err != nil {
		t.Errorf("the caller's new session after turning 2FA off: %v", err)
	}
}

// sessionsStuck is a store that fails to end a user's sessions.
type sessionsStuck struct{ mfa.Store }

func (sessionsStuck) DeleteUserSessions(context.Context, int64) error {
	return errors.New("database is locked")
}

// Turning 2FA on stands, and its backup codes are shown, even when the
// account's other sessions cannot be ended: they are shown once only.
func TestTwoFactorOnWhenSessionsStuck(t *testing.T) {
	f := newFixtureWith(t, func(s mfa.Store) mfa.Store { return sessionsStuck{s} })
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	secret := f.beginTOTP(t, u, testPassword)
	codes, token, err := f.svc.ConfirmTOTP(ctx, u, f.code(t, secret, 0), client)
	if err != nil || len(codes) != mfa.BackupCodeCount || token == "" {
		t.Fatalf("ConfirmTOTP: got %d codes, token %q, %v; want the codes and a session", len(codes), token, err)
	}
	if !strings.Contains(f.logs.String(), "other sessions not ended") {
		t.Errorf("the sessions left were not logged:\n%s", f.logs)
	}
}

// A password-only sign-in under way while 2FA is turned on, whose session
// is written after the change ended the account's sessions, keeps none.
func TestSignInRacingTwoFactorOn(t *testing.T) {
	hs := &hookStore{}
	f := newFixtureWith(t, func(s mfa.Store) mfa.Store { hs.Store = s; return hs })
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	secret := f.beginTOTP(t, u, testPassword)
	hs.hook = func() {
		if _, _, err := f.svc.ConfirmTOTP(ctx, u, f.code(t, secret, 0), client); err != nil {
			t.Errorf("ConfirmTOTP: %v", err)
		}
	}
	res, err := f.svc.Login(ctx, u.Email, testPassword, client)
	if err == nil {
		if _, _, aerr := f.svc.Authenticate(ctx, res.Token); aerr == nil {
			t.Fatal("a sign-in with the password alone, under way while 2FA was turned on, is fully signed in")
		}
	}
	wantErr(t, err, mfa.ErrLoginExpired)
}

func TestDisableAndReset(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	f.enable(t, u)
	if _, err := f.svc.DisableTwoFactor(ctx, u, testPassword, client); err != nil {
		t.Fatal(err)
	}
	if f.login(t, u.Email).SecondFactorRequired() {
		t.Fatal("code still required after disable")
	}
	if codes, _ := f.store.UnusedBackupCodes(ctx, u.ID); len(codes) != 0 {
		t.Fatalf("%d backup codes left after disable", len(codes))
	}

	f.enable(t, u)
	session := f.login(t, u.Email)
	if err := f.svc.ResetTwoFactor(ctx, "ANN@example.com", mfa.Client{IP: "command line"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.PendingLogin(ctx, session.Token); !errors.Is(err, mfa.ErrLoginExpired) {
		t.Fatalf("session survived a reset: %v", err)
	}
	if f.login(t, u.Email).SecondFactorRequired() {
		t.Fatal("code still required after reset")
	}
	var e *mfa.Error
	if err := f.svc.ResetTwoFactor(ctx, "nobody@example.com", client); !errors.As(err, &e) || e.Kind != mfa.KindNotFound {
		t.Fatalf("reset of an unknown user: %v", err)
	}
}

// A user whose codes were throttled (a thief with the password guessing,
// or the user fumbling) can set up a new app right after support's reset.
func TestResetEndsCodeBackoff(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	secret, _ := f.enable(t, u)
	f.pastSpentSteps(secret)
	pending := f.login(t, u.Email).Token
	for _, m := range []mfa.Method{mfa.MethodTOTP, mfa.MethodBackupCode} {
		for range mfa.FreeFailures {
			if _, err := f.svc.VerifySecondFactor(ctx, pending, m, "000000", client); !errors.Is(err, mfa.ErrInvalidCode) {
				t.Fatalf("wrong %s: got %v, want ErrInvalidCode", m, err)
			}
		}
		_, err := f.svc.VerifySecondFactor(ctx, pending, m, "000000", client)
		rateLimited(t, err)
	}
	if err := f.svc.ResetTwoFactor(ctx, u.Email, client); err != nil {
		t.Fatal(err)
	}
	secret = f.beginTOTP(t, u, testPassword)
	if _, _, err := f.svc.ConfirmTOTP(ctx, u, f.code(t, secret, 0), client); err != nil {
		t.Fatalf("confirming a new app after the reset: %v", err)
	}
	f.pastSpentSteps(secret)
	pending = f.login(t, u.Email).Token
	if _, err := f.svc.VerifySecondFactor(ctx, pending, mfa.MethodBackupCode, "000000", client); !errors.Is(err, mfa.ErrInvalidCode) {
		t.Fatalf("a wrong backup code after the reset: got %v, want ErrInvalidCode, not still locked", err)
	}
}

func TestEventsRecorded(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	secret, codes := f.enable(t, u)
	f.clock.Advance(time.Minute)
	_, _ = f.svc.Login(ctx, u.Email, "wrong password!!", client)
	tok := f.login(t, u.Email).Token
	_, _ = f.svc.VerifySecondFactor(ctx, tok, mfa.MethodTOTP, mfatest.WrongCode(t, secret, f.clock.Now()), client)
	full, _ := f.svc.VerifySecondFactor(ctx, tok, mfa.MethodTOTP, f.code(t, secret, 0), client)
	_ = f.svc.Logout(ctx, full.Token, client)
	_, _ = f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodBackupCode, codes[0], client)
	_, _ = f.svc.RegenerateBackupCodes(ctx, u, testPassword, client)
	_, _ = f.svc.DisableTwoFactor(ctx, u, testPassword, client)

	events, err := f.svc.Events(ctx, u.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[mfa.EventType]int{}
	for _, ev := range events {
		got[ev.Type]++
		if ev.IP != client.IP || ev.At.Location() != time.UTC || ev.At.IsZero() {
			t.Errorf("event %+v: want IP %s and a UTC time", ev, client.IP)
		}
	}
	for _, want := range []mfa.EventType{mfa.EventAccountCreated, mfa.EventTwoFactorEnabled, mfa.EventLoginFailed,
		mfa.EventSecondFactorFailed, mfa.EventLoginSucceeded, mfa.EventLogout, mfa.EventBackupCodeUsed,
		mfa.EventBackupCodesRegenerated, mfa.EventTwoFactorDisabled} {
		if got[want] == 0 {
			t.Errorf("no %s event recorded; got %v", want, got)
		}
	}
}

func TestResealSecrets(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	users := []*mfa.User{f.user(t, "ann@example.com"), f.user(t, "bob@example.com")}
	secrets := make([][]byte, len(users))
	for i, u := range users {
		secrets[i], _ = f.enable(t, u)
	}
	old := f.keys.PrimaryID()
	if _, err := f.keys.Rotate(f.keyFile, rand.Reader); err != nil {
		t.Fatal(err)
	}
	n, err := f.svc.ResealSecrets(ctx, nil)
	if err != nil || n != len(users) {
		t.Fatalf("ResealSecrets: got %d, %v; want %d", n, err, len(users))
	}
	if err := f.keys.Retire(f.keyFile, old); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	for i, u := range users {
		if _, err := f.svc.VerifySecondFactor(ctx, f.login(t, u.Email).Token, mfa.MethodTOTP, f.code(t, secrets[i], 0), client); err != nil {
			t.Fatalf("%s after rotation: %v", u.Email, err)
		}
	}
}

func TestWeakPasswordRefused(t *testing.T) {
	f := newFixture(t)
	_, err := f.svc.CreateUser(context.Background(), "ann@example.com", "short", client)
	var e *mfa.Error
	if !errors.As(err, &e) || e.Code != "weak_password" {
		t.Fatalf("got %v, want weak_password", err)
	}
	for _, bad := range []string{"not-an-email", "a:b@example.com", "a@b@", "ann\x00@example.com", "@example.com"} {
		if _, err := f.svc.CreateUser(context.Background(), bad, testPassword, client); mfa.ErrorKind(err) != mfa.KindInvalid {
			t.Errorf("email %q: got %v, want KindInvalid", bad, err)
		}
	}
	f.user(t, "ann@example.com")
	if _, err := f.svc.CreateUser(context.Background(), "ANN@example.com", testPassword, client); !errors.Is(err, mfa.ErrEmailTaken) {
		t.Fatalf("duplicate email: got %v", err)
	}
}

// slowReads makes the read of each sign-in step slow, as a loaded database
// would, so that concurrent guesses are all past the lock check (of the
// password step) and the code check before any of them is counted.
type slowReads struct{ mfa.Store }

func (s slowReads) SessionView(ctx context.Context, id []byte) (*mfa.SessionView, error) {
	time.Sleep(5 * time.Millisecond)
	return s.Store.SessionView(ctx, id)
}

func (s slowReads) SignInView(ctx context.Context, email string, key mfa.ThrottleKey, since time.Time) (*mfa.SignInView, error) {
	time.Sleep(5 * time.Millisecond)
	return s.Store.SignInView(ctx, email, key, since)
}

func TestConcurrentGuessesStayWithinTheLimit(t *testing.T) {
	f := newFixtureWith(t, func(s mfa.Store) mfa.Store { return slowReads{s} })
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	f.enable(t, u)
	tok := f.login(t, u.Email).Token
	guessesAtOnce(t, func(i int) error {
		_, err := f.svc.VerifySecondFactor(ctx, tok, mfa.MethodTOTP, fmt.Sprintf("%06d", i), client)
		return err
	}, func(err error) bool { // a lucky guess is answered too
		return err == nil || mfa.ErrorKind(err) == mfa.KindUnauthenticated
	})
}

// guessesAtOnce makes 40 guesses at once and checks that at most
// FreeFailures of them got an answer (isAnswer), and the rest rate-limited.
func guessesAtOnce(t *testing.T, guess func(i int) error, isAnswer func(error) bool) {
	t.Helper()
	const guesses = 40
	var (
		wg                sync.WaitGroup
		answered, limited atomic.Int64
	)
	for i := range guesses {
		wg.Go(func() {
			switch err := guess(i); {
			case isAnswer(err):
				answered.Add(1)
			case mfa.ErrorKind(err) == mfa.KindRateLimited:
				limited.Add(1)
			}
		})
	}
	wg.Wait()
	if answered.Load() > mfa.FreeFailures || answered.Load()+limited.Load() != guesses {
		t.Fatalf("%d guesses at once: %d answered, %d rate limited; want at most %d answered, the rest limited",
			guesses, answered.Load(), limited.Load(), mfa.FreeFailures)
	}
}

func TestConcurrentPasswordGuessesStayWithinTheLimit(t *testing.T) {
	f := newFixtureWith(t, func(s mfa.Store) mfa.Store { return slowReads{s} })
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	guessesAtOnce(t, func(i int) error {
		_, err := f.svc.Login(ctx, u.Email, fmt.Sprintf("wrong password %d", i), client)
		return err
	}, func(err error) bool { return errors.Is(err, mfa.ErrInvalidCredentials) })
}

// lockingStore, while on, has FreeFailures failures of the throttle key
// recorded by a concurrent request just before each UpgradeSession: the
// lock arrives after the sign-in checked for it and checked the password or
// code.
type lockingStore struct {
	mfa.Store
	on  *atomic.Bool
	now func() time.Time
}

func (s lockingStore) UpgradeSession(ctx context.Context, u mfa.Upgrade) (bool, error) {
	if s.on.Load() {
		always := func(mfa.ThrottleState) bool { return true }
		for range mfa.FreeFailures {
			if _, _, err := s.RecordFailure(ctx, u.Throttle, s.now(), u.Since, always, nil); err != nil {
				return false, err
			}
		}
	}
	return s.Store.UpgradeSession(ctx, u)
}

// TestLockArrivingMidSignIn: a right password or code is refused when its
// key locked after it was checked, because the lock is checked again in the
// one write that acts on the outcome.
func TestLockArrivingMidSignIn(t *testing.T) {
	var (
		f  *fixture
		on atomic.Bool
	)
	f = newFixtureWith(t, func(s mfa.Store) mfa.Store {
		return lockingStore{Store: s, on: &on, now: func() time.Time { return f.clock.Now() }}
	})
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	secret, _ := f.enable(t, u)
	f.pastSpentSteps(secret)
	pending := f.login(t, u.Email)

	on.Store(true)
	_, err := f.svc.VerifySecondFactor(ctx, pending.Token, mfa.MethodTOTP, f.code(t, secret, 0), client)
	rateLimited(t, err)
	_, err = f.svc.Login(ctx, "ann@example.com", testPassword, client)
	rateLimited(t, err)
}

func TestNormalizeEmail(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{" Ada@Example.COM ", "ada@example.com"},
		{"ada.lovelace+2fa@mail.example.org", "ada.lovelace+2fa@mail.example.org"},
		{"jürgen@bücher.example", "jürgen@bücher.example"},
		{"a@localhost", "a@localhost"},
	} {
		if got, err := mfa.NormalizeEmail(tc.in); err != nil || got != tc.want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "ada", "@example.com", "ada@", "a@b@c.com", "@@x", "x@.", "x@.example.com", "x@example..com",
		"x@example.com.", "ada lovelace@example.com", "ada\u00a0@example.com", "a\u200bb@example.com",
		"ada\u202e@example.com", "ada\u2028@example.com", "ada\x00@example.com", "\xff\xfe@example.com",
		"<ada@example.com>", `"ada"@example.com`, "ada:x@example.com", strings.Repeat("a", 250) + "@x.io",
	} {
		got, err := mfa.NormalizeEmail(in)
		if me := (*mfa.Error)(nil); !errors.As(err, &me) || me.Code != "invalid_email" {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want an invalid_email error", in, got, err)
		}
	}
}

// TestStoredForms checks what reaches the store for a session and for a
// backup code: a session's ID is its token's SHA-256 behind the token's
// time prefix, never the token itself; a backup code is hashed under the
// code key, so a Service with another key accepts none.
func TestStoredForms(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	res := f.login(t, "ann@example.com")
	raw, err := hex.DecodeString(res.Token)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(res.Token))
	want := append(raw[:8:8], sum[:]...)
	if !bytes.Equal(res.Session.ID, want) {
		t.Errorf("stored session ID %x, want the time prefix and SHA-256 of the token %x", res.Session.ID, want)
	}
	if _, err := f.store.SessionView(ctx, want); err != nil {
		t.Errorf("no session under the token's hash: %v", err)
	}
	for _, id := range [][]byte{raw, []byte(res.Token)} {
		if _, err := f.store.SessionView(ctx, id); !errors.Is(err, mfa.ErrNotFound) {
			t.Errorf("a session is stored under the token itself (%v)", err)
		}
	}

	_, codes := f.enable(t, u)
	otherKey, err := mfa.NewService(mfa.Config{Store: f.store, Passwords: f.hasher, Policy: password.Policy{},
		Cipher: f.keys, CodeKey: bytes.Repeat([]byte{8}, 32), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	useCode := func(svc *mfa.Service) error {
		half, err := svc.Login(ctx, u.Email, testPassword, client)
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.VerifySecondFactor(ctx, half.Token, mfa.MethodBackupCode, codes[0], client)
		return err
	}
	if err := useCode(otherKey); !errors.Is(err, mfa.ErrInvalidCode) {
		t.Fatalf("a Service with another code key: got %v, want ErrInvalidCode", err)
	}
	if err := useCode(f.svc); err != nil {
		t.Fatalf("the Service with the code key: %v", err)
	}
}

// TestBackupCodeStrength checks that each backup code carries at least 50
// random bits: its length in symbols times log2 of the symbols seen over
// 200 codes (a uniform alphabet of 32 shows every symbol there).
func TestBackupCodeStrength(t *testing.T) {
	f := newFixture(t)
	u := f.user(t, "ann@example.com")
	_, codes := f.enable(t, u)
	for range 19 {
		more, err := f.svc.RegenerateBackupCodes(context.Background(), u, testPassword, client)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, more...)
	}
	symbols := map[rune]bool{}
	length := -1
	for _, c := range codes {
		c = strings.ReplaceAll(c, "-", "")
		if length != -1 && len(c) != length {
			t.Fatalf("codes of %d and %d symbols", length, len(c))
		}
		length = len(c)
		for _, r := range c {
			symbols[r] = true
		}
	}
	if bits := float64(length) * math.Log2(float64(len(symbols))); bits < 50 {
		t.Errorf("codes of %d symbols from an alphabet of %d: %.1f bits, want at least 50", length, len(symbols), bits)
	}
}

// TestPasswordThrottleByAddress checks that the password step counts every
// spelling of an address (case, surrounding spaces) against one key, and
// that the failure that starts the lock is recorded as a throttled event.
func TestPasswordThrottleByAddress(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.user(t, "ann@example.com")
	for _, email := range []string{"ann@example.com", "ANN@example.com", " Ann@Example.com", "ann@EXAMPLE.COM ", "\tann@example.com"} {
		if _, err := f.svc.Login(ctx, email, "a wrong password here", client); !errors.Is(err, mfa.ErrInvalidCredentials) {
			t.Fatalf("Login(%q) with a wrong password: got %v, want ErrInvalidCredentials", email, err)
		}
	}
	if _, err := f.svc.Login(ctx, "Ann@example.com", testPassword, client); mfa.ErrorKind(err) != mfa.KindRateLimited {
		t.Fatalf("sixth attempt, another spelling: got %v, want rate limited", err)
	}
	events, err := f.store.Events(ctx, u.ID, 50)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events, func(e mfa.Event) bool { return e.Type == mfa.EventThrottled }) {
		t.Errorf("no throttled event among %+v", events)
	}
}

func TestSessionIdleMinimum(t *testing.T) {
	f := newFixture(t)
	for _, idle := range []time.Duration{time.Second, 4 * time.Second, time.Minute, mfa.MinSessionIdle - 1} {
		_, err := mfa.NewService(mfa.Config{Store: f.store, Passwords: f.hasher, Cipher: f.keys,
			CodeKey: bytes.Repeat([]byte{7}, 32), SessionIdle: idle})
		if err == nil || !strings.Contains(err.Error(), "minimum") {
			t.Errorf("SessionIdle %s: got %v, want an error naming the minimum", idle, err)
		}
	}
	if _, err := mfa.NewService(mfa.Config{Store: f.store, Passwords: f.hasher, Cipher: f.keys,
		CodeKey: bytes.Repeat([]byte{7}, 32), SessionIdle: mfa.MinSessionIdle}); err != nil {
		t.Errorf("SessionIdle at the minimum: %v", err)
	}
}

// An issuer that no key URI can carry is refused when the Service starts,
// not at each enrollment after the user's password is checked.
func TestIssuerChecked(t *testing.T) {
	f := newFixture(t)
	newService := func(issuer string) (*mfa.Service, error) {
		return mfa.NewService(mfa.Config{Store: f.store, Passwords: f.hasher, Cipher: f.keys,
			CodeKey: bytes.Repeat([]byte{7}, 32), Issuer: issuer})
	}
	for _, bad := range []string{"Acme:Mail", "Acme\nMail", " Acme", "Acme \xff"} {
		if _, err := newService(bad); err == nil || !strings.Contains(err.Error(), "issuer") {
			t.Errorf("issuer %q: got %v, want an error about the issuer", bad, err)
		}
	}
	svc, err := newService("Acme Mail Ünïcode")
	if err != nil {
		t.Fatalf("a good issuer: %v", err)
	}
	u := f.user(t, "ann@example.com")
	if _, err := svc.BeginTOTP(t.Context(), u, testPassword, client); err != nil {
		t.Errorf("enrolling under a good issuer: %v", err)
	}
}

func TestEventSummaries(t *testing.T) {
	for _, tc := range []struct {
		typ    mfa.EventType
		detail string
		want   string
	}{
		{mfa.EventLoginFailed, "wrong password", "Failed sign-in: wrong password"},
		{mfa.EventLoginFailed, "wrong password to confirm a change", "Wrong password when confirming a change"},
		{mfa.EventSecondFactorFailed, "totp", "Failed sign-in: wrong authenticator app code"},
		{mfa.EventSecondFactorFailed, "backup_code", "Failed sign-in: wrong backup code"},
		{mfa.EventSecondFactorFailed, "totp already used", "Failed sign-in: authenticator app code already used"},
		{mfa.EventSecondFactorFailed, "backup_code already used", "Failed sign-in: backup code already used"},
		{mfa.EventSecondFactorFailed, "setup", "Wrong code while setting up the authenticator app"},
		{mfa.EventSecondFactorFailed, "", "Failed sign-in: wrong code"},
		{mfa.EventThrottled, "totp locked for 30 seconds", "Too many failed attempts: authenticator app paused for 30 seconds"},
	} {
		if got := (mfa.Event{Type: tc.typ, Detail: tc.detail}).Summary(); got != tc.want {
			t.Errorf("%s %q: got %q, want %q", tc.typ, tc.detail, got, tc.want)
		}
	}
}

// clientGone is a store whose writes, as the SQLite store's, are refused
// once their context is done, and which cancels the caller's context right
// after the change under test is stored: the client hangs up at the worst
// moment.
type clientGone struct {
	mfa.Store
	cancel context.CancelFunc
}

func (g *clientGone) gone(err error) error {
	if err == nil {
		g.cancel()
	}
	return err
}

func (g *clientGone) ConfirmFactor(ctx context.Context, id int64, at time.Time, step int64, codes []mfa.BackupCode, e *mfa.Event) error {
	return g.gone(g.Store.ConfirmFactor(ctx, id, at, step, codes, e))
}

func (g *clientGone) DeleteFactors(ctx context.Context, userID int64, e *mfa.Event) error {
	return g.gone(g.Store.DeleteFactors(ctx, userID, e))
}

func (g *clientGone) ReplaceBackupCodes(ctx context.Context, userID int64, codes []mfa.BackupCode, e *mfa.Event) error {
	return g.gone(g.Store.ReplaceBackupCodes(ctx, userID, codes, e))
}

func (g *clientGone) ReplaceBackupCodesIf(ctx context.Context, userID, newest int64, codes []mfa.BackupCode, e *mfa.Event) (bool, error) {
	ok, err := g.Store.ReplaceBackupCodesIf(ctx, userID, newest, codes, e)
	return ok, g.gone(err)
}

func (g *clientGone) ReplacePasswordHash(ctx context.Context, userID int64, old, new string, e *mfa.Event) (bool, error) {
	ok, err := g.Store.ReplacePasswordHash(ctx, userID, old, new, e)
	return ok, g.gone(err)
}

func (g *clientGone) AddEvent(ctx context.Context, e *mfa.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return g.Store.AddEvent(ctx, e)
}

func (g *clientGone) DeleteUserSessions(ctx context.Context, userID int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return g.Store.DeleteUserSessions(ctx, userID)
}

func (g *clientGone) ResetThrottle(ctx context.Context, key mfa.ThrottleKey, attempt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return g.Store.ResetThrottle(ctx, key, attempt)
}

// A securityChange is a change to how an account is protected, made
// through the Service.
type securityChange struct {
	name         string
	enabled      bool // 2FA on before the change
	change       func(f *fixture, ctx context.Context, u *mfa.User, secret []byte) error
	event        mfa.EventType
	endsSessions bool
}

// securityChanges are the changes whose event is stored with them.
func securityChanges(t *testing.T) []securityChange {
	const otherPassword = "a different passphrase 42"
	return []securityChange{
		{"confirm TOTP", false, func(f *fixture, ctx context.Context, u *mfa.User, secret []byte) error {
			_, _, err := f.svc.ConfirmTOTP(ctx, u, f.code(t, secret, 0), client)
			return err
		}, mfa.EventTwoFactorEnabled, true},
		{"disable", true, func(f *fixture, ctx context.Context, u *mfa.User, _ []byte) error {
			_, err := f.svc.DisableTwoFactor(ctx, u, testPassword, client)
			return err
		}, mfa.EventTwoFactorDisabled, true},
		{"new backup codes", true, func(f *fixture, ctx context.Context, u *mfa.User, _ []byte) error {
			_, err := f.svc.RegenerateBackupCodes(ctx, u, testPassword, client)
			return err
		}, mfa.EventBackupCodesRegenerated, false},
		{"new backup codes, once", true, func(f *fixture, ctx context.Context, u *mfa.User, _ []byte) error {
			st, err := f.svc.Status(ctx, u.ID)
			if err != nil {
				return err
			}
			_, err = f.svc.RegenerateBackupCodesOnce(ctx, u, testPassword, st.BackupCodeSet, client)
			return err
		}, mfa.EventBackupCodesRegenerated, false},
		{"reset 2FA", true, func(f *fixture, ctx context.Context, u *mfa.User, _ []byte) error {
			return f.svc.ResetTwoFactor(ctx, u.Email, client)
		}, mfa.EventTwoFactorReset, true},
		{"set password", false, func(f *fixture, ctx context.Context, u *mfa.User, _ []byte) error {
			return f.svc.SetPassword(ctx, u.Email, otherPassword, client)
		}, mfa.EventPasswordReset, true},
		{"change password", false, func(f *fixture, ctx context.Context, u *mfa.User, _ []byte) error {
			_, err := f.svc.ChangePassword(ctx, u, testPassword, otherPassword, client)
			var e *mfa.Error
			if errors.As(err, &e) && e.Code == "sign_in_again" {
				err = nil // the caller's new session did not start: the caller is gone
			}
			return err
		}, mfa.EventPasswordChanged, true},
	}
}

// prepare readies u for the change and returns the TOTP secret it uses.
func (sc securityChange) prepare(t *testing.T, f *fixture, u *mfa.User) []byte {
	t.Helper()
	if sc.enabled {
		secret, _ := f.enable(t, u)
		f.pastSpentSteps(secret)
		return secret
	}
	return f.beginTOTP(t, u, testPassword)
}

// A change to how an account is protected that has been stored is recorded,
// and ends the account's other sessions where it should, even when the
// client has gone away by then.
func TestChangeCompletesWhenClientGone(t *testing.T) {
	for _, tc := range securityChanges(t) {
		t.Run(tc.name, func(t *testing.T) {
			g := &clientGone{cancel: func() {}}
			f := newFixtureWith(t, func(s mfa.Store) mfa.Store { g.Store = s; return g })
			u := f.user(t, "ann@example.com")
			secret := tc.prepare(t, f, u)
			other := f.login(t, u.Email).Token // elsewhere: half signed in where 2FA is on
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			g.cancel = cancel
			if err := tc.change(f, ctx, u, secret); err != nil {
				t.Fatalf("the change: %v", err)
			}
			if ctx.Err() == nil {
				t.Fatal("the client did not go away: the test tests nothing")
			}
			if n, err := f.store.CountEvents(t.Context(), u.ID, []mfa.EventType{tc.event}, time.Time{}); n != 1 || err != nil {
				t.Errorf("%s events: got %d, %v, want 1", tc.event, n, err)
			}
			_, _, aerr := f.svc.Authenticate(t.Context(), other)
			_, _, perr := f.svc.PendingLogin(t.Context(), other)
			if ended := aerr != nil && perr != nil; ended != tc.endsSessions {
				t.Errorf("the session from before the change ended: %v, want %v (authenticate: %v, pending: %v)", ended, tc.endsSessions, aerr, perr)
			}
			if strings.Contains(f.logs.String(), "level=ERROR") {
				t.Errorf("a write after the change failed:\n%s", f.logs)
			}
		})
	}
}

// writesFail is a store whose change writes fail, when failChange is set,
// and whose AddEvent fails, when failAddEvent is set: a database that goes
// away at either point.
type writesFail struct {
	mfa.Store
	failChange, failAddEvent atomic.Bool
}

var errDiskGone = errors.New("disk gone")

// changeFails is the error of a change's write: errDiskGone when failing.
func (w *writesFail) changeFails() error {
	if w.failChange.Load() {
		return errDiskGone
	}
	return nil
}

func (w *writesFail) ConfirmFactor(ctx context.Context, id int64, at time.Time, step int64, codes []mfa.BackupCode, e *mfa.Event) error {
	if err := w.changeFails(); err != nil {
		return err
	}
	return w.Store.ConfirmFactor(ctx, id, at, step, codes, e)
}

func (w *writesFail) DeleteFactors(ctx context.Context, userID int64, e *mfa.Event) error {
	if err := w.changeFails(); err != nil {
		return err
	}
	return w.Store.DeleteFactors(ctx, userID, e)
}

func (w *writesFail) ReplaceBackupCodes(ctx context.Context, userID int64, codes []mfa.BackupCode, e *mfa.Event) error {
	if err := w.changeFails(); err != nil {
		return err
	}
	return w.Store.ReplaceBackupCodes(ctx, userID, codes, e)
}

func (w *writesFail) ReplaceBackupCodesIf(ctx context.Context, userID, newest int64, codes []mfa.BackupCode, e *mfa.Event) (bool, error) {
	if err := w.changeFails(); err != nil {
		return false, err
	}
	return w.Store.ReplaceBackupCodesIf(ctx, userID, newest, codes, e)
}

func (w *writesFail) ReplacePasswordHash(ctx context.Context, userID int64, old, new string, e *mfa.Event) (bool, error) {
	if err := w.changeFails(); err != nil {
		return false, err
	}
	return w.Store.ReplacePasswordHash(ctx, userID, old, new, e)
}

func (w *writesFail) AddEvent(ctx context.Context, e *mfa.Event) error {
	if w.failAddEvent.Load() {
		return errDiskGone
	}
	return w.Store.AddEvent(ctx, e)
}

// A change and its event are one write: a change whose write fails records
// no event, and one whose write succeeds has its event, and its notice,
// even when the database fails right after it.
func TestChangeAndEventOneWrite(t *testing.T) {
	for _, tc := range securityChanges(t) {
		t.Run(tc.name, func(t *testing.T) {
			for _, failChange := range []bool{false, true} {
				w := &writesFail{}
				f := newFixtureWith(t, func(s mfa.Store) mfa.Store { w.Store = s; return w })
				ctx := t.Context()
				u := f.user(t, "ann@example.com")
				secret := tc.prepare(t, f, u)
				w.failChange.Store(failChange)
				// When the change fails, an event written on its own would
				// land: nothing must write it.
				w.failAddEvent.Store(!failChange)
				err := tc.change(f, ctx, u, secret)
				n, cerr := f.store.CountEvents(ctx, u.ID, []mfa.EventType{tc.event}, time.Time{})
				if cerr != nil {
					t.Fatal(cerr)
				}
				now := f.clock.Now()
				claimed, cerr := f.store.ClaimNotices(ctx, now.Add(time.Minute), now.Add(time.Hour), 10)
				if cerr != nil {
					t.Fatal(cerr)
				}
				notices := 0 // of this change; enabling 2FA beforehand has one too
				for _, q := range claimed {
					if q.Event.Type == tc.event {
						notices++
					}
				}
				if failChange {
					if !errors.Is(err, errDiskGone) {
						t.Errorf("the change whose write failed: got %v, want the store's error", err)
					}
					if n != 0 || notices != 0 {
						t.Errorf("the change whose write failed: %d %s events, %d notices of it, want none", n, tc.event, notices)
					}
					continue
				}
				if err != nil {
					t.Fatalf("the change: %v", err)
				}
				if n != 1 {
					t.Errorf("%s events after the change: got %d, want 1, stored with the change", tc.event, n)
				}
				if notices != 1 {
					t.Errorf("notices of the change's %s event: got %d, want 1", tc.event, notices)
				}
				if strings.Contains(f.logs.String(), "level=ERROR") {
					t.Errorf("a write failed:\n%s", f.logs)
				}
			}
		})
	}
}

// confirmedMeanwhile confirms a factor once more before each
// ConfirmFactor: the same confirmation sent twice at once (a double click)
// and the other request's write landing first.
type confirmedMeanwhile struct{ mfa.Store }

func (s confirmedMeanwhile) ConfirmFactor(ctx context.Context, id int64, at time.Time, step int64, codes []mfa.BackupCode, e *mfa.Event) error {
	if err := s.Store.ConfirmFactor(ctx, id, at, step, codes, e); err != nil {
		return err
	}
	return s.Store.ConfirmFactor(ctx, id, at, step, codes, e)
}

func TestConfirmRacingItself(t *testing.T) {
	f := newFixtureWith(t, func(s mfa.Store) mfa.Store { return confirmedMeanwhile{s} })
	u := f.user(t, "ann@example.com")
	secret := f.beginTOTP(t, u, testPassword)
	if _, _, err := f.svc.ConfirmTOTP(t.Context(), u, f.code(t, secret, 0), client); !errors.Is(err, mfa.ErrAlreadyEnabled) {
		t.Errorf("the confirmation that lost the race: got %v, want ErrAlreadyEnabled", err)
	}
}
