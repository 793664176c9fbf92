package password

// SetHook makes h call f while it holds a hashing slot, before hashing.
// Set it before h is used.
func (h *Hasher) SetHook(f func()) { h.hook = f }

// MaxInFlight returns the most hashes h has run at once.
func (h *Hasher) MaxInFlight() int64 { return h.maxInFlight.Load() }

// Waiting returns how many callers wait for a slot now.
func (h *Hasher) Waiting() int64 { return h.waiting.Load() }

// Dummy returns the hash VerifyDummy checks against.
func (h *Hasher) Dummy() string { return h.dummy }
