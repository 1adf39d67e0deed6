// Package proxy is hlas's SIP proxy (RFC 3261 §16) and redirect server
// (§8.3, §21.3), with the routing that decides where requests go.
//
// # Modes
//
// Stateful (the default) keeps a response context per request: it forks
// to the target set (contacts of equal q in parallel, lower q after higher
// ones failed), forwards provisional responses and every 2xx at once,
// picks the best final response (§16.7 step 6: 6xx first, then the lowest
// class; 503 becomes 500; 401/407 challenges merged), cancels the other
// branches after a 2xx or 6xx and when the caller cancels (§16.10), and
// runs Timer C (§16.8). Stateless (§16.11) forwards each request to one
// target with a branch derived from the request, and responses by their
// Via. Redirect answers with the target set as 302 or 300.
//
// # Routing
//
// The server's handler chain runs Preprocess (§16.4: strict-route fix-up,
// our own Route entries removed) early, then, after the checks and the
// authentication step, Route: CheckLoop (§16.3 step 4: 482), CheckIdentity
// (403 for a From that is not the authenticated user), InDialog (requests
// that carried our Route follow the route set, §16.12), the configured
// rules in order, and the location service for the server's own domains;
// anything else goes on to the next handler (404). Rules are the same
// building blocks a library user can chain in Go:
//
//	h := handler.Chain(notFound,
//		p.Preprocess,
//		p.CheckLoop,
//		p.InDialog,
//		proxy.When(proxy.Prefix("900"), p.Reject(403, "Premium Barred")),
//		proxy.When(proxy.Prefix("+"), p.Forward(gateways, proxy.ForwardOptions{Strip: 1})),
//		proxy.When(proxy.Domain("example.com"), p.Local()),
//		proxy.When(proxy.Domain("*"), p.Resolve()),
//	)
//
// The location service is a Locator (the registrar; Config.Locations are
// static bindings asked first); a target's Flow, the way its REGISTER came,
// carries requests back through a NAT. Foreign URIs go through a Resolver
// (StaticResolver: configured routes, IP literals; package sip/resolve for
// RFC 3263), whose Hops fail over on transport errors, timeouts and 503.
//
// # Metrics
//
// Namespace hlas, subsystem proxy, registered in Env.Registerer:
//
//	hlas_proxy_requests_total{outcome}        requests routed: local, forward, resolve, in_dialog, redirected,
//	                                          rejected, not_found, unavailable, loop, spoofed, overload
//	hlas_proxy_replies_total{code}            responses the proxy made itself
//	hlas_proxy_final_responses_total{class}   final responses forwarded upstream by response contexts
//	hlas_proxy_stateless_forwarded_total{kind} requests and responses forwarded without state
//	hlas_proxy_branches_total                 client transactions started for branches
//	hlas_proxy_cancels_total                  CANCELs sent to branches
//	hlas_proxy_timer_c_total                  branches ended by Timer C
//	hlas_proxy_failovers_total                moves to the next hop, gateway or q-value group
//	hlas_proxy_contexts                       response contexts alive (gauge)
//
// # Logging
//
// Env.Logger with feature=proxy: loops and spoofing at Debug/Info, failed
// location lookups at Warn, each forwarded branch and final response at
// Debug.
//
// # Limits
//
// Config.MaxPending response contexts (beyond it 503 with Retry-After),
// Config.MaxBranches targets per request, a bounded number of connections
// dialed in the background (a worker never waits on a dial). The proxy
// starts no goroutine of its own otherwise: it runs on the server's
// workers and the transaction timers.
package proxy
