package resolve

import (
	"sync"
	"time"
)

// deadAfter is how many exchanges in a row a server may fail (timeout or
// network error) before it is deemed dead: one lost datagram must not take
// the DNS away for DeadServerFor.
const deadAfter = 3

// maxDeadServerFor is RFC 2308 §7.2's bound: a server "MUST NOT be deemed
// dead for longer than five minutes".
const maxDeadServerFor = 5 * time.Minute

// nameserver is one configured DNS server and what the resolver remembers
// of its health (RFC 2308 §7.2). A dead server is not asked until its time
// is up; then one query at a time probes it, the others still pass it by,
// so a DNS outage costs one timeout per period instead of one per lookup.
type nameserver struct {
	addr string

	mu        sync.Mutex
	fails     int       // exchanges failed in a row
	deadUntil time.Time // zero: alive
	probing   bool      // a query is asking it while it is dead
}

// admit reports whether a query may ask the server now, and whether that
// query is the probe of a dead one.
func (s *nameserver) admit(now time.Time) (ok, probe bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.deadUntil.IsZero():
		return true, false
	case now.Before(s.deadUntil) || s.probing:
		return false, false
	}
	s.probing = true
	return true, true
}

// answered records an answer: the server is alive.
func (s *nameserver) answered() {
	s.mu.Lock()
	s.fails, s.deadUntil, s.probing = 0, time.Time{}, false
	s.mu.Unlock()
}

// failed records a timeout or network error of a query, the probe or
// not; deadFor <= 0 never deems the server dead.
func (s *nameserver) failed(now time.Time, deadFor time.Duration, probe bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails++
	if probe {
		s.probing = false
	}
	if deadFor > 0 && s.fails >= deadAfter {
		s.deadUntil = now.Add(deadFor)
	}
}

// abandoned records a query given up by its caller before the server
// answered: it says nothing about the server, but a probe must let the
// next query probe.
func (s *nameserver) abandoned(probe bool) {
	if !probe {
		return
	}
	s.mu.Lock()
	s.probing = false
	s.mu.Unlock()
}

// dead reports whether the server is deemed dead at now.
func (s *nameserver) dead(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.deadUntil.IsZero() && now.Before(s.deadUntil)
}
