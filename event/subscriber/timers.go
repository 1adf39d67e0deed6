package subscriber

import (
	"container/heap"
	"time"
)

// Every timed event of every subscription — a retry, a refresh, an expiry,
// Timer N, the deadline of a request in flight — waits in one heap keyed
// by each subscription's earliest (wake), behind a single Clock timer, as
// in the notifier: no goroutine and no runtime timer per subscription.

// wakeHeap orders subscriptions by wake time.
type wakeHeap []*sub

func (h wakeHeap) Len() int           { return len(h) }
func (h wakeHeap) Less(i, j int) bool { return h[i].wake < h[j].wake }
func (h wakeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *wakeHeap) Push(x any) {
	s := x.(*sub)
	s.idx = len(*h)
	*h = append(*h, s)
}
func (h *wakeHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.idx = -1
	return s
}

// wakeAt is when s next needs the timer, 0 for never: the deadline of its
// request in flight; without a dialog, its retry; with one, Timer N, the
// expiry and (no request in flight) the refresh.
func wakeAt(s *sub) int64 {
	if s.gone || s.dead {
		return 0
	}
	var w int64
	early := func(t int64) {
		if t != 0 && (w == 0 || t < w) {
			w = t
		}
	}
	if s.inFlight {
		early(s.deadline)
	}
	if s.d == nil {
		if !s.inFlight {
			early(s.retryAt)
		}
		return w
	}
	early(s.notifyBy)
	early(s.expiresAt)
	if !s.inFlight {
		early(s.refreshAt)
	}
	return w
}

// reschedLocked puts s in the heap at its wake time (or takes it out) and
// makes sure the Clock timer fires by the earliest.
func (c *Client) reschedLocked(s *sub, now int64) {
	w := wakeAt(s)
	switch {
	case w == 0:
		if s.idx >= 0 {
			heap.Remove(&c.heap, s.idx)
		}
		s.wake = 0
		if len(c.heap) == 0 && c.timer != nil {
			c.timer.Stop()
			c.timer = nil
			c.timerGen++
		}
		return
	case s.idx >= 0:
		if s.wake == w {
			return
		}
		s.wake = w
		heap.Fix(&c.heap, s.idx)
	default:
		s.wake = w
		heap.Push(&c.heap, s)
	}
	c.armLocked(now)
}

// armLocked sets the Clock timer for the heap's earliest wake, unless one
// is set at or before it (a timer set early finds nothing due and
// re-arms).
func (c *Client) armLocked(now int64) {
	if c.closed || len(c.heap) == 0 {
		return
	}
	at := c.heap[0].wake
	if c.timer != nil && c.timerAt <= at {
		return
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timerGen++
	gen := c.timerGen
	c.timerAt = at
	c.timer = c.clock.AfterFunc(time.Duration(max(at-now, 0)), func() { c.fire(gen) })
}

// fire handles the subscriptions whose wake time came. They are taken out
// of the heap first and handled once each, so that a subscription whose
// handling left it due again waits for the next timer rather than spin.
func (c *Client) fire(gen uint64) {
	c.mu.Lock()
	if gen != c.timerGen || c.closed {
		c.mu.Unlock()
		return
	}
	c.timer = nil
	now := c.now()
	var due []*sub
	for len(c.heap) > 0 && c.heap[0].wake <= now {
		s := heap.Pop(&c.heap).(*sub)
		s.wake = 0
		due = append(due, s)
	}
	var o outbox
	for _, s := range due {
		c.dueLocked(s, now, &o)
	}
	c.armLocked(now)
	c.mu.Unlock()
	c.finish(&o)
}
