package proxy

import (
	"context"
	"errors"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/transport"
)

// dnsHops walks the targets of an RFC 3263 lookup as Hops. Targets of a
// transport the proxy cannot send on (WS, WSS) are skipped; a failure is
// passed on to the resolver's blocklist with the target it was found as.
type dnsHops struct {
	ts *resolve.Targets

	mu   sync.Mutex
	seen []resolve.Target // the targets Next returned as hops
	buf  [2]resolve.Target
}

func newDNSHops(ts *resolve.Targets) *dnsHops {
	d := &dnsHops{ts: ts}
	d.seen = d.buf[:0]
	return d
}

// remember records t as the target of h (the latest one, when two
// targets make the same hop).
func (d *dnsHops) remember(h Hop, t resolve.Target) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.seen {
		if s := &d.seen[i]; s.Transport == h.Proto && s.Addr == h.Addr && s.Host == h.Host {
			*s = t
			return
		}
	}
	d.seen = append(d.seen, t)
}

// target returns the target Next returned as h.
func (d *dnsHops) target(h Hop) (resolve.Target, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range d.seen {
		if t.Transport == h.Proto && t.Addr == h.Addr && t.Host == h.Host {
			return t, true
		}
	}
	return resolve.Target{}, false
}

// Next implements Hops.
func (d *dnsHops) Next() (Hop, bool) {
	for {
		t, ok := d.ts.Next()
		if !ok {
			return Hop{}, false
		}
		switch t.Transport {
		case transport.UDP, transport.TCP, transport.TLS:
		default:
			continue
		}
		h := Hop{Proto: t.Transport, Addr: t.Addr, Host: t.Host}
		d.remember(h, t)
		return h, true
	}
}

// Fail implements Hops: the target goes on the resolver's blocklist.
func (d *dnsHops) Fail(h Hop, why Failure) {
	t, ok := d.target(h)
	if !ok {
		return
	}
	d.ts.Fail(t, reasonOf(why))
}

func reasonOf(why Failure) resolve.Reason {
	switch why {
	case FailTimeout:
		return resolve.ReasonTimeout
	case FailUnavailable:
		return resolve.ReasonUnavailable
	}
	return resolve.ReasonTransport
}

// FailFor is Fail with the time to avoid the hop: a 503's Retry-After.
func (d *dnsHops) FailFor(h Hop, why Failure, dur time.Duration) {
	t, ok := d.target(h)
	if !ok {
		return
	}
	d.ts.FailFor(t, reasonOf(why), dur)
}

// Succeed takes a hop that answered off the blocklist: it may have been
// tried although blocked, because every other target was.
func (d *dnsHops) Succeed(h Hop) {
	t, ok := d.target(h)
	if ok {
		d.ts.Succeed(t)
	}
}

// succeeder is a Hops that wants to hear when a hop answered.
type succeeder interface{ Succeed(Hop) }

// ENUM is the ENUM routing step (RFC 6116) for the requests m matches: the
// Request-URI's E.164 number (a tel: URI, or a user part starting with
// "+") is looked up in the ENUM tree, and the request goes to the URIs
// found, one after the other in the order of the NAPTR records (the
// location service's contacts for a URI in one of the server's domains).
// When the number has no ENUM record, when it is not an E.164 number, or
// when the DNS cannot be asked, the request goes on to next: the next
// rule decides. Without Env.DNS every request goes on.
//
// A number whose records are in the resolver's cache is routed in place;
// otherwise the lookup, and the rest of the request's routing after it,
// run on the proxy's bounded lookup pool, so that a slow DNS server does
// not hold up the calls queued behind this one (on the caller's goroutine
// when the pool is full).
func (p *Proxy) ENUM(m Matcher) handler.Middleware {
	return func(next handler.Handler) handler.Handler {
		return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
			if p.env.DNS == nil || !m(req) {
				next.ServeSIP(ctx, tx, req)
				return
			}
			number, ok := resolve.E164(req.URI)
			if !ok {
				next.ServeSIP(ctx, tx, req)
				return
			}
			uris, err := p.env.DNS.ENUM(resolve.CacheOnly(ctx), number)
			if errors.Is(err, resolve.ErrNotCached) {
				p.onLookupPool(func() {
					defer p.recoverRequest(tx, req)
					lctx, cancel := context.WithTimeout(p.stop, resolveTimeout)
					uris, err := p.env.DNS.ENUM(lctx, number)
					cancel()
					p.routeENUM(ctx, tx, req, next, number, uris, err)
				})
				return
			}
			p.routeENUM(ctx, tx, req, next, number, uris, err)
		})
	}
}

// recoverRequest turns a panic while routing req off the worker (where the
// server's own recovery does not reach) into a logged bug and a 500.
func (p *Proxy) recoverRequest(tx handler.ServerTx, req *sip.Request) {
	if r := recover(); r != nil {
		p.log.Error("routing panic", "method", req.Method, "call_id", req.CallID, "panic", r, "stack", string(debug.Stack()))
		_ = tx.RespondStateless(p.newResponse(req, 500, ""))
	}
}

// routeENUM routes req by the result of its ENUM lookup.
func (p *Proxy) routeENUM(ctx context.Context, tx handler.ServerTx, req *sip.Request, next handler.Handler, number string, uris []sip.URI, err error) {
	if err != nil {
		if !errors.Is(err, resolve.ErrNoRecord) {
			p.log.Warn("enum lookup failed", "number", number, "err", err)
		}
		p.met.enum.WithLabelValues("miss").Inc()
		next.ServeSIP(ctx, tx, req)
		return
	}
	p.met.enum.WithLabelValues("hit").Inc()
	var pl plan
	pl.kind = "enum"
	for i := range uris {
		u := &uris[i]
		// Ours: one of our domains, or our own address with our
		// port (the host alone may be a phone on this machine).
		if u.IsSIP() && (p.domains[strings.ToLower(u.Hostname())] || p.isSelf(u)) {
			ts, err := p.rt.Load().locator.Lookup(ctx, *u)
			if err == nil && len(ts) > 0 {
				pl.groups = append(pl.groups, byQ(ts)...)
			}
			continue
		}
		pl.groups = append(pl.groups, []Target{{URI: *u, Q: 1}})
	}
	if len(pl.groups) == 0 {
		p.reply(tx, req, 480, "")
		return
	}
	if p.debugging() {
		p.log.Debug("enum", "number", number, "uri", uris[0].String())
	}
	p.dispatch(ctx, tx, req, pl)
}
