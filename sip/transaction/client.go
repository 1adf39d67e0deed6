package transaction

import (
	"errors"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// ResponseHandler receives what a client transaction passes up: every
// provisional and final response the TU must see (including 2xx
// retransmissions in the Accepted state), and at most once a nil response
// with ErrTimeout or ErrTransport (RFC 3261 §8.1.3.1: treat them as 408 and
// 503). Calls for one transaction never overlap and keep arrival order.
// A timeout comes from the Layer's timer goroutine: the handler must not
// block.
type ResponseHandler func(res *sip.Response, err error)

// ClientTx is a client transaction: INVITE (RFC 3261 §17.1.1, RFC 6026
// §7.2) or non-INVITE (§17.1.2).
type ClientTx struct {
	base // timers: A/E then D/K, B/F then M

	key     clientKey // in Layer.client; refers into req, which the transaction keeps
	h       uint64    // key's hash in Layer.client
	handler ResponseHandler
	inline  bool       // the handler never blocks (ClientOptions.Inline)
	cb      sync.Mutex // serializes handler calls

	// The ACK sent for a non-2xx final response, for retransmissions of
	// that response: its bytes when the sender is a WireSender.
	ack     *sip.Request
	ackWire []byte
}

const (
	slotResend = 0 // Timer A / E, then D / K
	slotGiveUp = 1 // Timer B / F (or §9.1's wait after CANCEL), then M
)

// ErrNoBranch is a request without an RFC 3261 branch in its top Via.
var ErrNoBranch = errors.New("transaction: request needs a top Via with a z9hG4bK branch")

// Request starts a client transaction: it sends req through s and runs the
// timers. req must carry a top Via with a unique RFC 3261 branch. ACK is
// not a transaction (send it directly); CANCEL should come from
// ClientTx.Cancel.
func (l *Layer) Request(req *sip.Request, s Sender, h ResponseHandler) (*ClientTx, error) {
	return l.RequestWith(req, s, h, ClientOptions{})
}

// ClientOptions are the choices of RequestWith.
type ClientOptions struct {
	// Inline promises that the handler never blocks (no I/O, no waiting
	// for other goroutines beyond short mutexes) and keeps nothing of a
	// response once it returns, so a server may run it on the goroutine
	// that read the response (Match, ClientTx.Inline) instead of handing
	// the response to a worker first, and parse the next response into
	// the same memory (sip.ParseInto). For a server sending thousands of
	// NOTIFYs a second, the hand-off (a channel send, a goroutine woken)
	// and the allocation cost more than the handler.
	Inline bool
}

// RequestWith is Request with options.
func (l *Layer) RequestWith(req *sip.Request, s Sender, h ResponseHandler, o ClientOptions) (*ClientTx, error) {
	if len(req.Via) == 0 || !isRFC3261Branch(req.Via[0].Branch()) {
		return nil, ErrNoBranch
	}
	if h == nil {
		h = ignoreResponse
	}
	tx := &ClientTx{
		key:     newClientKey(req.Via[0].Branch(), req.Method),
		handler: h,
		inline:  o.Inline,
	}
	tx.h = l.client.hash(tx.key)
	tx.init(l, req, s, tx)
	l.mu.Lock()
	if !l.client.add(tx) {
		l.mu.Unlock()
		return nil, errors.New("transaction: branch already in use")
	}
	l.mu.Unlock()
	l.clientCreated.Add(1)

	tx.mu.Lock()
	cfg := &l.cfg
	if tx.invite {
		tx.state = Calling
	} else {
		tx.state = Trying
	}
	if err := s.Send(req); err != nil {
		tx.terminateLocked(ErrTransport)
		tx.mu.Unlock()
		tx.deliver(nil, ErrTransport)
		return tx, err
	}
	if !s.Reliable() {
		tx.arm(slotResend, timerResend, cfg.T1)
	}
	tx.arm(slotGiveUp, timerGiveUp, 64*cfg.T1)
	tx.mu.Unlock()
	return tx, nil
}

func ignoreResponse(*sip.Response, error) {}

// unlink takes tx out of the table.
func (tx *ClientTx) unlink() {
	l := tx.l
	l.mu.Lock()
	l.client.remove(tx)
	l.mu.Unlock()
}

// Inline reports whether the transaction's handler was promised never to
// block (ClientOptions.Inline).
func (tx *ClientTx) Inline() bool { return tx.inline }

// Receive runs a response through the transaction's state machine, as
// HandleResponse does once it has found the transaction (Match).
func (tx *ClientTx) Receive(res *sip.Response) { tx.receive(res) }

// Request returns the request the transaction sent.
func (tx *ClientTx) Request() *sip.Request { return tx.req }

func (tx *ClientTx) deliver(res *sip.Response, err error) {
	tx.cb.Lock()
	defer tx.cb.Unlock()
	tx.handler(res, err)
}

// receive runs a response through the state machine.
func (tx *ClientTx) receive(res *sip.Response) {
	tx.cb.Lock()
	defer tx.cb.Unlock()
	tx.mu.Lock()
	code := res.StatusCode
	pass := false
	var sendCancel bool
	cfg := &tx.l.cfg
	switch tx.state {
	case Calling, Trying, Proceeding:
		switch {
		case code < 200:
			// Proceeding: a non-INVITE's Timer E keeps firing, at T2
			// (§17.1.2.2; see timerResend).
			if tx.invite && tx.state == Calling {
				// Proceeding: Timer A stops, and so does Timer B, which only
				// bounds Calling (§17.1.1.2, Figure 5); a ringing INVITE waits
				// for the TU (a UA's own timeout, a proxy's Timer C). Later
				// provisional responses leave slotGiveUp alone: it may hold
				// the wait after a CANCEL (sendCancel).
				tx.stop(slotResend)
				tx.stop(slotGiveUp)
			}
			tx.state = Proceeding
			sendCancel, tx.cancelPending = tx.cancelPending, false
			pass = true
		case tx.invite && code < 300:
			tx.state = Accepted
			tx.stop(slotResend)
			tx.arm(slotGiveUp, timerM, 64*cfg.T1)
			pass = true
		case tx.invite:
			tx.state = Completed
			tx.stop(slotResend)
			tx.stop(slotGiveUp)
			var err error
			if ws, ok := tx.sender.(WireSender); ok {
				tx.ackWire = encodeACK(tx.req, res)
				err = ws.SendWire(tx.ackWire)
			} else {
				tx.ack = NewACK(tx.req, res)
				err = tx.sender.Send(tx.ack)
			}
			if err != nil {
				tx.terminateLocked(ErrTransport)
			} else if tx.sender.Reliable() {
				tx.terminateLocked(nil)
			} else {
				tx.arm(slotResend, timerD, cfg.TimerD)
			}
			pass = true
		default:
			tx.state = Completed
			tx.stop(slotResend)
			tx.stop(slotGiveUp)
			if tx.sender.Reliable() {
				tx.terminateLocked(nil)
			} else {
				tx.arm(slotResend, timerK, cfg.T4)
			}
			pass = true
		}
	case Accepted:
		// RFC 6026 §7.2: 2xx retransmissions go to the TU, which ACKs them.
		pass = code/100 == 2
	case Completed:
		// Retransmitted final response: re-ACK (INVITE), else absorb.
		if tx.invite && code >= 300 {
			if tx.ackWire != nil {
				_ = tx.sender.(WireSender).SendWire(tx.ackWire)
			} else if tx.ack != nil {
				_ = tx.sender.Send(tx.ack)
			}
		}
	}
	tx.mu.Unlock()
	if sendCancel {
		tx.sendCancel()
	}
	if pass {
		tx.handler(res, nil)
	}
}

// Cancel asks the server to stop processing the INVITE (RFC 3261 §9.1): a
// CANCEL is sent, in its own transaction, once a provisional response has
// arrived (at once if one already has). If no final response follows
// within 64*T1 of the CANCEL, the transaction ends and its handler gets
// ErrTimeout. It does nothing for a transaction that has a final response
// or is not an INVITE.
func (tx *ClientTx) Cancel() {
	tx.mu.Lock()
	if !tx.invite || tx.cancelled || (tx.state != Calling && tx.state != Proceeding) {
		tx.mu.Unlock()
		return
	}
	tx.cancelled = true
	if tx.state == Calling { // no provisional response yet
		tx.cancelPending = true
		tx.mu.Unlock()
		return
	}
	tx.mu.Unlock()
	tx.sendCancel()
}

// sendCancel sends the CANCEL and bounds the wait for the INVITE's final
// response (§9.1): with none 64*T1 later the transaction is destroyed as
// cancelled. Nothing else would end it, since Timer B does not run in
// Proceeding, and a callee that answers the CANCEL but never the INVITE
// would otherwise pin it (and its TU's state) for good.
func (tx *ClientTx) sendCancel() {
	tx.mu.Lock()
	if tx.state != Proceeding {
		tx.mu.Unlock()
		return
	}
	tx.arm(slotGiveUp, timerGiveUp, 64*tx.l.cfg.T1)
	tx.mu.Unlock()
	_, _ = tx.l.Request(NewCANCEL(tx.req), tx.sender, nil)
}

// fire runs a timer of the transaction (see timerQueue).
func (tx *ClientTx) fire(s *timerSlot, seq uint32) {
	tx.mu.Lock()
	kind, ok := tx.due(s, seq)
	if !ok {
		tx.mu.Unlock()
		return
	}
	switch kind {
	case timerResend:
		tx.timerResend()
	case timerGiveUp:
		// Timer B or F: no final response in 64*T1; for an INVITE in
		// Proceeding, the same wait after its CANCEL (§9.1, see
		// sendCancel).
		if tx.state == Calling || tx.state == Trying || tx.state == Proceeding {
			tx.l.timeouts.Add(1)
			tx.terminateLocked(ErrTimeout)
			tx.mu.Unlock()
			tx.deliver(nil, ErrTimeout)
			return
		}
	case timerD, timerK:
		tx.terminateIf(Completed)
	case timerM:
		tx.terminateIf(Accepted) // RFC 6026
	}
	tx.mu.Unlock()
}

// timerResend is Timer A (INVITE: doubling, §17.1.1.2) or Timer E
// (non-INVITE: doubling up to T2, §17.1.2.2, and T2 in Proceeding).
func (tx *ClientTx) timerResend() {
	if tx.state != Calling && tx.state != Trying && tx.state != Proceeding {
		return
	}
	if tx.invite && tx.state != Calling {
		return
	}
	tx.l.retransmissions.Add(1)
	if err := tx.sender.Send(tx.req); err != nil {
		tx.terminateLocked(ErrTransport)
		go tx.deliver(nil, ErrTransport)
		return
	}
	cfg := &tx.l.cfg
	var d time.Duration
	switch {
	case tx.invite:
		d = backoff(cfg.T1, tx.n+1)
	case tx.state == Proceeding:
		d = cfg.T2
	default:
		d = min(backoff(cfg.T1, tx.n+1), cfg.T2)
	}
	if tx.n < 255 {
		tx.n++
	}
	tx.arm(slotResend, timerResend, d)
}

// NewACK builds the ACK for a non-2xx final response to an INVITE
// (RFC 3261 §17.1.1.3): the INVITE's Request-URI, Call-ID, From, CSeq
// number and top Via, the response's To, and the INVITE's Route set.
func NewACK(invite *sip.Request, res *sip.Response) *sip.Request {
	return sameTransaction(invite, sip.ACK, res.To)
}

// NewCANCEL builds the CANCEL for a pending request (RFC 3261 §9.1): the
// same Request-URI, Call-ID, To, From, CSeq number and top Via (so it
// reaches the same server transaction), and the request's Route set.
func NewCANCEL(req *sip.Request) *sip.Request {
	return sameTransaction(req, sip.CANCEL, req.To)
}

// encodeACK returns the bytes of NewACK(invite, res). The ACK is built on
// the stack and shares the INVITE's top Via, which encoding only reads.
func encodeACK(invite *sip.Request, res *sip.Response) []byte {
	var ack sip.Request
	fillSameTransaction(&ack, invite.Via[:1:1], invite, sip.ACK, res.To)
	var buf [1024]byte
	b := ack.AppendTo(buf[:0])
	return append(make([]byte, 0, len(b)), b...)
}

// sameTransaction builds a method request with req's Request-URI, top Via,
// From, Call-ID, CSeq number and Route set, Max-Forwards 70, and the given
// To: the shape shared by the ACK and the CANCEL for req.
func sameTransaction(req *sip.Request, method string, to sip.Address) *sip.Request {
	r := &sip.Request{}
	fillSameTransaction(r, make([]sip.Via, 1), req, method, to)
	return r
}

// fillSameTransaction is sameTransaction into r, with via (of length 1,
// set to req's top Via) as r's Via list.
func fillSameTransaction(r *sip.Request, via []sip.Via, req *sip.Request, method string, to sip.Address) {
	r.Method, r.URI, r.Version = method, req.URI, "SIP/2.0"
	if &via[0] != &req.Via[0] {
		via[0] = req.Via[0]
	}
	r.Via = via
	r.MaxForwards = 70
	r.From, r.To, r.CallID = req.From, to, req.CallID
	r.CSeq = sip.CSeq{Seq: req.CSeq.Seq, Method: method}
	r.Route = req.Route
}
