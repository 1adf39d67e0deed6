package security

import (
	"cmp"
	"container/heap"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxBans is the default of BansConfig.Max.
const DefaultMaxBans = 100000

// bansSweepEvery is how often Add drops expired bans on its own, so a
// server that never calls Sweep still frees them.
const bansSweepEvery = time.Minute

const (
	banShardBits = 6
	banShards    = 1 << banShardBits
)

// Key folds an address into the unit the guard counts: IPv4 as is
// (unmapped), IPv6 by its /64 (one subscriber's LAN, which an attacker gets
// whole). Zones are dropped.
func Key(ip netip.Addr) netip.Addr {
	switch {
	case ip.Is4In6():
		return ip.Unmap()
	case ip.Is6():
		a := ip.As16()
		clear(a[8:])
		return netip.AddrFrom16(a)
	}
	return ip
}

// key16 is Key(ip) as a map key: IPv4 (mapped or not) in its IPv4-mapped
// form, IPv6 with the interface half cleared. The two never collide: a /64
// key has zeros where the mapped form has 0xffff.
func key16(ip netip.Addr) [16]byte {
	a := ip.As16()
	if !ip.Is4() && !ip.Is4In6() {
		clear(a[8:])
	}
	return a
}

// keyPrefix is the ban prefix of one source: /32 or /64.
func keyPrefix(k [16]byte) netip.Prefix {
	a := netip.AddrFrom16(k)
	if a.Is4In6() {
		return netip.PrefixFrom(a.Unmap(), 32)
	}
	return netip.PrefixFrom(a, 64)
}

// hash16 spreads a key over shards (the top bits of a multiplicative hash
// depend on every input bit).
func hash16(k [16]byte, salt uint8) uint64 {
	h := binary.LittleEndian.Uint64(k[:8]) ^ binary.LittleEndian.Uint64(k[8:]) ^ uint64(salt)
	return h * 0x9E3779B97F4A7C15
}

// unixClock returns a reader of now in Unix nanoseconds: now's, or when
// now is nil the monotonic clock from a wall-clock base, which costs about
// half of time.Now (one clock read instead of two) on the per-packet path.
func unixClock(now func() time.Time) func() int64 {
	if now != nil {
		return func() int64 { return now().UnixNano() }
	}
	epoch := time.Now()
	base := epoch.UnixNano()
	return func() int64 { return base + int64(time.Since(epoch)) }
}

// Ban is one banned prefix.
type Ban struct {
	// Prefix is what is banned: one source is a /32 or (IPv6) a /64;
	// manual bans may be wider or, for IPv6, narrower.
	Prefix netip.Prefix
	// Reason says why, for the log and `hlas ban list`; it starts with the
	// kind and a colon ("flood: 412 packets/s over udp ...", "scanner:
	// user-agent \"friendly-scanner\"", "auth: 5 failures in 1m0s").
	Reason string
	// Created is when the ban was placed.
	Created time.Time
	// Expires is when it lapses; zero means never.
	Expires time.Time
	// Manual is set for bans an operator added (hlas ban add); they are
	// never evicted to make room.
	Manual bool
}

// Kind is the first word of the reason ("flood", "scanner", "auth"), or
// "manual" for an operator's ban: a label for counting bans.
func (b Ban) Kind() string {
	if b.Manual {
		return "manual"
	}
	if i := strings.IndexByte(b.Reason, ':'); i > 0 && !strings.ContainsRune(b.Reason[:i], ' ') {
		return b.Reason[:i]
	}
	return "other"
}

// BansConfig configures a Bans.
type BansConfig struct {
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Max bounds the bans held; beyond it the oldest automatic ban is
	// evicted (reported to OnExpire). Manual bans are never evicted: they
	// count towards Max, and are added beyond it when only manual bans are
	// left. Default DefaultMaxBans.
	Max int
	// OnAdd is called, outside the locks, for every new ban and every
	// extension made by Add (not for those loaded by Load or Sync): the
	// server logs one line, persists it and counts it.
	OnAdd func(Ban)
	// OnExpire, if set, is called outside the locks for every ban dropped
	// because it expired or was evicted to make room.
	OnExpire func(Ban)
}

// banEntry is one ban held.
type banEntry struct {
	ban   Ban
	key   [16]byte // for exact bans
	exact bool     // one source's prefix, held in a shard; else in wideMap
	exp   int64    // ban.Expires in Unix nanoseconds; 0 never
	// stored: the store has held it; pending: changed here since it was
	// last written (see Sync).
	stored, pending bool
	hidx            int // index in Bans.auto; -1 when not there (manual)
}

func (e *banEntry) expired(now int64) bool { return e.exp != 0 && now >= e.exp }

// wideBan is a prefix other than a single source's, as the hot path sees it.
type wideBan struct {
	p   netip.Prefix
	exp int64
}

type banShard struct {
	mu sync.RWMutex
	m  map[[16]byte]*banEntry
	_  [40]byte // keep shards on separate cache lines
}

// Bans holds the banned prefixes. Its methods are safe for concurrent use;
// Banned is cheap enough to call for every packet.
type Bans struct {
	now      func() time.Time
	nowNano  func() int64 // for Banned
	max      int
	onAdd    func(Ban)
	onExpire func(Ban)

	n      atomic.Int64 // bans held, expired or not
	shards [banShards]banShard
	wide   atomic.Pointer[[]wideBan] // immutable; nil when none

	mu        sync.Mutex // serialises changes; guards the fields below
	wideMap   map[netip.Prefix]*banEntry
	auto      autoHeap // automatic bans, oldest Created first
	lastSweep int64
}

// NewBans returns an empty Bans.
func NewBans(cfg BansConfig) *Bans {
	b := &Bans{now: cfg.Now, nowNano: unixClock(cfg.Now), max: cfg.Max, onAdd: cfg.OnAdd, onExpire: cfg.OnExpire,
		wideMap: map[netip.Prefix]*banEntry{}}
	if b.now == nil {
		b.now = time.Now
	}
	if b.max <= 0 {
		b.max = DefaultMaxBans
	}
	for i := range b.shards {
		b.shards[i].m = map[[16]byte]*banEntry{}
	}
	b.lastSweep = b.now().UnixNano()
	return b
}

func (b *Bans) shard(k [16]byte) *banShard {
	return &b.shards[hash16(k, 0)>>(64-banShardBits)]
}

// normPrefix masks p and writes IPv4-mapped prefixes as IPv4; exact says
// whether it is one source's (/32, or /64 for IPv6), with its key.
func normPrefix(p netip.Prefix) (q netip.Prefix, exact bool, k [16]byte, ok bool) {
	if !p.IsValid() {
		return q, false, k, false
	}
	a, bits := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return q, false, k, false
		}
		a, bits = a.Unmap(), bits-96
	}
	q, err := a.Prefix(bits)
	if err != nil {
		return q, false, k, false
	}
	exact = q.Addr().Is4() && bits == 32 || q.Addr().Is6() && bits == 64
	if exact {
		k = key16(q.Addr())
	}
	return q, exact, k, true
}

// Banned reports whether ip is banned now. Without bans it is one atomic
// load; otherwise a map look-up of Key(ip) and a scan of the wider prefixes.
func (b *Bans) Banned(ip netip.Addr) bool {
	if b.n.Load() == 0 || !ip.IsValid() {
		return false
	}
	return b.banned(key16(ip), ip, 0)
}

// banned is Banned with the key made; now (Unix nanoseconds) is read from
// the clock only when needed if the caller has none (0).
func (b *Bans) banned(k [16]byte, ip netip.Addr, now int64) bool {
	sh := b.shard(k)
	sh.mu.RLock()
	e := sh.m[k]
	var exp int64
	if e != nil {
		exp = e.exp
	}
	sh.mu.RUnlock()
	if e != nil {
		if exp == 0 {
			return true
		}
		if now == 0 {
			now = b.nowNano()
		}
		if now < exp {
			return true
		}
	}
	w := b.wide.Load()
	if w == nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, wb := range *w {
		if wb.p.Contains(ip) {
			if wb.exp == 0 {
				return true
			}
			if now == 0 {
				now = b.nowNano()
			}
			if now < wb.exp {
				return true
			}
		}
	}
	return false
}

// Add places a ban and reports whether it is new. A prefix already banned
// keeps its reason and creation time; its expiry is extended if the new one
// is later, and a manual ban makes it manual. A ban that has already
// expired, or an automatic one when Max is reached by manual bans alone, is
// not added.
func (b *Bans) Add(ban Ban) (added bool) {
	p, exact, k, ok := normPrefix(ban.Prefix)
	if !ok {
		return false
	}
	ban.Prefix = p
	nowT := b.now()
	now := nowT.UnixNano()
	if ban.Created.IsZero() {
		ban.Created = nowT
	}
	if !ban.Expires.IsZero() && ban.Expires.UnixNano() <= now {
		return false
	}
	var expired []Ban
	var notify *Ban
	b.mu.Lock()
	if now-b.lastSweep >= int64(bansSweepEvery) {
		expired = b.sweepLocked(now)
	}
	if e := b.lookupLocked(p, exact, k); e != nil && !e.expired(now) {
		changed := false
		if exp := unixOrZero(ban.Expires); e.exp != 0 && (exp == 0 || exp > e.exp) {
			b.setExpLocked(e, exp, ban.Expires)
			changed = true
		}
		if ban.Manual && !e.ban.Manual {
			e.ban.Manual = true
			b.auto.remove(e)
			changed = true
		}
		if changed {
			e.pending = true
			c := e.ban
			notify = &c
		}
	} else {
		if e != nil {
			b.removeLocked(e)
			expired = append(expired, e.ban)
		}
		if ev, ok := b.makeRoomLocked(ban.Manual); ok {
			if ev != nil {
				expired = append(expired, *ev)
			}
			b.insertLocked(&banEntry{ban: ban, key: k, exact: exact, exp: unixOrZero(ban.Expires), pending: true, hidx: -1})
			added = true
			notify = &ban
		}
	}
	b.mu.Unlock()
	b.report(expired)
	if notify != nil && b.onAdd != nil {
		b.onAdd(*notify)
	}
	return added
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// makeRoomLocked evicts the oldest automatic ban if the table is full; ok
// is false when there is no room for an automatic ban.
func (b *Bans) makeRoomLocked(manual bool) (evicted *Ban, ok bool) {
	if int(b.n.Load()) < b.max {
		return nil, true
	}
	if len(b.auto) == 0 {
		return nil, manual // manual bans go beyond Max
	}
	e := b.auto[0]
	b.removeLocked(e)
	return &e.ban, true
}

func (b *Bans) lookupLocked(p netip.Prefix, exact bool, k [16]byte) *banEntry {
	if !exact {
		return b.wideMap[p]
	}
	sh := b.shard(k)
	sh.mu.RLock()
	e := sh.m[k]
	sh.mu.RUnlock()
	return e
}

func (b *Bans) insertLocked(e *banEntry) {
	if !e.ban.Manual {
		heap.Push(&b.auto, e)
	}
	b.n.Add(1)
	if !e.exact {
		b.wideMap[e.ban.Prefix] = e
		b.publishWideLocked()
		return
	}
	sh := b.shard(e.key)
	sh.mu.Lock()
	sh.m[e.key] = e
	sh.mu.Unlock()
}

func (b *Bans) removeLocked(e *banEntry) {
	b.auto.remove(e)
	b.n.Add(-1)
	if !e.exact {
		delete(b.wideMap, e.ban.Prefix)
		b.publishWideLocked()
		return
	}
	sh := b.shard(e.key)
	sh.mu.Lock()
	delete(sh.m, e.key)
	sh.mu.Unlock()
}

func (b *Bans) setExpLocked(e *banEntry, exp int64, t time.Time) {
	if !e.exact {
		e.exp, e.ban.Expires = exp, t
		b.publishWideLocked()
		return
	}
	sh := b.shard(e.key)
	sh.mu.Lock()
	e.exp, e.ban.Expires = exp, t
	sh.mu.Unlock()
}

// publishWideLocked replaces the hot path's copy of the wide prefixes.
func (b *Bans) publishWideLocked() {
	if len(b.wideMap) == 0 {
		b.wide.Store(nil)
		return
	}
	w := make([]wideBan, 0, len(b.wideMap))
	for p, e := range b.wideMap {
		w = append(w, wideBan{p: p, exp: e.exp})
	}
	b.wide.Store(&w)
}

func (b *Bans) report(bans []Ban) {
	if b.onExpire == nil {
		return
	}
	for _, ban := range bans {
		b.onExpire(ban)
	}
}

// Del lifts the ban on exactly p and reports whether there was one.
func (b *Bans) Del(p netip.Prefix) bool {
	p, exact, k, ok := normPrefix(p)
	if !ok {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.lookupLocked(p, exact, k)
	if e == nil {
		return false
	}
	b.removeLocked(e)
	return true
}

// List returns the bans in force, oldest first.
func (b *Bans) List() []Ban {
	now := b.now().UnixNano()
	var out []Ban
	b.mu.Lock()
	b.eachLocked(func(e *banEntry) {
		if !e.expired(now) {
			out = append(out, e.ban)
		}
	})
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y Ban) int {
		if c := x.Created.Compare(y.Created); c != 0 {
			return c
		}
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(x.Prefix.Bits(), y.Prefix.Bits())
	})
	return out
}

// eachLocked calls f for every entry; f must not change the tables.
func (b *Bans) eachLocked(f func(e *banEntry)) {
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.RLock()
		for _, e := range sh.m {
			f(e)
		}
		sh.mu.RUnlock()
	}
	for _, e := range b.wideMap {
		f(e)
	}
}

// Len is the number of bans held, counting expired ones Sweep has not yet
// dropped.
func (b *Bans) Len() int { return int(b.n.Load()) }

// Load adds bans read from the store, silently (no OnAdd), marked stored;
// expired ones are skipped. It returns how many were added or updated.
func (b *Bans) Load(stored []Ban) int {
	n, _, _ := b.merge(stored, false)
	return n
}

// Sync makes the bans held match the store, where `hlas ban add|del`
// write: bans in stored are added or updated silently (no OnAdd); bans held
// here that the store had (see MarkStored) and that are absent from stored
// were deleted by an operator and are lifted; bans not yet written to the
// store (new, or extended since MarkStored) are kept, with the later of the
// two expiries. A list read from the store before a MarkStored that Sync
// is given after it lacks that ban and lifts it until the next Sync: call
// the two from one goroutine, or accept that gap. It returns the bans it
// added (new here) and those it lifted, so an operator's changes can be
// told (OnAdd is not called for them).
func (b *Bans) Sync(stored []Ban) (added, lifted []Ban) {
	_, added, lifted = b.merge(stored, true)
	return added, lifted
}

func (b *Bans) merge(stored []Ban, prune bool) (n int, added, lifted []Ban) {
	now := b.now().UnixNano()
	var seen map[netip.Prefix]bool
	if prune {
		seen = make(map[netip.Prefix]bool, len(stored))
	}
	var dropped []Ban
	b.mu.Lock()
	for _, s := range stored {
		p, exact, k, ok := normPrefix(s.Prefix)
		if !ok || !s.Expires.IsZero() && s.Expires.UnixNano() <= now {
			continue
		}
		s.Prefix = p
		if prune {
			seen[p] = true
		}
		e := b.lookupLocked(p, exact, k)
		if e != nil && e.expired(now) {
			b.removeLocked(e)
			e = nil
		}
		if e == nil {
			if s.Created.IsZero() {
				s.Created = time.Unix(0, now)
			}
			ev, ok := b.makeRoomLocked(s.Manual)
			if !ok {
				continue
			}
			if ev != nil {
				dropped = append(dropped, *ev)
			}
			b.insertLocked(&banEntry{ban: s, key: k, exact: exact, exp: unixOrZero(s.Expires), stored: true, hidx: -1})
			n++
			if prune {
				added = append(added, s)
			}
			continue
		}
		e.stored = true
		exp, expT := unixOrZero(s.Expires), s.Expires
		manual := s.Manual
		if e.pending {
			// Changed here and not yet written: keep the longer ban.
			if e.exp == 0 || exp != 0 && e.exp > exp {
				exp, expT = e.exp, e.ban.Expires
			}
			manual = manual || e.ban.Manual
		} else {
			if s.Reason != "" {
				e.ban.Reason = s.Reason
			}
			if !s.Created.IsZero() && !s.Created.Equal(e.ban.Created) {
				b.auto.remove(e)
				e.ban.Created = s.Created
			}
		}
		if manual != e.ban.Manual {
			e.ban.Manual = manual
		}
		if e.ban.Manual {
			b.auto.remove(e)
		} else if e.hidx < 0 {
			heap.Push(&b.auto, e)
		}
		if exp != e.exp {
			b.setExpLocked(e, exp, expT)
		}
		n++
	}
	if prune {
		var gone []*banEntry
		b.eachLocked(func(e *banEntry) {
			if e.stored && !e.pending && !seen[e.ban.Prefix] {
				gone = append(gone, e)
			}
		})
		for _, e := range gone {
			b.removeLocked(e)
			lifted = append(lifted, e.ban)
		}
	}
	b.mu.Unlock()
	b.report(dropped)
	return n, added, lifted
}

// MarkStored records that the ban on p, as it is now, has been written to
// the store: from then on Sync lifts it when the store no longer has it.
func (b *Bans) MarkStored(p netip.Prefix) {
	p, exact, k, ok := normPrefix(p)
	if !ok {
		return
	}
	b.mu.Lock()
	if e := b.lookupLocked(p, exact, k); e != nil {
		e.stored, e.pending = true, false
	}
	b.mu.Unlock()
}

// Sweep drops the bans expired at now, reports them to OnExpire, and
// returns how many it dropped.
func (b *Bans) Sweep(now time.Time) int {
	b.mu.Lock()
	expired := b.sweepLocked(now.UnixNano())
	b.mu.Unlock()
	b.report(expired)
	return len(expired)
}

func (b *Bans) sweepLocked(now int64) []Ban {
	b.lastSweep = now
	var gone []*banEntry
	b.eachLocked(func(e *banEntry) {
		if e.expired(now) {
			gone = append(gone, e)
		}
	})
	out := make([]Ban, 0, len(gone))
	for _, e := range gone {
		b.removeLocked(e)
		out = append(out, e.ban)
	}
	return out
}

// autoHeap orders automatic bans by creation, for eviction.
type autoHeap []*banEntry

func (h autoHeap) Len() int { return len(h) }
func (h autoHeap) Less(i, j int) bool {
	return h[i].ban.Created.Before(h[j].ban.Created)
}
func (h autoHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *autoHeap) Push(x any) {
	e := x.(*banEntry)
	e.hidx = len(*h)
	*h = append(*h, e)
}
func (h *autoHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.hidx = -1
	return e
}

// remove takes e out of the heap if it is there.
func (h *autoHeap) remove(e *banEntry) {
	if e.hidx >= 0 && e.hidx < len(*h) && (*h)[e.hidx] == e {
		heap.Remove(h, e.hidx)
	}
	e.hidx = -1
}
