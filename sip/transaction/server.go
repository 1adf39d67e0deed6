package transaction

import (
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// State is a transaction state (RFC 3261 Figures 5-8, RFC 6026 Figures 5-6).
type State int

// Transaction states.
const (
	Calling State = iota
	Trying
	Proceeding
	Accepted
	Completed
	Confirmed
	Terminated
)

var stateNames = [...]string{"Calling", "Trying", "Proceeding", "Accepted", "Completed", "Confirmed", "Terminated"}

func (s State) String() string { return stateNames[s] }

// ServerTx is a server transaction: INVITE (RFC 3261 §17.2.1, RFC 6026
// §7.1) or non-INVITE (§17.2.2). The transaction user answers through
// Respond; the transaction retransmits and absorbs as the RFC says.
type ServerTx struct {
	base // timers: G/J (I reuses it), H/L, trying

	last      *sip.Response // last response sent, for retransmission
	wire      []byte        // or its bytes, when the sender is a WireSender
	gInterval time.Duration // current Timer G interval
	onCancel  func()
	cancelled chan struct{}
	onACK     func(*sip.Request)
}

const (
	slotRetransmit = 0 // Timer G, then I / Timer J
	slotTimeout    = 1 // Timer H / L
	slotTrying     = 2 // the 200 ms 100 Trying timer
)

func (l *Layer) newServer(req *sip.Request, s Sender) (*ServerTx, bool) {
	tx := &ServerTx{
		base:      newBase(l, serverKey(req, req.Method), req, s, true),
		cancelled: make(chan struct{}),
	}
	l.mu.Lock()
	if old, ok := l.server[tx.key]; ok {
		l.mu.Unlock()
		return old, false
	}
	if l.cfg.MaxServer > 0 && len(l.server) >= l.cfg.MaxServer {
		l.mu.Unlock()
		return nil, false
	}
	l.server[tx.key] = tx
	l.mu.Unlock()
	l.serverCreated.Add(1)

	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.invite {
		tx.state = Proceeding
		tx.timers[slotTrying] = l.cfg.Clock.AfterFunc(l.cfg.TryingDelay, tx.timerTrying)
	} else {
		tx.state = Trying
		// A TU that never answers must not pin the transaction: after
		// 64*T1 the client has given up (Timer F) and so does this.
		tx.timers[slotTimeout] = l.cfg.Clock.AfterFunc(64*l.cfg.T1, tx.timerUnanswered)
	}
	return tx, true
}

// Request returns the request that created the transaction. Once a
// transaction whose Sender is a WireSender has sent a non-2xx final
// response it lets go of the request (to keep the 32 s wait of the
// Completed state cheap) and Request returns nil.
func (tx *ServerTx) Request() *sip.Request {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.req
}

// Cancelled is closed when a CANCEL for this INVITE arrives (§9.2).
func (tx *ServerTx) Cancelled() <-chan struct{} { return tx.cancelled }

// OnCancel replaces the default reaction to a CANCEL, which is to answer
// the INVITE 487 Request Terminated when it has no final response yet.
// A proxy sets it to cancel its branches instead (§16.10). When the CANCEL
// has already come (the TU set the reaction late, after work off its
// worker), f runs at once, on the caller's goroutine.
func (tx *ServerTx) OnCancel(f func()) {
	tx.mu.Lock()
	tx.onCancel = f
	// Under the lock cancel() reads onCancel with: either it runs f, or
	// the CANCEL came before and f runs here, never both.
	var already bool
	select {
	case <-tx.cancelled:
		already = true
	default:
	}
	tx.mu.Unlock()
	if already && f != nil {
		f()
	}
}

// OnACK registers a function for an ACK that matches this transaction in
// the Accepted state (an RFC 2543 peer reusing the INVITE's branch for the
// ACK to a 2xx, RFC 6026 §7.1).
func (tx *ServerTx) OnACK(f func(*sip.Request)) {
	tx.mu.Lock()
	tx.onACK = f
	tx.mu.Unlock()
}

// Respond sends a response from the TU through the state machine.
// Provisional responses keep the transaction open; a 2xx to INVITE moves it
// to Accepted, where the TU retransmits the 2xx itself (§13.3.1.4) and
// Respond passes those retransmissions on; any other final response moves
// it to Completed, where the transaction retransmits it.
func (tx *ServerTx) Respond(res *sip.Response) error {
	tx.mu.Lock()
	code := res.StatusCode
	switch tx.state {
	case Trying, Proceeding:
	case Accepted:
		if code/100 != 2 {
			tx.mu.Unlock()
			return ErrTerminated
		}
		// A 2xx retransmission from the TU.
		err := tx.send(res)
		tx.mu.Unlock()
		return err
	default:
		tx.mu.Unlock()
		return ErrTerminated
	}
	stop(&tx.timers[slotTrying])
	if code >= 200 {
		stop(&tx.timers[slotTimeout])
	}
	tx.last = res
	var err error
	if ws, ok := tx.sender.(WireSender); ok && code >= 200 && !(tx.invite && code < 300) {
		// Final response that the transaction itself may retransmit:
		// keep its bytes only.
		tx.wire, tx.last, tx.req = res.AppendTo(nil), nil, nil
		err = ws.SendWire(tx.wire)
	} else {
		err = tx.send(res)
	}
	if err != nil {
		tx.terminateLocked(ErrTransport)
		tx.mu.Unlock()
		return err
	}
	cfg := &tx.l.cfg
	switch {
	case code < 200:
		tx.state = Proceeding
	case tx.invite && code < 300:
		tx.state = Accepted
		tx.timers[slotTimeout] = cfg.Clock.AfterFunc(64*cfg.T1, tx.timerL)
	case tx.invite:
		tx.state = Completed
		if !tx.sender.Reliable() {
			tx.gInterval = cfg.T1
			tx.timers[slotRetransmit] = cfg.Clock.AfterFunc(cfg.T1, tx.timerG)
		}
		tx.timers[slotTimeout] = cfg.Clock.AfterFunc(64*cfg.T1, tx.timerH)
	default:
		tx.state = Completed
		if tx.sender.Reliable() {
			tx.terminateLocked(nil)
		} else {
			tx.timers[slotRetransmit] = cfg.Clock.AfterFunc(64*cfg.T1, tx.timerJ)
		}
	}
	tx.mu.Unlock()
	return nil
}

func (tx *ServerTx) send(res *sip.Response) error {
	if err := tx.sender.Send(res); err != nil {
		tx.l.cfg.Logger.Debug("send response", "feature", "transaction", "code", res.StatusCode, "err", err)
		return err
	}
	return nil
}

// resend sends the last response again.
func (tx *ServerTx) resend() error {
	if tx.wire != nil {
		return tx.sender.(WireSender).SendWire(tx.wire)
	}
	return tx.send(tx.last)
}

// receive handles a retransmission of the request (or a CANCEL's own
// retransmission): the last response goes out again where the RFC says.
func (tx *ServerTx) receive(req *sip.Request) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	switch tx.state {
	case Proceeding, Completed:
		if tx.last != nil || tx.wire != nil {
			tx.l.retransmissions.Add(1)
			_ = tx.resend()
		}
	}
	// Trying (non-INVITE, nothing sent yet), Accepted (INVITE: absorbed,
	// RFC 6026 §7.1), Confirmed and Terminated: absorbed.
}

// ack handles an ACK matching the transaction. It returns true when the
// ACK was the hop-by-hop ACK to a non-2xx final response (absorbed), false
// when the TU must see it.
func (tx *ServerTx) ack(req *sip.Request) bool {
	tx.mu.Lock()
	switch tx.state {
	case Completed:
		tx.state = Confirmed
		stop(&tx.timers[slotRetransmit])
		stop(&tx.timers[slotTimeout])
		if tx.sender.Reliable() {
			tx.terminateLocked(nil)
		} else {
			tx.timers[slotRetransmit] = tx.l.cfg.Clock.AfterFunc(tx.l.cfg.T4, tx.timerI)
		}
		tx.mu.Unlock()
		return true
	case Confirmed:
		tx.mu.Unlock()
		return true
	case Accepted:
		f := tx.onACK
		tx.mu.Unlock()
		if f != nil {
			f(req)
			return true
		}
		return false
	}
	tx.mu.Unlock()
	return false
}

// cancel is called for a CANCEL matching this INVITE transaction.
func (tx *ServerTx) cancel() {
	tx.mu.Lock()
	select {
	case <-tx.cancelled:
		tx.mu.Unlock()
		return
	default:
		close(tx.cancelled)
	}
	f, pending, req := tx.onCancel, tx.state == Proceeding, tx.req
	toTag := ""
	if tx.last != nil {
		toTag = tx.last.To.Tag() // §8.2.6.2: one tag for all responses
	}
	tx.mu.Unlock()
	switch {
	case f != nil:
		f()
	case pending && req != nil:
		_ = tx.Respond(tx.l.reply(req, 487, toTag))
	}
}

func (tx *ServerTx) timerTrying() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state != Proceeding || tx.last != nil || tx.req == nil {
		return
	}
	tx.last = sip.NewResponse(tx.req, 100, "")
	_ = tx.send(tx.last)
}

// timerG retransmits the final non-2xx response of an INVITE, doubling
// the interval up to T2 (§17.2.1).
func (tx *ServerTx) timerG() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state != Completed {
		return
	}
	tx.l.retransmissions.Add(1)
	if err := tx.resend(); err != nil {
		tx.terminateLocked(ErrTransport)
		return
	}
	tx.gInterval = min(2*tx.gInterval, tx.l.cfg.T2)
	tx.timers[slotRetransmit] = tx.l.cfg.Clock.AfterFunc(tx.gInterval, tx.timerG)
}

// timerH: the ACK never came (§17.2.1).
func (tx *ServerTx) timerH() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state == Completed {
		tx.l.timeouts.Add(1)
		tx.terminateLocked(ErrTimeout)
	}
}

// timerUnanswered ends a non-INVITE transaction the TU never answered.
func (tx *ServerTx) timerUnanswered() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state == Trying || tx.state == Proceeding {
		tx.l.timeouts.Add(1)
		tx.terminateLocked(ErrTimeout)
	}
}

// RespondStateless sends a final response once and ends the transaction
// at once, as a stateless server would (RFC 3261 §16.11; Kamailio's
// sl_send_reply): no retransmission by Timer G, no 32 s wait. A
// retransmitted request is then processed anew, so use it only for answers
// that processing gives again identically (rejections, OPTIONS), never for
// one a client must get exactly once. It keeps a rejected INVITE over UDP
// from turning into eleven responses to a possibly spoofed source.
func (tx *ServerTx) RespondStateless(res *sip.Response) error {
	if res.StatusCode < 200 {
		return tx.Respond(res)
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state != Trying && tx.state != Proceeding {
		return ErrTerminated
	}
	// Out of the table before the response leaves: a retransmission sent
	// the moment the client has it must start a new transaction, not be
	// absorbed by this one as it ends.
	tx.l.remove(&tx.base)
	err := tx.send(res)
	if err != nil {
		tx.terminateLocked(ErrTransport)
		return err
	}
	tx.terminateLocked(nil)
	return nil
}

// timerI ends the Confirmed state, timerJ the Completed state of a
// non-INVITE transaction, timerL the Accepted state (RFC 6026).
func (tx *ServerTx) timerI() { tx.terminateIf(Confirmed) }
func (tx *ServerTx) timerJ() { tx.terminateIf(Completed) }
func (tx *ServerTx) timerL() { tx.terminateIf(Accepted) }

func stop(t *Timer) {
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
}
