package stund

import (
	"net/netip"
	"sync"
	"time"
)

// limiter is a token bucket per source with a bounded table. A source
// whose bucket has refilled completely is indistinguishable from a new
// one, so sweeps forget such sources; when the table is full of active
// ones, new sources share the overflow bucket until a sweep makes room.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	max   int
	// full is how long an empty bucket takes to refill: a source idle
	// that long can be forgotten, and sweeps run at most that often.
	full time.Duration

	mu        sync.Mutex
	buckets   map[netip.Addr]bucket
	overflow  bucket
	lastSweep time.Duration
}

// bucket is one source's tokens as of last.
type bucket struct {
	tokens float64
	last   time.Duration
}

func newLimiter(rate float64, burst, maxSources int) *limiter {
	return &limiter{
		rate:      rate,
		burst:     float64(burst),
		max:       maxSources,
		full:      time.Duration(float64(burst) / rate * float64(time.Second)),
		buckets:   make(map[netip.Addr]bucket),
		overflow:  bucket{tokens: float64(burst)},
		lastSweep: -1 << 62,
	}
}

// allow takes a token from src's bucket at time now, and reports whether
// there was one.
func (l *limiter) allow(src netip.Addr, now time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[src]
	if !ok {
		if len(l.buckets) >= l.max {
			l.sweep(now)
		}
		if len(l.buckets) >= l.max {
			return l.overflow.take(l, now)
		}
		b = bucket{tokens: l.burst, last: now}
	}
	allowed := b.take(l, now)
	l.buckets[src] = b
	return allowed
}

// take refills b for the time since its last use and takes a token.
func (b *bucket) take(l *limiter, now time.Duration) bool {
	if now > b.last {
		b.tokens = min(l.burst, b.tokens+(now-b.last).Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets the sources whose buckets have refilled, at most once per
// refill time so that a full table of active sources does not cost a scan
// per datagram.
func (l *limiter) sweep(now time.Duration) {
	if now-l.lastSweep < l.full {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.tokens+(now-b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// sources returns the number of sources remembered.
func (l *limiter) sources() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
