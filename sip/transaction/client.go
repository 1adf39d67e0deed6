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
type ResponseHandler func(res *sip.Response, err error)

// ClientTx is a client transaction: INVITE (RFC 3261 §17.1.1, RFC 6026
// §7.2) or non-INVITE (§17.1.2).
type ClientTx struct {
	base    // timers: A/E then D/K, B/F then M
	handler ResponseHandler

	cb sync.Mutex // serializes handler calls

	interval      time.Duration
	cancelPending bool
	cancelled     bool
	ack           *sip.Request // ACK sent for a non-2xx final response
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
	if len(req.Via) == 0 || !isRFC3261Branch(req.Via[0].Branch()) {
		return nil, ErrNoBranch
	}
	if h == nil {
		h = func(*sip.Response, error) {}
	}
	tx := &ClientTx{
		base:    newBase(l, clientKey(req.Via[0].Branch(), req.Method), req, s, false),
		handler: h,
	}
	l.mu.Lock()
	if _, dup := l.client[tx.key]; dup {
		l.mu.Unlock()
		return nil, errors.New("transaction: branch already in use")
	}
	l.client[tx.key] = tx
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
		tx.interval = cfg.T1
		tx.timers[slotResend] = cfg.Clock.AfterFunc(cfg.T1, tx.timerResend)
	}
	tx.timers[slotGiveUp] = cfg.Clock.AfterFunc(64*cfg.T1, tx.timerGiveUp)
	tx.mu.Unlock()
	return tx, nil
}

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
			if !tx.invite && tx.timers[slotResend] != nil {
				// Proceeding: Timer E keeps firing at T2 (§17.1.2.2).
				tx.interval = cfg.T2
			}
			if tx.invite && tx.state == Calling {
				// Proceeding: Timer A stops, and so does Timer B, which only
				// bounds Calling (§17.1.1.2, Figure 5); a ringing INVITE waits
				// for the TU (a UA's own timeout, a proxy's Timer C). Later
				// provisional responses leave slotGiveUp alone: it may hold
				// the wait after a CANCEL (sendCancel).
				stop(&tx.timers[slotResend])
				stop(&tx.timers[slotGiveUp])
			}
			tx.state = Proceeding
			sendCancel, tx.cancelPending = tx.cancelPending, false
			pass = true
		case tx.invite && code < 300:
			tx.state = Accepted
			stop(&tx.timers[slotResend])
			stop(&tx.timers[slotGiveUp])
			tx.timers[slotGiveUp] = cfg.Clock.AfterFunc(64*cfg.T1, tx.timerM)
			pass = true
		case tx.invite:
			tx.state = Completed
			stop(&tx.timers[slotResend])
			stop(&tx.timers[slotGiveUp])
			tx.ack = NewACK(tx.req, res)
			if err := tx.sender.Send(tx.ack); err != nil {
				tx.terminateLocked(ErrTransport)
			} else if tx.sender.Reliable() {
				tx.terminateLocked(nil)
			} else {
				tx.timers[slotResend] = cfg.Clock.AfterFunc(cfg.TimerD, tx.timerD)
			}
			pass = true
		default:
			tx.state = Completed
			stop(&tx.timers[slotResend])
			stop(&tx.timers[slotGiveUp])
			if tx.sender.Reliable() {
				tx.terminateLocked(nil)
			} else {
				tx.timers[slotResend] = cfg.Clock.AfterFunc(cfg.T4, tx.timerK)
			}
			pass = true
		}
	case Accepted:
		// RFC 6026 §7.2: 2xx retransmissions go to the TU, which ACKs them.
		pass = code/100 == 2
	case Completed:
		// Retransmitted final response: re-ACK (INVITE), else absorb.
		if tx.invite && code >= 300 && tx.ack != nil {
			_ = tx.sender.Send(tx.ack)
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
	stop(&tx.timers[slotGiveUp])
	tx.timers[slotGiveUp] = tx.l.cfg.Clock.AfterFunc(64*tx.l.cfg.T1, tx.timerGiveUp)
	tx.mu.Unlock()
	_, _ = tx.l.Request(NewCANCEL(tx.req), tx.sender, nil)
}

// timerResend is Timer A (INVITE: doubling, §17.1.1.2) or Timer E
// (non-INVITE: doubling up to T2, §17.1.2.2).
func (tx *ClientTx) timerResend() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
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
	if tx.invite {
		tx.interval *= 2
	} else if tx.state == Proceeding {
		tx.interval = tx.l.cfg.T2
	} else {
		tx.interval = min(2*tx.interval, tx.l.cfg.T2)
	}
	tx.timers[slotResend] = tx.l.cfg.Clock.AfterFunc(tx.interval, tx.timerResend)
}

// timerGiveUp is Timer B or F: no final response in 64*T1; for an INVITE
// in Proceeding, the same wait after its CANCEL (§9.1, see sendCancel).
func (tx *ClientTx) timerGiveUp() {
	tx.mu.Lock()
	if tx.state != Calling && tx.state != Trying && tx.state != Proceeding {
		tx.mu.Unlock()
		return
	}
	tx.l.timeouts.Add(1)
	tx.terminateLocked(ErrTimeout)
	tx.mu.Unlock()
	tx.deliver(nil, ErrTimeout)
}

func (tx *ClientTx) timerD() { tx.terminateIf(Completed) }
func (tx *ClientTx) timerK() { tx.terminateIf(Completed) }
func (tx *ClientTx) timerM() { tx.terminateIf(Accepted) }

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

// sameTransaction builds a method request with req's Request-URI, top Via,
// From, Call-ID, CSeq number and Route set, Max-Forwards 70, and the given
// To: the shape shared by the ACK and the CANCEL for req.
func sameTransaction(req *sip.Request, method string, to sip.Address) *sip.Request {
	r := &sip.Request{Method: method, URI: req.URI, Version: "SIP/2.0"}
	r.Via = []sip.Via{req.Via[0]}
	r.MaxForwards = 70
	r.From, r.To, r.CallID = req.From, to, req.CallID
	r.CSeq = sip.CSeq{Seq: req.CSeq.Seq, Method: method}
	r.Route = req.Route
	return r
}
