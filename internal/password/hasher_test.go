package password_test

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twofold/twofold/internal/password"
)

// fast returns options with cheap parameters for tests that do not need
// the defaults.
func fast() password.Options {
	return password.Options{Time: 1, MemoryKiB: 64, Threads: 1}
}

var phcRE = regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

func TestHashFormatAndRoundTrip(t *testing.T) {
	ctx := context.Background()
	h := password.NewHasher(password.Options{})
	phc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatalf("Hash: got error %v, want nil", err)
	}
	if !phcRE.MatchString(phc) {
		t.Errorf("Hash = %q, want match for %s", phc, phcRE)
	}
	tests := []struct {
		name, password string
		want           bool
	}{
		{"right password", "correct horse battery staple", true},
		{"wrong password", "correct horse battery stapler", false},
		{"empty password", "", false},
		{"different case", "Correct horse battery staple", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := h.Verify(ctx, phc, tt.password)
			if err != nil {
				t.Fatalf("Verify: got error %v, want nil", err)
			}
			if got != tt.want {
				t.Errorf("Verify(%q) = %v, want %v", tt.password, got, tt.want)
			}
		})
	}
	if h.NeedsRehash(phc) {
		t.Errorf("NeedsRehash(own hash) = true, want false")
	}
}

func TestSaltsDiffer(t *testing.T) {
	ctx := context.Background()
	h := password.NewHasher(fast())
	a, err := h.Hash(ctx, "same password twice")
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Hash(ctx, "same password twice")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("two hashes of one password are equal (%q), want different salts", a)
	}
}

func TestLongPasswordsHashedInFull(t *testing.T) {
	ctx := context.Background()
	h := password.NewHasher(fast())
	for _, n := range []int{64, 100, 128} {
		a := strings.Repeat("x", n-1) + "a"
		b := strings.Repeat("x", n-1) + "b"
		if err := (password.Policy{}).Check(a); err != nil {
			t.Errorf("Check(%d chars) = %v, want nil", n, err)
		}
		phc, err := h.Hash(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		ok, err := h.Verify(ctx, phc, a)
		if err != nil || !ok {
			t.Errorf("Verify(%d chars, same) = %v, %v; want true, nil", n, ok, err)
		}
		ok, err = h.Verify(ctx, phc, b)
		if err != nil || ok {
			t.Errorf("Verify(%d chars, last char differs) = %v, %v; want false, nil", n, ok, err)
		}
	}
}

func TestVerifyOtherParameters(t *testing.T) {
	ctx := context.Background()
	old := password.NewHasher(password.Options{Time: 1, MemoryKiB: 8192, Threads: 1})
	phc, err := old.Hash(ctx, "an old password hash")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=8192,t=1,p=1$") {
		t.Fatalf("Hash = %q, want prefix $argon2id$v=19$m=8192,t=1,p=1$", phc)
	}
	cur := password.NewHasher(password.Options{})
	ok, err := cur.Verify(ctx, phc, "an old password hash")
	if err != nil || !ok {
		t.Errorf("Verify with default hasher = %v, %v; want true, nil", ok, err)
	}
	if !cur.NeedsRehash(phc) {
		t.Errorf("NeedsRehash(m=8192,t=1) = false, want true")
	}
	if !cur.NeedsRehash("garbage") {
		t.Errorf("NeedsRehash(garbage) = false, want true")
	}

	// A hash with two threads, from a hasher configured that way.
	p2 := password.NewHasher(password.Options{Time: 1, MemoryKiB: 64, Threads: 2})
	phc2, err := p2.Hash(ctx, "two lanes")
	if err != nil {
		t.Fatal(err)
	}
	ok, err = cur.Verify(ctx, phc2, "two lanes")
	if err != nil || !ok {
		t.Errorf("Verify(p=2 hash) = %v, %v; want true, nil", ok, err)
	}
}

// A known-answer test: this hash is the example output of the reference
// argon2 command line tool (phc-winner-argon2 README:
// echo -n "password" | ./argon2 somesalt -id -t 2 -m 16 -p 4 -l 32 -e),
// so hashes made by other argon2id implementations verify.
func TestVerifyKnownAnswer(t *testing.T) {
	const phc = "$argon2id$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$GpZ3sK/oH9p7VIiV56G/64Zo/8GaUw434IimaPqxwCo"
	h := password.NewHasher(fast())
	ok, err := h.Verify(context.Background(), phc, "password")
	if err != nil || !ok {
		t.Errorf("Verify(reference hash) = %v, %v; want true, nil", ok, err)
	}
}

func TestVerifyMalformed(t *testing.T) {
	h := password.NewHasher(fast())
	good, err := h.Hash(context.Background(), "a password for fields")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(good, "$") // "", argon2id, v=19, m=..., salt, hash
	tests := []struct{ name, phc string }{
		{"empty", ""},
		{"plain text", "hunter2"},
		{"bcrypt", "$2b$12$abcdefghijklmnopqrstuuQ1TzDqZ4lYm5Rb6L3aOXCkLxQe3s3Ym"},
		{"argon2i", strings.Replace(good, "argon2id", "argon2i", 1)},
		{"missing field", strings.Join(f[:5], "$")},
		{"extra field", good + "$x"},
		{"no leading $", strings.TrimPrefix(good, "$")},
		{"old version", strings.Replace(good, "v=19", "v=16", 1)},
		{"no version", "$argon2id$m=64,t=1,p=1$" + f[4] + "$" + f[5]},
		{"bad version", strings.Replace(good, "v=19", "v=x", 1)},
		{"params out of order", strings.Replace(good, "m=64,t=1,p=1", "t=1,m=64,p=1", 1)},
		{"params missing", strings.Replace(good, "m=64,t=1,p=1", "m=64,t=1", 1)},
		{"params not numbers", strings.Replace(good, "m=64", "m=lots", 1)},
		{"negative", strings.Replace(good, "t=1", "t=-1", 1)},
		{"overflow", strings.Replace(good, "m=64", "m=99999999999", 1)},
		{"t zero", strings.Replace(good, "t=1", "t=0", 1)},
		{"p zero", strings.Replace(good, "p=1", "p=0", 1)},
		{"p 256", strings.Replace(good, "p=1", "p=256", 1)},
		{"m below 8p", strings.Replace(good, "m=64,t=1,p=1", "m=8,t=1,p=2", 1)},
		{"m huge", strings.Replace(good, "m=64", "m=4000000", 1)},
		{"t huge", strings.Replace(good, "t=1", "t=100000", 1)},
		{"salt padded", strings.Replace(good, f[4], f[4]+"==", 1)},
		{"salt not base64", strings.Replace(good, f[4], "!!!!!!!!!!!!!!!!!!!!!!", 1)},
		{"salt too short", strings.Replace(good, f[4], "c2FsdA", 1)},
		{"salt empty", strings.Replace(good, f[4], "", 1)},
		{"hash not base64", strings.Replace(good, f[5], "***", 1)},
		{"hash empty", strings.TrimSuffix(good, f[5])},
		{"hash too short", strings.Replace(good, f[5], f[5][:4], 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := h.Verify(context.Background(), tt.phc, "a password for fields")
			if !errors.Is(err, password.ErrMalformedHash) {
				t.Errorf("Verify(%q) error = %v, want ErrMalformedHash", tt.phc, err)
			}
			if ok {
				t.Errorf("Verify(%q) = true, want false", tt.phc)
			}
			if !h.NeedsRehash(tt.phc) {
				t.Errorf("NeedsRehash(%q) = false, want true", tt.phc)
			}
		})
	}
}

func TestVerifyTruncatedHash(t *testing.T) {
	ctx := context.Background()
	h := password.NewHasher(fast())
	good, err := h.Hash(ctx, "a password to truncate")
	if err != nil {
		t.Fatal(err)
	}
	// Dropping characters may leave valid base64 of a shorter hash; it
	// must still not match.
	for _, n := range []int{1, 2, 3, 4} {
		phc := good[:len(good)-n]
		ok, err := h.Verify(ctx, phc, "a password to truncate")
		if ok {
			t.Errorf("Verify(hash less %d chars) = true, %v; want false", n, err)
		}
	}
}

func TestVerifyDummy(t *testing.T) {
	h := password.NewHasher(fast())
	if err := h.VerifyDummy(context.Background(), "anything at all"); err != nil {
		t.Errorf("VerifyDummy: got %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.VerifyDummy(ctx, "anything at all"); !errors.Is(err, password.ErrBusy) {
		t.Errorf("VerifyDummy(cancelled ctx): got %v, want ErrBusy", err)
	}
}

// TestVerifyDummyHashesLikeVerify checks that VerifyDummy runs one full hash
// under the hasher's own parameters, as Verify does, so an unknown email
// costs what a wrong password costs. (Compared by work done, not by timing.)
func TestVerifyDummyHashesLikeVerify(t *testing.T) {
	ctx := context.Background()
	h := password.NewHasher(fast())
	var hashes int
	h.SetHook(func() { hashes++ })
	if h.NeedsRehash(h.Dummy()) {
		t.Fatalf("dummy hash %q: parameters differ from the hasher's", h.Dummy())
	}
	if err := h.VerifyDummy(ctx, "a wrong password"); err != nil {
		t.Fatal(err)
	}
	if hashes != 1 {
		t.Errorf("VerifyDummy ran %d hashes, want 1", hashes)
	}
}

func TestRandFailure(t *testing.T) {
	opts := fast()
	opts.Rand = bytes.NewReader(nil)
	h := password.NewHasher(opts)
	if _, err := h.Hash(context.Background(), "no entropy left"); err == nil {
		t.Errorf("Hash with empty Rand: got nil error, want one")
	}
}

func TestConcurrencyBound(t *testing.T) {
	for _, limit := range []int{1, 3} {
		opts := fast()
		opts.MaxConcurrent = limit
		h := password.NewHasher(opts)
		// Hold each slot a moment so the goroutines overlap.
		h.SetHook(func() { time.Sleep(2 * time.Millisecond) })
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for range 40 {
			wg.Go(func() {
				if _, err := h.Hash(context.Background(), "concurrent login"); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("MaxConcurrent=%d: Hash: got %v, want nil", limit, err)
		}
		if got := h.MaxInFlight(); got > int64(limit) || got < 1 {
			t.Errorf("MaxConcurrent=%d: max in flight = %d, want 1..%d", limit, got, limit)
		}
	}
}

// holdSlot starts a Hash on h (MaxConcurrent 1) that keeps the only slot
// until the returned func is called.
func holdSlot(t *testing.T, opts password.Options) (*password.Hasher, func()) {
	t.Helper()
	opts.MaxConcurrent = 1
	h := password.NewHasher(opts)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	h.SetHook(func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := h.Hash(context.Background(), "slot holder"); err != nil {
			t.Errorf("holder Hash: %v", err)
		}
	}()
	<-entered
	return h, func() {
		close(release)
		<-done
	}
}

func TestBusyWhenContextEnds(t *testing.T) {
	h, release := holdSlot(t, fast())
	defer release()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := h.Hash(ctx, "waits in line")
	if !errors.Is(err, password.ErrBusy) {
		t.Errorf("Hash: got %v, want ErrBusy", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Hash: got %v, want it to wrap context.DeadlineExceeded", err)
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() {
		for h.Waiting() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel2()
	}()
	ok, err := h.Verify(ctx2, "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$GpZ3sK/oH9p7VIiV56G/64Zo/8GaUw434IimaPqxwCo", "x")
	if !errors.Is(err, password.ErrBusy) || ok {
		t.Errorf("Verify cancelled while waiting: got %v, %v; want false, ErrBusy", ok, err)
	}
	if got := h.Waiting(); got != 0 {
		t.Errorf("waiting after cancel = %d, want 0", got)
	}
}

func TestBusyWhenQueueFull(t *testing.T) {
	opts := fast()
	opts.MaxWaiting = 2
	h, release := holdSlot(t, opts)

	// Two callers wait in line.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := h.Hash(context.Background(), "in line"); err != nil {
				t.Errorf("queued Hash: got %v, want nil", err)
			}
		})
	}
	for h.Waiting() < 2 {
		time.Sleep(time.Millisecond)
	}
	// The third fails at once, even with no deadline.
	start := time.Now()
	_, err := h.Hash(context.Background(), "one too many")
	if !errors.Is(err, password.ErrBusy) {
		t.Errorf("Hash with full queue: got %v, want ErrBusy", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Hash with full queue took %v, want an immediate failure", d)
	}
	release()
	wg.Wait()
	if got := h.Waiting(); got != 0 {
		t.Errorf("waiting at end = %d, want 0", got)
	}
}

func TestNoWaiting(t *testing.T) {
	opts := fast()
	opts.MaxWaiting = -1
	h, release := holdSlot(t, opts)
	defer release()
	if _, err := h.Hash(context.Background(), "no line at all"); !errors.Is(err, password.ErrBusy) {
		t.Errorf("Hash with MaxWaiting<0 and no free slot: got %v, want ErrBusy", err)
	}
}

func BenchmarkHash(b *testing.B) {
	h := password.NewHasher(password.Options{})
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}
