package server

import "github.com/hlas-voip/hlas/handler"

// The handler chain's types live in package handler so that features can
// implement them without importing the server; these aliases keep the
// server's own code short.
type (
	// Handler processes a request; see handler.Handler.
	Handler = handler.Handler
	// HandlerFunc adapts a function to a Handler.
	HandlerFunc = handler.HandlerFunc
	// Middleware wraps a handler with a feature.
	Middleware = handler.Middleware
	// ServerTx is what a handler answers through.
	ServerTx = handler.ServerTx
)

// Chain builds final wrapped by mws; the first middleware runs first.
func Chain(final Handler, mws ...Middleware) Handler { return handler.Chain(final, mws...) }
