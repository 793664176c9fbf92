// Package password hashes passwords with argon2id and checks new passwords
// against a length policy and a blocklist of commonly used passwords.
//
// Hashes are stored as PHC strings:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// where salt and hash are standard base64 without padding. A Hasher bounds
// how many hashes run at once, because each one holds m KiB of memory: a
// flood of sign-ins waits for a slot, and fails with ErrBusy when its
// context ends first or when too many callers are already waiting.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
)

// Default argon2id parameters (OWASP's recommended minimum for argon2id).
const (
	DefaultTime      = 2     // iterations
	DefaultMemoryKiB = 19456 // 19 MiB
	DefaultThreads   = 1     // lanes
	SaltLen          = 16    // bytes of random salt in new hashes
	KeyLen           = 32    // bytes of derived key in new hashes
)

// ErrBusy means no hashing slot could be had: the context ended while the
// caller waited, or too many callers were already waiting. The HTTP layer
// should answer 503 or 429 with a Retry-After header.
var ErrBusy = errors.New("password hasher busy")

// ErrMalformedHash means a stored hash is not a PHC string this package
// can verify.
var ErrMalformedHash = errors.New("malformed password hash")

// Options configures a Hasher. The zero value gives the defaults.
type Options struct {
	// Time is the number of argon2id iterations; 0 means DefaultTime.
	Time uint32
	// MemoryKiB is the memory per hash in KiB; 0 means DefaultMemoryKiB.
	// It is raised to 8*Threads if lower, as argon2 requires.
	MemoryKiB uint32
	// Threads is the argon2id parallelism; 0 means DefaultThreads, and
	// values above 255 are lowered to 255.
	Threads uint32
	// MaxConcurrent bounds how many hashes run at once; 0 or less means
	// runtime.NumCPU(). Peak hashing memory is MaxConcurrent*MemoryKiB.
	MaxConcurrent int
	// MaxWaiting bounds how many callers may wait for a slot; beyond it
	// callers fail at once with ErrBusy. 0 means 64*MaxConcurrent; a
	// negative value means nobody waits: when every slot is taken, callers
	// fail at once.
	MaxWaiting int
	// Rand supplies salts and must be safe for concurrent use; nil means
	// crypto/rand.Reader.
	Rand io.Reader
}

// params are the argon2id parameters of one hash.
type params struct {
	time    uint32
	memory  uint32 // KiB
	threads uint8
	saltLen int
	keyLen  int
}

// Hasher hashes and verifies passwords with argon2id under a concurrency
// bound. It is safe for concurrent use; create it with NewHasher.
type Hasher struct {
	p          params
	rand       io.Reader
	slots      chan struct{}
	maxWaiting int64
	waiting    atomic.Int64
	dummy      string

	// inFlight and maxInFlight count running hashes; tests read them.
	inFlight, maxInFlight atomic.Int64
	// hook, if set (by tests only), runs while a slot is held, before hashing.
	hook func()
}

// NewHasher returns a Hasher configured by opts; see Options for the
// defaults of zero fields.
func NewHasher(opts Options) *Hasher {
	p := params{
		time:    opts.Time,
		memory:  opts.MemoryKiB,
		saltLen: SaltLen,
		keyLen:  KeyLen,
	}
	if p.time == 0 {
		p.time = DefaultTime
	}
	if p.memory == 0 {
		p.memory = DefaultMemoryKiB
	}
	switch {
	case opts.Threads == 0:
		p.threads = DefaultThreads
	case opts.Threads > 255:
		p.threads = 255
	default:
		p.threads = uint8(opts.Threads)
	}
	if p.memory < 8*uint32(p.threads) {
		p.memory = 8 * uint32(p.threads)
	}
	n := opts.MaxConcurrent
	if n <= 0 {
		n = runtime.NumCPU()
	}
	w := int64(opts.MaxWaiting)
	switch {
	case w == 0:
		w = 64 * int64(n)
	case w < 0:
		w = 0
	}
	r := opts.Rand
	if r == nil {
		r = rand.Reader
	}
	h := &Hasher{p: p, rand: r, slots: make(chan struct{}, n), maxWaiting: w}
	// The dummy hash has this hasher's parameters, a fixed salt and an
	// all-zero key: verifying any password against it costs one full
	// argon2id run and never matches in practice.
	h.dummy = encodePHC(p, []byte("twofold-dummy-16"), make([]byte, p.keyLen))
	return h
}

// Hash returns the PHC string of password under the hasher's parameters
// and a new random salt. It waits for a hashing slot; if ctx ends first, or
// too many callers are waiting, the error wraps ErrBusy.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.p.saltLen)
	if _, err := io.ReadFull(h.rand, salt); err != nil {
		return "", fmt.Errorf("password: hash: read salt: %w", err)
	}
	release, err := h.acquire(ctx)
	if err != nil {
		return "", fmt.Errorf("password: hash: %w", err)
	}
	defer release()
	key := h.derive(password, salt, h.p)
	return encodePHC(h.p, salt, key), nil
}

// Verify reports whether password matches the PHC string phc. The
// parameters are read from phc, so hashes made under other parameters
// still verify. A malformed phc gives an error wrapping ErrMalformedHash;
// a wrong password gives false and a nil error. It waits for a hashing
// slot like Hash and fails with ErrBusy the same way.
func (h *Hasher) Verify(ctx context.Context, phc, password string) (bool, error) {
	p, salt, want, err := decodePHC(phc)
	if err != nil {
		return false, fmt.Errorf("password: verify: %w", err)
	}
	release, err := h.acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("password: verify: %w", err)
	}
	defer release()
	got := h.derive(password, salt, p)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// VerifyDummy spends the time of one Verify under the hasher's parameters,
// so that a sign-in with an unknown email address takes as long as one
// with a wrong password. It fails only as Verify does, with ErrBusy.
func (h *Hasher) VerifyDummy(ctx context.Context, password string) error {
	if _, err := h.Verify(ctx, h.dummy, password); err != nil {
		return err
	}
	return nil
}

// NeedsRehash reports whether phc was made under parameters other than the
// hasher's (or is malformed), so the caller should store a new hash after
// the next successful sign-in.
func (h *Hasher) NeedsRehash(phc string) bool {
	p, _, _, err := decodePHC(phc)
	return err != nil || p != h.p
}

// acquire takes a hashing slot, waiting until one is free, ctx ends, or
// the waiting line is full. The returned func gives the slot back.
func (h *Hasher) acquire(ctx context.Context) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBusy, err)
	}
	select {
	case h.slots <- struct{}{}:
		return h.release, nil
	default:
	}
	if h.waiting.Add(1) > h.maxWaiting {
		h.waiting.Add(-1)
		return nil, fmt.Errorf("%w: %d callers already waiting", ErrBusy, h.maxWaiting)
	}
	defer h.waiting.Add(-1)
	select {
	case h.slots <- struct{}{}:
		return h.release, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
}

func (h *Hasher) release() { <-h.slots }

// derive runs argon2id; the caller holds a slot.
func (h *Hasher) derive(password string, salt []byte, p params) []byte {
	n := h.inFlight.Add(1)
	for {
		m := h.maxInFlight.Load()
		if n <= m || h.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	defer h.inFlight.Add(-1)
	if h.hook != nil {
		h.hook()
	}
	return argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, uint32(p.keyLen))
}
