package mfa

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twofold/twofold/otp"
)

// PasswordHasher hashes and checks passwords under a concurrency bound. It
// fails only when no hashing slot frees up in time; the Service reports that
// as KindUnavailable, with a Retry-After.
type PasswordHasher interface {
	Hash(ctx context.Context, password string) (string, error)
	Verify(ctx context.Context, phc, password string) (bool, error)
	// VerifyDummy spends the time of one Verify, so that an unknown email
	// address answers as slowly as a wrong password.
	VerifyDummy(ctx context.Context, password string) error
	// NeedsRehash reports whether phc was made under parameters other
	// than the hasher's, so that a right password should be hashed again.
	NeedsRehash(phc string) bool
}

// PasswordPolicy says whether a new password is acceptable; its error
// message is shown to the user.
type PasswordPolicy interface {
	Check(password string) error
}

// Cipher seals secrets at rest. Additional data binds a ciphertext to its
// owner, so sealed secrets cannot be swapped between rows.
type Cipher interface {
	Seal(plaintext, additionalData []byte) ([]byte, error)
	Open(sealed, additionalData []byte) ([]byte, error)
}

// Config holds a Service's dependencies and settings. Zero durations take
// the defaults noted.
type Config struct {
	Store     Store
	Passwords PasswordHasher
	Policy    PasswordPolicy
	Cipher    Cipher
	// CodeKey keys the hashes of backup codes and of email addresses in
	// throttle keys, and (through a key derived from it) seals the set of
	// backup codes a Show Codes form names. At least 32 random bytes, kept
	// outside the database.
	CodeKey []byte
	Issuer  string // shown in authenticator apps; default "twofold"
	// Notifier tells users of changes to the security of their accounts.
	// Notices are queued whether or not a Service has one, so that a
	// change made where there is none (a command) is told by a server that
	// has one; DeliverNotices sends them.
	Notifier Notifier

	Now    func() time.Time // default time.Now
	Rand   io.Reader        // default crypto/rand.Reader
	Logger *slog.Logger     // default discards

	SessionIdle     time.Duration // default 30 minutes
	SessionAbsolute time.Duration // default 12 hours
	PendingLogin    time.Duration // default 10 minutes: password passed, second factor due
	PendingSetup    time.Duration // default 15 minutes: QR code shown, code not yet confirmed
}

// Service holds every rule of twofold. It is safe for concurrent use.
type Service struct {
	store     Store
	passwords PasswordHasher
	policy    PasswordPolicy
	cipher    Cipher
	codeKey   []byte
	// codeSets seals the set of backup codes a form names (Status.
	// BackupCodeSet), under a key derived from codeKey for that use only.
	codeSets cipher.AEAD
	issuer   string
	notifier Notifier
	// noticeQueued wakes DeliverNotices when this instance queues a notice.
	noticeQueued chan struct{}
	now          func() time.Time
	rand         io.Reader
	log          *slog.Logger

	idle, absolute, pendingLogin, pendingSetup time.Duration
}

// MinSessionIdle is the shortest idle time a session may have: the last
// use of a session is written at most once a minute (touchEvery), so a
// shorter idle time would end sessions in use.
const MinSessionIdle = 2 * touchEvery

// NewService checks cfg and returns a Service.
func NewService(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Passwords == nil || cfg.Cipher == nil {
		return nil, errors.New("mfa: new service: Store, Passwords and Cipher are required")
	}
	if len(cfg.CodeKey) < 32 {
		return nil, errors.New("mfa: new service: CodeKey must be at least 32 bytes")
	}
	s := &Service{
		store: cfg.Store, passwords: cfg.Passwords, policy: cfg.Policy, cipher: cfg.Cipher,
		codeKey: cfg.CodeKey, issuer: cfg.Issuer, notifier: cfg.Notifier, noticeQueued: make(chan struct{}, 1),
		now: cfg.Now, rand: cfg.Rand, log: cfg.Logger,
		idle: cfg.SessionIdle, absolute: cfg.SessionAbsolute,
		pendingLogin: cfg.PendingLogin, pendingSetup: cfg.PendingSetup,
	}
	block, err := aes.NewCipher(s.keyedHash("backup-code-set-key")) // 32 bytes: AES-256
	if err != nil {
		return nil, fmt.Errorf("mfa: new service: %w", err)
	}
	if s.codeSets, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("mfa: new service: %w", err)
	}
	if s.issuer == "" {
		s.issuer = "twofold"
	}
	if err := otp.CheckIssuer(s.issuer); err != nil {
		return nil, fmt.Errorf("mfa: new service: issuer %q: %w", s.issuer, err)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	setDefault(&s.idle, 30*time.Minute)
	if s.idle < MinSessionIdle {
		return nil, fmt.Errorf("mfa: new service: a session idle time of %s is under the minimum of %s (a session's last use is recorded once a minute)", s.idle, MinSessionIdle)
	}
	setDefault(&s.absolute, 12*time.Hour)
	setDefault(&s.pendingLogin, 10*time.Minute)
	setDefault(&s.pendingSetup, 15*time.Minute)
	return s, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Now is the Service's clock, in UTC.
func (s *Service) Now() time.Time { return s.clock() }

// Issuer is the name authenticator apps show for this server.
func (s *Service) Issuer() string { return s.issuer }

func (s *Service) clock() time.Time { return s.now().UTC() }

// keyedHash is HMAC-SHA256 under the code key, with a purpose label so a
// hash made for one use never matches another.
func (s *Service) keyedHash(purpose string, parts ...string) []byte {
	m := hmac.New(sha256.New, s.codeKey)
	m.Write([]byte(purpose))
	for _, p := range parts {
		m.Write([]byte{0})
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// NormalizeEmail trims and lower-cases an email address and checks its
// shape: valid UTF-8 of at most 254 bytes, one @ with text on both sides, a
// domain without empty labels, and no character that is invisible or
// blank on screen (spaces of any kind, controls, zero-width and direction
// marks), so that no two accounts can differ only in what nobody sees.
func NormalizeEmail(email string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(email))
	local, domain, _ := strings.Cut(e, "@")
	// A colon would break the "Issuer:account" label of the key URI.
	if len(e) > 254 || !utf8.ValidString(email) || local == "" || !validDomain(domain) ||
		strings.ContainsAny(e, "<>\":") || strings.ContainsFunc(e, unseen) {
		return "", Errorf(KindInvalid, "invalid_email", "Enter a valid email address, like name@example.com.")
	}
	return e, nil
}

// validDomain reports whether d is a domain with no empty label and no
// second @.
func validDomain(d string) bool {
	return d != "" && !strings.ContainsRune(d, '@') && !strings.HasPrefix(d, ".") &&
		!strings.HasSuffix(d, ".") && !strings.Contains(d, "..")
}

// unseen reports whether r shows as blank or not at all: a space of any
// kind, a control character, or a format character such as a zero-width
// space or a direction mark.
func unseen(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || unicode.In(r, unicode.Zs, unicode.Cf)
}

// SignUp creates an account for a visitor of the public sign-up page or
// API. Without a check of the address, its answer tells whether an address
// has an account; so the sign-ups that name a taken address count, per
// client address, against a throttle like the password step's: 5 at once,
// then a doubling wait, and at most 100 a day, rather than as fast as a
// script can ask.
func (s *Service) SignUp(ctx context.Context, email, password string, c Client) (*User, error) {
	key := ThrottleKey{Subject: "signup:" + hex.EncodeToString(s.keyedHash("throttle-signup", signupClient(c.IP))), Method: MethodSignup}
	now := s.clock()
	st, err := s.store.ThrottleState(ctx, key, now.Add(-ThrottleWindow))
	if err != nil {
		return nil, fmt.Errorf("mfa: sign up: %w", err)
	}
	if d := lockRemaining(st, now); d > 0 {
		return nil, rateLimited(d)
	}
	u, err := s.CreateUser(ctx, email, password, c)
	if errors.Is(err, ErrEmailTaken) {
		return nil, s.fail(ctx, key, Event{}, ErrEmailTaken)
	}
	return u, err
}

// signupClient names the client that sign-ups are throttled by: its IPv4
// address, or the /64 network of its IPv6 address, since one IPv6 host
// commonly holds a whole /64 to pick addresses from.
func signupClient(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Unmap().Is4() {
		return ip
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// CreateUser creates an account: the first one, or one made on the command
// line. Public sign-ups go through SignUp.
func (s *Service) CreateUser(ctx context.Context, email, password string, c Client) (*User, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return nil, err
	}
	if err := s.checkPolicy(password); err != nil {
		return nil, err
	}
	if _, err := s.store.UserByEmail(ctx, email); err == nil {
		return nil, ErrEmailTaken
	} else if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("mfa: create user: %w", err)
	}
	phc, err := s.passwords.Hash(ctx, password)
	if err != nil {
		return nil, s.hashError("create user", err)
	}
	u := &User{Email: email, PasswordHash: phc, CreatedAt: s.clock()}
	if err := s.store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, ErrEmailTaken
		}
		return nil, fmt.Errorf("mfa: create user: %w", err)
	}
	s.record(ctx, u.ID, EventAccountCreated, c, "")
	return u, nil
}

// checkPolicy refuses a new password the policy does not accept, with the
// policy's reason.
func (s *Service) checkPolicy(password string) error {
	if s.policy == nil {
		return nil
	}
	if err := s.policy.Check(password); err != nil {
		return &Error{Kind: KindInvalid, Code: "weak_password", Message: err.Error(), Err: err}
	}
	return nil
}

// hashError turns a hasher failure into an Error. The hasher fails only when
// every hashing slot stays taken (a login flood) or the request is gone, so
// the answer is "busy, come back", never a user's fault.
func (s *Service) hashError(op string, err error) error {
	return &Error{Kind: KindUnavailable, Code: "busy",
		Message: "The server is busy. Try again in a moment.", RetryAfter: 2 * time.Second,
		Err: fmt.Errorf("mfa: %s: %w", op, err)}
}

// record stores a security event; a failure to record is logged, not
// returned, because the user's action itself has succeeded or failed already.
func (s *Service) record(ctx context.Context, userID int64, t EventType, c Client, detail string) {
	s.save(ctx, s.newEvent(userID, t, c, detail))
}

// newEvent is an event of the user's account, by c, now.
func (s *Service) newEvent(userID int64, t EventType, c Client, detail string) *Event {
	return &Event{UserID: userID, Type: t, At: s.clock(), IP: c.IP, Detail: detail}
}

// save stores e, queueing its notice when its type has one; a failure is
// logged, as for record. It is stored even when the client has gone away
// meanwhile: what it records has happened.
func (s *Service) save(ctx context.Context, e *Event) {
	ctx, cancel := followUp(ctx)
	defer cancel()
	s.prepareEvent(ctx, e)
	if err := s.store.AddEvent(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "record event", "user_id", e.UserID, "event", string(e.Type), "err", err)
		return
	}
	s.eventStored(ctx, e)
}

// changeEvent is the event of a change to the user's account, prepared to
// be stored in the change's own write: a change is never made without its
// record and its notice.
func (s *Service) changeEvent(ctx context.Context, userID int64, t EventType, c Client, detail string) *Event {
	e := s.newEvent(userID, t, c, detail)
	s.prepareEvent(ctx, e)
	return e
}

// prepareEvent decides, before e is stored, whether a notice of e is
// queued with it.
func (s *Service) prepareEvent(ctx context.Context, e *Event) {
	e.Notify = notifies(e.Type) && s.noticeAllowed(ctx, e)
}

// eventStored follows the write of e: it logs e and, when its notice was
// queued, wakes DeliverNotices.
func (s *Service) eventStored(ctx context.Context, e *Event) {
	s.logEvent(ctx, e)
	if e.Notify {
		select {
		case s.noticeQueued <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// followUpTimeout bounds a write that completes a change already made (its
// event, the end of the account's other sessions).
const followUpTimeout = 10 * time.Second

// followUp returns the context of such a write: ctx's values without its
// cancellation, since the change stands whether or not its client is still
// there, and a deadline of its own, so that a stuck database does not hold
// the request forever.
func followUp(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), followUpTimeout)
}

// logEvent logs that e was recorded.
func (s *Service) logEvent(ctx context.Context, e *Event) {
	s.log.InfoContext(ctx, "security event", "user_id", e.UserID, "event", string(e.Type), "ip", e.IP)
}

// Events returns the user's newest security events first.
func (s *Service) Events(ctx context.Context, userID int64, limit int) ([]Event, error) {
	if limit <= 0 || limit > 200 {
		limit = 50
	}
	ev, err := s.store.Events(ctx, userID, limit)
	if err != nil {
		return nil, fmt.Errorf("mfa: events: %w", err)
	}
	return ev, nil
}

// A session token is, in hex, the time its session starts (unix
// microseconds, 8 bytes, big-endian) followed by 32 random bytes. Its
// stored ID is that time again, then the token's SHA-256. IDs in order of
// start time keep the sessions that sign-ins start and finish together at
// the end of the store's index, instead of on random pages all over it: a
// sign-in writes fewer pages. The time tells the client nothing it did not
// see.
const (
	tokenTimeBytes   = 8
	tokenRandomBytes = 32
	// legacyTokenLen is the length of a token of earlier versions: 32
	// random bytes in hex, stored as their SHA-256 alone.
	legacyTokenLen = 2 * tokenRandomBytes
)

// newToken returns a new session token, with 256 random bits, and its
// stored ID.
func (s *Service) newToken() (token string, id []byte, err error) {
	var b [tokenTimeBytes + tokenRandomBytes]byte
	binary.BigEndian.PutUint64(b[:tokenTimeBytes], uint64(s.clock().UnixMicro()))
	if _, err := io.ReadFull(s.rand, b[tokenTimeBytes:]); err != nil {
		return "", nil, fmt.Errorf("mfa: new token: %w", err)
	}
	token = hex.EncodeToString(b[:])
	return token, sessionID(token), nil
}

// sessionID is the stored form of a token. Any string has one, and only
// a token that newToken made has a session under it.
func sessionID(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	if len(token) == legacyTokenLen { // still signed in across the upgrade
		return sum[:]
	}
	id := make([]byte, tokenTimeBytes, tokenTimeBytes+len(sum))
	if len(token) >= 2*tokenTimeBytes {
		// A prefix that is not hex decodes in part: the hash matches no session anyway.
		hex.Decode(id, []byte(token[:2*tokenTimeBytes]))
	}
	return append(id, sum[:]...)
}
