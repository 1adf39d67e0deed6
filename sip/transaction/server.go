package transaction

import (
	"github.com/hlas-voip/hlas/sip"
)

// State is a transaction state (RFC 3261 Figures 5-8, RFC 6026 Figures 5-6).
type State uint8

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
//
// One waiting in Completed over UDP with a WireSender holds this struct,
// its key and its final response's bytes, and nothing of the request.
type ServerTx struct {
	base // timers: slotRetransmit (100 Trying, G, I or J), slotTimeout (H, L, or the TU's deadline)

	key       string        // in Layer.server; owns its bytes (see appendServerKey)
	last      *sip.Response // last response sent, for retransmission
	wire      []byte        // or its bytes, when the sender is a WireSender
	onCancel  func()
	onACK     func(*sip.Request)
	cancelled chan struct{} // made by Cancelled
}

const (
	slotRetransmit = 0 // the 200 ms 100 Trying timer, then Timer G, then I; Timer J
	slotTimeout    = 1 // Timer H / L; the TU's deadline of a non-INVITE request
)

// newServer makes the transaction of req and puts it in the table under
// key, unless one is there already (returned with false) or the table is
// full (nil).
func (l *Layer) newServer(req *sip.Request, s Sender, key []byte) (*ServerTx, bool) {
	tx := &ServerTx{key: string(key)}
	tx.init(l, req, s, tx)
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
		tx.arm(slotRetransmit, timerTrying, l.cfg.TryingDelay)
	} else {
		tx.state = Trying
		// A TU that never answers must not pin the transaction: after
		// 64*T1 the client has given up (Timer F) and so does this.
		tx.arm(slotTimeout, timerUnanswered, 64*l.cfg.T1)
	}
	return tx, true
}

// unlink takes tx out of the table unless another transaction has taken
// its key since (a retransmission after RespondStateless).
func (tx *ServerTx) unlink() {
	l := tx.l
	l.mu.Lock()
	if l.server[tx.key] == tx {
		delete(l.server, tx.key)
	}
	l.mu.Unlock()
}

// Request returns the request that created the transaction. Once a
// transaction whose Sender is a WireSender has sent a final response it
// lets go of the request (to keep the 32 s wait of the Completed and
// Accepted states cheap) and Request returns nil.
func (tx *ServerTx) Request() *sip.Request {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.req
}

// Cancelled is closed when a CANCEL for this INVITE arrives (§9.2).
func (tx *ServerTx) Cancelled() <-chan struct{} {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.cancelled == nil {
		tx.cancelled = make(chan struct{})
		if tx.base.cancelled {
			close(tx.cancelled)
		}
	}
	return tx.cancelled
}

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
	already := tx.base.cancelled
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
	if tx.invite {
		tx.stop(slotRetransmit) // the 100 Trying timer
	}
	if code >= 200 {
		tx.stop(slotTimeout)
	}
	tx.last = res
	var err error
	if ws, ok := tx.sender.(WireSender); ok && code >= 200 && !(tx.invite && code < 300) {
		// Final response that the transaction itself may retransmit:
		// keep its bytes only.
		tx.wire, tx.last, tx.req = encodeResponse(res), nil, nil
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
		tx.arm(slotTimeout, timerL, 64*cfg.T1)
		if _, ok := tx.sender.(WireSender); ok {
			// Nothing in Accepted reads them: the TU retransmits its 2xx
			// and a retransmitted INVITE is absorbed (RFC 6026 §7.1). Let
			// them go rather than hold the INVITE's datagram for 32 s.
			tx.last, tx.req = nil, nil
		}
	case tx.invite:
		tx.state = Completed
		if !tx.sender.Reliable() {
			tx.n = 0
			tx.arm(slotRetransmit, timerG, cfg.T1)
		}
		tx.arm(slotTimeout, timerH, 64*cfg.T1)
	default:
		tx.state = Completed
		if tx.sender.Reliable() {
			tx.terminateLocked(nil)
		} else {
			tx.arm(slotRetransmit, timerJ, 64*cfg.T1)
		}
	}
	tx.mu.Unlock()
	return nil
}

// encodeResponse returns the bytes of res in a slice of their exact size:
// they are kept for the 32 s of the Completed state. The encoding happens
// on the stack (when it fits), so the only allocation is the one kept.
func encodeResponse(res *sip.Response) []byte {
	var buf [1024]byte
	b := res.AppendTo(buf[:0])
	return append(make([]byte, 0, len(b)), b...)
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
		tx.stop(slotRetransmit)
		tx.stop(slotTimeout)
		if tx.sender.Reliable() {
			tx.terminateLocked(nil)
		} else {
			tx.arm(slotRetransmit, timerI, tx.l.cfg.T4)
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
	if tx.base.cancelled {
		tx.mu.Unlock()
		return
	}
	tx.base.cancelled = true
	if tx.cancelled != nil {
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

// fire runs a timer of the transaction (see timerQueue).
func (tx *ServerTx) fire(s *timerSlot, seq uint32) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	kind, ok := tx.due(s, seq)
	if !ok {
		return
	}
	switch kind {
	case timerTrying:
		tx.timerTrying()
	case timerG:
		tx.timerG()
	case timerH:
		// The ACK never came (§17.2.1).
		if tx.state == Completed {
			tx.l.timeouts.Add(1)
			tx.terminateLocked(ErrTimeout)
		}
	case timerUnanswered:
		// A non-INVITE transaction the TU never answered.
		if tx.state == Trying || tx.state == Proceeding {
			tx.l.timeouts.Add(1)
			tx.terminateLocked(ErrTimeout)
		}
	case timerI:
		tx.terminateIf(Confirmed)
	case timerJ:
		tx.terminateIf(Completed)
	case timerL:
		tx.terminateIf(Accepted) // RFC 6026
	}
}

// timerTrying sends 100 Trying for a TU silent for 200 ms (§17.2.1).
func (tx *ServerTx) timerTrying() {
	if tx.state != Proceeding || tx.last != nil || tx.req == nil {
		return
	}
	tx.last = sip.NewResponse(tx.req, 100, "")
	_ = tx.send(tx.last)
}

// timerG retransmits the final non-2xx response of an INVITE, doubling
// the interval up to T2 (§17.2.1).
func (tx *ServerTx) timerG() {
	if tx.state != Completed {
		return
	}
	tx.l.retransmissions.Add(1)
	if err := tx.resend(); err != nil {
		tx.terminateLocked(ErrTransport)
		return
	}
	cfg := &tx.l.cfg
	d := min(backoff(cfg.T1, tx.n+1), cfg.T2)
	if d < cfg.T2 {
		tx.n++
	}
	tx.arm(slotRetransmit, timerG, d)
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
	tx.unlink()
	err := tx.send(res)
	if err != nil {
		tx.terminateLocked(ErrTransport)
		return err
	}
	tx.terminateLocked(nil)
	return nil
}
