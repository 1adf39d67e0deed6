package server

import (
	"context"
	"net/netip"

	"github.com/hlas-voip/hlas/sip"
)

// ServerTx is what a handler answers a request through. Until the
// transaction layer lands it is stateless: every Respond writes a response
// straight to the transport, routed by RFC 3261 §18.2.2.
type ServerTx interface {
	// Respond sends a response to the request.
	Respond(res *sip.Response) error
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
