package otp

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding"
	"encoding/binary"
	"hash"
)

// This file computes HMAC (RFC 2104) for a run of consecutive counters with
// the key's inner and outer pad states prepared once per call, so that each
// counter costs two hash block computations, and nothing is allocated: the
// digests live on the stack because the compiler inlines sha1.New etc. and
// devirtualises the calls on them, so they do not escape. TestVerifyAllocs
// guards this, since it depends on the compiler; should a future hash
// implementation lack the interfaces used, the code falls back to
// crypto/hmac, which is correct but allocates.

// window is a run of counters to compute, and what is learnt from them.
type window struct {
	first int64  // first counter
	n     int    // number of counters
	last  int64  // counters <= last never match
	want  uint32 // the code looked for
	mod   uint32 // 10^digits

	match   int64  // highest matching counter, if matched == 1
	matched int    // 1 if some counter matched, else 0
	value   uint32 // truncated HMAC of the last counter (before mod)
}

// observe records the dynamically truncated HMAC v of counter c, in
// constant time with respect to v and the wanted code.
func (w *window) observe(c int64, v uint32) {
	w.value = v
	fresh := 0
	if c > w.last { // lastUsedStep is not secret
		fresh = 1
	}
	eq := subtle.ConstantTimeEq(int32(v%w.mod), int32(w.want)) & fresh
	mask := -int64(eq)
	w.match = w.match&^mask | c&mask
	w.matched |= eq
}

// truncate is the dynamic truncation of RFC 4226 section 5.3.
func truncate(sum []byte) uint32 {
	off := sum[len(sum)-1] & 0x0f
	return binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
}

// run computes every counter of w with the HMAC of key under alg.
func (w *window) run(alg Algorithm, key []byte) {
	switch alg {
	case SHA1:
		w.sha1(key)
	case SHA256:
		w.sha256(key)
	case SHA512:
		w.sha512(key)
	}
}

// hotpValue returns the truncated HMAC (before reduction mod 10^digits) of
// counter under key.
func hotpValue(alg Algorithm, key []byte, counter uint64) uint32 {
	w := window{first: int64(counter), n: 1, last: int64(counter), mod: 1}
	w.run(alg, key)
	return w.value
}

// pads writes key^0x36 and key^0x5c into ipad and opad, whose length is
// the block size (64 or 128); key must be at most that long.
func pads(ipad, opad, key []byte) {
	var k [sha512.BlockSize]byte
	copy(k[:], key)
	for i := 0; i < len(ipad); i += 8 {
		v := binary.LittleEndian.Uint64(k[i:])
		binary.LittleEndian.PutUint64(ipad[i:], v^0x3636363636363636)
		binary.LittleEndian.PutUint64(opad[i:], v^0x5c5c5c5c5c5c5c5c)
	}
	clear(k[:])
}

// sha1Magic and sha1StateSize describe the state serialisation of
// crypto/sha1 digests: the magic, the five state words big-endian, the
// buffered block and the length. The hash package promises to keep it
// compatible across Go versions; window.sha1 checks it anyway.
const (
	sha1Magic     = "sha\x01"
	sha1StateSize = len(sha1Magic) + sha1.Size + sha1.BlockSize + 8
)

// sha1 is the hot path (SHA1 is what every authenticator app uses). Rather
// than Write then Sum, which copies the digest and pads through its buffer,
// it writes whole final blocks, padding included, so that each hash is a
// single compression of caller memory, and reads the resulting state words
// (which then are the hash) with AppendBinary into a stack buffer.
func (w *window) sha1(key []byte) {
	var ipad, opad [sha1.BlockSize]byte
	if len(key) > sha1.BlockSize {
		k := sha1.Sum(key)
		pads(ipad[:], opad[:], k[:])
	} else {
		pads(ipad[:], opad[:], key)
	}
	inner, outer := sha1.New(), sha1.New()
	inner.Write(ipad[:])
	outer.Write(opad[:])
	clear(ipad[:])
	clear(opad[:])
	ic, ok1 := inner.(hash.Cloner)
	oc, ok2 := outer.(hash.Cloner)
	ia, ok3 := inner.(encoding.BinaryAppender)
	var buf [2 * sha1StateSize]byte // room to spare: an append never reallocates
	st, err := []byte(nil), error(nil)
	if ok3 {
		st, err = ia.AppendBinary(buf[:0])
	}
	if !ok1 || !ok2 || !ok3 || err != nil || len(st) != sha1StateSize || string(st[:len(sha1Magic)]) != sha1Magic {
		w.generic(sha1.New, key)
		return
	}
	// The last block of each hash: message, 0x80, zeros, length in bits.
	var iblk, oblk [sha1.BlockSize]byte
	iblk[8] = 0x80
	binary.BigEndian.PutUint64(iblk[sha1.BlockSize-8:], (sha1.BlockSize+8)*8)
	oblk[sha1.Size] = 0x80
	binary.BigEndian.PutUint64(oblk[sha1.BlockSize-8:], (sha1.BlockSize+sha1.Size)*8)
	const sum = len(sha1Magic) // offset of the state words in st
	for i := range w.n {
		c := w.first + int64(i)
		binary.BigEndian.PutUint64(iblk[:8], uint64(c))
		// Separate variables (not one reassigned) let the compiler see
		// the concrete type and keep the clones on the stack.
		hi, _ := ic.Clone()
		hi.Write(iblk[:])
		st, _ = hi.(encoding.BinaryAppender).AppendBinary(buf[:0])
		copy(oblk[:sha1.Size], st[sum:sum+sha1.Size])
		ho, _ := oc.Clone()
		ho.Write(oblk[:])
		st, _ = ho.(encoding.BinaryAppender).AppendBinary(buf[:0])
		w.observe(c, truncate(st[sum:sum+sha1.Size]))
	}
	clear(iblk[:])
	clear(oblk[:])
	clear(buf[:])
}

// stateSize bounds the marshalled state of the SHA-2 digests (108 bytes for
// SHA-256, 204 for SHA-512).
const stateSize = 256

func (w *window) sha256(key []byte) {
	var ipad, opad [sha256.BlockSize]byte
	if len(key) > sha256.BlockSize {
		k := sha256.Sum256(key)
		pads(ipad[:], opad[:], k[:])
	} else {
		pads(ipad[:], opad[:], key)
	}
	h := sha256.New()
	var ibuf, obuf [stateSize]byte
	ba, ok1 := h.(encoding.BinaryAppender)
	bu, ok2 := h.(encoding.BinaryUnmarshaler)
	if !ok1 || !ok2 {
		w.generic(sha256.New, key)
		return
	}
	h.Write(ipad[:])
	istate, err1 := ba.AppendBinary(ibuf[:0])
	h.Reset()
	h.Write(opad[:])
	ostate, err2 := ba.AppendBinary(obuf[:0])
	clear(ipad[:])
	clear(opad[:])
	if err1 != nil || err2 != nil {
		w.generic(sha256.New, key)
		return
	}
	var msg [8]byte
	var sum [sha256.Size]byte
	for i := range w.n {
		c := w.first + int64(i)
		binary.BigEndian.PutUint64(msg[:], uint64(c))
		bu.UnmarshalBinary(istate)
		h.Write(msg[:])
		h.Sum(sum[:0])
		bu.UnmarshalBinary(ostate)
		h.Write(sum[:])
		h.Sum(sum[:0])
		w.observe(c, truncate(sum[:]))
	}
	clear(ibuf[:])
	clear(obuf[:])
}

func (w *window) sha512(key []byte) {
	var ipad, opad [sha512.BlockSize]byte
	if len(key) > sha512.BlockSize {
		k := sha512.Sum512(key)
		pads(ipad[:], opad[:], k[:])
	} else {
		pads(ipad[:], opad[:], key)
	}
	h := sha512.New()
	var ibuf, obuf [stateSize]byte
	ba, ok1 := h.(encoding.BinaryAppender)
	bu, ok2 := h.(encoding.BinaryUnmarshaler)
	if !ok1 || !ok2 {
		w.generic(sha512.New, key)
		return
	}
	h.Write(ipad[:])
	istate, err1 := ba.AppendBinary(ibuf[:0])
	h.Reset()
	h.Write(opad[:])
	ostate, err2 := ba.AppendBinary(obuf[:0])
	clear(ipad[:])
	clear(opad[:])
	if err1 != nil || err2 != nil {
		w.generic(sha512.New, key)
		return
	}
	var msg [8]byte
	var sum [sha512.Size]byte
	for i := range w.n {
		c := w.first + int64(i)
		binary.BigEndian.PutUint64(msg[:], uint64(c))
		bu.UnmarshalBinary(istate)
		h.Write(msg[:])
		h.Sum(sum[:0])
		bu.UnmarshalBinary(ostate)
		h.Write(sum[:])
		h.Sum(sum[:0])
		w.observe(c, truncate(sum[:]))
	}
	clear(ibuf[:])
	clear(obuf[:])
}

// generic is the plain crypto/hmac path, used only if a hash implementation
// (e.g. a FIPS or BoringCrypto build) lacks the state-copying interfaces the
// fast paths rely on. It allocates.
func (w *window) generic(h func() hash.Hash, key []byte) {
	mac := hmac.New(h, append([]byte(nil), key...))
	var msg [8]byte
	sum := make([]byte, 0, mac.Size())
	for i := range w.n {
		c := w.first + int64(i)
		binary.BigEndian.PutUint64(msg[:], uint64(c))
		mac.Reset()
		mac.Write(msg[:])
		sum = mac.Sum(sum[:0])
		w.observe(c, truncate(sum))
	}
}
