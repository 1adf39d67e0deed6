package event

import (
	"time"
)

// The timed events of all subscriptions — expiry, the end of a rate-limit
// interval with a change waiting, the deadline of a NOTIFY in flight — wait
// in one heap keyed by each subscription's earliest (wake), behind a single
// Clock timer: no goroutine and no runtime timer per subscription.

// wakeHeap orders subscriptions by wake time. Each entry carries its key,
// so that the comparisons of a sift read the heap's own array rather
// than ten thousand subscriptions scattered in memory.
type wakeHeap []wakeEntry

type wakeEntry struct {
	wake int64
	s    *Subscription
}

func (h wakeHeap) less(i, j int) bool { return h[i].wake < h[j].wake }

func (h wakeHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].s.idx, h[j].s.idx = int32(i), int32(j)
}

func (h wakeHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h wakeHeap) down(i int) bool {
	i0, n := i, len(h)
	for {
		l := 2*i + 1
		if l >= n || l < 0 {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

func (h *wakeHeap) push(s *Subscription) {
	s.idx = int32(len(*h))
	*h = append(*h, wakeEntry{s.wake, s})
	h.up(len(*h) - 1)
}

// remove takes the entry at i out and returns its subscription.
func (h *wakeHeap) remove(i int) *Subscription {
	old := *h
	n := len(old) - 1
	if n != i {
		old.swap(i, n)
		if !old[:n].down(i) {
			old[:n].up(i)
		}
	}
	s := old[n].s
	old[n] = wakeEntry{}
	*h = old[:n]
	s.idx = -1
	return s
}

// fix restores the order after the wake time of the entry at i changed
// (the subscription's wake field holds the new one).
func (h wakeHeap) fix(i int) {
	h[i].wake = h[i].s.wake
	if !h.down(i) {
		h.up(i)
	}
}

// wakeAt is when s next needs the heap, 0 for never: while alive, its
// expiry and, with a change waiting out the rate limit, the end of the
// interval. The deadline of a NOTIFY in flight is kept apart (fhead).
func (n *Notifier) wakeAt(s *Subscription) int64 {
	var w int64
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
			n.heap.remove(int(s.idx))
		}
		s.wake = 0
		if len(n.heap) == 0 && n.fhead == nil && n.timer != nil {
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
		n.heap.fix(int(s.idx))
	default:
		s.wake = w
		n.heap.push(s)
	}
	n.armLocked(now)
}

// armLocked sets the Clock timer for the earliest of the heap's first
// wake and the oldest NOTIFY's deadline, unless one is set at or before
// it (a timer set early finds nothing due and re-arms).
func (n *Notifier) armLocked(now int64) {
	if n.closed || (len(n.heap) == 0 && n.fhead == nil) {
		return
	}
	var at int64
	switch {
	case n.fhead == nil:
		at = n.heap[0].wake
	case len(n.heap) == 0:
		at = n.fhead.deadline
	default:
		at = min(n.heap[0].wake, n.fhead.deadline)
	}
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
	for s := n.fhead; s != nil && s.deadline <= now; s = n.fhead {
		s.inFlight = false
		n.inFlight--
		n.flightRemove(s)
		s.pkg.m.failures.WithLabelValues("timeout").Inc()
		n.endLocked(s, "timeout", false, &a, now)
		s.finalSent = true
		n.sendLocked(s, now, &a)
	}
	for len(n.heap) > 0 && n.heap[0].wake <= now {
		s := n.heap.remove(0)
		s.wake = 0
		if s.term == "" && now >= s.expires.Load() {
			n.endLocked(s, "timeout", true, &a, now)
		}
		n.sendLocked(s, now, &a)
	}
	n.drainLocked(now, &a)
	n.armLocked(now)
	n.mu.Unlock()
	n.finish(&a)
}

// flightPush appends s, whose NOTIFY just left, to the in-flight list.
func (n *Notifier) flightPush(s *Subscription) {
	s.fprev, s.fnext = n.ftail, nil
	if n.ftail != nil {
		n.ftail.fnext = s
	} else {
		n.fhead = s
	}
	n.ftail = s
}

// flightRemove takes s out of the in-flight list.
func (n *Notifier) flightRemove(s *Subscription) {
	if s.fprev != nil {
		s.fprev.fnext = s.fnext
	} else {
		n.fhead = s.fnext
	}
	if s.fnext != nil {
		s.fnext.fprev = s.fprev
	} else {
		n.ftail = s.fprev
	}
	s.fprev, s.fnext = nil, nil
}
