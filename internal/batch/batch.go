// Package batch is the bounded queue behind group commit: producers push
// items without waiting, one goroutine takes whatever queued while the
// previous batch was being written and writes it in one transaction. The
// registrar's binding writes and the call records use it.
package batch

import (
	"slices"
	"sync"
)

// Queue holds up to a fixed number of items. It is safe for concurrent
// use.
type Queue[T any] struct {
	max, maxBatch int

	mu      sync.Mutex
	pending []T
	closed  bool
	wake    chan struct{} // capacity 1
}

// New returns a queue holding at most limit items and handing them out
// at most maxBatch at a time.
func New[T any](limit, maxBatch int) *Queue[T] {
	return &Queue[T]{max: limit, maxBatch: max(maxBatch, 1), wake: make(chan struct{}, 1)}
}

// Push queues v and wakes the writer; false when the queue is full or
// closed.
func (q *Queue[T]) Push(v T) bool { return q.push(v, true, true) }

// PushQuiet queues v without waking the writer: for a producer that writes
// the batch itself when no one else is (see Signal). False when the queue
// is full or closed.
func (q *Queue[T]) PushQuiet(v T) bool { return q.push(v, true, false) }

// Signal wakes the writer, as a Push does, unless a wake-up is already
// pending.
func (q *Queue[T]) Signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// PushUnbounded queues v even when the queue is full, and wakes the
// writer; false only when the queue is closed. It is for markers that
// must keep their place in the order (a barrier whose callback runs once
// everything queued before it is written) and whose number the caller
// bounds otherwise; they count in Len, so Push sees that much less room.
func (q *Queue[T]) PushUnbounded(v T) bool { return q.push(v, false, true) }

// push queues v unless the queue is closed or, when bounded, full, and
// then wakes the writer if asked to.
func (q *Queue[T]) push(v T, bounded, wake bool) bool {
	q.mu.Lock()
	if q.closed || bounded && len(q.pending) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.pending = append(q.pending, v)
	q.mu.Unlock()
	if wake {
		q.Signal()
	}
	return true
}

// Wake is signalled after a Push; the writer then Takes until nothing is
// left.
func (q *Queue[T]) Wake() <-chan struct{} { return q.wake }

// Take removes and returns up to maxBatch items, oldest first; nil when
// the queue is empty.
func (q *Queue[T]) Take() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.pending), q.maxBatch)
	if n == 0 {
		return nil
	}
	out := slices.Clone(q.pending[:n])
	rest := copy(q.pending, q.pending[n:])
	clear(q.pending[rest:])
	q.pending = q.pending[:rest]
	return out
}

// TakeInto is Take for a consumer that is done with one batch before it
// takes the next: it hands out batches in buf's array (a batch TakeInto
// returned earlier, or nil), and gives the queue's own array when the
// whole queue is taken, so that a steady stream of batches allocates
// nothing. The items buf still holds are cleared first, so neither side
// keeps them alive. The result is empty when the queue is; the caller
// must not use buf afterwards, nor share it with another consumer.
func (q *Queue[T]) TakeInto(buf []T) []T {
	clear(buf)
	buf = buf[:0]
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.pending), q.maxBatch)
	switch {
	case n == 0:
		return buf
	case n == len(q.pending):
		out := q.pending
		q.pending = buf
		return out
	}
	buf = append(buf, q.pending[:n]...)
	rest := copy(q.pending, q.pending[n:])
	clear(q.pending[rest:])
	q.pending = q.pending[:rest]
	return buf
}

// Len returns the number of items queued.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Full reports whether Push would fail now.
func (q *Queue[T]) Full() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed || len(q.pending) >= q.max
}

// Closed reports whether Close was called.
func (q *Queue[T]) Closed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// Close refuses further items; what is queued can still be taken. It
// reports whether this call closed the queue.
func (q *Queue[T]) Close() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.closed = true
	return true
}
