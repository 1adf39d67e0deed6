package proxy

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// rctx is a response context (RFC 3261 §16.7): one request being proxied
// statefully, its branches, and the best response so far.
type rctx struct {
	p      *Proxy
	tx     handler.ServerTx
	req    *sip.Request
	in     Flow
	hash   uint64 // requestHash of req
	invite bool
	pl     plan
	hideID bool // hideIdentity(req), for every branch's hopPolicy

	mu         sync.Mutex
	group      int
	branches   []*branch // of the groups started so far, in slab
	slab       []branch  // every branch of pl (addGroupLocked)
	one        [1]branch // slab of a single target
	onePtr     [1]*branch
	best       *sip.Response // best final non-2xx response received, our Via still on top
	bestCode   int
	bestRank   int
	lastCode   int // the last branch to end, for gateway failover
	challenges []sip.Field
	answered   bool   // a final response went upstream (or the first 2xx)
	cancelled  bool   // the caller sent CANCEL
	killed     string // why an operator cancelled it (Hangup); "" when not
	got6xx     bool
	released   bool
	finalLocal bool            // the final response is one the proxy made
	acct       RequestObserver // Env.Accounting's observer, or nil
	mc         *mcall          // the relayed call, nil when not relayed
	mediaErr   error           // the media engine's refusal of a branch
}

// branch is one target of a response context (a client transaction, and
// a new one per hop when the target's hops fail over).
type branch struct {
	c         *rctx
	target    Target
	out       *sip.Request  // the prepared copy, stamped by the first attempt
	outVia    []sip.Via     // out's Via before stamp
	outRR     []sip.Address // out's Record-Route before stamp
	outFields []sip.Field   // out's fields before hopPolicy.fields
	room      *stampRoom    // out's room for the first attempt's stamp
	policy    hopPolicy     // set by start, before any attempt
	hops      Hops
	first     hopSender // the first attempt's (route.sender)

	// guarded by c.mu
	attempt     int
	id          string
	req         *sip.Request // as last sent
	r           route
	tx          *transaction.ClientTx
	responded   bool // any response to this attempt, 100 included
	provisional bool // a 101-199 response
	done        bool
	cancelling  bool
	orphan      bool
	timedOut    bool // Timer C cancelled it: its 487 counts as 408
	code        int
	timerC      transaction.Timer
	silence     transaction.Timer
	guard       transaction.Timer
	relay       bool       // its SDP goes through Env.Media
	madv        netip.Addr // the server's address towards its hop
}

// fork proxies req statefully to the target set pl (RFC 3261 §16.5-§16.7).
func (p *Proxy) fork(ctx context.Context, tx handler.ServerTx, req *sip.Request, pl plan) {
	pl = p.limit(pl)
	if len(pl.groups) == 0 {
		p.reply(tx, req, 480, "")
		return
	}
	p.mu.Lock()
	if p.pending >= p.cfg.MaxPending {
		p.mu.Unlock()
		p.met.requests.WithLabelValues("overload").Inc()
		res := p.newResponse(req, 503, "")
		res.Add("Retry-After", "5")
		_ = tx.RespondStateless(res)
		return
	}
	p.pending++
	p.mu.Unlock()
	c := &rctx{p: p, tx: tx, req: req, in: flowOf(tx), hash: p.hashOf(req), invite: req.Method == sip.INVITE, pl: pl,
		hideID: hideIdentity(req)}
	c.acct = p.observe(ctx, req, c.in)
	var ended bool
	c.mc, ended = p.mediaCall(req, c.in, pl, c)
	if ended && c.mc.isRelayed() && p.env.Media != nil {
		// The call ends: its media no longer goes through.
		p.releaseMedia(req.CallID)
	}
	p.met.requests.WithLabelValues(pl.kind).Inc()
	if c.invite {
		// §16.2: a stateful proxy answers an INVITE with 100 at once.
		_ = tx.Respond(p.newResponse(req, 100, ""))
	}
	c.mu.Lock()
	bs := c.addGroupLocked(0)
	c.mu.Unlock()
	if ct, ok := tx.(CancelTx); ok && c.invite {
		// After the branches exist: a CANCEL that came while the
		// request was routed off the worker (an ENUM lookup) runs
		// onCancel right here, and the branches never go out.
		ct.OnCancel(c.onCancel)
	}
	for _, b := range bs {
		b.start()
	}
}

// limit trims the target set to Config.MaxBranches targets, without
// empty groups.
func (p *Proxy) limit(pl plan) plan {
	n := 0
	trim := false
	for _, g := range pl.groups {
		n += len(g)
		trim = trim || len(g) == 0
	}
	if !trim && n <= p.cfg.MaxBranches {
		return pl
	}
	n = 0
	var groups [][]Target
	for _, g := range pl.groups {
		if n+len(g) > p.cfg.MaxBranches {
			g = g[:p.cfg.MaxBranches-n]
		}
		if len(g) > 0 {
			groups = append(groups, g)
		}
		n += len(g)
	}
	pl.groups = groups
	return pl
}

// addGroupLocked creates the branches of group g. The branches of every
// group are made at the first call, in one array (in the rctx itself for
// a single target, the common case), with c.branches at its final
// capacity, so a group costs no allocation.
func (c *rctx) addGroupLocked(g int) []*branch {
	c.group = g
	if c.branches == nil {
		n := 0
		for _, ts := range c.pl.groups {
			n += len(ts)
		}
		if n == 1 {
			c.slab, c.branches = c.one[:], c.onePtr[:0]
		} else {
			c.slab, c.branches = make([]branch, n), make([]*branch, 0, n)
		}
	}
	start := len(c.branches)
	for _, t := range c.pl.groups[g] {
		b := &c.slab[len(c.branches)]
		*b = branch{c: c, target: t}
		c.branches = append(c.branches, b)
	}
	// Clipped: the next group's appends never reach into it.
	return c.branches[start:len(c.branches):len(c.branches)]
}

// start prepares the branch's request and sends it to the first hop.
// When finding the hop may wait on the DNS and the resolver's cache cannot
// answer at once, the lookup happens on a goroutine of a bounded pool, so
// that a slow or dead DNS server does not hold up the worker (and every
// other call queued behind it); with the pool full it happens here. A
// CANCEL meanwhile marks the branch done, and next then sends nothing.
func (b *branch) start() {
	c, p := b.c, b.c.p
	var next sip.URI
	b.out, b.room, next = p.prepare(c.req, b.target)
	b.outVia, b.outRR, b.outFields = b.out.Via, b.out.RecordRoute, b.out.Fields
	b.policy = policyFor(c.req, b.out, next, c.pl, b.target, c.hideID)
	hops, wait, err := p.hopsNow(c.req, next, b.target)
	if wait {
		p.onLookupPool(func() {
			hops, err := p.lookupHops(next)
			b.send(next, hops, err)
		})
		return
	}
	b.send(next, hops, err)
}

// send sends the branch to the first of hops that works, or ends it with
// the answer to err, the error of finding the hops of next: 480 when
// every hop was refused for not being TLS (a sips target, see hopPolicy),
// 503 when none worked.
func (b *branch) send(next sip.URI, hops Hops, err error) {
	c, p := b.c, b.c.p
	if err != nil {
		p.log.Debug("no route for branch", "uri", next.String(), "err", err)
		c.branchDone(b, noRouteCode(err), nil)
		return
	}
	c.mu.Lock()
	b.hops = hops
	c.mu.Unlock()
	if sent, insecure := b.advance(); !sent {
		code := 503
		if insecure {
			code = 480
		}
		c.branchDone(b, code, nil)
	}
}

// next sends the branch to its next hop with a new branch parameter
// (RFC 3263 §4.3); false when no hop is left.
func (b *branch) next() bool {
	sent, _ := b.advance()
	return sent
}

// advance is next, and when no hop is left reports whether every hop it
// saw was refused by the branch's hopPolicy for not being TLS.
func (b *branch) advance() (sent, insecure bool) {
	c, p := b.c, b.c.p
	refused, unusable := 0, 0
	for {
		h, ok := b.hops.Next()
		if !ok {
			return false, refused > 0 && unusable == 0
		}
		if !b.policy.allows(h) {
			// Not a failure of the hop: it stays usable for others.
			refused++
			if p.debugging() {
				p.log.Debug("hop refused: a sips request leaves over TLS only", "hop", h.String(), "uri", b.out.URI.String())
			}
			continue
		}
		r, err := p.routeTo(h, b.target)
		if err != nil {
			unusable++
			p.log.Debug("hop unusable", "hop", h.String(), "err", err)
			b.hops.Fail(h, FailTransport)
			continue
		}
		fields := b.policy.fields(p, h, b.outFields)
		// The SDP goes through the media relay before the branch's
		// state is locked: an external engine answers over the network.
		relay, madv, body, err := c.mediaRequest(h, r)
		if err != nil {
			code, _ := mediaCode(err)
			p.log.Info("media relay refused the request's SDP", "call-id", c.req.CallID, "err", err)
			c.mu.Lock()
			c.mediaErr = err
			c.mu.Unlock()
			c.branchDone(b, code, nil)
			return true, false
		}
		c.mu.Lock()
		if b.done {
			c.mu.Unlock()
			return true, false
		}
		if b.cancelling || c.cancelled || c.answered || c.got6xx {
			// Cancelled while its lookup ran (another branch answered
			// or sent a 6xx, §16.7 step 10): it never goes out.
			c.mu.Unlock()
			c.branchDone(b, 487, nil)
			return true, false
		}
		b.attempt++
		attempt := b.attempt
		snd := r.sender(p, b, attempt)
		r.snd = snd
		// The request hash, then a number of its own (see branchPrefix).
		params, id := viaBranch(c.hash, p.branchSeq.Add(1))
		b.id = id
		// The first attempt sends the prepared request itself; a later one
		// a copy (the earlier client transaction keeps its own), with
		// the Via and Record-Route it had before stamp; each carries the
		// fields its hop may see.
		msg, room := b.out, b.room
		if b.req != nil {
			msg, room = new(sip.Request), nil
			*msg = *b.out
			msg.Via, msg.RecordRoute = b.outVia, b.outRR
		}
		msg.Fields = fields
		if relay {
			b.relay, b.madv = true, madv
			if body != nil {
				msg.Body = body
			}
		}
		p.stamp(msg, c.in, r.out, r.flow, params, room)
		b.req, b.r, b.tx = msg, r, nil
		b.responded, b.provisional = false, false // not cancelling: checked above
		b.stopTimersLocked()
		if c.invite {
			b.timerC = p.clock.AfterFunc(p.cfg.TimerC, snd.onTimerC)
		}
		if c.pl.timeout > 0 {
			b.silence = p.clock.AfterFunc(c.pl.timeout, snd.onSilence)
		}
		c.mu.Unlock()
		p.met.branches.Inc()
		if p.debugging() {
			p.log.Debug("forwarding", "method", msg.Method, "uri", msg.URI.String(), "hop", h.String(), "branch", b.id)
		}
		tx, err := p.env.Transactions.Request(msg, snd, snd.onResponse)
		c.mu.Lock()
		cancel := false
		if b.attempt == attempt {
			b.tx = tx
			// A CANCEL (ours or the caller's) that came while the
			// request was being sent found no transaction to cancel.
			cancel = b.cancelling && tx != nil
		}
		c.mu.Unlock()
		if cancel {
			tx.Cancel()
		}
		if err != nil && tx == nil {
			// Not a transport error (those come through the handler).
			p.log.Warn("client transaction not started", "err", err)
			c.branchDone(b, 500, nil)
		}
		return true, false
	}
}

// resetter is a Timer that can be re-armed, as time.Timer can: Timer C
// restarts with every provisional response (RFC 3261 §16.7 step 2).
type resetter interface {
	Reset(d time.Duration) bool
}

func (b *branch) stopTimersLocked() {
	for _, t := range []*transaction.Timer{&b.timerC, &b.silence, &b.guard} {
		if *t != nil {
			(*t).Stop()
			*t = nil
		}
	}
}

// handle is the client transaction's response handler.
func (b *branch) handle(attempt int, res *sip.Response, err error) {
	c := b.c
	c.mu.Lock()
	stale := attempt != b.attempt
	c.mu.Unlock()
	if stale {
		// An attempt given up on (silent gateway): only its 2xx matter,
		// and every 2xx is forwarded (§16.7 step 5). The branch's
		// current attempt is then cancelled like any other pending one.
		if res != nil && res.StatusCode/100 == 2 {
			c.success(b, res)
			b.cancel()
		}
		return
	}
	if err != nil {
		b.failed(err)
		return
	}
	if res.StatusCode >= 200 && res.StatusCode != 503 {
		c.mu.Lock()
		s, ok := b.hops.(succeeder)
		h := b.r.hop
		c.mu.Unlock()
		if ok {
			s.Succeed(h) // a blocked target that answers has recovered
		}
	}
	switch code := res.StatusCode; {
	case code < 200:
		c.provisional(b, res)
	case code < 300:
		c.success(b, res)
	case code == 503 && b.failoverFor(FailUnavailable, retryAfter(res)):
	case code == 487 && b.isTimedOut():
		c.branchDone(b, 408, nil)
	default:
		c.branchDone(b, code, res)
	}
}

// failover moves a branch that has had no provisional response on to its
// next hop; false when there is none (or the context is over).
func (b *branch) failover(why Failure) bool { return b.failoverFor(why, 0) }

// failoverFor is failover with how long the failed hop asked to be left
// alone (a 503's Retry-After, RFC 3261 §21.5.4); zero: the Hops' own
// choice.
func (b *branch) failoverFor(why Failure, d time.Duration) bool {
	c := b.c
	c.mu.Lock()
	ok := !b.done && !b.provisional && !c.cancelled && !c.answered && !c.got6xx && b.hops != nil
	h := b.r.hop
	c.mu.Unlock()
	if !ok {
		return false
	}
	if ff, ok := b.hops.(failForer); ok && d > 0 {
		ff.FailFor(h, why, d)
	} else {
		b.hops.Fail(h, why)
	}
	c.p.met.failovers.Inc()
	return b.next()
}

// failForer is a Hops that can avoid a failed hop for a given time.
type failForer interface {
	FailFor(h Hop, why Failure, d time.Duration)
}

// maxRetryAfter bounds how long a 503's Retry-After keeps a hop off: a
// peer must not take itself out of rotation for days by mistake.
const maxRetryAfter = time.Hour

// retryAfter reads a response's Retry-After delta-seconds (RFC 3261
// §20.33); zero when absent or unusable.
func retryAfter(res *sip.Response) time.Duration {
	v := res.Get("Retry-After")
	if i := strings.IndexAny(v, " \t;("); i >= 0 {
		v = v[:i]
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, maxRetryAfter)
}

// failed handles a timeout or transport error of the client transaction
// (§16.7 step... and §16.9: a transport error counts as 503, a timeout as
// 408).
func (b *branch) failed(err error) {
	c, p := b.c, b.c.p
	why, code := FailTransport, 503
	if errors.Is(err, transaction.ErrTimeout) {
		why, code = FailTimeout, 408
	}
	c.mu.Lock()
	if b.done {
		c.mu.Unlock()
		return
	}
	if why == FailTimeout && c.invite && b.provisional && !b.cancelling {
		// The transaction layer ran Timer B in Proceeding, where RFC 3261
		// §17.1.1.2 has none: the branch lives on under Timer C, its
		// responses come in as strays. A cancelled branch's transaction
		// that times out has waited 64*T1 after its CANCEL (§9.1): that
		// branch is over, as the guard of cancel would also decide.
		b.orphan = true
		id := b.id
		c.mu.Unlock()
		p.addOrphan(id, b)
		return
	}
	responded := b.responded
	c.mu.Unlock()
	if !responded && b.failover(why) {
		return
	}
	c.branchDone(b, code, nil)
}

// provisional forwards a 101-199 response upstream (§16.7 step 5) and
// restarts Timer C (step 2).
func (c *rctx) provisional(b *branch, res *sip.Response) {
	p := c.p
	c.mu.Lock()
	b.responded = true
	if b.silence != nil {
		b.silence.Stop()
		b.silence = nil
	}
	forward := false
	if res.StatusCode > 100 && !b.done {
		b.provisional = true
		if c.invite && b.timerC != nil {
			if r, ok := b.timerC.(resetter); ok {
				r.Reset(p.cfg.TimerC) // time.Timer's: no new timer per 18x
			} else {
				b.timerC.Stop()
				b.timerC = p.clock.AfterFunc(p.cfg.TimerC, b.r.snd.onTimerC)
			}
		}
		forward = !c.answered
	}
	c.mu.Unlock()
	if forward {
		if fwd := stripVia(res); fwd != nil {
			fwd = c.mediaResponse(b, fwd)
			_ = c.tx.Respond(fwd)
			if po, ok := c.acct.(ProvisionalObserver); ok {
				po.Provisional(fwd)
			}
		}
	}
}

// success forwards a 2xx at once, every one of them (§16.7 step 5), and
// cancels the other branches after the first (step 10).
func (c *rctx) success(b *branch, res *sip.Response) {
	p := c.p
	c.mu.Lock()
	b.responded = true
	orphan := ""
	if !b.done {
		b.done = true
		b.code = res.StatusCode
		b.stopTimersLocked()
		if b.orphan {
			orphan = b.id
		}
	}
	first := !c.answered
	c.answered = true
	var others []*branch
	if first {
		others = c.pendingLocked()
	}
	c.mu.Unlock()
	if orphan != "" {
		p.removeOrphan(orphan)
	}
	if fwd := stripVia(res); fwd != nil {
		c.upstream(c.mediaResponse(b, fwd), b)
	}
	if first {
		p.met.responses.WithLabelValues("2xx").Inc()
		for _, o := range others {
			o.cancel()
		}
		c.endKilled()
	}
	c.maybeRelease()
}

// pendingLocked returns the branches without a final response.
func (c *rctx) pendingLocked() []*branch {
	var out []*branch
	for _, b := range c.branches {
		if !b.done {
			out = append(out, b)
		}
	}
	return out
}

// branchDone records a final non-2xx outcome of a branch (code with res,
// or code alone for a timeout, transport error or no route) and moves the
// context on.
func (c *rctx) branchDone(b *branch, code int, res *sip.Response) {
	p := c.p
	c.mu.Lock()
	if b.done {
		c.mu.Unlock()
		return
	}
	b.done = true
	b.code = code
	b.stopTimersLocked()
	orphan := ""
	if b.orphan {
		orphan = b.id
	}
	c.recordLocked(code, res)
	c.lastCode = code
	var cancel []*branch
	if code >= 600 && !c.got6xx {
		// §16.7 step 5: a 6xx ends the search; cancel the rest.
		c.got6xx = true
		cancel = c.pendingLocked()
	}
	next, final := c.settleLocked()
	c.mu.Unlock()
	if orphan != "" {
		p.removeOrphan(orphan)
	}
	for _, o := range cancel {
		o.cancel()
	}
	for _, nb := range next {
		nb.start()
	}
	if final != nil {
		c.sendFinal(final)
	}
	c.maybeRelease()
}

// settleLocked, once no branch is pending, starts the next group of
// targets or picks the final response (§16.7 step 4 and 6).
func (c *rctx) settleLocked() (next []*branch, final *sip.Response) {
	if c.answered || len(c.pendingLocked()) > 0 {
		return nil, nil
	}
	if !c.cancelled && !c.got6xx && c.group+1 < len(c.pl.groups) && c.pl.advance(c.lastCode) {
		c.p.met.failovers.Inc()
		return c.addGroupLocked(c.group + 1), nil
	}
	c.answered = true
	return nil, c.finalLocked()
}

// rank orders final responses for §16.7 step 6: 6xx first, then the
// lowest class, 401/407/415/420/484 ahead of other 4xx; codes made up
// locally (no response at all) last.
func rank(code int, local bool) int {
	switch {
	case local:
		return 5
	case code >= 600:
		return 0
	case code < 400:
		return 1
	case code == 401 || code == 407 || code == 415 || code == 420 || code == 484:
		return 2
	case code < 500:
		return 3
	}
	return 4
}

// recordLocked keeps the best final response and the challenges of every
// 401 and 407 (§16.7 step 7).
func (c *rctx) recordLocked(code int, res *sip.Response) {
	if res != nil && (code == 401 || code == 407) {
		for _, f := range res.Fields {
			switch sip.CanonicalName(f.Name) {
			case "WWW-Authenticate", "Proxy-Authenticate":
				c.challenges = append(c.challenges, f)
			}
		}
	}
	r := rank(code, res == nil)
	if c.bestCode == 0 || r < c.bestRank {
		c.best, c.bestCode, c.bestRank = res, code, r
	}
}

// finalLocked builds the response that goes upstream: the best one
// (§16.7 step 6), 487 when the caller cancelled, 500 for a 503 (a 503
// upstream would mean this proxy is unavailable), with every collected
// challenge on a 401 or 407 (step 7).
func (c *rctx) finalLocked() *sip.Response {
	p := c.p
	if c.cancelled && c.bestCode < 600 && c.bestCode != 487 {
		c.finalLocal = true
		return p.newResponse(c.req, 487, "")
	}
	var res *sip.Response
	if c.best != nil {
		res = stripVia(c.best)
	}
	if res == nil && c.mediaErr != nil {
		// The relay refused the call's SDP: the proxy's own 400, or a
		// 503 with Retry-After when it has no ports (not a peer's 503,
		// which becomes 500 below).
		if code, reason := mediaCode(c.mediaErr); code == c.bestCode {
			c.finalLocal = true
			res = p.newResponse(c.req, code, reason)
			if code == 503 {
				res.Add("Retry-After", "5")
			}
			return res
		}
	}
	if res == nil {
		code := c.bestCode
		if code == 0 {
			code = 408
		}
		c.finalLocal = true
		res = p.newResponse(c.req, code, "")
	}
	if res.StatusCode == 503 {
		r := *res
		r.StatusCode, r.Reason = 500, sip.StatusText(500)
		res = &r
	}
	if res.StatusCode == 401 || res.StatusCode == 407 {
		r := *res
		kept := make([]sip.Field, 0, len(r.Fields)+len(c.challenges))
		for _, f := range r.Fields {
			switch sip.CanonicalName(f.Name) {
			case "WWW-Authenticate", "Proxy-Authenticate":
			default:
				kept = append(kept, f)
			}
		}
		r.Fields = append(kept, c.challenges...)
		res = &r
	}
	return res
}

func (c *rctx) sendFinal(res *sip.Response) {
	p := c.p
	p.met.responses.WithLabelValues(classLabel(res.StatusCode)).Inc()
	if p.debugging() {
		p.log.Debug("final response", "call-id", c.req.CallID, "method", c.req.Method, "code", res.StatusCode)
	}
	c.upstream(res, nil)
}

// onCancel is the server transaction's CANCEL reaction (§16.10): no new
// branches, CANCEL to every pending one; branches that have not answered
// at all are given up at once (their CANCEL goes out if they ever send a
// provisional response, §9.1).
func (c *rctx) onCancel() {
	c.mu.Lock()
	if c.answered {
		c.mu.Unlock()
		return
	}
	c.cancelled = true
	var cancel []*branch
	for _, b := range c.branches {
		if b.done {
			continue
		}
		if !b.responded {
			b.done = true
			b.code = 487
			b.stopTimersLocked()
			c.recordLocked(487, nil)
		}
		cancel = append(cancel, b)
	}
	next, final := c.settleLocked()
	c.mu.Unlock()
	for _, b := range cancel {
		b.cancel()
	}
	for _, nb := range next {
		nb.start()
	}
	if final != nil {
		c.sendFinal(final)
	}
	c.maybeRelease()
}

// cancel sends CANCEL on the branch (RFC 3261 §9.1, through the client
// transaction, which waits for a provisional response first). A branch
// that does not end within 64*T1 after it counts as 408.
func (b *branch) cancel() {
	c, p := b.c, b.c.p
	c.mu.Lock()
	if b.cancelling {
		c.mu.Unlock()
		return
	}
	b.cancelling = true
	tx, orphan, req, snd, attempt := b.tx, b.orphan, b.req, b.r.snd, b.attempt
	if !b.done && b.guard == nil {
		b.guard = p.clock.AfterFunc(64*p.t1, func() { b.giveUp(attempt) })
	}
	c.mu.Unlock()
	p.met.cancels.Inc()
	switch {
	case orphan && req != nil:
		// The client transaction is gone (see failed): CANCEL directly.
		_, _ = p.env.Transactions.Request(transaction.NewCANCEL(req), snd, nil)
	case tx != nil:
		tx.Cancel()
	}
}

func (b *branch) isTimedOut() bool {
	b.c.mu.Lock()
	defer b.c.mu.Unlock()
	return b.timedOut
}

func (b *branch) giveUp(attempt int) {
	c := b.c
	c.mu.Lock()
	ok := b.attempt == attempt && !b.done
	c.mu.Unlock()
	if ok {
		c.branchDone(b, 408, nil)
	}
}

// onTimerC is Timer C (§16.8): a branch with a provisional response is
// cancelled; one without behaves as if it got 408.
func (b *branch) onTimerC(attempt int) {
	c, p := b.c, b.c.p
	c.mu.Lock()
	if b.done || b.attempt != attempt {
		c.mu.Unlock()
		return
	}
	prov := b.provisional
	b.timedOut = true
	c.mu.Unlock()
	p.met.timerC.Inc()
	p.log.Debug("timer C", "call-id", c.req.CallID, "branch", b.id, "provisional", prov)
	b.cancel()
	if !prov {
		c.branchDone(b, 408, nil)
	}
}

// onSilence: a gateway that sent nothing at all within the rule's
// timeout; the next hop or gateway is tried.
func (b *branch) onSilence(attempt int) {
	c := b.c
	c.mu.Lock()
	if b.done || b.attempt != attempt || b.responded {
		c.mu.Unlock()
		return
	}
	tx := b.tx
	c.mu.Unlock()
	if tx != nil {
		tx.Cancel() // goes out only if a provisional response comes after all
	}
	if b.failover(FailTimeout) {
		return
	}
	c.branchDone(b, 408, nil)
}

// maybeRelease frees the context once the final response went upstream
// and every branch has ended.
func (c *rctx) maybeRelease() {
	c.mu.Lock()
	if c.released || !c.answered || len(c.pendingLocked()) > 0 {
		c.mu.Unlock()
		return
	}
	c.released = true
	// The targets are done with; the context itself lives on while its
	// client transactions wait in Accepted or Completed (64*T1, 32 s):
	// they hold no more than they need.
	c.pl.groups = nil
	c.mu.Unlock()
	c.p.mu.Lock()
	c.p.pending--
	c.p.mu.Unlock()
}

// stripVia removes the top Via of res (§16.7 step 3) and returns res, or
// nil, leaving res alone, when no Via would be left. It changes res in
// place rather than copying the message: a response the transaction layer
// passed up (or the server handed over as stray) is the proxy's, nothing
// else reads it afterwards, and this one goes upstream.
func stripVia(res *sip.Response) *sip.Response {
	if res == nil || len(res.Via) < 2 {
		return nil
	}
	res.Via = res.Via[1:]
	return res
}

// --- branches whose client transaction ended under them ---

func (p *Proxy) addOrphan(id string, b *branch) {
	p.mu.Lock()
	p.orphans[id] = b
	p.mu.Unlock()
}

func (p *Proxy) orphan(id string) *branch {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.orphans[id]
}

func (p *Proxy) removeOrphan(id string) {
	p.mu.Lock()
	delete(p.orphans, id)
	p.mu.Unlock()
}

// orphanResponse handles a response to a branch whose client transaction
// is gone: a final non-2xx is ACKed here (§17.1.1.3), then it goes where
// the transaction would have passed it.
func (b *branch) orphanResponse(res *sip.Response) {
	c := b.c
	c.mu.Lock()
	attempt, req, snd := b.attempt, b.req, b.r.snd
	c.mu.Unlock()
	if res.StatusCode >= 300 && req != nil {
		_ = snd.Send(transaction.NewACK(req, res))
	}
	b.handle(attempt, res, nil)
}
