package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Errors returned by a Resolver. They are wrapped with the name concerned;
// test them with errors.Is.
var (
	// ErrNoRecord means the DNS answered, and had nothing usable: no
	// target for a SIP URI, no E2U+sip NAPTR for a number. A routing rule
	// can fall through on it; any other error is a failure to ask.
	ErrNoRecord = errors.New("no record")
	// ErrScheme is returned for a URI that is neither sip: nor sips:.
	ErrScheme = errors.New("not a sip or sips URI")
	// ErrTransport is returned for a URI whose transport parameter cannot
	// be used: one not configured, or udp for a sips URI (RFC 3261 §26.2.2:
	// sips only over TLS).
	ErrTransport = errors.New("transport not usable")
	// ErrNumber is returned by ENUM for a string that is not an E.164
	// number.
	ErrNumber = errors.New("not an E.164 number")
	// ErrUnavailable means no server gave an answer: every query timed
	// out, failed on the network or was answered SERVFAIL, REFUSED, ...
	// Unlike ErrNoRecord it says nothing about the name, so a proxy
	// answers 504 (RFC 3261 §21.5.5) rather than 404.
	ErrUnavailable = errors.New("DNS unavailable")
	// ErrNotCached is returned under CacheOnly when an answer the lookup
	// needs is not in the cache.
	ErrNotCached = errors.New("not in the cache")
)

// cacheOnlyKey marks a context of CacheOnly; missKey carries the flag one
// Resolve call's lookups set on a miss.
type (
	cacheOnlyKey struct{}
	missKey      struct{}
)

// CacheOnly returns a context under which Resolve and ENUM answer from the cache
// alone, without waiting on the network: when any answer it needs is
// missing or expired it fails with ErrNotCached (and asks no server), so
// a caller can resolve in place when it is cheap and hand the lookup to
// a goroutine only when it is not.
func CacheOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, cacheOnlyKey{}, true)
}

// cacheOnly gives a lookup under CacheOnly its miss flag, which lookup
// sets instead of asking a server; nil and ctx unchanged otherwise.
func cacheOnly(ctx context.Context) (context.Context, *atomic.Bool) {
	if ctx.Value(cacheOnlyKey{}) == nil {
		return ctx, nil
	}
	miss := new(atomic.Bool)
	return context.WithValue(ctx, missKey{}, miss), miss
}

// RcodeError is a DNS answer with an error code other than NXDOMAIN, such
// as SERVFAIL or REFUSED, from every server asked.
type RcodeError struct {
	Rcode int // dns.RcodeServerFailure, dns.RcodeRefused, ...
}

// Error names the response code, "SERVFAIL".
func (e *RcodeError) Error() string {
	return "server answered " + dns.RcodeToString[e.Rcode]
}

// Resolver locates SIP servers (RFC 3263) and maps numbers through ENUM
// (RFC 6116) with a stub resolver of its own: the configured servers, a
// TTL-honouring cache and a blocklist of failed targets. It is safe for
// concurrent use.
type Resolver struct {
	cfg        Config
	transports map[string]bool
	udp, tcp   *dns.Client
	cache      *lru[cacheKey, *answer]
	blocked    *lru[targetKey, Reason]
	hosts      *hosts
	servers    []*nameserver

	randMu sync.Mutex

	mu       sync.Mutex
	inflight map[cacheKey]*call

	hits, misses, queries, failures, tcpFallbacks, targetFailures atomic.Uint64
}

// Stats are a Resolver's counters since New, for metrics.
type Stats struct {
	CacheHits      uint64 // lookups answered from the cache, negative answers included
	CacheMisses    uint64 // lookups that had to ask a server
	CacheEntries   int    // answers in the cache now
	Queries        uint64 // queries sent, each attempt and TCP retry counted
	Failures       uint64 // queries that got no usable answer: timeout, network error, SERVFAIL, ...
	TCPFallbacks   uint64 // truncated UDP answers asked again over TCP (RFC 1035 §4.2.1)
	TargetFailures uint64 // Targets.Fail calls
	Blocked        int    // targets in the blocklist now, expired ones not yet swept included
	DeadServers    int    // servers deemed dead now (RFC 2308 §7.2), passed by
}

type cacheKey struct {
	name  string // lower case, fully qualified
	qtype uint16
}

// answer is what a lookup found: the records of the asked type, or none
// (a negative answer, RFC 2308).
type answer struct {
	rrs []dns.RR
}

// call is a query in flight that later lookups of the same name and type
// wait for instead of asking again.
type call struct {
	done chan struct{}
	ans  *answer
	err  error
}

// New returns a Resolver for cfg, reading the system's servers from
// cfg.ResolvConf when cfg.Servers is empty.
func New(cfg Config) (*Resolver, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Resolver{
		cfg:        cfg,
		transports: make(map[string]bool),
		udp:        &dns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: ednsSize},
		tcp:        &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		cache:      newLRU[cacheKey, *answer](cfg.CacheSize),
		blocked:    newLRU[targetKey, Reason](cfg.BlocklistSize),
		inflight:   make(map[cacheKey]*call),
		hosts:      newHosts(cfg.HostsFile),
	}
	for _, t := range cfg.Transports {
		r.transports[normalizeTransport(t)] = true
	}
	for _, s := range cfg.Servers {
		r.servers = append(r.servers, &nameserver{addr: s})
	}
	return r, nil
}

// ednsSize is the UDP payload size offered with EDNS(0): the 2020 DNS flag
// day value, which avoids IP fragmentation.
const ednsSize = 1232

// Config returns the configuration in force, defaults applied.
func (r *Resolver) Config() Config {
	c := r.cfg
	c.Servers = append([]string(nil), c.Servers...)
	c.ENUMSuffixes = append([]string(nil), c.ENUMSuffixes...)
	c.Transports = append([]string(nil), c.Transports...)
	return c
}

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	return Stats{
		CacheHits:      r.hits.Load(),
		CacheMisses:    r.misses.Load(),
		CacheEntries:   r.cache.len(),
		Queries:        r.queries.Load(),
		Failures:       r.failures.Load(),
		TCPFallbacks:   r.tcpFallbacks.Load(),
		TargetFailures: r.targetFailures.Load(),
		Blocked:        r.blocked.len(),
		DeadServers:    r.deadServers(),
	}
}

func (r *Resolver) deadServers() int {
	n, now := 0, r.now()
	for _, ns := range r.servers {
		if ns.dead(now) {
			n++
		}
	}
	return n
}

func (r *Resolver) now() time.Time { return r.cfg.Clock.Now() }

func (r *Resolver) intN(n int) int {
	r.randMu.Lock()
	defer r.randMu.Unlock()
	v := r.cfg.Rand.IntN(n)
	if v < 0 || v >= n {
		v = 0
	}
	return v
}

// lookup returns the records of type qtype at name, from the cache or the
// servers. A negative answer is an empty slice and a nil error; an error
// means no server gave an answer. Lookups of the same name and type in
// flight at once share one query. The records are shared: do not modify
// them.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	key := cacheKey{strings.ToLower(dns.Fqdn(name)), qtype}
	if _, ok := dns.IsDomainName(key.name); !ok {
		return nil, fmt.Errorf("%q: not a domain name", name)
	}
	if isLocalhost(key.name) {
		return localhost(key.name, qtype), nil
	}
	if isInvalid(key.name) {
		return nil, nil
	}
	if rrs, ok := r.hosts.lookup(key.name, qtype, r.now()); ok {
		return rrs, nil
	}
	for {
		if a, ok := r.cache.get(key, r.now()); ok {
			r.hits.Add(1)
			return a.rrs, nil
		}
		if miss, ok := ctx.Value(missKey{}).(*atomic.Bool); ok {
			miss.Store(true)
			return nil, ErrNotCached
		}
		r.mu.Lock()
		c, waiting := r.inflight[key]
		if !waiting {
			c = &call{done: make(chan struct{})}
			r.inflight[key] = c
		}
		r.mu.Unlock()
		if !waiting {
			r.misses.Add(1)
			c.ans, c.err = r.query(ctx, key.name, qtype)
			r.mu.Lock()
			delete(r.inflight, key)
			r.mu.Unlock()
			close(c.done)
			if c.err != nil {
				return nil, c.err
			}
			return c.ans.rrs, nil
		}
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.err == nil {
			r.hits.Add(1)
			return c.ans.rrs, nil
		}
		// The query we waited for was cut short by its own caller's
		// context; ours is still alive, so ask again.
		if errors.Is(c.err, context.Canceled) || errors.Is(c.err, context.DeadlineExceeded) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		return nil, c.err
	}
}

// query asks the servers in turn, Attempts rounds, until one answers with
// NOERROR or NXDOMAIN, and caches the answer for its TTL (RFC 1035 §7.4,
// RFC 2308 §5 for negative answers). Servers deemed dead are passed by
// (RFC 2308 §7.2); when all are, the query fails at once.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*answer, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(ednsSize, false)
	var lastErr error
	for range r.cfg.Attempts {
		for _, ns := range r.servers {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			ok, probe := ns.admit(r.now())
			if !ok {
				if lastErr == nil {
					lastErr = fmt.Errorf("server %s deemed dead (RFC 2308 §7.2)", ns.addr)
				}
				continue
			}
			resp, err := r.exchange(ctx, m, ns.addr)
			if err != nil && ctx.Err() != nil {
				ns.abandoned(probe)
				return nil, ctx.Err()
			}
			if err != nil {
				r.failures.Add(1)
				if _, udpAnswered := err.(*tcpRetryError); udpAnswered {
					ns.answered()
				} else {
					ns.failed(r.now(), r.cfg.DeadServerFor, probe)
				}
				lastErr = err
				continue
			}
			ns.answered()
			if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
				r.failures.Add(1)
				lastErr = &RcodeError{Rcode: resp.Rcode}
				continue
			}
			a, ttl := parseAnswer(resp, qtype)
			if ttl > 0 {
				r.cache.put(cacheKey{name, qtype}, a, r.now().Add(ttl))
			}
			return a, nil
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no server configured")
	}
	return nil, fmt.Errorf("%s %s: %w: %w", dns.TypeToString[qtype], name, ErrUnavailable, lastErr)
}

// exchange sends m to server over UDP and, when the answer comes back
// truncated, again over TCP (RFC 1035 §4.2.1, RFC 7766 §6.2.1).
func (r *Resolver) exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	m.Id = dns.Id()
	r.queries.Add(1)
	actx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	resp, _, err := r.udp.ExchangeContext(actx, m, server)
	cancel()
	if err != nil {
		return nil, err
	}
	if !resp.Truncated {
		return resp, nil
	}
	r.tcpFallbacks.Add(1)
	r.queries.Add(1)
	m.Id = dns.Id()
	actx, cancel = context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	resp, _, err = r.tcp.ExchangeContext(actx, m, server)
	if err != nil {
		return nil, &tcpRetryError{err}
	}
	return resp, nil
}

// tcpRetryError is the failure of the TCP retry of a truncated answer:
// the server did answer (over UDP), so it is not dead (RFC 2308 §7.2 is
// about servers that do not respond), only its TCP is out of reach.
type tcpRetryError struct{ err error }

func (e *tcpRetryError) Error() string { return "TCP retry of a truncated answer: " + e.err.Error() }
func (e *tcpRetryError) Unwrap() error { return e.err }

// parseAnswer picks the records of type qtype out of a NOERROR or NXDOMAIN
// response and says how long the result may be cached: the smallest TTL of
// the answer (CNAMEs followed included), or for a negative answer the
// smaller of the SOA's TTL and its MINIMUM field (RFC 2308 §5). A negative
// answer without a SOA is not cached (RFC 2308 §5).
func parseAnswer(resp *dns.Msg, qtype uint16) (*answer, time.Duration) {
	a := &answer{}
	var ttl uint32
	first := true
	if resp.Rcode == dns.RcodeSuccess {
		for _, rr := range resp.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET {
				continue
			}
			switch h.Rrtype {
			case qtype:
				a.rrs = append(a.rrs, rr)
			case dns.TypeCNAME:
			default:
				continue
			}
			if first || h.Ttl < ttl {
				ttl, first = h.Ttl, false
			}
		}
	}
	if len(a.rrs) > 0 {
		return a, min(time.Duration(ttl)*time.Second, maxPositiveTTL)
	}
	a.rrs = nil
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return a, min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, maxNegativeTTL)
		}
	}
	return a, 0
}

// isLocalhost reports whether name is "localhost." or under it.
func isLocalhost(name string) bool {
	return name == "localhost." || strings.HasSuffix(name, ".localhost.")
}

// localhost answers for the localhost names without asking a server, as
// RFC 6761 §6.3 asks of resolver libraries: the loopback address for A and
// AAAA, a negative answer for every other type.
func localhost(name string, qtype uint16) []dns.RR {
	h := dns.RR_Header{Name: name, Rrtype: qtype, Class: dns.ClassINET}
	switch qtype {
	case dns.TypeA:
		return []dns.RR{&dns.A{Hdr: h, A: net.IPv4(127, 0, 0, 1).To4()}}
	case dns.TypeAAAA:
		return []dns.RR{&dns.AAAA{Hdr: h, AAAA: net.IPv6loopback}}
	}
	return nil
}
