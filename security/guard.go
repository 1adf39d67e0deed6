package security

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

const (
	guardShardBits = 6
	guardShards    = 1 << guardShardBits
	// guardSweepEvery is how often a shard drops its idle sources, on the
	// path of a call that finds it due.
	guardSweepEvery = int64(10 * time.Second)
	// guardFullSweepEvery spaces the sweeps of every shard made when the
	// table is full.
	guardFullSweepEvery = int64(time.Second)
	protoOther          = uint8(len(transports))
)

// counter is an atomic counter on a cache line of its own: the readers of
// every transport bump the drop counters during a flood.
type counter struct {
	atomic.Uint64
	_ [56]byte
}

// protoIndex maps a transport name to its limits; an unknown one gets the
// general limits.
func protoIndex(proto string) uint8 {
	switch proto {
	case "udp", "UDP":
		return 0
	case "tcp", "TCP":
		return 1
	case "tls", "TLS":
		return 2
	case "ws", "WS":
		return 3
	case "wss", "WSS":
		return 4
	}
	return protoOther
}

// limit is a Limit ready for the hot path.
type limit struct {
	Limit
	perNano float64
	burst   float64
}

func makeLimit(l Limit) limit {
	return limit{Limit: l, perNano: l.Rate / 1e9, burst: float64(l.Burst)}
}

// bucket is a token bucket, and a count of the calls of this second and
// the last, which is what a ban's reason reports.
type bucket struct {
	tokens    float64
	last      int64 // Unix nanoseconds of the last refill
	win       int64 // start of the current one-second window
	cur, prev uint32
}

func (b *bucket) init(now int64, l *limit) {
	*b = bucket{tokens: l.burst, last: now, win: now}
}

// take spends a token if there is one.
func (b *bucket) take(now int64, l *limit) bool {
	if el := now - b.last; el > 0 {
		b.tokens = min(b.tokens+float64(el)*l.perNano, l.burst)
		b.last = now
	}
	if d := now - b.win; d >= 1e9 {
		if d >= 2e9 {
			b.prev = 0
		} else {
			b.prev = b.cur
		}
		b.cur = 0
		b.win = now - d%1e9
	}
	b.cur++
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// rate estimates the calls of the last second: this window's and the
// part of the previous one still inside the last second.
func (b *bucket) rate(now int64) float64 {
	frac := min(max(float64(now-b.win)/1e9, 0), 1)
	return float64(b.prev)*(1-frac) + float64(b.cur)
}

// full says whether the bucket has refilled: its source is forgotten then.
func (b *bucket) full(now int64, l *limit) bool {
	return b.tokens+float64(max(now-b.last, 0))*l.perNano >= l.burst
}

// srcKey is a source (Key form) on one transport.
type srcKey struct {
	k     [16]byte
	proto uint8
}

type source struct {
	pkt, req bucket
	// banning: the source went over a limit and its ban is being placed;
	// drop what comes meanwhile and do not ban twice.
	banning bool
}

type guardShard struct {
	mu        sync.Mutex
	m         map[srcKey]*source
	lastSweep int64
	_         [40]byte
}

// Guard is the flood guard: a token bucket per source and transport for
// packets and one for requests. Its methods are safe for concurrent use.
type Guard struct {
	enabled bool
	limits  [protoOther + 1]struct{ pkt, req limit }
	banTime int64
	max     int64
	bans    *Bans
	trusted func(netip.Addr) bool
	clock   func() int64 // Unix nanoseconds

	tracked       atomic.Int64
	lastFullSweep atomic.Int64
	shards        [guardShards]guardShard

	droppedBanned, droppedFlood, untracked, bansPackets, bansRequests counter
}

// GuardStats are the counters of a Guard.
type GuardStats struct {
	// DroppedBanned counts packets and requests dropped because their
	// source was banned.
	DroppedBanned uint64
	// DroppedFlood counts those dropped because their source went over a
	// limit (the one that did, and any that came while it was banned).
	DroppedFlood uint64
	// Untracked counts packets let through untracked because MaxSources
	// were tracked.
	Untracked uint64
	// Sources is the number of sources tracked now.
	Sources int
	// BansPackets and BansRequests count the bans placed for going over
	// the packet and the request limit.
	BansPackets, BansRequests uint64
}

// NewGuard checks cfg and returns a Guard that bans into bans. trusted
// (may be nil) says which sources are never limited; now is the clock
// (nil: time.Now).
func NewGuard(cfg FloodConfig, bans *Bans, trusted func(netip.Addr) bool, now func() time.Time) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bans == nil {
		return nil, errors.New("security: NewGuard needs a Bans")
	}
	cfg = cfg.WithDefaults()
	g := &Guard{
		enabled: on(cfg.Enabled),
		banTime: int64(cfg.BanTime),
		max:     int64(cfg.MaxSources),
		bans:    bans,
		trusted: trusted,
		clock:   unixClock(now),
	}
	for i := range g.limits {
		fl := FloodLimits{cfg.Packets, cfg.Requests}
		if i < len(transports) {
			if o, ok := cfg.PerTransport[transports[i]]; ok {
				fl = o
			}
		}
		g.limits[i].pkt, g.limits[i].req = makeLimit(fl.Packets), makeLimit(fl.Requests)
	}
	t := g.clock()
	for i := range g.shards {
		g.shards[i].m = map[srcKey]*source{}
		g.shards[i].lastSweep = t
	}
	g.lastFullSweep.Store(t)
	return g, nil
}

// AllowPacket says whether a datagram or stream message from ip, which
// came over proto (udp, tcp, tls, ws, wss), is to be read: false when the
// source is banned or has just gone over its packet limit (it is banned
// then). Trusted sources always pass and are not tracked.
func (g *Guard) AllowPacket(proto string, ip netip.Addr) bool {
	return g.allow(proto, ip, 0, false)
}

// AllowPacketAt is AllowPacket with the time given, so a reader that takes
// a batch of datagrams reads the clock once for all of them.
func (g *Guard) AllowPacketAt(proto string, ip netip.Addr, now time.Time) bool {
	return g.allow(proto, ip, now.UnixNano(), false)
}

// AllowRequest is AllowPacket for a SIP request, counted against the
// request limit: any request, as the caller asks before matching it to a
// transaction.
func (g *Guard) AllowRequest(proto string, ip netip.Addr) bool {
	return g.allow(proto, ip, 0, true)
}

// AllowRequestAt is AllowRequest with the time given.
func (g *Guard) AllowRequestAt(proto string, ip netip.Addr, now time.Time) bool {
	return g.allow(proto, ip, now.UnixNano(), true)
}

// allow is AllowPacket and AllowRequest; now is 0 when the clock is to be
// read (after the trusted test, which needs none).
func (g *Guard) allow(proto string, ip netip.Addr, now int64, req bool) bool {
	if !ip.IsValid() || g.trusted != nil && g.trusted(ip) {
		return true
	}
	if now == 0 {
		now = g.clock()
	}
	k := key16(ip)
	if g.bans.n.Load() != 0 && g.bans.banned(k, ip, now) {
		g.droppedBanned.Add(1)
		return false
	}
	if !g.enabled {
		return true
	}
	pi := protoIndex(proto)
	lim := &g.limits[pi].pkt
	if req {
		lim = &g.limits[pi].req
	}
	sk := srcKey{k, pi}
	sh := &g.shards[hash16(k, pi)>>(64-guardShardBits)]
	sh.mu.Lock()
	s := sh.m[sk]
	if s == nil {
		if g.tracked.Add(1) > g.max {
			g.tracked.Add(-1)
			sh.mu.Unlock()
			g.untracked.Add(1)
			g.fullSweep(now)
			return true
		}
		s = &source{}
		s.pkt.init(now, &g.limits[pi].pkt)
		s.req.init(now, &g.limits[pi].req)
		sh.m[sk] = s
	}
	if s.banning {
		sh.mu.Unlock()
		g.droppedFlood.Add(1)
		return false
	}
	b := &s.pkt
	if req {
		b = &s.req
	}
	if b.take(now, lim) {
		if now-sh.lastSweep >= guardSweepEvery {
			g.sweepShardLocked(sh, now)
		}
		sh.mu.Unlock()
		return true
	}
	s.banning = true
	rate := b.rate(now)
	sh.mu.Unlock()
	g.droppedFlood.Add(1)

	what := "packets"
	if req {
		what = "requests"
		g.bansRequests.Add(1)
	} else {
		g.bansPackets.Add(1)
	}
	name := proto
	if pi < protoOther {
		name = transports[pi]
	}
	g.bans.Add(Ban{
		Prefix:  keyPrefix(k),
		Reason:  fmt.Sprintf("flood: %.0f %s/s over %s (limit %g/s, burst %d)", rate, what, name, lim.Rate, lim.Burst),
		Created: time.Unix(0, now),
		Expires: time.Unix(0, now+g.banTime),
	})
	// The ban now drops the source before its bucket; when it lapses (or
	// an operator lifts it) the source starts afresh.
	sh.mu.Lock()
	if sh.m[sk] == s {
		delete(sh.m, sk)
		g.tracked.Add(-1)
	}
	sh.mu.Unlock()
	return false
}

// sweepShardLocked forgets the sources of sh whose buckets are full again.
func (g *Guard) sweepShardLocked(sh *guardShard, now int64) int {
	sh.lastSweep = now
	n := 0
	for sk, s := range sh.m {
		l := &g.limits[sk.proto]
		if !s.banning && s.pkt.full(now, &l.pkt) && s.req.full(now, &l.req) {
			delete(sh.m, sk)
			n++
		}
	}
	g.tracked.Add(int64(-n))
	return n
}

// fullSweep sweeps every shard, at most once per guardFullSweepEvery: the
// table is full, perhaps of sources that have gone quiet.
func (g *Guard) fullSweep(now int64) {
	last := g.lastFullSweep.Load()
	if now-last < guardFullSweepEvery || !g.lastFullSweep.CompareAndSwap(last, now) {
		return
	}
	g.Sweep(time.Unix(0, now))
}

// Sweep forgets the sources whose buckets are full again and returns how
// many. The guard sweeps on its own as it is used; a server may also call
// Sweep from a ticker.
func (g *Guard) Sweep(now time.Time) int {
	t := now.UnixNano()
	n := 0
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		n += g.sweepShardLocked(sh, t)
		sh.mu.Unlock()
	}
	return n
}

// Stats returns the guard's counters.
func (g *Guard) Stats() GuardStats {
	return GuardStats{
		DroppedBanned: g.droppedBanned.Load(),
		DroppedFlood:  g.droppedFlood.Load(),
		Untracked:     g.untracked.Load(),
		Sources:       int(g.tracked.Load()),
		BansPackets:   g.bansPackets.Load(),
		BansRequests:  g.bansRequests.Load(),
	}
}
