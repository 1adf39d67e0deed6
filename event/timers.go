package event

import (
	"container/heap"
	"time"
)

// The timed events of all subscriptions — expiry, the end of a rate-limit
// interval with a change waiting, the deadline of a NOTIFY in flight — wait
// in one heap keyed by each subscription's earliest (wake), behind a single
// Clock timer: no goroutine and no runtime timer per subscription.

// wakeHeap orders subscriptions by wake time.
type wakeHeap []*Subscription

func (h wakeHeap) Len() int           { return len(h) }
func (h wakeHeap) Less(i, j int) bool { return h[i].wake < h[j].wake }
func (h wakeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = int32(i), int32(j)
}
func (h *wakeHeap) Push(x any) {
	s := x.(*Subscription)
	s.idx = int32(len(*h))
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
// NOTIFY in flight; while alive, its expiry and, with a change waiting
// out the rate limit, the end of the interval.
func (n *Notifier) wakeAt(s *Subscription) int64 {
	var w int64
	if s.inFlight {
		w = s.deadline
	}
	if s.term == "" {
		if e := s.expires.Load(); w == 0 || e < w {
			w = e
		}
		if s.dirty && s.ready && !s.inFlight && !s.waiting && !s.urgent {
			if t := s.lastSent + int64(n.cfg.MinInterval); t < w {
				w = t
			}
		}
	}
	return w
}

// reschedLocked puts s in the heap at its wake time (or takes it out) and
// makes sure the Clock timer fires by the earliest.
func (n *Notifier) reschedLocked(s *Subscription, now int64) {
	w := n.wakeAt(s)
	switch {
	case w == 0:
		if s.idx >= 0 {
			heap.Remove(&n.heap, int(s.idx))
		}
		s.wake = 0
		if len(n.heap) == 0 && n.timer != nil {
			// Nothing left to wait for: no timer either (a FakeClock
			// counts none pending).
			n.timer.Stop()
			n.timer = nil
			n.timerGen++
		}
		return
	case s.idx >= 0:
		if s.wake == w {
			return
		}
		s.wake = w
		heap.Fix(&n.heap, int(s.idx))
	default:
		s.wake = w
		heap.Push(&n.heap, s)
	}
	n.armLocked(now)
}

// armLocked sets the Clock timer for the heap's earliest wake, unless one
// is set at or before it (a timer set early finds nothing due and
// re-arms).
func (n *Notifier) armLocked(now int64) {
	if n.closed || len(n.heap) == 0 {
		return
	}
	at := n.heap[0].wake
	if n.timer != nil && n.timerAt <= at {
		return
	}
	if n.timer != nil {
		n.timer.Stop()
	}
	n.timerGen++
	gen := n.timerGen
	n.timerAt = at
	n.timer = n.clock.AfterFunc(time.Duration(max(at-now, 0)), func() { n.fire(gen) })
}

// fire handles the subscriptions whose wake time came: a NOTIFY that got
// no outcome in NotifyTimeout ends its subscription; an expired one ends
// with terminated;reason=timeout (RFC 6665 §4.2.2); a change held back by
// the rate limit goes out.
func (n *Notifier) fire(gen uint64) {
	n.mu.Lock()
	if gen != n.timerGen || n.closed {
		n.mu.Unlock()
		return
	}
	n.timer = nil
	now := n.now()
	var a after
	for len(n.heap) > 0 && n.heap[0].wake <= now {
		s := heap.Pop(&n.heap).(*Subscription)
		s.wake = 0
		switch {
		case s.inFlight && now >= s.deadline:
			s.inFlight = false
			n.inFlight--
			s.pkg.m.failures.WithLabelValues("timeout").Inc()
			n.endLocked(s, "timeout", false, &a, now)
			s.finalSent = true
		case s.term == "" && now >= s.expires.Load():
			n.endLocked(s, "timeout", true, &a, now)
		}
		n.sendLocked(s, now, &a)
	}
	n.drainLocked(now, &a)
	n.armLocked(now)
	n.mu.Unlock()
	n.finish(&a)
}
