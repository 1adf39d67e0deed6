package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
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
}

// mint returns a new nonce for realm issued at now.
func (n *nonces) mint(realm string, now time.Time) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixNano()))
	_, _ = rand.Read(raw[8:16])
	copy(raw[16:], n.mac(raw[:16], realm))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

func (n *nonces) mac(head []byte, realm string) []byte {
	m := hmac.New(sha256.New, n.secret)
	m.Write(head)
	m.Write([]byte(realm))
	return m.Sum(nil)[:16]
}

// check verifies a nonce for realm at now and returns its issue time.
func (n *nonces) check(nonce, realm string, now time.Time) (time.Time, nonceState) {
	if len(nonce) != nonceLen {
		return time.Time{}, nonceInvalid
	}
	var raw [nonceRawLen]byte
	if k, err := base64.RawURLEncoding.Decode(raw[:], []byte(nonce)); err != nil || k != nonceRawLen {
		return time.Time{}, nonceInvalid
	}
	if !hmac.Equal(raw[16:], n.mac(raw[:16], realm)) {
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
type ncTable struct {
	mu      sync.Mutex
	max     int
	ttl     time.Duration
	entries map[string]*ncEntry
	order   []*ncEntry // insertion order, a queue (head at start)
	start   int
	floor   time.Time // nonces issued at or before it are stale unless tracked
}

type ncEntry struct {
	nonce  string
	issued time.Time
	nc     uint32
	gone   bool // removed from entries; skipped when it reaches the head
}

func newNCTable(maxEntries int, ttl time.Duration) *ncTable {
	return &ncTable{max: maxEntries, ttl: ttl, entries: make(map[string]*ncEntry)}
}

// ncResult is the verdict on one nonce-count.
type ncResult uint8

const (
	ncOK ncResult = iota
	ncReplay
	ncForgotten // the nonce fell out of a full table: stale
)

// use records nc for a nonce issued at issued, at now.
func (t *ncTable) use(nonce string, issued time.Time, nc uint32, now time.Time) ncResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(now)
	if e, ok := t.entries[nonce]; ok {
		if nc <= e.nc {
			return ncReplay
		}
		e.nc = nc
		return ncOK
	}
	if !issued.After(t.floor) {
		return ncForgotten
	}
	for len(t.entries) >= t.max {
		t.evictLocked()
	}
	e := &ncEntry{nonce: nonce, issued: issued, nc: nc}
	t.entries[nonce] = e
	t.order = append(t.order, e)
	return ncOK
}

// expireLocked drops entries whose nonce has expired from the head of the
// queue (insertion order follows issue order closely: a nonce is used
// within its TTL of being issued).
func (t *ncTable) expireLocked(now time.Time) {
	for t.start < len(t.order) {
		e := t.order[t.start]
		if !e.gone && now.Sub(e.issued) <= t.ttl {
			break
		}
		t.popLocked()
	}
}

func (t *ncTable) evictLocked() {
	for t.start < len(t.order) {
		e := t.order[t.start]
		live := !e.gone
		t.popLocked()
		if live {
			if e.issued.After(t.floor) {
				t.floor = e.issued
			}
			return
		}
	}
}

func (t *ncTable) popLocked() {
	e := t.order[t.start]
	t.order[t.start] = nil
	t.start++
	if !e.gone {
		delete(t.entries, e.nonce)
		e.gone = true
	}
	// Compact the queue once its dead head is at least half of it.
	if t.start > 1024 && t.start*2 >= len(t.order) {
		n := copy(t.order, t.order[t.start:])
		clear(t.order[n:])
		t.order = t.order[:n]
		t.start = 0
	}
}

// len returns the number of tracked nonces.
func (t *ncTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}
