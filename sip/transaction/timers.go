package transaction

import (
	"math"
	"sync"
	"time"
)

// The timers of all the transactions of a Layer wait in one queue,
// behind a single Clock timer set for the earliest. Arming or stopping a
// transaction timer allocates nothing and creates no runtime timer: a
// transaction that ends before its timers are due (a stateless answer)
// costs two queue operations, and one waiting 32 s in Completed holds a
// place in the queue, not a time.Timer and a closure. Due timers run one
// after the other in the goroutine the Clock calls (with a FakeClock: the
// one that advances it), in the order a FakeClock would run separate
// timers: due time, then the order they were armed. So what they call — a
// Sender's Send, a ResponseHandler told of Timer B or F — must not block:
// it would hold up the Layer's other timers.
//
// Nearly every timer is armed for one of a few durations, all the Layer's
// configuration: T1 and its doublings up to T2 or 64*T1, T4, Timer D, the
// 100 Trying delay. Timers armed for the same duration on a monotonic
// clock fall due in the order they were armed, so the queue keeps one
// FIFO, a doubly-linked list through the slots, per duration: arming
// appends, stopping unlinks, both O(1), and the earliest timer is the
// earliest of a dozen FIFO heads. A binary heap, as the whole queue once
// was, cost a presence server (50 000 Timers K waiting T4, six operations
// per NOTIFY, each sifting 16 levels of scattered slots) 6% of its CPU.
// The FIFOs are few and fixed (maxFIFOs, an array in the queue): timers
// armed for a duration none has, when all are in use and none is empty,
// go to a small heap instead — arbitrary durations stay correct, and a
// burst of odd ones costs that heap's room until it empties, no more.

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
// queued, the queue's too; idx, prev and next are the queue's.
type timerSlot struct {
	owner      txOwner
	when       int64      // due time, ns since the queue's epoch
	seq        uint32     // arming order (wrapping, never 0); 0: not armed
	idx        int32      // index in the queue's heap, -1 when not there
	prev, next *timerSlot // neighbours in a FIFO; nil when not in one
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

// maxFIFOs bounds the durations with a FIFO of their own: a Layer arms a
// dozen or so; more (a Clock test's) go to the heap.
const maxFIFOs = 32

// timerQueue holds the armed timers of a Layer.
type timerQueue struct {
	clock Clock
	epoch time.Time
	slack int64  // ns the Clock timer may be late (Config.TimerSlack)
	run   func() // q.fire, made once

	mu     sync.Mutex
	durs   [maxFIFOs]time.Duration // durs[i] is that of FIFO i: scanned on each arm, kept dense
	fifos  [maxFIFOs]timerSlot     // FIFO i's root: next is its first, prev its last, itself when empty
	nfifo  int                     // FIFOs in use, the first
	heap   []timerEntry            // timers of durations without a FIFO
	n      int                     // timers queued, in FIFOs and heap
	seq    uint32
	t      Timer // the Clock timer, set for at (or nil)
	armed  bool  // t is set and will call run
	at     int64 // when t is due
	firing int   // fire loops running: each looks at the queue again before it ends
}

func (q *timerQueue) init(c Clock, slack time.Duration) {
	q.clock, q.epoch, q.slack = c, c.Now(), int64(slack)
	q.run = q.fire
}

func (q *timerQueue) now() int64 { return int64(q.clock.Now().Sub(q.epoch)) }

// arm sets s to fire after d, replacing what it held. The owner's mutex
// is held.
func (q *timerQueue) arm(s *timerSlot, d time.Duration) {
	now := q.now()
	q.mu.Lock()
	if s.next != nil || s.idx >= 0 {
		q.remove(s)
	}
	q.seq++
	if q.seq == 0 {
		q.seq = 1
	}
	s.when, s.seq = satAdd(now, int64(d)), q.seq
	q.push(s, d)
	// The Clock timer is set no later than the earliest timer but s (see
	// schedule), or a fire loop will look again.
	if q.firing == 0 && (!q.armed || s.when < q.at) {
		q.schedule(now, s.when)
	}
	q.mu.Unlock()
}

// stop disarms s. The owner's mutex is held.
func (q *timerQueue) stop(s *timerSlot) {
	if s.seq == 0 {
		return
	}
	q.mu.Lock()
	if s.next != nil || s.idx >= 0 {
		q.remove(s)
	}
	s.seq = 0
	if q.n == 0 && q.armed {
		// Nothing left to wait for: a FakeClock counts no pending timer.
		q.t.Stop()
		q.armed = false
	}
	q.mu.Unlock()
}

// schedule sets the Clock timer for when, the earliest due time, unless
// it is already set for no later. Stopping a timer leaves it set early:
// the queue is then looked at for nothing, which is cheaper than finding
// the next earliest on each stop. The queue's mutex is held.
func (q *timerQueue) schedule(now, when int64) {
	// With slack, wake-ups fall on a grid of it: the timers due between
	// two points fire together at the later one.
	if sl := q.slack; sl > 0 && when <= math.MaxInt64-sl {
		when = (when + sl - 1) / sl * sl
	}
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
	q.firing++
	for q.n > 0 {
		now := q.now()
		s := q.first()
		if s.when > now {
			q.schedule(now, s.when)
			break
		}
		q.remove(s)
		owner, seq := s.owner, s.seq
		q.mu.Unlock()
		owner.fire(s, seq)
		q.mu.Lock()
	}
	q.firing--
	q.mu.Unlock()
}

// first returns the earliest queued timer. The queue is not empty.
func (q *timerQueue) first() *timerSlot {
	var m *timerSlot
	if len(q.heap) > 0 {
		m = q.heap[0].s
	}
	for i := range q.nfifo {
		r := &q.fifos[i]
		if s := r.next; s != r && (m == nil || before(s.when, s.seq, m.when, m.seq)) {
			m = s
		}
	}
	return m
}

// before orders timers: due time, then arming order (seq wraps: of two
// timers armed less than 2^31 arms apart, the one armed first).
func before(when1 int64, seq1 uint32, when2 int64, seq2 uint32) bool {
	if when1 != when2 {
		return when1 < when2
	}
	return int32(seq1-seq2) < 0
}

// push queues s, just armed for d: in d's FIFO, or the heap if d has none
// and can have none.
func (q *timerQueue) push(s *timerSlot, d time.Duration) {
	q.n++
	r := q.fifo(d)
	if r == nil {
		s.idx = int32(len(q.heap))
		q.heap = append(q.heap, timerEntry{s.when, s.seq, s})
		q.up(len(q.heap) - 1)
		return
	}
	// After the last timer due no later than s: the last, unless two arms
	// raced between reading the clock and taking the lock, or the clock
	// stepped back.
	p := r.prev
	for p != r && p.when > s.when {
		p = p.prev
	}
	s.prev, s.next = p, p.next
	p.next.prev = s
	p.next = s
}

// fifo returns the root of the FIFO of duration d, or nil: it starts one
// while there is room, then takes over an empty one, whose duration no
// timer needs now.
func (q *timerQueue) fifo(d time.Duration) *timerSlot {
	for i, e := range q.durs[:q.nfifo] {
		if e == d {
			return &q.fifos[i]
		}
	}
	if i := q.nfifo; i < len(q.fifos) {
		q.nfifo++
		r := &q.fifos[i]
		r.prev, r.next = r, r
		q.durs[i] = d
		return r
	}
	for i := range q.fifos {
		if r := &q.fifos[i]; r.next == r {
			q.durs[i] = d
			return r
		}
	}
	return nil
}

// remove takes s out of the queue.
func (q *timerQueue) remove(s *timerSlot) {
	q.n--
	if s.next != nil {
		s.prev.next, s.next.prev = s.next, s.prev
		s.prev, s.next = nil, nil
		return
	}
	i := int(s.idx)
	n := len(q.heap) - 1
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

// less orders the heap (see before).
func (q *timerQueue) less(i, j int) bool {
	a, b := &q.heap[i], &q.heap[j]
	return before(a.when, a.seq, b.when, b.seq)
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
