package proxy

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/sip"
)

// Matcher selects the requests a routing rule applies to.
type Matcher func(req *sip.Request) bool

// Domain matches a Request-URI whose host is one of names (any case);
// "*" matches any host.
func Domain(names ...string) Matcher {
	set := map[string]bool{}
	for _, n := range names {
		set[strings.ToLower(n)] = true
	}
	return func(req *sip.Request) bool {
		return set["*"] || set[strings.ToLower(req.URI.Hostname())]
	}
}

// Prefix matches a Request-URI whose user part (a number, for tel: URIs
// the number) starts with one of prefixes.
func Prefix(prefixes ...string) Matcher {
	return func(req *sip.Request) bool {
		user := sip.Unescape(req.URI.User)
		for _, p := range prefixes {
			if strings.HasPrefix(user, p) {
				return true
			}
		}
		return false
	}
}

// All matches when every matcher does.
func All(ms ...Matcher) Matcher {
	return func(req *sip.Request) bool {
		for _, m := range ms {
			if !m(req) {
				return false
			}
		}
		return true
	}
}

// When is a routing rule as middleware: requests m matches go to h, the
// others on to the next handler.
func When(m Matcher, h handler.Handler) handler.Middleware {
	return func(next handler.Handler) handler.Handler {
		return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
			if m(req) {
				h.ServeSIP(ctx, tx, req)
				return
			}
			next.ServeSIP(ctx, tx, req)
		})
	}
}

// matcher is the rule's match as a Matcher.
func (r Rule) matcher() Matcher {
	var ms []Matcher
	if r.Domain != "" && r.Domain != "*" {
		ms = append(ms, Domain(r.Domain))
	}
	if r.Prefix != "" {
		ms = append(ms, Prefix(r.Prefix))
	}
	return All(ms...)
}

// action is rule i's action as a Handler.
func (p *Proxy) action(c *compiled, i int, r Rule) handler.Handler {
	switch r.Action {
	case ActionLocal:
		return p.Local()
	case ActionForward:
		return p.Forward(c.gateways[r.Gateways], ForwardOptions{Strip: r.Strip, Timeout: r.Timeout})
	case ActionResolve:
		return p.resolve(r.Timeout)
	case ActionRedirect:
		return p.Redirect(r.Code, r.Reason, c.redirects[i]...)
	}
	return p.Reject(r.Code, r.Reason)
}

// Preprocess is RFC 3261 §16.4 route information preprocessing, to run
// before anything looks at the Request-URI: a Request-URI that is a
// Record-Route value of this proxy (left there by a strict router) is
// replaced by the last Route value, and Route values naming this proxy are
// removed from the top (both, when the proxy recorded two). Routed(ctx)
// then reports it for the handlers after it, and the flow token of the
// removed entry goes along for InDialog.
func (p *Proxy) Preprocess(next handler.Handler) handler.Handler {
	return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
		next.ServeSIP(p.preprocessCtx(ctx, req), tx, req)
	})
}

// preprocessCtx runs preprocess and records what it found in ctx.
func (p *Proxy) preprocessCtx(ctx context.Context, req *sip.Request) context.Context {
	routed, tok, ok := p.preprocess(req)
	if routed {
		ctx = context.WithValue(ctx, routedKey{}, true)
	}
	if ok {
		ctx = context.WithValue(ctx, flowTokenKey{}, tok)
	}
	return ctx
}

func (p *Proxy) preprocess(req *sip.Request) (routed bool, tok flowToken, hasTok bool) {
	if n := len(req.Route); n > 0 && req.URI.Params.Has("lr") && p.isSelf(&req.URI) &&
		(req.URI.User == "" || strings.HasPrefix(req.URI.User, flowTokenPrefix)) {
		tok, hasTok = p.decodeToken(req.URI.User, req.CallID)
		req.URI = req.Route[n-1].URI
		req.Route = req.Route[:n-1]
		routed = true
	}
	if len(req.Route) > 0 && p.isSelf(&req.Route[0].URI) {
		if t, ok := p.decodeToken(req.Route[0].URI.User, req.CallID); ok {
			tok, hasTok = t, true
		}
		r2 := req.Route[0].URI.Params.Has("r2")
		req.Route = req.Route[1:]
		if r2 && len(req.Route) > 0 && p.isSelf(&req.Route[0].URI) {
			req.Route = req.Route[1:]
		}
		routed = true
	}
	return routed, tok, hasTok
}

// Route is the configured routing step: loop detection (CheckLoop), the
// caller-ID check (CheckIdentity), requests following a recorded route
// (InDialog), the Config's rules in order, and the location service for
// the server's own domains. Anything else goes on to next (404).
//
// The rules are those of the last Reload when the request arrives.
func (p *Proxy) Route(next handler.Handler) handler.Handler {
	rc := &ruleChain{p: p, tail: When(func(req *sip.Request) bool {
		return req.URI.IsSIP() && p.IsLocalDomain(&req.URI)
	}, p.Local())(next)}
	return handler.Chain(rc, p.CheckLoop, p.CheckIdentity, p.InDialog)
}

// ruleChain runs the rules of the current routing, then tail. The chain
// of handlers is built once per routing (after a Reload, by the first
// request that meets it), so a request pays two atomic loads.
type ruleChain struct {
	p     *Proxy
	tail  handler.Handler
	built atomic.Pointer[builtRules]
}

type builtRules struct {
	rt *routing
	h  handler.Handler
}

func (rc *ruleChain) ServeSIP(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
	rt := rc.p.rt.Load()
	b := rc.built.Load()
	if b == nil || b.rt != rt {
		// Racing builders build the same thing; the last store wins.
		b = &builtRules{rt: rt, h: handler.Chain(rc.tail, rt.rules...)}
		rc.built.Store(b)
	}
	b.h.ServeSIP(ctx, tx, req)
}

// CheckLoop answers 482 Loop Detected to a request that has passed
// through this proxy before with the same Request-URI (RFC 3261 §16.3
// step 4); a spiral (a new Request-URI) goes on.
func (p *Proxy) CheckLoop(next handler.Handler) handler.Handler {
	return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
		if p.looped(req) {
			p.met.requests.WithLabelValues("loop").Inc()
			p.log.Debug("loop detected", "call-id", req.CallID, "uri", req.URI.String())
			p.reply(tx, req, 482, "")
			return
		}
		next.ServeSIP(ctx, tx, req)
	})
}

// CheckIdentity refuses with 403 a request outside a dialog whose From
// claims a user of a local domain other than the one the authentication
// step authenticated (Env.Identity): caller-ID spoofing. Requests from
// trusted peers (TrustedTx: their flow, and the certificate names of a
// tx that is a PeerNamer), routed requests, and requests nobody
// authenticated pass.
func (p *Proxy) CheckIdentity(next handler.Handler) handler.Handler {
	return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
		if p.env.Identity != nil && !Routed(ctx) && req.From.URI.IsSIP() && p.IsLocalDomain(&req.From.URI) &&
			!p.TrustedTx(tx) {
			if id, ok := p.env.Identity(ctx); ok && AOR(id) != AOR(req.From.URI) {
				p.met.requests.WithLabelValues("spoofed").Inc()
				p.log.Info("From does not match the authenticated user", "from", req.From.URI.String(),
					"user", id.String(), "source", tx.Source().String())
				p.reply(tx, req, 403, "From does not match the authenticated user")
				return
			}
		}
		next.ServeSIP(ctx, tx, req)
	})
}

// InDialog forwards a request that carried this proxy's Route and has a
// To tag along its route set (RFC 3261 §16.12 loose routing): to the next
// Route entry, else the Request-URI, without a target-set lookup.
func (p *Proxy) InDialog(next handler.Handler) handler.Handler {
	return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
		if !Routed(ctx) || req.To.Tag() == "" {
			next.ServeSIP(ctx, tx, req)
			return
		}
		if len(req.Route) == 0 && req.URI.User == "" && p.isSelf(&req.URI) {
			next.ServeSIP(ctx, tx, req)
			return
		}
		p.met.requests.WithLabelValues("in_dialog").Inc()
		t := Target{URI: req.URI, Q: 1}
		if tok, ok := tokenFrom(ctx); ok && len(req.Route) == 0 {
			// The last hop is a phone the proxy reaches over its flow.
			t.Flow = p.dialogFlow(req, tok)
		}
		pl := plan{groups: oneTarget(t), kind: "in_dialog"}
		if p.cfg.Mode == Stateless || req.Method == sip.ACK {
			p.stateless(ctx, tx, req, pl)
			return
		}
		p.fork(ctx, tx, req, pl)
	})
}

// Local is the location-service action (RFC 3261 §16.5): the contacts of
// the Request-URI's address of record, highest q first, equal q in
// parallel. An unknown user gets 404, one with no contacts 480.
func (p *Proxy) Local() handler.Handler {
	return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
		ts, err := p.rt.Load().locator.Lookup(ctx, req.URI)
		switch {
		case errors.Is(err, ErrNotFound):
			p.met.requests.WithLabelValues("not_found").Inc()
			p.reply(tx, req, 404, "")
			return
		case err != nil:
			p.log.Warn("location lookup failed", "aor", AOR(req.URI), "err", err)
			p.reply(tx, req, 500, "")
			return
		case len(ts) == 0:
			p.met.requests.WithLabelValues("unavailable").Inc()
			p.reply(tx, req, 480, "")
			return
		}
		p.dispatch(ctx, tx, req, plan{groups: byQ(ts), kind: "local"})
	})
}

// GatewayTarget is one gateway of a Forward action.
type GatewayTarget struct {
	URI      sip.URI
	Priority int // lower first
	Weight   int // share among equal priorities, >= 1
}

// ForwardOptions tune a Forward action.
type ForwardOptions struct {
	// Strip removes this many leading characters from the user part.
	Strip int
	// Timeout is how long a gateway may stay silent (no response at all)
	// before the next one is tried. Zero: the transaction's own timeout.
	Timeout time.Duration
}

// Forward is the gateway action: the request goes to one gateway at a
// time, by priority, and by weight among equal priorities (the choice is
// a hash of the Call-ID, so a call's requests agree); a timeout, a 408 or
// a 5xx moves it on to the next gateway, any other response ends it. The
// Request-URI keeps its user part and takes the gateway's host, port and
// parameters.
func (p *Proxy) Forward(gws []GatewayTarget, opt ForwardOptions) handler.Handler {
	sorted := byPriority(gws) // once, not per request
	return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
		if len(sorted) == 0 {
			p.reply(tx, req, 503, "")
			return
		}
		user := req.URI.User
		if opt.Strip > 0 {
			if opt.Strip >= len(user) {
				user = ""
			} else {
				user = user[opt.Strip:]
			}
		}
		var buf [8]GatewayTarget
		order := appendGatewayOrder(buf[:0], sorted, req.CallID)
		// One group per gateway, all in two allocations.
		ts := make([]Target, len(order))
		groups := make([][]Target, len(order))
		for i, g := range order {
			u := g.URI
			u.User = user
			if req.URI.Scheme == sip.SchemeTel {
				u.User = req.URI.User
			}
			ts[i] = Target{URI: u, Q: 1}
			groups[i] = ts[i : i+1 : i+1]
		}
		p.dispatch(ctx, tx, req, plan{groups: groups, gateway: true, timeout: opt.Timeout, kind: "forward"})
	})
}

// byPriority returns a copy of gws sorted by priority, stably.
func byPriority(gws []GatewayTarget) []GatewayTarget {
	sorted := slices.Clone(gws)
	slices.SortStableFunc(sorted, func(a, b GatewayTarget) int { return cmp.Compare(a.Priority, b.Priority) })
	return sorted
}

// appendGatewayOrder appends the gateways of sorted (by priority, as
// byPriority returns them) in the order they are tried: by priority, and
// within one priority by weighted choice without replacement, seeded with
// the FNV-1a hash of key.
func appendGatewayOrder(out, sorted []GatewayTarget, key string) []GatewayTarget {
	h := fnv64(fnvOffset64)
	h.writeString(key)
	seed := uint64(h)
	for i := 0; i < len(sorted); {
		j := i
		for j < len(sorted) && sorted[j].Priority == sorted[i].Priority {
			j++
		}
		var buf [16]int
		group := buf[:0] // indices into sorted of the ones not picked yet
		for k := i; k < j; k++ {
			group = append(group, k)
		}
		for len(group) > 0 {
			total := 0
			for _, k := range group {
				total += sorted[k].Weight
			}
			pick := int(seed % uint64(total))
			seed = seed*6364136223846793005 + 1442695040888963407
			m := 0
			for ; m < len(group); m++ {
				if pick < sorted[group[m]].Weight {
					break
				}
				pick -= sorted[group[m]].Weight
			}
			out = append(out, sorted[group[m]])
			group = append(group[:m], group[m+1:]...)
		}
		i = j
	}
	return out
}

// Resolve is the foreign-domain action: the request goes, Request-URI
// unchanged, to the hops the Resolver finds for it (RFC 3263), failing
// over from hop to hop on transport errors, timeouts and 503.
func (p *Proxy) Resolve() handler.Handler { return p.resolve(0) }

// resolve is Resolve where a hop silent for timeout (no response at all)
// counts as timed out, so that failover does not wait for Timer B or F
// (64*T1, 32 s); zero waits for them.
func (p *Proxy) resolve(timeout time.Duration) handler.Handler {
	return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
		p.dispatch(ctx, tx, req, plan{groups: oneTarget(Target{URI: req.URI, Q: 1}), timeout: timeout, kind: "resolve"})
	})
}

// Redirect answers with a redirection (RFC 3261 §8.3, §21.3): the
// targets given, else the location service's contacts for the
// Request-URI, as 302 for one contact or 300 for several (each with its q
// and expires), or as code when it is not zero (305 Use Proxy with the
// proxy as the one target).
func (p *Proxy) Redirect(code int, reason string, targets ...Target) handler.Handler {
	return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
		ts := targets
		if len(ts) == 0 {
			var err error
			ts, err = p.rt.Load().locator.Lookup(ctx, req.URI)
			switch {
			case errors.Is(err, ErrNotFound):
				p.reply(tx, req, 404, "")
				return
			case err != nil:
				p.reply(tx, req, 500, "")
				return
			}
		}
		p.redirect(tx, req, ts, code, reason)
	})
}

// Reject answers with code and reason (the standard phrase when empty).
func (p *Proxy) Reject(code int, reason string) handler.Handler {
	return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
		p.met.requests.WithLabelValues("rejected").Inc()
		p.reply(tx, req, code, reason)
	})
}

// plan is a target set: groups tried one after the other, the targets of
// a group in parallel.
type plan struct {
	groups [][]Target
	// gateway: the next group only after a timeout, 408 or 5xx.
	gateway bool
	// timeout: a target silent for this long counts as timed out.
	timeout time.Duration
	kind    string // metric label
}

// oneTarget is the groups of a plan of one target, in one allocation.
func oneTarget(t Target) [][]Target {
	one := &struct {
		groups [1][]Target
		ts     [1]Target
	}{ts: [1]Target{t}}
	one.groups[0] = one.ts[:]
	return one.groups[:]
}

// first returns the first target; false when there is none.
func (pl plan) first() (Target, bool) {
	for _, g := range pl.groups {
		if len(g) > 0 {
			return g[0], true
		}
	}
	return Target{}, false
}

func (pl plan) all() []Target {
	var out []Target
	for _, g := range pl.groups {
		out = append(out, g...)
	}
	return out
}

// advance reports whether a group that ended with code lets the next one
// start.
func (pl plan) advance(code int) bool {
	if !pl.gateway {
		return true
	}
	return code == 408 || (code >= 500 && code < 600)
}

// dispatch runs a target set the way the mode says.
func (p *Proxy) dispatch(ctx context.Context, tx handler.ServerTx, req *sip.Request, pl plan) {
	switch {
	case req.Method == sip.ACK || p.cfg.Mode == Stateless:
		p.stateless(ctx, tx, req, pl)
	case p.cfg.Mode == Redirect:
		p.redirect(tx, req, pl.all(), 0, "")
	default:
		p.fork(ctx, tx, req, pl)
	}
}
