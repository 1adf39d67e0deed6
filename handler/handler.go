// Package handler defines the request handler chain that server features
// plug into, in the manner of net/http's Handler: a feature (registrar,
// authentication, proxy, ...) is a Middleware that either answers a request
// through its server transaction or passes it to the next handler. It sits
// below both the server, which builds the chain, and the features, so that
// neither imports the other.
package handler

import (
	"context"
	"net/netip"

	"github.com/hlas-voip/hlas/sip"
)

// ServerTx is what a handler answers a request through: the server
// transaction of the request (RFC 3261 §17.2), which routes responses back
// per §18.2.2 and retransmits them as its state machine says.
type ServerTx interface {
	// Respond sends a response to the request.
	Respond(res *sip.Response) error
	// RespondStateless sends a final response once and forgets the
	// request, as a stateless server would: no retransmissions, and a
	// retransmitted request is processed again. For rejections and other
	// answers that processing gives identically every time.
	RespondStateless(res *sip.Response) error
	// Source is the address the request came from.
	Source() netip.AddrPort
	// Transport is UDP, TCP or TLS.
	Transport() string
}

// Handler processes a request. It either answers through tx or passes the
// request on to the next handler of the chain.
type Handler interface {
	ServeSIP(ctx context.Context, tx ServerTx, req *sip.Request)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, tx ServerTx, req *sip.Request)

// ServeSIP calls f.
func (f HandlerFunc) ServeSIP(ctx context.Context, tx ServerTx, req *sip.Request) {
	f(ctx, tx, req)
}

// Middleware wraps a handler with a feature that runs before it.
type Middleware func(next Handler) Handler

// Chain builds final wrapped by mws; the first middleware runs first.
func Chain(final Handler, mws ...Middleware) Handler {
	h := final
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}
