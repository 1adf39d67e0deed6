package publish

import (
	"context"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/store"
)

// committer writes the store changes of concurrent PUBLISHes in shared
// transactions (group commit): each PUBLISH still waits for its own
// change to be committed before it is answered, but a storm of them costs
// one transaction per batch, not one each. There is no goroutine of its
// own: the first writer to find no one writing becomes the leader and
// writes everything queued, its own change among it, then hands the
// queue to the next waiter.
//
// The commits of a steady load seldom overlap (at 1 000 PUBLISH/s each
// takes a fraction of the millisecond between two), so the leader first
// waits up to window, from when the first write of its batch was queued,
// for others to join. The wait ends early once ceiling writes are queued:
// with a bounded pool of callers (the server's workers) no one else could
// join, and waiting on would only hold them all.
//
// It waits only while waiting pays. A wait is in vain when no write
// joined, or when none came after its first quarter: a few callers that
// each wait for their answer before their next write come all at once,
// and then nobody. After a wait that no write joined, the
// leader does not wait until two writes overlap again (one queued while
// another was queued or being written), which a single caller writing in
// a loop never does, nor a trickle of PUBLISHes. After the second wait in
// vain in a row it lets 1, then 3, 7, ... up to 63 batches pass without
// waiting, so that callers like those above are slowed once in 64
// batches, not at each, while a lone wait in vain (a lull in a steady
// load) costs nothing more.
type committer struct {
	st      store.Publications
	window  time.Duration // <= 0: no waiting
	ceiling int           // the most writes one batch waits for

	mu      sync.Mutex
	pending []*commitOp
	leading bool
	// gathering: the leader is waiting for writes to join; an arrival
	// that fills the batch to ceiling signals full.
	gathering bool
	full      chan struct{} // capacity 1
	// worth: writes have overlapped since the last wait in vain.
	worth bool
	// vain counts the waits in vain in a row; skip is how many batches
	// are still to go without waiting after the last of them.
	vain, skip int

	// Only the leader uses these.
	timer *time.Timer
	ws    []store.PublicationWrite

	ops sync.Pool // of *commitOp: one per PUBLISH otherwise
}

// maxBatch bounds the writes of one transaction.
const maxBatch = 128

// commitOp is one write waiting for its commit.
type commitOp struct {
	w   store.PublicationWrite
	at  time.Time // when it was queued
	err error
	// done gets true when this op's goroutine is to lead, false when its
	// write is done (err set).
	done chan bool
}

func newCommitter(st store.Publications, window time.Duration, callers int) *committer {
	// A back end whose writes are appends to a local journal (the
	// embedded database's owner) writes faster than a wait for company
	// saves: no gathering then. Writes that queue behind one still share
	// its batch.
	if q, ok := st.(store.QuickWriter); ok && q.QuickWrites() {
		window = 0
	}
	c := &committer{st: st, window: window, ceiling: maxBatch, full: make(chan struct{}, 1)}
	if callers > 0 {
		c.ceiling = min(callers, maxBatch)
	}
	c.ops.New = func() any { return &commitOp{done: make(chan bool, 1)} }
	return c
}

// write commits w, in a batch with whatever other writes are queued, and
// returns its outcome: w's own precondition failure (store.ErrExists,
// store.ErrNotFound) or the batch's failure. A batch is written under its
// leader's ctx.
func (c *committer) write(ctx context.Context, w store.PublicationWrite) error {
	op := c.ops.Get().(*commitOp)
	op.w = w
	op.at = time.Now()
	c.mu.Lock()
	if c.leading || len(c.pending) > 0 {
		c.worth = true
	}
	c.pending = append(c.pending, op)
	if c.leading {
		if c.gathering && len(c.pending) >= c.ceiling {
			select {
			case c.full <- struct{}{}:
			default:
			}
		}
		c.mu.Unlock()
		if lead := <-op.done; !lead {
			return c.finish(op)
		}
		c.mu.Lock()
	}
	c.leading = true
	for {
		c.gatherLocked()
		n := min(len(c.pending), maxBatch)
		batch := c.pending[:n:n]
		c.pending = c.pending[n:]
		c.mu.Unlock()
		c.writeBatch(ctx, batch)
		c.mu.Lock()
		mine := false
		for _, o := range batch {
			if o == op {
				mine = true
			} else {
				o.done <- false
			}
		}
		if !mine && len(c.pending) > 0 {
			continue // ours is still queued
		}
		if len(c.pending) == 0 {
			c.pending = nil
			c.leading = false
		} else {
			c.pending[0].done <- true
		}
		c.mu.Unlock()
		return c.finish(op)
	}
}

// finish returns op's outcome and op to the pool.
func (c *committer) finish(op *commitOp) error {
	err := op.err
	*op = commitOp{done: op.done}
	c.ops.Put(op)
	return err
}

// gatherLocked is the leader's wait for writes to join the first queued
// one. The caller holds mu; it is released while waiting.
func (c *committer) gatherLocked() {
	first := c.pending[0]
	if c.window <= 0 || !c.worth || len(c.pending) >= c.ceiling {
		return
	}
	if c.skip > 0 {
		c.skip--
		return
	}
	deadline := first.at.Add(c.window)
	d := time.Until(deadline)
	if d <= 0 {
		return
	}
	before, start := len(c.pending), time.Now()
	select {
	case <-c.full: // left by an earlier batch
	default:
	}
	c.gathering = true
	c.mu.Unlock()
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	filled := false
	select {
	case <-c.timer.C:
	case <-c.full:
		c.timer.Stop()
		filled = true
	}
	c.mu.Lock()
	c.gathering = false
	joined := len(c.pending) > before
	// Still: nothing came after the first quarter of a wait of half a
	// window or more. (A leader whose first write queued during the
	// previous commit waits less; too short to tell.)
	still := d >= c.window/2 && c.pending[len(c.pending)-1].at.Before(start.Add(d/4))
	if filled || joined && !still {
		c.vain = 0
		return
	}
	if !joined {
		c.worth = false
	}
	c.vain = min(c.vain+1, maxVain)
	c.skip = 1<<(c.vain-1) - 1
}

// maxVain bounds the batches let pass after waits in vain: 2^6 - 1.
const maxVain = 7

// writeBatch writes the batch in one transaction and sets each op's
// outcome.
func (c *committer) writeBatch(ctx context.Context, batch []*commitOp) {
	ws := c.ws[:0]
	for _, o := range batch {
		ws = append(ws, o.w)
	}
	err := c.st.WritePublications(ctx, ws)
	for i, o := range batch {
		o.err = err
		if err == nil {
			o.err = ws[i].Err
		}
	}
	clear(ws) // the bodies are the requests'
	c.ws = ws[:0]
}
