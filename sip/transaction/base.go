package transaction

import (
	"sync"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// base is what client and server transactions share: identity, state,
// timers and the way they end. It is laid out to keep a transaction
// waiting in Completed small: no channel is made unless asked for, and the
// error is a code.
type base struct {
	l      *Layer
	req    *sip.Request
	sender Sender
	done   chan struct{} // made by Done
	timers [2]timerSlot  // slots named by the client and server files

	mu            sync.Mutex
	state         State
	kinds         [2]timerKind // what each timer slot holds
	invite        bool
	errCode       uint8 // errNone, errTimeout, errTransport
	n             uint8 // retransmissions so far (Timers A, E, G)
	cancelled     bool  // server: a CANCEL came; client: Cancel was called
	cancelPending bool  // client: Cancel waits for a provisional response
}

const (
	errNone uint8 = iota
	errTimeout
	errTransport
)

func (b *base) init(l *Layer, req *sip.Request, s Sender, owner txOwner) {
	b.l, b.req, b.sender = l, req, s
	b.invite = req.Method == sip.INVITE
	for i := range b.timers {
		b.timers[i] = timerSlot{owner: owner, idx: -1}
	}
}

// State returns the current state.
func (b *base) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// Done is closed when the transaction terminates.
func (b *base) Done() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done == nil {
		b.done = make(chan struct{})
		if b.state == Terminated {
			close(b.done)
		}
	}
	return b.done
}

// Err says why the transaction ended badly: ErrTimeout (Timer B or F, or
// no final response 64*T1 after a CANCEL, on a client transaction; Timer
// H, or no answer from the TU, on a server one) or ErrTransport. Nil
// otherwise.
func (b *base) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.errCode {
	case errTimeout:
		return ErrTimeout
	case errTransport:
		return ErrTransport
	}
	return nil
}

// arm sets timer slot i to fire kind after d. The mutex is held.
func (b *base) arm(i int, kind timerKind, d time.Duration) {
	b.kinds[i] = kind
	b.l.timers.arm(&b.timers[i], d)
}

// stop disarms timer slot i. The mutex is held.
func (b *base) stop(i int) {
	b.kinds[i] = timerNone
	b.l.timers.stop(&b.timers[i])
}

// due reports which timer s, which fell due armed as seq, holds, unless it
// was stopped or re-armed since, and marks it spent. The mutex is held.
func (b *base) due(s *timerSlot, seq uint32) (timerKind, bool) {
	if s.seq != seq || seq == 0 {
		return timerNone, false
	}
	i := 0
	if s == &b.timers[1] {
		i = 1
	}
	k := b.kinds[i]
	s.seq, b.kinds[i] = 0, timerNone
	return k, true
}

func (b *base) terminateIf(s State) {
	if b.state == s {
		b.terminateLocked(nil)
	}
}

func (b *base) terminateLocked(err error) {
	if b.state == Terminated {
		return
	}
	b.state = Terminated
	switch err {
	case ErrTimeout:
		b.errCode = errTimeout
	case ErrTransport:
		b.errCode = errTransport
		b.l.transportErrors.Add(1)
	}
	for i := range b.timers {
		b.stop(i)
	}
	b.timers[0].owner.unlink() // the owner of any slot is the transaction
	if b.done != nil {
		close(b.done)
	}
}
