package ua

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/dialog"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
)

// CallState is where a call stands.
type CallState int

// Call states.
const (
	// Calling: an outgoing INVITE has no provisional response with a
	// dialog yet; or an incoming INVITE is not yet answered at all.
	Calling CallState = iota
	// Early: an early dialog exists (RFC 3261 §12.1).
	Early
	// Established: the 2xx was sent or received.
	Established
	// Ended: the call is over; Err says why.
	Ended
)

// String returns the state's name.
func (s CallState) String() string {
	switch s {
	case Calling:
		return "calling"
	case Early:
		return "early"
	case Established:
		return "established"
	case Ended:
		return "ended"
	}
	return "CallState(" + strconv.Itoa(int(s)) + ")"
}

// Errors that end calls.
var (
	// ErrCancelled is a call cancelled before it was answered (RFC 3261
	// §9): the caller gave up, or a 2xx crossed the CANCEL and the call
	// was ACKed and hung up at once.
	ErrCancelled = errors.New("ua: call cancelled")
	// ErrNoACK is a 2xx that was retransmitted for 64*T1 without an ACK:
	// the call was ended with BYE (RFC 3261 §13.3.1.4).
	ErrNoACK = errors.New("ua: no ACK for the 2xx")
	// ErrNoPRACK is a reliable provisional response that was not PRACKed
	// within 64*T1: the INVITE was rejected with 500 (RFC 3262 §3).
	ErrNoPRACK = errors.New("ua: no PRACK for the reliable provisional response")
	// ErrRemoteHangup is a call the peer ended with BYE.
	ErrRemoteHangup = errors.New("ua: remote hung up")
	// ErrState is a method called in a state that does not allow it.
	ErrState = errors.New("ua: not allowed in this call state")
)

// Call is one call, outgoing (UA.Call, UA.CallWith) or incoming
// (Config.OnCall). Its methods are safe for concurrent use.
type Call struct {
	u        *UA
	outgoing bool
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	sessID   uint64

	mu         sync.Mutex
	state      CallState
	err        error
	d          *dialog.Dialog               // the established (or first early) dialog
	forks      map[dialog.ID]*dialog.Dialog // UAC: every dialog the INVITE made
	invite     *sip.Request                 // the INVITE (UAC: the last one sent)
	itx        *transaction.ClientTx
	isnd       *sender
	cancelReq  bool
	ack        *sip.Request // UAC: the ACK for the 2xx, re-sent for retransmissions
	ackSnd     *sender
	localSDP   []byte
	remoteSDP  []byte
	sdpVersion uint64
	reinviting bool
	offering   bool     // an offer handler is answering a peer's offer (OnOffer)
	tasks      []func() // sends waiting for the call's sender goroutine
	sending    bool     // the sender goroutine runs

	// Set by CallOptions and the offer handler setters.
	noOffer  bool
	answerFn func([]byte) ([]byte, error)
	onProv   func(*sip.Response)
	onOffer  func([]byte) ([]byte, error)
	onAnswer func([]byte)

	// UAS
	stx      *transaction.ServerTx
	tag      string
	reliable bool
	answered bool
	rel      *reliableProv
	ok       *okRetransmit
	bound    bool
	kept     bool // OnCall passed the call on (Keep)
}

// maxTasks bounds the sends a call may have waiting; beyond it, sends a
// peer can provoke at will (ACKs for retransmitted 2xx, PRACKs) are
// dropped.
const maxTasks = 32

// run queues f to run after the call's earlier sends, on a goroutine the
// call starts when it has something to send and that ends when nothing is
// left: what needs a name lookup or a dial never runs on a worker, and
// the call's sends keep the order in which the worker decided them (PRACK
// before the ACK, the ACK before the BYE). A must task ignores maxTasks.
// run reports false when f was dropped: queue full, or the UA closed.
func (c *Call) run(f func(), must bool) bool {
	c.mu.Lock()
	if len(c.tasks) >= maxTasks && !must {
		c.mu.Unlock()
		c.u.log.Debug("call sends queue full, dropping one", "call-id", c.callIDLocked())
		return false
	}
	c.tasks = append(c.tasks, f)
	start := !c.sending
	c.sending = true
	c.mu.Unlock()
	if start && !c.u.spawn(c.runTasks) {
		c.mu.Lock()
		c.tasks, c.sending = nil, false
		c.mu.Unlock()
		return false
	}
	return true
}

func (c *Call) runTasks() {
	for {
		c.mu.Lock()
		if len(c.tasks) == 0 {
			c.tasks, c.sending = nil, false
			c.mu.Unlock()
			return
		}
		f := c.tasks[0]
		c.tasks[0] = nil
		c.tasks = c.tasks[1:]
		c.mu.Unlock()
		f()
	}
}

// retransmission is a response to an INVITE sent again until it is
// acknowledged (acked closes): timer fires after interval, which starts
// at T1 and grows; giveUp fires after 64*T1.
type retransmission struct {
	res      *sip.Response
	cseq     uint32 // the INVITE's
	interval time.Duration
	timer    transaction.Timer
	giveUp   transaction.Timer
	acked    chan struct{}
}

// start arms both timers. Called with c.mu held.
func (r *retransmission) start(cfg *Config, resend, timeout func()) {
	r.interval = cfg.T1
	r.acked = make(chan struct{})
	r.timer = cfg.Clock.AfterFunc(r.interval, resend)
	r.giveUp = cfg.Clock.AfterFunc(64*cfg.T1, timeout)
}

// stop stops both timers. Called with c.mu held.
func (r *retransmission) stop() {
	stopTimer(r.timer)
	stopTimer(r.giveUp)
}

// reliableProv is a reliable provisional response awaiting its PRACK
// (RFC 3262 §3).
type reliableProv struct {
	retransmission
	rseq uint32
}

// okRetransmit is a 2xx to an INVITE awaiting its ACK (RFC 3261
// §13.3.1.4).
type okRetransmit struct {
	retransmission
	stx     *transaction.ServerTx
	failed  chan struct{}
	offered bool // the 2xx carried an offer: the ACK carries the answer
	hooked  bool // the 2xx came from the offer handler (OnAnswer hears the ACK's answer)
}

func newCall(u *UA, outgoing bool) *Call {
	c := &Call{u: u, outgoing: outgoing, done: make(chan struct{}), sessID: rand.Uint64N(1 << 62), sdpVersion: 1}
	c.ctx, c.cancel = context.WithCancel(u.ctx)
	return c
}

// IsIncoming reports a call the peer placed.
func (c *Call) IsIncoming() bool { return !c.outgoing }

// State returns the call's state.
func (c *Call) State() CallState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Done is closed when the call has ended.
func (c *Call) Done() <-chan struct{} { return c.done }

// Context is canceled when the call ends or the UA closes.
func (c *Call) Context() context.Context { return c.ctx }

// Err says why the call ended: nil for a local hangup, ErrRemoteHangup,
// ErrCancelled, a *StatusError, ... It is nil while the call lasts.
func (c *Call) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Dialog returns the call's dialog, or nil before there is one.
func (c *Call) Dialog() *dialog.Dialog {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.d
}

// Request returns the INVITE: the one received, or the last one sent.
func (c *Call) Request() *sip.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.invite
}

// LocalSDP returns the session description this side sent last.
func (c *Call) LocalSDP() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.localSDP
}

// RemoteSDP returns the session description the peer sent last.
func (c *Call) RemoteSDP() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remoteSDP
}

// end finishes the call once: timers stop, dialogs leave the tables.
func (c *Call) end(err error) {
	c.mu.Lock()
	if c.state == Ended {
		c.mu.Unlock()
		return
	}
	c.state = Ended
	c.err = err
	if c.rel != nil {
		c.rel.stop()
		c.rel = nil
	}
	if c.ok != nil {
		c.ok.stop()
		c.ok = nil
	}
	ds := make([]*dialog.Dialog, 0, len(c.forks)+1)
	if c.d != nil {
		ds = append(ds, c.d)
	}
	for _, d := range c.forks {
		if d != c.d {
			ds = append(ds, d)
		}
	}
	c.mu.Unlock()
	for _, d := range ds {
		d.Terminate()
		c.u.unbindDialog(d)
	}
	c.u.removeCall(c)
	c.cancel()
	close(c.done)
	c.u.log.Debug("call ended", "call-id", c.callID(), "err", err)
}

func (c *Call) callID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.callIDLocked()
}

func (c *Call) callIDLocked() string {
	if c.invite != nil {
		return c.invite.CallID
	}
	return ""
}

func stopTimer(t transaction.Timer) {
	if t != nil {
		t.Stop()
	}
}

func deliver(ch chan result, r result) {
	select {
	case ch <- r:
	default:
	}
}

// --- UAC ---

// Call places a call to target (RFC 3261 §13.2): an INVITE with an SDP
// offer, answering digest challenges, PRACKing reliable provisional
// responses (RFC 3262 §4), ACKing the 2xx (§13.2.2.4). It returns once the
// call is established, or fails with the final response as *StatusError,
// ErrTimeout or ErrTransport. When ctx ends first the INVITE is cancelled
// (§9.1) and Call waits for its final response, then returns ctx's error;
// a 2xx that crossed the CANCEL is ACKed and the call hung up with BYE.
func (u *UA) Call(ctx context.Context, target string) (*Call, error) {
	return u.CallWith(ctx, target, CallOptions{})
}

// CallWith places a call as Call does, changed by o: another offer or
// none, another From, a chosen Call-ID, extra header fields, provisional
// responses reported, in-dialog offers handed to a handler. An o that
// fails its checks returns an error wrapping ErrOptions before anything
// is sent.
func (u *UA) CallWith(ctx context.Context, target string, o CallOptions) (*Call, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	uri, err := parseTarget(target, u.aor.Host)
	if err != nil {
		return nil, fmt.Errorf("ua: target %q: %w", target, err)
	}
	c := newCall(u, true)
	c.noOffer, c.answerFn, c.onProv = o.NoOffer, o.AnswerOffer, o.OnProvisional
	c.onOffer, c.onAnswer = o.OnOffer, o.OnAnswer
	if err := u.addCall(c, false); err != nil {
		return nil, err
	}
	proto := u.newRequest(sip.INVITE, uri)
	if o.CallID != "" {
		proto.CallID = o.CallID
	}
	if o.From != nil {
		tag := proto.From.Tag()
		proto.From = *o.From
		proto.From.Params = proto.From.Params.Set("tag", tag)
	}
	switch {
	case o.NoOffer:
	case len(o.Offer) > 0:
		c.localSDP = o.Offer
	default:
		c.localSDP = Offer(u.mediaHost(), u.cfg.MediaPort, c.sessID, c.sdpVersion)
	}
	if c.localSDP != nil {
		proto.ContentType = ContentTypeSDP
		proto.Body = c.localSDP
	}
	if o.NoOffer {
		// No 100rel: a reliable provisional response would have to carry
		// the offer, and its PRACK the answer (RFC 3262 §5).
		u.capabilitiesWith(&proto.Header, "replaces")
	} else {
		u.capabilities(&proto.Header)
		if u.cfg.Rel100 == Rel100Require {
			proto.Add("Require", "100rel")
		}
	}
	for _, f := range o.Headers {
		proto.Add(f.Name, f.Value)
	}
	var auth *authCache
	var lastNonce string
	var rd redirects
	var hs *hops   // the next hops of the current target (RFC 3263 §4.3)
	failovers := 0 // attempts that went to the next hop, not digest rounds
	for attempt := 0; ; attempt++ {
		req := *proto
		req.Fields = append([]sip.Field(nil), proto.Fields...)
		req.CSeq.Seq = proto.CSeq.Seq + uint32(attempt)
		var h hop
		var err error
		if rd.proxy != nil {
			h, err = u.resolveHop(ctx, *rd.proxy)
		} else {
			h, err = u.nextHop(ctx, &hs, &req, 0)
		}
		if err != nil {
			c.end(err)
			return nil, err
		}
		u.stamp(&req, h.proto)
		if auth != nil {
			if v, err := u.credentials(&req, auth.ch, 1); err == nil {
				req.Set(auth.header, v)
			}
		}
		s := u.newSender(h, u.lookupConn(h), nil)
		final := make(chan result, 1)
		c.mu.Lock()
		c.invite, c.isnd = &req, s
		c.mu.Unlock()
		tx, err := u.layer.Request(&req, s, c.inviteHandler(&req, s, final))
		if err != nil && tx == nil {
			c.end(err)
			return nil, err
		}
		sendErr := err // a failed first send: the handler has ErrTransport
		c.mu.Lock()
		c.itx = tx
		cancelNow := c.cancelReq
		c.mu.Unlock()
		if cancelNow && tx != nil {
			tx.Cancel()
		}
		var r result
		select {
		case r = <-final:
		case <-ctx.Done():
			c.requestCancel()
			select {
			case r = <-final:
			case <-c.done:
				return nil, ctx.Err()
			}
		case <-c.done:
			return nil, c.Err()
		}
		if sendErr != nil && errors.Is(r.err, ErrTransport) {
			r.err = fmt.Errorf("%w: %v", ErrTransport, sendErr)
		}
		if why := failure(r.res, r.err); why != 0 && ctx.Err() == nil && rd.proxy == nil && hs != nil && hs.failover(why) {
			u.log.Debug("next hop", "after", why.String(), "hop", hs.h.remote.String())
			failovers++
			c.restart()
			continue
		}
		if r.err != nil {
			c.end(r.err)
			return nil, r.err
		}
		res := r.res
		if hs != nil && res.StatusCode != 503 {
			hs.succeed()
		}
		if res.StatusCode < 300 {
			if ctx.Err() != nil {
				return nil, ctx.Err() // the 2xx crossed the CANCEL: hung up
			}
			return c, nil
		}
		if res.StatusCode < 400 && ctx.Err() == nil && !o.NoRedirect && rd.follow(res, proto) {
			hs = nil // a new target
			c.restart()
			continue
		}
		if (res.StatusCode == 401 || res.StatusCode == 407) && attempt-failovers < 2+rd.n && u.cfg.Password != "" && ctx.Err() == nil {
			if ch, header := pickChallenge(res); ch != nil && (ch.Nonce != lastNonce || ch.Stale) {
				lastNonce = ch.Nonce
				auth = &authCache{ch: ch, header: header}
				c.restart()
				continue
			}
		}
		err = statusError(res)
		if ctx.Err() != nil && res.StatusCode == 487 {
			err = ErrCancelled
		}
		c.end(err)
		if errors.Is(err, ErrCancelled) {
			return nil, fmt.Errorf("%w: %w", ctx.Err(), statusError(res))
		}
		return nil, err
	}
}

// restart readies the call for another INVITE after a final response
// (a digest challenge, a redirection): that response ended the early
// dialogs of the last one, which leave the call and the UA's tables, and
// the call is Calling again.
func (c *Call) restart() {
	c.mu.Lock()
	forks := c.forks
	c.forks, c.d = nil, nil
	if c.state == Early {
		c.state = Calling
	}
	c.mu.Unlock()
	for _, d := range forks {
		d.Terminate()
		c.u.unbindDialog(d)
	}
}

// mediaHost is the address written in SDP.
func (u *UA) mediaHost() string { return u.contact.URI.Host }

// requestCancel asks for a CANCEL of the pending INVITE (RFC 3261 §9.1);
// the transaction sends it once a provisional response has arrived.
func (c *Call) requestCancel() {
	c.mu.Lock()
	c.cancelReq = true
	tx := c.itx
	c.mu.Unlock()
	if tx != nil {
		tx.Cancel()
	}
}

// inviteHandler processes the responses to the call's INVITE.
func (c *Call) inviteHandler(req *sip.Request, s *sender, final chan result) transaction.ResponseHandler {
	u := c.u
	return func(res *sip.Response, err error) {
		if err != nil {
			deliver(final, result{err: txError(err)})
			return
		}
		u.trace(req, res)
		code := res.StatusCode
		switch {
		case code == 100:
		case code < 200:
			if c.forksFull(res) {
				u.log.Debug("provisional response from a fork beyond MaxForks ignored", "call-id", res.CallID)
				return
			}
			if c.onProv != nil {
				c.onProv(res)
			}
			d, created, err := u.dlgs.Response(req, res)
			if err != nil || d == nil {
				return
			}
			c.mu.Lock()
			if created {
				if c.forks == nil {
					c.forks = map[dialog.ID]*dialog.Dialog{}
				}
				c.forks[d.ID()] = d
				if conn := s.Conn(); conn != nil {
					d.SetConn(conn)
				}
			}
			if c.state == Calling {
				c.state = Early
			}
			if c.d == nil {
				c.d = d
			}
			c.mu.Unlock()
			if created {
				u.mu.Lock()
				u.byDialog[d.ID()] = c
				u.mu.Unlock()
			}
			if dialog.IsReliable(res) {
				rseq, err := dialog.ParseRSeq(res.Get("RSeq"))
				if err == nil && d.AcceptRSeq(rseq) {
					if len(res.Body) > 0 && res.ContentType == ContentTypeSDP {
						c.mu.Lock()
						c.remoteSDP = res.Body
						c.mu.Unlock()
					}
					c.run(func() { c.sendPRACK(d, res) }, false)
				}
			}
		case code < 300:
			c.accepted(req, res, final)
		default:
			c.mu.Lock()
			forks := c.forks
			c.mu.Unlock()
			for _, d := range forks {
				d.Terminate()
				u.unbindDialog(d)
			}
			deliver(final, result{res: res})
		}
	}
}

// forksFull reports a response with a To tag the call has no dialog for
// while it holds Config.MaxForks dialogs already.
func (c *Call) forksFull(res *sip.Response) bool {
	if res.To.Tag() == "" {
		return false
	}
	id := dialog.IDForResponse(res)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.forks[id] == nil && len(c.forks) >= c.u.cfg.MaxForks
}

// accepted handles a 2xx to the initial INVITE (RFC 3261 §13.2.2.4): the
// dialog is confirmed and ACKed; a retransmission is ACKed again; a 2xx
// from a second fork is ACKed and hung up; and when the call was cancelled
// meanwhile, the call is ACKed and hung up at once. It runs on a worker:
// the sends, which may need a lookup or a dial, run on the call's sender
// goroutine, and the first 2xx reaches final once its ACK is sent, so
// that no request of the caller's overtakes the ACK.
func (c *Call) accepted(req *sip.Request, res *sip.Response, final chan result) {
	u := c.u
	c.mu.Lock()
	again := c.ack != nil
	c.mu.Unlock()
	if again && c.forksFull(res) {
		// A fork beyond MaxForks answered too: ACK and BYE it without
		// keeping its dialog.
		if d, err := dialog.NewUAC(req, res); err == nil {
			c.run(func() { c.ackAndBye(d, req, false) }, false)
		}
		return
	}
	d, created, err := u.dlgs.Response(req, res)
	if err != nil || d == nil {
		u.log.Debug("2xx without a usable dialog", "err", err)
		return
	}
	c.mu.Lock()
	if c.forks == nil {
		c.forks = map[dialog.ID]*dialog.Dialog{}
	}
	c.forks[d.ID()] = d
	if created {
		if conn := c.isnd.Conn(); conn != nil {
			d.SetConn(conn)
		}
	}
	if c.ack != nil {
		first := c.d
		c.mu.Unlock()
		if first == d {
			seq := res.CSeq.Seq
			c.run(func() { c.sendACK(seq) }, false) // a retransmitted 2xx
			return
		}
		// Another fork answered too: ACK it, then BYE it (§13.2.2.4).
		u.mu.Lock()
		u.byDialog[d.ID()] = c
		u.mu.Unlock()
		c.run(func() { c.ackAndBye(d, req, true) }, false)
		return
	}
	c.d = d
	cancelled := c.cancelReq || c.state == Ended
	if !cancelled {
		c.state = Established
	}
	if len(res.Body) > 0 {
		c.remoteSDP = res.Body
	}
	ack := d.NewACK(req)
	c.ack = ack
	noOffer := c.noOffer
	var early []*dialog.Dialog
	for id, o := range c.forks {
		if o != d && o.State() == dialog.Early {
			early = append(early, o)
			delete(c.forks, id)
		}
	}
	c.mu.Unlock()
	u.mu.Lock()
	u.byDialog[d.ID()] = c
	u.mu.Unlock()
	for _, o := range early {
		o.Terminate()
		u.unbindDialog(o)
	}
	sent := c.run(func() {
		// An INVITE without an offer: the 2xx has it, the ACK answers
		// (RFC 3264 §4). The retransmissions' ACKs wait for this one,
		// queued behind it on the call's sender.
		var badOffer error
		if noOffer {
			answer, err := c.answerTo(res.Body)
			if err != nil {
				badOffer = fmt.Errorf("ua: answer the offer of the 2xx: %w", err)
			} else {
				ack.ContentType, ack.Body = ContentTypeSDP, answer
				c.mu.Lock()
				c.localSDP = answer
				c.mu.Unlock()
			}
		}
		snd, err := u.dialogSender(u.ctx, d, ack)
		if err != nil {
			u.log.Warn("cannot send ACK", "call-id", res.CallID, "err", err)
			c.end(err)
			deliver(final, result{err: err})
			return
		}
		u.stamp(ack, snd.hop.proto)
		c.mu.Lock()
		c.ackSnd = snd
		c.mu.Unlock()
		_ = snd.Send(ack)
		if badOffer != nil && !cancelled {
			// §13.2.2.4: an offer the UAC cannot accept is ended with
			// BYE right after the ACK.
			c.sendBye(d, badOffer)
			deliver(final, result{err: badOffer})
			return
		}
		if cancelled {
			// The 2xx crossed our CANCEL: the dialog exists, is ACKed,
			// and is ended at once.
			c.sendBye(d, ErrCancelled)
		}
		deliver(final, result{res: res})
	}, true)
	if !sent {
		c.end(ErrClosed)
		deliver(final, result{err: ErrClosed})
	}
}

// ackAndBye confirms a dialog the call does not want and ends it; bound
// says the dialog is in the UA's tables. It runs on the call's sender.
func (c *Call) ackAndBye(d *dialog.Dialog, invite *sip.Request, bound bool) {
	u := c.u
	ack := d.NewACK(invite)
	snd, err := u.dialogSender(u.ctx, d, ack)
	if err != nil {
		return
	}
	u.stamp(ack, snd.hop.proto)
	_ = snd.Send(ack)
	bye := d.NewRequest(sip.BYE)
	bsnd, err := u.dialogSender(u.ctx, d, bye)
	if err != nil {
		return
	}
	u.stamp(bye, bsnd.hop.proto)
	_, _ = u.layer.Request(bye, bsnd, func(res *sip.Response, err error) {
		if err != nil || res.StatusCode >= 200 {
			d.Terminate()
			if bound {
				u.unbindDialog(d)
			}
		}
	})
}

// resendACK answers a 2xx retransmission that outlived its transaction.
func (c *Call) resendACK(res *sip.Response) {
	seq := res.CSeq.Seq
	c.run(func() { c.sendACK(seq) }, false)
}

// sendACK sends the ACK for the 2xx again if it acknowledges CSeq seq. It
// runs on the call's sender, after the first ACK.
func (c *Call) sendACK(seq uint32) {
	c.mu.Lock()
	ack, snd := c.ack, c.ackSnd
	c.mu.Unlock()
	if ack != nil && snd != nil && ack.CSeq.Seq == seq {
		_ = snd.Send(ack)
	}
}

// sendPRACK acknowledges a reliable provisional response (RFC 3262 §4).
// It runs on the call's sender.
func (c *Call) sendPRACK(d *dialog.Dialog, res *sip.Response) {
	u := c.u
	prack, err := d.NewPRACK(res)
	if err != nil {
		return
	}
	s, err := u.dialogSender(u.ctx, d, prack)
	if err != nil {
		u.log.Debug("cannot send PRACK", "err", err)
		return
	}
	u.stamp(prack, s.hop.proto)
	_, _ = u.layer.Request(prack, s, func(r *sip.Response, err error) {
		if err == nil {
			u.trace(prack, r)
			d.ReceiveResponse(prack, r)
		}
	})
}

// sendBye ends the call with BYE (RFC 3261 §15.1.1) without waiting: the
// call ends with why as soon as the BYE is sent.
func (c *Call) sendBye(d *dialog.Dialog, why error) {
	u := c.u
	bye := d.NewRequest(sip.BYE)
	if s, err := u.dialogSender(u.ctx, d, bye); err == nil {
		u.stamp(bye, s.hop.proto)
		_, _ = u.layer.Request(bye, s, func(res *sip.Response, err error) {
			if err == nil {
				u.trace(bye, res)
			}
		})
	}
	c.end(why)
}

// Hangup ends the call: BYE when established (§15.1.1), CANCEL while an
// outgoing call is pending (§9.1; Call then returns), 603 for an incoming
// call not yet answered. It waits for the BYE's response or ctx.
func (c *Call) Hangup(ctx context.Context) error {
	c.mu.Lock()
	state, d, answered := c.state, c.d, c.answered
	c.mu.Unlock()
	switch {
	case state == Ended:
		return nil
	case c.outgoing && state != Established:
		c.requestCancel()
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case !c.outgoing && !answered:
		return c.Reject(603, "")
	}
	_, err := c.inDialog(ctx, d, sip.BYE, nil)
	c.end(nil)
	var se *StatusError
	if errors.As(err, &se) {
		return nil // any final response ends the dialog (§15.1.1)
	}
	return err
}

// inDialog sends a request within d and waits for its final response,
// answering digest challenges.
func (c *Call) inDialog(ctx context.Context, d *dialog.Dialog, method string, mod func(*sip.Request)) (*sip.Response, error) {
	u := c.u
	var last *sip.Request
	res, err := u.do(ctx, nil, func(failed resolve.Reason) (*sip.Request, *sender, error) {
		if failed != 0 {
			return nil, nil, errNoHop // in a dialog the route set decides
		}
		req := d.NewRequest(method)
		if mod != nil {
			mod(req)
		}
		s, err := u.dialogSender(ctx, d, req)
		if err != nil {
			return nil, nil, err
		}
		u.stamp(req, s.hop.proto)
		last = req
		return req, s, nil
	})
	if res != nil && last != nil {
		d.ReceiveResponse(last, res)
		if d.State() == dialog.Terminated && method != sip.BYE {
			c.end(statusError(res))
		}
	}
	return res, err
}

func (c *Call) established() (*dialog.Dialog, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != Established || c.d == nil {
		return nil, fmt.Errorf("%w: %s", ErrState, c.state)
	}
	return c.d, nil
}

// Info sends an INFO within the call (RFC 6086).
func (c *Call) Info(ctx context.Context, contentType string, body []byte) (*sip.Response, error) {
	d, err := c.established()
	if err != nil {
		return nil, err
	}
	return c.inDialog(ctx, d, sip.INFO, func(r *sip.Request) {
		if len(body) > 0 {
			r.ContentType, r.Body = contentType, body
		}
	})
}

// newOffer returns a new version of the local session description.
func (c *Call) newOffer() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sdpVersion++
	return Offer(c.u.mediaHost(), c.u.cfg.MediaPort, c.sessID, c.sdpVersion)
}

// Update sends an UPDATE within the call (RFC 3311) with a new SDP offer
// (a fresh version of the local one when sdp is nil); a 2xx's answer
// becomes the remote description and its Contact the remote target.
func (c *Call) Update(ctx context.Context, sdp []byte) (*sip.Response, error) {
	d, err := c.established()
	if err != nil {
		return nil, err
	}
	if sdp == nil {
		sdp = c.newOffer()
	}
	res, err := c.inDialog(ctx, d, sip.UPDATE, func(r *sip.Request) {
		r.ContentType, r.Body = ContentTypeSDP, sdp
	})
	if err == nil {
		c.mu.Lock()
		c.localSDP = sdp
		if len(res.Body) > 0 {
			c.remoteSDP = res.Body
		}
		c.mu.Unlock()
	}
	return res, err
}

// ReInvite sends a re-INVITE (RFC 3261 §14.1) with a new SDP offer (a
// fresh version of the local one when sdp is nil), ACKs its 2xx, and
// returns the final response. A 491 comes back as *StatusError.
func (c *Call) ReInvite(ctx context.Context, sdp []byte) (*sip.Response, error) {
	d, err := c.established()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.reinviting || c.ok != nil || c.offering {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: an INVITE transaction is pending (491)", ErrState)
	}
	c.reinviting = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reinviting = false
		c.mu.Unlock()
	}()
	if sdp == nil {
		sdp = c.newOffer()
	}
	u := c.u
	req := d.NewRequest(sip.INVITE)
	req.ContentType, req.Body = ContentTypeSDP, sdp
	u.capabilities(&req.Header)
	s, err := u.dialogSender(ctx, d, req)
	if err != nil {
		return nil, err
	}
	u.stamp(req, s.hop.proto)
	final := make(chan result, 1)
	var ack *sip.Request
	var ackSnd *sender
	acking := false // on the worker: an ACK task was queued
	_, err = u.layer.Request(req, s, func(res *sip.Response, err error) {
		if err != nil {
			deliver(final, result{err: txError(err)})
			return
		}
		u.trace(req, res)
		if res.StatusCode < 200 {
			return
		}
		d.ReceiveResponse(req, res)
		if res.StatusCode >= 300 {
			deliver(final, result{res: res})
			return
		}
		// The ACK, which may need a lookup or a dial, goes out on the
		// call's sender (ack and ackSnd live there); the 2xx reaches the
		// caller once it is sent.
		first := !acking
		acking = true
		sent := c.run(func() {
			if ack == nil {
				a := d.NewACK(req)
				s, err := u.dialogSender(u.ctx, d, a)
				if err != nil {
					deliver(final, result{err: err})
					return
				}
				u.stamp(a, s.hop.proto)
				ack, ackSnd = a, s
			}
			_ = ackSnd.Send(ack)
			deliver(final, result{res: res})
		}, first)
		if !sent && first {
			deliver(final, result{err: ErrClosed})
		}
	})
	if err != nil && !errors.Is(err, transaction.ErrTransport) {
		return nil, err
	}
	var r result
	select {
	case r = <-final:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, c.Err()
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.res.StatusCode >= 300 {
		if d.State() == dialog.Terminated {
			c.end(statusError(r.res))
		}
		return r.res, statusError(r.res)
	}
	c.mu.Lock()
	c.localSDP = sdp
	if len(r.res.Body) > 0 {
		c.remoteSDP = r.res.Body
	}
	c.mu.Unlock()
	return r.res, nil
}

// abort ends the call because the UA closes, telling the peer without
// waiting for an answer.
func (c *Call) abort(why error) {
	c.mu.Lock()
	state, d, answered := c.state, c.d, c.answered
	c.mu.Unlock()
	switch {
	case state == Ended:
		return
	case c.outgoing && state != Established:
		c.requestCancel()
	case !c.outgoing && !answered:
		_ = c.Reject(480, "")
	case d != nil:
		c.sendBye(d, why)
	}
	c.end(why)
}

// --- UAS ---

// incomingCall handles a new INVITE (RFC 3261 §13.3).
func (u *UA) incomingCall(stx *transaction.ServerTx, req *sip.Request, p *transport.Packet) {
	reply := func(code int) { _ = stx.Respond(u.newResponse(req, code, "")) }
	if u.cfg.OnCall == nil {
		reply(480)
		return
	}
	c := newCall(u, false)
	c.stx, c.invite, c.tag = stx, req, sip.NewTag()
	d, err := dialog.NewUAS(req, c.tag)
	if err != nil {
		reply(400)
		return
	}
	if p.Conn != nil {
		d.SetConn(p.Conn)
	}
	c.d = d
	c.reliable = u.cfg.Rel100 != Rel100Off && (req.HasOption("Require", "100rel") ||
		(u.cfg.Rel100 == Rel100Require && req.HasOption("Supported", "100rel")))
	if len(req.Body) > 0 {
		c.remoteSDP = req.Body
	}
	stx.OnCancel(c.cancelled)
	if err := u.addCall(c, true); err != nil {
		code := 486
		if errors.Is(err, ErrClosed) {
			code = 503
		}
		reply(code)
		return
	}
	go func() {
		defer u.wg.Done()
		u.cfg.OnCall(c)
		c.mu.Lock()
		orphan := !c.kept && !c.answered && c.state != Ended
		c.mu.Unlock()
		if orphan {
			u.log.Warn("OnCall returned without answering the call: 500", "call-id", req.CallID)
			_ = c.Reject(500, "")
		}
	}()
}

// addCall registers a call; with onCall it also counts the goroutine that
// runs Config.OnCall. It fails when the UA is closed or MaxCalls is
// reached.
func (u *UA) addCall(c *Call, onCall bool) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return ErrClosed
	}
	if len(u.calls) >= u.cfg.MaxCalls {
		return errors.New("ua: too many calls")
	}
	u.calls[c] = struct{}{}
	if onCall {
		u.wg.Add(1)
	}
	return nil
}

// Keep lets Config.OnCall return before the call is answered: the
// handler has passed the call on and promises to Answer or Reject it
// later. Without Keep a call still unanswered when OnCall returns is
// rejected with 500.
func (c *Call) Keep() {
	c.mu.Lock()
	c.kept = true
	c.mu.Unlock()
}

// response builds a response to the incoming INVITE with the call's tag.
func (c *Call) response(code int, reason string) *sip.Response {
	res := sip.NewResponse(c.invite, code, reason)
	res.To.Params = res.To.Params.Set("tag", c.tag)
	res.Add("Server", c.u.cfg.UserAgent)
	if code > 100 && code < 300 {
		res.Contact = []sip.Address{c.u.contact}
		// RFC 3261 §12.1.1: the caller's route set comes from these.
		res.RecordRoute = c.invite.RecordRoute
	}
	return res
}

func (c *Call) bind() {
	c.mu.Lock()
	first := !c.bound
	c.bound = true
	d := c.d
	c.mu.Unlock()
	if first {
		c.u.bindDialog(c, d)
	}
}

// cancelled is the INVITE transaction's CANCEL reaction (RFC 3261 §9.2):
// an unanswered call gets 487 and ends.
func (c *Call) cancelled() {
	c.mu.Lock()
	if c.answered || c.state == Ended {
		c.mu.Unlock()
		return
	}
	c.answered = true // no other final response from now on
	c.mu.Unlock()
	_ = c.stx.Respond(c.response(487, ""))
	c.end(ErrCancelled)
}

// Ring sends 180 Ringing (RFC 3261 §13.3.1.1), reliably (RFC 3262 §3)
// when the caller requires 100rel, or supports it and Config.Rel100 is
// Rel100Require. A reliable 180 is retransmitted with T1 doubling until
// PRACKed; after 64*T1 without PRACK the INVITE is rejected with 500.
func (c *Call) Ring(ctx context.Context) error {
	return c.provisional(180, "")
}

func (c *Call) provisional(code int, reason string) error {
	if c.outgoing {
		return ErrState
	}
	c.mu.Lock()
	if c.answered || c.state == Ended {
		c.mu.Unlock()
		return ErrState
	}
	if c.rel != nil {
		c.mu.Unlock()
		return fmt.Errorf("%w: previous reliable provisional response not yet PRACKed", ErrState)
	}
	c.state = Early
	res := c.response(code, reason)
	if c.reliable {
		r := &reliableProv{retransmission: retransmission{res: res, cseq: c.invite.CSeq.Seq}, rseq: c.d.NextRSeq()}
		res.Add("Require", "100rel")
		res.Add("RSeq", strconv.FormatUint(uint64(r.rseq), 10))
		r.start(&c.u.cfg, func() { c.retransmitProv(r) }, func() { c.provTimeout(r) })
		c.rel = r
	}
	c.mu.Unlock()
	c.bind()
	if err := c.stx.Respond(res); err != nil {
		// The transaction ended on the transport error: no final
		// response can follow, so the call is over.
		c.end(err)
		return err
	}
	return nil
}

func (c *Call) retransmitProv(r *reliableProv) {
	c.mu.Lock()
	if c.rel != r {
		c.mu.Unlock()
		return
	}
	r.interval *= 2
	r.timer = c.u.cfg.Clock.AfterFunc(r.interval, func() { c.retransmitProv(r) })
	c.mu.Unlock()
	_ = c.stx.Respond(r.res)
}

func (c *Call) provTimeout(r *reliableProv) {
	c.mu.Lock()
	if c.rel != r || c.answered {
		c.mu.Unlock()
		return
	}
	stopTimer(r.timer)
	c.rel = nil
	c.answered = true
	c.mu.Unlock()
	res := c.response(500, "Reliable Provisional Response Not Acknowledged")
	res.Add("Retry-After", "5")
	_ = c.stx.Respond(res)
	c.end(ErrNoPRACK)
}

// Answer accepts the call (RFC 3261 §13.3.1.4): after any reliable
// provisional response is PRACKed, it sends 200 with the SDP answer (or an
// offer when the INVITE had none), retransmits it with T1 doubling up to
// T2 until the ACK arrives, and returns then. Without ACK for 64*T1 the
// call is ended with BYE and Answer returns ErrNoACK. An offer with no
// usable audio is rejected with 488.
func (c *Call) Answer(ctx context.Context) error {
	if c.outgoing {
		return ErrState
	}
	c.mu.Lock()
	if err := c.answerErr(); err != nil {
		c.mu.Unlock()
		return err
	}
	rel := c.rel
	c.mu.Unlock()
	if rel != nil {
		select {
		case <-rel.acked:
		case <-c.done:
			return c.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	u := c.u
	var body []byte
	offered := false
	c.mu.Lock()
	remote := c.remoteSDP
	c.mu.Unlock()
	if len(remote) > 0 {
		var err error
		body, err = Answer(remote, u.mediaHost(), u.cfg.MediaPort, c.sessID, c.sdpVersion)
		if err != nil {
			_ = c.Reject(488, "")
			return err
		}
	} else {
		body, offered = Offer(u.mediaHost(), u.cfg.MediaPort, c.sessID, c.sdpVersion), true
	}
	res := c.response(200, "")
	u.capabilities(&res.Header)
	res.ContentType, res.Body = ContentTypeSDP, body
	c.mu.Lock()
	if err := c.answerErr(); err != nil {
		c.mu.Unlock()
		return err
	}
	c.answered = true
	c.state = Established
	c.localSDP = body
	ok := c.startRetransmit(c.stx, res, c.invite.CSeq.Seq, offered)
	c.mu.Unlock()
	c.d.Confirm()
	c.bind()
	if err := c.stx.Respond(res); err != nil {
		c.end(err)
		return err
	}
	select {
	case <-ok.acked:
		return nil
	case <-ok.failed:
		return ErrNoACK
	case <-c.done:
		select {
		case <-ok.acked:
			return nil
		default:
		}
		return c.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// answerErr says why Answer cannot send a 2xx: nil while the call is
// unanswered and not ended, else the call's error, or ErrState.
// Called with c.mu held.
func (c *Call) answerErr() error {
	if !c.answered && c.state != Ended {
		return nil
	}
	if c.err != nil {
		return c.err
	}
	return ErrState
}

// startRetransmit arms the 2xx retransmission (RFC 3261 §13.3.1.4):
// T1 doubling up to T2, on any transport since hops further on may be
// unreliable, until the ACK or 64*T1. Called with c.mu held.
func (c *Call) startRetransmit(stx *transaction.ServerTx, res *sip.Response, cseq uint32, offered bool) *okRetransmit {
	ok := &okRetransmit{retransmission: retransmission{res: res, cseq: cseq}, stx: stx, offered: offered,
		failed: make(chan struct{})}
	ok.start(&c.u.cfg, func() { c.retransmitOK(ok) }, func() { c.okTimeout(ok) })
	c.ok = ok
	return ok
}

func (c *Call) retransmitOK(ok *okRetransmit) {
	c.mu.Lock()
	if c.ok != ok {
		c.mu.Unlock()
		return
	}
	ok.interval = min(2*ok.interval, c.u.cfg.T2)
	ok.timer = c.u.cfg.Clock.AfterFunc(ok.interval, func() { c.retransmitOK(ok) })
	c.mu.Unlock()
	_ = ok.stx.Respond(ok.res)
}

// okTimeout: 64*T1 without ACK; the session ends with BYE (§13.3.1.4).
func (c *Call) okTimeout(ok *okRetransmit) {
	c.mu.Lock()
	if c.ok != ok {
		c.mu.Unlock()
		return
	}
	stopTimer(ok.timer)
	c.ok = nil
	d := c.d
	c.mu.Unlock()
	close(ok.failed)
	// A timer goroutine: the BYE, which may need a lookup, goes out on
	// the call's sender.
	if !c.run(func() { c.sendBye(d, ErrNoACK) }, true) {
		c.end(ErrNoACK)
	}
}

// receiveACK stops the 2xx retransmission the ACK acknowledges.
func (c *Call) receiveACK(ack *sip.Request) {
	c.mu.Lock()
	ok := c.ok
	if ok == nil || ack.CSeq.Seq != ok.cseq {
		c.mu.Unlock()
		return
	}
	ok.stop()
	c.ok = nil
	var onAnswer func([]byte)
	if ok.offered && len(ack.Body) > 0 {
		c.remoteSDP = ack.Body
		if ok.hooked {
			onAnswer = c.onAnswer
		}
	}
	c.mu.Unlock()
	close(ok.acked)
	if onAnswer != nil {
		body := ack.Body
		c.u.spawn(func() { onAnswer(body) })
	}
	if f := c.u.cfg.OnRequest; f != nil {
		f(c, ack)
	}
}

// Reject answers the incoming call with a final response >= 300 (486
// Busy Here, 603 Decline, ...).
func (c *Call) Reject(code int, reason string) error {
	if c.outgoing || code < 300 || code > 699 {
		return ErrState
	}
	c.mu.Lock()
	if c.answered || c.state == Ended {
		c.mu.Unlock()
		return ErrState
	}
	c.answered = true
	c.mu.Unlock()
	res := c.response(code, reason)
	err := c.stx.Respond(res)
	c.end(statusError(res))
	return err
}

// handleRequest handles a request within one of the call's dialogs
// (RFC 3261 §12.2.2): CSeq order first, then per method.
func (c *Call) handleRequest(stx *transaction.ServerTx, req *sip.Request, p *transport.Packet) {
	u := c.u
	reply := func(code int, f func(*sip.Response)) {
		res := u.newResponse(req, code, "")
		if f != nil {
			f(res)
		}
		_ = stx.Respond(res)
	}
	d := u.dlgs.MatchRequest(req)
	if d == nil {
		reply(481, nil)
		return
	}
	if err := d.ReceiveRequest(req); err != nil {
		var de *dialog.Error
		code := 500
		if errors.As(err, &de) {
			code = de.Code
		}
		reply(code, nil)
		return
	}
	if p.Conn != nil && d.Conn() == nil {
		d.SetConn(p.Conn)
	}
	if f := u.cfg.OnRequest; f != nil {
		f(c, req)
	}
	withContact := func(r *sip.Response) { r.Contact = []sip.Address{u.contact} }
	switch req.Method {
	case sip.BYE:
		reply(200, nil)
		c.mu.Lock()
		pending := !c.outgoing && !c.answered
		c.answered = true
		ok := c.ok
		if ok != nil {
			// The BYE shows the 2xx arrived even if its ACK was lost.
			ok.stop()
			c.ok = nil
		}
		c.mu.Unlock()
		if ok != nil {
			close(ok.acked)
		}
		if pending {
			// BYE on an early dialog: the INVITE gets 487 (§15.1.2).
			_ = c.stx.Respond(c.response(487, ""))
		}
		c.end(ErrRemoteHangup)
	case sip.PRACK:
		ra, err := dialog.ParseRAck(req.Get("RAck"))
		c.mu.Lock()
		r := c.rel
		matched := err == nil && r != nil && ra.RSeq == r.rseq && ra.CSeq == r.cseq && ra.Method == sip.INVITE
		if matched {
			r.stop()
		}
		c.mu.Unlock()
		if !matched {
			reply(481, nil) // RFC 3262 §3
			return
		}
		// The 200 goes out before Answer, waiting for acked, sends the 2xx.
		reply(200, nil)
		c.mu.Lock()
		if c.rel == r {
			c.rel = nil
		}
		c.mu.Unlock()
		close(r.acked)
	case sip.INVITE:
		c.reinvited(stx, req)
	case sip.UPDATE:
		if len(req.Body) == 0 {
			reply(200, withContact)
			return
		}
		c.mu.Lock()
		f, glare, pending := c.onOffer, c.reinviting, c.offering
		if f != nil && !glare && !pending {
			c.offering = true
		}
		c.mu.Unlock()
		if f != nil {
			switch {
			case glare: // RFC 3311 §5.2: our offer awaits its answer
				reply(491, nil)
			case pending: // an offer of the peer's awaits ours
				reply(500, func(r *sip.Response) { r.Add("Retry-After", strconv.Itoa(rand.IntN(10))) })
			default:
				c.offerHandled(stx, req, f, false)
			}
			return
		}
		body, err := c.answerOffer(req.Body)
		if err != nil {
			reply(488, nil)
			return
		}
		reply(200, func(r *sip.Response) {
			withContact(r)
			r.ContentType, r.Body = ContentTypeSDP, body
		})
	case sip.INFO, sip.ACK:
		reply(200, nil)
	case sip.OPTIONS:
		reply(200, func(r *sip.Response) { u.capabilities(&r.Header) })
	case sip.MESSAGE:
		if f := u.cfg.OnMessage; f != nil {
			f(req)
		}
		reply(200, nil)
	default:
		reply(405, func(r *sip.Response) { r.Add("Allow", allowed) })
	}
}

// answerTo answers the offer of a 2xx to an INVITE sent without one.
func (c *Call) answerTo(offer []byte) ([]byte, error) {
	if len(offer) == 0 {
		return nil, errors.New("ua: the 2xx to an INVITE without an offer has none")
	}
	if f := c.answerFn; f != nil {
		return f(offer)
	}
	return c.answerOffer(offer)
}

// answerOffer answers a new offer in the dialog and makes both
// descriptions current.
func (c *Call) answerOffer(offer []byte) ([]byte, error) {
	c.mu.Lock()
	c.sdpVersion++
	v := c.sdpVersion
	c.mu.Unlock()
	body, err := Answer(offer, c.u.mediaHost(), c.u.cfg.MediaPort, c.sessID, v)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.remoteSDP, c.localSDP = offer, body
	c.mu.Unlock()
	return body, nil
}

// reinvited answers a re-INVITE (RFC 3261 §14.2): 500 with Retry-After
// while our previous 2xx awaits its ACK, 491 while our own re-INVITE is
// pending, else 200 with the answer (or an offer when it had none),
// retransmitted until the ACK like any 2xx.
func (c *Call) reinvited(stx *transaction.ServerTx, req *sip.Request) {
	u := c.u
	c.mu.Lock()
	busy, glare := c.ok != nil || c.state != Established || c.offering, c.reinviting
	f := c.onOffer
	if f != nil && !busy && !glare {
		c.offering = true
	}
	c.mu.Unlock()
	if glare {
		_ = stx.Respond(u.newResponse(req, 491, ""))
		return
	}
	if busy {
		res := u.newResponse(req, 500, "")
		res.Add("Retry-After", strconv.Itoa(rand.IntN(10)))
		_ = stx.Respond(res)
		return
	}
	if f != nil {
		c.offerHandled(stx, req, f, true)
		return
	}
	var body []byte
	offered := false
	if len(req.Body) > 0 {
		var err error
		if body, err = c.answerOffer(req.Body); err != nil {
			_ = stx.Respond(u.newResponse(req, 488, ""))
			return
		}
	} else {
		body, offered = c.LocalSDP(), true
	}
	res := u.newResponse(req, 200, "")
	res.Contact = []sip.Address{u.contact}
	u.capabilities(&res.Header)
	res.ContentType, res.Body = ContentTypeSDP, body
	c.mu.Lock()
	c.startRetransmit(stx, res, req.CSeq.Seq, offered)
	c.mu.Unlock()
	_ = stx.Respond(res)
}
