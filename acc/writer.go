package acc

import (
	"context"
	"time"

	"github.com/hlas-voip/hlas/internal/batch"
	"github.com/hlas-voip/hlas/store"
)

// writeAttempts is how often a batch is tried before its records are
// given up (and their held responses released).
const writeAttempts = 3

// CommitTimeout bounds one attempt to commit a batch of records. A store
// that hangs (a PostgreSQL connection gone silent) then fails the attempt
// instead of holding every response that waits for a commit, and Close,
// forever: after writeAttempts attempts (at most about 30 s) the records
// are given up and counted (hlas_acc_dropped_total{reason="store_error"})
// and their responses go out.
const CommitTimeout = 10 * time.Second

// maxBatch is the most records committed in one transaction.
const maxBatch = 1024

// op is one record waiting for its commit; done runs after it. A barrier
// carries no record: its done runs once everything queued before it has
// been committed (or given up).
type op struct {
	rec     store.CDR
	done    func()
	barrier bool
}

// writer commits records from one goroutine in batches: whatever queued
// while the previous transaction committed goes into the next one (group
// commit), so a busy server pays one fsync for many records. The queue is
// bounded; a full one drops the record (counted) rather than delaying the
// response held for it. Batches commit in the order they were queued, and
// each batch's callbacks run after its commit, in order.
type writer struct {
	a *Accounting
	q *batch.Queue[op]
	// timeout bounds one commit attempt: CommitTimeout (tests shorten
	// it).
	timeout time.Duration
	stop    chan struct{}
	// final holds the records of the calls Close ended, written after
	// the queue; set by close before stop is closed.
	final []store.CDR
	// finished is closed when the writer has written everything, final
	// included, and stopped.
	finished chan struct{}
}

func newWriter(a *Accounting, maxQueue int) *writer {
	return &writer{a: a, q: batch.New[op](maxQueue, maxBatch), timeout: CommitTimeout,
		stop: make(chan struct{}), finished: make(chan struct{})}
}

func (w *writer) start() {
	go w.run()
}

// run commits batches until close, then what is left, then the records
// of the calls Close ended: those bypass the bounded queue, so that a
// clean shutdown records every open call however many there are.
func (w *writer) run() {
	defer close(w.finished)
	for {
		select {
		case <-w.stop:
			w.flush()
			for recs := w.final; len(recs) > 0; {
				n := min(len(recs), maxBatch)
				ops := make([]op, n)
				for i := range ops {
					ops[i].rec = recs[i]
				}
				w.commit(ops)
				recs = recs[n:]
			}
			w.final = nil
			return
		case <-w.q.Wake():
			w.flush()
		}
	}
}

// enqueue queues rec; done (maybe nil) runs once it is committed. When
// the queue is full or closed the record is dropped and done runs at
// once: the caller is not kept waiting for a record that will not come.
func (w *writer) enqueue(rec store.CDR, done func()) {
	if !w.tryEnqueue(rec, done) {
		w.dropped(rec, done)
	}
}

// tryEnqueue queues rec like enqueue but, when it cannot, leaves the
// drop to the caller (dropped), who may hold a.mu: queueing a call's
// record under the lock that marks the call done orders it before any
// barrier for that call.
func (w *writer) tryEnqueue(rec store.CDR, done func()) bool {
	return w.q.Push(op{rec: rec, done: done})
}

// dropped counts a record the queue refused and runs its done.
func (w *writer) dropped(rec store.CDR, done func()) {
	reason := "queue_full"
	if w.q.Closed() {
		reason = "closed"
	}
	w.a.met.dropped.WithLabelValues(reason).Inc()
	w.a.log.Warn("call record dropped", "call-id", rec.CallID, "why", reason)
	if done != nil {
		done()
	}
}

// barrier runs fn once every record queued before it has been committed
// or given up: the queue is FIFO and batches commit in order. It never
// waits, and a full queue does not refuse it (it is no record, and there
// is at most one per response in flight). Once the queue is closed, fn
// runs when the writer has finished, the shutdown records included.
func (w *writer) barrier(fn func()) {
	if w.q.PushUnbounded(op{done: fn, barrier: true}) {
		return
	}
	w.afterFinish(fn)
}

// afterFinish runs fn, without waiting, once the writer has written
// everything and stopped.
func (w *writer) afterFinish(fn func()) {
	go func() {
		<-w.finished
		fn()
	}()
}

func (w *writer) queued() int { return w.q.Len() }

// flush commits everything queued, batch by batch.
func (w *writer) flush() {
	for {
		ops := w.q.Take()
		if ops == nil {
			return
		}
		w.commit(ops)
	}
}

// commit writes the records of ops in one transaction, retried, then
// runs their callbacks in order (barriers' included).
func (w *writer) commit(ops []op) {
	recs := make([]store.CDR, 0, len(ops))
	for i := range ops {
		if !ops[i].barrier {
			recs = append(recs, ops[i].rec)
		}
	}
	var err error
	if len(recs) > 0 {
		err = w.write(recs)
	}
	for _, r := range recs {
		if err != nil {
			w.a.met.dropped.WithLabelValues("store_error").Inc()
		} else {
			w.a.met.records.WithLabelValues(r.Kind, r.Status).Inc()
		}
	}
	for _, o := range ops {
		if o.done != nil {
			o.done()
		}
	}
}

// write commits recs, trying writeAttempts times, each attempt bounded by
// w.timeout; it returns the last error.
func (w *writer) write(recs []store.CDR) error {
	var err error
	for attempt := 1; attempt <= writeAttempts; attempt++ {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
		err = w.a.env.Store.WriteCDRs(ctx, recs)
		cancel()
		w.a.met.writeSeconds.Observe(time.Since(start).Seconds())
		if err == nil {
			return nil
		}
		w.a.log.Error("write call records", "records", len(recs), "attempt", attempt, "err", err)
		if attempt < writeAttempts {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
	}
	return err
}

// close refuses further records, commits the queued ones, then final
// (the records of the calls Close ended), and waits.
func (w *writer) close(final []store.CDR) {
	if !w.q.Close() {
		return
	}
	w.final = final
	close(w.stop)
	<-w.finished
}
