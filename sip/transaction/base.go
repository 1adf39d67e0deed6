package transaction

import (
	"sync"

	"github.com/hlas-voip/hlas/sip"
)

// base is what client and server transactions share: identity, state,
// timers and the way they end.
type base struct {
	l      *Layer
	key    string
	req    *sip.Request
	sender Sender
	invite bool
	server bool

	mu     sync.Mutex
	state  State
	timers [3]Timer // slots named by the client and server files
	done   chan struct{}
	err    error
}

func newBase(l *Layer, key string, req *sip.Request, s Sender, server bool) base {
	return base{l: l, key: key, req: req, sender: s, invite: req.Method == sip.INVITE, server: server, done: make(chan struct{})}
}

// State returns the current state.
func (b *base) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// Done is closed when the transaction terminates.
func (b *base) Done() <-chan struct{} { return b.done }

// Err says why the transaction ended badly: ErrTimeout (Timer B or F, or
// no final response 64*T1 after a CANCEL, on a client transaction; Timer
// H, or no answer from the TU, on a server one) or ErrTransport. Nil
// otherwise.
func (b *base) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *base) terminateIf(s State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == s {
		b.terminateLocked(nil)
	}
}

func (b *base) terminateLocked(err error) {
	if b.state == Terminated {
		return
	}
	b.state = Terminated
	b.err = err
	if err == ErrTransport {
		b.l.transportErrors.Add(1)
	}
	for i := range b.timers {
		stop(&b.timers[i])
	}
	close(b.done)
	b.l.remove(b)
}
