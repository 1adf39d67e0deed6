package resolve

import (
	"sync"
	"time"
)

// Reason says why a target failed (RFC 3263 §4.3).
type Reason uint8

// The failures after which RFC 3263 §4.3 moves on to the next target.
const (
	// ReasonTransport is a transport error: connection refused, an ICMP
	// unreachable, a failed write or TLS handshake (RFC 3261 §8.1.3.1,
	// §18.4).
	ReasonTransport Reason = iota + 1
	// ReasonTimeout is a client transaction that timed out, Timer B or F
	// (RFC 3261 §17.1.1.2, §17.1.2.2).
	ReasonTimeout
	// ReasonUnavailable is a 503 Service Unavailable response (RFC 3263
	// §4.3, RFC 3261 §21.5.4).
	ReasonUnavailable
)

// String returns "transport error", "timeout" or "503".
func (r Reason) String() string {
	switch r {
	case ReasonTransport:
		return "transport error"
	case ReasonTimeout:
		return "timeout"
	case ReasonUnavailable:
		return "503"
	}
	return "failure"
}

// Targets is the ordered result of Resolve, to walk with Next until a
// target works (RFC 3263 §4.3): on a transport error, a timeout or a 503,
// the caller reports it with Fail (a new request with a new branch goes to
// the next target); the failed target is then avoided for
// Config.BlocklistFor by this and later Resolve results of the same
// Resolver. A blocked target is not dropped: it comes after every target
// not blocked, so that when all are blocked they are still tried, in
// their order. Targets is safe for concurrent use.
type Targets struct {
	r     *Resolver
	mu    sync.Mutex
	list  []Target
	tried []bool
}

func (r *Resolver) newTargets(list []Target) *Targets {
	return &Targets{r: r, list: list, tried: make([]bool, len(list))}
}

// Next returns the next target to try: the first one not yet returned that
// is not in the blocklist, or when only blocked ones are left, the first of
// those. ok is false when every target has been returned.
func (ts *Targets) Next() (t Target, ok bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := ts.r.now()
	fallback := -1
	for i := range ts.list {
		if ts.tried[i] {
			continue
		}
		if !ts.r.isBlocked(ts.list[i], now) {
			ts.tried[i] = true
			return ts.list[i], true
		}
		if fallback < 0 {
			fallback = i
		}
	}
	if fallback < 0 {
		return Target{}, false
	}
	ts.tried[fallback] = true
	return ts.list[fallback], true
}

// Fail reports that t did not work, for reason, and puts it in the
// blocklist for Config.BlocklistFor. Call Next for the next target.
func (ts *Targets) Fail(t Target, reason Reason) {
	ts.FailFor(t, reason, 0)
}

// FailFor is Fail with the time to avoid t given, such as the Retry-After
// of a 503 (RFC 3261 §21.5.4, §20.33); d <= 0 means Config.BlocklistFor.
func (ts *Targets) FailFor(t Target, reason Reason, d time.Duration) {
	ts.mu.Lock()
	for i := range ts.list {
		if ts.list[i].key() == t.key() {
			ts.tried[i] = true
		}
	}
	ts.mu.Unlock()
	r := ts.r
	r.targetFailures.Add(1)
	if d <= 0 {
		d = r.cfg.BlocklistFor
	}
	r.blocked.put(t.key(), reason, r.now().Add(d))
}

// Succeed reports that t worked, taking it off the blocklist: a target
// tried although blocked, because all others were, may have recovered.
func (ts *Targets) Succeed(t Target) {
	ts.r.blocked.remove(t.key())
}

// All returns the targets in the order Next would return them if none
// were returned yet: those not in the blocklist, then the blocked ones.
func (ts *Targets) All() []Target {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := ts.r.now()
	out := make([]Target, 0, len(ts.list))
	var blocked []Target
	for _, t := range ts.list {
		if ts.r.isBlocked(t, now) {
			blocked = append(blocked, t)
		} else {
			out = append(out, t)
		}
	}
	return append(out, blocked...)
}

// Len returns the number of targets.
func (ts *Targets) Len() int { return len(ts.list) }

// isBlocked reports whether t is in the blocklist and not expired.
func (r *Resolver) isBlocked(t Target, now time.Time) bool {
	_, ok := r.blocked.get(t.key(), now)
	return ok
}
