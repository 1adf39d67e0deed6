package proxy

import (
	"context"
	"net/netip"

	"github.com/hlas-voip/hlas/sip"
)

// Accounting observes the requests the proxy forwards statefully and the
// responses that go upstream for them: what call detail records are made
// of (package acc implements it). The proxy calls it on the server's
// workers and transaction timers, so it must not block.
type Accounting interface {
	// Forwarding is called once per request the proxy forwards
	// statefully, before its first branch starts. The observer it returns
	// (nil: not interested) hears how the request ends.
	Forwarding(ctx context.Context, req *sip.Request, info Forwarded) RequestObserver
}

// Forwarded is what the proxy knows about a request it forwards.
type Forwarded struct {
	// Source is the flow the request came on.
	Source Flow
	// User is the user the authentication step authenticated
	// (Env.Identity); Authenticated is false when nobody was.
	User          sip.URI
	Authenticated bool
	// RecordRoute is true when the proxy inserts its Record-Route: the
	// dialog's later requests (the BYE) will pass through it.
	RecordRoute bool
}

// RequestObserver hears the outcome of one forwarded request.
type RequestObserver interface {
	// Respond is called with each response about to go upstream, except
	// provisional ones: every 2xx and the final non-2xx. send sends it;
	// the observer must call it exactly once, at once or later from any
	// goroutine — after the record the response completes is committed,
	// so that a crash right after the caller sees it loses nothing.
	Respond(res *sip.Response, up Upstream, send func())
}

// ProvisionalObserver is a RequestObserver that also hears the
// provisional responses (101-199) forwarded upstream, as they go (the
// dialog event package shows a call ringing: RFC 4235 "early"). It must
// not block.
type ProvisionalObserver interface {
	Provisional(res *sip.Response)
}

// Upstream describes a response going upstream.
type Upstream struct {
	// Target is the branch's target that sent the response (the fork
	// branch that answered); zero for responses the proxy made.
	Target sip.URI
	// Hop is where that branch was sent: Proto and Addr.
	Proto string
	Addr  netip.AddrPort
	// Local is true for a response the proxy made itself: a timeout
	// (Timer C, no answer), no route, or the 487 of a CANCEL.
	Local bool
	// Cancelled is true when the caller sent CANCEL (RFC 3261 §16.10).
	Cancelled bool
	// Killed is why an operator ended the request before it was
	// answered (Proxy.Hangup: "api"), its branches cancelled as for a
	// CANCEL; "" otherwise.
	Killed string
}

// observe asks Env.Accounting about a request a response context starts
// for.
func (p *Proxy) observe(ctx context.Context, req *sip.Request, in Flow) RequestObserver {
	if p.env.Accounting == nil {
		return nil
	}
	info := Forwarded{Source: in, RecordRoute: p.recordsRoute(req)}
	if p.env.Identity != nil {
		info.User, info.Authenticated = p.env.Identity(ctx)
	}
	return p.env.Accounting.Forwarding(ctx, req, info)
}

// upstream sends res to the caller through the server transaction (a 2xx
// by its Via when the transaction is over), by way of the accounting
// observer when there is one. b is the branch res came from, nil for a
// response of the proxy's own.
func (c *rctx) upstream(res *sip.Response, b *branch) {
	c.mediaEnded(res)
	if c.acct == nil {
		c.respond(res)
		return
	}
	send := func() { c.respond(res) }
	c.mu.Lock()
	up := Upstream{Cancelled: c.cancelled && c.killed == "", Killed: c.killed, Local: b == nil && c.finalLocal}
	if b != nil {
		up.Target, up.Proto, up.Addr = b.target.URI, b.r.hop.Proto, b.r.hop.Addr
	}
	c.mu.Unlock()
	c.acct.Respond(res, up, send)
}

// respond sends res upstream through the server transaction.
func (c *rctx) respond(res *sip.Response) {
	if err := c.tx.Respond(res); err != nil && res.StatusCode/100 == 2 {
		// The server transaction is over (Timer L, or a final
		// response already sent): forward by the Via.
		_ = c.p.sendResponse(res)
	}
}
