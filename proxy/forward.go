package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
)

// resolveTimeout bounds one Resolver call.
const resolveTimeout = 5 * time.Second

// prepare makes the copy of req that goes to target t (RFC 3261 §16.6
// steps 1-3 and 6): the new Request-URI, Max-Forwards decremented (70 when
// absent), the registration's Path ahead of the Route set, and the strict
// router fix-up when the next Route entry lacks lr. Via and Record-Route
// are added per hop by stamp, in room when they fit. next is the URI the
// next hop is found from (§16.6 step 7): the first Route entry, or the
// Request-URI when there is none or the next hop is a strict router.
func (p *Proxy) prepare(req *sip.Request, t Target) (out *sip.Request, room *stampRoom, next sip.URI) {
	pr := new(prepared)
	out, room = &pr.req, &pr.room
	*out = *req
	out.URI = t.URI
	out.Fields = slices.Clip(req.Fields)
	out.Contact = slices.Clip(req.Contact)
	out.RecordRoute = slices.Clip(req.RecordRoute)
	if out.MaxForwards < 0 {
		out.MaxForwards = 70
	} else if out.MaxForwards > 0 {
		out.MaxForwards--
	}
	path := t.Path
	for len(path) > 0 && p.isSelf(&path[0].URI) {
		path = path[1:] // our own Path entry
	}
	if len(path) == 0 {
		out.Route = slices.Clip(req.Route) // shared: nothing changes it in place
	} else {
		out.Route = append(append(make([]sip.Address, 0, len(path)+len(req.Route)), path...), req.Route...)
	}
	if len(out.Route) > 0 && !out.Route[0].URI.Params.Has("lr") {
		// §16.6 step 6: the next hop is a strict router.
		first := out.Route[0]
		out.Route = append(out.Route[1:len(out.Route):len(out.Route)], sip.Address{URI: out.URI})
		out.URI = first.URI
		return out, room, out.URI
	}
	if len(out.Route) > 0 {
		return out, room, out.Route[0].URI
	}
	return out, room, out.URI
}

// prepared is what prepare allocates: the copy of the request, and room
// for the Via and Record-Route lists stamp gives it, so that forwarding a
// typical request (from its user agent, one Via; outside a dialog, no
// Record-Route yet) costs one allocation for the three.
type prepared struct {
	req  sip.Request
	room stampRoom
}

// stampRoom is where stamp puts a request's new Via and Record-Route
// lists when they fit.
type stampRoom struct {
	via [2]sip.Via
	rr  [1]sip.Address
}

// recordsRoute reports whether the proxy inserts Record-Route into out:
// requests that can create a dialog, outside a dialog (§16.6 step 4).
func (p *Proxy) recordsRoute(out *sip.Request) bool {
	if !p.cfg.recordRoute() || out.To.Tag() != "" {
		return false
	}
	switch out.Method {
	case sip.INVITE, sip.SUBSCRIBE, sip.REFER, sip.NOTIFY:
		return true
	}
	return false
}

// stamp adds this proxy's Via (§16.6 step 8) and Record-Route (step 4:
// one entry, or two when the request changes transport or interface) to a
// prepared request about to leave through out, to the target's flow when
// it has one. The Record-Route carries a flow token when the caller or the
// callee can only be reached over its flow (flowtoken.go).
func (p *Proxy) stamp(req *sip.Request, in Flow, out side, to Flow, viaParams sip.Params, room *stampRoom) {
	v := sip.Via{Transport: out.proto, Host: out.host, Port: out.port, Params: viaParams}
	direct := len(req.Via) == 1 // the caller is the UA itself, not a proxy before us
	var vias []sip.Via
	if n := 1 + len(req.Via); room != nil && n <= len(room.via) {
		vias = room.via[:1:n]
	} else {
		vias = make([]sip.Via, 1, n)
	}
	vias[0] = v
	req.Via = append(vias, req.Via...)
	if !p.recordsRoute(req) {
		return
	}
	if !direct {
		in = Flow{} // its flow leads to that proxy, which routes by itself
	}
	user := p.flowUser(req, in, to)
	var own [2]sip.Address
	n := 1
	own[0].URI = out.uri(false)
	if is, ok := p.inSide(in); ok && (is.proto != out.proto || is.host != out.host || is.port != out.port) {
		own[0].URI, own[1].URI = out.uri(true), is.uri(true)
		n = 2
	}
	var rr []sip.Address
	if m := n + len(req.RecordRoute); room != nil && m <= len(room.rr) {
		rr = room.rr[:0:m]
	} else {
		rr = make([]sip.Address, 0, m)
	}
	for i := range n {
		own[i].URI.User = user
		rr = append(rr, own[i])
	}
	req.RecordRoute = append(rr, req.RecordRoute...)
}

// hopSender sends the requests of one branch: over the target's flow when
// it has one (RFC 5626 §5.3: back where the REGISTER came from), else to
// the resolved hop. It never waits on a peer: stream messages are queued
// on the connection, and a connection that must be opened first is dialed
// in the background (dialFailed hears of a failed dial).
type hopSender struct {
	p      *Proxy
	proto  string
	local  netip.AddrPort
	remote netip.AddrPort
	conn   *transport.Conn

	// The attempt of a stateful branch the sender serves (nil, 0 for
	// stateless forwarding): its client transaction's responses, a dial
	// failure and its timers go there, so that one object per attempt
	// carries them all.
	b       *branch
	attempt int
}

// onResponse is the client transaction's ResponseHandler.
func (s *hopSender) onResponse(res *sip.Response, err error) { s.b.handle(s.attempt, res, err) }

// dialFailed hears of a connection that could not be opened in the
// background.
func (s *hopSender) dialFailed(err error) {
	if s.b != nil {
		s.b.handle(s.attempt, nil, fmt.Errorf("%w: %v", transaction.ErrTransport, err))
	}
}

func (s *hopSender) onTimerC()  { s.b.onTimerC(s.attempt) }
func (s *hopSender) onSilence() { s.b.onSilence(s.attempt) }

// Send implements transaction.Sender. A client transaction keeps its
// request, not the bytes, and encodes it again to retransmit.
func (s *hopSender) Send(m sip.Message) error {
	return s.p.sendMessage(m, s.proto, s.local, s.remote, s.conn, s)
}

// maxPooledBuf bounds the buffers kept for reuse: a rare huge message
// must not pin its buffer in the pool.
const maxPooledBuf = 64 << 10

// sendMessage encodes m into a buffer of the Proxy's pool and sends it
// (sendWire, which does not keep it).
func (p *Proxy) sendMessage(m sip.Message, proto string, local, remote netip.AddrPort, conn *transport.Conn, from *hopSender) error {
	return p.encodeTo(m, func(b []byte) error { return p.sendWire(proto, local, remote, conn, b, from) })
}

// encodeTo encodes m in a pooled buffer and hands it to write, which must
// not keep it.
func (p *Proxy) encodeTo(m sip.Message, write func([]byte) error) error {
	bp, ok := p.bufs.Get().(*[]byte)
	if !ok {
		bp = new([]byte)
		*bp = make([]byte, 0, 2048)
	}
	b := m.AppendTo((*bp)[:0])
	err := write(b)
	if cap(b) <= maxPooledBuf {
		*bp = b[:0]
		p.bufs.Put(bp)
	}
	return err
}

// SendWire sends encoded bytes.
func (s *hopSender) SendWire(b []byte) error {
	return s.p.sendWire(s.proto, s.local, s.remote, s.conn, b, s)
}

// sendWire sends b over proto to remote: over UDP from the socket bound to
// local, over a stream on conn (see sendStream; from hears of a failed
// dial). b is not kept.
func (p *Proxy) sendWire(proto string, local, remote netip.AddrPort, conn *transport.Conn, b []byte, from *hopSender) error {
	if proto == transport.UDP {
		return p.env.Network.WriteTo(transport.UDP, local, remote, b)
	}
	return p.sendStream(proto, remote, conn, b, from)
}

// Reliable implements transaction.Sender.
func (s *hopSender) Reliable() bool { return s.proto != transport.UDP }

// maxDials bounds the connections being opened in the background.
const maxDials = 64

// sendStream sends b over a stream: on conn while open, else on the
// connection the table has for remote, else over a new connection dialed
// by a bounded background goroutine (the caller learns of a failed dial
// through from.dialFailed, when from is not nil). b is not kept.
func (p *Proxy) sendStream(proto string, remote netip.AddrPort, conn *transport.Conn, b []byte, from *hopSender) error {
	for _, c := range []*transport.Conn{conn, p.env.Network.Lookup(proto, remote)} {
		if c == nil {
			continue
		}
		err := c.Send(b)
		if err == nil || !errors.Is(err, transport.ErrConnClosed) {
			return err
		}
	}
	select {
	case p.dials <- struct{}{}:
	default:
		return fmt.Errorf("proxy: %d connections being opened already", maxDials)
	}
	b = append([]byte(nil), b...)
	p.background(func() {
		defer func() { <-p.dials }()
		if err := p.env.Network.WriteTo(proto, netip.AddrPort{}, remote, b); err != nil {
			p.log.Debug("send on a new connection", "proto", proto, "to", remote.String(), "err", err)
			if from != nil {
				from.dialFailed(err)
			}
		}
	})
	return nil
}

// background runs f on a goroutine Close waits for; once Close has begun
// (a transaction timer firing during shutdown), f runs on the caller's
// goroutine instead, where the cancelled lookups and closed transports
// end it quickly.
func (p *Proxy) background(f func()) {
	p.asyncMu.Lock()
	if p.closing {
		p.asyncMu.Unlock()
		f()
		return
	}
	p.async.Add(1)
	p.asyncMu.Unlock()
	go func() {
		defer p.async.Done()
		f()
	}()
}

// Close ends the lookups under way and waits for the background dials and
// lookups to end; the transport's Close ends the dials.
func (p *Proxy) Close() {
	p.cancelStop()
	p.asyncMu.Lock()
	p.closing = true
	p.asyncMu.Unlock()
	p.async.Wait()
}

// route is where one attempt of a branch goes.
type route struct {
	hop  Hop
	flow Flow
	out  side
	snd  *hopSender // a stateful attempt's (route.sender)
}

// hopsNow returns the hops of req prepared for t, whose next-hop URI is
// next, when finding them cannot wait on the network: the target's flow
// (the way its REGISTER came, toward the user agent or the edge proxy of
// its Path) unless req brought a Route set of its own; else, from the
// StaticResolver, a configured route, an IP literal or an answer in its
// DNS resolver's cache. wait is true when they must be looked up instead
// (lookupHops, off the worker): a Resolver of the library user's, or a
// host name the cache cannot answer for.
func (p *Proxy) hopsNow(req *sip.Request, next sip.URI, t Target) (hops Hops, wait bool, err error) {
	if !t.Flow.IsZero() && len(req.Route) == 0 {
		if f := t.Flow; p.flowUsable(f) {
			return singleHop(Hop{Proto: f.Proto, Addr: f.Remote, Host: f.Remote.Addr().String()}), false, nil
		}
		if f := t.Flow; f.Proto == transport.WS || f.Proto == transport.WSS {
			// A browser cannot be reached but over the connection it
			// opened: once that closed, fail at once.
			return nil, false, errFlowClosed
		}
	}
	sr, ok := p.rt.Load().resolver.(*StaticResolver)
	if !ok {
		return nil, true, nil
	}
	if !sr.lookup(next) {
		// Nothing to wait for, so no deadline (a context and a timer).
		hops, err := sr.Resolve(p.stop, next)
		return hops, false, err
	}
	if sr.DNS != nil {
		if ts, err := sr.DNS.Resolve(p.cacheOnly, next); err == nil {
			return newDNSHops(ts), false, nil
		}
	}
	return nil, true, nil
}

// lookupHops asks the Resolver for the hops of next, within
// resolveTimeout: what hopsNow could not answer.
func (p *Proxy) lookupHops(next sip.URI) (Hops, error) {
	ctx, cancel := context.WithTimeout(p.stop, resolveTimeout)
	defer cancel()
	return p.rt.Load().resolver.Resolve(ctx, next)
}

// errFlowClosed is the route error of a target only reachable over a
// WebSocket connection that is gone (RFC 7118 §5: its Contact's host is
// .invalid, so nothing else reaches it): 480, as for a user not online.
var errFlowClosed = errors.New("proxy: the target's WebSocket connection is closed")

// noRouteCode is the answer to a request whose next hop could not be
// found: 504 when the DNS could not be asked (RFC 3261 §21.5.5, a server
// it accessed did not answer in time; the caller may try again or another
// way), 404 when there is no such place.
func noRouteCode(err error) int {
	if errors.Is(err, resolve.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return 504
	}
	if errors.Is(err, errFlowClosed) {
		return 480
	}
	return 404
}

// flowUsable reports whether requests can go over f: a UDP flow always
// (the NAT binding is kept alive by the phone), a stream flow while its
// connection, or another to the same peer, is open. A phone's TCP
// connection comes from a port it does not listen on: once it is gone,
// the request goes to the Contact, where the phone may accept a new one.
func (p *Proxy) flowUsable(f Flow) bool {
	if f.Proto == transport.UDP {
		return true
	}
	if f.Conn != nil {
		select {
		case <-f.Conn.Done():
		default:
			return true
		}
	}
	return p.env.Network.Lookup(f.Proto, f.Remote) != nil
}

// maxLookups bounds the lookups (a branch's hops, a stateless request's,
// an ENUM rule's) waiting on the DNS in the background.
const maxLookups = 256

// onLookupPool runs f on a goroutine of the bounded lookup pool, or on the
// caller's goroutine when the pool is full.
func (p *Proxy) onLookupPool(f func()) {
	select {
	case p.lookups <- struct{}{}:
		p.background(func() {
			defer func() { <-p.lookups }()
			f()
		})
	default:
		f()
	}
}

// routeTo builds the route for hop; the target's flow is used when the hop
// is the flow's peer.
func (p *Proxy) routeTo(h Hop, t Target) (route, error) {
	var flow Flow
	if !t.Flow.IsZero() && t.Flow.Remote == h.Addr && t.Flow.Proto == h.Proto {
		flow = t.Flow
	}
	out, err := p.outSide(h.Proto, h.Addr, flow)
	if err != nil {
		return route{}, err
	}
	return route{hop: h, flow: flow, out: out}, nil
}

// sender returns the sender for a stateful branch's attempt over r: the
// branch's own for its first attempt, a new one for a failover.
func (r *route) sender(p *Proxy, b *branch, attempt int) *hopSender {
	s := &b.first
	if attempt != 1 {
		s = new(hopSender)
	}
	*s = hopSender{p: p, proto: r.hop.Proto, local: r.out.local, remote: r.hop.Addr, conn: r.flow.Conn, b: b, attempt: attempt}
	return s
}

// stateless forwards req to the first target of pl without keeping any
// state (RFC 3261 §16.11): a branch derived from the request, so that
// retransmissions, the CANCEL and the ACK of a non-2xx response take the
// same branch; on a transport error the next hop is tried. A next hop the
// DNS must find and the resolver's cache cannot give at once is looked up
// on the lookup pool, as a stateful branch's is, not on the worker.
func (p *Proxy) stateless(ctx context.Context, tx handler.ServerTx, req *sip.Request, pl plan) {
	t, ok := pl.first()
	if !ok {
		p.reply(tx, req, 480, "")
		return
	}
	out, room, next := p.prepare(req, t)
	hops, wait, err := p.hopsNow(req, next, t)
	if wait {
		t, next := t, next // only this path keeps them, on the heap
		p.onLookupPool(func() {
			hops, err := p.lookupHops(next)
			p.statelessSend(tx, req, pl, t, out, room, next, hops, err)
		})
		return
	}
	p.statelessSend(tx, req, pl, t, out, room, next, hops, err)
}

// statelessSend sends out (req prepared for t) to the first of hops that
// takes it, or answers the lookup's error; as a stateful branch, only
// over the hops its hopPolicy allows (480 when it allows none of them),
// with the fields each may see.
func (p *Proxy) statelessSend(tx handler.ServerTx, req *sip.Request, pl plan, t Target, out *sip.Request, room *stampRoom, next sip.URI, hops Hops, err error) {
	if err != nil {
		p.log.Debug("no route", "uri", next.String(), "err", err)
		p.reply(tx, req, noRouteCode(err), "")
		return
	}
	in := flowOf(tx)
	params, _ := viaBranch(p.hashOf(req), 0)
	policy := policyFor(req, out, next, pl, t, hideIdentity(req))
	// out is stamped in place for each hop, from its own Via,
	// Record-Route and fields, in the same room: nothing keeps it, it is
	// encoded and sent at once.
	via, rr, fields := out.Via, out.RecordRoute, out.Fields
	refused, tried := 0, 0
	for {
		h, ok := hops.Next()
		if !ok {
			code := 503
			if refused > 0 && tried == 0 {
				code = 480
			}
			p.reply(tx, req, code, "")
			return
		}
		if !policy.allows(h) {
			refused++
			continue
		}
		tried++
		r, err := p.routeTo(h, t)
		if err == nil {
			out.Via, out.RecordRoute, out.Fields = via, rr, policy.fields(p, h, fields)
			p.stamp(out, in, r.out, r.flow, params, room)
			if req.Method == sip.ACK {
				p.mediaACK(req, out, in, r)
			}
			if err = p.sendMessage(out, h.Proto, r.out.local, h.Addr, r.flow.Conn, nil); err == nil {
				p.met.stateless.WithLabelValues("request").Inc()
				p.met.requests.WithLabelValues(pl.kind).Inc()
				return
			}
		}
		p.log.Debug("stateless send failed", "hop", h.String(), "err", err)
		hops.Fail(h, FailTransport)
	}
}

// HandleACK forwards an ACK that belongs to no server transaction: the ACK
// of a 2xx, which goes end to end (RFC 3261 §16.7 step 10, §16.11; RFC
// 6026) along the route set, or where the routing sends its Request-URI;
// in stateless mode every ACK. It is forwarded statelessly, and dropped
// where a request would be answered.
func (p *Proxy) HandleACK(ctx context.Context, ack *sip.Request, in Flow) {
	ctx = p.preprocessCtx(ctx, ack)
	if ack.MaxForwards == 0 {
		return
	}
	p.ackRoute.ServeSIP(ctx, ackTx{in}, ack)
}

// ackTx stands for the transaction an ACK does not have.
type ackTx struct{ in Flow }

func (t ackTx) Respond(*sip.Response) error          { return nil }
func (t ackTx) RespondStateless(*sip.Response) error { return nil }
func (t ackTx) Source() netip.AddrPort               { return t.in.Remote }
func (t ackTx) Transport() string                    { return t.in.Proto }
func (t ackTx) Flow() Flow                           { return t.in }

// HandleResponse forwards a response that matches no client transaction
// (RFC 3261 §16.7: "as a stateless proxy would", §16.11): its top Via must
// be this proxy's; it is removed and the response goes to the next Via
// (§18.2.2). It reports false for responses that are not the proxy's, which
// the server then drops.
func (p *Proxy) HandleResponse(res *sip.Response, in Flow) bool {
	if len(res.Via) == 0 {
		return false
	}
	if _, ok := p.ownVia(&res.Via[0]); !ok {
		return false
	}
	if b := p.orphan(res.Via[0].Branch()); b != nil {
		b.orphanResponse(res)
		return true
	}
	fwd := stripVia(res)
	if fwd == nil {
		return false
	}
	if err := p.sendResponse(fwd); err != nil {
		p.log.Debug("stateless response not sent", "code", res.StatusCode, "err", err)
		return true
	}
	p.met.stateless.WithLabelValues("response").Inc()
	return true
}

// sendResponse sends a response to its top Via (RFC 3261 §18.2.2, RFC
// 3581): the received address and rport (else sent-by port), on the open
// connection there for streams, else a new one.
func (p *Proxy) sendResponse(res *sip.Response) error {
	v := &res.Via[0]
	proto := strings.ToUpper(v.Transport)
	def := 5060
	if proto == transport.TLS {
		def = 5061
	}
	dst := sip.ResponseTarget(v, netip.AddrPort{}, false, def)
	if !dst.Addr().IsValid() {
		return fmt.Errorf("proxy: response Via %s has no address", v.String())
	}
	switch proto {
	case transport.UDP, transport.TCP, transport.TLS, transport.WS, transport.WSS:
	default:
		return fmt.Errorf("proxy: response Via transport %q not supported", v.Transport)
	}
	return p.sendMessage(res, proto, netip.AddrPort{}, dst, nil, nil)
}

// redirect answers with the targets as Contacts (RFC 3261 §8.3, §21.3):
// 302 for one, 300 for several, each with q (and expires when known),
// highest q first; code overrides the choice.
func (p *Proxy) redirect(tx handler.ServerTx, req *sip.Request, ts []Target, code int, reason string) {
	if len(ts) == 0 {
		p.reply(tx, req, 480, "")
		return
	}
	if code == 0 {
		code = 302
		if len(ts) > 1 {
			code = 300
		}
	}
	ts = append([]Target(nil), ts...)
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].Q > ts[j].Q })
	res := p.newResponse(req, code, reason)
	now := p.clock.Now()
	for _, t := range ts {
		a := sip.Address{URI: t.URI}
		if code != 305 {
			a.Params = a.Params.Set("q", strconv.FormatFloat(t.Q, 'f', -1, 64))
			if !t.Expires.IsZero() {
				if d := t.Expires.Sub(now); d > 0 {
					a.Params = a.Params.Set("expires", strconv.Itoa(int(d.Round(time.Second)/time.Second)))
				}
			}
		}
		res.Contact = append(res.Contact, a)
	}
	p.met.requests.WithLabelValues("redirected").Inc()
	p.met.replies.WithLabelValues(codeLabel(code)).Inc()
	_ = tx.RespondStateless(res)
}
