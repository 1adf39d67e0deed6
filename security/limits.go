package security

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// limSweepEvery is how often Call drops the counts with nothing left
	// in their windows.
	limSweepEvery = int64(time.Minute)
	// maxNumberLen is how much of a dialled number is looked at: enough
	// for any E.164 number and then some.
	maxNumberLen = 32
	// maxCostlyRules keeps the rules a call matches in one word.
	maxCostlyRules = 64
)

// limKey is who calls: a user, or for unauthenticated calls a source.
type limKey struct {
	user string
	src  [16]byte
}

// callState counts the recent calls of one user or source.
type callState struct {
	perMin ring
	costly []ring // by rule
	last   int64
}

// LimiterStats count the calls a Limiter refused, by limit.
type LimiterStats struct {
	Concurrent, Rate, SourceRate, Costly uint64
}

// Limiter applies the call limits against toll fraud. Its methods are
// safe for concurrent use.
type Limiter struct {
	set atomic.Pointer[limitSet] // replaced by SetConfig
	now func() time.Time

	mu            sync.Mutex
	m             map[limKey]*callState
	lastSweep     int64
	lastFullSweep int64

	concurrent, rate, sourceRate, costly counter
}

// costlyRule is a CostlyRule with its prefixes normalised.
type costlyRule struct {
	Prefixes []string
	PerHour  int
}

// limitSet is a LimitsConfig ready for Call.
type limitSet struct {
	cfg   LimitsConfig
	rules []costlyRule
	keep  int64 // the longest window
}

func newLimitSet(cfg LimitsConfig) (*limitSet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	ls := &limitSet{cfg: cfg, keep: int64(time.Minute)}
	for _, r := range cfg.Costly {
		lr := costlyRule{PerHour: r.PerHour}
		for _, p := range r.Prefixes {
			n, _ := normNumber(p)
			lr.Prefixes = append(lr.Prefixes, n)
		}
		ls.rules = append(ls.rules, lr)
		ls.keep = int64(time.Hour)
	}
	return ls, nil
}

// NewLimiter checks cfg and returns a Limiter; now is the clock (nil:
// time.Now).
func NewLimiter(cfg LimitsConfig, now func() time.Time) (*Limiter, error) {
	ls, err := newLimitSet(cfg)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	l := &Limiter{now: now, m: map[limKey]*callState{}}
	l.set.Store(ls)
	t := now().UnixNano()
	l.lastSweep, l.lastFullSweep = t, t
	return l, nil
}

// SetConfig replaces the limits without a restart (a configuration
// reload); on an error nothing changes. The calls counted so far keep
// counting against the per-minute limits; the counts of costly
// destinations start afresh, since their rules may have changed.
func (l *Limiter) SetConfig(cfg LimitsConfig) error {
	ls, err := newLimitSet(cfg)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.set.Store(ls)
	for _, st := range l.m {
		st.costly = nil
	}
	return nil
}

// Config returns the limits in force.
func (l *Limiter) Config() LimitsConfig { return l.set.Load().cfg }

// Off reports whether no limit is set, so that Call would let every call
// through.
func (l *Limiter) Off() bool {
	c := l.set.Load().cfg
	return c.ConcurrentCalls == 0 && c.CallsPerMinute == 0 && c.SourceCallsPerMinute == 0 && len(c.Costly) == 0
}

// Call decides on a new call from user (empty when not authenticated) at
// src to dialled (the Request-URI user part), given the calls user has up
// now. It returns 0 to let the call through, and counts it then; else the
// status code, 486 for too many calls at once and 403 for a rate or a
// costly destination, and a text for a Warning header (RFC 3261 §20.43,
// code 399).
func (l *Limiter) Call(user string, src netip.Addr, dialled string, active int) (code int, warning string) {
	ls := l.set.Load()
	c := ls.cfg
	if c.ConcurrentCalls > 0 && user != "" && active >= c.ConcurrentCalls {
		l.concurrent.Add(1)
		return 486, fmt.Sprintf("too many calls at once (limit %d)", c.ConcurrentCalls)
	}
	var matched uint64
	if len(ls.rules) > 0 {
		var buf [maxNumberLen]byte
		if num, ok := normInto(buf[:0], dialled); ok && len(num) > 0 {
			for i, r := range ls.rules {
				for _, p := range r.Prefixes {
					if len(num) >= len(p) && string(num[:len(p)]) == p {
						matched |= 1 << i
						if r.PerHour == 0 {
							l.costly.Add(1)
							return 403, fmt.Sprintf("calls to %s are barred", p)
						}
						break
					}
				}
			}
		}
	}
	perMin := c.CallsPerMinute
	what := &l.rate
	var k limKey
	if user != "" {
		k.user = user
	} else {
		perMin, what = c.SourceCallsPerMinute, &l.sourceRate
		k.src = key16(src)
	}
	if perMin == 0 && matched == 0 {
		return 0, ""
	}
	now := l.now().UnixNano()
	minute := int64(time.Minute)
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stateLocked(ls, k, now)
	if perMin > 0 && st.perMin.full(now, perMin, minute) {
		what.Add(1)
		if user != "" {
			return 403, fmt.Sprintf("call rate limit (%d a minute)", perMin)
		}
		return 403, fmt.Sprintf("call rate limit for this address (%d a minute)", perMin)
	}
	if matched != 0 && len(st.costly) != len(ls.rules) {
		// New, or counted under the rules before a SetConfig.
		st.costly = make([]ring, len(ls.rules))
	}
	for i, r := range ls.rules {
		if matched&(1<<i) != 0 && st.costly[i].full(now, r.PerHour, int64(time.Hour)) {
			l.costly.Add(1)
			return 403, fmt.Sprintf("calls to %s limited (%d an hour)", strings.Join(r.Prefixes, ", "), r.PerHour)
		}
	}
	st.last = now
	if perMin > 0 {
		st.perMin.push(now, perMin)
	}
	for i, r := range ls.rules {
		if matched&(1<<i) != 0 {
			st.costly[i].push(now, r.PerHour)
		}
	}
	return 0, ""
}

// stateLocked returns the counts of k, made if need be, keeping the table
// within MaxTracked.
func (l *Limiter) stateLocked(ls *limitSet, k limKey, now int64) *callState {
	if now-l.lastSweep >= limSweepEvery {
		l.sweepLocked(ls, now)
	}
	if st := l.m[k]; st != nil {
		return st
	}
	if len(l.m) >= ls.cfg.MaxTracked {
		if now-l.lastFullSweep >= int64(time.Second) {
			l.sweepLocked(ls, now)
		}
		for victim := range l.m {
			if len(l.m) < ls.cfg.MaxTracked {
				break
			}
			delete(l.m, victim)
		}
	}
	st := &callState{last: now}
	k.user = strings.Clone(k.user)
	l.m[k] = st
	return st
}

func (l *Limiter) sweepLocked(ls *limitSet, now int64) {
	l.lastSweep, l.lastFullSweep = now, now
	for k, st := range l.m {
		if now-st.last > ls.keep {
			delete(l.m, k)
		}
	}
}

// Stats returns the counts of refused calls.
func (l *Limiter) Stats() LimiterStats {
	return LimiterStats{l.concurrent.Load(), l.rate.Load(), l.sourceRate.Load(), l.costly.Load()}
}

// normNumber is normInto for a prefix in the configuration.
func normNumber(s string) (string, bool) {
	var buf [maxNumberLen]byte
	b, ok := normInto(buf[:0], s)
	if !ok || len(b) == 0 || len(b) == 1 && b[0] == '+' || len(s) > maxNumberLen {
		return "", false
	}
	return string(b), true
}

// normInto appends the number dialled in s to dst: a leading '+' (or its
// escape %2B) and the digits, without the visual separators of RFC 3966
// (-.() and spaces), up to a ';' (URI parameters), at most maxNumberLen
// bytes. Anything else (letters, * and #) makes it no number: false.
func normInto(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s) && len(dst) < maxNumberLen; i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			dst = append(dst, c)
		case c == '+' && len(dst) == 0:
			dst = append(dst, c)
		case c == '%' && len(dst) == 0 && i+2 < len(s) && s[i+1] == '2' && (s[i+2] == 'B' || s[i+2] == 'b'):
			dst = append(dst, '+')
			i += 2
		case c == '-' || c == '.' || c == '(' || c == ')' || c == ' ':
		case c == ';':
			return dst, true
		default:
			return dst, false
		}
	}
	return dst, true
}
