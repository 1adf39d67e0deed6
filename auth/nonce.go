package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"sync"
	"time"
)

// A nonce is base64url(issued || random || mac), 43 characters:
//
//	issued  8 bytes  Unix time in nanoseconds, big-endian
//	random  8 bytes  from crypto/rand, so two challenges never share a nonce
//	mac    16 bytes  HMAC-SHA-256(secret, issued || random || realm), truncated
//
// The server keeps no state per challenge: any node holding the same secret
// checks a nonce by recomputing the MAC, and its age comes from the nonce
// itself (RFC 7616 §5.4 suggests exactly this construction).
const (
	nonceRawLen = 8 + 8 + 16
	nonceLen    = (nonceRawLen*8 + 5) / 6 // unpadded base64
)

// nonceState is what checking a nonce found.
type nonceState uint8

const (
	nonceFresh   nonceState = iota
	nonceStale              // well signed but older than the TTL (or from the future)
	nonceInvalid            // not ours: wrong length, encoding, MAC or realm
)

// nonces mints and checks nonces.
type nonces struct {
	secret []byte
	ttl    time.Duration
	// skew is how far in the future an issue time may lie (clocks of
	// nodes sharing the secret differ a little).
	skew time.Duration
	// macs holds *macState: an HMAC keyed with secret and room for its
	// input, reused so that a nonce costs no allocation. The zero Pool
	// works (a test's nonces{...}): Get then returns nil and a state is
	// made.
	macs sync.Pool
}

// macState is one reusable HMAC-SHA-256 with the secret, and its input
// and output buffer.
type macState struct {
	h   hash.Hash
	buf []byte
}

// mint returns a new nonce for realm issued at now.
func (n *nonces) mint(realm string, now time.Time) string {
	var b [nonceLen]byte
	return string(n.appendNonce(b[:0], realm, now))
}

// appendNonce appends a new nonce for realm issued at now: nonceLen
// bytes.
func (n *nonces) appendNonce(b []byte, realm string, now time.Time) []byte {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixNano()))
	_, _ = rand.Read(raw[8:16])
	n.mac((*[16]byte)(raw[16:]), raw[:16], realm)
	return base64.RawURLEncoding.AppendEncode(b, raw[:])
}

// mac sets out to the truncated HMAC of head and realm.
func (n *nonces) mac(out *[16]byte, head []byte, realm string) {
	m, _ := n.macs.Get().(*macState)
	if m == nil {
		m = &macState{h: hmac.New(sha256.New, n.secret)}
	} else {
		m.h.Reset()
	}
	m.buf = append(append(m.buf[:0], head...), realm...)
	m.h.Write(m.buf)
	m.buf = m.h.Sum(m.buf[:0])
	copy(out[:], m.buf)
	n.macs.Put(m)
}

// check verifies a nonce for realm at now and returns its issue time.
func (n *nonces) check(nonce, realm string, now time.Time) (time.Time, nonceState) {
	if len(nonce) != nonceLen {
		return time.Time{}, nonceInvalid
	}
	var enc [nonceLen]byte
	var raw [nonceRawLen]byte
	copy(enc[:], nonce)
	if k, err := base64.RawURLEncoding.Decode(raw[:], enc[:]); err != nil || k != nonceRawLen {
		return time.Time{}, nonceInvalid
	}
	var mac [16]byte
	n.mac(&mac, raw[:16], realm)
	if !hmac.Equal(raw[16:], mac[:]) {
		return time.Time{}, nonceInvalid
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8])))
	age := now.Sub(issued)
	if age > n.ttl || age < -n.skew {
		return issued, nonceStale
	}
	return issued, nonceFresh
}

// ncTable is the replay guard of RFC 7616 §3.4 / §5.12: for every nonce in
// use the highest nonce-count seen, so a request whose nc does not grow is
// refused. It is bounded: entries leave when their nonce expires, and when
// the table is full the oldest ones are evicted and every nonce issued no
// later than the newest evicted one is treated as stale from then on (the
// client simply gets a fresh nonce), so an eviction never opens a replay.
//
// Nonces are kept as fixed-size keys, not strings: a new nonce costs no
// allocation (the queue and the map grow in steps), and the table holds
// no reference into the request it came with.
type ncTable struct {
	mu      sync.Mutex
	max     int
	ttl     time.Duration
	entries map[nonceKey]uint32 // highest nonce-count per tracked nonce
	// order is the queue of tracked nonces in insertion order (head at
	// start): each tracked nonce appears in it once, and leaves the map
	// when it leaves the queue.
	order []ncRef
	start int
	floor time.Time // nonces issued at or before it are stale unless tracked
}

// nonceKey is a nonce as the ncTable keeps it: the nonceLen characters of
// a checked nonce.
type nonceKey [nonceLen]byte

// ncRef is a tracked nonce in the queue.
type ncRef struct {
	nonce  nonceKey
	issued time.Time
}

func newNCTable(maxEntries int, ttl time.Duration) *ncTable {
	return &ncTable{max: maxEntries, ttl: ttl, entries: make(map[nonceKey]uint32)}
}

// ncResult is the verdict on one nonce-count.
type ncResult uint8

const (
	ncOK ncResult = iota
	ncReplay
	ncForgotten // the nonce fell out of a full table: stale
)

// use records nc for a nonce issued at issued, at now. The nonce is one
// that check found good, of nonceLen bytes (a longer string counts by its
// first nonceLen bytes).
func (t *ncTable) use(nonce string, issued time.Time, nc uint32, now time.Time) ncResult {
	var k nonceKey
	copy(k[:], nonce)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(now)
	if seen, ok := t.entries[k]; ok {
		if nc <= seen {
			return ncReplay
		}
		t.entries[k] = nc
		return ncOK
	}
	if !issued.After(t.floor) {
		return ncForgotten
	}
	for len(t.entries) >= t.max {
		t.evictLocked()
	}
	t.entries[k] = nc
	t.order = append(t.order, ncRef{nonce: k, issued: issued})
	return ncOK
}

// expireLocked drops entries whose nonce has expired from the head of the
// queue (insertion order follows issue order closely: a nonce is used
// within its TTL of being issued).
func (t *ncTable) expireLocked(now time.Time) {
	for t.start < len(t.order) && now.Sub(t.order[t.start].issued) > t.ttl {
		t.popLocked()
	}
}

// evictLocked drops the oldest entry and raises the floor to its issue
// time.
func (t *ncTable) evictLocked() {
	if t.start < len(t.order) {
		if issued := t.popLocked(); issued.After(t.floor) {
			t.floor = issued
		}
	}
}

// popLocked drops the head of the queue and its entry, and returns its
// issue time.
func (t *ncTable) popLocked() time.Time {
	r := &t.order[t.start]
	issued := r.issued
	delete(t.entries, r.nonce)
	t.start++
	// Compact the queue once its dead head is at least half of it.
	if t.start > 1024 && t.start*2 >= len(t.order) {
		n := copy(t.order, t.order[t.start:])
		t.order = t.order[:n]
		t.start = 0
	}
	return issued
}

// len returns the number of tracked nonces.
func (t *ncTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}
