// Package mfatest holds hand-written fakes of the interfaces the mfa domain
// consumes, and TestStore, the conformance suite every mfa.Store backend runs.
package mfatest

import (
	"bytes"
	"cmp"
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twofold/twofold/internal/mfa"
)

// MemStore is an in-memory mfa.Store for unit tests of the domain. It keeps
// the contract of the real backends, down to their details: times come back
// in UTC, truncated to the millisecond; byte slices and structs are copied
// on the way in and out, so a caller never shares memory with the store.
// A MemStore is safe for concurrent use; every method is atomic.
type MemStore struct {
	mu sync.Mutex

	lastID    int64 // one sequence for every table: IDs are unique and increasing
	users     map[int64]mfa.User
	emails    map[string]int64
	factors   map[int64]mfa.Factor
	codes     map[int64]mfa.BackupCode
	sessions  map[string]mfa.Session
	throttles map[mfa.ThrottleKey]*memThrottle
	events    []mfa.Event // in ID order
	notices   map[int64]*memNotice
}

// memNotice is a queued notice of an event.
type memNotice struct {
	due      time.Time
	attempts int
}

type memThrottle struct {
	consecutive int
	lastFailure time.Time
	failures    []time.Time
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{
		users:     make(map[int64]mfa.User),
		emails:    make(map[string]int64),
		factors:   make(map[int64]mfa.Factor),
		codes:     make(map[int64]mfa.BackupCode),
		sessions:  make(map[string]mfa.Session),
		throttles: make(map[mfa.ThrottleKey]*memThrottle),
		notices:   make(map[int64]*memNotice),
	}
}

var _ mfa.Store = (*MemStore)(nil)

// storedTime is t as a database keeps it: UTC, whole milliseconds. The zero
// time stays zero.
func storedTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

func (m *MemStore) nextID() int64 {
	m.lastID++
	return m.lastID
}

func copyFactor(f mfa.Factor) mfa.Factor {
	f.Secret = bytes.Clone(f.Secret)
	f.CreatedAt = storedTime(f.CreatedAt)
	f.ConfirmedAt = storedTime(f.ConfirmedAt)
	return f
}

func copyCode(c mfa.BackupCode) mfa.BackupCode {
	c.Hash = bytes.Clone(c.Hash)
	c.UsedAt = storedTime(c.UsedAt)
	return c
}

func copySession(s mfa.Session) mfa.Session {
	s.ID = bytes.Clone(s.ID)
	s.CreatedAt = storedTime(s.CreatedAt)
	s.LastSeenAt = storedTime(s.LastSeenAt)
	s.ExpiresAt = storedTime(s.ExpiresAt)
	return s
}

// CreateUser stores u and sets u.ID; a taken email is mfa.ErrConflict.
func (m *MemStore) CreateUser(ctx context.Context, u *mfa.User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.emails[u.Email]; ok {
		return mfa.ErrConflict
	}
	v := *u
	v.ID = m.nextID()
	v.CreatedAt = storedTime(v.CreatedAt)
	m.users[v.ID] = v
	m.emails[v.Email] = v.ID
	u.ID = v.ID
	return nil
}

// UserByID returns the user with that ID.
func (m *MemStore) UserByID(ctx context.Context, id int64) (*mfa.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[id]
	if !ok {
		return nil, mfa.ErrNotFound
	}
	return &u, nil
}

// UserByEmail returns the user with exactly that (normalised) email address.
func (m *MemStore) UserByEmail(ctx context.Context, email string) (*mfa.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.emails[email]
	if !ok {
		return nil, mfa.ErrNotFound
	}
	u := m.users[id]
	return &u, nil
}

// SignInView returns the key's state, and the user with that email and the
// user's factors, if there is such a user.
func (m *MemStore) SignInView(ctx context.Context, email string, key mfa.ThrottleKey, since time.Time) (*mfa.SignInView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var v mfa.SignInView
	if th, ok := m.throttles[key]; ok {
		v.Throttle = th.state(storedTime(since))
	}
	if id, ok := m.emails[email]; ok {
		u := m.users[id]
		v.User, v.Factors = &u, m.factorsOf(id)
	}
	return &v, nil
}

// CountUsers returns the number of users.
func (m *MemStore) CountUsers(ctx context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.users), nil
}

// ReplacePasswordHash swaps the user's password hash if it still equals
// old, and then records e. A missing user swaps nothing: false, nil.
func (m *MemStore) ReplacePasswordHash(ctx context.Context, userID int64, old, new string, e *mfa.Event) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[userID]
	if !ok || u.PasswordHash != old {
		return false, nil
	}
	if err := m.addEvents(e); err != nil {
		return false, err
	}
	u.PasswordHash = new
	m.users[userID] = u
	return true, nil
}

// Factors returns every factor of the user in ID order, pending ones included.
func (m *MemStore) Factors(ctx context.Context, userID int64) ([]mfa.Factor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.factorsOf(userID), nil
}

// factorsOf returns copies of the user's factors in ID order; m.mu is held.
func (m *MemStore) factorsOf(userID int64) []mfa.Factor {
	var fs []mfa.Factor
	for _, f := range m.factors {
		if f.UserID == userID {
			fs = append(fs, copyFactor(f))
		}
	}
	slices.SortFunc(fs, func(a, b mfa.Factor) int { return cmp.Compare(a.ID, b.ID) })
	return fs
}

// SavePendingFactor stores f, setting f.ID, and removes any other pending
// factor of the same user. The factor of a user who does not exist is
// mfa.ErrNotFound, as in the SQL stores, whose factors reference their
// user.
func (m *MemStore) SavePendingFactor(ctx context.Context, f *mfa.Factor) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[f.UserID]; !ok {
		return mfa.ErrNotFound
	}
	for id, old := range m.factors {
		if old.UserID == f.UserID && old.ConfirmedAt.IsZero() {
			delete(m.factors, id)
		}
	}
	v := copyFactor(*f)
	v.ID = m.nextID()
	m.factors[v.ID] = v
	f.ID = v.ID
	return nil
}

// ConfirmFactor confirms a pending factor, removes the user's other factors,
// replaces the user's backup codes (setting codes[i].ID) and records e, all
// at once.
func (m *MemStore) ConfirmFactor(ctx context.Context, factorID int64, at time.Time, step int64, codes []mfa.BackupCode, e *mfa.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.factors[factorID]
	if !ok || !f.ConfirmedAt.IsZero() {
		return mfa.ErrNotFound
	}
	if err := m.addEvents(e); err != nil {
		return err
	}
	f.ConfirmedAt = storedTime(at)
	f.LastStep = step
	for id, other := range m.factors {
		if other.UserID == f.UserID {
			delete(m.factors, id)
		}
	}
	m.factors[f.ID] = f
	m.replaceCodes(f.UserID, codes)
	return nil
}

// DeleteFactors removes every factor and backup code of the user and
// records e.
func (m *MemStore) DeleteFactors(ctx context.Context, userID int64, e *mfa.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.addEvents(e); err != nil {
		return err
	}
	for id, f := range m.factors {
		if f.UserID == userID {
			delete(m.factors, id)
		}
	}
	for id, c := range m.codes {
		if c.UserID == userID {
			delete(m.codes, id)
		}
	}
	return nil
}

// FactorsAfter lists factors with ID > afterID in ID order, at most limit.
func (m *MemStore) FactorsAfter(ctx context.Context, afterID int64, limit int) ([]mfa.Factor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var fs []mfa.Factor
	for _, f := range m.factors {
		if f.ID > afterID {
			fs = append(fs, f)
		}
	}
	slices.SortFunc(fs, func(a, b mfa.Factor) int { return cmp.Compare(a.ID, b.ID) })
	fs = fs[:min(len(fs), max(limit, 0))]
	for i := range fs {
		fs[i] = copyFactor(fs[i])
	}
	return fs, nil
}

// ReplaceFactorSecret swaps the factor's secret if it still equals old. A
// missing factor swaps nothing: false, nil.
func (m *MemStore) ReplaceFactorSecret(ctx context.Context, factorID int64, old, new []byte) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.factors[factorID]
	if !ok || !bytes.Equal(f.Secret, old) {
		return false, nil
	}
	f.Secret = bytes.Clone(new)
	m.factors[factorID] = f
	return true, nil
}

// UnusedBackupCodes returns the user's unused backup codes in ID order.
func (m *MemStore) UnusedBackupCodes(ctx context.Context, userID int64) ([]mfa.BackupCode, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var cs []mfa.BackupCode
	for _, c := range m.codes {
		if c.UserID == userID && c.UsedAt.IsZero() {
			cs = append(cs, copyCode(c))
		}
	}
	slices.SortFunc(cs, func(a, b mfa.BackupCode) int { return cmp.Compare(a.ID, b.ID) })
	return cs, nil
}

// ReplaceBackupCodes deletes the user's codes and stores codes instead,
// setting codes[i].ID and codes[i].UserID, and records e. Codes of a user
// who does not exist are mfa.ErrNotFound, as in the SQL stores, whose codes
// reference their user.
func (m *MemStore) ReplaceBackupCodes(ctx context.Context, userID int64, codes []mfa.BackupCode, e *mfa.Event) error {
	_, err := m.ReplaceBackupCodesIf(ctx, userID, math.MaxInt64, codes, e) // no code is newer
	return err
}

// ReplaceBackupCodesIf does what ReplaceBackupCodes does if none of the
// user's unused codes has an ID above newest, and reports whether it did.
func (m *MemStore) ReplaceBackupCodesIf(ctx context.Context, userID, newest int64, codes []mfa.BackupCode, e *mfa.Event) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.codes {
		if c.UserID == userID && c.UsedAt.IsZero() && c.ID > newest {
			return false, nil
		}
	}
	if _, ok := m.users[userID]; !ok && len(codes) > 0 {
		return false, mfa.ErrNotFound
	}
	if err := m.addEvents(e); err != nil {
		return false, err
	}
	m.replaceCodes(userID, codes)
	return true, nil
}

func (m *MemStore) replaceCodes(userID int64, codes []mfa.BackupCode) {
	for id, c := range m.codes {
		if c.UserID == userID {
			delete(m.codes, id)
		}
	}
	for i := range codes {
		codes[i].ID = m.nextID()
		codes[i].UserID = userID
		m.codes[codes[i].ID] = copyCode(codes[i])
	}
}

// CreateSession stores s; a taken ID is mfa.ErrConflict, and the session
// of a user who does not exist mfa.ErrNotFound, as in the SQL stores,
// whose sessions reference their user.
func (m *MemStore) CreateSession(ctx context.Context, s *mfa.Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[string(s.ID)]; ok {
		return mfa.ErrConflict
	}
	if _, ok := m.users[s.UserID]; !ok {
		return mfa.ErrNotFound
	}
	m.sessions[string(s.ID)] = copySession(*s)
	return nil
}

// Session returns the session with exactly that ID.
func (m *MemStore) Session(ctx context.Context, id []byte) (*mfa.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[string(id)]
	if !ok {
		return nil, mfa.ErrNotFound
	}
	s = copySession(s)
	return &s, nil
}

// SessionView returns the session with exactly that ID, its user and the
// user's factors.
func (m *MemStore) SessionView(ctx context.Context, id []byte) (*mfa.SessionView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[string(id)]
	if !ok {
		return nil, mfa.ErrNotFound
	}
	u, ok := m.users[s.UserID]
	if !ok {
		return nil, mfa.ErrNotFound
	}
	return &mfa.SessionView{Session: copySession(s), User: u, Factors: m.factorsOf(s.UserID)}, nil
}

// UpgradeSession admits the attempt, spends the proof, replaces session
// u.Old by u.Next and records u.Event (setting its ID), at once; false,
// changing nothing, when a condition of u fails. When they all hold, a
// u.Next of a user who does not exist is mfa.ErrNotFound, and changes
// nothing either, as in the SQL stores.
func (m *MemStore) UpgradeSession(ctx context.Context, u mfa.Upgrade) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[string(u.Old)]; u.Old != nil && !ok {
		return false, nil
	}
	if _, ok := m.sessions[string(u.Next.ID)]; ok && !bytes.Equal(u.Next.ID, u.Old) {
		return false, mfa.ErrConflict
	}
	// Check every condition before changing anything: all or nothing.
	th := m.throttles[u.Throttle] // nil for a key without failures
	if u.Throttle.Subject != "" {
		var st mfa.ThrottleState
		if th != nil {
			st = th.state(storedTime(u.Since))
		}
		if !u.Admit(st) {
			return false, nil
		}
	}
	if u.PasswordHash != "" && m.users[u.Next.UserID].PasswordHash != u.PasswordHash {
		return false, nil
	}
	if u.ClaimFactor != 0 {
		if f, ok := m.factors[u.ClaimFactor]; !ok || f.LastStep >= u.ClaimStep {
			return false, nil
		}
	}
	if u.BackupCode != 0 {
		if c, ok := m.codes[u.BackupCode]; !ok || !c.UsedAt.IsZero() {
			return false, nil
		}
	}
	if _, ok := m.users[u.Next.UserID]; !ok {
		return false, mfa.ErrNotFound
	}
	if err := m.addEvents(u.Event); err != nil {
		return false, err
	}
	if u.ClaimFactor != 0 {
		f := m.factors[u.ClaimFactor]
		f.LastStep = u.ClaimStep
		m.factors[u.ClaimFactor] = f
	}
	if u.BackupCode != 0 {
		c := m.codes[u.BackupCode]
		c.UsedAt = storedTime(u.Next.CreatedAt)
		m.codes[u.BackupCode] = c
	}
	if th != nil {
		th.consecutive = 0
	}
	delete(m.sessions, string(u.Old))
	m.sessions[string(u.Next.ID)] = copySession(*u.Next)
	return true, nil
}

// TouchSession sets the session's LastSeenAt; a missing session is mfa.ErrNotFound.
func (m *MemStore) TouchSession(ctx context.Context, id []byte, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[string(id)]
	if !ok {
		return mfa.ErrNotFound
	}
	s.LastSeenAt = storedTime(at)
	m.sessions[string(id)] = s
	return nil
}

// DeleteSession removes the session; removing a missing one is not an error.
func (m *MemStore) DeleteSession(ctx context.Context, id []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, string(id))
	return nil
}

// DeleteUserSessions removes every session of the user.
func (m *MemStore) DeleteUserSessions(ctx context.Context, userID int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, s := range m.sessions {
		if s.UserID == userID {
			delete(m.sessions, id)
		}
	}
	return nil
}

// DeleteExpiredSessions removes sessions whose ExpiresAt is before t and
// returns how many it removed.
func (m *MemStore) DeleteExpiredSessions(ctx context.Context, t time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t = storedTime(t)
	n := 0
	for id, s := range m.sessions {
		if s.ExpiresAt.Before(t) {
			delete(m.sessions, id)
			n++
		}
	}
	return n, nil
}

// DeleteStaleThrottles forgets failures before t and keys whose last
// failure is before t, and returns how many keys it forgot.
func (m *MemStore) DeleteStaleThrottles(ctx context.Context, t time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t = storedTime(t)
	n := 0
	for k, th := range m.throttles {
		if !th.lastFailure.IsZero() && th.lastFailure.Before(t) {
			delete(m.throttles, k)
			n++
			continue
		}
		th.failures = slices.DeleteFunc(th.failures, func(at time.Time) bool { return at.Before(t) })
	}
	return n, nil
}

func (th *memThrottle) state(since time.Time) mfa.ThrottleState {
	st := mfa.ThrottleState{Consecutive: th.consecutive, LastFailure: th.lastFailure}
	for _, at := range th.failures {
		if at.Before(since) {
			continue
		}
		st.WindowCount++
		if st.WindowOldest.IsZero() || at.Before(st.WindowOldest) {
			st.WindowOldest = at
		}
	}
	return st
}

// ThrottleState returns the key's state, counting failures at or after since.
func (m *MemStore) ThrottleState(ctx context.Context, key mfa.ThrottleKey, since time.Time) (mfa.ThrottleState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	th, ok := m.throttles[key]
	if !ok {
		return mfa.ThrottleState{}, nil
	}
	return th.state(storedTime(since)), nil
}

// RecordFailure reads the key's state and, if admit approves it, records a
// failure at time at, and the events that events returns, at once.
// Failures before since are forgotten. admit and events run under the
// store's lock: they must not call the store.
func (m *MemStore) RecordFailure(ctx context.Context, key mfa.ThrottleKey, at, since time.Time, admit func(mfa.ThrottleState) bool, events func(mfa.ThrottleState) []mfa.Event) (mfa.ThrottleState, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, since = storedTime(at), storedTime(since)
	th, ok := m.throttles[key]
	if !ok {
		th = &memThrottle{}
	}
	st := th.state(since)
	if !admit(st) {
		return st, false, nil
	}
	next := &memThrottle{
		consecutive: th.consecutive + 1,
		lastFailure: at,
		failures:    append(slices.DeleteFunc(slices.Clone(th.failures), func(t time.Time) bool { return t.Before(since) }), at),
	}
	st = next.state(since)
	if events != nil {
		var evs []*mfa.Event
		for _, e := range events(st) {
			e.Notify = false
			evs = append(evs, &e)
		}
		if err := m.addEvents(evs...); err != nil {
			return mfa.ThrottleState{}, false, err
		}
	}
	m.throttles[key] = next
	return st, true, nil
}

// ResetThrottle sets the key's consecutive failure count to zero and
// forgets the failure recorded at attempt; its other
// failures stay counted in their window. An unknown key is not an error.
func (m *MemStore) ResetThrottle(ctx context.Context, key mfa.ThrottleKey, attempt time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	th, ok := m.throttles[key]
	if !ok {
		return nil
	}
	th.consecutive = 0
	attempt = storedTime(attempt)
	if i := slices.IndexFunc(th.failures, attempt.Equal); i >= 0 {
		th.failures = slices.Delete(th.failures, i, i+1)
	}
	return nil
}

// AddEvent stores e and sets e.ID; the event of a user who does not
// exist is mfa.ErrNotFound.
func (m *MemStore) AddEvent(ctx context.Context, e *mfa.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addEvents(e)
}

// addEvents stores each of es that is not nil, setting its ID, and queues
// its notice if Notify is set; m.mu is held. An event whose user does not
// exist cannot be stored, as in the SQL stores, whose events reference
// their user: then it returns mfa.ErrNotFound and stores none of es. A
// change calls it once its own conditions hold and before it changes
// anything, so that a change whose event is refused is not made.
func (m *MemStore) addEvents(es ...*mfa.Event) error {
	for _, e := range es {
		if e == nil {
			continue
		}
		if _, ok := m.users[e.UserID]; !ok {
			return mfa.ErrNotFound
		}
	}
	for _, e := range es {
		if e == nil {
			continue
		}
		v := *e
		v.ID = m.nextID()
		v.At = storedTime(v.At)
		if v.Notify {
			m.notices[v.ID] = &memNotice{due: v.At}
			v.Notify = false // not read back
		}
		m.events = append(m.events, v)
		e.ID = v.ID
	}
	return nil
}

// Events returns the user's newest events first, at most limit.
func (m *MemStore) Events(ctx context.Context, userID int64, limit int) ([]mfa.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var evs []mfa.Event
	for i := len(m.events) - 1; i >= 0 && len(evs) < limit; i-- {
		if m.events[i].UserID == userID {
			evs = append(evs, m.events[i])
		}
	}
	return evs, nil
}

// CountEvents counts the user's events of the given types at or after since.
func (m *MemStore) CountEvents(ctx context.Context, userID int64, types []mfa.EventType, since time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	since = storedTime(since)
	n := 0
	for _, e := range m.events {
		if e.UserID == userID && !e.At.Before(since) && slices.Contains(types, e.Type) {
			n++
		}
	}
	return n, nil
}

// ClaimNotices returns at most limit notices due at now, the earliest due
// first, and makes each due again at until.
func (m *MemStore) ClaimNotices(ctx context.Context, now, until time.Time, limit int) ([]mfa.QueuedNotice, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now, until = storedTime(now), storedTime(until)
	var due []mfa.QueuedNotice
	for _, e := range m.events { // in ID order, the tie-break of equal due times
		if n := m.notices[e.ID]; n != nil && !n.due.After(now) {
			due = append(due, mfa.QueuedNotice{Event: e, Email: m.users[e.UserID].Email})
		}
	}
	slices.SortStableFunc(due, func(a, b mfa.QueuedNotice) int {
		return m.notices[a.Event.ID].due.Compare(m.notices[b.Event.ID].due)
	})
	due = due[:min(len(due), max(limit, 0))]
	for i := range due {
		n := m.notices[due[i].Event.ID]
		n.due = until
		n.attempts++
		due[i].Attempts = n.attempts
	}
	return due, nil
}

// RescheduleNotice makes the notice of event eventID due at at; a zero at
// takes it off the queue.
func (m *MemStore) RescheduleNotice(ctx context.Context, eventID int64, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.notices[eventID]
	switch {
	case n == nil:
	case at.IsZero():
		delete(m.notices, eventID)
	default:
		n.due = storedTime(at)
	}
	return nil
}
