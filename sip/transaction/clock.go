package transaction

import (
	"container/heap"
	"sync"
	"time"
)

// Clock is the source of time and timers of a Layer. Tests replace it with
// a FakeClock so that a 32-second timer fires in a microsecond.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call; it reports whether it did.
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// FakeClock is a manual clock: time moves only when Advance is called, and
// the timers due by then fire in order, synchronously, in the caller's
// goroutine. It is safe for concurrent use.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    int
	timers timerHeap
	live   int
}

type fakeTimer struct {
	c    *FakeClock
	when time.Time
	seq  int
	f    func()
	done bool
	idx  int // in c.timers while not done
}

// timerHeap orders timers by due time, then by creation.
type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].when.Equal(h[j].when) {
		return h[i].seq < h[j].seq
	}
	return h[i].when.Before(h[j].when)
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.idx = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.idx = -1
	return t
}

// NewFakeClock returns a FakeClock set to start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f at Now()+d. The Timer also has a Reset method,
// like time.Timer's, which the Layer uses to re-arm its one timer.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(d), seq: c.seq, f: f}
	heap.Push(&c.timers, t)
	c.live++
	return t
}

// Stop cancels the timer.
func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	t.c.live--
	return true
}

// Reset makes the timer fire d after the clock's current time, as
// time.Timer's Reset does for an AfterFunc timer: whether it was pending
// (reported), had fired or was stopped.
func (t *fakeTimer) Reset(d time.Duration) bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	wasPending := !t.done
	c.seq++
	t.when, t.seq = c.now.Add(d), c.seq
	if wasPending && t.idx >= 0 {
		heap.Fix(&c.timers, t.idx)
		return true
	}
	if t.idx >= 0 {
		// Stopped but still in the heap: take it out before it goes in
		// again.
		heap.Remove(&c.timers, t.idx)
	}
	t.done = false
	c.live++
	heap.Push(&c.timers, t)
	return wasPending
}

// Advance moves time forward by d, firing every timer that falls due, in
// order of due time, each with the clock set to its due time. Timers that
// firing callbacks schedule within the window fire too.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		for len(c.timers) > 0 && c.timers[0].done {
			heap.Pop(&c.timers)
		}
		if len(c.timers) == 0 || c.timers[0].when.After(end) {
			c.now = end
			c.mu.Unlock()
			return
		}
		next := heap.Pop(&c.timers).(*fakeTimer)
		next.done = true
		c.live--
		c.now = next.when
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
}

// Pending returns how many timers are scheduled and not stopped.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}
