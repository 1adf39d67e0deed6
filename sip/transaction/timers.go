package transaction

import (
	"math"
	"sync"
	"time"
)

// The timers of all the transactions of a Layer wait in one queue, a
// binary heap ordered by due time and then by the order they were armed,
// behind a single Clock timer set for the earliest. Arming or stopping a
// transaction timer allocates nothing and creates no runtime timer: a
// transaction that ends before its timers are due (a stateless answer)
// costs two heap operations, and one waiting 32 s in Completed holds a
// heap slot, not a time.Timer and a closure. Due timers run one after the
// other in the goroutine the Clock calls (with a FakeClock: the one that
// advances it), in the order a FakeClock would run separate timers. So
// what they call — a Sender's Send, a ResponseHandler told of Timer B or
// F — must not block: it would hold up the Layer's other timers.

// txOwner is a transaction, as its timers and its base see it.
type txOwner interface {
	// fire runs timer s, which fell due while armed as seq, unless the
	// transaction has stopped or re-armed it since.
	fire(s *timerSlot, seq uint32)
	// unlink takes the transaction out of its Layer's table.
	unlink()
}

// timerSlot is one timer of a transaction. A transaction runs at most two
// timers at once (RFC 3261 Figures 5-8), so it has two slots; which timer
// a slot holds (its kind) the transaction keeps.
//
// when and seq change only under the owner's mutex and, while the slot is
// queued, the queue's too; idx is the queue's.
type timerSlot struct {
	owner txOwner
	when  int64  // due time, ns since the queue's epoch
	seq   uint32 // arming order (wrapping, never 0); 0: not armed
	idx   int32  // index in the heap, -1 when not queued
}

// timerKind says which timer of RFC 3261 §17 (or RFC 6026) a slot holds.
type timerKind uint8

const (
	timerNone timerKind = iota
	// Server transactions.
	timerTrying     // §17.2.1: 100 Trying after 200 ms
	timerG          // §17.2.1: retransmit the final response
	timerH          // §17.2.1: no ACK
	timerI          // §17.2.1: end of Confirmed
	timerJ          // §17.2.2: end of Completed
	timerL          // RFC 6026 §8.7: end of Accepted
	timerUnanswered // the TU never answered a non-INVITE request
	// Client transactions.
	timerResend // §17.1.1.2 Timer A, §17.1.2.2 Timer E
	timerGiveUp // Timer B, F, or §9.1's wait after a CANCEL
	timerD      // §17.1.1.2: end of Completed
	timerK      // §17.1.2.2: end of Completed
	timerM      // RFC 6026 §8.4: end of Accepted
)

// resetter is a Timer that can be re-armed (time.Timer, FakeClock's).
type resetter interface {
	Reset(d time.Duration) bool
}

// timerQueue holds the armed timers of a Layer.
type timerQueue struct {
	clock Clock
	epoch time.Time
	run   func() // q.fire, made once

	mu    sync.Mutex
	heap  []timerEntry // keys inline: a sift reads this array, not the slots
	seq   uint32
	t     Timer // the Clock timer, set for at (or nil)
	armed bool  // t is set and will call run
	at    int64 // when t is due
}

func (q *timerQueue) init(c Clock) {
	q.clock, q.epoch = c, c.Now()
	q.run = q.fire
}

func (q *timerQueue) now() int64 { return int64(q.clock.Now().Sub(q.epoch)) }

// arm sets s to fire after d, replacing what it held. The owner's mutex
// is held.
func (q *timerQueue) arm(s *timerSlot, d time.Duration) {
	now := q.now()
	q.mu.Lock()
	if s.idx >= 0 {
		q.remove(int(s.idx))
	}
	q.seq++
	if q.seq == 0 {
		q.seq = 1
	}
	s.when, s.seq = satAdd(now, int64(d)), q.seq
	q.push(s)
	if q.heap[0].s == s {
		q.schedule(now)
	}
	q.mu.Unlock()
}

// stop disarms s. The owner's mutex is held.
func (q *timerQueue) stop(s *timerSlot) {
	if s.seq == 0 {
		return
	}
	q.mu.Lock()
	if s.idx >= 0 {
		q.remove(int(s.idx))
	}
	s.seq = 0
	if len(q.heap) == 0 && q.armed {
		// Nothing left to wait for: a FakeClock counts no pending timer.
		q.t.Stop()
		q.armed = false
	}
	q.mu.Unlock()
}

// schedule makes sure the Clock timer fires by the earliest due time. The
// queue's mutex is held and the heap is not empty.
func (q *timerQueue) schedule(now int64) {
	when := q.heap[0].when
	if q.armed && q.at <= when {
		return
	}
	d := time.Duration(max(when-now, 0))
	q.armed, q.at = true, when
	if q.t != nil {
		if r, ok := q.t.(resetter); ok {
			r.Reset(d)
			return
		}
		q.t.Stop()
	}
	q.t = q.clock.AfterFunc(d, q.run)
}

// fire runs the timers that are due, then sets the Clock timer for the
// next one.
func (q *timerQueue) fire() {
	q.mu.Lock()
	q.armed = false
	for len(q.heap) > 0 {
		now := q.now()
		s := q.heap[0].s
		if q.heap[0].when > now {
			q.schedule(now)
			break
		}
		q.remove(0)
		owner, seq := s.owner, s.seq
		q.mu.Unlock()
		owner.fire(s, seq)
		q.mu.Lock()
	}
	q.mu.Unlock()
}

// less orders the heap: due time, then arming order (seq wraps: of two
// timers armed less than 2^31 arms apart, the one armed first).
func (q *timerQueue) less(i, j int) bool {
	a, b := &q.heap[i], &q.heap[j]
	if a.when != b.when {
		return a.when < b.when
	}
	return int32(a.seq-b.seq) < 0
}

func (q *timerQueue) swap(i, j int) {
	h := q.heap
	h[i], h[j] = h[j], h[i]
	h[i].s.idx, h[j].s.idx = int32(i), int32(j)
}

// timerEntry is a slot in the heap with its order keys.
type timerEntry struct {
	when int64
	seq  uint32
	s    *timerSlot
}

func (q *timerQueue) push(s *timerSlot) {
	s.idx = int32(len(q.heap))
	q.heap = append(q.heap, timerEntry{s.when, s.seq, s})
	q.up(len(q.heap) - 1)
}

// remove takes the slot at index i out of the heap.
func (q *timerQueue) remove(i int) {
	n := len(q.heap) - 1
	s := q.heap[i].s
	if i != n {
		q.swap(i, n)
	}
	q.heap[n] = timerEntry{}
	q.heap = q.heap[:n]
	if i != n && !q.down(i) {
		q.up(i)
	}
	s.idx = -1
	if n == 0 && cap(q.heap) > 1024 {
		q.heap = nil // a burst is over: let its room go
	}
}

func (q *timerQueue) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !q.less(j, i) {
			break
		}
		q.swap(i, j)
		j = i
	}
}

func (q *timerQueue) down(i0 int) bool {
	i, n := i0, len(q.heap)
	for {
		j := 2*i + 1
		if j >= n {
			break
		}
		if r := j + 1; r < n && q.less(r, j) {
			j = r
		}
		if !q.less(j, i) {
			break
		}
		q.swap(i, j)
		i = j
	}
	return i > i0
}

// satAdd adds without overflowing.
func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// backoff is t1 doubled n times, without overflowing (Timers A, E, G).
func backoff(t1 time.Duration, n uint8) time.Duration {
	d := t1
	for range n {
		if d > math.MaxInt64/2 {
			return math.MaxInt64
		}
		d *= 2
	}
	return d
}
